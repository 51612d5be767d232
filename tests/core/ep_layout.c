/* SPDX-License-Identifier: Apache-2.0 */
/* ep_layout.c - expert-parallel layout and CPU reference (plugin/ep_layout.c), on CPU.
 *
 * Sizes: three layouts (NVLink and NCCL, bf16; NCCL fp8 with scales and a small capacity) whose
 * every offset is written out by hand from the rules in plugin/ep_layout.h.  Refusals: one bad
 * configuration per rule, including each 64-bit product and 32-bit count that can overflow: code,
 * a message naming the values, output untouched.  The expert -> rank map.  The 16-bit
 * conversions: known roundings and every fp16 / bf16 value round-tripped.  The reference, for
 * n = 1, 2, 3, 4, 8 members with different token counts (one member with none), every routing case
 * of ep_cases.h, every payload dtype, lossless and small capacities: received rows checked against
 * the rule (complete, in (member, token, k) order, the first C kept, the token's bytes and
 * scales, nothing written past the counts), item rows consistent with the received rows, and
 * identity experts combined back exactly to sum over kept k of w * x. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../plugin/ep_layout.h"
#include "../common/ep_cases.h"
#include "../common/harness.h"

#define MAXN 8
#define POISON 0xa5

/* ---- sizes --------------------------------------------------------------------------------- */

typedef struct want {
  int64_t rowlist, scales, rows, mb, cmsg_rows, cmsg, cin, scratch, seq, pair, stage, cstage, seg;
  int64_t cap, x, recv_x, recv_scales, recv_src, y, out;
} want_t;

static void expect_layout(const char *what, const mc_ep_config_t *c, const want_t *w) {
  mc_ep_layout_t l;
  mc_err_t err = {{0}};
  const moecomm_result_t r = mc_ep_layout_init(c, &l, &err);
  if (!MC_CHECK(r == MOECOMM_SUCCESS, "%s: %d %s", what, (int)r, err.msg)) return;
  const int64_t got[] = {l.mb_rowlist_off,    l.mb_scales_off,  l.mb_rows_off, l.mb_bytes,
                         l.cmsg_rows,         l.cmsg_bytes,     l.cin_off,     l.scratch_off,
                         l.item_seq_off,      l.pair_cnt_off,   l.stage_off,   l.cstage_off,
                         l.seg_bytes,         l.cfg.capacity,   l.x_bytes,     l.recv_x_bytes,
                         l.recv_scales_bytes, l.recv_src_bytes, l.y_bytes,     l.out_bytes};
  const int64_t exp[] = {w->rowlist, w->scales,      w->rows,     w->mb,  w->cmsg_rows,
                         w->cmsg,    w->cin,         w->scratch,  w->seq, w->pair,
                         w->stage,   w->cstage,      w->seg,      w->cap, w->x,
                         w->recv_x,  w->recv_scales, w->recv_src, w->y,   w->out};
  static const char *const names[] = {
      "mb_rowlist_off", "mb_scales_off",     "mb_rows_off",    "mb_bytes",     "cmsg_rows",
      "cmsg_bytes",     "cin_off",           "scratch_off",    "item_seq_off", "pair_cnt_off",
      "stage_off",      "cstage_off",        "seg_bytes",      "capacity",     "x_bytes",
      "recv_x_bytes",   "recv_scales_bytes", "recv_src_bytes", "y_bytes",      "out_bytes"};
  for (size_t i = 0; i < sizeof(got) / sizeof(got[0]); i++)
    MC_CHECK(got[i] == exp[i], "%s: %s is %lld, want %lld", what, names[i], (long long)got[i],
             (long long)exp[i]);
  MC_CHECK(l.local_experts == c->experts / c->ranks && l.mb_hist_off == 64 &&
               l.inbox_off == MC_EP_SEG_HEADER && l.item_row_off == l.scratch_off &&
               l.recv_counts_bytes == 4 * l.local_experts,
           "%s: fixed offsets", what);
}

static void test_sizes(void) {
  /* n 2, E 8 (El 4), K 2, bf16, T_max 5, H 16 (32-byte rows), C = 2 * 5: mailbox = header 64,
     hist 8*4 -> 96, row list 10*4 = 136 -> 144, no scales, rows 5*32 -> 304.  Message rows
     min(10, 4*10) = 10: 64 + 320 = 384.  NVLink: inbox 4096 + 2*304 = 4704, cin 10*32 -> 5024,
     item_row 40 -> 5064 -> 5072, item_seq 40 -> 5112 -> 5120, pair_cnt 32 -> 5152. */
  const want_t nvl = {96, 144, 144,  304, 10,  384,  4704, 5024, 5072, 5120,
                      0,  0,   5152, 10,  160, 1280, 0,    480,  1280, 160};
  /* NCCL: cin = 2 messages -> 4704 + 768 = 5472, seq 5520, pair 5568, end 5600 = stage,
     + 2*304 = 6208 = cstage, + 2*384 = 6976. */
  const want_t nccl = {96,   144,  144,  304, 10,  384,  4704, 5472, 5520, 5568,
                       5600, 6208, 6976, 10,  160, 1280, 0,    480,  1280, 160};
  /* n 4, E 16 (El 4), K 3, fp8 with 2 scales, fp32 combine, T_max 7, H 32, C 5: hist 64 -> 128,
     row list 21*4 = 212 -> 224, scales 7*8 = 280 -> 288, rows 7*32 -> 512.  Message rows
     min(21, 4*5) = 20: 64 + 20*128 = 2624.  inbox 4096 + 4*512 = 6144, cin 4*2624 -> 16640, seq
     16640 + 84 -> 16736, pair 16820 -> 16832, end 16896 = stage, cstage 16896 + 2048 = 18944,
     end 18944 + 10496 = 29440.  recv_x 4*5*32, scales 4*5*2*4, src 4*5*12, y 4*5*128. */
  const want_t fp8 = {128,   224,   288,   512, 20,  2624, 6144, 16640, 16736, 16832,
                      16896, 18944, 29440, 5,   224, 640,  160,  240,   2560,  896};
  mc_ep_config_t c =
      ep_config(2, 8, 2, MOECOMM_BFLOAT16, MOECOMM_BFLOAT16, 0, MC_EP_PATH_NVLINK, 5, 16, 0);
  expect_layout("n2 bf16 nvlink", &c, &nvl);
  c.path = MC_EP_PATH_NCCL;
  expect_layout("n2 bf16 nccl", &c, &nccl);
  c = ep_config(4, 16, 3, MC_EP_FLOAT8_E4M3, MOECOMM_FLOAT32, 2, MC_EP_PATH_NCCL, 7, 32, 5);
  expect_layout("n4 fp8 nccl", &c, &fp8);
}

/* ---- refusals ------------------------------------------------------------------------------ */

static void expect_refusal(const char *what, const mc_ep_config_t *c, moecomm_result_t code,
                           const char *s1, const char *s2) {
  mc_ep_layout_t l, poison;
  mc_err_t err = {{0}};
  memset(&l, POISON, sizeof(l));
  memcpy(&poison, &l, sizeof(l));
  const moecomm_result_t r = mc_ep_layout_init(c, &l, &err);
  MC_CHECK(r == code, "%s: result %d, want %d (%s)", what, (int)r, (int)code, err.msg);
  MC_CHECK(strstr(err.msg, s1) != NULL && (s2 == NULL || strstr(err.msg, s2) != NULL),
           "%s: message \"%s\" lacks \"%s\" / \"%s\"", what, err.msg, s1, s2 ? s2 : "");
  MC_CHECK(memcmp(&l, &poison, sizeof(l)) == 0, "%s: output written on failure", what);
}

static void test_refusals(void) {
  const moecomm_result_t bad = MOECOMM_ERR_INVALID_ARGUMENT, nsup = MOECOMM_ERR_NOT_SUPPORTED;
  const mc_ep_config_t ok =
      ep_config(4, 16, 2, MOECOMM_BFLOAT16, MOECOMM_BFLOAT16, 0, MC_EP_PATH_NVLINK, 8, 64, 0);
  mc_ep_config_t c;
  mc_err_t err;
#define REFUSE(what, field, value, code, s1, s2) \
  do {                                           \
    c = ok;                                      \
    c.field = value;                             \
    expect_refusal(what, &c, code, s1, s2);      \
  } while (0)
  REFUSE("ranks 0", ranks, 0, bad, "0 ranks", NULL);
  REFUSE("nvlink ranks 16", ranks, 16, nsup, "16 ranks", "1 to 8");
  c = ok;
  c.path = MC_EP_PATH_NCCL;
  c.ranks = 65;
  c.experts = 65 * 4;
  expect_refusal("nccl ranks 65", &c, nsup, "65 ranks", "1 to 64");
  REFUSE("experts 18 over 4", experts, 18, bad, "18 experts", "4 ranks");
  REFUSE("experts 2048", experts, 2048, bad, "2048 experts", "1024");
  REFUSE("top-k 0", top_k, 0, bad, "top-k 0", NULL);
  REFUSE("top-k 33", top_k, 33, bad, "top-k 33", NULL);
  REFUSE("dtype 3", dtype, MOECOMM_INT32, bad, "dispatch dtype 3", NULL);
  REFUSE("combine fp8", combine_dtype, MC_EP_FLOAT8_E4M3, bad, "combine dtype 4", NULL);
  REFUSE("scales on bf16", scales, 2, bad, "2 scales", "fp8");
  REFUSE("negative scales", scales, -1, bad, "-1 scales", NULL);
  REFUSE("path 0", path, 0, bad, "path 0", NULL);
  REFUSE("t_max 0", t_max, 0, bad, "t_max 0", NULL);
  REFUSE("hidden 0", hidden, 0, bad, "hidden 0", NULL);
  REFUSE("capacity -1", capacity, -1, bad, "capacity -1", NULL);
  REFUSE("hidden 12 bf16", hidden, 12, nsup, "hidden 12", "24 (payload)");
  c = ok;
  c.dtype = MC_EP_FLOAT8_E4M3;
  c.hidden = 40; /* fp8 40 bytes, bf16 combine 80 */
  expect_refusal("fp8 hidden 40", &c, nsup, "hidden 40", "40 (payload)");
  /* 32-bit counts */
  REFUSE("items 4 x 2^28 x 2", t_max, (int64_t)1 << 28, bad, "ranks 4 x t_max 268435456 x top-k 2",
         "INT32_MAX");
  REFUSE("capacity 2^31", capacity, (int64_t)1 << 31, bad, "capacity 2147483648", "INT32_MAX");
  c = ok;
  c.capacity = 0;
  c.ranks = 1;
  c.experts = 4;
  c.top_k = 1;
  c.t_max = INT32_MAX; /* lossless capacity n * t_max = 2^31 - 1: still allowed, but ... */
  c.hidden = (int64_t)1 << 40;
  expect_refusal("t_max x row bytes", &c, bad, "t_max x row bytes = 2147483647 x 2199023255552",
                 "PTRDIFF_MAX");
  /* 64-bit products */
  REFUSE("hidden 2^62 fp32", hidden, (int64_t)1 << 62, bad,
         "hidden x payload element size = 4611686018427387904 x 2", "PTRDIFF_MAX");
  c = ep_config(1, 1024, 1, MOECOMM_FLOAT32, MOECOMM_FLOAT32, 0, MC_EP_PATH_NCCL, 1,
                (int64_t)1 << 24, INT32_MAX);
  expect_refusal("experts x capacity x row", &c, bad,
                 "local experts x capacity x row bytes = 1024 x 2147483647 x 67108864",
                 "PTRDIFF_MAX");
  c = ep_config(1, 4, 1, MC_EP_FLOAT8_E4M3, MOECOMM_FLOAT32, INT32_MAX, MC_EP_PATH_NCCL, INT32_MAX,
                16, 1);
  expect_refusal("scales", &c, bad, "t_max x scale bytes per token = 2147483647 x 8589934588",
                 NULL);
#undef REFUSE
  MC_CHECK(mc_ep_layout_init(NULL, NULL, &err) == bad && strstr(err.msg, "NULL") != NULL,
           "NULL config: %s", err.msg);
}

/* ---- expert map, conversions --------------------------------------------------------------- */

static void test_expert_rank(void) {
  mc_ep_config_t c =
      ep_config(3, 12, 2, MOECOMM_FLOAT32, MOECOMM_FLOAT32, 0, MC_EP_PATH_NCCL, 4, 16, 0);
  mc_ep_layout_t l;
  mc_err_t err;
  if (!MC_CHECK(mc_ep_layout_init(&c, &l, &err) == MOECOMM_SUCCESS, "%s", err.msg)) return;
  static const int32_t want[12] = {0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2};
  for (int e = 0; e < 12; e++)
    MC_CHECK(mc_ep_expert_rank(&l, e) == want[e], "expert %d on rank %d", e,
             (int)mc_ep_expert_rank(&l, e));
  MC_CHECK(mc_ep_expert_rank(&l, -1) == -1 && mc_ep_expert_rank(&l, 12) == -1 &&
               mc_ep_expert_rank(&l, -7) == -1,
           "masked and invalid ids have no rank");
}

static void test_halves(void) {
  static const struct {
    float f;
    uint16_t h, b;
  } k[] = {
      {1.0f, 0x3c00, 0x3f80},
      {-2.0f, 0xc000, 0xc000},
      {65504.0f, 0x7bff, 0x4780},                /* bf16 rounds up (0x477f e000) */
      {65520.0f, 0x7c00, 0x4780},                /* fp16: the tie rounds to infinity */
      {5.9604644775390625e-8f, 0x0001, 0x3380},  /* 2^-24 */
      {2.98023223876953125e-8f, 0x0000, 0x3300}, /* 2^-25: a tie, rounds to even 0 */
      {8.94069671630859375e-8f, 0x0002, 0x33c0}, /* 3 * 2^-25: a tie, rounds to even 2 */
      {1.00048828125f, 0x3c00, 0x3f80},          /* 1 + 2^-11: fp16 tie to even */
      {1.00146484375f, 0x3c02, 0x3f80},          /* 1 + 3 * 2^-11: fp16 tie to even (up) */
      {1.00390625f, 0x3c04, 0x3f80},             /* 1 + 2^-8: bf16 tie to even (down) */
      {1.01171875f, 0x3c0c, 0x3f82},             /* 1 + 3 * 2^-8: bf16 tie to even (up) */
  };
  for (size_t i = 0; i < sizeof(k) / sizeof(k[0]); i++)
    MC_CHECK(mc_ep_to_half(k[i].f) == k[i].h && mc_ep_to_bf16(k[i].f) == k[i].b,
             "%.9g -> fp16 %04x bf16 %04x, want %04x %04x", k[i].f, mc_ep_to_half(k[i].f),
             mc_ep_to_bf16(k[i].f), k[i].h, k[i].b);
  int bad_h = 0, bad_b = 0;
  for (uint32_t v = 0; v < 65536; v++) {
    const uint16_t u = (uint16_t)v;
    if ((u & 0x7c00) != 0x7c00 || (u & 0x3ff) == 0) bad_h += mc_ep_to_half(mc_ep_from_half(u)) != u;
    if ((u & 0x7f80) != 0x7f80 || (u & 0x7f) == 0) bad_b += mc_ep_to_bf16(mc_ep_from_bf16(u)) != u;
  }
  MC_CHECK(bad_h == 0 && bad_b == 0, "round trips: %d fp16 and %d bf16 values changed", bad_h,
           bad_b);
}

/* ---- the reference ------------------------------------------------------------------------- */

typedef struct rcase {
  mc_ep_layout_t l;
  mc_ep_ref_rank_t rk[MAXN];
  int32_t *ids[MAXN];
  void *x[MAXN], *rx[MAXN], *out[MAXN];
  float *sc[MAXN], *w[MAXN], *rs[MAXN];
  int32_t *cnt[MAXN], *src[MAXN];
  int64_t *tot[MAXN];
  uint8_t *kept[MAXN];
} rcase_t;

static void rcase_free(rcase_t *c) {
  for (int q = 0; q < MAXN; q++) {
    free(c->ids[q]);
    free(c->x[q]);
    free(c->rx[q]);
    free(c->out[q]);
    free(c->sc[q]);
    free(c->w[q]);
    free(c->rs[q]);
    free(c->cnt[q]);
    free(c->src[q]);
    free(c->tot[q]);
    free(c->kept[q]);
  }
}

/* Inputs of every member: member 0 has T_max tokens, member 1 none, the others random counts. */
static int rcase_fill(rcase_t *c, int route, int kind, uint64_t *st) {
  const mc_ep_config_t *g = &c->l.cfg;
  const int hot = (int)(mc_test_rand(st) % (uint64_t)g->experts);
  for (int q = 0; q < g->ranks; q++) {
    const int64_t tok = q == 0   ? g->t_max
                        : q == 1 ? 0
                                 : (int64_t)(mc_test_rand(st) % (uint64_t)(g->t_max + 1));
    const size_t items = (size_t)(g->t_max * g->top_k);
    c->ids[q] = malloc(items * 4);
    c->x[q] = malloc((size_t)c->l.x_bytes);
    c->sc[q] = malloc((size_t)c->l.x_scales_bytes + 4);
    c->w[q] = malloc(items * 4);
    c->rx[q] = malloc((size_t)c->l.recv_x_bytes);
    c->rs[q] = malloc((size_t)c->l.recv_scales_bytes + 4);
    c->cnt[q] = malloc((size_t)c->l.recv_counts_bytes);
    c->src[q] = malloc((size_t)c->l.recv_src_bytes);
    c->tot[q] = malloc((size_t)c->l.local_experts * 8);
    c->out[q] = malloc((size_t)c->l.out_bytes);
    c->kept[q] = calloc(items, 1);
    if (!MC_CHECK(c->ids[q] && c->x[q] && c->sc[q] && c->w[q] && c->rx[q] && c->rs[q] &&
                      c->cnt[q] && c->src[q] && c->tot[q] && c->out[q] && c->kept[q],
                  "malloc"))
      return 0;
    ep_make_ids(c->ids[q], tok, g->top_k, g->experts, g->ranks, route, hot, st);
    ep_fill(c->x[q], (size_t)(tok * g->hidden), g->dtype, kind, st);
    ep_fill(c->sc[q], (size_t)(tok * g->scales), MOECOMM_FLOAT32, 1, st);
    ep_fill_weights(c->w[q], (size_t)(tok * g->top_k), kind, st);
    c->rk[q].tokens = tok;
    c->rk[q].ids = c->ids[q];
    c->rk[q].x = c->x[q];
    c->rk[q].scales = c->sc[q];
    c->rk[q].weights = c->w[q];
  }
  return 1;
}

/* Rows of expert e (global) on member d against the rule; marks the kept items. */
static int check_expert(rcase_t *c, int d, int e_l, const char *what) {
  const mc_ep_config_t *g = &c->l.cfg;
  const int64_t cap = g->capacity, rb = c->l.row_bytes, ns = g->scales, k_n = g->top_k;
  const int32_t e = d * c->l.local_experts + e_l;
  int64_t total = 0, upto = 0;
  int32_t prev[3] = {-1, -1, -1};
  for (int q = 0; q < g->ranks; q++)
    for (int64_t i = 0; i < c->rk[q].tokens * k_n; i++) total += c->ids[q][i] == e;
  if (!MC_CHECK(c->tot[d][e_l] == total && c->cnt[d][e_l] == (total < cap ? total : cap),
                "%s: expert %d total %lld count %d, want %lld", what, (int)e,
                (long long)c->tot[d][e_l], (int)c->cnt[d][e_l], (long long)total))
    return 0;
  for (int64_t r = 0; r < cap; r++) {
    const int32_t *s = &c->src[d][(e_l * cap + r) * 3];
    const char *row = (const char *)c->rx[d] + (e_l * cap + r) * rb;
    if (r >= c->cnt[d][e_l]) { /* nothing written past the count */
      if (!MC_CHECK((uint8_t)row[0] == POISON && (uint32_t)s[0] == 0xa5a5a5a5u,
                    "%s: expert %d row %lld past the count was written", what, (int)e,
                    (long long)r))
        return 0;
      continue;
    }
    if (!MC_CHECK(s[0] >= 0 && s[0] < g->ranks && s[1] >= 0 && s[1] < c->rk[s[0]].tokens &&
                      s[2] >= 0 && s[2] < k_n && c->ids[s[0]][s[1] * k_n + s[2]] == e &&
                      (s[0] > prev[0] || (s[0] == prev[0] &&
                                          (s[1] > prev[1] || (s[1] == prev[1] && s[2] > prev[2])))),
                  "%s: expert %d row %lld source (%d, %d, %d) after (%d, %d, %d)", what, (int)e,
                  (long long)r, s[0], s[1], s[2], prev[0], prev[1], prev[2]) ||
        !MC_CHECK(memcmp(row, (const char *)c->x[s[0]] + s[1] * rb, (size_t)rb) == 0 &&
                      (ns == 0 || memcmp(c->rs[d] + (e_l * cap + r) * ns, c->sc[s[0]] + s[1] * ns,
                                         (size_t)ns * 4) == 0),
                  "%s: expert %d row %lld is not token %d of rank %d", what, (int)e, (long long)r,
                  s[1], s[0]))
      return 0;
    memcpy(prev, s, sizeof(prev));
    c->kept[s[0]][s[1] * k_n + s[2]] = 1;
  }
  /* the kept rows are the first ones: no item of e before the last kept one is missing */
  for (int q = 0; q < g->ranks; q++)
    for (int64_t i = 0; i < c->rk[q].tokens * k_n; i++)
      upto += c->ids[q][i] == e && (q < prev[0] || (q == prev[0] && i <= prev[1] * k_n + prev[2]));
  return MC_CHECK(c->cnt[d][e_l] == 0 || upto == c->cnt[d][e_l],
                  "%s: expert %d keeps %d rows but %lld items precede its last", what, (int)e,
                  (int)c->cnt[d][e_l], (long long)upto);
}

/* Item rows agree with the received rows: row < C exactly for kept items, at that row. */
static int check_item_rows(rcase_t *c, int q, const char *what) {
  const mc_ep_config_t *g = &c->l.cfg;
  const int64_t k_n = g->top_k, el = c->l.local_experts;
  int32_t *rows = malloc((size_t)(g->t_max * k_n) * 4 + 4);
  mc_err_t err;
  int ok = MC_CHECK(rows != NULL && mc_ep_ref_item_rows(&c->l, c->rk, q, rows, &err) == 0,
                    "%s: item rows of rank %d", what, q);
  for (int64_t i = 0; ok && i < c->rk[q].tokens * k_n; i++) {
    const int32_t e = c->ids[q][i], row = rows[i];
    const int kept = e >= 0 && row < g->capacity;
    const int32_t *s = kept ? &c->src[e / el][((e % el) * g->capacity + row) * 3] : NULL;
    ok = MC_CHECK((e < 0 ? row == -1 : row >= 0) && kept == c->kept[q][i] &&
                      (!kept || (s[0] == q && s[1] == i / k_n && s[2] == i % k_n)),
                  "%s: rank %d item %lld (expert %d) has row %d, kept %d", what, q, (long long)i,
                  (int)e, (int)row, (int)c->kept[q][i]);
  }
  free(rows);
  return ok;
}

static int ref_case(int n, int experts, int k_n, int dtype, int64_t t_max, int64_t cap, int route,
                    int kind, uint64_t seed) {
  const int cdt = dtype == MC_EP_FLOAT8_E4M3 ? MOECOMM_BFLOAT16 : dtype;
  const mc_ep_config_t cfg =
      ep_config(n, experts, k_n, dtype, cdt, dtype == MC_EP_FLOAT8_E4M3 ? 3 : 0, MC_EP_PATH_NCCL,
                t_max, 48, cap);
  rcase_t c;
  mc_err_t err;
  char what[200];
  uint64_t st = seed;
  int ok;
  memset(&c, 0, sizeof(c));
  snprintf(what, sizeof(what), "n%d E%d k%d dtype %d t_max %lld C %lld %s kind %d", n, experts, k_n,
           dtype, (long long)t_max, (long long)cap, ep_route_names[route], kind);
  ok = MC_CHECK(mc_ep_layout_init(&cfg, &c.l, &err) == 0, "%s: %s", what, err.msg) &&
       rcase_fill(&c, route, kind, &st);
  for (int d = 0; ok && d < n; d++) {
    memset(c.rx[d], POISON, (size_t)c.l.recv_x_bytes);
    memset(c.src[d], POISON, (size_t)c.l.recv_src_bytes);
    ok = MC_CHECK(mc_ep_ref_dispatch(&c.l, c.rk, d, c.rx[d], c.rs[d], c.cnt[d], c.src[d], c.tot[d],
                                     &err) == 0,
                  "%s: dispatch to %d: %s", what, d, err.msg);
    for (int e = 0; ok && e < c.l.local_experts; e++) ok = check_expert(&c, d, e, what);
  }
  for (int q = 0; ok && q < n; q++) ok = check_item_rows(&c, q, what);
  if (ok && cdt == dtype && kind == 0) { /* identity experts: y = what each member received */
    for (int q = 0; ok && q < n; q++) {
      memset(c.out[q], POISON, (size_t)c.l.out_bytes);
      ok =
          MC_CHECK(mc_ep_ref_combine(&c.l, c.rk, q, (const void *const *)c.rx, c.out[q], &err) == 0,
                   "%s: combine on %d: %s", what, q, err.msg) &&
          ep_check_identity(&c.l, &c.rk[q], c.kept[q], c.out[q], what);
    }
  }
  rcase_free(&c);
  return MC_CHECK(ok, "%s", what);
}

static void test_reference(void) {
  static const int ns[] = {1, 2, 3, 4, 8};
  static const int dts[] = {MOECOMM_FLOAT32, MOECOMM_FLOAT16, MOECOMM_BFLOAT16, MC_EP_FLOAT8_E4M3};
  uint64_t seed = 1;
  int ok = 1;
  for (size_t i = 0; ok && i < sizeof(ns) / sizeof(ns[0]); i++) {
    const int n = ns[i];
    for (int route = 0; ok && route < EP_ROUTE_COUNT; route++) {
      for (int d = 0; ok && d < 4; d++) {
        const int experts = n * (1 + (route + d) % 4), k_n = 1 + (route * 3 + d) % 8;
        ok = ref_case(n, experts, k_n, dts[d], 9, 0, route, 0, ++seed) &&
             ref_case(n, experts, k_n, dts[d], 9, 0, route, 1, ++seed);
      }
      /* small capacity: the one-expert and one-rank cases overflow */
      if (ok) ok = ref_case(n, n * 2, 4, MOECOMM_BFLOAT16, 9, 3, route, 0, ++seed);
    }
  }
}

static void test_reference_refusals(void) {
  const mc_ep_config_t cfg =
      ep_config(2, 4, 2, MOECOMM_FLOAT32, MOECOMM_FLOAT32, 0, MC_EP_PATH_NCCL, 3, 16, 0);
  mc_ep_layout_t l;
  mc_err_t err;
  float x[3 * 16] = {1}, w[6] = {1}, rx[2 * 6 * 16], out[3 * 16];
  int32_t ids0[6] = {0, 1, 2, 3, -1, 0}, ids1[6] = {3, 3, 4, 0, 1, 1}, cnt[2], src[2 * 6 * 3];
  mc_ep_ref_rank_t rk[2] = {{3, ids0, x, NULL, w}, {3, ids1, x, NULL, w}};
  const void *y[2] = {rx, rx};
  if (!MC_CHECK(mc_ep_layout_init(&cfg, &l, &err) == 0, "%s", err.msg)) return;
  memset(cnt, POISON, sizeof(cnt));
  memset(out, POISON, sizeof(out));
  MC_CHECK(mc_ep_ref_dispatch(&l, rk, 0, rx, NULL, cnt, src, NULL, &err) ==
                   MOECOMM_ERR_INVALID_ARGUMENT &&
               strstr(err.msg, "rank 1 token 1 slot 0 has expert id 4") != NULL,
           "invalid id: %s", err.msg);
  MC_CHECK(mc_ep_ref_combine(&l, rk, 0, y, out, &err) == MOECOMM_ERR_INVALID_ARGUMENT,
           "combine with an invalid id: %s", err.msg);
  ids1[2] = -1;
  rk[1].tokens = 4;
  MC_CHECK(mc_ep_ref_dispatch(&l, rk, 0, rx, NULL, cnt, src, NULL, &err) ==
                   MOECOMM_ERR_INVALID_ARGUMENT &&
               strstr(err.msg, "rank 1 has 4 tokens, t_max is 3") != NULL,
           "too many tokens: %s", err.msg);
  rk[1].tokens = 3;
  MC_CHECK(
      mc_ep_ref_dispatch(&l, rk, 2, rx, NULL, cnt, src, NULL, &err) == MOECOMM_ERR_INVALID_ARGUMENT,
      "destination 2 of 2: %s", err.msg);
  MC_CHECK((uint32_t)cnt[0] == 0xa5a5a5a5u && (uint32_t)cnt[1] == 0xa5a5a5a5u &&
               *(const uint8_t *)out == POISON,
           "outputs written by refused calls");
  MC_CHECK(mc_ep_ref_dispatch(&l, rk, 1, rx, NULL, cnt, src, NULL, &err) == 0 && cnt[0] == 1 &&
               cnt[1] == 3,
           "valid call after the refusals: counts %d %d (%s)", cnt[0], cnt[1], err.msg);
}

int main(int argc, char **argv) {
  mc_test_init("ep_layout", argc, argv);
  test_sizes();
  test_refusals();
  test_expert_rank();
  test_halves();
  test_reference();
  test_reference_refusals();
  return mc_test_finish();
}
