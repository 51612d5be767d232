/* SPDX-License-Identifier: Apache-2.0 */
/* lazy.c - creating a communicator's backend state on first use (lazy.h). */
#include "lazy.h"

#include "gpu.h"
#include "log.h"
#include "registry.h"

moecomm_result_t mc_lazy_ensure(mc_comm_t *comm, moecomm_backend_t id, int capturing) {
  mc_comm_backend_t *be = &comm->be[id];
  const mc_backend_ops_t *ops = mc_backend_get(id);
  moecomm_result_t r;
  mc_gpu_scope_t scope;

  if (be->created) return MOECOMM_SUCCESS;
  if (be->declined) return MC_DEFER;
  if (ops == NULL)
    return mc_err_set(comm->err, MOECOMM_ERR_INTERNAL, "the %s backend is not in this build",
                      mc_backend_name(id));
  if (be->failed != MOECOMM_SUCCESS)
    return mc_err_set(comm->err, be->failed,
                      "the %s communicator for %s could not be created earlier (see the first "
                      "error); it stays unusable",
                      ops->name, comm->label);
  MC_INFO("creating the %s communicator for %s%s", ops->name, comm->label,
          capturing ? " inside graph capture" : "");
  if (comm->device >= 0 &&
      (r = mc_gpu_scope_enter(comm->device, &scope, comm->err)) != MOECOMM_SUCCESS)
    return r;
  r = ops->comm_init(comm);
  if (comm->device >= 0) mc_gpu_scope_leave(&scope);
  if (r == MC_DEFER) {
    be->declined = 1;
    return MC_DEFER;
  }
  if (r != MOECOMM_SUCCESS) {
    be->failed = r;
    return mc_err_wrap(comm->err, r, "creating the %s communicator for %s", ops->name, comm->label);
  }
  be->created = 1;
  /* A communicator born inside the capture scope joins it. */
  if (*comm->capturing && ops->capture_begin != NULL) return ops->capture_begin(comm);
  return MOECOMM_SUCCESS;
}

moecomm_result_t mc_lazy_ensure_moe(mc_comm_t *comm, moecomm_backend_t id,
                                    const mc_ep_layout_t *layout, int capturing) {
  const mc_backend_ops_t *ops = mc_backend_get(id);
  mc_gpu_scope_t scope;
  moecomm_result_t r;
  if (comm->be[id].moe != NULL) return MOECOMM_SUCCESS;
  if (ops == NULL || ops->moe_init == NULL)
    return mc_err_set(comm->err, MOECOMM_ERR_NOT_SUPPORTED,
                      "moe_dispatch on %s: the %s backend does not serve it", comm->label,
                      mc_backend_name(id));
  if (id != MOECOMM_BACKEND_CUSTOM && (r = mc_lazy_ensure(comm, id, capturing)) != MOECOMM_SUCCESS)
    return r;
  MC_INFO("creating the %s expert-parallel buffers for %s%s", ops->name, comm->label,
          capturing ? " inside graph capture" : "");
  if (comm->device >= 0 &&
      (r = mc_gpu_scope_enter(comm->device, &scope, comm->err)) != MOECOMM_SUCCESS)
    return r;
  r = ops->moe_init(comm, layout);
  if (comm->device >= 0) mc_gpu_scope_leave(&scope);
  if (r != MOECOMM_SUCCESS && r != MC_DEFER)
    return mc_err_wrap(comm->err, r, "creating the %s expert-parallel buffers for %s", ops->name,
                       comm->label);
  return r;
}
