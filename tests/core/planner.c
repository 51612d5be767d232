/* SPDX-License-Identifier: Apache-2.0 */
/* planner.c - the capture-size planner (plan_capture_sizes, plugin/planner.c).
 *
 * White-box for topologies too large to run (tp8, tp24): a context whose topology is filled by
 * mc_topo_init is all the planner reads.  Then the same slot through the ABI on two CPU ranks.
 * Every expected list is written out by hand from the rule in abi/moecomm.h and the default
 * candidates (1, 2, 4, 8, 12, 16, 24, 32..256 step 8, 272..512 step 16: 52 counts). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../plugin/planner.h"
#include "../common/harness.h"

#define POISON_NUM ((size_t)0xdeadbeef)
#define POISON_MULT ((int32_t)-777)
#define POISON_SIZE ((int32_t)-31337)
#define CAP 64

static mc_context_t g_ctx; /* the planner reads only topo */

static const int32_t k_mult8[] = {8,   16,  24,  32,  40,  48,  56,  64,  72,  80,  88,  96,
                                  104, 112, 120, 128, 136, 144, 152, 160, 168, 176, 184, 192,
                                  200, 208, 216, 224, 232, 240, 248, 256, 272, 288, 304, 320,
                                  336, 352, 368, 384, 400, 416, 432, 448, 464, 480, 496, 512};
static const int32_t k_mult4[] = {4,   8,   12,  16,  24,  32,  40,  48,  56,  64,  72,  80,  88,
                                  96,  104, 112, 120, 128, 136, 144, 152, 160, 168, 176, 184, 192,
                                  200, 208, 216, 224, 232, 240, 248, 256, 272, 288, 304, 320, 336,
                                  352, 368, 384, 400, 416, 432, 448, 464, 480, 496, 512};
static const int32_t k_mult2[] = {2,   4,   8,   12,  16,  24,  32,  40,  48,  56,  64,  72,  80,
                                  88,  96,  104, 112, 120, 128, 136, 144, 152, 160, 168, 176, 184,
                                  192, 200, 208, 216, 224, 232, 240, 248, 256, 272, 288, 304, 320,
                                  336, 352, 368, 384, 400, 416, 432, 448, 464, 480, 496, 512};
static const int32_t k_mult24[] = {24,  48,  72,  96,  120, 144, 168, 192,
                                   216, 240, 288, 336, 384, 432, 480};
#define LEN(a) (sizeof(a) / sizeof((a)[0]))

/* Sets g_ctx's topology (world = tp, rank 0); 1 on success. */
static int topo(int tp, int ep, int moe_dp, int attn_cp, int attn_dp, int moe_dense_tp) {
  moecomm_topology_t t = mc_test_topo(tp, 0, tp);
  mc_err_t err;
  moecomm_result_t r;
  t.ep = ep;
  t.moe_dp = moe_dp;
  t.attn_cp = attn_cp;
  t.attn_dp = attn_dp;
  t.moe_dense_tp = moe_dense_tp;
  memset(&g_ctx, 0, sizeof(g_ctx));
  err.msg[0] = '\0';
  r = mc_topo_init(&t, &g_ctx.topo, &err);
  return MC_CHECK(r == MOECOMM_SUCCESS,
                  "mc_topo_init tp%d ep%d moe_dp%d attn_cp%d attn_dp%d "
                  "moe_dense_tp%d: %d %s",
                  tp, ep, moe_dp, attn_cp, attn_dp, moe_dense_tp, (int)r, err.msg);
}

typedef struct plan_out {
  moecomm_result_t r;
  int32_t sizes[CAP + 1]; /* one past capacity: must stay poisoned */
  size_t num;
  int32_t mult;
  mc_err_t err;
} plan_out_t;

static void plan(uint32_t flags, const int32_t *cand, size_t ncand, size_t capacity, int no_sizes,
                 plan_out_t *o) {
  moecomm_plan_params_t p;
  memset(&p, 0, sizeof(p));
  p.struct_size = sizeof(p);
  p.flags = flags;
  p.candidates = cand;
  p.num_candidates = ncand;
  for (int i = 0; i < CAP + 1; i++) o->sizes[i] = POISON_SIZE;
  o->num = POISON_NUM;
  o->mult = POISON_MULT;
  o->err.msg[0] = '\0';
  o->r = mc_plan_capture_sizes(&g_ctx, &p, no_sizes ? NULL : o->sizes, capacity, &o->num, &o->mult,
                               &o->err);
}

/* The call succeeded with exactly `want` (n entries) and multiple `mult`. */
static void expect_list(const char *what, const plan_out_t *o, const int32_t *want, size_t n,
                        int32_t mult) {
  size_t bad = 0, first = 0;
  if (!MC_CHECK(o->r == MOECOMM_SUCCESS, "%s: result %d: %s", what, (int)o->r, o->err.msg)) return;
  MC_CHECK(o->mult == mult, "%s: multiple %d, want %d", what, (int)o->mult, (int)mult);
  if (!MC_CHECK(o->num == n, "%s: %zu sizes, want %zu", what, o->num, n)) return;
  for (size_t i = 0; i < n; i++)
    if (o->sizes[i] != want[i] && bad++ == 0) first = i;
  MC_CHECK(bad == 0, "%s: %zu sizes differ, first [%zu] = %d, want %d", what, bad, first,
           (int)o->sizes[first], (int)want[first]);
  MC_CHECK(o->sizes[n] == POISON_SIZE, "%s: wrote past its %zu sizes", what, n);
}

/* The call failed with `code` and wrote no output. */
static void expect_fail(const char *what, const plan_out_t *o, moecomm_result_t code) {
  int untouched = o->num == POISON_NUM && o->mult == POISON_MULT;
  for (int i = 0; i < CAP + 1; i++) untouched &= o->sizes[i] == POISON_SIZE;
  MC_CHECK(o->r == code, "%s: result %d, want %d (%s)", what, (int)o->r, (int)code, o->err.msg);
  MC_CHECK(untouched, "%s: failed but wrote an output argument", what);
  MC_CHECK(o->err.msg[0] != '\0', "%s: failed without a message", what);
}

static void expect_msg(const char *what, const plan_out_t *o, const char *const *parts) {
  for (int i = 0; parts[i] != NULL; i++)
    MC_CHECK(strstr(o->err.msg, parts[i]) != NULL, "%s: message lacks \"%s\": %s", what, parts[i],
             o->err.msg);
}

static void test_engine_cases(void) {
  plan_out_t o;
  /* sglang PR #23972: tp8 moe_dense_tp1; the reduce-scatter splits over attn_tp = 8. */
  if (topo(8, 1, 1, 1, 1, 1)) {
    plan(0, NULL, 0, CAP, 0, &o);
    expect_list("tp8 moe_dense_tp1, default candidates", &o, k_mult8, LEN(k_mult8), 8);
  }
  /* attn_tp 4 with attn_cp 2: 4 is divisible by 2, the multiple stays attn_tp. */
  if (topo(8, 1, 1, 2, 1, 1)) {
    plan(0, NULL, 0, CAP, 0, &o);
    expect_list("tp8 attn_cp2 moe_dense_tp1 (attn_tp 4)", &o, k_mult4, LEN(k_mult4), 4);
  }
  if (topo(8, 1, 1, 2, 1, 0)) {
    plan(MOECOMM_PLAN_DENSE_DP, NULL, 0, CAP, 0, &o);
    expect_list("tp8 attn_cp2, flag DENSE_DP (attn_tp 4)", &o, k_mult4, LEN(k_mult4), 4);
  }
  /* attn_tp 4 with attn_cp 6 (tp 24): 4 is not divisible by 6 -> 4 * 6. */
  if (topo(24, 1, 1, 6, 1, 1)) {
    plan(0, NULL, 0, CAP, 0, &o);
    expect_list("tp24 attn_cp6 moe_dense_tp1 (attn_tp 4)", &o, k_mult24, LEN(k_mult24), 24);
  }
  if (topo(24, 1, 1, 6, 1, 0)) {
    plan(MOECOMM_PLAN_DENSE_DP, NULL, 0, CAP, 0, &o);
    expect_list("tp24 attn_cp6, flag DENSE_DP", &o, k_mult24, LEN(k_mult24), 24);
  }
}

/* scatter requires T[g] to be a multiple of attn_tp, and abi/moecomm.h says plan_capture_sizes
   gives such counts.  With attn_cp > 1 and attn_tp < tp the layer modes go through SCATTERED or
   FULL (dense MLP FULL), so even without flags a planned count must split over attn_tp. */
static void test_attn_cp_without_flags(void) {
  plan_out_t o;
  if (topo(8, 4, 2, 2, 1, 0)) {
    plan(0, NULL, 0, CAP, 0, &o);
    expect_list("tp8 ep4 moe_dp2 attn_cp2, no flags (attn_tp 4 < tp: scatter needs T % 4 == 0)", &o,
                k_mult4, LEN(k_mult4), 4);
  }
  if (topo(4, 4, 1, 2, 1, 0)) {
    static const int32_t cand[] = {1, 2, 3, 4, 6};
    static const int32_t want[] = {2, 4, 6};
    plan(0, cand, LEN(cand), CAP, 0, &o);
    expect_list("tp4 ep4 moe_dp1 attn_cp2, no flags (attn_tp 2 < tp: scatter needs T % 2 == 0)", &o,
                want, LEN(want), 2);
  }
  if (topo(4, 4, 1, 2, 1, 0)) {
    static const int32_t odd[] = {1, 3, 5};
    static const char *const parts[] = {"multiples of 2", "attn_tp=2", "1,3,5", NULL};
    plan(0, odd, LEN(odd), CAP, 0, &o);
    expect_fail("tp4 ep4 moe_dp1 attn_cp2, no flags, candidates 1,3,5", &o, MOECOMM_ERR_CONFIG);
    expect_msg("tp4 ep4 moe_dp1 attn_cp2, no valid size", &o, parts);
  }
}

static void test_dp_attention(void) {
  plan_out_t o;
  static const int32_t cand[] = {1, 2, 3, 4, 5, 6};
  static const int32_t want2[] = {2, 4, 6};
  static const int32_t cand4[] = {2, 4, 6, 8};
  static const int32_t want4[] = {4, 8};
  static const int32_t cand6[] = {6, 12, 18, 20, 30};
  static const int32_t want6[] = {6, 12, 18, 30};
  /* attn_dp > 1 in the topology is DP attention with or without the flag. */
  if (topo(8, 1, 1, 1, 4, 0)) {
    plan(0, cand, LEN(cand), CAP, 0, &o);
    expect_list("tp8 attn_dp4 (attn_tp 2), no flag", &o, want2, LEN(want2), 2);
    plan(MOECOMM_PLAN_DP_ATTENTION, cand, LEN(cand), CAP, 0, &o);
    expect_list("tp8 attn_dp4 (attn_tp 2), flag DP_ATTENTION", &o, want2, LEN(want2), 2);
  }
  if (topo(4, 2, 1, 1, 1, 0)) {
    plan(MOECOMM_PLAN_DP_ATTENTION, cand4, LEN(cand4), CAP, 0, &o);
    expect_list("tp4 ep2, flag DP_ATTENTION (attn_tp 4)", &o, want4, LEN(want4), 4);
  }
  /* attn_tp 2 with attn_cp 3 (tp 12, attn_dp 2): 2 is not divisible by 3 -> 6. */
  if (topo(12, 1, 1, 3, 2, 0)) {
    plan(0, cand6, LEN(cand6), CAP, 0, &o);
    expect_list("tp12 attn_dp2 attn_cp3 (attn_tp 2)", &o, want6, LEN(want6), 6);
  }
}

static void test_two_batch_overlap(void) {
  plan_out_t o;
  static const int32_t cand[] = {4, 8, 12, 16, 6};
  static const int32_t want_tbo[] = {8, 12, 16};
  static const int32_t want[] = {4, 8, 12, 16};
  static const int32_t cand1[] = {1, 2, 3};
  static const int32_t want1[] = {2, 3};
  static const int32_t small[] = {4, 6};
  if (topo(4, 2, 1, 1, 1, 1)) {
    plan(0, cand, LEN(cand), CAP, 0, &o);
    expect_list("tp4 moe_dense_tp1", &o, want, LEN(want), 4);
    plan(MOECOMM_PLAN_TWO_BATCH_OVERLAP, cand, LEN(cand), CAP, 0, &o);
    expect_list("tp4 moe_dense_tp1, two-batch overlap (>= 2 x 4)", &o, want_tbo, LEN(want_tbo), 4);
    plan(MOECOMM_PLAN_TWO_BATCH_OVERLAP, small, LEN(small), CAP, 0, &o);
    expect_fail("tp4 moe_dense_tp1, two-batch overlap, candidates 4,6", &o, MOECOMM_ERR_CONFIG);
    {
      static const char *const parts[] = {"multiples of 4", "attn_tp=4", "4,6", NULL};
      expect_msg("two-batch overlap, no valid size", &o, parts);
    }
  }
  /* Plain TP: each of the two micro-batches needs one token. */
  if (topo(4, 2, 1, 1, 1, 0)) {
    plan(MOECOMM_PLAN_TWO_BATCH_OVERLAP, cand1, LEN(cand1), CAP, 0, &o);
    expect_list("tp4 ep2, two-batch overlap", &o, want1, LEN(want1), 1);
  }
}

static void test_plain_tp(void) {
  plan_out_t o;
  static const int32_t cand[] = {7, 3, 100, 1};
  if (!topo(4, 2, 1, 1, 1, 0)) return;
  plan(0, cand, LEN(cand), CAP, 0, &o);
  expect_list("tp4 ep2: every count, in the given order", &o, cand, LEN(cand), 1);
  plan(0, NULL, 0, 0, 1, &o);
  MC_CHECK(o.r == MOECOMM_SUCCESS && o.num == 52 && o.mult == 1,
           "tp4 ep2, default candidates, count only: result %d, %zu sizes (want 52), multiple %d",
           (int)o.r, o.num, (int)o.mult);
}

static void test_no_valid_size(void) {
  plan_out_t o;
  static const int32_t cand8[] = {1, 2, 4, 12};
  static const int32_t cand24[] = {1, 2, 4, 8, 12, 16};
  static const int32_t cand2[] = {1, 3};
  if (topo(8, 1, 1, 1, 1, 1)) {
    static const char *const parts[] = {"multiples of 8", "attn_tp=8", "1,2,4,12", NULL};
    plan(0, cand8, LEN(cand8), CAP, 0, &o);
    expect_fail("tp8 moe_dense_tp1, candidates 1,2,4,12", &o, MOECOMM_ERR_CONFIG);
    expect_msg("tp8 moe_dense_tp1, no valid size", &o, parts);
  }
  if (topo(24, 1, 1, 6, 1, 1)) {
    static const char *const parts[] = {"multiples of 24", "attn_tp=4", "attn_cp=6",
                                        "1,2,4,8,12,16", NULL};
    plan(0, cand24, LEN(cand24), CAP, 0, &o);
    expect_fail("tp24 attn_cp6 moe_dense_tp1, candidates 1..16", &o, MOECOMM_ERR_CONFIG);
    expect_msg("tp24 attn_cp6, no valid size", &o, parts);
  }
  if (topo(8, 1, 1, 1, 4, 0)) {
    static const char *const parts[] = {"multiples of 2", "attn_tp=2", "1,3", NULL};
    plan(0, cand2, LEN(cand2), CAP, 0, &o);
    expect_fail("tp8 attn_dp4, candidates 1,3", &o, MOECOMM_ERR_CONFIG);
    expect_msg("tp8 attn_dp4, no valid size", &o, parts);
  }
}

static void test_capacity(void) {
  plan_out_t o;
  if (!topo(8, 1, 1, 1, 1, 1)) return;
  plan(0, NULL, 0, LEN(k_mult8) - 1, 0, &o);
  expect_fail("capacity 47 for 48 sizes", &o, MOECOMM_ERR_INVALID_ARGUMENT);
  plan(0, NULL, 0, LEN(k_mult8), 0, &o);
  expect_list("capacity exactly 48", &o, k_mult8, LEN(k_mult8), 8);
  plan(0, NULL, 0, 0, 1, &o);
  MC_CHECK(o.r == MOECOMM_SUCCESS && o.num == LEN(k_mult8) && o.mult == 8,
           "sizes NULL, capacity 0: result %d, %zu sizes (want 48), multiple %d (want 8): %s",
           (int)o.r, o.num, (int)o.mult, o.err.msg);
  plan(0, NULL, 0, 5, 1, &o);
  expect_fail("sizes NULL with capacity 5", &o, MOECOMM_ERR_INVALID_ARGUMENT);
}

static void test_bad_args(void) {
  plan_out_t o;
  static const int32_t zero[] = {8, 0, 16};
  static const int32_t neg[] = {-8};
  moecomm_plan_params_t p;
  if (!topo(8, 1, 1, 1, 1, 1)) return;
  plan(0, zero, LEN(zero), CAP, 0, &o);
  expect_fail("candidate 0", &o, MOECOMM_ERR_INVALID_ARGUMENT);
  plan(0, neg, LEN(neg), CAP, 0, &o);
  expect_fail("candidate -8", &o, MOECOMM_ERR_INVALID_ARGUMENT);
  plan(0, NULL, 3, CAP, 0, &o);
  expect_fail("candidates NULL with num_candidates 3", &o, MOECOMM_ERR_INVALID_ARGUMENT);
  plan(0x8u, NULL, 0, CAP, 0, &o);
  expect_fail("flag 0x8", &o, MOECOMM_ERR_INVALID_ARGUMENT);
  plan(0x80000000u | MOECOMM_PLAN_DENSE_DP, NULL, 0, CAP, 0, &o);
  expect_fail("flag 0x80000001", &o, MOECOMM_ERR_INVALID_ARGUMENT);

  /* struct_size: below the 1.0 layout is refused; a newer caller's larger struct is read. */
  {
    struct {
      moecomm_plan_params_t p;
      uint64_t future;
    } big;
    size_t num = POISON_NUM;
    int32_t mult = POISON_MULT, sizes[CAP];
    mc_err_t err;
    moecomm_result_t r;
    memset(&big, 0, sizeof(big));
    big.p.struct_size = sizeof(big);
    big.future = 0;
    r = mc_plan_capture_sizes(&g_ctx, &big.p, sizes, CAP, &num, &mult, &err);
    MC_CHECK(r == MOECOMM_SUCCESS && num == LEN(k_mult8) && mult == 8,
             "larger struct_size: result %d, %zu sizes, multiple %d", (int)r, num, (int)mult);
    memset(&p, 0, sizeof(p));
    p.struct_size = sizeof(size_t);
    num = POISON_NUM;
    mult = POISON_MULT;
    r = mc_plan_capture_sizes(&g_ctx, &p, sizes, CAP, &num, &mult, &err);
    MC_CHECK(r == MOECOMM_ERR_STRUCT_SIZE && num == POISON_NUM && mult == POISON_MULT,
             "struct_size %zu: result %d (want STRUCT_SIZE), outputs untouched", sizeof(size_t),
             (int)r);
    memset(&p, 0, sizeof(p));
    p.struct_size = sizeof(p);
    r = mc_plan_capture_sizes(&g_ctx, NULL, sizes, CAP, &num, &mult, &err);
    MC_CHECK(r == MOECOMM_ERR_INVALID_ARGUMENT, "params NULL: result %d", (int)r);
    r = mc_plan_capture_sizes(&g_ctx, &p, sizes, CAP, NULL, &mult, &err);
    MC_CHECK(r == MOECOMM_ERR_INVALID_ARGUMENT && mult == POISON_MULT, "num_p NULL: result %d",
             (int)r);
    r = mc_plan_capture_sizes(&g_ctx, &p, sizes, CAP, &num, NULL, &err);
    MC_CHECK(r == MOECOMM_ERR_INVALID_ARGUMENT && num == POISON_NUM, "multiple_p NULL: result %d",
             (int)r);
  }
}

/* ---- the same slot through the ABI (two CPU ranks, tp2 moe_dense_tp1: multiple 2) ---- */

static int abi_rank(int rank, int world, void *arg) {
  const moecomm_api_t *api = mc_test_plugin();
  moecomm_topology_t t = mc_test_topo(world, rank, world);
  moecomm_context_params_t cp;
  moecomm_context_t *ctx = NULL;
  moecomm_plan_params_t p;
  int32_t sizes[CAP + 1];
  size_t num = POISON_NUM, bad = 0;
  int32_t mult = POISON_MULT;
  static const int32_t cand[] = {1, 3};
  (void)arg;
  t.moe_dense_tp = 1;
  cp = mc_test_ctx_params(&t, MOECOMM_DEVICE_CPU);
  if (!MC_CHECK_RC(api, NULL, api->context_create(&cp, &ctx), MOECOMM_SUCCESS)) return 1;
  if (!MC_CHECK(MOECOMM_API_HAS(api, plan_capture_sizes), "plan_capture_sizes slot missing"))
    goto out;
  memset(&p, 0, sizeof(p));
  p.struct_size = sizeof(p);
  for (int i = 0; i < CAP + 1; i++) sizes[i] = POISON_SIZE;
  if (MC_CHECK_RC(api, ctx, api->plan_capture_sizes(ctx, &p, sizes, CAP, &num, &mult),
                  MOECOMM_SUCCESS)) {
    MC_CHECK(mult == 2 && num == LEN(k_mult2),
             "ABI tp2 moe_dense_tp1: multiple %d (want 2), "
             "%zu sizes (want %zu)",
             (int)mult, num, LEN(k_mult2));
    for (size_t i = 0; i < LEN(k_mult2) && num == LEN(k_mult2); i++) bad += sizes[i] != k_mult2[i];
    MC_CHECK(bad == 0 && sizes[LEN(k_mult2)] == POISON_SIZE,
             "ABI tp2 moe_dense_tp1: %zu sizes "
             "differ from the hand list, or it wrote past them",
             bad);
  }
  p.candidates = cand;
  p.num_candidates = LEN(cand);
  num = POISON_NUM;
  mult = POISON_MULT;
  if (MC_CHECK_RC(api, ctx, api->plan_capture_sizes(ctx, &p, sizes, CAP, &num, &mult),
                  MOECOMM_ERR_CONFIG)) {
    const char *msg = api->last_error(ctx);
    MC_CHECK(strstr(msg, "multiples of 2") && strstr(msg, "attn_tp=2") && strstr(msg, "1,3"),
             "ABI no valid size: last_error lacks the multiple, attn_tp or candidates: %s", msg);
    MC_CHECK(num == POISON_NUM && mult == POISON_MULT, "ABI no valid size: outputs written");
  }
  MC_CHECK_RC(api, NULL, api->plan_capture_sizes(NULL, &p, sizes, CAP, &num, &mult),
              MOECOMM_ERR_INVALID_ARGUMENT);
  MC_CHECK(api->last_error(NULL)[0] != '\0', "ctx NULL: no thread message");
out:
  MC_CHECK_RC(api, NULL, api->context_destroy(ctx), MOECOMM_SUCCESS);
  return 0;
}

int main(int argc, char **argv) {
  mc_test_init("planner", argc, argv);
  test_engine_cases();
  test_attn_cp_without_flags();
  test_dp_attention();
  test_two_batch_overlap();
  test_plain_tp();
  test_no_valid_size();
  test_capacity();
  test_bad_args();
  mc_test_plugin();
  MC_CHECK(mc_test_ranks(2, abi_rank, NULL, 60) == 0, "planner through the ABI on 2 CPU ranks");
  return mc_test_finish();
}
