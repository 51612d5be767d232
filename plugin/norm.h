/* SPDX-License-Identifier: Apache-2.0 */
/* norm.h - the residual add and RMSNorm of all_reduce_rmsnorm when it is not fused: the same
 * definition, bit for bit, as the fused kernel (kernels/mc_rmsnorm.h): on the CPU through
 * kernels/rmsnorm_ref.c, on a GPU through a kernel on the call's stream (norm.c). */
#ifndef MC_NORM_H_
#define MC_NORM_H_

#include "backend.h"

/* With n->out holding the all-reduce of x: residual <- D(out + residual), out <- RMSNorm(residual)
 * weight (and the fp8 copy).  device: the context's (MOECOMM_DEVICE_CPU: host buffers). */
moecomm_result_t mc_norm_apply(int device, moecomm_dtype_t dtype, const mc_rmsnorm_t *n,
                               void *stream, mc_err_t *err);

#endif
