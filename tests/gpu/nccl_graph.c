/* SPDX-License-Identifier: Apache-2.0 */
/* nccl_graph.c - NCCL collectives on several groups captured in one CUDA graph and replayed
 * (2 ranks on 2 GPUs, MOECOMM_BACKEND=nccl).
 *
 * Topology tp=2, ep=2, attn_cp=2: TP, MOE_EP, ATTN_CP, MOE_CP and WORLD have both ranks, ATTN_TP
 * has one.  Pass 1 shares one communicator between them and creates it before capture (global
 * capture mode, what engines use).  Pass 2 sets MOECOMM_SHARE_COMMS=0, so each group has its own
 * NCCL communicator, and all but TP are created by their first collective inside the capture
 * (thread-local capture mode).  Each pass: capture_begin, stream capture of six collectives on
 * six groups (fp32, bf16, fp16, int32; sum, max; in and out of place; a size-1 group), capture_end,
 * then 100 replays, each with new inputs uploaded before the launch and outputs poisoned, all
 * checked against a float64 reference. */
#include <cuda_runtime_api.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../host_shim/lib/data.h"
#include "../common/harness.h"

#define NRANKS 2
#define REPLAYS 100
#define NOPS 6
#define MAXC 4096

typedef enum { K_AR, K_AG, K_RS, K_BC } kind_t;

/* One captured collective. */
typedef struct op_desc {
  int group; /* moecomm_group_kind_t */
  kind_t kind;
  moecomm_dtype_t dtype;
  moecomm_redop_t op;
  size_t count; /* all_reduce/broadcast: elements; all_gather: send; reduce_scatter: recv */
  int inplace;
  int root;
} op_desc_t;

static const op_desc_t k_ops[NOPS] = {
    {MOECOMM_GROUP_TP, K_AR, MOECOMM_FLOAT32, MOECOMM_SUM, 4096, 0, 0},
    {MOECOMM_GROUP_MOE_EP, K_AR, MOECOMM_BFLOAT16, MOECOMM_SUM, 1000, 1, 0},
    {MOECOMM_GROUP_ATTN_CP, K_AG, MOECOMM_FLOAT16, MOECOMM_SUM, 333, 0, 0},
    {MOECOMM_GROUP_MOE_CP, K_RS, MOECOMM_INT32, MOECOMM_MAX, 777, 0, 0},
    {MOECOMM_GROUP_WORLD, K_BC, MOECOMM_FLOAT32, MOECOMM_SUM, 2048, 0, 1},
    {MOECOMM_GROUP_ATTN_TP, K_AR, MOECOMM_FLOAT32, MOECOMM_SUM, 100, 0, 0}, /* size 1 */
};

typedef struct op_bufs {
  char *dsend, *drecv; /* device; fixed for the graph's life */
  size_t in_elems, out_elems;
  void *in[NRANKS]; /* host: every member's input of this replay */
  void *out;        /* host: the result */
  int gsize, grank; /* the group's size and this rank's index in it */
} op_bufs_t;

static int setup(const moecomm_api_t *api, moecomm_context_t *ctx, op_bufs_t *b) {
  for (int i = 0; i < NOPS; i++) {
    const op_desc_t *d = &k_ops[i];
    moecomm_group_t *g = NULL;
    moecomm_group_stats_t st;
    size_t esz = shim_dtype_size(d->dtype);
    memset(&st, 0, sizeof(st));
    st.struct_size = sizeof(st);
    if (!MC_CHECK_RC(api, ctx, api->group_get(ctx, (moecomm_group_kind_t)d->group, &g),
                     MOECOMM_SUCCESS) ||
        !MC_CHECK_RC(api, ctx, api->group_stats(g, &st), MOECOMM_SUCCESS))
      return 0;
    b[i].gsize = st.size;
    b[i].grank = st.rank;
    b[i].in_elems = d->kind == K_RS ? (size_t)st.size * d->count : d->count;
    b[i].out_elems = d->kind == K_AG ? (size_t)st.size * d->count : d->count;
    if (!MC_CUDA_OK(cudaMalloc((void **)&b[i].dsend, b[i].in_elems * esz)) ||
        !MC_CUDA_OK(cudaMalloc((void **)&b[i].drecv, NRANKS * MAXC * 4)))
      return 0;
    for (int r = 0; r < NRANKS; r++) b[i].in[r] = malloc(NRANKS * MAXC * 4);
    b[i].out = malloc(NRANKS * MAXC * 4);
    if (!MC_CHECK(b[i].in[0] && b[i].in[1] && b[i].out, "host malloc")) return 0;
  }
  return 1;
}

static void teardown(op_bufs_t *b) {
  for (int i = 0; i < NOPS; i++) {
    cudaFree(b[i].dsend);
    cudaFree(b[i].drecv);
    for (int r = 0; r < NRANKS; r++) free(b[i].in[r]);
    free(b[i].out);
  }
  memset(b, 0, sizeof(op_bufs_t) * NOPS);
}

/* Where op i reads from and writes to (in place: the recv buffer). */
static const void *send_ptr(const op_desc_t *d, const op_bufs_t *b) {
  if (!d->inplace) return b->dsend;
  if (d->kind == K_AG) return b->drecv + (size_t)b->grank * d->count * shim_dtype_size(d->dtype);
  return b->drecv;
}
static void *recv_ptr(const op_desc_t *d, const op_bufs_t *b) {
  if (d->inplace && d->kind == K_RS)
    return b->drecv + (size_t)b->grank * d->count * shim_dtype_size(d->dtype);
  return b->drecv;
}

/* Upload this replay's inputs (outside the graph) and poison the outputs. */
static int upload(const op_bufs_t *b, uint64_t replay, cudaStream_t s) {
  for (int i = 0; i < NOPS; i++) {
    const op_desc_t *d = &k_ops[i];
    size_t esz = shim_dtype_size(d->dtype);
    for (int m = 0; m < b[i].gsize; m++)
      mc_test_fill(b[i].in[m], b[i].in_elems, d->dtype, replay * 1000 + (uint64_t)i * 10 + m);
    if (!MC_CUDA_OK(cudaMemsetAsync(b[i].drecv, 0xff, NRANKS * MAXC * 4, s))) return 0;
    if (!MC_CUDA_OK(cudaMemcpyAsync((void *)send_ptr(d, &b[i]), b[i].in[b[i].grank],
                                    b[i].in_elems * esz, cudaMemcpyHostToDevice, s)))
      return 0;
  }
  return 1;
}

static int capture_ops(const moecomm_api_t *api, moecomm_context_t *ctx, op_bufs_t *b,
                       cudaStream_t s) {
  for (int i = 0; i < NOPS; i++) {
    const op_desc_t *d = &k_ops[i];
    moecomm_group_t *g = NULL;
    moecomm_result_t rc;
    if (!MC_CHECK_RC(api, ctx, api->group_get(ctx, (moecomm_group_kind_t)d->group, &g),
                     MOECOMM_SUCCESS))
      return 0;
    switch (d->kind) {
      case K_AR:
        rc = api->all_reduce(g, send_ptr(d, &b[i]), recv_ptr(d, &b[i]), d->count, d->dtype, d->op,
                             s);
        break;
      case K_AG:
        rc = api->all_gather(g, send_ptr(d, &b[i]), recv_ptr(d, &b[i]), d->count, d->dtype, s);
        break;
      case K_RS:
        rc = api->reduce_scatter(g, send_ptr(d, &b[i]), recv_ptr(d, &b[i]), d->count, d->dtype,
                                 d->op, s);
        break;
      default:
        rc = api->broadcast(g, send_ptr(d, &b[i]), recv_ptr(d, &b[i]), d->count, d->dtype, d->root,
                            s);
        break;
    }
    if (!MC_CHECK_RC(api, ctx, rc, MOECOMM_SUCCESS)) return 0;
  }
  return 1;
}

static int check_outputs(op_bufs_t *b, int pass, int replay) {
  int ok = 1;
  for (int i = 0; i < NOPS; i++) {
    const op_desc_t *d = &k_ops[i];
    size_t bad = 0, first = 0;
    const char *out = (const char *)recv_ptr(d, &b[i]);
    if (!MC_CUDA_OK(cudaMemcpy(b[i].out, out, b[i].out_elems * shim_dtype_size(d->dtype),
                               cudaMemcpyDeviceToHost)))
      return 0;
    for (size_t j = 0; j < b[i].out_elems; j++) {
      double e = 0;
      if (d->kind == K_AR || d->kind == K_RS) {
        size_t at = d->kind == K_RS ? (size_t)b[i].grank * d->count + j : j;
        for (int m = 0; m < b[i].gsize; m++) {
          double v = mc_test_get(b[i].in[m], at, d->dtype);
          e = m == 0 ? v : d->op == MOECOMM_MAX ? (v > e ? v : e) : e + v;
        }
      } else if (d->kind == K_AG) {
        e = mc_test_get(b[i].in[j / d->count], j % d->count, d->dtype);
      } else {
        e = mc_test_get(b[i].in[d->root], j, d->dtype);
      }
      if (mc_test_get(b[i].out, j, d->dtype) != e && bad++ == 0) first = j;
    }
    if (bad != 0) {
      ok = 0;
      MC_CHECK(bad == 0,
               "pass %d replay %d: op %d (group kind %d) %zu of %zu elements wrong, "
               "first at %zu",
               pass, replay, i, d->group, bad, b[i].out_elems, first);
    }
  }
  return ok;
}

static int run_pass(const moecomm_api_t *api, int rank, int pass) {
  moecomm_topology_t topo = mc_test_topo(NRANKS, rank, NRANKS);
  moecomm_context_params_t params = mc_test_ctx_params(&topo, rank);
  moecomm_context_t *ctx = NULL;
  op_bufs_t b[NOPS];
  cudaStream_t s = NULL;
  cudaGraph_t graph = NULL;
  cudaGraphExec_t exec = NULL;
  enum cudaStreamCaptureMode mode =
      pass == 1 ? cudaStreamCaptureModeGlobal : cudaStreamCaptureModeThreadLocal;
  moecomm_result_t rc;
  int ok = 0, good = 0;
  memset(b, 0, sizeof(b));
  topo.ep = 2;
  topo.attn_cp = 2;
  if (pass == 2) setenv("MOECOMM_SHARE_COMMS", "0", 1);
  rc = api->context_create(&params, &ctx);
  unsetenv("MOECOMM_SHARE_COMMS");
  if (!MC_CHECK_RC(api, NULL, rc, MOECOMM_SUCCESS)) return 0;
  if (!MC_CUDA_OK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking)) || !setup(api, ctx, b))
    goto out;

  if (!upload(b, 0, s)) goto out;
  if (pass == 1) {
    /* Everything once eagerly: creates the one shared communicator before capture. */
    if (!capture_ops(api, ctx, b, s) || !MC_CUDA_OK(cudaStreamSynchronize(s)) ||
        !check_outputs(b, pass, 0))
      goto out;
  } else {
    /* Only TP's communicator exists before capture; the others are born inside it. */
    moecomm_group_t *tp = NULL;
    if (!MC_CHECK_RC(api, ctx, api->group_get(ctx, MOECOMM_GROUP_TP, &tp), MOECOMM_SUCCESS) ||
        !MC_CHECK_RC(api, ctx,
                     api->all_reduce(tp, b[0].dsend, b[0].drecv, k_ops[0].count, k_ops[0].dtype,
                                     k_ops[0].op, s),
                     MOECOMM_SUCCESS) ||
        !MC_CUDA_OK(cudaStreamSynchronize(s)))
      goto out;
  }

  if (!MC_CHECK_RC(api, ctx, api->capture_begin(ctx, s), MOECOMM_SUCCESS)) goto out;
  if (!MC_CUDA_OK(cudaStreamBeginCapture(s, mode))) goto out;
  good = capture_ops(api, ctx, b, s);
  {
    cudaError_t e = cudaStreamEndCapture(s, &graph);
    if (good) good = MC_CUDA_OK(e);
  }
  rc = api->capture_end(ctx, s);
  if (!MC_CHECK_RC(api, ctx, rc, MOECOMM_SUCCESS) || !good) goto out;
  if (!MC_CUDA_OK(cudaGraphInstantiate(&exec, graph, 0))) goto out;

  for (int replay = 1; replay <= REPLAYS; replay++) {
    if (!upload(b, (uint64_t)pass * 100000 + (uint64_t)replay, s) ||
        !MC_CUDA_OK(cudaGraphLaunch(exec, s)) || !MC_CUDA_OK(cudaStreamSynchronize(s)))
      goto out;
    if (!check_outputs(b, pass, replay)) goto out;
  }
  MC_CHECK(1, "pass %d: %d replays checked", pass, REPLAYS);
  if (pass == 2) {
    /* Every group of the graph got its own communicator. */
    int ids[NOPS], n = 0;
    for (int i = 0; i < NOPS; i++) {
      moecomm_group_t *g = NULL;
      moecomm_group_stats_t st;
      memset(&st, 0, sizeof(st));
      st.struct_size = sizeof(st);
      if (api->group_get(ctx, (moecomm_group_kind_t)k_ops[i].group, &g) != MOECOMM_SUCCESS ||
          api->group_stats(g, &st) != MOECOMM_SUCCESS || st.size < 2)
        continue;
      MC_CHECK(st.created == 1 && st.device_bytes > 0, "%s created %d, %llu bytes", st.kind_name,
               (int)st.created, (unsigned long long)st.device_bytes);
      for (int j = 0; j < n; j++)
        MC_CHECK(ids[j] != st.comm_id, "%s shares comm_id %d", st.kind_name, (int)st.comm_id);
      ids[n++] = st.comm_id;
    }
    MC_CHECK(n == 5, "%d groups of 2 ranks, want 5", n);
  }
  ok = 1;
out:
  /* NCCL keeps a communicator alive while a graph refers to it: graphs go first. */
  if (exec) cudaGraphExecDestroy(exec);
  if (graph) cudaGraphDestroy(graph);
  if (ctx) MC_CHECK_RC(api, ctx, api->context_destroy(ctx), MOECOMM_SUCCESS);
  if (s) cudaStreamDestroy(s);
  teardown(b);
  return ok;
}

static int rank_main(int rank, int world, void *arg) {
  const moecomm_api_t *api;
  (void)world;
  (void)arg;
  setenv("MOECOMM_BACKEND", "nccl", 1);
  setenv("NCCL_NVLS_ENABLE", "0", 1);
  api = mc_test_plugin();
  if (!MC_CUDA_OK(cudaSetDevice(rank))) return 1;
  if (run_pass(api, rank, 1)) run_pass(api, rank, 2);
  return 0;
}

int main(int argc, char **argv) {
  mc_test_init("nccl_graph", argc, argv);
  if (!mc_test_need_gpus(NRANKS)) return mc_test_finish();
  mc_test_ranks(NRANKS, rank_main, NULL, 240);
  return mc_test_finish();
}
