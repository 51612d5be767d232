/* store_client.c - the rendezvous store's blocking client.
 *
 * The client holds a mutex for a whole exchange (request and reply), so threads may share one
 * connection.  A GET's wait happens on the server, which answers "timeout" itself. */
#include "store_client.h"

#include <errno.h>
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
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "store_wire.h"
#include "util.h"

/* A GET's reply may come this long after its deadline before the server counts as unresponsive. */
#define MC_STORE_GRACE_MS 5000
/* Any other exchange fails when no byte moves for this long. */
#define MC_STORE_STALL_MS 30000
#define MC_STORE_INLINE_SEND 4096

struct mc_store {
  int fd;
  pthread_mutex_t lock; /* one request at a time on the connection */
  char where[300];      /* "host:port" for messages */
  int broken;           /* an exchange failed midway: the stream is out of step for good */
  char broken_msg[MC_ERR_MSG_MAX];
};

typedef enum { MC_IO_OK = 0, MC_IO_CLOSED, MC_IO_TIMEOUT, MC_IO_ERROR } mc_store_io_t;

/* t + ms without overflow, for callers that pass INT64_MAX as "no deadline". */
static int64_t mc_store_later(int64_t t, int64_t ms) {
  return t > INT64_MAX - ms ? INT64_MAX : t + ms;
}

static void mc_store_sleep_ms(int64_t ms) {
  struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
  while (ms > 0 && nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
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

/* A failure in the middle of an exchange leaves the stream out of step: the connection is marked
   broken and every later call fails with the same sentence. */
static moecomm_result_t mc_store_fail(mc_store_t *s, mc_err_t *err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static moecomm_result_t mc_store_fail(mc_store_t *s, mc_err_t *err, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(s->broken_msg, sizeof(s->broken_msg), fmt, ap);
  va_end(ap);
  s->broken = 1;
  return mc_err_set(err, MOECOMM_ERR_PEER, "%s", s->broken_msg);
}

static moecomm_result_t mc_store_io_fail(mc_store_t *s, mc_store_io_t io, int e, uint32_t op,
                                         const char *key, int64_t waited_ms, mc_err_t *err) {
  const char *what = mc_store_op_name(op);
  const char *q = key != NULL ? " of key '" : "";
  const char *k = key != NULL ? key : "";
  const char *qe = key != NULL ? "'" : "";
  switch (io) {
    case MC_IO_CLOSED:
      return mc_store_fail(s, err,
                           "rendezvous store at %s closed the connection during the %s%s%s%s "
                           "(rank 0 exited or stopped its store)",
                           s->where, what, q, k, qe);
    case MC_IO_TIMEOUT:
      return mc_store_fail(s, err,
                           "rendezvous store at %s did not answer the %s%s%s%s within %lld ms: the "
                           "server is unresponsive",
                           s->where, what, q, k, qe, (long long)waited_ms);
    default:
      return mc_store_fail(s, err, "rendezvous store at %s: the %s%s%s%s failed: %s", s->where,
                           what, q, k, qe, strerror(e));
  }
}

/* One request and its reply header; the caller holds the lock and reads any value that follows. */
static moecomm_result_t mc_store_request(mc_store_t *s, uint32_t op, const char *key,
                                         const void *value, size_t len, uint32_t readers,
                                         uint64_t timeout_ms, int64_t reply_deadline,
                                         uint32_t *status_p, uint64_t *vlen_p, mc_err_t *err) {
  unsigned char buf[MC_STORE_REQ_BYTES + MC_STORE_KEY_MAX + MC_STORE_INLINE_SEND];
  size_t klen = key != NULL ? strlen(key) : 0;
  int e = 0;
  int64_t start = mc_now_ms();
  mc_store_req_t q = {MC_STORE_MAGIC, op, (uint32_t)klen, readers, timeout_ms, (uint64_t)len};
  mc_store_req_encode(&q, buf);
  if (klen > 0) memcpy(buf + MC_STORE_REQ_BYTES, key, klen);
  size_t head = MC_STORE_REQ_BYTES + klen;
  /* Small values go in the same segment as the header. */
  int inline_value = len <= MC_STORE_INLINE_SEND;
  if (inline_value && len > 0) {
    memcpy(buf + head, value, len);
    head += len;
  }
  mc_store_io_t io = mc_store_send_all(s->fd, buf, head, start + MC_STORE_STALL_MS, &e);
  if (io == MC_IO_OK && !inline_value)
    io = mc_store_send_all(s->fd, value, len, mc_now_ms() + MC_STORE_STALL_MS, &e);
  if (io != MC_IO_OK) return mc_store_io_fail(s, io, e, op, key, MC_STORE_STALL_MS, err);

  unsigned char rep[MC_STORE_REP_BYTES];
  io = mc_store_recv_all(s->fd, rep, sizeof(rep), reply_deadline, &e);
  if (io != MC_IO_OK) return mc_store_io_fail(s, io, e, op, key, mc_now_ms() - start, err);
  mc_store_rep_t p;
  if (!mc_store_rep_decode(rep, op, &p))
    return mc_store_fail(
        s, err,
        "rendezvous store at %s answered the %s with a malformed reply (magic %#x, "
        "status %u): is another service listening on that port, or a different "
        "moecomm version?",
        s->where, mc_store_op_name(op), p.magic, p.status);
  *status_p = p.status;
  *vlen_p = p.value_len;
  return MOECOMM_SUCCESS;
}

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

moecomm_result_t mc_store_set(mc_store_t *store, const char *key, const void *value, size_t len,
                              uint32_t readers, mc_err_t *err) {
  moecomm_result_t r = mc_store_check_key(store, key, err);
  if (r != MOECOMM_SUCCESS) return r;
  if (value == NULL && len > 0)
    return mc_err_set(err, MOECOMM_ERR_INVALID_ARGUMENT,
                      "rendezvous store: set of key '%s': value is NULL with %zu bytes", key, len);
  if (len > MC_STORE_VALUE_MAX)
    return mc_err_set(err, MOECOMM_ERR_INVALID_ARGUMENT,
                      "rendezvous store: set of key '%s': value of %zu bytes exceeds the store's "
                      "limit of %zu bytes (64 MiB)",
                      key, len, MC_STORE_VALUE_MAX);
  if ((r = mc_store_begin(store, err)) != MOECOMM_SUCCESS) return r;
  uint32_t status = 0;
  uint64_t vlen = 0;
  r = mc_store_request(store, MC_STORE_OP_SET, key, value, len, readers, 0,
                       mc_now_ms() + MC_STORE_STALL_MS, &status, &vlen, err);
  if (r == MOECOMM_SUCCESS && status != MC_STORE_OK)
    r = mc_store_fail(store, err, "rendezvous store at %s refused the set of key '%s' (status %u)",
                      store->where, key, status);
  pthread_mutex_unlock(&store->lock);
  return r;
}

moecomm_result_t mc_store_get(mc_store_t *store, const char *key, void *value, size_t cap,
                              size_t *len_p, int64_t deadline_ms, mc_err_t *err) {
  moecomm_result_t r = mc_store_check_key(store, key, err);
  if (r != MOECOMM_SUCCESS) return r;
  if (value == NULL && cap > 0)
    return mc_err_set(err, MOECOMM_ERR_INVALID_ARGUMENT,
                      "rendezvous store: get of key '%s': value is NULL with capacity %zu", key,
                      cap);
  if ((r = mc_store_begin(store, err)) != MOECOMM_SUCCESS) return r;
  int64_t now = mc_now_ms();
  int64_t wait = deadline_ms > now ? deadline_ms - now : 0;
  uint32_t status = 0;
  uint64_t vlen = 0;
  r = mc_store_request(store, MC_STORE_OP_GET, key, NULL, 0, 0, (uint64_t)wait,
                       mc_store_later(now + wait, MC_STORE_GRACE_MS), &status, &vlen, err);
  if (r != MOECOMM_SUCCESS) goto out;
  if (status == MC_STORE_TIMEOUT) {
    r = mc_err_set(err, MOECOMM_ERR_TIMEOUT,
                   "key '%s' did not appear in the rendezvous store at %s within %lld ms", key,
                   store->where, (long long)wait);
    goto out;
  }
  if (status != MC_STORE_OK) {
    r = mc_store_fail(store, err,
                      "rendezvous store at %s answered the get of key '%s' with status %u",
                      store->where, key, status);
    goto out;
  }
  size_t full = (size_t)vlen, take = MC_MIN(full, cap);
  int e = 0;
  int64_t t0 = mc_now_ms();
  mc_store_io_t io = mc_store_recv_all(store->fd, value, take, t0 + MC_STORE_STALL_MS, &e);
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
  uint32_t status = 0;
  uint64_t vlen = 0;
  r = mc_store_request(store, MC_STORE_OP_CHECK, key, NULL, 0, 0, 0,
                       mc_now_ms() + MC_STORE_STALL_MS, &status, &vlen, err);
  if (r == MOECOMM_SUCCESS) {
    if (status == MC_STORE_OK || status == MC_STORE_ABSENT)
      *exists_p = status == MC_STORE_OK;
    else
      r = mc_store_fail(store, err,
                        "rendezvous store at %s answered the check of key '%s' with "
                        "status %u",
                        store->where, key, status);
  }
  pthread_mutex_unlock(&store->lock);
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

/* One attempt over the resolved addresses: a connected socket, or -1 with why in reason. */
static int mc_store_try_connect(const char *host, int port, int64_t deadline, char *reason,
                                size_t reason_size) {
  struct addrinfo hints, *res = NULL;
  char serv[16];
  memset(&hints, 0, sizeof(hints));
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICSERV;
  snprintf(serv, sizeof(serv), "%d", port);
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
      snprintf(reason, reason_size, "%s", strerror(e));
      close(fd);
      fd = -1;
    }
  }
  freeaddrinfo(res);
  return fd;
}

moecomm_result_t mc_store_connect(const char *host, int port, int64_t deadline_ms,
                                  mc_store_t **store_p, mc_err_t *err) {
  if (host == NULL || host[0] == '\0' || strlen(host) >= 256 || store_p == NULL)
    return mc_err_set(err, MOECOMM_ERR_INVALID_ARGUMENT,
                      "rendezvous store: connect needs a host name of 1 to 255 characters and "
                      "store_p");
  if (port < 1 || port > 65535)
    return mc_err_set(err, MOECOMM_ERR_INVALID_ARGUMENT,
                      "rendezvous store: port %d of host %s is out of range (1-65535)", port, host);
  mc_store_t *s = calloc(1, sizeof(*s));
  if (s == NULL)
    return mc_err_set(err, MOECOMM_ERR_NO_MEMORY, "rendezvous store: out of host memory");
  int e = pthread_mutex_init(&s->lock, NULL);
  if (e != 0) {
    free(s);
    return mc_err_set(err, MOECOMM_ERR_BACKEND, "rendezvous store: mutex init: %s", strerror(e));
  }
  s->fd = -1;
  snprintf(s->where, sizeof(s->where), strchr(host, ':') != NULL ? "[%s]:%d" : "%s:%d", host, port);

  char reason[256] = "no attempt was made";
  int64_t start = mc_now_ms(), backoff = 10;
  moecomm_result_t r;
  for (;;) {
    int fd = mc_store_try_connect(host, port, deadline_ms, reason, sizeof(reason));
    if (fd >= 0) {
      int one = 1;
      if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) != 0)
        MC_WARN("rendezvous store: TCP_NODELAY to %s failed: %s", s->where, strerror(errno));
      /* The handshake proves a moecomm store of this protocol version answers there. */
      s->fd = fd;
      uint32_t status = 0;
      uint64_t vlen = 0;
      int64_t now = mc_now_ms();
      r = mc_store_request(s, MC_STORE_OP_HELLO, NULL, NULL, 0, 0, 0,
                           mc_store_later(MC_MAX(deadline_ms, now), MC_STORE_GRACE_MS), &status,
                           &vlen, err);
      if (r == MOECOMM_SUCCESS && status == MC_STORE_OK) break;
      if (r == MOECOMM_SUCCESS)
        r = mc_err_set(err, MOECOMM_ERR_PEER,
                       "%s answered the handshake with status %u: not a moecomm store?", s->where,
                       status);
      int closed = s->broken && strstr(s->broken_msg, "closed the connection") != NULL;
      close(fd);
      s->fd = -1;
      if (!closed) goto fail; /* something answered, but not a store: retrying will not help */
      /* A server that is stopping or restarting: try again like a refused connection. */
      snprintf(reason, sizeof(reason), "the server closed the connection during the handshake");
      s->broken = 0;
    }
    int64_t now = mc_now_ms();
    if (now >= deadline_ms) {
      r = mc_err_set(err, MOECOMM_ERR_TIMEOUT,
                     "could not connect to the rendezvous store at %s within %lld ms (last error: "
                     "%s): is rank 0 running and reachable at that address?",
                     s->where, (long long)(now - start), reason);
      goto fail;
    }
    mc_store_sleep_ms(MC_MIN(backoff, deadline_ms - now));
    backoff = MC_MIN(backoff * 2, 200);
  }
  MC_TRACE("rendezvous store: connected to %s", s->where);
  *store_p = s;
  return MOECOMM_SUCCESS;

fail:
  pthread_mutex_destroy(&s->lock);
  free(s);
  return r;
}

void mc_store_close(mc_store_t *store) {
  if (store == NULL) return;
  if (store->fd >= 0 && close(store->fd) != 0)
    MC_TRACE("rendezvous store: close(%s): %s", store->where, strerror(errno));
  pthread_mutex_destroy(&store->lock);
  free(store);
}
