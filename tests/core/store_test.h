/* SPDX-License-Identifier: Apache-2.0 */
/* store_test.h - helpers shared by the store's test binaries (store and store_attack).
 *
 * Header-only: each test source is its own binary.  Every server here binds 127.0.0.1
 * and every client connects to 127.0.0.1, never a name. */
#ifndef MC_TEST_STORE_TEST_H_
#define MC_TEST_STORE_TEST_H_

#include <netinet/in.h>
#include <pthread.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <sys/random.h>
#include <time.h>

#include "../../plugin/store_client.h"
#include "../../plugin/store_server.h"
#include "../../plugin/util.h"
#include "../common/harness.h"

#define HOST "127.0.0.1"
#define POISON 0xA5

/* The secret of every test server, random per run. */
static uint8_t st_secret[32];
/* Secret and identity of an observer client: mc_store_connect(HOST, port, ST_AUTH, ...). */
#define ST_AUTH st_secret, sizeof(st_secret), "test", -1

static inline void st_init_secret(void) {
  if (getrandom(st_secret, sizeof(st_secret), 0) != (ssize_t)sizeof(st_secret))
    memset(st_secret, 0x5c, sizeof(st_secret));
}

static inline void sleep_ms(int ms) {
  struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) != 0) {
  }
}

static inline void fill_bytes(void *buf, size_t n, uint64_t seed) {
  uint64_t st = seed * 0x9E3779B97F4A7C15ull + 1;
  unsigned char *p = buf;
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    uint64_t v = mc_test_rand(&st);
    memcpy(p + i, &v, 8);
  }
  if (i < n) {
    uint64_t v = mc_test_rand(&st);
    memcpy(p + i, &v, n - i);
  }
}

/* 127.0.0.1:port (port 0: any, for bind). */
static inline struct sockaddr_in loopback(int port) {
  struct sockaddr_in a;
  memset(&a, 0, sizeof(a));
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons((uint16_t)port);
  return a;
}

/* A service on 127.0.0.1 that is not a store: a listening socket *lfd_p and a thread running
   fn(lfd_p).  Returns its port, or -1 (nothing left open). */
static inline int st_fake_service(void *(*fn)(void *), int *lfd_p, pthread_t *th_p) {
  struct sockaddr_in a = loopback(0);
  socklen_t alen = sizeof(a);
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  *lfd_p = fd;
  if (fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0 && listen(fd, 4) == 0 &&
      getsockname(fd, (struct sockaddr *)&a, &alen) == 0 &&
      pthread_create(th_p, NULL, fn, lfd_p) == 0)
    return ntohs(a.sin_port);
  if (fd >= 0) close(fd);
  return -1;
}

/* Server options of the tests: 127.0.0.1, any port, st_secret, defaults otherwise. */
static inline mc_store_server_opts_t st_opts(void) {
  mc_store_server_opts_t o;
  memset(&o, 0, sizeof(o));
  o.bind_host = HOST;
  o.secret = st_secret;
  o.secret_len = sizeof(st_secret);
  return o;
}

/* A connection as `rank` of `ns` (one failed check when it cannot). */
static inline mc_store_t *st_connect(int port, const char *ns, int rank) {
  mc_err_t err;
  mc_store_t *s = NULL;
  moecomm_result_t r = mc_store_connect(HOST, port, st_secret, sizeof(st_secret), ns, rank,
                                        mc_now_ms() + 5000, &s, &err);
  MC_CHECK(r == MOECOMM_SUCCESS && s != NULL, "connect to %s:%d as rank %d of %s: %d %s", HOST,
           port, rank, ns, (int)r, r ? err.msg : "");
  return r == MOECOMM_SUCCESS ? s : NULL;
}

#endif
