/* SPDX-License-Identifier: Apache-2.0 */
/* custom_graph.c - custom all-reduces captured in CUDA graphs and replayed (2 ranks, 2 GPUs).
 *
 * A. auto algorithms on TP: LL-, one-shot- and two-shot-sized all-reduces (in place, and with
 *    pointers at +2 / +4 bytes) in one graph, replayed 1000 times with new inputs uploaded and
 *    outputs poisoned before every replay, every replay checked bit for bit.
 * B. the seed crash scenario: TP and ATTN_TP have the same ranks but separate communicators
 *    (MOECOMM_CONTEXT_SEPARATE_COMMS), two-shot forced so that every op reads and writes the
 *    peers' registered buffers; their all-reduces interleave in one graph; ATTN_TP's first
 *    collective happens inside the capture; 300 checked replays.
 * C. 16 M and 32 M element all-reduces captured (two-shot on registered buffers), 3 replays.
 * D. ranks capturing different numbers of all-reduces: capture_end fails on every rank with
 *    MOECOMM_ERR_CAPTURE, and the communicator still works eagerly afterwards.
 * E. a graph replayed without capture_end: the two-shot kernel finds its buffers unregistered,
 *    touches nothing (the output keeps its poison), and the next call reports MOECOMM_ERR_CAPTURE
 *    instead of an illegal memory access. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "custom_util.h"

#define NRANKS 2
#define MAXSETS 4

/* One captured all-reduce and its input sets (replay r uses set r % nsets). */
typedef struct gop {
  int group;
  moecomm_dtype_t dt;
  size_t count;
  int in_off, out_off, inplace;
  char *din, *dout, *send, *recv;
  void *in[MAXSETS][NRANKS], *want[MAXSETS], *got;
  int nsets;
} gop_t;

#define GOP(g, d, n, io, oo, ip) \
  { .group = (g), .dt = (d), .count = (n), .in_off = (io), .out_off = (oo), .inplace = (ip) }

static int gop_setup(gop_t *o, int nsets, uint64_t seed) {
  const size_t bytes = o->count * shim_dtype_size(o->dt);
  o->nsets = nsets;
  if (!MC_CUDA_OK(cudaMalloc((void **)&o->din, bytes + 64)) ||
      (!o->inplace && !MC_CUDA_OK(cudaMalloc((void **)&o->dout, bytes + 64))))
    return 0;
  o->send = o->din + o->in_off;
  o->recv = o->inplace ? o->send : o->dout + o->out_off;
  o->got = malloc(bytes);
  for (int k = 0; k < nsets; k++) {
    for (int r = 0; r < NRANKS; r++) {
      o->in[k][r] = malloc(bytes);
      if (o->in[k][r] == NULL) return MC_CHECK(0, "host malloc");
      cu_fill(o->in[k][r], o->count, o->dt, (int)((seed + (uint64_t)k) & 1),
              seed * 64 + (uint64_t)k * 4 + (uint64_t)r);
    }
    o->want[k] = malloc(bytes);
    if (o->want[k] == NULL || o->got == NULL) return MC_CHECK(0, "host malloc");
    cu_reference(o->want[k], o->in[k], NRANKS, o->count, o->dt, MOECOMM_SUM);
  }
  return 1;
}

static void gop_free(gop_t *o) {
  cudaFree(o->din);
  cudaFree(o->dout);
  for (int k = 0; k < o->nsets; k++) {
    for (int r = 0; r < NRANKS; r++) free(o->in[k][r]);
    free(o->want[k]);
  }
  free(o->got);
  memset(o, 0, sizeof(*o));
}

static int gop_upload(const gop_t *o, int set, int rank, cudaStream_t s) {
  const size_t bytes = o->count * shim_dtype_size(o->dt);
  if (!o->inplace && !MC_CUDA_OK(cudaMemsetAsync(o->recv, 0xff, bytes, s))) return 0;
  return MC_CUDA_OK(cudaMemcpyAsync(o->send, o->in[set][rank], bytes, cudaMemcpyHostToDevice, s));
}

static int gop_check(gop_t *o, int set, const char *what) {
  if (!MC_CUDA_OK(
          cudaMemcpy(o->got, o->recv, o->count * shim_dtype_size(o->dt), cudaMemcpyDeviceToHost)))
    return 0;
  return cu_compare(o->got, o->want[set], o->count, o->dt, what);
}

/* capture_begin, stream capture of ops, capture_end, instantiate. */
static int capture(const moecomm_api_t *api, moecomm_context_t *ctx, gop_t *ops, int n,
                   cudaStream_t s, cudaGraphExec_t *exec_p) {
  cudaGraph_t graph = NULL;
  int good = 1;
  if (!MC_CHECK_RC(api, ctx, api->capture_begin(ctx, s), MOECOMM_SUCCESS) ||
      !MC_CUDA_OK(cudaStreamBeginCapture(s, cudaStreamCaptureModeGlobal)))
    return 0;
  for (int i = 0; i < n && good; i++) {
    moecomm_group_t *g = cu_group(api, ctx, ops[i].group);
    good = g != NULL && MC_CHECK_RC(api, ctx,
                                    api->all_reduce(g, ops[i].send, ops[i].recv, ops[i].count,
                                                    ops[i].dt, MOECOMM_SUM, s),
                                    MOECOMM_SUCCESS);
  }
  if (!MC_CUDA_OK(cudaStreamEndCapture(s, &graph))) good = 0;
  if (!MC_CHECK_RC(api, ctx, api->capture_end(ctx, s), MOECOMM_SUCCESS)) good = 0;
  if (good) good = MC_CUDA_OK(cudaGraphInstantiate(exec_p, graph, 0));
  if (graph) cudaGraphDestroy(graph);
  return good;
}

/* Replays exec `replays` times, new inputs before each, every op checked each time. */
static int replay(gop_t *ops, int n, cudaGraphExec_t exec, cudaStream_t s, int rank, int replays,
                  const char *part) {
  for (int rep = 0; rep < replays; rep++) {
    for (int i = 0; i < n; i++)
      if (!gop_upload(&ops[i], rep % ops[i].nsets, rank, s)) return 0;
    if (!MC_CUDA_OK(cudaGraphLaunch(exec, s)) || !MC_CUDA_OK(cudaStreamSynchronize(s))) return 0;
    for (int i = 0; i < n; i++) {
      char what[128];
      snprintf(what, sizeof(what), "%s replay %d op %d (%s, %zu elements)", part, rep, i,
               shim_dtype_name(ops[i].dt), ops[i].count);
      if (!gop_check(&ops[i], rep % ops[i].nsets, what)) return 0;
    }
  }
  return MC_CHECK(1, "%s: %d replays checked", part, replays);
}

static int part_a(const moecomm_api_t *api, int rank, cudaStream_t s) {
  gop_t ops[4] = {
      GOP(MOECOMM_GROUP_TP, MOECOMM_BFLOAT16, 4095, 0, 0, 0),
      GOP(MOECOMM_GROUP_TP, MOECOMM_FLOAT32, 65537, 0, 0, 1),
      GOP(MOECOMM_GROUP_TP, MOECOMM_BFLOAT16, (1u << 20) + 3, 2, 4, 0),
      GOP(MOECOMM_GROUP_TP, MOECOMM_FLOAT16, 1u << 20, 0, 0, 1),
  };
  moecomm_context_t *ctx = cu_context(api, rank, NRANKS, 0, NULL);
  cudaGraphExec_t exec = NULL;
  int ok = ctx != NULL;
  for (int i = 0; i < 4 && ok; i++) ok = gop_setup(&ops[i], MAXSETS, 100 + (uint64_t)i);
  /* one eager round creates the communicator; the replays then mix with eager epochs */
  for (int i = 0; i < 4 && ok; i++) {
    moecomm_group_t *g = cu_group(api, ctx, ops[i].group);
    ok = g != NULL && gop_upload(&ops[i], 0, rank, s) &&
         MC_CHECK_RC(
             api, ctx,
             api->all_reduce(g, ops[i].send, ops[i].recv, ops[i].count, ops[i].dt, MOECOMM_SUM, s),
             MOECOMM_SUCCESS) &&
         MC_CUDA_OK(cudaStreamSynchronize(s)) && gop_check(&ops[i], 0, "A eager");
  }
  ok = ok && capture(api, ctx, ops, 4, s, &exec) && replay(ops, 4, exec, s, rank, 1000, "A");
  if (exec) cudaGraphExecDestroy(exec);
  for (int i = 0; i < 4; i++) gop_free(&ops[i]);
  if (ctx) MC_CHECK_RC(api, ctx, api->context_destroy(ctx), MOECOMM_SUCCESS);
  return ok;
}

static int part_b(const moecomm_api_t *api, int rank, cudaStream_t s) {
  const char *env[] = {"MOECOMM_ALGO", "twoshot", NULL};
  gop_t ops[4] = {
      GOP(MOECOMM_GROUP_TP, MOECOMM_BFLOAT16, 65536, 0, 0, 0),
      GOP(MOECOMM_GROUP_ATTN_TP, MOECOMM_FLOAT32, 33333, 0, 0, 1),
      GOP(MOECOMM_GROUP_TP, MOECOMM_FLOAT32, 4095, 4, 4, 0),
      GOP(MOECOMM_GROUP_ATTN_TP, MOECOMM_BFLOAT16, 1u << 20, 0, 0, 0),
  };
  moecomm_context_t *ctx = cu_context(api, rank, NRANKS, MOECOMM_CONTEXT_SEPARATE_COMMS, env);
  moecomm_group_stats_t st[2];
  cudaGraphExec_t exec = NULL;
  moecomm_group_t *tp;
  int ok = ctx != NULL;
  for (int i = 0; i < 4 && ok; i++) ok = gop_setup(&ops[i], 3, 200 + (uint64_t)i);
  /* only TP's communicator exists before the capture */
  ok = ok && (tp = cu_group(api, ctx, MOECOMM_GROUP_TP)) != NULL &&
       gop_upload(&ops[0], 0, rank, s) &&
       MC_CHECK_RC(
           api, ctx,
           api->all_reduce(tp, ops[0].send, ops[0].recv, ops[0].count, ops[0].dt, MOECOMM_SUM, s),
           MOECOMM_SUCCESS) &&
       MC_CUDA_OK(cudaStreamSynchronize(s)) && gop_check(&ops[0], 0, "B eager TP");
  ok = ok && capture(api, ctx, ops, 4, s, &exec) && replay(ops, 4, exec, s, rank, 300, "B");
  for (int k = 0; k < 2 && ok; k++) {
    moecomm_group_t *g = cu_group(api, ctx, k ? MOECOMM_GROUP_ATTN_TP : MOECOMM_GROUP_TP);
    memset(&st[k], 0, sizeof(st[k]));
    st[k].struct_size = sizeof(st[k]);
    ok = g != NULL && MC_CHECK_RC(api, ctx, api->group_stats(g, &st[k]), MOECOMM_SUCCESS) &&
         MC_CHECK(st[k].created && strcmp(st[k].backend_name, "custom") == 0,
                  "B: %s created %d backend %s", st[k].kind_name, (int)st[k].created,
                  st[k].backend_name);
  }
  if (ok)
    MC_CHECK(st[0].comm_id != st[1].comm_id, "B: TP and ATTN_TP share comm %d", st[0].comm_id);
  if (exec) cudaGraphExecDestroy(exec);
  for (int i = 0; i < 4; i++) gop_free(&ops[i]);
  if (ctx) MC_CHECK_RC(api, ctx, api->context_destroy(ctx), MOECOMM_SUCCESS);
  return ok;
}

static int part_c(const moecomm_api_t *api, int rank, cudaStream_t s) {
  gop_t ops[3] = {
      GOP(MOECOMM_GROUP_TP, MOECOMM_BFLOAT16, 16u << 20, 0, 0, 0),
      GOP(MOECOMM_GROUP_TP, MOECOMM_BFLOAT16, 32u << 20, 0, 0, 1),
      GOP(MOECOMM_GROUP_TP, MOECOMM_FLOAT32, 16u << 20, 0, 0, 0),
  };
  moecomm_context_t *ctx = cu_context(api, rank, NRANKS, 0, NULL);
  cudaGraphExec_t exec = NULL;
  int ok = ctx != NULL;
  for (int i = 0; i < 3 && ok; i++) ok = gop_setup(&ops[i], 2, 300 + (uint64_t)i);
  ok = ok && capture(api, ctx, ops, 3, s, &exec) && replay(ops, 3, exec, s, rank, 3, "C");
  if (exec) cudaGraphExecDestroy(exec);
  for (int i = 0; i < 3; i++) gop_free(&ops[i]);
  if (ctx) MC_CHECK_RC(api, ctx, api->context_destroy(ctx), MOECOMM_SUCCESS);
  return ok;
}

static int part_d(const moecomm_api_t *api, int rank, cudaStream_t s) {
  gop_t op = GOP(MOECOMM_GROUP_TP, MOECOMM_FLOAT32, 70000, 0, 0, 0);
  moecomm_context_t *ctx = cu_context(api, rank, NRANKS, 0, NULL);
  moecomm_group_t *g = ctx ? cu_group(api, ctx, MOECOMM_GROUP_TP) : NULL;
  cudaGraph_t graph = NULL;
  moecomm_result_t rc;
  int ok = g != NULL && gop_setup(&op, 1, 400);
  /* rank 0 captures two all-reduces, rank 1 one: nothing of it may be replayed */
  ok = ok && MC_CHECK_RC(api, ctx, api->capture_begin(ctx, s), MOECOMM_SUCCESS) &&
       MC_CUDA_OK(cudaStreamBeginCapture(s, cudaStreamCaptureModeGlobal));
  for (int i = 0; ok && i < (rank == 0 ? 2 : 1); i++)
    ok =
        MC_CHECK_RC(api, ctx, api->all_reduce(g, op.send, op.recv, op.count, op.dt, MOECOMM_SUM, s),
                    MOECOMM_SUCCESS);
  if (ok) ok = MC_CUDA_OK(cudaStreamEndCapture(s, &graph));
  if (ok) {
    rc = api->capture_end(ctx, s);
    ok = MC_CHECK_RC(api, ctx, rc, MOECOMM_ERR_CAPTURE) &&
         MC_CHECK(strstr(api->last_error(ctx), "TP") != NULL, "D: message names no group: %s",
                  api->last_error(ctx));
  }
  if (graph) cudaGraphDestroy(graph);
  /* the communicator is still in step: an eager call works */
  ok = ok && gop_upload(&op, 0, rank, s) &&
       MC_CHECK_RC(api, ctx, api->all_reduce(g, op.send, op.recv, op.count, op.dt, MOECOMM_SUM, s),
                   MOECOMM_SUCCESS) &&
       MC_CUDA_OK(cudaStreamSynchronize(s)) &&
       gop_check(&op, 0, "D: eager after the failed capture");
  gop_free(&op);
  if (ctx) MC_CHECK_RC(api, ctx, api->context_destroy(ctx), MOECOMM_SUCCESS);
  return ok;
}

static int part_e(const moecomm_api_t *api, int rank, cudaStream_t s) {
  const char *env[] = {"MOECOMM_ALGO", "twoshot", NULL};
  gop_t op = GOP(MOECOMM_GROUP_TP, MOECOMM_BFLOAT16, 20000, 0, 0, 0);
  moecomm_context_t *ctx = cu_context(api, rank, NRANKS, 0, env);
  moecomm_group_t *g = ctx ? cu_group(api, ctx, MOECOMM_GROUP_TP) : NULL;
  cudaGraph_t graph = NULL;
  cudaGraphExec_t exec = NULL;
  moecomm_result_t rc;
  int ok = g != NULL && gop_setup(&op, 1, 500);
  ok = ok && gop_upload(&op, 0, rank, s) &&
       MC_CHECK_RC(api, ctx, api->all_reduce(g, op.send, op.recv, op.count, op.dt, MOECOMM_SUM, s),
                   MOECOMM_SUCCESS) &&
       MC_CUDA_OK(cudaStreamSynchronize(s)) && gop_check(&op, 0, "E: eager");
  ok = ok && MC_CHECK_RC(api, ctx, api->capture_begin(ctx, s), MOECOMM_SUCCESS) &&
       MC_CUDA_OK(cudaStreamBeginCapture(s, cudaStreamCaptureModeGlobal));
  if (ok) {
    rc = api->all_reduce(g, op.send, op.recv, op.count, op.dt, MOECOMM_SUM, s);
    ok = MC_CUDA_OK(cudaStreamEndCapture(s, &graph)) && MC_CHECK_RC(api, ctx, rc, MOECOMM_SUCCESS);
  }
  /* no capture_end: the graph's buffers were never registered */
  ok = ok && MC_CUDA_OK(cudaGraphInstantiate(&exec, graph, 0)) && gop_upload(&op, 0, rank, s) &&
       MC_CUDA_OK(cudaGraphLaunch(exec, s)) && MC_CUDA_OK(cudaStreamSynchronize(s));
  if (ok) {
    const unsigned char *u = op.got;
    size_t bytes = op.count * 2, touched = 0;
    ok = MC_CUDA_OK(cudaMemcpy(op.got, op.recv, bytes, cudaMemcpyDeviceToHost));
    for (size_t i = 0; ok && i < bytes; i++) touched += u[i] != 0xff;
    ok = ok && MC_CHECK(touched == 0, "E: the unregistered replay wrote %zu output bytes", touched);
  }
  if (ok) {
    rc = api->all_reduce(g, op.send, op.recv, op.count, op.dt, MOECOMM_SUM, s);
    ok = MC_CHECK_RC(api, ctx, rc, MOECOMM_ERR_CAPTURE) &&
         MC_CHECK(strstr(api->last_error(ctx), "capture_end") != NULL, "E: message: %s",
                  api->last_error(ctx));
  }
  if (exec) cudaGraphExecDestroy(exec);
  if (graph) cudaGraphDestroy(graph);
  gop_free(&op);
  if (ctx) MC_CHECK_RC(api, ctx, api->context_destroy(ctx), MOECOMM_SUCCESS);
  return ok;
}

static int rank_main(int rank, int world, void *arg) {
  const moecomm_api_t *api;
  cudaStream_t s = NULL;
  (void)world;
  (void)arg;
  setenv("NCCL_NVLS_ENABLE", "0", 1);
  api = mc_test_plugin();
  if (!MC_CUDA_OK(cudaSetDevice(rank)) ||
      !MC_CUDA_OK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking)))
    return 1;
  if (part_a(api, rank, s) && part_b(api, rank, s) && part_c(api, rank, s) && part_d(api, rank, s))
    part_e(api, rank, s);
  cudaStreamDestroy(s);
  return 0;
}

int main(int argc, char **argv) {
  mc_test_init("custom_graph", argc, argv);
  if (!mc_test_need_gpus(NRANKS)) return mc_test_finish();
  mc_test_ranks(NRANKS, rank_main, NULL, 300);
  return mc_test_finish();
}
