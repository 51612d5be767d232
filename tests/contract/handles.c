/* SPDX-License-Identifier: Apache-2.0 */
/* handles.c - what the host holds are handles, not pointers (plugin/handle.c), and a context is
 * used by one thread at a time (plugin/api_guard.c), through the ABI:
 * - a destroyed context's handle and its groups' handles are refused with
 *   MOECOMM_ERR_INVALID_ARGUMENT, also after a new context was created in its place, which they
 *   never reach (the stale handle used to act on the new context);
 * - forged handles (a heap pointer, small integers, a group handle as a context) are refused;
 * - a second thread calling into a context while the first is inside a collective gets
 *   MOECOMM_ERR_STATE at once and changes nothing; the first call's result is right (two threads
 *   used to get MOECOMM_SUCCESS with half the elements wrong). */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../common/harness.h"

static const moecomm_api_t *api;

static moecomm_context_t *world1(void) {
  moecomm_topology_t t = mc_test_topo(1, 0, 1);
  moecomm_context_params_t p = mc_test_ctx_params(&t, MOECOMM_DEVICE_CPU);
  moecomm_context_t *ctx = NULL;
  MC_CHECK_RC(api, NULL, api->context_create(&p, &ctx), MOECOMM_SUCCESS);
  return ctx;
}

static void test_stale(void) {
  moecomm_context_t *a = world1(), *b;
  moecomm_group_t *ga = NULL, *gb = NULL;
  moecomm_context_info_t info;
  int32_t x[4] = {1, 2, 3, 4}, y[4] = {9, 9, 9, 9};
  if (a == NULL) return;
  MC_CHECK_RC(api, a, api->group_get(a, MOECOMM_GROUP_TP, &ga), MOECOMM_SUCCESS);
  MC_CHECK_RC(api, NULL, api->context_destroy(a), MOECOMM_SUCCESS);
  b = world1();
  if (b == NULL) return;
  MC_CHECK_RC(api, b, api->group_get(b, MOECOMM_GROUP_TP, &gb), MOECOMM_SUCCESS);
  memset(&info, 0, sizeof(info));
  info.struct_size = sizeof(info);
  MC_CHECK_RC(api, NULL, api->context_info(a, &info), MOECOMM_ERR_INVALID_ARGUMENT);
  MC_CHECK(info.device == 0 && info.abi_version == 0, "a stale handle wrote context_info");
  MC_CHECK_RC(api, NULL, api->all_reduce(ga, x, y, 4, MOECOMM_INT32, MOECOMM_SUM, NULL),
              MOECOMM_ERR_INVALID_ARGUMENT);
  MC_CHECK(y[0] == 9 && y[3] == 9, "a stale group handle acted on the new context");
  MC_CHECK_RC(api, NULL, api->context_destroy(a), MOECOMM_ERR_INVALID_ARGUMENT);
  MC_CHECK(strstr(api->last_error(NULL), "destroyed") != NULL, "stale handle message: %s",
           api->last_error(NULL));
  MC_CHECK(strstr(api->last_error(a), "not a live") != NULL, "last_error(stale): %s",
           api->last_error(a));
  /* forged handles */
  {
    void *heap = malloc(4096);
    memset(heap, 0, 4096);
    MC_CHECK_RC(api, NULL, api->context_info((moecomm_context_t *)heap, &info),
                MOECOMM_ERR_INVALID_ARGUMENT);
    MC_CHECK_RC(api, NULL, api->context_info((moecomm_context_t *)(uintptr_t)1, &info),
                MOECOMM_ERR_INVALID_ARGUMENT);
    MC_CHECK_RC(api, NULL, api->context_info((moecomm_context_t *)gb, &info),
                MOECOMM_ERR_INVALID_ARGUMENT);
    MC_CHECK_RC(api, NULL,
                api->all_reduce((moecomm_group_t *)b, x, y, 4, MOECOMM_INT32, MOECOMM_SUM, NULL),
                MOECOMM_ERR_INVALID_ARGUMENT);
    free(heap);
  }
  /* the new context is untouched and works */
  MC_CHECK_RC(api, b, api->all_reduce(gb, x, y, 4, MOECOMM_INT32, MOECOMM_SUM, NULL),
              MOECOMM_SUCCESS);
  MC_CHECK(y[0] == 1 && y[3] == 4, "the new context's all_reduce is wrong");
  MC_CHECK_RC(api, NULL, api->context_destroy(b), MOECOMM_SUCCESS);
}

/* ---- two threads on one context ---- */

#define N 4096
typedef struct second {
  moecomm_context_t *ctx;
  moecomm_group_t *g;
  int32_t *buf;
  moecomm_result_t r, r_stats;
  char msg[512];
} second_t;

static void *second_thread(void *arg) {
  second_t *s = arg;
  moecomm_group_stats_t st;
  usleep(200 * 1000); /* the first thread is inside its all-reduce by now (its peer is late) */
  s->r = api->all_reduce(s->g, s->buf, s->buf, N, MOECOMM_INT32, MOECOMM_SUM, NULL);
  snprintf(s->msg, sizeof(s->msg), "%s", api->last_error(NULL));
  memset(&st, 0, sizeof(st));
  st.struct_size = sizeof(st);
  s->r_stats = api->group_stats(s->g, &st);
  return NULL;
}

static int threads_rank(int rank, int world, void *arg) {
  moecomm_topology_t t = mc_test_topo(world, rank, world);
  moecomm_context_params_t p = mc_test_ctx_params(&t, MOECOMM_DEVICE_CPU);
  moecomm_context_t *ctx = NULL;
  moecomm_group_t *g = NULL;
  static int32_t mine[N], other[N];
  second_t s;
  pthread_t th;
  int bad = 0;
  (void)arg;
  if (!MC_CHECK_RC(api, NULL, api->context_create(&p, &ctx), MOECOMM_SUCCESS)) return 1;
  MC_CHECK_RC(api, ctx, api->group_get(ctx, MOECOMM_GROUP_TP, &g), MOECOMM_SUCCESS);
  for (int i = 0; i < N; i++) mine[i] = other[i] = (rank + 1) * (i + 1);
  if (rank == 1) {
    usleep(1000 * 1000); /* rank 0's first thread waits inside all_reduce meanwhile */
  } else {
    memset(&s, 0, sizeof(s));
    s.ctx = ctx;
    s.g = g;
    s.buf = other;
    if (!MC_CHECK(pthread_create(&th, NULL, second_thread, &s) == 0, "pthread_create")) return 1;
  }
  MC_CHECK_RC(api, ctx, api->all_reduce(g, mine, mine, N, MOECOMM_INT32, MOECOMM_SUM, NULL),
              MOECOMM_SUCCESS);
  for (int i = 0; i < N; i++) bad += mine[i] != 3 * (i + 1);
  MC_CHECK(bad == 0, "rank %d: %d elements wrong in the first thread's all-reduce", rank, bad);
  if (rank == 0) {
    pthread_join(th, NULL);
    MC_CHECK(s.r == MOECOMM_ERR_STATE && strstr(s.msg, "another thread") != NULL,
             "second thread's all_reduce: %d (%s), want MOECOMM_ERR_STATE", (int)s.r, s.msg);
    MC_CHECK(s.r_stats == MOECOMM_SUCCESS || s.r_stats == MOECOMM_ERR_STATE,
             "second thread's group_stats: %d", (int)s.r_stats);
    bad = 0;
    for (int i = 0; i < N; i++) bad += other[i] != (i + 1);
    MC_CHECK(bad == 0, "the refused call changed %d elements", bad);
  }
  /* both ranks still in step: one more all-reduce */
  for (int i = 0; i < N; i++) mine[i] = rank + 1;
  MC_CHECK_RC(api, ctx, api->all_reduce(g, mine, mine, N, MOECOMM_INT32, MOECOMM_SUM, NULL),
              MOECOMM_SUCCESS);
  MC_CHECK(mine[N - 1] == 3, "rank %d: the all-reduce after the refusal is wrong", rank);
  MC_CHECK_RC(api, NULL, api->context_destroy(ctx), MOECOMM_SUCCESS);
  return 0;
}

int main(int argc, char **argv) {
  mc_test_init("handles", argc, argv);
  api = mc_test_plugin();
  test_stale();
  MC_CHECK(mc_test_ranks(2, threads_rank, NULL, 60) == 0, "two threads on one context");
  return mc_test_finish();
}
