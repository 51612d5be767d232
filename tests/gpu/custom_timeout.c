/* SPDX-License-Identifier: Apache-2.0 */
/* custom_timeout.c - a peer that stops answering (2 ranks, 2 GPUs, MOECOMM_TIMEOUT_MS=1500).
 *
 * For each algorithm (ll: waits on packets, oneshot: one barrier, twoshot: two barriers) in its
 * own context: both ranks run one checked all-reduce; then rank 0 calls again and rank 1 does
 * not.  Rank 0's kernel must give up after about MOECOMM_TIMEOUT_MS (the stream synchronises
 * instead of spinning forever), its next call must return MOECOMM_ERR_TIMEOUT naming rank 1 and
 * the variable, and capture_end must fail on both ranks (the custom backend of the broken
 * communicator reports it).  The ranks meet on the host between the steps. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "custom_util.h"

#define NRANKS 2
#define COUNT 3000

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int run_algo(const moecomm_api_t *api, int rank, const char *algo, float *host[NRANKS],
                    float *want, float *got) {
  const char *env[] = {"MOECOMM_ALGO", algo, "MOECOMM_TIMEOUT_MS", "1500", NULL};
  moecomm_context_t *ctx = cu_context(api, rank, NRANKS, 0, env);
  moecomm_group_t *g = ctx ? cu_group(api, ctx, MOECOMM_GROUP_TP) : NULL;
  cudaStream_t s = NULL;
  float *din = NULL, *dout = NULL;
  moecomm_result_t rc;
  char what[64];
  int ok = g != NULL;

  snprintf(what, sizeof(what), "%s: first call", algo);
  ok = ok && MC_CUDA_OK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking)) &&
       MC_CUDA_OK(cudaMalloc((void **)&din, COUNT * 4)) &&
       MC_CUDA_OK(cudaMalloc((void **)&dout, COUNT * 4)) &&
       MC_CUDA_OK(cudaMemcpy(din, host[rank], COUNT * 4, cudaMemcpyHostToDevice)) &&
       MC_CUDA_OK(cudaMemset(dout, 0xff, COUNT * 4)) && MC_CUDA_OK(cudaDeviceSynchronize()) &&
       MC_CHECK_RC(api, ctx, api->all_reduce(g, din, dout, COUNT, MOECOMM_FLOAT32, MOECOMM_SUM, s),
                   MOECOMM_SUCCESS) &&
       MC_CUDA_OK(cudaStreamSynchronize(s)) &&
       MC_CUDA_OK(cudaMemcpy(got, dout, COUNT * 4, cudaMemcpyDeviceToHost)) &&
       cu_compare(got, want, COUNT, MOECOMM_FLOAT32, what);
  cu_barrier();

  if (ok && rank == 0) {
    /* rank 1 never joins this call */
    double t0 = now_s(), dt;
    rc = api->all_reduce(g, din, dout, COUNT, MOECOMM_FLOAT32, MOECOMM_SUM, s);
    ok = MC_CHECK_RC(api, ctx, rc, MOECOMM_SUCCESS) && MC_CUDA_OK(cudaStreamSynchronize(s));
    dt = now_s() - t0;
    MC_CHECK(dt > 1.0 && dt < 30.0, "%s: the kernel gave up after %.2f s (timeout 1.5 s)", algo,
             dt);
    if (ok) {
      rc = api->all_reduce(g, din, dout, COUNT, MOECOMM_FLOAT32, MOECOMM_SUM, s);
      ok = MC_CHECK_RC(api, ctx, rc, MOECOMM_ERR_TIMEOUT) &&
           MC_CHECK(strstr(api->last_error(ctx), "rank 1") != NULL &&
                        strstr(api->last_error(ctx), "MOECOMM_TIMEOUT_MS") != NULL,
                    "%s: message: %s", algo, api->last_error(ctx));
    }
  }
  cu_barrier();

  /* capture_end fails on every rank: the communicator is broken */
  if (ok && MC_CHECK_RC(api, ctx, api->capture_begin(ctx, s), MOECOMM_SUCCESS)) {
    rc = api->capture_end(ctx, s);
    if (rank == 0)
      MC_CHECK_RC(api, ctx, rc, MOECOMM_ERR_TIMEOUT);
    else
      MC_CHECK(rc != MOECOMM_SUCCESS, "%s: capture_end on rank 1 succeeded", algo);
  }
  if (s) cudaStreamDestroy(s);
  cudaFree(din);
  cudaFree(dout);
  if (ctx) MC_CHECK_RC(api, ctx, api->context_destroy(ctx), MOECOMM_SUCCESS);
  return ok;
}

static int rank_main(int rank, int world, void *arg) {
  static const char *const algos[] = {"ll", "oneshot", "twoshot"};
  const moecomm_api_t *api;
  float *host[NRANKS], *want = malloc(COUNT * 4), *got = malloc(COUNT * 4);
  void *ins[NRANKS];
  (void)world;
  (void)arg;
  setenv("NCCL_NVLS_ENABLE", "0", 1);
  api = mc_test_plugin();
  for (int r = 0; r < NRANKS; r++) {
    host[r] = malloc(COUNT * 4);
    if (host[r] == NULL) return 1;
    cu_fill(host[r], COUNT, MOECOMM_FLOAT32, 1, 31 + (uint64_t)r);
    ins[r] = host[r];
  }
  if (want == NULL || got == NULL || !MC_CUDA_OK(cudaSetDevice(rank))) return 1;
  cu_reference(want, ins, NRANKS, COUNT, MOECOMM_FLOAT32, MOECOMM_SUM);
  /* the context's exchanges time out after 1.5 s too: start each one together */
  for (int a = 0; a < 3; a++) {
    cu_barrier();
    if (!run_algo(api, rank, algos[a], host, want, got)) break;
  }
  for (int r = 0; r < NRANKS; r++) free(host[r]);
  free(want);
  free(got);
  return 0;
}

int main(int argc, char **argv) {
  mc_test_init("custom_timeout", argc, argv);
  if (!mc_test_need_gpus(NRANKS)) return mc_test_finish();
  mc_test_ranks(NRANKS, rank_main, NULL, 180);
  return mc_test_finish();
}
