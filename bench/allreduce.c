/* allreduce.c - `make bench`: all-reduce latency, moecomm's custom kernels against NCCL.
 *
 * World: one rank per visible CUDA device, or the first N with MC_BENCH_GPU_RANKS=N; the TP group is
 * every rank.  Method (DESIGN.md "Measuring"): bf16 and fp32, 1 KB to 64 MB in steps of x4; per
 * size and variant a CUDA graph of 20 back-to-back all-reduces (same buffers, out of place) is
 * captured, replayed once to warm up, then REPLAYS times, each replay timed with a pair of CUDA
 * events; the time per op is the median replay time / 20, and the reported time is the largest
 * of the ranks' medians.  After the timed replays the output is compared with the exact result
 * (integer-valued inputs of every rank, summed in rank order) and the wrong elements of all
 * ranks are counted.  Variants, all in this one run:
 *   custom-auto      moecomm, MOECOMM_ALGO unset (the policy table)
 *   custom-nopdl     the same with MOECOMM_CUSTOM_PDL=0 (no programmatic dependent launch)
 *   custom-twoshot-128  two-shot with MOECOMM_CUSTOM_MAX_BLOCKS=128 (the grid cap, default 64)
 *   custom-ll        moecomm, MOECOMM_ALGO=ll        (sizes up to the LL payload, 256 KiB)
 *   custom-oneshot   moecomm, MOECOMM_ALGO=oneshot   (staging raised to 128 MiB: every size)
 *   custom-twoshot   moecomm, MOECOMM_ALGO=twoshot
 *   moecomm-nccl     moecomm, MOECOMM_BACKEND_TP=nccl (moecomm's NCCL path)
 *   nccl             ncclAllReduce on a communicator this program makes itself
 * Then the host cost of one eager all-reduce call (enqueue only, 1 KB, batches of 200 calls):
 * moecomm's NCCL path and custom path against a direct ncclAllReduce; and the custom path's
 * device memory (group_stats and cudaMemGetInfo around its creation).
 *
 * Prints nccl-tests style tables, a summary against the issue's bf16 targets (set for 2 ranks,
 * judged only at 2), and the policy the measurements suggest for this world size (fastest
 * algorithm per size); writes JSON (--json PATH) with device, driver, NCCL version, commit, date
 * and world size ("ranks").  About 7 s on 2x H200; every rank's reference costs O(ranks) host
 * time, still seconds on 8. */
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
#include "common/bench_plugin.h"

#define NSIZES 9 /* 1 KB .. 64 MB, x4 */
#define NDTYPES 2
#define GRAPH_OPS 20
#define REPLAYS 15
#define LL_MAX_BYTES (256u << 10)
#define HOST_BATCH 200
#define HOST_BATCHES 10
#define MAX_BYTES ((size_t)64 << 20)

typedef enum {
  V_AUTO, V_NOPDL, V_LL, V_ONESHOT, V_TWOSHOT, V_TWOSHOT128, V_MCNCCL, V_NCCL, NVARIANTS
} variant_t;

static const char *const k_vname[NVARIANTS] = {
    "custom-auto",    "custom-nopdl", "custom-ll", "custom-oneshot",
    "custom-twoshot", "custom-twoshot-128", "moecomm-nccl", "nccl"};
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
  cell_t cell[NVARIANTS][NDTYPES][NSIZES];
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

static size_t size_bytes(int s) { return (size_t)1024 << (2 * s); }
static size_t esize(int d) { return k_dtypes[d] == MOECOMM_FLOAT32 ? 4 : 2; }

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
} bench_t;

static int host_barrier(bench_t *b) {
  char in = 1;
  return shim_host_allgather(shim_launch_hub(), &in, b->gathered, 1) == 0;
}

static moecomm_context_t *open_ctx(int rank, const char *const *env) {
  moecomm_topology_t topo = shim_launch_topology(g_world, rank, g_world);
  moecomm_context_params_t params = shim_launch_params(&topo, rank);
  moecomm_context_t *ctx = NULL;
  moecomm_result_t rc;
  for (int i = 0; env[i] != NULL; i += 2) setenv(env[i], env[i + 1], 1);
  rc = g_api->context_create(&params, &ctx);
  for (int i = 0; env[i] != NULL; i += 2) unsetenv(env[i]);
  if (rc != MOECOMM_SUCCESS) {
    fprintf(stderr, "rank %d: context_create: %s: %s\n", rank, g_api->result_string(rc),
            g_api->last_error(NULL));
    return NULL;
  }
  return ctx;
}

/* One all-reduce of count elements of dtype d in variant v, on b's buffers. */
static int issue(bench_t *b, int v, int d, size_t count) {
  if (v == V_NCCL)
    return ncclAllReduce(b->din, b->dout, count, d == 0 ? ncclBfloat16 : ncclFloat32, ncclSum,
                         b->nc, b->s) == ncclSuccess;
  return g_api->all_reduce(b->tp[v], b->din, b->dout, count, k_dtypes[d], MOECOMM_SUM, b->s) ==
         MOECOMM_SUCCESS;
}

static const char *last_err(bench_t *b, int v) {
  return v == V_NCCL ? "ncclAllReduce failed" : g_api->last_error(b->ctx[v]);
}

/* Whether forced variant v serves size s (else its row says n/a, not a fallback's time). */
static int applies(int v, int s) { return v != V_LL || size_bytes(s) <= LL_MAX_BYTES; }

static void measure(bench_t *b, int v, int d, int s, cell_t *c) {
  const size_t bytes = size_bytes(s), count = bytes / esize(d);
  cudaGraph_t graph = NULL;
  cudaGraphExec_t exec = NULL;
  double t[REPLAYS];
  int good = 1, in_scope = 0, capturing = 0;
  char *const err = c->err;
  const size_t cap = sizeof(c->err);

  memset(c, 0, sizeof(*c));
  /* A failure anywhere still reaches the host barrier below, so every rank stays in step. */
  if (v != V_NCCL) {
    if (g_api->capture_begin(b->ctx[v], b->s) == MOECOMM_SUCCESS)
      in_scope = 1;
    else
      good = mc_bench_fail(err, cap, "capture_begin: %s", g_api->last_error(b->ctx[v]));
  }
  if (good) {
    if (cudaStreamBeginCapture(b->s, cudaStreamCaptureModeGlobal) == cudaSuccess)
      capturing = 1;
    else
      good = mc_bench_fail(err, cap, "cudaStreamBeginCapture failed");
  }
  for (int i = 0; good && i < GRAPH_OPS; i++)
    if (!issue(b, v, d, count)) good = mc_bench_fail(err, cap, "captured call: %s", last_err(b, v));
  if (capturing && cudaStreamEndCapture(b->s, &graph) != cudaSuccess && good)
    good = mc_bench_fail(err, cap, "cudaStreamEndCapture failed");
  /* capture_end is collective: it runs whenever capture_begin succeeded */
  if (in_scope && g_api->capture_end(b->ctx[v], b->s) != MOECOMM_SUCCESS && good)
    good = mc_bench_fail(err, cap, "capture_end: %s", g_api->last_error(b->ctx[v]));
  if (good && cudaGraphInstantiate(&exec, graph, 0) != cudaSuccess)
    good = mc_bench_fail(err, cap, "cudaGraphInstantiate failed");
  if (good &&
      (cudaMemsetAsync(b->dout, 0xff, bytes, b->s) != cudaSuccess ||
       cudaGraphLaunch(exec, b->s) != cudaSuccess || cudaStreamSynchronize(b->s) != cudaSuccess))
    good = mc_bench_fail(err, cap, "warm-up replay failed: %s",
                         cudaGetErrorString(cudaGetLastError()));
  host_barrier(b);
  for (int r = 0; good && r < REPLAYS; r++)
    good = cudaEventRecord(b->ev[2 * r], b->s) == cudaSuccess &&
           cudaGraphLaunch(exec, b->s) == cudaSuccess &&
           cudaEventRecord(b->ev[2 * r + 1], b->s) == cudaSuccess;
  if (good && cudaStreamSynchronize(b->s) != cudaSuccess) good = 0;
  for (int r = 0; good && r < REPLAYS; r++) {
    float ms = 0;
    good = cudaEventElapsedTime(&ms, b->ev[2 * r], b->ev[2 * r + 1]) == cudaSuccess;
    t[r] = 1000.0 * ms / GRAPH_OPS;
  }
  if (!good) mc_bench_fail(err, cap, "timed replays failed"); /* unless an earlier cause */
  if (good) {
    c->us = mc_bench_median(t, REPLAYS);
    if (cudaMemcpy(b->got, b->dout, bytes, cudaMemcpyDeviceToHost) != cudaSuccess) {
      mc_bench_fail(err, cap, "reading the result back failed");
    } else {
      const size_t es = esize(d);
      for (size_t i = 0; i < count; i++)
        c->wrong += memcmp((char *)b->got + i * es, (char *)b->want[d] + i * es, es) != 0;
      c->ran = 1;
    }
  }
  if (exec) cudaGraphExecDestroy(exec);
  if (graph) cudaGraphDestroy(graph);
  (void)cudaGetLastError();
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

static int setup(bench_t *b, rank_res_t *r) {
  static const char *const env_auto[] = {NULL};
  static const char *const env_nopdl[] = {"MOECOMM_CUSTOM_PDL", "0", NULL};
  static const char *const env_ll[] = {"MOECOMM_ALGO", "ll", NULL};
  static const char *const env_one[] = {"MOECOMM_ALGO", "oneshot", "MOECOMM_CUSTOM_BUFFER_BYTES",
                                        "128M", NULL};
  static const char *const env_two[] = {"MOECOMM_ALGO", "twoshot", NULL};
  static const char *const env_two128[] = {"MOECOMM_ALGO", "twoshot", "MOECOMM_CUSTOM_MAX_BLOCKS",
                                           "128", NULL};
  static const char *const env_nccl[] = {"MOECOMM_BACKEND_TP", "nccl", NULL};
  const char *const *envs[V_NCCL] = {env_auto, env_nopdl, env_ll,    env_one,
                                     env_two,  env_two128, env_nccl};
  size_t free0 = 0, free1 = 0, total = 0;
  moecomm_group_stats_t st;
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

  for (int v = 0; v < V_NCCL; v++) {
    if ((b->ctx[v] = open_ctx(b->rank, envs[v])) == NULL ||
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
      for (int v = 0; v < NVARIANTS; v++) {
        if (!applies(v, s)) {
          mc_bench_fail(r->cell[v][d][s].err, sizeof(r->cell[v][d][s].err), "n/a");
          continue;
        }
        measure(&b, v, d, s, &r->cell[v][d][s]);
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
static double cell_us(int v, int d, int s) {
  double us = -1;
  for (int r = 0; r < g_world; r++) {
    const cell_t *c = &g_res[r].cell[v][d][s];
    if (!c->ran) return -1;
    if (c->us > us) us = c->us;
  }
  return us;
}

/* Wrong elements, all ranks together. */
static long cell_wrong(int v, int d, int s) {
  long wrong = 0;
  for (int r = 0; r < g_world; r++) wrong += g_res[r].cell[v][d][s].wrong;
  return wrong;
}

/* Why a cell has no time: the first rank's reason that has one. */
static const char *cell_err(int v, int d, int s) {
  for (int r = 0; r < g_world; r++)
    if (g_res[r].cell[v][d][s].err[0]) return g_res[r].cell[v][d][s].err;
  return "";
}

/* busbw of an all-reduce: algbw * 2(n-1)/n */
static double busbw(double algbw) { return algbw * 2.0 * (g_world - 1) / g_world; }

/* The fastest of ll / oneshot / twoshot / nccl at a size: index into k_vname. */
static int fastest(int d, int s) {
  static const int cand[4] = {V_LL, V_ONESHOT, V_TWOSHOT, V_NCCL};
  int best = -1;
  double bt = 0;
  for (int k = 0; k < 4; k++) {
    double us = cell_us(cand[k], d, s);
    if (us >= 0 && cell_wrong(cand[k], d, s) == 0 && (best < 0 || us < bt)) {
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

int main(int argc, char **argv) {
  mc_bench_run_t run;
  char nccl[32];
  int failed = 0, all_done = 1, visible, rc;
  double start = mc_bench_now_s();
  FILE *jf = NULL;

  rc = mc_bench_gpu_begin(argc, argv, "bench", 0, &run, &g_world);
  if (rc >= 0) return rc;
  visible = shim_gpu_devices();
  mc_bench_nccl_version(nccl, sizeof(nccl));
  if ((g_res = mc_bench_shared(sizeof(rank_res_t) * (size_t)g_world)) == NULL) return 1;
  printf("bench: all-reduce on %d ranks (%s, %d CUDA devices visible)\n", g_world,
         g_world < visible ? "MC_BENCH_GPU_RANKS" : "every device", visible);
  rc = shim_launch(g_world, rank_main, NULL, 170);
  for (int r = 0; r < g_world; r++) all_done &= g_res[r].done;
  if (rc != 0 || !all_done) {
    printf("bench: a rank failed: ");
    print_rank_states();
    failed = 1;
  }

  printf("\n# all-reduce, %d ranks on %s (driver %s, CUDA runtime %d, NCCL %s), commit %s\n",
         g_world, g_res[0].gpu.name, run.driver, g_res[0].gpu.cuda_runtime, nccl, run.commit);
  printf(
      "# graph of %d back-to-back all-reduces, %d timed replays, median us per op (slowest "
      "rank); busbw = algbw * 2(n-1)/n\n",
      GRAPH_OPS, REPLAYS);
  for (int d = 0; d < NDTYPES; d++) {
    printf("\n#%11s %11s %6s %-15s %10s %11s %11s %8s\n", "size(B)", "count", "type", "variant",
           "time(us)", "algbw(GB/s)", "busbw(GB/s)", "#wrong");
    for (int s = 0; s < NSIZES; s++) {
      for (int v = 0; v < NVARIANTS; v++) {
        double us = cell_us(v, d, s);
        size_t bytes = size_bytes(s);
        if (us < 0) {
          printf(" %11zu %11zu %6s %-15s %10s %11s %11s %8s  %s\n", bytes, bytes / esize(d),
                 k_dtname[d], k_vname[v], "-", "-", "-", "-", cell_err(v, d, s));
          continue;
        }
        {
          double algbw = (double)bytes / (us * 1e3); /* GB/s */
          long wrong = cell_wrong(v, d, s);
          failed |= wrong != 0;
          printf(" %11zu %11zu %6s %-15s %10.2f %11.2f %11.2f %8ld\n", bytes, bytes / esize(d),
                 k_dtname[d], k_vname[v], us, algbw, busbw(algbw), wrong);
        }
      }
    }
  }

  printf("\n# bf16 summary, us per op: custom-auto against the targets (and the best custom)");
  if (g_world != TARGET_RANKS)
    printf("; the targets are for %d ranks: shown, not judged at %d", TARGET_RANKS, g_world);
  printf("\n#%11s %10s %10s %10s %10s %10s %10s %10s %10s %10s %8s\n", "size(B)", "auto", "no-pdl",
         "ll", "oneshot", "twoshot", "2shot-128", "moe-nccl", "nccl", "target", "met");
  for (int s = 0; s < NSIZES; s++) {
    double a = cell_us(V_AUTO, 0, s);
    printf(" %11zu", size_bytes(s));
    for (int v = 0; v < NVARIANTS; v++) {
      double us = cell_us(v, 0, s);
      if (us < 0)
        printf(" %10s", "-");
      else
        printf(" %10.2f", us);
    }
    if (k_target[s] > 0)
      printf(" %10.1f %8s\n", k_target[s],
             g_world != TARGET_RANKS ? "-" : a < 0 ? "?" : a <= k_target[s] ? "yes" : "NO");
    else
      printf(" %10s %8s\n", "-", "");
  }

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

  if (run.json != NULL)
    jf = mc_bench_json_open(run.json, "allreduce", &run, &g_res[0].gpu, 1, nccl);
  if (jf != NULL) {
    int first = 1;
    fprintf(jf,
            ",\n  \"ranks\": %d,\n  \"visible_devices\": %d,\n  \"method\": {\"graph_ops\": %d, "
            "\"replays\": %d, \"statistic\": \"median per op, slowest rank\"},\n",
            g_world, visible, GRAPH_OPS, REPLAYS);
    fprintf(jf, "  \"results\": [");
    for (int d = 0; d < NDTYPES; d++)
      for (int s = 0; s < NSIZES; s++)
        for (int v = 0; v < NVARIANTS; v++) {
          double us = cell_us(v, d, s);
          fprintf(jf, "%s\n    {\"dtype\": \"%s\", \"bytes\": %zu, \"count\": %zu, \"variant\": ",
                  first ? "" : ",", k_dtname[d], size_bytes(s), size_bytes(s) / esize(d));
          mc_bench_json_str(jf, k_vname[v]);
          if (us >= 0)
            fprintf(jf, ", \"us\": %.3f, \"algbw_gbs\": %.3f, \"busbw_gbs\": %.3f, \"wrong\": %ld}",
                    us, (double)size_bytes(s) / (us * 1e3),
                    busbw((double)size_bytes(s) / (us * 1e3)), cell_wrong(v, d, s));
          else {
            fprintf(jf, ", \"us\": null, \"note\": ");
            mc_bench_json_str(jf, cell_err(v, d, s));
            fprintf(jf, "}");
          }
          first = 0;
        }
    fprintf(jf, "\n  ],\n  \"targets_ranks\": %d,\n  \"targets_bf16_us\": {", TARGET_RANKS);
    first = 1;
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
      perror(run.json);
    else
      printf("\nwrote %s\n", run.json);
  }
  printf("bench: %.1f s%s\n", mc_bench_now_s() - start, failed ? ", FAILED (see above)" : "");
  return failed;
}

#endif /* MC_WITH_CUDA */
