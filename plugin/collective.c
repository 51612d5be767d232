/* collective.c - the launch path of every collective (collective.h): the capture state, the
 * routing decision, and the call into the backend that serves it.  Nothing here decides where a
 * call goes: that is route.c. */
#include "collective.h"

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "gpu.h"
#include "registry.h"
#include "route.h"
#include "util.h"

/* A group of one rank: every collective is a copy of send to recv. */
static moecomm_result_t mc_collective_local(mc_comm_t *comm, const mc_coll_t *c) {
  size_t bytes = c->count * mc_dtype_size(c->dtype);
  if (c->send == c->recv || bytes == 0) return MOECOMM_SUCCESS;
  if (comm->device < 0) {
    memmove(c->recv, c->send, bytes);
    return MOECOMM_SUCCESS;
  }
  return mc_gpu_copy_async(c->recv, c->send, bytes, c->stream, comm->err);
}

/* Whether the call is being captured, and that the capture scope is open if it is. */
static moecomm_result_t mc_collective_capture_state(mc_group_t *g, mc_coll_t *c) {
  mc_context_t *ctx = g->ctx;
  moecomm_result_t r;
  c->capturing = 0;
  if (ctx->device < 0) return MOECOMM_SUCCESS;
  r = mc_gpu_stream_capturing(c->stream, &c->capturing, &ctx->err);
  if (r != MOECOMM_SUCCESS) return r;
  if (c->capturing && !ctx->capturing)
    return mc_err_set(&ctx->err, MOECOMM_ERR_CAPTURE,
                      "%s on %s: the stream is being captured but the context's capture scope "
                      "is not open; call capture_begin before beginning stream capture and "
                      "capture_end after it",
                      mc_coll_name(c->kind), g->comm->label);
  return MOECOMM_SUCCESS;
}

/* The largest buffer of the call (all_gather's recv, reduce_scatter's send: the group's size
   times count) must fit in PTRDIFF_MAX bytes.  Checked here, so the scatter transitions' internal
   collectives meet the same check as the ABI's. */
static moecomm_result_t mc_collective_check_size(const mc_group_t *g, const mc_coll_t *c) {
  const size_t esz = mc_dtype_size(c->dtype);
  const size_t mult = c->kind == MC_COLL_ALL_GATHER || c->kind == MC_COLL_REDUCE_SCATTER
                          ? (size_t)g->comm->size
                          : 1;
  size_t bytes;
  if (esz == 0 || __builtin_mul_overflow(c->count, esz, &bytes) ||
      __builtin_mul_overflow(bytes, mult, &bytes) || bytes > PTRDIFF_MAX)
    return mc_err_set(&g->ctx->err, MOECOMM_ERR_INVALID_ARGUMENT,
                      "%s: count %zu of %s%s exceeds the address space", mc_coll_name(c->kind),
                      c->count, esz ? mc_dtype_name(c->dtype) : "an unknown dtype",
                      mult > 1 ? " per rank" : "");
  return MOECOMM_SUCCESS;
}

moecomm_result_t mc_group_collective(mc_group_t *g, mc_coll_t *c) {
  mc_context_t *ctx = g->ctx;
  moecomm_backend_t be = MOECOMM_BACKEND_NONE;
  moecomm_result_t r;

  if ((r = mc_collective_check_size(g, c)) != MOECOMM_SUCCESS) return r;
  if ((r = mc_collective_capture_state(g, c)) != MOECOMM_SUCCESS) return r;
  g->ops++;
  /* On a CPU context there is no graph, but the capture scope's count check still applies. */
  if (c->capturing || (ctx->capturing && ctx->device < 0)) g->captured_ops++;
  if (c->count == 0) return MOECOMM_SUCCESS;
  if ((r = mc_route_call(g, c, &be)) != MOECOMM_SUCCESS) return r;
  if (be == MOECOMM_BACKEND_NONE) {
    r = mc_collective_local(g->comm, c);
  } else {
    r = mc_backend_get(be)->coll[c->kind](g->comm, c);
    if (r != MOECOMM_SUCCESS)
      return mc_err_wrap(&ctx->err, r, "%s of %zu %s on %s (%s)", mc_coll_name(c->kind), c->count,
                         mc_dtype_name(c->dtype), g->comm->label, mc_backend_name(be));
  }
  if (r == MOECOMM_SUCCESS) g->served[be]++;
  return r;
}
