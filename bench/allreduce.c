/* SPDX-License-Identifier: Apache-2.0 */
/* allreduce.c - `make bench`: all-reduce latency, moecomm's custom kernels against NCCL.
 *
 * World: one rank per visible CUDA device, or the first N with MC_BENCH_GPU_RANKS=N; the TP group
 * is every rank.  With one GPU it runs what one GPU can and says so: a world of one rank, where
 * moecomm's all-reduce is a device copy (so is NCCL's); the custom kernels' rows say they need 2
 * or more ranks and carry no time.  Method (DESIGN.md "Measuring"): bf16 and fp32, 1 KB to 64 MB
 * in steps of x4; per size, variant and mode:
 *   graph        a CUDA graph of 20 back-to-back all-reduces (same buffers, out of place) is
 *                captured, replayed once to warm up, then REPLAYS times, each replay timed with a
 *                pair of CUDA events; time per op = the median replay / 20;
 *   interleaved  the same graph with a small compute kernel before each all-reduce, as in a layer
 *                (the standalone add + RMSNorm of kernels/mc_norm.h on 8 x 4096 bf16 rows of its
 *                own buffers); the compute kernel's own time, measured alone the same way, is
 *                subtracted;
 *   eager        20 back-to-back eager calls between CUDA events, REPLAYS times (auto, det and the
 *                NCCL paths: where deterministic mode differs from the default, e.g. an eager
 *                64 MB call, which the default hands to NCCL and deterministic mode runs in
 *                pieces on the custom kernels);
 * the reported time is the largest of the ranks' medians.  After the timed runs the output is
 * compared with the exact result (integer-valued inputs of every rank, summed in rank order) and
 * the wrong elements of all ranks are counted.  Variants, all in this one run:
 *   custom-auto      moecomm, MOECOMM_ALGO unset (the policy table)
 *   custom-nopdl     the same with MOECOMM_CUSTOM_PDL=0 (no programmatic dependent launch)
 *   custom-ll        moecomm, MOECOMM_ALGO=ll        (sizes up to the LL payload, 256 KiB)
 *   custom-oneshot   moecomm, MOECOMM_ALGO=oneshot   (staging raised to 128 MiB: every size)
 *   custom-twoshot   moecomm, MOECOMM_ALGO=twoshot
 *   custom-twoshot-128  two-shot with MOECOMM_CUSTOM_MAX_BLOCKS=128 (the grid cap, default 64)
 *   custom-twoshot-push / custom-oneshot-push  MOECOMM_ALGO=twoshot_push / oneshot_push (the
 *                    barrier-free push kernels, not in the policy table yet)
 *   custom-det       moecomm, MOECOMM_DETERMINISTIC=1
 *   moecomm-nccl     moecomm, MOECOMM_BACKEND_TP=nccl (moecomm's NCCL path)
 *   nccl             ncclAllReduce on a communicator this program makes itself
 * Then the host cost of one eager all-reduce call (enqueue only, 1 KB, batches of 200 calls):
 * moecomm's NCCL path and custom path against a direct ncclAllReduce; and the custom path's
 * device memory (group_stats and cudaMemGetInfo around its creation).
 *
 * Prints nccl-tests style tables, a summary against the issue's bf16 targets (set for 2 ranks,
 * judged only at 2), deterministic mode against the default, and the policy the measurements
 * suggest for this world size (fastest algorithm per size); writes JSON (--json PATH) with
 * device, driver, NCCL version, commit, date and world size ("ranks"). */
#include <stdio.h>

#include "common/bench_gpu.h"

#if !MC_WITH_CUDA
int main(void) {
  printf("SKIP bench: this build has no CUDA support\n");
  return 0;
}
#else

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../abi/moecomm.h"
#include "../host_shim/lib/data.h"
#include "../host_shim/lib/device.h"
#include "../host_shim/lib/launch.h"
#include "../kernels/mc_norm.h"
#include "common/bench_plugin.h"

#define NSIZES 9 /* 1 KB .. 64 MB, x4 */
#define NDTYPES 2
#define GRAPH_OPS 20
#define REPLAYS 15
#define LL_MAX_BYTES (256u << 10)
#define HOST_BATCH 200
#define HOST_BATCHES 10
#define MAX_BYTES ((size_t)64 << 20)
#define COMPUTE_ROWS 8
#define COMPUTE_H 4096

typedef enum {
  V_AUTO,
  V_NOPDL,
  V_LL,
  V_ONESHOT,
  V_TWOSHOT,
  V_TWOSHOT128,
  V_TWOPUSH,
  V_ONEPUSH,
  V_DET,
  V_MCNCCL,
  V_NCCL,
  NVARIANTS
} variant_t;

typedef enum { M_GRAPH, M_INTERLEAVED, M_EAGER, NMODES } bmode_t;

static const char *const k_vname[NVARIANTS] = {"custom-auto",
                                               "custom-nopdl",
                                               "custom-ll",
                                               "custom-oneshot",
                                               "custom-twoshot",
                                               "custom-twoshot-128",
                                               "custom-twoshot-push",
                                               "custom-oneshot-push",
                                               "custom-det",
                                               "moecomm-nccl",
                                               "nccl"};
static const char *const k_vshort[NVARIANTS] = {"auto",    "no-pdl",    "ll",      "oneshot",
                                                "twoshot", "2shot-128", "2s-push", "1s-push",
                                                "det",     "moe-nccl",  "nccl"};
static const char *const k_mname[NMODES] = {"graph", "interleaved", "eager"};
static const moecomm_dtype_t k_dtypes[NDTYPES] = {MOECOMM_BFLOAT16, MOECOMM_FLOAT32};
static const char *const k_dtname[NDTYPES] = {"bf16", "fp32"};
/* the issue's bf16 targets for 2 ranks (2x H200), us per op; 0: none at that size */
static const double k_target[NSIZES] = {3.0, 0, 3.5, 4.5, 6.0, 8.5, 16.0, 48.0, 175.0};
#define TARGET_RANKS 2

typedef struct cell {
  int ran;       /* measured */
  double us;     /* median per op */
  long wrong;    /* elements wrong after the timed replays */
  char err[160]; /* why it did not run */
} cell_t;

/* Everything a rank measured (MAP_SHARED, g_world entries: the parent reports). */
typedef struct rank_res {
  cell_t cell[NMODES][NVARIANTS][NDTYPES][NSIZES];
  double compute_us; /* the interleaved compute kernel alone, per launch */
  double host_us[3]; /* per eager call: moecomm nccl path, custom path, direct nccl */
  unsigned long long custom_stats_bytes; /* group_stats device_bytes of the custom TP comm */
  double custom_meminfo_mib;             /* cudaMemGetInfo delta around its creation */
  mc_bench_gpu_t gpu;
  int done;
  char err[256];
} rank_res_t;

static int g_world; /* ranks, one GPU each; set before the fork */
static rank_res_t *g_res;
static const moecomm_api_t *g_api;

static size_t size_bytes(int s) {
  return (size_t)1024 << (2 * s);
}
static size_t esize(int d) {
  return k_dtypes[d] == MOECOMM_FLOAT32 ? 4 : 2;
}

/* Per-rank state of one run. */
typedef struct bench {
  int rank;
  char *gathered; /* g_world bytes: host_barrier's all-gather output */
  cudaStream_t s;
  char *din, *dout;    /* MAX_BYTES each */
  void *want[NDTYPES]; /* host: exact result over the 64 MB inputs */
  void *got;
  moecomm_context_t *ctx[V_NCCL]; /* one per moecomm variant */
  moecomm_group_t *tp[V_NCCL];
  ncclComm_t nc;
  cudaEvent_t ev[2 * REPLAYS];
  mc_kern_norm_t compute; /* the interleaved compute kernel's launch */
} bench_t;

static int host_barrier(bench_t *b) {
  char in = 1;
  return shim_host_allgather(shim_launch_hub(), &in, b->gathered, 1) == 0;
}

/* One all-reduce of count elements of dtype d in variant v, on b's buffers. */
static int issue(bench_t *b, int v, int d, size_t count) {
  if (v == V_NCCL)
    return ncclAllReduce(b->din, b->dout, count, d == 0 ? ncclBfloat16 : ncclFloat32, ncclSum,
                         b->nc, b->s) == ncclSuccess;
  return g_api->all_reduce(b->tp[v], b->din, b->dout, count, k_dtypes[d], MOECOMM_SUM, b->s) ==
         MOECOMM_SUCCESS;
}

static int issue_compute(bench_t *b) {
  return mc_kern_add_rmsnorm(&b->compute, b->s) == 0;
}

static const char *last_err(bench_t *b, int v) {
  return v == V_NCCL ? "ncclAllReduce failed" : g_api->last_error(b->ctx[v]);
}

/* Why variant v does not run at size s in mode m (its row then says so instead of a time), or
   NULL when it does. */
static const char *not_applicable(int m, int v, int s) {
  const int path = v == V_AUTO || v == V_DET || v == V_MCNCCL || v == V_NCCL;
  if (g_world == 1 && !path) return "n/a: a world of one rank has no custom kernel (needs 2 GPUs)";
  if (m == M_EAGER && !path) return "n/a: eager rows for auto, det and the NCCL paths only";
  if (v == V_LL && size_bytes(s) > LL_MAX_BYTES) return "n/a: above the LL payload";
  return NULL;
}

/* What one timed run enqueues: a graph launch, or GRAPH_OPS eager calls (exec NULL), or nothing
   (exec NULL, v < 0: a rank that failed still takes part in the barrier). */
typedef struct run_arg {
  bench_t *b;
  cudaGraphExec_t exec;
  int v, d;
  size_t count;
} run_arg_t;

static int run_once(void *arg) {
  const run_arg_t *a = arg;
  int good = 1;
  if (a->exec != NULL) return cudaGraphLaunch(a->exec, a->b->s) == cudaSuccess;
  for (int i = 0; a->v >= 0 && good && i < GRAPH_OPS; i++) good = issue(a->b, a->v, a->d, a->count);
  return good;
}

/* Times REPLAYS runs after a barrier of every rank; the median per op in *us_p. */
static int time_runs(bench_t *b, cudaGraphExec_t exec, int v, int d, size_t count, double *us_p) {
  run_arg_t a = {b, exec, v, d, count};
  host_barrier(b);
  return mc_bench_time(b->s, b->ev, REPLAYS, GRAPH_OPS, run_once, &a, us_p);
}

/* The captured body: GRAPH_OPS all-reduces (v < 0: compute kernels only; interleaved: a compute
   kernel before each). */
typedef struct body_arg {
  bench_t *b;
  int v, d, interleaved;
  size_t count;
  char *err;
  size_t cap;
} body_arg_t;

static int body(void *arg) {
  const body_arg_t *a = arg;
  for (int i = 0; i < GRAPH_OPS; i++) {
    if ((a->interleaved || a->v < 0) && !issue_compute(a->b))
      return mc_bench_fail(a->err, a->cap, "captured compute kernel failed");
    if (a->v >= 0 && !issue(a->b, a->v, a->d, a->count))
      return mc_bench_fail(a->err, a->cap, "captured call: %s", last_err(a->b, a->v));
  }
  return 1;
}

/* The graph of body inside v's capture scope (none for NCCL and the compute kernel alone). */
static int capture(bench_t *b, int v, int d, size_t count, int interleaved, cudaGraphExec_t *exec_p,
                   char *err, size_t cap) {
  body_arg_t a = {b, v, d, interleaved, count, err, cap};
  return mc_bench_capture(g_api, v >= 0 && v != V_NCCL ? b->ctx[v] : NULL, b->s, body, &a, exec_p,
                          err, cap);
}

static void measure(bench_t *b, int m, int v, int d, int s, cell_t *c) {
  const size_t bytes = size_bytes(s), count = bytes / esize(d);
  cudaGraphExec_t exec = NULL;
  char *const err = c->err;
  const size_t cap = sizeof(c->err);
  int good = 1;

  memset(c, 0, sizeof(*c));
  /* A failure anywhere still reaches the host barrier (time_runs), so every rank stays in step. */
  if (m != M_EAGER) good = capture(b, v, d, count, m == M_INTERLEAVED, &exec, err, cap);
  if (good && cudaMemsetAsync(b->dout, 0xff, bytes, b->s) != cudaSuccess) good = 0;
  if (good && exec != NULL) good = cudaGraphLaunch(exec, b->s) == cudaSuccess;
  if (good && exec == NULL) good = issue(b, v, d, count);
  if (good && cudaStreamSynchronize(b->s) != cudaSuccess) good = 0;
  if (!good) mc_bench_fail(err, cap, "warm-up failed: %s", cudaGetErrorString(cudaGetLastError()));
  if (!time_runs(b, good ? exec : NULL, good ? v : -1, d, count, &c->us) || !good) {
    mc_bench_fail(err, cap, "timed runs failed"); /* unless an earlier cause */
  } else if (cudaMemcpy(b->got, b->dout, bytes, cudaMemcpyDeviceToHost) != cudaSuccess) {
    mc_bench_fail(err, cap, "reading the result back failed");
  } else {
    const size_t es = esize(d);
    for (size_t i = 0; i < count; i++)
      c->wrong += memcmp((char *)b->got + i * es, (char *)b->want[d] + i * es, es) != 0;
    if (m == M_INTERLEAVED) c->us -= g_res[b->rank].compute_us;
    c->ran = 1;
  }
  if (exec) cudaGraphExecDestroy(exec);
  (void)cudaGetLastError();
}

/* The compute kernel alone: a graph of GRAPH_OPS of them, per launch. */
static int measure_compute(bench_t *b, rank_res_t *r) {
  cudaGraphExec_t exec = NULL;
  char err[160] = "";
  int good = capture(b, -1, 0, 0, 1, &exec, err, sizeof(err)) &&
             cudaGraphLaunch(exec, b->s) == cudaSuccess;
  /* every rank reaches the barrier inside time_runs, failed or not */
  good = time_runs(b, good ? exec : NULL, -1, 0, 0, &r->compute_us) && good;
  if (exec) cudaGraphExecDestroy(exec);
  if (!good) return mc_bench_fail(r->err, sizeof(r->err), "compute kernel: %s", err);
  return 1;
}

/* Host time of one eager call (enqueue only), median over batches. */
static double host_cost(bench_t *b, int v) {
  double per[HOST_BATCHES];
  for (int k = 0; k < HOST_BATCHES; k++) {
    double t0;
    host_barrier(b);
    t0 = mc_bench_now_s();
    for (int i = 0; i < HOST_BATCH; i++)
      if (!issue(b, v, 0, 512)) return -1;
    per[k] = 1e6 * (mc_bench_now_s() - t0) / HOST_BATCH;
    if (cudaStreamSynchronize(b->s) != cudaSuccess) return -1;
  }
  return mc_bench_median(per, HOST_BATCHES);
}

/* The exact result of every size (a prefix of it) for dtype d: all ranks' inputs (seed 11 +
   rank, as upload_inputs makes them) summed in fp32 in rank order - exact, they are small
   integers (shim_data_fill_random) - then rounded to d, which is exact too. */
static int reference(int d, void *want) {
  const size_t n = MAX_BYTES / esize(d);
  void *in = malloc(MAX_BYTES);
  float *acc = calloc(n, sizeof(float));
  int ok = in != NULL && acc != NULL;
  for (int rr = 0; ok && rr < g_world; rr++) {
    shim_data_fill_random(in, n, k_dtypes[d], 11 + (uint64_t)rr);
    for (size_t i = 0; i < n; i++) acc[i] += (float)shim_data_get(in, i, k_dtypes[d]);
  }
  for (size_t i = 0; ok && i < n; i++) {
    if (k_dtypes[d] == MOECOMM_BFLOAT16)
      ((uint16_t *)want)[i] = shim_data_to_bf16(acc[i]);
    else
      ((float *)want)[i] = acc[i];
  }
  free(acc);
  free(in);
  return ok;
}

/* The interleaved compute kernel's buffers: rows of ones, in place. */
static int setup_compute(bench_t *b, char *err, size_t cap) {
  const size_t el = (size_t)COMPUTE_ROWS * COMPUTE_H;
  uint16_t *ones = malloc(el * 2);
  char *a = NULL, *r = NULL, *w = NULL;
  int ok = ones != NULL && cudaMalloc((void **)&a, el * 2) == cudaSuccess &&
           cudaMalloc((void **)&r, el * 2) == cudaSuccess &&
           cudaMalloc((void **)&w, COMPUTE_H * 2) == cudaSuccess;
  for (size_t i = 0; ok && i < el; i++) ones[i] = 0x3f80; /* bf16 1.0 */
  ok = ok && cudaMemcpy(a, ones, el * 2, cudaMemcpyHostToDevice) == cudaSuccess &&
       cudaMemcpy(r, ones, el * 2, cudaMemcpyHostToDevice) == cudaSuccess &&
       cudaMemcpy(w, ones, COMPUTE_H * 2, cudaMemcpyHostToDevice) == cudaSuccess;
  free(ones);
  if (!ok) return mc_bench_fail(err, cap, "compute kernel buffers failed");
  memset(&b->compute, 0, sizeof(b->compute));
  b->compute.dtype = MOECOMM_BFLOAT16;
  b->compute.rows = COMPUTE_ROWS;
  b->compute.hidden = COMPUTE_H;
  b->compute.a = a;
  b->compute.residual = r;
  b->compute.weight = w;
  b->compute.eps = 1e-6f;
  b->compute.y = a;
  return 1;
}

/* Every variant's context (and TP group), the custom path's memory, NCCL's communicator. */
static int setup_contexts(bench_t *b, rank_res_t *r) {
  static const char *const env_auto[] = {NULL};
  static const char *const env_nopdl[] = {"MOECOMM_CUSTOM_PDL", "0", NULL};
  static const char *const env_ll[] = {"MOECOMM_ALGO", "ll", NULL};
  static const char *const env_one[] = {"MOECOMM_ALGO", "oneshot", "MOECOMM_CUSTOM_BUFFER_BYTES",
                                        "128M", NULL};
  static const char *const env_two[] = {"MOECOMM_ALGO", "twoshot", NULL};
  static const char *const env_two128[] = {"MOECOMM_ALGO", "twoshot", "MOECOMM_CUSTOM_MAX_BLOCKS",
                                           "128", NULL};
  static const char *const env_tpush[] = {"MOECOMM_ALGO", "twoshot_push", NULL};
  static const char *const env_opush[] = {"MOECOMM_ALGO", "oneshot_push", NULL};
  static const char *const env_det[] = {"MOECOMM_DETERMINISTIC", "1", NULL};
  static const char *const env_nccl[] = {"MOECOMM_BACKEND_TP", "nccl", NULL};
  const char *const *envs[V_NCCL] = {env_auto,   env_nopdl, env_ll,    env_one, env_two,
                                     env_two128, env_tpush, env_opush, env_det, env_nccl};
  size_t free0 = 0, free1 = 0, total = 0;
  moecomm_group_stats_t st;
  char *const err = r->err;
  const size_t cap = sizeof(r->err);
  for (int v = 0; v < V_NCCL; v++) {
    if ((b->ctx[v] = mc_bench_open_ctx(g_api, g_world, b->rank, envs[v])) == NULL ||
        g_api->group_get(b->ctx[v], MOECOMM_GROUP_TP, &b->tp[v]) != MOECOMM_SUCCESS)
      return mc_bench_fail(err, cap, "moecomm context for %s failed", k_vname[v]);
    /* create the communicator eagerly (1 KB); auto: measure what it costs */
    if (v == V_AUTO &&
        (cudaDeviceSynchronize() != cudaSuccess || cudaMemGetInfo(&free0, &total) != cudaSuccess))
      return mc_bench_fail(err, cap, "cudaMemGetInfo failed");
    if (!issue(b, v, 0, 512) || cudaStreamSynchronize(b->s) != cudaSuccess)
      return mc_bench_fail(err, cap, "first all-reduce on %s: %s", k_vname[v], last_err(b, v));
    if (v == V_AUTO) {
      (void)cudaMemGetInfo(&free1, &total);
      r->custom_meminfo_mib = ((double)free0 - (double)free1) / (1024.0 * 1024.0);
      memset(&st, 0, sizeof(st));
      st.struct_size = sizeof(st);
      if (g_api->group_stats(b->tp[v], &st) == MOECOMM_SUCCESS)
        r->custom_stats_bytes = st.device_bytes;
    }
  }
  if (!mc_bench_nccl_comm(b->rank, g_world, &b->nc, err, cap)) return 0;
  if (!issue(b, V_NCCL, 0, 512) || cudaStreamSynchronize(b->s) != cudaSuccess)
    return mc_bench_fail(err, cap, "first ncclAllReduce failed");
  return 1;
}

static int setup(bench_t *b, rank_res_t *r) {
  char *const err = r->err;
  const size_t cap = sizeof(r->err);
  if ((b->gathered = malloc((size_t)g_world)) == NULL)
    return mc_bench_fail(err, cap, "host malloc failed");
  if (cudaStreamCreateWithFlags(&b->s, cudaStreamNonBlocking) != cudaSuccess ||
      cudaMalloc((void **)&b->din, MAX_BYTES) != cudaSuccess ||
      cudaMalloc((void **)&b->dout, MAX_BYTES) != cudaSuccess)
    return mc_bench_fail(err, cap, "CUDA set-up failed");
  for (int i = 0; i < 2 * REPLAYS; i++)
    if (cudaEventCreate(&b->ev[i]) != cudaSuccess)
      return mc_bench_fail(err, cap, "cudaEventCreate failed");
  /* Integer inputs, so the sum is exact in every dtype and algorithm; every rank computes the
     reference from all ranks' inputs, and uploads its own when a dtype starts (upload_inputs). */
  if ((b->got = malloc(MAX_BYTES)) == NULL) return mc_bench_fail(err, cap, "host malloc failed");
  for (int d = 0; d < NDTYPES; d++)
    if ((b->want[d] = malloc(MAX_BYTES)) == NULL || !reference(d, b->want[d]))
      return mc_bench_fail(err, cap, "host buffers for the %s reference failed", k_dtname[d]);
  return setup_compute(b, err, cap) && setup_contexts(b, r) && measure_compute(b, r);
}

static int upload_inputs(bench_t *b, int d) {
  const size_t n = MAX_BYTES / esize(d);
  void *in = malloc(MAX_BYTES);
  int ok = in != NULL;
  if (ok) shim_data_fill_random(in, n, k_dtypes[d], 11 + (uint64_t)b->rank);
  /* the graphs run on a non-blocking stream, which does not wait for the legacy stream */
  ok = ok && cudaMemcpy(b->din, in, MAX_BYTES, cudaMemcpyHostToDevice) == cudaSuccess &&
       cudaDeviceSynchronize() == cudaSuccess;
  free(in);
  return ok;
}

static int rank_main(int rank, int world, void *arg) {
  rank_res_t *r = &g_res[rank];
  bench_t b;
  (void)world; /* == g_world */
  (void)arg;
  memset(&b, 0, sizeof(b));
  b.rank = rank;
  if (!mc_bench_rank_gpu(rank, &r->gpu, r->err, sizeof(r->err))) _exit(1);
  g_api = mc_bench_plugin();
  if (!setup(&b, r)) _exit(1);

  for (int d = 0; d < NDTYPES; d++) {
    if (!upload_inputs(&b, d)) {
      mc_bench_fail(r->err, sizeof(r->err), "uploading %s inputs failed", k_dtname[d]);
      _exit(1);
    }
    for (int s = 0; s < NSIZES; s++)
      for (int m = 0; m < NMODES; m++)
        for (int v = 0; v < NVARIANTS; v++) {
          cell_t *c = &r->cell[m][v][d][s];
          const char *why = not_applicable(m, v, s);
          if (why != NULL)
            mc_bench_fail(c->err, sizeof(c->err), "%s", why);
          else
            measure(&b, m, v, d, s, c);
        }
  }
  r->host_us[0] = host_cost(&b, V_MCNCCL);
  r->host_us[1] = host_cost(&b, V_AUTO);
  r->host_us[2] = host_cost(&b, V_NCCL);
  r->done = 1;
  fflush(stdout);
  fflush(stderr);
  _exit(0); /* the parent reports; skip tearing down communicators */
}

/* ---- report (parent, no CUDA) -------------------------------------------------------------- */

/* The slowest rank's median, or -1 when any rank did not measure it. */
static double cell_us(int m, int v, int d, int s) {
  double us = -1;
  for (int r = 0; r < g_world; r++) {
    const cell_t *c = &g_res[r].cell[m][v][d][s];
    if (!c->ran) return -1;
    if (c->us > us) us = c->us;
  }
  return us;
}

/* Wrong elements, all ranks together. */
static long cell_wrong(int m, int v, int d, int s) {
  long wrong = 0;
  for (int r = 0; r < g_world; r++) wrong += g_res[r].cell[m][v][d][s].wrong;
  return wrong;
}

/* Why a cell has no time: the first rank's reason that has one. */
static const char *cell_err(int m, int v, int d, int s) {
  for (int r = 0; r < g_world; r++)
    if (g_res[r].cell[m][v][d][s].err[0]) return g_res[r].cell[m][v][d][s].err;
  return "";
}

/* busbw of an all-reduce: algbw * 2(n-1)/n */
static double busbw(double algbw) {
  return algbw * 2.0 * (g_world - 1) / g_world;
}

/* The fastest correct candidate of the graph mode at a size: index into k_vname. */
static int fastest(int d, int s) {
  static const int cand[6] = {V_LL, V_ONESHOT, V_TWOSHOT, V_TWOPUSH, V_ONEPUSH, V_NCCL};
  int best = -1;
  double bt = 0;
  for (int k = 0; k < 6; k++) {
    double us = cell_us(M_GRAPH, cand[k], d, s);
    if (us >= 0 && cell_wrong(M_GRAPH, cand[k], d, s) == 0 && (best < 0 || us < bt)) {
      best = cand[k];
      bt = us;
    }
  }
  return best;
}

/* "rank 0: ok; rank 1: did not finish; ..." */
static void print_rank_states(void) {
  for (int r = 0; r < g_world; r++)
    printf("%srank %d: %s", r ? "; " : "", r,
           g_res[r].err[0] ? g_res[r].err : (g_res[r].done ? "ok" : "did not finish"));
  printf("\n");
}

/* The nccl-tests style table of one mode; returns 1 when an element was wrong. */
static int print_mode(int m) {
  int failed = 0;
  printf("\n## %s%s\n", k_mname[m],
         m == M_INTERLEAVED ? " (the compute kernel's own time subtracted)" : "");
  for (int d = 0; d < NDTYPES; d++) {
    printf("\n#%11s %11s %6s %-20s %10s %11s %11s %8s\n", "size(B)", "count", "type", "variant",
           "time(us)", "algbw(GB/s)", "busbw(GB/s)", "#wrong");
    for (int s = 0; s < NSIZES; s++)
      for (int v = 0; v < NVARIANTS; v++) {
        const double us = cell_us(m, v, d, s);
        const size_t bytes = size_bytes(s);
        if (us < 0) {
          printf(" %11zu %11zu %6s %-20s %10s %11s %11s %8s  %s\n", bytes, bytes / esize(d),
                 k_dtname[d], k_vname[v], "-", "-", "-", "-", cell_err(m, v, d, s));
        } else {
          const double algbw = (double)bytes / (us * 1e3); /* GB/s */
          const long wrong = cell_wrong(m, v, d, s);
          failed |= wrong != 0;
          printf(" %11zu %11zu %6s %-20s %10.2f %11.2f %11.2f %8ld\n", bytes, bytes / esize(d),
                 k_dtname[d], k_vname[v], us, algbw, busbw(algbw), wrong);
        }
      }
  }
  return failed;
}

/* bf16, graph mode: every variant against the targets (and the interleaved custom-auto). */
static void print_summary(void) {
  printf("\n# bf16 summary, us per op (graph): custom-auto against the targets");
  if (g_world != TARGET_RANKS)
    printf("; the targets are for %d ranks: shown, not judged at %d", TARGET_RANKS, g_world);
  printf("\n#%11s", "size(B)");
  for (int v = 0; v < NVARIANTS; v++) printf(" %9s", k_vshort[v]);
  printf(" %9s %9s %6s\n", "auto-int", "target", "met");
  for (int s = 0; s < NSIZES; s++) {
    const double a = cell_us(M_GRAPH, V_AUTO, 0, s), ai = cell_us(M_INTERLEAVED, V_AUTO, 0, s);
    printf(" %11zu", size_bytes(s));
    for (int v = 0; v < NVARIANTS; v++) {
      const double us = cell_us(M_GRAPH, v, 0, s);
      if (us < 0)
        printf(" %9s", "-");
      else
        printf(" %9.2f", us);
    }
    if (ai < 0)
      printf(" %9s", "-");
    else
      printf(" %9.2f", ai);
    if (k_target[s] > 0)
      printf(" %9.1f %6s\n", k_target[s],
             g_world != TARGET_RANKS ? "-"
             : a < 0                 ? "?"
             : a <= k_target[s]      ? "yes"
                                     : "NO");
    else
      printf(" %9s %6s\n", "-", "");
  }
}

/* Deterministic mode against the default, every size, graph and eager. */
static void print_deterministic(void) {
  printf("\n# deterministic mode (custom-det) against the default (custom-auto), us per op");
  printf("\n#%11s %6s %10s %10s %8s %10s %10s %8s\n", "size(B)", "type", "graph", "graph-det",
         "ratio", "eager", "eager-det", "ratio");
  for (int d = 0; d < NDTYPES; d++)
    for (int s = 0; s < NSIZES; s++) {
      const double g = cell_us(M_GRAPH, V_AUTO, d, s), gd = cell_us(M_GRAPH, V_DET, d, s);
      const double e = cell_us(M_EAGER, V_AUTO, d, s), ed = cell_us(M_EAGER, V_DET, d, s);
      printf(" %11zu %6s", size_bytes(s), k_dtname[d]);
      if (g > 0 && gd > 0)
        printf(" %10.2f %10.2f %8.2f", g, gd, gd / g);
      else
        printf(" %10s %10s %8s", "-", "-", "-");
      if (e > 0 && ed > 0)
        printf(" %10.2f %10.2f %8.2f\n", e, ed, ed / e);
      else
        printf(" %10s %10s %8s\n", "-", "-", "-");
    }
}

static void print_policy_and_host(void) {
  for (int d = 0; d < NDTYPES; d++) {
    printf("\n# suggested policy (%s, world size %d): fastest correct algorithm per size\n",
           k_dtname[d], g_world);
    for (int s = 0; s < NSIZES; s++) {
      int f = fastest(d, s);
      printf("   %9zu B: %s\n", size_bytes(s), f < 0 ? "?" : k_vname[f]);
    }
  }
  printf("\n# host cost of one eager 1 KB all-reduce (enqueue only, median of %d batches of %d)\n",
         HOST_BATCHES, HOST_BATCH);
  {
    static const char *const names[3] = {"moecomm nccl path", "moecomm custom path",
                                         "direct ncclAllReduce"};
    for (int k = 0; k < 3; k++) {
      printf("   %-22s", names[k]);
      for (int r = 0; r < g_world; r++)
        printf("%s rank %d %6.2f us", r ? "," : "", r, g_res[r].host_us[k]);
      printf("\n");
    }
    printf("   moecomm nccl path overhead over direct NCCL: %.2f us per call (rank 0)\n",
           g_res[0].host_us[0] - g_res[0].host_us[2]);
  }
  printf(
      "\n# custom path device memory per rank (TP, defaults): group_stats %.1f MiB, "
      "cudaMemGetInfo delta %.1f MiB\n",
      (double)g_res[0].custom_stats_bytes / (1024.0 * 1024.0), g_res[0].custom_meminfo_mib);
}

static void json_results(FILE *jf) {
  int first = 1;
  fprintf(jf, "  \"results\": [");
  for (int m = 0; m < NMODES; m++)
    for (int d = 0; d < NDTYPES; d++)
      for (int s = 0; s < NSIZES; s++)
        for (int v = 0; v < NVARIANTS; v++) {
          const double us = cell_us(m, v, d, s);
          fprintf(jf,
                  "%s\n    {\"mode\": \"%s\", \"dtype\": \"%s\", \"bytes\": %zu, \"count\": %zu, "
                  "\"variant\": ",
                  first ? "" : ",", k_mname[m], k_dtname[d], size_bytes(s),
                  size_bytes(s) / esize(d));
          mc_bench_json_str(jf, k_vname[v]);
          if (us >= 0)
            fprintf(jf, ", \"us\": %.3f, \"algbw_gbs\": %.3f, \"busbw_gbs\": %.3f, \"wrong\": %ld}",
                    us, (double)size_bytes(s) / (us * 1e3),
                    busbw((double)size_bytes(s) / (us * 1e3)), cell_wrong(m, v, d, s));
          else {
            fprintf(jf, ", \"us\": null, \"note\": ");
            mc_bench_json_str(jf, cell_err(m, v, d, s));
            fprintf(jf, "}");
          }
          first = 0;
        }
  fprintf(jf, "\n  ],\n");
}

static void write_json(const mc_bench_run_t *run, const char *nccl, int visible, double start) {
  FILE *jf = mc_bench_json_open(run->json, "allreduce", run, &g_res[0].gpu, 1, nccl);
  int first = 1;
  if (jf == NULL) return;
  fprintf(
      jf,
      ",\n  \"ranks\": %d,\n  \"visible_devices\": %d,\n  \"method\": {\"graph_ops\": %d, "
      "\"replays\": %d, \"statistic\": \"median per op, slowest rank\", \"interleaved_compute\": "
      "\"add + RMSNorm of %d x %d bf16 (kernels/mc_norm.h), its time subtracted\"},\n"
      "  \"compute_us\": %.3f,\n",
      g_world, visible, GRAPH_OPS, REPLAYS, COMPUTE_ROWS, COMPUTE_H, g_res[0].compute_us);
  json_results(jf);
  fprintf(jf, "  \"targets_ranks\": %d,\n  \"targets_bf16_us\": {", TARGET_RANKS);
  for (int s = 0; s < NSIZES; s++)
    if (k_target[s] > 0) {
      fprintf(jf, "%s\"%zu\": %.1f", first ? "" : ", ", size_bytes(s), k_target[s]);
      first = 0;
    }
  fprintf(jf, "},\n  \"suggested_policy\": {");
  for (int d = 0; d < NDTYPES; d++) {
    fprintf(jf, "%s\"%s\": {", d ? ", " : "", k_dtname[d]);
    for (int s = 0; s < NSIZES; s++) {
      int f = fastest(d, s);
      fprintf(jf, "%s\"%zu\": \"%s\"", s ? ", " : "", size_bytes(s), f < 0 ? "?" : k_vname[f]);
    }
    fprintf(jf, "}");
  }
  fprintf(jf,
          "},\n  \"host_us_per_eager_call\": {\"moecomm_nccl\": %.3f, \"moecomm_custom\": %.3f, "
          "\"nccl\": %.3f},\n",
          g_res[0].host_us[0], g_res[0].host_us[1], g_res[0].host_us[2]);
  fprintf(jf,
          "  \"custom_device_bytes_per_rank\": %llu,\n  \"custom_meminfo_mib_per_rank\": %.1f,\n"
          "  \"seconds\": %.1f\n}\n",
          g_res[0].custom_stats_bytes, g_res[0].custom_meminfo_mib, mc_bench_now_s() - start);
  if (fclose(jf) != 0)
    perror(run->json);
  else
    printf("\nwrote %s\n", run->json);
}

int main(int argc, char **argv) {
  mc_bench_run_t run;
  char nccl[32];
  int failed = 0, all_done = 1, visible, rc;
  double start = mc_bench_now_s();

  rc = mc_bench_gpu_begin(argc, argv, "bench", MC_BENCH_ANY_WORLD, &run, &g_world);
  if (rc >= 0) return rc;
  visible = shim_gpu_devices();
  mc_bench_nccl_version(nccl, sizeof(nccl));
  if ((g_res = mc_bench_shared(sizeof(rank_res_t) * (size_t)g_world)) == NULL) return 1;
  printf("bench: all-reduce on %d ranks (%s, %d CUDA devices visible)\n", g_world,
         g_world < visible ? "MC_BENCH_GPU_RANKS" : "every device", visible);
  if (g_world == 1)
    printf(
        "bench: ONE GPU: a world of one rank, where every all-reduce is a device copy; the "
        "custom kernels and the multi-rank rows need 2 or more GPUs and are not measured\n");
  rc = shim_launch(g_world, rank_main, NULL, 400);
  for (int r = 0; r < g_world; r++) all_done &= g_res[r].done;
  if (rc != 0 || !all_done) {
    printf("bench: a rank failed: ");
    print_rank_states();
    failed = 1;
  }

  printf("\n# all-reduce, %d ranks on %s (driver %s, CUDA runtime %d, NCCL %s), commit %s\n",
         g_world, g_res[0].gpu.name, run.driver, g_res[0].gpu.cuda_runtime, nccl, run.commit);
  printf(
      "# graph of %d all-reduces, %d timed replays, median us per op (slowest rank); busbw = "
      "algbw * 2(n-1)/n; interleaved: compute kernel alone %.2f us per launch (rank 0)\n",
      GRAPH_OPS, REPLAYS, g_res[0].compute_us);
  for (int m = 0; m < NMODES; m++) failed |= print_mode(m);
  print_summary();
  print_deterministic();
  print_policy_and_host();
  if (run.json != NULL) write_json(&run, nccl, visible, start);
  printf("bench: %.1f s%s\n", mc_bench_now_s() - start, failed ? ", FAILED (see above)" : "");
  return failed;
}

#endif /* MC_WITH_CUDA */
