/* SPDX-License-Identifier: Apache-2.0 */
/* custom_util.h - helpers shared by the custom all-reduce GPU tests (tests/gpu/custom_*.c).
 *
 * Inputs are random and never zero: small integers (exact sums in every dtype, any rank count) or
 * real values of mixed magnitude.  With 2 ranks the custom kernels' result is exactly known for
 * both: the fp32 sum of two values of the dtype is exact, so the result is the float64 sum rounded
 * once to the dtype (round to nearest even), and max/min are exact.  Every check compares bits. */
#ifndef CUSTOM_UTIL_H_
#define CUSTOM_UTIL_H_

#include <cuda_runtime_api.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../host_shim/lib/data.h"
#include "../../host_shim/lib/launch.h"
#include "../common/harness.h"

/* Stores v (already a value of the dtype) as element i. */
static inline void cu_put(void *buf, size_t i, moecomm_dtype_t dt, double v) {
  if (dt == MOECOMM_FLOAT32)
    ((float *)buf)[i] = (float)v;
  else if (dt == MOECOMM_FLOAT16)
    ((uint16_t *)buf)[i] = mc_test_to_half((float)v);
  else if (dt == MOECOMM_INT32)
    ((int32_t *)buf)[i] = (int32_t)v;
  else
    ((uint16_t *)buf)[i] = mc_test_to_bf16((float)v);
}

/* n elements: kind 0 small non-zero integers (mc_test_fill), kind 1 non-zero reals of mixed sign
   and magnitude in [2^-4, 2^4), rounded to the dtype. */
static inline void cu_fill(void *buf, size_t n, moecomm_dtype_t dt, int kind, uint64_t seed) {
  uint64_t st = seed ^ 0x5bd1e9955bd1e995ull;
  if (kind == 0) {
    mc_test_fill(buf, n, dt, seed);
    return;
  }
  for (size_t i = 0; i < n; i++) {
    uint64_t r = mc_test_rand(&st);
    double m = 1.0 + (double)(r >> 40) / (double)(1ull << 24); /* [1, 2) */
    int e = (int)((r >> 8) % 8) - 4;
    double v = (r & 1) ? -m : m;
    for (; e > 0; e--) v *= 2;
    for (; e < 0; e++) v /= 2;
    cu_put(buf, i, dt, v);
  }
}

/* Expected element of an all-reduce over `nin` inputs (rank order), as the dtype's bits widened
   to double: inputs are exact dtype values, so the fp32 accumulation of two of them is exact. */
static inline double cu_expect(void *const *ins, int nin, size_t i, moecomm_dtype_t dt,
                               moecomm_redop_t op) {
  double acc = mc_test_get(ins[0], i, dt);
  for (int r = 1; r < nin; r++) {
    double v = mc_test_get(ins[r], i, dt);
    acc = op == MOECOMM_SUM   ? acc + v
          : op == MOECOMM_MAX ? (v > acc ? v : acc)
                              : (v < acc ? v : acc);
  }
  return acc;
}

/* The dtype's rounding of a double (via float: exact for the sums these tests make; int32 sums
   of small integers are exact). */
static inline double cu_round(double v, moecomm_dtype_t dt) {
  float f = (float)v;
  if (dt == MOECOMM_INT32) return v;
  if (dt == MOECOMM_FLOAT32) return f;
  if (dt == MOECOMM_FLOAT16) return mc_test_from_half(mc_test_to_half(f));
  return mc_test_from_bf16(mc_test_to_bf16(f));
}

/* Host-side expected output (n elements of dt) of an all-reduce of ins. */
static inline void cu_reference(void *out, void *const *ins, int nin, size_t n, moecomm_dtype_t dt,
                                moecomm_redop_t op) {
  for (size_t i = 0; i < n; i++) cu_put(out, i, dt, cu_round(cu_expect(ins, nin, i, dt, op), dt));
}

/* Bytes of got equal to want; else one failed check naming the first difference. */
static inline int cu_compare(const void *got, const void *want, size_t n, moecomm_dtype_t dt,
                             const char *what) {
  size_t es = shim_dtype_size(dt), bad = 0, first = 0;
  if (memcmp(got, want, n * es) == 0) return MC_CHECK(1, "%s", what);
  for (size_t i = 0; i < n; i++)
    if (memcmp((const char *)got + i * es, (const char *)want + i * es, es) != 0 && bad++ == 0)
      first = i;
  return MC_CHECK(0, "%s: %zu of %zu elements differ, first at %zu: got %g want %g", what, bad, n,
                  first, mc_test_get(got, first, dt), mc_test_get(want, first, dt));
}

/* One sum all-reduce of count elements on g from ins[rank] (uploaded, the output poisoned), eager
   or captured (capture_begin, stream capture, capture_end, one launch); the result must equal the
   reference over the nin inputs bit for bit. */
static inline int cu_check_sum(const moecomm_api_t *api, moecomm_context_t *ctx, moecomm_group_t *g,
                               cudaStream_t s, void *const *ins, int nin, int rank,
                               moecomm_dtype_t dt, size_t count, int capture, const char *what) {
  const size_t bytes = count * shim_dtype_size(dt);
  void *want = malloc(bytes), *got = malloc(bytes);
  char *din = NULL, *dout = NULL;
  cudaGraph_t graph = NULL;
  cudaGraphExec_t exec = NULL;
  moecomm_result_t rc;
  int ok = 0;
  if (!MC_CHECK(want && got, "%s: host buffers of %zu bytes", what, bytes)) goto out;
  cu_reference(want, ins, nin, count, dt, MOECOMM_SUM);
  if (!MC_CUDA_OK(cudaMalloc((void **)&din, bytes)) ||
      !MC_CUDA_OK(cudaMalloc((void **)&dout, bytes)) ||
      !MC_CUDA_OK(cudaMemcpy(din, ins[rank], bytes, cudaMemcpyHostToDevice)) ||
      !MC_CUDA_OK(cudaMemset(dout, 0xff, bytes)) || !MC_CUDA_OK(cudaDeviceSynchronize()))
    goto out;
  if (capture) {
    if (!MC_CHECK_RC(api, ctx, api->capture_begin(ctx, s), MOECOMM_SUCCESS) ||
        !MC_CUDA_OK(cudaStreamBeginCapture(s, cudaStreamCaptureModeGlobal)))
      goto out;
    rc = api->all_reduce(g, din, dout, count, dt, MOECOMM_SUM, s);
    if (!MC_CUDA_OK(cudaStreamEndCapture(s, &graph)) ||
        !MC_CHECK_RC(api, ctx, rc, MOECOMM_SUCCESS) ||
        !MC_CHECK_RC(api, ctx, api->capture_end(ctx, s), MOECOMM_SUCCESS) ||
        !MC_CUDA_OK(cudaGraphInstantiate(&exec, graph, 0)) || !MC_CUDA_OK(cudaGraphLaunch(exec, s)))
      goto out;
  } else {
    rc = api->all_reduce(g, din, dout, count, dt, MOECOMM_SUM, s);
    if (!MC_CHECK_RC(api, ctx, rc, MOECOMM_SUCCESS)) goto out;
  }
  ok = MC_CUDA_OK(cudaStreamSynchronize(s)) &&
       MC_CUDA_OK(cudaMemcpy(got, dout, bytes, cudaMemcpyDeviceToHost)) &&
       cu_compare(got, want, count, dt, what);
out:
  if (exec) cudaGraphExecDestroy(exec);
  if (graph) cudaGraphDestroy(graph);
  cudaFree(din);
  cudaFree(dout);
  free(want);
  free(got);
  return ok;
}

/* Creates a context for rank of a world of 2 (tp 2), with extra environment set only during the
   call (a NULL-terminated list of NAME, VALUE pairs). */
static inline moecomm_context_t *cu_context(const moecomm_api_t *api, int rank, int world,
                                            uint32_t flags, const char *const *env) {
  moecomm_topology_t topo = mc_test_topo(world, rank, world);
  moecomm_context_params_t params = mc_test_ctx_params(&topo, rank);
  moecomm_context_t *ctx = NULL;
  moecomm_result_t rc;
  params.flags = flags;
  for (int i = 0; env != NULL && env[i] != NULL; i += 2) setenv(env[i], env[i + 1], 1);
  rc = api->context_create(&params, &ctx);
  for (int i = 0; env != NULL && env[i] != NULL; i += 2) unsetenv(env[i]);
  if (!MC_CHECK_RC(api, NULL, rc, MOECOMM_SUCCESS)) return NULL;
  return ctx;
}

static inline moecomm_group_t *cu_group(const moecomm_api_t *api, moecomm_context_t *ctx,
                                        int kind) {
  moecomm_group_t *g = NULL;
  if (!MC_CHECK_RC(api, ctx, api->group_get(ctx, (moecomm_group_kind_t)kind, &g), MOECOMM_SUCCESS))
    return NULL;
  return g;
}

/* Blocks until every rank of the test got here (the shim's host all-gather). */
static inline void cu_barrier(void) {
  char in = 1, out[64];
  MC_CHECK(shim_host_allgather(shim_launch_hub(), &in, out, 1) == 0, "host barrier");
}

#endif
