/* SPDX-License-Identifier: Apache-2.0 */
/* scatter.c - scatter-mode benchmark on 2 GPUs (bench/run-scatter.sh); a 2-rank benchmark (on
 * more GPUs it uses the first 2).
 *
 * One context, tp2 ep2 attn_cp2 moe_dp1 (attn_tp 1: every rank is its own attention group, and
 * MOE_CP = MOE_EP = TP = both ranks), default backend, plus an ncclComm the benchmark makes itself.
 *
 * (a) MoE step, the same tokens (N per rank, bf16, hidden 4096) moved two ways:
 *     MOE_FULL step = scatter(TP_ATTN_FULL -> MOE_FULL, reduce) + scatter(MOE_FULL -> TP_ATTN_FULL,
 *                     reduce): MOE_CP all-gather padded to the largest count, the MoE all-reduce
 *                     (MOE_TP, MOE_EP) of all gathered rows, the slice back;
 *     FULL step     = scatter(SCATTERED -> FULL) + scatter(FULL -> SCATTERED, reduce): TP
 *                     all-gather, TP reduce-scatter, the slice back.
 *     Both leave 2 x the input in the output (two ranks' identical "partial sums"): verified.
 * (b) The MoE-CP all-gather (TP_ATTN_FULL -> MOE_FULL, no reduce) against ncclAllGather on the
 *     benchmark's own communicator, output sizes 1 KB .. 64 MB x4, bf16; verified.
 * Method (DESIGN.md "Measuring"): each measurement is a CUDA graph of 20 ops (steps) replayed
 * 3 + 15 times, each timed replay between CUDA events; median per op; the worse rank is reported.
 * Prints tables and writes JSON (--json PATH) with device, driver, NCCL version, commit, date. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/bench_plugin.h"
#include "common/bench_gpu.h"

#if !MC_WITH_CUDA
int main(void) {
  printf("SKIP bench-scatter: this build has no CUDA support\n");
  return 0;
}
#else

#include <unistd.h>

#include "../host_shim/lib/data.h"
#include "../host_shim/lib/launch.h"
#include "../host_shim/lib/scatter_ref.h"

#define NRANKS 2
#define GRAPH_OPS 20
#define WARMUP 3
#define REPLAYS 15
#define AG_HIDDEN 256 /* bf16 elements per row: 512 B */
#define NSIZES 9      /* 1 KB .. 64 MB x4 (MOE_FULL output per rank) */
#define STEP_HIDDEN 4096
#define NSTEPS 4
#define MAX_IN_BYTES ((size_t)32 << 20)
#define MAX_OUT_BYTES ((size_t)64 << 20)
static const int k_step_tokens[NSTEPS] = {16, 128, 1024, 4096}; /* per rank */

typedef struct rres {
  int done;
  char err[512];
  mc_bench_gpu_t gpu;
  char be_cp[16], be_ep[16], be_tp[16];
  double ag_mc_us[NSIZES], ag_nccl_us[NSIZES];
  long ag_mc_wrong[NSIZES], ag_nccl_wrong[NSIZES];
  double st_moe_us[NSTEPS], st_full_us[NSTEPS];
  long st_moe_wrong[NSTEPS], st_full_wrong[NSTEPS];
} rres_t;

static const moecomm_api_t *g_api;
static rres_t *g_res; /* MAP_SHARED, NRANKS entries */

/* The first failure of rank result r (returns 0); CU returns it from a failed CUDA call. */
#define FAIL(r, ...) mc_bench_fail((r)->err, sizeof((r)->err), __VA_ARGS__)
#define CU(r, call) MC_BENCH_CU((r)->err, call)

/* Everything one rank works with. */
typedef struct bench {
  rres_t *r;
  int rank;
  moecomm_context_t *ctx;
  ncclComm_t nccl;
  cudaStream_t s;
  cudaEvent_t ev[2];
  char *d_in, *d_mid, *d_mid2, *d_out; /* in/out: MAX_IN_BYTES, mid: MAX_OUT_BYTES */
  uint16_t *h_a, *h_b;                 /* MAX_OUT_BYTES each */
  int32_t tokens[2];
} bench_t;

/* Median per op of a graph of `ops` ops, from REPLAYS timed launches after WARMUP. */
static int time_graph(bench_t *b, cudaGraphExec_t exec, int ops, double *us_p) {
  double t[REPLAYS];
  for (int i = 0; i < WARMUP; i++) CU(b->r, cudaGraphLaunch(exec, b->s));
  CU(b->r, cudaStreamSynchronize(b->s));
  for (int i = 0; i < REPLAYS; i++) {
    float ms = 0;
    CU(b->r, cudaEventRecord(b->ev[0], b->s));
    CU(b->r, cudaGraphLaunch(exec, b->s));
    CU(b->r, cudaEventRecord(b->ev[1], b->s));
    CU(b->r, cudaEventSynchronize(b->ev[1]));
    CU(b->r, cudaEventElapsedTime(&ms, b->ev[0], b->ev[1]));
    t[i] = (double)ms * 1000.0 / ops;
  }
  *us_p = mc_bench_median(t, REPLAYS);
  return 1;
}

static moecomm_scatter_args_t sargs(bench_t *b, int from, int to, int reduce, size_t hidden,
                                    void *send, void *recv) {
  return sref_args(from, to, reduce, MOECOMM_BFLOAT16, hidden, b->tokens, send, recv);
}

/* Captures GRAPH_OPS repetitions of the `n` transitions in `a` inside the context's capture
   scope.  capture_end runs whenever capture_begin succeeded (it is collective). */
static int capture_scatter(bench_t *b, const moecomm_scatter_args_t *a, int n,
                           cudaGraphExec_t *exec_p) {
  cudaGraph_t graph = NULL;
  moecomm_result_t mr;
  cudaError_t e;
  int good = 1;
  mr = g_api->capture_begin(b->ctx, b->s);
  if (mr != MOECOMM_SUCCESS) return FAIL(b->r, "capture_begin: %s", g_api->last_error(b->ctx));
  e = cudaStreamBeginCapture(b->s, cudaStreamCaptureModeGlobal);
  if (e != cudaSuccess) good = FAIL(b->r, "cudaStreamBeginCapture: %s", cudaGetErrorString(e));
  for (int i = 0; good && i < GRAPH_OPS; i++)
    for (int k = 0; good && k < n; k++) {
      mr = g_api->scatter(b->ctx, &a[k], b->s);
      if (mr != MOECOMM_SUCCESS)
        good = FAIL(b->r, "scatter %d -> %d: %s: %s", a[k].from, a[k].to, g_api->result_string(mr),
                    g_api->last_error(b->ctx));
    }
  if (e == cudaSuccess) {
    cudaError_t ee = cudaStreamEndCapture(b->s, &graph);
    if (good && ee != cudaSuccess)
      good = FAIL(b->r, "cudaStreamEndCapture: %s", cudaGetErrorString(ee));
  }
  if (good) {
    e = cudaGraphInstantiate(exec_p, graph, 0);
    if (e != cudaSuccess) good = FAIL(b->r, "cudaGraphInstantiate: %s", cudaGetErrorString(e));
  }
  if (graph) cudaGraphDestroy(graph);
  mr = g_api->capture_end(b->ctx, b->s);
  if (mr != MOECOMM_SUCCESS && good)
    good = FAIL(b->r, "capture_end: %s", g_api->last_error(b->ctx));
  if (!good && *exec_p) {
    cudaGraphExecDestroy(*exec_p);
    *exec_p = NULL;
  }
  return good;
}

static int capture_nccl(bench_t *b, size_t count, cudaGraphExec_t *exec_p) {
  cudaGraph_t graph = NULL;
  ncclResult_t nr = ncclSuccess;
  cudaError_t e;
  CU(b->r, cudaStreamBeginCapture(b->s, cudaStreamCaptureModeGlobal));
  for (int i = 0; i < GRAPH_OPS && nr == ncclSuccess; i++)
    nr = ncclAllGather(b->d_in, b->d_mid2, count, ncclBfloat16, b->nccl, b->s);
  e = cudaStreamEndCapture(b->s, &graph);
  if (nr != ncclSuccess) {
    if (graph) cudaGraphDestroy(graph);
    return FAIL(b->r, "ncclAllGather: %s", ncclGetErrorString(nr));
  }
  CU(b->r, e);
  e = cudaGraphInstantiate(exec_p, graph, 0);
  cudaGraphDestroy(graph);
  CU(b->r, e);
  return 1;
}

/* Rank m's input of `elems` bf16 values (the same on every rank for the same m and seed). */
static void make_input(uint16_t *h, size_t elems, int m, uint64_t seed) {
  shim_data_fill_random(h, elems, MOECOMM_BFLOAT16, seed * 16 + (uint64_t)m);
}

static int upload(bench_t *b, size_t elems, uint64_t seed) {
  make_input(b->h_a, elems, b->rank, seed);
  CU(b->r, cudaMemcpy(b->d_in, b->h_a, elems * 2, cudaMemcpyHostToDevice));
  CU(b->r, cudaDeviceSynchronize());
  return 1;
}

/* Gathered output: rank m's input at block m. */
static int check_gather(bench_t *b, const char *d_out, size_t elems, uint64_t seed, long *wrong_p) {
  long wrong = 0;
  CU(b->r, cudaMemcpy(b->h_b, d_out, elems * 2 * NRANKS, cudaMemcpyDeviceToHost));
  for (int m = 0; m < NRANKS; m++) {
    make_input(b->h_a, elems, m, seed);
    for (size_t i = 0; i < elems; i++) wrong += b->h_b[(size_t)m * elems + i] != b->h_a[i];
  }
  *wrong_p = wrong;
  return 1;
}

/* Step output: twice this rank's input. */
static int check_step(bench_t *b, size_t elems, uint64_t seed, long *wrong_p) {
  long wrong = 0;
  CU(b->r, cudaMemcpy(b->h_b, b->d_out, elems * 2, cudaMemcpyDeviceToHost));
  make_input(b->h_a, elems, b->rank, seed);
  for (size_t i = 0; i < elems; i++)
    wrong += shim_data_from_bf16(b->h_b[i]) != 2.0f * shim_data_from_bf16(b->h_a[i]);
  *wrong_p = wrong;
  return 1;
}

static int poison(bench_t *b) {
  CU(b->r, cudaMemset(b->d_mid, 0xff, MAX_OUT_BYTES));
  CU(b->r, cudaMemset(b->d_mid2, 0xff, MAX_OUT_BYTES));
  CU(b->r, cudaMemset(b->d_out, 0xff, MAX_IN_BYTES));
  CU(b->r, cudaDeviceSynchronize());
  return 1;
}

static int bench_allgather(bench_t *b) {
  for (int i = 0; i < NSIZES; i++) {
    size_t out_bytes = (size_t)1024 << (2 * i), rows = out_bytes / NRANKS / (AG_HIDDEN * 2);
    size_t elems = rows * AG_HIDDEN;
    uint64_t seed = 100 + (uint64_t)i;
    cudaGraphExec_t mc = NULL, nc = NULL;
    moecomm_scatter_args_t a;
    int ok;
    b->tokens[0] = b->tokens[1] = (int32_t)rows;
    a = sargs(b, MOECOMM_TP_ATTN_FULL, MOECOMM_MOE_FULL, 0, AG_HIDDEN, b->d_in, b->d_mid);
    if (!poison(b) || !upload(b, elems, seed)) return 0;
    ok = capture_scatter(b, &a, 1, &mc) && time_graph(b, mc, GRAPH_OPS, &b->r->ag_mc_us[i]) &&
         check_gather(b, b->d_mid, elems, seed, &b->r->ag_mc_wrong[i]);
    if (mc) cudaGraphExecDestroy(mc);
    if (!ok) return 0;
    ok = capture_nccl(b, elems, &nc) && time_graph(b, nc, GRAPH_OPS, &b->r->ag_nccl_us[i]) &&
         check_gather(b, b->d_mid2, elems, seed, &b->r->ag_nccl_wrong[i]);
    if (nc) cudaGraphExecDestroy(nc);
    if (!ok) return 0;
  }
  return 1;
}

static int bench_steps(bench_t *b) {
  for (int i = 0; i < NSTEPS; i++) {
    size_t elems = (size_t)k_step_tokens[i] * STEP_HIDDEN;
    uint64_t seed = 200 + (uint64_t)i;
    moecomm_scatter_args_t moe[2], full[2];
    cudaGraphExec_t em = NULL, ef = NULL;
    int ok;
    b->tokens[0] = b->tokens[1] = k_step_tokens[i];
    moe[0] = sargs(b, MOECOMM_TP_ATTN_FULL, MOECOMM_MOE_FULL, 1, STEP_HIDDEN, b->d_in, b->d_mid);
    moe[1] = sargs(b, MOECOMM_MOE_FULL, MOECOMM_TP_ATTN_FULL, 1, STEP_HIDDEN, b->d_mid, b->d_out);
    full[0] = sargs(b, MOECOMM_SCATTERED, MOECOMM_FULL, 0, STEP_HIDDEN, b->d_in, b->d_mid2);
    full[1] = sargs(b, MOECOMM_FULL, MOECOMM_SCATTERED, 1, STEP_HIDDEN, b->d_mid2, b->d_out);
    if (!poison(b) || !upload(b, elems, seed)) return 0;
    ok = capture_scatter(b, moe, 2, &em) && time_graph(b, em, GRAPH_OPS, &b->r->st_moe_us[i]) &&
         check_step(b, elems, seed, &b->r->st_moe_wrong[i]);
    if (em) cudaGraphExecDestroy(em);
    if (!ok || !poison(b)) return 0;
    ok = capture_scatter(b, full, 2, &ef) && time_graph(b, ef, GRAPH_OPS, &b->r->st_full_us[i]) &&
         check_step(b, elems, seed, &b->r->st_full_wrong[i]);
    if (ef) cudaGraphExecDestroy(ef);
    if (!ok) return 0;
  }
  return 1;
}

static void backend_of(bench_t *b, int kind, char *out, size_t cap) {
  moecomm_group_t *g = NULL;
  moecomm_group_stats_t st;
  memset(&st, 0, sizeof(st));
  st.struct_size = sizeof(st);
  if (g_api->group_get(b->ctx, (moecomm_group_kind_t)kind, &g) == MOECOMM_SUCCESS &&
      g_api->group_stats(g, &st) == MOECOMM_SUCCESS && st.backend_name != NULL)
    snprintf(out, cap, "%s", st.backend_name);
  else
    snprintf(out, cap, "?");
}

static int setup(bench_t *b) {
  moecomm_topology_t topo = shim_launch_topology(NRANKS, b->rank, NRANKS);
  moecomm_context_params_t params;
  moecomm_result_t mr;
  topo.ep = 2;
  topo.attn_cp = 2;
  topo.moe_dp = 1;
  if (!mc_bench_rank_gpu(b->rank, &b->r->gpu, b->r->err, sizeof(b->r->err))) return 0;
  CU(b->r, cudaStreamCreateWithFlags(&b->s, cudaStreamNonBlocking));
  CU(b->r, cudaEventCreate(&b->ev[0]));
  CU(b->r, cudaEventCreate(&b->ev[1]));
  CU(b->r, cudaMalloc((void **)&b->d_in, MAX_IN_BYTES));
  CU(b->r, cudaMalloc((void **)&b->d_out, MAX_IN_BYTES));
  CU(b->r, cudaMalloc((void **)&b->d_mid, MAX_OUT_BYTES));
  CU(b->r, cudaMalloc((void **)&b->d_mid2, MAX_OUT_BYTES));
  b->h_a = malloc(MAX_OUT_BYTES);
  b->h_b = malloc(MAX_OUT_BYTES);
  if (b->h_a == NULL || b->h_b == NULL) return FAIL(b->r, "host malloc failed");
  g_api = mc_bench_plugin();
  params = shim_launch_params(&topo, b->rank);
  mr = g_api->context_create(&params, &b->ctx);
  if (mr != MOECOMM_SUCCESS)
    return FAIL(b->r, "context_create: %s: %s", g_api->result_string(mr), g_api->last_error(NULL));
  return mc_bench_nccl_comm(b->rank, NRANKS, &b->nccl, b->r->err, sizeof(b->r->err));
}

static int rank_main(int rank, int world, void *arg) {
  bench_t b;
  int ok;
  (void)world;
  (void)arg;
  memset(&b, 0, sizeof(b));
  b.rank = rank;
  b.r = &g_res[rank];
  ok = setup(&b) && bench_allgather(&b) && bench_steps(&b);
  if (ok) {
    backend_of(&b, MOECOMM_GROUP_MOE_CP, b.r->be_cp, sizeof(b.r->be_cp));
    backend_of(&b, MOECOMM_GROUP_MOE_EP, b.r->be_ep, sizeof(b.r->be_ep));
    backend_of(&b, MOECOMM_GROUP_TP, b.r->be_tp, sizeof(b.r->be_tp));
  }
  b.r->done = ok;
  fflush(stdout);
  fflush(stderr);
  /* A peer may still be inside a collective after a failure: leave without tearing down. */
  if (!ok) _exit(1);
  if (b.ctx) g_api->context_destroy(b.ctx);
  if (b.nccl) ncclCommDestroy(b.nccl);
  _exit(0);
}

/* ---- report ------------------------------------------------------------------------------- */

static double worse(double a, double b) {
  return a > b ? a : b;
}

static void human_bytes(size_t n, char *out, size_t cap) {
  if (n >= ((size_t)1 << 20))
    snprintf(out, cap, "%zuM", n >> 20);
  else
    snprintf(out, cap, "%zuK", n >> 10);
}

int main(int argc, char **argv) {
  mc_bench_run_t run;
  rres_t *res;
  char nccl[32];
  int world = 0, bad = 0;
  long wrong = 0;
  FILE *jf = NULL;
  int rc = mc_bench_gpu_begin(argc, argv, "bench-scatter", NRANKS, &run, &world);
  if (rc >= 0) return rc;
  mc_bench_nccl_version(nccl, sizeof(nccl));
  if ((res = mc_bench_shared(sizeof(rres_t) * NRANKS)) == NULL) return 1;
  g_res = res;
  if (shim_launch(NRANKS, rank_main, NULL, 85) != 0 || !res[0].done || !res[1].done) {
    printf("bench-scatter: FAILED: rank 0: %s; rank 1: %s\n",
           res[0].err[0] ? res[0].err : (res[0].done ? "ok" : "did not finish"),
           res[1].err[0] ? res[1].err : (res[1].done ? "ok" : "did not finish"));
    return 1;
  }

  mc_bench_print_facts("bench-scatter", &run, &res[0].gpu, nccl);
  printf("topology tp2 ep2 attn_cp2 moe_dp1 on 2 GPUs; backends: MOE_CP %s, MOE_EP %s, TP %s\n",
         res[0].be_cp, res[0].be_ep, res[0].be_tp);
  printf(
      "method: CUDA graph of %d ops, %d warm-up + %d timed replays, CUDA events, median per "
      "op, worse rank\n\n",
      GRAPH_OPS, WARMUP, REPLAYS);

  printf(
      "(b) MoE-CP all-gather = scatter(TP_ATTN_FULL -> MOE_FULL), against ncclAllGather on "
      "the benchmark's own communicator\n");
  printf("    size = MOE_FULL output per rank; busbw = algbw * (n-1)/n\n");
  printf("%8s %10s %5s | %10s %8s %8s %6s | %10s %8s %8s %6s | %7s\n", "size", "count", "type",
         "moecomm us", "algbw", "busbw", "#wrong", "nccl us", "algbw", "busbw", "#wrong",
         "mc/nccl");
  for (int i = 0; i < NSIZES; i++) {
    size_t bytes = (size_t)1024 << (2 * i);
    double tm = worse(res[0].ag_mc_us[i], res[1].ag_mc_us[i]);
    double tn = worse(res[0].ag_nccl_us[i], res[1].ag_nccl_us[i]);
    long wm = res[0].ag_mc_wrong[i] + res[1].ag_mc_wrong[i];
    long wn = res[0].ag_nccl_wrong[i] + res[1].ag_nccl_wrong[i];
    double am = (double)bytes / tm / 1e3, an = (double)bytes / tn / 1e3;
    char hb[16];
    human_bytes(bytes, hb, sizeof(hb));
    printf("%8s %10zu %5s | %10.2f %8.2f %8.2f %6ld | %10.2f %8.2f %8.2f %6ld | %7.2f\n", hb,
           bytes / 2, "bf16", tm, am, am * (NRANKS - 1) / NRANKS, wm, tn, an,
           an * (NRANKS - 1) / NRANKS, wn, tm / tn);
    wrong += wm + wn;
  }

  printf("\n(a) MoE step, the same tokens, bf16 hidden %d\n", STEP_HIDDEN);
  printf(
      "    MOE_FULL step = scatter(TP_ATTN_FULL -> MOE_FULL, reduce) + scatter(MOE_FULL -> "
      "TP_ATTN_FULL, reduce)\n");
  printf(
      "                    (MOE_CP all-gather padded to the largest count, MoE all-reduce of "
      "the gathered rows, slice)\n");
  printf("    FULL step     = scatter(SCATTERED -> FULL) + scatter(FULL -> SCATTERED, reduce)\n");
  printf("                    (TP all-gather, TP reduce-scatter, slice)\n");
  printf("%12s %12s | %14s %6s | %14s %6s | %9s\n", "tokens/rank", "bytes/rank", "MOE_FULL us",
         "#wrong", "FULL us", "#wrong", "MOE/FULL");
  for (int i = 0; i < NSTEPS; i++) {
    size_t bytes = (size_t)k_step_tokens[i] * STEP_HIDDEN * 2;
    double tm = worse(res[0].st_moe_us[i], res[1].st_moe_us[i]);
    double tf = worse(res[0].st_full_us[i], res[1].st_full_us[i]);
    long wm = res[0].st_moe_wrong[i] + res[1].st_moe_wrong[i];
    long wf = res[0].st_full_wrong[i] + res[1].st_full_wrong[i];
    char hb[16];
    human_bytes(bytes, hb, sizeof(hb));
    printf("%12d %12s | %14.2f %6ld | %14.2f %6ld | %9.2f\n", k_step_tokens[i], hb, tm, wm, tf, wf,
           tm / tf);
    wrong += wm + wf;
  }

  if (run.json != NULL) {
    jf = mc_bench_json_open(run.json, "scatter", &run, &res[0].gpu, 0, nccl);
    bad |= jf == NULL;
  }
  if (jf != NULL) {
    fprintf(jf, ",\n  \"topology\": \"tp2 ep2 attn_cp2 moe_dp1\",\n  \"backends\": {\"MOE_CP\": ");
    mc_bench_json_str(jf, res[0].be_cp);
    fprintf(jf, ", \"MOE_EP\": ");
    mc_bench_json_str(jf, res[0].be_ep);
    fprintf(jf, ", \"TP\": ");
    mc_bench_json_str(jf, res[0].be_tp);
    fprintf(jf,
            "},\n  \"method\": \"CUDA graph of %d ops, %d warm-up + %d timed replays, CUDA "
            "events, median per op, worse of 2 ranks\",\n",
            GRAPH_OPS, WARMUP, REPLAYS);
    fprintf(jf, "  \"allgather\": [\n");
    for (int i = 0; i < NSIZES; i++) {
      size_t bytes = (size_t)1024 << (2 * i);
      fprintf(jf,
              "    {\"bytes\": %zu, \"count\": %zu, \"type\": \"bf16\", \"moecomm_us\": %.3f, "
              "\"nccl_us\": %.3f, \"moecomm_wrong\": %ld, \"nccl_wrong\": %ld}%s\n",
              bytes, bytes / 2, worse(res[0].ag_mc_us[i], res[1].ag_mc_us[i]),
              worse(res[0].ag_nccl_us[i], res[1].ag_nccl_us[i]),
              res[0].ag_mc_wrong[i] + res[1].ag_mc_wrong[i],
              res[0].ag_nccl_wrong[i] + res[1].ag_nccl_wrong[i], i + 1 < NSIZES ? "," : "");
    }
    fprintf(jf, "  ],\n  \"moe_step\": [\n");
    for (int i = 0; i < NSTEPS; i++)
      fprintf(jf,
              "    {\"tokens_per_rank\": %d, \"hidden\": %d, \"type\": \"bf16\", "
              "\"moe_full_us\": %.3f, \"full_us\": %.3f, \"moe_full_wrong\": %ld, "
              "\"full_wrong\": %ld}%s\n",
              k_step_tokens[i], STEP_HIDDEN, worse(res[0].st_moe_us[i], res[1].st_moe_us[i]),
              worse(res[0].st_full_us[i], res[1].st_full_us[i]),
              res[0].st_moe_wrong[i] + res[1].st_moe_wrong[i],
              res[0].st_full_wrong[i] + res[1].st_full_wrong[i], i + 1 < NSTEPS ? "," : "");
    fprintf(jf, "  ],\n  \"wrong\": %ld\n}\n", wrong);
    if (fclose(jf) != 0)
      bad = 1;
    else
      printf("\nwrote %s\n", run.json);
  }
  if (wrong != 0) printf("bench-scatter: %ld wrong elements\n", wrong);
  return wrong != 0 || bad;
}

#endif
