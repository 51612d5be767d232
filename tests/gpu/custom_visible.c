/* SPDX-License-Identifier: Apache-2.0 */
/* custom_visible.c - where the custom all-reduce applies (2 ranks, 2 GPUs).
 *
 * 1. Each rank sees only its own GPU (CUDA_VISIBLE_DEVICES=<rank>, device chosen by
 *    MOECOMM_DEVICE_AUTO), as under many launchers: the peer's GPU cannot be queried for P2P, so
 *    the custom path rests on the IPC mapping and its access check.  TP must still use the custom
 *    backend, and LL, one-shot and two-shot (eager and captured) must give exact results.
 * 2. Each rank claims another host (MOECOMM_HOST_ID): TP must be served by NCCL (no peer memory
 *    across hosts), decided at context creation. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "custom_util.h"

#define NRANKS 2

/* A sum all-reduce of count bf16 reals, eager or captured, checked exactly. */
static int check_ar(const moecomm_api_t *api, moecomm_context_t *ctx, moecomm_group_t *g,
                    cudaStream_t s, int rank, size_t count, int capture, const char *what) {
  void *ins[NRANKS];
  int ok = 0;
  for (int r = 0; r < NRANKS; r++) {
    ins[r] = malloc(count * 2);
    if (ins[r]) cu_fill(ins[r], count, MOECOMM_BFLOAT16, 1, 5000 + count + (uint64_t)r);
  }
  if (MC_CHECK(ins[0] && ins[1], "host buffers"))
    ok = cu_check_sum(api, ctx, g, s, ins, NRANKS, rank, MOECOMM_BFLOAT16, count, capture, what);
  for (int r = 0; r < NRANKS; r++) free(ins[r]);
  return ok;
}

static const char *tp_backend(const moecomm_api_t *api, moecomm_context_t *ctx,
                              moecomm_group_t *g) {
  static moecomm_group_stats_t st;
  memset(&st, 0, sizeof(st));
  st.struct_size = sizeof(st);
  if (!MC_CHECK_RC(api, ctx, api->group_stats(g, &st), MOECOMM_SUCCESS)) return "?";
  return st.backend_name;
}

static int isolated(const moecomm_api_t *api, int rank) {
  static const char *const algos[3] = {"ll", "oneshot", "twoshot"};
  int ok = 1;
  for (int a = 0; a < 3 && ok; a++) {
    const char *env[] = {"MOECOMM_ALGO", algos[a], NULL};
    moecomm_topology_t topo = mc_test_topo(NRANKS, rank, NRANKS);
    moecomm_context_params_t params = mc_test_ctx_params(&topo, MOECOMM_DEVICE_AUTO);
    moecomm_context_t *ctx = NULL;
    moecomm_group_t *g;
    moecomm_context_info_t info;
    cudaStream_t s = NULL;
    char what[96];
    setenv(env[0], env[1], 1);
    ok = MC_CHECK_RC(api, NULL, api->context_create(&params, &ctx), MOECOMM_SUCCESS);
    unsetenv(env[0]);
    if (!ok) break;
    memset(&info, 0, sizeof(info));
    info.struct_size = sizeof(info);
    ok = MC_CHECK_RC(api, ctx, api->context_info(ctx, &info), MOECOMM_SUCCESS) &&
         MC_CHECK(info.device == 0, "isolated rank %d runs on device %d", rank, (int)info.device) &&
         (g = cu_group(api, ctx, MOECOMM_GROUP_TP)) != NULL && MC_CUDA_OK(cudaSetDevice(0)) &&
         MC_CUDA_OK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
    snprintf(what, sizeof(what), "isolated GPUs, %s, eager 20000 bf16", algos[a]);
    ok = ok && check_ar(api, ctx, g, s, rank, 20000, 0, what);
    ok = ok && MC_CHECK(strcmp(tp_backend(api, ctx, g), "custom") == 0,
                        "isolated GPUs: TP uses %s, want custom (IPC without a visible peer)",
                        tp_backend(api, ctx, g));
    snprintf(what, sizeof(what), "isolated GPUs, %s, captured 300000 bf16", algos[a]);
    ok = ok && check_ar(api, ctx, g, s, rank, 300000, 1, what);
    if (s) cudaStreamDestroy(s);
    MC_CHECK_RC(api, ctx, api->context_destroy(ctx), MOECOMM_SUCCESS);
  }
  return ok;
}

static int rank_isolated(int rank, int world, void *arg) {
  char dev[8];
  (void)world;
  (void)arg;
  snprintf(dev, sizeof(dev), "%d", rank);
  setenv("CUDA_VISIBLE_DEVICES", dev, 1); /* before anything touches CUDA in this child */
  setenv("NCCL_NVLS_ENABLE", "0", 1);
  isolated(mc_test_plugin(), rank);
  return 0;
}

static int rank_hosts(int rank, int world, void *arg) {
  const char *env[] = {"MOECOMM_HOST_ID", rank ? "moecomm-test-host-b" : "moecomm-test-host-a",
                       NULL};
  const moecomm_api_t *api;
  moecomm_context_t *ctx;
  moecomm_group_t *g;
  (void)world;
  (void)arg;
  setenv("NCCL_NVLS_ENABLE", "0", 1);
  api = mc_test_plugin();
  if (!MC_CUDA_OK(cudaSetDevice(rank)) || (ctx = cu_context(api, rank, NRANKS, 0, env)) == NULL)
    return 0;
  if ((g = cu_group(api, ctx, MOECOMM_GROUP_TP)) != NULL)
    MC_CHECK(strcmp(tp_backend(api, ctx, g), "nccl") == 0,
             "ranks on different hosts: TP uses %s, want nccl", tp_backend(api, ctx, g));
  MC_CHECK_RC(api, ctx, api->context_destroy(ctx), MOECOMM_SUCCESS);
  return 0;
}

int main(int argc, char **argv) {
  mc_test_init("custom_visible", argc, argv);
  if (!mc_test_need_gpus(NRANKS)) return mc_test_finish();
  mc_test_ranks(NRANKS, rank_isolated, NULL, 180);
  mc_test_ranks(NRANKS, rank_hosts, NULL, 60);
  return mc_test_finish();
}
