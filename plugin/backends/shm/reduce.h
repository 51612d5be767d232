/* SPDX-License-Identifier: Apache-2.0 */
/* reduce.h - element-wise reductions over several inputs (reduce.c). */
#ifndef MC_SHM_REDUCE_H_
#define MC_SHM_REDUCE_H_

#include <stddef.h>
#include <stdint.h>

#include "../../../abi/moecomm.h"

/* out[i] = in[0][i] op in[1][i] op ... op in[n-1][i], folded in that order, for i < count; the
   same result is also stored to out2 unless it is NULL.  fp16/bf16 accumulate in fp32 and round
   once to nearest even; int32 sum wraps.  Any alignment; out/out2 may be the same memory as an
   input at the same index (in place), never partially overlapping it. */
void mc_shm_reduce(void *out, void *out2, const void *const *in, int n, size_t count,
                   moecomm_dtype_t dtype, moecomm_redop_t op);

/* Scalar fp16/bf16 <-> fp32 conversions, exactly those the vector loops use. */
float mc_shm_half_to_float(uint16_t h);
uint16_t mc_shm_float_to_half(float f);
float mc_shm_bf16_to_float(uint16_t b);
uint16_t mc_shm_float_to_bf16(float f);

#endif
