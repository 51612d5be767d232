/* SPDX-License-Identifier: Apache-2.0 */
/* data.h - test data for the host, the tests and the benchmarks: deterministic inputs that every
 * rank can regenerate for any peer, exact expected values in fp32, fp16 and bf16, and the
 * conversions between float and the 16-bit types.
 *
 * Input element i of (seed, iteration, rank, op) is a non-zero integer in [-4, 4].  Any sum of up
 * to 64 of them, in any order, has |partial sum| <= 256: every partial sum is exact even in bf16
 * (8 significant bits), so the results can be compared bit for bit. */
#ifndef SHIM_DATA_H_
#define SHIM_DATA_H_

#include <stddef.h>
#include <stdint.h>

#include "../../abi/moecomm.h"

#define SHIM_DATA_MAX_ADDENDS 64 /* largest group whose sums stay exact in bf16 */

typedef struct shim_data_key {
  uint64_t seed;
  int iter;
  int rank; /* world rank that contributes the input */
  int op;   /* index of the op in the step */
} shim_data_key_t;

/* Bytes per element (0 for an unknown dtype) and the name used on the command line. */
size_t shim_dtype_size(moecomm_dtype_t dtype);
const char *shim_dtype_name(moecomm_dtype_t dtype);
/* "bf16" | "fp16" | "fp32" -> *dtype_p; 0 on success. */
int shim_dtype_parse(const char *s, moecomm_dtype_t *dtype_p);

/* splitmix64's finaliser: a good 64-bit mix (also the scatter reference's generator). */
static inline uint64_t shim_data_mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

/* splitmix64: the same sequence on every rank for the same state. */
static inline uint64_t shim_data_rand(uint64_t *state) {
  return shim_data_mix64(*state += 0x9e3779b97f4a7c15ull);
}

/* n random non-zero integers from seed, |v| <= 8 (bf16: 4), so that sums over up to 64 ranks stay
   exact in the dtype (int32 too). */
void shim_data_fill_random(void *buf, size_t n, moecomm_dtype_t dtype, uint64_t seed);
/* Element i of buf as double (NaN for an unknown dtype). */
double shim_data_get(const void *buf, size_t i, moecomm_dtype_t dtype);

/* float <-> fp16 / bf16 bits, rounding to nearest even (overflow to infinity, NaN stays NaN). */
uint16_t shim_data_to_half(float f);
uint16_t shim_data_to_bf16(float f);
float shim_data_from_half(uint16_t h);
float shim_data_from_bf16(uint16_t b);

/* Element i of the input named by key. */
int shim_data_value(const shim_data_key_t *key, size_t i);

/* Writes elements [first, first + n) of key's input to buf (as dtype). */
void shim_data_fill(void *buf, size_t first, size_t n, moecomm_dtype_t dtype,
                    const shim_data_key_t *key);

/* acc[k] += element (first + k) of key's input, k < n: builds exact expected sums. */
void shim_data_accumulate(int32_t *acc, size_t first, size_t n, const shim_data_key_t *key);

/* Bits of the integer v (|v| <= 2048) in dtype: exact. */
uint32_t shim_data_encode(int v, moecomm_dtype_t dtype);
/* Bits of element i of buf (inline: verification calls it for every element). */
static inline uint32_t shim_data_bits(const void *buf, size_t i, moecomm_dtype_t dtype) {
  if (dtype == MOECOMM_FLOAT16 || dtype == MOECOMM_BFLOAT16) return ((const uint16_t *)buf)[i];
  return ((const uint32_t *)buf)[i];
}
/* Stores dtype bits (from shim_data_encode) as element i of buf. */
static inline void shim_data_put_bits(void *buf, size_t i, moecomm_dtype_t dtype, uint32_t bits) {
  if (dtype == MOECOMM_FLOAT16 || dtype == MOECOMM_BFLOAT16)
    ((uint16_t *)buf)[i] = (uint16_t)bits;
  else
    ((uint32_t *)buf)[i] = bits;
}
/* Value of dtype bits, for messages. */
double shim_data_decode(uint32_t bits, moecomm_dtype_t dtype);
/* Equal as numbers with exact bits (+0 and -0 are the same number). */
int shim_data_same(uint32_t got, uint32_t want, moecomm_dtype_t dtype);

#endif
