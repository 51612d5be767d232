/* SPDX-License-Identifier: Apache-2.0 */
/* nccl_probe.c - what happens where NCCL cannot run: a process that sees no CUDA device.
 *
 * Runs on every machine: each case is a forked rank with CUDA_VISIBLE_DEVICES="" (set before
 * anything touches CUDA), so a GPU machine behaves like CI here.  An explicit MOECOMM_BACKEND=nccl
 * is a clear MOECOMM_ERR_UNAVAILABLE that says there is no CUDA device; auto falls back to the CPU
 * with the shm backend and works; the per-group variable names the group. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/harness.h"

#define NRANKS 2

static int rank_main(int rank, int world, void *arg) {
  const moecomm_api_t *api;
  moecomm_topology_t topo = mc_test_topo(world, rank, world);
  moecomm_context_params_t params;
  moecomm_context_t *ctx = NULL;
  moecomm_group_t *g = NULL;
  moecomm_group_stats_t st;
  moecomm_result_t rc;
  const char *msg;
  float in[64], out[64];
  size_t bad = 0;
  (void)arg;
  setenv("CUDA_VISIBLE_DEVICES", "", 1);
  api = mc_test_plugin();

  /* 1. nccl asked for everywhere, device chosen automatically: no device, clear refusal. */
  setenv("MOECOMM_BACKEND", "nccl", 1);
  params = mc_test_ctx_params(&topo, MOECOMM_DEVICE_AUTO);
  rc = api->context_create(&params, &ctx);
  msg = api->last_error(NULL);
  MC_CHECK_RC(api, NULL, rc, MOECOMM_ERR_UNAVAILABLE);
  MC_CHECK(strstr(msg, "nccl") != NULL && strstr(msg, "CUDA device") != NULL,
           "the refusal should name nccl and the missing CUDA device: \"%s\"", msg);
  if (rc == MOECOMM_SUCCESS) api->context_destroy(ctx);
  ctx = NULL;

  /* 2. An explicit ordinal that this process cannot see. */
  params = mc_test_ctx_params(&topo, 0);
  rc = api->context_create(&params, &ctx);
  msg = api->last_error(NULL);
  MC_CHECK_RC(api, NULL, rc, MOECOMM_ERR_UNAVAILABLE);
  MC_CHECK(strstr(msg, "device") != NULL, "message should talk about the device: \"%s\"", msg);
  if (rc == MOECOMM_SUCCESS) api->context_destroy(ctx);
  ctx = NULL;

  /* 3. Only one group asks for nccl: the message names that group's variable. */
  unsetenv("MOECOMM_BACKEND");
  setenv("MOECOMM_BACKEND_MOE_EP", "nccl", 1);
  params = mc_test_ctx_params(&topo, MOECOMM_DEVICE_AUTO);
  rc = api->context_create(&params, &ctx);
  msg = api->last_error(NULL);
  MC_CHECK_RC(api, NULL, rc, MOECOMM_ERR_UNAVAILABLE);
  MC_CHECK(strstr(msg, "MOE_EP") != NULL, "message should name MOE_EP: \"%s\"", msg);
  if (rc == MOECOMM_SUCCESS) api->context_destroy(ctx);
  ctx = NULL;
  unsetenv("MOECOMM_BACKEND_MOE_EP");

  /* 4. auto: falls back to the CPU and shm, and collectives work there. */
  setenv("MOECOMM_BACKEND", "auto", 1);
  params = mc_test_ctx_params(&topo, MOECOMM_DEVICE_AUTO);
  rc = api->context_create(&params, &ctx);
  if (!MC_CHECK_RC(api, NULL, rc, MOECOMM_SUCCESS)) return 0;
  memset(&st, 0, sizeof(st));
  st.struct_size = sizeof(st);
  if (MC_CHECK_RC(api, ctx, api->group_get(ctx, MOECOMM_GROUP_TP, &g), MOECOMM_SUCCESS) &&
      MC_CHECK_RC(api, ctx, api->group_stats(g, &st), MOECOMM_SUCCESS))
    MC_CHECK(strcmp(st.backend_name, "shm") == 0, "auto without a GPU: TP uses %s, want shm",
             st.backend_name);
  for (int r = 0; r < world; r++) {
    float tmp[64];
    mc_test_fill(tmp, 64, MOECOMM_FLOAT32, 77 + r);
    for (int i = 0; i < 64; i++) out[i] = r == 0 ? tmp[i] : out[i] + tmp[i];
    if (r == rank) memcpy(in, tmp, sizeof(in));
  }
  {
    float got[64];
    memset(got, 0xff, sizeof(got));
    rc = api->all_reduce(g, in, got, 64, MOECOMM_FLOAT32, MOECOMM_SUM, NULL);
    if (MC_CHECK_RC(api, ctx, rc, MOECOMM_SUCCESS)) {
      for (int i = 0; i < 64; i++) bad += got[i] != out[i];
      MC_CHECK(bad == 0, "shm all_reduce after the fallback: %zu of 64 wrong", bad);
    }
  }
  MC_CHECK_RC(api, ctx, api->context_destroy(ctx), MOECOMM_SUCCESS);
  return 0;
}

int main(int argc, char **argv) {
  mc_test_init("nccl_probe", argc, argv);
  mc_test_ranks(NRANKS, rank_main, NULL, 120);
  return mc_test_finish();
}
