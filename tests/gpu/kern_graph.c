/* SPDX-License-Identifier: Apache-2.0 */
/* kern_graph.c - every kernel captured into a CUDA graph and replayed 1000 times with new inputs
 * between replays, 2..8 simulated members on one GPU (kern_world.h).
 *
 * One graph per (members, algorithm) holds one call of every member (forked from and joined to a
 * capture stream).  Before each replay one of four input sets is copied into the inputs (and the
 * residual, for the fused op) and the outputs are poisoned; after it every member's output must
 * equal the C reference for that set, bit for bit (real-valued inputs).  The staging half is
 * small (128 KiB), so the push kernels wrap their rings several times in every replay, and the
 * call counter advances by one per replay like an eager call.  Plain all-reduce: LL, one-shot,
 * two-shot on staging, two-shot on a table of the captured buffers, two-shot push and one-shot
 * push (bf16, 3001 elements for the first four, 100 003 for the push kernels); fused: LL,
 * one-shot push and two-shot push, bf16, T = 37, H = 1024, fp8 output on. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../kernels/rmsnorm_ref.h"
#include "custom_util.h"
#include "kern_world.h"

#define SETS 4
#define REPLAYS 1000
#define STAGE_HALF (128u << 10)
#define PLAIN_MAX 100003
#define T_ROWS 37
#define H_COLS 1024
#define NVARIANTS 9 /* 6 plain, 3 fused */

typedef struct gw {
  kw_world_t k;
  cudaStream_t cap;
  cudaEvent_t fork, join[KW_MAXN];
  mc_kern_ptrs_t *table;
  /* device: the working buffers, and SETS copies of every member's inputs */
  uint16_t *in[KW_MAXN], *out[KW_MAXN], *res[KW_MAXN], *w;
  uint8_t *q[KW_MAXN];
  float *sc[KW_MAXN];
  uint16_t *set_in[SETS][KW_MAXN], *set_res[SETS];
  /* host: expected outputs per set */
  uint16_t *want[SETS], *want_res[SETS], *got;
  uint8_t *want_q[SETS], *got_q;
  float want_sc[SETS][T_ROWS], got_sc[T_ROWS];
} gw_t;

static int variant_algo(int v) {
  static const int a[NVARIANTS] = {MC_KERN_LL,      MC_KERN_ONESHOT,      MC_KERN_TWOSHOT,
                                   MC_KERN_TWOSHOT, MC_KERN_TWOSHOT_PUSH, MC_KERN_ONESHOT_PUSH,
                                   MC_KERN_LL,      MC_KERN_ONESHOT_PUSH, MC_KERN_TWOSHOT_PUSH};
  return a[v];
}
static int variant_fused(int v) {
  return v >= 6;
}
static size_t variant_count(int v) {
  return variant_fused(v) ? (size_t)T_ROWS * H_COLS : v >= 4 ? PLAIN_MAX : 3001;
}

static int gw_open(gw_t *g, int n) {
  const size_t bytes = PLAIN_MAX * 2;
  memset(g, 0, sizeof(*g));
  if (!kw_open(&g->k, n, 128u << 10, STAGE_HALF) ||
      !MC_CUDA_OK(cudaStreamCreateWithFlags(&g->cap, cudaStreamNonBlocking)) ||
      !MC_CUDA_OK(cudaEventCreateWithFlags(&g->fork, cudaEventDisableTiming)) ||
      !MC_CUDA_OK(cudaMalloc((void **)&g->table, sizeof(mc_kern_ptrs_t) * KW_MAXN)) ||
      !MC_CUDA_OK(cudaMalloc((void **)&g->w, H_COLS * 2)))
    return 0;
  for (int m = 0; m < n; m++) {
    if (!MC_CUDA_OK(cudaEventCreateWithFlags(&g->join[m], cudaEventDisableTiming)) ||
        !MC_CUDA_OK(cudaMalloc((void **)&g->in[m], bytes)) ||
        !MC_CUDA_OK(cudaMalloc((void **)&g->out[m], bytes)) ||
        !MC_CUDA_OK(cudaMalloc((void **)&g->res[m], bytes)) ||
        !MC_CUDA_OK(cudaMalloc((void **)&g->q[m], bytes)) ||
        !MC_CUDA_OK(cudaMalloc((void **)&g->sc[m], T_ROWS * sizeof(float))))
      return 0;
    for (int s = 0; s < SETS; s++)
      if (!MC_CUDA_OK(cudaMalloc((void **)&g->set_in[s][m], bytes))) return 0;
  }
  for (int s = 0; s < SETS; s++) {
    g->want[s] = malloc(bytes);
    g->want_res[s] = malloc(bytes);
    g->want_q[s] = malloc(bytes);
    if (!MC_CHECK(g->want[s] && g->want_res[s] && g->want_q[s], "host buffers") ||
        !MC_CUDA_OK(cudaMalloc((void **)&g->set_res[s], bytes)))
      return 0;
  }
  g->got = malloc(bytes);
  g->got_q = malloc(bytes);
  return MC_CHECK(g->got && g->got_q, "host buffers");
}

static void gw_close(gw_t *g) {
  (void)cudaDeviceSynchronize();
  for (int m = 0; m < g->k.n; m++) {
    cudaEventDestroy(g->join[m]);
    cudaFree(g->in[m]);
    cudaFree(g->out[m]);
    cudaFree(g->res[m]);
    cudaFree(g->q[m]);
    cudaFree(g->sc[m]);
    for (int s = 0; s < SETS; s++) cudaFree(g->set_in[s][m]);
  }
  for (int s = 0; s < SETS; s++) {
    free(g->want[s]);
    free(g->want_res[s]);
    free(g->want_q[s]);
    cudaFree(g->set_res[s]);
  }
  free(g->got);
  free(g->got_q);
  cudaFree(g->table);
  cudaFree(g->w);
  cudaEventDestroy(g->fork);
  cudaStreamDestroy(g->cap);
  kw_close(&g->k);
}

/* Input sets and their expected outputs for variant v. */
static int make_sets(gw_t *g, int v, uint64_t seed) {
  const size_t count = variant_count(v);
  uint16_t *h[KW_MAXN], *hr = malloc(count * 2), hw[H_COLS];
  const void *ins[KW_MAXN];
  uint64_t st = seed;
  int ok = MC_CHECK(hr != NULL, "host buffers");
  for (int m = 0; m < g->k.n; m++) {
    h[m] = malloc(count * 2);
    ok = ok && MC_CHECK(h[m] != NULL, "host buffers");
    ins[m] = h[m];
  }
  for (int k = 0; k < H_COLS; k++) hw[k] = mc_kern_ref_to_bf16(0.5f + (float)(k % 97) / 97);
  ok = ok && MC_CUDA_OK(cudaMemcpy(g->w, hw, sizeof(hw), cudaMemcpyHostToDevice));
  for (int s = 0; s < SETS && ok; s++) {
    for (int m = 0; m < g->k.n; m++) {
      for (size_t i = 0; i < count; i++) h[m][i] = mc_kern_ref_to_bf16(kw_real(&st));
      ok = ok && MC_CUDA_OK(cudaMemcpy(g->set_in[s][m], h[m], count * 2, cudaMemcpyHostToDevice));
    }
    /* the fused op's all-reduce result goes to got, its y to want */
    mc_kern_ref_all_reduce(ins, g->k.n, count, MOECOMM_BFLOAT16, MOECOMM_SUM,
                           variant_fused(v) ? g->got : g->want[s]);
    if (!variant_fused(v)) continue;
    for (size_t i = 0; i < count; i++) hr[i] = mc_kern_ref_to_bf16(kw_real(&st));
    memcpy(g->want_res[s], hr, count * 2);
    ok = ok && MC_CUDA_OK(cudaMemcpy(g->set_res[s], hr, count * 2, cudaMemcpyHostToDevice)) &&
         MC_CHECK(mc_kern_ref_add_rmsnorm(MOECOMM_BFLOAT16, T_ROWS, H_COLS, g->got, g->want_res[s],
                                          hw, 1e-6f, g->want[s], g->want_q[s], g->want_sc[s]) == 0,
                  "reference");
  }
  for (int m = 0; m < g->k.n; m++) free(h[m]);
  free(hr);
  return ok && MC_CUDA_OK(cudaDeviceSynchronize());
}

/* Captures one call of every member of variant v. */
static int capture(gw_t *g, int v, cudaGraphExec_t *exec_p) {
  const int n = g->k.n, algo = variant_algo(v);
  int ok = 1;
  if (v == 3) { /* the captured two-shot reads and writes the callers' buffers: register them */
    mc_kern_ptrs_t ent[KW_MAXN];
    memset(ent, 0, sizeof(ent));
    for (int r = 0; r < n; r++)
      for (int m = 0; m < n; m++) {
        ent[r].in[m] = g->in[m];
        ent[r].out[m] = g->out[m];
      }
    ok = MC_CUDA_OK(cudaMemcpy(g->table, ent, sizeof(ent), cudaMemcpyHostToDevice));
  }
  ok = ok && kw_capture_begin(&g->k, g->cap, g->fork);
  for (int m = 0; m < n && ok; m++) {
    int e;
    if (variant_fused(v)) {
      mc_kern_arn_t a = kw_arn(&g->k, m, 10000000000ull);
      a.algo = algo;
      a.dtype = MOECOMM_BFLOAT16;
      a.rows = T_ROWS;
      a.hidden = H_COLS;
      a.x = g->in[m];
      a.residual = g->res[m];
      a.weight = g->w;
      a.eps = 1e-6f;
      a.y = g->out[m];
      a.y_fp8 = g->q[m];
      a.y_scale = g->sc[m];
      a.pdl = v & 1;
      e = mc_kern_ar_rmsnorm(&a, g->k.s[m]);
    } else {
      mc_kern_ar_t a = kw_ar(&g->k, m, 10000000000ull);
      a.algo = algo;
      a.dtype = MOECOMM_BFLOAT16;
      a.op = MOECOMM_SUM;
      a.count = variant_count(v);
      a.in = g->in[m];
      a.out = g->out[m];
      a.table = v == 3 ? g->table + m : NULL;
      a.pdl = v & 1;
      e = mc_kern_all_reduce(&a, g->k.s[m]);
    }
    ok = MC_CHECK(e == 0, "capture variant %d member %d: %s", v, m,
                  cudaGetErrorString((cudaError_t)e));
  }
  return kw_capture_end(&g->k, g->cap, g->join, exec_p) && ok;
}

/* One replay on input set s and its check. */
static int replay(gw_t *g, int v, cudaGraphExec_t exec, int s, int i) {
  const size_t count = variant_count(v), bytes = count * 2;
  const int fused = variant_fused(v);
  for (int m = 0; m < g->k.n; m++)
    if (!MC_CUDA_OK(
            cudaMemcpyAsync(g->in[m], g->set_in[s][m], bytes, cudaMemcpyDeviceToDevice, g->cap)) ||
        !MC_CUDA_OK(cudaMemsetAsync(g->out[m], 0xee, bytes, g->cap)) ||
        (fused && (!MC_CUDA_OK(cudaMemcpyAsync(g->res[m], g->set_res[s], bytes,
                                               cudaMemcpyDeviceToDevice, g->cap)) ||
                   !MC_CUDA_OK(cudaMemsetAsync(g->q[m], 0xee, count, g->cap)))))
      return 0;
  if (!MC_CUDA_OK(cudaGraphLaunch(exec, g->cap)) || !MC_CUDA_OK(cudaStreamSynchronize(g->cap)))
    return 0;
  for (int m = 0; m < g->k.n; m++) {
    if (!MC_CUDA_OK(cudaMemcpy(g->got, g->out[m], bytes, cudaMemcpyDeviceToHost)) ||
        !MC_CHECK(memcmp(g->got, g->want[s], bytes) == 0,
                  "n=%d variant %d replay %d (set %d): member %d output differs", g->k.n, v, i, s,
                  m))
      return 0;
    if (!fused) continue;
    if (!MC_CUDA_OK(cudaMemcpy(g->got, g->res[m], bytes, cudaMemcpyDeviceToHost)) ||
        !MC_CUDA_OK(cudaMemcpy(g->got_q, g->q[m], count, cudaMemcpyDeviceToHost)) ||
        !MC_CUDA_OK(cudaMemcpy(g->got_sc, g->sc[m], sizeof(g->got_sc), cudaMemcpyDeviceToHost)) ||
        !MC_CHECK(memcmp(g->got, g->want_res[s], bytes) == 0 &&
                      memcmp(g->got_q, g->want_q[s], count) == 0 &&
                      memcmp(g->got_sc, g->want_sc[s], sizeof(g->got_sc)) == 0,
                  "n=%d fused variant %d replay %d: member %d residual, fp8 or scales differ",
                  g->k.n, v, i, m))
      return 0;
  }
  return 1;
}

static int run_world(int n) {
  gw_t g;
  int ok;
  if (!gw_open(&g, n)) return 0;
  ok = 1;
  for (int v = 0; v < NVARIANTS && ok; v++) {
    cudaGraphExec_t exec = NULL;
    mc_kern_state_t st;
    int i;
    ok = kw_reset(&g.k) && make_sets(&g, v, (uint64_t)(n * 100 + v)) && capture(&g, v, &exec);
    for (i = 0; i < REPLAYS && ok; i++) ok = replay(&g, v, exec, (i * 7 + i / 3) % SETS, i);
    ok = ok && kw_no_error(&g.k, "replays") &&
         MC_CUDA_OK(
             cudaMemcpy(&st, g.k.seg[0] + MC_KERN_STATE_OFF, sizeof(st), cudaMemcpyDeviceToHost)) &&
         MC_CHECK(st.epoch == 1 + REPLAYS, "n=%d variant %d: call counter %llu after %d replays", n,
                  v, (unsigned long long)st.epoch, REPLAYS);
    MC_CHECK(ok, "n=%d variant %d (algo %d%s): %d replays", n, v, variant_algo(v),
             variant_fused(v) ? ", fused" : "", i);
    if (exec) cudaGraphExecDestroy(exec);
  }
  gw_close(&g);
  return ok;
}

int main(int argc, char **argv) {
  mc_test_init("kern_graph", argc, argv);
  if (!mc_test_need_gpus(1)) return mc_test_finish();
  if (!MC_CUDA_OK(cudaSetDevice(0))) return mc_test_finish();
  for (int n = 2; n <= KW_MAXN; n++)
    if (!run_world(n)) break;
  return mc_test_finish();
}
