/* SPDX-License-Identifier: Apache-2.0 */
/* reduce.c - element-wise reductions of n inputs in rank order, for the shm backend.
 *
 * Written with GCC vector extensions (4 lanes of 32 bits, 16 elements per step): portable, and on
 * x86-64 plain SSE2.  GCC widens and narrows 16-bit lanes poorly with generic vectors, so on SSE2
 * the fp16/bf16 loads and stores use unpack and pack intrinsics; elsewhere the generic code runs.
 * On x86-64, fp16 uses F16C and bf16 AVX2 when the CPU has them (checked once at run time);
 * fp32 and int32 are memory-bound and stay on SSE2.  Build with -DMC_SHM_NO_DISPATCH to test the
 * SSE2 paths on such a CPU, -DMC_SHM_GENERIC for the portable one.
 *
 * Every load and store is unaligned (memcpy or loadu), so any alignment is fine and in-place
 * aliasing is never undefined.  The scalar tail repeats exactly the vector arithmetic (same IEEE
 * single operations, same conversions), so an element's bits do not depend on where it falls in
 * the buffer. */
#include <stdatomic.h>
#include <string.h>

#if defined(__SSE2__) && !defined(MC_SHM_GENERIC)
#include <emmintrin.h>
#endif
#if defined(__x86_64__) && !defined(MC_SHM_GENERIC) && !defined(MC_SHM_NO_DISPATCH)
#define MC_SHM_X86_DISPATCH 1 /* F16C / AVX2 kernels, chosen at run time */
#include <immintrin.h>
#endif

#include "reduce.h"

#define MC_SHM_LANES 4

typedef float mc_shm_vf_t __attribute__((vector_size(16)));
typedef int32_t mc_shm_vi_t __attribute__((vector_size(16)));
typedef uint32_t mc_shm_vu_t __attribute__((vector_size(16)));
typedef uint16_t mc_shm_vh_t __attribute__((vector_size(8)));

enum { MC_SHM_F32 = 0, MC_SHM_F16 = 1, MC_SHM_BF16 = 2 };

/* ---- scalar conversions ---- */

static inline uint32_t mc_shm_f2u(float f) {
  uint32_t u;
  memcpy(&u, &f, sizeof u);
  return u;
}

static inline float mc_shm_u2f(uint32_t u) {
  float f;
  memcpy(&f, &u, sizeof f);
  return f;
}

float mc_shm_bf16_to_float(uint16_t b) {
  return mc_shm_u2f((uint32_t)b << 16);
}

uint16_t mc_shm_float_to_bf16(float f) {
  uint32_t u = mc_shm_f2u(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40u); /* quiet NaN */
  return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

/* Half -> float: rebias the exponent; Inf/NaN get the larger bias; subnormals are normalised by
   one float subtraction (exact). */
float mc_shm_half_to_float(uint16_t h) {
  uint32_t o = ((uint32_t)h & 0x7fffu) << 13;
  uint32_t e = o & (0x7c00u << 13);
  o += (127u - 15u) << 23;
  if (e == (0x7c00u << 13)) {
    o += (128u - 16u) << 23;
  } else if (e == 0) {
    o = mc_shm_f2u(mc_shm_u2f(o + (1u << 23)) - mc_shm_u2f(113u << 23));
  }
  return mc_shm_u2f(o | (((uint32_t)h & 0x8000u) << 16));
}

/* Float -> half, round to nearest even.  Subnormal results: adding 0.5f lets the FPU round the
   mantissa into place; normal results: add half an ulp minus one plus the kept bit's parity. */
uint16_t mc_shm_float_to_half(float f) {
  uint32_t u = mc_shm_f2u(f);
  uint32_t sign = u & 0x80000000u;
  uint32_t o;
  u ^= sign;
  if (u >= (143u << 23)) { /* >= 65536 (rounds to Inf), Inf, NaN */
    o = u > 0x7f800000u ? 0x7e00u : 0x7c00u;
  } else if (u < (113u << 23)) { /* below the smallest normal half */
    o = mc_shm_f2u(mc_shm_u2f(u) + mc_shm_u2f(126u << 23)) - (126u << 23);
  } else {
    o = (u - (112u << 23) + 0xfffu + ((u >> 13) & 1u)) >> 13;
  }
  return (uint16_t)(o | (sign >> 16));
}

/* ---- the same conversions on vectors (masks are all-ones lanes) ---- */

static inline mc_shm_vu_t mc_shm_blend(mc_shm_vu_t mask, mc_shm_vu_t a, mc_shm_vu_t b) {
  return (mask & a) | (~mask & b);
}

static inline mc_shm_vf_t mc_shm_h2f_v(mc_shm_vu_t h) {
  mc_shm_vu_t o = (h & 0x7fffu) << 13;
  mc_shm_vu_t e = o & (0x7c00u << 13);
  mc_shm_vu_t infnan = (mc_shm_vu_t)(e == (0x7c00u << 13));
  mc_shm_vu_t sub = (mc_shm_vu_t)(e == 0u);
  o += (127u - 15u) << 23;
  o += infnan & ((128u - 16u) << 23);
  mc_shm_vf_t magic = (mc_shm_vf_t)((mc_shm_vu_t){0} + (113u << 23));
  mc_shm_vu_t subv = (mc_shm_vu_t)((mc_shm_vf_t)(o + (1u << 23)) - magic);
  o = mc_shm_blend(sub, subv, o);
  return (mc_shm_vf_t)(o | ((h & 0x8000u) << 16));
}

static inline mc_shm_vu_t mc_shm_f2h_v(mc_shm_vf_t f) {
  mc_shm_vu_t u = (mc_shm_vu_t)f;
  mc_shm_vu_t sign = u & 0x80000000u;
  u ^= sign;
  mc_shm_vi_t s = (mc_shm_vi_t)u; /* sign cleared: signed compares are exact (SSE2 has no
                                     unsigned ones) */
  mc_shm_vu_t big = (mc_shm_vu_t)(s >= (int32_t)(143u << 23));
  mc_shm_vu_t nan = (mc_shm_vu_t)(s > 0x7f800000);
  mc_shm_vu_t small = (mc_shm_vu_t)(s < (int32_t)(113u << 23));
  mc_shm_vf_t half = (mc_shm_vf_t)((mc_shm_vu_t){0} + (126u << 23));
  mc_shm_vu_t subv = (mc_shm_vu_t)((mc_shm_vf_t)u + half) - (126u << 23);
  mc_shm_vu_t norm = (u - (112u << 23) + 0xfffu + ((u >> 13) & 1u)) >> 13;
  mc_shm_vu_t special = mc_shm_blend(nan, (mc_shm_vu_t){0} + 0x7e00u, (mc_shm_vu_t){0} + 0x7c00u);
  mc_shm_vu_t o = mc_shm_blend(big, special, mc_shm_blend(small, subv, norm));
  return o | (sign >> 16);
}

/* The bf16 ends up in the high half of each lane (the low half is left over): one arithmetic
   shift then gives it sign-extended, ready for a signed pack. */
static inline mc_shm_vi_t mc_shm_f2bf_hi_v(mc_shm_vf_t f) {
  mc_shm_vu_t u = (mc_shm_vu_t)f;
  mc_shm_vu_t nan = (mc_shm_vu_t)(f != f);
  mc_shm_vu_t rounded = u + 0x7fffu + ((u >> 16) & 1u);
  return (mc_shm_vi_t)mc_shm_blend(nan, u | 0x00400000u, rounded);
}

/* ---- loads and stores of 8 elements as two fp32 vectors ---- */

static inline __attribute__((always_inline)) void mc_shm_ld8(int kind, const unsigned char *p,
                                                             mc_shm_vf_t *lo, mc_shm_vf_t *hi) {
  if (kind == MC_SHM_F32) {
    memcpy(lo, p, sizeof *lo);
    memcpy(hi, p + sizeof *lo, sizeof *hi);
    return;
  }
#if defined(__SSE2__) && !defined(MC_SHM_GENERIC)
  __m128i x = _mm_loadu_si128((const __m128i *)(const void *)p), z = _mm_setzero_si128();
  if (kind == MC_SHM_BF16) { /* the bf16 bits become the high half of each fp32 lane */
    *lo = (mc_shm_vf_t)_mm_unpacklo_epi16(z, x);
    *hi = (mc_shm_vf_t)_mm_unpackhi_epi16(z, x);
    return;
  }
  *lo = mc_shm_h2f_v((mc_shm_vu_t)_mm_unpacklo_epi16(x, z));
  *hi = mc_shm_h2f_v((mc_shm_vu_t)_mm_unpackhi_epi16(x, z));
#else
  mc_shm_vh_t h0, h1;
  memcpy(&h0, p, sizeof h0);
  memcpy(&h1, p + sizeof h0, sizeof h1);
  mc_shm_vu_t u0 = __builtin_convertvector(h0, mc_shm_vu_t);
  mc_shm_vu_t u1 = __builtin_convertvector(h1, mc_shm_vu_t);
  if (kind == MC_SHM_BF16) {
    *lo = (mc_shm_vf_t)(u0 << 16);
    *hi = (mc_shm_vf_t)(u1 << 16);
    return;
  }
  *lo = mc_shm_h2f_v(u0);
  *hi = mc_shm_h2f_v(u1);
#endif
}

static inline __attribute__((always_inline)) void mc_shm_st8(int kind, unsigned char *p,
                                                             mc_shm_vf_t lo, mc_shm_vf_t hi) {
  if (kind == MC_SHM_F32) {
    memcpy(p, &lo, sizeof lo);
    memcpy(p + sizeof lo, &hi, sizeof hi);
    return;
  }
  /* The 16-bit results, sign-extended, so a signed-saturating pack keeps their bits exactly. */
  mc_shm_vi_t s0, s1;
  if (kind == MC_SHM_BF16) {
    s0 = mc_shm_f2bf_hi_v(lo) >> 16;
    s1 = mc_shm_f2bf_hi_v(hi) >> 16;
  } else {
    s0 = (mc_shm_vi_t)(mc_shm_f2h_v(lo) << 16) >> 16;
    s1 = (mc_shm_vi_t)(mc_shm_f2h_v(hi) << 16) >> 16;
  }
#if defined(__SSE2__) && !defined(MC_SHM_GENERIC)
  _mm_storeu_si128((__m128i *)(void *)p, _mm_packs_epi32((__m128i)s0, (__m128i)s1));
#else
  mc_shm_vh_t h0 = __builtin_convertvector(s0, mc_shm_vh_t);
  mc_shm_vh_t h1 = __builtin_convertvector(s1, mc_shm_vh_t);
  memcpy(p, &h0, sizeof h0);
  memcpy(p + sizeof h0, &h1, sizeof h1);
#endif
}

static inline __attribute__((always_inline)) float mc_shm_ld1(int kind, const unsigned char *p) {
  if (kind == MC_SHM_F32) {
    float f;
    memcpy(&f, p, sizeof f);
    return f;
  }
  uint16_t h;
  memcpy(&h, p, sizeof h);
  return kind == MC_SHM_BF16 ? mc_shm_bf16_to_float(h) : mc_shm_half_to_float(h);
}

static inline __attribute__((always_inline)) void mc_shm_st1(int kind, unsigned char *p, float f) {
  if (kind == MC_SHM_F32) {
    memcpy(p, &f, sizeof f);
    return;
  }
  uint16_t h = kind == MC_SHM_BF16 ? mc_shm_float_to_bf16(f) : mc_shm_float_to_half(f);
  memcpy(p, &h, sizeof h);
}

/* ---- the operators: max keeps the accumulator unless the new value is greater (min: less) ---- */

static inline __attribute__((always_inline)) mc_shm_vf_t mc_shm_opv(moecomm_redop_t op,
                                                                    mc_shm_vf_t acc,
                                                                    mc_shm_vf_t x) {
  if (op == MOECOMM_SUM) return acc + x;
  mc_shm_vu_t take = (mc_shm_vu_t)(op == MOECOMM_MAX ? x > acc : x < acc);
  return (mc_shm_vf_t)mc_shm_blend(take, (mc_shm_vu_t)x, (mc_shm_vu_t)acc);
}

static inline __attribute__((always_inline)) float mc_shm_op1(moecomm_redop_t op, float acc,
                                                              float x) {
  if (op == MOECOMM_SUM) return acc + x;
  if (op == MOECOMM_MAX) return x > acc ? x : acc;
  return x < acc ? x : acc;
}

static inline __attribute__((always_inline)) mc_shm_vi_t mc_shm_opvi(moecomm_redop_t op,
                                                                     mc_shm_vi_t acc,
                                                                     mc_shm_vi_t x) {
  if (op == MOECOMM_SUM) return (mc_shm_vi_t)((mc_shm_vu_t)acc + (mc_shm_vu_t)x); /* wraps */
  mc_shm_vu_t take = (mc_shm_vu_t)(op == MOECOMM_MAX ? x > acc : x < acc);
  return (mc_shm_vi_t)mc_shm_blend(take, (mc_shm_vu_t)x, (mc_shm_vu_t)acc);
}

static inline __attribute__((always_inline)) int32_t mc_shm_op1i(moecomm_redop_t op, int32_t acc,
                                                                 int32_t x) {
  if (op == MOECOMM_SUM) return (int32_t)((uint32_t)acc + (uint32_t)x);
  if (op == MOECOMM_MAX) return x > acc ? x : acc;
  return x < acc ? x : acc;
}

/* ---- kernels: 16 elements per step, all inputs of a step loaded before its stores ---- */

#define MC_SHM_STEP (4 * MC_SHM_LANES)

static inline __attribute__((always_inline)) void mc_shm_red_float(int kind, moecomm_redop_t op,
                                                                   unsigned char *out,
                                                                   unsigned char *out2,
                                                                   const unsigned char *const *in,
                                                                   int n, size_t count) {
  const size_t es = kind == MC_SHM_F32 ? 4 : 2;
  const size_t hb = 8 * es; /* bytes of 8 elements */
  size_t i = 0;
  for (; i + MC_SHM_STEP <= count; i += MC_SHM_STEP) {
    size_t b = i * es;
    mc_shm_vf_t a0, a1, a2, a3, x0, x1, x2, x3;
    mc_shm_ld8(kind, in[0] + b, &a0, &a1);
    mc_shm_ld8(kind, in[0] + b + hb, &a2, &a3);
    for (int j = 1; j < n; j++) {
      mc_shm_ld8(kind, in[j] + b, &x0, &x1);
      mc_shm_ld8(kind, in[j] + b + hb, &x2, &x3);
      a0 = mc_shm_opv(op, a0, x0);
      a1 = mc_shm_opv(op, a1, x1);
      a2 = mc_shm_opv(op, a2, x2);
      a3 = mc_shm_opv(op, a3, x3);
    }
    mc_shm_st8(kind, out + b, a0, a1);
    mc_shm_st8(kind, out + b + hb, a2, a3);
    if (out2) {
      mc_shm_st8(kind, out2 + b, a0, a1);
      mc_shm_st8(kind, out2 + b + hb, a2, a3);
    }
  }
  for (; i < count; i++) {
    size_t b = i * es;
    float a = mc_shm_ld1(kind, in[0] + b);
    for (int j = 1; j < n; j++) a = mc_shm_op1(op, a, mc_shm_ld1(kind, in[j] + b));
    mc_shm_st1(kind, out + b, a);
    if (out2) mc_shm_st1(kind, out2 + b, a);
  }
}

static inline mc_shm_vi_t mc_shm_ldvi(const unsigned char *p) {
  mc_shm_vi_t v;
  memcpy(&v, p, sizeof v);
  return v;
}

static inline __attribute__((always_inline)) void mc_shm_red_int(moecomm_redop_t op,
                                                                 unsigned char *out,
                                                                 unsigned char *out2,
                                                                 const unsigned char *const *in,
                                                                 int n, size_t count) {
  const size_t vb = sizeof(mc_shm_vi_t);
  size_t i = 0;
  for (; i + MC_SHM_STEP <= count; i += MC_SHM_STEP) {
    size_t b = i * 4;
    const unsigned char *p = in[0] + b;
    mc_shm_vi_t a0 = mc_shm_ldvi(p), a1 = mc_shm_ldvi(p + vb);
    mc_shm_vi_t a2 = mc_shm_ldvi(p + 2 * vb), a3 = mc_shm_ldvi(p + 3 * vb);
    for (int j = 1; j < n; j++) {
      p = in[j] + b;
      a0 = mc_shm_opvi(op, a0, mc_shm_ldvi(p));
      a1 = mc_shm_opvi(op, a1, mc_shm_ldvi(p + vb));
      a2 = mc_shm_opvi(op, a2, mc_shm_ldvi(p + 2 * vb));
      a3 = mc_shm_opvi(op, a3, mc_shm_ldvi(p + 3 * vb));
    }
    memcpy(out + b, &a0, vb);
    memcpy(out + b + vb, &a1, vb);
    memcpy(out + b + 2 * vb, &a2, vb);
    memcpy(out + b + 3 * vb, &a3, vb);
    if (out2) {
      memcpy(out2 + b, &a0, vb);
      memcpy(out2 + b + vb, &a1, vb);
      memcpy(out2 + b + 2 * vb, &a2, vb);
      memcpy(out2 + b + 3 * vb, &a3, vb);
    }
  }
  for (; i < count; i++) {
    size_t b = i * 4;
    int32_t a, x;
    memcpy(&a, in[0] + b, 4);
    for (int j = 1; j < n; j++) {
      memcpy(&x, in[j] + b, 4);
      a = mc_shm_op1i(op, a, x);
    }
    memcpy(out + b, &a, 4);
    if (out2) memcpy(out2 + b, &a, 4);
  }
}

typedef void (*mc_shm_red_fn_t)(unsigned char *out, unsigned char *out2,
                                const unsigned char *const *in, int n, size_t count);

/* One specialised function per (dtype, op): the type and operator are constants in its loop. */
#define MC_SHM_RED_FLOAT(name, kind, op)                                                           \
  static void name(unsigned char *out, unsigned char *out2, const unsigned char *const *in, int n, \
                   size_t count) {                                                                 \
    mc_shm_red_float(kind, op, out, out2, in, n, count);                                           \
  }
#define MC_SHM_RED_INT(name, op)                                                                   \
  static void name(unsigned char *out, unsigned char *out2, const unsigned char *const *in, int n, \
                   size_t count) {                                                                 \
    mc_shm_red_int(op, out, out2, in, n, count);                                                   \
  }

MC_SHM_RED_FLOAT(mc_shm_f32_sum, MC_SHM_F32, MOECOMM_SUM)
MC_SHM_RED_FLOAT(mc_shm_f32_max, MC_SHM_F32, MOECOMM_MAX)
MC_SHM_RED_FLOAT(mc_shm_f32_min, MC_SHM_F32, MOECOMM_MIN)
MC_SHM_RED_FLOAT(mc_shm_f16_sum, MC_SHM_F16, MOECOMM_SUM)
MC_SHM_RED_FLOAT(mc_shm_f16_max, MC_SHM_F16, MOECOMM_MAX)
MC_SHM_RED_FLOAT(mc_shm_f16_min, MC_SHM_F16, MOECOMM_MIN)
MC_SHM_RED_FLOAT(mc_shm_bf16_sum, MC_SHM_BF16, MOECOMM_SUM)
MC_SHM_RED_FLOAT(mc_shm_bf16_max, MC_SHM_BF16, MOECOMM_MAX)
MC_SHM_RED_FLOAT(mc_shm_bf16_min, MC_SHM_BF16, MOECOMM_MIN)
MC_SHM_RED_INT(mc_shm_i32_sum, MOECOMM_SUM)
MC_SHM_RED_INT(mc_shm_i32_max, MOECOMM_MAX)
MC_SHM_RED_INT(mc_shm_i32_min, MOECOMM_MIN)

/* Indexed [dtype][op]; the order of moecomm_dtype_t and moecomm_redop_t. */
static const mc_shm_red_fn_t mc_shm_red_table[4][3] = {
    {mc_shm_f32_sum, mc_shm_f32_max, mc_shm_f32_min},
    {mc_shm_f16_sum, mc_shm_f16_max, mc_shm_f16_min},
    {mc_shm_bf16_sum, mc_shm_bf16_max, mc_shm_bf16_min},
    {mc_shm_i32_sum, mc_shm_i32_max, mc_shm_i32_min},
};

#if defined(MC_SHM_X86_DISPATCH)
/* fp16 on x86-64 CPUs with F16C (chosen at run time): one instruction per 4 conversions, round
   to nearest even, about 5x the integer emulation above.  The results are the same except for
   NaN payloads (F16C keeps them, quieted; the emulation returns a canonical NaN).  The operators
   and the order are shared with the other kernels. */
static inline __attribute__((always_inline, target("f16c"))) void mc_shm_red_f16c(
    moecomm_redop_t op, unsigned char *out, unsigned char *out2, const unsigned char *const *in,
    int n, size_t count) {
#define MC_SHM_LD_F16C(p, v0, v1, v2, v3)                                    \
  do {                                                                       \
    __m128i x_ = _mm_loadu_si128((const __m128i *)(const void *)(p));        \
    __m128i y_ = _mm_loadu_si128((const __m128i *)(const void *)((p) + 16)); \
    v0 = (mc_shm_vf_t)_mm_cvtph_ps(x_);                                      \
    v1 = (mc_shm_vf_t)_mm_cvtph_ps(_mm_unpackhi_epi64(x_, x_));              \
    v2 = (mc_shm_vf_t)_mm_cvtph_ps(y_);                                      \
    v3 = (mc_shm_vf_t)_mm_cvtph_ps(_mm_unpackhi_epi64(y_, y_));              \
  } while (0)
  size_t i = 0;
  for (; i + MC_SHM_STEP <= count; i += MC_SHM_STEP) {
    size_t b = i * 2;
    mc_shm_vf_t a0, a1, a2, a3, x0, x1, x2, x3;
    MC_SHM_LD_F16C(in[0] + b, a0, a1, a2, a3);
    for (int j = 1; j < n; j++) {
      MC_SHM_LD_F16C(in[j] + b, x0, x1, x2, x3);
      a0 = mc_shm_opv(op, a0, x0);
      a1 = mc_shm_opv(op, a1, x1);
      a2 = mc_shm_opv(op, a2, x2);
      a3 = mc_shm_opv(op, a3, x3);
    }
    __m128i lo = _mm_unpacklo_epi64(_mm_cvtps_ph((__m128)a0, _MM_FROUND_TO_NEAREST_INT),
                                    _mm_cvtps_ph((__m128)a1, _MM_FROUND_TO_NEAREST_INT));
    __m128i hi = _mm_unpacklo_epi64(_mm_cvtps_ph((__m128)a2, _MM_FROUND_TO_NEAREST_INT),
                                    _mm_cvtps_ph((__m128)a3, _MM_FROUND_TO_NEAREST_INT));
    _mm_storeu_si128((__m128i *)(void *)(out + b), lo);
    _mm_storeu_si128((__m128i *)(void *)(out + b + 16), hi);
    if (out2) {
      _mm_storeu_si128((__m128i *)(void *)(out2 + b), lo);
      _mm_storeu_si128((__m128i *)(void *)(out2 + b + 16), hi);
    }
  }
#undef MC_SHM_LD_F16C
  for (; i < count; i++) {
    uint16_t h;
    memcpy(&h, in[0] + i * 2, 2);
    float a = _cvtsh_ss(h);
    for (int j = 1; j < n; j++) {
      memcpy(&h, in[j] + i * 2, 2);
      a = mc_shm_op1(op, a, _cvtsh_ss(h));
    }
    h = _cvtss_sh(a, _MM_FROUND_TO_NEAREST_INT);
    memcpy(out + i * 2, &h, 2);
    if (out2) memcpy(out2 + i * 2, &h, 2);
  }
}

#define MC_SHM_RED_F16C(name, op)                                                           \
  __attribute__((target("f16c"))) static void name(unsigned char *out, unsigned char *out2, \
                                                   const unsigned char *const *in, int n,   \
                                                   size_t count) {                          \
    mc_shm_red_f16c(op, out, out2, in, n, count);                                           \
  }
MC_SHM_RED_F16C(mc_shm_f16c_sum, MOECOMM_SUM)
MC_SHM_RED_F16C(mc_shm_f16c_max, MOECOMM_MAX)
MC_SHM_RED_F16C(mc_shm_f16c_min, MOECOMM_MIN)

static const mc_shm_red_fn_t mc_shm_red_f16c_table[3] = {mc_shm_f16c_sum, mc_shm_f16c_max,
                                                         mc_shm_f16c_min};

/* bf16 on x86-64 CPUs with AVX2 (chosen at run time): the same arithmetic as the SSE2 path
   (fp32 accumulation, the same operators, the same integer rounding) on 8 lanes, about 2x.
   The in-lane unpack and pack of AVX2 scramble the element order the same way both ways. */
static inline __attribute__((always_inline, target("avx2"))) __m256 mc_shm_op_avx2(
    moecomm_redop_t op, __m256 acc, __m256 x) {
  if (op == MOECOMM_SUM) return _mm256_add_ps(acc, x);
  /* the predicate must be a constant (clang checks before inlining) */
  __m256 take =
      op == MOECOMM_MAX ? _mm256_cmp_ps(x, acc, _CMP_GT_OQ) : _mm256_cmp_ps(x, acc, _CMP_LT_OQ);
  return _mm256_blendv_ps(acc, x, take);
}

/* fp32 -> bf16, sign-extended in each 32-bit lane (mc_shm_float_to_bf16 on 8 lanes). */
static inline __attribute__((always_inline, target("avx2"))) __m256i mc_shm_f2bf_avx2(__m256 f) {
  __m256i u = _mm256_castps_si256(f);
  __m256i nan = _mm256_castps_si256(_mm256_cmp_ps(f, f, _CMP_UNORD_Q));
  __m256i odd = _mm256_and_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(1));
  __m256i rounded = _mm256_add_epi32(_mm256_add_epi32(u, _mm256_set1_epi32(0x7fff)), odd);
  __m256i quiet = _mm256_or_si256(u, _mm256_set1_epi32(0x00400000));
  return _mm256_srai_epi32(_mm256_blendv_epi8(rounded, quiet, nan), 16);
}

static inline __attribute__((always_inline, target("avx2"))) void mc_shm_red_bf16_avx2(
    moecomm_redop_t op, unsigned char *out, unsigned char *out2, const unsigned char *const *in,
    int n, size_t count) {
  const __m256i z = _mm256_setzero_si256();
#define MC_SHM_LD_BF16X(p, v0, v1, v2, v3)                                      \
  do {                                                                          \
    __m256i x_ = _mm256_loadu_si256((const __m256i *)(const void *)(p));        \
    __m256i y_ = _mm256_loadu_si256((const __m256i *)(const void *)((p) + 32)); \
    v0 = _mm256_castsi256_ps(_mm256_unpacklo_epi16(z, x_));                     \
    v1 = _mm256_castsi256_ps(_mm256_unpackhi_epi16(z, x_));                     \
    v2 = _mm256_castsi256_ps(_mm256_unpacklo_epi16(z, y_));                     \
    v3 = _mm256_castsi256_ps(_mm256_unpackhi_epi16(z, y_));                     \
  } while (0)
  size_t i = 0;
  for (; i + 32 <= count; i += 32) {
    size_t b = i * 2;
    __m256 a0, a1, a2, a3, x0, x1, x2, x3;
    MC_SHM_LD_BF16X(in[0] + b, a0, a1, a2, a3);
    for (int j = 1; j < n; j++) {
      MC_SHM_LD_BF16X(in[j] + b, x0, x1, x2, x3);
      a0 = mc_shm_op_avx2(op, a0, x0);
      a1 = mc_shm_op_avx2(op, a1, x1);
      a2 = mc_shm_op_avx2(op, a2, x2);
      a3 = mc_shm_op_avx2(op, a3, x3);
    }
    __m256i lo = _mm256_packs_epi32(mc_shm_f2bf_avx2(a0), mc_shm_f2bf_avx2(a1));
    __m256i hi = _mm256_packs_epi32(mc_shm_f2bf_avx2(a2), mc_shm_f2bf_avx2(a3));
    _mm256_storeu_si256((__m256i *)(void *)(out + b), lo);
    _mm256_storeu_si256((__m256i *)(void *)(out + b + 32), hi);
    if (out2) {
      _mm256_storeu_si256((__m256i *)(void *)(out2 + b), lo);
      _mm256_storeu_si256((__m256i *)(void *)(out2 + b + 32), hi);
    }
  }
#undef MC_SHM_LD_BF16X
  for (; i < count; i++) {
    size_t b = i * 2;
    float a = mc_shm_ld1(MC_SHM_BF16, in[0] + b);
    for (int j = 1; j < n; j++) a = mc_shm_op1(op, a, mc_shm_ld1(MC_SHM_BF16, in[j] + b));
    mc_shm_st1(MC_SHM_BF16, out + b, a);
    if (out2) mc_shm_st1(MC_SHM_BF16, out2 + b, a);
  }
}

#define MC_SHM_RED_BF16_AVX2(name, op)                                                      \
  __attribute__((target("avx2"))) static void name(unsigned char *out, unsigned char *out2, \
                                                   const unsigned char *const *in, int n,   \
                                                   size_t count) {                          \
    mc_shm_red_bf16_avx2(op, out, out2, in, n, count);                                      \
  }
MC_SHM_RED_BF16_AVX2(mc_shm_bf16_avx2_sum, MOECOMM_SUM)
MC_SHM_RED_BF16_AVX2(mc_shm_bf16_avx2_max, MOECOMM_MAX)
MC_SHM_RED_BF16_AVX2(mc_shm_bf16_avx2_min, MOECOMM_MIN)

static const mc_shm_red_fn_t mc_shm_red_bf16_avx2_table[3] = {
    mc_shm_bf16_avx2_sum, mc_shm_bf16_avx2_max, mc_shm_bf16_avx2_min};

enum { MC_SHM_CPU_KNOWN = 1, MC_SHM_CPU_F16C = 2, MC_SHM_CPU_AVX2 = 4 };

/* What the CPU offers, asked once; "avx" also means the OS saves the AVX state that every
   VEX-encoded instruction needs. */
static int mc_shm_cpu_features(void) {
  static _Atomic int features;
  int f = atomic_load_explicit(&features, memory_order_relaxed);
  if (f == 0) {
    __builtin_cpu_init();
    f = MC_SHM_CPU_KNOWN;
    if (__builtin_cpu_supports("avx")) {
      /* clang's __builtin_cpu_supports has no "f16c"; F16C shipped with AVX on every CPU
         that has AVX2, and AVX2 is what clang can ask for */
#if defined(__clang__)
      if (__builtin_cpu_supports("avx2")) f |= MC_SHM_CPU_F16C | MC_SHM_CPU_AVX2;
#else
      if (__builtin_cpu_supports("f16c")) f |= MC_SHM_CPU_F16C;
      if (__builtin_cpu_supports("avx2")) f |= MC_SHM_CPU_AVX2;
#endif
    }
    atomic_store_explicit(&features, f, memory_order_relaxed);
  }
  return f;
}
#endif

void mc_shm_reduce(void *out, void *out2, const void *const *in, int n, size_t count,
                   moecomm_dtype_t dtype, moecomm_redop_t op) {
  /* The core validated dtype and op; an out-of-range value here is a bug, not user input. */
  if ((unsigned)dtype >= 4u || (unsigned)op >= 3u || n < 1 || count == 0) return;
  mc_shm_red_fn_t fn = mc_shm_red_table[dtype][op];
#if defined(MC_SHM_X86_DISPATCH)
  if (dtype == MOECOMM_FLOAT16 && (mc_shm_cpu_features() & MC_SHM_CPU_F16C))
    fn = mc_shm_red_f16c_table[op];
  if (dtype == MOECOMM_BFLOAT16 && (mc_shm_cpu_features() & MC_SHM_CPU_AVX2))
    fn = mc_shm_red_bf16_avx2_table[op];
#endif
  fn((unsigned char *)out, (unsigned char *)out2, (const unsigned char *const *)in, n, count);
}
