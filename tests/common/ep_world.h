/* ep_world.h - every member's inputs of one expert-parallel call pair, regenerated alike on every
 * rank from a seed, with the CPU reference's outputs (plugin/ep_layout.c) and the checks of what
 * a rank got through the ABI (tests/unit/moe_shm.c on CPU ranks, tests/gpu/moe_gpu.c on GPUs).
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
   0's item `bad` the invalid id E + 5. */
static inline void ep_world_gen(ep_world_t *w, uint64_t seed, int route, int kind, int bad) {
  const mc_ep_config_t *c = &w->L.cfg;
  uint64_t st = seed;
  const int hot = (int)(mc_test_rand(&st) % (uint64_t)c->experts);
  for (int q = 0; q < w->n; q++) {
    w->tok[q] = q == 0   ? c->t_max
                : q == 1 ? 0
                         : (int64_t)(mc_test_rand(&st) % (uint64_t)(c->t_max + 1));
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

/* The data error member me's combine must report: its code, and in needle a piece of the message
   ("expert id 13 ", or "expert 5 " for the first local expert over its capacity). */
static inline int ep_world_report(const ep_world_t *w, int me, char *needle, size_t cap) {
  const mc_ep_layout_t *l = &w->L;
  needle[0] = '\0';
  if (me == 0 && w->bad >= 0) {
    snprintf(needle, cap, "expert id %d ", (int)w->ids[0][w->bad]);
    return MOECOMM_ERR_INVALID_ARGUMENT;
  }
  for (int e = 0; e < l->local_experts; e++)
    if (w->tot[me][e] > l->cfg.capacity) {
      snprintf(needle, cap, "expert %d ", me * l->local_experts + e);
      return MOECOMM_ERR_NOT_SUPPORTED;
    }
  return MOECOMM_SUCCESS;
}

#endif
