/* SPDX-License-Identifier: Apache-2.0 */
/* data.c - deterministic inputs, exact expected values and 16-bit float conversions (data.h). */
#include "data.h"

#include <math.h>
#include <string.h>

size_t shim_dtype_size(moecomm_dtype_t dtype) {
  switch (dtype) {
    case MOECOMM_FLOAT32: return 4;
    case MOECOMM_FLOAT16: return 2;
    case MOECOMM_BFLOAT16: return 2;
    case MOECOMM_INT32: return 4;
  }
  return 0;
}

const char *shim_dtype_name(moecomm_dtype_t dtype) {
  switch (dtype) {
    case MOECOMM_FLOAT32: return "fp32";
    case MOECOMM_FLOAT16: return "fp16";
    case MOECOMM_BFLOAT16: return "bf16";
    case MOECOMM_INT32: return "int32";
  }
  return "?";
}

int shim_dtype_parse(const char *s, moecomm_dtype_t *dtype_p) {
  if (s == NULL) return -1;
  if (strcmp(s, "bf16") == 0)
    *dtype_p = MOECOMM_BFLOAT16;
  else if (strcmp(s, "fp16") == 0)
    *dtype_p = MOECOMM_FLOAT16;
  else if (strcmp(s, "fp32") == 0)
    *dtype_p = MOECOMM_FLOAT32;
  else
    return -1;
  return 0;
}

static uint64_t key_base(const shim_data_key_t *key) {
  uint64_t h = shim_data_mix64(key->seed + 0x9e3779b97f4a7c15ull);
  h = shim_data_mix64(h ^ ((uint64_t)(uint32_t)key->iter * 0x9e3779b97f4a7c15ull));
  h = shim_data_mix64(h ^ ((uint64_t)(uint32_t)key->rank * 0xc2b2ae3d27d4eb4full + 1));
  h = shim_data_mix64(h ^ ((uint64_t)(uint32_t)key->op * 0x165667b19e3779f9ull + 2));
  return h;
}

/* Nibble -> {-4..-1, 1..4} from its low 3 bits. */
static int nibble_value(uint64_t word, unsigned nib) {
  int v = (int)((word >> (4 * nib)) & 7u); /* 0..7 */
  return v < 4 ? v - 4 : v - 3;
}

int shim_data_value(const shim_data_key_t *key, size_t i) {
  uint64_t word = shim_data_mix64(key_base(key) + (uint64_t)(i >> 4) * 0x9e3779b97f4a7c15ull);
  return nibble_value(word, (unsigned)(i & 15));
}

static uint32_t f32_bits(float f) {
  uint32_t u;
  memcpy(&u, &f, sizeof(u));
  return u;
}

uint32_t shim_data_encode(int v, moecomm_dtype_t dtype) {
  switch (dtype) {
    case MOECOMM_FLOAT32: return f32_bits((float)v);
    case MOECOMM_BFLOAT16:
      /* |v| <= 256 has at most 8 significant bits: the low 16 bits of the fp32 are zero. */
      return f32_bits((float)v) >> 16;
    case MOECOMM_FLOAT16: {
      uint32_t sign = v < 0 ? 0x8000u : 0u;
      uint32_t a = (uint32_t)(v < 0 ? -v : v);
      int e = 0;
      if (a == 0) return 0;
      while ((a >> (e + 1)) != 0) e++; /* a in [2^e, 2^(e+1)) */
      if (e > 10) a >>= (e - 10);      /* exact only while |v| <= 2048, as documented */
      return sign | ((uint32_t)(e + 15) << 10) | ((e > 10 ? a : a << (10 - e)) & 0x3ffu);
    }
    case MOECOMM_INT32: return (uint32_t)v;
  }
  return 0;
}

void shim_data_fill(void *buf, size_t first, size_t n, moecomm_dtype_t dtype,
                    const shim_data_key_t *key) {
  uint64_t base = key_base(key);
  uint32_t table[8];
  size_t i = first, end = first + n, out = 0;
  for (unsigned k = 0; k < 8; k++)
    table[k] = shim_data_encode(k < 4 ? (int)k - 4 : (int)k - 3, dtype); /* nibble_value */
  while (i < end) {
    uint64_t word = shim_data_mix64(base + (uint64_t)(i >> 4) * 0x9e3779b97f4a7c15ull);
    size_t stop = ((i >> 4) + 1) << 4;
    if (stop > end) stop = end;
    for (; i < stop; i++, out++)
      shim_data_put_bits(buf, out, dtype, table[(word >> (4 * (i & 15))) & 7u]);
  }
}

void shim_data_accumulate(int32_t *acc, size_t first, size_t n, const shim_data_key_t *key) {
  uint64_t base = key_base(key);
  size_t i = first, end = first + n, out = 0;
  while (i < end) {
    uint64_t word = shim_data_mix64(base + (uint64_t)(i >> 4) * 0x9e3779b97f4a7c15ull);
    size_t stop = ((i >> 4) + 1) << 4;
    if (stop > end) stop = end;
    for (; i < stop; i++, out++) acc[out] += nibble_value(word, (unsigned)(i & 15));
  }
}

double shim_data_decode(uint32_t bits, moecomm_dtype_t dtype) {
  float f;
  switch (dtype) {
    case MOECOMM_FLOAT32: memcpy(&f, &bits, sizeof(f)); return f;
    case MOECOMM_BFLOAT16:
      bits <<= 16;
      memcpy(&f, &bits, sizeof(f));
      return f;
    case MOECOMM_FLOAT16: {
      int e = (int)((bits >> 10) & 0x1fu);
      double m = (double)(bits & 0x3ffu);
      double v;
      if (e == 0x1f)
        v = m != 0 ? NAN : INFINITY;
      else if (e == 0)
        v = ldexp(m, -24);
      else
        v = ldexp(m + 1024.0, e - 25);
      return (bits & 0x8000u) ? -v : v;
    }
    case MOECOMM_INT32: return (double)(int32_t)bits;
  }
  return NAN;
}

int shim_data_same(uint32_t got, uint32_t want, moecomm_dtype_t dtype) {
  uint32_t mag = shim_dtype_size(dtype) == 2 ? 0x7fffu : 0x7fffffffu;
  if (got == want) return 1;
  /* +0 and -0: a kernel may legitimately produce either for a zero sum. */
  return dtype != MOECOMM_INT32 && (got & mag) == 0 && (want & mag) == 0;
}

static float bits_f32(uint32_t u) {
  float f;
  memcpy(&f, &u, sizeof(f));
  return f;
}

uint16_t shim_data_to_bf16(float f) {
  uint32_t u = f32_bits(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x0040u); /* quiet NaN */
  u += 0x7fffu + ((u >> 16) & 1u); /* round to nearest, ties to even; overflows to inf */
  return (uint16_t)(u >> 16);
}

float shim_data_from_bf16(uint16_t b) {
  return bits_f32((uint32_t)b << 16);
}

/* A subnormal half (or zero) from the fp32 bits a (sign cleared): the value in units of 2^-24,
   rounded to nearest even. */
static uint16_t half_subnormal(uint32_t a) {
  uint32_t exp = a >> 23, mant, shift, q, rem, half;
  if (exp < 102) return 0; /* below half of the smallest subnormal */
  mant = (a & 0x7fffffu) | 0x800000u;
  shift = 126 - exp; /* value = mant * 2^(exp-150) = q * 2^-24 */
  q = mant >> shift;
  rem = mant & ((1u << shift) - 1u);
  half = 1u << (shift - 1);
  if (rem > half || (rem == half && (q & 1u))) q++;
  return (uint16_t)q;
}

uint16_t shim_data_to_half(float f) {
  uint32_t u = f32_bits(f);
  uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
  uint32_t a = u & 0x7fffffffu, r;
  if (a > 0x7f800000u) return (uint16_t)(sign | 0x7e00u);  /* NaN */
  if (a >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u); /* >= 65520 rounds to inf */
  if (a < 0x38800000u) return (uint16_t)(sign | half_subnormal(a));
  r = a + 0xfffu + ((a >> 13) & 1u); /* ties to even on the 13 dropped bits */
  return (uint16_t)(sign | ((r - 0x38000000u) >> 13));
}

float shim_data_from_half(uint16_t h) {
  uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1fu;
  uint32_t mant = h & 0x3ffu;
  if (exp == 0x1f) return bits_f32(sign | 0x7f800000u | (mant << 13));
  if (exp == 0) {
    float v = (float)mant * (1.0f / 16777216.0f); /* mant * 2^-24, exact */
    return sign ? -v : v;
  }
  return bits_f32(sign | ((exp + 112u) << 23) | (mant << 13));
}

void shim_data_fill_random(void *buf, size_t n, moecomm_dtype_t dtype, uint64_t seed) {
  uint64_t st = seed * 0x2545f4914f6cdd1dull + 0x632be59bd9b4e019ull;
  /* Non-zero integers in [-m, m]: 64 ranks' sum stays within the dtype's exact integers
     (bf16 has 8 significant bits: |sum| <= 256; fp16 11 bits: 512 fits). */
  int m = dtype == MOECOMM_BFLOAT16 ? 4 : 8;
  for (size_t i = 0; i < n; i++) {
    int v = (int)(shim_data_rand(&st) % (uint64_t)(2 * m)) - m; /* [-m, m-1] */
    if (v >= 0) v++;                                            /* [-m, -1] u [1, m] */
    switch (dtype) {
      case MOECOMM_FLOAT32: ((float *)buf)[i] = (float)v; break;
      case MOECOMM_FLOAT16: ((uint16_t *)buf)[i] = shim_data_to_half((float)v); break;
      case MOECOMM_BFLOAT16: ((uint16_t *)buf)[i] = shim_data_to_bf16((float)v); break;
      case MOECOMM_INT32: ((int32_t *)buf)[i] = v; break;
      default: return;
    }
  }
}

double shim_data_get(const void *buf, size_t i, moecomm_dtype_t dtype) {
  switch (dtype) {
    case MOECOMM_FLOAT32: return ((const float *)buf)[i];
    case MOECOMM_FLOAT16: return shim_data_from_half(((const uint16_t *)buf)[i]);
    case MOECOMM_BFLOAT16: return shim_data_from_bf16(((const uint16_t *)buf)[i]);
    case MOECOMM_INT32: return ((const int32_t *)buf)[i];
  }
  return NAN;
}
