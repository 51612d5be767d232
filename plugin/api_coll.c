/* SPDX-License-Identifier: Apache-2.0 */
/* api_coll.c - the collective slots: argument checks every collective shares, then the launch
 * path (collective.c).  Sizes are checked there, for internal callers too. */
#include "api_coll.h"

#include <stddef.h>
#include <stdint.h>

#include "../kernels/mc_shape.h"
#include "api_guard.h"
#include "collective.h"
#include "util.h"

/* The checks every collective shares (after the group is entered). */
static moecomm_result_t mc_api_check_coll(mc_group_t *g, const char *name, const void *send,
                                          const void *recv, size_t count, moecomm_dtype_t dtype,
                                          int check_op, moecomm_redop_t op, void *stream) {
  mc_err_t *err = &g->ctx->err;
  if (mc_dtype_size(dtype) == 0)
    return mc_err_set(err, MOECOMM_ERR_INVALID_ARGUMENT,
                      "%s: dtype %d is not one of MOECOMM_FLOAT32/FLOAT16/BFLOAT16/INT32", name,
                      (int)dtype);
  if (check_op && (op < MOECOMM_SUM || op > MOECOMM_MIN))
    return mc_err_set(err, MOECOMM_ERR_INVALID_ARGUMENT,
                      "%s: op %d is not one of MOECOMM_SUM/MAX/MIN", name, (int)op);
  if (count > 0 && (send == NULL || recv == NULL))
    return mc_err_set(err, MOECOMM_ERR_INVALID_ARGUMENT, "%s: %s buffer is NULL with count %zu",
                      name, send == NULL ? "send" : "recv", count);
  if (g->ctx->device < 0 && stream != NULL)
    return mc_err_set(err, MOECOMM_ERR_INVALID_ARGUMENT,
                      "%s: stream must be NULL on a CPU context (buffers are host memory)", name);
  return MOECOMM_SUCCESS;
}

/* Enter, check, run, leave: the body of every collective slot. */
static moecomm_result_t mc_api_coll(moecomm_group_t *h, const char *name, mc_coll_t *c,
                                    int check_op) {
  mc_group_t *g = NULL;
  moecomm_result_t r = mc_api_enter_group(h, name, &g);
  if (r != MOECOMM_SUCCESS) return r;
  r = mc_api_check_coll(g, name, c->send, c->recv, c->count, c->dtype, check_op, c->op, c->stream);
  if (r == MOECOMM_SUCCESS) r = mc_group_collective(g, c);
  return mc_api_leave(g->ctx, r);
}

moecomm_result_t mc_api_all_reduce(moecomm_group_t *group, const void *send, void *recv,
                                   size_t count, moecomm_dtype_t dtype, moecomm_redop_t op,
                                   void *stream) {
  mc_coll_t c = {.kind = MC_COLL_ALL_REDUCE,
                 .send = send,
                 .recv = recv,
                 .count = count,
                 .dtype = dtype,
                 .op = op,
                 .stream = stream};
  return mc_api_coll(group, "all_reduce", &c, 1);
}

moecomm_result_t mc_api_all_gather(moecomm_group_t *group, const void *send, void *recv,
                                   size_t send_count, moecomm_dtype_t dtype, void *stream) {
  mc_coll_t c = {.kind = MC_COLL_ALL_GATHER,
                 .send = send,
                 .recv = recv,
                 .count = send_count,
                 .dtype = dtype,
                 .op = MOECOMM_SUM,
                 .stream = stream};
  return mc_api_coll(group, "all_gather", &c, 0);
}

moecomm_result_t mc_api_reduce_scatter(moecomm_group_t *group, const void *send, void *recv,
                                       size_t recv_count, moecomm_dtype_t dtype, moecomm_redop_t op,
                                       void *stream) {
  mc_coll_t c = {.kind = MC_COLL_REDUCE_SCATTER,
                 .send = send,
                 .recv = recv,
                 .count = recv_count,
                 .dtype = dtype,
                 .op = op,
                 .stream = stream};
  return mc_api_coll(group, "reduce_scatter", &c, 1);
}

moecomm_result_t mc_api_broadcast(moecomm_group_t *group, const void *send, void *recv,
                                  size_t count, moecomm_dtype_t dtype, int32_t root, void *stream) {
  mc_coll_t c = {.kind = MC_COLL_BROADCAST,
                 .send = send,
                 .recv = recv,
                 .count = count,
                 .dtype = dtype,
                 .op = MOECOMM_SUM,
                 .root = root,
                 .stream = stream};
  mc_group_t *g = NULL;
  moecomm_result_t r = mc_api_enter_group(group, "broadcast", &g);
  if (r != MOECOMM_SUCCESS) return r;
  if (root < 0 || root >= g->comm->size)
    r = mc_err_set(&g->ctx->err, MOECOMM_ERR_INVALID_ARGUMENT,
                   "broadcast: root %d is not an index in group %s of %d ranks", (int)root,
                   mc_topo_kind_name(g->kind), g->comm->size);
  /* Only the root reads send: a non-root may pass NULL. */
  if (r == MOECOMM_SUCCESS)
    r = mc_api_check_coll(g, "broadcast", root == g->comm->rank ? send : recv, recv, count, dtype,
                          0, MOECOMM_SUM, stream);
  if (r == MOECOMM_SUCCESS) r = mc_group_collective(g, &c);
  return mc_api_leave(g->ctx, r);
}

/* ---- ABI 1.2 ---- */

/* send and recv share their checks: a peer that is another member of the group. */
static moecomm_result_t mc_api_p2p(moecomm_group_t *h, const char *name, mc_coll_t *c) {
  mc_group_t *g = NULL;
  moecomm_result_t r = mc_api_enter_group(h, name, &g);
  if (r != MOECOMM_SUCCESS) return r;
  if (c->peer < 0 || c->peer >= g->comm->size || c->peer == g->comm->rank)
    r = mc_err_set(&g->ctx->err, MOECOMM_ERR_INVALID_ARGUMENT,
                   "%s: peer %d is not another member of group %s (its %d ranks are 0..%d, this "
                   "rank is %d)",
                   name, (int)c->peer, mc_topo_kind_name(g->kind), g->comm->size, g->comm->size - 1,
                   g->comm->rank);
  if (r == MOECOMM_SUCCESS)
    r = mc_api_check_coll(g, name, c->send, c->recv, c->count, c->dtype, 0, MOECOMM_SUM, c->stream);
  if (r == MOECOMM_SUCCESS) r = mc_group_collective(g, c);
  return mc_api_leave(g->ctx, r);
}

moecomm_result_t mc_api_send(moecomm_group_t *group, const void *buf, size_t count,
                             moecomm_dtype_t dtype, int32_t peer, void *stream) {
  /* recv is send here: the checks want a non-NULL pair and the backends read only send */
  mc_coll_t c = {.kind = MC_COLL_SEND,
                 .send = buf,
                 .recv = (void *)buf,
                 .count = count,
                 .dtype = dtype,
                 .peer = peer,
                 .stream = stream};
  return mc_api_p2p(group, "send", &c);
}

moecomm_result_t mc_api_recv(moecomm_group_t *group, void *buf, size_t count, moecomm_dtype_t dtype,
                             int32_t peer, void *stream) {
  mc_coll_t c = {.kind = MC_COLL_RECV,
                 .send = buf,
                 .recv = buf,
                 .count = count,
                 .dtype = dtype,
                 .peer = peer,
                 .stream = stream};
  return mc_api_p2p(group, "recv", &c);
}

/* Bytes [start, start + count) * esz of two arrays overlap. */
static int mc_api_overlap(const void *a, size_t a_bytes, const void *b, size_t b_bytes) {
  const uintptr_t a0 = (uintptr_t)a, b0 = (uintptr_t)b;
  return a_bytes > 0 && b_bytes > 0 && a0 < b0 + b_bytes && b0 < a0 + a_bytes;
}

moecomm_result_t mc_api_all_to_all(moecomm_group_t *group, const void *send, void *recv,
                                   size_t count, moecomm_dtype_t dtype, void *stream) {
  mc_coll_t c = {.kind = MC_COLL_ALL_TO_ALL,
                 .send = send,
                 .recv = recv,
                 .count = count,
                 .dtype = dtype,
                 .op = MOECOMM_SUM,
                 .stream = stream};
  mc_group_t *g = NULL;
  moecomm_result_t r = mc_api_enter_group(group, "all_to_all", &g);
  if (r != MOECOMM_SUCCESS) return r;
  r = mc_api_check_coll(g, "all_to_all", send, recv, count, dtype, 0, MOECOMM_SUM, stream);
  /* (sizes within PTRDIFF_MAX: checked on the launch path, before this product is used) */
  if (r == MOECOMM_SUCCESS && count <= PTRDIFF_MAX / 8 / (size_t)g->comm->size &&
      mc_api_overlap(send, count * (size_t)g->comm->size * mc_dtype_size(dtype), recv,
                     count * (size_t)g->comm->size * mc_dtype_size(dtype)))
    r = mc_err_set(&g->ctx->err, MOECOMM_ERR_INVALID_ARGUMENT, "all_to_all: send and recv overlap");
  if (r == MOECOMM_SUCCESS) r = mc_group_collective(g, &c);
  return mc_api_leave(g->ctx, r);
}

/* The bytes [*lo_p, *hi_p) that the non-empty blocks span; 0 when there are none, or when an end
   does not fit (the launch path's size check refuses those calls). */
static int mc_api_v_extent(int n, const size_t *counts, const size_t *displs, size_t esz,
                           size_t *lo_p, size_t *hi_p) {
  size_t lo = SIZE_MAX, hi = 0;
  for (int p = 0; p < n; p++) {
    size_t end, end_b;
    if (counts[p] == 0) continue;
    if (__builtin_add_overflow(displs[p], counts[p], &end) ||
        __builtin_mul_overflow(end, esz, &end_b))
      return 0;
    if (displs[p] * esz < lo) lo = displs[p] * esz;
    if (end_b > hi) hi = end_b;
  }
  *lo_p = lo;
  *hi_p = hi;
  return hi > 0;
}

/* all_to_all_v's host arrays: present, and the send and recv blocks apart (as all_to_all's
   buffers): the bytes the send blocks span must not overlap those the recv blocks span. */
static moecomm_result_t mc_api_check_v(mc_group_t *g, const void *send, const size_t *sc,
                                       const size_t *sd, const void *recv, const size_t *rc,
                                       const size_t *rd, size_t esz) {
  size_t total_s = 0, total_r = 0, s_lo, s_hi, r_lo, r_hi;
  if (sc == NULL || sd == NULL || rc == NULL || rd == NULL)
    return mc_err_set(&g->ctx->err, MOECOMM_ERR_INVALID_ARGUMENT,
                      "all_to_all_v: the counts and displacements (host arrays of %d entries) "
                      "must not be NULL",
                      g->comm->size);
  for (int p = 0; p < g->comm->size; p++) {
    total_s |= sc[p];
    total_r |= rc[p];
  }
  if ((total_s != 0 && send == NULL) || (total_r != 0 && recv == NULL))
    return mc_err_set(&g->ctx->err, MOECOMM_ERR_INVALID_ARGUMENT,
                      "all_to_all_v: %s is NULL with elements to move",
                      total_s != 0 && send == NULL ? "send" : "recv");
  /* the one pair this rank can check alone: what it sends itself */
  if (sc[g->comm->rank] != rc[g->comm->rank])
    return mc_err_set(&g->ctx->err, MOECOMM_ERR_INVALID_ARGUMENT,
                      "all_to_all_v: send_counts[%d]=%zu and recv_counts[%d]=%zu (this rank to "
                      "itself) must agree",
                      g->comm->rank, sc[g->comm->rank], g->comm->rank, rc[g->comm->rank]);
  if (mc_api_v_extent(g->comm->size, sc, sd, esz, &s_lo, &s_hi) &&
      mc_api_v_extent(g->comm->size, rc, rd, esz, &r_lo, &r_hi) &&
      mc_api_overlap((const char *)send + s_lo, s_hi - s_lo, (const char *)recv + r_lo,
                     r_hi - r_lo))
    return mc_err_set(&g->ctx->err, MOECOMM_ERR_INVALID_ARGUMENT,
                      "all_to_all_v: the send blocks (bytes %zu..%zu of send) and the recv blocks "
                      "(bytes %zu..%zu of recv) overlap",
                      s_lo, s_hi, r_lo, r_hi);
  return MOECOMM_SUCCESS;
}

moecomm_result_t mc_api_all_to_all_v(moecomm_group_t *group, const void *send,
                                     const size_t *send_counts, const size_t *send_displs,
                                     void *recv, const size_t *recv_counts,
                                     const size_t *recv_displs, moecomm_dtype_t dtype,
                                     void *stream) {
  mc_coll_t c = {.kind = MC_COLL_ALL_TO_ALL_V,
                 .send = send,
                 .recv = recv,
                 .count = 1,
                 .dtype = dtype,
                 .op = MOECOMM_SUM,
                 .stream = stream,
                 .send_counts = send_counts,
                 .send_displs = send_displs,
                 .recv_counts = recv_counts,
                 .recv_displs = recv_displs};
  mc_group_t *g = NULL;
  moecomm_result_t r = mc_api_enter_group(group, "all_to_all_v", &g);
  if (r != MOECOMM_SUCCESS) return r;
  if (mc_dtype_size(dtype) == 0)
    r = mc_err_set(&g->ctx->err, MOECOMM_ERR_INVALID_ARGUMENT,
                   "all_to_all_v: dtype %d is not one of MOECOMM_FLOAT32/FLOAT16/BFLOAT16/INT32",
                   (int)dtype);
  else if (g->ctx->device < 0 && stream != NULL)
    r = mc_err_set(&g->ctx->err, MOECOMM_ERR_INVALID_ARGUMENT,
                   "all_to_all_v: stream must be NULL on a CPU context (buffers are host memory)");
  else
    r = mc_api_check_v(g, send, send_counts, send_displs, recv, recv_counts, recv_displs,
                       mc_dtype_size(dtype));
  if (r == MOECOMM_SUCCESS) r = mc_group_collective(g, &c);
  return mc_api_leave(g->ctx, r);
}

/* The fused op's arguments, read in the caller's size and checked. */
static moecomm_result_t mc_api_read_rmsnorm(mc_group_t *g, const moecomm_rmsnorm_args_t *args,
                                            moecomm_rmsnorm_args_t *a, mc_rmsnorm_t *n) {
  mc_err_t *err = &g->ctx->err;
  size_t elems;
  moecomm_result_t r =
      mc_api_read_in(a, sizeof(*a), args, MOECOMM_STRUCT_SIZE(moecomm_rmsnorm_args_t, out_scale),
                     "all_reduce_rmsnorm: args", err);
  if (r != MOECOMM_SUCCESS) return r;
  if (a->dtype != MOECOMM_BFLOAT16 && a->dtype != MOECOMM_FLOAT16)
    return mc_err_set(err, MOECOMM_ERR_INVALID_ARGUMENT,
                      "all_reduce_rmsnorm: dtype %d must be MOECOMM_BFLOAT16 or MOECOMM_FLOAT16",
                      (int)a->dtype);
  if (!(a->eps >= 0.0f) || a->hidden == 0 || __builtin_mul_overflow(a->tokens, a->hidden, &elems) ||
      elems > PTRDIFF_MAX / 2)
    return mc_err_set(err, MOECOMM_ERR_INVALID_ARGUMENT,
                      "all_reduce_rmsnorm: eps %g must be >= 0 and hidden %zu > 0 (tokens %zu)",
                      (double)a->eps, a->hidden, a->tokens);
  if (a->tokens > 0 && (a->x == NULL || a->residual == NULL || a->weight == NULL ||
                        a->out == NULL || (a->out_fp8 != NULL && a->out_scale == NULL)))
    return mc_err_set(err, MOECOMM_ERR_INVALID_ARGUMENT,
                      "all_reduce_rmsnorm: x, residual, weight and out must not be NULL (and "
                      "out_scale with out_fp8)");
  if (mc_api_overlap(a->out, elems * 2, a->x, elems * 2) ||
      mc_api_overlap(a->out, elems * 2, a->residual, elems * 2))
    return mc_err_set(err, MOECOMM_ERR_INVALID_ARGUMENT,
                      "all_reduce_rmsnorm: out overlaps x or residual");
  n->eps = a->eps;
  n->tokens = a->tokens;
  n->hidden = a->hidden;
  n->x = a->x;
  n->residual = a->residual;
  n->weight = a->weight;
  n->out = a->out;
  n->out_fp8 = a->out_fp8;
  n->out_scale = a->out_scale;
  return MOECOMM_SUCCESS;
}

moecomm_result_t mc_api_all_reduce_rmsnorm(moecomm_group_t *group,
                                           const moecomm_rmsnorm_args_t *args, void *stream) {
  moecomm_rmsnorm_args_t a;
  mc_rmsnorm_t n;
  mc_group_t *g = NULL;
  moecomm_result_t r = mc_api_enter_group(group, "all_reduce_rmsnorm", &g);
  if (r != MOECOMM_SUCCESS) return r;
  r = mc_api_read_rmsnorm(g, args, &a, &n);
  if (r == MOECOMM_SUCCESS && g->ctx->device < 0 && stream != NULL)
    r = mc_err_set(&g->ctx->err, MOECOMM_ERR_INVALID_ARGUMENT,
                   "all_reduce_rmsnorm: stream must be NULL on a CPU context");
  if (r == MOECOMM_SUCCESS) {
    mc_coll_t c = {.kind = MC_COLL_RMSNORM,
                   .send = n.x,
                   .recv = n.out,
                   .count = n.tokens * n.hidden,
                   .dtype = (moecomm_dtype_t)a.dtype,
                   .op = MOECOMM_SUM,
                   .stream = stream,
                   .norm = &n};
    r = mc_group_collective(g, &c);
  }
  return mc_api_leave(g->ctx, r);
}
