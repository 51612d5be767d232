/* custom_kernels.c - the custom all-reduce kernels driven directly, 2 to 8 members on one GPU.
 *
 * The 2-GPU machine cannot run more than 2 ranks with peer memory, so this white-box test checks
 * the member-count-dependent code (packet slots, parts, barrier rows, rank-order reduction) by
 * simulating every member in one process: one segment per member on the same device, one stream
 * per member, all kernels of a call launched together (grids kept small enough to be resident at
 * once).  For 2..8 members: LL, one-shot, two-shot on staging (eager) and two-shot on a table of
 * buffers (captured), fp32/fp16/bf16, sum/max/min, counts from 1 to tens of thousands, misaligned
 * pointers; back-to-back calls on the same segments (epochs, alternating halves).  Integer inputs
 * must give the exact sum; real inputs must give the same bits on every member and stay within
 * rounding of the float64 reference.  Finally a call where one member never launches: the others
 * must give up after the timeout and record which member did not answer. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../kernels/mc_kernels.h"
#include "custom_util.h"

#define MAXN 8
#define LL_PAYLOAD (64u << 10)
#define STAGE_HALF (1u << 20)
#define BUF_BYTES (1u << 20)
#define GUARD 64

typedef struct world {
  int n, sms;
  char *seg[MAXN];
  size_t ll_off, ll_slot, stage_off, seg_bytes;
  mc_kern_err_t *err_h[MAXN], *err_d[MAXN];
  cudaStream_t s[MAXN];
  char *in[MAXN], *out[MAXN]; /* BUF_BYTES + 2 * GUARD each */
  mc_kern_ptrs_t *table;      /* MAXN entries, one per member */
  void *hin[MAXN], *want, *got[MAXN];
} world_t;

static int world_reset(world_t *w) {
  mc_kern_state_t st;
  memset(&st, 0, sizeof(st));
  st.epoch = 1;
  for (int r = 0; r < w->n; r++) {
    if (!MC_CUDA_OK(cudaMemset(w->seg[r], 0, w->seg_bytes)) ||
        !MC_CUDA_OK(
            cudaMemcpy(w->seg[r] + MC_KERN_STATE_OFF, &st, sizeof(st), cudaMemcpyHostToDevice)))
      return 0;
    memset(w->err_h[r], 0, sizeof(mc_kern_err_t));
  }
  return 1;
}

static int world_open(world_t *w, int n) {
  memset(w, 0, sizeof(*w));
  w->n = n;
  if (!MC_CUDA_OK(cudaDeviceGetAttribute(&w->sms, cudaDevAttrMultiProcessorCount, 0))) return 0;
  w->ll_off = MC_KERN_HEADER_BYTES;
  w->ll_slot = 2 * (size_t)LL_PAYLOAD;
  w->stage_off = (w->ll_off + 2 * (size_t)n * w->ll_slot + 4095) & ~(size_t)4095;
  w->seg_bytes = w->stage_off + 2 * (size_t)STAGE_HALF;
  for (int r = 0; r < n; r++) {
    if (!MC_CUDA_OK(cudaMalloc((void **)&w->seg[r], w->seg_bytes)) ||
        !MC_CUDA_OK(
            cudaHostAlloc((void **)&w->err_h[r], sizeof(mc_kern_err_t), cudaHostAllocMapped)) ||
        !MC_CUDA_OK(cudaHostGetDevicePointer((void **)&w->err_d[r], w->err_h[r], 0)) ||
        !MC_CUDA_OK(cudaStreamCreateWithFlags(&w->s[r], cudaStreamNonBlocking)) ||
        !MC_CUDA_OK(cudaMalloc((void **)&w->in[r], BUF_BYTES + 2 * GUARD)) ||
        !MC_CUDA_OK(cudaMalloc((void **)&w->out[r], BUF_BYTES + 2 * GUARD)))
      return 0;
    w->hin[r] = malloc(BUF_BYTES);
    w->got[r] = malloc(BUF_BYTES);
    if (!MC_CHECK(w->hin[r] && w->got[r], "host buffers")) return 0;
  }
  w->want = malloc(BUF_BYTES);
  if (!MC_CHECK(w->want != NULL, "host buffers") ||
      !MC_CUDA_OK(cudaMalloc((void **)&w->table, sizeof(mc_kern_ptrs_t) * MAXN)))
    return 0;
  return world_reset(w);
}

static void world_close(world_t *w) {
  (void)cudaDeviceSynchronize();
  for (int r = 0; r < w->n; r++) {
    cudaFree(w->seg[r]);
    cudaFreeHost(w->err_h[r]);
    cudaStreamDestroy(w->s[r]);
    cudaFree(w->in[r]);
    cudaFree(w->out[r]);
    free(w->hin[r]);
    free(w->got[r]);
  }
  free(w->want);
  cudaFree(w->table);
  memset(w, 0, sizeof(*w));
}

/* Launches one call on members [0, n) except `skip` (-1: none); in place when inplace. */
static int launch(world_t *w, int algo, int table, moecomm_dtype_t dt, moecomm_redop_t op,
                  size_t count, int in_off, int out_off, int inplace, int skip,
                  uint64_t timeout_ns) {
  mc_kern_ptrs_t ent[MAXN];
  /* the set-up copies ran on the legacy stream, which the members' streams do not wait for */
  if (!MC_CUDA_OK(cudaDeviceSynchronize())) return 0;
  memset(ent, 0, sizeof(ent));
  for (int r = 0; r < w->n; r++) {
    for (int q = 0; q < w->n; q++) {
      ent[r].in[q] = w->in[q] + GUARD + in_off;
      ent[r].out[q] = inplace ? w->in[q] + GUARD + in_off : w->out[q] + GUARD + out_off;
    }
  }
  if (table && (!MC_CUDA_OK(cudaMemcpy(w->table, ent, sizeof(ent), cudaMemcpyHostToDevice)) ||
                !MC_CUDA_OK(cudaDeviceSynchronize())))
    return 0;
  for (int r = 0; r < w->n; r++) {
    mc_kern_ar_t a;
    int e;
    if (r == skip) continue;
    memset(&a, 0, sizeof(a));
    a.algo = algo;
    a.dtype = (int)dt;
    a.op = (int)op;
    a.rank = r;
    a.size = w->n;
    a.count = count;
    a.in = ent[r].in[r];
    a.out = ent[r].out[r];
    for (int q = 0; q < w->n; q++) a.seg[q] = w->seg[q];
    a.ll_off = w->ll_off;
    a.ll_slot_bytes = w->ll_slot;
    a.stage_off = w->stage_off;
    a.stage_half_bytes = STAGE_HALF;
    a.table = table ? w->table + r : NULL;
    a.err = w->err_d[r];
    a.timeout_ns = timeout_ns;
    a.pdl = (int)(count & 1); /* both launch kinds, consecutive calls on each member's stream */
    e = mc_kern_all_reduce(&a, w->s[r]);
    if (!MC_CHECK(e == 0, "mc_kern_all_reduce: %s", cudaGetErrorString((cudaError_t)e))) return 0;
  }
  for (int r = 0; r < w->n; r++)
    if (!MC_CUDA_OK(cudaStreamSynchronize(w->s[r]))) return 0;
  return 1;
}

/* Whether every member's grid fits on the GPU at once (a simulated call needs that). */
static int resident(const world_t *w, int algo, size_t count, moecomm_dtype_t dt) {
  int blocks, threads;
  mc_kern_shape(algo, w->n, count, (int)dt, 0, &blocks, &threads);
  return blocks * w->n <= w->sms;
}

static const char *algo_name(int algo, int table) {
  return algo == MC_KERN_LL        ? "ll"
         : algo == MC_KERN_ONESHOT ? "oneshot"
         : table                   ? "twoshot-table"
                                   : "twoshot";
}

static int run_case(world_t *w, int algo, int table, moecomm_dtype_t dt, moecomm_redop_t op,
                    size_t count, int in_off, int out_off, int inplace, int kind, uint64_t seed) {
  const size_t es = shim_dtype_size(dt), bytes = count * es;
  char what[160];
  snprintf(what, sizeof(what), "n=%d %s %s op %d count %zu in+%d out+%d%s kind %d", w->n,
           algo_name(algo, table), shim_dtype_name(dt), (int)op, count, in_off, out_off,
           inplace ? " in place" : "", kind);
  for (int r = 0; r < w->n; r++) {
    cu_fill(w->hin[r], count, dt, kind, seed * 16 + (uint64_t)r);
    if (!MC_CUDA_OK(cudaMemset(w->in[r], 0xff, BUF_BYTES + 2 * GUARD)) ||
        !MC_CUDA_OK(cudaMemset(w->out[r], 0xff, BUF_BYTES + 2 * GUARD)) ||
        !MC_CUDA_OK(
            cudaMemcpy(w->in[r] + GUARD + in_off, w->hin[r], bytes, cudaMemcpyHostToDevice)))
      return 0;
  }
  if (!launch(w, algo, table, dt, op, count, in_off, out_off, inplace, -1, 10000000000ull))
    return 0;
  for (int r = 0; r < w->n; r++) {
    const char *dev = inplace ? w->in[r] + GUARD + in_off : w->out[r] + GUARD + out_off;
    unsigned char edge[2 * GUARD];
    if (!MC_CHECK(w->err_h[r]->code == 0, "%s: member %d recorded error %u (peer %d)", what, r,
                  w->err_h[r]->code, w->err_h[r]->peer) ||
        !MC_CUDA_OK(cudaMemcpy(w->got[r], dev, bytes, cudaMemcpyDeviceToHost)) ||
        !MC_CUDA_OK(cudaMemcpy(edge, dev - GUARD, GUARD, cudaMemcpyDeviceToHost)) ||
        !MC_CUDA_OK(cudaMemcpy(edge + GUARD, dev + bytes, GUARD, cudaMemcpyDeviceToHost)))
      return 0;
    for (int k = 0; k < 2 * GUARD; k++)
      if (edge[k] != 0xff)
        return MC_CHECK(0, "%s: member %d wrote outside its output (guard byte %d)", what, r, k);
  }
  if (kind == 0) {
    cu_reference(w->want, w->hin, w->n, count, dt, op);
    for (int r = 0; r < w->n; r++)
      if (!cu_compare(w->got[r], w->want, count, dt, what)) return 0;
    return 1;
  }
  /* real inputs: identical bits everywhere, and within rounding of the float64 reference */
  for (int r = 1; r < w->n; r++)
    if (!MC_CHECK(memcmp(w->got[r], w->got[0], bytes) == 0, "%s: member %d differs from member 0",
                  what, r))
      return 0;
  {
    const double rel = dt == MOECOMM_FLOAT32 ? 1e-5 : dt == MOECOMM_FLOAT16 ? 4e-3 : 3e-2;
    for (size_t i = 0; i < count; i++) {
      double e = cu_expect(w->hin, w->n, i, dt, op), g = mc_test_get(w->got[0], i, dt);
      double mag = 0;
      for (int r = 0; r < w->n; r++) mag += fabs(mc_test_get(w->hin[r], i, dt));
      if (fabs(g - e) > rel * mag + 1e-30)
        return MC_CHECK(0, "%s: element %zu is %.9g, float64 reference %.9g", what, i, g, e);
    }
  }
  return MC_CHECK(1, "%s", what);
}

static int run_world(int n) {
  static const size_t counts[] = {1, 7, 8, 33, 1000, 4099, 20000, 65536};
  static const moecomm_dtype_t dts[3] = {MOECOMM_FLOAT32, MOECOMM_FLOAT16, MOECOMM_BFLOAT16};
  world_t w;
  uint64_t seed = (uint64_t)n * 1000;
  int ok;
  if (!world_open(&w, n)) return 0;
  ok = 1;
  for (int a = 0; a < 4 && ok; a++) {
    const int algo = a == 0 ? MC_KERN_LL : a == 1 ? MC_KERN_ONESHOT : MC_KERN_TWOSHOT;
    const int table = a == 3;
    for (int d = 0; d < 3 && ok; d++) {
      for (size_t k = 0; k < sizeof(counts) / sizeof(counts[0]) && ok; k++) {
        const size_t c = counts[k];
        if (c * shim_dtype_size(dts[d]) > (algo == MC_KERN_LL ? LL_PAYLOAD : BUF_BYTES - 16) ||
            !resident(&w, algo, c, dts[d]))
          continue;
        ok = run_case(&w, algo, table, dts[d], MOECOMM_SUM, c, 0, 0, 0, (int)(k & 1), ++seed);
      }
      /* max/min, misaligned and in place at one size */
      if (ok) ok = run_case(&w, algo, table, dts[d], MOECOMM_MAX, 1000, 0, 0, 0, 1, ++seed);
      if (ok) ok = run_case(&w, algo, table, dts[d], MOECOMM_MIN, 1000, 2, 4, 0, 0, ++seed);
      if (ok) ok = run_case(&w, algo, table, dts[d], MOECOMM_SUM, 4099, 4, 2, 0, 0, ++seed);
      if (ok) ok = run_case(&w, algo, table, dts[d], MOECOMM_SUM, 4099, 2, 0, 1, 0, ++seed);
    }
  }
  /* one member never launches: the others time out and name it */
  if (ok && n == 3) {
    for (int a = 0; a < 3 && ok; a++) {
      const int algo = a == 0 ? MC_KERN_LL : a == 1 ? MC_KERN_ONESHOT : MC_KERN_TWOSHOT;
      ok = world_reset(&w) &&
           launch(&w, algo, 0, MOECOMM_FLOAT32, MOECOMM_SUM, 1000, 0, 0, 0, 2, 300000000ull);
      for (int r = 0; ok && r < 2; r++)
        ok = MC_CHECK(w.err_h[r]->code == MC_KERN_ERR_TIMEOUT && w.err_h[r]->peer == 2,
                      "n=3 %s without member 2: member %d recorded code %u peer %d",
                      algo_name(algo, 0), r, w.err_h[r]->code, w.err_h[r]->peer);
    }
    /* a table entry never filled: nothing is touched, the error says so */
    if (ok) {
      mc_kern_ptrs_t zero[MAXN];
      memset(zero, 0, sizeof(zero));
      ok = world_reset(&w) &&
           MC_CUDA_OK(cudaMemcpy(w.table, zero, sizeof(zero), cudaMemcpyHostToDevice)) &&
           MC_CUDA_OK(cudaDeviceSynchronize());
      for (int r = 0; ok && r < n; r++) {
        mc_kern_ar_t a;
        memset(&a, 0, sizeof(a));
        a.algo = MC_KERN_TWOSHOT;
        a.dtype = MOECOMM_FLOAT32;
        a.rank = r;
        a.size = n;
        a.count = 1000;
        a.in = w.in[r];
        a.out = w.out[r];
        for (int q = 0; q < n; q++) a.seg[q] = w.seg[q];
        a.ll_off = w.ll_off;
        a.ll_slot_bytes = w.ll_slot;
        a.stage_off = w.stage_off;
        a.stage_half_bytes = STAGE_HALF;
        a.table = w.table + r;
        a.err = w.err_d[r];
        a.timeout_ns = 300000000ull;
        ok = MC_CHECK(mc_kern_all_reduce(&a, w.s[r]) == 0, "launch") &&
             MC_CUDA_OK(cudaStreamSynchronize(w.s[r])) &&
             MC_CHECK(w.err_h[r]->code == MC_KERN_ERR_UNREGISTERED,
                      "unregistered entry: member %d recorded code %u", r, w.err_h[r]->code);
      }
    }
  }
  world_close(&w);
  return ok;
}

int main(int argc, char **argv) {
  mc_test_init("custom_kernels", argc, argv);
  if (!mc_test_need_gpus(1)) return mc_test_finish();
  if (!MC_CUDA_OK(cudaSetDevice(0))) return mc_test_finish();
  if (!MC_CHECK(mc_kern_check_device() == 0, "the kernels have no image for device 0"))
    return mc_test_finish();
  for (int m = 2; m <= MAXN; m++)
    if (!run_world(m)) break;
  return mc_test_finish();
}
