/* SPDX-License-Identifier: Apache-2.0 */
/* capture_scope.c - the context's capture scope on CPU contexts, where it is bookkeeping only
 * (collectives still run eagerly): begin twice and end without begin are MOECOMM_ERR_CAPTURE;
 * ranks that issued different numbers of collectives on a group inside the scope make capture_end
 * fail on every rank, naming the group and the counts; equal counts succeed.
 *
 * Four CPU ranks, tp4 ep2: WORLD, TP and ATTN_TP share the list [0-3] (one communicator), so
 * ranks can split the same eager traffic differently between those groups without a hang. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/harness.h"

static const moecomm_api_t *api;

static moecomm_context_t *make_ctx(int rank, int world) {
  moecomm_topology_t topo = mc_test_topo(world, rank, world);
  moecomm_context_params_t p;
  moecomm_context_t *ctx = NULL;
  moecomm_result_t r;
  topo.ep = 2;
  p = mc_test_ctx_params(&topo, MOECOMM_DEVICE_CPU);
  r = api->context_create(&p, &ctx);
  MC_CHECK(r == MOECOMM_SUCCESS, "context_create: %d %s", (int)r, api->last_error(NULL));
  return r == MOECOMM_SUCCESS ? ctx : NULL;
}

/* Sum all-reduce on `kind` checked right away: inside the scope it must run eagerly. */
static int reduce_on(moecomm_context_t *ctx, moecomm_group_kind_t kind, int salt) {
  moecomm_group_t *g = NULL;
  moecomm_group_stats_t st;
  int32_t x[33], y[33];
  int bad = 0;
  moecomm_result_t r = api->group_get(ctx, kind, &g);
  memset(&st, 0, sizeof(st));
  st.struct_size = sizeof(st);
  if (r == MOECOMM_SUCCESS) r = api->group_stats(g, &st);
  if (!MC_CHECK(r == MOECOMM_SUCCESS, "group %d: %d", (int)kind, (int)r)) return 0;
  for (int i = 0; i < 33; i++) {
    x[i] = (st.ranks[st.rank] + 1) * 100 + i + salt;
    y[i] = 0x7f7f7f7f;
  }
  r = api->all_reduce(g, x, y, 33, MOECOMM_INT32, MOECOMM_SUM, NULL);
  if (!MC_CHECK(r == MOECOMM_SUCCESS, "all_reduce on %s inside the scope: %d (%s) %s", st.kind_name,
                (int)r, api->result_string(r), api->last_error(ctx)))
    return 0;
  for (int i = 0; i < 33; i++) {
    int32_t want = 0;
    for (int p = 0; p < st.size; p++) want += (st.ranks[p] + 1) * 100 + i + salt;
    bad += y[i] != want;
  }
  return MC_CHECK(bad == 0, "all_reduce on %s inside the scope: %d wrong (not run eagerly?)",
                  st.kind_name, bad);
}

static int scope_rank(int rank, int world, void *arg) {
  moecomm_context_t *ctx;
  moecomm_result_t r;
  const char *msg;
  (void)arg;

  /* misuse, and a scope where every group saw equal counts */
  ctx = make_ctx(rank, world);
  if (ctx == NULL) return 1;
  r = api->capture_end(ctx, NULL);
  MC_CHECK(r == MOECOMM_ERR_CAPTURE, "capture_end without begin: got %d (%s)", (int)r,
           api->result_string(r));
  MC_CHECK(api->last_error(ctx)[0] != '\0', "no message for capture_end without begin");
  r = api->capture_begin(ctx, NULL);
  MC_CHECK(r == MOECOMM_SUCCESS, "capture_begin: %d %s", (int)r, api->last_error(ctx));
  r = api->capture_begin(ctx, NULL);
  MC_CHECK(r == MOECOMM_ERR_CAPTURE, "capture_begin twice: got %d (%s)", (int)r,
           api->result_string(r));
  reduce_on(ctx, MOECOMM_GROUP_TP, 1);
  reduce_on(ctx, MOECOMM_GROUP_MOE_EP, 2);
  /* MOE_TP is [0,1] and [2,3]: each group agrees within itself, the groups differ */
  reduce_on(ctx, MOECOMM_GROUP_MOE_TP, 3);
  if (rank < 2) reduce_on(ctx, MOECOMM_GROUP_MOE_TP, 4);
  /* groups of one rank: counts are this rank's own business */
  for (int i = 0; i < rank; i++) reduce_on(ctx, MOECOMM_GROUP_MOE_DP, 5 + i);
  r = api->capture_end(ctx, NULL);
  MC_CHECK(r == MOECOMM_SUCCESS, "capture_end with equal counts per group: %d (%s) %s", (int)r,
           api->result_string(r), api->last_error(ctx));
  /* and a second scope on the same context */
  r = api->capture_begin(ctx, NULL);
  MC_CHECK(r == MOECOMM_SUCCESS, "second capture_begin: %d %s", (int)r, api->last_error(ctx));
  reduce_on(ctx, MOECOMM_GROUP_WORLD, 6);
  r = api->capture_end(ctx, NULL);
  MC_CHECK(r == MOECOMM_SUCCESS, "second capture_end: %d %s", (int)r, api->last_error(ctx));
  /* every rank is past capture_end before rank 0 destroys (and stops the store): that race is
     bootstrap.c's subject, not this file's */
  reduce_on(ctx, MOECOMM_GROUP_WORLD, 9);
  api->context_destroy(ctx);

  /* rank 0 sends its second collective through WORLD, the others through TP: the shared
     communicator sees the same traffic, but the groups' counts differ (TP 1 vs 2, WORLD 1 vs 0) */
  ctx = make_ctx(rank, world);
  if (ctx == NULL) return 1;
  r = api->capture_begin(ctx, NULL);
  MC_CHECK(r == MOECOMM_SUCCESS, "capture_begin: %d %s", (int)r, api->last_error(ctx));
  reduce_on(ctx, MOECOMM_GROUP_TP, 7);
  reduce_on(ctx, rank == 0 ? MOECOMM_GROUP_WORLD : MOECOMM_GROUP_TP, 8);
  r = api->capture_end(ctx, NULL);
  msg = api->last_error(ctx);
  MC_CHECK(r == MOECOMM_ERR_CAPTURE, "rank %d: capture_end after unequal counts: got %d (%s): %s",
           rank, (int)r, api->result_string(r), msg);
  MC_CHECK((strstr(msg, "TP") != NULL || strstr(msg, "WORLD") != NULL) && strchr(msg, '1') &&
               (strchr(msg, '2') || strchr(msg, '0')),
           "rank %d: the message names the group and the counts: %s", rank, msg);
  if (rank == 0) printf("unequal counts: %s\n", msg);
  reduce_on(ctx, MOECOMM_GROUP_WORLD, 10);
  api->context_destroy(ctx);
  return 0;
}

int main(int argc, char **argv) {
  mc_test_init("capture_scope", argc, argv);
  api = mc_test_plugin();
  setenv("MOECOMM_TIMEOUT_MS", "20000", 1);
  MC_CHECK(mc_test_ranks(4, scope_rank, NULL, 90) == 0, "capture scope on 4 CPU ranks");
  return mc_test_finish();
}
