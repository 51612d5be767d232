/* SPDX-License-Identifier: Apache-2.0 */
/* moe_shm.c - expert-parallel dispatch and combine through the ABI on CPU ranks (shm backend).
 *
 * Worlds of 1, 2, 3 and 4 ranks with every payload dtype (fp32, fp16, bf16, fp8 with two scales
 * per token and bf16 expert outputs), and 8 ranks with bf16, MOE_EP = every rank: each context
 * runs every routing case of tests/common/ep_cases.h (experts left empty, all tokens to one
 * expert, masked slots, a token's experts all on one rank with repeats) with integer and real
 * data, rank 0 dispatching T_max tokens, rank 1 none, the others a random count.  Every rank
 * regenerates every rank's inputs (tests/common/ep_world.h) and checks its own outputs, poisoned
 * before each call with guard bytes after them, against the CPU reference byte for byte:
 * recv_x, recv_scales, recv_counts, recv_src and the combine's out (identity experts, integer
 * data: also exactly sum over kept k of w * x).  A capacity of 3 rows: the owner's next combine
 * reports MOECOMM_ERR_NOT_SUPPORTED naming its first expert over capacity (the others succeed),
 * having done its work; an invalid expert id: masked, and the combine reports
 * MOECOMM_ERR_INVALID_ARGUMENT naming it.  Per context: dispatch before moe_configure, two
 * dispatches in a row, a stale or wrong handle -> MOECOMM_ERR_STATE; T_max + 1 tokens ->
 * MOECOMM_ERR_INVALID_ARGUMENT with nothing written; host bytes unchanged by moe_configure and
 * grown by the first dispatch; ops counted per pair.  Separately: ranks configuring different
 * shapes -> MOECOMM_ERR_CONFIG on every rank; a rank killed while the others dispatch ->
 * MOECOMM_ERR_PEER or TIMEOUT within MOECOMM_TIMEOUT_MS (+ slack), later calls fail fast; the
 * capture scope counts dispatch and combine (a rank that made its pair outside the scope makes
 * capture_end fail on every rank naming MOE_EP). */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../common/ep_world.h"
#include "../common/harness.h"

#define KILL_TIMEOUT_MS 3000

static const moecomm_api_t *api;

typedef struct tcase {
  int n, experts, top_k, dtype;
  int64_t t_max, hidden, cap;
  int bad; /* one pair gives member 0's item `bad` an invalid id; -1: none */
} tcase_t;

/* This rank's outputs (poisoned, EP_GUARD bytes after each). */
typedef struct rbufs {
  char *rx, *rs, *cnt, *src, *out;
} rbufs_t;

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return 1e3 * (double)ts.tv_sec + 1e-6 * (double)ts.tv_nsec;
}

static mc_ep_config_t tc_config(const tcase_t *t) {
  const int fp8 = t->dtype == MC_EP_FLOAT8_E4M3;
  return ep_config(t->n, t->experts, t->top_k, t->dtype, fp8 ? MOECOMM_BFLOAT16 : t->dtype,
                   fp8 ? 2 : 0, MC_EP_PATH_NCCL, t->t_max, t->hidden, t->cap);
}

static int rbufs_open(rbufs_t *b, const mc_ep_layout_t *l) {
  b->rx = ep_poisoned((size_t)l->recv_x_bytes);
  b->rs = ep_poisoned((size_t)l->recv_scales_bytes);
  b->cnt = ep_poisoned((size_t)l->recv_counts_bytes);
  b->src = ep_poisoned((size_t)l->recv_src_bytes);
  b->out = ep_poisoned((size_t)l->out_bytes);
  return MC_CHECK(b->rx && b->rs && b->cnt && b->src && b->out, "out of host memory");
}

static void rbufs_close(rbufs_t *b) {
  free(b->rx);
  free(b->rs);
  free(b->cnt);
  free(b->src);
  free(b->out);
}

static void rbufs_poison(rbufs_t *b, const mc_ep_layout_t *l) {
  memset(b->rx, EP_POISON, (size_t)l->recv_x_bytes + EP_GUARD);
  memset(b->rs, EP_POISON, (size_t)l->recv_scales_bytes + EP_GUARD);
  memset(b->cnt, EP_POISON, (size_t)l->recv_counts_bytes + EP_GUARD);
  memset(b->src, EP_POISON, (size_t)l->recv_src_bytes + EP_GUARD);
  memset(b->out, EP_POISON, (size_t)l->out_bytes + EP_GUARD);
}

/* Every byte of b still poisoned. */
static int rbufs_untouched(const rbufs_t *b, const mc_ep_layout_t *l) {
  const char *p[5] = {b->rx, b->rs, b->cnt, b->src, b->out};
  const int64_t n[5] = {l->recv_x_bytes, l->recv_scales_bytes, l->recv_counts_bytes,
                        l->recv_src_bytes, l->out_bytes};
  for (int i = 0; i < 5; i++)
    for (int64_t j = 0; j < n[i] + EP_GUARD; j++)
      if ((uint8_t)p[i][j] != EP_POISON) return 0;
  return 1;
}

/* This rank's ABI buffers: its inputs in w, its outputs in b. */
static ep_io_t io_of(const ep_world_t *w, int me, rbufs_t *b) {
  ep_io_t io;
  io.ids = w->ids[me];
  io.x = w->x[me];
  io.y = w->y[me];
  io.xs = w->xs[me];
  io.w = w->w[me];
  io.rx = b->rx;
  io.rs = b->rs;
  io.cnt = b->cnt;
  io.src = b->src;
  io.out = b->out;
  return io;
}

static moecomm_moe_dispatch_args_t dispatch_args(const ep_world_t *w, int me, rbufs_t *b) {
  const ep_io_t io = io_of(w, me, b);
  return ep_dispatch_args(w, me, &io);
}

static moecomm_moe_combine_args_t combine_args(const ep_world_t *w, int me, rbufs_t *b,
                                               uint64_t handle) {
  const ep_io_t io = io_of(w, me, b);
  return ep_combine_args(w, me, &io, handle);
}

static int check_report(moecomm_context_t *ctx, const ep_world_t *w, int me, int got,
                        const char *what) {
  return ep_world_check_report(api, ctx, w, me, got, what);
}

/* One pair: dispatch, check its outputs, identity (or given) experts, combine, check. */
static int run_pair(moecomm_context_t *ctx, moecomm_group_t *g, const ep_world_t *w, int me,
                    rbufs_t *b, int kind, const char *what) {
  moecomm_moe_dispatch_args_t d = dispatch_args(w, me, b);
  moecomm_moe_combine_args_t c;
  uint64_t h = 0;
  rbufs_poison(b, &w->L);
  if (!MC_CHECK_RC(api, ctx, api->moe_dispatch(g, &d, &h, NULL), MOECOMM_SUCCESS) ||
      !ep_world_check_dispatch(w, me, b->rx, b->rs, b->cnt, b->src, what))
    return 0;
  c = combine_args(w, me, b, h);
  return check_report(ctx, w, me, api->moe_combine(g, &c, NULL), what) &&
         ep_world_check_combine(w, me, b->out, kind, what);
}

/* Misuse that every rank makes alike (no rank waits for another): nothing is written. */
static int misuse(moecomm_context_t *ctx, moecomm_group_t *g, ep_world_t *w, int me, rbufs_t *b) {
  moecomm_moe_dispatch_args_t d = dispatch_args(w, me, b);
  moecomm_moe_combine_args_t c = combine_args(w, me, b, 0);
  uint64_t h = 0xdeadull, h2 = 0;
  int ok;
  rbufs_poison(b, &w->L);
  d.num_tokens = (int32_t)w->L.cfg.t_max + 1;
  ok = MC_CHECK_RC(api, ctx, api->moe_dispatch(g, &d, &h, NULL), MOECOMM_ERR_INVALID_ARGUMENT) &&
       MC_CHECK(h == 0xdeadull && rbufs_untouched(b, &w->L),
                "T_max + 1 tokens: the refused dispatch wrote its outputs or handle");
  c.handle = h; /* no dispatch pending */
  ok = ok && MC_CHECK_RC(api, ctx, api->moe_combine(g, &c, NULL), MOECOMM_ERR_STATE);
  d = dispatch_args(w, me, b);
  ok = ok && MC_CHECK_RC(api, ctx, api->moe_dispatch(g, &d, &h, NULL), MOECOMM_SUCCESS) &&
       MC_CHECK_RC(api, ctx, api->moe_dispatch(g, &d, &h2, NULL), MOECOMM_ERR_STATE);
  c = combine_args(w, me, b, h + 1);
  ok = ok && MC_CHECK_RC(api, ctx, api->moe_combine(g, &c, NULL), MOECOMM_ERR_STATE);
  c.handle = h;
  ok = ok && check_report(ctx, w, me, api->moe_combine(g, &c, NULL), "after misuse") &&
       ep_world_check_combine(w, me, b->out, 1, "after misuse") &&
       MC_CHECK_RC(api, ctx, api->moe_combine(g, &c, NULL), MOECOMM_ERR_STATE);
  return ok;
}

/* Host bytes: moe_configure allocates nothing, the first dispatch adds the EP buffers to what the
   communicator's all-reduce made (the same comm: MOE_EP shares TP's rank list). */
static int first_pair(moecomm_context_t *ctx, moecomm_group_t *g, const ep_world_t *w, int me,
                      rbufs_t *b, const moecomm_moe_config_t *mc) {
  moecomm_group_t *tp = NULL;
  moecomm_group_stats_t s0, s1, s2;
  float x[8] = {1, 2, 3, 4, 5, 6, 7, 8}, y[8];
  int ok = MC_CHECK_RC(api, ctx, api->group_get(ctx, MOECOMM_GROUP_TP, &tp), MOECOMM_SUCCESS) &&
           MC_CHECK_RC(api, ctx, api->all_reduce(tp, x, y, 8, MOECOMM_FLOAT32, MOECOMM_SUM, NULL),
                       MOECOMM_SUCCESS);
  s0 = ep_stats(api, g);
  ok = ok && MC_CHECK_RC(api, ctx, api->moe_configure(g, mc), MOECOMM_SUCCESS);
  s1 = ep_stats(api, g);
  ok = ok && MC_CHECK(s1.host_bytes == s0.host_bytes && s1.moe_max_tokens == mc->max_tokens,
                      "moe_configure changed host bytes %llu -> %llu",
                      (unsigned long long)s0.host_bytes, (unsigned long long)s1.host_bytes);
  ok = ok && run_pair(ctx, g, w, me, b, 0, "first pair");
  s2 = ep_stats(api, g);
  return ok && MC_CHECK(s2.host_bytes > s1.host_bytes && s2.ops == s1.ops + 2 &&
                            s2.ops_shm == s1.ops_shm + 2 &&
                            (s2.backend_name != NULL && strstr(s2.backend_name, "shm") != NULL),
                        "after the first pair: host bytes %llu -> %llu, ops %llu -> %llu, shm %llu",
                        (unsigned long long)s1.host_bytes, (unsigned long long)s2.host_bytes,
                        (unsigned long long)s1.ops, (unsigned long long)s2.ops,
                        (unsigned long long)s2.ops_shm);
}

/* One configuration on this rank: fresh context, every routing case with both data kinds. */
static int run_case(int rank, const tcase_t *t, uint64_t seed) {
  const mc_ep_config_t cfg = tc_config(t);
  const moecomm_moe_config_t mc = ep_abi_config(&cfg);
  moecomm_group_t *g = NULL;
  moecomm_context_t *ctx = NULL;
  ep_world_t w;
  rbufs_t b;
  char what[200];
  uint64_t h = 0;
  int ok;
  if (!ep_world_open(&w, &cfg)) return 0;
  ok = rbufs_open(&b, &w.L) && (ctx = ep_make_ctx(api, rank, t->n, MOECOMM_DEVICE_CPU, &g)) != NULL;
  if (!ok) {
    rbufs_close(&b);
    ep_world_close(&w);
    return 0;
  }
  {
    moecomm_moe_dispatch_args_t d = dispatch_args(&w, rank, &b);
    ok = MC_CHECK_RC(api, ctx, api->moe_dispatch(g, &d, &h, NULL), MOECOMM_ERR_STATE);
  }
  for (int route = 0; ok && route < EP_ROUTE_COUNT; route++)
    for (int kind = 0; ok && kind < 2; kind++) {
      const int bad = route == EP_ROUTE_RANDOM && kind == 1 ? t->bad : -1;
      snprintf(what, sizeof(what), "n%d E%d k%d dtype %d T_max %lld H %lld C %lld %s %s%s", t->n,
               t->experts, t->top_k, t->dtype, (long long)t->t_max, (long long)t->hidden,
               (long long)w.L.cfg.capacity, ep_route_names[route], kind ? "real" : "integer",
               bad >= 0 ? " invalid id" : "");
      ep_world_gen(&w, seed + (uint64_t)(2 * route + kind), route, kind, bad);
      ok = ep_world_ref(&w) && (route + kind == 0 ? first_pair(ctx, g, &w, rank, &b, &mc)
                                                  : run_pair(ctx, g, &w, rank, &b, kind, what));
      if (ok && route + kind == 0) ok = misuse(ctx, g, &w, rank, &b);
    }
  api->context_destroy(ctx);
  rbufs_close(&b);
  ep_world_close(&w);
  return MC_CHECK(ok, "rank %d: %s", rank, what);
}

/* The cases of a world of n ranks. */
static int cases_rank(int rank, int world, void *arg) {
  static const int dts[4] = {MOECOMM_FLOAT32, MOECOMM_FLOAT16, MOECOMM_BFLOAT16, MC_EP_FLOAT8_E4M3};
  const int n = world;
  int ok = 1;
  (void)arg;
  for (int d = 0; ok && d < 4; d++) {
    tcase_t t = {n,
                 n * (1 + (n + d) % 3),
                 1 + (2 * n + 3 * d) % 8,
                 dts[d],
                 d == 1 ? 40 : 17,
                 d == 3 ? 48 : 32,
                 0,
                 -1};
    if (n == 8 && dts[d] != MOECOMM_BFLOAT16) continue;
    ok = run_case(rank, &t, 1000u * (uint64_t)n + 100u * (uint64_t)d);
  }
  if (ok && n >= 2) { /* capacity 3: the one-expert and one-rank cases overflow; an invalid id */
    tcase_t t = {n, 2 * n, 4, MOECOMM_BFLOAT16, 12, 32, 3, 5};
    ok = run_case(rank, &t, 7000u + (uint64_t)n);
  }
  return ok ? 0 : 1;
}

/* Rank 1 configures another hidden size: the first dispatch fails on every rank. */
static int mismatch_rank(int rank, int world, void *arg) {
  mc_ep_config_t cfg = ep_config(world, 2 * world, 2, MOECOMM_BFLOAT16, MOECOMM_BFLOAT16, 0,
                                 MC_EP_PATH_NCCL, 8, rank == 1 ? 64 : 32, 0);
  moecomm_moe_config_t mc = ep_abi_config(&cfg);
  moecomm_group_t *g = NULL;
  moecomm_context_t *ctx = ep_make_ctx(api, rank, world, MOECOMM_DEVICE_CPU, &g);
  ep_world_t w;
  rbufs_t b;
  uint64_t h = 0;
  (void)arg;
  if (ctx == NULL || !ep_world_open(&w, &cfg)) return 1;
  if (rbufs_open(&b, &w.L)) {
    moecomm_moe_dispatch_args_t d;
    moecomm_result_t r;
    ep_world_gen(&w, 5, EP_ROUTE_RANDOM, 0, -1);
    d = dispatch_args(&w, rank, &b);
    MC_CHECK_RC(api, ctx, api->moe_configure(g, &mc), MOECOMM_SUCCESS);
    r = api->moe_dispatch(g, &d, &h, NULL);
    MC_CHECK(r == MOECOMM_ERR_CONFIG && strstr(api->last_error(ctx), "rank 1") != NULL,
             "rank %d: dispatch after different configurations: %d (%s): %s", rank, (int)r,
             api->result_string(r), api->last_error(ctx));
    MC_CHECK(rbufs_untouched(&b, &w.L) && h == 0, "rank %d: the refused dispatch wrote", rank);
    if (rank == 0) printf("configure mismatch: %s\n", api->last_error(ctx));
  }
  rbufs_close(&b);
  ep_world_close(&w);
  api->context_destroy(ctx);
  return 0;
}

/* Pairs until rank 2 kills itself before its 5th dispatch: the others fail in that dispatch. */
static int kill_rank(int rank, int world, void *arg) {
  const mc_ep_config_t cfg = ep_config(world, 3 * world, 4, MOECOMM_BFLOAT16, MOECOMM_BFLOAT16, 0,
                                       MC_EP_PATH_NCCL, 16, 64, 0);
  const moecomm_moe_config_t mc = ep_abi_config(&cfg);
  moecomm_group_t *g = NULL;
  moecomm_context_t *ctx = ep_make_ctx(api, rank, world, MOECOMM_DEVICE_CPU, &g);
  moecomm_result_t r = MOECOMM_SUCCESS;
  ep_world_t w;
  rbufs_t b;
  double t0 = 0, dt;
  int i;
  (void)arg;
  if (ctx == NULL || !ep_world_open(&w, &cfg) || !rbufs_open(&b, &w.L)) return 1;
  MC_CHECK_RC(api, ctx, api->moe_configure(g, &mc), MOECOMM_SUCCESS);
  for (i = 0; i < 50 && r == MOECOMM_SUCCESS; i++) {
    moecomm_moe_dispatch_args_t d;
    moecomm_moe_combine_args_t c;
    uint64_t h = 0;
    ep_world_gen(&w, 300u + (uint64_t)i, EP_ROUTE_RANDOM, 0, -1);
    d = dispatch_args(&w, rank, &b);
    if (rank == 2 && i == 5) {
      mc_test_rank_expect_death();
      kill(getpid(), SIGKILL);
    }
    t0 = now_ms();
    r = api->moe_dispatch(g, &d, &h, NULL);
    if (r != MOECOMM_SUCCESS) break;
    c = combine_args(&w, rank, &b, h);
    r = api->moe_combine(g, &c, NULL);
  }
  dt = now_ms() - t0;
  MC_CHECK(
      i == 5 && (r == MOECOMM_ERR_PEER || r == MOECOMM_ERR_TIMEOUT) && dt < KILL_TIMEOUT_MS + 2500,
      "rank %d: pair %d returned %d (%s) after %.0f ms: %s", rank, i, (int)r, api->result_string(r),
      dt, api->last_error(ctx));
  if (rank == 0)
    printf("killed rank: dispatch failed after %.0f ms: %s\n", dt, api->last_error(ctx));
  t0 = now_ms();
  {
    moecomm_moe_dispatch_args_t d = dispatch_args(&w, rank, &b);
    uint64_t h = 0;
    r = api->moe_dispatch(g, &d, &h, NULL);
    MC_CHECK(r != MOECOMM_SUCCESS && now_ms() - t0 < 500,
             "rank %d: a dispatch after the failure: %d in %.0f ms", rank, (int)r, now_ms() - t0);
  }
  api->context_destroy(ctx);
  rbufs_close(&b);
  ep_world_close(&w);
  return 0;
}

/* The capture scope counts dispatch and combine: equal -> success; rank 1 making its pair before
   capture_begin -> capture_end fails on both ranks naming MOE_EP. */
static int capture_rank(int rank, int world, void *arg) {
  const mc_ep_config_t cfg = ep_config(world, 2 * world, 2, MOECOMM_FLOAT32, MOECOMM_FLOAT32, 0,
                                       MC_EP_PATH_NCCL, 6, 16, 0);
  const moecomm_moe_config_t mc = ep_abi_config(&cfg);
  moecomm_group_t *g = NULL;
  moecomm_context_t *ctx = ep_make_ctx(api, rank, world, MOECOMM_DEVICE_CPU, &g);
  moecomm_result_t r;
  ep_world_t w;
  rbufs_t b;
  (void)arg;
  if (ctx == NULL || !ep_world_open(&w, &cfg) || !rbufs_open(&b, &w.L)) return 1;
  MC_CHECK_RC(api, ctx, api->moe_configure(g, &mc), MOECOMM_SUCCESS);
  for (int round = 0; round < 2; round++) {
    const int outside = round == 1 && rank == 1;
    ep_world_gen(&w, 40u + (uint64_t)round, EP_ROUTE_RANDOM, 0, -1);
    if (!ep_world_ref(&w)) break;
    if (outside) run_pair(ctx, g, &w, rank, &b, 0, "pair before the scope");
    MC_CHECK_RC(api, ctx, api->capture_begin(ctx, NULL), MOECOMM_SUCCESS);
    if (!outside) run_pair(ctx, g, &w, rank, &b, 0, "pair inside the scope");
    r = api->capture_end(ctx, NULL);
    if (round == 0)
      MC_CHECK_RC(api, ctx, r, MOECOMM_SUCCESS);
    else
      MC_CHECK(r == MOECOMM_ERR_CAPTURE && strstr(api->last_error(ctx), "MOE_EP") != NULL,
               "rank %d: capture_end after unequal dispatch counts: %d (%s): %s", rank, (int)r,
               api->result_string(r), api->last_error(ctx));
  }
  if (rank == 0) printf("unequal dispatch counts: %s\n", api->last_error(ctx));
  api->context_destroy(ctx);
  rbufs_close(&b);
  ep_world_close(&w);
  return 0;
}

int main(int argc, char **argv) {
  char t[32];
  mc_test_init("moe_shm", argc, argv);
  api = mc_test_plugin();
  setenv("MOECOMM_TIMEOUT_MS", "20000", 1);
  for (int n = 1; n <= 4; n++)
    MC_CHECK(mc_test_ranks(n, cases_rank, NULL, 120) == 0, "dispatch/combine on %d ranks", n);
  MC_CHECK(mc_test_ranks(8, cases_rank, NULL, 120) == 0, "dispatch/combine on 8 ranks");
  MC_CHECK(mc_test_ranks(3, mismatch_rank, NULL, 60) == 0, "configure mismatch");
  MC_CHECK(mc_test_ranks(2, capture_rank, NULL, 60) == 0, "capture scope");
  snprintf(t, sizeof(t), "%d", KILL_TIMEOUT_MS);
  setenv("MOECOMM_TIMEOUT_MS", t, 1);
  printf("(a launcher line about rank 2 killed by signal 9 is expected)\n");
  MC_CHECK(mc_test_ranks(3, kill_rank, NULL, 60) == 0, "a rank killed during dispatch");
  return mc_test_finish();
}
