/* SPDX-License-Identifier: Apache-2.0 */
/* nccl_multihost.c - two "hosts" simulated on one 2-GPU machine: each rank has its own host id
 * (MOECOMM_HOST_ID=hostA / hostB), bootstraps through MOECOMM_STORE=tcp://127.0.0.1:PORT (no host
 * all-gather), and NCCL talks over sockets (P2P and shared memory off, set in each rank before
 * anything initialises NCCL).  Every collective is checked against a float64 reference. */
#include <cuda_runtime_api.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../host_shim/lib/data.h"
#include "../common/harness.h"

#define NRANKS 2
#define MAXC ((size_t)1 << 20)

static int g_port;

typedef struct st {
  const moecomm_api_t *api;
  moecomm_context_t *ctx;
  moecomm_group_t *g;
  cudaStream_t s;
  char *dsend, *drecv;
  void *in[NRANKS], *out;
  int rank;
} st_t;

/* kind: 0 all_reduce, 1 all_gather, 2 reduce_scatter, 3 broadcast (root 1). */
static int one(st_t *t, int kind, moecomm_dtype_t dt, moecomm_redop_t op, size_t count,
               uint64_t seed) {
  const moecomm_api_t *api = t->api;
  size_t esz = shim_dtype_size(dt), in_n = kind == 2 ? NRANKS * count : count;
  size_t out_n = kind == 1 ? NRANKS * count : count, bad = 0;
  moecomm_result_t rc;
  for (int r = 0; r < NRANKS; r++) mc_test_fill(t->in[r], in_n, dt, seed * 4 + r);
  if (!MC_CUDA_OK(cudaMemsetAsync(t->drecv, 0xff, out_n * esz, t->s)) ||
      !MC_CUDA_OK(
          cudaMemcpyAsync(t->dsend, t->in[t->rank], in_n * esz, cudaMemcpyHostToDevice, t->s)))
    return 0;
  switch (kind) {
    case 0: rc = api->all_reduce(t->g, t->dsend, t->drecv, count, dt, op, t->s); break;
    case 1: rc = api->all_gather(t->g, t->dsend, t->drecv, count, dt, t->s); break;
    case 2: rc = api->reduce_scatter(t->g, t->dsend, t->drecv, count, dt, op, t->s); break;
    default: rc = api->broadcast(t->g, t->dsend, t->drecv, count, dt, 1, t->s); break;
  }
  if (!MC_CHECK_RC(api, t->ctx, rc, MOECOMM_SUCCESS) || !MC_CUDA_OK(cudaStreamSynchronize(t->s)) ||
      !MC_CUDA_OK(cudaMemcpy(t->out, t->drecv, out_n * esz, cudaMemcpyDeviceToHost)))
    return 0;
  for (size_t i = 0; i < out_n; i++) {
    double e;
    if (kind == 1) {
      e = mc_test_get(t->in[i / count], i % count, dt);
    } else if (kind == 3) {
      e = mc_test_get(t->in[1], i, dt);
    } else {
      size_t at = kind == 2 ? (size_t)t->rank * count + i : i;
      double a = mc_test_get(t->in[0], at, dt), b = mc_test_get(t->in[1], at, dt);
      e = op == MOECOMM_MAX ? (a > b ? a : b) : op == MOECOMM_MIN ? (a < b ? a : b) : a + b;
    }
    bad += mc_test_get(t->out, i, dt) != e;
  }
  MC_CHECK(bad == 0, "over sockets: kind %d dtype %d op %d count %zu: %zu of %zu wrong", kind,
           (int)dt, (int)op, count, bad, out_n);
  return 1;
}

static int rank_main(int rank, int world, void *arg) {
  static const size_t counts[] = {7, 4095, MAXC};
  static const moecomm_dtype_t dts[] = {MOECOMM_FLOAT32, MOECOMM_BFLOAT16, MOECOMM_FLOAT16,
                                        MOECOMM_INT32};
  moecomm_topology_t topo = mc_test_topo(world, rank, world);
  moecomm_context_params_t params = mc_test_ctx_params(&topo, rank);
  moecomm_context_info_t info;
  moecomm_group_stats_t gs;
  char store[64];
  st_t t;
  (void)arg;
  memset(&t, 0, sizeof(t));
  t.rank = rank;
  /* Before anything can initialise NCCL in this process. */
  setenv("MOECOMM_HOST_ID", rank == 0 ? "hostA" : "hostB", 1);
  snprintf(store, sizeof(store), "tcp://127.0.0.1:%d", g_port);
  setenv("MOECOMM_STORE", store, 1);
  setenv("MOECOMM_BACKEND", "nccl", 1);
  setenv("NCCL_P2P_DISABLE", "1", 1);
  setenv("NCCL_SHM_DISABLE", "1", 1);
  setenv("NCCL_NET", "Socket", 1);
  setenv("NCCL_IB_DISABLE", "1", 1);
  setenv("NCCL_SOCKET_IFNAME", "lo", 1);
  setenv("NCCL_NVLS_ENABLE", "0", 1);
  params.host_allgather = NULL;
  params.host_user = NULL;
  t.api = mc_test_plugin();
  if (!MC_CUDA_OK(cudaSetDevice(rank)) ||
      !MC_CUDA_OK(cudaStreamCreateWithFlags(&t.s, cudaStreamNonBlocking)) ||
      !MC_CUDA_OK(cudaMalloc((void **)&t.dsend, NRANKS * MAXC * 4)) ||
      !MC_CUDA_OK(cudaMalloc((void **)&t.drecv, NRANKS * MAXC * 4)))
    return 1;
  for (int r = 0; r < NRANKS; r++) t.in[r] = malloc(NRANKS * MAXC * 4);
  t.out = malloc(NRANKS * MAXC * 4);
  if (!MC_CHECK(t.in[0] && t.in[1] && t.out, "host malloc")) return 1;
  if (!MC_CHECK_RC(t.api, NULL, t.api->context_create(&params, &t.ctx), MOECOMM_SUCCESS)) return 1;
  memset(&info, 0, sizeof(info));
  info.struct_size = sizeof(info);
  if (MC_CHECK_RC(t.api, t.ctx, t.api->context_info(t.ctx, &info), MOECOMM_SUCCESS))
    MC_CHECK(
        info.num_hosts == 2 && info.local_size == 1 && info.local_rank == 0 && info.device == rank,
        "num_hosts %d local_size %d local_rank %d device %d", (int)info.num_hosts,
        (int)info.local_size, (int)info.local_rank, (int)info.device);
  if (!MC_CHECK_RC(t.api, t.ctx, t.api->group_get(t.ctx, MOECOMM_GROUP_TP, &t.g), MOECOMM_SUCCESS))
    goto out;
  for (size_t c = 0; c < sizeof(counts) / sizeof(counts[0]); c++)
    for (size_t d = 0; d < sizeof(dts) / sizeof(dts[0]); d++) {
      uint64_t seed = c * 100 + d * 10;
      if (!one(&t, 0, dts[d], MOECOMM_SUM, counts[c], seed + 1) ||
          !one(&t, 0, dts[d], MOECOMM_MAX, counts[c], seed + 2) ||
          !one(&t, 1, dts[d], MOECOMM_SUM, counts[c], seed + 3) ||
          !one(&t, 2, dts[d], MOECOMM_MIN, counts[c], seed + 4) ||
          !one(&t, 3, dts[d], MOECOMM_SUM, counts[c], seed + 5))
        goto out;
    }
  memset(&gs, 0, sizeof(gs));
  gs.struct_size = sizeof(gs);
  if (MC_CHECK_RC(t.api, t.ctx, t.api->group_stats(t.g, &gs), MOECOMM_SUCCESS))
    MC_CHECK(gs.created == 1 && strcmp(gs.backend_name, "nccl") == 0,
             "TP over sockets: created %d, backend %s", (int)gs.created, gs.backend_name);
out:
  MC_CHECK_RC(t.api, t.ctx, t.api->context_destroy(t.ctx), MOECOMM_SUCCESS);
  for (int r = 0; r < NRANKS; r++) free(t.in[r]);
  free(t.out);
  cudaFree(t.dsend);
  cudaFree(t.drecv);
  cudaStreamDestroy(t.s);
  return 0;
}

int main(int argc, char **argv) {
  mc_test_init("nccl_multihost", argc, argv);
  if (!mc_test_need_gpus(NRANKS)) return mc_test_finish();
  g_port = mc_test_free_port();
  if (!MC_CHECK(g_port > 0, "no free TCP port on 127.0.0.1")) return mc_test_finish();
  mc_test_ranks(NRANKS, rank_main, NULL, 180);
  return mc_test_finish();
}
