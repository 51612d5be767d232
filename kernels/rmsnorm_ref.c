/* SPDX-License-Identifier: Apache-2.0 */
/* rmsnorm_ref.c - the kernels' arithmetic in plain C (rmsnorm_ref.h).
 *
 * Every fp32 operation is written as its own C operation on float (FLT_EVAL_METHOD 0 on the
 * targets we build for, and -std=c11 keeps GCC from contracting a * b + c into an FMA), so each
 * rounds exactly like the device's __fadd_rn / __fmul_rn / __fdiv_rn / __fsqrt_rn; the sum of
 * squares uses fmaf, like the device's __fmaf_rn. */
#include "kernels/rmsnorm_ref.h"

#include <math.h>
#include <string.h>

#include "abi/moecomm.h"

static uint32_t mc_ref_bits(float f) {
  uint32_t u;
  memcpy(&u, &f, sizeof(u));
  return u;
}

static float mc_ref_float(uint32_t u) {
  float f;
  memcpy(&f, &u, sizeof(f));
  return f;
}

uint16_t mc_kern_ref_to_bf16(float f) {
  uint32_t u = mc_ref_bits(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return 0x7fff;
  u += 0x7fffu + ((u >> 16) & 1u);
  return (uint16_t)(u >> 16);
}

float mc_kern_ref_from_bf16(uint16_t b) {
  return mc_ref_float((uint32_t)b << 16);
}

uint16_t mc_kern_ref_to_half(float f) {
  const uint32_t u = mc_ref_bits(f), a = u & 0x7fffffffu;
  const uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
  if (a > 0x7f800000u) return 0x7fff;
  if (a >= 0x477ff000u) return sign | 0x7c00u; /* 65520 and above round to infinity */
  if (a >= 0x38800000u) {                      /* normal half: >= 2^-14 */
    const uint32_t r = a + 0xfffu + ((a >> 13) & 1u);
    return sign | (uint16_t)((r - 0x38000000u) >> 13);
  }
  /* subnormal half: a multiple of 2^-24 (1024 of them is 2^-14, the smallest normal) */
  return sign | (uint16_t)nearbyintf(fabsf(f) * 0x1p24f);
}

float mc_kern_ref_from_half(uint16_t h) {
  const uint32_t sign = (uint32_t)(h & 0x8000u) << 16, e = (h >> 10) & 0x1fu, m = h & 0x3ffu;
  if (e == 0) {
    const float v = (float)m * 0x1p-24f;
    return sign ? -v : v;
  }
  if (e == 31) return mc_ref_float(sign | 0x7f800000u | (m << 13));
  return mc_ref_float(sign | ((e + 112u) << 23) | (m << 13));
}

uint8_t mc_kern_ref_to_e4m3(float f) {
  const uint8_t sign = signbit(f) ? 0x80 : 0;
  double a = fabs((double)f), q, m;
  int e;
  if (isnan(f)) return 0x7f;
  if (a >= 448.0) return sign | 0x7e; /* saturate: 448 is the largest finite value */
  (void)frexp(a, &e);                 /* a in [2^(e-1), 2^e) */
  e = e - 1 < -6 ? -6 : e - 1;        /* below 2^-6 the step is that of the subnormals */
  q = ldexp(1.0, e - 3);              /* 3 mantissa bits */
  m = nearbyint(a / q);               /* exact division, rounded to nearest even */
  if (m == 0) return sign;
  if (e == -6 && m < 8) return sign | (uint8_t)m; /* subnormal: m * 2^-9 */
  if (m == 16) {                                  /* rounded up to the next binade */
    m = 8;
    e++;
  }
  return sign | (uint8_t)(((e + 7) << 3) | ((int)m - 8));
}

float mc_kern_ref_from_e4m3(uint8_t q) {
  const int e = (q >> 3) & 0xf, m = q & 7;
  const float v = e == 0 ? ldexpf((float)m, -9) : ldexpf((float)(8 + m), e - 10);
  if ((q & 0x7f) == 0x7f) return NAN;
  return (q & 0x80) ? -v : v;
}

static float mc_ref_get(const void *buf, size_t i, int dtype) {
  if (dtype == MOECOMM_FLOAT32) return ((const float *)buf)[i];
  if (dtype == MOECOMM_FLOAT16) return mc_kern_ref_from_half(((const uint16_t *)buf)[i]);
  return mc_kern_ref_from_bf16(((const uint16_t *)buf)[i]);
}

static void mc_ref_put(void *buf, size_t i, int dtype, float f) {
  if (dtype == MOECOMM_FLOAT32)
    ((float *)buf)[i] = f;
  else if (dtype == MOECOMM_FLOAT16)
    ((uint16_t *)buf)[i] = mc_kern_ref_to_half(f);
  else
    ((uint16_t *)buf)[i] = mc_kern_ref_to_bf16(f);
}

/* The value v rounded to the dtype and widened again. */
static float mc_ref_round(float f, int dtype) {
  if (dtype == MOECOMM_FLOAT16) return mc_kern_ref_from_half(mc_kern_ref_to_half(f));
  return mc_kern_ref_from_bf16(mc_kern_ref_to_bf16(f));
}

void mc_kern_ref_all_reduce(const void *const *ins, int n, size_t count, int dtype, int op,
                            void *out) {
  for (size_t i = 0; i < count; i++) {
    float acc = mc_ref_get(ins[0], i, dtype);
    for (int r = 1; r < n; r++) {
      const float v = mc_ref_get(ins[r], i, dtype);
      acc = op == MOECOMM_SUM ? acc + v : op == MOECOMM_MAX ? fmaxf(acc, v) : fminf(acc, v);
    }
    mc_ref_put(out, i, dtype, acc);
  }
}

/* The row's sum of squares in the order of mc_rmsnorm.h (256 lanes, butterflies of 32, groups
   added in order); v is the row of the new residual (dtype values).  A short last vector (hidden
   not a multiple of 8) adds only the elements it has. */
static float mc_ref_sumsq(const void *v, size_t hidden, int dtype) {
  float lane[256], total;
  const size_t nvec = (hidden + 7) / 8;
  for (size_t l = 0; l < 256; l++) {
    float c = 0.0f;
    for (size_t j = l; j < nvec; j += 256)
      for (size_t h = 8 * j; h < 8 * j + 8 && h < hidden; h++) {
        const float x = mc_ref_get(v, h, dtype);
        c = fmaf(x, x, c);
      }
    lane[l] = c;
  }
  for (size_t g = 0; g < 8; g++)
    for (size_t m = 16; m >= 1; m /= 2)
      for (size_t l = 0; l < m; l++) lane[32 * g + l] = lane[32 * g + l] + lane[32 * g + l + m];
  total = lane[0];
  for (size_t g = 1; g < 8; g++) total = total + lane[32 * g];
  return total;
}

/* One row: v (the new residual row) to y and the fp8 copy. */
static void mc_ref_norm_row(int dtype, size_t hidden, const void *v, const void *weight, float eps,
                            void *y_row, uint8_t *q_row, float *scale_p) {
  const float inv = 1.0f / sqrtf(mc_ref_sumsq(v, hidden, dtype) / (float)hidden + eps);
  float amax = 0.0f, scale;
  for (size_t h = 0; h < hidden; h++) {
    const float t = mc_ref_get(v, h, dtype) * inv;
    const float yv = mc_ref_round(t * mc_ref_get(weight, h, dtype), dtype);
    mc_ref_put(y_row, h, dtype, yv);
    amax = fmaxf(amax, fabsf(yv));
  }
  if (q_row == NULL) return;
  scale = amax / 448.0f;
  for (size_t h = 0; h < hidden; h++)
    q_row[h] = scale == 0.0f ? 0 : mc_kern_ref_to_e4m3(mc_ref_get(y_row, h, dtype) / scale);
  *scale_p = scale;
}

int mc_kern_ref_add_rmsnorm(int dtype, size_t rows, size_t hidden, const void *a, void *residual,
                            const void *weight, float eps, void *y, uint8_t *y_fp8,
                            float *y_scale) {
  if ((dtype != MOECOMM_FLOAT16 && dtype != MOECOMM_BFLOAT16) || hidden == 0 || a == NULL ||
      residual == NULL || weight == NULL || y == NULL || (y_fp8 != NULL && y_scale == NULL))
    return -1;
  for (size_t t = 0; t < rows; t++) {
    const size_t base = t * hidden;
    uint16_t *v = (uint16_t *)residual + base;
    /* a row of a is read whole before y's row is written: y may be a */
    for (size_t h = 0; h < hidden; h++)
      mc_ref_put(v, h, dtype,
                 mc_ref_get(a, base + h, dtype) + mc_ref_get(residual, base + h, dtype));
    mc_ref_norm_row(dtype, hidden, v, weight, eps, (uint16_t *)y + base,
                    y_fp8 != NULL ? y_fp8 + base : NULL, y_scale != NULL ? y_scale + t : NULL);
  }
  return 0;
}
