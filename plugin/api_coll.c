/* api_coll.c - the collective slots: argument checks every collective shares, then the launch
 * path (collective.c).  Sizes are checked there, for internal callers too. */
#include "api_coll.h"

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
  r = mc_api_check_coll(g, name, c->send, c->recv, c->count, c->dtype, check_op, c->op,
                        c->stream);
  if (r == MOECOMM_SUCCESS) r = mc_group_collective(g, c);
  return mc_api_leave(g->ctx, r);
}

moecomm_result_t mc_api_all_reduce(moecomm_group_t *group, const void *send, void *recv,
                                   size_t count, moecomm_dtype_t dtype, moecomm_redop_t op,
                                   void *stream) {
  mc_coll_t c = {.kind = MC_COLL_ALL_REDUCE, .send = send, .recv = recv, .count = count,
                 .dtype = dtype, .op = op, .stream = stream};
  return mc_api_coll(group, "all_reduce", &c, 1);
}

moecomm_result_t mc_api_all_gather(moecomm_group_t *group, const void *send, void *recv,
                                   size_t send_count, moecomm_dtype_t dtype, void *stream) {
  mc_coll_t c = {.kind = MC_COLL_ALL_GATHER, .send = send, .recv = recv, .count = send_count,
                 .dtype = dtype, .op = MOECOMM_SUM, .stream = stream};
  return mc_api_coll(group, "all_gather", &c, 0);
}

moecomm_result_t mc_api_reduce_scatter(moecomm_group_t *group, const void *send, void *recv,
                                       size_t recv_count, moecomm_dtype_t dtype,
                                       moecomm_redop_t op, void *stream) {
  mc_coll_t c = {.kind = MC_COLL_REDUCE_SCATTER, .send = send, .recv = recv, .count = recv_count,
                 .dtype = dtype, .op = op, .stream = stream};
  return mc_api_coll(group, "reduce_scatter", &c, 1);
}

moecomm_result_t mc_api_broadcast(moecomm_group_t *group, const void *send, void *recv,
                                  size_t count, moecomm_dtype_t dtype, int32_t root,
                                  void *stream) {
  mc_coll_t c = {.kind = MC_COLL_BROADCAST, .send = send, .recv = recv, .count = count,
                 .dtype = dtype, .op = MOECOMM_SUM, .root = root, .stream = stream};
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
