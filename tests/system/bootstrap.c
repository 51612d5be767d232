/* SPDX-License-Identifier: Apache-2.0 */
/* bootstrap.c - how ranks find each other and what happens when some do not.
 *
 *  - MOECOMM_STORE=tcp://127.0.0.1:PORT with host_allgather NULL, ranks started staggered with
 *    rank 0 (the store's server) last;
 *  - a rank that never starts: the others fail with MOECOMM_ERR_TIMEOUT within MOECOMM_TIMEOUT_MS
 *    and the message names it (the last rank, and rank 0);
 *  - two contexts in one process (host all-gather, and both through one MOECOMM_STORE);
 *  - a peer SIGKILLed in the middle of collectives: the survivors fail promptly, no hang;
 *  - a run SIGKILLed as a whole, then a new run of the same shape works and /dev/shm keeps no
 *    moecomm-* entry;
 *  - rank 0 destroying its context right after a world exchange (and so stopping the store)
 *    does not make the others' side of that exchange fail;
 *  - 4 ranks on this machine run 2000 small all-reduces quickly (catches busy-wait starvation). */
#include <ctype.h>
#include <dirent.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "../common/harness.h"

static const moecomm_api_t *api;

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
}

static void use_fresh_store(void) {
  char url[64];
  snprintf(url, sizeof(url), "tcp://127.0.0.1:%d", mc_test_free_port());
  setenv("MOECOMM_STORE", url, 1);
}

/* 1 when msg has "rank"/"ranks" followed by a list that contains r ("ranks 2", "rank(s) 1,2",
   "rank 2 (pid 123)"). */
static int names_rank(const char *msg, int r) {
  for (const char *p = strstr(msg, "rank"); p != NULL; p = strstr(p + 1, "rank")) {
    const char *q = p + 4;
    while (*q == 's' || *q == '(' || *q == ')' || *q == ' ' || *q == ':' || *q == '[') q++;
    while (isdigit((unsigned char)*q)) {
      char *end;
      long v = strtol(q, &end, 10);
      if (v == r) return 1;
      q = end;
      while (*q == ',' || *q == ' ' || *q == '-') q++;
    }
  }
  return 0;
}

static moecomm_result_t create_ctx(int rank, int world, int tp, int via_store,
                                   moecomm_context_t **ctx_p) {
  moecomm_topology_t topo = mc_test_topo(world, rank, tp);
  moecomm_context_params_t p = mc_test_ctx_params(&topo, MOECOMM_DEVICE_CPU);
  if (via_store) {
    p.host_allgather = NULL;
    p.host_user = NULL;
  }
  return api->context_create(&p, ctx_p);
}

/* All-reduce (sum, int32) of rank-dependent data on `kind`, checked exactly. */
static int check_all_reduce(moecomm_context_t *ctx, moecomm_group_kind_t kind, int salt, size_t n) {
  moecomm_group_t *g = NULL;
  moecomm_group_stats_t st;
  int32_t *x = malloc(n * 4), *y = malloc(n * 4);
  size_t bad = 0;
  moecomm_result_t r = api->group_get(ctx, kind, &g);
  memset(&st, 0, sizeof(st));
  st.struct_size = sizeof(st);
  if (r == MOECOMM_SUCCESS) r = api->group_stats(g, &st);
  if (!MC_CHECK(r == MOECOMM_SUCCESS && x && y, "group %d: %d %s", (int)kind, (int)r,
                api->last_error(ctx))) {
    free(x);
    free(y);
    return 0;
  }
  for (size_t i = 0; i < n; i++) {
    x[i] = (int32_t)((st.ranks[st.rank] + 1) * 1000 + (int)(i % 97) + salt);
    y[i] = 0x7f7f7f7f;
  }
  r = api->all_reduce(g, x, y, n, MOECOMM_INT32, MOECOMM_SUM, NULL);
  if (!MC_CHECK(r == MOECOMM_SUCCESS, "all_reduce on %s: %d (%s) %s", st.kind_name, (int)r,
                api->result_string(r), api->last_error(ctx))) {
    free(x);
    free(y);
    return 0;
  }
  for (size_t i = 0; i < n; i++) {
    int64_t want = 0;
    for (int p = 0; p < st.size; p++) want += (st.ranks[p] + 1) * 1000 + (int)(i % 97) + salt;
    bad += y[i] != (int32_t)want;
  }
  free(x);
  free(y);
  return MC_CHECK(bad == 0, "all_reduce on %s: %zu of %zu wrong", st.kind_name, bad, n);
}

/* ---- MOECOMM_STORE bootstrap, staggered start ---- */

static int store_rank(int rank, int world, void *arg) {
  moecomm_context_t *ctx = NULL;
  moecomm_context_info_t info;
  moecomm_group_t *g = NULL;
  moecomm_result_t r;
  int32_t mine, all[16];
  (void)arg;
  usleep((useconds_t)(world - 1 - rank) * 150000u); /* rank 0, the server, starts last */
  r = create_ctx(rank, world, world, 1, &ctx);
  if (!MC_CHECK(r == MOECOMM_SUCCESS, "rank %d: context_create through MOECOMM_STORE=%s: %d %s",
                rank, getenv("MOECOMM_STORE"), (int)r, api->last_error(NULL)))
    return 1;
  memset(&info, 0, sizeof(info));
  info.struct_size = sizeof(info);
  r = api->context_info(ctx, &info);
  MC_CHECK(r == MOECOMM_SUCCESS && info.device == MOECOMM_DEVICE_CPU && info.local_size == world &&
               info.num_hosts == 1 && info.local_rank >= 0 && info.local_rank < world,
           "context_info: %d device %d local %d/%d hosts %d", (int)r, info.device, info.local_rank,
           info.local_size, info.num_hosts);
  check_all_reduce(ctx, MOECOMM_GROUP_WORLD, 5, 1000);
  /* local ranks are a permutation of 0..world-1 */
  mine = info.local_rank;
  r = api->group_get(ctx, MOECOMM_GROUP_WORLD, &g);
  if (r == MOECOMM_SUCCESS) r = api->all_gather(g, &mine, all, 1, MOECOMM_INT32, NULL);
  if (MC_CHECK(r == MOECOMM_SUCCESS, "all_gather: %d %s", (int)r, api->last_error(ctx))) {
    int seen = 0;
    for (int p = 0; p < world; p++)
      if (all[p] >= 0 && all[p] < world) seen |= 1 << all[p];
    MC_CHECK(seen == (1 << world) - 1, "local ranks are not a permutation of 0..%d", world - 1);
  }
  MC_CHECK(api->context_destroy(ctx) == MOECOMM_SUCCESS, "context_destroy");
  return 0;
}

static void test_store_bootstrap(void) {
  use_fresh_store();
  setenv("MOECOMM_TIMEOUT_MS", "20000", 1);
  MC_CHECK(mc_test_ranks(4, store_rank, NULL, 60) == 0, "MOECOMM_STORE bootstrap, 4 ranks");
}

/* ---- a rank that never starts ---- */

typedef struct missing_arg {
  int missing; /* this rank never calls context_create */
  int timeout_ms;
} missing_arg_t;

static int missing_rank(int rank, int world, void *arg) {
  const missing_arg_t *m = arg;
  moecomm_context_t *ctx = (moecomm_context_t *)&ctx;
  moecomm_context_t *const poison = ctx;
  moecomm_result_t r;
  double t0, dt;
  const char *msg;
  if (rank == m->missing) return 0;
  t0 = now_ms();
  r = create_ctx(rank, world, world, 1, &ctx);
  dt = now_ms() - t0;
  msg = api->last_error(NULL);
  MC_CHECK(r == MOECOMM_ERR_TIMEOUT, "rank %d without rank %d: got %d (%s), want TIMEOUT: %s", rank,
           m->missing, (int)r, api->result_string(r), msg);
  MC_CHECK(ctx == poison, "ctx_p written on failure");
  /* the deadline, plus the store's grace and scheduling on a loaded 2-core machine */
  MC_CHECK(dt <= m->timeout_ms + 2500.0, "rank %d waited %.0f ms with MOECOMM_TIMEOUT_MS=%d", rank,
           dt, m->timeout_ms);
  if (m->missing == 0)
    MC_CHECK(names_rank(msg, 0) || strstr(msg, "127.0.0.1") != NULL,
             "the message names rank 0 or the store's address: %s", msg);
  else
    MC_CHECK(names_rank(msg, m->missing), "the message names the missing rank %d: %s", m->missing,
             msg);
  if (rank == (m->missing == 0 ? 1 : 0))
    printf("missing rank %d: failed after %.0f ms: %s\n", m->missing, dt, msg);
  if (r == MOECOMM_SUCCESS) api->context_destroy(ctx);
  return 0;
}

static void test_missing_rank(void) {
  missing_arg_t m = {2, 1500};
  setenv("MOECOMM_TIMEOUT_MS", "1500", 1);
  use_fresh_store();
  MC_CHECK(mc_test_ranks(3, missing_rank, &m, 30) == 0, "world of 3 without rank 2");
  m.missing = 0;
  use_fresh_store();
  MC_CHECK(mc_test_ranks(3, missing_rank, &m, 30) == 0, "world of 3 without rank 0");
}

/* ---- two contexts in one process ---- */

static int two_contexts(int rank, int world, void *arg) {
  int via_store = *(const int *)arg;
  moecomm_context_t *a = NULL, *b = NULL;
  moecomm_result_t r;
  r = create_ctx(rank, world, world, via_store, &a);
  if (!MC_CHECK(r == MOECOMM_SUCCESS, "first context: %d %s", (int)r, api->last_error(NULL)))
    return 1;
  r = create_ctx(rank, world, world / 2, via_store, &b); /* another shape: tp = world/2 */
  if (!MC_CHECK(r == MOECOMM_SUCCESS, "second context: %d %s", (int)r, api->last_error(NULL))) {
    api->context_destroy(a);
    return 1;
  }
  for (int i = 0; i < 5; i++) {
    check_all_reduce(a, MOECOMM_GROUP_TP, i, 333);
    check_all_reduce(b, MOECOMM_GROUP_TP, 100 + i, 777);
    check_all_reduce(b, MOECOMM_GROUP_WORLD, 200 + i, 5);
  }
  MC_CHECK(api->context_destroy(a) == MOECOMM_SUCCESS, "destroy the first context");
  /* the second one does not depend on the first */
  check_all_reduce(b, MOECOMM_GROUP_WORLD, 300, 4096);
  check_all_reduce(b, MOECOMM_GROUP_TP, 301, 4096);
  MC_CHECK(api->context_destroy(b) == MOECOMM_SUCCESS, "destroy the second context");
  return 0;
}

static void test_two_contexts(void) {
  int via_store = 0;
  setenv("MOECOMM_TIMEOUT_MS", "20000", 1);
  MC_CHECK(mc_test_ranks(4, two_contexts, &via_store, 60) == 0,
           "two contexts per process, host all-gather");
  via_store = 1;
  use_fresh_store();
  MC_CHECK(mc_test_ranks(4, two_contexts, &via_store, 60) == 0,
           "two contexts per process, one MOECOMM_STORE");
}

/* ---- a peer killed in the middle of collectives ---- */

#define KILL_TIMEOUT_MS 8000

static void *killer(void *arg) {
  (void)arg;
  usleep(3000); /* the main thread is inside a collective by now, most likely */
  kill(getpid(), SIGKILL);
  return NULL;
}

static int killed_peer(int rank, int world, void *arg) {
  moecomm_context_t *ctx = NULL;
  moecomm_group_t *g = NULL;
  size_t n = 1u << 18;
  float *x = malloc(n * 4), *y = malloc(n * 4);
  moecomm_result_t r;
  double t0 = 0, dt;
  int i;
  (void)arg;
  r = create_ctx(rank, world, world, 0, &ctx);
  if (!MC_CHECK(r == MOECOMM_SUCCESS && x && y, "context_create: %d %s", (int)r,
                api->last_error(NULL)))
    return 1;
  r = api->group_get(ctx, MOECOMM_GROUP_WORLD, &g);
  for (size_t j = 0; j < n; j++) x[j] = (float)(rank + 1);
  for (i = 0; i < 2000 && r == MOECOMM_SUCCESS; i++) {
    if (rank == world - 1 && i == 10) {
      pthread_t t;
      mc_test_rank_expect_death();
      if (pthread_create(&t, NULL, killer, NULL) != 0) kill(getpid(), SIGKILL);
    }
    t0 = now_ms();
    r = api->all_reduce(g, x, y, n, MOECOMM_FLOAT32, MOECOMM_SUM, NULL);
  }
  dt = now_ms() - t0;
  if (rank == world - 1) { /* should have died */
    MC_CHECK(0, "the victim rank survived %d collectives", i);
    return 1;
  }
  MC_CHECK(r == MOECOMM_ERR_PEER || r == MOECOMM_ERR_TIMEOUT,
           "rank %d after its peer was killed: got %d (%s): %s", rank, (int)r,
           api->result_string(r), api->last_error(ctx));
  MC_CHECK(dt < KILL_TIMEOUT_MS / 2, "rank %d: the failing call took %.0f ms (timeout %d ms)", rank,
           dt, KILL_TIMEOUT_MS);
  if (rank == 0)
    printf("killed peer: rank 0 failed after %d calls, the failing call took %.0f ms: %s\n", i, dt,
           api->last_error(ctx));
  /* the communicator is broken now: later calls fail fast too */
  t0 = now_ms();
  r = api->all_reduce(g, x, y, n, MOECOMM_FLOAT32, MOECOMM_SUM, NULL);
  dt = now_ms() - t0;
  MC_CHECK(r != MOECOMM_SUCCESS && dt < 1500.0, "the next call: %d (%s) after %.0f ms", (int)r,
           api->result_string(r), dt);
  t0 = now_ms();
  MC_CHECK(api->context_destroy(ctx) == MOECOMM_SUCCESS && now_ms() - t0 < 2000.0,
           "context_destroy after a dead peer");
  free(x);
  free(y);
  return 0;
}

static void test_killed_peer(void) {
  char t[32];
  snprintf(t, sizeof(t), "%d", KILL_TIMEOUT_MS);
  setenv("MOECOMM_TIMEOUT_MS", t, 1);
  printf("(a launcher line about rank 2 killed by signal 9 is expected)\n");
  MC_CHECK(mc_test_ranks(3, killed_peer, NULL, 60) == 0, "a peer killed during collectives");
}

/* ---- a whole run killed, then a new one ----
   /dev/shm is shared with every other moecomm user of this machine (other test binaries, other
   builds' runs): only the segments these two runs' ranks created are ours to count. */

#define KILLED_RUN_WORLD 4
/* 2 * KILLED_RUN_WORLD pids, MAP_SHARED: the doomed run's ranks, then the fresh run's. */
static pid_t *g_run_pids;

static int doomed_run(int rank, int world, void *arg) {
  moecomm_context_t *ctx = NULL;
  moecomm_group_t *g = NULL;
  double t0 = now_ms();
  size_t n = 1u << 16;
  float *x = calloc(n, sizeof(float)), *y = calloc(n, sizeof(float));
  (void)arg;
  g_run_pids[rank] = getpid();
  mc_test_rank_expect_death(); /* the launcher kills every rank after its timeout */
  if (x == NULL || y == NULL || create_ctx(rank, world, world, 0, &ctx) != MOECOMM_SUCCESS)
    return 0;
  /* Unchecked: how many calls fit before the kill depends on timing, the check count must not. */
  if (api->group_get(ctx, MOECOMM_GROUP_WORLD, &g) != MOECOMM_SUCCESS) return 0;
  while (now_ms() - t0 < 20000.0) api->all_reduce(g, x, y, n, MOECOMM_FLOAT32, MOECOMM_SUM, NULL);
  return 0;
}

static int fresh_run(int rank, int world, void *arg) {
  moecomm_context_t *ctx = NULL;
  moecomm_result_t r;
  (void)arg;
  g_run_pids[KILLED_RUN_WORLD + rank] = getpid();
  r = create_ctx(rank, world, world, 0, &ctx);
  if (!MC_CHECK(r == MOECOMM_SUCCESS, "context_create after a killed run: %d %s", (int)r,
                api->last_error(NULL)))
    return 1;
  for (int i = 0; i < 10; i++) check_all_reduce(ctx, MOECOMM_GROUP_WORLD, i, 1u << 16);
  api->context_destroy(ctx);
  return 0;
}

/* Entries "moecomm-<pid namespace>-<creator pid>-..." in /dev/shm created by the two runs. */
static int count_our_shm_entries(void) {
  DIR *d = opendir("/dev/shm");
  struct dirent *e;
  int n = 0;
  if (d == NULL) return 0;
  while ((e = readdir(d)) != NULL) {
    unsigned long long ns;
    long pid;
    if (strncmp(e->d_name, "moecomm-", 8) != 0 ||
        sscanf(e->d_name + 8, "%llu-%ld-", &ns, &pid) != 2)
      continue;
    for (int i = 0; i < 2 * KILLED_RUN_WORLD; i++)
      if (g_run_pids[i] == (pid_t)pid) {
        printf("left in /dev/shm: %s (created by pid %ld, a rank of this test)\n", e->d_name, pid);
        n++;
      }
  }
  closedir(d);
  return n;
}

static void test_killed_run(void) {
  g_run_pids = mmap(NULL, 2 * KILLED_RUN_WORLD * sizeof(pid_t), PROT_READ | PROT_WRITE,
                    MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (!MC_CHECK(g_run_pids != MAP_FAILED, "mmap of the ranks' pids")) return;
  memset(g_run_pids, 0, 2 * KILLED_RUN_WORLD * sizeof(pid_t));
  setenv("MOECOMM_TIMEOUT_MS", "20000", 1);
  printf("(launcher lines about 4 ranks killed after 2 s are expected)\n");
  mc_test_ranks(KILLED_RUN_WORLD, doomed_run, NULL, 2);
  MC_CHECK(mc_test_ranks(KILLED_RUN_WORLD, fresh_run, NULL, 60) == 0, "a run after a killed one");
  MC_CHECK(count_our_shm_entries() == 0, "/dev/shm holds segments of the killed or the new run");
  munmap(g_run_pids, 2 * KILLED_RUN_WORLD * sizeof(pid_t));
}

/* ---- rank 0 leaves right after a world exchange ----
   context_destroy is local, and rank 0's destroy stops the store; the other ranks may still be
   reading the last exchange's keys from it (context_create's bootstrap, capture_end's agreement).
   They must not fail because rank 0 was quicker. */

static int leave_early(int rank, int world, void *arg) {
  (void)arg;
  for (int i = 0; i < 10; i++) {
    moecomm_context_t *ctx = NULL;
    moecomm_result_t r = create_ctx(rank, world, world, 0, &ctx);
    if (!MC_CHECK(r == MOECOMM_SUCCESS, "round %d: context_create: %d %s", i, (int)r,
                  api->last_error(NULL)))
      return 1;
    r = api->capture_begin(ctx, NULL);
    if (r == MOECOMM_SUCCESS) r = api->capture_end(ctx, NULL);
    MC_CHECK(r == MOECOMM_SUCCESS,
             "round %d: empty capture scope, then rank 0 destroys at once: "
             "%d (%s) %s",
             i, (int)r, api->result_string(r), api->last_error(ctx));
    api->context_destroy(ctx); /* and go on: leaving would fail the others' next round */
  }
  return 0;
}

/* ---- many small all-reduces ---- */

static int many_small(int rank, int world, void *arg) {
  moecomm_context_t *ctx = NULL;
  moecomm_group_t *g = NULL;
  moecomm_result_t r;
  float x[16] = {0}, y[16];
  double t0, dt;
  int i, bad = 0;
  (void)arg;
  r = create_ctx(rank, world, world, 0, &ctx);
  if (!MC_CHECK(r == MOECOMM_SUCCESS, "context_create: %d %s", (int)r, api->last_error(NULL)))
    return 1;
  r = api->group_get(ctx, MOECOMM_GROUP_WORLD, &g);
  /* first call creates the communicator: not timed */
  if (r == MOECOMM_SUCCESS) r = api->all_reduce(g, x, y, 16, MOECOMM_FLOAT32, MOECOMM_SUM, NULL);
  t0 = now_ms();
  for (i = 0; i < 2000 && r == MOECOMM_SUCCESS; i++) {
    for (int j = 0; j < 16; j++) {
      x[j] = (float)(rank + i + j);
      y[j] = -1.0f;
    }
    r = api->all_reduce(g, x, y, 16, MOECOMM_FLOAT32, MOECOMM_SUM, NULL);
    for (int j = 0; j < 16 && r == MOECOMM_SUCCESS; j++)
      bad += y[j] != (float)(world * (i + j) + world * (world - 1) / 2);
  }
  dt = now_ms() - t0;
  MC_CHECK(r == MOECOMM_SUCCESS && bad == 0, "2000 all-reduces: %d (%s) %s, %d wrong", (int)r,
           api->result_string(r), api->last_error(ctx), bad);
  MC_CHECK(dt < 30000.0, "2000 small all-reduces on %d ranks took %.0f ms", world, dt);
  if (rank == 0)
    printf("2000 all-reduces of 16 floats on %d ranks: %.0f ms (%.1f us each)\n", world, dt,
           dt * 1000.0 / 2000.0);
  api->context_destroy(ctx);
  return 0;
}

int main(int argc, char **argv) {
  mc_test_init("bootstrap", argc, argv);
  api = mc_test_plugin();
  unsetenv("MOECOMM_STORE");
  test_store_bootstrap();
  unsetenv("MOECOMM_STORE");
  test_missing_rank();
  unsetenv("MOECOMM_STORE");
  test_two_contexts();
  unsetenv("MOECOMM_STORE");
  test_killed_peer();
  test_killed_run();
  setenv("MOECOMM_TIMEOUT_MS", "20000", 1);
  MC_CHECK(mc_test_ranks(4, leave_early, NULL, 60) == 0,
           "10 rounds of create, capture_begin/end, destroy on 4 ranks");
  MC_CHECK(mc_test_ranks(4, many_small, NULL, 60) == 0, "2000 small all-reduces");
  return mc_test_finish();
}
