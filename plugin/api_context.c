/* SPDX-License-Identifier: Apache-2.0 */
/* api_context.c - the ABI slots on contexts and groups (api_context.h).  Each enters its context
 * (api_guard.h), checks its arguments, and writes outputs only on success. */
#include "api_context.h"

#include <stdatomic.h>
#include <string.h>

#include "api_guard.h"
#include "capture.h"
#include "handle.h"
#include "planner.h"
#include "route.h"
#include "scatter.h"
#include "util.h"

static _Atomic uint32_t mc_api_negotiated = MOECOMM_ABI_VERSION;

void mc_api_set_negotiated(uint32_t version) {
  atomic_store(&mc_api_negotiated, version);
}

const char *mc_api_result_string(moecomm_result_t result) {
  return mc_result_string(result);
}

const char *mc_api_last_error(const moecomm_context_t *h) {
  mc_context_t *ctx;
  if (h == NULL) return mc_err_thread()->msg;
  ctx = mc_handle_context(h);
  return ctx != NULL ? ctx->err.msg : "last_error: not a live moecomm context";
}

moecomm_result_t mc_api_context_create(const moecomm_context_params_t *params,
                                       moecomm_context_t **ctx_p) {
  mc_context_t *ctx = NULL;
  mc_err_t *err = mc_err_thread();
  moecomm_context_t *h;
  moecomm_result_t r;
  mc_err_clear(err);
  if (ctx_p == NULL)
    return mc_err_set(err, MOECOMM_ERR_INVALID_ARGUMENT, "context_create: ctx_p is NULL");
  r = mc_context_create(params, &ctx, err);
  if (r != MOECOMM_SUCCESS) return r;
  if ((r = mc_handle_register(ctx, &h, err)) != MOECOMM_SUCCESS) {
    mc_context_destroy(ctx);
    return r;
  }
  ctx->abi_version = atomic_load(&mc_api_negotiated);
  *ctx_p = h;
  return MOECOMM_SUCCESS;
}

moecomm_result_t mc_api_context_destroy(moecomm_context_t *h) {
  mc_context_t *ctx = NULL;
  moecomm_result_t r;
  if (h == NULL) return MOECOMM_SUCCESS;
  r = mc_api_enter(h, "context_destroy", &ctx);
  if (r != MOECOMM_SUCCESS) return r;
  mc_handle_release(ctx); /* from here on every handle of it is stale */
  mc_context_destroy(ctx);
  return MOECOMM_SUCCESS;
}

moecomm_result_t mc_api_context_info(const moecomm_context_t *h, moecomm_context_info_t *info_p) {
  moecomm_context_info_t info;
  mc_context_t *ctx = NULL;
  moecomm_result_t r = mc_api_enter(h, "context_info", &ctx);
  if (r != MOECOMM_SUCCESS) return r;
  if (info_p == NULL)
    return mc_api_leave(
        ctx, mc_err_set(&ctx->err, MOECOMM_ERR_INVALID_ARGUMENT, "context_info: info_p is NULL"));
  memset(&info, 0, sizeof(info));
  info.struct_size = sizeof(info);
  info.device = ctx->device;
  info.local_rank = ctx->boot.world.local_rank;
  info.local_size = ctx->boot.world.local_size;
  info.num_hosts = ctx->boot.world.num_hosts;
  info.abi_version = ctx->abi_version;
  r = mc_api_write_out(info_p, &info, sizeof(info),
                       MOECOMM_STRUCT_SIZE(moecomm_context_info_t, abi_version), "context_info",
                       &ctx->err);
  return mc_api_leave(ctx, r);
}

moecomm_result_t mc_api_group_get(moecomm_context_t *h, moecomm_group_kind_t kind,
                                  moecomm_group_t **group_p) {
  mc_context_t *ctx = NULL;
  moecomm_result_t r = mc_api_enter(h, "group_get", &ctx);
  if (r != MOECOMM_SUCCESS) return r;
  if ((int)kind < 0 || (int)kind >= MC_GROUP_KIND_COUNT)
    r = mc_err_set(&ctx->err, MOECOMM_ERR_INVALID_ARGUMENT,
                   "group_get: kind %d is not a group kind (0..%d)", (int)kind,
                   MC_GROUP_KIND_COUNT - 1);
  else if (group_p == NULL)
    r = mc_err_set(&ctx->err, MOECOMM_ERR_INVALID_ARGUMENT, "group_get: group_p is NULL");
  else
    *group_p = mc_handle_of_group(ctx, (int)kind);
  return mc_api_leave(ctx, r);
}

static void mc_api_fill_stats(const mc_group_t *g, moecomm_group_stats_t *st) {
  const mc_comm_t *comm = g->comm;
  const char *name;
  memset(st, 0, sizeof(*st));
  st->struct_size = sizeof(*st);
  st->backend = mc_route_group_backend(g, &name);
  st->backend_name = name;
  st->kind = g->kind;
  st->kind_name = mc_topo_kind_name(g->kind);
  st->size = comm->size;
  st->rank = comm->rank;
  st->ranks = comm->ranks;
  st->comm_id = comm->id;
  for (int b = MOECOMM_BACKEND_NONE + 1; b < MC_BACKEND_COUNT; b++) {
    st->created |= comm->be[b].created || comm->be[b].moe != NULL; /* EP state is a creation too */
    st->device_bytes += comm->be[b].device_bytes;
    st->host_bytes += comm->be[b].host_bytes;
  }
  st->ops = g->ops;
  st->ops_local = g->served[MOECOMM_BACKEND_NONE];
  st->ops_shm = g->served[MOECOMM_BACKEND_SHM];
  st->ops_nccl = g->served[MOECOMM_BACKEND_NCCL];
  st->ops_custom = g->served[MOECOMM_BACKEND_CUSTOM];
  if (g->moe_configured) {
    st->moe_max_tokens = (int32_t)g->moe_layout.cfg.t_max;
    st->moe_expert_capacity = (int32_t)g->moe_layout.cfg.capacity;
  }
}

moecomm_result_t mc_api_group_stats(const moecomm_group_t *h, moecomm_group_stats_t *stats_p) {
  moecomm_group_stats_t st;
  mc_group_t *g = NULL;
  moecomm_result_t r = mc_api_enter_group(h, "group_stats", &g);
  if (r != MOECOMM_SUCCESS) return r;
  if (stats_p == NULL)
    return mc_api_leave(g->ctx, mc_err_set(&g->ctx->err, MOECOMM_ERR_INVALID_ARGUMENT,
                                           "group_stats: stats_p is NULL"));
  mc_api_fill_stats(g, &st);
  r = mc_api_write_out(stats_p, &st, sizeof(st), MOECOMM_STRUCT_SIZE(moecomm_group_stats_t, ops),
                       "group_stats", &g->ctx->err);
  return mc_api_leave(g->ctx, r);
}

/* capture_begin and capture_end share their checks. */
static moecomm_result_t mc_api_capture(moecomm_context_t *h, void *stream, int end) {
  const char *what = end ? "capture_end" : "capture_begin";
  mc_context_t *ctx = NULL;
  moecomm_result_t r = mc_api_enter(h, what, &ctx);
  if (r != MOECOMM_SUCCESS) return r;
  if (ctx->device < 0 && stream != NULL)
    r = mc_err_set(&ctx->err, MOECOMM_ERR_INVALID_ARGUMENT,
                   "%s: stream must be NULL on a CPU context", what);
  else
    r = end ? mc_capture_end(ctx) : mc_capture_begin(ctx);
  return mc_api_leave(ctx, r);
}

moecomm_result_t mc_api_capture_begin(moecomm_context_t *ctx, void *stream) {
  return mc_api_capture(ctx, stream, 0);
}

moecomm_result_t mc_api_capture_end(moecomm_context_t *ctx, void *stream) {
  return mc_api_capture(ctx, stream, 1);
}

moecomm_result_t mc_api_plan_capture_sizes(const moecomm_context_t *h,
                                           const moecomm_plan_params_t *params, int32_t *sizes,
                                           size_t capacity, size_t *num_p, int32_t *multiple_p) {
  mc_context_t *ctx = NULL;
  moecomm_result_t r = mc_api_enter(h, "plan_capture_sizes", &ctx);
  if (r != MOECOMM_SUCCESS) return r;
  r = mc_plan_capture_sizes(ctx, params, sizes, capacity, num_p, multiple_p, &ctx->err);
  return mc_api_leave(ctx, r);
}

moecomm_result_t mc_api_layer_mode(const moecomm_context_t *h, moecomm_layer_kind_t layer,
                                   moecomm_scatter_mode_t *mode_p) {
  mc_context_t *ctx = NULL;
  moecomm_result_t r = mc_api_enter(h, "layer_mode", &ctx);
  if (r != MOECOMM_SUCCESS) return r;
  if (mode_p == NULL)
    r = mc_err_set(&ctx->err, MOECOMM_ERR_INVALID_ARGUMENT, "layer_mode: mode_p is NULL");
  else
    r = mc_layer_mode(ctx, (int)layer, mode_p, &ctx->err);
  return mc_api_leave(ctx, r);
}

moecomm_result_t mc_api_mode_rows(const moecomm_context_t *h, moecomm_scatter_mode_t mode,
                                  const int32_t *tokens, size_t *rows_p) {
  mc_context_t *ctx = NULL;
  moecomm_result_t r = mc_api_enter(h, "mode_rows", &ctx);
  if (r != MOECOMM_SUCCESS) return r;
  r = mc_mode_rows(ctx, (int)mode, tokens, rows_p, &ctx->err);
  return mc_api_leave(ctx, r);
}

moecomm_result_t mc_api_scatter(moecomm_context_t *h, const moecomm_scatter_args_t *args,
                                void *stream) {
  mc_context_t *ctx = NULL;
  moecomm_result_t r = mc_api_enter(h, "scatter", &ctx);
  if (r != MOECOMM_SUCCESS) return r;
  r = mc_scatter(ctx, args, stream);
  return mc_api_leave(ctx, r);
}
