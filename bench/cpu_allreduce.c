/* cpu_allreduce.c - moecomm's side of `make bench-cpu`: shm all-reduce on CPU ranks of this host.
 *
 * Loads the plugin the way an engine does (host_shim/loader.h; MOECOMM_PLUGIN, default
 * BUILD/libmoecomm.so next to this binary's directory), starts --ranks processes with
 * host_shim/launch.h and times out-of-place all-reduce (sum) of every size from --min to --max
 * bytes in steps of x4, for each dtype.  The method is the one bench/mpi/mpi_allreduce.c uses for
 * Open MPI: a batch of back-to-back calls between two barriers, its time divided by the calls,
 * the slowest rank's value per batch, the median over --batches batches.  One extra call per size
 * on known inputs is checked exactly (#wrong).
 *
 * Rank 0 prints one line per measurement:
 *   ROW moecomm <dtype> <ranks> <bytes> <count> <median us> <min us> <#wrong> */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../abi/moecomm.h"
#include "../host_shim/launch.h"
#include "../host_shim/loader.h"

typedef struct bench_opts {
  int ranks;
  size_t min_bytes, max_bytes;
  int batches;
  int dtypes[2];
  int num_dtypes;
} bench_opts_t;

static const moecomm_api_t *g_api;

static double now_us(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec * 1e-3;
}

static uint16_t f2bf(float f)
{
  uint32_t u;
  memcpy(&u, &f, 4);
  return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

static float bf2f(uint16_t b)
{
  uint32_t u = (uint32_t)b << 16;
  float f;
  memcpy(&f, &u, 4);
  return f;
}

/* Calls per batch: about 32 MiB of data per batch, at least 1, at most 1000. */
static int batch_calls(size_t bytes)
{
  size_t k = ((size_t)32 << 20) / bytes;
  return k < 1 ? 1 : k > 1000 ? 1000 : (int)k;
}

static int cmp_double(const void *a, const void *b)
{
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

/* Input element i of rank r: a small integer, so sums over the ranks are exact in bf16 too. */
static int input_value(int r, size_t i)
{
  return (int)((i * 7u + (size_t)r * 3u) % 9u) - 4;
}

static void fill(void *buf, size_t count, moecomm_dtype_t dt, int rank)
{
  for (size_t i = 0; i < count; i++) {
    float v = (float)input_value(rank, i);
    if (dt == MOECOMM_FLOAT32)
      ((float *)buf)[i] = v;
    else
      ((uint16_t *)buf)[i] = f2bf(v);
  }
}

static size_t count_wrong(const void *buf, size_t count, moecomm_dtype_t dt, int world)
{
  size_t wrong = 0;
  for (size_t i = 0; i < count; i++) {
    int want = 0;
    for (int r = 0; r < world; r++) want += input_value(r, i);
    float got = dt == MOECOMM_FLOAT32 ? ((const float *)buf)[i] : bf2f(((const uint16_t *)buf)[i]);
    wrong += got != (float)want;
  }
  return wrong;
}

/* One size, one dtype; returns 0 on success. */
static int bench_one(moecomm_context_t *ctx, moecomm_group_t *g, const bench_opts_t *o,
                     moecomm_dtype_t dt, size_t bytes, int rank, int world)
{
  const size_t es = dt == MOECOMM_FLOAT32 ? 4 : 2;
  const size_t count = bytes / es;
  const int calls = batch_calls(bytes);
  void *send = malloc(bytes), *recv = malloc(bytes);
  double *per_call = calloc((size_t)o->batches, sizeof(double));
  float one = 1.0f, t;
  int rc = 1;
  moecomm_result_t r;
  if (send == NULL || recv == NULL || per_call == NULL) {
    fprintf(stderr, "rank %d: out of memory for %zu bytes\n", rank, bytes);
    goto done;
  }
  fill(send, count, dt, rank);
  memset(recv, 0, bytes);
  for (int w = 0; w < 2; w++) { /* warm-up: first touch of the buffers, comm creation */
    r = g_api->all_reduce(g, send, recv, count, dt, MOECOMM_SUM, NULL);
    if (r != MOECOMM_SUCCESS) goto fail;
  }
  for (int b = 0; b < o->batches; b++) {
    r = g_api->all_reduce(g, &one, &t, 1, MOECOMM_FLOAT32, MOECOMM_SUM, NULL); /* barrier */
    if (r != MOECOMM_SUCCESS) goto fail;
    double t0 = now_us();
    for (int k = 0; k < calls; k++) {
      r = g_api->all_reduce(g, send, recv, count, dt, MOECOMM_SUM, NULL);
      if (r != MOECOMM_SUCCESS) goto fail;
    }
    float mine = (float)((now_us() - t0) / calls), slowest;
    r = g_api->all_reduce(g, &mine, &slowest, 1, MOECOMM_FLOAT32, MOECOMM_MAX, NULL);
    if (r != MOECOMM_SUCCESS) goto fail;
    per_call[b] = slowest;
  }
  memset(recv, 0x7f, bytes);
  r = g_api->all_reduce(g, send, recv, count, dt, MOECOMM_SUM, NULL);
  if (r != MOECOMM_SUCCESS) goto fail;
  size_t wrong = count_wrong(recv, count, dt, world);
  qsort(per_call, (size_t)o->batches, sizeof(double), cmp_double);
  if (rank == 0) {
    printf("ROW moecomm %s %d %zu %zu %.2f %.2f %zu\n", dt == MOECOMM_FLOAT32 ? "fp32" : "bf16",
           world, bytes, count, per_call[o->batches / 2], per_call[0], wrong);
    fflush(stdout);
  }
  rc = wrong != 0;
  goto done;
fail:
  fprintf(stderr, "rank %d: all_reduce of %zu bytes failed: %s: %s\n", rank, bytes,
          g_api->result_string(r), g_api->last_error(ctx));
done:
  free(send);
  free(recv);
  free(per_call);
  return rc;
}

static int rank_main(int rank, int world, void *arg)
{
  const bench_opts_t *o = arg;
  moecomm_topology_t topo;
  memset(&topo, 0, sizeof topo);
  topo.struct_size = sizeof topo;
  topo.world_size = world;
  topo.rank = rank;
  topo.tp = world;
  moecomm_context_params_t p;
  memset(&p, 0, sizeof p);
  p.struct_size = sizeof p;
  p.topology = &topo;
  p.host_allgather = shim_host_allgather;
  p.host_user = shim_launch_hub();
  p.device = MOECOMM_DEVICE_CPU;
  moecomm_context_t *ctx = NULL;
  moecomm_group_t *g = NULL;
  moecomm_result_t r = g_api->context_create(&p, &ctx);
  if (r != MOECOMM_SUCCESS) {
    fprintf(stderr, "rank %d: context_create: %s: %s\n", rank, g_api->result_string(r),
            g_api->last_error(NULL));
    return 1;
  }
  int failed = 0;
  r = g_api->group_get(ctx, MOECOMM_GROUP_WORLD, &g);
  if (r != MOECOMM_SUCCESS) {
    fprintf(stderr, "rank %d: group_get: %s\n", rank, g_api->last_error(ctx));
    failed = 1;
  }
  for (int d = 0; d < o->num_dtypes && !failed; d++)
    for (size_t bytes = o->min_bytes; bytes <= o->max_bytes && !failed; bytes *= 4)
      failed = bench_one(ctx, g, o, (moecomm_dtype_t)o->dtypes[d], bytes, rank, world);
  g_api->context_destroy(ctx);
  return failed;
}

static size_t parse_size(const char *s)
{
  char *end = NULL;
  unsigned long long v = strtoull(s, &end, 10);
  if (end != NULL && (*end == 'k' || *end == 'K')) v <<= 10;
  if (end != NULL && (*end == 'm' || *end == 'M')) v <<= 20;
  return (size_t)v;
}

static void usage(void)
{
  fprintf(stderr,
          "usage: cpu_allreduce [--ranks N] [--min BYTES] [--max BYTES] [--batches N]\n"
          "                     [--dtypes fp32,bf16]   (sizes accept K and M suffixes)\n");
}

/* MOECOMM_PLUGIN unset: the plugin of this build, BUILD/libmoecomm.so (we are BUILD/bench/x). */
static void default_plugin(void)
{
  char exe[PATH_MAX], path[PATH_MAX + 32];
  if (getenv("MOECOMM_PLUGIN") != NULL) return;
  ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
  if (n <= 0) return;
  exe[n] = '\0';
  for (int up = 0; up < 2; up++) {
    char *slash = strrchr(exe, '/');
    if (slash == NULL) return;
    *slash = '\0';
  }
  snprintf(path, sizeof path, "%s/libmoecomm.so", exe);
  setenv("MOECOMM_PLUGIN", path, 1);
}

int main(int argc, char **argv)
{
  bench_opts_t o = {2, 4096, (size_t)64 << 20, 9, {MOECOMM_FLOAT32, MOECOMM_BFLOAT16}, 2};
  for (int i = 1; i < argc; i++) {
    const char *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (v == NULL) {
      usage();
      return 2;
    }
    if (strcmp(argv[i], "--ranks") == 0) {
      o.ranks = atoi(v);
    } else if (strcmp(argv[i], "--min") == 0) {
      o.min_bytes = parse_size(v);
    } else if (strcmp(argv[i], "--max") == 0) {
      o.max_bytes = parse_size(v);
    } else if (strcmp(argv[i], "--batches") == 0) {
      o.batches = atoi(v);
    } else if (strcmp(argv[i], "--dtypes") == 0) {
      o.num_dtypes = 0;
      if (strstr(v, "fp32") != NULL) o.dtypes[o.num_dtypes++] = MOECOMM_FLOAT32;
      if (strstr(v, "bf16") != NULL) o.dtypes[o.num_dtypes++] = MOECOMM_BFLOAT16;
    } else {
      usage();
      return 2;
    }
    i++;
  }
  if (o.ranks < 2 || o.min_bytes < 4 || o.max_bytes < o.min_bytes || o.batches < 1 ||
      o.num_dtypes == 0) {
    usage();
    return 2;
  }
  default_plugin();
  shim_plugin_t plugin;
  char err[1024];
  shim_load_result_t lr = shim_plugin_load(MOECOMM_ABI_VERSION_MAKE(1, 0), MOECOMM_ABI_VERSION,
                                           &plugin, err, sizeof err);
  if (lr != SHIM_LOAD_OK) {
    fprintf(stderr, "cpu_allreduce: cannot load the plugin (MOECOMM_PLUGIN=%s): %s\n",
            getenv("MOECOMM_PLUGIN"), err);
    return 1;
  }
  g_api = plugin.api;
  fflush(stdout);
  int bad = shim_launch(o.ranks, rank_main, &o, 1800);
  shim_plugin_unload(&plugin);
  return bad != 0;
}
