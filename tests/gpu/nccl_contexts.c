/* SPDX-License-Identifier: Apache-2.0 */
/* nccl_contexts.c - two moecomm contexts in one process (2 ranks on 2 GPUs, MOECOMM_BACKEND=nccl).
 *
 * Context A (tp=2) and context B (tp=2, ep=2) each get their own NCCL communicator; collectives
 * on the two interleave on two streams and are all checked; destroying A leaves B working. */
#include <cuda_runtime_api.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/harness.h"

#define NRANKS 2
#define COUNT 12345

typedef struct side {
  const char *name;
  moecomm_context_t *ctx;
  cudaStream_t stream;
  float *dsend, *drecv; /* NRANKS * COUNT each */
  float *in[NRANKS];    /* every rank's input of the current step */
  float *out;
} side_t;

/* Issues one collective of step `step` on side s (not waited for). kind: 0 all_reduce on
   group_kind, 1 all_gather, 2 reduce_scatter (max). */
static int issue(const moecomm_api_t *api, side_t *s, int group_kind, int kind, int rank,
                 uint64_t seed) {
  moecomm_group_t *g = NULL;
  size_t in_count = kind == 2 ? NRANKS * COUNT : COUNT;
  size_t out_count = kind == 1 ? NRANKS * COUNT : COUNT;
  moecomm_result_t rc;
  for (int r = 0; r < NRANKS; r++) mc_test_fill(s->in[r], in_count, MOECOMM_FLOAT32, seed * 8 + r);
  if (!MC_CUDA_OK(cudaMemsetAsync(s->drecv, 0xff, out_count * sizeof(float), s->stream)) ||
      !MC_CUDA_OK(cudaMemcpyAsync(s->dsend, s->in[rank], in_count * sizeof(float),
                                  cudaMemcpyHostToDevice, s->stream)))
    return 0;
  if (!MC_CHECK_RC(api, s->ctx, api->group_get(s->ctx, (moecomm_group_kind_t)group_kind, &g),
                   MOECOMM_SUCCESS))
    return 0;
  if (kind == 0)
    rc = api->all_reduce(g, s->dsend, s->drecv, COUNT, MOECOMM_FLOAT32, MOECOMM_SUM, s->stream);
  else if (kind == 1)
    rc = api->all_gather(g, s->dsend, s->drecv, COUNT, MOECOMM_FLOAT32, s->stream);
  else
    rc = api->reduce_scatter(g, s->dsend, s->drecv, COUNT, MOECOMM_FLOAT32, MOECOMM_MAX, s->stream);
  return MC_CHECK_RC(api, s->ctx, rc, MOECOMM_SUCCESS);
}

static int verify(side_t *s, int kind, int rank, int step) {
  size_t out_count = kind == 1 ? NRANKS * COUNT : COUNT, bad = 0;
  if (!MC_CUDA_OK(cudaStreamSynchronize(s->stream)) ||
      !MC_CUDA_OK(cudaMemcpy(s->out, s->drecv, out_count * sizeof(float), cudaMemcpyDeviceToHost)))
    return 0;
  for (size_t i = 0; i < out_count; i++) {
    double e;
    if (kind == 0)
      e = (double)s->in[0][i] + s->in[1][i];
    else if (kind == 1)
      e = s->in[i / COUNT][i % COUNT];
    else {
      double a = s->in[0][rank * COUNT + i], b = s->in[1][rank * COUNT + i];
      e = a > b ? a : b;
    }
    bad += (double)s->out[i] != e;
  }
  MC_CHECK(bad == 0, "context %s step %d kind %d: %zu of %zu elements wrong", s->name, step, kind,
           bad, out_count);
  return 1;
}

static int side_init(const moecomm_api_t *api, side_t *s, const char *name, int rank, int ep) {
  moecomm_topology_t topo = mc_test_topo(NRANKS, rank, NRANKS);
  moecomm_context_params_t params = mc_test_ctx_params(&topo, rank);
  topo.ep = ep;
  s->name = name;
  for (int r = 0; r < NRANKS; r++) s->in[r] = malloc(NRANKS * COUNT * sizeof(float));
  s->out = malloc(NRANKS * COUNT * sizeof(float));
  if (!MC_CHECK(s->in[0] && s->in[1] && s->out, "host malloc")) return 0;
  if (!MC_CUDA_OK(cudaStreamCreateWithFlags(&s->stream, cudaStreamNonBlocking)) ||
      !MC_CUDA_OK(cudaMalloc((void **)&s->dsend, NRANKS * COUNT * sizeof(float))) ||
      !MC_CUDA_OK(cudaMalloc((void **)&s->drecv, NRANKS * COUNT * sizeof(float))))
    return 0;
  return MC_CHECK_RC(api, NULL, api->context_create(&params, &s->ctx), MOECOMM_SUCCESS);
}

static void side_fini(const moecomm_api_t *api, side_t *s) {
  if (s->ctx != NULL) MC_CHECK_RC(api, s->ctx, api->context_destroy(s->ctx), MOECOMM_SUCCESS);
  s->ctx = NULL;
  if (s->stream) cudaStreamDestroy(s->stream);
  cudaFree(s->dsend);
  cudaFree(s->drecv);
  for (int r = 0; r < NRANKS; r++) free(s->in[r]);
  free(s->out);
  memset(s, 0, sizeof(*s));
}

static int rank_main(int rank, int world, void *arg) {
  const moecomm_api_t *api;
  side_t a, b;
  moecomm_group_t *ga = NULL, *gb = NULL;
  moecomm_group_stats_t sa, sb;
  (void)world;
  (void)arg;
  memset(&a, 0, sizeof(a));
  memset(&b, 0, sizeof(b));
  setenv("MOECOMM_BACKEND", "nccl", 1);
  setenv("NCCL_NVLS_ENABLE", "0", 1);
  api = mc_test_plugin();
  if (!MC_CUDA_OK(cudaSetDevice(rank))) return 1;
  if (!side_init(api, &a, "A", rank, 1) || !side_init(api, &b, "B", rank, 2)) goto out;

  /* Interleaved: A's and B's collectives are in flight together on two streams. */
  for (int step = 0; step < 6; step++) {
    int kind = step % 3;
    if (!issue(api, &a, MOECOMM_GROUP_TP, kind, rank, 100 + step) ||
        !issue(api, &b, MOECOMM_GROUP_MOE_EP, kind, rank, 200 + step))
      goto out;
    if (!verify(&a, kind, rank, step) || !verify(&b, kind, rank, step)) goto out;
  }
  memset(&sa, 0, sizeof(sa));
  memset(&sb, 0, sizeof(sb));
  sa.struct_size = sb.struct_size = sizeof(sa);
  if (MC_CHECK_RC(api, a.ctx, api->group_get(a.ctx, MOECOMM_GROUP_TP, &ga), MOECOMM_SUCCESS) &&
      MC_CHECK_RC(api, b.ctx, api->group_get(b.ctx, MOECOMM_GROUP_MOE_EP, &gb), MOECOMM_SUCCESS) &&
      MC_CHECK_RC(api, a.ctx, api->group_stats(ga, &sa), MOECOMM_SUCCESS) &&
      MC_CHECK_RC(api, b.ctx, api->group_stats(gb, &sb), MOECOMM_SUCCESS)) {
    MC_CHECK(sa.created && sb.created && sa.device_bytes > 0 && sb.device_bytes > 0,
             "A created %d (%llu bytes), B created %d (%llu bytes)", (int)sa.created,
             (unsigned long long)sa.device_bytes, (int)sb.created,
             (unsigned long long)sb.device_bytes);
    MC_CHECK(sa.ops == 6 && sb.ops == 6, "ops A %llu, B %llu, want 6 each",
             (unsigned long long)sa.ops, (unsigned long long)sb.ops);
  }

  /* A goes away; B's communicator is its own and keeps working. */
  side_fini(api, &a);
  for (int step = 6; step < 9; step++) {
    int kind = step % 3;
    if (!issue(api, &b, MOECOMM_GROUP_MOE_EP, kind, rank, 300 + step) ||
        !verify(&b, kind, rank, step))
      goto out;
  }
out:
  side_fini(api, &a);
  side_fini(api, &b);
  return 0;
}

int main(int argc, char **argv) {
  mc_test_init("nccl_contexts", argc, argv);
  if (!mc_test_need_gpus(NRANKS)) return mc_test_finish();
  mc_test_ranks(NRANKS, rank_main, NULL, 180);
  return mc_test_finish();
}
