/* SPDX-License-Identifier: Apache-2.0 */
/* topology.c - white-box test of plugin/topo.c: validation and every group kind's rank lists.
 *
 * The expected lists below are written out by hand from DESIGN.md ("Groups"), not computed by a
 * second copy of the formulas, so a wrong formula cannot agree with itself.  A property check then
 * covers many more topologies with rules that do not depend on the layout (partition, membership,
 * sizes, nesting inside the TP block). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../plugin/topo.h"
#include "../common/harness.h"

#define MAXW 64

/* One topology and, per group kind, every group of that kind as "[a,b] [c-d] ..." (world order). */
typedef struct hand_case {
  const char *name;
  int world, tp, pp, ep, moe_dp, attn_cp, attn_dp, moe_dense_tp;
  int attn_tp, moe_tp; /* derived, by hand */
  const char *groups[MC_GROUP_KIND_COUNT];
} hand_case_t;

#define S4 "[0] [1] [2] [3]"
#define S8 "[0] [1] [2] [3] [4] [5] [6] [7]"

/* Order of groups[]: WORLD, TP, PP, ATTN_TP, ATTN_CP, MOE_EP, MOE_TP, MOE_DP, MOE_CP. */
static const hand_case_t cases[] = {
    {"tp8 ep2 (DESIGN.md example 1)",
     8,
     8,
     0,
     2,
     0,
     0,
     0,
     0,
     8,
     4,
     {"[0-7]", "[0-7]", S8, "[0-7]", S8, "[0,4] [1,5] [2,6] [3,7]", "[0-3] [4-7]", S8, S8}},
    {"tp8 ep4 moe_dp2 attn_cp2 (DESIGN.md example 2)",
     8,
     8,
     0,
     4,
     2,
     2,
     0,
     0,
     4,
     1,
     {"[0-7]", "[0-7]", S8, "[0-3] [4-7]", "[0,4] [1,5] [2,6] [3,7]", "[0-3] [4-7]", S8,
      "[0,4] [1,5] [2,6] [3,7]", "[0,4] [1,5] [2,6] [3,7]"}},
    {"tp8 moe_dense_tp1",
     8,
     8,
     0,
     0,
     0,
     0,
     0,
     1,
     8,
     8,
     {"[0-7]", "[0-7]", S8, "[0-7]", S8, S8, "[0-7]", S8, S8}},
    {"tp4 ep4 moe_dp1 attn_cp2",
     4,
     4,
     0,
     4,
     1,
     2,
     0,
     0,
     2,
     1,
     {"[0-3]", "[0-3]", S4, "[0,1] [2,3]", "[0,2] [1,3]", "[0-3]", S4, "[0,2] [1,3]",
      "[0,2] [1,3]"}},
    {"tp8 ep4",
     8,
     8,
     0,
     4,
     0,
     0,
     0,
     0,
     8,
     2,
     {"[0-7]", "[0-7]", S8, "[0-7]", S8, "[0,2,4,6] [1,3,5,7]", "[0,1] [2,3] [4,5] [6,7]", S8, S8}},
    {"tp4 pp2 (world 8)",
     8,
     4,
     2,
     0,
     0,
     0,
     0,
     0,
     4,
     4,
     {"[0-7]", "[0-3] [4-7]", "[0,4] [1,5] [2,6] [3,7]", "[0-3] [4-7]", S8, S8, "[0-3] [4-7]", S8,
      S8}},
    {"tp4 ep2 (world 8, two TP blocks)",
     8,
     4,
     0,
     2,
     0,
     0,
     0,
     0,
     4,
     2,
     {"[0-7]", "[0-3] [4-7]", S8, "[0-3] [4-7]", S8, "[0,2] [1,3] [4,6] [5,7]",
      "[0,1] [2,3] [4,5] [6,7]", S8, S8}},
    {"tp8 attn_dp2 attn_cp2",
     8,
     8,
     0,
     0,
     0,
     2,
     2,
     0,
     2,
     8,
     {"[0-7]", "[0-7]", S8, "[0,1] [2,3] [4,5] [6,7]", "[0,2] [1,3] [4,6] [5,7]", S8, "[0-7]",
      "[0,2] [1,3] [4,6] [5,7]", "[0,2] [1,3] [4,6] [5,7]"}},
    {"tp8 ep2 moe_dp2",
     8,
     8,
     0,
     2,
     2,
     0,
     0,
     0,
     8,
     2,
     {"[0-7]", "[0-7]", S8, "[0-7]", S8, "[0,2] [1,3] [4,6] [5,7]", "[0,1] [2,3] [4,5] [6,7]",
      "[0,4] [1,5] [2,6] [3,7]", "[0,4] [1,5] [2,6] [3,7]"}},
    {"tp2 pp2 ep2 (world 8)",
     8,
     2,
     2,
     2,
     0,
     0,
     0,
     0,
     2,
     1,
     {"[0-7]", "[0,1] [2,3] [4,5] [6,7]", "[0,4] [1,5] [2,6] [3,7]", "[0,1] [2,3] [4,5] [6,7]", S8,
      "[0,1] [2,3] [4,5] [6,7]", S8, S8, S8}},
    {"tp1 (world 1)",
     1,
     1,
     0,
     0,
     0,
     0,
     0,
     0,
     1,
     1,
     {"[0]", "[0]", "[0]", "[0]", "[0]", "[0]", "[0]", "[0]", "[0]"}},
};

typedef struct group_set {
  int n;          /* groups */
  int size[MAXW]; /* ranks per group */
  int32_t r[MAXW][MAXW];
} group_set_t;

/* Parses "[0,4] [1-3]"; returns 0 on success. */
static int parse_groups(const char *s, group_set_t *g) {
  memset(g, 0, sizeof(*g));
  while (*s) {
    if (*s == ' ') {
      s++;
      continue;
    }
    if (*s != '[' || g->n >= MAXW) return -1;
    s++;
    for (;;) {
      char *end;
      long a = strtol(s, &end, 10), b;
      if (end == s) return -1;
      s = end;
      b = a;
      if (*s == '-') {
        b = strtol(s + 1, &end, 10);
        if (end == s + 1 || b < a) return -1;
        s = end;
      }
      for (long v = a; v <= b; v++) {
        if (g->size[g->n] >= MAXW) return -1;
        g->r[g->n][g->size[g->n]++] = (int32_t)v;
      }
      if (*s == ',') {
        s++;
        continue;
      }
      if (*s == ']') {
        s++;
        break;
      }
      return -1;
    }
    g->n++;
  }
  return 0;
}

static void fmt_list(const int32_t *r, int n, char *buf, size_t cap) {
  size_t len = 0;
  buf[0] = '\0';
  for (int i = 0; i < n && len + 12 < cap; i++)
    len += (size_t)snprintf(buf + len, cap - len, "%s%d", i ? "," : "", (int)r[i]);
}

static moecomm_topology_t make_topo(int world, int rank, int tp, int pp, int ep, int moe_dp,
                                    int attn_cp, int attn_dp, int moe_dense_tp) {
  moecomm_topology_t t = mc_test_topo(world, rank, tp);
  t.pp = pp;
  t.ep = ep;
  t.moe_dp = moe_dp;
  t.attn_cp = attn_cp;
  t.attn_dp = attn_dp;
  t.moe_dense_tp = moe_dense_tp;
  return t;
}

static void test_hand_case(const hand_case_t *c) {
  group_set_t want[MC_GROUP_KIND_COUNT];
  int kinds_ok = 1;
  for (int k = 0; k < MC_GROUP_KIND_COUNT; k++) {
    /* The hand-written groups must themselves partition the world. */
    int seen[MAXW] = {0}, bad = parse_groups(c->groups[k], &want[k]) != 0, total = 0;
    for (int g = 0; !bad && g < want[k].n; g++)
      for (int i = 0; i < want[k].size[g]; i++) {
        int v = want[k].r[g][i];
        if (v < 0 || v >= c->world || seen[v]++) bad = 1;
        total++;
      }
    kinds_ok &= MC_CHECK(!bad && total == c->world, "%s: test data for %s is not a partition",
                         c->name, mc_topo_kind_name(k));
  }
  if (!kinds_ok) return;

  for (int rank = 0; rank < c->world; rank++) {
    moecomm_topology_t in = make_topo(c->world, rank, c->tp, c->pp, c->ep, c->moe_dp, c->attn_cp,
                                      c->attn_dp, c->moe_dense_tp);
    mc_topo_t t;
    mc_err_t err = {""};
    moecomm_result_t r = mc_topo_init(&in, &t, &err);
    if (!MC_CHECK(r == MOECOMM_SUCCESS, "%s rank %d: mc_topo_init -> %d: %s", c->name, rank, (int)r,
                  err.msg))
      continue;
    if (rank == 0)
      MC_CHECK(t.attn_tp == c->attn_tp && t.moe_tp == c->moe_tp && t.world == c->world &&
                   t.rank == 0 && t.tp == c->tp,
               "%s: derived attn_tp=%d moe_tp=%d, want %d %d", c->name, t.attn_tp, t.moe_tp,
               c->attn_tp, c->moe_tp);
    for (int k = 0; k < MC_GROUP_KIND_COUNT; k++) {
      int32_t got[MAXW];
      int g, n, pos = -1;
      char gs[512], ws[512];
      for (int i = 0; i < MAXW; i++) got[i] = -77;
      n = mc_topo_group_ranks(&t, (moecomm_group_kind_t)k, rank, got);
      for (g = 0; g < want[k].n && pos < 0; g++)
        for (int i = 0; i < want[k].size[g]; i++)
          if (want[k].r[g][i] == rank) pos = g;
      fmt_list(got, n > 0 && n <= MAXW ? n : 0, gs, sizeof(gs));
      fmt_list(want[k].r[pos], want[k].size[pos], ws, sizeof(ws));
      MC_CHECK(n == want[k].size[pos] && memcmp(got, want[k].r[pos], (size_t)n * 4) == 0,
               "%s rank %d %s: got [%s] (size %d), want [%s]", c->name, rank, mc_topo_kind_name(k),
               gs, n, ws);
    }
  }
}

/* ---- properties over many topologies ---- */

static int valid_by_design(int world, int tp, int pp, int ep, int moe_dp, int attn_cp, int attn_dp,
                           int dense) {
  if (tp < 1 || tp > world || world % (tp * pp) != 0) return 0;
  if (tp % (attn_cp * attn_dp) != 0 || tp % (ep * moe_dp) != 0) return 0;
  if (dense != 0 && dense != 1 && dense != tp) return 0;
  /* plugin rule: moe_dp is 1 (MoE-CP gather over ATTN_CP) or at least attn_cp */
  if (moe_dp > 1 && moe_dp < attn_cp) return 0;
  return 1;
}

static int expected_size(const mc_topo_t *t, int kind) {
  switch (kind) {
    case MOECOMM_GROUP_WORLD: return t->world;
    case MOECOMM_GROUP_TP: return t->tp;
    case MOECOMM_GROUP_PP: return t->pp;
    case MOECOMM_GROUP_ATTN_TP: return t->attn_tp;
    case MOECOMM_GROUP_ATTN_CP: return t->attn_cp;
    case MOECOMM_GROUP_MOE_EP: return t->ep;
    case MOECOMM_GROUP_MOE_TP: return t->moe_tp;
    default: return t->attn_cp > t->moe_dp ? t->attn_cp : t->moe_dp; /* MOE_DP, MOE_CP */
  }
}

/* Checks one valid topology; returns 0 and a message on the first broken property. */
static int check_properties(const mc_topo_t *base, char *why, size_t cap) {
  static int32_t lists[MAXW][MC_GROUP_KIND_COUNT][MAXW];
  static int sizes[MAXW][MC_GROUP_KIND_COUNT];
  int w = base->world;
  for (int rank = 0; rank < w; rank++) {
    mc_topo_t t = *base;
    t.rank = rank;
    for (int k = 0; k < MC_GROUP_KIND_COUNT; k++)
      sizes[rank][k] = mc_topo_group_ranks(&t, (moecomm_group_kind_t)k, rank, lists[rank][k]);
  }
  for (int rank = 0; rank < w; rank++) {
    int blk = rank / base->tp;
    for (int k = 0; k < MC_GROUP_KIND_COUNT; k++) {
      int n = sizes[rank][k], self = 0;
      const int32_t *l = lists[rank][k];
      if (n != expected_size(base, k)) {
        snprintf(why, cap, "rank %d %s: size %d, want %d", rank, mc_topo_kind_name(k), n,
                 expected_size(base, k));
        return 0;
      }
      for (int i = 0; i < n; i++) {
        int m = l[i];
        if (m < 0 || m >= w) {
          snprintf(why, cap, "rank %d %s: member %d out of range", rank, mc_topo_kind_name(k), m);
          return 0;
        }
        for (int j = 0; j < i; j++)
          if (l[j] == m) {
            snprintf(why, cap, "rank %d %s: member %d twice", rank, mc_topo_kind_name(k), m);
            return 0;
          }
        self += m == rank;
        /* every member sees the same list: groups partition the world */
        if (sizes[m][k] != n || memcmp(lists[m][k], l, (size_t)n * sizeof(int32_t)) != 0) {
          snprintf(why, cap, "%s: rank %d and its member %d have different lists",
                   mc_topo_kind_name(k), rank, m);
          return 0;
        }
        /* all groups but WORLD and PP stay inside the rank's TP block */
        if (k != MOECOMM_GROUP_WORLD && k != MOECOMM_GROUP_PP && m / base->tp != blk) {
          snprintf(why, cap, "rank %d %s: member %d outside TP block %d", rank,
                   mc_topo_kind_name(k), m, blk);
          return 0;
        }
        if (k == MOECOMM_GROUP_PP && m % (w / base->pp) != rank % (w / base->pp)) {
          snprintf(why, cap, "rank %d PP: member %d is not rank + a multiple of world/pp", rank, m);
          return 0;
        }
      }
      if (self != 1) {
        snprintf(why, cap, "rank %d is not in its own %s group", rank, mc_topo_kind_name(k));
        return 0;
      }
    }
    /* Nesting: ATTN_TP and MOE_TP are contiguous runs, the fastest dimension. */
    for (int i = 1; i < sizes[rank][MOECOMM_GROUP_ATTN_TP]; i++)
      if (lists[rank][MOECOMM_GROUP_ATTN_TP][i] != lists[rank][MOECOMM_GROUP_ATTN_TP][i - 1] + 1) {
        snprintf(why, cap, "rank %d ATTN_TP is not contiguous", rank);
        return 0;
      }
    for (int i = 1; i < sizes[rank][MOECOMM_GROUP_MOE_TP]; i++)
      if (lists[rank][MOECOMM_GROUP_MOE_TP][i] != lists[rank][MOECOMM_GROUP_MOE_TP][i - 1] + 1) {
        snprintf(why, cap, "rank %d MOE_TP is not contiguous", rank);
        return 0;
      }
  }
  return 1;
}

static void test_properties(void) {
  static const int worlds[] = {1, 2, 3, 4, 6, 8, 12, 16, 24};
  static const int pps[] = {0, 1, 2, 3, 4};
  static const int eps[] = {0, 1, 2, 3, 4, 8};
  static const int dps[] = {0, 1, 2, 4};
  static const int cps[] = {0, 1, 2, 3, 4};
  static const int adps[] = {0, 1, 2};
  long valid = 0, invalid = 0, bad_valid = 0, bad_invalid = 0;
  for (size_t wi = 0; wi < sizeof(worlds) / sizeof(worlds[0]); wi++) {
    int w = worlds[wi];
    for (int tp = 1; tp <= w; tp++)
      for (size_t a = 0; a < sizeof(pps) / sizeof(pps[0]); a++)
        for (size_t b = 0; b < sizeof(eps) / sizeof(eps[0]); b++)
          for (size_t c = 0; c < sizeof(dps) / sizeof(dps[0]); c++)
            for (size_t d = 0; d < sizeof(cps) / sizeof(cps[0]); d++)
              for (size_t e = 0; e < sizeof(adps) / sizeof(adps[0]); e++)
                for (int dense_i = 0; dense_i < 4; dense_i++) {
                  int dense = dense_i == 3 ? tp : dense_i; /* 0, 1, 2, tp */
                  int pp = pps[a], ep = eps[b], dp = dps[c], cp = cps[d], adp = adps[e];
                  int want_ok = valid_by_design(w, tp, pp ? pp : 1, ep ? ep : 1, dp ? dp : 1,
                                                cp ? cp : 1, adp ? adp : 1, dense);
                  moecomm_topology_t in = make_topo(w, w - 1, tp, pp, ep, dp, cp, adp, dense);
                  mc_topo_t t;
                  mc_err_t err = {""};
                  moecomm_result_t r = mc_topo_init(&in, &t, &err);
                  char why[256] = "";
                  if (!want_ok) {
                    invalid++;
                    if (r != MOECOMM_ERR_CONFIG || err.msg[0] == '\0') {
                      if (bad_invalid++ < 5)
                        MC_CHECK(0,
                                 "world=%d tp=%d pp=%d ep=%d moe_dp=%d attn_cp=%d attn_dp=%d "
                                 "moe_dense_tp=%d is invalid but mc_topo_init -> %d '%s'",
                                 w, tp, pp, ep, dp, cp, adp, dense, (int)r, err.msg);
                    }
                    continue;
                  }
                  valid++;
                  if (r != MOECOMM_SUCCESS) {
                    if (bad_valid++ < 5)
                      MC_CHECK(0,
                               "world=%d tp=%d pp=%d ep=%d moe_dp=%d attn_cp=%d attn_dp=%d "
                               "moe_dense_tp=%d is valid but mc_topo_init -> %d: %s",
                               w, tp, pp, ep, dp, cp, adp, dense, (int)r, err.msg);
                    continue;
                  }
                  if (dense_i != 0) continue; /* moe_dense_tp does not change any list */
                  if (!check_properties(&t, why, sizeof(why)) && bad_valid++ < 5)
                    MC_CHECK(0, "world=%d tp=%d pp=%d ep=%d moe_dp=%d attn_cp=%d attn_dp=%d: %s", w,
                             tp, pp, ep, dp, cp, adp, why);
                }
  }
  MC_CHECK(bad_valid == 0, "%ld of %ld valid topologies broke a property", bad_valid, valid);
  MC_CHECK(bad_invalid == 0, "%ld of %ld invalid topologies were accepted", bad_invalid, invalid);
  MC_CHECK(valid > 1000 && invalid > 1000, "enumeration covered %ld valid, %ld invalid", valid,
           invalid);
  printf("properties: %ld valid and %ld invalid topologies checked\n", valid, invalid);
}

/* ---- validation errors ---- */

typedef struct bad_case {
  const char *what;
  int world, rank, tp, pp, ep, moe_dp, attn_cp, attn_dp, moe_dense_tp;
  const char *must[3]; /* substrings the message must contain */
} bad_case_t;

static const bad_case_t bad_cases[] = {
    {"world_size 0", 0, 0, 1, 0, 0, 0, 0, 0, 0, {"world_size=0"}},
    {"world_size negative", -4, 0, 1, 0, 0, 0, 0, 0, 0, {"world_size=-4"}},
    {"rank past the world", 8, 8, 8, 0, 0, 0, 0, 0, 0, {"rank=8"}},
    {"rank negative", 8, -1, 8, 0, 0, 0, 0, 0, 0, {"rank=-1"}},
    {"tp 0", 8, 0, 0, 0, 0, 0, 0, 0, 0, {"tp=0"}},
    {"tp larger than the world", 4, 0, 8, 0, 0, 0, 0, 0, 0, {"tp=8", "4"}},
    {"pp negative", 8, 0, 8, -1, 0, 0, 0, 0, 0, {"pp=-1"}},
    {"ep negative", 8, 0, 8, 0, -2, 0, 0, 0, 0, {"ep=-2"}},
    {"moe_dp negative", 8, 0, 8, 0, 0, -1, 0, 0, 0, {"moe_dp=-1"}},
    {"attn_cp negative", 8, 0, 8, 0, 0, 0, -3, 0, 0, {"attn_cp=-3"}},
    {"attn_dp negative", 8, 0, 8, 0, 0, 0, 0, -1, 0, {"attn_dp=-1"}},
    {"tp*pp does not divide the world", 8, 0, 4, 3, 0, 0, 0, 0, 0, {"tp=4", "pp=3", "8"}},
    {"tp does not divide the world", 12, 0, 8, 0, 0, 0, 0, 0, 0, {"tp=8", "12"}},
    {"ep does not divide tp", 8, 0, 8, 0, 3, 0, 0, 0, 0, {"tp=8", "ep=3"}},
    {"ep*moe_dp does not divide tp", 8, 0, 8, 0, 4, 4, 0, 0, 0, {"tp=8", "ep=4", "moe_dp=4"}},
    {"attn_cp does not divide tp", 8, 0, 8, 0, 0, 0, 3, 0, 0, {"tp=8", "attn_cp=3"}},
    {"attn_cp*attn_dp does not divide tp",
     4,
     0,
     4,
     0,
     0,
     0,
     2,
     4,
     0,
     {"tp=4", "attn_cp=2", "attn_dp=4"}},
    {"moe_dense_tp neither 1 nor tp", 8, 0, 8, 0, 0, 0, 0, 0, 2, {"moe_dense_tp=2", "tp=8"}},
    {"1 < moe_dp < attn_cp", 8, 0, 8, 0, 1, 2, 4, 0, 0, {"moe_dp=2", "attn_cp=4"}},
};

static void test_bad_topologies(void) {
  for (size_t i = 0; i < sizeof(bad_cases) / sizeof(bad_cases[0]); i++) {
    const bad_case_t *c = &bad_cases[i];
    moecomm_topology_t in = make_topo(c->world, c->rank, c->tp, c->pp, c->ep, c->moe_dp, c->attn_cp,
                                      c->attn_dp, c->moe_dense_tp);
    mc_topo_t t, poison;
    mc_err_t err = {""};
    moecomm_result_t r;
    memset(&t, 0xa5, sizeof(t));
    memcpy(&poison, &t, sizeof(t));
    r = mc_topo_init(&in, &t, &err);
    MC_CHECK(r == MOECOMM_ERR_CONFIG, "%s: got %d, want MOECOMM_ERR_CONFIG (%s)", c->what, (int)r,
             err.msg);
    MC_CHECK(memcmp(&t, &poison, sizeof(t)) == 0, "%s: output written on failure", c->what);
    for (int m = 0; m < 3 && c->must[m]; m++)
      MC_CHECK(strstr(err.msg, c->must[m]) != NULL, "%s: message '%s' does not name '%s'", c->what,
               err.msg, c->must[m]);
  }

  /* NULL and a struct from before the 1.0 layout */
  {
    mc_topo_t t, poison;
    mc_err_t err = {""};
    moecomm_topology_t in = mc_test_topo(8, 0, 8);
    moecomm_result_t r;
    memset(&t, 0x5a, sizeof(t));
    poison = t;
    r = mc_topo_init(NULL, &t, &err);
    MC_CHECK(r == MOECOMM_ERR_INVALID_ARGUMENT, "NULL topology: got %d", (int)r);
    in.struct_size = offsetof(moecomm_topology_t, moe_dense_tp); /* one field short */
    r = mc_topo_init(&in, &t, &err);
    MC_CHECK(r == MOECOMM_ERR_STRUCT_SIZE, "short struct_size: got %d (%s)", (int)r, err.msg);
    MC_CHECK(memcmp(&t, &poison, sizeof(t)) == 0, "output written on failure");
    /* A newer, larger struct is accepted: the extra bytes are ignored. */
    {
      struct {
        moecomm_topology_t t;
        int32_t future[4];
      } big;
      memset(&big, 0x7f, sizeof(big));
      big.t = mc_test_topo(8, 3, 8);
      big.t.ep = 2;
      big.t.struct_size = sizeof(big);
      r = mc_topo_init(&big.t, &t, &err);
      MC_CHECK(r == MOECOMM_SUCCESS && t.moe_tp == 4 && t.rank == 3,
               "larger struct_size: got %d (%s)", (int)r, err.msg);
    }
  }
}

static void test_names(void) {
  static const char *const names[MC_GROUP_KIND_COUNT] = {
      "WORLD", "TP", "PP", "ATTN_TP", "ATTN_CP", "MOE_EP", "MOE_TP", "MOE_DP", "MOE_CP"};
  for (int k = 0; k < MC_GROUP_KIND_COUNT; k++) {
    const char *n = mc_topo_kind_name(k);
    MC_CHECK(n != NULL && strcmp(n, names[k]) == 0, "kind %d named %s, want %s", k, n ? n : "NULL",
             names[k]);
    MC_CHECK(mc_topo_kind_from_name(names[k]) == k, "kind_from_name(%s)", names[k]);
  }
  MC_CHECK(mc_topo_kind_name(-1) == NULL && mc_topo_kind_name(MC_GROUP_KIND_COUNT) == NULL,
           "out-of-range kinds have no name");
  MC_CHECK(mc_topo_kind_from_name("MOE_XX") == -1, "unknown name -> -1");
}

/* Sizes whose products overflow int (each alone is in range): refused with a message, no crash
   (attn_cp = attn_dp = 65536 used to divide by zero). */
static void test_overflowing_products(void) {
  static const struct {
    int world, tp, pp, ep, moe_dp, attn_cp, attn_dp;
  } bad[] = {{65536, 65536, 1, 1, 1, 65536, 65536},
             {65536, 65536, 65536, 1, 1, 1, 1},
             {65536, 65536, 1, 65536, 65536, 1, 1},
             {65536, 2, 1, 1, 1, 65536, 65536},
             {4, 4, 1, 65536, 65536, 1, 1}};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    moecomm_topology_t in = make_topo(bad[i].world, 0, bad[i].tp, bad[i].pp, bad[i].ep,
                                      bad[i].moe_dp, bad[i].attn_cp, bad[i].attn_dp, 0);
    mc_topo_t t;
    mc_err_t err;
    memset(&t, 0x5a, sizeof(t));
    moecomm_result_t r = mc_topo_init(&in, &t, &err);
    MC_CHECK(r == MOECOMM_ERR_CONFIG && strstr(err.msg, "does not divide") != NULL,
             "overflowing product %zu: %d: %s", i, (int)r, err.msg);
    MC_CHECK(((unsigned char *)&t)[0] == 0x5a, "overflowing product %zu: output written", i);
  }
}

int main(int argc, char **argv) {
  mc_test_init("topology", argc, argv);
  test_overflowing_products();
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) test_hand_case(&cases[i]);
  test_properties();
  test_bad_topologies();
  test_names();
  return mc_test_finish();
}
