/* SPDX-License-Identifier: Apache-2.0 */
/* store_attack.c - hostile clients against a live rendezvous store (plugin/store_*.c).
 *
 * Every attacker is a raw socket on 127.0.0.1 speaking the wire format by hand
 * (plugin/store_wire.h); real clients use the store's client.  Checked:
 *  - trust: a connection that does not prove the secret reads nothing, changes nothing and costs
 *    one log line naming it; a rank checks in once per namespace (the refusal names the holder);
 *    write-once keys; the server is reachable only where it binds; the client refuses a server
 *    that cannot prove the secret back;
 *  - limits: a flood of 1,100 idle connections under 1024 (and 40) descriptors; max_clients;
 *    oversized values and announced lengths (no allocation: RSS measured); the total budget; a
 *    GET of 2^63 ms;
 *  - death: a writer killed or saying goodbye ends the waits on it at once, naming the rank; the
 *    server's process killed is PEER at once; a store that vanished mid-handshake too. */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ifaddrs.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../../plugin/store_core.h"
#include "../../plugin/store_wire.h"
#include "store_peer.h"
#include "store_test.h"

/* ---- a raw client --------------------------------------------------------------------------- */

typedef struct raw {
  int fd;
  char addr[64]; /* its own address, as the server names it in log lines */
  uint8_t challenge[MC_STORE_NONCE_BYTES];
} raw_t;

/* Reads exactly n bytes within timeout_ms: 1 done, 0 end of stream or reset, -1 timed out. */
static int raw_read(int fd, void *buf, size_t n, int timeout_ms) {
  uint8_t *p = buf;
  int64_t until = mc_now_ms() + timeout_ms;
  while (n > 0) {
    struct pollfd pf = {fd, POLLIN, 0};
    int64_t left = until - mc_now_ms();
    if (left <= 0 || poll(&pf, 1, (int)left) <= 0) return -1;
    ssize_t k = recv(fd, p, n, MSG_DONTWAIT);
    if (k == 0 || (k < 0 && errno != EAGAIN && errno != EINTR)) return 0;
    if (k > 0) p += k, n -= (size_t)k;
  }
  return 1;
}

/* 1 when the server closes the connection within timeout_ms (bytes before that are dropped). */
static int raw_closed(int fd, int timeout_ms) {
  uint8_t junk[256];
  for (;;) {
    int r = raw_read(fd, junk, 1, timeout_ms);
    if (r <= 0) return r == 0;
  }
}

/* Connects and reads the greeting; 0 on success. */
static int raw_open(int port, raw_t *r) {
  struct sockaddr_in a = loopback(port), me;
  socklen_t mlen = sizeof(me);
  uint8_t greet[MC_STORE_REP_BYTES];
  mc_store_rep_t rep;
  r->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (r->fd < 0 || connect(r->fd, (struct sockaddr *)&a, sizeof(a)) != 0 ||
      getsockname(r->fd, (struct sockaddr *)&me, &mlen) != 0) {
    if (r->fd >= 0) close(r->fd);
    r->fd = -1;
    return -1;
  }
  snprintf(r->addr, sizeof(r->addr), "127.0.0.1:%d", ntohs(me.sin_port));
  if (raw_read(r->fd, greet, sizeof(greet), 3000) != 1 ||
      mc_store_rep_decode(greet, MC_STORE_OP_GREETING, &rep) != NULL ||
      raw_read(r->fd, r->challenge, sizeof(r->challenge), 3000) != 1)
    return -1;
  return 0;
}

static void raw_close(raw_t *r) {
  if (r->fd >= 0) close(r->fd);
  r->fd = -1;
}

static int raw_send(int fd, const void *buf, size_t n) {
  return send(fd, buf, n, MSG_NOSIGNAL) == (ssize_t)n ? 0 : -1;
}

/* Sends a request header (and key) as given. */
static int raw_request(int fd, const mc_store_req_t *q, const char *key) {
  uint8_t buf[MC_STORE_REQ_BYTES + MC_STORE_KEY_MAX];
  return raw_send(fd, buf, st_req_frame(q, key, buf));
}

/* HELLO keyed with `secret` as rank of ns; returns the reply's status, or -1 when none came. */
static int raw_hello(raw_t *r, const uint8_t *secret, size_t secret_len, const char *ns, int rank) {
  uint8_t buf[MC_STORE_REQ_BYTES + MC_STORE_KEY_MAX + MC_STORE_HELLO_BYTES];
  uint8_t rep[MC_STORE_REP_BYTES];
  size_t n = st_hello_frame(r->challenge, secret, secret_len, ns, rank, (uint32_t)getpid(), buf);
  if (raw_send(r->fd, buf, n) != 0) return -1;
  mc_store_rep_t p;
  if (raw_read(r->fd, rep, sizeof(rep), 3000) != 1 ||
      mc_store_rep_decode(rep, MC_STORE_OP_HELLO, &p) != NULL)
    return -1;
  uint8_t skip[MC_STORE_TEXT_MAX];
  if (raw_read(r->fd, skip, (size_t)p.value_len, 3000) != 1) return -1;
  return (int)p.status;
}

/* ---- the server's log --------------------------------------------------------------------- */

/* stderr goes to a file between logcap_begin and logcap_end. */
typedef struct logcap {
  int saved;
  FILE *f;
} logcap_t;

static void logcap_begin(logcap_t *l) {
  fflush(stderr);
  l->f = tmpfile();
  l->saved = l->f != NULL ? dup(2) : -1;
  if (l->saved >= 0) dup2(fileno(l->f), 2);
}

/* Restores stderr; returns how many captured lines contain every needle (NULL-terminated), and
   shows the captured lines. */
static int logcap_end(logcap_t *l, const char *const *needles) {
  int count = 0;
  if (l->saved < 0) return -1;
  fflush(stderr);
  dup2(l->saved, 2);
  close(l->saved);
  char line[2048];
  rewind(l->f);
  while (fgets(line, sizeof(line), l->f) != NULL) {
    int all = 1;
    for (const char *const *n = needles; *n != NULL; n++) all &= strstr(line, *n) != NULL;
    count += all;
    printf("  (log) %s", line);
  }
  fclose(l->f);
  return count;
}

static int start_server(const mc_store_server_opts_t *o, mc_store_server_t **srv) {
  int port = 0;
  mc_err_t err;
  moecomm_result_t r = mc_store_server_start(o, srv, &port, &err);
  MC_CHECK(r == MOECOMM_SUCCESS && port > 0, "server start: %s", err.msg);
  return r == MOECOMM_SUCCESS ? port : -1;
}

/* ---- proof of the secret ------------------------------------------------------------------ */

/* A key only the real ranks can set, for attackers to try to read. */
static void set_record(mc_store_t *s, const char *key) {
  mc_err_t err;
  uint8_t rec[64];
  fill_bytes(rec, sizeof(rec), 99);
  MC_CHECK(mc_store_set(s, key, rec, sizeof(rec), 0, 0, &err) == MOECOMM_SUCCESS, "set %s: %s", key,
           err.msg);
}

/* A client that knows only the port: a wrong MAC is refused with one log line naming it, it
   cannot check in as rank 1, and the real rank 1 checks in afterwards. */
static void test_wrong_secret(int port) {
  mc_store_t *r0 = st_connect(port, "job", 0);
  if (r0 == NULL) return;
  set_record(r0, "job/boot/0");
  uint8_t wrong[32];
  memcpy(wrong, st_secret, sizeof(wrong));
  wrong[7] ^= 0x10; /* one bit off */
  raw_t a;
  logcap_t lc;
  logcap_begin(&lc);
  int opened = raw_open(port, &a) == 0;
  int st = opened ? raw_hello(&a, wrong, sizeof(wrong), "job", 1) : -2;
  int closed = opened && raw_closed(a.fd, 3000);
  /* Whatever it sends next goes nowhere. */
  mc_store_req_t q = st_req(MC_STORE_OP_GET, "job/boot/0");
  if (opened) (void)raw_request(a.fd, &q, "job/boot/0");
  const char *needles[] = {"WARN", a.addr, "failed to prove the secret", NULL};
  int lines = logcap_end(&lc, needles);
  MC_CHECK(opened, "raw connect to port %d", port);
  MC_CHECK(st == MC_STORE_DENIED, "wrong MAC answered with status %d, not DENIED", st);
  MC_CHECK(closed, "the server kept the connection of a client with a wrong MAC");
  MC_CHECK(lines == 1, "%d WARN lines name %s; want exactly one", lines, a.addr);
  raw_close(&a);

  /* The forger did not take rank 1: the real one checks in. */
  mc_store_t *r1 = st_connect(port, "job", 1);
  uint8_t got[64], want[64];
  size_t len = 0;
  mc_err_t err;
  fill_bytes(want, sizeof(want), 99);
  MC_CHECK(r1 != NULL &&
               mc_store_get(r1, "job/boot/0", 0, got, sizeof(got), &len, mc_now_ms() + 1000,
                            &err) == MOECOMM_SUCCESS &&
               len == 64 && memcmp(got, want, 64) == 0,
           "the real rank 1 reads rank 0's record");
  mc_store_close(r1);

  /* Through the client API: a wrong secret is a configuration error at once, not a retry. */
  mc_store_t *s = (mc_store_t *)&err;
  int64_t t0 = mc_now_ms();
  moecomm_result_t r =
      mc_store_connect(HOST, port, wrong, sizeof(wrong), "job", 2, t0 + 5000, &s, &err);
  MC_CHECK(r == MOECOMM_ERR_CONFIG && mc_now_ms() - t0 < 1000 && s == (mc_store_t *)&err,
           "client with a wrong secret: r=%d after %lld ms", (int)r, (long long)(mc_now_ms() - t0));
  MC_CHECK(strstr(err.msg, "secret") != NULL, "message names the secret: %s", err.msg);
  mc_store_close(r0);
}

/* Requests before the proof: dropped with one log line; nothing is read. */
static void test_no_proof(int port) {
  mc_store_t *r0 = st_connect(port, "np", 0);
  if (r0 == NULL) return;
  set_record(r0, "np/boot/0");
  static const uint32_t ops[] = {MC_STORE_OP_GET, MC_STORE_OP_SET, MC_STORE_OP_CHECK,
                                 MC_STORE_OP_BYE};
  for (size_t i = 0; i < sizeof(ops) / sizeof(ops[0]); i++) {
    raw_t a;
    logcap_t lc;
    logcap_begin(&lc);
    int opened = raw_open(port, &a) == 0;
    const char *key = ops[i] == MC_STORE_OP_BYE ? NULL : "np/boot/0";
    mc_store_req_t q = st_req(ops[i], key);
    if (ops[i] == MC_STORE_OP_GET) q.timeout_ms = 1000;
    if (ops[i] == MC_STORE_OP_SET) q.value_len = 4;
    uint8_t rep[MC_STORE_REP_BYTES], frame[MC_STORE_REQ_BYTES + 64];
    size_t klen = key != NULL ? strlen(key) : 0;
    mc_store_req_encode(&q, frame);
    if (klen > 0) memcpy(frame + MC_STORE_REQ_BYTES, key, klen);
    memcpy(frame + MC_STORE_REQ_BYTES + klen, "evil", 4);
    /* One segment: the server may close as soon as it has read the header. */
    int sent =
        opened && raw_send(a.fd, frame, MC_STORE_REQ_BYTES + klen + (size_t)q.value_len) == 0;
    int answered = sent ? raw_read(a.fd, rep, sizeof(rep), 2000) : -2;
    const char *needles[] = {"WARN", a.addr, "before proving the secret", NULL};
    int lines = logcap_end(&lc, needles);
    MC_CHECK(sent && answered == 0, "%s before the proof: %s", mc_store_op_name(ops[i]),
             answered == 1 ? "answered" : "not dropped");
    MC_CHECK(lines == 1, "%s before the proof: %d WARN lines name %s", mc_store_op_name(ops[i]),
             lines, a.addr);
    raw_close(&a);
  }
  uint8_t got[64], want[64];
  size_t len = 0;
  mc_err_t err;
  fill_bytes(want, sizeof(want), 99);
  MC_CHECK(mc_store_get(r0, "np/boot/0", -1, got, sizeof(got), &len, mc_now_ms() + 1000, &err) ==
                   MOECOMM_SUCCESS &&
               len == 64 && memcmp(got, want, 64) == 0,
           "the record is unchanged after the attempts");
  mc_store_close(r0);
}

/* The client refuses a server that cannot prove the secret (it answers OK without knowing it). */
static void *impostor_main(void *arg) {
  int lfd = *(int *)arg;
  int fd = accept(lfd, NULL, NULL);
  if (fd < 0) return NULL;
  uint8_t buf[MC_STORE_REP_BYTES + MC_STORE_WELCOME_BYTES], req[512];
  mc_store_rep_t rep = {MC_STORE_MAGIC, MC_STORE_CHALLENGE, MC_STORE_NONCE_BYTES};
  mc_store_rep_encode(&rep, buf);
  memset(buf + MC_STORE_REP_BYTES, 7, MC_STORE_NONCE_BYTES);
  if (raw_send(fd, buf, MC_STORE_REP_BYTES + MC_STORE_NONCE_BYTES) == 0 &&
      recv(fd, req, sizeof(req), 0) > 0) {
    mc_store_welcome_t w = {{0}, 1 << 20, 64 << 20, 60000};
    memset(w.mac, 0x33, sizeof(w.mac));
    rep = (mc_store_rep_t){MC_STORE_MAGIC, MC_STORE_OK, MC_STORE_WELCOME_BYTES};
    mc_store_rep_encode(&rep, buf);
    mc_store_welcome_encode(&w, buf + MC_STORE_REP_BYTES);
    (void)raw_send(fd, buf, sizeof(buf));
  }
  sleep_ms(300);
  close(fd);
  return NULL;
}

static void test_impostor_server(void) {
  int lfd = -1;
  pthread_t th;
  int port = st_fake_service(impostor_main, &lfd, &th);
  if (!MC_CHECK(port > 0, "impostor service")) return;
  mc_err_t err;
  mc_store_t *s = (mc_store_t *)&err;
  int64_t t0 = mc_now_ms();
  moecomm_result_t r = mc_store_connect(HOST, port, ST_AUTH, t0 + 3000, &s, &err);
  MC_CHECK(r == MOECOMM_ERR_PEER && mc_now_ms() - t0 < 1500 && s == (mc_store_t *)&err,
           "impostor accepted? r=%d: %s", (int)r, err.msg);
  MC_CHECK(strstr(err.msg, "did not prove") != NULL, "message: %s", err.msg);
  pthread_join(th, NULL);
  close(lfd);
}

/* ---- ranks ---------------------------------------------------------------------------------- */

/* A second process claiming a held rank is refused, naming the holder; after the holder leaves
   the rank is free again; the same rank in another namespace is another rank. */
static void test_duplicate_rank(int port) {
  mc_store_t *holder = st_connect(port, "dup", 1);
  mc_store_t *other = st_connect(port, "dup2", 1);
  if (holder == NULL || other == NULL) goto out;
  int pipefd[2];
  if (!MC_CHECK(pipe(pipefd) == 0, "pipe")) goto out;
  logcap_t lc;
  logcap_begin(&lc);
  fflush(stdout);
  pid_t pid = fork();
  if (pid == 0) {
    /* The claimant: another process with the right secret. */
    mc_err_t err;
    mc_store_t *s = (mc_store_t *)&err;
    moecomm_result_t r = mc_store_connect(HOST, port, st_secret, sizeof(st_secret), "dup", 1,
                                          mc_now_ms() + 3000, &s, &err);
    char msg[MC_ERR_MSG_MAX + 16];
    int n = snprintf(msg, sizeof(msg), "%d %s", (int)r, err.msg);
    if (write(pipefd[1], msg, (size_t)n) != n) _exit(2);
    _exit(s == (mc_store_t *)&err ? 0 : 3);
  }
  close(pipefd[1]);
  char msg[MC_ERR_MSG_MAX + 16] = "";
  ssize_t n = read(pipefd[0], msg, sizeof(msg) - 1);
  msg[n > 0 ? n : 0] = '\0';
  close(pipefd[0]);
  int status = -1;
  waitpid(pid, &status, 0);
  char pidstr[32];
  snprintf(pidstr, sizeof(pidstr), "pid %d", (int)getpid());
  const char *needles[] = {"WARN", "claims rank 1 of 'dup'", pidstr, NULL};
  int lines = logcap_end(&lc, needles);
  MC_CHECK(atoi(msg) == MOECOMM_ERR_CONFIG && WIFEXITED(status) && WEXITSTATUS(status) == 0,
           "second claim of rank 1: %s (exit %#x)", msg, status);
  MC_CHECK(strstr(msg, "rank 1 of dup is already checked in by") != NULL &&
               strstr(msg, pidstr) != NULL && strstr(msg, "127.0.0.1:") != NULL &&
               strstr(msg, "two processes were given the same rank") != NULL,
           "message names the rank and the holder (%s): %s", pidstr, msg);
  MC_CHECK(lines == 1, "%d WARN lines name the claim and the holder", lines);
  /* The holder was not disturbed. */
  int ex = -1;
  mc_err_t err;
  MC_CHECK(mc_store_check(holder, "dup/x", &ex, &err) == MOECOMM_SUCCESS && ex == 0,
           "the holder still works: %s", err.msg);
  mc_store_close(holder);
  holder = NULL;
  /* Its rank is free once its connection closed (the server may take a moment to see it). */
  mc_store_t *again = NULL;
  for (int i = 0; i < 50 && again == NULL; i++) {
    if (mc_store_connect(HOST, port, st_secret, sizeof(st_secret), "dup", 1, mc_now_ms() + 1000,
                         &again, &err) != MOECOMM_SUCCESS)
      sleep_ms(20);
  }
  MC_CHECK(again != NULL, "rank 1 checks in again after its holder left: %s", err.msg);
  mc_store_close(again);
out:
  mc_store_close(holder);
  mc_store_close(other);
}

static void test_write_once(int port) {
  mc_store_t *a = st_connect(port, "wo", 0), *b = st_connect(port, "wo", 1);
  if (a == NULL || b == NULL) goto out;
  mc_err_t err;
  uint8_t v1[24], v2[24], got[32];
  size_t len = 0;
  fill_bytes(v1, sizeof(v1), 5);
  fill_bytes(v2, sizeof(v2), 6);
  MC_CHECK(
      mc_store_set(a, "wo/rec", v1, sizeof(v1), 0, MC_STORE_WRITE_ONCE, &err) == MOECOMM_SUCCESS,
      "first write-once set: %s", err.msg);
  for (uint32_t flags = 0; flags <= MC_STORE_WRITE_ONCE; flags++) {
    moecomm_result_t r = mc_store_set(b, "wo/rec", v2, sizeof(v2), 0, flags, &err);
    MC_CHECK(r == MOECOMM_ERR_CONFIG && strstr(err.msg, "write-once") != NULL &&
                 strstr(err.msg, "wo/rec") != NULL,
             "second set (flags %u) of a write-once key: r=%d %s", flags, (int)r, err.msg);
  }
  memset(got, POISON, sizeof(got));
  MC_CHECK(mc_store_get(b, "wo/rec", 0, got, sizeof(got), &len, mc_now_ms() + 1000, &err) ==
                   MOECOMM_SUCCESS &&
               len == sizeof(v1) && memcmp(got, v1, sizeof(v1)) == 0,
           "the first value stays, and the connection works after the refusal");
  /* A plain key may be replaced, but not by a write-once set. */
  MC_CHECK(mc_store_set(a, "wo/plain", v1, 8, 0, 0, &err) == MOECOMM_SUCCESS &&
               mc_store_set(b, "wo/plain", v2, 8, 0, 0, &err) == MOECOMM_SUCCESS,
           "plain keys are replaced: %s", err.msg);
  MC_CHECK(mc_store_set(b, "wo/plain", v1, 8, 0, MC_STORE_WRITE_ONCE, &err) == MOECOMM_ERR_CONFIG,
           "a write-once set of an existing key is refused");
  MC_CHECK(mc_store_set(a, "wo/x", v1, 8, 0, 0x2, &err) == MOECOMM_ERR_INVALID_ARGUMENT,
           "unknown flags refused");
out:
  mc_store_close(a);
  mc_store_close(b);
}

/* ---- where the server listens --------------------------------------------------------------- */

/* 1 when a TCP connection to addr:port is accepted (the caller's address family). */
static int reachable(const struct sockaddr *sa, socklen_t len) {
  int fd = socket(sa->sa_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return 0;
  int ok = connect(fd, sa, len) == 0;
  close(fd);
  return ok;
}

static int reachable4(const char *ip, int port) {
  struct sockaddr_in a = loopback(port);
  inet_pton(AF_INET, ip, &a.sin_addr);
  return reachable((struct sockaddr *)&a, sizeof(a));
}

/* An IPv4 address of an interface other than loopback, or 0. */
static int other_address(char *ip, size_t size) {
  struct ifaddrs *ifs = NULL, *i;
  int found = 0;
  if (getifaddrs(&ifs) != 0) return 0;
  for (i = ifs; i != NULL && !found; i = i->ifa_next) {
    if (i->ifa_addr == NULL || i->ifa_addr->sa_family != AF_INET) continue;
    struct in_addr in = ((struct sockaddr_in *)i->ifa_addr)->sin_addr;
    if ((ntohl(in.s_addr) >> 24) == 127) continue;
    found = inet_ntop(AF_INET, &in, ip, (socklen_t)size) != NULL;
  }
  freeifaddrs(ifs);
  return found;
}

static void test_bind(void) {
  mc_store_server_t *lo = NULL, *any = NULL;
  mc_store_server_opts_t o = st_opts();
  o.bind_host = NULL; /* the default */
  int lport = start_server(&o, &lo);
  o.bind_host = "0.0.0.0";
  int aport = start_server(&o, &any);
  if (lport < 0 || aport < 0) goto out;
  char ip[64];
  MC_CHECK(reachable4("127.0.0.1", lport), "the default server is reachable on 127.0.0.1");
  MC_CHECK(!reachable4("127.0.0.2", lport), "the default server answers on 127.0.0.2");
  MC_CHECK(reachable4("127.0.0.2", aport), "a 0.0.0.0 server is reachable on 127.0.0.2");
  if (other_address(ip, sizeof(ip))) {
    MC_CHECK(!reachable4(ip, lport), "the default server answers on %s", ip);
    MC_CHECK(reachable4(ip, aport), "a 0.0.0.0 server is not reachable on %s", ip);
  } else {
    mc_test_skip("store bind on another interface", "this machine has no IPv4 address outside lo");
  }
out:
  mc_store_server_stop(lo);
  mc_store_server_stop(any);
}

/* ---- limits -------------------------------------------------------------------------------- */

/* A server in a child process whose descriptors are limited to nofile. */
typedef struct child_server {
  pid_t pid;
  int port;
} child_server_t;

static int child_server_start(child_server_t *cs, rlim_t nofile, const mc_store_server_opts_t *o) {
  int pfd[2];
  cs->pid = -1;
  cs->port = -1;
  if (pipe(pfd) != 0) return -1;
  fflush(stdout);
  cs->pid = fork();
  if (cs->pid == 0) {
    struct rlimit rl = {nofile, nofile};
    mc_store_server_t *srv = NULL;
    mc_err_t err;
    int port = -1;
    close(pfd[0]);
    if (setrlimit(RLIMIT_NOFILE, &rl) != 0 || mc_store_server_start(o, &srv, &port, &err) != 0)
      port = -1;
    if (write(pfd[1], &port, sizeof(port)) != (ssize_t)sizeof(port)) _exit(1);
    for (;;) pause(); /* until killed */
  }
  close(pfd[1]);
  if (cs->pid > 0 && read(pfd[0], &cs->port, sizeof(cs->port)) != (ssize_t)sizeof(cs->port))
    cs->port = -1;
  close(pfd[0]);
  return cs->port > 0 ? 0 : -1;
}

static void child_server_stop(child_server_t *cs) {
  if (cs->pid <= 0) return;
  kill(cs->pid, SIGKILL);
  waitpid(cs->pid, NULL, 0);
  cs->pid = -1;
}

static int count_fds(pid_t pid) {
  char path[64];
  snprintf(path, sizeof(path), "/proc/%d/fd", (int)pid);
  DIR *d = opendir(path);
  int n = 0;
  if (d == NULL) return -1;
  for (struct dirent *e; (e = readdir(d)) != NULL;) n += e->d_name[0] != '.';
  closedir(d);
  return n;
}

/* A child holding n idle connections to port.  It says 'r' on *ready_p once they are all
   connected; on a byte to *cmd_p it counts how many the server has closed and writes that. */
typedef struct flood {
  pid_t pid;
  int to, from;
} flood_t;

static void flood_child(int port, int n, int in, int out) {
  int *fds = calloc((size_t)n, sizeof(int)), opened = 0;
  struct sockaddr_in a = loopback(port);
  for (int i = 0; fds != NULL && i < n; i++) {
    fds[i] = socket(AF_INET, SOCK_STREAM, 0);
    if (fds[i] >= 0 && connect(fds[i], (struct sockaddr *)&a, sizeof(a)) == 0) opened++;
  }
  char c = 'r';
  if (write(out, &opened, sizeof(opened)) != (ssize_t)sizeof(opened) || read(in, &c, 1) != 1)
    _exit(1);
  int closed = 0;
  for (int i = 0; fds != NULL && i < n; i++) {
    char junk[256];
    ssize_t k;
    while ((k = recv(fds[i], junk, sizeof(junk), MSG_DONTWAIT)) > 0) {
    }
    closed += k == 0 || (k < 0 && errno == ECONNRESET);
  }
  if (write(out, &closed, sizeof(closed)) != (ssize_t)sizeof(closed)) _exit(1);
  _exit(0);
}

/* Starts the flood; returns the connections it opened (-1 on failure). */
static int flood_start(flood_t *f, int port, int n) {
  int to[2], from[2], opened = -1;
  if (pipe(to) != 0 || pipe(from) != 0) return -1;
  fflush(stdout);
  f->pid = fork();
  if (f->pid == 0) {
    close(to[1]);
    close(from[0]);
    flood_child(port, n, to[0], from[1]);
  }
  close(to[0]);
  close(from[1]);
  f->to = to[1];
  f->from = from[0];
  if (f->pid < 0 || read(f->from, &opened, sizeof(opened)) != (ssize_t)sizeof(opened)) return -1;
  return opened;
}

/* How many of its connections the server has closed; ends the flood. */
static int flood_end(flood_t *f) {
  int closed = -1;
  if (write(f->to, "c", 1) != 1 ||
      read(f->from, &closed, sizeof(closed)) != (ssize_t)sizeof(closed))
    closed = -1;
  close(f->to);
  close(f->from);
  waitpid(f->pid, NULL, 0);
  return closed;
}

/* Four real ranks connect, exchange a record each, and leave; the time it took in ms. */
static int64_t real_ranks_exchange(int port, const char *ns, int *ok_p) {
  mc_store_t *r[4] = {0};
  mc_err_t err;
  int64_t t0 = mc_now_ms();
  int ok = 1;
  for (int i = 0; i < 4; i++) ok &= (r[i] = st_connect(port, ns, i)) != NULL;
  for (int i = 0; i < 4 && ok; i++) {
    char key[64];
    uint32_t v = (uint32_t)(i * 2654435761u);
    snprintf(key, sizeof(key), "%s/%d", ns, i);
    ok &= mc_store_set(r[i], key, &v, sizeof(v), 3, 0, &err) == MOECOMM_SUCCESS;
  }
  for (int i = 0; i < 4 && ok; i++)
    for (int j = 0; j < 4; j++) {
      char key[64];
      uint32_t v = 0;
      size_t len = 0;
      if (i == j) continue;
      snprintf(key, sizeof(key), "%s/%d", ns, j);
      ok &= mc_store_get(r[i], key, j, &v, sizeof(v), &len, mc_now_ms() + 5000, &err) ==
                MOECOMM_SUCCESS &&
            v == (uint32_t)(j * 2654435761u);
    }
  for (int i = 0; i < 4; i++) mc_store_close(r[i]);
  *ok_p = ok;
  return mc_now_ms() - t0;
}

/* 1,100 idle connections against a server limited to `nofile` descriptors: it keeps at most 64
   of them (fewer when descriptors run out), real ranks still get through in a few seconds, and
   each idle one is closed within the handshake deadline. */
static void test_flood(rlim_t nofile) {
  child_server_t cs;
  flood_t f[2];
  mc_store_server_opts_t o = st_opts();
  if (!MC_CHECK(child_server_start(&cs, nofile, &o) == 0, "server with %d descriptors",
                (int)nofile)) {
    child_server_stop(&cs);
    return;
  }
  int opened = 0, ok = 0;
  for (int i = 0; i < 2; i++) opened += flood_start(&f[i], cs.port, 550);
  MC_CHECK(opened == 1100, "the flood opened %d of 1100 connections", opened);
  sleep_ms(200); /* the server accepts them */
  int fds = count_fds(cs.pid);
  int64_t ms = real_ranks_exchange(cs.port, "flood", &ok);
  printf(
      "  %d idle connections, server limited to %d descriptors holds %d: 4 ranks exchanged in "
      "%lld ms\n",
      opened, (int)nofile, fds, (long long)ms);
  MC_CHECK(fds > 0 && fds <= 64 + 16, "the server holds %d descriptors under the flood", fds);
  MC_CHECK(ok && ms < 5000, "real ranks under the flood: ok=%d after %lld ms", ok, (long long)ms);
  sleep_ms(MC_STORE_HANDSHAKE_MS + 500); /* every idle connection's deadline passed */
  int closed = 0;
  for (int i = 0; i < 2; i++) closed += flood_end(&f[i]);
  MC_CHECK(closed == opened, "%d of %d idle connections closed by the server after %d ms", closed,
           opened, MC_STORE_HANDSHAKE_MS + 500);
  child_server_stop(&cs);
}

/* Authenticated connections are capped; a refused one is told why, the others keep working. */
static void test_max_clients(void) {
  mc_store_server_t *srv = NULL;
  mc_store_server_opts_t o = st_opts();
  o.max_clients = 4;
  int port = start_server(&o, &srv);
  mc_store_t *c[4] = {0};
  if (port < 0) return;
  for (int i = 0; i < 4; i++) c[i] = st_connect(port, "cap", i);
  mc_err_t err;
  mc_store_t *s = (mc_store_t *)&err;
  moecomm_result_t r = mc_store_connect(HOST, port, ST_AUTH, mc_now_ms() + 2000, &s, &err);
  MC_CHECK(r == MOECOMM_ERR_PEER && strstr(err.msg, "maximum of 4 clients") != NULL &&
               s == (mc_store_t *)&err,
           "a fifth client: r=%d %s", (int)r, err.msg);
  int ex = -1;
  MC_CHECK(c[0] != NULL && mc_store_check(c[0], "cap/x", &ex, &err) == MOECOMM_SUCCESS && ex == 0,
           "the first four keep working");
  mc_store_close(c[3]);
  c[3] = NULL;
  for (int i = 0; i < 50 && c[3] == NULL; i++)
    if (mc_store_connect(HOST, port, ST_AUTH, mc_now_ms() + 1000, &c[3], &err) != 0) sleep_ms(20);
  MC_CHECK(c[3] != NULL, "a client connects once one has left: %s", err.msg);
  for (int i = 0; i < 4; i++) mc_store_close(c[i]);
  mc_store_server_stop(srv);
}

static long rss_kib(void) {
  FILE *f = fopen("/proc/self/statm", "r");
  long pages = 0, res = 0;
  if (f != NULL) {
    if (fscanf(f, "%ld %ld", &pages, &res) != 2) res = 0;
    fclose(f);
  }
  return res * (sysconf(_SC_PAGESIZE) / 1024);
}

/* An authenticated connection as an observer; -1 on failure. */
static int raw_authed(int port, raw_t *a) {
  return raw_open(port, a) == 0 && raw_hello(a, ST_AUTH) == MC_STORE_OK ? 0 : -1;
}

/* Values over the limit and lengths announced to make the server allocate: refused before any
   allocation (the server's process grows by no more than a few MiB), the attacker dropped,
   real ranks served. */
static void test_oversized(void) {
  mc_store_server_t *srv = NULL;
  mc_store_server_opts_t o = st_opts(); /* 1 MiB values, 64 MiB in all */
  int port = start_server(&o, &srv);
  if (port < 0) return;
  long rss0 = rss_kib();
  struct {
    uint32_t op;
    uint64_t len;
    int authed, status; /* status -1: dropped without a reply */
  } atk[] = {{MC_STORE_OP_SET, (uint64_t)1 << 20 | 1, 1, MC_STORE_TOO_LARGE},
             {MC_STORE_OP_SET, (uint64_t)60 << 20, 1, MC_STORE_TOO_LARGE},
             {MC_STORE_OP_SET, (uint64_t)512 << 20, 1, -1},
             {MC_STORE_OP_SET, UINT64_MAX, 1, -1},
             {MC_STORE_OP_HELLO, (uint64_t)512 << 20, 0, -1},
             {MC_STORE_OP_GET, (uint64_t)512 << 20, 1, -1}};
  for (size_t i = 0; i < sizeof(atk) / sizeof(atk[0]); i++) {
    raw_t a;
    int ready = atk[i].authed ? raw_authed(port, &a) : raw_open(port, &a);
    mc_store_req_t q = st_req(atk[i].op, "atk/k");
    q.value_len = atk[i].len;
    if (atk[i].op == MC_STORE_OP_HELLO) q.rank = 0;
    uint8_t rep[MC_STORE_REP_BYTES];
    mc_store_rep_t p = {0, 0, 0};
    int got = ready == 0 && raw_request(a.fd, &q, "atk/k") == 0
                  ? raw_read(a.fd, rep, sizeof(rep), 2000)
                  : -2;
    if (got == 1) mc_store_rep_decode(rep, MC_STORE_OP_SET, &p);
    int ok = atk[i].status < 0 ? got == 0 : got == 1 && (int)p.status == atk[i].status;
    MC_CHECK(ok && raw_closed(a.fd, 2000), "%s announcing %llu bytes: read %d, status %u",
             mc_store_op_name(atk[i].op), (unsigned long long)atk[i].len, got, p.status);
    raw_close(&a);
  }
  long grown = rss_kib() - rss0;
  printf("  after the announced-length attacks the process grew by %ld KiB\n", grown);
  MC_CHECK(grown < 8 * 1024, "the process grew by %ld KiB", grown);
  /* Through the client: the limit is known from the handshake, so nothing is sent. */
  mc_store_t *c = st_connect(port, "big", 0);
  mc_err_t err;
  uint8_t small[8] = {0};
  MC_CHECK(c != NULL &&
               mc_store_set(c, "big/k", small, ((size_t)1 << 20) + 1, 0, 0, &err) ==
                   MOECOMM_ERR_INVALID_ARGUMENT &&
               strstr(err.msg, "1048576") != NULL,
           "a value over 1 MiB through the client: %s", err.msg);
  int ok = 0;
  real_ranks_exchange(port, "after-big", &ok);
  MC_CHECK(ok, "real ranks are served after the attacks");
  mc_store_close(c);
  mc_store_server_stop(srv);
}

/* The store's total is bounded: sets beyond it are refused with NO_MEMORY on a connection that
   keeps working, and the memory held stays near the bound. */
static void test_store_full(void) {
  mc_store_server_t *srv = NULL;
  mc_store_server_opts_t o = st_opts();
  o.max_total_bytes = (size_t)8 << 20; /* 8 MiB, 1 MiB values */
  int port = start_server(&o, &srv);
  mc_store_t *c = port > 0 ? st_connect(port, "full", 0) : NULL;
  if (c == NULL) goto out;
  uint8_t *v = malloc((size_t)1 << 20);
  mc_err_t err;
  int stored = 0;
  moecomm_result_t r = MOECOMM_SUCCESS;
  if (!MC_CHECK(v != NULL, "malloc")) goto out;
  fill_bytes(v, (size_t)1 << 20, 1);
  for (int i = 0; i < 20 && r == MOECOMM_SUCCESS; i++) {
    char key[32];
    snprintf(key, sizeof(key), "full/%d", i);
    r = mc_store_set(c, key, v, (size_t)1 << 20, 0, 0, &err);
    stored += r == MOECOMM_SUCCESS;
  }
  MC_CHECK(r == MOECOMM_ERR_NO_MEMORY && stored == 7 && strstr(err.msg, "max_total_bytes") != NULL,
           "stored %d MiB in an 8 MiB store, then r=%d: %s", stored, (int)r, err.msg);
  int ex = -1;
  MC_CHECK(mc_store_check(c, "full/0", &ex, &err) == MOECOMM_SUCCESS && ex == 1 &&
               mc_store_check(c, "full/7", &ex, &err) == MOECOMM_SUCCESS && ex == 0,
           "the connection works after the refusal; the refused key is absent");
  free(v);
out:
  mc_store_close(c);
  mc_store_server_stop(srv);
}

/* A GET asking for 2^63 ms waits only the server's timeout. */
static void test_wait_cap(void) {
  mc_store_server_t *srv = NULL;
  mc_store_server_opts_t o = st_opts();
  o.timeout_ms = 300;
  int port = start_server(&o, &srv);
  raw_t a;
  if (port < 0 || !MC_CHECK(raw_authed(port, &a) == 0, "raw client")) goto out;
  mc_store_req_t q = st_req(MC_STORE_OP_GET, "never/k");
  q.timeout_ms = (uint64_t)1 << 63;
  uint8_t rep[MC_STORE_REP_BYTES];
  mc_store_rep_t p = {0, 0, 0};
  int64_t t0 = mc_now_ms();
  int got = raw_request(a.fd, &q, "never/k") == 0 ? raw_read(a.fd, rep, sizeof(rep), 3000) : -2;
  int64_t dt = mc_now_ms() - t0;
  if (got == 1) mc_store_rep_decode(rep, MC_STORE_OP_GET, &p);
  MC_CHECK(got == 1 && p.status == MC_STORE_TIMEOUT && dt >= 290 && dt < 1500,
           "a 2^63 ms wait answered %d (status %u) after %lld ms; the cap is 300 ms", got, p.status,
           (long long)dt);
  raw_close(&a);
  /* The client says so. */
  mc_store_t *c = st_connect(port, "cap", 0);
  mc_err_t err;
  size_t len = 5;
  t0 = mc_now_ms();
  moecomm_result_t r = c != NULL ? mc_store_get(c, "never/k", -1, NULL, 0, &len, INT64_MAX, &err)
                                 : MOECOMM_ERR_INTERNAL;
  dt = mc_now_ms() - t0;
  MC_CHECK(r == MOECOMM_ERR_TIMEOUT && dt < 1500 && len == 5 && strstr(err.msg, "caps") != NULL,
           "get without a deadline: r=%d after %lld ms: %s", (int)r, (long long)dt, err.msg);
  mc_store_close(c);
out:
  mc_store_server_stop(srv);
}

/* ---- death detection ----------------------------------------------------------------------- */

/* A get running in its own thread (threads never call MC_CHECK). */
typedef struct waiter {
  mc_store_t *s;
  const char *key;
  int writer;
  int64_t deadline, done_ms;
  moecomm_result_t r;
  size_t len;
  mc_err_t err;
  pthread_t th;
} waiter_t;

static void *waiter_main(void *arg) {
  waiter_t *w = arg;
  uint8_t buf[64];
  w->len = 777;
  w->r = mc_store_get(w->s, w->key, w->writer, buf, sizeof(buf), &w->len, w->deadline, &w->err);
  w->done_ms = mc_now_ms();
  return NULL;
}

static int waiter_start(waiter_t *w, mc_store_t *s, const char *key, int writer) {
  memset(w, 0, sizeof(*w));
  w->s = s;
  w->key = key;
  w->writer = writer;
  w->deadline = mc_now_ms() + 20000;
  return MC_CHECK(pthread_create(&w->th, NULL, waiter_main, w) == 0, "pthread_create") ? 0 : -1;
}

/* A child that checks in as rank of ns, says 'r', and waits to be killed. */
static pid_t rank_child(int port, const char *ns, int rank) {
  int pfd[2];
  if (pipe(pfd) != 0) return -1;
  fflush(stdout);
  pid_t pid = fork();
  if (pid == 0) {
    mc_err_t err;
    mc_store_t *s = NULL;
    char c = mc_store_connect(HOST, port, st_secret, sizeof(st_secret), ns, rank,
                              mc_now_ms() + 5000, &s, &err) == MOECOMM_SUCCESS
                 ? 'r'
                 : 'x';
    if (write(pfd[1], &c, 1) != 1) _exit(1);
    for (;;) pause();
  }
  close(pfd[1]);
  char c = 0;
  if (pid > 0 && (read(pfd[0], &c, 1) != 1 || c != 'r')) {
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    pid = -1;
  }
  close(pfd[0]);
  return pid;
}

/* The writer's process is killed while rank 0 waits for its key: PEER within a second, naming
   the rank; later gets naming it fail at once; once it checks in again, gets wait again. */
static void test_writer_killed(int port) {
  pid_t pid = rank_child(port, "death", 2);
  mc_store_t *r0 = st_connect(port, "death", 0);
  mc_store_t *other = st_connect(port, "death-b", 0); /* rank 2 of another namespace */
  waiter_t w, wb;
  if (!MC_CHECK(pid > 0, "rank 2's process") || r0 == NULL || other == NULL) goto out;
  if (waiter_start(&w, r0, "death/rec2", 2) != 0) goto out;
  if (waiter_start(&wb, other, "death/rec2", 2) != 0) goto out;
  sleep_ms(200);
  int64_t t0 = mc_now_ms();
  kill(pid, SIGKILL);
  waitpid(pid, NULL, 0);
  pthread_join(w.th, NULL);
  int64_t dt = w.done_ms - t0;
  printf("  rank 2 killed: rank 0's get ended after %lld ms: %s\n", (long long)dt, w.err.msg);
  MC_CHECK(w.r == MOECOMM_ERR_PEER && dt < 1000 && w.len == 777,
           "get of a killed writer's key: r=%d after %lld ms", (int)w.r, (long long)dt);
  MC_CHECK(strstr(w.err.msg,
                  "rank 2 disconnected (process exited?) while rank 0 waited for "
                  "death/rec2") != NULL,
           "message: %s", w.err.msg);
  /* Namespace death-b has no rank 2: its waiter is not disturbed. */
  mc_err_t err;
  uint8_t v[4] = {1, 2, 3, 4};
  MC_CHECK(mc_store_set(r0, "death/rec2", v, 4, 1, 0, &err) == MOECOMM_SUCCESS, "%s", err.msg);
  pthread_join(wb.th, NULL);
  MC_CHECK(wb.r == MOECOMM_SUCCESS && wb.len == 4, "another namespace's waiter: r=%d %s", (int)wb.r,
           wb.err.msg);
  /* Asked after the death: at once. */
  size_t len = 777;
  t0 = mc_now_ms();
  moecomm_result_t r = mc_store_get(r0, "death/other", 2, NULL, 0, &len, mc_now_ms() + 20000, &err);
  MC_CHECK(r == MOECOMM_ERR_PEER && mc_now_ms() - t0 < 200 && strstr(err.msg, "rank 2") != NULL,
           "get naming a writer already gone: r=%d after %lld ms", (int)r,
           (long long)(mc_now_ms() - t0));
  /* Back again: gets naming it wait for it (and time out normally here). */
  mc_store_t *again = st_connect(port, "death", 2);
  r = mc_store_get(r0, "death/other", 2, NULL, 0, &len, mc_now_ms() + 200, &err);
  MC_CHECK(again != NULL && r == MOECOMM_ERR_TIMEOUT, "get after rank 2 came back: r=%d %s", (int)r,
           err.msg);
  mc_store_close(again);
out:
  mc_store_close(r0);
  mc_store_close(other);
}

/* A writer that says goodbye: waits on it end at once; a key it set before is still served. */
static void test_writer_goodbye(int port) {
  mc_store_t *r0 = st_connect(port, "bye", 0), *r3 = st_connect(port, "bye", 3),
             *r4 = st_connect(port, "bye", 4);
  waiter_t w;
  mc_err_t err;
  if (r0 == NULL || r3 == NULL || r4 == NULL) goto out;
  uint8_t v[8] = {8, 7, 6, 5, 4, 3, 2, 1}, got[8];
  MC_CHECK(mc_store_set(r4, "bye/rec4", v, 8, 1, 0, &err) == MOECOMM_SUCCESS, "%s", err.msg);
  mc_store_close(r4);
  r4 = NULL;
  if (waiter_start(&w, r0, "bye/rec3", 3) != 0) goto out;
  sleep_ms(100);
  int64_t t0 = mc_now_ms();
  mc_store_close(r3);
  r3 = NULL;
  pthread_join(w.th, NULL);
  MC_CHECK(w.r == MOECOMM_ERR_PEER && w.done_ms - t0 < 1000 &&
               strstr(w.err.msg, "rank 3 said goodbye") != NULL,
           "get of a departed writer's key: r=%d after %lld ms: %s", (int)w.r,
           (long long)(w.done_ms - t0), w.err.msg);
  size_t len = 0;
  MC_CHECK(mc_store_get(r0, "bye/rec4", 4, got, sizeof(got), &len, mc_now_ms() + 1000, &err) ==
                   MOECOMM_SUCCESS &&
               len == 8 && memcmp(got, v, 8) == 0,
           "a key its writer set before leaving is served: %s", err.msg);
out:
  mc_store_close(r0);
  mc_store_close(r3);
  mc_store_close(r4);
}

/* Rank 0's process (the server) is killed: a waiting client reports PEER at once. */
static void test_server_killed(void) {
  child_server_t cs;
  mc_store_server_opts_t o = st_opts();
  waiter_t w;
  if (!MC_CHECK(child_server_start(&cs, 1024, &o) == 0, "server process")) goto out;
  mc_store_t *c = st_connect(cs.port, "sk", 1);
  if (c == NULL || waiter_start(&w, c, "sk/k", 0) != 0) goto out;
  sleep_ms(150);
  int64_t t0 = mc_now_ms();
  child_server_stop(&cs);
  pthread_join(w.th, NULL);
  MC_CHECK(w.r == MOECOMM_ERR_PEER && w.done_ms - t0 < 1000 &&
               strstr(w.err.msg, "closed the connection") != NULL,
           "get when the server dies: r=%d after %lld ms: %s", (int)w.r,
           (long long)(w.done_ms - t0), w.err.msg);
  mc_err_t err;
  int ex;
  t0 = mc_now_ms();
  MC_CHECK(mc_store_check(c, "sk/k", &ex, &err) == MOECOMM_ERR_PEER && mc_now_ms() - t0 < 100,
           "the next call fails at once");
  mc_store_close(c);
out:
  child_server_stop(&cs);
}

/* A store that greets, then goes away during the handshake and stops listening: the client
   reports PEER at once instead of retrying until its deadline. */
static void *vanishing_main(void *arg) {
  int lfd = *(int *)arg;
  int fd = accept(lfd, NULL, NULL);
  close(lfd);
  if (fd < 0) return NULL;
  uint8_t buf[MC_STORE_REP_BYTES + MC_STORE_NONCE_BYTES];
  mc_store_rep_t rep = {MC_STORE_MAGIC, MC_STORE_CHALLENGE, MC_STORE_NONCE_BYTES};
  mc_store_rep_encode(&rep, buf);
  memset(buf + MC_STORE_REP_BYTES, 1, MC_STORE_NONCE_BYTES);
  (void)raw_send(fd, buf, sizeof(buf));
  sleep_ms(50);
  close(fd);
  return NULL;
}

static void test_server_vanishes(void) {
  int lfd = -1;
  pthread_t th;
  int port = st_fake_service(vanishing_main, &lfd, &th);
  if (!MC_CHECK(port > 0, "vanishing service")) return;
  mc_err_t err;
  mc_store_t *s = (mc_store_t *)&err;
  int64_t t0 = mc_now_ms();
  moecomm_result_t r = mc_store_connect(HOST, port, ST_AUTH, t0 + 10000, &s, &err);
  int64_t dt = mc_now_ms() - t0;
  pthread_join(th, NULL);
  MC_CHECK(r == MOECOMM_ERR_PEER && dt < 2000 && strstr(err.msg, "stopped listening") != NULL,
           "a store that vanished mid-handshake: r=%d after %lld ms: %s", (int)r, (long long)dt,
           err.msg);
}

int main(int argc, char **argv) {
  mc_test_init("store_attack", argc, argv);
  signal(SIGPIPE, SIG_IGN); /* attackers write to connections the server closed */
  st_init_secret();
  test_flood(1024); /* forks: before this process has threads */
  test_flood(40);   /* accept runs out of descriptors */
  test_server_killed();
  mc_store_server_t *srv = NULL;
  mc_store_server_opts_t o = st_opts();
  int port = start_server(&o, &srv);
  if (port < 0) return mc_test_finish();
  test_duplicate_rank(port); /* forks: first, while few threads exist */
  test_writer_killed(port);
  test_wrong_secret(port);
  test_no_proof(port);
  test_write_once(port);
  test_writer_goodbye(port);
  mc_store_server_stop(srv);
  test_impostor_server();
  test_bind();
  test_max_clients();
  test_oversized();
  test_store_full();
  test_wait_cap();
  test_server_vanishes();
  return mc_test_finish();
}
