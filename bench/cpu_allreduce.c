/* SPDX-License-Identifier: Apache-2.0 */
/* cpu_allreduce.c - moecomm's side of `make bench-cpu`: shm all-reduce on CPU ranks of this host.
 *
 * Loads the plugin the way an engine does (mc_bench_plugin: MOECOMM_PLUGIN, default
 * BUILD/libmoecomm.so next to this binary's directory), starts --ranks processes with
 * host_shim/lib/launch.h and times out-of-place all-reduce (sum) of every size from --min to --max
 * bytes in steps of x4, for each dtype.  The method is the one bench/mpi/mpi_allreduce.c uses for
 * Open MPI: a batch of back-to-back calls between two barriers, its time divided by the calls,
 * the slowest rank's value per batch, the median over --batches batches.  One extra call per size
 * on known inputs is checked exactly (#wrong).  Inputs, batch sizes and the check are shared with
 * it (bench/common/bench.h).
 *
 * Rank 0 prints one line per measurement:
 *   ROW moecomm <dtype> <ranks> <bytes> <count> <median us> <min us> <#wrong> */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../abi/moecomm.h"
#include "../host_shim/lib/launch.h"
#include "common/bench_plugin.h"
#include "common/bench.h"

typedef struct bench_opts {
  int ranks;
  size_t min_bytes, max_bytes;
  int batches;
  int dtypes[2];
  int num_dtypes;
} bench_opts_t;

static const moecomm_api_t *g_api;

/* One size, one dtype; returns 0 on success. */
static int bench_one(moecomm_context_t *ctx, moecomm_group_t *g, const bench_opts_t *o,
                     moecomm_dtype_t dt, size_t bytes, int rank, int world) {
  const size_t es = dt == MOECOMM_FLOAT32 ? 4 : 2;
  const size_t count = bytes / es;
  const int calls = mc_bench_batch_calls(bytes);
  void *send = malloc(bytes), *recv = malloc(bytes);
  double *per_call = calloc((size_t)o->batches, sizeof(double));
  float one = 1.0f, t;
  int rc = 1;
  moecomm_result_t r;
  if (send == NULL || recv == NULL || per_call == NULL) {
    fprintf(stderr, "rank %d: out of memory for %zu bytes\n", rank, bytes);
    goto done;
  }
  mc_bench_cpu_fill(send, count, dt == MOECOMM_FLOAT32, rank);
  memset(recv, 0, bytes);
  for (int w = 0; w < 2; w++) { /* warm-up: first touch of the buffers, comm creation */
    r = g_api->all_reduce(g, send, recv, count, dt, MOECOMM_SUM, NULL);
    if (r != MOECOMM_SUCCESS) goto fail;
  }
  for (int b = 0; b < o->batches; b++) {
    r = g_api->all_reduce(g, &one, &t, 1, MOECOMM_FLOAT32, MOECOMM_SUM, NULL); /* barrier */
    if (r != MOECOMM_SUCCESS) goto fail;
    double t0 = mc_bench_now_s();
    for (int k = 0; k < calls; k++) {
      r = g_api->all_reduce(g, send, recv, count, dt, MOECOMM_SUM, NULL);
      if (r != MOECOMM_SUCCESS) goto fail;
    }
    float mine = (float)(1e6 * (mc_bench_now_s() - t0) / calls), slowest;
    r = g_api->all_reduce(g, &mine, &slowest, 1, MOECOMM_FLOAT32, MOECOMM_MAX, NULL);
    if (r != MOECOMM_SUCCESS) goto fail;
    per_call[b] = slowest;
  }
  memset(recv, 0x7f, bytes);
  r = g_api->all_reduce(g, send, recv, count, dt, MOECOMM_SUM, NULL);
  if (r != MOECOMM_SUCCESS) goto fail;
  size_t wrong = mc_bench_cpu_wrong(recv, count, dt == MOECOMM_FLOAT32, world);
  double median = mc_bench_median(per_call, o->batches);
  if (rank == 0) {
    printf("ROW moecomm %s %d %zu %zu %.2f %.2f %zu\n", dt == MOECOMM_FLOAT32 ? "fp32" : "bf16",
           world, bytes, count, median, per_call[0], wrong);
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

static int rank_main(int rank, int world, void *arg) {
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

static void usage(void) {
  fprintf(stderr,
          "usage: cpu_allreduce [--ranks N] [--min BYTES] [--max BYTES] [--batches N]\n"
          "                     [--dtypes fp32,bf16]   (sizes accept K and M suffixes)\n");
}

int main(int argc, char **argv) {
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
      o.min_bytes = mc_bench_parse_size(v);
    } else if (strcmp(argv[i], "--max") == 0) {
      o.max_bytes = mc_bench_parse_size(v);
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
  g_api = mc_bench_plugin(); /* exits with a line naming MOECOMM_PLUGIN when it cannot */
  fflush(stdout);
  return shim_launch(o.ranks, rank_main, &o, 1800) != 0;
}
