/* SPDX-License-Identifier: Apache-2.0 */
/* scatter_gpu.c - scatter-mode transitions on 2 GPUs, eager and inside a captured CUDA graph.
 *
 * Passes (each a fresh context on both ranks, rank r on GPU r):
 *   1. tp2 ep2 attn_cp2 moe_dp1 (MOE_FULL: attn_tp 1, MOE_CP = MOE_EP = TP), default backend;
 *   2. tp2 ep2 (attn_cp 1: attn_tp 2, MOE_CP of one rank), default backend;
 *   3. tp2 ep2 attn_cp2 moe_dp1 again with MOECOMM_BACKEND=nccl and nothing run before capture,
 *      so every communicator is created inside the capture (thread-local capture mode).
 * Eager (passes 1, 2): every supported (from, to, reduce) for uneven token counts per attention
 * group (one set with a group at 0) in fp32 with 20-byte rows (unaligned block offsets) and in
 * bf16 with 4 KB rows; unsupported pairs -> MOECOMM_ERR_NOT_SUPPORTED.  Captured (all passes):
 * capture_begin, stream capture of all supported transitions (own buffers each), end capture,
 * instantiate, capture_end, then several replays, each with new inputs uploaded into the same
 * buffers and outputs poisoned first; every replay is verified.  Expected rows come from
 * host_shim/lib/scatter_ref.h, exactly, padding and untouched rows past the end included. */
#include <cuda_runtime_api.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../host_shim/lib/scatter_ref.h"
#include "../common/harness.h"

#define NRANKS 2
#define REPLAYS 4
#define SLACK 2
#define NTR 24 /* supported (from, to, reduce) */

static const moecomm_api_t *api;

/* By hand from abi/moecomm.h: no reduce from SCATTERED, no FULL <-> MOE_FULL. */
static int supported(int from, int to, int reduce) {
  if (from == MOECOMM_SCATTERED && reduce) return 0;
  if ((from == MOECOMM_FULL && to == MOECOMM_MOE_FULL) ||
      (from == MOECOMM_MOE_FULL && to == MOECOMM_FULL))
    return 0;
  return 1;
}

typedef struct data_set {
  int32_t tokens[2]; /* T per attention group (attn_cp 2) or T[0] (attn_cp 1) */
  moecomm_dtype_t dtype;
  size_t hidden;
} data_set_t;

typedef struct gpass {
  const char *name;
  int ep, attn_cp;
  const char *backend; /* MOECOMM_BACKEND, NULL: default */
  int eager;           /* run the eager sets before capture */
  data_set_t sets[3];  /* eager sets; sets[capture_set] is also captured */
  int capture_set;
  enum cudaStreamCaptureMode mode;
} gpass_t;

static const gpass_t k_passes[] = {
    {"tp2 ep2 attn_cp2 moe_dp1",
     2,
     2,
     NULL,
     1,
     {{{5, 3}, MOECOMM_FLOAT32, 5},
      {{3, 0}, MOECOMM_FLOAT32, 5},
      {{64, 40}, MOECOMM_BFLOAT16, 2048}},
     2,
     cudaStreamCaptureModeGlobal},
    {"tp2 ep2",
     2,
     1,
     NULL,
     1,
     {{{6}, MOECOMM_FLOAT32, 5}, {{0}, MOECOMM_FLOAT32, 5}, {{128}, MOECOMM_BFLOAT16, 2048}},
     2,
     cudaStreamCaptureModeGlobal},
    {"tp2 ep2 attn_cp2 moe_dp1, nccl, communicators born in capture",
     2,
     2,
     "nccl",
     0,
     {{{0}, MOECOMM_FLOAT32, 1}, {{0}, MOECOMM_FLOAT32, 1}, {{7, 12}, MOECOMM_FLOAT32, 5}},
     2,
     cudaStreamCaptureModeThreadLocal},
};
#define NPASSES ((int)(sizeof(k_passes) / sizeof(k_passes[0])))

typedef struct tr {
  int from, to, reduce;
  char *d_send, *d_recv;
} tr_t;

typedef struct gx {
  int rank;
  moecomm_context_t *ctx;
  cudaStream_t s;
  sref_t ref;
  int32_t tokens[2];
  size_t cap_rows, cap_bytes; /* per buffer (SLACK rows included) */
  char *h_in, *h_out, *h_want, *scratch;
  tr_t tr[NTR];
  int ntr;
} gx_t;

static void use_set(gx_t *x, const data_set_t *d, uint64_t seed) {
  memcpy(x->tokens, d->tokens, sizeof(x->tokens));
  x->ref.tokens = x->tokens;
  x->ref.dtype = d->dtype;
  x->ref.hidden = d->hidden;
  x->ref.seed = seed;
}

/* Writes tr's input for the current data into its send buffer and poisons its recv buffer. */
static int upload(gx_t *x, const tr_t *t) {
  size_t rin = sref_rows(&x->ref, x->rank, t->from) * sref_row_bytes(&x->ref);
  sref_input(&x->ref, x->rank, t->from, t->to, t->reduce, x->h_in);
  return MC_CUDA_OK(cudaMemcpyAsync(t->d_send, x->h_in, rin, cudaMemcpyHostToDevice, x->s)) &&
         MC_CUDA_OK(cudaMemsetAsync(t->d_recv, 0xff, x->cap_bytes, x->s)) &&
         MC_CUDA_OK(cudaStreamSynchronize(x->s));
}

/* Checks tr's output (and, without reduce, that its input is intact) after the stream is idle. */
static int verify(gx_t *x, const tr_t *t, const char *tag) {
  const sref_t *s = &x->ref;
  size_t rb = sref_row_bytes(s), rout = sref_rows(s, x->rank, t->to);
  size_t rin = sref_rows(s, x->rank, t->from), bad, first = 0, past = 0;
  int ok = 1;
  if (!MC_CUDA_OK(cudaMemcpyAsync(x->h_out, t->d_recv, (rout + SLACK) * rb, cudaMemcpyDeviceToHost,
                                  x->s)) ||
      !MC_CUDA_OK(cudaStreamSynchronize(x->s)))
    return 0;
  sref_expect(s, x->rank, t->from, t->to, t->reduce, x->h_want, x->scratch);
  bad = sref_compare(s, x->h_out, x->h_want, rout, &first);
  ok &= MC_CHECK(bad == 0,
                 "%s rank %d: %s -> %s%s: %zu of %zu elements wrong, first in row %zu "
                 "(got %g, want %g)",
                 tag, x->rank, sref_mode_name(t->from), sref_mode_name(t->to),
                 t->reduce ? " reduce" : "", bad, rout * s->hidden, first,
                 bad ? mc_test_get(x->h_out, first * s->hidden, s->dtype) : 0.0,
                 bad ? mc_test_get(x->h_want, first * s->hidden, s->dtype) : 0.0);
  for (size_t i = rout * rb; i < (rout + SLACK) * rb; i++)
    past += (unsigned char)x->h_out[i] != 0xff;
  ok &= MC_CHECK(past == 0, "%s rank %d: %s -> %s%s wrote %zu bytes past its %zu rows", tag,
                 x->rank, sref_mode_name(t->from), sref_mode_name(t->to),
                 t->reduce ? " reduce" : "", past, rout);
  if (!t->reduce && rin > 0) {
    if (!MC_CUDA_OK(cudaMemcpyAsync(x->h_out, t->d_send, rin * rb, cudaMemcpyDeviceToHost, x->s)) ||
        !MC_CUDA_OK(cudaStreamSynchronize(x->s)))
      return 0;
    sref_input(s, x->rank, t->from, t->to, t->reduce, x->h_in);
    ok &= MC_CHECK(memcmp(x->h_in, x->h_out, rin * rb) == 0, "%s rank %d: %s -> %s changed send",
                   tag, x->rank, sref_mode_name(t->from), sref_mode_name(t->to));
  }
  return ok;
}

static moecomm_result_t issue(gx_t *x, const tr_t *t) {
  moecomm_scatter_args_t a = mc_test_scatter_args(t->from, t->to, t->reduce, x->ref.dtype,
                                                  x->ref.hidden, x->tokens, t->d_send, t->d_recv);
  return api->scatter(x->ctx, &a, x->s);
}

static int eager_set(gx_t *x, const data_set_t *d, int set, const char *name) {
  char tag[192];
  int ok = 1;
  snprintf(tag, sizeof(tag), "%s, eager set %d", name, set);
  use_set(x, d, 1000 + (uint64_t)set);
  for (int i = 0; i < x->ntr; i++) {
    tr_t *t = &x->tr[i];
    if (!upload(x, t)) return 0;
    if (!MC_CHECK_RC(api, x->ctx, issue(x, t), MOECOMM_SUCCESS)) {
      printf("[rank %d] ... %s: %s -> %s%s\n", x->rank, tag, sref_mode_name(t->from),
             sref_mode_name(t->to), t->reduce ? " reduce" : "");
      return 0;
    }
    if (!MC_CUDA_OK(cudaStreamSynchronize(x->s))) return 0;
    ok &= verify(x, t, tag);
  }
  /* Pairs it cannot do: refused before any work is enqueued. */
  for (int from = 0; from < 4; from++)
    for (int to = 0; to < 4; to++)
      for (int reduce = 0; reduce < 2; reduce++) {
        tr_t t = {from, to, reduce, x->tr[0].d_send, x->tr[0].d_recv};
        moecomm_result_t r;
        if (supported(from, to, reduce)) continue;
        r = issue(x, &t);
        ok &= MC_CHECK(r == MOECOMM_ERR_NOT_SUPPORTED,
                       "%s rank %d: %s -> %s%s: result %d, want "
                       "NOT_SUPPORTED",
                       tag, x->rank, sref_mode_name(from), sref_mode_name(to),
                       reduce ? " reduce" : "", (int)r);
      }
  return ok;
}

static int captured(gx_t *x, const gpass_t *p) {
  cudaGraph_t graph = NULL;
  cudaGraphExec_t exec = NULL;
  char tag[192];
  int good = 1, ok = 0;
  use_set(x, &p->sets[p->capture_set], 5000);
  if (!MC_CHECK_RC(api, x->ctx, api->capture_begin(x->ctx, x->s), MOECOMM_SUCCESS)) return 0;
  if (!MC_CUDA_OK(cudaStreamBeginCapture(x->s, p->mode))) {
    api->capture_end(x->ctx, x->s); /* collective: peers must not wait for this rank */
    return 0;
  }
  for (int i = 0; i < x->ntr && good; i++) {
    good = MC_CHECK_RC(api, x->ctx, issue(x, &x->tr[i]), MOECOMM_SUCCESS);
    if (!good)
      printf("[rank %d] ... captured %s: %s -> %s%s\n", x->rank, p->name,
             sref_mode_name(x->tr[i].from), sref_mode_name(x->tr[i].to),
             x->tr[i].reduce ? " reduce" : "");
  }
  {
    cudaError_t e = cudaStreamEndCapture(x->s, &graph);
    if (good) good = MC_CUDA_OK(e);
  }
  if (good) good = MC_CUDA_OK(cudaGraphInstantiate(&exec, graph, 0));
  /* capture_end runs even after a local failure: it is collective over the world. */
  if (!MC_CHECK_RC(api, x->ctx, api->capture_end(x->ctx, x->s), MOECOMM_SUCCESS) || !good) goto out;
  for (int rep = 0; rep < REPLAYS; rep++) {
    int all = 1;
    snprintf(tag, sizeof(tag), "%s, replay %d", p->name, rep);
    x->ref.seed = 6000 + (uint64_t)rep;
    for (int i = 0; i < x->ntr; i++)
      if (!upload(x, &x->tr[i])) goto out;
    if (!MC_CUDA_OK(cudaGraphLaunch(exec, x->s)) || !MC_CUDA_OK(cudaStreamSynchronize(x->s)))
      goto out;
    for (int i = 0; i < x->ntr; i++) all &= verify(x, &x->tr[i], tag);
    if (!all) goto out;
  }
  MC_CHECK(1, "%s: %d replays of %d captured transitions verified", p->name, REPLAYS, x->ntr);
  ok = 1;
out:
  if (exec) cudaGraphExecDestroy(exec);
  if (graph) cudaGraphDestroy(graph);
  return ok;
}

static int run_pass(int rank, const gpass_t *p) {
  moecomm_topology_t topo = mc_test_topo(NRANKS, rank, NRANKS);
  moecomm_context_params_t params;
  gx_t x;
  size_t maxrow = 0;
  int32_t maxt = 1;
  int ok = 0;
  memset(&x, 0, sizeof(x));
  x.rank = rank;
  topo.ep = p->ep;
  topo.attn_cp = p->attn_cp;
  topo.moe_dp = 1;
  if (p->backend)
    setenv("MOECOMM_BACKEND", p->backend, 1);
  else
    unsetenv("MOECOMM_BACKEND");
  params = mc_test_ctx_params(&topo, rank);
  if (!MC_CHECK_RC(api, NULL, api->context_create(&params, &x.ctx), MOECOMM_SUCCESS)) return 0;
  x.ref = sref_make(NRANKS, NRANKS, p->ep, 1, p->attn_cp, 1);
  for (int s = 0; s < 3; s++) {
    size_t rb = p->sets[s].hidden * sref_esize(p->sets[s].dtype);
    for (int g = 0; g < x.ref.ngroups; g++)
      if (p->sets[s].tokens[g] > maxt) maxt = p->sets[s].tokens[g];
    if (rb > maxrow) maxrow = rb;
  }
  x.cap_rows = (size_t)NRANKS * (size_t)maxt + SLACK;
  x.cap_bytes = x.cap_rows * maxrow;
  x.h_in = malloc(x.cap_bytes);
  x.h_out = malloc(x.cap_bytes);
  x.h_want = malloc(x.cap_bytes);
  x.scratch = malloc(maxrow);
  if (!MC_CHECK(x.h_in && x.h_out && x.h_want && x.scratch, "host malloc")) goto out;
  if (!MC_CUDA_OK(cudaStreamCreateWithFlags(&x.s, cudaStreamNonBlocking))) goto out;
  for (int from = 0; from < 4; from++)
    for (int to = 0; to < 4; to++)
      for (int reduce = 0; reduce < 2; reduce++) {
        tr_t *t;
        if (!supported(from, to, reduce)) continue;
        t = &x.tr[x.ntr++];
        t->from = from;
        t->to = to;
        t->reduce = reduce;
        if (!MC_CUDA_OK(cudaMalloc((void **)&t->d_send, x.cap_bytes)) ||
            !MC_CUDA_OK(cudaMalloc((void **)&t->d_recv, x.cap_bytes)))
          goto out;
      }
  MC_CHECK(x.ntr == NTR, "%d supported transitions, want %d", x.ntr, NTR);
  if (p->eager)
    for (int s = 0; s < 3; s++)
      if (!eager_set(&x, &p->sets[s], s, p->name)) goto out;
  ok = captured(&x, p);
out:
  /* Graphs are gone (captured() destroys them) before the context. */
  if (x.ctx) MC_CHECK_RC(api, x.ctx, api->context_destroy(x.ctx), MOECOMM_SUCCESS);
  for (int i = 0; i < x.ntr; i++) {
    cudaFree(x.tr[i].d_send);
    cudaFree(x.tr[i].d_recv);
  }
  if (x.s) cudaStreamDestroy(x.s);
  free(x.h_in);
  free(x.h_out);
  free(x.h_want);
  free(x.scratch);
  unsetenv("MOECOMM_BACKEND");
  return ok;
}

static int rank_main(int rank, int world, void *arg) {
  (void)world;
  (void)arg;
  setenv("NCCL_NVLS_ENABLE", "0", 1);
  api = mc_test_plugin();
  if (!MC_CHECK(MOECOMM_API_HAS(api, scatter) && MOECOMM_API_HAS(api, mode_rows),
                "the plugin lacks the ABI 1.1 scatter slots"))
    return 1;
  if (!MC_CUDA_OK(cudaSetDevice(rank))) return 1;
  /* A pass that failed may have left a peer mid-collective: stop there. */
  for (int i = 0; i < NPASSES; i++)
    if (!run_pass(rank, &k_passes[i])) break;
  return 0;
}

int main(int argc, char **argv) {
  mc_test_init("scatter_gpu", argc, argv);
  if (!mc_test_need_gpus(NRANKS)) return mc_test_finish();
  mc_test_ranks(NRANKS, rank_main, NULL, 90);
  return mc_test_finish();
}
