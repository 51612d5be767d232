/* SPDX-License-Identifier: Apache-2.0 */
/* shm_p2p.c - send/recv, all_to_all and all_to_all_v of the shm backend, through the ABI, on CPU
 * contexts of 2, 3, 4 and 8 forked ranks.
 *
 * Data and layouts: tests/common/p2p_cases.h (random bytes per (case, sender, receiver), poisoned
 * outputs, guard elements; send buffers must come back unchanged).
 *
 * all_to_all on WORLD: every dtype x per-peer counts 0 (a no-op that writes nothing), 1, 7, 4095
 * and 262147 (1 MiB of fp32 per peer: several uses of the segment's buffers, whose piece per peer
 * is at most 512 KiB), buffers offset by 0-2 elements.  all_to_all_v: every dtype x shapes zero,
 * uneven (shuffled blocks, gaps, zero counts) and large (some blocks of 200000+ elements).
 *
 * send/recv: every ordered pair in turn (every dtype, counts 0, 1, 7, 4095; 300007 elements,
 * larger than the 256 KiB ring, between a few pairs); rings both ways (even ranks send first, odd
 * ones receive first, so nothing can deadlock); a chain that forwards one message from the first
 * rank to the last; six messages of mixed sizes and dtypes issued in a row, then checked (FIFO),
 * by two pairs at once; a pipeline on the PP group: activations forward and gradients backward
 * through the stages for several micro-batches, each stage transforming them exactly.
 *
 * Bad input, in the same runs: send and recv that overlap -> MOECOMM_ERR_INVALID_ARGUMENT on every
 * rank, nothing written; all_to_all_v counts that disagree -> the same error on every rank, recv
 * unwritten, and the next call works; all_to_all counts that disagree (last: it breaks the comm)
 * -> the error on every rank.
 *
 * Failures, each in its own 2-rank run: count or dtype mismatch, both ranks sending to each
 * other, both receiving -> MOECOMM_ERR_INVALID_ARGUMENT on both sides at once (no timeout), recv
 * unwritten, the pair refused afterwards (MOECOMM_ERR_STATE) while collectives still work; a
 * receiver later than MOECOMM_TIMEOUT_MS (the pair set up before, and not) -> MOECOMM_ERR_TIMEOUT
 * on both, the late one at once; a rank killed while receiving or while sending -> the other
 * fails within half the timeout. */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../common/harness.h"
#include "../common/p2p_cases.h"

static const moecomm_api_t *api;
static moecomm_context_t *g_ctx; /* this rank's context */

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
}

/* Host buffers: the cases' buffer operations are plain memory. */
static void *host_alloc(size_t bytes) {
  return malloc(bytes);
}
static int host_copy(void *dst, const void *src, size_t bytes) {
  memcpy(dst, src, bytes);
  return 1;
}

static p2p_env_t env(void) {
  p2p_env_t e = {api, g_ctx, NULL, host_alloc, free, host_copy, host_copy};
  return e;
}

static moecomm_result_t create(int rank, int world, int tp, int pp) {
  moecomm_topology_t topo = mc_test_topo(world, rank, tp);
  moecomm_context_params_t p;
  moecomm_result_t r;
  topo.pp = pp;
  p = mc_test_ctx_params(&topo, MOECOMM_DEVICE_CPU);
  r = api->context_create(&p, &g_ctx);
  MC_CHECK(r == MOECOMM_SUCCESS, "rank %d: context_create: %d %s", rank, (int)r,
           api->last_error(NULL));
  return r;
}

/* all_to_all counts that disagree (member 0 one more): the error on every rank; the comm is
   unusable afterwards, as after any collective the ranks called differently. */
static int a2a_mismatch_case(const p2p_grp_t *gr) {
  int32_t send[64 * 5], recv[64 * 5];
  const size_t count = gr->me == 0 ? 5 : 4;
  moecomm_result_t r;
  memset(recv, P2P_POISON, sizeof(recv));
  mc_test_fill(send, sizeof(send) / 4, MOECOMM_INT32, 7);
  r = api->all_to_all(gr->g, send, recv, count, MOECOMM_INT32, NULL);
  return MC_CHECK_RC(api, g_ctx, r, MOECOMM_ERR_INVALID_ARGUMENT) &&
         MC_CHECK(strstr(api->last_error(g_ctx), "all_to_all of 5") != NULL,
                  "message names the calls: %s", api->last_error(g_ctx)) &&
         MC_CHECK(p2p_unpoisoned(recv, sizeof(recv)) == 0, "all_to_all mismatch wrote recv");
}

/* send and recv that overlap: refused on every rank before anything moves. */
static int a2a_overlap_case(const p2p_grp_t *gr) {
  const int n = gr->n;
  int32_t buf[3 * 2 * P2P_MAX_RANKS];
  size_t c[P2P_MAX_RANKS], d[P2P_MAX_RANKS];
  int ok;
  for (int p = 0; p < n; p++) {
    c[p] = 2;
    d[p] = 2 * (size_t)p;
  }
  memset(buf, P2P_POISON, sizeof(buf));
  ok = MC_CHECK_RC(api, g_ctx, api->all_to_all(gr->g, buf, buf + 1, 2, MOECOMM_INT32, NULL),
                   MOECOMM_ERR_INVALID_ARGUMENT);
  /* send blocks span elements [0, 2n), recv blocks [n, 3n) of the same buffer */
  ok &= MC_CHECK_RC(api, g_ctx,
                    api->all_to_all_v(gr->g, buf, c, d, buf + n, c, d, MOECOMM_INT32, NULL),
                    MOECOMM_ERR_INVALID_ARGUMENT);
  ok &= MC_CHECK(strstr(api->last_error(g_ctx), "overlap") != NULL, "message: %s",
                 api->last_error(g_ctx));
  return ok && MC_CHECK(p2p_unpoisoned(buf, sizeof(buf)) == 0, "overlap: the buffer was written");
}

/* ---- one rank of the main run ---- */

static int rank_main(int rank, int world, void *arg) {
  const int pp = world >= 4 ? 4 : world;
  p2p_env_t e;
  p2p_grp_t wg;
  uint64_t id = (uint64_t)world * 1000000u;
  int failed = 0;
  double t0 = now_ms(), t1, t2;
  (void)arg;
  if (create(rank, world, world / pp, pp) != MOECOMM_SUCCESS) return 1;
  e = env();
  if (!p2p_group(&e, MOECOMM_GROUP_WORLD, &wg)) return 1;
  failed += !a2a_overlap_case(&wg);
  failed += p2p_a2a_cases(&e, &wg, &id, 1);
  t1 = now_ms();
  failed += p2p_pair_cases(&e, &wg, &id);
  failed += p2p_ring_cases(&e, &wg, &id);
  failed += !p2p_chain_case(&e, &wg, id++, 100003);
  failed += p2p_fifo_case(&e, &wg, id++, 0, 1);
  if (world >= 4) failed += p2p_fifo_case(&e, &wg, id, 3, 2); /* a second pair at the same time */
  id++;
  failed += p2p_pipeline_case(&e, id++);
  t2 = now_ms();
  failed += !a2a_mismatch_case(&wg);
  if (rank == 0)
    printf("world %d: all-to-alls %.0f ms, send/recv %.0f ms\n", world, t1 - t0, t2 - t1);
  MC_CHECK_RC(api, g_ctx, api->context_destroy(g_ctx), MOECOMM_SUCCESS);
  return failed != 0;
}

/* ---- failures (2 ranks, a context each) ---- */

enum { BAD_COUNT, BAD_DTYPE, BAD_BOTH_SEND, BAD_BOTH_RECV, BAD_KINDS };
static const char *const k_bad_names[] = {"count mismatch", "dtype mismatch", "both ranks send",
                                          "both ranks receive"};
static const char *const k_bad_words[][2] = {{"expected", "expected"},
                                             {"expected", "expected"},
                                             {"both sending", "both sending"},
                                             {"both waiting to receive", "both waiting"}};

static int mismatch_rank(int rank, int world, void *arg) {
  const int kind = *(const int *)arg, peer = 1 - rank;
  p2p_grp_t wg;
  float buf[16];
  moecomm_result_t r;
  double t0;
  p2p_env_t e;
  if (create(rank, world, world, 1) != MOECOMM_SUCCESS) return 1;
  e = env();
  if (!p2p_group(&e, MOECOMM_GROUP_WORLD, &wg)) return 1;
  p2p_one(&e, &wg, 1, 0, 1, MOECOMM_FLOAT32, 16, 0); /* the pair exists and works */
  memset(buf, P2P_POISON, sizeof(buf));
  t0 = now_ms();
  if (kind == BAD_BOTH_SEND || (kind != BAD_BOTH_RECV && rank == 0))
    r = api->send(wg.g, buf, 10, MOECOMM_FLOAT32, peer, NULL);
  else
    r = api->recv(wg.g, buf, kind == BAD_COUNT ? 12 : 10,
                  kind == BAD_DTYPE ? MOECOMM_INT32 : MOECOMM_FLOAT32, peer, NULL);
  MC_CHECK_RC(api, g_ctx, r, MOECOMM_ERR_INVALID_ARGUMENT);
  MC_CHECK(strstr(api->last_error(g_ctx), k_bad_words[kind][rank]) != NULL,
           "%s, rank %d: message '%s'", k_bad_names[kind], rank, api->last_error(g_ctx));
  MC_CHECK(now_ms() - t0 < 5000.0, "%s, rank %d: found after %.0f ms (found, not timed out?)",
           k_bad_names[kind], rank, now_ms() - t0);
  if (rank == 1 && kind != BAD_BOTH_SEND)
    MC_CHECK(p2p_unpoisoned(buf, sizeof(buf)) == 0, "%s: recv written", k_bad_names[kind]);
  /* the pair is refused from now on, at once; the communicator's collectives still work */
  r = rank == 0 ? api->send(wg.g, buf, 1, MOECOMM_FLOAT32, 1, NULL)
                : api->recv(wg.g, buf, 1, MOECOMM_FLOAT32, 0, NULL);
  MC_CHECK_RC(api, g_ctx, r, MOECOMM_ERR_STATE);
  int32_t x[100], y[100];
  for (int i = 0; i < 100; i++) x[i] = i * (rank + 1);
  MC_CHECK_RC(api, g_ctx, api->all_reduce(wg.g, x, y, 100, MOECOMM_INT32, MOECOMM_SUM, NULL),
              MOECOMM_SUCCESS);
  MC_CHECK(y[7] == 21 && y[99] == 297, "all_reduce after the broken pair: %d %d", y[7], y[99]);
  MC_CHECK_RC(api, g_ctx, api->context_destroy(g_ctx), MOECOMM_SUCCESS);
  return 0;
}

/* One rank later than the timeout: the other fails with TIMEOUT naming it after the timeout;
   the late one, when it comes, at once with the same code (the reason is left in the pair's
   segment).  The other stays alive meanwhile.  early: the pair exists already; else the late
   rank's call is its first with the other (the communicator exists: an all_reduce made it). */
static int late_rank(int rank, int world, void *arg) {
  const int early = *(const int *)arg, late = early ? 1 : 0;
  p2p_grp_t wg;
  float buf[64];
  moecomm_result_t r;
  double t0, dt;
  p2p_env_t e;
  if (create(rank, world, world, 1) != MOECOMM_SUCCESS) return 1;
  e = env();
  if (!p2p_group(&e, MOECOMM_GROUP_WORLD, &wg)) return 1;
  mc_test_fill(buf, 64, MOECOMM_FLOAT32, 3);
  if (early) p2p_one(&e, &wg, 2, 1, 0, MOECOMM_FLOAT32, 64, 0);
  MC_CHECK_RC(api, g_ctx, api->all_reduce(wg.g, buf, buf, 64, MOECOMM_FLOAT32, MOECOMM_SUM, NULL),
              MOECOMM_SUCCESS);
  if (rank == late) usleep(2000 * 1000);
  mc_test_fill(buf, 64, MOECOMM_FLOAT32, 3);
  t0 = now_ms();
  r = rank == 0 ? api->send(wg.g, buf, 64, MOECOMM_FLOAT32, 1, NULL)
                : api->recv(wg.g, buf, 64, MOECOMM_FLOAT32, 0, NULL);
  dt = now_ms() - t0;
  MC_CHECK_RC(api, g_ctx, r, MOECOMM_ERR_TIMEOUT);
  MC_CHECK(rank == late ? dt < 500.0 : dt > 900.0 && dt < 1900.0,
           "late peer (%s), rank %d: failed after %.0f ms with MOECOMM_TIMEOUT_MS=1000: %s",
           early ? "pair set up" : "first call", rank, dt, api->last_error(g_ctx));
  MC_CHECK(strstr(api->last_error(g_ctx), "MOECOMM_TIMEOUT_MS") != NULL, "rank %d: message '%s'",
           rank, api->last_error(g_ctx));
  if (rank != late) usleep(2000 * 1000); /* until the late rank has made its call */
  MC_CHECK_RC(api, g_ctx, api->context_destroy(g_ctx), MOECOMM_SUCCESS);
  return 0;
}

static void *killer(void *arg) {
  (void)arg;
  usleep(3000);
  kill(getpid(), SIGKILL);
  return NULL;
}

/* Rank 1 dies during a stream of 1 MiB messages; rank 0 (sending or receiving) must fail
   within half the timeout, and fail fast after. */
static int killed_rank(int rank, int world, void *arg) {
  const int survivor_sends = *(const int *)arg;
  const size_t n = 1u << 18;
  p2p_grp_t wg;
  float *buf = malloc(n * 4);
  moecomm_result_t r = MOECOMM_SUCCESS;
  double t0 = 0, dt;
  int i;
  if (!MC_CHECK(buf != NULL, "out of memory") || create(rank, world, world, 1) != MOECOMM_SUCCESS ||
      !MC_CHECK_RC(api, g_ctx, api->group_get(g_ctx, MOECOMM_GROUP_WORLD, &wg.g), MOECOMM_SUCCESS))
    return 1;
  mc_test_fill(buf, n, MOECOMM_FLOAT32, 5);
  for (i = 0; i < 100000 && r == MOECOMM_SUCCESS; i++) {
    pthread_t t;
    if (rank == 1 && i == 10) {
      mc_test_rank_expect_death();
      if (pthread_create(&t, NULL, killer, NULL) != 0) kill(getpid(), SIGKILL);
    }
    t0 = now_ms();
    r = (rank == 0) == survivor_sends ? api->send(wg.g, buf, n, MOECOMM_FLOAT32, 1 - rank, NULL)
                                      : api->recv(wg.g, buf, n, MOECOMM_FLOAT32, 1 - rank, NULL);
  }
  dt = now_ms() - t0;
  if (!MC_CHECK(rank == 0, "the victim survived %d messages", i)) return 1;
  MC_CHECK(r == MOECOMM_ERR_PEER || r == MOECOMM_ERR_TIMEOUT,
           "rank 0 (%s) after rank 1 died: %d %s", survivor_sends ? "sending" : "receiving", (int)r,
           api->last_error(g_ctx));
  MC_CHECK(dt < 4000.0, "the failing call took %.0f ms (MOECOMM_TIMEOUT_MS=8000)", dt);
  printf("killed peer, rank 0 %s: failed after %d messages in %.0f ms: %s\n",
         survivor_sends ? "sending" : "receiving", i, dt, api->last_error(g_ctx));
  t0 = now_ms();
  r = api->send(wg.g, buf, 1, MOECOMM_FLOAT32, 1, NULL);
  MC_CHECK(r != MOECOMM_SUCCESS && now_ms() - t0 < 1000.0, "the next call: %d after %.0f ms",
           (int)r, now_ms() - t0);
  t0 = now_ms();
  MC_CHECK(api->context_destroy(g_ctx) == MOECOMM_SUCCESS && now_ms() - t0 < 2000.0,
           "context_destroy after a dead peer");
  free(buf);
  return 0;
}

static void failure_cases(void) {
  setenv("MOECOMM_TIMEOUT_MS", "20000", 1);
  for (int kind = 0; kind < BAD_KINDS; kind++)
    MC_CHECK(mc_test_ranks(2, mismatch_rank, &kind, 60) == 0, "%s", k_bad_names[kind]);
  setenv("MOECOMM_TIMEOUT_MS", "1000", 1);
  for (int early = 1; early >= 0; early--)
    MC_CHECK(mc_test_ranks(2, late_rank, &early, 60) == 0, "late receiver (%s)",
             early ? "pair set up" : "first call");
  setenv("MOECOMM_TIMEOUT_MS", "8000", 1);
  printf("(launcher lines about rank 1 killed by signal 9 are expected)\n");
  for (int sends = 1; sends >= 0; sends--)
    MC_CHECK(mc_test_ranks(2, killed_rank, &sends, 60) == 0, "a rank killed while %s",
             sends ? "receiving" : "sending");
}

int main(int argc, char **argv) {
  static const int worlds[] = {2, 3, 4, 8};
  mc_test_init("shm_p2p", argc, argv);
  api = mc_test_plugin();
  if (!MC_CHECK(api->send != NULL && api->all_to_all_v != NULL, "the plugin has the 1.2 slots"))
    return mc_test_finish();
  setenv("MOECOMM_TIMEOUT_MS", "30000", 1); /* a hang becomes an error, before the launcher's */
  for (size_t i = 0; i < sizeof(worlds) / sizeof(worlds[0]); i++) {
    double t0 = now_ms();
    MC_CHECK(mc_test_ranks(worlds[i], rank_main, NULL, 120) == 0, "world %d", worlds[i]);
    printf("world %d done in %.0f ms\n", worlds[i], now_ms() - t0);
  }
  failure_cases();
  return mc_test_finish();
}
