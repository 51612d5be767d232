/* SPDX-License-Identifier: Apache-2.0 */
/* shared_gpu.c - two ranks that drive one GPU are told so at context creation (one GPU is
 * enough to run this).
 *
 * Two ranks, both on CUDA device 0: context_create must fail on both with MOECOMM_ERR_CONFIG and a
 * message saying what to do (it used to succeed and surface NCCL's "Duplicate GPU detected" later
 * as MOECOMM_ERR_INTERNAL); MOECOMM_DEVICE_CPU ranks on the same machine still work. */
#include <string.h>

#include "../common/harness.h"

static const moecomm_api_t *api;

static int rank_main(int rank, int world, void *arg) {
  moecomm_topology_t t = mc_test_topo(world, rank, world);
  moecomm_context_params_t p = mc_test_ctx_params(&t, *(const int *)arg);
  moecomm_context_t *ctx = NULL;
  moecomm_result_t r = api->context_create(&p, &ctx);
  if (*(const int *)arg == MOECOMM_DEVICE_CPU) {
    MC_CHECK_RC(api, NULL, r, MOECOMM_SUCCESS);
  } else {
    MC_CHECK(r == MOECOMM_ERR_CONFIG && strstr(api->last_error(NULL), "both drive GPU") &&
                 strstr(api->last_error(NULL), "one GPU per rank"),
             "rank %d: two ranks on GPU 0: %d (%s): %s", rank, (int)r, api->result_string(r),
             api->last_error(NULL));
    MC_CHECK(ctx == NULL, "rank %d: ctx written although context_create failed", rank);
  }
  if (r == MOECOMM_SUCCESS) api->context_destroy(ctx);
  return 0;
}

int main(int argc, char **argv) {
  static const int gpu0 = 0, cpu = MOECOMM_DEVICE_CPU;
  mc_test_init("shared_gpu", argc, argv);
  if (!mc_test_need_gpus(1)) return mc_test_finish();
  api = mc_test_plugin();
  MC_CHECK(mc_test_ranks(2, rank_main, (void *)&gpu0, 60) == 0, "two ranks on one GPU");
  MC_CHECK(mc_test_ranks(2, rank_main, (void *)&cpu, 60) == 0, "two CPU ranks");
  return mc_test_finish();
}
