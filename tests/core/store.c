/* SPDX-License-Identifier: Apache-2.0 */
/* store.c - white-box test of the TCP rendezvous store (plugin/store_{wire,server,client}.c).
 *
 * Values are random bytes compared exactly; receive buffers are poisoned before every get so a get
 * that writes nothing (or too much) is caught.  Threads never call MC_CHECK (the harness counts are
 * not thread-safe): they record what happened and the main thread checks it after joining. */
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../../plugin/store_wire.h"
#include "store_test.h"

#define NCLIENTS 64
#define ROUNDS 3
#define MIB ((size_t)1 << 20)

static mc_store_t *connect_to(int port) {
  return st_connect(port, "test", -1);
}

/* ---- a get running in its own thread
   ---------------------------------------------------------- */

typedef struct getter {
  mc_store_t *s;
  const char *key;
  int64_t deadline;
  moecomm_result_t r;
  size_t len;
  unsigned char buf[256];
  int64_t done_ms;
  mc_err_t err;
  pthread_t th;
} getter_t;

static void *getter_main(void *arg) {
  getter_t *g = arg;
  memset(g->buf, POISON, sizeof(g->buf));
  g->len = (size_t)-1;
  g->r = mc_store_get(g->s, g->key, -1, g->buf, sizeof(g->buf), &g->len, g->deadline, &g->err);
  g->done_ms = mc_now_ms();
  return NULL;
}

static void getter_start(getter_t *g, mc_store_t *s, const char *key, int64_t deadline) {
  memset(g, 0, sizeof(*g));
  g->s = s;
  g->key = key;
  g->deadline = deadline;
  int e = pthread_create(&g->th, NULL, getter_main, g);
  MC_CHECK(e == 0, "pthread_create: %s", strerror(e));
}

/* ---- cases
   ------------------------------------------------------------------------------------- */

static void test_set_get(int port) {
  mc_store_t *a = connect_to(port), *b = connect_to(port);
  if (a == NULL || b == NULL) goto out;
  mc_err_t err;
  unsigned char val[1000], got[1200];
  size_t len = 12345;
  fill_bytes(val, sizeof(val), 1);
  MC_CHECK(mc_store_set(a, "basic/k1", val, sizeof(val), 0, 0, &err) == MOECOMM_SUCCESS, "%s",
           err.msg);

  memset(got, POISON, sizeof(got));
  moecomm_result_t r =
      mc_store_get(b, "basic/k1", -1, got, sizeof(got), &len, mc_now_ms() + 2000, &err);
  MC_CHECK(r == MOECOMM_SUCCESS, "get: %s", err.msg);
  MC_CHECK(len == sizeof(val), "len %zu", len);
  MC_CHECK(memcmp(got, val, sizeof(val)) == 0, "value differs");
  int tail_ok = 1;
  for (size_t i = sizeof(val); i < sizeof(got); i++) tail_ok &= got[i] == POISON;
  MC_CHECK(tail_ok, "get wrote past the value's length");

  /* A smaller buffer gets the first cap bytes and the full length; the stream stays in step. */
  memset(got, POISON, sizeof(got));
  len = 0;
  r = mc_store_get(a, "basic/k1", -1, got, 10, &len, mc_now_ms() + 2000, &err);
  MC_CHECK(r == MOECOMM_SUCCESS && len == sizeof(val), "short get: r=%d len=%zu", (int)r, len);
  MC_CHECK(memcmp(got, val, 10) == 0 && got[10] == POISON, "short get copied the wrong bytes");
  memset(got, POISON, sizeof(got));
  r = mc_store_get(a, "basic/k1", -1, got, sizeof(got), &len, mc_now_ms() + 2000, &err);
  MC_CHECK(r == MOECOMM_SUCCESS && len == sizeof(val) && memcmp(got, val, sizeof(val)) == 0,
           "get after a short get: r=%d len=%zu", (int)r, len);

  /* An empty value, and a key of exactly the longest length. */
  MC_CHECK(mc_store_set(a, "basic/empty", NULL, 0, 0, 0, &err) == MOECOMM_SUCCESS, "%s", err.msg);
  len = 99;
  r = mc_store_get(b, "basic/empty", -1, NULL, 0, &len, mc_now_ms() + 2000, &err);
  MC_CHECK(r == MOECOMM_SUCCESS && len == 0, "empty get: r=%d len=%zu", (int)r, len);
  char longkey[258];
  memset(longkey, 'k', 256);
  longkey[256] = '\0';
  MC_CHECK(mc_store_set(a, longkey, val, 7, 0, 0, &err) == MOECOMM_SUCCESS, "256-byte key: %s",
           err.msg);
  memset(got, POISON, sizeof(got));
  r = mc_store_get(b, longkey, -1, got, sizeof(got), &len, mc_now_ms() + 2000, &err);
  MC_CHECK(r == MOECOMM_SUCCESS && len == 7 && memcmp(got, val, 7) == 0, "256-byte key get");

  /* Bad arguments fail without touching the connection or the outputs. */
  longkey[256] = 'k';
  longkey[257] = '\0';
  MC_CHECK(mc_store_set(a, longkey, val, 7, 0, 0, &err) == MOECOMM_ERR_INVALID_ARGUMENT,
           "257-byte key");
  MC_CHECK(mc_store_set(a, "", val, 7, 0, 0, &err) == MOECOMM_ERR_INVALID_ARGUMENT, "empty key");
  MC_CHECK(mc_store_set(a, NULL, val, 7, 0, 0, &err) == MOECOMM_ERR_INVALID_ARGUMENT, "NULL key");
  MC_CHECK(mc_store_set(a, "basic/x", NULL, 7, 0, 0, &err) == MOECOMM_ERR_INVALID_ARGUMENT,
           "NULL value");
  MC_CHECK(mc_store_set(NULL, "basic/x", val, 7, 0, 0, &err) == MOECOMM_ERR_INVALID_ARGUMENT,
           "NULL store");
  len = 777;
  MC_CHECK(mc_store_get(a, "basic/k1", -1, NULL, 5, &len, mc_now_ms() + 100, &err) ==
                   MOECOMM_ERR_INVALID_ARGUMENT &&
               len == 777,
           "NULL buffer with capacity");
  MC_CHECK(mc_store_check(a, "basic/k1", NULL, &err) == MOECOMM_ERR_INVALID_ARGUMENT,
           "NULL exists_p");
  int ex = 0;
  MC_CHECK(mc_store_check(a, "basic/k1", &ex, &err) == MOECOMM_SUCCESS && ex == 1,
           "the connection still works after bad arguments: %s", err.msg);
  MC_CHECK(mc_store_check(b, "basic/never", &ex, &err) == MOECOMM_SUCCESS && ex == 0,
           "check of a missing key");
out:
  mc_store_close(a);
  mc_store_close(b);
}

static void test_replace_and_readers(int port) {
  mc_store_t *a = connect_to(port), *b = connect_to(port), *c = connect_to(port);
  if (a == NULL || b == NULL || c == NULL) goto out;
  mc_err_t err;
  unsigned char v1[40], v2[7], got[64];
  size_t len = 0;
  int ex = -1;
  fill_bytes(v1, sizeof(v1), 11);
  fill_bytes(v2, sizeof(v2), 12);

  /* Replacing a key: the second value wins, with its own length. */
  MC_CHECK(mc_store_set(a, "rep/k", v1, sizeof(v1), 0, 0, &err) == MOECOMM_SUCCESS, "%s", err.msg);
  MC_CHECK(mc_store_set(b, "rep/k", v2, sizeof(v2), 0, 0, &err) == MOECOMM_SUCCESS, "%s", err.msg);
  memset(got, POISON, sizeof(got));
  moecomm_result_t r =
      mc_store_get(c, "rep/k", -1, got, sizeof(got), &len, mc_now_ms() + 2000, &err);
  MC_CHECK(r == MOECOMM_SUCCESS && len == sizeof(v2) && memcmp(got, v2, sizeof(v2)) == 0 &&
               got[sizeof(v2)] == POISON,
           "replaced value: r=%d len=%zu", (int)r, len);

  /* readers = 3: present after 2 gets (checks are not reads), gone after the 3rd. */
  MC_CHECK(mc_store_set(a, "rd/k", v1, sizeof(v1), 3, 0, &err) == MOECOMM_SUCCESS, "%s", err.msg);
  mc_store_t *who[3] = {b, c, a};
  for (int i = 0; i < 3; i++) {
    for (int k = 0; k < 3; k++)
      MC_CHECK(mc_store_check(c, "rd/k", &ex, &err) == MOECOMM_SUCCESS && ex == 1,
               "present before get %d (check %d)", i + 1, k);
    memset(got, POISON, sizeof(got));
    r = mc_store_get(who[i], "rd/k", -1, got, sizeof(got), &len, mc_now_ms() + 2000, &err);
    MC_CHECK(r == MOECOMM_SUCCESS && len == sizeof(v1) && memcmp(got, v1, sizeof(v1)) == 0,
             "get %d of 3: r=%d %s", i + 1, (int)r, r ? err.msg : "");
  }
  ex = -1;
  MC_CHECK(mc_store_check(a, "rd/k", &ex, &err) == MOECOMM_SUCCESS && ex == 0,
           "key deleted after its 3rd read (exists=%d)", ex);
  len = 4242;
  r = mc_store_get(b, "rd/k", -1, got, sizeof(got), &len, mc_now_ms() + 100, &err);
  MC_CHECK(r == MOECOMM_ERR_TIMEOUT && len == 4242, "4th get times out: r=%d", (int)r);

  /* readers = 0 keeps the key. */
  MC_CHECK(mc_store_set(a, "rd/keep", v2, sizeof(v2), 0, 0, &err) == MOECOMM_SUCCESS, "%s",
           err.msg);
  int all = 1;
  for (int i = 0; i < 10; i++) {
    memset(got, POISON, sizeof(got));
    r = mc_store_get(who[i % 3], "rd/keep", -1, got, sizeof(got), &len, mc_now_ms() + 2000, &err);
    all &= r == MOECOMM_SUCCESS && len == sizeof(v2) && memcmp(got, v2, sizeof(v2)) == 0;
  }
  MC_CHECK(all, "10 gets of a readers=0 key");
  MC_CHECK(mc_store_check(a, "rd/keep", &ex, &err) == MOECOMM_SUCCESS && ex == 1, "readers=0 kept");

  /* A replacement resets the count of reads. */
  MC_CHECK(mc_store_set(a, "rd/reset", v1, sizeof(v1), 1, 0, &err) == MOECOMM_SUCCESS, "%s",
           err.msg);
  MC_CHECK(mc_store_set(a, "rd/reset", v2, sizeof(v2), 2, 0, &err) == MOECOMM_SUCCESS, "%s",
           err.msg);
  r = mc_store_get(b, "rd/reset", -1, got, sizeof(got), &len, mc_now_ms() + 2000, &err);
  MC_CHECK(r == MOECOMM_SUCCESS && len == sizeof(v2), "reset get 1");
  MC_CHECK(mc_store_check(a, "rd/reset", &ex, &err) == MOECOMM_SUCCESS && ex == 1,
           "one read left after a replacement with readers=2");
  r = mc_store_get(c, "rd/reset", -1, got, sizeof(got), &len, mc_now_ms() + 2000, &err);
  MC_CHECK(r == MOECOMM_SUCCESS && mc_store_check(a, "rd/reset", &ex, &err) == MOECOMM_SUCCESS &&
               ex == 0,
           "gone after the 2nd read");

  /* Many keys (the table grows), each found with its own value. */
  int many_ok = 1;
  for (int i = 0; i < 3000 && many_ok; i++) {
    char key[32];
    uint32_t v = (uint32_t)(i * 2654435761u);
    snprintf(key, sizeof(key), "many/%d", i);
    many_ok &= mc_store_set(a, key, &v, sizeof(v), 0, 0, &err) == MOECOMM_SUCCESS;
  }
  for (int i = 0; i < 3000 && many_ok; i += 7) {
    char key[32];
    uint32_t v = 0;
    snprintf(key, sizeof(key), "many/%d", i);
    many_ok &= mc_store_get(b, key, -1, &v, sizeof(v), &len, mc_now_ms() + 2000, &err) ==
                   MOECOMM_SUCCESS &&
               v == (uint32_t)(i * 2654435761u);
  }
  MC_CHECK(many_ok, "3000 keys: %s", err.msg);
out:
  mc_store_close(a);
  mc_store_close(b);
  mc_store_close(c);
}

static void test_wait_and_timeout(int port) {
  mc_store_t *a = connect_to(port), *b = connect_to(port), *w[3] = {0};
  for (int i = 0; i < 3; i++) w[i] = connect_to(port);
  if (a == NULL || b == NULL || !w[0] || !w[1] || !w[2]) goto out;
  mc_err_t err;
  unsigned char val[100];
  fill_bytes(val, sizeof(val), 21);

  /* A get waits for a set made later by another client. */
  getter_t g;
  int64_t t0 = mc_now_ms();
  getter_start(&g, b, "wait/k", t0 + 5000);
  sleep_ms(150);
  MC_CHECK(mc_store_set(a, "wait/k", val, sizeof(val), 1, 0, &err) == MOECOMM_SUCCESS, "%s",
           err.msg);
  pthread_join(g.th, NULL);
  MC_CHECK(g.r == MOECOMM_SUCCESS && g.len == sizeof(val) && memcmp(g.buf, val, sizeof(val)) == 0 &&
               g.buf[sizeof(val)] == POISON,
           "waiting get: r=%d len=%zu %s", (int)g.r, g.len, g.r ? g.err.msg : "");
  MC_CHECK(g.done_ms - t0 >= 140, "the get returned after %lld ms, before the set",
           (long long)(g.done_ms - t0));

  /* INT64_MAX means "no deadline", not an overflow into the past. */
  t0 = mc_now_ms();
  getter_start(&g, b, "wait/forever", INT64_MAX);
  sleep_ms(100);
  MC_CHECK(mc_store_set(a, "wait/forever", val, 20, 1, 0, &err) == MOECOMM_SUCCESS, "%s", err.msg);
  pthread_join(g.th, NULL);
  MC_CHECK(
      g.r == MOECOMM_SUCCESS && g.len == 20 && memcmp(g.buf, val, 20) == 0 && g.done_ms - t0 >= 90,
      "get with deadline INT64_MAX: r=%d after %lld ms %s", (int)g.r, (long long)(g.done_ms - t0),
      g.r ? g.err.msg : "");

  /* Three waiters, readers = 2: two get the value, the third times out; the key is gone. */
  getter_t gs[3];
  t0 = mc_now_ms();
  for (int i = 0; i < 3; i++) getter_start(&gs[i], w[i], "wait/two", t0 + 1200);
  sleep_ms(150);
  MC_CHECK(mc_store_set(a, "wait/two", val, 50, 2, 0, &err) == MOECOMM_SUCCESS, "%s", err.msg);
  int ok = 0, timed_out = 0;
  for (int i = 0; i < 3; i++) {
    pthread_join(gs[i].th, NULL);
    if (gs[i].r == MOECOMM_SUCCESS && gs[i].len == 50 && memcmp(gs[i].buf, val, 50) == 0) ok++;
    if (gs[i].r == MOECOMM_ERR_TIMEOUT && gs[i].len == (size_t)-1) timed_out++;
  }
  MC_CHECK(ok == 2 && timed_out == 1, "readers=2 with 3 waiters: %d got it, %d timed out", ok,
           timed_out);
  int ex = -1;
  MC_CHECK(mc_store_check(a, "wait/two", &ex, &err) == MOECOMM_SUCCESS && ex == 0, "deleted");

  /* A get of a key nobody sets: TIMEOUT at its deadline, not earlier, not much later. */
  unsigned char buf[16];
  size_t len = 31337;
  t0 = mc_now_ms();
  moecomm_result_t r = mc_store_get(b, "wait/never", -1, buf, sizeof(buf), &len, t0 + 300, &err);
  int64_t dt = mc_now_ms() - t0;
  MC_CHECK(r == MOECOMM_ERR_TIMEOUT, "r=%d: %s", (int)r, err.msg);
  MC_CHECK(dt >= 295 && dt <= 800, "timeout after %lld ms for a 300 ms deadline", (long long)dt);
  MC_CHECK(len == 31337, "len_p written on failure");
  MC_CHECK(strstr(err.msg, "wait/never") != NULL, "message names the key: %s", err.msg);
  /* A deadline already past answers at once. */
  t0 = mc_now_ms();
  r = mc_store_get(b, "wait/never", -1, buf, sizeof(buf), &len, t0 - 1000, &err);
  dt = mc_now_ms() - t0;
  MC_CHECK(r == MOECOMM_ERR_TIMEOUT && dt < 200, "past deadline: r=%d after %lld ms", (int)r,
           (long long)dt);
  /* The connection is still in step after timeouts. */
  MC_CHECK(mc_store_set(b, "wait/after", val, 8, 1, 0, &err) == MOECOMM_SUCCESS, "%s", err.msg);
  memset(buf, POISON, sizeof(buf));
  r = mc_store_get(b, "wait/after", -1, buf, sizeof(buf), &len, mc_now_ms() + 1000, &err);
  MC_CHECK(r == MOECOMM_SUCCESS && len == 8 && memcmp(buf, val, 8) == 0, "get after timeouts");
out:
  mc_store_close(a);
  mc_store_close(b);
  for (int i = 0; i < 3; i++) mc_store_close(w[i]);
}

/* ---- 64 clients in threads, all-gather style ----------------------------------------------- */

typedef struct ag_rank {
  int port, rank;
  int failures;
  char first[MC_ERR_MSG_MAX + 64];
  pthread_t th;
} ag_rank_t;

static size_t ag_len(int round, int rank) {
  return 8 + (size_t)((rank * 37 + round * 11) % 300);
}

static void ag_fail(ag_rank_t *a, const char *what, const char *msg) {
  if (a->failures++ == 0)
    snprintf(a->first, sizeof(a->first), "rank %d: %.60s: %.900s", a->rank, what, msg);
}

static void *ag_main(void *arg) {
  ag_rank_t *a = arg;
  mc_err_t err;
  mc_store_t *s = NULL;
  if (mc_store_connect(HOST, a->port, ST_AUTH, mc_now_ms() + 10000, &s, &err) != MOECOMM_SUCCESS) {
    ag_fail(a, "connect", err.msg);
    return NULL;
  }
  unsigned char mine[512], got[512], want[512];
  for (int round = 0; round < ROUNDS; round++) {
    char key[64];
    size_t n = ag_len(round, a->rank), len = 0;
    fill_bytes(mine, n, (uint64_t)(1000 * round + a->rank + 7));
    snprintf(key, sizeof(key), "ag/%d/%d", round, a->rank);
    if (mc_store_set(s, key, mine, n, NCLIENTS - 1, 0, &err) != MOECOMM_SUCCESS) {
      ag_fail(a, "set", err.msg);
      continue;
    }
    /* Start at a different peer on every rank so waits overlap differently. */
    for (int k = 1; k < NCLIENTS; k++) {
      int peer = (a->rank + k) % NCLIENTS;
      size_t pn = ag_len(round, peer);
      snprintf(key, sizeof(key), "ag/%d/%d", round, peer);
      fill_bytes(want, pn, (uint64_t)(1000 * round + peer + 7));
      memset(got, POISON, sizeof(got));
      if (mc_store_get(s, key, -1, got, sizeof(got), &len, mc_now_ms() + 10000, &err) !=
          MOECOMM_SUCCESS)
        ag_fail(a, key, err.msg);
      else if (len != pn || memcmp(got, want, pn) != 0 || got[pn] != POISON)
        ag_fail(a, key, "wrong value");
    }
  }
  mc_store_close(s);
  return NULL;
}

static void test_allgather_64(int port) {
  static ag_rank_t ranks[NCLIENTS];
  int started = 0;
  for (int i = 0; i < NCLIENTS; i++) {
    memset(&ranks[i], 0, sizeof(ranks[i]));
    ranks[i].port = port;
    ranks[i].rank = i;
    int e = pthread_create(&ranks[i].th, NULL, ag_main, &ranks[i]);
    if (!MC_CHECK(e == 0, "pthread_create %d: %s", i, strerror(e))) break;
    started++;
  }
  int failures = 0;
  for (int i = 0; i < started; i++) {
    pthread_join(ranks[i].th, NULL);
    if (ranks[i].failures > 0) {
      if (failures == 0) printf("  first failure: %s\n", ranks[i].first);
      failures += ranks[i].failures;
    }
  }
  MC_CHECK(started == NCLIENTS && failures == 0, "%d of %d clients ran, %d failed exchanges",
           started, NCLIENTS, failures);
  /* Every key was read by all 63 peers, so nothing is left behind. */
  mc_store_t *s = connect_to(port);
  if (s == NULL) return;
  int left = 0, errs = 0;
  for (int round = 0; round < ROUNDS; round++)
    for (int i = 0; i < NCLIENTS; i++) {
      char key[64];
      int ex = -1;
      mc_err_t err;
      snprintf(key, sizeof(key), "ag/%d/%d", round, i);
      if (mc_store_check(s, key, &ex, &err) != MOECOMM_SUCCESS)
        errs++;
      else
        left += ex;
    }
  MC_CHECK(left == 0 && errs == 0, "%d all-gather keys left behind, %d check errors", left, errs);
  mc_store_close(s);
}

/* ---- one connection shared by threads ------------------------------------------------------- */

typedef struct shared_arg {
  mc_store_t *s;
  int id, failures;
  pthread_t th;
} shared_arg_t;

static void *shared_main(void *arg) {
  shared_arg_t *a = arg;
  mc_err_t err;
  for (int i = 0; i < 100; i++) {
    char key[64];
    unsigned char v[300], got[300];
    size_t n = 1 + (size_t)((a->id * 13 + i * 7) % 290), len = 0;
    fill_bytes(v, n, (uint64_t)(a->id * 100000 + i));
    snprintf(key, sizeof(key), "shared/%d/%d", a->id, i);
    memset(got, POISON, sizeof(got));
    if (mc_store_set(a->s, key, v, n, 1, 0, &err) != MOECOMM_SUCCESS ||
        mc_store_get(a->s, key, -1, got, sizeof(got), &len, mc_now_ms() + 5000, &err) !=
            MOECOMM_SUCCESS ||
        len != n || memcmp(got, v, n) != 0)
      a->failures++;
  }
  return NULL;
}

static void test_shared_connection(int port) {
  mc_store_t *s = connect_to(port);
  if (s == NULL) return;
  shared_arg_t args[8];
  int started = 0, failures = 0;
  for (int i = 0; i < 8; i++) {
    args[i].s = s;
    args[i].id = i;
    args[i].failures = 0;
    if (pthread_create(&args[i].th, NULL, shared_main, &args[i]) != 0) break;
    started++;
  }
  for (int i = 0; i < started; i++) {
    pthread_join(args[i].th, NULL);
    failures += args[i].failures;
  }
  MC_CHECK(started == 8 && failures == 0, "8 threads on one connection: %d failures", failures);
  mc_store_close(s);
}

/* ---- large values --------------------------------------------------------------------------- */

static void big_roundtrip(mc_store_t *a, mc_store_t *b, const char *key, size_t n, uint64_t seed) {
  unsigned char *v = malloc(n), *got = malloc(n + 64);
  if (!MC_CHECK(v != NULL && got != NULL, "out of memory for %zu bytes", n)) goto out;
  mc_err_t err;
  size_t len = 0;
  fill_bytes(v, n, seed);
  memset(got, POISON, n + 64);
  moecomm_result_t r = mc_store_set(a, key, v, n, 1, 0, &err);
  MC_CHECK(r == MOECOMM_SUCCESS, "set of %zu bytes: %s", n, err.msg);
  r = mc_store_get(b, key, -1, got, n + 64, &len, mc_now_ms() + 20000, &err);
  MC_CHECK(r == MOECOMM_SUCCESS && len == n, "get of %zu bytes: r=%d len=%zu %s", n, (int)r, len,
           r ? err.msg : "");
  MC_CHECK(memcmp(got, v, n) == 0 && got[n] == POISON, "%zu-byte value differs", n);
out:
  free(v);
  free(got);
}

static void test_large_values(int port) {
  mc_store_t *a = connect_to(port), *b = connect_to(port);
  if (a == NULL || b == NULL) goto out;
  big_roundtrip(a, b, "big/16m", 16 * MIB, 31);
  big_roundtrip(b, a, "big/64m", 64 * MIB, 32); /* the limit itself is allowed */
  mc_err_t err;
  unsigned char small[8] = {0};
  /* Over the limit: refused before anything is sent (the buffer is never read). */
  moecomm_result_t r = mc_store_set(a, "big/over", small, 64 * MIB + 1, 0, 0, &err);
  MC_CHECK(r == MOECOMM_ERR_INVALID_ARGUMENT, "64 MiB + 1: r=%d", (int)r);
  MC_CHECK(strstr(err.msg, "67108864") != NULL && strstr(err.msg, "big/over") != NULL,
           "message names the key and the limit: %s", err.msg);
  int ex = -1;
  MC_CHECK(mc_store_check(a, "big/over", &ex, &err) == MOECOMM_SUCCESS && ex == 0,
           "refused value not stored, connection fine");
out:
  mc_store_close(a);
  mc_store_close(b);
}

/* ---- failures ------------------------------------------------------------------------------- */

/* A client that dies while its get waits loses its turn: the read is not counted. */
static void test_waiter_disconnect(int port) {
  fflush(stdout);
  pid_t pid = fork();
  if (pid == 0) {
    mc_err_t err;
    mc_store_t *s = NULL;
    unsigned char buf[8];
    size_t len;
    if (mc_store_connect(HOST, port, ST_AUTH, mc_now_ms() + 5000, &s, &err) == MOECOMM_SUCCESS)
      mc_store_get(s, "dc/k", -1, buf, sizeof(buf), &len, mc_now_ms() + 20000, &err);
    _exit(0);
  }
  if (!MC_CHECK(pid > 0, "fork failed")) return;
  sleep_ms(300); /* the child is waiting in its get */
  kill(pid, SIGKILL);
  int status = 0;
  waitpid(pid, &status, 0);
  MC_CHECK(WIFSIGNALED(status), "child ended before it was killed (status %#x)", status);
  sleep_ms(100); /* the server sees the hang-up */

  mc_store_t *a = connect_to(port), *b = connect_to(port);
  if (a == NULL || b == NULL) goto out;
  mc_err_t err;
  unsigned char v[8] = {1, 2, 3, 4, 5, 6, 7, 8}, got[8];
  size_t len = 0;
  MC_CHECK(mc_store_set(a, "dc/k", v, sizeof(v), 1, 0, &err) == MOECOMM_SUCCESS, "%s", err.msg);
  memset(got, POISON, sizeof(got));
  moecomm_result_t r =
      mc_store_get(b, "dc/k", -1, got, sizeof(got), &len, mc_now_ms() + 1000, &err);
  MC_CHECK(r == MOECOMM_SUCCESS && len == 8 && memcmp(got, v, 8) == 0,
           "the dead waiter took the only read: r=%d %s", (int)r, r ? err.msg : "");
out:
  mc_store_close(a);
  mc_store_close(b);
}

static void test_stop_while_waiting(void) {
  mc_store_server_t *srv = NULL;
  int port = 0;
  mc_err_t err;
  mc_store_server_opts_t o = st_opts();
  if (!MC_CHECK(mc_store_server_start(&o, &srv, &port, &err) == MOECOMM_SUCCESS, "%s", err.msg))
    return;
  mc_store_t *s = connect_to(port);
  if (s == NULL) {
    mc_store_server_stop(srv);
    return;
  }
  getter_t g;
  getter_start(&g, s, "stop/k", mc_now_ms() + 20000);
  sleep_ms(200);
  int64_t t0 = mc_now_ms();
  mc_store_server_stop(srv);
  pthread_join(g.th, NULL);
  int64_t dt = g.done_ms - t0;
  MC_CHECK(g.r == MOECOMM_ERR_PEER, "get during server stop: r=%d %s", (int)g.r, g.err.msg);
  MC_CHECK(dt < 1000, "the waiting client learned of the stop after %lld ms", (long long)dt);
  MC_CHECK(
      strstr(g.err.msg, "closed the connection") != NULL && strstr(g.err.msg, "stop/k") != NULL,
      "message: %s", g.err.msg);
  /* Later calls fail fast with PEER too. */
  t0 = mc_now_ms();
  int ex;
  moecomm_result_t r = mc_store_check(s, "stop/k", &ex, &err);
  MC_CHECK(r == MOECOMM_ERR_PEER && mc_now_ms() - t0 < 1000, "call after stop: r=%d", (int)r);
  mc_store_close(s);
}

typedef struct late_arg {
  int port;
  moecomm_result_t r;
  mc_store_t *s;
  int64_t done_ms;
  mc_err_t err;
} late_arg_t;

static void *late_connect_main(void *arg) {
  late_arg_t *l = arg;
  l->r = mc_store_connect(HOST, l->port, ST_AUTH, mc_now_ms() + 5000, &l->s, &l->err);
  l->done_ms = mc_now_ms();
  return NULL;
}

static void test_connect_before_server(void) {
  late_arg_t l;
  memset(&l, 0, sizeof(l));
  l.port = mc_test_free_port();
  if (!MC_CHECK(l.port > 0, "no free port")) return;
  pthread_t th;
  int64_t t0 = mc_now_ms();
  if (!MC_CHECK(pthread_create(&th, NULL, late_connect_main, &l) == 0, "pthread_create")) return;
  sleep_ms(200);
  mc_store_server_t *srv = NULL;
  int port = 0;
  mc_err_t err;
  moecomm_result_t r = MOECOMM_ERR_INTERNAL;
  /* The connecting client may briefly hold the port as its own source (self-connect), so retry. */
  for (int i = 0; i < 20 && r != MOECOMM_SUCCESS; i++) {
    mc_store_server_opts_t o = st_opts();
    o.port = l.port;
    r = mc_store_server_start(&o, &srv, &port, &err);
    if (r != MOECOMM_SUCCESS) sleep_ms(20);
  }
  MC_CHECK(r == MOECOMM_SUCCESS && port == l.port, "server on port %d: %s", l.port, err.msg);
  pthread_join(th, NULL);
  MC_CHECK(l.r == MOECOMM_SUCCESS, "late connect: %s", l.err.msg);
  MC_CHECK(l.done_ms - t0 >= 180, "connected after %lld ms, before the server existed",
           (long long)(l.done_ms - t0));
  if (l.r == MOECOMM_SUCCESS) {
    unsigned char v[3] = {9, 8, 7}, got[3] = {0};
    size_t len = 0;
    MC_CHECK(mc_store_set(l.s, "late/k", v, 3, 0, 0, &err) == MOECOMM_SUCCESS &&
                 mc_store_get(l.s, "late/k", -1, got, 3, &len, mc_now_ms() + 1000, &err) ==
                     MOECOMM_SUCCESS &&
                 len == 3 && memcmp(got, v, 3) == 0,
             "late connection works: %s", err.msg);
    mc_store_close(l.s);
  }
  if (r == MOECOMM_SUCCESS) mc_store_server_stop(srv);
}

static void test_connect_nothing_listens(void) {
  /* A bound, never-listening socket owns the port, so nothing can answer on it. */
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = loopback(0);
  socklen_t alen = sizeof(a);
  if (!MC_CHECK(fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
                    getsockname(fd, (struct sockaddr *)&a, &alen) == 0,
                "reserving a port"))
    goto out;
  int port = ntohs(a.sin_port);
  mc_err_t err;
  mc_store_t *s = (mc_store_t *)&err; /* poison: must stay untouched */
  int64_t t0 = mc_now_ms();
  moecomm_result_t r = mc_store_connect(HOST, port, ST_AUTH, t0 + 500, &s, &err);
  int64_t dt = mc_now_ms() - t0;
  MC_CHECK(r == MOECOMM_ERR_TIMEOUT, "r=%d: %s", (int)r, err.msg);
  MC_CHECK(dt >= 495 && dt <= 900, "gave up after %lld ms for a 500 ms deadline", (long long)dt);
  MC_CHECK(s == (mc_store_t *)&err, "store_p written on failure");
  char where[64];
  snprintf(where, sizeof(where), "%s:%d", HOST, port);
  MC_CHECK(strstr(err.msg, where) != NULL, "message names %s: %s", where, err.msg);
out:
  if (fd >= 0) close(fd);
}

/* Bad options: INVALID_ARGUMENT naming the value, outputs untouched. */
static void test_server_bad_opts(void) {
  mc_err_t err;
  mc_store_server_t *srv = (mc_store_server_t *)&err;
  int p = -5;
  uint8_t long_secret[65] = {0};
  struct {
    const char *what, *names;
    mc_store_server_opts_t o;
  } bad[9];
  for (int i = 0; i < 9; i++) bad[i].o = st_opts();
  bad[0].what = "port 70000", bad[0].names = "70000", bad[0].o.port = 70000;
  bad[1].what = "port -1", bad[1].names = "-1", bad[1].o.port = -1;
  bad[2].what = "secret NULL", bad[2].names = "NULL", bad[2].o.secret = NULL;
  bad[3].what = "secret of 15 bytes", bad[3].names = "15", bad[3].o.secret_len = 15;
  bad[4].what = "secret of 65 bytes", bad[4].names = "65", bad[4].o.secret = long_secret;
  bad[4].o.secret_len = 65;
  bad[5].what = "timeout -1", bad[5].names = "-1", bad[5].o.timeout_ms = -1;
  bad[6].what = "max_clients -3", bad[6].names = "-3", bad[6].o.max_clients = -3;
  bad[7].what = "value over 64 MiB", bad[7].names = "67108865";
  bad[7].o.max_value_bytes = (64u << 20) + 1, bad[7].o.max_total_bytes = (size_t)1 << 30;
  bad[8].what = "total below the value", bad[8].names = "4096", bad[8].o.max_value_bytes = 8192;
  bad[8].o.max_total_bytes = 4096;
  for (int i = 0; i < 9; i++) {
    moecomm_result_t r = mc_store_server_start(&bad[i].o, &srv, &p, &err);
    MC_CHECK(r == MOECOMM_ERR_INVALID_ARGUMENT && srv == (mc_store_server_t *)&err && p == -5,
             "%s: r=%d", bad[i].what, (int)r);
    MC_CHECK(strstr(err.msg, bad[i].names) != NULL, "%s: message names %s: %s", bad[i].what,
             bad[i].names, err.msg);
  }
  mc_store_server_opts_t o = st_opts();
  MC_CHECK(mc_store_server_start(NULL, &srv, &p, &err) == MOECOMM_ERR_INVALID_ARGUMENT,
           "opts NULL");
  MC_CHECK(mc_store_server_start(&o, NULL, &p, &err) == MOECOMM_ERR_INVALID_ARGUMENT, "srv_p NULL");
  o.bind_host = "no.such.host.invalid";
  MC_CHECK(mc_store_server_start(&o, &srv, &p, &err) == MOECOMM_ERR_CONFIG &&
               strstr(err.msg, "no.such.host.invalid") != NULL,
           "unresolvable bind address: %s", err.msg);
  MC_CHECK(srv == (mc_store_server_t *)&err && p == -5, "outputs written on failure");
}

static void test_connect_bad_args(int port) {
  mc_err_t err;
  mc_store_t *s = (mc_store_t *)&err;
  uint8_t *k = st_secret;
  int64_t d = mc_now_ms() + 100;
  MC_CHECK(mc_store_connect(HOST, 0, ST_AUTH, d, &s, &err) == MOECOMM_ERR_INVALID_ARGUMENT,
           "port 0");
  MC_CHECK(mc_store_connect(NULL, port, ST_AUTH, d, &s, &err) == MOECOMM_ERR_INVALID_ARGUMENT,
           "host NULL");
  MC_CHECK(
      mc_store_connect(HOST, port, NULL, 32, "t", 0, d, &s, &err) == MOECOMM_ERR_INVALID_ARGUMENT,
      "secret NULL");
  MC_CHECK(
      mc_store_connect(HOST, port, k, 15, "t", 0, d, &s, &err) == MOECOMM_ERR_INVALID_ARGUMENT &&
          strstr(err.msg, "15") != NULL,
      "secret of 15 bytes: %s", err.msg);
  MC_CHECK(mc_store_connect(HOST, port, k, 65, "t", 0, d, &s, &err) == MOECOMM_ERR_INVALID_ARGUMENT,
           "secret of 65 bytes");
  MC_CHECK(mc_store_connect(HOST, port, k, 32, "", 0, d, &s, &err) == MOECOMM_ERR_INVALID_ARGUMENT,
           "empty namespace");
  MC_CHECK(
      mc_store_connect(HOST, port, k, 32, NULL, 0, d, &s, &err) == MOECOMM_ERR_INVALID_ARGUMENT,
      "namespace NULL");
  MC_CHECK(
      mc_store_connect(HOST, port, k, 32, "t", -2, d, &s, &err) == MOECOMM_ERR_INVALID_ARGUMENT &&
          strstr(err.msg, "-2") != NULL,
      "rank -2: %s", err.msg);
  MC_CHECK(mc_store_connect(HOST, port, ST_AUTH, d, NULL, &err) == MOECOMM_ERR_INVALID_ARGUMENT,
           "store_p NULL");
  MC_CHECK(s == (mc_store_t *)&err, "store_p written on failure");
}

static void test_port_in_use(int port) {
  mc_err_t err;
  mc_store_server_t *srv = (mc_store_server_t *)&err;
  int p = -5;
  mc_store_server_opts_t o = st_opts();
  o.port = port;
  /* The port of a running server is taken: a clear failure, outputs untouched. */
  moecomm_result_t r = mc_store_server_start(&o, &srv, &p, &err);
  MC_CHECK(r == MOECOMM_ERR_BACKEND && srv == (mc_store_server_t *)&err && p == -5,
           "second server on port %d: r=%d", port, (int)r);
  MC_CHECK(strstr(err.msg, "in use") != NULL, "message: %s", err.msg);
}

/* A client that sends garbage is dropped; the server keeps serving everyone else. */
static void test_garbage_client(int port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = loopback(port);
  if (!MC_CHECK(fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0, "raw connect")) {
    if (fd >= 0) close(fd);
    return;
  }
  unsigned char junk[64], greeting[MC_STORE_REP_BYTES + MC_STORE_NONCE_BYTES];
  MC_CHECK(recv(fd, greeting, sizeof(greeting), MSG_WAITALL) == (ssize_t)sizeof(greeting),
           "the server's greeting");
  memset(junk, 0xFF, sizeof(junk));
  printf("  (one WARN about a malformed request from this test is expected)\n");
  MC_CHECK(send(fd, junk, sizeof(junk), MSG_NOSIGNAL) == (ssize_t)sizeof(junk), "raw send");
  struct pollfd p = {fd, POLLIN, 0};
  char c;
  int n = poll(&p, 1, 2000);
  MC_CHECK(n == 1 && recv(fd, &c, 1, 0) <= 0, "the server did not drop a client sending garbage");
  close(fd);
  mc_store_t *s = connect_to(port);
  if (s == NULL) return;
  int ex = -1;
  mc_err_t err;
  MC_CHECK(mc_store_check(s, "garbage/k", &ex, &err) == MOECOMM_SUCCESS && ex == 0,
           "server still serves after a bad client: %s", err.msg);
  mc_store_close(s);
}

/* Something that is not a store answers on the port: a prompt PEER error, not a wait. */
static void *not_a_store_main(void *arg) {
  int lfd = *(int *)arg;
  int fd = accept(lfd, NULL, NULL);
  if (fd < 0) return NULL;
  char buf[64];
  memset(buf, 'x', sizeof(buf));
  if (send(fd, buf, sizeof(buf), MSG_NOSIGNAL) != (ssize_t)sizeof(buf)) perror("send");
  sleep_ms(300);
  close(fd);
  return NULL;
}

static void test_not_a_store(void) {
  int lfd = -1;
  pthread_t th;
  int port = st_fake_service(not_a_store_main, &lfd, &th);
  if (!MC_CHECK(port > 0, "fake service")) return;
  mc_err_t err;
  mc_store_t *s = NULL;
  int64_t t0 = mc_now_ms();
  moecomm_result_t r = mc_store_connect(HOST, port, ST_AUTH, t0 + 3000, &s, &err);
  int64_t dt = mc_now_ms() - t0;
  MC_CHECK(r == MOECOMM_ERR_PEER && dt < 1500, "connect to a non-store: r=%d after %lld ms: %s",
           (int)r, (long long)dt, err.msg);
  MC_CHECK(strstr(err.msg, "malformed") != NULL, "message: %s", err.msg);
  if (r == MOECOMM_SUCCESS) mc_store_close(s);
  pthread_join(th, NULL);
  close(lfd);
}

/* A server bound to ::1 serves IPv6 clients. */
static void test_ipv6(void) {
  int fd = socket(AF_INET6, SOCK_STREAM, 0);
  struct sockaddr_in6 a;
  memset(&a, 0, sizeof(a));
  a.sin6_family = AF_INET6;
  a.sin6_addr = in6addr_loopback;
  int have = fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0;
  if (fd >= 0) close(fd);
  if (!have) {
    mc_test_skip("store ipv6", "no IPv6 loopback on this host");
    return;
  }
  mc_err_t err;
  mc_store_t *s = NULL;
  mc_store_server_t *srv = NULL;
  mc_store_server_opts_t o = st_opts();
  int port = 0;
  o.bind_host = "::1";
  moecomm_result_t r = mc_store_server_start(&o, &srv, &port, &err);
  if (!MC_CHECK(r == MOECOMM_SUCCESS, "server on ::1: %s", err.msg)) return;
  r = mc_store_connect("::1", port, ST_AUTH, mc_now_ms() + 3000, &s, &err);
  if (!MC_CHECK(r == MOECOMM_SUCCESS, "connect to [::1]:%d: %s", port, err.msg)) {
    mc_store_server_stop(srv);
    return;
  }
  unsigned char v[5] = {5, 4, 3, 2, 1}, got[5] = {0};
  size_t len = 0;
  MC_CHECK(
      mc_store_set(s, "v6/k", v, 5, 1, 0, &err) == MOECOMM_SUCCESS &&
          mc_store_get(s, "v6/k", -1, got, 5, &len, mc_now_ms() + 1000, &err) == MOECOMM_SUCCESS &&
          len == 5 && memcmp(got, v, 5) == 0,
      "set/get over IPv6: %s", err.msg);
  mc_store_close(s);
  mc_store_server_stop(srv);
}

int main(int argc, char **argv) {
  mc_test_init("store", argc, argv);
  signal(SIGPIPE, SIG_DFL); /* a SIGPIPE from the store would kill the test: it must never come */
  st_init_secret();

  mc_store_server_t *srv = NULL;
  int port = 0;
  mc_err_t err;
  /* Room for the 16 and 64 MiB values of test_large_values. */
  mc_store_server_opts_t o = st_opts();
  o.max_value_bytes = (size_t)64 << 20;
  o.max_total_bytes = (size_t)256 << 20;
  moecomm_result_t r = mc_store_server_start(&o, &srv, &port, &err);
  if (!MC_CHECK(r == MOECOMM_SUCCESS && port > 0, "server start: %s", err.msg))
    return mc_test_finish();

  test_waiter_disconnect(port); /* forks: first, while few threads exist */
  test_set_get(port);
  test_replace_and_readers(port);
  test_wait_and_timeout(port);
  test_allgather_64(port);
  test_shared_connection(port);
  test_large_values(port);
  test_server_bad_opts();
  test_connect_bad_args(port);
  test_port_in_use(port);
  test_garbage_client(port);
  mc_store_server_stop(srv);
  test_ipv6();

  test_stop_while_waiting();
  test_connect_before_server();
  test_connect_nothing_listens();
  test_not_a_store();
  return mc_test_finish();
}
