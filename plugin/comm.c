/* comm.c - the launch path of every collective: capture state, size-1 groups, lazy creation of a
 * communicator's backend state, and routing between a backend and its fallback.  The NULL-slot
 * and MC_DEFER checks live here and nowhere else. */
#include "comm.h"

#include <string.h>

#include "gpu.h"
#include "log.h"
#include "util.h"

#if MC_WITH_CUDA
const mc_backend_ops_t *const mc_backends[4] = {NULL, &mc_shm_ops, &mc_nccl_ops, &mc_custom_ops};
#else
const mc_backend_ops_t *const mc_backends[4] = {NULL, &mc_shm_ops, NULL, NULL};
#endif

static const char *const mc_coll_names[MC_COLL_KIND_COUNT] = {"all_reduce", "all_gather",
                                                              "reduce_scatter", "broadcast"};

moecomm_result_t mc_comm_ensure(mc_comm_t *comm, moecomm_backend_t id, int capturing) {
  mc_comm_backend_t *be = &comm->be[id];
  const mc_backend_ops_t *ops = mc_backends[id];
  mc_context_t *ctx = comm->ctx;
  moecomm_result_t r;
  mc_gpu_scope_t scope;

  if (be->created) return MOECOMM_SUCCESS;
  if (be->declined) return MC_DEFER;
  if (be->failed != MOECOMM_SUCCESS)
    return mc_err_set(&ctx->err, be->failed,
                      "the %s communicator for %s could not be created earlier (see the first "
                      "error); it stays unusable",
                      ops->name, comm->label);
  MC_INFO("creating the %s communicator for %s%s", ops->name, comm->label,
          capturing ? " inside graph capture" : "");
  if (ctx->device >= 0 &&
      (r = mc_gpu_scope_enter(ctx->device, &scope, &ctx->err)) != MOECOMM_SUCCESS)
    return r;
  r = ops->comm_init(comm);
  if (ctx->device >= 0) mc_gpu_scope_leave(&scope);
  if (r == MC_DEFER) {
    be->declined = 1;
    return MC_DEFER;
  }
  if (r != MOECOMM_SUCCESS) {
    be->failed = r;
    return mc_err_wrap(&ctx->err, r, "creating the %s communicator for %s", ops->name, comm->label);
  }
  be->created = 1;
  /* A communicator born inside the capture scope joins it. */
  if (ctx->capturing && ops->capture_begin != NULL) {
    r = ops->capture_begin(comm);
    if (r != MOECOMM_SUCCESS) return r;
  }
  return MOECOMM_SUCCESS;
}

moecomm_backend_t mc_group_backend_in_use(const mc_group_t *group) {
  moecomm_backend_t be = group->backend;
  while (be != MOECOMM_BACKEND_NONE && group->comm->be[be].declined) be = mc_backends[be]->fallback;
  return be;
}

/* A group of one rank: every collective is a copy of send to recv. */
static moecomm_result_t mc_comm_local(mc_comm_t *comm, const mc_coll_t *c) {
  size_t bytes = c->count * mc_dtype_size(c->dtype);
  if (c->send == c->recv || bytes == 0) return MOECOMM_SUCCESS;
  if (comm->ctx->device < 0) {
    memmove(c->recv, c->send, bytes);
    return MOECOMM_SUCCESS;
  }
  return mc_gpu_copy_async(c->recv, c->send, bytes, c->stream, &comm->ctx->err);
}

moecomm_result_t mc_group_collective(mc_group_t *group, mc_coll_t *c) {
  mc_context_t *ctx = group->ctx;
  mc_comm_t *comm = group->comm;
  moecomm_backend_t be = group->backend;
  moecomm_result_t r;

  c->capturing = 0;
  if (ctx->device >= 0) {
    r = mc_gpu_stream_capturing(c->stream, &c->capturing, &ctx->err);
    if (r != MOECOMM_SUCCESS) return r;
    if (c->capturing && !ctx->capturing)
      return mc_err_set(&ctx->err, MOECOMM_ERR_CAPTURE,
                        "%s on %s: the stream is being captured but the context's capture scope "
                        "is not open; call capture_begin before beginning stream capture and "
                        "capture_end after it",
                        mc_coll_names[c->kind], comm->label);
  }
  group->ops++;
  if (c->capturing || (ctx->capturing && ctx->device < 0)) group->captured_ops++;
  if (c->count == 0) return MOECOMM_SUCCESS;
  if (comm->size == 1) return mc_comm_local(comm, c);

  while (be != MOECOMM_BACKEND_NONE) {
    const mc_backend_ops_t *ops = mc_backends[be];
    if (ops == NULL) break;
    if (ops->coll[c->kind] == NULL) {
      be = ops->fallback;
      continue;
    }
    r = mc_comm_ensure(comm, be, c->capturing); /* MC_DEFER: the backend declined the comm */
    if (r == MOECOMM_SUCCESS) r = ops->coll[c->kind](comm, c);
    if (r == MC_DEFER) {
      be = ops->fallback;
      continue;
    }
    if (r != MOECOMM_SUCCESS)
      return mc_err_wrap(&ctx->err, r, "%s of %zu %s on %s (%s)", mc_coll_names[c->kind], c->count,
                         mc_dtype_name(c->dtype), comm->label, ops->name);
    return MOECOMM_SUCCESS;
  }
  return mc_err_set(&ctx->err, MOECOMM_ERR_NOT_SUPPORTED,
                    "%s on %s: no backend of this build serves it (group backend %s)",
                    mc_coll_names[c->kind], comm->label,
                    mc_backends[group->backend] ? mc_backends[group->backend]->name : "none");
}
