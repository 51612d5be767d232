/* SPDX-License-Identifier: Apache-2.0 */
/* rmsnorm_def.h - the definition of all_reduce_rmsnorm (kernels/mc_rmsnorm.h) once more, for the
 * tests: written from the header's words with the harness's own conversions, not from
 * kernels/rmsnorm_ref.c, so a test comparing the plugin (whose CPU path is rmsnorm_ref.c) with it
 * checks that file too.  fp32 steps are single C operations on float (-std=c11: no contraction).
 *
 *   a = D(x_0 + x_1 + ... + x_{n-1}) in fp32, rank order; v = D(a + r);
 *   ss: lane l < 256 sums fmaf(v, v, c) over vectors l, l + 256, ... (vector j: elements 8j ..
 *       8j + 7 below H); in each group of 32 lanes a butterfly (lane l takes l ^ 16, ^ 8, ^ 4, ^ 2,
 *       ^ 1, adding its own value first), lane 0 of the group is its sum; the 8 sums in order;
 *   inv = 1 / sqrt(ss / H + eps); y = D((v * inv) * w);
 *   fp8: scale = max |y| / 448; q = the e4m3 value nearest to y / scale (ties to an even code,
 *        448 and above saturate), 0 when scale is 0. */
#ifndef MC_TEST_RMSNORM_DEF_H_
#define MC_TEST_RMSNORM_DEF_H_

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "harness.h"

static inline float rd_get(const void *buf, size_t i, moecomm_dtype_t dt) {
  const uint16_t b = ((const uint16_t *)buf)[i];
  return dt == MOECOMM_FLOAT16 ? mc_test_from_half(b) : mc_test_from_bf16(b);
}

static inline uint16_t rd_bits(float f, moecomm_dtype_t dt) {
  return dt == MOECOMM_FLOAT16 ? mc_test_to_half(f) : mc_test_to_bf16(f);
}

/* f rounded to the dtype, widened back. */
static inline float rd_round(float f, moecomm_dtype_t dt) {
  return dt == MOECOMM_FLOAT16 ? mc_test_from_half(mc_test_to_half(f))
                               : mc_test_from_bf16(mc_test_to_bf16(f));
}

/* out = the all-reduce (sum) of ins[0..n) over count elements of dt (fp16 or bf16). */
static inline void rd_all_reduce(const void *const *ins, int n, size_t count, moecomm_dtype_t dt,
                                 void *out) {
  for (size_t i = 0; i < count; i++) {
    float acc = rd_get(ins[0], i, dt);
    for (int r = 1; r < n; r++) acc = acc + rd_get(ins[r], i, dt);
    ((uint16_t *)out)[i] = rd_bits(acc, dt);
  }
}

/* The e4m3 value of code c (0 .. 0x7e, sign apart). */
static inline double rd_e4m3_value(int c) {
  const int e = c >> 3, m = c & 7;
  return e == 0 ? ldexp(m, -9) : ldexp(8 + m, e - 10);
}

/* The e4m3 code nearest to f (ties to the even code): the largest code whose value is at most
   |f|, by bisection over the codes (their values grow with them), or the next one. */
static inline uint8_t rd_e4m3(float f) {
  static double v[0x7f];
  const double a = fabs((double)f);
  const uint8_t sign = signbit(f) ? 0x80 : 0;
  int lo = 0, hi = 0x7e;
  if (v[1] == 0)
    for (int c = 0; c < 0x7f; c++) v[c] = rd_e4m3_value(c);
  if (isnan(f)) return 0x7f;
  if (a >= 448.0) return sign | 0x7e;
  while (lo < hi) {
    const int mid = (lo + hi + 1) / 2;
    if (v[mid] <= a)
      lo = mid;
    else
      hi = mid - 1;
  }
  if (lo < 0x7e && (v[lo + 1] - a < a - v[lo] || (v[lo + 1] - a == a - v[lo] && (lo & 1)))) lo++;
  return sign | (uint8_t)lo;
}

/* The row's sum of squares of v (H values of dt) in the definition's order. */
static inline float rd_sumsq(const void *v, size_t H, moecomm_dtype_t dt) {
  float lane[256], total;
  for (size_t l = 0; l < 256; l++) {
    float c = 0.0f;
    for (size_t j = l; 8 * j < H; j += 256)
      for (size_t h = 8 * j; h < 8 * j + 8 && h < H; h++) {
        const float x = rd_get(v, h, dt);
        c = fmaf(x, x, c);
      }
    lane[l] = c;
  }
  for (size_t g = 0; g < 8; g++) {
    float *w = lane + 32 * g;
    for (int m = 16; m >= 1; m /= 2) {
      float next[32];
      for (int l = 0; l < 32; l++) next[l] = w[l] + w[l ^ m];
      memcpy(w, next, sizeof(next));
    }
  }
  total = lane[0];
  for (size_t g = 1; g < 8; g++) total = total + lane[32 * g];
  return total;
}

/* From a (the all-reduce, T x H): residual <- v, y <- the norm, the fp8 copy and scales when q is
   not NULL.  y may be a. */
static inline void rd_add_rmsnorm(moecomm_dtype_t dt, size_t T, size_t H, const void *a,
                                  void *residual, const void *weight, float eps, void *y,
                                  uint8_t *q, float *scale) {
  for (size_t t = 0; t < T; t++) {
    uint16_t *v = (uint16_t *)residual + t * H, *yr = (uint16_t *)y + t * H;
    float inv, amax = 0.0f, sc;
    for (size_t h = 0; h < H; h++) v[h] = rd_bits(rd_get(a, t * H + h, dt) + rd_get(v, h, dt), dt);
    inv = 1.0f / sqrtf(rd_sumsq(v, H, dt) / (float)H + eps);
    for (size_t h = 0; h < H; h++) {
      const float p = rd_get(v, h, dt) * inv;
      yr[h] = rd_bits(p * rd_get(weight, h, dt), dt);
      amax = fmaxf(amax, fabsf(rd_get(yr, h, dt)));
    }
    if (q == NULL) continue;
    sc = amax / 448.0f;
    for (size_t h = 0; h < H; h++) q[t * H + h] = sc == 0.0f ? 0 : rd_e4m3(rd_get(yr, h, dt) / sc);
    scale[t] = sc;
  }
}

/* A non-zero real of mixed sign with 24 random bits of mantissa, in [2^-12, 2^12): magnitudes 24
   binades apart, so even sums of 16-bit values round in fp32 and their order shows. */
static inline float rd_real(uint64_t *st) {
  const uint64_t r = mc_test_rand(st);
  const float m = 1.0f + (float)(r >> 40) / (float)(1u << 24);
  return ldexpf((r & 1) ? -m : m, (int)((r >> 8) % 24) - 12);
}

/* n values of dt (FLOAT32, FLOAT16 or BFLOAT16) from rd_real, rounded to the dtype. */
static inline void rd_fill(void *buf, size_t n, moecomm_dtype_t dt, uint64_t seed) {
  uint64_t st = seed ^ 0x2545f4914f6cdd1dull;
  for (size_t i = 0; i < n; i++) {
    const float f = rd_real(&st);
    if (dt == MOECOMM_FLOAT32)
      ((float *)buf)[i] = f;
    else
      ((uint16_t *)buf)[i] = rd_bits(f, dt);
  }
}

#endif
