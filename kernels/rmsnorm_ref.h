/* SPDX-License-Identifier: Apache-2.0 */
/* rmsnorm_ref.h - the kernels' arithmetic in plain C (kernels/rmsnorm_ref.c): the deterministic
 * all-reduce rule of mc_kernels.h and the fused residual + RMSNorm definition of mc_rmsnorm.h,
 * bit for bit, for tests and for backends that run the same op unfused (shm, NCCL + a norm). */
#ifndef MC_RMSNORM_REF_H_
#define MC_RMSNORM_REF_H_

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Round to nearest even, as the CUDA intrinsics (__float2half_rn, __float2bfloat16_rn, and
   e4m3 with saturation to +-448): NaN gives 0x7fff / 0x7fff / 0x7f. */
uint16_t mc_kern_ref_to_half(float f);
uint16_t mc_kern_ref_to_bf16(float f);
uint8_t mc_kern_ref_to_e4m3(float f);
/* Exact widening. */
float mc_kern_ref_from_half(uint16_t h);
float mc_kern_ref_from_bf16(uint16_t b);
float mc_kern_ref_from_e4m3(uint8_t q);

/* out[i] = the all-reduce of ins[0..n)[i] (moecomm_dtype_t FLOAT32/FLOAT16/BFLOAT16,
   moecomm_redop_t op): fp32, rank order, one rounding.  out may equal any input. */
void mc_kern_ref_all_reduce(const void *const *ins, int n, size_t count, int dtype, int op,
                            void *out);

/* From the all-reduce result a [rows, hidden]: residual <- D(a + residual), y <- the RMSNorm of
   it times weight, and (y_fp8 != NULL) the e4m3 copy and per-row scale.  dtype FLOAT16 or
   BFLOAT16; any hidden >= 1 (past the fused kernels' sizes as kernels/mc_norm.h says); y may be
   a.  Returns 0, or -1 (nothing written) for a bad dtype, hidden 0 or a NULL pointer. */
int mc_kern_ref_add_rmsnorm(int dtype, size_t rows, size_t hidden, const void *a, void *residual,
                            const void *weight, float eps, void *y, uint8_t *y_fp8, float *y_scale);

#ifdef __cplusplus
}
#endif

#endif
