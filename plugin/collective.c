/* SPDX-License-Identifier: Apache-2.0 */
/* collective.c - the launch path of every collective (collective.h): the capture state, the
 * routing decision, and the call into the backend that serves it.  Nothing here decides where a
 * call goes: that is route.c. */
#include "collective.h"

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "gpu.h"
#include "registry.h"
#include "norm.h"
#include "route.h"
#include "util.h"

/* A group of one rank: every collective is a copy of send to recv. */
static moecomm_result_t mc_collective_local(mc_group_t *g, const mc_coll_t *c) {
  const size_t esz = mc_dtype_size(c->dtype);
  const char *src = c->send;
  char *dst = c->recv;
  size_t bytes = c->count * esz;
  if (c->kind == MC_COLL_SEND || c->kind == MC_COLL_RECV)
    return mc_err_set(&g->ctx->err, MOECOMM_ERR_INTERNAL, "%s to itself reached the launch path",
                      mc_coll_name(c->kind));
  if (c->kind == MC_COLL_ALL_TO_ALL_V) {
    src += c->send_displs[0] * esz;
    dst += c->recv_displs[0] * esz;
    bytes = c->recv_counts[0] * esz;
  }
  if (src == dst || bytes == 0) return MOECOMM_SUCCESS;
  if (g->ctx->device < 0) {
    memmove(dst, src, bytes);
    return MOECOMM_SUCCESS;
  }
  return mc_gpu_copy_async(dst, src, bytes, c->stream, &g->ctx->err);
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

/* elements * esz within PTRDIFF_MAX (0: it is not). */
static int mc_collective_fits(size_t elements, size_t esz, size_t mult) {
  size_t bytes;
  return !__builtin_mul_overflow(elements, esz, &bytes) &&
         !__builtin_mul_overflow(bytes, mult, &bytes) && bytes <= PTRDIFF_MAX;
}

/* all_to_all_v: every block's end within PTRDIFF_MAX bytes. */
static int mc_collective_fits_v(const mc_coll_t *c, int n, size_t esz) {
  for (int p = 0; p < n; p++) {
    size_t s_end, r_end;
    if (__builtin_add_overflow(c->send_displs[p], c->send_counts[p], &s_end) ||
        __builtin_add_overflow(c->recv_displs[p], c->recv_counts[p], &r_end) ||
        !mc_collective_fits(s_end, esz, 1) || !mc_collective_fits(r_end, esz, 1))
      return 0;
  }
  return 1;
}

/* The largest buffer of the call (all_gather's recv, reduce_scatter's send, all_to_all's: the
   group's size times count) must fit in PTRDIFF_MAX bytes.  Checked here, so the scatter
   transitions' internal collectives meet the same check as the ABI's. */
static moecomm_result_t mc_collective_check_size(const mc_group_t *g, const mc_coll_t *c) {
  const size_t esz = mc_dtype_size(c->dtype);
  const int per_rank = c->kind == MC_COLL_ALL_GATHER || c->kind == MC_COLL_REDUCE_SCATTER ||
                       c->kind == MC_COLL_ALL_TO_ALL;
  const int ok =
      esz != 0 && (c->kind == MC_COLL_ALL_TO_ALL_V
                       ? mc_collective_fits_v(c, g->comm->size, esz)
                       : mc_collective_fits(c->count, esz, per_rank ? (size_t)g->comm->size : 1));
  if (ok) return MOECOMM_SUCCESS;
  return mc_err_set(&g->ctx->err, MOECOMM_ERR_INVALID_ARGUMENT,
                    "%s: count %zu of %s%s exceeds the address space", mc_coll_name(c->kind),
                    c->count, esz ? mc_dtype_name(c->dtype) : "an unknown dtype",
                    per_rank ? " per rank" : "");
}

/* all_reduce_rmsnorm where no backend fuses it: the all-reduce of x into out, through whatever
   the policy routes an all-reduce of that size to, then the residual add and the norm of the same
   definition (norm.h) in place on out.  Counted as one call. */
static moecomm_result_t mc_collective_rmsnorm_unfused(mc_group_t *g, const mc_coll_t *c) {
  const mc_rmsnorm_t *n = c->norm;
  mc_coll_t ar = *c;
  moecomm_backend_t be = MOECOMM_BACKEND_NONE;
  moecomm_result_t r;
  ar.kind = MC_COLL_ALL_REDUCE;
  ar.send = n->x;
  ar.recv = n->out;
  ar.op = MOECOMM_SUM;
  ar.norm = NULL;
  if ((r = mc_route_call(g, &ar, &be)) != MOECOMM_SUCCESS) return r;
  r = be == MOECOMM_BACKEND_NONE ? mc_collective_local(g, &ar)
                                 : mc_backend_get(be)->coll[MC_COLL_ALL_REDUCE](g->comm, &ar);
  if (r == MOECOMM_SUCCESS) r = mc_norm_apply(g->ctx->device, c->dtype, n, c->stream, &g->ctx->err);
  if (r != MOECOMM_SUCCESS)
    return mc_err_wrap(&g->ctx->err, r, "all_reduce_rmsnorm of %zu x %zu %s on %s (%s, unfused)",
                       n->tokens, n->hidden, mc_dtype_name(c->dtype), g->comm->label,
                       mc_backend_name(be));
  g->served[be]++;
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
  if (be == MOECOMM_BACKEND_NONE && c->kind == MC_COLL_RMSNORM) {
    return mc_collective_rmsnorm_unfused(g, c); /* a one-rank all-reduce is a copy; the norm */
  } else if (be == MOECOMM_BACKEND_NONE) {
    r = mc_collective_local(g, c);
  } else if (mc_backend_get(be)->coll[c->kind] != NULL) {
    r = mc_backend_get(be)->coll[c->kind](g->comm, c);
    if (r != MOECOMM_SUCCESS)
      return mc_err_wrap(&ctx->err, r, "%s of %zu %s on %s (%s)", mc_coll_name(c->kind), c->count,
                         mc_dtype_name(c->dtype), g->comm->label, mc_backend_name(be));
  } else if (c->kind == MC_COLL_RMSNORM) {
    return mc_collective_rmsnorm_unfused(g, c); /* this backend does not fuse it */
  } else {
    return mc_err_set(&ctx->err, MOECOMM_ERR_NOT_SUPPORTED, "%s on %s: the %s backend lacks it",
                      mc_coll_name(c->kind), g->comm->label, mc_backend_name(be));
  }
  if (r == MOECOMM_SUCCESS) g->served[be]++;
  return r;
}
