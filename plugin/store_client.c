/* SPDX-License-Identifier: Apache-2.0 */
/* store_client.c - the rendezvous store's blocking client (store_client.h).
 *
 * The client holds a mutex for a whole exchange (request and reply), so threads may share one
 * connection.  A GET's wait happens on the server, which answers "timeout" itself, so the client
 * never abandons a request and never reads a stale reply. */
#include "store_client.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "sha256.h"
#include "store_wire.h"
#include "util.h"

/* A GET's reply may come this long after its deadline before the server counts as unresponsive. */
#define MC_STORE_GRACE_MS 5000
/* Any other exchange fails when no byte moves for this long. */
#define MC_STORE_STALL_MS 30000
#define MC_STORE_INLINE_SEND 4096

typedef enum { MC_IO_OK = 0, MC_IO_CLOSED, MC_IO_TIMEOUT, MC_IO_ERROR } mc_store_io_t;

struct mc_store {
  int fd;
  pthread_mutex_t lock; /* one exchange at a time on the connection */
  char where[300];      /* "host:port" for messages */
  int broken;           /* an exchange failed midway: the stream is out of step for good */
  char broken_msg[MC_ERR_MSG_MAX];
  mc_store_io_t last_io;  /* how the last failed transfer ended */
  int rank;               /* checked in as; -1 observer */
  mc_store_welcome_t lim; /* the server's limits */
};

/* t + ms without overflow, for callers that pass INT64_MAX as "no deadline". */
static int64_t mc_store_later(int64_t t, int64_t ms) {
  return t > INT64_MAX - ms ? INT64_MAX : t + ms;
}

/* Waits for events until deadline: 1 ready, 0 timed out, -1 poll failed (errno). */
static int mc_store_wait(int fd, short events, int64_t deadline) {
  for (;;) {
    struct pollfd p = {fd, events, 0};
    int64_t left = deadline - mc_now_ms();
    if (left < 0) left = 0;
    int n = poll(&p, 1, (int)MC_MIN(left, (int64_t)INT_MAX));
    if (n > 0) return 1;
    if (n == 0) return 0;
    if (errno != EINTR) return -1;
  }
}

/* Sends everything; the deadline moves on while bytes move, so only a stall fails. */
static mc_store_io_t mc_store_send_all(int fd, const void *buf, size_t len, int64_t deadline,
                                       int *errno_p) {
  const unsigned char *p = buf;
  while (len > 0) {
    ssize_t n = send(fd, p, len, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n > 0) {
      p += n;
      len -= (size_t)n;
      deadline = MC_MAX(deadline, mc_now_ms() + MC_STORE_STALL_MS);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
      *errno_p = errno;
      return errno == EPIPE || errno == ECONNRESET ? MC_IO_CLOSED : MC_IO_ERROR;
    }
    int w = mc_store_wait(fd, POLLOUT, deadline);
    if (w == 0) return MC_IO_TIMEOUT;
    if (w < 0) {
      *errno_p = errno;
      return MC_IO_ERROR;
    }
  }
  return MC_IO_OK;
}

/* Receives exactly len bytes (dst NULL: discards them). */
static mc_store_io_t mc_store_recv_all(int fd, void *dst, size_t len, int64_t deadline,
                                       int *errno_p) {
  unsigned char scratch[16384];
  unsigned char *p = dst;
  while (len > 0) {
    void *to = p != NULL ? (void *)p : (void *)scratch;
    size_t want = p != NULL ? len : MC_MIN(len, sizeof(scratch));
    ssize_t n = recv(fd, to, want, MSG_DONTWAIT);
    if (n > 0) {
      if (p != NULL) p += n;
      len -= (size_t)n;
      deadline = MC_MAX(deadline, mc_now_ms() + MC_STORE_STALL_MS);
      continue;
    }
    if (n == 0) return MC_IO_CLOSED;
    if (errno == EINTR) continue;
    if (errno != EAGAIN && errno != EWOULDBLOCK) {
      *errno_p = errno;
      return errno == ECONNRESET ? MC_IO_CLOSED : MC_IO_ERROR;
    }
    int w = mc_store_wait(fd, POLLIN, deadline);
    if (w == 0) return MC_IO_TIMEOUT;
    if (w < 0) {
      *errno_p = errno;
      return MC_IO_ERROR;
    }
  }
  return MC_IO_OK;
}

/* ---- failures ----------------------------------------------------------------------------- */

/* A failure in the middle of an exchange leaves the stream out of step: the connection is marked
   broken and every later call fails with the same sentence. */
static moecomm_result_t mc_store_fail(mc_store_t *s, mc_err_t *err, moecomm_result_t code,
                                      const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static moecomm_result_t mc_store_fail(mc_store_t *s, mc_err_t *err, moecomm_result_t code,
                                      const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(s->broken_msg, sizeof(s->broken_msg), fmt, ap);
  va_end(ap);
  s->broken = 1;
  return mc_err_set(err, code, "%s", s->broken_msg);
}

static moecomm_result_t mc_store_io_fail(mc_store_t *s, mc_store_io_t io, int e, uint32_t op,
                                         const char *key, int64_t waited_ms, mc_err_t *err) {
  const char *what = mc_store_op_name(op);
  const char *q = key != NULL ? " of key '" : "";
  const char *k = key != NULL ? key : "";
  const char *qe = key != NULL ? "'" : "";
  s->last_io = io;
  switch (io) {
    case MC_IO_CLOSED:
      return mc_store_fail(s, err, MOECOMM_ERR_PEER,
                           "rendezvous store at %s closed the connection during the %s%s%s%s "
                           "(rank 0 exited or stopped its store)",
                           s->where, what, q, k, qe);
    case MC_IO_TIMEOUT:
      return mc_store_fail(s, err, MOECOMM_ERR_PEER,
                           "rendezvous store at %s did not answer the %s%s%s%s within %lld ms: the "
                           "server is unresponsive",
                           s->where, what, q, k, qe, (long long)waited_ms);
    default:
      return mc_store_fail(s, err, MOECOMM_ERR_PEER,
                           "rendezvous store at %s: the %s%s%s%s failed: %s", s->where, what, q, k,
                           qe, strerror(e));
  }
}

/* ---- exchanges ---------------------------------------------------------------------------- */

/* Reads and checks a reply header to op; the caller reads what follows. */
static moecomm_result_t mc_store_read_reply(mc_store_t *s, uint32_t op, const char *key,
                                            int64_t start, int64_t deadline, mc_store_rep_t *rep_p,
                                            mc_err_t *err) {
  uint8_t rep[MC_STORE_REP_BYTES];
  int e = 0;
  mc_store_io_t io = mc_store_recv_all(s->fd, rep, sizeof(rep), deadline, &e);
  if (io != MC_IO_OK) return mc_store_io_fail(s, io, e, op, key, mc_now_ms() - start, err);
  const char *why = mc_store_rep_decode(rep, op, rep_p);
  if (why != NULL)
    return mc_store_fail(s, err, MOECOMM_ERR_PEER,
                         "rendezvous store at %s answered the %s with a malformed reply (%s; magic "
                         "%#x, status %u): is another service listening on that port, or a "
                         "different moecomm version?",
                         s->where, mc_store_op_name(op), why, rep_p->magic, rep_p->status);
  return MOECOMM_SUCCESS;
}

/* Reads a reply's body of up to MC_STORE_TEXT_MAX bytes as printable text. */
static moecomm_result_t mc_store_read_text(mc_store_t *s, uint32_t op, const char *key,
                                           const mc_store_rep_t *rep, char *text, size_t size,
                                           mc_err_t *err) {
  uint8_t raw[MC_STORE_TEXT_MAX];
  int e = 0;
  size_t n = (size_t)MC_MIN(rep->value_len, (uint64_t)sizeof(raw));
  mc_store_io_t io = mc_store_recv_all(s->fd, raw, n, mc_now_ms() + MC_STORE_STALL_MS, &e);
  if (io != MC_IO_OK) return mc_store_io_fail(s, io, e, op, key, MC_STORE_STALL_MS, err);
  mc_store_printable(raw, n, text, size);
  return MOECOMM_SUCCESS;
}

/* One request and its reply header; the caller holds the lock and reads any body that follows. */
static moecomm_result_t mc_store_request(mc_store_t *s, const mc_store_req_t *q, const char *key,
                                         const void *value, int64_t reply_deadline,
                                         mc_store_rep_t *rep_p, mc_err_t *err) {
  uint8_t buf[MC_STORE_REQ_BYTES + MC_STORE_KEY_MAX + MC_STORE_INLINE_SEND];
  size_t len = (size_t)q->value_len;
  int e = 0;
  int64_t start = mc_now_ms();
  mc_store_req_encode(q, buf);
  if (q->key_len > 0) memcpy(buf + MC_STORE_REQ_BYTES, key, q->key_len);
  size_t head = MC_STORE_REQ_BYTES + q->key_len;
  /* Small values go in the same segment as the header. */
  int inline_value = len <= MC_STORE_INLINE_SEND;
  if (inline_value && len > 0) {
    memcpy(buf + head, value, len);
    head += len;
  }
  mc_store_io_t io = mc_store_send_all(s->fd, buf, head, start + MC_STORE_STALL_MS, &e);
  if (io == MC_IO_OK && !inline_value)
    io = mc_store_send_all(s->fd, value, len, mc_now_ms() + MC_STORE_STALL_MS, &e);
  if (io != MC_IO_OK) return mc_store_io_fail(s, io, e, q->op, key, MC_STORE_STALL_MS, err);
  return mc_store_read_reply(s, q->op, key, start, reply_deadline, rep_p, err);
}

static mc_store_req_t mc_store_req(uint32_t op, size_t key_len) {
  mc_store_req_t q;
  memset(&q, 0, sizeof(q));
  q.magic = MC_STORE_MAGIC;
  q.op = op;
  q.key_len = (uint32_t)key_len;
  q.rank = -1;
  return q;
}

/* ---- the handshake ------------------------------------------------------------------------ */

/* Reads the server's answer to HELLO and checks its proof of the secret. */
static moecomm_result_t mc_store_welcomed(mc_store_t *s, const uint8_t *secret, size_t secret_len,
                                          const uint8_t *challenge, const mc_store_hello_t *h,
                                          const char *ns, const mc_store_rep_t *rep,
                                          mc_err_t *err) {
  char text[MC_STORE_TEXT_MAX + 1];
  uint8_t body[MC_STORE_WELCOME_BYTES], want[MC_STORE_MAC_BYTES];
  uint32_t op = MC_STORE_OP_HELLO;
  int e = 0;
  moecomm_result_t r;
  if (rep->status != MC_STORE_OK) {
    if ((r = mc_store_read_text(s, op, NULL, rep, text, sizeof(text), err)) != MOECOMM_SUCCESS)
      return r;
    if (rep->status == MC_STORE_DENIED)
      return mc_err_set(err, MOECOMM_ERR_CONFIG,
                        "rendezvous store at %s refused this process's proof of the secret (%s): "
                        "the ranks were not given the same secret",
                        s->where, text);
    if (rep->status == MC_STORE_RANK_TAKEN)
      return mc_err_set(err, MOECOMM_ERR_CONFIG,
                        "rendezvous store at %s: %s; two processes were given the same rank",
                        s->where, text);
    return mc_err_set(err, MOECOMM_ERR_PEER, "rendezvous store at %s refused the connection: %s",
                      s->where, text);
  }
  mc_store_io_t io =
      mc_store_recv_all(s->fd, body, sizeof(body), mc_now_ms() + MC_STORE_STALL_MS, &e);
  if (io != MC_IO_OK) return mc_store_io_fail(s, io, e, op, NULL, MC_STORE_STALL_MS, err);
  const char *why = mc_store_welcome_decode(body, &s->lim);
  if (why != NULL)
    return mc_err_set(err, MOECOMM_ERR_PEER,
                      "rendezvous store at %s answered the handshake with unusable limits (%s)",
                      s->where, why);
  mc_store_auth_mac(secret, secret_len, 'S', challenge, h->nonce, ns, strlen(ns), s->rank, h->pid,
                    want);
  if (!mc_sha256_equal(want, s->lim.mac, sizeof(want)))
    return mc_err_set(err, MOECOMM_ERR_PEER,
                      "the server at %s did not prove that it knows the secret: it is not the "
                      "rendezvous store of these ranks (or another service answers there)",
                      s->where);
  return MOECOMM_SUCCESS;
}

/* The handshake on s->fd.  *reached_p = 1 once a store's greeting arrived; *retry_p = 1 when the
   server closed the connection (stopping, or dropping connections that have not authenticated),
   so another attempt may work. */
static moecomm_result_t mc_store_handshake(mc_store_t *s, const uint8_t *secret, size_t secret_len,
                                           const char *ns, int64_t deadline, int *reached_p,
                                           int *retry_p, mc_err_t *err) {
  uint8_t challenge[MC_STORE_NONCE_BYTES], buf[MC_STORE_HELLO_BYTES];
  mc_store_rep_t rep;
  mc_store_hello_t h;
  int e = 0;
  int64_t start = mc_now_ms(), until = mc_store_later(MC_MAX(deadline, start), MC_STORE_GRACE_MS);
  uint32_t op = MC_STORE_OP_GREETING;
  s->last_io = MC_IO_OK;
  moecomm_result_t r = mc_store_read_reply(s, op, NULL, start, until, &rep, err);
  if (r == MOECOMM_SUCCESS) {
    mc_store_io_t io = mc_store_recv_all(s->fd, challenge, sizeof(challenge), until, &e);
    if (io != MC_IO_OK) r = mc_store_io_fail(s, io, e, op, NULL, mc_now_ms() - start, err);
  }
  if (r == MOECOMM_SUCCESS) {
    *reached_p = 1;
    if (getrandom(h.nonce, sizeof(h.nonce), 0) != (ssize_t)sizeof(h.nonce))
      return mc_err_set(err, MOECOMM_ERR_BACKEND, "rendezvous store: getrandom: %s",
                        strerror(errno));
    h.pid = (uint32_t)getpid();
    mc_store_auth_mac(secret, secret_len, 'C', challenge, h.nonce, ns, strlen(ns), s->rank, h.pid,
                      h.mac);
    mc_store_hello_encode(&h, buf);
    mc_store_req_t q = mc_store_req(MC_STORE_OP_HELLO, strlen(ns));
    q.rank = s->rank;
    q.value_len = sizeof(buf);
    r = mc_store_request(s, &q, ns, buf, until, &rep, err);
  }
  if (r == MOECOMM_SUCCESS)
    r = mc_store_welcomed(s, secret, secret_len, challenge, &h, ns, &rep, err);
  *retry_p = r != MOECOMM_SUCCESS && s->last_io == MC_IO_CLOSED;
  return r;
}

/* 1 when a socket is connected to itself: on loopback, connecting to a free port in the ephemeral
   range can pick that very port as the source and "succeed". */
static int mc_store_self_connected(int fd) {
  struct sockaddr_storage a, b;
  socklen_t la = sizeof(a), lb = sizeof(b);
  memset(&a, 0, sizeof(a));
  memset(&b, 0, sizeof(b));
  if (getsockname(fd, (struct sockaddr *)&a, &la) != 0 ||
      getpeername(fd, (struct sockaddr *)&b, &lb) != 0)
    return 0;
  return la == lb && memcmp(&a, &b, la) == 0;
}

/* One attempt over the resolved addresses: a connected socket, or -1 with why in reason and
   the last errno in *errno_p. */
static int mc_store_try_connect(const char *host, int port, int64_t deadline, char *reason,
                                size_t reason_size, int *errno_p) {
  struct addrinfo hints, *res = NULL;
  char serv[16];
  memset(&hints, 0, sizeof(hints));
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICSERV;
  snprintf(serv, sizeof(serv), "%d", port);
  *errno_p = 0;
  int g = getaddrinfo(host, serv, &hints, &res);
  if (g != 0) {
    /* A name may appear late (cluster DNS), so this is retried like a refused connection. */
    snprintf(reason, reason_size, "cannot resolve '%s': %s", host,
             g == EAI_SYSTEM ? strerror(errno) : gai_strerror(g));
    return -1;
  }
  int fd = -1;
  for (struct addrinfo *ai = res; ai != NULL && fd < 0; ai = ai->ai_next) {
    fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
    if (fd < 0) {
      *errno_p = errno;
      snprintf(reason, reason_size, "socket: %s", strerror(errno));
      continue;
    }
    int e = 0;
    if (connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
      e = errno;
      if (e == EINPROGRESS || e == EINTR) {
        /* Give a slow network at least a moment even when the deadline is already near. */
        int w = mc_store_wait(fd, POLLOUT, MC_MAX(deadline, mc_now_ms() + 50));
        socklen_t el = sizeof(e);
        if (w == 0)
          e = ETIMEDOUT;
        else if (w < 0)
          e = errno;
        else if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &el) != 0)
          e = errno;
      }
    }
    if (e == 0 && mc_store_self_connected(fd)) e = ECONNREFUSED;
    if (e != 0) {
      *errno_p = e;
      snprintf(reason, reason_size, "%s", strerror(e));
      close(fd);
      fd = -1;
    }
  }
  freeaddrinfo(res);
  return fd;
}

/* ---- connections -------------------------------------------------------------------------- */

static moecomm_result_t mc_store_check_identity(const uint8_t *secret, size_t secret_len,
                                                const char *ns, int rank, mc_store_t **store_p,
                                                mc_err_t *err) {
  if (store_p == NULL || secret == NULL || ns == NULL)
    return mc_err_set(err, MOECOMM_ERR_INVALID_ARGUMENT, "rendezvous store: %s is NULL",
                      store_p == NULL  ? "store_p"
                      : secret == NULL ? "the secret"
                                       : "the namespace");
  if (secret_len < MC_STORE_SECRET_MIN || secret_len > MC_STORE_SECRET_MAX)
    return mc_err_set(err, MOECOMM_ERR_INVALID_ARGUMENT,
                      "rendezvous store: the secret is %zu bytes; it must be %d to %d bytes",
                      secret_len, MC_STORE_SECRET_MIN, MC_STORE_SECRET_MAX);
  size_t n = strlen(ns);
  if (n == 0 || n > MC_STORE_KEY_MAX || rank < -1)
    return mc_err_set(err, MOECOMM_ERR_INVALID_ARGUMENT,
                      "rendezvous store: namespace of %zu bytes (1 to %d) and rank %d (-1 or more) "
                      "are not a valid identity",
                      n, MC_STORE_KEY_MAX, rank);
  return MOECOMM_SUCCESS;
}

static mc_store_t *mc_store_new(const char *where, int rank, mc_err_t *err) {
  mc_store_t *s = calloc(1, sizeof(*s));
  if (s == NULL) {
    mc_err_set(err, MOECOMM_ERR_NO_MEMORY, "rendezvous store: out of host memory");
    return NULL;
  }
  int e = pthread_mutex_init(&s->lock, NULL);
  if (e != 0) {
    free(s);
    mc_err_set(err, MOECOMM_ERR_BACKEND, "rendezvous store: mutex init: %s", strerror(e));
    return NULL;
  }
  s->fd = -1;
  s->rank = rank;
  snprintf(s->where, sizeof(s->where), "%s", where);
  return s;
}

static void mc_store_free(mc_store_t *s) {
  if (s->fd >= 0 && close(s->fd) != 0)
    MC_TRACE("rendezvous store: close(%s): %s", s->where, strerror(errno));
  pthread_mutex_destroy(&s->lock);
  free(s);
}

moecomm_result_t mc_store_open_fd(int fd, const char *where, const uint8_t *secret,
                                  size_t secret_len, const char *ns, int rank, int64_t deadline_ms,
                                  mc_store_t **store_p, mc_err_t *err) {
  moecomm_result_t r = mc_store_check_identity(secret, secret_len, ns, rank, store_p, err);
  mc_store_t *s =
      r == MOECOMM_SUCCESS ? mc_store_new(where != NULL ? where : "?", rank, err) : NULL;
  if (s == NULL) {
    if (fd >= 0) close(fd);
    return r != MOECOMM_SUCCESS ? r : MOECOMM_ERR_NO_MEMORY;
  }
  s->fd = fd;
  int reached = 0, retry = 0;
  r = mc_store_handshake(s, secret, secret_len, ns, deadline_ms, &reached, &retry, err);
  if (r != MOECOMM_SUCCESS) {
    mc_store_free(s);
    return r;
  }
  s->broken = 0;
  *store_p = s;
  return MOECOMM_SUCCESS;
}

/* One attempt: connected and authenticated (*done_p = 1), or why not in reason; a failure that
   another attempt will not fix is returned. */
static moecomm_result_t mc_store_attempt(mc_store_t *s, const char *host, int port,
                                         const uint8_t *secret, size_t secret_len, const char *ns,
                                         int64_t deadline, int *reached_p, int *done_p,
                                         char *reason, size_t reason_size, mc_err_t *err) {
  int e = 0, retry = 0;
  int fd = mc_store_try_connect(host, port, deadline, reason, reason_size, &e);
  if (fd < 0) {
    if (*reached_p && e == ECONNREFUSED)
      return mc_err_set(err, MOECOMM_ERR_PEER,
                        "the rendezvous store at %s was reached, then stopped listening (rank 0 "
                        "stopped its store or exited)",
                        s->where);
    return MOECOMM_SUCCESS;
  }
  int one = 1;
  if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) != 0)
    MC_TRACE("rendezvous store: TCP_NODELAY to %s failed: %s", s->where, strerror(errno));
  s->fd = fd;
  moecomm_result_t r =
      mc_store_handshake(s, secret, secret_len, ns, deadline, reached_p, &retry, err);
  s->broken = 0;
  if (r == MOECOMM_SUCCESS) {
    *done_p = 1;
    return r;
  }
  close(fd);
  s->fd = -1;
  if (!retry) return r; /* something answered, but refused us or is no store */
  /* A server that is stopping or restarting, or that dropped us among a flood of connections. */
  snprintf(reason, reason_size, "the server closed the connection during the handshake");
  return MOECOMM_SUCCESS;
}

moecomm_result_t mc_store_connect(const char *host, int port, const uint8_t *secret,
                                  size_t secret_len, const char *ns, int rank, int64_t deadline_ms,
                                  mc_store_t **store_p, mc_err_t *err) {
  moecomm_result_t r = mc_store_check_identity(secret, secret_len, ns, rank, store_p, err);
  if (r != MOECOMM_SUCCESS) return r;
  if (host == NULL || host[0] == '\0' || strlen(host) >= 256)
    return mc_err_set(err, MOECOMM_ERR_INVALID_ARGUMENT,
                      "rendezvous store: connect needs a host name of 1 to 255 characters");
  if (port < 1 || port > 65535)
    return mc_err_set(err, MOECOMM_ERR_INVALID_ARGUMENT,
                      "rendezvous store: port %d of host %s is out of range (1-65535)", port, host);
  char where[300];
  snprintf(where, sizeof(where), strchr(host, ':') != NULL ? "[%s]:%d" : "%s:%d", host, port);
  mc_store_t *s = mc_store_new(where, rank, err);
  if (s == NULL) return MOECOMM_ERR_NO_MEMORY;

  char reason[256] = "no attempt was made";
  int64_t start = mc_now_ms(), backoff = 10;
  int reached = 0, done = 0;
  for (;;) {
    r = mc_store_attempt(s, host, port, secret, secret_len, ns, deadline_ms, &reached, &done,
                         reason, sizeof(reason), err);
    if (r != MOECOMM_SUCCESS) goto fail;
    if (done) break;
    int64_t now = mc_now_ms();
    if (now >= deadline_ms) {
      r = mc_err_set(err, MOECOMM_ERR_TIMEOUT,
                     "could not connect to the rendezvous store at %s within %lld ms (last error: "
                     "%s): is rank 0 running and reachable at that address?",
                     s->where, (long long)(now - start), reason);
      goto fail;
    }
    mc_sleep_us((long)MC_MIN(backoff, deadline_ms - now) * 1000);
    backoff = MC_MIN(backoff * 2, 200);
  }
  MC_TRACE("rendezvous store: connected to %s as rank %d of '%s'", s->where, rank, ns);
  *store_p = s;
  return MOECOMM_SUCCESS;

fail:
  mc_store_free(s);
  return r;
}

void mc_store_close(mc_store_t *store) {
  if (store == NULL) return;
  if (store->fd >= 0 && !store->broken) {
    /* The goodbye tells the server this rank left on purpose; no reply comes. */
    uint8_t buf[MC_STORE_REQ_BYTES];
    mc_store_req_t q = mc_store_req(MC_STORE_OP_BYE, 0);
    int e = 0;
    mc_store_req_encode(&q, buf);
    if (mc_store_send_all(store->fd, buf, sizeof(buf), mc_now_ms() + 1000, &e) != MC_IO_OK)
      MC_TRACE("rendezvous store: goodbye to %s not sent: %s", store->where, strerror(e));
  }
  mc_store_free(store);
}

/* ---- requests ----------------------------------------------------------------------------- */

static moecomm_result_t mc_store_check_key(const mc_store_t *s, const char *key, mc_err_t *err) {
  if (s == NULL || key == NULL)
    return mc_err_set(err, MOECOMM_ERR_INVALID_ARGUMENT, "rendezvous store: %s is NULL",
                      s == NULL ? "the store" : "the key");
  size_t klen = strlen(key);
  if (klen == 0 || klen > MC_STORE_KEY_MAX)
    return mc_err_set(err, MOECOMM_ERR_INVALID_ARGUMENT,
                      "rendezvous store: key '%.64s%s' is %zu bytes; keys must be 1 to %d bytes",
                      key, klen > 64 ? "..." : "", klen, MC_STORE_KEY_MAX);
  return MOECOMM_SUCCESS;
}

/* Lock taken; fails at once when an earlier failure broke the connection. */
static moecomm_result_t mc_store_begin(mc_store_t *s, mc_err_t *err) {
  int e = pthread_mutex_lock(&s->lock);
  if (e != 0)
    return mc_err_set(err, MOECOMM_ERR_INTERNAL, "rendezvous store: mutex lock: %s", strerror(e));
  if (s->broken) {
    moecomm_result_t r = mc_err_set(
        err, MOECOMM_ERR_PEER, "connection unusable after an earlier failure: %s", s->broken_msg);
    pthread_mutex_unlock(&s->lock);
    return r;
  }
  return MOECOMM_SUCCESS;
}

/* A refused SET: the server's sentence, under the code that says what to do about it. */
static moecomm_result_t mc_store_set_refused(mc_store_t *s, const char *key,
                                             const mc_store_rep_t *rep, mc_err_t *err) {
  char text[MC_STORE_TEXT_MAX + 1];
  moecomm_result_t r = mc_store_read_text(s, MC_STORE_OP_SET, key, rep, text, sizeof(text), err);
  if (r != MOECOMM_SUCCESS) return r;
  const char *fmt = "rendezvous store at %s refused the set of key '%s': %s";
  if (rep->status == MC_STORE_TOO_LARGE) /* the server closes the connection after it */
    return mc_store_fail(s, err, MOECOMM_ERR_INVALID_ARGUMENT, fmt, s->where, key, text);
  return mc_err_set(err, rep->status == MC_STORE_FULL ? MOECOMM_ERR_NO_MEMORY : MOECOMM_ERR_CONFIG,
                    fmt, s->where, key, text);
}

moecomm_result_t mc_store_set(mc_store_t *store, const char *key, const void *value, size_t len,
                              uint32_t readers, uint32_t flags, mc_err_t *err) {
  moecomm_result_t r = mc_store_check_key(store, key, err);
  if (r != MOECOMM_SUCCESS) return r;
  if ((value == NULL && len > 0) || (flags & ~MC_STORE_WRITE_ONCE) != 0)
    return mc_err_set(err, MOECOMM_ERR_INVALID_ARGUMENT,
                      "rendezvous store: set of key '%s': value %s with %zu bytes, flags %#x "
                      "(known: MC_STORE_WRITE_ONCE)",
                      key, value == NULL ? "NULL" : "given", len, flags);
  if ((r = mc_store_begin(store, err)) != MOECOMM_SUCCESS) return r;
  if (len > store->lim.max_value) {
    r = mc_err_set(err, MOECOMM_ERR_INVALID_ARGUMENT,
                   "rendezvous store: set of key '%s': value of %zu bytes exceeds the limit of "
                   "%" PRIu64 " bytes of the store at %s",
                   key, len, store->lim.max_value, store->where);
    goto out;
  }
  mc_store_rep_t rep;
  mc_store_req_t q = mc_store_req(MC_STORE_OP_SET, strlen(key));
  q.readers = readers;
  q.flags = flags & MC_STORE_WRITE_ONCE ? MC_STORE_FLAG_WRITE_ONCE : 0;
  q.value_len = len;
  r = mc_store_request(store, &q, key, value, mc_now_ms() + MC_STORE_STALL_MS, &rep, err);
  if (r == MOECOMM_SUCCESS && rep.status != MC_STORE_OK)
    r = mc_store_set_refused(store, key, &rep, err);
out:
  pthread_mutex_unlock(&store->lock);
  return r;
}

/* A GET's answer other than the value. */
static moecomm_result_t mc_store_get_failed(mc_store_t *s, const char *key,
                                            const mc_store_rep_t *rep, int64_t wait,
                                            mc_err_t *err) {
  if (rep->status == MC_STORE_TIMEOUT) {
    char capped[96] = "";
    if ((uint64_t)wait > s->lim.max_wait_ms)
      snprintf(capped, sizeof(capped), " (the store caps each wait at %" PRIu64 " ms)",
               s->lim.max_wait_ms);
    return mc_err_set(err, MOECOMM_ERR_TIMEOUT,
                      "key '%s' did not appear in the rendezvous store at %s within %lld ms%s", key,
                      s->where, (long long)MC_MIN((uint64_t)wait, s->lim.max_wait_ms), capped);
  }
  char text[MC_STORE_TEXT_MAX + 1], me[32] = "an observer";
  moecomm_result_t r = mc_store_read_text(s, MC_STORE_OP_GET, key, rep, text, sizeof(text), err);
  if (r != MOECOMM_SUCCESS) return r;
  if (s->rank >= 0) snprintf(me, sizeof(me), "rank %d", s->rank);
  return mc_err_set(err, MOECOMM_ERR_PEER, "%s while %s waited for %s", text, me, key);
}

moecomm_result_t mc_store_get(mc_store_t *store, const char *key, int writer, void *value,
                              size_t cap, size_t *len_p, int64_t deadline_ms, mc_err_t *err) {
  moecomm_result_t r = mc_store_check_key(store, key, err);
  if (r != MOECOMM_SUCCESS) return r;
  if ((value == NULL && cap > 0) || writer < -1)
    return mc_err_set(err, MOECOMM_ERR_INVALID_ARGUMENT,
                      "rendezvous store: get of key '%s': value %s with capacity %zu, writer %d "
                      "(-1 or a rank)",
                      key, value == NULL ? "NULL" : "given", cap, writer);
  if ((r = mc_store_begin(store, err)) != MOECOMM_SUCCESS) return r;
  int64_t now = mc_now_ms();
  int64_t wait = deadline_ms > now ? deadline_ms - now : 0;
  int64_t served = MC_MIN(wait, (int64_t)store->lim.max_wait_ms);
  mc_store_rep_t rep;
  mc_store_req_t q = mc_store_req(MC_STORE_OP_GET, strlen(key));
  q.rank = writer;
  q.timeout_ms = (uint64_t)wait;
  r = mc_store_request(store, &q, key, NULL, mc_store_later(now + served, MC_STORE_GRACE_MS), &rep,
                       err);
  if (r != MOECOMM_SUCCESS) goto out;
  if (rep.status != MC_STORE_OK) {
    r = mc_store_get_failed(store, key, &rep, wait, err);
    goto out;
  }
  size_t full = (size_t)rep.value_len, take = MC_MIN(full, cap);
  int e = 0;
  mc_store_io_t io = mc_store_recv_all(store->fd, value, take, mc_now_ms() + MC_STORE_STALL_MS, &e);
  if (io == MC_IO_OK && full > take)
    io = mc_store_recv_all(store->fd, NULL, full - take, mc_now_ms() + MC_STORE_STALL_MS, &e);
  if (io != MC_IO_OK) {
    r = mc_store_io_fail(store, io, e, MC_STORE_OP_GET, key, MC_STORE_STALL_MS, err);
    goto out;
  }
  if (len_p != NULL) *len_p = full;
out:
  pthread_mutex_unlock(&store->lock);
  return r;
}

moecomm_result_t mc_store_check(mc_store_t *store, const char *key, int *exists_p, mc_err_t *err) {
  moecomm_result_t r = mc_store_check_key(store, key, err);
  if (r != MOECOMM_SUCCESS) return r;
  if (exists_p == NULL)
    return mc_err_set(err, MOECOMM_ERR_INVALID_ARGUMENT, "rendezvous store: exists_p is NULL");
  if ((r = mc_store_begin(store, err)) != MOECOMM_SUCCESS) return r;
  mc_store_rep_t rep;
  mc_store_req_t q = mc_store_req(MC_STORE_OP_CHECK, strlen(key));
  r = mc_store_request(store, &q, key, NULL, mc_now_ms() + MC_STORE_STALL_MS, &rep, err);
  if (r == MOECOMM_SUCCESS) *exists_p = rep.status == MC_STORE_OK;
  pthread_mutex_unlock(&store->lock);
  return r;
}
