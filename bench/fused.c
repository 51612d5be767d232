/* SPDX-License-Identifier: Apache-2.0 */
/* fused.c - `make bench` (bench/run-fused.sh): all_reduce_rmsnorm, the fused kernels against the
 * unfused pipelines, in one run.
 *
 * World: one rank per visible CUDA device (MC_BENCH_GPU_RANKS=N: the first N); the TP group is
 * every rank.  With one GPU it runs what one GPU can and says so: a world of one rank, where
 * all_reduce_rmsnorm is a device copy and the norm kernel (no fused kernel runs, the forced ones'
 * rows say they need 2 or more GPUs).  Shapes: bf16, T in {1, 8, 64, 512, 4096} x H in
 * {4096, 7168}, eps 1e-6.  Variants, all in this one run:
 *   fused               moecomm all_reduce_rmsnorm, the policy (plugin/route.c, rule 12)
 *   fused-ll, fused-oneshot-push, fused-twoshot-push
 *                       MOECOMM_ALGO forcing each fused kernel (LL only where T * H * 4 bytes fit
 *                       its 512 KiB slot; the others at every T)
 *   fused-fp8           the policy, with the fp8 e4m3 copy and per-row scales
 *   fused-det           the policy, MOECOMM_DETERMINISTIC=1
 *   moecomm+norm        moecomm all_reduce (its policy table), then the standalone norm kernel
 *                       (kernels/mc_norm.h) on the result
 *   nccl+norm           ncclAllReduce on a communicator this program makes, then the norm kernel
 *   norm                the norm kernel alone (what the unfused pipelines add to an all-reduce)
 * Method (DESIGN.md "Measuring"): per shape and variant a CUDA graph of 20 ops (an op: one call,
 * or an unfused pipeline's two launches) inside the capture scope, replayed once, then 15 times,
 * each replay between CUDA events; time per op = the median / 20; the slowest rank's is reported.
 * The residual grows by the sum at every op: only the time counts there.  Check: one more op
 * eagerly from a fresh residual, y and the new residual compared bit for bit with the definition
 * (kernels/rmsnorm_ref.c over every rank's inputs; the fp8 copy and scales too); #wrong counts
 * the elements that differ, all ranks together.  Prints a table per H and writes JSON (--json
 * PATH) with device, driver, NCCL version, commit, date and world size. */
#include <stdio.h>

#include "common/bench_gpu.h"

#if !MC_WITH_CUDA
int main(void) {
  printf("SKIP bench-fused: this build has no CUDA support\n");
  return 0;
}
#else

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../host_shim/lib/data.h"
#include "../host_shim/lib/device.h"
#include "../host_shim/lib/launch.h"
#include "../kernels/mc_kernels.h"
#include "../kernels/mc_norm.h"
#include "../kernels/mc_shape.h"
#include "../kernels/rmsnorm_ref.h"
#include "common/bench_plugin.h"

#define NT 5
#define NH 2
#define OPS 20
#define REPLAYS 15
#define MAXT 4096
#define MAXH 7168
#define MAXEL ((size_t)MAXT * MAXH)
#define EPS 1e-6f
#define LL_SLOT (512u << 10)   /* the custom backend's LL slot (2 x MC_CUSTOM_LL_BYTES) */
#define STAGE_HALF (32u << 20) /* its staging half with MOECOMM_CUSTOM_BUFFER_BYTES=64M */

static const size_t k_T[NT] = {1, 8, 64, 512, 4096};
static const size_t k_H[NH] = {4096, 7168};

typedef enum {
  V_FUSED,
  V_LL,
  V_ONEPUSH,
  V_TWOPUSH,
  V_FP8,
  V_DET,
  V_MCNORM,
  V_NCCLNORM,
  V_NORM,
  NVARIANTS
} variant_t;
/* moecomm contexts: one per fused variant (fp8 and moecomm+norm use the policy's) */
#define NCTX (V_DET + 1)

static const char *const k_vname[NVARIANTS] = {
    "fused",     "fused-ll",  "fused-oneshot-push", "fused-twoshot-push",
    "fused-fp8", "fused-det", "moecomm+norm",       "nccl+norm",
    "norm"};

typedef struct cell {
  int ran;
  double us;
  long wrong;
  char err[160];
} cell_t;

typedef struct rank_res {
  cell_t cell[NVARIANTS][NT][NH];
  char backend[16]; /* group_stats of TP after the fused calls: "custom" when they were fused */
  mc_bench_gpu_t gpu;
  int done;
  char err[256];
} rank_res_t;

static int g_world;
static rank_res_t *g_res;
static const moecomm_api_t *g_api;

typedef struct bench {
  int rank;
  char *gathered;
  cudaStream_t s;
  char *x, *res, *w, *out, *q, *sc; /* device */
  uint16_t *hx, *hres, *hw, *want, *want_res, *got;
  uint8_t *want_q, *gotq;
  float *want_sc;
  moecomm_context_t *ctx[NCTX];
  moecomm_group_t *tp[NCTX];
  ncclComm_t nc;
  cudaEvent_t ev[2 * REPLAYS];
  size_t T, H; /* the shape being measured */
} bench_t;

static int host_barrier(bench_t *b) {
  char in = 1;
  return shim_host_allgather(shim_launch_hub(), &in, b->gathered, 1) == 0;
}

/* The context of variant v (fp8 and moecomm+norm: the policy's). */
static int ctx_of(int v) {
  return v == V_FP8 || v == V_MCNORM ? V_FUSED : v;
}

/* The norm kernel from out (the all-reduce) into out. */
static int issue_norm(bench_t *b) {
  const mc_kern_norm_t k = {MOECOMM_BFLOAT16, b->T, b->H, b->out, b->res, b->w, EPS,
                            b->out,           NULL, NULL};
  return mc_kern_add_rmsnorm(&k, b->s) == 0;
}

/* One op of variant v on the current shape. */
static int issue(bench_t *b, int v) {
  const size_t el = b->T * b->H;
  if (v == V_NORM) return issue_norm(b);
  if (v == V_NCCLNORM)
    return ncclAllReduce(b->x, b->out, el, ncclBfloat16, ncclSum, b->nc, b->s) == ncclSuccess &&
           issue_norm(b);
  if (v == V_MCNORM)
    return g_api->all_reduce(b->tp[V_FUSED], b->x, b->out, el, MOECOMM_BFLOAT16, MOECOMM_SUM,
                             b->s) == MOECOMM_SUCCESS &&
           issue_norm(b);
  {
    moecomm_rmsnorm_args_t a;
    memset(&a, 0, sizeof(a));
    a.struct_size = sizeof(a);
    a.dtype = MOECOMM_BFLOAT16;
    a.eps = EPS;
    a.tokens = b->T;
    a.hidden = b->H;
    a.x = b->x;
    a.residual = b->res;
    a.weight = b->w;
    a.out = b->out;
    a.out_fp8 = v == V_FP8 ? b->q : NULL;
    a.out_scale = v == V_FP8 ? (float *)b->sc : NULL;
    return g_api->all_reduce_rmsnorm(b->tp[ctx_of(v)], &a, b->s) == MOECOMM_SUCCESS;
  }
}

static const char *last_err(bench_t *b, int v) {
  if (v == V_NORM) return "the norm kernel's launch failed";
  if (v == V_NCCLNORM) return "ncclAllReduce or the norm kernel failed";
  return g_api->last_error(b->ctx[ctx_of(v)]);
}

/* Why variant v does not run at T x H, or NULL. */
static const char *not_applicable(int v, size_t T, size_t H) {
  mc_kern_plan_t p;
  const int forced = v == V_LL || v == V_ONEPUSH || v == V_TWOPUSH;
  const int algo = v == V_LL        ? MC_KERN_LL
                   : v == V_ONEPUSH ? MC_KERN_ONESHOT_PUSH
                                    : MC_KERN_TWOSHOT_PUSH;
  if (!forced) return NULL;
  if (g_world == 1) return "n/a: a world of one rank has no fused kernel (needs 2 GPUs)";
  if (mc_kern_plan_rmsnorm(algo, g_world, T, H, MOECOMM_BFLOAT16, 0, STAGE_HALF, LL_SLOT, &p) !=
      MC_KERN_PLAN_OK)
    return "n/a: the forced kernel does not fit (the policy would pick another)";
  return NULL;
}

typedef struct op_arg {
  bench_t *b;
  int v;
  cudaGraphExec_t exec;
  char *err;
  size_t cap;
} op_arg_t;

static int body(void *arg) {
  const op_arg_t *a = arg;
  for (int i = 0; i < OPS; i++)
    if (!issue(a->b, a->v))
      return mc_bench_fail(a->err, a->cap, "captured op: %s", last_err(a->b, a->v));
  return 1;
}

static int run_graph(void *arg) {
  const op_arg_t *a = arg;
  return a->exec == NULL || cudaGraphLaunch(a->exec, a->b->s) == cudaSuccess;
}

/* Uploads the shape's inputs (my x, the residual, the weight); poisons the outputs. */
static int upload(bench_t *b) {
  const size_t el = b->T * b->H;
  return cudaMemcpy(b->x, b->hx, el * 2, cudaMemcpyHostToDevice) == cudaSuccess &&
         cudaMemcpy(b->res, b->hres, el * 2, cudaMemcpyHostToDevice) == cudaSuccess &&
         cudaMemcpy(b->w, b->hw, b->H * 2, cudaMemcpyHostToDevice) == cudaSuccess &&
         cudaMemset(b->out, 0xee, el * 2) == cudaSuccess &&
         cudaMemset(b->q, 0xee, el) == cudaSuccess && cudaDeviceSynchronize() == cudaSuccess;
}

/* One eager op from the fresh residual, y and the residual (and the fp8 copy) against the
   reference: the elements that differ. */
static long check(bench_t *b, int v, char *err, size_t cap) {
  const size_t el = b->T * b->H;
  long wrong = 0;
  if (!upload(b) || !issue(b, v) || cudaStreamSynchronize(b->s) != cudaSuccess ||
      cudaMemcpy(b->got, b->out, el * 2, cudaMemcpyDeviceToHost) != cudaSuccess)
    return mc_bench_fail(err, cap, "checking op failed: %s", last_err(b, v)), -1;
  if (v == V_NORM) return 0; /* it normed the poison: only its time counts */
  for (size_t i = 0; i < el; i++) wrong += b->got[i] != b->want[i];
  if (cudaMemcpy(b->got, b->res, el * 2, cudaMemcpyDeviceToHost) != cudaSuccess) return -1;
  for (size_t i = 0; i < el; i++) wrong += b->got[i] != b->want_res[i];
  if (v == V_FP8) {
    float sc[MAXT];
    if (cudaMemcpy(b->gotq, b->q, el, cudaMemcpyDeviceToHost) != cudaSuccess ||
        cudaMemcpy(sc, b->sc, b->T * 4, cudaMemcpyDeviceToHost) != cudaSuccess)
      return -1;
    for (size_t i = 0; i < el; i++) wrong += b->gotq[i] != b->want_q[i];
    for (size_t t = 0; t < b->T; t++) wrong += memcmp(&sc[t], &b->want_sc[t], 4) != 0;
  }
  return wrong;
}

static void measure(bench_t *b, int v, cell_t *c) {
  cudaGraphExec_t exec = NULL;
  op_arg_t a = {b, v, NULL, c->err, sizeof(c->err)};
  const int c_idx = ctx_of(v);
  int good;
  memset(c, 0, sizeof(*c));
  good = upload(b) &&
         mc_bench_capture(g_api, v == V_NORM || v == V_NCCLNORM ? NULL : b->ctx[c_idx], b->s, body,
                          &a, &exec, c->err, sizeof(c->err)) &&
         cudaGraphLaunch(exec, b->s) == cudaSuccess && cudaStreamSynchronize(b->s) == cudaSuccess;
  a.exec = good ? exec : NULL;
  host_barrier(b); /* every rank, failed or not */
  if (!mc_bench_time(b->s, b->ev, REPLAYS, OPS, run_graph, &a, &c->us) || !good) {
    mc_bench_fail(c->err, sizeof(c->err), "timed replays failed");
  } else {
    c->wrong = check(b, v, c->err, sizeof(c->err));
    c->ran = c->wrong >= 0;
  }
  if (exec) cudaGraphExecDestroy(exec);
  (void)cudaGetLastError();
}

/* Every rank's inputs of a shape and the reference.  The inputs are small integers, so the sums,
   taken two at a time here, are exact: the same as the rule's one rounding. */
static int prepare(bench_t *b, size_t T, size_t H) {
  const size_t el = T * H;
  uint16_t *acc = malloc(el * 2), *mine = malloc(el * 2);
  int ok = acc != NULL && mine != NULL;
  b->T = T;
  b->H = H;
  for (int r = 0; ok && r < g_world; r++) {
    const void *ins[2];
    shim_data_fill_random(r == b->rank ? (void *)b->hx : (void *)mine, el, MOECOMM_BFLOAT16,
                          31 + (uint64_t)r);
    ins[0] = acc;
    ins[1] = r == b->rank ? (void *)b->hx : (void *)mine;
    if (r == 0)
      memcpy(acc, ins[1], el * 2);
    else
      mc_kern_ref_all_reduce(ins, 2, el, MOECOMM_BFLOAT16, MOECOMM_SUM, acc);
  }
  if (ok) {
    shim_data_fill_random(b->hres, el, MOECOMM_BFLOAT16, 97);
    for (size_t h = 0; h < H; h++) b->hw[h] = mc_kern_ref_to_bf16(0.5f + (float)(h % 97) / 97);
    memcpy(b->want_res, b->hres, el * 2);
    ok = mc_kern_ref_add_rmsnorm(MOECOMM_BFLOAT16, T, H, acc, b->want_res, b->hw, EPS, b->want,
                                 b->want_q, b->want_sc) == 0;
  }
  free(acc);
  free(mine);
  return ok;
}

static int setup(bench_t *b, rank_res_t *r) {
  static const char *const env_auto[] = {NULL};
  static const char *const env_ll[] = {"MOECOMM_ALGO", "ll", NULL};
  static const char *const env_one[] = {"MOECOMM_ALGO", "oneshot_push", NULL};
  static const char *const env_two[] = {"MOECOMM_ALGO", "twoshot_push", NULL};
  static const char *const env_det[] = {"MOECOMM_DETERMINISTIC", "1", NULL};
  const char *const *envs[NCTX] = {env_auto, env_ll, env_one, env_two, env_auto, env_det};
  const size_t bytes = MAXEL * 2;
  char *const err = r->err;
  const size_t cap = sizeof(r->err);
  if ((b->gathered = malloc((size_t)g_world)) == NULL) return mc_bench_fail(err, cap, "malloc");
  if (cudaStreamCreateWithFlags(&b->s, cudaStreamNonBlocking) != cudaSuccess ||
      cudaMalloc((void **)&b->x, bytes) != cudaSuccess ||
      cudaMalloc((void **)&b->res, bytes) != cudaSuccess ||
      cudaMalloc((void **)&b->w, MAXH * 2) != cudaSuccess ||
      cudaMalloc((void **)&b->out, bytes) != cudaSuccess ||
      cudaMalloc((void **)&b->q, MAXEL) != cudaSuccess ||
      cudaMalloc((void **)&b->sc, MAXT * 4) != cudaSuccess)
    return mc_bench_fail(err, cap, "CUDA set-up failed");
  for (int i = 0; i < 2 * REPLAYS; i++)
    if (cudaEventCreate(&b->ev[i]) != cudaSuccess) return mc_bench_fail(err, cap, "events");
  b->hx = malloc(bytes), b->hres = malloc(bytes), b->hw = malloc(MAXH * 2);
  b->want = malloc(bytes), b->want_res = malloc(bytes), b->got = malloc(bytes);
  b->want_q = malloc(MAXEL), b->gotq = malloc(MAXEL), b->want_sc = malloc(MAXT * 4);
  if (!b->hx || !b->hres || !b->hw || !b->want || !b->want_res || !b->got || !b->want_q ||
      !b->gotq || !b->want_sc)
    return mc_bench_fail(err, cap, "host buffers failed");
  for (int v = 0; v < NCTX; v++) {
    if (v == V_FP8) continue; /* the policy's context */
    if ((b->ctx[v] = mc_bench_open_ctx(g_api, g_world, b->rank, envs[v])) == NULL ||
        g_api->group_get(b->ctx[v], MOECOMM_GROUP_TP, &b->tp[v]) != MOECOMM_SUCCESS)
      return mc_bench_fail(err, cap, "moecomm context for %s failed", k_vname[v]);
  }
  b->ctx[V_FP8] = b->ctx[V_FUSED], b->tp[V_FP8] = b->tp[V_FUSED];
  return mc_bench_nccl_comm(b->rank, g_world, &b->nc, err, cap);
}

static int rank_main(int rank, int world, void *arg) {
  rank_res_t *r = &g_res[rank];
  moecomm_group_stats_t st;
  bench_t b;
  (void)world;
  (void)arg;
  memset(&b, 0, sizeof(b));
  b.rank = rank;
  if (!mc_bench_rank_gpu(rank, &r->gpu, r->err, sizeof(r->err))) _exit(1);
  g_api = mc_bench_plugin();
  if (!setup(&b, r)) _exit(1);
  for (int t = 0; t < NT; t++)
    for (int h = 0; h < NH; h++) {
      if (!prepare(&b, k_T[t], k_H[h])) {
        mc_bench_fail(r->err, sizeof(r->err), "inputs of %zu x %zu failed", k_T[t], k_H[h]);
        _exit(1);
      }
      for (int v = 0; v < NVARIANTS; v++) {
        const char *why = not_applicable(v, k_T[t], k_H[h]);
        if (why != NULL)
          mc_bench_fail(r->cell[v][t][h].err, sizeof(r->cell[v][t][h].err), "%s", why);
        else
          measure(&b, v, &r->cell[v][t][h]);
      }
    }
  memset(&st, 0, sizeof(st));
  st.struct_size = sizeof(st);
  if (g_api->group_stats(b.tp[V_FUSED], &st) == MOECOMM_SUCCESS)
    snprintf(r->backend, sizeof(r->backend), "%s", st.backend_name);
  r->done = 1;
  fflush(stdout);
  _exit(0); /* the parent reports */
}

/* ---- report (parent, no CUDA) ---- */

static double cell_us(int v, int t, int h) {
  double us = -1;
  for (int r = 0; r < g_world; r++) {
    const cell_t *c = &g_res[r].cell[v][t][h];
    if (!c->ran) return -1;
    if (c->us > us) us = c->us;
  }
  return us;
}

static long cell_wrong(int v, int t, int h) {
  long wrong = 0;
  for (int r = 0; r < g_world; r++) wrong += g_res[r].cell[v][t][h].wrong;
  return wrong;
}

static const char *cell_err(int v, int t, int h) {
  for (int r = 0; r < g_world; r++)
    if (g_res[r].cell[v][t][h].err[0]) return g_res[r].cell[v][t][h].err;
  return "";
}

/* The table of every shape and variant; 1 when an element was wrong. */
static int print_table(void) {
  int failed = 0;
  printf("\n#%6s %6s %-20s %10s %8s %12s %12s\n", "T", "H", "variant", "time(us)", "#wrong",
         "vs mc+norm", "vs nccl+norm");
  for (int h = 0; h < NH; h++)
    for (int t = 0; t < NT; t++)
      for (int v = 0; v < NVARIANTS; v++) {
        const double us = cell_us(v, t, h), mn = cell_us(V_MCNORM, t, h);
        const double nn = cell_us(V_NCCLNORM, t, h);
        if (us < 0) {
          printf(" %6zu %6zu %-20s %10s %8s %12s %12s  %s\n", k_T[t], k_H[h], k_vname[v], "-", "-",
                 "-", "-", cell_err(v, t, h));
          continue;
        }
        failed |= cell_wrong(v, t, h) != 0;
        printf(" %6zu %6zu %-20s %10.2f %8ld", k_T[t], k_H[h], k_vname[v], us, cell_wrong(v, t, h));
        if (v < V_MCNORM && mn > 0 && nn > 0)
          printf(" %11.2fx %11.2fx\n", mn / us, nn / us);
        else
          printf(" %12s %12s\n", "", "");
      }
  return failed;
}

static void write_json(const mc_bench_run_t *run, const char *nccl, double start) {
  FILE *jf = mc_bench_json_open(run->json, "fused", run, &g_res[0].gpu, 1, nccl);
  int first = 1;
  if (jf == NULL) return;
  fprintf(jf, ",\n  \"ranks\": %d,\n  \"dtype\": \"bf16\",\n  \"eps\": %g,\n  \"tp_backend\": ",
          g_world, (double)EPS);
  mc_bench_json_str(jf, g_res[0].backend);
  fprintf(jf,
          ",\n  \"method\": {\"graph_ops\": %d, \"replays\": %d, \"statistic\": \"median per op, "
          "slowest rank\"},\n  \"results\": [",
          OPS, REPLAYS);
  for (int h = 0; h < NH; h++)
    for (int t = 0; t < NT; t++)
      for (int v = 0; v < NVARIANTS; v++) {
        const double us = cell_us(v, t, h);
        fprintf(jf, "%s\n    {\"tokens\": %zu, \"hidden\": %zu, \"variant\": ", first ? "" : ",",
                k_T[t], k_H[h]);
        mc_bench_json_str(jf, k_vname[v]);
        if (us >= 0) {
          fprintf(jf, ", \"us\": %.3f, \"wrong\": %ld}", us, cell_wrong(v, t, h));
        } else {
          fprintf(jf, ", \"us\": null, \"note\": ");
          mc_bench_json_str(jf, cell_err(v, t, h));
          fprintf(jf, "}");
        }
        first = 0;
      }
  fprintf(jf, "\n  ],\n  \"seconds\": %.1f\n}\n", mc_bench_now_s() - start);
  if (fclose(jf) != 0)
    perror(run->json);
  else
    printf("\nwrote %s\n", run->json);
}

int main(int argc, char **argv) {
  mc_bench_run_t run;
  char nccl[32];
  int failed = 0, all_done = 1, rc;
  double start = mc_bench_now_s();

  rc = mc_bench_gpu_begin(argc, argv, "bench-fused", MC_BENCH_ANY_WORLD, &run, &g_world);
  if (rc >= 0) return rc;
  mc_bench_nccl_version(nccl, sizeof(nccl));
  if ((g_res = mc_bench_shared(sizeof(rank_res_t) * (size_t)g_world)) == NULL) return 1;
  printf("bench-fused: all_reduce_rmsnorm on %d ranks\n", g_world);
  if (g_world == 1)
    printf(
        "bench-fused: ONE GPU: a world of one rank, where all_reduce_rmsnorm is a device copy "
        "and the norm kernel; the fused kernels need 2 or more GPUs and are not measured\n");
  rc = shim_launch(g_world, rank_main, NULL, 600);
  for (int r = 0; r < g_world; r++) all_done &= g_res[r].done;
  if (rc != 0 || !all_done) {
    printf("bench-fused: a rank failed:");
    for (int r = 0; r < g_world; r++)
      printf(" rank %d: %s;", r,
             g_res[r].err[0] ? g_res[r].err : (g_res[r].done ? "ok" : "did not finish"));
    printf("\n");
    failed = 1;
  }
  mc_bench_print_facts("# all_reduce_rmsnorm", &run, &g_res[0].gpu, nccl);
  printf(
      "# bf16, graph of %d ops, %d timed replays, median us per op (slowest rank); TP group "
      "served by %s; speed-ups: the unfused pipeline's time / the variant's\n",
      OPS, REPLAYS, g_res[0].backend[0] ? g_res[0].backend : "?");
  failed |= print_table();
  if (run.json != NULL) write_json(&run, nccl, start);
  printf("bench-fused: %.1f s%s\n", mc_bench_now_s() - start, failed ? ", FAILED (see above)" : "");
  return failed;
}

#endif /* MC_WITH_CUDA */
