/* SPDX-License-Identifier: Apache-2.0 */
/* mc_norm.h - the residual add + RMSNorm alone (kernels/norm.cu): the second half of
 * all_reduce_rmsnorm when the all-reduce ran on its own (NCCL groups, groups of one rank, calls
 * the fused kernels cannot take).
 *
 * From a, the all-reduce result, it computes exactly the definition of mc_rmsnorm.h (v, ss, inv,
 * y and the fp8 copy, every rounding and the order of the sum of squares), so all_reduce_rmsnorm
 * gives the same bits fused or not, and the same as kernels/rmsnorm_ref.c.  Rows that the fused
 * kernels take (hidden a multiple of 8 up to MC_KERN_ROW_MAX_H, every pointer 16-byte aligned) go
 * through the very code of the fused kernels (norm_row.cuh); any other hidden size or alignment
 * through an element-wise path of the same arithmetic, where the last vector of a row may be short
 * (its missing elements add nothing to the sum of squares). */
#ifndef MC_KERN_NORM_H_
#define MC_KERN_NORM_H_

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mc_kern_norm {
  int dtype;           /* MOECOMM_FLOAT16 or MOECOMM_BFLOAT16: a, residual, weight, y */
  size_t rows, hidden; /* T >= 0 (0: nothing is launched), H >= 1 */
  const void *a;       /* [T, H] the all-reduce result */
  void *residual;      /* [T, H]: read, then replaced by D(a + r) */
  const void *weight;  /* [H] */
  float eps;           /* finite, >= 0 */
  void *y;             /* [T, H]; may be a, must not overlap residual */
  void *y_fp8;         /* [T, H] e4m3, or NULL */
  float *y_scale;      /* [T], with y_fp8 (NULL without) */
} mc_kern_norm_t;

/* Enqueues the add + RMSNorm on stream (a cudaStream_t).  Returns a cudaError_t (0: success);
   cudaErrorInvalidValue for arguments outside the above (a NULL buffer with rows > 0, y_fp8
   without y_scale, a dtype other than fp16/bf16, an element count past the address space).
   Buffers need only be aligned to their element size (2 bytes; y_scale 4). */
int mc_kern_add_rmsnorm(const mc_kern_norm_t *args, void *stream);

#ifdef __cplusplus
}
#endif

#endif
