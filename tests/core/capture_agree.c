/* SPDX-License-Identifier: Apache-2.0 */
/* capture_agree.c - capture_end when a backend's registration hook fails on one rank.
 *
 * White-box, CPU: three ranks, the shm backend wrapped (registry override) so that its
 * capture_end hook fails on rank 1 the first time.  Every rank must fail at once (well inside
 * MOECOMM_TIMEOUT_MS) with MOECOMM_ERR_CAPTURE naming rank 1 and its message; afterwards the
 * context is consistent on every rank: an eager all-reduce works and a second capture scope
 * (no failure this time) succeeds, which it cannot if one rank's exchange sequence fell behind.
 * Before the fix the ranks whose hook succeeded waited the full timeout and reported TIMEOUT. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../plugin/backends/shm/shm.h"
#include "../../plugin/capture.h"
#include "../../plugin/collective.h"
#include "../../plugin/context.h"
#include "../../plugin/registry.h"
#include "../../plugin/util.h"
#include "../common/harness.h"

#define TIMEOUT_MS 20000
#define FAILING_RANK 1

static mc_backend_ops_t fake_ops;
static int hook_calls;

/* Fails on FAILING_RANK the first time, after the exchange any real hook would make (so the
   others are not left waiting in it), as a hook whose local registration step failed would. */
static moecomm_result_t fake_capture_end(mc_comm_t *comm) {
  int32_t mine = comm->rank, *all = calloc((size_t)comm->size, sizeof(int32_t));
  moecomm_result_t r = mc_comm_exchange(comm, "fake hook", &mine, all, sizeof(mine));
  free(all);
  if (r != MOECOMM_SUCCESS) return r;
  if (comm->world->rank == FAILING_RANK && hook_calls++ == 0)
    return mc_err_set(comm->err, MOECOMM_ERR_BACKEND, "injected registration failure");
  return MOECOMM_SUCCESS;
}

static int all_reduce_ok(mc_context_t *ctx, int world, int salt) {
  int32_t x[16], y[16];
  mc_coll_t c = {.kind = MC_COLL_ALL_REDUCE,
                 .send = x,
                 .recv = y,
                 .count = 16,
                 .dtype = MOECOMM_INT32,
                 .op = MOECOMM_SUM};
  moecomm_result_t r;
  int bad = 0;
  for (int i = 0; i < 16; i++) x[i] = (ctx->topo.rank + 1) * (i + salt);
  r = mc_group_collective(&ctx->groups[MOECOMM_GROUP_TP], &c);
  if (!MC_CHECK(r == MOECOMM_SUCCESS, "all_reduce: %s: %s", mc_result_string(r), ctx->err.msg))
    return 0;
  for (int i = 0; i < 16; i++) bad += y[i] != world * (world + 1) / 2 * (i + salt);
  return MC_CHECK(bad == 0, "all_reduce: %d wrong elements", bad);
}

static int rank_main(int rank, int world, void *arg) {
  moecomm_topology_t topo = mc_test_topo(world, rank, world);
  moecomm_context_params_t p = mc_test_ctx_params(&topo, MOECOMM_DEVICE_CPU);
  mc_context_t *ctx = NULL;
  mc_err_t err;
  moecomm_result_t r;
  int64_t t0;
  char want[64];
  (void)arg;
  fake_ops = mc_shm_ops;
  fake_ops.capture_end = fake_capture_end;
  mc_backend_override_for_test(MOECOMM_BACKEND_SHM, &fake_ops);
  r = mc_context_create(&p, &ctx, &err);
  if (!MC_CHECK(r == MOECOMM_SUCCESS, "context_create: %s", err.msg)) return 1;

  MC_CHECK(mc_capture_begin(ctx) == MOECOMM_SUCCESS, "capture_begin: %s", ctx->err.msg);
  all_reduce_ok(ctx, world, 1); /* the communicator is born inside the scope */
  t0 = mc_now_ms();
  r = mc_capture_end(ctx);
  MC_CHECK(mc_now_ms() - t0 < TIMEOUT_MS / 4,
           "capture_end took %lld ms (timeout %d ms): a rank "
           "waited for the failing one",
           (long long)(mc_now_ms() - t0), TIMEOUT_MS);
  MC_CHECK(r == MOECOMM_ERR_CAPTURE,
           "capture_end returned %s, want MOECOMM_ERR_CAPTURE on every "
           "rank: %s",
           mc_result_string(r), ctx->err.msg);
  snprintf(want, sizeof(want), "on rank %d", FAILING_RANK);
  MC_CHECK(strstr(ctx->err.msg, want) && strstr(ctx->err.msg, "injected registration failure"),
           "capture_end's message names neither the failing rank nor its reason: %s", ctx->err.msg);
  MC_CHECK(!ctx->capturing, "the capture scope is still open after a failed capture_end");

  /* The context is still consistent on every rank. */
  all_reduce_ok(ctx, world, 2);
  MC_CHECK(mc_capture_begin(ctx) == MOECOMM_SUCCESS, "second capture_begin: %s", ctx->err.msg);
  all_reduce_ok(ctx, world, 3);
  r = mc_capture_end(ctx);
  MC_CHECK(r == MOECOMM_SUCCESS, "second capture_end: %s: %s", mc_result_string(r), ctx->err.msg);
  all_reduce_ok(ctx, world, 4);
  mc_context_destroy(ctx);
  return 0;
}

int main(int argc, char **argv) {
  char env[64];
  mc_test_init("capture_agree", argc, argv);
  snprintf(env, sizeof(env), "MOECOMM_TIMEOUT_MS=%d", TIMEOUT_MS);
  putenv(env);
  MC_CHECK(mc_test_ranks(3, rank_main, NULL, 60) == 0, "three ranks");
  return mc_test_finish();
}
