/* SPDX-License-Identifier: Apache-2.0 */
/* shm_rmsnorm.c - all_reduce_rmsnorm through the ABI on CPU contexts (shm: the all-reduce, then
 * the norm of kernels/rmsnorm_ref.c), against the definition written once more in
 * tests/common/rmsnorm_def.h, bit for bit.
 *
 * 2, 3 and 4 ranks (tp = world), fp16 and bf16: T in {0, 1, 7, 64, 512} x H in {8, 128, 4096},
 * and for T up to 7 the sizes only the unfused path takes (H = 100: a short last vector;
 * H = 16392: past the fused kernels' 16384), one case with eps = +inf.  Every shape four times:
 * with and without the fp8 copy, eagerly and inside the capture scope (on CPU contexts the call
 * still runs at once; the scope counts it).  Inputs are reals of mixed sign and magnitude, so
 * every rounding matters; each rank regenerates its peers' x; residual and weight are the same on
 * every rank, as tensor parallelism keeps them.  out, the fp8 copy and the scales are poisoned
 * first and guarded after, the new residual must be the reference's, x must be unchanged.
 *
 * Bad arguments (NULL args, short struct_size, dtype, eps, hidden, an element count past the
 * address space, NULL buffers, fp8 without scales, out overlapping x or residual, a stream on a
 * CPU context): each the exact code with a message, and nothing written; a larger struct_size
 * from a newer caller is accepted. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/harness.h"
#include "../common/rmsnorm_def.h"

#define MAXT 512
#define MAXH 16392
#define MAXEL ((size_t)MAXT * 4096) /* the largest T x H */
#define GUARD 64                    /* elements (bytes for the fp8 copy) after each output */
#define POISON 0xeeu

static const moecomm_api_t *api;

typedef struct bufs {
  uint16_t *x[4], *res, *res0, *w, *out, *want, *want_res;
  uint8_t *q, *want_q;
  float *sc, *want_sc;
} bufs_t;

static int bufs_open(bufs_t *b, int world) {
  const size_t el = MAXEL + GUARD;
  memset(b, 0, sizeof(*b));
  for (int r = 0; r < world; r++) b->x[r] = malloc(el * 2);
  b->res = malloc(el * 2);
  b->res0 = malloc(el * 2);
  b->w = malloc(MAXH * 2);
  b->out = malloc(el * 2);
  b->want = malloc(el * 2);
  b->want_res = malloc(el * 2);
  b->q = malloc(el);
  b->want_q = malloc(el);
  b->sc = malloc((MAXT + GUARD) * sizeof(float));
  b->want_sc = malloc(MAXT * sizeof(float));
  for (int r = 0; r < world; r++)
    if (b->x[r] == NULL) return 0;
  return MC_CHECK(b->res && b->res0 && b->w && b->out && b->want && b->want_res && b->q &&
                      b->want_q && b->sc && b->want_sc,
                  "host buffers");
}

static void bufs_close(bufs_t *b) {
  for (int r = 0; r < 4; r++) free(b->x[r]);
  free(b->res);
  free(b->res0);
  free(b->w);
  free(b->out);
  free(b->want);
  free(b->want_res);
  free(b->q);
  free(b->want_q);
  free(b->sc);
  free(b->want_sc);
}

static moecomm_rmsnorm_args_t norm_args(moecomm_dtype_t dt, size_t T, size_t H, float eps,
                                        const void *x, void *res, const void *w, void *out, void *q,
                                        float *sc) {
  moecomm_rmsnorm_args_t a;
  memset(&a, 0, sizeof(a));
  a.struct_size = sizeof(a);
  a.dtype = dt;
  a.eps = eps;
  a.tokens = T;
  a.hidden = H;
  a.x = x;
  a.residual = res;
  a.weight = w;
  a.out = out;
  a.out_fp8 = q;
  a.out_scale = sc;
  return a;
}

/* Inputs of one shape (the same on every rank for the same seed) and the expected outputs. */
static void prepare(bufs_t *b, int world, moecomm_dtype_t dt, size_t T, size_t H, float eps,
                    uint64_t seed) {
  const void *ins[4];
  for (int r = 0; r < world; r++) {
    rd_fill(b->x[r], T * H, dt, seed * 16 + (uint64_t)r);
    ins[r] = b->x[r];
  }
  rd_fill(b->res0, T * H, dt, seed * 16 + 9);
  for (size_t h = 0; h < H; h++)
    b->w[h] = rd_bits(0.5f + (float)((seed + h * 7919) % 4096) / 4096, dt);
  rd_all_reduce(ins, world, T * H, dt, b->want);
  memcpy(b->want_res, b->res0, T * H * 2);
  rd_add_rmsnorm(dt, T, H, b->want, b->want_res, b->w, eps, b->want, b->want_q, b->want_sc);
}

/* The first element where got and want differ, as one failed check; 1 when equal. */
static int same(const void *got, const void *want, size_t n, size_t es, size_t H, const char *what,
                const char *which) {
  size_t i = 0;
  if (memcmp(got, want, n * es) == 0) return 1;
  while (memcmp((const char *)got + i * es, (const char *)want + i * es, es) == 0) i++;
  return MC_CHECK(0, "%s: %s[%zu, %zu] differs from the definition", what, which, i / H, i % H);
}

static int guarded(const void *p, size_t bytes, const char *what, const char *which) {
  for (size_t k = 0; k < bytes; k++)
    if (((const uint8_t *)p)[k] != POISON) return MC_CHECK(0, "%s: wrote past %s", what, which);
  return 1;
}

/* One call of the prepared shape on g; its outputs against the expected ones. */
static int run_one(moecomm_context_t *ctx, moecomm_group_t *g, bufs_t *b, int rank,
                   moecomm_dtype_t dt, size_t T, size_t H, float eps, int fp8, int captured,
                   const char *shape) {
  const size_t el = T * H;
  moecomm_rmsnorm_args_t a;
  moecomm_result_t r;
  char what[192];
  int ok;
  snprintf(what, sizeof(what), "%s%s%s", shape, fp8 ? " fp8" : "", captured ? " captured" : "");
  memcpy(b->res, b->res0, el * 2);
  memset((char *)b->res + el * 2, POISON, GUARD * 2);
  memset(b->out, POISON, (el + GUARD) * 2);
  memset(b->q, POISON, el + GUARD);
  memset(b->sc, POISON, (T + GUARD) * sizeof(float));
  a = norm_args(dt, T, H, eps, b->x[rank], b->res, b->w, b->out, fp8 ? b->q : NULL,
                fp8 ? b->sc : NULL);
  if (captured && !MC_CHECK_RC(api, ctx, api->capture_begin(ctx, NULL), MOECOMM_SUCCESS)) return 0;
  r = api->all_reduce_rmsnorm(g, &a, NULL);
  ok = MC_CHECK(r == MOECOMM_SUCCESS, "%s: %s: %s", what, api->result_string(r),
                api->last_error(ctx));
  if (captured) ok &= MC_CHECK_RC(api, ctx, api->capture_end(ctx, NULL), MOECOMM_SUCCESS);
  if (!ok) return 0;
  ok = same(b->out, b->want, el, 2, H, what, "out") &&
       guarded(b->out + el, GUARD * 2, what, "out") &&
       same(b->res, b->want_res, el, 2, H, what, "residual") &&
       guarded(b->res + el, GUARD * 2, what, "residual");
  if (ok && fp8)
    ok = same(b->sc, b->want_sc, T, sizeof(float), 1, what, "out_scale") &&
         guarded(b->sc + T, GUARD * sizeof(float), what, "out_scale") &&
         same(b->q, b->want_q, el, 1, H, what, "out_fp8") &&
         guarded(b->q + el, GUARD, what, "out_fp8");
  if (ok && !fp8) ok = guarded(b->q, el + GUARD, what, "out_fp8 (not asked for)");
  return MC_CHECK(ok, "%s", what);
}

static int rank_main(int rank, int world, void *arg) {
  static const size_t Ts[] = {0, 1, 7, 64, 512};
  static const size_t Hs[] = {8, 128, 4096, 100, 16392};
  moecomm_topology_t topo = mc_test_topo(world, rank, world);
  moecomm_context_params_t p = mc_test_ctx_params(&topo, MOECOMM_DEVICE_CPU);
  moecomm_context_t *ctx = NULL;
  moecomm_group_t *g = NULL;
  bufs_t b;
  uint64_t seed = 1;
  (void)arg;
  if (!MC_CHECK_RC(api, NULL, api->context_create(&p, &ctx), MOECOMM_SUCCESS)) return 1;
  if (!MC_CHECK_RC(api, ctx, api->group_get(ctx, MOECOMM_GROUP_TP, &g), MOECOMM_SUCCESS) ||
      !bufs_open(&b, world))
    return 1;
  for (int d = 0; d < 2; d++) {
    const moecomm_dtype_t dt = d ? MOECOMM_BFLOAT16 : MOECOMM_FLOAT16;
    for (size_t ti = 0; ti < sizeof(Ts) / sizeof(Ts[0]); ti++)
      for (size_t hi = 0; hi < sizeof(Hs) / sizeof(Hs[0]); hi++, seed++) {
        const size_t T = Ts[ti], H = Hs[hi];
        const float eps = seed % 7 == 3 ? INFINITY : (seed & 1) ? 1e-6f : 1e-5f;
        char shape[128];
        if (H % 8 != 0 || H > 4096) {
          if (T > 7) continue; /* the unfused-only sizes, small T */
        }
        snprintf(shape, sizeof(shape), "%d ranks, %s, %zu x %zu, eps %g", world,
                 d ? "bf16" : "fp16", T, H, (double)eps);
        prepare(&b, world, dt, T, H, eps, seed);
        for (int k = 0; k < 4; k++)
          if (!run_one(ctx, g, &b, rank, dt, T, H, eps, k & 1, k >> 1, shape)) goto out;
      }
  }
out:
  bufs_close(&b);
  api->context_destroy(ctx);
  return 0;
}

/* One bad call: the code, a message, and out and residual untouched. */
static void expect_bad(moecomm_context_t *ctx, moecomm_group_t *g, const moecomm_rmsnorm_args_t *a,
                       void *stream, moecomm_result_t want, const uint16_t *out,
                       const uint16_t *res, const char *what) {
  moecomm_result_t r = api->all_reduce_rmsnorm(g, a, stream);
  int untouched = 1;
  for (int i = 0; i < 64; i++) untouched &= out[i] == 0x5555 && res[i] == 0x3c00;
  MC_CHECK(r == want && api->last_error(ctx)[0] != '\0' && untouched,
           "%s: got %s (%s), want %s; out and residual %s", what, api->result_string(r),
           api->last_error(ctx), api->result_string(want), untouched ? "untouched" : "WRITTEN");
}

static int rank_bad(int rank, int world, void *arg) {
  moecomm_topology_t topo = mc_test_topo(world, rank, world);
  moecomm_context_params_t p = mc_test_ctx_params(&topo, MOECOMM_DEVICE_CPU);
  moecomm_context_t *ctx = NULL;
  moecomm_group_t *g = NULL;
  static uint16_t x[64], res[64], w[8], out[64];
  static uint8_t q[64];
  static float sc[8];
  struct {
    moecomm_rmsnorm_args_t a;
    char newer[32];
  } big;
  moecomm_rmsnorm_args_t a, good;
  const moecomm_result_t inval = MOECOMM_ERR_INVALID_ARGUMENT;
  (void)arg;
  if (!MC_CHECK_RC(api, NULL, api->context_create(&p, &ctx), MOECOMM_SUCCESS) ||
      !MC_CHECK_RC(api, ctx, api->group_get(ctx, MOECOMM_GROUP_TP, &g), MOECOMM_SUCCESS))
    return 1;
  for (int i = 0; i < 64; i++) x[i] = 0x3c00, out[i] = 0x5555, res[i] = 0x3c00;
  for (int i = 0; i < 8; i++) w[i] = 0x3c00;
  good = norm_args(MOECOMM_FLOAT16, 8, 8, 1e-6f, x, res, w, out, q, sc);
  expect_bad(ctx, g, NULL, NULL, inval, out, res, "args NULL");
  a = good, a.struct_size = 8;
  expect_bad(ctx, g, &a, NULL, MOECOMM_ERR_STRUCT_SIZE, out, res, "struct_size 8");
  a = good, a.struct_size = sizeof(a) - 1;
  expect_bad(ctx, g, &a, NULL, MOECOMM_ERR_STRUCT_SIZE, out, res, "struct_size one short");
  a = good, a.dtype = MOECOMM_FLOAT32;
  expect_bad(ctx, g, &a, NULL, inval, out, res, "dtype FLOAT32");
  a = good, a.dtype = 77;
  expect_bad(ctx, g, &a, NULL, inval, out, res, "dtype 77");
  a = good, a.eps = -1e-6f;
  expect_bad(ctx, g, &a, NULL, inval, out, res, "eps < 0");
  a = good, a.eps = NAN;
  expect_bad(ctx, g, &a, NULL, inval, out, res, "eps NaN");
  a = good, a.hidden = 0;
  expect_bad(ctx, g, &a, NULL, inval, out, res, "hidden 0");
  a = good, a.tokens = SIZE_MAX / 4, a.hidden = 8;
  expect_bad(ctx, g, &a, NULL, inval, out, res, "tokens x hidden past the address space");
  a = good, a.x = NULL;
  expect_bad(ctx, g, &a, NULL, inval, out, res, "x NULL");
  a = good, a.residual = NULL;
  expect_bad(ctx, g, &a, NULL, inval, out, res, "residual NULL");
  a = good, a.weight = NULL;
  expect_bad(ctx, g, &a, NULL, inval, out, res, "weight NULL");
  a = good, a.out = NULL;
  expect_bad(ctx, g, &a, NULL, inval, out, res, "out NULL");
  a = good, a.out_scale = NULL;
  expect_bad(ctx, g, &a, NULL, inval, out, res, "out_fp8 without out_scale");
  a = good, a.x = out + 1;
  expect_bad(ctx, g, &a, NULL, inval, out, res, "out overlapping x");
  a = good, a.residual = out + 63;
  expect_bad(ctx, g, &a, NULL, inval, out, res, "out overlapping residual");
  expect_bad(ctx, g, &good, (void *)0x1, inval, out, res, "a stream on a CPU context");
  /* tokens 0 is a no-op, NULL buffers and all */
  a = norm_args(MOECOMM_BFLOAT16, 0, 8, 0.0f, NULL, NULL, NULL, NULL, NULL, NULL);
  MC_CHECK_RC(api, ctx, api->all_reduce_rmsnorm(g, &a, NULL), MOECOMM_SUCCESS);
  /* a newer caller's larger struct: the fields we know are read, the call runs */
  memset(&big, 0, sizeof(big));
  big.a = good;
  big.a.struct_size = sizeof(big);
  MC_CHECK_RC(api, ctx, api->all_reduce_rmsnorm(g, &big.a, NULL), MOECOMM_SUCCESS);
  MC_CHECK(out[0] != 0x5555, "the larger struct's call wrote nothing");
  api->context_destroy(ctx);
  return 0;
}

int main(int argc, char **argv) {
  mc_test_init("shm_rmsnorm", argc, argv);
  api = mc_test_plugin();
  if (!MC_CHECK(api->all_reduce_rmsnorm != NULL, "the plugin lacks all_reduce_rmsnorm"))
    return mc_test_finish();
  setenv("MOECOMM_TIMEOUT_MS", "60000", 1);
  MC_CHECK(mc_test_ranks(2, rank_bad, NULL, 60) == 0, "bad arguments, 2 ranks");
  for (int world = 2; world <= 4; world++)
    MC_CHECK(mc_test_ranks(world, rank_main, NULL, 300) == 0, "%d ranks", world);
  return mc_test_finish();
}
