/* SPDX-License-Identifier: Apache-2.0 */
/* kern_fused.c - the fused all-reduce + residual add + RMSNorm (mc_kern_ar_rmsnorm) with 2..8
 * simulated members on one GPU (kern_world.h), against the C reference of its definition
 * (kernels/rmsnorm_ref.c), bit for bit.
 *
 * For every member count, algorithm (LL one-shot, one-shot push, two-shot push) and dtype
 * (fp16, bf16): T in {1, 3, 8, 64} x H in {128, 4096, 7168}, and T = 512 for 2, 3 and 8
 * members; real-valued random inputs of mixed sign and magnitude (so every rounding matters),
 * residual and weight random too.  Every member's y, new residual and (every other case) fp8
 * copy and scales must equal the reference; outputs are poisoned first and guard bytes after them
 * must stay.  y in place of x; the grid capped to one block (teams reuse ring positions many
 * times); back-to-back calls share the segments with the plain all-reduce.  Bad arguments are
 * refused before anything is launched.  One member never launching: the others record a timeout
 * naming it, with MC_KERN_FUSED in the algorithm. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../kernels/rmsnorm_ref.h"
#include "custom_util.h"
#include "kern_world.h"

#define STAGE_HALF (4u << 20)
#define LL_PAYLOAD (8u << 20) /* the LL kernel holds all of a call: 512 x 7168 bf16 */
#define MAXT 512
#define MAXH 7168
#define GUARD 256 /* bytes after each output */

typedef struct bufs {
  kw_world_t k;
  uint16_t *x[KW_MAXN], *r[KW_MAXN], *y[KW_MAXN], *w;
  uint8_t *q[KW_MAXN];
  float *sc[KW_MAXN];
  /* host */
  uint16_t *hx[KW_MAXN], *hr, *hw, *ha, *er, *ey, *got;
  uint8_t *eq, *gq;
  float *esc, *gsc;
} bufs_t;

static int bufs_open(bufs_t *b, int n) {
  const size_t el = (size_t)MAXT * MAXH, bytes = el * 2 + GUARD;
  memset(b, 0, sizeof(*b));
  if (!kw_open(&b->k, n, LL_PAYLOAD, STAGE_HALF)) return 0;
  for (int m = 0; m < n; m++) {
    if (!MC_CUDA_OK(cudaMalloc((void **)&b->x[m], bytes)) ||
        !MC_CUDA_OK(cudaMalloc((void **)&b->r[m], bytes)) ||
        !MC_CUDA_OK(cudaMalloc((void **)&b->y[m], bytes)) ||
        !MC_CUDA_OK(cudaMalloc((void **)&b->q[m], el + GUARD)) ||
        !MC_CUDA_OK(cudaMalloc((void **)&b->sc[m], MAXT * sizeof(float) + GUARD)))
      return 0;
    b->hx[m] = malloc(el * 2);
    if (!MC_CHECK(b->hx[m] != NULL, "host buffers")) return 0;
  }
  b->hr = malloc(el * 2);
  b->ha = malloc(el * 2);
  b->er = malloc(el * 2);
  b->ey = malloc(el * 2);
  b->got = malloc(el * 2 + GUARD);
  b->hw = malloc(MAXH * 2);
  b->eq = malloc(el);
  b->gq = malloc(el + GUARD);
  b->esc = malloc(MAXT * sizeof(float));
  b->gsc = malloc(MAXT * sizeof(float) + GUARD);
  return MC_CHECK(b->hr && b->ha && b->er && b->ey && b->got && b->hw && b->eq && b->gq && b->esc &&
                      b->gsc,
                  "host buffers") &&
         MC_CUDA_OK(cudaMalloc((void **)&b->w, MAXH * 2));
}

static void bufs_close(bufs_t *b) {
  (void)cudaDeviceSynchronize();
  for (int m = 0; m < b->k.n; m++) {
    cudaFree(b->x[m]);
    cudaFree(b->r[m]);
    cudaFree(b->y[m]);
    cudaFree(b->q[m]);
    cudaFree(b->sc[m]);
    free(b->hx[m]);
  }
  cudaFree(b->w);
  free(b->hr);
  free(b->ha);
  free(b->er);
  free(b->ey);
  free(b->got);
  free(b->hw);
  free(b->eq);
  free(b->gq);
  free(b->esc);
  free(b->gsc);
  kw_close(&b->k);
}

static uint16_t to_dt(int dt, float f) {
  return dt == MOECOMM_FLOAT16 ? mc_kern_ref_to_half(f) : mc_kern_ref_to_bf16(f);
}

/* Random inputs for T x H, uploaded; outputs poisoned; the reference computed. */
static int prepare(bufs_t *b, int dt, size_t T, size_t H, float eps, int fp8, uint64_t seed) {
  const size_t el = T * H;
  const void *ins[KW_MAXN];
  uint64_t st = seed;
  for (int m = 0; m < b->k.n; m++) {
    for (size_t i = 0; i < el; i++) b->hx[m][i] = to_dt(dt, kw_real(&st));
    ins[m] = b->hx[m];
  }
  for (size_t i = 0; i < el; i++) b->hr[i] = to_dt(dt, kw_real(&st));
  for (size_t h = 0; h < H; h++)
    b->hw[h] = to_dt(dt, 0.5f + (float)(mc_test_rand(&st) % 4096) / 4096);
  mc_kern_ref_all_reduce(ins, b->k.n, el, dt, MOECOMM_SUM, b->ha);
  memcpy(b->er, b->hr, el * 2);
  if (!MC_CHECK(mc_kern_ref_add_rmsnorm(dt, T, H, b->ha, b->er, b->hw, eps, b->ey,
                                        fp8 ? b->eq : NULL, fp8 ? b->esc : NULL) == 0,
                "reference"))
    return 0;
  if (!MC_CUDA_OK(cudaMemcpy(b->w, b->hw, H * 2, cudaMemcpyHostToDevice))) return 0;
  for (int m = 0; m < b->k.n; m++)
    if (!MC_CUDA_OK(cudaMemcpy(b->x[m], b->hx[m], el * 2, cudaMemcpyHostToDevice)) ||
        !MC_CUDA_OK(cudaMemcpy(b->r[m], b->hr, el * 2, cudaMemcpyHostToDevice)) ||
        !MC_CUDA_OK(cudaMemset((char *)b->r[m] + el * 2, 0xee, GUARD)) ||
        !MC_CUDA_OK(cudaMemset(b->y[m], 0xee, el * 2 + GUARD)) ||
        !MC_CUDA_OK(cudaMemset(b->q[m], 0xee, el + GUARD)) ||
        !MC_CUDA_OK(cudaMemset(b->sc[m], 0xee, T * sizeof(float) + GUARD)))
      return 0;
  return MC_CUDA_OK(cudaDeviceSynchronize());
}

static mc_kern_arn_t fused_args(const bufs_t *b, int m, int algo, int dt, size_t T, size_t H,
                                float eps, int fp8, int inplace, uint64_t timeout_ns) {
  mc_kern_arn_t a = kw_arn(&b->k, m, timeout_ns);
  a.algo = algo;
  a.dtype = dt;
  a.rows = T;
  a.hidden = H;
  a.x = b->x[m];
  a.residual = b->r[m];
  a.weight = b->w;
  a.eps = eps;
  a.y = inplace ? b->x[m] : b->y[m];
  a.y_fp8 = fp8 ? b->q[m] : NULL;
  a.y_scale = fp8 ? b->sc[m] : NULL;
  a.pdl = (int)(T & 1);
  return a;
}

static int guard_ok(const uint8_t *p, const char *what, int m, const char *which) {
  for (int k = 0; k < GUARD; k++)
    if (p[k] != 0xee) return MC_CHECK(0, "%s: member %d wrote past its %s", what, m, which);
  return 1;
}

/* Every member's outputs against the reference. */
static int compare(bufs_t *b, size_t T, size_t H, int fp8, int inplace, const char *what) {
  const size_t el = T * H;
  int ok = 1;
  for (int m = 0; m < b->k.n && ok; m++) {
    ok = MC_CUDA_OK(cudaMemcpy(b->got, b->r[m], el * 2 + GUARD, cudaMemcpyDeviceToHost)) &&
         MC_CHECK(memcmp(b->got, b->er, el * 2) == 0, "%s: member %d residual differs", what, m) &&
         guard_ok((uint8_t *)b->got + el * 2, what, m, "residual");
    ok = ok && MC_CUDA_OK(cudaMemcpy(b->got, inplace ? b->x[m] : b->y[m],
                                     el * 2 + (inplace ? 0 : GUARD), cudaMemcpyDeviceToHost));
    if (ok && memcmp(b->got, b->ey, el * 2) != 0) {
      size_t i = 0;
      while (b->got[i] == b->ey[i]) i++;
      ok = MC_CHECK(0, "%s: member %d y[%zu,%zu] = %04x, reference %04x", what, m, i / H, i % H,
                    b->got[i], b->ey[i]);
    }
    if (ok && !inplace) ok = guard_ok((uint8_t *)b->got + el * 2, what, m, "y");
    if (ok && fp8) {
      ok = MC_CUDA_OK(cudaMemcpy(b->gq, b->q[m], el + GUARD, cudaMemcpyDeviceToHost)) &&
           MC_CUDA_OK(
               cudaMemcpy(b->gsc, b->sc[m], T * sizeof(float) + GUARD, cudaMemcpyDeviceToHost)) &&
           MC_CHECK(memcmp(b->gsc, b->esc, T * sizeof(float)) == 0,
                    "%s: member %d scales differ (row 0: %g, reference %g)", what, m, b->gsc[0],
                    b->esc[0]) &&
           guard_ok((uint8_t *)b->gsc + T * sizeof(float), what, m, "scales") &&
           guard_ok(b->gq + el, what, m, "fp8 y");
      if (ok && memcmp(b->gq, b->eq, el) != 0) {
        size_t i = 0;
        while (b->gq[i] == b->eq[i]) i++;
        ok = MC_CHECK(0, "%s: member %d fp8 y[%zu,%zu] = %02x, reference %02x", what, m, i / H,
                      i % H, b->gq[i], b->eq[i]);
      }
    }
  }
  return ok && MC_CHECK(1, "%s", what);
}

static const char *algo_name(int algo) {
  return algo == MC_KERN_LL ? "ll" : algo == MC_KERN_ONESHOT_PUSH ? "oneshot-push" : "twoshot-push";
}

/* One fused call on every member but `skip`, then its check. */
static int run_case(bufs_t *b, int algo, int dt, size_t T, size_t H, int fp8, int inplace,
                    int max_blocks, uint64_t seed) {
  const float eps = (seed & 1) ? 1e-6f : 1e-5f;
  char what[160];
  snprintf(what, sizeof(what), "n=%d fused %s %s T %zu H %zu%s%s%s", b->k.n, algo_name(algo),
           dt == MOECOMM_FLOAT16 ? "fp16" : "bf16", T, H, fp8 ? " fp8" : "",
           inplace ? " in place" : "", max_blocks ? " one block" : "");
  if (!prepare(b, dt, T, H, eps, fp8, seed)) return 0;
  for (int m = 0; m < b->k.n; m++) {
    mc_kern_arn_t a = fused_args(b, m, algo, dt, T, H, eps, fp8, inplace, 10000000000ull);
    int e;
    if (max_blocks) a.max_blocks = max_blocks;
    e = mc_kern_ar_rmsnorm(&a, b->k.s[m]);
    if (!MC_CHECK(e == 0, "%s: launch: %s", what, cudaGetErrorString((cudaError_t)e))) return 0;
  }
  return kw_sync(&b->k) && kw_no_error(&b->k, what) && compare(b, T, H, fp8, inplace, what);
}

static const int kAlgos[3] = {MC_KERN_LL, MC_KERN_ONESHOT_PUSH, MC_KERN_TWOSHOT_PUSH};

/* Arguments outside the contract are refused and nothing runs (the call counter stays). */
static int check_refusals(bufs_t *b) {
  int ok = 1;
  for (int i = 0; i < 9 && ok; i++) {
    mc_kern_arn_t a = fused_args(b, 0, MC_KERN_LL, MOECOMM_BFLOAT16, 8, 128, 1e-6f, 1, 0, 0);
    mc_kern_state_t st;
    switch (i) {
      case 0: a.hidden = 12; break;
      case 1: a.x = (const char *)a.x + 2; break;
      case 2: a.y = a.residual; break;
      case 3: a.y_scale = NULL; break;
      case 4: a.dtype = MOECOMM_FLOAT32; break;
      case 5: a.rows = 0; break;
      case 6: a.rank = b->k.n; break;
      case 7: a.algo = MC_KERN_ONESHOT; break;
      default: a.eps = -1.0f; break;
    }
    ok = MC_CHECK(mc_kern_ar_rmsnorm(&a, b->k.s[0]) == (int)cudaErrorInvalidValue,
                  "bad argument %d accepted", i) &&
         MC_CUDA_OK(cudaStreamSynchronize(b->k.s[0])) &&
         MC_CUDA_OK(cudaMemcpy(&st, b->k.seg[0] + MC_KERN_STATE_OFF, sizeof(st),
                               cudaMemcpyDeviceToHost)) &&
         MC_CHECK(st.epoch == 1, "bad argument %d: a kernel ran (epoch %llu)", i,
                  (unsigned long long)st.epoch);
  }
  return ok;
}

static int check_timeout(bufs_t *b) {
  int ok = 1;
  for (int i = 0; i < 3 && ok; i++) {
    ok = kw_reset(&b->k) && prepare(b, MOECOMM_BFLOAT16, 8, 4096, 1e-6f, 0, 5);
    for (int m = 0; ok && m < b->k.n - 1; m++) {
      mc_kern_arn_t a =
          fused_args(b, m, kAlgos[i], MOECOMM_BFLOAT16, 8, 4096, 1e-6f, 0, 0, 300000000ull);
      ok = MC_CHECK(mc_kern_ar_rmsnorm(&a, b->k.s[m]) == 0, "launch");
    }
    ok = ok && kw_sync(&b->k);
    for (int m = 0; ok && m < b->k.n - 1; m++)
      ok = MC_CHECK(b->k.err_h[m]->code == MC_KERN_ERR_TIMEOUT &&
                        b->k.err_h[m]->peer == b->k.n - 1 &&
                        b->k.err_h[m]->algo == ((uint32_t)kAlgos[i] | MC_KERN_FUSED),
                    "fused %s without member %d: member %d recorded code %u peer %d algo %x",
                    algo_name(kAlgos[i]), b->k.n - 1, m, b->k.err_h[m]->code, b->k.err_h[m]->peer,
                    b->k.err_h[m]->algo);
  }
  return ok && kw_reset(&b->k);
}

static int run_world(int n) {
  static const size_t Ts[] = {1, 3, 8, 64, 512};
  static const size_t Hs[] = {128, 4096, 7168};
  bufs_t b;
  uint64_t seed = (uint64_t)n << 20;
  int ok, cases = 0;
  if (!bufs_open(&b, n)) return 0;
  ok = check_refusals(&b);
  for (int a = 0; a < 3 && ok; a++)
    for (int dt = MOECOMM_FLOAT16; dt <= MOECOMM_BFLOAT16 && ok; dt++)
      for (size_t t = 0; t < sizeof(Ts) / sizeof(Ts[0]) && ok; t++)
        for (size_t h = 0; h < sizeof(Hs) / sizeof(Hs[0]) && ok; h++) {
          if (Ts[t] == 512 && n != 2 && n != 3 && n != 8) continue;
          ok = run_case(&b, kAlgos[a], dt, Ts[t], Hs[h], ++cases & 1, 0, 0, ++seed);
        }
  for (int a = 0; a < 3 && ok; a++) {
    ok = run_case(&b, kAlgos[a], MOECOMM_BFLOAT16, 64, 4096, 1, 1, 0, ++seed);
    if (ok) ok = run_case(&b, kAlgos[a], MOECOMM_FLOAT16, 77, 1024, 1, 0, 1, ++seed);
  }
  /* fused and plain calls back to back on the same segments */
  for (int i = 0; i < 6 && ok; i++) {
    ok = run_case(&b, kAlgos[i % 3], MOECOMM_BFLOAT16, 9, 256, 0, 0, 0, ++seed);
    for (int m = 0; ok && m < n; m++) {
      mc_kern_ar_t a = kw_ar(&b.k, m, 10000000000ull);
      a.algo = i % 2 ? MC_KERN_TWOSHOT_PUSH : MC_KERN_LL;
      a.dtype = MOECOMM_BFLOAT16;
      a.count = 5000;
      a.in = b.x[m];
      a.out = b.y[m];
      ok = MC_CHECK(mc_kern_all_reduce(&a, b.k.s[m]) == 0, "plain all-reduce between fused calls");
    }
    ok = ok && kw_sync(&b.k) && kw_no_error(&b.k, "plain all-reduce between fused calls");
  }
  if (ok && n == 3) ok = check_timeout(&b);
  bufs_close(&b);
  return ok;
}

int main(int argc, char **argv) {
  mc_test_init("kern_fused", argc, argv);
  if (!mc_test_need_gpus(1)) return mc_test_finish();
  if (!MC_CUDA_OK(cudaSetDevice(0))) return mc_test_finish();
  for (int n = 2; n <= KW_MAXN; n++)
    if (!run_world(n)) break;
  return mc_test_finish();
}
