/* SPDX-License-Identifier: Apache-2.0 */
/* ep_world.h - every member's inputs of one expert-parallel call pair, regenerated alike on every
 * rank from a seed, with the CPU reference's outputs (plugin/ep_layout.c) and the checks of what
 * a rank got through the ABI (tests/core/moe_shm.c on CPU ranks, tests/gpu/moe_gpu.c on GPUs).
 *
 * Member 0 dispatches T_max tokens, member 1 none, the others a random count.  References sit in
 * buffers poisoned like the ones the test hands to the plugin, with EP_GUARD poisoned bytes after
 * each, so a byte written past the counts or past the end shows up as a difference.  Identity
 * experts (payload dtype = combine dtype) return what they received: the reference combine then
 * uses every member's reference recv_x; an fp8 payload gets random expert outputs instead.
 * Binaries that include it link plugin/ep_layout.c (the reference). */
#ifndef MC_TEST_EP_WORLD_H_
#define MC_TEST_EP_WORLD_H_

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ep_cases.h"

#define EP_MAXN 8
#define EP_GUARD 64
#define EP_POISON 0xa5

typedef struct ep_world {
  int n, identity;
  mc_ep_layout_t L; /* the caller's buffer sizes are the same on both paths */
  int64_t tok[EP_MAXN];
  int32_t *ids[EP_MAXN];  /* as dispatched (may hold an invalid id) */
  int32_t *rids[EP_MAXN]; /* as the reference sees them: an invalid id masked */
  void *x[EP_MAXN], *y[EP_MAXN];
  float *xs[EP_MAXN], *w[EP_MAXN];
  char *rx[EP_MAXN], *rs[EP_MAXN], *cnt[EP_MAXN], *src[EP_MAXN], *out[EP_MAXN]; /* references */
  int64_t *tot[EP_MAXN];  /* rows of each local expert before the capacity cut */
  uint8_t *kept[EP_MAXN]; /* item has a row */
  int bad;                /* item of member 0 with an invalid id, -1: none */
  int fixed_tok;          /* 1: ep_world_gen keeps tok[] (a captured graph's counts) */
} ep_world_t;

static inline void *ep_poisoned(size_t bytes) {
  void *p = malloc(bytes + EP_GUARD);
  if (p != NULL) memset(p, EP_POISON, bytes + EP_GUARD);
  return p;
}

static inline void ep_world_close(ep_world_t *w) {
  for (int q = 0; q < EP_MAXN; q++) {
    void *all[] = {w->ids[q], w->rids[q], w->x[q],   w->y[q],   w->xs[q],  w->w[q],   w->rx[q],
                   w->rs[q],  w->cnt[q],  w->src[q], w->out[q], w->tot[q], w->kept[q]};
    for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++) free(all[i]);
  }
  memset(w, 0, sizeof(*w));
}

/* Host buffers for n members of configuration c (any path); 1 on success. */
static inline int ep_world_open(ep_world_t *w, const mc_ep_config_t *c) {
  mc_err_t err;
  int ok = 1;
  memset(w, 0, sizeof(*w));
  if (!MC_CHECK(mc_ep_layout_init(c, &w->L, &err) == MOECOMM_SUCCESS, "layout: %s", err.msg))
    return 0;
  w->n = c->ranks;
  w->identity = c->dtype == c->combine_dtype;
  for (int q = 0; q < w->n; q++) {
    const mc_ep_layout_t *l = &w->L;
    w->ids[q] = malloc((size_t)l->items * 4 + 4);
    w->rids[q] = malloc((size_t)l->items * 4 + 4);
    w->x[q] = malloc((size_t)l->x_bytes);
    w->xs[q] = malloc((size_t)l->x_scales_bytes + 4);
    w->w[q] = malloc((size_t)l->items * 4 + 4);
    w->y[q] = malloc((size_t)l->y_bytes);
    w->rx[q] = ep_poisoned((size_t)l->recv_x_bytes);
    w->rs[q] = ep_poisoned((size_t)l->recv_scales_bytes);
    w->cnt[q] = ep_poisoned((size_t)l->recv_counts_bytes);
    w->src[q] = ep_poisoned((size_t)l->recv_src_bytes);
    w->out[q] = ep_poisoned((size_t)l->out_bytes);
    w->tot[q] = malloc((size_t)l->local_experts * 8);
    w->kept[q] = malloc((size_t)l->items + 1);
    ok &= w->ids[q] && w->rids[q] && w->x[q] && w->xs[q] && w->w[q] && w->y[q] && w->rx[q] &&
          w->rs[q] && w->cnt[q] && w->src[q] && w->out[q] && w->tot[q] && w->kept[q];
  }
  if (!MC_CHECK(ok, "out of host memory")) ep_world_close(w);
  return ok;
}

/* New inputs of every member (the same on every rank for the same seed); bad >= 0 gives member
   0's item `bad` the invalid id E + 5.  Token counts: tok[] as they are with fixed_tok, else
   member 0 T_max, member 1 none, the others random. */
static inline void ep_world_gen(ep_world_t *w, uint64_t seed, int route, int kind, int bad) {
  const mc_ep_config_t *c = &w->L.cfg;
  uint64_t st = seed;
  const int hot = (int)(mc_test_rand(&st) % (uint64_t)c->experts);
  for (int q = 0; q < w->n; q++) {
    const int64_t r = (int64_t)(mc_test_rand(&st) % (uint64_t)(c->t_max + 1));
    if (!w->fixed_tok) w->tok[q] = q == 0 ? c->t_max : q == 1 ? 0 : r;
    ep_make_ids(w->ids[q], w->tok[q], c->top_k, c->experts, c->ranks, route, hot, &st);
    ep_fill(w->x[q], (size_t)(w->tok[q] * c->hidden), c->dtype, kind, &st);
    ep_fill(w->xs[q], (size_t)(w->tok[q] * c->scales), MOECOMM_FLOAT32, 1, &st);
    ep_fill_weights(w->w[q], (size_t)(w->tok[q] * c->top_k), kind, &st);
    if (!w->identity)
      ep_fill(w->y[q], (size_t)(w->L.y_bytes / (w->L.crow_bytes / c->hidden)), c->combine_dtype,
              kind, &st);
    memcpy(w->rids[q], w->ids[q], (size_t)(w->tok[q] * c->top_k) * 4);
  }
  w->bad = bad >= 0 && bad < w->tok[0] * c->top_k ? bad : -1;
  if (w->bad >= 0) {
    w->ids[0][w->bad] = c->experts + 5;
    w->rids[0][w->bad] = -1;
  }
}

/* The reference: every member's dispatch (identity experts need them all) and combine. */
static inline int ep_world_ref(ep_world_t *w) {
  const mc_ep_layout_t *l = &w->L;
  mc_ep_ref_rank_t rk[EP_MAXN];
  const void *y[EP_MAXN];
  int32_t *rows = malloc((size_t)l->items * 4);
  mc_err_t err;
  int ok = MC_CHECK(rows != NULL, "out of host memory");
  for (int q = 0; q < w->n; q++) {
    memset(w->rx[q], EP_POISON, (size_t)l->recv_x_bytes + EP_GUARD);
    memset(w->rs[q], EP_POISON, (size_t)l->recv_scales_bytes + EP_GUARD);
    memset(w->cnt[q], EP_POISON, (size_t)l->recv_counts_bytes + EP_GUARD);
    memset(w->src[q], EP_POISON, (size_t)l->recv_src_bytes + EP_GUARD);
    memset(w->out[q], EP_POISON, (size_t)l->out_bytes + EP_GUARD);
    rk[q].tokens = w->tok[q];
    rk[q].ids = w->rids[q];
    rk[q].x = w->x[q];
    rk[q].scales = w->xs[q];
    rk[q].weights = w->w[q];
  }
  for (int q = 0; ok && q < w->n; q++) {
    ok = MC_CHECK(mc_ep_ref_dispatch(l, rk, q, w->rx[q], (float *)w->rs[q], (int32_t *)w->cnt[q],
                                     (int32_t *)w->src[q], w->tot[q], &err) == MOECOMM_SUCCESS,
                  "reference dispatch: %s", err.msg);
    y[q] = w->identity ? (const void *)w->rx[q] : w->y[q];
  }
  for (int q = 0; ok && q < w->n; q++) {
    ok = MC_CHECK(mc_ep_ref_combine(l, rk, q, y, w->out[q], &err) == MOECOMM_SUCCESS,
                  "reference combine: %s", err.msg) &&
         MC_CHECK(mc_ep_ref_item_rows(l, rk, q, rows, &err) == MOECOMM_SUCCESS, "item rows: %s",
                  err.msg);
    for (int64_t i = 0; ok && i < w->tok[q] * l->cfg.top_k; i++)
      w->kept[q][i] = rows[i] >= 0 && rows[i] < l->cfg.capacity;
  }
  free(rows);
  return ok;
}

/* bytes + EP_GUARD bytes of got equal want's. */
static inline int ep_same(const void *got, const void *want, size_t bytes, const char *what,
                          const char *name) {
  const uint8_t *g = (const uint8_t *)got, *x = (const uint8_t *)want;
  size_t i = 0;
  if (memcmp(g, x, bytes + EP_GUARD) == 0) return 1;
  while (g[i] == x[i]) i++;
  return MC_CHECK(0, "%s: %s differs from the reference at byte %zu of %zu%s: %02x, want %02x",
                  what, name, i, bytes, i >= bytes ? " (past the end)" : "", g[i], x[i]);
}

/* Member me's dispatch outputs (host copies, EP_GUARD bytes after each) against the reference. */
static inline int ep_world_check_dispatch(const ep_world_t *w, int me, const void *rx,
                                          const void *rs, const void *cnt, const void *src,
                                          const char *what) {
  const mc_ep_layout_t *l = &w->L;
  return ep_same(cnt, w->cnt[me], (size_t)l->recv_counts_bytes, what, "recv_counts") &&
         ep_same(src, w->src[me], (size_t)l->recv_src_bytes, what, "recv_src") &&
         ep_same(rx, w->rx[me], (size_t)l->recv_x_bytes, what, "recv_x") &&
         (l->cfg.scales == 0 ||
          ep_same(rs, w->rs[me], (size_t)l->recv_scales_bytes, what, "recv_scales"));
}

/* Member me's combine output against the reference; with integer data and identity experts also
   the exact sum over kept k of w * x. */
static inline int ep_world_check_combine(const ep_world_t *w, int me, const void *out, int kind,
                                         const char *what) {
  mc_ep_ref_rank_t r;
  if (!ep_same(out, w->out[me], (size_t)w->L.out_bytes, what, "out")) return 0;
  if (kind != 0 || !w->identity || (me == 0 && w->bad >= 0)) return 1;
  memset(&r, 0, sizeof(r));
  r.tokens = w->tok[me];
  r.x = w->x[me];
  r.weights = w->w[me];
  return ep_check_identity(&w->L, &r, w->kept[me], out, what);
}

/* The data error member me's combine must report, and whether msg names it: an invalid id of
   member 0 (its id, token and slot), else an expert of me over its capacity (any of them: the
   kernels record whichever they meet first; the rows dropped too). */
static inline int ep_world_report(const ep_world_t *w, int me, const char *msg, int *named_p) {
  const mc_ep_layout_t *l = &w->L;
  char needle[96];
  int code = MOECOMM_SUCCESS;
  *named_p = 1;
  if (me == 0 && w->bad >= 0) {
    snprintf(needle, sizeof(needle), "expert id %d at token %d, slot %d,", (int)w->ids[0][w->bad],
             w->bad / (int)l->cfg.top_k, w->bad % (int)l->cfg.top_k);
    *named_p = msg != NULL && strstr(msg, needle) != NULL;
    return MOECOMM_ERR_INVALID_ARGUMENT;
  }
  for (int e = 0; e < l->local_experts; e++)
    if (w->tot[me][e] > l->cfg.capacity) {
      if (code == MOECOMM_SUCCESS) *named_p = 0;
      code = MOECOMM_ERR_NOT_SUPPORTED;
      snprintf(needle, sizeof(needle), "expert %d %lld rows ", me * l->local_experts + e,
               (long long)(w->tot[me][e] - l->cfg.capacity));
      *named_p |= msg != NULL && strstr(msg, needle) != NULL;
    }
  return code;
}

/* The buffers one rank hands to the ABI (host memory on CPU ranks, device memory on GPUs). */
typedef struct ep_io {
  const int32_t *ids;
  const void *x, *y;
  const float *xs, *w;
  void *rx, *rs, *cnt, *src, *out;
} ep_io_t;

static inline moecomm_moe_config_t ep_abi_config(const mc_ep_config_t *c) {
  moecomm_moe_config_t m;
  memset(&m, 0, sizeof(m));
  m.struct_size = sizeof(m);
  m.num_experts = c->experts;
  m.top_k = c->top_k;
  m.dtype = c->dtype;
  m.max_tokens = (int32_t)c->t_max;
  m.hidden = (size_t)c->hidden;
  m.expert_capacity = (int32_t)c->capacity;
  m.num_scales = c->scales;
  m.combine_dtype = c->combine_dtype;
  return m;
}

static inline moecomm_moe_dispatch_args_t ep_dispatch_args(const ep_world_t *w, int me,
                                                           const ep_io_t *io) {
  moecomm_moe_dispatch_args_t d;
  memset(&d, 0, sizeof(d));
  d.struct_size = sizeof(d);
  d.num_tokens = (int32_t)w->tok[me];
  d.x = io->x;
  d.x_scales = w->L.cfg.scales > 0 ? io->xs : NULL;
  d.topk_ids = io->ids;
  d.recv_x = io->rx;
  d.recv_scales = w->L.cfg.scales > 0 ? (float *)io->rs : NULL;
  d.recv_counts = (int32_t *)io->cnt;
  d.recv_src = (int32_t *)io->src;
  return d;
}

/* Identity experts return recv_x; an fp8 payload's experts return y. */
static inline moecomm_moe_combine_args_t ep_combine_args(const ep_world_t *w, int me,
                                                         const ep_io_t *io, uint64_t handle) {
  moecomm_moe_combine_args_t c;
  memset(&c, 0, sizeof(c));
  c.struct_size = sizeof(c);
  c.num_tokens = (int32_t)w->tok[me];
  c.handle = handle;
  c.expert_out = w->identity ? (const void *)io->rx : io->y;
  c.topk_weights = io->w;
  c.out = io->out;
  return c;
}

/* A combine's result `got` on member me: the data error it must report (ep_world_report), named
   in the message. */
static inline int ep_world_check_report(const moecomm_api_t *api, const moecomm_context_t *ctx,
                                        const ep_world_t *w, int me, int got, const char *what) {
  const char *msg = got != MOECOMM_SUCCESS ? api->last_error(ctx) : "";
  int named;
  const int want = ep_world_report(w, me, msg, &named);
  return MC_CHECK(got == want && named, "%s: rank %d combine returned %d (%s), want %d%s: %s", what,
                  me, got, api->result_string((moecomm_result_t)got), want,
                  named ? "" : " naming the expert (and the rows dropped) or the invalid id", msg);
}

/* A context of n ranks on `device` (MOECOMM_DEVICE_CPU or an ordinal) with tp = ep = n, so
   that MOE_EP is every rank, and its MOE_EP group; NULL (a failed check) when it cannot. */
static inline moecomm_context_t *ep_make_ctx(const moecomm_api_t *api, int rank, int n, int device,
                                             moecomm_group_t **ep_p) {
  moecomm_topology_t topo = mc_test_topo(n, rank, n);
  moecomm_context_params_t p;
  moecomm_context_t *ctx = NULL;
  moecomm_result_t r;
  topo.ep = n;
  p = mc_test_ctx_params(&topo, device);
  r = api->context_create(&p, &ctx);
  if (!MC_CHECK(r == MOECOMM_SUCCESS, "context_create (rank %d of %d, device %d): %d %s", rank, n,
                device, (int)r, api->last_error(NULL)))
    return NULL;
  if (!MC_CHECK_RC(api, ctx, api->group_get(ctx, MOECOMM_GROUP_MOE_EP, ep_p), MOECOMM_SUCCESS)) {
    api->context_destroy(ctx);
    return NULL;
  }
  return ctx;
}

static inline moecomm_group_stats_t ep_stats(const moecomm_api_t *api, const moecomm_group_t *g) {
  moecomm_group_stats_t st;
  memset(&st, 0, sizeof(st));
  st.struct_size = sizeof(st);
  MC_CHECK(api->group_stats(g, &st) == MOECOMM_SUCCESS, "group_stats");
  return st;
}

#endif
