/* SPDX-License-Identifier: Apache-2.0 */
/* moe.c - expert-parallel dispatch and combine (moe.h).  The shape and the row order are
 * ep_layout.h's; which backend serves the group is the routing policy's (route.c); the backends
 * (shm, nccl, custom's NVLink kernels) move the data. */
#include "moe.h"

#include <stdlib.h>
#include <string.h>

#include "gpu.h"
#include "lazy.h"
#include "log.h"
#include "registry.h"
#include "route.h"
#include "util.h"

_Static_assert(MOECOMM_FLOAT8_E4M3 == MC_EP_FLOAT8_E4M3, "the ABI's fp8 and ep_layout's agree");
_Static_assert(MOECOMM_MOE_MAX_TOP_K == MC_EP_MAX_TOPK, "the ABI's and ep_layout's top-k limit");

static moecomm_result_t mc_moe_bad(mc_group_t *g, const char *fmt_what, long long v) {
  return mc_err_set(&g->ctx->err, MOECOMM_ERR_INVALID_ARGUMENT, "moe_configure: %s (got %lld)",
                    fmt_what, v);
}

/* The ABI config as ep_layout's, with the defaults applied and the values checked. */
static moecomm_result_t mc_moe_config_of(mc_group_t *g, const moecomm_moe_config_t *in, int path,
                                         mc_ep_config_t *out) {
  const int fp8 = in->dtype == MOECOMM_FLOAT8_E4M3;
  if (in->num_experts <= 0 || in->num_experts % g->comm->size != 0)
    return mc_err_set(&g->ctx->err, MOECOMM_ERR_INVALID_ARGUMENT,
                      "moe_configure: num_experts=%d must be a positive multiple of the MOE_EP "
                      "group's %d ranks",
                      (int)in->num_experts, g->comm->size);
  if (in->top_k < 1 || in->top_k > MOECOMM_MOE_MAX_TOP_K)
    return mc_moe_bad(g, "top_k must be 1..32", in->top_k);
  if (in->dtype != MOECOMM_BFLOAT16 && in->dtype != MOECOMM_FLOAT16 &&
      in->dtype != MOECOMM_FLOAT32 && !fp8)
    return mc_moe_bad(g, "dtype must be BFLOAT16, FLOAT16, FLOAT32 or FLOAT8_E4M3", in->dtype);
  if (fp8 ? in->num_scales <= 0 : in->num_scales != 0)
    return mc_moe_bad(g, "num_scales must be > 0 with FLOAT8_E4M3 and 0 otherwise", in->num_scales);
  if (fp8 && in->combine_dtype != MOECOMM_BFLOAT16 && in->combine_dtype != MOECOMM_FLOAT16 &&
      in->combine_dtype != MOECOMM_FLOAT32)
    return mc_moe_bad(g, "combine_dtype must be BFLOAT16, FLOAT16 or FLOAT32 with FLOAT8_E4M3",
                      in->combine_dtype);
  if (in->max_tokens < 0) return mc_moe_bad(g, "max_tokens must be >= 0", in->max_tokens);
  if (in->expert_capacity < 0)
    return mc_moe_bad(g, "expert_capacity must be >= 0", in->expert_capacity);
  if (in->hidden == 0 || in->hidden > INT64_MAX)
    return mc_moe_bad(g, "hidden must be > 0", (long long)in->hidden);
  memset(out, 0, sizeof(*out));
  out->ranks = g->comm->size;
  out->experts = in->num_experts;
  out->top_k = in->top_k;
  out->dtype = in->dtype;
  out->combine_dtype = fp8 ? in->combine_dtype : in->dtype;
  out->scales = fp8 ? in->num_scales : 0;
  out->path = path;
  out->t_max = in->max_tokens > 0 ? in->max_tokens : g->ctx->cfg.ep_max_tokens;
  out->hidden = (int64_t)in->hidden;
  out->capacity = in->expert_capacity;
  return MOECOMM_SUCCESS;
}

static int mc_moe_same(const mc_ep_config_t *a, const mc_ep_config_t *b) {
  return a->ranks == b->ranks && a->experts == b->experts && a->top_k == b->top_k &&
         a->dtype == b->dtype && a->combine_dtype == b->combine_dtype && a->scales == b->scales &&
         a->path == b->path && a->t_max == b->t_max && a->hidden == b->hidden &&
         a->capacity == b->capacity;
}

moecomm_result_t mc_moe_configure(mc_group_t *g, const moecomm_moe_config_t *config) {
  moecomm_moe_config_t in;
  mc_ep_config_t cfg;
  mc_ep_layout_t layout;
  moecomm_backend_t be;
  moecomm_result_t r;
  if (g->kind != MOECOMM_GROUP_MOE_EP)
    return mc_err_set(&g->ctx->err, MOECOMM_ERR_INVALID_ARGUMENT,
                      "moe_configure: dispatch and combine run on the MOE_EP group, not %s",
                      mc_topo_kind_name(g->kind));
  if (config == NULL)
    return mc_err_set(&g->ctx->err, MOECOMM_ERR_INVALID_ARGUMENT, "moe_configure: config is NULL");
  if (config->struct_size < MOECOMM_STRUCT_SIZE(moecomm_moe_config_t, combine_dtype))
    return mc_err_set(&g->ctx->err, MOECOMM_ERR_STRUCT_SIZE,
                      "moe_configure: config struct_size %zu is smaller than its 1.2 layout",
                      config->struct_size);
  memset(&in, 0, sizeof(in));
  memcpy(&in, config, MC_MIN(config->struct_size, sizeof(in)));
  if ((r = mc_route_moe_backend(g, &be)) != MOECOMM_SUCCESS) return r;
  if ((r = mc_moe_config_of(
           g, &in, be == MOECOMM_BACKEND_CUSTOM ? MC_EP_PATH_NVLINK : MC_EP_PATH_NCCL, &cfg)) !=
      MOECOMM_SUCCESS)
    return r;
  if ((r = mc_ep_layout_init(&cfg, &layout, &g->ctx->err)) != MOECOMM_SUCCESS) return r;
  if (g->moe_backend != MOECOMM_BACKEND_NONE) {
    if (mc_moe_same(&layout.cfg, &g->moe_layout.cfg)) return MOECOMM_SUCCESS;
    return mc_err_set(&g->ctx->err, MOECOMM_ERR_STATE,
                      "moe_configure: the MOE_EP buffers were sized by an earlier configuration "
                      "at the first dispatch; a different one cannot take effect");
  }
  g->moe_layout = layout;
  g->moe_configured = 1;
  return MOECOMM_SUCCESS;
}

/* First dispatch: every member configured the same shape (else every member fails with
   MOECOMM_ERR_CONFIG naming the first that differs), then the backend creates its buffers. */
static moecomm_result_t mc_moe_create(mc_group_t *g, moecomm_backend_t be, int capturing) {
  mc_comm_t *comm = g->comm;
  mc_ep_config_t *all = calloc((size_t)comm->size, sizeof(*all));
  moecomm_result_t r;
  int bad = -1;
  if (all == NULL) return mc_err_set(comm->err, MOECOMM_ERR_NO_MEMORY, "out of host memory");
  r = mc_comm_agree(comm, "moe_dispatch configuration", MOECOMM_SUCCESS, NULL, &g->moe_layout.cfg,
                    all, sizeof(*all), &bad);
  for (int i = 0; r == MOECOMM_SUCCESS && i < comm->size; i++)
    if (!mc_moe_same(&all[i], &g->moe_layout.cfg))
      r = mc_err_set(comm->err, MOECOMM_ERR_CONFIG,
                     "moe_dispatch on %s: rank %d configured another shape (experts %d, top_k %d, "
                     "max_tokens %lld, hidden %lld, capacity %lld, dtype %d) than rank %d "
                     "(experts %d, top_k %d, max_tokens %lld, hidden %lld, capacity %lld, dtype "
                     "%d); moe_configure must be the same on every rank",
                     comm->label, (int)comm->ranks[i], (int)all[i].experts, (int)all[i].top_k,
                     (long long)all[i].t_max, (long long)all[i].hidden, (long long)all[i].capacity,
                     (int)all[i].dtype, (int)comm->ranks[comm->rank],
                     (int)g->moe_layout.cfg.experts, (int)g->moe_layout.cfg.top_k,
                     (long long)g->moe_layout.cfg.t_max, (long long)g->moe_layout.cfg.hidden,
                     (long long)g->moe_layout.cfg.capacity, (int)g->moe_layout.cfg.dtype);
  free(all);
  if (r == MOECOMM_SUCCESS) r = mc_lazy_ensure_moe(comm, be, &g->moe_layout, capturing);
  if (r == MC_DEFER && be == MOECOMM_BACKEND_CUSTOM) {
    /* no NVLink path between the members after all: the NCCL path, sized for it */
    mc_ep_config_t cfg = g->moe_layout.cfg;
    cfg.path = MC_EP_PATH_NCCL;
    MC_INFO("moe_dispatch on %s: the NVLink path is not available; using nccl", comm->label);
    be = MOECOMM_BACKEND_NCCL;
    r = mc_ep_layout_init(&cfg, &g->moe_layout, comm->err);
    if (r == MOECOMM_SUCCESS) r = mc_lazy_ensure_moe(comm, be, &g->moe_layout, capturing);
  }
  if (r == MC_DEFER)
    r = mc_err_set(comm->err, MOECOMM_ERR_UNAVAILABLE,
                   "moe_dispatch on %s: no backend can serve it here", comm->label);
  if (r == MOECOMM_SUCCESS) g->moe_backend = be;
  return r;
}

/* What both calls share: the group configured, the capture state, the buffers created. */
static moecomm_result_t mc_moe_begin(mc_group_t *g, const char *what, void *stream,
                                     mc_moe_call_t *call, const mc_backend_ops_t **ops_p) {
  mc_context_t *ctx = g->ctx;
  moecomm_backend_t be;
  moecomm_result_t r;
  if (!g->moe_configured)
    return mc_err_set(&ctx->err, MOECOMM_ERR_STATE,
                      "%s on %s: call moe_configure on the MOE_EP group first", what,
                      g->comm->label);
  if (ctx->device < 0 && stream != NULL)
    return mc_err_set(&ctx->err, MOECOMM_ERR_INVALID_ARGUMENT,
                      "%s: stream must be NULL on a CPU context", what);
  call->stream = stream;
  if (ctx->device >= 0) {
    if ((r = mc_gpu_stream_capturing(stream, &call->capturing, &ctx->err)) != MOECOMM_SUCCESS)
      return r;
    if (call->capturing && !ctx->capturing)
      return mc_err_set(&ctx->err, MOECOMM_ERR_CAPTURE,
                        "%s on %s: the stream is being captured but the context's capture scope "
                        "is not open (capture_begin first)",
                        what, g->comm->label);
  }
  if ((r = mc_route_moe_backend(g, &be)) != MOECOMM_SUCCESS) return r;
  if (g->moe_backend == MOECOMM_BACKEND_NONE &&
      (r = mc_moe_create(g, be, call->capturing)) != MOECOMM_SUCCESS)
    return r;
  *ops_p = mc_backend_get(g->moe_backend);
  return MOECOMM_SUCCESS;
}

/* The call is counted like a collective (capture_end compares the counts per group). */
static void mc_moe_count(mc_group_t *g, const mc_moe_call_t *call) {
  g->ops++;
  g->served[g->moe_backend]++;
  if (call->capturing || (g->ctx->capturing && g->ctx->device < 0)) g->captured_ops++;
}

moecomm_result_t mc_moe_dispatch(mc_group_t *g, const moecomm_moe_dispatch_args_t *args,
                                 uint64_t *handle_p, void *stream) {
  const mc_ep_layout_t *L = &g->moe_layout;
  moecomm_moe_dispatch_args_t a;
  const mc_backend_ops_t *ops = NULL;
  mc_moe_call_t call;
  moecomm_result_t r;
  mc_err_t *err = &g->ctx->err;
  memset(&call, 0, sizeof(call));
  if (args == NULL || handle_p == NULL)
    return mc_err_set(err, MOECOMM_ERR_INVALID_ARGUMENT, "moe_dispatch: %s is NULL",
                      args == NULL ? "args" : "handle_p");
  if (args->struct_size < MOECOMM_STRUCT_SIZE(moecomm_moe_dispatch_args_t, recv_src))
    return mc_err_set(err, MOECOMM_ERR_STRUCT_SIZE,
                      "moe_dispatch: args struct_size %zu is smaller than its 1.2 layout",
                      args->struct_size);
  memset(&a, 0, sizeof(a));
  memcpy(&a, args, MC_MIN(args->struct_size, sizeof(a)));
  if ((r = mc_moe_begin(g, "moe_dispatch", stream, &call, &ops)) != MOECOMM_SUCCESS) return r;
  if (g->moe_pending)
    return mc_err_set(err, MOECOMM_ERR_STATE,
                      "moe_dispatch on %s: the previous dispatch has not been combined yet "
                      "(dispatch and combine alternate)",
                      g->comm->label);
  if (a.num_tokens < 0 || a.num_tokens > L->cfg.t_max)
    return mc_err_set(err, MOECOMM_ERR_INVALID_ARGUMENT,
                      "moe_dispatch: num_tokens=%d; this group was configured for 0..%lld "
                      "(max_tokens, or MOECOMM_EP_MAX_TOKENS); nothing was sent",
                      (int)a.num_tokens, (long long)L->cfg.t_max);
  if ((a.num_tokens > 0 && (a.x == NULL || a.topk_ids == NULL)) || a.recv_x == NULL ||
      a.recv_counts == NULL || a.recv_src == NULL ||
      (L->cfg.scales > 0 && ((a.num_tokens > 0 && a.x_scales == NULL) || a.recv_scales == NULL)))
    return mc_err_set(err, MOECOMM_ERR_INVALID_ARGUMENT,
                      "moe_dispatch: a buffer is NULL (x and topk_ids with tokens, recv_x, "
                      "recv_counts, recv_src, and the scales with an fp8 payload)");
  call.tokens = a.num_tokens;
  call.x = a.x;
  call.x_scales = a.x_scales;
  call.topk_ids = a.topk_ids;
  call.recv_x = a.recv_x;
  call.recv_scales = a.recv_scales;
  call.recv_counts = a.recv_counts;
  call.recv_src = a.recv_src;
  if (ops->moe_dispatch == NULL)
    return mc_err_set(err, MOECOMM_ERR_NOT_SUPPORTED, "moe_dispatch: the %s backend has none",
                      ops->name);
  r = ops->moe_dispatch(g->comm, &call);
  if (r != MOECOMM_SUCCESS)
    return mc_err_wrap(err, r, "moe_dispatch of %d tokens on %s (%s)", (int)a.num_tokens,
                       g->comm->label, ops->name);
  mc_moe_count(g, &call);
  g->moe_pending = 1;
  g->moe_pending_tokens = a.num_tokens;
  *handle_p = ++g->moe_dispatches;
  return MOECOMM_SUCCESS;
}

moecomm_result_t mc_moe_combine(mc_group_t *g, const moecomm_moe_combine_args_t *args,
                                void *stream) {
  moecomm_moe_combine_args_t a;
  const mc_backend_ops_t *ops = NULL;
  mc_moe_call_t call;
  moecomm_result_t r;
  mc_err_t *err = &g->ctx->err;
  int ran = 0;
  memset(&call, 0, sizeof(call));
  if (args == NULL)
    return mc_err_set(err, MOECOMM_ERR_INVALID_ARGUMENT, "moe_combine: args is NULL");
  if (args->struct_size < MOECOMM_STRUCT_SIZE(moecomm_moe_combine_args_t, out))
    return mc_err_set(err, MOECOMM_ERR_STRUCT_SIZE,
                      "moe_combine: args struct_size %zu is smaller than its 1.2 layout",
                      args->struct_size);
  memset(&a, 0, sizeof(a));
  memcpy(&a, args, MC_MIN(args->struct_size, sizeof(a)));
  if ((r = mc_moe_begin(g, "moe_combine", stream, &call, &ops)) != MOECOMM_SUCCESS) return r;
  if (!g->moe_pending || a.handle != g->moe_dispatches)
    return mc_err_set(err, MOECOMM_ERR_STATE,
                      "moe_combine on %s: handle %llu is not the last dispatch's (%llu%s)",
                      g->comm->label, (unsigned long long)a.handle,
                      (unsigned long long)g->moe_dispatches,
                      g->moe_pending ? "" : ", already combined");
  if (a.num_tokens != g->moe_pending_tokens)
    return mc_err_set(err, MOECOMM_ERR_INVALID_ARGUMENT,
                      "moe_combine: num_tokens=%d but the matching dispatch had %d",
                      (int)a.num_tokens, (int)g->moe_pending_tokens);
  if (a.expert_out == NULL || (a.num_tokens > 0 && (a.topk_weights == NULL || a.out == NULL)))
    return mc_err_set(err, MOECOMM_ERR_INVALID_ARGUMENT,
                      "moe_combine: expert_out, or topk_weights or out with tokens, is NULL");
  call.tokens = a.num_tokens;
  call.expert_out = a.expert_out;
  call.topk_weights = a.topk_weights;
  call.out = a.out;
  call.ran_p = &ran;
  if (ops->moe_combine == NULL)
    return mc_err_set(err, MOECOMM_ERR_NOT_SUPPORTED, "moe_combine: the %s backend has none",
                      ops->name);
  r = ops->moe_combine(g->comm, &call);
  if (r != MOECOMM_SUCCESS && !ran)
    return mc_err_wrap(err, r, "moe_combine of %d tokens on %s (%s)", (int)a.num_tokens,
                       g->comm->label, ops->name);
  /* done, possibly reporting an earlier dispatch's data error (backend.h) */
  mc_moe_count(g, &call);
  g->moe_pending = 0;
  if (r != MOECOMM_SUCCESS)
    return mc_err_wrap(err, r, "moe_combine of %d tokens on %s (%s; it ran, the pair is complete)",
                       (int)a.num_tokens, g->comm->label, ops->name);
  return MOECOMM_SUCCESS;
}
