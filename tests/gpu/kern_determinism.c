/* SPDX-License-Identifier: Apache-2.0 */
/* kern_determinism.c - a row's result does not depend on the batch it is reduced in, where the
 * row sits in that batch, or the algorithm (mc_kernels.h's rule; mc_rmsnorm.h for the fused op).
 *
 * A pool of 512 rows of random reals (mixed sign and magnitude, so fp32 accumulation over 3 and
 * more members rounds and the order shows) per member; with 2, 3 and 8 simulated members, every
 * algorithm reduces batches of 1, 7, 64 and 512 consecutive pool rows starting at several
 * offsets (for the plain all-reduce with H = 1000, rows are not 16-byte aligned at most offsets,
 * so the element-wise paths take part).  Every row of every batch must have exactly the bits the
 * first batch containing it produced, and the C reference's bits.  The same for the fused op
 * (H = 4096, bf16): y and the new residual of each row. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../kernels/rmsnorm_ref.h"
#include "custom_util.h"
#include "kern_world.h"

#define POOL 512
#define PLAIN_H 1000
#define FUSED_H 4096
#define STAGE_HALF (2u << 20)
#define LL_PAYLOAD (8u << 20) /* the fused LL kernel holds a whole call */

static const size_t kBatches[4] = {1, 7, 64, 512};

typedef struct pool {
  kw_world_t k;
  char *in[KW_MAXN], *out[KW_MAXN], *res[KW_MAXN], *w;
  mc_kern_ptrs_t *table;
  void *hin[KW_MAXN], *hres, *hw, *ref, *ref_res, *first, *first_res, *got;
  unsigned char *seen; /* per row: 1 once a batch produced it */
} pool_t;

static int pool_open(pool_t *p, int n) {
  const size_t bytes = (size_t)POOL * FUSED_H * 4;
  memset(p, 0, sizeof(*p));
  if (!kw_open(&p->k, n, LL_PAYLOAD, STAGE_HALF) ||
      !MC_CUDA_OK(cudaMalloc((void **)&p->table, sizeof(mc_kern_ptrs_t) * KW_MAXN)) ||
      !MC_CUDA_OK(cudaMalloc((void **)&p->w, FUSED_H * 2)))
    return 0;
  for (int m = 0; m < n; m++) {
    if (!MC_CUDA_OK(cudaMalloc((void **)&p->in[m], bytes)) ||
        !MC_CUDA_OK(cudaMalloc((void **)&p->out[m], bytes)) ||
        !MC_CUDA_OK(cudaMalloc((void **)&p->res[m], bytes)))
      return 0;
    p->hin[m] = malloc(bytes);
    if (!MC_CHECK(p->hin[m] != NULL, "host buffers")) return 0;
  }
  p->hres = malloc(bytes);
  p->hw = malloc(FUSED_H * 2);
  p->ref = malloc(bytes);
  p->ref_res = malloc(bytes);
  p->first = malloc(bytes);
  p->first_res = malloc(bytes);
  p->got = malloc(bytes);
  p->seen = malloc(POOL);
  return MC_CHECK(
      p->hres && p->hw && p->ref && p->ref_res && p->first && p->first_res && p->got && p->seen,
      "host buffers");
}

static void pool_close(pool_t *p) {
  (void)cudaDeviceSynchronize();
  for (int m = 0; m < p->k.n; m++) {
    cudaFree(p->in[m]);
    cudaFree(p->out[m]);
    cudaFree(p->res[m]);
    free(p->hin[m]);
  }
  cudaFree(p->table);
  cudaFree(p->w);
  free(p->hres);
  free(p->hw);
  free(p->ref);
  free(p->ref_res);
  free(p->first);
  free(p->first_res);
  free(p->got);
  free(p->seen);
  kw_close(&p->k);
}

static void put(void *buf, size_t i, int dt, float f) {
  if (dt == MOECOMM_FLOAT32)
    ((float *)buf)[i] = f;
  else
    ((uint16_t *)buf)[i] = dt == MOECOMM_FLOAT16 ? mc_kern_ref_to_half(f) : mc_kern_ref_to_bf16(f);
}

/* Fills and uploads the pool (rows x h of dt); the reference of the plain all-reduce or, with
   fused, of the fused op. */
static int pool_fill(pool_t *p, int dt, size_t h, int fused, uint64_t seed) {
  const size_t el = (size_t)POOL * h, es = dt == MOECOMM_FLOAT32 ? 4 : 2;
  const void *ins[KW_MAXN];
  uint64_t st = seed;
  for (int m = 0; m < p->k.n; m++) {
    for (size_t i = 0; i < el; i++) put(p->hin[m], i, dt, kw_real(&st));
    ins[m] = p->hin[m];
    if (!MC_CUDA_OK(cudaMemcpy(p->in[m], p->hin[m], el * es, cudaMemcpyHostToDevice))) return 0;
  }
  mc_kern_ref_all_reduce(ins, p->k.n, el, dt, MOECOMM_SUM, p->ref);
  memset(p->seen, 0, POOL);
  if (!fused) return MC_CUDA_OK(cudaDeviceSynchronize());
  for (size_t i = 0; i < el; i++) put(p->hres, i, dt, kw_real(&st));
  for (size_t i = 0; i < h; i++) put(p->hw, i, dt, 0.5f + (float)(mc_test_rand(&st) % 1000) / 1000);
  memcpy(p->ref_res, p->hres, el * es);
  /* the reference's y replaces the all-reduce result it starts from, row by row */
  return MC_CHECK(mc_kern_ref_add_rmsnorm(dt, POOL, h, p->ref, p->ref_res, p->hw, 1e-6f, p->ref,
                                          NULL, NULL) == 0,
                  "reference") &&
         MC_CUDA_OK(cudaMemcpy(p->w, p->hw, h * es, cudaMemcpyHostToDevice)) &&
         MC_CUDA_OK(cudaDeviceSynchronize());
}

/* Rows [o, o + b) of every member's out (and residual) against the reference and the first
   batch that produced them. */
static int pool_check(pool_t *p, size_t o, size_t b, size_t h, size_t es, int fused,
                      const char *what) {
  const size_t row = h * es, off = o * row, bytes = b * row;
  for (int m = 0; m < p->k.n; m++) {
    for (int which = 0; which < 1 + fused; which++) {
      char *ref = (char *)(which ? p->ref_res : p->ref) + off;
      char *first = (char *)(which ? p->first_res : p->first);
      if (!MC_CUDA_OK(cudaMemcpy(p->got, (which ? p->res[m] : p->out[m]) + off, bytes,
                                 cudaMemcpyDeviceToHost)))
        return 0;
      for (size_t t = 0; t < b; t++) {
        const char *g = (const char *)p->got + t * row;
        if (p->seen[o + t] && memcmp(g, first + off + t * row, row) != 0)
          return MC_CHECK(0, "%s: member %d %s row %zu differs from an earlier batch's", what, m,
                          which ? "residual" : "output", o + t);
        if (memcmp(g, ref + t * row, row) != 0)
          return MC_CHECK(0, "%s: member %d %s row %zu differs from the reference", what, m,
                          which ? "residual" : "output", o + t);
        if (m == 0 && !p->seen[o + t]) memcpy(first + off + t * row, g, row);
      }
    }
  }
  for (size_t t = 0; t < b; t++) p->seen[o + t] = 1;
  return MC_CHECK(1, "%s", what);
}

/* Plain variants: 0 LL, 1 one-shot, 2 two-shot, 3 two-shot on a table, 4 two-shot push,
   5 one-shot push. */
static int plain_call(pool_t *p, int v, int dt, size_t o, size_t b) {
  const size_t es = dt == MOECOMM_FLOAT32 ? 4 : 2, off = o * PLAIN_H * es;
  const int algo = v <= 2 ? v + 1 : v == 3 ? MC_KERN_TWOSHOT : v;
  if (v == 3) {
    mc_kern_ptrs_t ent[KW_MAXN];
    memset(ent, 0, sizeof(ent));
    for (int r = 0; r < p->k.n; r++)
      for (int m = 0; m < p->k.n; m++) {
        ent[r].in[m] = p->in[m] + off;
        ent[r].out[m] = p->out[m] + off;
      }
    if (!MC_CUDA_OK(cudaMemcpy(p->table, ent, sizeof(ent), cudaMemcpyHostToDevice))) return 0;
  }
  for (int m = 0; m < p->k.n; m++)
    if (!MC_CUDA_OK(cudaMemset(p->out[m], 0xee, (size_t)POOL * PLAIN_H * es))) return 0;
  if (!MC_CUDA_OK(cudaDeviceSynchronize())) return 0;
  for (int m = 0; m < p->k.n; m++) {
    mc_kern_ar_t a = kw_ar(&p->k, m, 10000000000ull);
    a.algo = algo;
    a.dtype = dt;
    a.op = MOECOMM_SUM;
    a.count = b * PLAIN_H;
    a.in = p->in[m] + off;
    a.out = p->out[m] + off;
    a.table = v == 3 ? p->table + m : NULL;
    if (!MC_CHECK(mc_kern_all_reduce(&a, p->k.s[m]) == 0, "launch")) return 0;
  }
  return kw_sync(&p->k);
}

static int fused_call(pool_t *p, int algo, size_t o, size_t b) {
  const size_t off = o * FUSED_H * 2, bytes = (size_t)POOL * FUSED_H * 2;
  for (int m = 0; m < p->k.n; m++)
    if (!MC_CUDA_OK(cudaMemset(p->out[m], 0xee, bytes)) ||
        !MC_CUDA_OK(cudaMemcpy(p->res[m], p->hres, bytes, cudaMemcpyHostToDevice)))
      return 0;
  if (!MC_CUDA_OK(cudaDeviceSynchronize())) return 0;
  for (int m = 0; m < p->k.n; m++) {
    mc_kern_arn_t a = kw_arn(&p->k, m, 10000000000ull);
    a.algo = algo;
    a.dtype = MOECOMM_BFLOAT16;
    a.rows = b;
    a.hidden = FUSED_H;
    a.x = p->in[m] + off;
    a.residual = p->res[m] + off;
    a.weight = p->w;
    a.eps = 1e-6f;
    a.y = p->out[m] + off;
    if (!MC_CHECK(mc_kern_ar_rmsnorm(&a, p->k.s[m]) == 0, "launch")) return 0;
  }
  return kw_sync(&p->k);
}

/* Batches of every size at three offsets: first, middle, last rows of the pool. */
static int batch_offset(size_t b, int k) {
  return k == 0 ? 0 : k == 1 ? (int)((POOL - b) / 2 + (b & 1)) : (int)(POOL - b);
}

static int run_world(int n) {
  pool_t p;
  char what[160];
  int ok;
  if (!pool_open(&p, n)) return 0;
  ok = 1;
  for (int dt = 0; dt < 3 && ok; dt += 2) { /* fp32 and bf16 */
    const size_t es = dt == MOECOMM_FLOAT32 ? 4 : 2;
    ok = pool_fill(&p, dt, PLAIN_H, 0, (uint64_t)(n * 10 + dt));
    for (int v = 5; v >= 0 && ok; v--) /* push kernels first: they set the first bits */
      for (int bi = 0; bi < 4 && ok; bi++)
        for (int k = 0; k < 3 && ok; k++) {
          const size_t b = kBatches[bi], o = (size_t)batch_offset(b, k);
          if ((v == 0 && b * PLAIN_H * es > LL_PAYLOAD) || (k > 0 && b == POOL)) continue;
          snprintf(what, sizeof(what), "n=%d dtype %d variant %d batch of %zu at row %zu", n, dt, v,
                   b, o);
          ok = plain_call(&p, v, dt, o, b) && kw_no_error(&p.k, what) &&
               pool_check(&p, o, b, PLAIN_H, es, 0, what);
        }
  }
  ok = ok && pool_fill(&p, MOECOMM_BFLOAT16, FUSED_H, 1, (uint64_t)n * 77);
  for (int ai = 0; ai < 3 && ok; ai++)
    for (int bi = 0; bi < 4 && ok; bi++)
      for (int k = 0; k < 3 && ok; k++) {
        const size_t b = kBatches[bi], o = (size_t)batch_offset(b, k);
        if (k > 0 && b == POOL) continue;
        const int a = ai == 0 ? MC_KERN_LL : ai == 1 ? MC_KERN_ONESHOT_PUSH : MC_KERN_TWOSHOT_PUSH;
        snprintf(what, sizeof(what), "n=%d fused algo %d batch of %zu at row %zu", n, a, b, o);
        ok = fused_call(&p, a, o, b) && kw_no_error(&p.k, what) &&
             pool_check(&p, o, b, FUSED_H, 2, 1, what);
      }
  pool_close(&p);
  return ok;
}

int main(int argc, char **argv) {
  static const int worlds[3] = {2, 3, 8};
  mc_test_init("kern_determinism", argc, argv);
  if (!mc_test_need_gpus(1)) return mc_test_finish();
  if (!MC_CUDA_OK(cudaSetDevice(0))) return mc_test_finish();
  for (int i = 0; i < 3; i++)
    if (!run_world(worlds[i])) break;
  return mc_test_finish();
}
