/* SPDX-License-Identifier: Apache-2.0 */
/* custom_kernels.c - the custom all-reduce kernels driven directly, 2 to 8 members on one GPU.
 *
 * The 2-GPU machine cannot run more than 2 ranks with peer memory, so this white-box test checks
 * the member-count-dependent code (packet slots, parts, barrier rows, rank-order reduction) by
 * simulating every member in one process: one segment per member on the same device, one stream
 * per member, all kernels of a call launched together (grids kept small enough to be resident at
 * once, kern_world.h).  For 2..8 members: LL, one-shot, two-shot on staging (eager) and two-shot
 * on a table of buffers (captured), and the push kernels (two-shot and one-shot push),
 * fp32/fp16/bf16, sum/max/min, counts from 1 to 200 003 (past a ring's end for the push kernels),
 * misaligned pointers, in place; back-to-back calls of every algorithm on the same segments
 * (epochs, alternating halves).  Every result must equal the C reference of the deterministic rule
 * (mc_kern_ref_all_reduce: fp32, rank order, one rounding) bit for bit, integer inputs must also
 * give the exact sum, and real ones stay within rounding of the float64 reference.  Finally a
 * call where one member never launches: the others must give up after the timeout and record
 * which member did not answer, for every algorithm. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../kernels/rmsnorm_ref.h"
#include "custom_util.h"
#include "kern_world.h"

#define MAXN 8
#define LL_PAYLOAD (64u << 10)
#define STAGE_HALF (1u << 20)
#define BUF_BYTES (1u << 20)
#define GUARD 64

typedef struct world {
  kw_world_t k;
  char *in[MAXN], *out[MAXN]; /* BUF_BYTES + 2 * GUARD each */
  mc_kern_ptrs_t *table;      /* MAXN entries, one per member */
  void *hin[MAXN], *want, *bits, *got[MAXN];
} world_t;

static int world_open(world_t *w, int n) {
  memset(w, 0, sizeof(*w));
  if (!kw_open(&w->k, n, LL_PAYLOAD, STAGE_HALF)) return 0;
  for (int r = 0; r < n; r++) {
    if (!MC_CUDA_OK(cudaMalloc((void **)&w->in[r], BUF_BYTES + 2 * GUARD)) ||
        !MC_CUDA_OK(cudaMalloc((void **)&w->out[r], BUF_BYTES + 2 * GUARD)))
      return 0;
    w->hin[r] = malloc(BUF_BYTES);
    w->got[r] = malloc(BUF_BYTES);
    if (!MC_CHECK(w->hin[r] && w->got[r], "host buffers")) return 0;
  }
  w->want = malloc(BUF_BYTES);
  w->bits = malloc(BUF_BYTES);
  return MC_CHECK(w->want != NULL && w->bits != NULL, "host buffers") &&
         MC_CUDA_OK(cudaMalloc((void **)&w->table, sizeof(mc_kern_ptrs_t) * MAXN));
}

static void world_close(world_t *w) {
  (void)cudaDeviceSynchronize();
  for (int r = 0; r < w->k.n; r++) {
    cudaFree(w->in[r]);
    cudaFree(w->out[r]);
    free(w->hin[r]);
    free(w->got[r]);
  }
  free(w->want);
  free(w->bits);
  cudaFree(w->table);
  kw_close(&w->k);
}

/* Launches one call on members [0, n) except `skip` (-1: none); in place when inplace. */
static int launch(world_t *w, int algo, int table, moecomm_dtype_t dt, moecomm_redop_t op,
                  size_t count, int in_off, int out_off, int inplace, int skip,
                  uint64_t timeout_ns) {
  mc_kern_ptrs_t ent[MAXN];
  const int n = w->k.n;
  /* the set-up copies ran on the legacy stream, which the members' streams do not wait for */
  if (!MC_CUDA_OK(cudaDeviceSynchronize())) return 0;
  memset(ent, 0, sizeof(ent));
  for (int r = 0; r < n; r++) {
    for (int q = 0; q < n; q++) {
      ent[r].in[q] = w->in[q] + GUARD + in_off;
      ent[r].out[q] = inplace ? w->in[q] + GUARD + in_off : w->out[q] + GUARD + out_off;
    }
  }
  if (table && (!MC_CUDA_OK(cudaMemcpy(w->table, ent, sizeof(ent), cudaMemcpyHostToDevice)) ||
                !MC_CUDA_OK(cudaDeviceSynchronize())))
    return 0;
  for (int r = 0; r < n; r++) {
    mc_kern_ar_t a = kw_ar(&w->k, r, timeout_ns);
    int e;
    if (r == skip) continue;
    a.algo = algo;
    a.dtype = (int)dt;
    a.op = (int)op;
    a.count = count;
    a.in = ent[r].in[r];
    a.out = ent[r].out[r];
    a.table = table ? w->table + r : NULL;
    a.pdl = (int)(count & 1); /* both launch kinds, consecutive calls on each member's stream */
    e = mc_kern_all_reduce(&a, w->k.s[r]);
    if (!MC_CHECK(e == 0, "mc_kern_all_reduce: %s", cudaGetErrorString((cudaError_t)e))) return 0;
  }
  return kw_sync(&w->k);
}

static const char *algo_name(int algo, int table) {
  switch (algo) {
    case MC_KERN_LL: return "ll";
    case MC_KERN_ONESHOT: return "oneshot";
    case MC_KERN_TWOSHOT: return table ? "twoshot-table" : "twoshot";
    case MC_KERN_TWOSHOT_PUSH: return "twoshot-push";
    default: return "oneshot-push";
  }
}

/* Variant v of the loops: algorithm and whether it runs on a table of buffers. */
#define NVARIANTS 6
static int variant_algo(int v) {
  return v <= 2 ? v + 1 : v == 3 ? MC_KERN_TWOSHOT : v;
}
static int variant_table(int v) {
  return v == 3;
}

/* Largest count*es a variant takes in this world. */
static size_t variant_max_bytes(int algo) {
  return algo == MC_KERN_LL ? LL_PAYLOAD : algo <= MC_KERN_TWOSHOT ? STAGE_HALF - 16 : BUF_BYTES;
}

static int check_result(world_t *w, moecomm_dtype_t dt, moecomm_redop_t op, size_t count, int kind,
                        const char *what) {
  const size_t bytes = count * shim_dtype_size(dt);
  const void *ins[MAXN];
  for (int r = 0; r < w->k.n; r++) ins[r] = w->hin[r];
  /* the deterministic rule, bit for bit, on every member */
  mc_kern_ref_all_reduce(ins, w->k.n, count, (int)dt, (int)op, w->bits);
  for (int r = 0; r < w->k.n; r++)
    if (!cu_compare(w->got[r], w->bits, count, dt, what)) return 0;
  if (kind == 0) { /* integers: also the exact result */
    cu_reference(w->want, w->hin, w->k.n, count, dt, op);
    return MC_CHECK(memcmp(w->bits, w->want, bytes) == 0, "%s: rule is not the exact sum", what);
  }
  {
    const double rel = dt == MOECOMM_FLOAT32 ? 1e-5 : dt == MOECOMM_FLOAT16 ? 4e-3 : 3e-2;
    for (size_t i = 0; i < count; i++) {
      double e = cu_expect(w->hin, w->k.n, i, dt, op), g = mc_test_get(w->got[0], i, dt);
      double mag = 0;
      for (int r = 0; r < w->k.n; r++) mag += fabs(mc_test_get(w->hin[r], i, dt));
      if (fabs(g - e) > rel * mag + 1e-30)
        return MC_CHECK(0, "%s: element %zu is %.9g, float64 reference %.9g", what, i, g, e);
    }
  }
  return 1;
}

static int run_case(world_t *w, int algo, int table, moecomm_dtype_t dt, moecomm_redop_t op,
                    size_t count, int in_off, int out_off, int inplace, int kind, uint64_t seed) {
  const size_t es = shim_dtype_size(dt), bytes = count * es;
  char what[160];
  snprintf(what, sizeof(what), "n=%d %s %s op %d count %zu in+%d out+%d%s kind %d", w->k.n,
           algo_name(algo, table), shim_dtype_name(dt), (int)op, count, in_off, out_off,
           inplace ? " in place" : "", kind);
  for (int r = 0; r < w->k.n; r++) {
    cu_fill(w->hin[r], count, dt, kind, seed * 16 + (uint64_t)r);
    if (!MC_CUDA_OK(cudaMemset(w->in[r], 0xff, BUF_BYTES + 2 * GUARD)) ||
        !MC_CUDA_OK(cudaMemset(w->out[r], 0xff, BUF_BYTES + 2 * GUARD)) ||
        !MC_CUDA_OK(
            cudaMemcpy(w->in[r] + GUARD + in_off, w->hin[r], bytes, cudaMemcpyHostToDevice)))
      return 0;
  }
  if (!launch(w, algo, table, dt, op, count, in_off, out_off, inplace, -1, 10000000000ull) ||
      !kw_no_error(&w->k, what))
    return 0;
  for (int r = 0; r < w->k.n; r++) {
    const char *dev = inplace ? w->in[r] + GUARD + in_off : w->out[r] + GUARD + out_off;
    unsigned char edge[2 * GUARD];
    if (!MC_CUDA_OK(cudaMemcpy(w->got[r], dev, bytes, cudaMemcpyDeviceToHost)) ||
        !MC_CUDA_OK(cudaMemcpy(edge, dev - GUARD, GUARD, cudaMemcpyDeviceToHost)) ||
        !MC_CUDA_OK(cudaMemcpy(edge + GUARD, dev + bytes, GUARD, cudaMemcpyDeviceToHost)))
      return 0;
    for (int k = 0; k < 2 * GUARD; k++)
      if (edge[k] != 0xff)
        return MC_CHECK(0, "%s: member %d wrote outside its output (guard byte %d)", what, r, k);
  }
  return check_result(w, dt, op, count, kind, what);
}

/* One member never launches: the others time out and name it. */
static int check_timeouts(world_t *w) {
  int ok = 1;
  for (int v = 0; v < NVARIANTS && ok; v++) {
    const int algo = variant_algo(v);
    if (variant_table(v)) continue;
    ok = kw_reset(&w->k) &&
         launch(w, algo, 0, MOECOMM_FLOAT32, MOECOMM_SUM, 1000, 0, 0, 0, 2, 300000000ull);
    for (int r = 0; ok && r < 2; r++)
      ok = MC_CHECK(w->k.err_h[r]->code == MC_KERN_ERR_TIMEOUT && w->k.err_h[r]->peer == 2 &&
                        w->k.err_h[r]->algo == (uint32_t)algo,
                    "n=3 %s without member 2: member %d recorded code %u peer %d algo %u",
                    algo_name(algo, 0), r, w->k.err_h[r]->code, w->k.err_h[r]->peer,
                    w->k.err_h[r]->algo);
  }
  /* a table entry never filled: nothing is touched, the error says so */
  if (ok) {
    mc_kern_ptrs_t zero[MAXN];
    memset(zero, 0, sizeof(zero));
    ok = kw_reset(&w->k) &&
         MC_CUDA_OK(cudaMemcpy(w->table, zero, sizeof(zero), cudaMemcpyHostToDevice)) &&
         MC_CUDA_OK(cudaDeviceSynchronize());
    for (int r = 0; ok && r < w->k.n; r++) {
      mc_kern_ar_t a = kw_ar(&w->k, r, 300000000ull);
      a.algo = MC_KERN_TWOSHOT;
      a.dtype = MOECOMM_FLOAT32;
      a.count = 1000;
      a.in = w->in[r];
      a.out = w->out[r];
      a.table = w->table + r;
      ok = MC_CHECK(mc_kern_all_reduce(&a, w->k.s[r]) == 0, "launch") &&
           MC_CUDA_OK(cudaStreamSynchronize(w->k.s[r])) &&
           MC_CHECK(w->k.err_h[r]->code == MC_KERN_ERR_UNREGISTERED,
                    "unregistered entry: member %d recorded code %u", r, w->k.err_h[r]->code);
    }
  }
  return ok;
}

static int run_world(int n) {
  static const size_t counts[] = {1, 7, 8, 33, 1000, 4099, 20000, 65536, 200003};
  static const moecomm_dtype_t dts[3] = {MOECOMM_FLOAT32, MOECOMM_FLOAT16, MOECOMM_BFLOAT16};
  world_t w;
  uint64_t seed = (uint64_t)n * 1000;
  int ok;
  if (!world_open(&w, n)) return 0;
  ok = 1;
  for (int v = 0; v < NVARIANTS && ok; v++) {
    const int algo = variant_algo(v), table = variant_table(v);
    for (int d = 0; d < 3 && ok; d++) {
      for (size_t k = 0; k < sizeof(counts) / sizeof(counts[0]) && ok; k++) {
        const size_t c = counts[k];
        if (c * shim_dtype_size(dts[d]) > variant_max_bytes(algo)) continue;
        ok = run_case(&w, algo, table, dts[d], MOECOMM_SUM, c, 0, 0, 0, (int)(k & 1), ++seed);
      }
      /* max/min, misaligned and in place at one size */
      if (ok) ok = run_case(&w, algo, table, dts[d], MOECOMM_MAX, 1000, 0, 0, 0, 1, ++seed);
      if (ok) ok = run_case(&w, algo, table, dts[d], MOECOMM_MIN, 1000, 2, 4, 0, 0, ++seed);
      if (ok) ok = run_case(&w, algo, table, dts[d], MOECOMM_SUM, 4099, 4, 2, 0, 1, ++seed);
      if (ok) ok = run_case(&w, algo, table, dts[d], MOECOMM_SUM, 4099, 2, 0, 1, 0, ++seed);
    }
  }
  /* every algorithm back to back on the same segments: halves and epochs shared by all */
  for (int round = 0; round < 3 && ok; round++)
    for (int v = 0; v < NVARIANTS && ok; v++)
      ok = run_case(&w, variant_algo(v), variant_table(v), MOECOMM_BFLOAT16, MOECOMM_SUM,
                    3000 + 7 * (size_t)v, round, 0, 0, 1, ++seed);
  if (ok && n == 3) ok = check_timeouts(&w);
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
