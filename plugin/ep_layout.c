/* SPDX-License-Identifier: Apache-2.0 */
/* ep_layout.c - expert-parallel layout arithmetic and the CPU reference of dispatch and combine. */
#include "ep_layout.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define ALIGN 16

/* ---- checked 64-bit arithmetic --------------------------------------------------------------- */

static moecomm_result_t too_big(mc_err_t *err, const char *what, int64_t a, int64_t b, char op) {
  return mc_err_set(err, MOECOMM_ERR_INVALID_ARGUMENT,
                    "expert-parallel layout: %s = %lld %c %lld exceeds PTRDIFF_MAX (%lld)", what,
                    (long long)a, op, (long long)b, (long long)PTRDIFF_MAX);
}

static moecomm_result_t ck_mul(int64_t a, int64_t b, const char *what, int64_t *r, mc_err_t *err) {
  int64_t p;
  if (__builtin_mul_overflow(a, b, &p) || p > PTRDIFF_MAX) return too_big(err, what, a, b, 'x');
  *r = p;
  return MOECOMM_SUCCESS;
}

static moecomm_result_t ck_add(int64_t a, int64_t b, const char *what, int64_t *r, mc_err_t *err) {
  int64_t s;
  if (__builtin_add_overflow(a, b, &s) || s > PTRDIFF_MAX - (ALIGN - 1))
    return too_big(err, what, a, b, '+');
  *r = (s + ALIGN - 1) & ~(int64_t)(ALIGN - 1); /* every region starts 16-byte aligned */
  return MOECOMM_SUCCESS;
}

/* *r = a * b * c (all >= 0); the message names the three factors. */
static moecomm_result_t ck_mul3(int64_t a, int64_t b, int64_t c, const char *what, int64_t *r,
                                mc_err_t *err) {
  int64_t ab, abc;
  if (__builtin_mul_overflow(a, b, &ab) || __builtin_mul_overflow(ab, c, &abc) || abc > PTRDIFF_MAX)
    return mc_err_set(err, MOECOMM_ERR_INVALID_ARGUMENT,
                      "expert-parallel layout: %s = %lld x %lld x %lld exceeds PTRDIFF_MAX (%lld)",
                      what, (long long)a, (long long)b, (long long)c, (long long)PTRDIFF_MAX);
  *r = abc;
  return MOECOMM_SUCCESS;
}

/* ---- configuration --------------------------------------------------------------------------- */

size_t mc_ep_dtype_size(int32_t dtype) {
  switch (dtype) {
    case MOECOMM_FLOAT32: return 4;
    case MOECOMM_FLOAT16:
    case MOECOMM_BFLOAT16: return 2;
    case MC_EP_FLOAT8_E4M3: return 1;
    default: return 0;
  }
}

static int is_float_dtype(int32_t d) {
  return d == MOECOMM_FLOAT32 || d == MOECOMM_FLOAT16 || d == MOECOMM_BFLOAT16;
}

static moecomm_result_t check_counts(const mc_ep_config_t *c, mc_err_t *err) {
  const moecomm_result_t bad = MOECOMM_ERR_INVALID_ARGUMENT;
  const int max_n = c->path == MC_EP_PATH_NVLINK ? MC_EP_MAX_NVL_RANKS : MC_EP_MAX_RANKS;
  if (c->path != MC_EP_PATH_NVLINK && c->path != MC_EP_PATH_NCCL)
    return mc_err_set(err, bad, "expert-parallel path %d is neither NVLink (%d) nor NCCL (%d)",
                      (int)c->path, MC_EP_PATH_NVLINK, MC_EP_PATH_NCCL);
  if (c->ranks < 1 || c->ranks > max_n)
    return mc_err_set(err, c->ranks > max_n ? MOECOMM_ERR_NOT_SUPPORTED : bad,
                      "expert parallelism over %d ranks: the %s path takes 1 to %d", (int)c->ranks,
                      c->path == MC_EP_PATH_NVLINK ? "NVLink" : "NCCL", max_n);
  if (c->experts < 1 || c->experts > MC_EP_MAX_EXPERTS || c->experts % c->ranks != 0)
    return mc_err_set(err, bad, "%d experts: need 1 to %d experts split evenly over %d ranks",
                      (int)c->experts, MC_EP_MAX_EXPERTS, (int)c->ranks);
  if (c->top_k < 1 || c->top_k > MC_EP_MAX_TOPK)
    return mc_err_set(err, bad, "top-k %d is outside 1..%d", (int)c->top_k, MC_EP_MAX_TOPK);
  if (mc_ep_dtype_size(c->dtype) == 0)
    return mc_err_set(err, bad, "dispatch dtype %d is not fp32 (0), fp16 (1), bf16 (2) or fp8 (%d)",
                      (int)c->dtype, MC_EP_FLOAT8_E4M3);
  if (!is_float_dtype(c->combine_dtype))
    return mc_err_set(err, bad, "combine dtype %d is not fp32 (0), fp16 (1) or bf16 (2)",
                      (int)c->combine_dtype);
  if (c->scales < 0 || (c->scales > 0 && c->dtype != MC_EP_FLOAT8_E4M3))
    return mc_err_set(err, bad, "%d scales per token: only an fp8 payload carries scales (>= 0)",
                      (int)c->scales);
  if (c->t_max < 1 || c->hidden < 1 || c->capacity < 0)
    return mc_err_set(err, bad, "t_max %lld and hidden %lld must be >= 1, capacity %lld >= 0",
                      (long long)c->t_max, (long long)c->hidden, (long long)c->capacity);
  return MOECOMM_SUCCESS;
}

/* Item numbers (t*K + k, and member * T_max * K in the message index) and rows are int32 in the
   kernels and in recv_src. */
static moecomm_result_t check_int32(mc_ep_config_t *c, mc_err_t *err) {
  int64_t items, all;
  if (__builtin_mul_overflow(c->t_max, (int64_t)c->top_k, &items) ||
      __builtin_mul_overflow(items, (int64_t)c->ranks, &all) || all > INT32_MAX)
    return mc_err_set(err, MOECOMM_ERR_INVALID_ARGUMENT,
                      "expert-parallel layout: ranks %d x t_max %lld x top-k %d exceeds INT32_MAX "
                      "(items are numbered in 32 bits)",
                      (int)c->ranks, (long long)c->t_max, (int)c->top_k);
  if (c->capacity == 0) c->capacity = (int64_t)c->ranks * c->t_max;
  if (c->capacity > INT32_MAX)
    return mc_err_set(err, MOECOMM_ERR_INVALID_ARGUMENT,
                      "expert-parallel capacity %lld rows per expert exceeds INT32_MAX",
                      (long long)c->capacity);
  return MOECOMM_SUCCESS;
}

/* Row sizes, one mailbox and one combine message. */
static moecomm_result_t size_rows(mc_ep_layout_t *l, mc_err_t *err) {
  const mc_ep_config_t *c = &l->cfg;
  const int64_t es = (int64_t)mc_ep_dtype_size(c->dtype);
  const int64_t ces = (int64_t)mc_ep_dtype_size(c->combine_dtype);
  int64_t scales_per_tok, v = 0;
  moecomm_result_t rc;
  l->items = c->t_max * c->top_k; /* checked by check_int32 */
  if ((rc = ck_mul(c->hidden, es, "hidden x payload element size", &l->row_bytes, err)) ||
      (rc = ck_mul(c->hidden, ces, "hidden x combine element size", &l->crow_bytes, err)))
    return rc;
  if (l->row_bytes % ALIGN != 0 || l->crow_bytes % ALIGN != 0)
    return mc_err_set(err, MOECOMM_ERR_NOT_SUPPORTED,
                      "hidden %lld: rows of %lld (payload) and %lld (combine) bytes must be "
                      "multiples of 16 bytes",
                      (long long)c->hidden, (long long)l->row_bytes, (long long)l->crow_bytes);
  scales_per_tok = 4 * (int64_t)c->scales;
  l->mb_hist_off = MC_EP_HEADER_BYTES;
  if ((rc = ck_add(l->mb_hist_off, 4 * (int64_t)c->experts, "mailbox histogram end",
                   &l->mb_rowlist_off, err)) ||
      (rc = ck_add(l->mb_rowlist_off, 4 * l->items, "mailbox row list end", &l->mb_scales_off,
                   err)) ||
      (rc = ck_mul(c->t_max, scales_per_tok, "t_max x scale bytes per token", &v, err)) ||
      (rc = ck_add(l->mb_scales_off, v, "mailbox scales end", &l->mb_rows_off, err)) ||
      (rc = ck_mul(c->t_max, l->row_bytes, "t_max x row bytes", &v, err)) ||
      (rc = ck_add(l->mb_rows_off, v, "mailbox bytes", &l->mb_bytes, err)))
    return rc;
  l->cmsg_rows = (int64_t)l->local_experts * c->capacity; /* <= 2^10 * 2^31 */
  if (l->cmsg_rows > l->items) l->cmsg_rows = l->items;
  if ((rc = ck_mul(l->cmsg_rows, l->crow_bytes, "message rows x combine row bytes", &v, err)) ||
      (rc = ck_add(MC_EP_HEADER_BYTES, v, "combine message bytes", &l->cmsg_bytes, err)))
    return rc;
  return MOECOMM_SUCCESS;
}

/* The segment's regions. */
static moecomm_result_t size_segment(mc_ep_layout_t *l, mc_err_t *err) {
  const mc_ep_config_t *c = &l->cfg;
  const int nccl = c->path == MC_EP_PATH_NCCL;
  int64_t v = 0, end = 0;
  moecomm_result_t rc;
  l->inbox_off = MC_EP_SEG_HEADER;
  if ((rc = ck_mul(c->ranks, l->mb_bytes, "ranks x mailbox bytes", &v, err)) ||
      (rc = ck_add(l->inbox_off, v, "segment inbox end", &l->cin_off, err)))
    return rc;
  if (nccl)
    rc = ck_mul(c->ranks, l->cmsg_bytes, "ranks x combine message bytes", &v, err);
  else
    rc = ck_mul(l->items, l->crow_bytes, "t_max x top-k x combine row bytes", &v, err);
  if (rc || (rc = ck_add(l->cin_off, v, "segment combine region end", &l->scratch_off, err)))
    return rc;
  l->item_row_off = l->scratch_off;
  if ((rc =
           ck_add(l->item_row_off, 4 * l->items, "segment item rows end", &l->item_seq_off, err)) ||
      (rc = ck_add(l->item_seq_off, 4 * l->items, "segment item sequence end", &l->pair_cnt_off,
                   err)) ||
      (rc = ck_add(l->pair_cnt_off, 4 * (int64_t)c->experts, "segment scratch end", &end, err)))
    return rc;
  l->stage_off = l->cstage_off = 0;
  if (nccl) {
    l->stage_off = end;
    if ((rc = ck_mul(c->ranks, l->mb_bytes, "ranks x mailbox bytes", &v, err)) ||
        (rc = ck_add(l->stage_off, v, "segment send staging end", &l->cstage_off, err)) ||
        (rc = ck_mul(c->ranks, l->cmsg_bytes, "ranks x combine message bytes", &v, err)) ||
        (rc = ck_add(l->cstage_off, v, "segment bytes", &end, err)))
      return rc;
  }
  l->seg_bytes = end;
  return MOECOMM_SUCCESS;
}

/* The caller's buffers. */
static moecomm_result_t size_user(mc_ep_layout_t *l, mc_err_t *err) {
  const mc_ep_config_t *c = &l->cfg;
  const int64_t el = l->local_experts, cap = c->capacity;
  moecomm_result_t rc;
  if ((rc = ck_mul(c->t_max, l->row_bytes, "t_max x row bytes", &l->x_bytes, err)) ||
      (rc = ck_mul3(c->t_max, c->scales, 4, "t_max x scales x 4", &l->x_scales_bytes, err)) ||
      (rc = ck_mul3(el, cap, l->row_bytes, "local experts x capacity x row bytes", &l->recv_x_bytes,
                    err)) ||
      (rc = ck_mul3(el, cap, 4 * (int64_t)c->scales, "local experts x capacity x scale bytes",
                    &l->recv_scales_bytes, err)) ||
      (rc = ck_mul3(el, cap, 12, "local experts x capacity x 12", &l->recv_src_bytes, err)) ||
      (rc = ck_mul3(el, cap, l->crow_bytes, "local experts x capacity x combine row bytes",
                    &l->y_bytes, err)) ||
      (rc = ck_mul(c->t_max, l->crow_bytes, "t_max x combine row bytes", &l->out_bytes, err)))
    return rc;
  l->recv_counts_bytes = 4 * el;
  return MOECOMM_SUCCESS;
}

moecomm_result_t mc_ep_layout_init(const mc_ep_config_t *cfg, mc_ep_layout_t *layout_p,
                                   mc_err_t *err) {
  mc_ep_layout_t l;
  moecomm_result_t rc;
  if (cfg == NULL || layout_p == NULL)
    return mc_err_set(err, MOECOMM_ERR_INVALID_ARGUMENT,
                      "expert-parallel layout: config %p and output %p must not be NULL",
                      (const void *)cfg, (void *)layout_p);
  memset(&l, 0, sizeof(l));
  l.cfg = *cfg;
  if ((rc = check_counts(&l.cfg, err)) || (rc = check_int32(&l.cfg, err))) return rc;
  l.local_experts = l.cfg.experts / l.cfg.ranks;
  if ((rc = size_rows(&l, err)) || (rc = size_segment(&l, err)) || (rc = size_user(&l, err)))
    return rc;
  *layout_p = l;
  return MOECOMM_SUCCESS;
}

int32_t mc_ep_expert_rank(const mc_ep_layout_t *layout, int32_t expert) {
  if (expert < 0 || expert >= layout->cfg.experts) return -1;
  return expert / layout->local_experts;
}

/* ---- data errors ----------------------------------------------------------------------------- */

moecomm_result_t mc_ep_report_overflow(mc_err_t *err, const mc_ep_layout_t *layout, uint64_t pair,
                                       int32_t expert, int64_t dropped) {
  return mc_err_set(err, MOECOMM_ERR_NOT_SUPPORTED,
                    "dispatch %llu sent expert %d %lld rows more than its capacity of %lld: they "
                    "were dropped (raise expert_capacity in moe_configure)",
                    (unsigned long long)pair, (int)expert, (long long)dropped,
                    (long long)layout->cfg.capacity);
}

moecomm_result_t mc_ep_report_bad_id(mc_err_t *err, const mc_ep_layout_t *layout, uint64_t pair,
                                     int32_t id, int64_t token, int64_t slot) {
  return mc_err_set(err, MOECOMM_ERR_INVALID_ARGUMENT,
                    "dispatch %llu had expert id %d at token %lld, slot %lld, outside [-1, %d): "
                    "the slot was treated as masked",
                    (unsigned long long)pair, (int)id, (long long)token, (long long)slot,
                    (int)layout->cfg.experts);
}

/* ---- 16-bit floats ------------------------------------------------------------------------- */

static uint32_t f32_bits(float f) {
  uint32_t u;
  memcpy(&u, &f, sizeof(u));
  return u;
}

static float bits_f32(uint32_t u) {
  float f;
  memcpy(&f, &u, sizeof(f));
  return f;
}

uint16_t mc_ep_to_bf16(float f) {
  const uint32_t x = f32_bits(f);
  if ((x & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((x >> 16) | 0x40u); /* quiet NaN */
  return (uint16_t)((x + 0x7fffu + ((x >> 16) & 1u)) >> 16);
}

float mc_ep_from_bf16(uint16_t b) {
  return bits_f32((uint32_t)b << 16);
}

uint16_t mc_ep_to_half(float f) {
  const uint32_t x = f32_bits(f), sign = (x >> 16) & 0x8000u, ax = x & 0x7fffffffu;
  if (ax > 0x7f800000u) return (uint16_t)(sign | 0x7e00u);
  if (ax >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u); /* >= 65520 rounds to infinity */
  if (ax < 0x38800000u) /* below 2^-14: a multiple of 2^-24 (rintf rounds to nearest even) */
    return (uint16_t)(sign | (uint32_t)rintf(bits_f32(ax) * 16777216.0f));
  {
    const uint32_t r = ax - 0x38000000u; /* exponent bias 127 -> 15 */
    return (uint16_t)(sign | ((r + 0x0fffu + ((r >> 13) & 1u)) >> 13));
  }
}

float mc_ep_from_half(uint16_t h) {
  const uint32_t sign = (uint32_t)(h & 0x8000u) << 16, e = (h >> 10) & 0x1fu, m = h & 0x3ffu;
  if (e == 0) {
    const float v = (float)m / 16777216.0f; /* m * 2^-24, exact */
    return sign ? -v : v;
  }
  if (e == 31) return bits_f32(sign | 0x7f800000u | (m << 13));
  return bits_f32(sign | ((e + 112u) << 23) | (m << 13));
}

static float load_f(const void *p, size_t i, int32_t dtype) {
  if (dtype == MOECOMM_FLOAT32) return ((const float *)p)[i];
  if (dtype == MOECOMM_FLOAT16) return mc_ep_from_half(((const uint16_t *)p)[i]);
  return mc_ep_from_bf16(((const uint16_t *)p)[i]);
}

static void store_f(void *p, size_t i, int32_t dtype, float v) {
  if (dtype == MOECOMM_FLOAT32)
    ((float *)p)[i] = v;
  else if (dtype == MOECOMM_FLOAT16)
    ((uint16_t *)p)[i] = mc_ep_to_half(v);
  else
    ((uint16_t *)p)[i] = mc_ep_to_bf16(v);
}

/* ---- reference ------------------------------------------------------------------------------- */

/* Every member's routing: tokens in range, ids in [-1, E), the arrays present. */
static moecomm_result_t check_ranks(const mc_ep_layout_t *l, const mc_ep_ref_rank_t *ranks,
                                    int need_x, mc_err_t *err) {
  const mc_ep_config_t *c = &l->cfg;
  if (ranks == NULL)
    return mc_err_set(err, MOECOMM_ERR_INVALID_ARGUMENT, "expert-parallel reference: no ranks");
  for (int q = 0; q < c->ranks; q++) {
    const mc_ep_ref_rank_t *r = &ranks[q];
    if (r->tokens < 0 || r->tokens > c->t_max)
      return mc_err_set(err, MOECOMM_ERR_INVALID_ARGUMENT,
                        "expert-parallel reference: rank %d has %lld tokens, t_max is %lld", q,
                        (long long)r->tokens, (long long)c->t_max);
    if (r->tokens == 0) continue;
    if (r->ids == NULL || (need_x && r->x == NULL) || (need_x && c->scales && r->scales == NULL))
      return mc_err_set(err, MOECOMM_ERR_INVALID_ARGUMENT,
                        "expert-parallel reference: rank %d lacks ids, payload or scales", q);
    for (int64_t i = 0; i < r->tokens * c->top_k; i++)
      if (r->ids[i] < -1 || r->ids[i] >= c->experts)
        return mc_err_set(err, MOECOMM_ERR_INVALID_ARGUMENT,
                          "expert-parallel reference: rank %d token %lld slot %lld has expert id "
                          "%d, outside [-1, %d)",
                          q, (long long)(i / c->top_k), (long long)(i % c->top_k), (int)r->ids[i],
                          (int)c->experts);
  }
  return MOECOMM_SUCCESS;
}

moecomm_result_t mc_ep_ref_item_rows(const mc_ep_layout_t *layout, const mc_ep_ref_rank_t *ranks,
                                     int32_t rank, int32_t *rows, mc_err_t *err) {
  int64_t next[MC_EP_MAX_EXPERTS];
  moecomm_result_t rc;
  if ((rc = check_ranks(layout, ranks, 0, err))) return rc;
  if (rank < 0 || rank >= layout->cfg.ranks || (rows == NULL && ranks[rank].tokens > 0))
    return mc_err_set(err, MOECOMM_ERR_INVALID_ARGUMENT,
                      "expert-parallel reference: rank %d of %d, rows %p", (int)rank,
                      (int)layout->cfg.ranks, (void *)rows);
  memset(next, 0, sizeof(next));
  for (int q = 0; q < rank; q++)
    for (int64_t i = 0; i < ranks[q].tokens * layout->cfg.top_k; i++)
      if (ranks[q].ids[i] >= 0) next[ranks[q].ids[i]]++;
  for (int64_t i = 0; i < ranks[rank].tokens * layout->cfg.top_k; i++) {
    const int32_t e = ranks[rank].ids[i];
    rows[i] = e < 0 ? -1 : (int32_t)next[e]++;
  }
  return MOECOMM_SUCCESS;
}

moecomm_result_t mc_ep_ref_dispatch(const mc_ep_layout_t *layout, const mc_ep_ref_rank_t *ranks,
                                    int32_t dest, void *recv_x, float *recv_scales,
                                    int32_t *recv_counts, int32_t *recv_src, int64_t *totals,
                                    mc_err_t *err) {
  const mc_ep_config_t *c = &layout->cfg;
  const int64_t el = layout->local_experts, rb = layout->row_bytes, cap = c->capacity;
  const int64_t first = (int64_t)dest * el, ns = c->scales;
  int64_t next[MC_EP_MAX_EXPERTS];
  moecomm_result_t rc;
  if ((rc = check_ranks(layout, ranks, 1, err))) return rc;
  if (dest < 0 || dest >= c->ranks || recv_x == NULL || recv_counts == NULL || recv_src == NULL ||
      (ns > 0 && recv_scales == NULL))
    return mc_err_set(err, MOECOMM_ERR_INVALID_ARGUMENT,
                      "expert-parallel reference: destination %d of %d, or an output is NULL",
                      (int)dest, (int)c->ranks);
  memset(next, 0, sizeof(next));
  /* members, then tokens, then k: the row order */
  for (int q = 0; q < c->ranks; q++) {
    for (int64_t i = 0; i < ranks[q].tokens * c->top_k; i++) {
      const int64_t e = ranks[q].ids[i] - first, t = i / c->top_k;
      int64_t row;
      if (e < 0 || e >= el) continue;
      row = next[e]++;
      if (row >= cap) continue;
      memcpy((char *)recv_x + (e * cap + row) * rb, (const char *)ranks[q].x + t * rb, (size_t)rb);
      if (ns > 0)
        memcpy(recv_scales + (e * cap + row) * ns, ranks[q].scales + t * ns,
               (size_t)ns * sizeof(float));
      recv_src[(e * cap + row) * 3] = q;
      recv_src[(e * cap + row) * 3 + 1] = (int32_t)t;
      recv_src[(e * cap + row) * 3 + 2] = (int32_t)(i % c->top_k);
    }
  }
  for (int64_t e = 0; e < el; e++) {
    recv_counts[e] = (int32_t)(next[e] < cap ? next[e] : cap);
    if (totals != NULL) totals[e] = next[e];
  }
  return MOECOMM_SUCCESS;
}

void mc_ep_ref_combine_token(const mc_ep_layout_t *layout, const float *weights,
                             const void *const *rows, void *out) {
  const mc_ep_config_t *c = &layout->cfg;
  for (int64_t j = 0; j < c->hidden; j++) {
    float acc = 0.0f;
    for (int64_t k = 0; k < c->top_k; k++) {
      float p;
      if (rows[k] == NULL) continue;
      /* fp32 product, then fp32 sum: two roundings, as in the kernels (ISO C mode, -std=c11,
         does not contract them into an fma) */
      p = weights[k] * load_f(rows[k], (size_t)j, c->combine_dtype);
      acc = acc + p;
    }
    store_f(out, (size_t)j, c->combine_dtype, acc);
  }
}

moecomm_result_t mc_ep_ref_combine(const mc_ep_layout_t *layout, const mc_ep_ref_rank_t *ranks,
                                   int32_t rank, const void *const *y, void *out, mc_err_t *err) {
  const mc_ep_config_t *c = &layout->cfg;
  const int64_t el = layout->local_experts, k_n = c->top_k, crb = layout->crow_bytes;
  const mc_ep_ref_rank_t *me;
  const void *rows_k[MC_EP_MAX_TOPK];
  moecomm_result_t rc;
  int32_t *rows;
  if (rank < 0 || rank >= c->ranks || y == NULL || ranks == NULL)
    return mc_err_set(err, MOECOMM_ERR_INVALID_ARGUMENT,
                      "expert-parallel reference: rank %d of %d, or no expert outputs", (int)rank,
                      (int)c->ranks);
  if ((rc = check_ranks(layout, ranks, 0, err))) return rc;
  me = &ranks[rank];
  if (me->tokens > 0 && (out == NULL || me->weights == NULL))
    return mc_err_set(err, MOECOMM_ERR_INVALID_ARGUMENT,
                      "expert-parallel reference: rank %d lacks weights or output", (int)rank);
  for (int q = 0; q < c->ranks; q++)
    if (y[q] == NULL)
      return mc_err_set(err, MOECOMM_ERR_INVALID_ARGUMENT,
                        "expert-parallel reference: rank %d's expert output is NULL", q);
  rows = (int32_t *)malloc((size_t)(me->tokens > 0 ? me->tokens * k_n : 1) * sizeof(int32_t));
  if (rows == NULL)
    return mc_err_set(err, MOECOMM_ERR_NO_MEMORY,
                      "expert-parallel reference: no memory for %lld item rows",
                      (long long)(me->tokens * k_n));
  if ((rc = mc_ep_ref_item_rows(layout, ranks, rank, rows, err))) {
    free(rows);
    return rc;
  }
  for (int64_t t = 0; t < me->tokens; t++) {
    for (int64_t k = 0; k < k_n; k++) {
      const int64_t i = t * k_n + k, row = rows[i], e = me->ids[i];
      rows_k[k] = row < 0 || row >= c->capacity
                      ? NULL
                      : (const char *)y[e / el] + ((e % el) * c->capacity + row) * crb;
    }
    mc_ep_ref_combine_token(layout, me->weights + t * k_n, rows_k, (char *)out + t * crb);
  }
  free(rows);
  return MOECOMM_SUCCESS;
}
