/* SPDX-License-Identifier: Apache-2.0 */
/* mem.c - `make bench-mem`: GPU memory of communicators, moecomm against what engines do.
 *
 * Every variant runs in a fresh pair of rank processes (one GPU each) so that numbers never mix;
 * each rank measures its own GPU with cudaMemGetInfo, after its CUDA context and buffers exist.
 *
 *   moecomm   all groups of a topology declared (context_create), then one collective on each
 *             group a MoE layer step uses, then on every group: memory after each phase, and the
 *             plugin's own account (group_stats device_bytes over distinct communicators);
 *   engine    what engines do: one ncclCommInitRank per group of 2+ ranks, duplicates included,
 *             each warmed up with a 1-element all-reduce; memory after the first and after all;
 *   config    one moecomm NCCL communicator with a given config (default, lean maxCTAs N, a
 *             MoE-only group): its memory and all-reduce time at 1 KB
 *             and 1 MB, eager (back-to-back calls) and in a CUDA graph of 20 calls; the default
 *             variant also measures moecomm's host cost per eager call against ncclAllReduce;
 *   split     raw NCCL: a communicator split from a parent with splitShare 0 or 1.
 *
 * Prints tables and the target checks; writes JSON (--json PATH) with device, driver, NCCL
 * version, commit and date (--driver, --commit, --date come from bench/run-mem.sh).  A 2-rank
 * benchmark: on more GPUs it uses the first 2. */
#include <stdio.h>

#include "common/bench_gpu.h"

#if !MC_WITH_CUDA
int main(void) {
  printf("SKIP bench-mem: this build has no CUDA support\n");
  return 0;
}
#else

#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "../abi/moecomm.h"
#include "../host_shim/lib/launch.h"
#include "common/bench_plugin.h"

#define NRANKS 2
#define MIB (1024.0 * 1024.0)
#define BUF_BYTES ((size_t)8 << 20)
#define GRAPH_OPS 20
#define GRAPH_REPLAYS 10
#define EAGER_ITERS 200
#define BUDGET_S 85 /* stop starting variants after this much time (bench-mem must stay ~90 s) */

typedef enum { V_MOECOMM, V_ENGINE, V_CONFIG, V_SPLIT } vkind_t;

typedef struct variant {
  const char *name;
  vkind_t kind;
  int tp, ep, attn_cp, moe_dp; /* world is NRANKS */
  const char *env[5];          /* "NAME=VALUE" set in both ranks; at most 4, NULL after */
  int group;                   /* V_CONFIG: the group whose communicator is measured */
  int split_share;             /* V_SPLIT */
  int overhead;                /* V_CONFIG: also the host time per eager call */
} variant_t;

#define NCCL_ENV "MOECOMM_BACKEND=nccl"
#define TOPO(t, e, c, d) .tp = (t), .ep = (e), .attn_cp = (c), .moe_dp = (d)
/* clang-format off */
static const variant_t k_variants[] = {
  {"moecomm nccl tp2", V_MOECOMM, TOPO(2, 1, 1, 1), .env = {NCCL_ENV}},
  {"engine tp2", V_ENGINE, TOPO(2, 1, 1, 1)},
  {"moecomm nccl tp2 ep2", V_MOECOMM, TOPO(2, 2, 1, 1), .env = {NCCL_ENV}},
  {"engine tp2 ep2", V_ENGINE, TOPO(2, 2, 1, 1)},
  {"moecomm nccl tp2 ep2 attn_cp2 moe_dp1", V_MOECOMM, TOPO(2, 2, 2, 1), .env = {NCCL_ENV}},
  {"engine tp2 ep2 attn_cp2 moe_dp1", V_ENGINE, TOPO(2, 2, 2, 1)},
  {"moecomm nccl tp2 moe_dp2", V_MOECOMM, TOPO(2, 1, 1, 2), .env = {NCCL_ENV}},
  {"engine tp2 moe_dp2", V_ENGINE, TOPO(2, 1, 1, 2)},
  {"moecomm auto tp2", V_MOECOMM, TOPO(2, 1, 1, 1), .env = {"MOECOMM_BACKEND=auto"}},
  {"moecomm auto tp2 ep2 attn_cp2 moe_dp1", V_MOECOMM, TOPO(2, 2, 2, 1),
   .env = {"MOECOMM_BACKEND=auto"}},
  {"config default", V_CONFIG, TOPO(2, 1, 1, 1),
   .env = {NCCL_ENV, "MOECOMM_NCCL_CONFIG=default"}, .group = MOECOMM_GROUP_TP, .overhead = 1},
  {"config lean maxCTAs 4", V_CONFIG, TOPO(2, 1, 1, 1),
   .env = {NCCL_ENV, "MOECOMM_NCCL_CONFIG=lean", "MOECOMM_NCCL_LEAN_CTAS=4"},
   .group = MOECOMM_GROUP_TP},
  {"config lean maxCTAs 8", V_CONFIG, TOPO(2, 1, 1, 1),
   .env = {NCCL_ENV, "MOECOMM_NCCL_CONFIG=lean", "MOECOMM_NCCL_LEAN_CTAS=8"},
   .group = MOECOMM_GROUP_TP},
  {"config lean maxCTAs 16", V_CONFIG, TOPO(2, 1, 1, 1),
   .env = {NCCL_ENV, "MOECOMM_NCCL_CONFIG=lean", "MOECOMM_NCCL_LEAN_CTAS=16"},
   .group = MOECOMM_GROUP_TP},
  /* A communicator only MoE groups use exists from tp8 ep2 on; on 2 GPUs MOECOMM_SHARE_COMMS=0
     gives MOE_EP its own, measured as the increment over the TP communicator created first. */
  {"MoE-only comm, auto (plugin default)", V_CONFIG, TOPO(2, 2, 1, 1),
   .env = {NCCL_ENV, "MOECOMM_SHARE_COMMS=0", "MOECOMM_NCCL_CONFIG=auto"},
   .group = MOECOMM_GROUP_MOE_EP},
  {"MoE-only comm, lean maxCTAs 2", V_CONFIG, TOPO(2, 2, 1, 1),
   .env = {NCCL_ENV, "MOECOMM_SHARE_COMMS=0", "MOECOMM_NCCL_CONFIG=auto",
           "MOECOMM_NCCL_LEAN_CTAS=2"}, .group = MOECOMM_GROUP_MOE_EP},
  {"MoE-only comm, lean maxCTAs 4", V_CONFIG, TOPO(2, 2, 1, 1),
   .env = {NCCL_ENV, "MOECOMM_SHARE_COMMS=0", "MOECOMM_NCCL_CONFIG=auto",
           "MOECOMM_NCCL_LEAN_CTAS=4"}, .group = MOECOMM_GROUP_MOE_EP},
  {"MoE-only comm, lean maxCTAs 8", V_CONFIG, TOPO(2, 2, 1, 1),
   .env = {NCCL_ENV, "MOECOMM_SHARE_COMMS=0", "MOECOMM_NCCL_CONFIG=auto",
           "MOECOMM_NCCL_LEAN_CTAS=8"}, .group = MOECOMM_GROUP_MOE_EP},
  {"MoE-only comm, default config", V_CONFIG, TOPO(2, 2, 1, 1),
   .env = {NCCL_ENV, "MOECOMM_SHARE_COMMS=0", "MOECOMM_NCCL_CONFIG=default"},
   .group = MOECOMM_GROUP_MOE_EP},
  {"split splitShare=0", V_SPLIT, TOPO(2, 1, 1, 1), .split_share = 0},
  {"split splitShare=1", V_SPLIT, TOPO(2, 1, 1, 1), .split_share = 1},
};
/* clang-format on */
#define NVARIANTS ((int)(sizeof(k_variants) / sizeof(k_variants[0])))

/* What one rank measured (MiB are cudaMemGetInfo drops from the rank's baseline). */
typedef struct vres {
  int done;
  char err[512];
  mc_bench_gpu_t gpu;
  double create_mib, step_mib, all_mib, stats_mib; /* moecomm */
  int comms, lists;           /* created communicators / distinct rank lists of 2+ ranks */
  int untouched_ok;           /* after context_create: every group created 0 with 0 bytes */
  double first_mib, warm_mib; /* engine: after the first communicator, after all */
  int engine_comms;
  double comm_mib, comm_stats_mib;      /* config: after its first (1-element) all-reduce */
  double comm_used_mib;                 /* config: after its 1 MB all-reduces too */
  double eager_us[2], graph_us[2];      /* 1 KB, 1 MB */
  double host_moecomm_us, host_nccl_us; /* per eager call, host side */
  double parent_mib, child_mib;         /* split */
  double seconds;
} vres_t;

static const moecomm_api_t *g_api;
static const variant_t *g_v;
static vres_t *g_res; /* MAP_SHARED: NRANKS entries */

/* The first failure of rank result r (returns 0); CU, NC and MC return it from a failed call. */
#define FAIL(r, ...) mc_bench_fail((r)->err, sizeof((r)->err), __VA_ARGS__)
#define CU(r, call) MC_BENCH_CU((r)->err, call)
#define NC(r, call) MC_BENCH_NC((r)->err, call)
#define MC(r, ctx, call)                                                                       \
  do {                                                                                         \
    moecomm_result_t m_ = (call);                                                              \
    if (m_ != MOECOMM_SUCCESS)                                                                 \
      return FAIL((r), "%s: %s: %s", #call, g_api->result_string(m_), g_api->last_error(ctx)); \
  } while (0)

static double used_mib(size_t base_free) {
  size_t f = 0, t = 0;
  if (cudaMemGetInfo(&f, &t) != cudaSuccess) return -1;
  return ((double)base_free - (double)f) / MIB;
}

static moecomm_topology_t topo_of(const variant_t *v, int rank) {
  moecomm_topology_t t = shim_launch_topology(NRANKS, rank, v->tp);
  t.ep = v->ep;
  t.attn_cp = v->attn_cp;
  t.moe_dp = v->moe_dp;
  return t;
}

static int stats(moecomm_context_t *ctx, int kind, moecomm_group_stats_t *st) {
  moecomm_group_t *g = NULL;
  memset(st, 0, sizeof(*st));
  st->struct_size = sizeof(*st);
  return g_api->group_get(ctx, (moecomm_group_kind_t)kind, &g) == MOECOMM_SUCCESS &&
         g_api->group_stats(g, st) == MOECOMM_SUCCESS;
}

/* ---- moecomm: declared groups, a MoE step, every group -------------------------------------- */

static int run_moecomm(int rank, vres_t *r, void *buf, cudaStream_t s, size_t base) {
  moecomm_topology_t topo = topo_of(g_v, rank);
  moecomm_context_params_t params = shim_launch_params(&topo, rank);
  moecomm_context_t *ctx = NULL;
  /* What one MoE layer step communicates on; WORLD and PP come afterwards. */
  static const int step[] = {MOECOMM_GROUP_ATTN_TP, MOECOMM_GROUP_ATTN_CP, MOECOMM_GROUP_TP,
                             MOECOMM_GROUP_MOE_EP,  MOECOMM_GROUP_MOE_TP,  MOECOMM_GROUP_MOE_DP,
                             MOECOMM_GROUP_MOE_CP};
  static const int rest[] = {MOECOMM_GROUP_WORLD, MOECOMM_GROUP_PP};
  int ids[16], nids = 0;
  const int32_t *lists[16];
  int sizes[16], nlists = 0;
  MC(r, NULL, g_api->context_create(&params, &ctx));
  r->create_mib = used_mib(base);
  r->untouched_ok = 1;
  for (int k = 0; k < 9; k++) {
    moecomm_group_stats_t st;
    if (!stats(ctx, k, &st)) return FAIL(r, "group_stats(%d) failed", k);
    if (st.created || st.device_bytes || st.host_bytes) r->untouched_ok = 0;
  }
  for (int phase = 0; phase < 2; phase++) {
    const int *kinds = phase == 0 ? step : rest;
    int n = phase == 0 ? (int)(sizeof(step) / sizeof(step[0])) : 2;
    for (int i = 0; i < n; i++) {
      moecomm_group_t *g = NULL;
      MC(r, ctx, g_api->group_get(ctx, (moecomm_group_kind_t)kinds[i], &g));
      MC(r, ctx, g_api->all_reduce(g, buf, buf, 65536, MOECOMM_BFLOAT16, MOECOMM_SUM, s));
      if (kinds[i] == MOECOMM_GROUP_ATTN_CP || kinds[i] == MOECOMM_GROUP_MOE_CP)
        MC(r, ctx, g_api->all_gather(g, buf, (char *)buf + (1 << 20), 16384, MOECOMM_BFLOAT16, s));
    }
    CU(r, cudaStreamSynchronize(s));
    if (phase == 0)
      r->step_mib = used_mib(base);
    else
      r->all_mib = used_mib(base);
  }
  r->stats_mib = 0;
  for (int k = 0; k < 9; k++) {
    moecomm_group_stats_t st;
    int seen = 0;
    if (!stats(ctx, k, &st)) return FAIL(r, "group_stats(%d) failed", k);
    for (int j = 0; j < nids; j++) seen |= ids[j] == st.comm_id;
    if (!seen && st.created) {
      ids[nids++] = st.comm_id;
      r->stats_mib += st.device_bytes / MIB;
    }
    if (st.size >= 2) {
      int dup = 0;
      for (int j = 0; j < nlists && !dup; j++)
        dup = sizes[j] == st.size && memcmp(lists[j], st.ranks, sizeof(int32_t) * st.size) == 0;
      if (!dup) {
        lists[nlists] = st.ranks;
        sizes[nlists++] = st.size;
      }
    }
  }
  r->comms = nids;
  r->lists = nlists;
  MC(r, ctx, g_api->context_destroy(ctx));
  return 1;
}

/* ---- engine: one NCCL communicator per group ---------------------------------------------- */

/* Unique ids for every group kind: the group's first rank makes it, the host all-gather spreads
   them (every rank calls this once with the same kinds). */
static int engine_ids(vres_t *r, moecomm_group_stats_t *st, int nk, ncclUniqueId *ids) {
  ncclUniqueId *mine = calloc((size_t)nk, sizeof(ncclUniqueId));
  ncclUniqueId *all = calloc((size_t)nk * NRANKS, sizeof(ncclUniqueId));
  int ok = 1;
  if (mine == NULL || all == NULL) ok = FAIL(r, "out of host memory");
  for (int i = 0; ok && i < nk; i++)
    if (st[i].rank == 0 && ncclGetUniqueId(&mine[i]) != ncclSuccess)
      ok = FAIL(r, "ncclGetUniqueId failed");
  if (ok && shim_host_allgather(shim_launch_hub(), mine, all, sizeof(ncclUniqueId) * nk) != 0)
    ok = FAIL(r, "host all-gather of the NCCL ids failed");
  for (int i = 0; ok && i < nk; i++) ids[i] = all[(size_t)st[i].ranks[0] * nk + i];
  free(mine);
  free(all);
  return ok;
}

static int run_engine(int rank, vres_t *r, void *buf, cudaStream_t s, size_t base) {
  moecomm_topology_t topo = topo_of(g_v, rank);
  moecomm_context_params_t params = shim_launch_params(&topo, rank);
  moecomm_context_t *ctx = NULL;
  moecomm_group_stats_t st[9];
  ncclUniqueId ids[9];
  ncclComm_t comms[9];
  int nk = 0, ok;
  /* moecomm only lends the rank lists here: a context holds no communicator. */
  MC(r, NULL, g_api->context_create(&params, &ctx));
  for (int k = 0; k < 9; k++) {
    if (!stats(ctx, k, &st[nk])) return FAIL(r, "group_stats(%d) failed", k);
    if (st[nk].size >= 2) nk++;
  }
  {
    size_t t = 0; /* count from here: the moecomm context holds no device memory anyway */
    CU(r, cudaMemGetInfo(&base, &t));
  }
  ok = engine_ids(r, st, nk, ids);
  for (int i = 0; ok && i < nk; i++) {
    /* What an engine's group constructor does: init, then a warm-up all-reduce. */
    NC(r, ncclCommInitRank(&comms[i], st[i].size, ids[i], st[i].rank));
    r->engine_comms++;
    NC(r, ncclAllReduce(buf, buf, 1, ncclFloat32, ncclSum, comms[i], s));
    CU(r, cudaStreamSynchronize(s));
    if (i == 0) r->first_mib = used_mib(base);
  }
  r->warm_mib = used_mib(base);
  for (int i = 0; i < r->engine_comms; i++) ncclCommDestroy(comms[i]);
  MC(r, ctx, g_api->context_destroy(ctx));
  return ok;
}

/* ---- config: one communicator's memory and speed ------------------------------------------ */

static int eager_time(vres_t *r, moecomm_context_t *ctx, moecomm_group_t *g, void *buf,
                      size_t count, cudaStream_t s, double *us_p) {
  cudaEvent_t a, b;
  float ms = 0;
  for (int i = 0; i < 20; i++)
    MC(r, ctx, g_api->all_reduce(g, buf, buf, count, MOECOMM_FLOAT32, MOECOMM_SUM, s));
  CU(r, cudaEventCreate(&a));
  CU(r, cudaEventCreate(&b));
  CU(r, cudaEventRecord(a, s));
  for (int i = 0; i < EAGER_ITERS; i++)
    MC(r, ctx, g_api->all_reduce(g, buf, buf, count, MOECOMM_FLOAT32, MOECOMM_SUM, s));
  CU(r, cudaEventRecord(b, s));
  CU(r, cudaEventSynchronize(b));
  CU(r, cudaEventElapsedTime(&ms, a, b));
  cudaEventDestroy(a);
  cudaEventDestroy(b);
  *us_p = ms * 1000.0 / EAGER_ITERS;
  return 1;
}

static int graph_time(vres_t *r, moecomm_context_t *ctx, moecomm_group_t *g, void *buf,
                      size_t count, cudaStream_t s, double *us_p) {
  cudaGraph_t graph = NULL;
  cudaGraphExec_t exec = NULL;
  cudaEvent_t a, b;
  float ms = 0;
  moecomm_result_t rc = MOECOMM_SUCCESS;
  MC(r, ctx, g_api->capture_begin(ctx, s));
  CU(r, cudaStreamBeginCapture(s, cudaStreamCaptureModeGlobal));
  for (int i = 0; i < GRAPH_OPS && rc == MOECOMM_SUCCESS; i++)
    rc = g_api->all_reduce(g, buf, buf, count, MOECOMM_FLOAT32, MOECOMM_SUM, s);
  CU(r, cudaStreamEndCapture(s, &graph));
  MC(r, ctx, rc);
  MC(r, ctx, g_api->capture_end(ctx, s));
  CU(r, cudaGraphInstantiate(&exec, graph, 0));
  CU(r, cudaGraphLaunch(exec, s)); /* warm-up */
  CU(r, cudaEventCreate(&a));
  CU(r, cudaEventCreate(&b));
  CU(r, cudaEventRecord(a, s));
  for (int i = 0; i < GRAPH_REPLAYS; i++) CU(r, cudaGraphLaunch(exec, s));
  CU(r, cudaEventRecord(b, s));
  CU(r, cudaEventSynchronize(b));
  CU(r, cudaEventElapsedTime(&ms, a, b));
  cudaEventDestroy(a);
  cudaEventDestroy(b);
  cudaGraphExecDestroy(exec);
  cudaGraphDestroy(graph);
  *us_p = ms * 1000.0 / (GRAPH_OPS * GRAPH_REPLAYS);
  return 1;
}

/* Host time per eager call: moecomm's all_reduce against ncclAllReduce on a raw communicator,
   1 element, batches of 100 with the stream drained between batches; the best of 5 batches. */
static int host_overhead(vres_t *r, moecomm_context_t *ctx, moecomm_group_t *g, void *buf,
                         cudaStream_t s, int rank) {
  ncclComm_t nc;
  double best_m = 1e9, best_n = 1e9;
  if (!mc_bench_nccl_comm(rank, NRANKS, &nc, r->err, sizeof(r->err))) return 0;
  NC(r, ncclAllReduce(buf, buf, 1, ncclFloat32, ncclSum, nc, s));
  CU(r, cudaStreamSynchronize(s));
  for (int t = 0; t < 5; t++) {
    double t0 = mc_bench_now_s(), t1;
    for (int i = 0; i < 100; i++)
      MC(r, ctx, g_api->all_reduce(g, buf, buf, 1, MOECOMM_FLOAT32, MOECOMM_SUM, s));
    t1 = mc_bench_now_s();
    CU(r, cudaStreamSynchronize(s));
    if ((t1 - t0) * 1e4 < best_m) best_m = (t1 - t0) * 1e4;
    t0 = mc_bench_now_s();
    for (int i = 0; i < 100; i++) NC(r, ncclAllReduce(buf, buf, 1, ncclFloat32, ncclSum, nc, s));
    t1 = mc_bench_now_s();
    CU(r, cudaStreamSynchronize(s));
    if ((t1 - t0) * 1e4 < best_n) best_n = (t1 - t0) * 1e4;
  }
  ncclCommDestroy(nc);
  r->host_moecomm_us = best_m;
  r->host_nccl_us = best_n;
  return 1;
}

static int run_config(int rank, vres_t *r, void *buf, cudaStream_t s, size_t base) {
  moecomm_topology_t topo = topo_of(g_v, rank);
  moecomm_context_params_t params = shim_launch_params(&topo, rank);
  moecomm_context_t *ctx = NULL;
  moecomm_group_t *g = NULL;
  moecomm_group_stats_t st;
  double pre = 0;
  MC(r, NULL, g_api->context_create(&params, &ctx));
  if (g_v->group != MOECOMM_GROUP_TP) {
    /* the TP communicator exists first (NCCL's one-time cost lands there) */
    moecomm_group_t *tp = NULL;
    MC(r, ctx, g_api->group_get(ctx, MOECOMM_GROUP_TP, &tp));
    MC(r, ctx, g_api->all_reduce(tp, buf, buf, 1, MOECOMM_FLOAT32, MOECOMM_SUM, s));
    CU(r, cudaStreamSynchronize(s));
    pre = used_mib(base);
  }
  MC(r, ctx, g_api->group_get(ctx, (moecomm_group_kind_t)g_v->group, &g));
  MC(r, ctx, g_api->all_reduce(g, buf, buf, 1, MOECOMM_FLOAT32, MOECOMM_SUM, s));
  CU(r, cudaStreamSynchronize(s));
  r->comm_mib = used_mib(base) - pre;
  if (!stats(ctx, g_v->group, &st)) return FAIL(r, "group_stats failed");
  r->comm_stats_mib = st.device_bytes / MIB;
  if (!eager_time(r, ctx, g, buf, 256, s, &r->eager_us[0]) ||
      !eager_time(r, ctx, g, buf, 262144, s, &r->eager_us[1]) ||
      !(r->comm_used_mib = used_mib(base) - pre, 1) ||
      !graph_time(r, ctx, g, buf, 256, s, &r->graph_us[0]) ||
      !graph_time(r, ctx, g, buf, 262144, s, &r->graph_us[1]))
    return 0;
  if (g_v->overhead && !host_overhead(r, ctx, g, buf, s, rank)) return 0;
  MC(r, ctx, g_api->context_destroy(ctx));
  return 1;
}

/* ---- split: a child communicator sharing its parent's resources or not --------------------- */

static int run_split(int rank, vres_t *r, void *buf, cudaStream_t s, size_t base) {
  ncclComm_t parent, child;
  ncclConfig_t cfg = NCCL_CONFIG_INITIALIZER;
  double before;
  if (!mc_bench_nccl_comm(rank, NRANKS, &parent, r->err, sizeof(r->err))) return 0;
  NC(r, ncclAllReduce(buf, buf, 1, ncclFloat32, ncclSum, parent, s));
  CU(r, cudaStreamSynchronize(s));
  r->parent_mib = before = used_mib(base);
  cfg.splitShare = g_v->split_share;
  NC(r, ncclCommSplit(parent, 0, rank, &child, &cfg));
  NC(r, ncclAllReduce(buf, buf, 1, ncclFloat32, ncclSum, child, s));
  CU(r, cudaStreamSynchronize(s));
  r->child_mib = used_mib(base) - before;
  ncclCommDestroy(child);
  ncclCommDestroy(parent);
  return 1;
}

static int rank_main(int rank, int world, void *arg) {
  vres_t *r = &g_res[rank];
  cudaStream_t s = NULL;
  void *buf = NULL;
  size_t base = 0, total = 0;
  double t0 = mc_bench_now_s();
  int ok = 0;
  (void)world;
  (void)arg;
  shim_env_apply(g_v->env);
  if (!mc_bench_rank_gpu(rank, &r->gpu, r->err, sizeof(r->err))) goto out;
  if (cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking) != cudaSuccess ||
      cudaMalloc(&buf, BUF_BYTES) != cudaSuccess || cudaMemset(buf, 0, BUF_BYTES) != cudaSuccess ||
      cudaDeviceSynchronize() != cudaSuccess || cudaMemGetInfo(&base, &total) != cudaSuccess) {
    FAIL(r, "CUDA setup failed");
    goto out;
  }
  g_api = mc_bench_plugin();
  switch (g_v->kind) {
    case V_MOECOMM: ok = run_moecomm(rank, r, buf, s, base); break;
    case V_ENGINE: ok = run_engine(rank, r, buf, s, base); break;
    case V_CONFIG: ok = run_config(rank, r, buf, s, base); break;
    default: ok = run_split(rank, r, buf, s, base); break;
  }
out:
  r->seconds = mc_bench_now_s() - t0;
  r->done = ok;
  fflush(stdout);
  fflush(stderr);
  _exit(ok ? 0 : 1); /* skip destructors: the next variant starts from fresh processes anyway */
}

/* ---- report ------------------------------------------------------------------------------- */

static double worst(const vres_t *r, size_t off) {
  double a = *(const double *)((const char *)&r[0] + off);
  double b = *(const double *)((const char *)&r[1] + off);
  return a > b ? a : b;
}
#define W(res, field) worst((res), offsetof(vres_t, field))

int main(int argc, char **argv) {
  mc_bench_run_t run;
  vres_t(*all)[NRANKS];
  int ran = 0, world = 0, rc;
  double start = mc_bench_now_s(), one_comm = -1, moe_only = -1;
  char nccl[32];
  mc_bench_gpu_t gpu = {"unknown", 0, 0}; /* the last variant's rank 0 that reached its GPU */
  int targets_failed = 0;
  FILE *jf = NULL;

  rc = mc_bench_gpu_begin(argc, argv, "bench-mem", NRANKS, &run, &world);
  if (rc >= 0) return rc;
  mc_bench_nccl_version(nccl, sizeof(nccl));
  if ((all = mc_bench_shared(sizeof(vres_t) * NRANKS * NVARIANTS)) == NULL) return 1;
  for (int v = 0; v < NVARIANTS; v++) {
    if (mc_bench_now_s() - start > BUDGET_S) {
      snprintf(all[v][0].err, sizeof(all[v][0].err), "skipped: bench-mem time budget spent");
      continue;
    }
    g_v = &k_variants[v];
    g_res = all[v];
    printf("... %s\n", g_v->name);
    if (shim_launch(NRANKS, rank_main, NULL, 60) != 0 && all[v][0].err[0] == '\0')
      snprintf(all[v][0].err, sizeof(all[v][0].err), "%s",
               all[v][1].err[0] ? all[v][1].err : "a rank crashed or timed out");
    ran++;
    if (all[v][0].gpu.name[0]) gpu = all[v][0].gpu;
  }

  mc_bench_print_facts("bench-mem", &run, &gpu, nccl);
  printf("MiB per GPU (worse of the 2 ranks), counted from after the CUDA context and buffers\n\n");
  printf("%-40s %9s %9s %9s %9s %6s\n", "variant", "declared", "MoE step", "all grps", "stats",
         "comms");
  for (int v = 0; v < NVARIANTS; v++) {
    const variant_t *vv = &k_variants[v];
    const vres_t *r = all[v];
    if (vv->kind == V_ENGINE) {
      if (r[0].err[0])
        printf("%-40s ERROR %s\n", vv->name, r[0].err);
      else
        printf("%-40s %9s %9.1f %9.1f %9s %6d   (first communicator %.1f)\n", vv->name, "-",
               W(r, warm_mib), W(r, warm_mib), "-", r[0].engine_comms, W(r, first_mib));
      if (!r[0].err[0] && (one_comm < 0 || W(r, first_mib) < one_comm)) one_comm = W(r, first_mib);
    } else if (vv->kind == V_MOECOMM) {
      if (r[0].err[0])
        printf("%-40s ERROR %s\n", vv->name, r[0].err);
      else
        printf("%-40s %9.1f %9.1f %9.1f %9.1f %6d\n", vv->name, W(r, create_mib), W(r, step_mib),
               W(r, all_mib), W(r, stats_mib), r[0].comms);
    }
  }
  printf("\n%-40s %9s %9s %9s %9s %9s %9s %9s\n", "config (one communicator)", "MiB", "stats",
         "after 1M", "eager 1K", "eager 1M", "graph 1K", "graph 1M");
  for (int v = 0; v < NVARIANTS; v++) {
    const variant_t *vv = &k_variants[v];
    const vres_t *r = all[v];
    if (vv->kind != V_CONFIG) continue;
    if (r[0].err[0]) {
      printf("%-40s ERROR %s\n", vv->name, r[0].err);
      continue;
    }
    printf("%-40s %9.1f %9.1f %9.1f %8.1fu %8.1fu %8.1fu %8.1fu\n", vv->name, W(r, comm_mib),
           W(r, comm_stats_mib), W(r, comm_used_mib), W(r, eager_us[0]), W(r, eager_us[1]),
           W(r, graph_us[0]), W(r, graph_us[1]));
    if (vv->overhead)
      printf("%-40s moecomm %.2f us, ncclAllReduce %.2f us per eager call (host): +%.2f us\n", "",
             W(r, host_moecomm_us), W(r, host_nccl_us), W(r, host_moecomm_us) - W(r, host_nccl_us));
    if (vv->group == MOECOMM_GROUP_MOE_EP && strstr(vv->name, "plugin default") != NULL)
      moe_only = W(r, comm_used_mib);
  }
  for (int v = 0; v < NVARIANTS; v++) {
    const vres_t *r = all[v];
    if (k_variants[v].kind != V_SPLIT) continue;
    if (r[0].err[0])
      printf("%-40s ERROR %s\n", k_variants[v].name, r[0].err);
    else
      printf("%-40s parent %.1f MiB, child adds %.1f MiB\n", k_variants[v].name, W(r, parent_mib),
             W(r, child_mib));
  }

  printf("\ntargets:\n");
  for (int v = 0; v < NVARIANTS; v++) {
    const variant_t *vv = &k_variants[v];
    const vres_t *r = all[v];
    int pass;
    if (vv->kind != V_MOECOMM || r[0].err[0] || strncmp(vv->name, "moecomm nccl", 12) != 0)
      continue;
    pass = r[0].untouched_ok && r[1].untouched_ok && W(r, create_mib) < 1.0;
    targets_failed += !pass;
    printf("  %s  %-40s unused groups cost 0 B (%.1f MiB after context_create)\n",
           pass ? "PASS" : "FAIL", vv->name, W(r, create_mib));
    pass = r[0].comms == r[0].lists;
    targets_failed += !pass;
    printf("  %s  %-40s identical rank lists share one communicator (%d for %d lists)\n",
           pass ? "PASS" : "FAIL", vv->name, r[0].comms, r[0].lists);
    if (one_comm >= 0) {
      pass = W(r, all_mib) <= one_comm + 32.0;
      targets_failed += !pass;
      printf("  %s  %-40s every group touched %.1f MiB <= one NCCL communicator %.1f + 32\n",
             pass ? "PASS" : "FAIL", vv->name, W(r, all_mib), one_comm);
    }
  }
  if (moe_only >= 0) {
    int pass = moe_only <= 128.0;
    targets_failed += !pass;
    printf(
        "  %s  MoE-only NCCL communicator (plugin default), after 1 MB all-reduces: %.1f MiB "
        "<= 128\n",
        pass ? "PASS" : "FAIL", moe_only);
  }
  printf("\n%d variants in %.0f s\n", ran, mc_bench_now_s() - start);

  if (run.json != NULL) jf = mc_bench_json_open(run.json, "mem", &run, &gpu, 0, nccl);
  if (jf != NULL) {
    fprintf(jf,
            ",\n  \"unit\": \"MiB per GPU, worse of 2 ranks; us per op\",\n"
            "  \"one_nccl_comm_mib\": %.2f,\n  \"moe_only_comm_mib\": %.2f,\n"
            "  \"targets_failed\": %d,\n  \"variants\": [\n",
            one_comm, moe_only, targets_failed);
    for (int v = 0; v < NVARIANTS; v++) {
      const variant_t *vv = &k_variants[v];
      const vres_t *r = all[v];
      static const char *const kinds[] = {"moecomm", "engine", "config", "split"};
      fprintf(jf, "    {\"name\": ");
      mc_bench_json_str(jf, vv->name);
      fprintf(
          jf,
          ", \"kind\": \"%s\", \"tp\": %d, \"ep\": %d, \"attn_cp\": %d, \"moe_dp\": %d, \"env\": [",
          kinds[vv->kind], vv->tp, vv->ep, vv->attn_cp, vv->moe_dp);
      for (int i = 0; i < 5 && vv->env[i] != NULL; i++) {
        if (i) fputs(", ", jf);
        mc_bench_json_str(jf, vv->env[i]);
      }
      fprintf(jf, "], \"error\": ");
      mc_bench_json_str(jf, r[0].err);
      fprintf(jf,
              ",\n     \"declared_mib\": %.2f, \"step_mib\": %.2f, \"all_groups_mib\": %.2f, "
              "\"stats_mib\": %.2f, \"comms\": %d, \"rank_lists\": %d,\n"
              "     \"engine_first_mib\": %.2f, \"engine_total_mib\": %.2f, "
              "\"engine_comms\": %d,\n"
              "     \"comm_mib\": %.2f, \"comm_stats_mib\": %.2f, \"comm_after_1m_mib\": %.2f, "
              "\"eager_1k_us\": %.2f, "
              "\"eager_1m_us\": %.2f, \"graph_1k_us\": %.2f, \"graph_1m_us\": %.2f,\n"
              "     \"host_moecomm_us\": %.3f, \"host_nccl_us\": %.3f, \"split_parent_mib\": %.2f, "
              "\"split_child_mib\": %.2f, \"seconds\": %.1f}%s\n",
              W(r, create_mib), W(r, step_mib), W(r, all_mib), W(r, stats_mib), r[0].comms,
              r[0].lists, W(r, first_mib), W(r, warm_mib), r[0].engine_comms, W(r, comm_mib),
              W(r, comm_stats_mib), W(r, comm_used_mib), W(r, eager_us[0]), W(r, eager_us[1]),
              W(r, graph_us[0]), W(r, graph_us[1]), W(r, host_moecomm_us), W(r, host_nccl_us),
              W(r, parent_mib), W(r, child_mib), r[0].seconds, v + 1 < NVARIANTS ? "," : "");
    }
    fprintf(jf, "  ]\n}\n");
    fclose(jf);
    printf("wrote %s\n", run.json);
  }
  munmap(all, sizeof(vres_t) * NRANKS * NVARIANTS);
  return 0;
}

#endif /* MC_WITH_CUDA */
