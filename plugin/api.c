/* api.c - the ABI boundary: the exported entry point, version negotiation, the function table,
 * and the argument checks every slot makes before anything else runs.  Output arguments are
 * written only on success; messages go to the context (or to the thread when there is none). */
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "capture.h"
#include "collective.h"
#include "log.h"
#include "planner.h"
#include "registry.h"
#include "route.h"
#include "scatter.h"
#include "util.h"

#ifndef MC_PLUGIN_NAME
#define MC_PLUGIN_NAME "moecomm"
#endif
#ifndef MC_VERSION
#define MC_VERSION "0.0.0"
#endif

#define MC_ABI_OLDEST MOECOMM_ABI_VERSION_MAKE(1, 0)

static _Atomic uint32_t mc_api_negotiated = MOECOMM_ABI_VERSION;

/* ---- helpers ---- */

/* A handle is checked by its magic: a NULL, destroyed or wrong-kind handle is refused (a wild
   pointer still cannot be told apart). */
static int mc_api_ctx_ok(const mc_context_t *ctx) {
  return ctx != NULL && ctx->magic == MC_CONTEXT_MAGIC;
}
static int mc_api_group_ok(const mc_group_t *g) {
  return g != NULL && g->magic == MC_GROUP_MAGIC;
}

static mc_err_t *mc_api_err(const mc_context_t *ctx) {
  return ctx != NULL ? (mc_err_t *)&ctx->err : mc_err_thread();
}

/* Copies min(caller's struct_size, ours) bytes of `src` to the caller's struct `dst`, keeping the
   caller's struct_size; refuses a struct smaller than its 1.0 layout. */
static moecomm_result_t mc_api_write_out(void *dst, const void *src, size_t ours, size_t min_size,
                                         const char *what, mc_err_t *err) {
  size_t theirs = *(const size_t *)dst;
  if (theirs < min_size)
    return mc_err_set(err, MOECOMM_ERR_STRUCT_SIZE,
                      "%s struct_size %zu is smaller than the ABI 1.0 layout (%zu bytes)", what,
                      theirs, min_size);
  memcpy((char *)dst + sizeof(size_t), (const char *)src + sizeof(size_t),
         MC_MIN(theirs, ours) - sizeof(size_t));
  return MOECOMM_SUCCESS;
}

/* ---- context ---- */

static const char *mc_api_result_string(moecomm_result_t result) {
  return mc_result_string(result);
}

static const char *mc_api_last_error(const moecomm_context_t *ctx) {
  if (ctx != NULL && !mc_api_ctx_ok(ctx)) return "last_error: not a live moecomm context";
  return mc_api_err(ctx)->msg;
}

static moecomm_result_t mc_api_context_create(const moecomm_context_params_t *params,
                                              moecomm_context_t **ctx_p) {
  mc_context_t *ctx = NULL;
  mc_err_t *err = mc_err_thread();
  moecomm_result_t r;
  mc_err_clear(err);
  if (ctx_p == NULL)
    return mc_err_set(err, MOECOMM_ERR_INVALID_ARGUMENT, "context_create: ctx_p is NULL");
  r = mc_context_create(params, &ctx, err);
  if (r != MOECOMM_SUCCESS) return r;
  ctx->abi_version = atomic_load(&mc_api_negotiated);
  *ctx_p = ctx;
  return MOECOMM_SUCCESS;
}

static moecomm_result_t mc_api_context_destroy(moecomm_context_t *ctx) {
  if (ctx == NULL) return MOECOMM_SUCCESS;
  if (!mc_api_ctx_ok(ctx))
    return mc_err_set(mc_err_thread(), MOECOMM_ERR_INVALID_ARGUMENT,
                      "context_destroy: not a live moecomm context (destroyed twice?)");
  mc_context_destroy(ctx);
  return MOECOMM_SUCCESS;
}

static moecomm_result_t mc_api_context_info(const moecomm_context_t *ctx,
                                            moecomm_context_info_t *info_p) {
  moecomm_context_info_t info;
  if (!mc_api_ctx_ok(ctx))
    return mc_err_set(mc_err_thread(), MOECOMM_ERR_INVALID_ARGUMENT,
                      "context_info: ctx is NULL or not a live moecomm context");
  if (info_p == NULL)
    return mc_err_set(mc_api_err(ctx), MOECOMM_ERR_INVALID_ARGUMENT,
                      "context_info: info_p is NULL");
  memset(&info, 0, sizeof(info));
  info.struct_size = sizeof(info);
  info.device = ctx->device;
  info.local_rank = ctx->boot.world.local_rank;
  info.local_size = ctx->boot.world.local_size;
  info.num_hosts = ctx->boot.world.num_hosts;
  info.abi_version = ctx->abi_version;
  return mc_api_write_out(info_p, &info, sizeof(info),
                          MOECOMM_STRUCT_SIZE(moecomm_context_info_t, abi_version), "context_info",
                          mc_api_err(ctx));
}

/* ---- groups ---- */

static moecomm_result_t mc_api_group_get(moecomm_context_t *ctx, moecomm_group_kind_t kind,
                                         moecomm_group_t **group_p) {
  if (!mc_api_ctx_ok(ctx))
    return mc_err_set(mc_err_thread(), MOECOMM_ERR_INVALID_ARGUMENT,
                      "group_get: ctx is NULL or not a live moecomm context");
  if ((int)kind < 0 || (int)kind >= MC_GROUP_KIND_COUNT)
    return mc_err_set(&ctx->err, MOECOMM_ERR_INVALID_ARGUMENT,
                      "group_get: kind %d is not a group kind (0..%d)", (int)kind,
                      MC_GROUP_KIND_COUNT - 1);
  if (group_p == NULL)
    return mc_err_set(&ctx->err, MOECOMM_ERR_INVALID_ARGUMENT, "group_get: group_p is NULL");
  *group_p = &ctx->groups[kind];
  return MOECOMM_SUCCESS;
}

static moecomm_result_t mc_api_group_stats(const moecomm_group_t *group,
                                           moecomm_group_stats_t *stats_p) {
  moecomm_group_stats_t st;
  const mc_comm_t *comm;
  moecomm_backend_t be;
  const char *name;
  if (!mc_api_group_ok(group))
    return mc_err_set(mc_err_thread(), MOECOMM_ERR_INVALID_ARGUMENT,
                      "group_stats: group is NULL or not a moecomm group handle");
  if (stats_p == NULL)
    return mc_err_set(&group->ctx->err, MOECOMM_ERR_INVALID_ARGUMENT,
                      "group_stats: stats_p is NULL");
  comm = group->comm;
  be = mc_route_group_backend(group, &name);
  memset(&st, 0, sizeof(st));
  st.struct_size = sizeof(st);
  st.kind = group->kind;
  st.kind_name = mc_topo_kind_name(group->kind);
  st.size = comm->size;
  st.rank = comm->rank;
  st.ranks = comm->ranks;
  st.backend = be;
  st.backend_name = name;
  st.comm_id = comm->id;
  for (int b = MOECOMM_BACKEND_NONE + 1; b < MC_BACKEND_COUNT; b++) {
    st.created |= comm->be[b].created;
    st.device_bytes += comm->be[b].device_bytes;
    st.host_bytes += comm->be[b].host_bytes;
  }
  st.ops = group->ops;
  return mc_api_write_out(stats_p, &st, sizeof(st), MOECOMM_STRUCT_SIZE(moecomm_group_stats_t, ops),
                          "group_stats", &group->ctx->err);
}

/* ---- collectives ---- */

/* The checks every collective shares; `elems_p` gets the largest buffer's element count. */
static moecomm_result_t mc_api_check_coll(mc_group_t *group, const char *name, const void *send,
                                          void *recv, size_t count, moecomm_dtype_t dtype,
                                          int check_op, moecomm_redop_t op, void *stream) {
  mc_err_t *err;
  size_t esz;
  if (!mc_api_group_ok(group))
    return mc_err_set(mc_err_thread(), MOECOMM_ERR_INVALID_ARGUMENT,
                      "%s: group is NULL or not a moecomm group handle", name);
  err = &group->ctx->err;
  esz = mc_dtype_size(dtype);
  if (esz == 0)
    return mc_err_set(err, MOECOMM_ERR_INVALID_ARGUMENT,
                      "%s: dtype %d is not one of MOECOMM_FLOAT32/FLOAT16/BFLOAT16/INT32", name,
                      (int)dtype);
  if (check_op && (op < MOECOMM_SUM || op > MOECOMM_MIN))
    return mc_err_set(err, MOECOMM_ERR_INVALID_ARGUMENT,
                      "%s: op %d is not one of MOECOMM_SUM/MAX/MIN", name, (int)op);
  if (count > 0 && (send == NULL || recv == NULL))
    return mc_err_set(err, MOECOMM_ERR_INVALID_ARGUMENT, "%s: %s buffer is NULL with count %zu",
                      name, send == NULL ? "send" : "recv", count);
  if (group->ctx->device < 0 && stream != NULL)
    return mc_err_set(err, MOECOMM_ERR_INVALID_ARGUMENT,
                      "%s: stream must be NULL on a CPU context (buffers are host memory)", name);
  return MOECOMM_SUCCESS;
}

static moecomm_result_t mc_api_all_reduce(moecomm_group_t *group, const void *send, void *recv,
                                          size_t count, moecomm_dtype_t dtype, moecomm_redop_t op,
                                          void *stream) {
  mc_coll_t c = {.kind = MC_COLL_ALL_REDUCE, .send = send, .recv = recv, .count = count, .dtype = dtype, .op = op, .root = 0, .stream = stream};
  moecomm_result_t r =
      mc_api_check_coll(group, "all_reduce", send, recv, count, dtype, 1, op, stream);
  return r != MOECOMM_SUCCESS ? r : mc_group_collective(group, &c);
}

static moecomm_result_t mc_api_all_gather(moecomm_group_t *group, const void *send, void *recv,
                                          size_t send_count, moecomm_dtype_t dtype, void *stream) {
  mc_coll_t c = {.kind = MC_COLL_ALL_GATHER, .send = send, .recv = recv, .count = send_count, .dtype = dtype, .op = MOECOMM_SUM, .root = 0, .stream = stream};
  moecomm_result_t r =
      mc_api_check_coll(group, "all_gather", send, recv, send_count, dtype, 0, MOECOMM_SUM, stream);
  return r != MOECOMM_SUCCESS ? r : mc_group_collective(group, &c);
}

static moecomm_result_t mc_api_reduce_scatter(moecomm_group_t *group, const void *send, void *recv,
                                              size_t recv_count, moecomm_dtype_t dtype,
                                              moecomm_redop_t op, void *stream) {
  mc_coll_t c = {.kind = MC_COLL_REDUCE_SCATTER, .send = send, .recv = recv, .count = recv_count, .dtype = dtype, .op = op, .root = 0, .stream = stream};
  moecomm_result_t r =
      mc_api_check_coll(group, "reduce_scatter", send, recv, recv_count, dtype, 1, op, stream);
  return r != MOECOMM_SUCCESS ? r : mc_group_collective(group, &c);
}

static moecomm_result_t mc_api_broadcast(moecomm_group_t *group, const void *send, void *recv,
                                         size_t count, moecomm_dtype_t dtype, int32_t root,
                                         void *stream) {
  mc_coll_t c = {.kind = MC_COLL_BROADCAST, .send = send, .recv = recv, .count = count, .dtype = dtype, .op = MOECOMM_SUM, .root = root, .stream = stream};
  moecomm_result_t r;
  if (mc_api_group_ok(group) && (root < 0 || root >= group->comm->size))
    return mc_err_set(&group->ctx->err, MOECOMM_ERR_INVALID_ARGUMENT,
                      "broadcast: root %d is not an index in group %s of %d ranks", (int)root,
                      mc_topo_kind_name(group->kind), group->comm->size);
  /* Only the root reads send: a non-root may pass NULL. */
  r = mc_api_check_coll(group, "broadcast",
                        mc_api_group_ok(group) && root == group->comm->rank ? send : recv, recv,
                        count, dtype, 0, MOECOMM_SUM, stream);
  return r != MOECOMM_SUCCESS ? r : mc_group_collective(group, &c);
}

/* ---- capture and planning ---- */

static moecomm_result_t mc_api_capture_begin(moecomm_context_t *ctx, void *stream) {
  if (!mc_api_ctx_ok(ctx))
    return mc_err_set(mc_err_thread(), MOECOMM_ERR_INVALID_ARGUMENT,
                      "capture_begin: ctx is NULL or not a live moecomm context");
  if (ctx->device < 0 && stream != NULL)
    return mc_err_set(&ctx->err, MOECOMM_ERR_INVALID_ARGUMENT,
                      "capture_begin: stream must be NULL on a CPU context");
  return mc_capture_begin(ctx);
}

static moecomm_result_t mc_api_capture_end(moecomm_context_t *ctx, void *stream) {
  if (!mc_api_ctx_ok(ctx))
    return mc_err_set(mc_err_thread(), MOECOMM_ERR_INVALID_ARGUMENT,
                      "capture_end: ctx is NULL or not a live moecomm context");
  if (ctx->device < 0 && stream != NULL)
    return mc_err_set(&ctx->err, MOECOMM_ERR_INVALID_ARGUMENT,
                      "capture_end: stream must be NULL on a CPU context");
  return mc_capture_end(ctx);
}

static moecomm_result_t mc_api_plan_capture_sizes(const moecomm_context_t *ctx,
                                                  const moecomm_plan_params_t *params,
                                                  int32_t *sizes, size_t capacity, size_t *num_p,
                                                  int32_t *multiple_p) {
  if (!mc_api_ctx_ok(ctx))
    return mc_err_set(mc_err_thread(), MOECOMM_ERR_INVALID_ARGUMENT,
                      "plan_capture_sizes: ctx is NULL or not a live moecomm context");
  return mc_plan_capture_sizes(ctx, params, sizes, capacity, num_p, multiple_p, mc_api_err(ctx));
}

/* ---- scatter modes (ABI 1.1) ---- */

static moecomm_result_t mc_api_layer_mode(const moecomm_context_t *ctx, moecomm_layer_kind_t layer,
                                          moecomm_scatter_mode_t *mode_p) {
  if (!mc_api_ctx_ok(ctx))
    return mc_err_set(mc_err_thread(), MOECOMM_ERR_INVALID_ARGUMENT,
                      "layer_mode: ctx is NULL or not a live moecomm context");
  if (mode_p == NULL)
    return mc_err_set(mc_api_err(ctx), MOECOMM_ERR_INVALID_ARGUMENT, "layer_mode: mode_p is NULL");
  return mc_layer_mode(ctx, (int)layer, mode_p, mc_api_err(ctx));
}

static moecomm_result_t mc_api_mode_rows(const moecomm_context_t *ctx, moecomm_scatter_mode_t mode,
                                         const int32_t *tokens, size_t *rows_p) {
  if (!mc_api_ctx_ok(ctx))
    return mc_err_set(mc_err_thread(), MOECOMM_ERR_INVALID_ARGUMENT,
                      "mode_rows: ctx is NULL or not a live moecomm context");
  return mc_mode_rows(ctx, (int)mode, tokens, rows_p, mc_api_err(ctx));
}

static moecomm_result_t mc_api_scatter(moecomm_context_t *ctx, const moecomm_scatter_args_t *args,
                                       void *stream) {
  if (!mc_api_ctx_ok(ctx))
    return mc_err_set(mc_err_thread(), MOECOMM_ERR_INVALID_ARGUMENT,
                      "scatter: ctx is NULL or not a live moecomm context");
  return mc_scatter(ctx, args, stream);
}

/* ---- the table and the entry point ---- */

static const moecomm_api_t mc_api = {
    .struct_size = sizeof(moecomm_api_t),
    .abi_version = MOECOMM_ABI_VERSION,
    .plugin_name = MC_PLUGIN_NAME,
    .plugin_version = MC_VERSION,
    .result_string = mc_api_result_string,
    .last_error = mc_api_last_error,
    .context_create = mc_api_context_create,
    .context_destroy = mc_api_context_destroy,
    .context_info = mc_api_context_info,
    .group_get = mc_api_group_get,
    .group_stats = mc_api_group_stats,
    .all_reduce = mc_api_all_reduce,
    .all_gather = mc_api_all_gather,
    .reduce_scatter = mc_api_reduce_scatter,
    .broadcast = mc_api_broadcast,
    .capture_begin = mc_api_capture_begin,
    .capture_end = mc_api_capture_end,
    .plan_capture_sizes = mc_api_plan_capture_sizes,
    .layer_mode = mc_api_layer_mode,
    .mode_rows = mc_api_mode_rows,
    .scatter = mc_api_scatter,
};

static moecomm_result_t mc_api_refuse(moecomm_result_t code, char *why, size_t why_size,
                                      const char *fmt, uint32_t a, uint32_t b) {
  char msg[256];
  snprintf(msg, sizeof(msg), fmt, MOECOMM_ABI_VERSION_GET_MAJOR(a),
           MOECOMM_ABI_VERSION_GET_MINOR(a), MOECOMM_ABI_VERSION_GET_MAJOR(b),
           MOECOMM_ABI_VERSION_GET_MINOR(b), MOECOMM_ABI_VERSION_GET_MAJOR(MC_ABI_OLDEST),
           MOECOMM_ABI_VERSION_GET_MINOR(MC_ABI_OLDEST), MOECOMM_ABI_MAJOR, MOECOMM_ABI_MINOR);
  if (why != NULL && why_size > 0) snprintf(why, why_size, "%s", msg);
  return mc_err_set(mc_err_thread(), code, "%s", msg);
}

__attribute__((visibility("default"))) moecomm_result_t MOECOMM_ENTRY_V1(
    uint32_t min_version, uint32_t max_version, uint32_t *version_p, const moecomm_api_t **api_p,
    char *why, size_t why_size) {
  uint32_t pick;
  /* The entry's own type must match the header's, or host and plugin disagree silently. */
  moecomm_get_api_v1_fn_t self = MOECOMM_ENTRY_V1;
  (void)self;
  if (version_p == NULL || api_p == NULL)
    return mc_api_refuse(MOECOMM_ERR_INVALID_ARGUMENT, why, why_size,
                         "version_p and api_p must not be NULL (host asked %u.%u..%u.%u; plugin "
                         "speaks %u.%u..%u.%u)",
                         min_version, max_version);
  if (min_version > max_version)
    return mc_api_refuse(MOECOMM_ERR_VERSION, why, why_size,
                         "the host's ABI range %u.%u..%u.%u is empty (min > max); plugin speaks "
                         "%u.%u..%u.%u",
                         min_version, max_version);
  pick = MC_MIN(max_version, (uint32_t)MOECOMM_ABI_VERSION);
  if (pick < min_version || pick < MC_ABI_OLDEST ||
      MOECOMM_ABI_VERSION_GET_MAJOR(pick) != MOECOMM_ABI_MAJOR)
    return mc_api_refuse(MOECOMM_ERR_VERSION, why, why_size,
                         "no common ABI version: the host speaks %u.%u..%u.%u, this plugin "
                         "speaks %u.%u..%u.%u",
                         min_version, max_version);
  atomic_store(&mc_api_negotiated, pick);
  MC_INFO("%s %s: negotiated ABI %u.%u", MC_PLUGIN_NAME, MC_VERSION,
          MOECOMM_ABI_VERSION_GET_MAJOR(pick), MOECOMM_ABI_VERSION_GET_MINOR(pick));
  *version_p = pick;
  *api_p = &mc_api;
  return MOECOMM_SUCCESS;
}
