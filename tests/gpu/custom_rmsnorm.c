/* SPDX-License-Identifier: Apache-2.0 */
/* custom_rmsnorm.c - all_reduce_rmsnorm and deterministic mode through the ABI on GPUs, bit for
 * bit against the definition (tests/common/rmsnorm_def.h; the all-reduce rule: rank order in
 * fp32, one rounding).
 *
 * With one GPU or more, a world of one rank (what one GPU can run: the local copy, then the norm
 * kernel of kernels/norm.cu): fp16 and bf16, T in {0, 1, 7, 64, 512} x H in {128, 4096, 100}, the
 * fp8 copy on alternate cases, eagerly and captured in a CUDA graph; then deterministic mode on it
 * (below).
 * With two GPUs or more (every visible one, up to 4), on the TP group:
 *  - fused: MOECOMM_ALGO auto, ll, oneshot_push and twoshot_push; T in {1, 7, 64, 512} x H in
 *    {4096, 7168}, bf16 and fp16, fp8 on alternate cases, eagerly and captured (nothing to
 *    register: a replay runs the fused kernel as captured); group_stats: served by custom;
 *  - unfused on a GPU: x 2 bytes off 16-byte alignment and H = 100 (the fused kernels cannot take
 *    them: the all-reduce, then the norm kernel), and (2 ranks, where NCCL's sum of two values is
 *    rounded once as the rule says) MOECOMM_BACKEND_TP=nccl;
 *  - deterministic mode (MOECOMM_CONTEXT_DETERMINISTIC) with 1 MiB of staging and
 *    MOECOMM_CUSTOM_MAX_BYTES=256K, so that the larger batches run in pieces: batches of 1, 7, 64
 *    and 512 pool rows at several offsets through all_reduce (bf16, fp32, rows of 1000),
 *    reduce_scatter (bf16, rows of 1000) and all_reduce_rmsnorm (bf16, H = 4096), the batches of
 *    64 captured; every row the same bits in every batch and the rule's; the MOE_EP group (ep =
 *    tp, NCCL under auto) serves its reductions on custom.
 * Inputs are reals over 24 binades, so fp32 sums over 3 and 4 ranks round and the order shows;
 * outputs are poisoned before each call. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/rmsnorm_def.h"
#include "custom_util.h"

#define MAXW 4
#define MAXT 512
#define MAXH 7168
#define MAXEL ((size_t)MAXT * MAXH)
#define POOL 512
#define ROW 1000
#define NORM_H 4096

static const moecomm_api_t *api;

/* Device and host buffers of a rank. */
typedef struct rb {
  char *x, *res, *w, *out, *q, *sc, *big; /* device; big: MAXW * MAXEL * 2 bytes */
  uint16_t *hx[MAXW], *hres, *hw, *want, *want_res;
  uint8_t *want_q;
  float *want_sc;
  char *got, *first, *ref;
  unsigned char seen[POOL];
} rb_t;

static int rb_open(rb_t *b, int world) {
  const size_t bytes = MAXEL * 2 + 64;
  memset(b, 0, sizeof(*b));
  if (!MC_CUDA_OK(cudaMalloc((void **)&b->x, bytes)) ||
      !MC_CUDA_OK(cudaMalloc((void **)&b->res, bytes)) ||
      !MC_CUDA_OK(cudaMalloc((void **)&b->w, MAXH * 2)) ||
      !MC_CUDA_OK(cudaMalloc((void **)&b->out, bytes)) ||
      !MC_CUDA_OK(cudaMalloc((void **)&b->q, MAXEL)) ||
      !MC_CUDA_OK(cudaMalloc((void **)&b->sc, MAXT * 4)) ||
      !MC_CUDA_OK(cudaMalloc((void **)&b->big, MAXW * MAXEL * 2)))
    return 0;
  for (int r = 0; r < world; r++)
    if ((b->hx[r] = malloc(MAXEL * 2)) == NULL) return MC_CHECK(0, "host buffers");
  b->hres = malloc(MAXEL * 2);
  b->hw = malloc(MAXH * 2);
  b->want = malloc(MAXEL * 2);
  b->want_res = malloc(MAXEL * 2);
  b->want_q = malloc(MAXEL);
  b->want_sc = malloc(MAXT * 4);
  b->got = malloc(MAXW * MAXEL * 2);
  b->first = malloc(MAXEL * 4);
  b->ref = malloc(MAXEL * 4);
  return MC_CHECK(b->hres && b->hw && b->want && b->want_res && b->want_q && b->want_sc && b->got &&
                      b->first && b->ref,
                  "host buffers");
}

static void rb_close(rb_t *b) {
  (void)cudaDeviceSynchronize();
  cudaFree(b->x), cudaFree(b->res), cudaFree(b->w), cudaFree(b->out), cudaFree(b->q);
  cudaFree(b->sc), cudaFree(b->big);
  for (int r = 0; r < MAXW; r++) free(b->hx[r]);
  free(b->hres), free(b->hw), free(b->want), free(b->want_res), free(b->want_q);
  free(b->want_sc), free(b->got), free(b->first), free(b->ref);
}

/* A context of `world` ranks, tp = ep = world (MOE_EP is then the TP list: NCCL under auto). */
static moecomm_context_t *open_ctx(int rank, int world, uint64_t flags, const char *const *env) {
  moecomm_topology_t topo = mc_test_topo(world, rank, world);
  moecomm_context_params_t p;
  moecomm_context_t *ctx = NULL;
  moecomm_result_t rc;
  topo.ep = world;
  p = mc_test_ctx_params(&topo, world == 1 ? 0 : rank);
  p.flags = flags;
  for (int i = 0; env != NULL && env[i] != NULL; i += 2) setenv(env[i], env[i + 1], 1);
  rc = api->context_create(&p, &ctx);
  for (int i = 0; env != NULL && env[i] != NULL; i += 2) unsetenv(env[i]);
  return MC_CHECK_RC(api, NULL, rc, MOECOMM_SUCCESS) ? ctx : NULL;
}

/* Runs call(arg) on s eagerly, or captured in a graph (inside the capture scope) and launched
   once; then waits for s. */
typedef moecomm_result_t (*call_fn_t)(void *arg, cudaStream_t s);
static int run_call(moecomm_context_t *ctx, cudaStream_t s, int captured, call_fn_t call, void *arg,
                    const char *what) {
  cudaGraph_t graph = NULL;
  cudaGraphExec_t exec = NULL;
  moecomm_result_t rc;
  int ok;
  if (!captured) {
    rc = call(arg, s);
    return MC_CHECK(rc == MOECOMM_SUCCESS, "%s: %s: %s", what, api->result_string(rc),
                    api->last_error(ctx)) &&
           MC_CUDA_OK(cudaStreamSynchronize(s));
  }
  if (!MC_CHECK_RC(api, ctx, api->capture_begin(ctx, s), MOECOMM_SUCCESS)) return 0;
  ok = MC_CUDA_OK(cudaStreamBeginCapture(s, cudaStreamCaptureModeGlobal));
  rc = ok ? call(arg, s) : MOECOMM_SUCCESS;
  ok = ok && MC_CUDA_OK(cudaStreamEndCapture(s, &graph));
  ok = MC_CHECK(rc == MOECOMM_SUCCESS, "%s (captured): %s: %s", what, api->result_string(rc),
                api->last_error(ctx)) &&
       ok;
  ok = MC_CHECK_RC(api, ctx, api->capture_end(ctx, s), MOECOMM_SUCCESS) && ok;
  ok = ok && MC_CUDA_OK(cudaGraphInstantiate(&exec, graph, 0)) &&
       MC_CUDA_OK(cudaGraphLaunch(exec, s)) && MC_CUDA_OK(cudaStreamSynchronize(s));
  if (exec) cudaGraphExecDestroy(exec);
  if (graph) cudaGraphDestroy(graph);
  return ok;
}

static moecomm_result_t call_norm(void *arg, cudaStream_t s) {
  const moecomm_rmsnorm_args_t *a = ((void **)arg)[1];
  return api->all_reduce_rmsnorm(((void **)arg)[0], a, s);
}

/* Device bytes equal host bytes; else one failed check naming the first differing element. */
static int dev_same(const void *dev, const void *want, size_t n, size_t es, size_t row, char *tmp,
                    const char *what, const char *which) {
  size_t i = 0;
  if (!MC_CUDA_OK(cudaMemcpy(tmp, dev, n, cudaMemcpyDeviceToHost))) return 0;
  if (memcmp(tmp, want, n) == 0) return 1;
  while (memcmp(tmp + i, (const char *)want + i, es) == 0) i += es;
  return MC_CHECK(0, "%s: %s [%zu, %zu] differs from the rule", what, which, i / es / row,
                  i / es % row);
}

typedef struct ncase {
  moecomm_dtype_t dt;
  size_t T, H;
  int fp8, captured, misalign;
} ncase_t;

/* One all_reduce_rmsnorm on g against the definition. */
static int norm_case(moecomm_context_t *ctx, moecomm_group_t *g, cudaStream_t s, rb_t *b, int rank,
                     int world, const ncase_t *c, uint64_t seed, const char *label) {
  const size_t el = c->T * c->H;
  const void *ins[MAXW];
  char *x = b->x + c->misalign;
  moecomm_rmsnorm_args_t a;
  void *arg[2] = {g, &a};
  char what[160];
  snprintf(what, sizeof(what), "%s: %d ranks %s %zu x %zu%s%s%s", label, world,
           c->dt == MOECOMM_FLOAT16 ? "fp16" : "bf16", c->T, c->H, c->fp8 ? " fp8" : "",
           c->captured ? " captured" : "", c->misalign ? " x misaligned" : "");
  for (int r = 0; r < world; r++) {
    rd_fill(b->hx[r], el, c->dt, seed * 8 + (uint64_t)r);
    ins[r] = b->hx[r];
  }
  rd_fill(b->hres, el, c->dt, seed * 8 + 7);
  for (size_t h = 0; h < c->H; h++) b->hw[h] = rd_bits(0.5f + (float)((h * 31) % 64) / 64, c->dt);
  rd_all_reduce(ins, world, el, c->dt, b->want);
  memcpy(b->want_res, b->hres, el * 2);
  rd_add_rmsnorm(c->dt, c->T, c->H, b->want, b->want_res, b->hw, 1e-6f, b->want, b->want_q,
                 b->want_sc);
  if (!MC_CUDA_OK(cudaMemcpy(x, b->hx[rank], el * 2, cudaMemcpyHostToDevice)) ||
      !MC_CUDA_OK(cudaMemcpy(b->res, b->hres, el * 2, cudaMemcpyHostToDevice)) ||
      !MC_CUDA_OK(cudaMemcpy(b->w, b->hw, c->H * 2, cudaMemcpyHostToDevice)) ||
      !MC_CUDA_OK(cudaMemset(b->out, 0xee, el * 2)) || !MC_CUDA_OK(cudaMemset(b->q, 0xee, el)) ||
      !MC_CUDA_OK(cudaMemset(b->sc, 0xee, c->T * 4)) || !MC_CUDA_OK(cudaDeviceSynchronize()))
    return 0;
  memset(&a, 0, sizeof(a));
  a.struct_size = sizeof(a);
  a.dtype = c->dt;
  a.eps = 1e-6f;
  a.tokens = c->T;
  a.hidden = c->H;
  a.x = x;
  a.residual = b->res;
  a.weight = b->w;
  a.out = b->out;
  a.out_fp8 = c->fp8 ? b->q : NULL;
  a.out_scale = c->fp8 ? (float *)b->sc : NULL;
  if (!run_call(ctx, s, c->captured, call_norm, arg, what)) return 0;
  return dev_same(b->out, b->want, el * 2, 2, c->H, b->got, what, "out") &&
         dev_same(b->res, b->want_res, el * 2, 2, c->H, b->got, what, "residual") &&
         (!c->fp8 || (dev_same(b->q, b->want_q, el, 1, c->H, b->got, what, "out_fp8") &&
                      dev_same(b->sc, b->want_sc, c->T * 4, 4, 1, b->got, what, "out_scale"))) &&
         MC_CHECK(1, "%s", what);
}

/* The backend group_stats names for kind. */
static int served_by(moecomm_context_t *ctx, int kind, const char *want, const char *what) {
  moecomm_group_t *g = cu_group(api, ctx, kind);
  moecomm_group_stats_t st;
  memset(&st, 0, sizeof(st));
  st.struct_size = sizeof(st);
  return g != NULL && MC_CHECK_RC(api, ctx, api->group_stats(g, &st), MOECOMM_SUCCESS) &&
         MC_CHECK(strcmp(st.backend_name, want) == 0, "%s: %s served by %s, want %s", what,
                  st.kind_name, st.backend_name, want);
}

/* The world-one path: every shape, eager and captured. */
static int world_one(rb_t *b, cudaStream_t s) {
  static const size_t Ts[] = {0, 1, 7, 64, 512};
  static const size_t Hs[] = {128, 4096, 100};
  moecomm_context_t *ctx = open_ctx(0, 1, 0, NULL);
  moecomm_group_t *g = ctx ? cu_group(api, ctx, MOECOMM_GROUP_TP) : NULL;
  uint64_t seed = 10;
  int ok = g != NULL, n = 0;
  for (int d = 0; d < 2 && ok; d++)
    for (size_t t = 0; t < 5 && ok; t++)
      for (size_t h = 0; h < 3 && ok; h++, n++) {
        const ncase_t c = {
            d ? MOECOMM_BFLOAT16 : MOECOMM_FLOAT16, Ts[t], Hs[h], n & 1, n % 3 == 1, 0};
        ok = norm_case(ctx, g, s, b, 0, 1, &c, ++seed, "world of one");
      }
  if (ctx) api->context_destroy(ctx);
  return ok;
}

/* The fused kernels under each forced algorithm, and the unfused path where they cannot go. */
static int fused_algo(rb_t *b, cudaStream_t s, int rank, int world, const char *algo) {
  static const size_t Ts[] = {1, 7, 64, 512};
  static const size_t Hs[] = {4096, 7168};
  const char *env[] = {"MOECOMM_ALGO", algo, NULL};
  moecomm_context_t *ctx = open_ctx(rank, world, 0, env);
  moecomm_group_t *g = ctx ? cu_group(api, ctx, MOECOMM_GROUP_TP) : NULL;
  uint64_t seed = 1000 + (uint64_t)algo[0] * 100 + (uint64_t)strlen(algo);
  int ok = g != NULL, n = 0;
  char label[64];
  snprintf(label, sizeof(label), "MOECOMM_ALGO=%s", algo);
  for (int d = 0; d < 2 && ok; d++)
    for (size_t t = 0; t < 4 && ok; t++)
      for (size_t h = 0; h < 2 && ok; h++, n++) {
        const ncase_t c = {
            d ? MOECOMM_BFLOAT16 : MOECOMM_FLOAT16, Ts[t], Hs[h], n & 1, n % 3 == 2, 0};
        ok = norm_case(ctx, g, s, b, rank, world, &c, ++seed, label);
      }
  ok = ok && served_by(ctx, MOECOMM_GROUP_TP, "custom", label);
  if (ok && strcmp(algo, "auto") == 0) {
    const ncase_t mis = {MOECOMM_BFLOAT16, 64, 4096, 1, 0, 2},
                  odd = {MOECOMM_FLOAT16, 7, 100, 1, 1, 0};
    ok = norm_case(ctx, g, s, b, rank, world, &mis, ++seed, "unfused (x misaligned)") &&
         norm_case(ctx, g, s, b, rank, world, &odd, ++seed, "unfused (H 100)");
  }
  if (ctx) api->context_destroy(ctx);
  return ok;
}

/* MOECOMM_BACKEND_TP=nccl: NCCL's all-reduce, then the norm kernel. */
static int unfused_nccl(rb_t *b, cudaStream_t s, int rank, int world) {
  const char *env[] = {"MOECOMM_BACKEND_TP", "nccl", NULL};
  moecomm_context_t *ctx = open_ctx(rank, world, 0, env);
  moecomm_group_t *g = ctx ? cu_group(api, ctx, MOECOMM_GROUP_TP) : NULL;
  int ok = g != NULL;
  for (int k = 0; k < 4 && ok; k++) {
    const ncase_t c = {
        k & 1 ? MOECOMM_FLOAT16 : MOECOMM_BFLOAT16, k < 2 ? 7 : 512, 4096, k & 1, k >> 1, 0};
    ok = norm_case(ctx, g, s, b, rank, world, &c, 5000 + (uint64_t)k, "BACKEND_TP=nccl");
  }
  ok = ok && served_by(ctx, MOECOMM_GROUP_TP, "nccl", "BACKEND_TP=nccl");
  if (ctx) api->context_destroy(ctx);
  return ok;
}

/* ---- deterministic mode ---- */

static const size_t k_batch[4] = {1, 7, 64, 512};
static const size_t k_start[4][3] = {{0, 5, 511}, {0, 3, 505}, {0, 100, 448}, {0, 0, 0}};

/* Rows [s, s + B) of got against the rule's rows and against their first batch. */
static int rows_ok(rb_t *b, const char *got, size_t s, size_t B, size_t row_bytes,
                   const char *what) {
  for (size_t t = 0; t < B; t++) {
    const char *g = got + t * row_bytes;
    if (!MC_CHECK(memcmp(g, b->ref + (s + t) * row_bytes, row_bytes) == 0,
                  "%s: batch of %zu at %zu: row %zu differs from the rule", what, B, s, s + t) ||
        !MC_CHECK(!b->seen[s + t] || memcmp(g, b->first + (s + t) * row_bytes, row_bytes) == 0,
                  "%s: batch of %zu at %zu: row %zu differs from its first batch", what, B, s,
                  s + t))
      return 0;
    memcpy(b->first + (s + t) * row_bytes, g, row_bytes);
    b->seen[s + t] = 1;
  }
  return 1;
}

typedef struct det_call {
  moecomm_group_t *g;
  int kind; /* 0 all_reduce, 1 reduce_scatter, 2 all_reduce_rmsnorm */
  moecomm_dtype_t dt;
  const void *send;
  void *recv;
  size_t count;
  moecomm_rmsnorm_args_t *norm;
} det_call_t;

static moecomm_result_t call_det(void *arg, cudaStream_t s) {
  const det_call_t *d = arg;
  if (d->kind == 0) return api->all_reduce(d->g, d->send, d->recv, d->count, d->dt, MOECOMM_SUM, s);
  if (d->kind == 1)
    return api->reduce_scatter(d->g, d->send, d->recv, d->count, d->dt, MOECOMM_SUM, s);
  return api->all_reduce_rmsnorm(d->g, d->norm, s);
}

/* Rank r's pool for block q of a kind (q = 0 but for reduce_scatter). */
static void det_pool(void *dst, int kind, moecomm_dtype_t dt, int r, int q, size_t row) {
  rd_fill(dst, (size_t)POOL * row, dt, 700 + (uint64_t)(kind * 100 + q * 8 + r));
}

/* The rule's value of every pool row in b->ref (reduce_scatter: of my block), the residual and
   weight of the norm in b->hres, b->hw and the new residual in b->want_res; b->hx[q]: my pool
   (reduce_scatter: my pool of block q). */
static void det_reference(rb_t *b, int kind, moecomm_dtype_t dt, int rank, int world, size_t row) {
  const size_t el = (size_t)POOL * row;
  const void *ins[MAXW];
  for (int r = 0; r < world; r++) {
    det_pool(b->hx[r], kind, dt, r, kind == 1 ? rank : 0, row);
    ins[r] = b->hx[r];
  }
  if (dt == MOECOMM_FLOAT32) {
    for (size_t i = 0; i < el; i++) {
      float acc = ((const float *)ins[0])[i];
      for (int r = 1; r < world; r++) acc = acc + ((const float *)ins[r])[i];
      ((float *)b->ref)[i] = acc;
    }
  } else {
    rd_all_reduce(ins, world, el, dt, b->ref);
  }
  if (kind == 2) {
    rd_fill(b->hres, el, dt, 799);
    for (size_t h = 0; h < row; h++) b->hw[h] = rd_bits(0.5f + (float)(h % 61) / 61, dt);
    memcpy(b->want_res, b->hres, el * 2);
    rd_add_rmsnorm(dt, POOL, row, b->ref, b->want_res, b->hw, 1e-6f, b->ref, NULL, NULL);
  }
  if (kind != 1) {
    memmove(b->hx[0], b->hx[rank], el * (dt == MOECOMM_FLOAT32 ? 4 : 2));
    return;
  }
  for (int q = 0; q < world; q++) det_pool(b->hx[q], kind, dt, rank, q, row);
}

/* Uploads the inputs of the batch [s, s + B) and describes its call. */
static int det_upload(rb_t *b, det_call_t *d, int rank, int world, size_t s, size_t B, size_t row,
                      moecomm_rmsnorm_args_t *a) {
  const size_t es = d->dt == MOECOMM_FLOAT32 ? 4 : 2, rb_ = row * es;
  int ok = 1;
  d->send = b->big;
  d->recv = b->out;
  d->count = B * row;
  if (d->kind == 1) {
    for (int q = 0; q < world && ok; q++)
      ok = MC_CUDA_OK(cudaMemcpy(b->big + (size_t)q * B * rb_, (char *)b->hx[q] + s * rb_, B * rb_,
                                 cudaMemcpyHostToDevice));
    if (B == 7) d->recv = b->big + (size_t)rank * B * rb_; /* in place */
  } else {
    ok =
        MC_CUDA_OK(cudaMemcpy(b->big, (char *)b->hx[0] + s * rb_, B * rb_, cudaMemcpyHostToDevice));
  }
  if (d->kind == 2) {
    memset(a, 0, sizeof(*a));
    a->struct_size = sizeof(*a);
    a->dtype = d->dt;
    a->eps = 1e-6f;
    a->tokens = B;
    a->hidden = row;
    a->x = b->big;
    a->residual = b->res;
    a->weight = b->w;
    a->out = b->out;
    d->norm = a;
    ok = ok && MC_CUDA_OK(cudaMemcpy(b->res, b->hres + s * row, B * rb_, cudaMemcpyHostToDevice)) &&
         MC_CUDA_OK(cudaMemcpy(b->w, b->hw, rb_, cudaMemcpyHostToDevice));
  }
  return ok && (d->kind == 1 && B == 7 ? 1 : MC_CUDA_OK(cudaMemset(d->recv, 0xee, B * rb_))) &&
         MC_CUDA_OK(cudaDeviceSynchronize());
}

/* Every batch of one kind and dtype: each row the rule's bits, whatever its batch. */
static int det_batches(moecomm_context_t *ctx, moecomm_group_t *g, cudaStream_t s, rb_t *b,
                       int rank, int world, int kind, moecomm_dtype_t dt, size_t row) {
  static const char *const kinds[3] = {"all_reduce", "reduce_scatter", "all_reduce_rmsnorm"};
  const size_t rb_ = row * (dt == MOECOMM_FLOAT32 ? 4 : 2);
  char what[128];
  snprintf(what, sizeof(what), "deterministic, %d ranks, %s %s rows of %zu", world, kinds[kind],
           dt == MOECOMM_FLOAT32   ? "fp32"
           : dt == MOECOMM_FLOAT16 ? "fp16"
                                   : "bf16",
           row);
  det_reference(b, kind, dt, rank, world, row);
  memset(b->seen, 0, sizeof(b->seen));
  for (int bi = 0; bi < 4; bi++)
    for (int k = 0; k < 3; k++) {
      const size_t B = k_batch[bi], st = k_start[bi][k];
      moecomm_rmsnorm_args_t a;
      det_call_t d = {g, kind, dt, NULL, NULL, 0, NULL};
      if (!det_upload(b, &d, rank, world, st, B, row, &a) ||
          !run_call(ctx, s, B == 64, call_det, &d, what) ||
          !MC_CUDA_OK(cudaMemcpy(b->got, d.recv, B * rb_, cudaMemcpyDeviceToHost)) ||
          !rows_ok(b, b->got, st, B, rb_, what))
        return 0;
      if (kind == 2 && !dev_same(b->res, (char *)b->want_res + st * rb_, B * rb_, 2, row, b->got,
                                 what, "residual"))
        return 0;
    }
  return MC_CHECK(1, "%s", what);
}

/* Deterministic mode on a world: small staging, so large batches run in pieces. */
static int deterministic(rb_t *b, cudaStream_t s, int rank, int world) {
  const char *env[] = {"MOECOMM_CUSTOM_BUFFER_BYTES", "1M", "MOECOMM_CUSTOM_MAX_BYTES", "256K",
                       NULL};
  moecomm_context_t *ctx = open_ctx(rank, world, MOECOMM_CONTEXT_DETERMINISTIC, env);
  moecomm_group_t *tp = ctx ? cu_group(api, ctx, MOECOMM_GROUP_TP) : NULL;
  moecomm_group_t *ep = ctx ? cu_group(api, ctx, MOECOMM_GROUP_MOE_EP) : NULL;
  int ok = tp != NULL && ep != NULL;
  ok = ok && det_batches(ctx, tp, s, b, rank, world, 0, MOECOMM_BFLOAT16, ROW) &&
       det_batches(ctx, tp, s, b, rank, world, 0, MOECOMM_FLOAT32, ROW) &&
       det_batches(ctx, tp, s, b, rank, world, 1, MOECOMM_BFLOAT16, ROW) &&
       det_batches(ctx, tp, s, b, rank, world, 2, MOECOMM_BFLOAT16, NORM_H) &&
       det_batches(ctx, ep, s, b, rank, world, 0, MOECOMM_BFLOAT16, ROW);
  if (ok && world > 1)
    ok = served_by(ctx, MOECOMM_GROUP_TP, "custom", "deterministic") &&
         served_by(ctx, MOECOMM_GROUP_MOE_EP, "custom", "deterministic");
  if (ctx) api->context_destroy(ctx);
  return ok;
}

static int rank_main(int rank, int world, void *arg) {
  static const char *const algos[] = {"auto", "ll", "oneshot_push", "twoshot_push"};
  cudaStream_t s = NULL;
  rb_t b;
  int ok;
  (void)arg;
  setenv("NCCL_NVLS_ENABLE", "0", 1);
  api = mc_test_plugin();
  if (!MC_CUDA_OK(cudaSetDevice(world == 1 ? 0 : rank)) ||
      !MC_CUDA_OK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking)) || !rb_open(&b, world))
    return 1;
  if (world == 1) {
    ok = world_one(&b, s) && deterministic(&b, s, 0, 1);
  } else {
    ok = 1;
    for (int a = 0; a < 4 && ok; a++) ok = fused_algo(&b, s, rank, world, algos[a]);
    if (ok && world == 2) ok = unfused_nccl(&b, s, rank, world);
    if (ok) ok = deterministic(&b, s, rank, world);
  }
  rb_close(&b);
  cudaStreamDestroy(s);
  return ok ? 0 : 1;
}

int main(int argc, char **argv) {
  int gpus;
  mc_test_init("custom_rmsnorm", argc, argv);
  if (!mc_test_need_gpus(1)) return mc_test_finish();
  gpus = mc_test_gpu_count();
  MC_CHECK(mc_test_ranks(1, rank_main, NULL, 300) == 0, "a world of one rank");
  if (gpus < 2)
    mc_test_skip("custom_rmsnorm, 2 or more ranks", "needs 2 CUDA devices, this machine has %d",
                 gpus);
  else
    MC_CHECK(mc_test_ranks(gpus < MAXW ? gpus : MAXW, rank_main, NULL, 600) == 0, "%d ranks",
             gpus < MAXW ? gpus : MAXW);
  return mc_test_finish();
}
