/* norm.c - the unfused residual add + RMSNorm (norm.h). */
#include "norm.h"

#include "../kernels/rmsnorm_ref.h"

moecomm_result_t mc_norm_apply(int device, moecomm_dtype_t dtype, const mc_rmsnorm_t *n,
                               void *stream, mc_err_t *err) {
  if (n->tokens == 0) return MOECOMM_SUCCESS;
  if (device >= 0)
    return mc_err_set(err, MOECOMM_ERR_NOT_SUPPORTED,
                      "all_reduce_rmsnorm: the unfused norm has no GPU kernel in this build yet");
  (void)stream;
  /* out holds the all-reduce a; the reference reads a row's a before it writes that row's y */
  if (mc_kern_ref_add_rmsnorm((int)dtype, n->tokens, n->hidden, n->out, n->residual, n->weight,
                              n->eps, n->out, n->out_fp8, n->out_scale) != 0)
    return mc_err_set(err, MOECOMM_ERR_INTERNAL,
                      "all_reduce_rmsnorm: the reference norm refused %zu x %zu (dtype %d)",
                      n->tokens, n->hidden, (int)dtype);
  return MOECOMM_SUCCESS;
}
