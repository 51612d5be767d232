/* SPDX-License-Identifier: Apache-2.0 */
/* nccl_lazy.c - NCCL communicators are created by the first collective, shared by groups with the
 * same rank list, and their memory is reported in group_stats (2 ranks on 2 GPUs).
 *
 * Part 1 (tp=2, ep=2, shared comms): no group holds anything after context_create; an all-reduce
 * on MOE_EP creates one communicator that TP, WORLD and ATTN_TP (same ranks) report with the same
 * comm_id and bytes; cudaMemGetInfo agrees with the reported bytes; a later collective on TP
 * creates nothing new; size-1 groups never create anything.
 * Part 2 (MOECOMM_SHARE_COMMS=0): every group has its own communicator; a group that never
 * communicates keeps created 0 and 0 bytes; the MoE-only communicator (lean config) holds no
 * more than the TP one. */
#include <cuda_runtime_api.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../common/harness.h"

#define NRANKS 2
#define COUNT 65536
#define MIB (1024.0 * 1024.0)

typedef struct bufs {
  float *d;         /* device, COUNT floats */
  float *h[NRANKS]; /* every rank's input */
  float *out;       /* result copied back */
} bufs_t;

static moecomm_group_stats_t stats_of(const moecomm_api_t *api, moecomm_context_t *ctx, int kind) {
  moecomm_group_t *g = NULL;
  moecomm_group_stats_t st;
  memset(&st, 0, sizeof(st));
  st.struct_size = sizeof(st);
  if (!MC_CHECK_RC(api, ctx, api->group_get(ctx, (moecomm_group_kind_t)kind, &g),
                   MOECOMM_SUCCESS) ||
      !MC_CHECK_RC(api, ctx, api->group_stats(g, &st), MOECOMM_SUCCESS))
    st.size = -1;
  return st;
}

static size_t free_bytes(void) {
  size_t f = 0, t = 0;
  MC_CUDA_OK(cudaMemGetInfo(&f, &t));
  return f;
}

/* In-place sum all-reduce of fresh data on `kind`; checks the result.  0: stop the rank. */
static int reduce_on(const moecomm_api_t *api, moecomm_context_t *ctx, int kind, int rank,
                     bufs_t *b, uint64_t seed) {
  moecomm_group_t *g = NULL;
  moecomm_group_stats_t st = stats_of(api, ctx, kind);
  size_t bad = 0;
  if (st.size < 1) return 0;
  /* Each member's data derives from the seed and its group index: every rank can compute all. */
  for (int i = 0; i < st.size; i++) mc_test_fill(b->h[i], COUNT, MOECOMM_FLOAT32, seed * 16 + i);
  if (!MC_CUDA_OK(cudaMemset(b->d, 0xff, COUNT * sizeof(float))) ||
      !MC_CUDA_OK(cudaMemcpy(b->d, b->h[st.rank], COUNT * sizeof(float), cudaMemcpyHostToDevice)))
    return 0;
  if (!MC_CHECK_RC(api, ctx, api->group_get(ctx, (moecomm_group_kind_t)kind, &g),
                   MOECOMM_SUCCESS) ||
      !MC_CHECK_RC(api, ctx,
                   api->all_reduce(g, b->d, b->d, COUNT, MOECOMM_FLOAT32, MOECOMM_SUM, NULL),
                   MOECOMM_SUCCESS))
    return 0;
  if (!MC_CUDA_OK(cudaDeviceSynchronize()) ||
      !MC_CUDA_OK(cudaMemcpy(b->out, b->d, COUNT * sizeof(float), cudaMemcpyDeviceToHost)))
    return 0;
  for (size_t i = 0; i < COUNT; i++) {
    double e = 0;
    for (int m = 0; m < st.size; m++) e += b->h[m][i];
    bad += (double)b->out[i] != e;
  }
  MC_CHECK(bad == 0, "rank %d: all_reduce on %s: %zu of %d elements wrong", rank, st.kind_name, bad,
           COUNT);
  return 1;
}

static int part_shared(const moecomm_api_t *api, int rank, bufs_t *b) {
  moecomm_topology_t topo = mc_test_topo(NRANKS, rank, NRANKS);
  moecomm_context_params_t params = mc_test_ctx_params(&topo, rank);
  moecomm_context_t *ctx = NULL;
  moecomm_group_stats_t ep, st;
  size_t free0, free1, free2;
  long long delta;
  int ok = 0;
  topo.ep = 2;
  unsetenv("MOECOMM_SHARE_COMMS");
  if (!MC_CHECK_RC(api, NULL, api->context_create(&params, &ctx), MOECOMM_SUCCESS)) return 0;
  for (int k = 0; k < 9; k++) {
    st = stats_of(api, ctx, k);
    MC_CHECK(st.created == 0 && st.device_bytes == 0 && st.host_bytes == 0,
             "%s before any collective: created %d, %llu device bytes, %llu host bytes",
             st.kind_name, (int)st.created, (unsigned long long)st.device_bytes,
             (unsigned long long)st.host_bytes);
  }
  free0 = free_bytes();
  if (!reduce_on(api, ctx, MOECOMM_GROUP_MOE_EP, rank, b, 1)) goto out;
  free1 = free_bytes();
  ep = stats_of(api, ctx, MOECOMM_GROUP_MOE_EP);
  MC_CHECK(ep.size == 2 && ep.created == 1 && ep.device_bytes > (1u << 20),
           "MOE_EP after its first all-reduce: size %d created %d, %llu device bytes", (int)ep.size,
           (int)ep.created, (unsigned long long)ep.device_bytes);
  MC_CHECK(strcmp(ep.backend_name, "nccl") == 0, "MOE_EP backend %s", ep.backend_name);
  delta = (long long)free0 - (long long)free1;
  /* The plugin measured the same thing from inside: allow the driver's 2 MiB pages and small
     CUDA objects either way. */
  MC_CHECK(llabs(delta - (long long)ep.device_bytes) <= (16ll << 20) + delta / 10,
           "cudaMemGetInfo dropped by %.1f MiB; the communicator reports %.1f MiB", delta / MIB,
           ep.device_bytes / MIB);
  for (int k = 0; k < 9; k++) {
    st = stats_of(api, ctx, k);
    if (st.size == 2) {
      MC_CHECK(st.comm_id == ep.comm_id && st.created == 1 && st.device_bytes == ep.device_bytes,
               "%s shares MOE_EP's rank list: comm_id %d (MOE_EP %d), created %d, %llu bytes "
               "(MOE_EP %llu)",
               st.kind_name, (int)st.comm_id, (int)ep.comm_id, (int)st.created,
               (unsigned long long)st.device_bytes, (unsigned long long)ep.device_bytes);
    } else {
      MC_CHECK(st.size == 1 && st.created == 0 && st.device_bytes == 0,
               "%s (size %d) never communicates through a backend: created %d, %llu bytes",
               st.kind_name, (int)st.size, (int)st.created, (unsigned long long)st.device_bytes);
    }
  }
  /* Same ranks: no second communicator, no new memory. */
  if (!reduce_on(api, ctx, MOECOMM_GROUP_TP, rank, b, 2)) goto out;
  if (!reduce_on(api, ctx, MOECOMM_GROUP_WORLD, rank, b, 3)) goto out;
  if (!reduce_on(api, ctx, MOECOMM_GROUP_MOE_TP, rank, b, 4)) goto out; /* size 1: a copy */
  free2 = free_bytes();
  st = stats_of(api, ctx, MOECOMM_GROUP_TP);
  MC_CHECK(st.device_bytes == ep.device_bytes && st.ops == 1,
           "TP after its all-reduce: %llu bytes (was %llu), ops %llu",
           (unsigned long long)st.device_bytes, (unsigned long long)ep.device_bytes,
           (unsigned long long)st.ops);
  MC_CHECK((long long)free1 - (long long)free2 <= (4ll << 20),
           "collectives on groups sharing the communicator took %.1f MiB more",
           ((long long)free1 - (long long)free2) / MIB);
  st = stats_of(api, ctx, MOECOMM_GROUP_MOE_TP);
  MC_CHECK(st.created == 0 && st.device_bytes == 0 && st.ops == 1,
           "MOE_TP (size 1) after a collective: created %d, %llu bytes, ops %llu", (int)st.created,
           (unsigned long long)st.device_bytes, (unsigned long long)st.ops);
  printf(
      "[rank %d] shared communicator: %.1f MiB device (cudaMemGetInfo %.1f MiB), %.1f MiB host\n",
      rank, ep.device_bytes / MIB, delta / MIB, ep.host_bytes / MIB);
  ok = 1;
out:
  MC_CHECK_RC(api, ctx, api->context_destroy(ctx), MOECOMM_SUCCESS);
  return ok;
}

static int part_unshared(const moecomm_api_t *api, int rank, bufs_t *b) {
  moecomm_topology_t topo = mc_test_topo(NRANKS, rank, NRANKS);
  moecomm_context_params_t params = mc_test_ctx_params(&topo, rank);
  moecomm_context_t *ctx = NULL;
  moecomm_group_stats_t tp, ep, world;
  int ok = 0;
  topo.ep = 2;
  setenv("MOECOMM_SHARE_COMMS", "0", 1);
  if (!MC_CHECK_RC(api, NULL, api->context_create(&params, &ctx), MOECOMM_SUCCESS)) return 0;
  unsetenv("MOECOMM_SHARE_COMMS");
  tp = stats_of(api, ctx, MOECOMM_GROUP_TP);
  ep = stats_of(api, ctx, MOECOMM_GROUP_MOE_EP);
  MC_CHECK(tp.comm_id != ep.comm_id, "MOECOMM_SHARE_COMMS=0: TP and MOE_EP share comm_id %d",
           (int)tp.comm_id);
  if (!reduce_on(api, ctx, MOECOMM_GROUP_TP, rank, b, 5)) goto out;
  if (!reduce_on(api, ctx, MOECOMM_GROUP_MOE_EP, rank, b, 6)) goto out;
  tp = stats_of(api, ctx, MOECOMM_GROUP_TP);
  ep = stats_of(api, ctx, MOECOMM_GROUP_MOE_EP);
  world = stats_of(api, ctx, MOECOMM_GROUP_WORLD);
  MC_CHECK(tp.created == 1 && ep.created == 1 && tp.device_bytes > 0 && ep.device_bytes > 0,
           "TP created %d (%llu bytes), MOE_EP created %d (%llu bytes)", (int)tp.created,
           (unsigned long long)tp.device_bytes, (int)ep.created,
           (unsigned long long)ep.device_bytes);
  MC_CHECK(world.created == 0 && world.device_bytes == 0 && world.host_bytes == 0,
           "WORLD never communicated: created %d, %llu device bytes, %llu host bytes",
           (int)world.created, (unsigned long long)world.device_bytes,
           (unsigned long long)world.host_bytes);
  /* MOE_EP's communicator serves MoE groups only: the lean config, never more than TP's. */
  MC_CHECK(ep.device_bytes <= tp.device_bytes,
           "MoE-only communicator %.1f MiB > default communicator %.1f MiB", ep.device_bytes / MIB,
           tp.device_bytes / MIB);
  printf("[rank %d] own communicators: TP %.1f MiB (default config), MOE_EP %.1f MiB (lean)\n",
         rank, tp.device_bytes / MIB, ep.device_bytes / MIB);
  ok = 1;
out:
  MC_CHECK_RC(api, ctx, api->context_destroy(ctx), MOECOMM_SUCCESS);
  return ok;
}

static int rank_main(int rank, int world, void *arg) {
  const moecomm_api_t *api;
  bufs_t b;
  (void)world;
  (void)arg;
  setenv("MOECOMM_BACKEND", "nccl", 1);
  setenv("NCCL_NVLS_ENABLE", "0", 1);
  unsetenv("MOECOMM_NCCL_CONFIG");
  api = mc_test_plugin();
  memset(&b, 0, sizeof(b));
  if (!MC_CUDA_OK(cudaSetDevice(rank)) ||
      !MC_CUDA_OK(cudaMalloc((void **)&b.d, COUNT * sizeof(float))))
    return 1;
  for (int r = 0; r < NRANKS; r++) b.h[r] = malloc(COUNT * sizeof(float));
  b.out = malloc(COUNT * sizeof(float));
  if (MC_CHECK(b.h[0] && b.h[1] && b.out, "host malloc") && part_shared(api, rank, &b))
    part_unshared(api, rank, &b);
  for (int r = 0; r < NRANKS; r++) free(b.h[r]);
  free(b.out);
  cudaFree(b.d);
  return 0;
}

int main(int argc, char **argv) {
  mc_test_init("nccl_lazy", argc, argv);
  if (!mc_test_need_gpus(NRANKS)) return mc_test_finish();
  mc_test_ranks(NRANKS, rank_main, NULL, 180);
  return mc_test_finish();
}
