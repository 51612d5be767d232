/* SPDX-License-Identifier: Apache-2.0 */
/* norm.c - the unfused residual add + RMSNorm (norm.h): the C reference on the CPU, the
 * standalone kernel (kernels/mc_norm.h) on a GPU.  Both take any hidden size and alignment the
 * ABI accepts. */
#include "norm.h"

#include "../kernels/rmsnorm_ref.h"

#if MC_WITH_CUDA
#include <cuda_runtime_api.h>

#include "../kernels/mc_norm.h"
#endif

/* The GPU kernel on stream, reading out (the all-reduce result) and writing y over it. */
static moecomm_result_t mc_norm_gpu(moecomm_dtype_t dtype, const mc_rmsnorm_t *n, void *stream,
                                    mc_err_t *err) {
#if MC_WITH_CUDA
  const mc_kern_norm_t k = {.dtype = (int)dtype,
                            .rows = n->tokens,
                            .hidden = n->hidden,
                            .a = n->out,
                            .residual = n->residual,
                            .weight = n->weight,
                            .eps = n->eps,
                            .y = n->out,
                            .y_fp8 = n->out_fp8,
                            .y_scale = n->out_scale};
  const int e = mc_kern_add_rmsnorm(&k, stream);
  if (e != 0)
    return mc_err_set(err, MOECOMM_ERR_BACKEND,
                      "all_reduce_rmsnorm: launching the norm kernel (%zu x %zu, eps %g) failed: "
                      "%s",
                      n->tokens, n->hidden, (double)n->eps, cudaGetErrorString((cudaError_t)e));
  return MOECOMM_SUCCESS;
#else
  (void)dtype, (void)n, (void)stream;
  return mc_err_set(err, MOECOMM_ERR_UNAVAILABLE, "this moecomm build has no CUDA support");
#endif
}

moecomm_result_t mc_norm_apply(int device, moecomm_dtype_t dtype, const mc_rmsnorm_t *n,
                               void *stream, mc_err_t *err) {
  if (n->tokens == 0) return MOECOMM_SUCCESS;
  if (device >= 0) return mc_norm_gpu(dtype, n, stream, err);
  (void)stream;
  /* out holds the all-reduce a; the reference reads a row's a before it writes that row's y */
  if (mc_kern_ref_add_rmsnorm((int)dtype, n->tokens, n->hidden, n->out, n->residual, n->weight,
                              n->eps, n->out, n->out_fp8, n->out_scale) != 0)
    return mc_err_set(err, MOECOMM_ERR_INTERNAL,
                      "all_reduce_rmsnorm: the reference norm refused %zu x %zu (dtype %d)",
                      n->tokens, n->hidden, (int)dtype);
  return MOECOMM_SUCCESS;
}
