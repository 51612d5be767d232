/* SPDX-License-Identifier: Apache-2.0 */
/* shm_deterministic.c - deterministic mode through the ABI on CPU contexts (shm): a row's result
 * does not depend on the batch it is reduced in or where it sits in it.
 *
 * 2, 3 and 4 ranks; the mode asked for with MOECOMM_CONTEXT_DETERMINISTIC (2 and 4 ranks) or
 * MOECOMM_DETERMINISTIC=1 (3 ranks).  A pool of 512 rows of reals of mixed sign and magnitude per
 * rank (so fp32 sums over 3 and more ranks round, and a different order would show); batches of
 * 1, 7, 64 and 512 consecutive pool rows at several offsets, through
 *   all_reduce       fp32, fp16 and bf16, rows of 1000 elements (most rows not 16-byte aligned),
 *   reduce_scatter   bf16, rows of 1000: each rank's block q holds pool rows of block q,
 *   all_reduce_rmsnorm  bf16 rows of 4096 and fp16 rows of 100, the residual reset each call.
 * Every row of every batch must have exactly the bits of the first batch that produced it, and
 * of the rule (rank order in fp32, one rounding; tests/common/rmsnorm_def.h for the norm); the
 * reduce_scatter's rows must equal the all-reduce of the same rows. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/harness.h"
#include "../common/rmsnorm_def.h"

#define POOL 512
#define ROW 1000    /* elements of an all-reduce / reduce_scatter row */
#define NORM_H 4096 /* the largest norm row */
#define MAXW 4

static const moecomm_api_t *api;
static const size_t k_batch[4] = {1, 7, 64, 512};
static const size_t k_start[4][3] = {{0, 5, 511}, {0, 3, 505}, {0, 100, 448}, {0, 0, 0}};

static size_t esz(moecomm_dtype_t dt) {
  return dt == MOECOMM_FLOAT32 ? 4 : 2;
}

/* Rank r's pool for a (dtype, salt): POOL rows of `row` elements. */
static void fill_pool(void *pool, size_t row, moecomm_dtype_t dt, int r, uint64_t salt) {
  rd_fill(pool, POOL * row, dt, salt * 64 + (uint64_t)r);
}

/* The rule for fp32: rank order in fp32. */
static void sum_f32(const void *const *ins, int n, size_t count, float *out) {
  for (size_t i = 0; i < count; i++) {
    float acc = ((const float *)ins[0])[i];
    for (int r = 1; r < n; r++) acc = acc + ((const float *)ins[r])[i];
    out[i] = acc;
  }
}

/* Checks rows [s, s + B) of got (row_bytes each) against the reference rows, and against what
   the first batch holding each row produced (seen[], first[]). */
static int rows_ok(const char *got, const char *ref, char *first, unsigned char *seen, size_t s,
                   size_t B, size_t row_bytes, const char *what) {
  for (size_t t = 0; t < B; t++) {
    const char *g = got + t * row_bytes;
    if (!MC_CHECK(memcmp(g, ref + (s + t) * row_bytes, row_bytes) == 0,
                  "%s: batch of %zu at %zu: row %zu differs from the rule", what, B, s, s + t))
      return 0;
    if (seen[s + t] && !MC_CHECK(memcmp(g, first + (s + t) * row_bytes, row_bytes) == 0,
                                 "%s: batch of %zu at %zu: row %zu differs from its first batch",
                                 what, B, s, s + t))
      return 0;
    memcpy(first + (s + t) * row_bytes, g, row_bytes);
    seen[s + t] = 1;
  }
  return 1;
}

typedef struct ctx_s {
  moecomm_context_t *ctx;
  moecomm_group_t *g;
  int rank, world;
  void *pool[MAXW], *ref, *first, *got, *res, *w;
  unsigned char seen[POOL];
} det_t;

static int all_reduce_batches(det_t *d, moecomm_dtype_t dt) {
  const size_t es = esz(dt), rb = ROW * es;
  const void *ins[MAXW];
  char what[64];
  snprintf(what, sizeof(what), "%d ranks, all_reduce %s", d->world,
           dt == MOECOMM_FLOAT32   ? "fp32"
           : dt == MOECOMM_FLOAT16 ? "fp16"
                                   : "bf16");
  for (int r = 0; r < d->world; r++) {
    fill_pool(d->pool[r], ROW, dt, r, (uint64_t)dt);
    ins[r] = d->pool[r];
  }
  if (dt == MOECOMM_FLOAT32)
    sum_f32(ins, d->world, POOL * ROW, d->ref);
  else
    rd_all_reduce(ins, d->world, POOL * ROW, dt, d->ref);
  memset(d->seen, 0, sizeof(d->seen));
  for (int b = 0; b < 4; b++)
    for (int k = 0; k < 3; k++) {
      const size_t B = k_batch[b], s = k_start[b][k];
      moecomm_result_t r;
      memset(d->got, 0xee, B * rb);
      r = api->all_reduce(d->g, (char *)d->pool[d->rank] + s * rb, d->got, B * ROW, dt, MOECOMM_SUM,
                          NULL);
      if (!MC_CHECK_RC(api, d->ctx, r, MOECOMM_SUCCESS) ||
          !rows_ok(d->got, d->ref, d->first, d->seen, s, B, rb, what))
        return 0;
    }
  return MC_CHECK(1, "%s", what);
}

/* Block q of every rank's send holds that rank's pool q rows [s, s + B); the result is pool
   rows of my block, summed. */
static int reduce_scatter_batches(det_t *d) {
  const moecomm_dtype_t dt = MOECOMM_BFLOAT16;
  const size_t rb = ROW * 2;
  const void *ins[MAXW];
  char *send = d->res; /* world * POOL rows fit: sized for that */
  char what[64];
  snprintf(what, sizeof(what), "%d ranks, reduce_scatter bf16", d->world);
  /* ref: my block's rows summed over the ranks, pool[r] of block q = rank r's pool salted q */
  for (int r = 0; r < d->world; r++) {
    fill_pool(d->pool[r], ROW, dt, r, 100 + (uint64_t)d->rank);
    ins[r] = d->pool[r];
  }
  rd_all_reduce(ins, d->world, POOL * ROW, dt, d->ref);
  memset(d->seen, 0, sizeof(d->seen));
  for (int b = 0; b < 4; b++)
    for (int k = 0; k < 3; k++) {
      const size_t B = k_batch[b], s = k_start[b][k];
      moecomm_result_t r;
      for (int q = 0; q < d->world; q++) {
        fill_pool(d->got, ROW, dt, d->rank, 100 + (uint64_t)q); /* my pool for block q */
        memcpy(send + (size_t)q * B * rb, (char *)d->got + s * rb, B * rb);
      }
      memset(d->got, 0xee, B * rb);
      r = api->reduce_scatter(d->g, send, d->got, B * ROW, dt, MOECOMM_SUM, NULL);
      if (!MC_CHECK_RC(api, d->ctx, r, MOECOMM_SUCCESS) ||
          !rows_ok(d->got, d->ref, d->first, d->seen, s, B, rb, what))
        return 0;
    }
  return MC_CHECK(1, "%s", what);
}

static int rmsnorm_batches(det_t *d, moecomm_dtype_t dt, size_t H) {
  const size_t rb = H * 2;
  const void *ins[MAXW];
  char *res0 = d->first + (size_t)POOL * rb, *want_res = res0 + (size_t)POOL * rb;
  char *first_res = want_res + (size_t)POOL * rb;
  unsigned char seen_res[POOL];
  char what[80];
  snprintf(what, sizeof(what), "%d ranks, all_reduce_rmsnorm %s H %zu", d->world,
           dt == MOECOMM_FLOAT16 ? "fp16" : "bf16", H);
  for (int r = 0; r < d->world; r++) {
    rd_fill(d->pool[r], POOL * H, dt, 300 + (uint64_t)r);
    ins[r] = d->pool[r];
  }
  rd_fill(res0, POOL * H, dt, 399);
  for (size_t h = 0; h < H; h++) /* in [0.5, 1.5): y stays finite in fp16 */
    ((uint16_t *)d->w)[h] = rd_bits(0.5f + (float)((h * 7919) % 4096) / 4096, dt);
  rd_all_reduce(ins, d->world, POOL * H, dt, d->ref);
  memcpy(want_res, res0, POOL * rb);
  rd_add_rmsnorm(dt, POOL, H, d->ref, want_res, d->w, 1e-6f, d->ref, NULL, NULL);
  memset(d->seen, 0, sizeof(d->seen));
  memset(seen_res, 0, sizeof(seen_res));
  for (int b = 0; b < 4; b++)
    for (int k = 0; k < 3; k++) {
      const size_t B = k_batch[b], s = k_start[b][k];
      moecomm_rmsnorm_args_t a;
      memset(&a, 0, sizeof(a));
      a.struct_size = sizeof(a);
      a.dtype = dt;
      a.eps = 1e-6f;
      a.tokens = B;
      a.hidden = H;
      a.x = (char *)d->pool[d->rank] + s * rb;
      a.residual = d->res;
      a.weight = d->w;
      a.out = d->got;
      memcpy(d->res, res0 + s * rb, B * rb);
      memset(d->got, 0xee, B * rb);
      if (!MC_CHECK_RC(api, d->ctx, api->all_reduce_rmsnorm(d->g, &a, NULL), MOECOMM_SUCCESS) ||
          !rows_ok(d->got, d->ref, d->first, d->seen, s, B, rb, what) ||
          !rows_ok(d->res, want_res, first_res, seen_res, s, B, rb, what))
        return 0;
    }
  return MC_CHECK(1, "%s", what);
}

static int rank_main(int rank, int world, void *arg) {
  moecomm_topology_t topo = mc_test_topo(world, rank, world);
  moecomm_context_params_t p = mc_test_ctx_params(&topo, MOECOMM_DEVICE_CPU);
  const size_t big =
      (size_t)POOL * NORM_H * 4; /* bytes: the largest pool (fp32 rows of 1000 fit) */
  det_t d;
  (void)arg;
  memset(&d, 0, sizeof(d));
  d.rank = rank;
  d.world = world;
  if (world == 3)
    setenv("MOECOMM_DETERMINISTIC", "1", 1);
  else
    p.flags = MOECOMM_CONTEXT_DETERMINISTIC;
  if (!MC_CHECK_RC(api, NULL, api->context_create(&p, &d.ctx), MOECOMM_SUCCESS) ||
      !MC_CHECK_RC(api, d.ctx, api->group_get(d.ctx, MOECOMM_GROUP_TP, &d.g), MOECOMM_SUCCESS))
    return 1;
  for (int r = 0; r < world; r++) d.pool[r] = malloc(big);
  d.ref = malloc(big);
  d.first = malloc(4 * big);
  d.got = malloc(big);
  d.res = malloc((size_t)MAXW * big);
  d.w = malloc(NORM_H * 2);
  if (MC_CHECK(d.pool[world - 1] && d.ref && d.first && d.got && d.res && d.w, "host buffers")) {
    (void)(all_reduce_batches(&d, MOECOMM_FLOAT32) && all_reduce_batches(&d, MOECOMM_FLOAT16) &&
           all_reduce_batches(&d, MOECOMM_BFLOAT16) && reduce_scatter_batches(&d) &&
           rmsnorm_batches(&d, MOECOMM_BFLOAT16, NORM_H) &&
           rmsnorm_batches(&d, MOECOMM_FLOAT16, 100));
  }
  for (int r = 0; r < world; r++) free(d.pool[r]);
  free(d.ref);
  free(d.first);
  free(d.got);
  free(d.res);
  free(d.w);
  api->context_destroy(d.ctx);
  return 0;
}

int main(int argc, char **argv) {
  mc_test_init("shm_deterministic", argc, argv);
  api = mc_test_plugin();
  setenv("MOECOMM_TIMEOUT_MS", "60000", 1);
  for (int world = 2; world <= MAXW; world++)
    MC_CHECK(mc_test_ranks(world, rank_main, NULL, 300) == 0, "%d ranks", world);
  return mc_test_finish();
}
