/* SPDX-License-Identifier: Apache-2.0 */
/* scatter_modes.c - scatter modes on CPU ranks (shm): layer_mode, mode_rows and every transition
 * scatter performs, checked exactly against the reference model in host_shim/lib/scatter_ref.h.
 *
 * Topologies (world = tp unless named): tp4 ep4 moe_dp1 attn_cp2 (the case) with uneven
 * token counts per attention group and one group at 0; tp2 ep2 attn_cp2 moe_dp1; tp8 ep4 moe_dp2
 * attn_cp2; plain tp4 ep2; tp4 ep2 attn_cp2 and tp8 ep2 attn_cp4 (MOE_TP of 2 and 4 ranks
 * in the MoE all-reduce); tp4 ep4 attn_cp2 on a world of 8 and tp2 pp2 ep2 attn_cp2 on a world
 * of 4 (two TP blocks with different counts).  For each: every supported (from, to, reduce) in
 * fp32 for each token set and in bf16 and fp16 for the first (tp4 ep4 attn_cp2 also with
 * messages over one 1 MiB shm buffer, chunks ending mid-row); every unsupported pair ->
 * MOECOMM_ERR_NOT_SUPPORTED; a capture scope around a chain of transitions.  Outputs are
 * poisoned (NaN) with poisoned rows past the end, inputs of transitions without reduce must come
 * back unchanged, and every output row, padding included, must equal the reference.  Bad
 * arguments fail with nothing written. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../plugin/scatter.h"
#include "../common/harness.h"
#include "../../host_shim/lib/scatter_ref.h"

#define SLACK 3 /* poisoned rows past the end of every output */
#define MAX_SETS 2
#define MAX_TOK 16 /* blocks * groups */
#define NT (-1)    /* layer_mode answers MOECOMM_ERR_NOT_SUPPORTED */

enum {
  S_ = MOECOMM_SCATTERED,
  T_ = MOECOMM_TP_ATTN_FULL,
  F_ = MOECOMM_FULL,
  M_ = MOECOMM_MOE_FULL
};

/* Which (from, to, reduce) scatter performs, by hand from abi/moecomm.h: no layer leaves partial
   sums in SCATTERED, and FULL <-> MOE_FULL goes through TP_ATTN_FULL. */
static const int k_supported[4][4][2] = {
    /* from SCATTERED:    to S      T       F       M */ {{1, 0}, {1, 0}, {1, 0}, {1, 0}},
    /* from TP_ATTN_FULL */ {{1, 1}, {1, 1}, {1, 1}, {1, 1}},
    /* from FULL */ {{1, 1}, {1, 1}, {1, 1}, {0, 0}},
    /* from MOE_FULL */ {{1, 1}, {1, 1}, {0, 0}, {1, 1}},
};

typedef struct tcase {
  const char *name;
  int world, tp, pp, ep, moe_dp, attn_cp, attn_dp, moe_dense_tp;
  int nsets;
  int32_t tokens[MAX_SETS][MAX_TOK];        /* per set: (world / tp) blocks of attn_dp * attn_cp */
  int modes[3];                             /* layer_mode of ATTENTION, DENSE_MLP, SPARSE_MOE */
  size_t rows[MAX_SETS][SREF_MAX_RANKS][4]; /* mode_rows by hand, set x rank x mode; world <= 4 */
  int hand_rows;                            /* rows[] is filled */
  int32_t big[MAX_TOK]; /* a set of messages larger than one shm buffer (1 MiB) */
  size_t big_hidden;    /* its fp32 row length; 0: no such set */
} tcase_t;

static const tcase_t k_cases[] = {
    {"tp4 ep4 moe_dp1 attn_cp2",
     4,
     4,
     1,
     4,
     1,
     2,
     1,
     0,
     2,
     {{6, 2}, {0, 4}},
     {T_, F_, M_},
     /* T={6,2}: S 3,3,1,1; T 6,6,2,2; FULL 4 x 3; MOE_FULL 2 x 6.
        T={0,4}: S 0,0,2,2; T 0,0,4,4; FULL 4 x 2; MOE_FULL 2 x 4. */
     {{{3, 6, 12, 12}, {3, 6, 12, 12}, {1, 2, 12, 12}, {1, 2, 12, 12}},
      {{0, 0, 8, 8}, {0, 0, 8, 8}, {2, 4, 8, 8}, {2, 4, 8, 8}}},
     1,
     {64, 32},
     4099 /* odd: shm chunks end mid-row */},
    {"tp2 ep2 attn_cp2 moe_dp1",
     2,
     2,
     1,
     2,
     1,
     2,
     1,
     0,
     2,
     {{5, 3}, {3, 0}},
     {T_, F_, M_},
     {{{5, 5, 10, 10}, {3, 3, 10, 10}}, {{3, 3, 6, 6}, {0, 0, 6, 6}}},
     1,
     {0},
     0},
    {"tp4 ep2 (plain TP)",
     4,
     4,
     1,
     2,
     1,
     1,
     1,
     0,
     2,
     {{8}, {0}},
     {T_, T_, T_},
     /* MOE_CP is one rank: MOE_FULL = TP_ATTN_FULL rows. */
     {{{2, 8, 8, 8}, {2, 8, 8, 8}, {2, 8, 8, 8}, {2, 8, 8, 8}},
      {{0, 0, 0, 0}, {0, 0, 0, 0}, {0, 0, 0, 0}, {0, 0, 0, 0}}},
     1,
     {0},
     0},
    {"tp8 ep4 moe_dp2 attn_cp2",
     8,
     8,
     1,
     4,
     2,
     2,
     1,
     0,
     2,
     {{8, 4}, {0, 12}},
     {T_, F_, T_},
     {{{0}}},
     0,
     {0},
     0},
    {"tp4 ep4 attn_cp2, world 8 (two TP blocks)",
     8,
     4,
     1,
     4,
     1,
     2,
     1,
     0,
     2,
     {{6, 2, 2, 4}, {0, 4, 4, 0}},
     {T_, F_, M_},
     {{{0}}},
     0,
     {0},
     0},
    {"tp2 pp2 ep2 attn_cp2, world 4 (two TP blocks)",
     4,
     2,
     2,
     2,
     1,
     2,
     1,
     0,
     2,
     {{4, 1, 0, 3}, {2, 2, 5, 0}},
     {T_, F_, M_},
     {{{0}}},
     0,
     {0},
     0},
    /* MoE all-reduce over a MOE_TP group of 2 and 4 ranks (the MoE replica is MOE_TP x MOE_EP) */
    {"tp4 ep2 attn_cp2 moe_dp1 (moe_tp 2)",
     4,
     4,
     1,
     2,
     1,
     2,
     1,
     0,
     2,
     {{4, 2}, {0, 6}},
     {T_, F_, M_},
     {{{0}}},
     0,
     {0},
     0},
    {"tp8 ep2 attn_cp4 (attn_tp 2, moe_tp 4)",
     8,
     8,
     1,
     2,
     1,
     4,
     1,
     0,
     2,
     {{2, 4, 0, 6}, {8, 2, 2, 2}},
     {T_, F_, M_},
     {{{0}}},
     0,
     {0},
     0},
};
#define NCASES ((int)(sizeof(k_cases) / sizeof(k_cases[0])))

static const moecomm_api_t *api;

/* ---- one rank ---- */

typedef struct rank_ctx {
  const tcase_t *c;
  int rank;
  moecomm_context_t *ctx;
  sref_t ref;
  char *send, *send0, *recv, *want, *scratch;
  size_t cap_rows; /* rows each buffer holds (SLACK included) */
} rank_ctx_t;

static void set_data(rank_ctx_t *x, int set, moecomm_dtype_t dt, size_t hidden, uint64_t seed) {
  x->ref.tokens = x->c->tokens[set];
  x->ref.dtype = dt;
  x->ref.hidden = hidden;
  x->ref.seed = seed;
}

static const int32_t *my_tokens(const rank_ctx_t *x) {
  return sref_tokens_of(&x->ref, x->rank);
}

static moecomm_scatter_args_t make_args(const rank_ctx_t *x, int from, int to, int reduce) {
  return mc_test_scatter_args(from, to, reduce, x->ref.dtype, x->ref.hidden, my_tokens(x), x->send,
                              x->recv);
}

static void poison(rank_ctx_t *x) {
  memset(x->recv, 0xff, x->cap_rows * sref_row_bytes(&x->ref));
}

static int recv_untouched(const rank_ctx_t *x) {
  size_t n = x->cap_rows * sref_row_bytes(&x->ref);
  for (size_t i = 0; i < n; i++)
    if ((unsigned char)x->recv[i] != 0xff) return 0;
  return 1;
}

/* Runs from -> to (a supported transition) and checks every row; returns 1 when all matched. */
static int run_transition(rank_ctx_t *x, int from, int to, int reduce, const char *tag) {
  const sref_t *s = &x->ref;
  size_t rb = sref_row_bytes(s), rin = sref_rows(s, x->rank, from);
  size_t rout = sref_rows(s, x->rank, to);
  size_t bad, first = 0, api_rows = (size_t)-1;
  moecomm_scatter_args_t a = make_args(x, from, to, reduce);
  moecomm_result_t r;
  int ok = 1;
  if (!MC_CHECK(rin + SLACK <= x->cap_rows && rout + SLACK <= x->cap_rows, "buffers too small"))
    return 0;
  r = api->mode_rows(x->ctx, (moecomm_scatter_mode_t)to, a.tokens, &api_rows);
  ok &= MC_CHECK(r == MOECOMM_SUCCESS && api_rows == rout,
                 "%s rank %d: mode_rows(%s) = %zu "
                 "(result %d), the contract's layout has %zu",
                 tag, x->rank, sref_mode_name(to), api_rows, (int)r, rout);
  sref_input(s, x->rank, from, to, reduce, x->send);
  memcpy(x->send0, x->send, rin * rb);
  poison(x);
  r = api->scatter(x->ctx, &a, NULL);
  if (!MC_CHECK_RC(api, x->ctx, r, MOECOMM_SUCCESS)) {
    printf("[rank %d] ... in %s: %s -> %s%s\n", x->rank, tag, sref_mode_name(from),
           sref_mode_name(to), reduce ? " reduce" : "");
    return 0;
  }
  sref_expect(s, x->rank, from, to, reduce, x->want, x->scratch);
  bad = sref_compare(s, x->recv, x->want, rout, &first);
  ok &= MC_CHECK(bad == 0,
                 "%s rank %d: %s -> %s%s: %zu of %zu elements wrong, first in row %zu "
                 "(got %g, want %g)",
                 tag, x->rank, sref_mode_name(from), sref_mode_name(to), reduce ? " reduce" : "",
                 bad, rout * s->hidden, first,
                 bad ? mc_test_get(x->recv, first * s->hidden, s->dtype) : 0.0,
                 bad ? mc_test_get(x->want, first * s->hidden, s->dtype) : 0.0);
  {
    size_t past = 0;
    for (size_t i = rout * rb; i < (rout + SLACK) * rb; i++)
      past += (unsigned char)x->recv[i] != 0xff;
    ok &= MC_CHECK(past == 0, "%s rank %d: %s -> %s%s wrote %zu bytes past its %zu rows", tag,
                   x->rank, sref_mode_name(from), sref_mode_name(to), reduce ? " reduce" : "", past,
                   rout);
  }
  if (!reduce)
    ok &= MC_CHECK(memcmp(x->send0, x->send, rin * rb) == 0,
                   "%s rank %d: %s -> %s changed send "
                   "(only reduce transitions may)",
                   tag, x->rank, sref_mode_name(from), sref_mode_name(to));
  return ok;
}

static void all_transitions(rank_ctx_t *x, const char *tag) {
  for (int from = 0; from < 4; from++)
    for (int to = 0; to < 4; to++)
      for (int reduce = 0; reduce < 2; reduce++)
        if (k_supported[from][to][reduce]) run_transition(x, from, to, reduce, tag);
}

static void unsupported(rank_ctx_t *x) {
  for (int from = 0; from < 4; from++)
    for (int to = 0; to < 4; to++)
      for (int reduce = 0; reduce < 2; reduce++) {
        moecomm_scatter_args_t a = make_args(x, from, to, reduce);
        moecomm_result_t r;
        const char *msg;
        if (k_supported[from][to][reduce]) continue;
        sref_input(&x->ref, x->rank, from, to, reduce, x->send);
        poison(x);
        r = api->scatter(x->ctx, &a, NULL);
        msg = api->last_error(x->ctx);
        MC_CHECK(r == MOECOMM_ERR_NOT_SUPPORTED && recv_untouched(x),
                 "rank %d: %s -> %s%s: result %d (want NOT_SUPPORTED), recv %s", x->rank,
                 sref_mode_name(from), sref_mode_name(to), reduce ? " reduce" : "", (int)r,
                 recv_untouched(x) ? "untouched" : "written");
        MC_CHECK(strstr(msg, sref_mode_name(from)) && strstr(msg, sref_mode_name(to)),
                 "rank %d: the NOT_SUPPORTED message names neither mode: %s", x->rank, msg);
      }
}

/* One bad call, made identically by every rank: `want` and nothing written. */
static void bad_call(rank_ctx_t *x, const moecomm_scatter_args_t *a, moecomm_context_t *ctx,
                     void *stream, moecomm_result_t want, const char *what) {
  moecomm_result_t r;
  poison(x);
  r = api->scatter(ctx, a, stream);
  MC_CHECK(r == want && recv_untouched(x), "rank %d: %s: result %d (want %d), recv %s: %s", x->rank,
           what, (int)r, (int)want, recv_untouched(x) ? "untouched" : "written",
           api->last_error(ctx));
  MC_CHECK(api->last_error(ctx)[0] != '\0', "rank %d: %s: no message", x->rank, what);
}

static void bad_args(rank_ctx_t *x) {
  moecomm_scatter_args_t a = make_args(x, T_, S_, 1), b;
  int32_t odd[MAX_TOK], neg[MAX_TOK];
  size_t rows = 12345;
  moecomm_scatter_mode_t mode = (moecomm_scatter_mode_t)77;
  moecomm_result_t r;
  memcpy(odd, my_tokens(x), sizeof(int32_t) * (size_t)x->ref.ngroups);
  memcpy(neg, odd, sizeof(odd));
  odd[0] += 1; /* attn_tp 2: no longer a multiple */
  neg[1] = -2;
  sref_input(&x->ref, x->rank, T_, S_, 1, x->send);

  b = a;
  b.tokens = NULL;
  bad_call(x, &b, x->ctx, NULL, MOECOMM_ERR_INVALID_ARGUMENT, "tokens NULL");
  b = a;
  b.tokens = odd;
  bad_call(x, &b, x->ctx, NULL, MOECOMM_ERR_INVALID_ARGUMENT, "tokens[0] not a multiple of 2");
  b = a;
  b.tokens = neg;
  bad_call(x, &b, x->ctx, NULL, MOECOMM_ERR_INVALID_ARGUMENT, "tokens[1] = -2");
  b = a;
  b.recv = b.send;
  bad_call(x, &b, x->ctx, NULL, MOECOMM_ERR_INVALID_ARGUMENT, "send == recv");
  b = a;
  b.recv = b.send + sref_row_bytes(&x->ref);
  bad_call(x, &b, x->ctx, NULL, MOECOMM_ERR_INVALID_ARGUMENT, "recv overlapping send");
  b = a;
  b.hidden = 0;
  bad_call(x, &b, x->ctx, NULL, MOECOMM_ERR_INVALID_ARGUMENT, "hidden 0");
  b = a;
  b.dtype = 9;
  bad_call(x, &b, x->ctx, NULL, MOECOMM_ERR_INVALID_ARGUMENT, "dtype 9");
  b = a;
  b.from = 4;
  bad_call(x, &b, x->ctx, NULL, MOECOMM_ERR_INVALID_ARGUMENT, "from 4");
  b = a;
  b.to = -1;
  bad_call(x, &b, x->ctx, NULL, MOECOMM_ERR_INVALID_ARGUMENT, "to -1");
  b = a;
  b.send = NULL;
  bad_call(x, &b, x->ctx, NULL, MOECOMM_ERR_INVALID_ARGUMENT, "send NULL with rows to send");
  b = a;
  b.struct_size = sizeof(size_t);
  bad_call(x, &b, x->ctx, NULL, MOECOMM_ERR_STRUCT_SIZE, "struct_size 8");
  bad_call(x, NULL, x->ctx, NULL, MOECOMM_ERR_INVALID_ARGUMENT, "args NULL");
  bad_call(x, &a, NULL, NULL, MOECOMM_ERR_INVALID_ARGUMENT, "ctx NULL");
  bad_call(x, &a, x->ctx, (void *)x, MOECOMM_ERR_INVALID_ARGUMENT, "a stream on a CPU context");

  /* mode_rows and layer_mode: errors write nothing */
  r = api->mode_rows(x->ctx, MOECOMM_FULL, NULL, &rows);
  MC_CHECK(r == MOECOMM_ERR_INVALID_ARGUMENT && rows == 12345, "mode_rows tokens NULL: %d", (int)r);
  r = api->mode_rows(x->ctx, MOECOMM_FULL, odd, &rows);
  MC_CHECK(r == MOECOMM_ERR_INVALID_ARGUMENT && rows == 12345, "mode_rows odd tokens: %d", (int)r);
  r = api->mode_rows(x->ctx, (moecomm_scatter_mode_t)4, my_tokens(x), &rows);
  MC_CHECK(r == MOECOMM_ERR_INVALID_ARGUMENT && rows == 12345, "mode_rows mode 4: %d", (int)r);
  r = api->mode_rows(x->ctx, MOECOMM_FULL, my_tokens(x), NULL);
  MC_CHECK(r == MOECOMM_ERR_INVALID_ARGUMENT, "mode_rows rows_p NULL: %d", (int)r);
  r = api->mode_rows(NULL, MOECOMM_FULL, my_tokens(x), &rows);
  MC_CHECK(r == MOECOMM_ERR_INVALID_ARGUMENT && rows == 12345, "mode_rows ctx NULL: %d", (int)r);
  r = api->layer_mode(x->ctx, (moecomm_layer_kind_t)3, &mode);
  MC_CHECK(r == MOECOMM_ERR_INVALID_ARGUMENT && mode == 77, "layer_mode kind 3: %d", (int)r);
  r = api->layer_mode(x->ctx, MOECOMM_LAYER_ATTENTION, NULL);
  MC_CHECK(r == MOECOMM_ERR_INVALID_ARGUMENT, "layer_mode mode_p NULL: %d", (int)r);
  r = api->layer_mode(NULL, MOECOMM_LAYER_ATTENTION, &mode);
  MC_CHECK(r == MOECOMM_ERR_INVALID_ARGUMENT && mode == 77, "layer_mode ctx NULL: %d", (int)r);

  /* Only SCATTERED and FULL split a group's tokens over attn_tp ranks: TP_ATTN_FULL and MOE_FULL
     take any count, so TP_ATTN_FULL -> MOE_FULL works with the odd counts refused above. */
  rows = 12345;
  r = api->mode_rows(x->ctx, MOECOMM_MOE_FULL, odd, &rows);
  MC_CHECK(r == MOECOMM_SUCCESS && rows != 12345 && rows <= x->cap_rows,
           "rank %d: mode_rows(MOE_FULL, odd tokens): %d, rows %zu: %s", x->rank, (int)r, rows,
           api->last_error(x->ctx));
  if (r == MOECOMM_SUCCESS && rows <= x->cap_rows) {
    b = a;
    b.tokens = odd;
    b.from = MOECOMM_TP_ATTN_FULL;
    b.to = MOECOMM_MOE_FULL;
    b.reduce = 0;
    r = api->scatter(x->ctx, &b, NULL);
    MC_CHECK(r == MOECOMM_SUCCESS, "rank %d: TP_ATTN_FULL -> MOE_FULL with odd tokens: %d: %s",
             x->rank, (int)r, api->last_error(x->ctx));
  }

  /* A newer caller's larger struct is read up to what the plugin knows. */
  {
    struct {
      moecomm_scatter_args_t a;
      uint64_t future;
    } big;
    memset(&big, 0, sizeof(big));
    big.a = a;
    big.a.struct_size = sizeof(big);
    sref_input(&x->ref, x->rank, T_, S_, 1, x->send);
    poison(x);
    r = api->scatter(x->ctx, &big.a, NULL);
    MC_CHECK(r == MOECOMM_SUCCESS, "larger struct_size: %d %s", (int)r, api->last_error(x->ctx));
  }
}

/* The reference's groups are the plugin's (so the expected layouts use the same members). */
static void check_groups(rank_ctx_t *x) {
  static const int kinds[] = {MOECOMM_GROUP_TP, MOECOMM_GROUP_ATTN_TP, MOECOMM_GROUP_MOE_EP,
                              MOECOMM_GROUP_MOE_TP, MOECOMM_GROUP_MOE_CP};
  for (size_t k = 0; k < sizeof(kinds) / sizeof(kinds[0]); k++) {
    moecomm_group_t *g = NULL;
    moecomm_group_stats_t st;
    int32_t want[SREF_MAX_RANKS];
    int n = sref_group(&x->ref, kinds[k], x->rank, want), same;
    memset(&st, 0, sizeof(st));
    st.struct_size = sizeof(st);
    if (!MC_CHECK_RC(api, x->ctx, api->group_get(x->ctx, (moecomm_group_kind_t)kinds[k], &g),
                     MOECOMM_SUCCESS) ||
        !MC_CHECK_RC(api, x->ctx, api->group_stats(g, &st), MOECOMM_SUCCESS))
      continue;
    same = st.size == n;
    for (int i = 0; same && i < n; i++) same = st.ranks[i] == want[i];
    MC_CHECK(same, "rank %d: group %s of the plugin differs from DESIGN.md's (size %d vs %d)",
             x->rank, st.kind_name, (int)st.size, n);
  }
}

static void check_layer_modes(rank_ctx_t *x) {
  for (int l = 0; l < 3; l++) {
    moecomm_scatter_mode_t m = (moecomm_scatter_mode_t)99;
    moecomm_result_t r = api->layer_mode(x->ctx, (moecomm_layer_kind_t)l, &m);
    int want = x->c->modes[l];
    MC_CHECK(r == MOECOMM_SUCCESS && (int)m == want,
             "%s rank %d: layer_mode(%d) = %s (result %d), "
             "want %s",
             x->c->name, x->rank, l, r == MOECOMM_SUCCESS ? sref_mode_name(m) : "-", (int)r,
             sref_mode_name(want));
  }
}

static void check_hand_rows(rank_ctx_t *x) {
  if (!x->c->hand_rows) return;
  for (int set = 0; set < x->c->nsets; set++)
    for (int m = 0; m < 4; m++) {
      size_t rows = (size_t)-1;
      moecomm_result_t r =
          api->mode_rows(x->ctx, (moecomm_scatter_mode_t)m, x->c->tokens[set], &rows);
      MC_CHECK(r == MOECOMM_SUCCESS && rows == x->c->rows[set][x->rank][m],
               "%s rank %d set %d: mode_rows(%s) = %zu (result %d), by hand %zu", x->c->name,
               x->rank, set, sref_mode_name(m), rows, (int)r, x->c->rows[set][x->rank][m]);
    }
}

/* A MoE layer's transitions inside a capture scope: on CPU they run eagerly and are counted;
   capture_end must find equal counts and succeed. */
static void capture_chain(rank_ctx_t *x) {
  static const int chain[][3] = {{S_, T_, 0}, {T_, M_, 1}, {M_, T_, 1}, {T_, S_, 1},
                                 {S_, F_, 0}, {F_, S_, 1}, {T_, F_, 1}, {F_, T_, 1}};
  int ok = 1;
  if (!MC_CHECK_RC(api, x->ctx, api->capture_begin(x->ctx, NULL), MOECOMM_SUCCESS)) return;
  for (size_t i = 0; i < sizeof(chain) / sizeof(chain[0]); i++)
    ok &= run_transition(x, chain[i][0], chain[i][1], chain[i][2], "capture scope");
  MC_CHECK_RC(api, x->ctx, api->capture_end(x->ctx, NULL), MOECOMM_SUCCESS);
  MC_CHECK(ok, "rank %d: transitions inside the capture scope were wrong", x->rank);
}

static int case_rank(int rank, int world, void *arg) {
  const tcase_t *c = arg;
  moecomm_topology_t t = mc_test_topo(world, rank, c->tp);
  moecomm_context_params_t p;
  rank_ctx_t x;
  size_t maxrow = 0, bytes;
  int32_t maxt = 0;
  char tag[160];
  memset(&x, 0, sizeof(x));
  x.c = c;
  x.rank = rank;
  t.pp = c->pp;
  t.ep = c->ep;
  t.moe_dp = c->moe_dp;
  t.attn_cp = c->attn_cp;
  t.attn_dp = c->attn_dp;
  t.moe_dense_tp = c->moe_dense_tp;
  p = mc_test_ctx_params(&t, MOECOMM_DEVICE_CPU);
  if (!MC_CHECK_RC(api, NULL, api->context_create(&p, &x.ctx), MOECOMM_SUCCESS)) return 1;
  x.ref = sref_make(world, c->tp, c->ep, c->moe_dp, c->attn_cp, c->attn_dp);
  /* Largest mode: tp blocks (FULL) or MOE_CP blocks (MOE_FULL) of the largest count. */
  for (int i = 0; i < MAX_TOK; i++) {
    for (int s = 0; s < c->nsets; s++)
      if (c->tokens[s][i] > maxt) maxt = c->tokens[s][i];
    if (c->big_hidden > 0 && c->big[i] > maxt) maxt = c->big[i];
  }
  x.cap_rows = (size_t)c->tp * (size_t)maxt + SLACK;
  maxrow = (c->big_hidden > 8 ? c->big_hidden : 8) * sizeof(float);
  bytes = x.cap_rows * maxrow;
  x.send = malloc(bytes);
  x.send0 = malloc(bytes);
  x.recv = malloc(bytes);
  x.want = malloc(bytes);
  x.scratch = malloc(maxrow);
  if (!MC_CHECK(x.send && x.send0 && x.recv && x.want && x.scratch, "malloc")) goto out;

  set_data(&x, 0, MOECOMM_FLOAT32, 5, 1);
  check_groups(&x);
  check_layer_modes(&x);
  check_hand_rows(&x);
  for (int s = 0; s < c->nsets; s++) {
    set_data(&x, s, MOECOMM_FLOAT32, 5, 100 + (uint64_t)s);
    snprintf(tag, sizeof(tag), "%s set %d fp32", c->name, s);
    all_transitions(&x, tag);
  }
  set_data(&x, 0, MOECOMM_BFLOAT16, 8, 200);
  snprintf(tag, sizeof(tag), "%s set 0 bf16", c->name);
  all_transitions(&x, tag);
  set_data(&x, 0, MOECOMM_FLOAT16, 3, 250);
  snprintf(tag, sizeof(tag), "%s set 0 fp16", c->name);
  all_transitions(&x, tag);
  if (c->big_hidden > 0) {
    set_data(&x, 0, MOECOMM_FLOAT32, c->big_hidden, 270);
    x.ref.tokens = c->big;
    snprintf(tag, sizeof(tag), "%s, %d/%d tokens of %zu floats", c->name, (int)c->big[0],
             (int)c->big[1], c->big_hidden);
    all_transitions(&x, tag);
  }
  set_data(&x, 0, MOECOMM_FLOAT32, 3, 300);
  unsupported(&x);
  if (c->attn_cp == 2 && c->tp == 4 && world == 4) bad_args(&x);
  set_data(&x, c->nsets - 1, MOECOMM_INT32, 4, 400);
  capture_chain(&x);
out:
  MC_CHECK_RC(api, NULL, api->context_destroy(x.ctx), MOECOMM_SUCCESS);
  free(x.send);
  free(x.send0);
  free(x.recv);
  free(x.want);
  free(x.scratch);
  return 0;
}

/* ---- layer_mode for more topologies, white-box (the rule reads only the topology) ---- */

typedef struct mode_case {
  int tp, ep, moe_dp, attn_cp, attn_dp, moe_dense_tp;
  int modes[3]; /* ATTENTION, DENSE_MLP, SPARSE_MOE; NT: MOECOMM_ERR_NOT_SUPPORTED */
} mode_case_t;

/* By hand from abi/moecomm.h (layer_mode).  Two refusals go past the header's wording (see the
   comments): a MoE replica smaller than TP whose tokens differ from its peers' cannot be fed by
   FULL or MOE_FULL without summing unrelated tokens. */
static const mode_case_t k_modes[] = {
    {4, 4, 1, 2, 1, 0, {T_, F_, M_}}, /* the tp4 ep4 moe_dp1 attn_cp2 */
    {4, 4, 1, 2, 1, 1, {T_, S_, M_}}, /* ... with moe_dense_tp 1 */
    {2, 2, 1, 2, 1, 0, {T_, F_, M_}}, /* attn_tp 1 */
    {8, 4, 2, 2, 1, 0, {T_, F_, T_}}, /* attn_cp == moe_dp: replica = one ATTN_TP group */
    {4, 2, 1, 1, 1, 0, {T_, T_, T_}}, /* plain TP: FULL is TP_ATTN_FULL */
    {4, 2, 1, 1, 1, 1, {T_, S_, T_}},
    {8, 2, 1, 1, 1, 0, {T_, T_, T_}}, /* ep2 moe_tp4: replica = TP = ATTN_TP */
    {4, 2, 2, 2, 1, 0, {T_, F_, T_}}, /* replica 2 ranks = ATTN_TP 2 */
    {4, 4, 1, 1, 2, 0, {T_, F_, F_}}, /* DP attention, MoE over the whole TP block */
    {8, 2, 1, 4, 1, 0, {T_, F_, M_}}, /* attn_tp 2, moe_tp 4 */
    {4, 1, 2, 1, 1, 0, {T_, T_, NT}}, /* header: FULL; replicas [0,1] [2,3] would both sum */
    {4, 4, 1, 2, 2, 0, {T_, F_, NT}}, /* header: MOE_FULL; needs attn_dp 1 */
};

static void test_mode_table(void) {
  static mc_context_t ctx; /* layer_mode reads only topo */
  for (size_t i = 0; i < sizeof(k_modes) / sizeof(k_modes[0]); i++) {
    const mode_case_t *m = &k_modes[i];
    moecomm_topology_t t = mc_test_topo(m->tp, 0, m->tp);
    mc_err_t err;
    t.ep = m->ep;
    t.moe_dp = m->moe_dp;
    t.attn_cp = m->attn_cp;
    t.attn_dp = m->attn_dp;
    t.moe_dense_tp = m->moe_dense_tp;
    memset(&ctx, 0, sizeof(ctx));
    err.msg[0] = '\0';
    if (!MC_CHECK(mc_topo_init(&t, &ctx.topo, &err) == MOECOMM_SUCCESS, "topology %zu: %s", i,
                  err.msg))
      continue;
    for (int l = 0; l < 3; l++) {
      moecomm_scatter_mode_t got = (moecomm_scatter_mode_t)99;
      moecomm_result_t r;
      err.msg[0] = '\0';
      r = mc_layer_mode(&ctx, l, &got, &err);
      if (m->modes[l] == NT)
        MC_CHECK(r == MOECOMM_ERR_NOT_SUPPORTED && (int)got == 99 && err.msg[0] != '\0',
                 "tp%d ep%d moe_dp%d attn_cp%d attn_dp%d: layer %d: result %d (want "
                 "NOT_SUPPORTED with a message, nothing written)",
                 m->tp, m->ep, m->moe_dp, m->attn_cp, m->attn_dp, l, (int)r);
      else
        MC_CHECK(r == MOECOMM_SUCCESS && (int)got == m->modes[l],
                 "tp%d ep%d moe_dp%d attn_cp%d attn_dp%d moe_dense_tp%d: layer %d = %s (result "
                 "%d: %s), want %s",
                 m->tp, m->ep, m->moe_dp, m->attn_cp, m->attn_dp, m->moe_dense_tp, l,
                 r == MOECOMM_SUCCESS ? sref_mode_name(got) : "-", (int)r, err.msg,
                 sref_mode_name(m->modes[l]));
    }
  }
}

/* Attention DP with MOE_FULL (tp4 attn_dp2 attn_cp2 ep4): MOE_CP = ATTN_CP = [0,1] and [2,3]
   while MOE_EP spans all four, so with T = {4,4,8,8} ranks 0,1 hold MOE_FULL blocks of 4 rows and
   ranks 2,3 blocks of 8.  Reducing MOE_FULL rows must be refused on every rank before anything is
   issued (it used to issue all-reduces of different sizes and leave the communicator unusable),
   the communicators must stay usable, and with equal counts the reduction must work. */
static int dp_attention_rank(int rank, int world, void *arg) {
  moecomm_topology_t t = mc_test_topo(world, rank, 4);
  moecomm_context_params_t p;
  moecomm_context_t *ctx = NULL;
  moecomm_group_t *ep = NULL;
  static const int32_t uneven[4] = {4, 4, 8, 8}, even[4] = {4, 4, 4, 4};
  float send[2 * 8 * 3], recv[2 * 8 * 3], x[5] = {1, 2, 3, 4, 5}, y[5];
  moecomm_scatter_args_t a;
  moecomm_result_t r;
  (void)arg;
  t.attn_dp = 2;
  t.attn_cp = 2;
  t.ep = 4;
  p = mc_test_ctx_params(&t, MOECOMM_DEVICE_CPU);
  if (!MC_CHECK_RC(api, NULL, api->context_create(&p, &ctx), MOECOMM_SUCCESS)) return 1;
  for (size_t i = 0; i < sizeof(send) / sizeof(send[0]); i++) send[i] = (float)(rank + 1);
  a = mc_test_scatter_args(MOECOMM_MOE_FULL, MOECOMM_TP_ATTN_FULL, 1, MOECOMM_FLOAT32, 3, uneven,
                           send, recv);
  r = api->scatter(ctx, &a, NULL);
  MC_CHECK(r == MOECOMM_ERR_NOT_SUPPORTED && strstr(api->last_error(ctx), "nothing was issued"),
           "MOE_FULL reduce under attention DP with uneven counts: %d: %s", (int)r,
           api->last_error(ctx));
  a.to = MOECOMM_MOE_FULL;
  r = api->scatter(ctx, &a, NULL);
  MC_CHECK(r == MOECOMM_ERR_NOT_SUPPORTED, "MOE_FULL -> MOE_FULL reduce, uneven: %d: %s", (int)r,
           api->last_error(ctx));
  /* the communicators are still usable */
  if (MC_CHECK_RC(api, ctx, api->group_get(ctx, MOECOMM_GROUP_MOE_EP, &ep), MOECOMM_SUCCESS)) {
    r = api->all_reduce(ep, x, y, 5, MOECOMM_FLOAT32, MOECOMM_SUM, NULL);
    MC_CHECK(r == MOECOMM_SUCCESS && y[0] == 4 && y[4] == 20,
             "MOE_EP all-reduce after the refusal: "
             "%d (%s), y[0]=%g",
             (int)r, api->last_error(ctx), (double)y[0]);
  }
  /* equal counts: the same reduction is consistent and runs */
  a = mc_test_scatter_args(MOECOMM_MOE_FULL, MOECOMM_TP_ATTN_FULL, 1, MOECOMM_FLOAT32, 3, even,
                           send, recv);
  r = api->scatter(ctx, &a, NULL);
  MC_CHECK(r == MOECOMM_SUCCESS, "MOE_FULL reduce with equal counts: %d: %s", (int)r,
           api->last_error(ctx));
  MC_CHECK_RC(api, NULL, api->context_destroy(ctx), MOECOMM_SUCCESS);
  return 0;
}

int main(int argc, char **argv) {
  mc_test_init("scatter_modes", argc, argv);
  api = mc_test_plugin();
  setenv("MOECOMM_TIMEOUT_MS", "20000", 0);
  test_mode_table();
  if (!MC_CHECK(MOECOMM_API_HAS(api, scatter) && MOECOMM_API_HAS(api, mode_rows) &&
                    MOECOMM_API_HAS(api, layer_mode),
                "the plugin lacks the ABI 1.1 scatter slots"))
    return mc_test_finish();
  for (int i = 0; i < NCASES; i++)
    MC_CHECK(mc_test_ranks(k_cases[i].world, case_rank, (void *)&k_cases[i], 60) == 0, "%s",
             k_cases[i].name);
  MC_CHECK(mc_test_ranks(4, dp_attention_rank, NULL, 60) == 0, "MOE_FULL under attention DP");
  return mc_test_finish();
}
