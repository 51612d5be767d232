/* SPDX-License-Identifier: Apache-2.0 */
/* lazy_groups.c - communicators are created by the first collective on them, never before, and
 * shared by every group with the same rank list (unless MOECOMM_SHARE_COMMS=0).
 *
 * Four CPU ranks, tp4 ep2 (moe_tp 2): WORLD, TP and ATTN_TP are [0-3]; MOE_EP [0,2] [1,3]; MOE_TP
 * [0,1] [2,3]; PP, ATTN_CP, MOE_DP and MOE_CP hold one rank.  Rank lists in the stats are checked
 * against plugin/topo.c (white-box), comm_ids against the lists, creation and bytes after each
 * step. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../plugin/topo.h"
#include "../common/harness.h"

#define NK MC_GROUP_KIND_COUNT

static const moecomm_api_t *api;

typedef struct lazy_arg {
  int share;         /* MOECOMM_SHARE_COMMS in effect */
  const char *tp_be; /* MOECOMM_BACKEND_TP set to this, or NULL */
} lazy_arg_t;

static int stats_all(moecomm_context_t *ctx, moecomm_group_t **g, moecomm_group_stats_t *st) {
  for (int k = 0; k < NK; k++) {
    moecomm_result_t r = api->group_get(ctx, (moecomm_group_kind_t)k, &g[k]);
    memset(&st[k], 0, sizeof(st[k]));
    st[k].struct_size = sizeof(st[k]);
    if (r == MOECOMM_SUCCESS) r = api->group_stats(g[k], &st[k]);
    if (!MC_CHECK(r == MOECOMM_SUCCESS, "group %d: %d %s", k, (int)r, api->last_error(ctx)))
      return 0;
  }
  return 1;
}

static int same_list(const moecomm_group_stats_t *a, const moecomm_group_stats_t *b) {
  return a->size == b->size && memcmp(a->ranks, b->ranks, sizeof(int32_t) * (size_t)a->size) == 0;
}

/* Sum all-reduce of (world rank + 1) * (i + 1) on g, checked. */
static int reduce_on(moecomm_context_t *ctx, moecomm_group_t *g, const moecomm_group_stats_t *st) {
  int32_t x[64], y[64];
  int bad = 0;
  moecomm_result_t r;
  for (int i = 0; i < 64; i++) {
    x[i] = (st->ranks[st->rank] + 1) * (i + 1);
    y[i] = 0x7f7f7f7f;
  }
  r = api->all_reduce(g, x, y, 64, MOECOMM_INT32, MOECOMM_SUM, NULL);
  if (!MC_CHECK(r == MOECOMM_SUCCESS, "all_reduce on %s: %d %s", st->kind_name, (int)r,
                api->last_error(ctx)))
    return 0;
  for (int i = 0; i < 64; i++) {
    int32_t want = 0;
    for (int p = 0; p < st->size; p++) want += (st->ranks[p] + 1) * (i + 1);
    bad += y[i] != want;
  }
  return MC_CHECK(bad == 0, "all_reduce on %s: %d wrong", st->kind_name, bad);
}

/* created / bytes / ops of every kind against what is expected now. */
static void expect_state(const char *when, const moecomm_group_stats_t *st, const int *created,
                         const uint64_t *ops) {
  for (int k = 0; k < NK; k++) {
    MC_CHECK(st[k].created == created[k], "%s: %s created %d, want %d", when, st[k].kind_name,
             st[k].created, created[k]);
    if (created[k])
      MC_CHECK(st[k].host_bytes > 0 && st[k].device_bytes == 0,
               "%s: %s created on CPU: host_bytes %llu device_bytes %llu", when, st[k].kind_name,
               (unsigned long long)st[k].host_bytes, (unsigned long long)st[k].device_bytes);
    else
      MC_CHECK(st[k].host_bytes == 0 && st[k].device_bytes == 0,
               "%s: %s not created but holds host %llu device %llu bytes", when, st[k].kind_name,
               (unsigned long long)st[k].host_bytes, (unsigned long long)st[k].device_bytes);
    MC_CHECK(st[k].ops == ops[k], "%s: %s ops %llu, want %llu", when, st[k].kind_name,
             (unsigned long long)st[k].ops, (unsigned long long)ops[k]);
  }
}

static int lazy_rank(int rank, int world, void *arg) {
  const lazy_arg_t *a = arg;
  moecomm_topology_t topo = mc_test_topo(world, rank, world);
  moecomm_context_params_t p;
  moecomm_context_t *ctx = NULL;
  moecomm_group_t *g[NK];
  moecomm_group_stats_t st[NK];
  mc_topo_t t;
  mc_err_t err;
  int created[NK] = {0};
  uint64_t ops[NK] = {0};
  moecomm_result_t r;

  topo.ep = 2;
  p = mc_test_ctx_params(&topo, MOECOMM_DEVICE_CPU);
  if (!MC_CHECK(mc_topo_init(&topo, &t, &err) == MOECOMM_SUCCESS, "topology: %s", err.msg))
    return 1;
  r = api->context_create(&p, &ctx);
  if (!MC_CHECK(r == MOECOMM_SUCCESS, "context_create: %d %s", (int)r, api->last_error(NULL)))
    return 1;
  if (!stats_all(ctx, g, st)) return 1;

  /* Lists, positions, kinds and backends straight after creation. */
  for (int k = 0; k < NK; k++) {
    int32_t want[64];
    int n = mc_topo_group_ranks(&t, (moecomm_group_kind_t)k, rank, want);
    MC_CHECK(st[k].kind == k && st[k].size == n && st[k].ranks != NULL &&
                 memcmp(st[k].ranks, want, sizeof(int32_t) * (size_t)n) == 0 && st[k].rank >= 0 &&
                 st[k].rank < n && st[k].ranks[st[k].rank] == rank,
             "%s: stats list (size %d, rank %d) differs from the topology's (size %d)",
             st[k].kind_name ? st[k].kind_name : "?", st[k].size, st[k].rank, n);
    MC_CHECK(st[k].kind_name != NULL && strcmp(st[k].kind_name, mc_topo_kind_name(k)) == 0,
             "kind %d named %s", k, st[k].kind_name ? st[k].kind_name : "NULL");
    MC_CHECK(st[k].backend == MOECOMM_BACKEND_SHM && strcmp(st[k].backend_name, "shm") == 0,
             "%s: backend %s on a CPU context", st[k].kind_name, st[k].backend_name);
    /* comm_id: equal exactly when the lists are equal (and sharing is on) */
    for (int j = 0; j < k; j++) {
      int equal_ids = st[j].comm_id == st[k].comm_id;
      int want_equal = a->share && same_list(&st[j], &st[k]);
      MC_CHECK(equal_ids == want_equal, "%s and %s: comm_id %d and %d (lists %s, sharing %s)",
               st[j].kind_name, st[k].kind_name, st[j].comm_id, st[k].comm_id,
               same_list(&st[j], &st[k]) ? "equal" : "differ", a->share ? "on" : "off");
    }
  }
  expect_state("after context_create", st, created, ops);

  /* The first collective on TP creates TP's communicator, and with sharing the groups that use
     the same one (WORLD, ATTN_TP): nothing else. */
  reduce_on(ctx, g[MOECOMM_GROUP_TP], &st[MOECOMM_GROUP_TP]);
  ops[MOECOMM_GROUP_TP]++;
  for (int k = 0; k < NK; k++)
    created[k] = a->share ? same_list(&st[k], &st[MOECOMM_GROUP_TP]) : k == MOECOMM_GROUP_TP;
  if (!stats_all(ctx, g, st)) return 1;
  expect_state("after an all_reduce on TP", st, created, ops);
  if (a->share)
    MC_CHECK(st[MOECOMM_GROUP_WORLD].host_bytes == st[MOECOMM_GROUP_TP].host_bytes,
             "WORLD and TP share a communicator but report %llu and %llu bytes",
             (unsigned long long)st[MOECOMM_GROUP_WORLD].host_bytes,
             (unsigned long long)st[MOECOMM_GROUP_TP].host_bytes);

  /* A group of one is a copy and creates nothing. */
  reduce_on(ctx, g[MOECOMM_GROUP_MOE_DP], &st[MOECOMM_GROUP_MOE_DP]);
  reduce_on(ctx, g[MOECOMM_GROUP_PP], &st[MOECOMM_GROUP_PP]);
  ops[MOECOMM_GROUP_MOE_DP]++;
  ops[MOECOMM_GROUP_PP]++;
  if (!stats_all(ctx, g, st)) return 1;
  expect_state("after all_reduces on MOE_DP and PP (one rank each)", st, created, ops);

  /* MOE_EP next: MOE_TP stays uncreated. */
  reduce_on(ctx, g[MOECOMM_GROUP_MOE_EP], &st[MOECOMM_GROUP_MOE_EP]);
  ops[MOECOMM_GROUP_MOE_EP]++;
  created[MOECOMM_GROUP_MOE_EP] = 1;
  if (!stats_all(ctx, g, st)) return 1;
  expect_state("after an all_reduce on MOE_EP", st, created, ops);

  /* WORLD: created with TP's when shared; its own communicator, created now, when not. */
  reduce_on(ctx, g[MOECOMM_GROUP_WORLD], &st[MOECOMM_GROUP_WORLD]);
  ops[MOECOMM_GROUP_WORLD]++;
  created[MOECOMM_GROUP_WORLD] = 1;
  if (!stats_all(ctx, g, st)) return 1;
  expect_state("after an all_reduce on WORLD", st, created, ops);

  if (a->tp_be != NULL)
    MC_CHECK(strcmp(st[MOECOMM_GROUP_TP].backend_name, a->tp_be) == 0,
             "MOECOMM_BACKEND_TP=%s: TP reports backend %s", a->tp_be,
             st[MOECOMM_GROUP_TP].backend_name);
  MC_CHECK(api->context_destroy(ctx) == MOECOMM_SUCCESS, "context_destroy");
  return 0;
}

int main(int argc, char **argv) {
  lazy_arg_t a;
  mc_test_init("lazy_groups", argc, argv);
  api = mc_test_plugin();
  setenv("MOECOMM_TIMEOUT_MS", "20000", 1);

  a.share = 1;
  a.tp_be = NULL;
  unsetenv("MOECOMM_SHARE_COMMS");
  MC_CHECK(mc_test_ranks(4, lazy_rank, &a, 60) == 0, "tp4 ep2, shared communicators");

  a.share = 0;
  setenv("MOECOMM_SHARE_COMMS", "0", 1);
  MC_CHECK(mc_test_ranks(4, lazy_rank, &a, 60) == 0, "tp4 ep2, MOECOMM_SHARE_COMMS=0");
  unsetenv("MOECOMM_SHARE_COMMS");

  a.share = 1;
  a.tp_be = "shm";
  setenv("MOECOMM_BACKEND_TP", "shm", 1);
  setenv("MOECOMM_BACKEND", "auto", 1);
  MC_CHECK(mc_test_ranks(4, lazy_rank, &a, 60) == 0, "tp4 ep2, MOECOMM_BACKEND_TP=shm");
  unsetenv("MOECOMM_BACKEND_TP");
  unsetenv("MOECOMM_BACKEND");
  return mc_test_finish();
}
