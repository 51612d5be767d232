/* store_server.c - the rendezvous store's server: one poll() thread on rank 0.
 *
 * A connection carries one request at a time: the server reads a connection's next request only
 * after it has answered the previous one.  A GET waits on the server, which answers "timeout"
 * itself when the request's time is up, so the client never has to abandon a request and never
 * reads a stale reply. */
#include "store_server.h"

#include <errno.h>
#include <stdatomic.h>
#include <fcntl.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "store_wire.h"
#include "util.h"

/* Requests of one connection served per poll() round, so one busy client cannot starve others. */
#define MC_STORE_BURST 16

/* A value, shared by the table and by replies still being sent (only the server thread touches
   it, so the count needs no atomics). */
typedef struct mc_store_blob {
  uint32_t refs;
  size_t len;
  unsigned char data[];
} mc_store_blob_t;

typedef struct mc_store_entry {
  struct mc_store_entry *next;
  uint64_t hash;
  uint32_t readers; /* gets left before deletion; 0 = keep */
  mc_store_blob_t *blob;
  size_t key_len;
  char key[];
} mc_store_entry_t;

typedef enum mc_store_conn_state {
  MC_CONN_READ, /* reading a request */
  MC_CONN_WAIT, /* a GET waits for its key */
  MC_CONN_WRITE /* sending a reply */
} mc_store_conn_state_t;

typedef struct mc_store_conn {
  int fd;
  int dead; /* dropped this round; freed at the end of the round */
  mc_store_conn_state_t state;
  char peer[80];
  /* request being read */
  unsigned char hdr[MC_STORE_REQ_BYTES];
  size_t got;
  uint32_t op, readers;
  uint64_t timeout_ms;
  size_t key_len, value_len;
  char key[MC_STORE_KEY_MAX + 1];
  mc_store_blob_t *in_blob;
  /* pending GET */
  int64_t deadline;
  struct mc_store_conn *wprev, *wnext;
  /* reply being sent */
  unsigned char out_hdr[MC_STORE_REP_BYTES];
  mc_store_blob_t *out_blob;
  size_t out_off;
} mc_store_conn_t;

struct mc_store_server {
  int listen_fd;
  int wake_rd, wake_wr;
  int port;
  pthread_t thread;
  int64_t listen_pause_until; /* accept paused after running out of descriptors */

  mc_store_conn_t **conns;
  size_t nconns, conns_cap;
  struct pollfd *pfds; /* 2 + conns_cap */

  mc_store_entry_t **buckets;
  size_t nbuckets, nkeys;

  mc_store_conn_t *whead, *wtail; /* pending GETs, oldest first */
  _Atomic size_t live;            /* clients connected, published after each reap */
};

static uint64_t mc_store_hash(const char *key, size_t len) {
  uint64_t h = 1469598103934665603ull; /* FNV-1a */
  for (size_t i = 0; i < len; i++) {
    h ^= (unsigned char)key[i];
    h *= 1099511628211ull;
  }
  return h;
}

static void mc_store_blob_release(mc_store_blob_t *b) {
  if (b != NULL && --b->refs == 0) free(b);
}

static mc_store_entry_t **mc_store_find_slot(mc_store_server_t *srv, const char *key, size_t len,
                                             uint64_t h) {
  mc_store_entry_t **pp = &srv->buckets[h & (srv->nbuckets - 1)];
  for (; *pp != NULL; pp = &(*pp)->next)
    if ((*pp)->hash == h && (*pp)->key_len == len && memcmp((*pp)->key, key, len) == 0) break;
  return pp;
}

static void mc_store_entry_remove(mc_store_server_t *srv, mc_store_entry_t *e) {
  mc_store_entry_t **pp = mc_store_find_slot(srv, e->key, e->key_len, e->hash);
  *pp = e->next;
  srv->nkeys--;
  mc_store_blob_release(e->blob);
  free(e);
}

/* Doubling keeps chains short; a failed growth only makes chains longer, so it is not an error. */
static void mc_store_table_grow(mc_store_server_t *srv) {
  size_t n = srv->nbuckets * 2;
  mc_store_entry_t **nb = calloc(n, sizeof(*nb));
  if (nb == NULL) return;
  for (size_t i = 0; i < srv->nbuckets; i++) {
    mc_store_entry_t *e = srv->buckets[i];
    while (e != NULL) {
      mc_store_entry_t *next = e->next;
      e->next = nb[e->hash & (n - 1)];
      nb[e->hash & (n - 1)] = e;
      e = next;
    }
  }
  free(srv->buckets);
  srv->buckets = nb;
  srv->nbuckets = n;
}

static void mc_store_waiter_unlink(mc_store_server_t *srv, mc_store_conn_t *c) {
  if (c->wprev != NULL)
    c->wprev->wnext = c->wnext;
  else
    srv->whead = c->wnext;
  if (c->wnext != NULL)
    c->wnext->wprev = c->wprev;
  else
    srv->wtail = c->wprev;
  c->wprev = c->wnext = NULL;
}

static void mc_store_conn_drop(mc_store_server_t *srv, mc_store_conn_t *c, const char *why) {
  if (c->dead) return;
  MC_TRACE("rendezvous store: dropping client %s: %s", c->peer, why);
  if (c->state == MC_CONN_WAIT) mc_store_waiter_unlink(srv, c);
  if (close(c->fd) != 0) MC_TRACE("rendezvous store: close(%s): %s", c->peer, strerror(errno));
  c->fd = -1;
  mc_store_blob_release(c->in_blob);
  c->in_blob = NULL;
  mc_store_blob_release(c->out_blob);
  c->out_blob = NULL;
  c->dead = 1;
}

/* Sends as much of the pending reply as the socket takes; back to reading once it is all out. */
static void mc_store_conn_flush(mc_store_server_t *srv, mc_store_conn_t *c) {
  size_t blen = c->out_blob != NULL ? c->out_blob->len : 0;
  size_t total = MC_STORE_REP_BYTES + blen;
  while (c->out_off < total) {
    struct iovec iov[2];
    int n_iov = 0;
    if (c->out_off < MC_STORE_REP_BYTES) {
      iov[n_iov].iov_base = c->out_hdr + c->out_off;
      iov[n_iov++].iov_len = MC_STORE_REP_BYTES - c->out_off;
    }
    if (blen > 0) {
      size_t boff = c->out_off > MC_STORE_REP_BYTES ? c->out_off - MC_STORE_REP_BYTES : 0;
      iov[n_iov].iov_base = c->out_blob->data + boff;
      iov[n_iov++].iov_len = blen - boff;
    }
    struct msghdr msg;
    memset(&msg, 0, sizeof(msg));
    msg.msg_iov = iov;
    msg.msg_iovlen = (size_t)n_iov;
    ssize_t n = sendmsg(c->fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) return;
      mc_store_conn_drop(srv, c, strerror(errno));
      return;
    }
    c->out_off += (size_t)n;
  }
  mc_store_blob_release(c->out_blob);
  c->out_blob = NULL;
  c->state = MC_CONN_READ;
  c->got = 0;
}

static void mc_store_reply(mc_store_server_t *srv, mc_store_conn_t *c, uint32_t status,
                           mc_store_blob_t *blob) {
  mc_store_rep_t rep = {MC_STORE_MAGIC, status, blob != NULL ? (uint64_t)blob->len : 0};
  mc_store_rep_encode(&rep, c->out_hdr);
  if (blob != NULL) blob->refs++;
  c->out_blob = blob;
  c->out_off = 0;
  c->state = MC_CONN_WRITE;
  mc_store_conn_flush(srv, c);
}

/* Hands one read of e to c and deletes e after its last allowed read; 1 when e was deleted.  A
   client found gone while sending does not use up a read. */
static int mc_store_serve_get(mc_store_server_t *srv, mc_store_conn_t *c, mc_store_entry_t *e) {
  mc_store_reply(srv, c, MC_STORE_OK, e->blob);
  if (c->dead || e->readers == 0 || --e->readers > 0) return 0;
  mc_store_entry_remove(srv, e);
  return 1;
}

static void mc_store_do_set(mc_store_server_t *srv, mc_store_conn_t *c) {
  uint64_t h = mc_store_hash(c->key, c->key_len);
  mc_store_entry_t **pp = mc_store_find_slot(srv, c->key, c->key_len, h);
  mc_store_entry_t *e = *pp;
  if (e == NULL) {
    e = malloc(sizeof(*e) + c->key_len + 1);
    if (e == NULL) {
      MC_WARN("rendezvous store: out of memory storing key '%s' from %s", c->key, c->peer);
      mc_store_conn_drop(srv, c, "out of memory");
      return;
    }
    e->hash = h;
    e->key_len = c->key_len;
    memcpy(e->key, c->key, c->key_len + 1);
    e->next = NULL;
    *pp = e;
    srv->nkeys++;
  } else {
    mc_store_blob_release(e->blob);
  }
  e->blob = c->in_blob; /* the table takes the request's reference */
  c->in_blob = NULL;
  e->readers = c->readers;
  mc_store_reply(srv, c, MC_STORE_OK, NULL);

  /* Wake the GETs waiting for this key, oldest first, while reads remain. */
  for (mc_store_conn_t *w = srv->whead, *next; w != NULL; w = next) {
    next = w->wnext;
    if (w->key_len != e->key_len || memcmp(w->key, e->key, e->key_len) != 0) continue;
    mc_store_waiter_unlink(srv, w);
    if (mc_store_serve_get(srv, w, e)) break; /* e is gone */
  }
  if (srv->nkeys > srv->nbuckets) mc_store_table_grow(srv);
}

static void mc_store_do_get(mc_store_server_t *srv, mc_store_conn_t *c) {
  uint64_t h = mc_store_hash(c->key, c->key_len);
  mc_store_entry_t *e = *mc_store_find_slot(srv, c->key, c->key_len, h);
  if (e != NULL) {
    mc_store_serve_get(srv, c, e);
    return;
  }
  if (c->timeout_ms == 0) {
    mc_store_reply(srv, c, MC_STORE_TIMEOUT, NULL);
    return;
  }
  int64_t now = mc_now_ms();
  uint64_t t = c->timeout_ms;
  if (t > (uint64_t)(INT64_MAX / 4)) t = (uint64_t)(INT64_MAX / 4);
  c->deadline = now + (int64_t)t;
  c->state = MC_CONN_WAIT;
  c->wnext = NULL;
  c->wprev = srv->wtail;
  if (srv->wtail != NULL)
    srv->wtail->wnext = c;
  else
    srv->whead = c;
  srv->wtail = c;
}

static void mc_store_process(mc_store_server_t *srv, mc_store_conn_t *c) {
  switch (c->op) {
    case MC_STORE_OP_HELLO: mc_store_reply(srv, c, MC_STORE_OK, NULL); break;
    case MC_STORE_OP_SET: mc_store_do_set(srv, c); break;
    case MC_STORE_OP_GET: mc_store_do_get(srv, c); break;
    case MC_STORE_OP_CHECK: {
      uint64_t h = mc_store_hash(c->key, c->key_len);
      int found = *mc_store_find_slot(srv, c->key, c->key_len, h) != NULL;
      mc_store_reply(srv, c, found ? MC_STORE_OK : MC_STORE_ABSENT, NULL);
      break;
    }
    default: mc_store_conn_drop(srv, c, "unknown request"); break;
  }
}

/* Validates a complete request header; 0 when the client must be dropped. */
static int mc_store_parse_header(mc_store_server_t *srv, mc_store_conn_t *c) {
  mc_store_req_t q;
  if (!mc_store_req_decode(c->hdr, &q)) {
    MC_WARN(
        "rendezvous store: malformed request from %s (magic %#x, op %u, key %u bytes, value "
        "%llu bytes): dropping that client",
        c->peer, q.magic, q.op, q.key_len, (unsigned long long)q.value_len);
    mc_store_conn_drop(srv, c, "malformed request");
    return 0;
  }
  c->op = q.op;
  c->readers = q.readers;
  c->timeout_ms = q.timeout_ms;
  uint32_t key_len = q.key_len;
  uint64_t value_len = q.value_len;
  c->key_len = key_len;
  c->value_len = (size_t)value_len;
  c->key[key_len] = '\0';
  if (c->op == MC_STORE_OP_SET) {
    c->in_blob = malloc(sizeof(*c->in_blob) + c->value_len);
    if (c->in_blob == NULL) {
      MC_WARN("rendezvous store: out of memory for a %zu-byte value from %s", c->value_len,
              c->peer);
      mc_store_conn_drop(srv, c, "out of memory");
      return 0;
    }
    c->in_blob->refs = 1;
    c->in_blob->len = c->value_len;
  }
  return 1;
}

/* Reads what the socket has, serving complete requests, until it would block or a request is
   left waiting or replying. */
static void mc_store_conn_read(mc_store_server_t *srv, mc_store_conn_t *c) {
  int served = 0;
  while (!c->dead && c->state == MC_CONN_READ && served < MC_STORE_BURST) {
    void *dst;
    size_t want;
    if (c->got < MC_STORE_REQ_BYTES) {
      dst = c->hdr + c->got;
      want = MC_STORE_REQ_BYTES - c->got;
    } else if (c->got < MC_STORE_REQ_BYTES + c->key_len) {
      dst = c->key + (c->got - MC_STORE_REQ_BYTES);
      want = MC_STORE_REQ_BYTES + c->key_len - c->got;
    } else {
      size_t off = c->got - MC_STORE_REQ_BYTES - c->key_len;
      dst = c->in_blob->data + off;
      want = c->value_len - off;
    }
    ssize_t n = recv(c->fd, dst, want, MSG_DONTWAIT);
    if (n == 0) {
      mc_store_conn_drop(srv, c, "disconnected");
      return;
    }
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) return;
      mc_store_conn_drop(srv, c, strerror(errno));
      return;
    }
    c->got += (size_t)n;
    if (c->got == MC_STORE_REQ_BYTES && !mc_store_parse_header(srv, c)) return;
    if (c->got == MC_STORE_REQ_BYTES + c->key_len + c->value_len) {
      served++;
      mc_store_process(srv, c); /* leaves the connection writing, waiting, or reading again */
    }
  }
}

static void mc_store_peer_name(const struct sockaddr *sa, socklen_t len, char *buf, size_t size) {
  char host[64], serv[16];
  if (getnameinfo(sa, len, host, sizeof(host), serv, sizeof(serv),
                  NI_NUMERICHOST | NI_NUMERICSERV) == 0)
    snprintf(buf, size, "%s:%s", host, serv);
  else
    snprintf(buf, size, "(unknown peer)");
}

static void mc_store_accept(mc_store_server_t *srv) {
  for (;;) {
    struct sockaddr_storage ss;
    socklen_t slen = sizeof(ss);
    int fd = accept4(srv->listen_fd, (struct sockaddr *)&ss, &slen, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EINTR || errno == ECONNABORTED || errno == EPROTO) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) return;
      /* Out of descriptors or memory: the pending connection stays queued, so stop polling the
         listener for a moment instead of spinning on it. */
      MC_WARN("rendezvous store: accept failed (%s); %zu clients connected, retrying in 100 ms",
              strerror(errno), srv->nconns);
      srv->listen_pause_until = mc_now_ms() + 100;
      return;
    }
    int one = 1;
    if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) != 0)
      MC_WARN("rendezvous store: TCP_NODELAY on a client socket failed: %s", strerror(errno));
    if (srv->nconns == srv->conns_cap) {
      size_t ncap = srv->conns_cap * 2;
      mc_store_conn_t **nc = realloc(srv->conns, ncap * sizeof(*nc));
      if (nc != NULL) srv->conns = nc;
      struct pollfd *np = nc != NULL ? realloc(srv->pfds, (ncap + 2) * sizeof(*np)) : NULL;
      if (np != NULL) srv->pfds = np;
      if (nc == NULL || np == NULL) {
        MC_WARN("rendezvous store: out of memory for client %zu; refusing it", srv->nconns + 1);
        close(fd);
        continue;
      }
      srv->conns_cap = ncap;
    }
    mc_store_conn_t *c = calloc(1, sizeof(*c));
    if (c == NULL) {
      MC_WARN("rendezvous store: out of memory for client %zu; refusing it", srv->nconns + 1);
      close(fd);
      continue;
    }
    c->fd = fd;
    c->state = MC_CONN_READ;
    mc_store_peer_name((struct sockaddr *)&ss, slen, c->peer, sizeof(c->peer));
    MC_TRACE("rendezvous store: client %s connected", c->peer);
    srv->conns[srv->nconns++] = c;
  }
}

/* Answers every GET whose time is up; returns the poll timeout until the next deadline. */
static int mc_store_expire(mc_store_server_t *srv) {
  int64_t now = mc_now_ms();
  int64_t next = -1;
  for (mc_store_conn_t *w = srv->whead, *nx; w != NULL; w = nx) {
    nx = w->wnext;
    if (w->deadline <= now) {
      mc_store_waiter_unlink(srv, w);
      mc_store_reply(srv, w, MC_STORE_TIMEOUT, NULL);
    } else if (next < 0 || w->deadline < next) {
      next = w->deadline;
    }
  }
  if (srv->listen_pause_until > now && (next < 0 || srv->listen_pause_until < next))
    next = srv->listen_pause_until;
  if (next < 0) return -1;
  return (int)MC_MIN(next - now, (int64_t)INT_MAX);
}

static void mc_store_reap(mc_store_server_t *srv) {
  size_t j = 0;
  for (size_t i = 0; i < srv->nconns; i++) {
    if (srv->conns[i]->dead)
      free(srv->conns[i]);
    else
      srv->conns[j++] = srv->conns[i];
  }
  srv->nconns = j;
  atomic_store(&srv->live, j);
}

static void *mc_store_server_main(void *arg) {
  mc_store_server_t *srv = arg;
  for (;;) {
    int timeout = mc_store_expire(srv);
    mc_store_reap(srv);
    size_t npoll = srv->nconns;
    srv->pfds[0].fd = srv->wake_rd;
    srv->pfds[0].events = POLLIN;
    srv->pfds[1].fd = srv->listen_pause_until > mc_now_ms() ? -1 : srv->listen_fd;
    srv->pfds[1].events = POLLIN;
    for (size_t i = 0; i < npoll; i++) {
      mc_store_conn_t *c = srv->conns[i];
      srv->pfds[2 + i].fd = c->fd;
      /* A waiting or replying connection is only watched for hang-up, so a client that sends
         early cannot make poll spin. */
      srv->pfds[2 + i].events = c->state == MC_CONN_READ   ? POLLIN
                                : c->state == MC_CONN_WAIT ? POLLRDHUP
                                                           : (POLLOUT | POLLRDHUP);
      srv->pfds[2 + i].revents = 0;
    }
    srv->pfds[0].revents = srv->pfds[1].revents = 0;
    if (poll(srv->pfds, 2 + npoll, timeout) < 0) {
      if (errno != EINTR) {
        MC_WARN("rendezvous store: poll failed (%s); retrying", strerror(errno));
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
      }
      continue;
    }
    if (srv->pfds[0].revents != 0) break; /* mc_store_server_stop */
    for (size_t i = 0; i < npoll; i++) {
      mc_store_conn_t *c = srv->conns[i];
      short re = srv->pfds[2 + i].revents;
      if (c->dead || re == 0) continue;
      if (re & POLLNVAL) {
        mc_store_conn_drop(srv, c, "invalid descriptor");
      } else if (c->state == MC_CONN_READ) {
        mc_store_conn_read(srv, c); /* a hang-up shows as end of stream or an error */
      } else if (re & (POLLRDHUP | POLLHUP | POLLERR)) {
        mc_store_conn_drop(srv, c, "disconnected");
      } else if (c->state == MC_CONN_WRITE && (re & POLLOUT)) {
        mc_store_conn_flush(srv, c);
        if (!c->dead && c->state == MC_CONN_READ) mc_store_conn_read(srv, c);
      }
    }
    if (srv->pfds[1].revents != 0) mc_store_accept(srv);
  }
  return NULL;
}

/* Binds and listens on one address; -1 with *errno_p and *step_p on failure. */
static int mc_store_listen_on(int family, const struct sockaddr *sa, socklen_t len, int v6only_off,
                              int *errno_p, const char **step_p) {
  int one = 1, zero = 0;
  int fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    *step_p = "socket";
    *errno_p = errno;
    return -1;
  }
  if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0) {
    *step_p = "SO_REUSEADDR";
    goto fail;
  }
  if (v6only_off && setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero)) != 0) {
    *step_p = "IPV6_V6ONLY";
    goto fail;
  }
  if (bind(fd, sa, len) != 0) {
    *step_p = "bind";
    goto fail;
  }
  if (listen(fd, SOMAXCONN) != 0) {
    *step_p = "listen";
    goto fail;
  }
  return fd;
fail:
  *errno_p = errno;
  close(fd);
  return -1;
}

static moecomm_result_t mc_store_listen(const char *host, int port, int *fd_p, mc_err_t *err) {
  int fd = -1, e = 0;
  const char *step = "bind";
  char shown[300];
  if (host == NULL || host[0] == '\0') {
    snprintf(shown, sizeof(shown), "*:%d", port);
    /* One dual-stack socket serves IPv4 and IPv6; hosts without IPv6 get an IPv4 one. */
    struct sockaddr_in6 a6;
    memset(&a6, 0, sizeof(a6));
    a6.sin6_family = AF_INET6;
    a6.sin6_addr = in6addr_any;
    a6.sin6_port = htons((uint16_t)port);
    fd = mc_store_listen_on(AF_INET6, (struct sockaddr *)&a6, sizeof(a6), 1, &e, &step);
    if (fd < 0) {
      struct sockaddr_in a4;
      memset(&a4, 0, sizeof(a4));
      a4.sin_family = AF_INET;
      a4.sin_addr.s_addr = htonl(INADDR_ANY);
      a4.sin_port = htons((uint16_t)port);
      fd = mc_store_listen_on(AF_INET, (struct sockaddr *)&a4, sizeof(a4), 0, &e, &step);
    }
  } else {
    snprintf(shown, sizeof(shown), "%s:%d", host, port);
    struct addrinfo hints, *res = NULL;
    char serv[16];
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    snprintf(serv, sizeof(serv), "%d", port);
    int g = getaddrinfo(host, serv, &hints, &res);
    if (g != 0)
      return mc_err_set(err, MOECOMM_ERR_CONFIG,
                        "rendezvous store: cannot resolve the bind address '%s': %s", host,
                        gai_strerror(g));
    for (struct addrinfo *ai = res; ai != NULL && fd < 0; ai = ai->ai_next)
      fd = mc_store_listen_on(ai->ai_family, ai->ai_addr, ai->ai_addrlen, 0, &e, &step);
    freeaddrinfo(res);
  }
  if (fd < 0) {
    if (e == EADDRINUSE)
      return mc_err_set(err, MOECOMM_ERR_BACKEND,
                        "rendezvous store: port %d is already in use on %s: choose another port "
                        "(MOECOMM_STORE) or stop the process holding it",
                        port, shown);
    return mc_err_set(err, MOECOMM_ERR_BACKEND, "rendezvous store: cannot listen on %s: %s: %s",
                      shown, step, strerror(e));
  }
  *fd_p = fd;
  return MOECOMM_SUCCESS;
}

moecomm_result_t mc_store_server_start(const char *bind_host, int port, mc_store_server_t **srv_p,
                                       int *port_p, mc_err_t *err) {
  moecomm_result_t r;
  mc_store_server_t *srv = NULL;
  int fd = -1, pipefd[2] = {-1, -1};
  if (srv_p == NULL)
    return mc_err_set(err, MOECOMM_ERR_INVALID_ARGUMENT, "rendezvous store: srv_p is NULL");
  if (port < 0 || port > 65535)
    return mc_err_set(
        err, MOECOMM_ERR_INVALID_ARGUMENT,
        "rendezvous store: port %d is out of range (0 picks a free one, else 1-65535)", port);
  r = mc_store_listen(bind_host, port, &fd, err);
  if (r != MOECOMM_SUCCESS) return r;

  struct sockaddr_storage ss;
  socklen_t slen = sizeof(ss);
  if (getsockname(fd, (struct sockaddr *)&ss, &slen) != 0) {
    r = mc_err_set(err, MOECOMM_ERR_BACKEND, "rendezvous store: getsockname: %s", strerror(errno));
    goto fail_fd;
  }
  int bound = ss.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&ss)->sin6_port)
                                       : ntohs(((struct sockaddr_in *)&ss)->sin_port);
  if (pipe2(pipefd, O_NONBLOCK | O_CLOEXEC) != 0) {
    r = mc_err_set(err, MOECOMM_ERR_BACKEND, "rendezvous store: pipe2: %s", strerror(errno));
    goto fail_fd;
  }
  srv = calloc(1, sizeof(*srv));
  if (srv == NULL) goto fail_nomem;
  srv->listen_fd = fd;
  srv->wake_rd = pipefd[0];
  srv->wake_wr = pipefd[1];
  srv->port = bound;
  srv->conns_cap = 64;
  srv->conns = calloc(srv->conns_cap, sizeof(*srv->conns));
  srv->pfds = calloc(srv->conns_cap + 2, sizeof(*srv->pfds));
  srv->nbuckets = 256;
  srv->buckets = calloc(srv->nbuckets, sizeof(*srv->buckets));
  if (srv->conns == NULL || srv->pfds == NULL || srv->buckets == NULL) goto fail_nomem;

  /* The thread takes no signals: they belong to the host's threads. */
  sigset_t all, old;
  sigfillset(&all);
  int e = pthread_sigmask(SIG_SETMASK, &all, &old);
  if (e != 0) {
    r = mc_err_set(err, MOECOMM_ERR_BACKEND, "rendezvous store: pthread_sigmask: %s", strerror(e));
    goto fail_srv;
  }
  e = pthread_create(&srv->thread, NULL, mc_store_server_main, srv);
  int e2 = pthread_sigmask(SIG_SETMASK, &old, NULL);
  if (e2 != 0) MC_WARN("rendezvous store: restoring the signal mask failed: %s", strerror(e2));
  if (e != 0) {
    r = mc_err_set(err, MOECOMM_ERR_BACKEND, "rendezvous store: cannot start its thread: %s",
                   strerror(e));
    goto fail_srv;
  }
  MC_INFO("rendezvous store listening on %s:%d",
          bind_host != NULL && bind_host[0] != '\0' ? bind_host : "*", bound);
  *srv_p = srv;
  if (port_p != NULL) *port_p = bound;
  return MOECOMM_SUCCESS;

fail_nomem:
  r = mc_err_set(err, MOECOMM_ERR_NO_MEMORY, "rendezvous store: out of host memory");
fail_srv:
  if (srv != NULL) {
    free(srv->buckets);
    free(srv->pfds);
    free(srv->conns);
    free(srv);
  }
  if (pipefd[0] >= 0) close(pipefd[0]);
  if (pipefd[1] >= 0) close(pipefd[1]);
fail_fd:
  close(fd);
  return r;
}

size_t mc_store_server_clients(mc_store_server_t *srv) {
  return atomic_load(&srv->live);
}

void mc_store_server_stop(mc_store_server_t *srv) {
  if (srv == NULL) return;
  unsigned char b = 1;
  for (;;) {
    ssize_t n = write(srv->wake_wr, &b, 1);
    /* EAGAIN: the pipe is full, so the thread is woken anyway. */
    if (n == 1 || (n < 0 && errno != EINTR)) {
      if (n < 0 && errno != EAGAIN) MC_WARN("rendezvous store: wake-up write: %s", strerror(errno));
      break;
    }
  }
  int e = pthread_join(srv->thread, NULL);
  if (e != 0) MC_WARN("rendezvous store: joining its thread: %s", strerror(e));
  for (size_t i = 0; i < srv->nconns; i++) {
    mc_store_conn_drop(srv, srv->conns[i], "server stopping");
    free(srv->conns[i]);
  }
  for (size_t i = 0; i < srv->nbuckets; i++) {
    mc_store_entry_t *en = srv->buckets[i];
    while (en != NULL) {
      mc_store_entry_t *next = en->next;
      mc_store_blob_release(en->blob);
      free(en);
      en = next;
    }
  }
  close(srv->listen_fd);
  close(srv->wake_rd);
  close(srv->wake_wr);
  free(srv->buckets);
  free(srv->pfds);
  free(srv->conns);
  free(srv);
}
