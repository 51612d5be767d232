/* allreduce.c - `make bench`: all-reduce latency, moecomm's custom kernels against NCCL, 2 GPUs.
 *
 * Method (DESIGN.md "Measuring"): bf16 and fp32, 1 KB to 64 MB in steps of x4; per size and
 * variant a CUDA graph of 20 back-to-back all-reduces (same buffers, out of place) is captured,
 * replayed once to warm up, then REPLAYS times, each replay timed with a pair of CUDA events; the
 * time per op is the median replay time / 20, and the reported time is the larger of the two
 * ranks' medians.  After the timed replays the output is compared with the exact result
 * (integer-valued inputs) and the wrong elements are counted.  Variants, all in this one run:
 *   custom-auto      moecomm, MOECOMM_ALGO unset (the policy table)
 *   custom-nopdl     the same with MOECOMM_CUSTOM_PDL=0 (no programmatic dependent launch)
 *   custom-ll        moecomm, MOECOMM_ALGO=ll        (sizes up to the LL payload, 256 KiB)
 *   custom-oneshot   moecomm, MOECOMM_ALGO=oneshot   (staging raised to 128 MiB: every size)
 *   custom-twoshot   moecomm, MOECOMM_ALGO=twoshot
 *   moecomm-nccl     moecomm, MOECOMM_BACKEND_TP=nccl (moecomm's NCCL path)
 *   nccl             ncclAllReduce on a communicator this program makes itself
 * Then the host cost of one eager all-reduce call (enqueue only, 1 KB, batches of 200 calls):
 * moecomm's NCCL path and custom path against a direct ncclAllReduce; and the custom path's
 * device memory (group_stats and cudaMemGetInfo around its creation).
 *
 * Prints nccl-tests style tables, a summary against the issue's bf16 targets, and the policy the
 * measurements suggest (fastest algorithm per size); writes JSON (--json PATH) with device,
 * driver, NCCL version, commit and date. */
#include <cuda_runtime_api.h>
#include <nccl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "../abi/moecomm.h"
#include "../host_shim/launch.h"
#include "../tests/common/harness.h"

#define NRANKS 2
#define NSIZES 9 /* 1 KB .. 64 MB, x4 */
#define NDTYPES 2
#define GRAPH_OPS 20
#define REPLAYS 15
#define LL_MAX_BYTES (256u << 10)
#define HOST_BATCH 200
#define HOST_BATCHES 10
#define MAX_BYTES ((size_t)64 << 20)

typedef enum { V_AUTO, V_NOPDL, V_LL, V_ONESHOT, V_TWOSHOT, V_MCNCCL, V_NCCL, NVARIANTS } variant_t;

static const char *const k_vname[NVARIANTS] = {
    "custom-auto",    "custom-nopdl", "custom-ll", "custom-oneshot",
    "custom-twoshot", "moecomm-nccl", "nccl"};
static const moecomm_dtype_t k_dtypes[NDTYPES] = {MOECOMM_BFLOAT16, MOECOMM_FLOAT32};
static const char *const k_dtname[NDTYPES] = {"bf16", "fp32"};
/* the issue's bf16 targets, us per op; 0: none at that size */
static const double k_target[NSIZES] = {3.0, 0, 3.5, 4.5, 6.0, 8.5, 16.0, 48.0, 175.0};

typedef struct cell {
  int ran;       /* measured */
  double us;     /* median per op */
  long wrong;    /* elements wrong after the timed replays */
  char err[160]; /* why it did not run */
} cell_t;

/* Everything a rank measured (MAP_SHARED: the parent reports). */
typedef struct rank_res {
  cell_t cell[NVARIANTS][NDTYPES][NSIZES];
  double host_us[3]; /* per eager call: moecomm nccl path, custom path, direct nccl */
  unsigned long long custom_stats_bytes; /* group_stats device_bytes of the custom TP comm */
  double custom_meminfo_mib;             /* cudaMemGetInfo delta around its creation */
  char device[128];
  int cuda_driver, cuda_runtime;
  int done;
  char err[256];
} rank_res_t;

static rank_res_t *g_res;
static const moecomm_api_t *g_api;

static size_t size_bytes(int s) { return (size_t)1024 << (2 * s); }
static size_t esize(int d) { return k_dtypes[d] == MOECOMM_FLOAT32 ? 4 : 2; }

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static void cell_fail(cell_t *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void cell_fail(cell_t *c, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(c->err, sizeof(c->err), fmt, ap);
  va_end(ap);
  c->ran = 0;
}

static int host_barrier(void) {
  char in = 1, out[NRANKS];
  return shim_host_allgather(shim_launch_hub(), &in, out, 1) == 0;
}

/* Per-rank state of one run. */
typedef struct bench {
  int rank;
  cudaStream_t s;
  char *din, *dout;    /* MAX_BYTES each */
  void *want[NDTYPES]; /* host: exact result over the 64 MB inputs */
  void *got;
  moecomm_context_t *ctx[V_NCCL]; /* one per moecomm variant */
  moecomm_group_t *tp[V_NCCL];
  ncclComm_t nc;
  cudaEvent_t ev[2 * REPLAYS];
} bench_t;

static moecomm_context_t *open_ctx(int rank, const char *const *env) {
  moecomm_topology_t topo = mc_test_topo(NRANKS, rank, NRANKS);
  moecomm_context_params_t params = mc_test_ctx_params(&topo, rank);
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
  int good = 1;
  moecomm_result_t rc;

  memset(c, 0, sizeof(*c));
  if (v != V_NCCL && (rc = g_api->capture_begin(b->ctx[v], b->s)) != MOECOMM_SUCCESS) {
    cell_fail(c, "capture_begin: %s", g_api->last_error(b->ctx[v]));
    return;
  }
  if (cudaStreamBeginCapture(b->s, cudaStreamCaptureModeGlobal) != cudaSuccess) {
    cell_fail(c, "cudaStreamBeginCapture failed");
    good = 0;
  }
  for (int i = 0; good && i < GRAPH_OPS; i++)
    if (!issue(b, v, d, count)) {
      cell_fail(c, "captured call: %s", last_err(b, v));
      good = 0;
    }
  if (cudaStreamEndCapture(b->s, &graph) != cudaSuccess && good) {
    cell_fail(c, "cudaStreamEndCapture failed");
    good = 0;
  }
  if (v != V_NCCL && (rc = g_api->capture_end(b->ctx[v], b->s)) != MOECOMM_SUCCESS && good) {
    cell_fail(c, "capture_end: %s", g_api->last_error(b->ctx[v]));
    good = 0;
  }
  if (good && cudaGraphInstantiate(&exec, graph, 0) != cudaSuccess) {
    cell_fail(c, "cudaGraphInstantiate failed");
    good = 0;
  }
  /* both ranks stay in step even when one failed: the barrier is unconditional */
  if (good &&
      (cudaMemsetAsync(b->dout, 0xff, bytes, b->s) != cudaSuccess ||
       cudaGraphLaunch(exec, b->s) != cudaSuccess || cudaStreamSynchronize(b->s) != cudaSuccess)) {
    cell_fail(c, "warm-up replay failed: %s", cudaGetErrorString(cudaGetLastError()));
    good = 0;
  }
  host_barrier();
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
  if (!good && c->err[0] == '\0') cell_fail(c, "timed replays failed");
  if (good) {
    qsort(t, REPLAYS, sizeof(t[0]), cmp_double);
    c->us = t[REPLAYS / 2];
    if (cudaMemcpy(b->got, b->dout, bytes, cudaMemcpyDeviceToHost) != cudaSuccess) {
      cell_fail(c, "reading the result back failed");
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
    host_barrier();
    t0 = now_s();
    for (int i = 0; i < HOST_BATCH; i++)
      if (!issue(b, v, 0, 512)) return -1;
    per[k] = 1e6 * (now_s() - t0) / HOST_BATCH;
    if (cudaStreamSynchronize(b->s) != cudaSuccess) return -1;
  }
  qsort(per, HOST_BATCHES, sizeof(per[0]), cmp_double);
  return per[HOST_BATCHES / 2];
}

static int setup(bench_t *b, rank_res_t *r) {
  static const char *const env_auto[] = {NULL};
  static const char *const env_nopdl[] = {"MOECOMM_CUSTOM_PDL", "0", NULL};
  static const char *const env_ll[] = {"MOECOMM_ALGO", "ll", NULL};
  static const char *const env_one[] = {"MOECOMM_ALGO", "oneshot", "MOECOMM_CUSTOM_BUFFER_BYTES",
                                        "128M", NULL};
  static const char *const env_two[] = {"MOECOMM_ALGO", "twoshot", NULL};
  static const char *const env_nccl[] = {"MOECOMM_BACKEND_TP", "nccl", NULL};
  const char *const *envs[V_NCCL] = {env_auto, env_nopdl, env_ll, env_one, env_two, env_nccl};
  void *ins[NRANKS] = {NULL, NULL};
  ncclUniqueId id, ids[NRANKS];
  size_t free0 = 0, free1 = 0, total = 0;
  moecomm_group_stats_t st;
  int ok = 1;

  if (cudaStreamCreateWithFlags(&b->s, cudaStreamNonBlocking) != cudaSuccess ||
      cudaMalloc((void **)&b->din, MAX_BYTES) != cudaSuccess ||
      cudaMalloc((void **)&b->dout, MAX_BYTES) != cudaSuccess)
    return snprintf(r->err, sizeof(r->err), "CUDA set-up failed") < 0;
  for (int i = 0; i < 2 * REPLAYS; i++)
    if (cudaEventCreate(&b->ev[i]) != cudaSuccess)
      return snprintf(r->err, sizeof(r->err), "cudaEventCreate failed") < 0;
  /* Integer inputs, so the sum is exact in every dtype and algorithm; every rank regenerates
     both ranks' inputs for the reference, and uploads its own when a dtype starts
     (upload_inputs). */
  b->got = malloc(MAX_BYTES);
  for (int rr = 0; rr < NRANKS; rr++) ins[rr] = malloc(MAX_BYTES);
  for (int d = 0; d < NDTYPES && ok; d++) {
    const size_t n = MAX_BYTES / esize(d);
    b->want[d] = malloc(MAX_BYTES);
    if (b->want[d] == NULL || b->got == NULL || ins[0] == NULL || ins[1] == NULL) {
      ok = 0;
      break;
    }
    for (int rr = 0; rr < NRANKS; rr++) mc_test_fill(ins[rr], n, k_dtypes[d], 11 + (uint64_t)rr);
    for (size_t i = 0; i < n; i++) {
      double v = mc_test_get(ins[0], i, k_dtypes[d]) + mc_test_get(ins[1], i, k_dtypes[d]);
      if (d == 0)
        ((uint16_t *)b->want[d])[i] = mc_test_to_bf16((float)v);
      else
        ((float *)b->want[d])[i] = (float)v;
    }
  }
  for (int rr = 0; rr < NRANKS; rr++) free(ins[rr]);
  if (!ok) return snprintf(r->err, sizeof(r->err), "host buffers failed") < 0;

  for (int v = 0; v < V_NCCL; v++) {
    if ((b->ctx[v] = open_ctx(b->rank, envs[v])) == NULL ||
        g_api->group_get(b->ctx[v], MOECOMM_GROUP_TP, &b->tp[v]) != MOECOMM_SUCCESS)
      return snprintf(r->err, sizeof(r->err), "moecomm context for %s failed", k_vname[v]) < 0;
    /* create the communicator eagerly (1 KB); auto: measure what it costs */
    if (v == V_AUTO &&
        (cudaDeviceSynchronize() != cudaSuccess || cudaMemGetInfo(&free0, &total) != cudaSuccess))
      return snprintf(r->err, sizeof(r->err), "cudaMemGetInfo failed") < 0;
    if (!issue(b, v, 0, 512) || cudaStreamSynchronize(b->s) != cudaSuccess)
      return snprintf(r->err, sizeof(r->err), "first all-reduce on %s: %s", k_vname[v],
                      last_err(b, v)) < 0;
    if (v == V_AUTO) {
      (void)cudaMemGetInfo(&free1, &total);
      r->custom_meminfo_mib = ((double)free0 - (double)free1) / (1024.0 * 1024.0);
      memset(&st, 0, sizeof(st));
      st.struct_size = sizeof(st);
      if (g_api->group_stats(b->tp[v], &st) == MOECOMM_SUCCESS)
        r->custom_stats_bytes = st.device_bytes;
    }
  }
  if (b->rank == 0 && ncclGetUniqueId(&id) != ncclSuccess)
    return snprintf(r->err, sizeof(r->err), "ncclGetUniqueId failed") < 0;
  if (shim_host_allgather(shim_launch_hub(), &id, ids, sizeof(id)) != 0 ||
      ncclCommInitRank(&b->nc, NRANKS, ids[0], b->rank) != ncclSuccess)
    return snprintf(r->err, sizeof(r->err), "ncclCommInitRank failed") < 0;
  if (!issue(b, V_NCCL, 0, 512) || cudaStreamSynchronize(b->s) != cudaSuccess)
    return snprintf(r->err, sizeof(r->err), "first ncclAllReduce failed") < 0;
  return 1;
}

static int upload_inputs(bench_t *b, int d) {
  const size_t n = MAX_BYTES / esize(d);
  void *in = malloc(MAX_BYTES);
  int ok = in != NULL;
  if (ok) mc_test_fill(in, n, k_dtypes[d], 11 + (uint64_t)b->rank);
  /* the graphs run on a non-blocking stream, which does not wait for the legacy stream */
  ok = ok && cudaMemcpy(b->din, in, MAX_BYTES, cudaMemcpyHostToDevice) == cudaSuccess &&
       cudaDeviceSynchronize() == cudaSuccess;
  free(in);
  return ok;
}

static int rank_main(int rank, int world, void *arg) {
  rank_res_t *r = &g_res[rank];
  bench_t b;
  struct cudaDeviceProp prop;
  (void)world;
  (void)arg;
  memset(&b, 0, sizeof(b));
  b.rank = rank;
  setenv("NCCL_NVLS_ENABLE", "0", 1);
  if (cudaSetDevice(rank) != cudaSuccess || cudaFree(0) != cudaSuccess) {
    snprintf(r->err, sizeof(r->err), "no usable CUDA device %d", rank);
    _exit(1);
  }
  if (cudaGetDeviceProperties(&prop, rank) == cudaSuccess)
    snprintf(r->device, sizeof(r->device), "%s", prop.name);
  (void)cudaDriverGetVersion(&r->cuda_driver);
  (void)cudaRuntimeGetVersion(&r->cuda_runtime);
  g_api = mc_test_plugin();
  if (!setup(&b, r)) _exit(1);

  for (int d = 0; d < NDTYPES; d++) {
    if (!upload_inputs(&b, d)) {
      snprintf(r->err, sizeof(r->err), "uploading %s inputs failed", k_dtname[d]);
      _exit(1);
    }
    for (int s = 0; s < NSIZES; s++)
      for (int v = 0; v < NVARIANTS; v++) {
        if (!applies(v, s)) {
          cell_fail(&r->cell[v][d][s], "n/a");
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

static void json_str(FILE *f, const char *s) {
  fputc('"', f);
  for (; *s; s++) {
    if (*s == '"' || *s == '\\') fputc('\\', f);
    if ((unsigned char)*s < 0x20)
      fprintf(f, "\\u%04x", *s);
    else
      fputc(*s, f);
  }
  fputc('"', f);
}

/* The slower rank's median, or -1 when either rank did not measure it. */
static double cell_us(int v, int d, int s) {
  const cell_t *a = &g_res[0].cell[v][d][s], *b = &g_res[1].cell[v][d][s];
  if (!a->ran || !b->ran) return -1;
  return a->us > b->us ? a->us : b->us;
}

static long cell_wrong(int v, int d, int s) {
  return g_res[0].cell[v][d][s].wrong + g_res[1].cell[v][d][s].wrong;
}

static const char *cell_err(int v, int d, int s) {
  return g_res[0].cell[v][d][s].err[0] ? g_res[0].cell[v][d][s].err : g_res[1].cell[v][d][s].err;
}

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

int main(int argc, char **argv) {
  const char *json = NULL, *commit = "unknown", *date = "unknown", *driver = "unknown";
  int nccl_version = 0, failed = 0;
  double start = now_s();
  FILE *jf = NULL;

  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--json") == 0 && i + 1 < argc)
      json = argv[++i];
    else if (strcmp(argv[i], "--commit") == 0 && i + 1 < argc)
      commit = argv[++i];
    else if (strcmp(argv[i], "--date") == 0 && i + 1 < argc)
      date = argv[++i];
    else if (strcmp(argv[i], "--driver") == 0 && i + 1 < argc)
      driver = argv[++i];
    else {
      fprintf(stderr, "usage: %s [--json PATH] [--commit C] [--date D] [--driver V]\n", argv[0]);
      return 2;
    }
  }
  setvbuf(stdout, NULL, _IOLBF, 0);
  if (mc_test_gpu_count() < NRANKS) {
    printf("SKIP bench: needs %d CUDA devices, this machine has %d\n", NRANKS, mc_test_gpu_count());
    return 0;
  }
  (void)ncclGetVersion(&nccl_version); /* no CUDA initialisation in this parent */
  g_res = mmap(NULL, sizeof(rank_res_t) * NRANKS, PROT_READ | PROT_WRITE,
               MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (g_res == MAP_FAILED) {
    perror("mmap");
    return 1;
  }
  memset(g_res, 0, sizeof(rank_res_t) * NRANKS);
  if (shim_launch(NRANKS, rank_main, NULL, 170) != 0 || !g_res[0].done || !g_res[1].done) {
    printf("bench: a rank failed: rank 0: %s; rank 1: %s\n",
           g_res[0].err[0] ? g_res[0].err : (g_res[0].done ? "ok" : "did not finish"),
           g_res[1].err[0] ? g_res[1].err : (g_res[1].done ? "ok" : "did not finish"));
    failed = 1;
  }

  printf("\n# all-reduce, %d ranks on %s (driver %s, CUDA runtime %d, NCCL %d.%d.%d), commit %s\n",
         NRANKS, g_res[0].device, driver, g_res[0].cuda_runtime, nccl_version / 10000,
         (nccl_version / 100) % 100, nccl_version % 100, commit);
  printf(
      "# graph of %d back-to-back all-reduces, %d timed replays, median us per op (slower "
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
                 k_dtname[d], k_vname[v], us, algbw, algbw * 2.0 * (NRANKS - 1) / NRANKS, wrong);
        }
      }
    }
  }

  printf("\n# bf16 summary, us per op: custom-auto against the targets (and the best custom)\n");
  printf("#%11s %10s %10s %10s %10s %10s %10s %10s %10s %8s\n", "size(B)", "auto", "no-pdl", "ll",
         "oneshot", "twoshot", "moe-nccl", "nccl", "target", "met");
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
      printf(" %10.1f %8s\n", k_target[s], a < 0 ? "?" : a <= k_target[s] ? "yes" : "NO");
    else
      printf(" %10s %8s\n", "-", "");
  }

  for (int d = 0; d < NDTYPES; d++) {
    printf("\n# suggested policy (%s, %d ranks): fastest correct algorithm per size\n", k_dtname[d],
           NRANKS);
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
    for (int k = 0; k < 3; k++)
      printf("   %-22s rank 0 %6.2f us, rank 1 %6.2f us\n", names[k], g_res[0].host_us[k],
             g_res[1].host_us[k]);
    printf("   moecomm nccl path overhead over direct NCCL: %.2f us per call (rank 0)\n",
           g_res[0].host_us[0] - g_res[0].host_us[2]);
  }
  printf(
      "\n# custom path device memory per rank (TP, defaults): group_stats %.1f MiB, "
      "cudaMemGetInfo delta %.1f MiB\n",
      (double)g_res[0].custom_stats_bytes / (1024.0 * 1024.0), g_res[0].custom_meminfo_mib);

  if (json != NULL && (jf = fopen(json, "w")) == NULL) perror(json);
  if (jf != NULL) {
    int first = 1;
    fprintf(jf, "{\n  \"bench\": \"allreduce\",\n  \"device\": ");
    json_str(jf, g_res[0].device);
    fprintf(jf, ",\n  \"driver\": ");
    json_str(jf, driver);
    fprintf(jf, ",\n  \"cuda_driver_api\": %d,\n  \"cuda_runtime\": %d,\n", g_res[0].cuda_driver,
            g_res[0].cuda_runtime);
    fprintf(jf, "  \"nccl_version\": \"%d.%d.%d\",\n  \"commit\": ", nccl_version / 10000,
            (nccl_version / 100) % 100, nccl_version % 100);
    json_str(jf, commit);
    fprintf(jf, ",\n  \"date\": ");
    json_str(jf, date);
    fprintf(jf,
            ",\n  \"ranks\": %d,\n  \"method\": {\"graph_ops\": %d, \"replays\": %d, "
            "\"statistic\": \"median per op, slower rank\"},\n",
            NRANKS, GRAPH_OPS, REPLAYS);
    fprintf(jf, "  \"results\": [");
    for (int d = 0; d < NDTYPES; d++)
      for (int s = 0; s < NSIZES; s++)
        for (int v = 0; v < NVARIANTS; v++) {
          double us = cell_us(v, d, s);
          fprintf(jf, "%s\n    {\"dtype\": \"%s\", \"bytes\": %zu, \"count\": %zu, \"variant\": ",
                  first ? "" : ",", k_dtname[d], size_bytes(s), size_bytes(s) / esize(d));
          json_str(jf, k_vname[v]);
          if (us >= 0)
            fprintf(jf, ", \"us\": %.3f, \"algbw_gbs\": %.3f, \"busbw_gbs\": %.3f, \"wrong\": %ld}",
                    us, (double)size_bytes(s) / (us * 1e3),
                    (double)size_bytes(s) / (us * 1e3) * 2.0 * (NRANKS - 1) / NRANKS,
                    cell_wrong(v, d, s));
          else {
            fprintf(jf, ", \"us\": null, \"note\": ");
            json_str(jf, cell_err(v, d, s));
            fprintf(jf, "}");
          }
          first = 0;
        }
    fprintf(jf, "\n  ],\n  \"targets_bf16_us\": {");
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
            g_res[0].custom_stats_bytes, g_res[0].custom_meminfo_mib, now_s() - start);
    fclose(jf);
    printf("\nwrote %s\n", json);
  }
  printf("bench: %.1f s%s\n", now_s() - start, failed ? ", FAILED (see above)" : "");
  return failed;
}
