/* SPDX-License-Identifier: Apache-2.0 */
/* kern_norm.c - the standalone residual add + RMSNorm (mc_kern_add_rmsnorm, kernels/norm.cu) on
 * one GPU, bit for bit against the definition (tests/common/rmsnorm_def.h, written from
 * kernels/mc_rmsnorm.h's words) and against kernels/rmsnorm_ref.c, which the CPU path runs.
 *
 * fp16 and bf16; T in {0, 1, 7, 33, 1024} with H in {8, 128, 4096, 7168, 16384} (the fused
 * kernels' row code) and H in {100, 4100, 16392, 20000} (the element-wise path: a short last
 * vector, past 16384), T = 4096 at H = 4096; the fp8 copy every other case; y in place of a;
 * every pointer moved by 2 bytes (element-wise path at every H); eps = +inf.  Inputs are reals of
 * mixed sign over 24 binades; outputs are poisoned first and guard bytes after them must stay;
 * T = 0 writes nothing.  Bad arguments return cudaErrorInvalidValue and launch nothing.
 *
 * Fused against unfused: with 2 and 3 simulated members (kern_world.h), every fused algorithm
 * (mc_kern_ar_rmsnorm) against the all-reduce kernel (mc_kern_all_reduce, two-shot push) followed
 * by this kernel on its result: the same y, residual, fp8 copy and scales. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../kernels/mc_norm.h"
#include "../../kernels/rmsnorm_ref.h"
#include "../common/rmsnorm_def.h"
#include "kern_world.h"

#define MAXEL ((size_t)4096 * 4096)
#define GUARD 256 /* bytes after each output */
#define POISON 0xee

typedef struct nbufs {
  char *a, *res, *w, *y, *q, *sc; /* device, MAXEL elements + GUARD (+ 16 for moving) */
  uint16_t *ha, *hres, *hw, *want, *want_res, *ref_y, *ref_res;
  uint8_t *want_q, *ref_q, *got;
  float *want_sc, *ref_sc;
} nbufs_t;

static int nbufs_open(nbufs_t *b) {
  const size_t bytes = MAXEL * 2 + GUARD + 16;
  memset(b, 0, sizeof(*b));
  if (!MC_CUDA_OK(cudaMalloc((void **)&b->a, bytes)) ||
      !MC_CUDA_OK(cudaMalloc((void **)&b->res, bytes)) ||
      !MC_CUDA_OK(cudaMalloc((void **)&b->w, 20000 * 2 + 16)) ||
      !MC_CUDA_OK(cudaMalloc((void **)&b->y, bytes)) ||
      !MC_CUDA_OK(cudaMalloc((void **)&b->q, MAXEL + GUARD + 16)) ||
      !MC_CUDA_OK(cudaMalloc((void **)&b->sc, 4096 * 4 + GUARD)))
    return 0;
  b->ha = malloc(MAXEL * 2);
  b->hres = malloc(MAXEL * 2);
  b->hw = malloc(20000 * 2);
  b->want = malloc(MAXEL * 2);
  b->want_res = malloc(MAXEL * 2);
  b->ref_y = malloc(MAXEL * 2);
  b->ref_res = malloc(MAXEL * 2);
  b->want_q = malloc(MAXEL);
  b->ref_q = malloc(MAXEL);
  b->got = malloc(MAXEL * 2 + GUARD);
  b->want_sc = malloc(4096 * 4);
  b->ref_sc = malloc(4096 * 4);
  return MC_CHECK(b->ha && b->hres && b->hw && b->want && b->want_res && b->ref_y && b->ref_res &&
                      b->want_q && b->ref_q && b->got && b->want_sc && b->ref_sc,
                  "host buffers");
}

static void nbufs_close(nbufs_t *b) {
  cudaFree(b->a);
  cudaFree(b->res);
  cudaFree(b->w);
  cudaFree(b->y);
  cudaFree(b->q);
  cudaFree(b->sc);
  free(b->ha);
  free(b->hres);
  free(b->hw);
  free(b->want);
  free(b->want_res);
  free(b->ref_y);
  free(b->ref_res);
  free(b->want_q);
  free(b->ref_q);
  free(b->got);
  free(b->want_sc);
  free(b->ref_sc);
}

/* n bytes at dev equal want (host); else one failed check naming the first difference. */
static int dev_same(const void *dev, const void *want, size_t n, size_t es, size_t H, void *tmp,
                    const char *what, const char *which) {
  size_t i = 0;
  if (!MC_CUDA_OK(cudaMemcpy(tmp, dev, n, cudaMemcpyDeviceToHost))) return 0;
  if (memcmp(tmp, want, n) == 0) return 1;
  while (memcmp((char *)tmp + i, (const char *)want + i, es) == 0) i += es;
  return MC_CHECK(0, "%s: %s element [%zu, %zu] differs", what, which, i / es / H, i / es % H);
}

static int dev_guard(const void *dev, size_t n, void *tmp, const char *what, const char *which) {
  if (!MC_CUDA_OK(cudaMemcpy(tmp, dev, n, cudaMemcpyDeviceToHost))) return 0;
  for (size_t k = 0; k < n; k++)
    if (((uint8_t *)tmp)[k] != POISON) return MC_CHECK(0, "%s: wrote past %s", what, which);
  return 1;
}

typedef struct ncase {
  moecomm_dtype_t dt;
  size_t T, H;
  int fp8, inplace, moved;
  float eps;
} ncase_t;

/* The host inputs and both references (they must agree with each other first). */
static int prepare(nbufs_t *b, const ncase_t *c, uint64_t seed) {
  const size_t el = c->T * c->H;
  rd_fill(b->ha, el, c->dt, seed);
  rd_fill(b->hres, el, c->dt, seed + 1);
  for (size_t h = 0; h < c->H; h++)
    b->hw[h] = rd_bits(0.5f + (float)((h * 7919 + seed) % 4096) / 4096, c->dt);
  memcpy(b->want_res, b->hres, el * 2);
  rd_add_rmsnorm(c->dt, c->T, c->H, b->ha, b->want_res, b->hw, c->eps, b->want, b->want_q,
                 b->want_sc);
  memcpy(b->ref_res, b->hres, el * 2);
  if (!MC_CHECK(mc_kern_ref_add_rmsnorm(c->dt, c->T, c->H, b->ha, b->ref_res, b->hw, c->eps,
                                        b->ref_y, b->ref_q, b->ref_sc) == 0,
                "reference refused %zu x %zu", c->T, c->H))
    return 0;
  return MC_CHECK(
      memcmp(b->ref_y, b->want, el * 2) == 0 && memcmp(b->ref_res, b->want_res, el * 2) == 0 &&
          memcmp(b->ref_q, b->want_q, el) == 0 && memcmp(b->ref_sc, b->want_sc, c->T * 4) == 0,
      "kernels/rmsnorm_ref.c and the definition differ at %zu x %zu", c->T, c->H);
}

static int run_case(nbufs_t *b, const ncase_t *c, uint64_t seed) {
  const size_t el = c->T * c->H, mv = c->moved ? 2 : 0;
  char *a = b->a + mv, *res = b->res + mv, *w = b->w + mv;
  char *y = c->inplace ? a : b->y + mv, *q = b->q + (c->moved ? 1 : 0);
  mc_kern_norm_t k;
  char what[160];
  int e, ok;
  snprintf(what, sizeof(what), "%s %zu x %zu%s%s%s eps %g",
           c->dt == MOECOMM_FLOAT16 ? "fp16" : "bf16", c->T, c->H, c->fp8 ? " fp8" : "",
           c->inplace ? " in place" : "", c->moved ? " moved by 2 bytes" : "", (double)c->eps);
  if (!prepare(b, c, seed) || !MC_CUDA_OK(cudaMemcpy(a, b->ha, el * 2, cudaMemcpyHostToDevice)) ||
      !MC_CUDA_OK(cudaMemcpy(res, b->hres, el * 2, cudaMemcpyHostToDevice)) ||
      !MC_CUDA_OK(cudaMemset(res + el * 2, POISON, GUARD)) ||
      !MC_CUDA_OK(cudaMemcpy(w, b->hw, c->H * 2, cudaMemcpyHostToDevice)) ||
      (!c->inplace && !MC_CUDA_OK(cudaMemset(y, POISON, el * 2 + GUARD))) ||
      !MC_CUDA_OK(cudaMemset(q, POISON, el + GUARD)) ||
      !MC_CUDA_OK(cudaMemset(b->sc, POISON, c->T * 4 + GUARD)))
    return 0;
  memset(&k, 0, sizeof(k));
  k.dtype = c->dt;
  k.rows = c->T;
  k.hidden = c->H;
  k.a = a;
  k.residual = res;
  k.weight = w;
  k.eps = c->eps;
  k.y = y;
  k.y_fp8 = c->fp8 ? q : NULL;
  k.y_scale = c->fp8 ? (float *)b->sc : NULL;
  e = mc_kern_add_rmsnorm(&k, NULL);
  if (!MC_CHECK(e == 0, "%s: launch: %s", what, cudaGetErrorString((cudaError_t)e)) ||
      !MC_CUDA_OK(cudaDeviceSynchronize()))
    return 0;
  ok = dev_same(y, b->want, el * 2, 2, c->H, b->got, what, "y") &&
       dev_same(res, b->want_res, el * 2, 2, c->H, b->got, what, "residual") &&
       dev_guard(res + el * 2, GUARD, b->got, what, "residual");
  if (ok && !c->inplace) ok = dev_guard(y + el * 2, GUARD, b->got, what, "y");
  if (ok && c->fp8)
    ok = dev_same(q, b->want_q, el, 1, c->H, b->got, what, "fp8 y") &&
         dev_guard(q + el, GUARD, b->got, what, "fp8 y") &&
         dev_same(b->sc, b->want_sc, c->T * 4, 4, 1, b->got, what, "scale") &&
         dev_guard(b->sc + c->T * 4, GUARD, b->got, what, "scales");
  if (ok && !c->fp8) ok = dev_guard(q, el + GUARD, b->got, what, "fp8 y (not asked for)");
  return MC_CHECK(ok, "%s", what);
}

static int check_shapes(nbufs_t *b) {
  static const size_t Ts[] = {0, 1, 7, 33, 1024};
  static const size_t Hs[] = {8, 128, 4096, 7168, 16384, 100, 4100, 16392, 20000};
  uint64_t seed = 1000;
  int ok = 1, n = 0;
  for (int d = 0; d < 2 && ok; d++)
    for (size_t t = 0; t < sizeof(Ts) / sizeof(Ts[0]) && ok; t++)
      for (size_t h = 0; h < sizeof(Hs) / sizeof(Hs[0]) && ok; h++) {
        const ncase_t c = {
            d ? MOECOMM_BFLOAT16 : MOECOMM_FLOAT16, Ts[t], Hs[h], ++n & 1, n % 5 == 0, n % 3 == 0,
            n % 11 == 0 ? INFINITY : 1e-6f};
        if (Ts[t] * Hs[h] > MAXEL) continue;
        ok = run_case(b, &c, ++seed);
      }
  for (int d = 0; d < 2 && ok; d++) {
    const ncase_t big = {d ? MOECOMM_BFLOAT16 : MOECOMM_FLOAT16, 4096, 4096, d, 0, 0, 1e-5f};
    ok = run_case(b, &big, ++seed);
  }
  return ok;
}

/* Refused arguments launch nothing: y keeps its poison. */
static int check_refusals(nbufs_t *b) {
  int ok = MC_CHECK(mc_kern_add_rmsnorm(NULL, NULL) == (int)cudaErrorInvalidValue, "NULL args");
  for (int i = 0; i < 7 && ok; i++) {
    mc_kern_norm_t k = {MOECOMM_BFLOAT16, 4, 128, b->a, b->res, b->w, 1e-6f, b->y, b->q,
                        (float *)b->sc};
    switch (i) {
      case 0: k.dtype = MOECOMM_FLOAT32; break;
      case 1: k.hidden = 0; break;
      case 2: k.y_scale = NULL; break;
      case 3: k.eps = -1.0f; break;
      case 4: k.a = NULL; break;
      case 5: k.rows = SIZE_MAX / 64; break;
      default: k.eps = NAN; break;
    }
    ok = MC_CUDA_OK(cudaMemset(b->y, POISON, 4 * 128 * 2)) &&
         MC_CHECK(mc_kern_add_rmsnorm(&k, NULL) == (int)cudaErrorInvalidValue,
                  "bad argument %d accepted", i) &&
         MC_CUDA_OK(cudaDeviceSynchronize()) &&
         dev_guard(b->y, 4 * 128 * 2, b->got, "refused", "y");
  }
  return ok;
}

/* ---- fused against unfused on simulated members ---- */

static int fused_vs_unfused(int n) {
  enum { T = 64, H = 4096 };
  const size_t el = (size_t)T * H;
  kw_world_t w;
  char *x[KW_MAXN] = {0}, *r1[KW_MAXN] = {0}, *r2[KW_MAXN] = {0}, *y1[KW_MAXN] = {0},
       *y2[KW_MAXN] = {0}, *q1[KW_MAXN] = {0}, *q2[KW_MAXN] = {0}, *s1[KW_MAXN] = {0},
       *s2[KW_MAXN] = {0}, *wt = NULL;
  uint16_t *h = malloc(el * 2), *g1 = malloc(el * 2), *g2 = malloc(el * 2);
  static const int algos[3] = {MC_KERN_LL, MC_KERN_ONESHOT_PUSH, MC_KERN_TWOSHOT_PUSH};
  int ok = MC_CHECK(h && g1 && g2, "host buffers") && kw_open(&w, n, 2u << 20, 4u << 20) &&
           MC_CUDA_OK(cudaMalloc((void **)&wt, H * 2));
  for (int m = 0; m < n && ok; m++) {
    ok = MC_CUDA_OK(cudaMalloc((void **)&x[m], el * 2)) &&
         MC_CUDA_OK(cudaMalloc((void **)&r1[m], el * 2)) &&
         MC_CUDA_OK(cudaMalloc((void **)&r2[m], el * 2)) &&
         MC_CUDA_OK(cudaMalloc((void **)&y1[m], el * 2)) &&
         MC_CUDA_OK(cudaMalloc((void **)&y2[m], el * 2)) &&
         MC_CUDA_OK(cudaMalloc((void **)&q1[m], el)) &&
         MC_CUDA_OK(cudaMalloc((void **)&q2[m], el)) &&
         MC_CUDA_OK(cudaMalloc((void **)&s1[m], T * 4)) &&
         MC_CUDA_OK(cudaMalloc((void **)&s2[m], T * 4));
    if (!ok) break;
    rd_fill(h, el, MOECOMM_BFLOAT16, 77 + (uint64_t)m);
    ok = MC_CUDA_OK(cudaMemcpy(x[m], h, el * 2, cudaMemcpyHostToDevice));
  }
  for (int i = 0; i < H; i++) h[i] = rd_bits(0.75f + (float)(i % 97) / 128, MOECOMM_BFLOAT16);
  ok = ok && MC_CUDA_OK(cudaMemcpy(wt, h, H * 2, cudaMemcpyHostToDevice));
  for (int al = 0; al < 3 && ok; al++) {
    rd_fill(h, el, MOECOMM_BFLOAT16, 99 + (uint64_t)al);
    for (int m = 0; m < n && ok; m++)
      ok = MC_CUDA_OK(cudaMemcpy(r1[m], h, el * 2, cudaMemcpyHostToDevice)) &&
           MC_CUDA_OK(cudaMemcpy(r2[m], h, el * 2, cudaMemcpyHostToDevice));
    for (int m = 0; m < n && ok; m++) {
      mc_kern_arn_t f = kw_arn(&w, m, 10000000000ull);
      mc_kern_ar_t p = kw_ar(&w, m, 10000000000ull);
      mc_kern_norm_t k = {MOECOMM_BFLOAT16, T, H, y2[m], r2[m], wt, 1e-6f, y2[m], q2[m],
                          (float *)s2[m]};
      f.algo = algos[al], f.dtype = MOECOMM_BFLOAT16, f.rows = T, f.hidden = H, f.x = x[m];
      f.residual = r1[m], f.weight = wt, f.eps = 1e-6f, f.y = y1[m], f.y_fp8 = q1[m];
      f.y_scale = (float *)s1[m];
      p.algo = MC_KERN_TWOSHOT_PUSH, p.dtype = MOECOMM_BFLOAT16, p.op = MOECOMM_SUM;
      p.count = el, p.in = x[m], p.out = y2[m];
      ok = MC_CHECK(mc_kern_ar_rmsnorm(&f, w.s[m]) == 0, "fused launch") &&
           MC_CHECK(mc_kern_all_reduce(&p, w.s[m]) == 0, "all-reduce launch") &&
           MC_CHECK(mc_kern_add_rmsnorm(&k, w.s[m]) == 0, "norm launch");
    }
    ok = ok && kw_sync(&w) && kw_no_error(&w, "fused against unfused");
    for (int m = 0; m < n && ok; m++) {
      char what[96];
      snprintf(what, sizeof(what), "%d members, fused %s against all-reduce + norm, member %d", n,
               mc_kern_algo_name(algos[al]), m);
      ok = MC_CUDA_OK(cudaMemcpy(g1, y1[m], el * 2, cudaMemcpyDeviceToHost)) &&
           dev_same(y2[m], g1, el * 2, 2, H, g2, what, "y") &&
           MC_CUDA_OK(cudaMemcpy(g1, r1[m], el * 2, cudaMemcpyDeviceToHost)) &&
           dev_same(r2[m], g1, el * 2, 2, H, g2, what, "residual") &&
           MC_CUDA_OK(cudaMemcpy(g1, q1[m], el, cudaMemcpyDeviceToHost)) &&
           dev_same(q2[m], g1, el, 1, H, g2, what, "fp8 y") &&
           MC_CUDA_OK(cudaMemcpy(g1, s1[m], T * 4, cudaMemcpyDeviceToHost)) &&
           dev_same(s2[m], g1, T * 4, 4, 1, g2, what, "scales") && MC_CHECK(1, "%s", what);
    }
  }
  (void)cudaDeviceSynchronize();
  for (int m = 0; m < n; m++) {
    cudaFree(x[m]), cudaFree(r1[m]), cudaFree(r2[m]), cudaFree(y1[m]), cudaFree(y2[m]);
    cudaFree(q1[m]), cudaFree(q2[m]), cudaFree(s1[m]), cudaFree(s2[m]);
  }
  cudaFree(wt);
  kw_close(&w);
  free(h);
  free(g1);
  free(g2);
  return ok;
}

int main(int argc, char **argv) {
  nbufs_t b;
  mc_test_init("kern_norm", argc, argv);
  if (!mc_test_need_gpus(1)) return mc_test_finish();
  if (!MC_CUDA_OK(cudaSetDevice(0)) || !nbufs_open(&b)) return mc_test_finish();
  if (check_refusals(&b)) check_shapes(&b);
  nbufs_close(&b);
  for (int n = 2; n <= 3; n++)
    if (!fused_vs_unfused(n)) break;
  return mc_test_finish();
}
