/* SPDX-License-Identifier: Apache-2.0 */
/* store_server.c - the rendezvous store's server: one poll() thread on rank 0 (store_server.h).
 *
 * This file owns the sockets: listening, accepting, reading into the buffers a connection names
 * and sending its replies.  What the bytes mean is store_core.c's business.  Descriptors are
 * bounded: connections that have not proven the secret are capped (the oldest is dropped), and
 * when accept runs out of descriptors the oldest such connection is dropped to make room. */
#include "store_server.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "store_core.h"
#include "util.h"

/* Requests of one connection served per poll() round, so one busy client cannot starve others. */
#define MC_STORE_BURST 16
/* Connections accepted per poll() round, so a flood of connections cannot starve the clients
   already connected. */
#define MC_STORE_ACCEPT_BURST 64
/* How long accept pauses when it cannot get a descriptor and none can be freed. */
#define MC_STORE_ACCEPT_PAUSE_MS 100

struct mc_store_server {
  int listen_fd;
  int wake_rd, wake_wr;
  int port;
  pthread_t thread;
  int64_t listen_pause_until; /* accept paused after running out of descriptors */
  mc_store_core_t core;
  mc_store_conn_t **polled; /* the connection behind pfds[2 + i] this round */
  struct pollfd *pfds;
  size_t cap;          /* connections polled and pfds can hold */
  _Atomic size_t live; /* clients connected (authenticated or proving it), each round */
};

/* ---- one connection's socket ------------------------------------------------------------ */

/* Sends as much of the queued reply as the socket takes. */
static void mc_store_server_flush(mc_store_server_t *srv, mc_store_conn_t *c) {
  while (c->state == MC_CONN_WRITE) {
    struct iovec iov[2];
    struct msghdr msg;
    memset(&msg, 0, sizeof(msg));
    msg.msg_iov = iov;
    msg.msg_iovlen = (size_t)mc_store_conn_out(c, iov);
    ssize_t n = sendmsg(c->fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno != EAGAIN && errno != EWOULDBLOCK)
        mc_store_conn_drop(&srv->core, c, strerror(errno));
      return;
    }
    mc_store_conn_sent(&srv->core, c, (size_t)n);
  }
}

/* Reads what the socket has, serving complete requests, until it would block or a request is
   left waiting or replying. */
static void mc_store_server_read(mc_store_server_t *srv, mc_store_conn_t *c) {
  int served = 0;
  while (c->state == MC_CONN_READ && served < MC_STORE_BURST) {
    uint8_t *dst;
    size_t want;
    mc_store_conn_want(c, &dst, &want);
    ssize_t n = recv(c->fd, dst, want, MSG_DONTWAIT);
    if (n == 0) {
      mc_store_conn_drop(&srv->core, c, "disconnected");
      return;
    }
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno != EAGAIN && errno != EWOULDBLOCK)
        mc_store_conn_drop(&srv->core, c, strerror(errno));
      return;
    }
    served += mc_store_conn_got(&srv->core, c, (size_t)n, mc_now_ms());
    mc_store_server_flush(srv, c);
  }
}

static void mc_store_server_flush_all(mc_store_server_t *srv) {
  mc_store_list_t *lists[2] = {&srv->core.pending, &srv->core.authed};
  for (int i = 0; i < 2; i++)
    for (mc_store_conn_t *c = lists[i]->head, *next; c != NULL; c = next) {
      next = c->next;
      if (c->state == MC_CONN_WRITE) mc_store_server_flush(srv, c);
    }
}

/* Closes and frees the dropped connections. */
static void mc_store_server_reap(mc_store_server_t *srv) {
  mc_store_conn_t *c;
  while ((c = mc_store_core_reap(&srv->core)) != NULL) {
    if (c->fd >= 0 && close(c->fd) != 0)
      MC_TRACE("rendezvous store: close(%s): %s", c->peer, strerror(errno));
    free(c);
  }
  atomic_store(&srv->live, srv->core.authed.n + srv->core.pending.n);
}

/* ---- accepting ---------------------------------------------------------------------------- */

static void mc_store_peer_name(const struct sockaddr *sa, socklen_t len, char *buf, size_t size) {
  char host[64], serv[16];
  if (getnameinfo(sa, len, host, sizeof(host), serv, sizeof(serv),
                  NI_NUMERICHOST | NI_NUMERICSERV) == 0)
    snprintf(buf, size, strchr(host, ':') != NULL ? "[%s]:%s" : "%s:%s", host, serv);
  else
    snprintf(buf, size, "(unknown peer)");
}

/* accept failed with errno e: 1 to try again at once. */
static int mc_store_server_accept_failed(mc_store_server_t *srv, int e) {
  if (e == EINTR || e == ECONNABORTED || e == EPROTO) return 1;
  if (e == EAGAIN || e == EWOULDBLOCK) return 0;
  /* Out of descriptors: a connection that has not proven the secret gives its own up. */
  if ((e == EMFILE || e == ENFILE) &&
      mc_store_core_evict_pending(&srv->core, "out of file descriptors")) {
    mc_store_server_reap(srv);
    return 1;
  }
  /* Nothing to free: the connection stays queued, so stop polling the listener for a moment
     instead of spinning on it. */
  MC_WARN("rendezvous store: accept failed (%s); %zu clients connected, retrying in %d ms",
          strerror(e), srv->core.authed.n, MC_STORE_ACCEPT_PAUSE_MS);
  srv->listen_pause_until = mc_now_ms() + MC_STORE_ACCEPT_PAUSE_MS;
  return 0;
}

static void mc_store_server_accept(mc_store_server_t *srv) {
  for (int taken = 0; taken < MC_STORE_ACCEPT_BURST; taken++) {
    struct sockaddr_storage ss;
    socklen_t slen = sizeof(ss);
    int fd = accept4(srv->listen_fd, (struct sockaddr *)&ss, &slen, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (mc_store_server_accept_failed(srv, errno)) continue;
      return;
    }
    int one = 1;
    if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) != 0)
      MC_TRACE("rendezvous store: TCP_NODELAY on a client socket failed: %s", strerror(errno));
    char peer[80];
    mc_store_peer_name((struct sockaddr *)&ss, slen, peer, sizeof(peer));
    mc_store_conn_t *c = mc_store_core_accept(&srv->core, peer, mc_now_ms());
    if (c == NULL) {
      close(fd);
      continue;
    }
    c->fd = fd;
    mc_store_server_reap(srv);     /* the connection it may have displaced */
    mc_store_server_flush(srv, c); /* the greeting */
  }
}

/* ---- the thread --------------------------------------------------------------------------- */

/* Room for n polled connections; on failure fewer are polled this round (logged). */
static size_t mc_store_server_reserve(mc_store_server_t *srv, size_t n) {
  if (n <= srv->cap) return n;
  size_t ncap = MC_MAX(n, srv->cap * 2);
  mc_store_conn_t **np = realloc(srv->polled, ncap * sizeof(*np));
  if (np != NULL) srv->polled = np;
  struct pollfd *nf = np != NULL ? realloc(srv->pfds, (ncap + 2) * sizeof(*nf)) : NULL;
  if (nf != NULL) srv->pfds = nf;
  if (np == NULL || nf == NULL) {
    MC_WARN("rendezvous store: out of memory polling %zu clients; serving %zu this round", n,
            srv->cap);
    return srv->cap;
  }
  srv->cap = ncap;
  return n;
}

/* Fills pfds for this round; returns the number of connections polled. */
static size_t mc_store_server_prepare(mc_store_server_t *srv, int64_t now) {
  size_t n = mc_store_server_reserve(srv, srv->core.pending.n + srv->core.authed.n), i = 0;
  srv->pfds[0] = (struct pollfd){srv->wake_rd, POLLIN, 0};
  srv->pfds[1] = (struct pollfd){srv->listen_pause_until > now ? -1 : srv->listen_fd, POLLIN, 0};
  mc_store_list_t *lists[2] = {&srv->core.pending, &srv->core.authed};
  for (int l = 0; l < 2; l++)
    for (mc_store_conn_t *c = lists[l]->head; c != NULL && i < n; c = c->next, i++) {
      /* A waiting or replying connection is only watched for hang-up, so a client that sends
         early cannot make poll spin. */
      short ev = c->state == MC_CONN_READ   ? POLLIN
                 : c->state == MC_CONN_WAIT ? POLLRDHUP
                                            : (POLLOUT | POLLRDHUP);
      srv->pfds[2 + i] = (struct pollfd){c->fd, ev, 0};
      srv->polled[i] = c;
    }
  return i;
}

static void mc_store_server_events(mc_store_server_t *srv, mc_store_conn_t *c, short re) {
  if (c->state == MC_CONN_DEAD || re == 0) return;
  if (re & POLLNVAL) {
    mc_store_conn_drop(&srv->core, c, "invalid descriptor");
  } else if (c->state == MC_CONN_READ) {
    mc_store_server_read(srv, c); /* a hang-up shows as end of stream or an error */
  } else if (re & (POLLRDHUP | POLLHUP | POLLERR)) {
    mc_store_conn_drop(&srv->core, c, "disconnected");
  } else if (c->state == MC_CONN_WRITE && (re & POLLOUT)) {
    mc_store_server_flush(srv, c);
    mc_store_server_read(srv, c);
  }
}

static void *mc_store_server_main(void *arg) {
  mc_store_server_t *srv = arg;
  for (;;) {
    int64_t now = mc_now_ms();
    int64_t next = mc_store_core_expire(&srv->core, now);
    mc_store_server_flush_all(srv); /* timeouts answered, replies to woken waiters */
    mc_store_server_reap(srv);
    if (srv->listen_pause_until > now && (next < 0 || srv->listen_pause_until < next))
      next = srv->listen_pause_until;
    int timeout = next < 0 ? -1 : (int)MC_MIN(MC_MAX(next - now, 0), (int64_t)INT_MAX);
    size_t npoll = mc_store_server_prepare(srv, now);
    if (poll(srv->pfds, 2 + npoll, timeout) < 0) {
      if (errno != EINTR) {
        MC_WARN("rendezvous store: poll failed (%s); retrying", strerror(errno));
        mc_sleep_us(10000);
      }
      continue;
    }
    if (srv->pfds[0].revents != 0) break; /* mc_store_server_stop */
    for (size_t i = 0; i < npoll; i++)
      mc_store_server_events(srv, srv->polled[i], srv->pfds[2 + i].revents);
    /* Last: accepting may free connections that polled[] still names. */
    if (srv->pfds[1].revents != 0) mc_store_server_accept(srv);
  }
  return NULL;
}

/* ---- listening ---------------------------------------------------------------------------- */

/* Binds and listens on one address; -1 with *errno_p and *step_p on failure. */
static int mc_store_listen_on(const struct addrinfo *ai, int *errno_p, const char **step_p) {
  int one = 1, zero = 0;
  int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    *step_p = "socket";
    *errno_p = errno;
    return -1;
  }
  const struct sockaddr_in6 *a6 = (const struct sockaddr_in6 *)ai->ai_addr;
  int dual = ai->ai_family == AF_INET6 && IN6_IS_ADDR_UNSPECIFIED(&a6->sin6_addr);
  if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0) {
    *step_p = "SO_REUSEADDR";
    goto fail;
  }
  /* "::" means every interface: IPv4 ones too. */
  if (dual && setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero)) != 0) {
    *step_p = "IPV6_V6ONLY";
    goto fail;
  }
  if (bind(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
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
  char serv[16];
  struct addrinfo hints, *res = NULL;
  memset(&hints, 0, sizeof(hints));
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  snprintf(serv, sizeof(serv), "%d", port);
  int g = getaddrinfo(host, serv, &hints, &res);
  if (g != 0)
    return mc_err_set(err, MOECOMM_ERR_CONFIG,
                      "rendezvous store: cannot resolve the bind address '%s': %s", host,
                      g == EAI_SYSTEM ? strerror(errno) : gai_strerror(g));
  for (struct addrinfo *ai = res; ai != NULL && fd < 0; ai = ai->ai_next)
    fd = mc_store_listen_on(ai, &e, &step);
  freeaddrinfo(res);
  if (fd < 0 && strcmp(host, "::") == 0 && (e == EAFNOSUPPORT || e == EADDRNOTAVAIL))
    return mc_store_listen("0.0.0.0", port, fd_p, err); /* a host without IPv6 */
  if (fd < 0) {
    const char *fmt = strchr(host, ':') != NULL ? "[%s]:%d" : "%s:%d";
    char shown[300];
    snprintf(shown, sizeof(shown), fmt, host, port);
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

/* ---- start and stop ----------------------------------------------------------------------- */

static moecomm_result_t mc_store_server_check_opts(const mc_store_server_opts_t *o,
                                                   mc_store_core_limits_t *lim_p, mc_err_t *err) {
  if (o->port < 0 || o->port > 65535)
    return mc_err_set(
        err, MOECOMM_ERR_INVALID_ARGUMENT,
        "rendezvous store: port %d is out of range (0 picks a free one, else 1-65535)", o->port);
  if (o->secret == NULL || o->secret_len < MC_STORE_SECRET_MIN ||
      o->secret_len > MC_STORE_SECRET_MAX)
    return mc_err_set(err, MOECOMM_ERR_INVALID_ARGUMENT,
                      "rendezvous store: the secret is %s%zu bytes; it must be %d to %d bytes",
                      o->secret == NULL ? "NULL with " : "", o->secret_len, MC_STORE_SECRET_MIN,
                      MC_STORE_SECRET_MAX);
  if (o->timeout_ms < 0 || o->max_clients < 0)
    return mc_err_set(err, MOECOMM_ERR_INVALID_ARGUMENT,
                      "rendezvous store: timeout_ms %d and max_clients %d must not be negative",
                      o->timeout_ms, o->max_clients);
  mc_store_core_limits_t lim;
  lim.max_clients = o->max_clients > 0 ? (size_t)o->max_clients : MC_STORE_DEFAULT_MAX_CLIENTS;
  lim.max_value = o->max_value_bytes > 0 ? o->max_value_bytes : MC_STORE_DEFAULT_MAX_VALUE;
  lim.max_total = o->max_total_bytes > 0 ? o->max_total_bytes : MC_STORE_DEFAULT_MAX_TOTAL;
  lim.max_wait_ms = o->timeout_ms > 0 ? o->timeout_ms : MC_STORE_DEFAULT_TIMEOUT_MS;
  if (lim.max_value > MC_STORE_VALUE_MAX || lim.max_total < lim.max_value)
    return mc_err_set(err, MOECOMM_ERR_INVALID_ARGUMENT,
                      "rendezvous store: max_value_bytes %zu must be at most %llu (64 MiB) and at "
                      "most max_total_bytes %zu",
                      lim.max_value, (unsigned long long)MC_STORE_VALUE_MAX, lim.max_total);
  *lim_p = lim;
  return MOECOMM_SUCCESS;
}

/* The thread takes no signals: they belong to the host's threads. */
static moecomm_result_t mc_store_server_spawn(mc_store_server_t *srv, mc_err_t *err) {
  sigset_t all, old;
  sigfillset(&all);
  int e = pthread_sigmask(SIG_SETMASK, &all, &old);
  if (e != 0)
    return mc_err_set(err, MOECOMM_ERR_BACKEND, "rendezvous store: pthread_sigmask: %s",
                      strerror(e));
  e = pthread_create(&srv->thread, NULL, mc_store_server_main, srv);
  int e2 = pthread_sigmask(SIG_SETMASK, &old, NULL);
  if (e2 != 0) MC_WARN("rendezvous store: restoring the signal mask failed: %s", strerror(e2));
  if (e != 0)
    return mc_err_set(err, MOECOMM_ERR_BACKEND, "rendezvous store: cannot start its thread: %s",
                      strerror(e));
  return MOECOMM_SUCCESS;
}

static int mc_store_bound_port(int fd) {
  struct sockaddr_storage ss;
  socklen_t slen = sizeof(ss);
  if (getsockname(fd, (struct sockaddr *)&ss, &slen) != 0) return -1;
  return ss.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&ss)->sin6_port)
                                  : ntohs(((struct sockaddr_in *)&ss)->sin_port);
}

moecomm_result_t mc_store_server_start(const mc_store_server_opts_t *opts,
                                       mc_store_server_t **srv_p, int *port_p, mc_err_t *err) {
  mc_store_core_limits_t lim;
  int fd = -1, pipefd[2] = {-1, -1};
  if (opts == NULL || srv_p == NULL)
    return mc_err_set(err, MOECOMM_ERR_INVALID_ARGUMENT, "rendezvous store: %s is NULL",
                      opts == NULL ? "opts" : "srv_p");
  moecomm_result_t r = mc_store_server_check_opts(opts, &lim, err);
  if (r != MOECOMM_SUCCESS) return r;
  const char *host = opts->bind_host != NULL && opts->bind_host[0] ? opts->bind_host : "127.0.0.1";
  if ((r = mc_store_listen(host, opts->port, &fd, err)) != MOECOMM_SUCCESS) return r;
  mc_store_server_t *srv = NULL;
  int bound = mc_store_bound_port(fd);
  if (bound < 0 || pipe2(pipefd, O_NONBLOCK | O_CLOEXEC) != 0) {
    r = mc_err_set(err, MOECOMM_ERR_BACKEND, "rendezvous store: %s: %s",
                   bound < 0 ? "getsockname" : "pipe2", strerror(errno));
    goto fail;
  }
  srv = calloc(1, sizeof(*srv));
  if (srv == NULL || mc_store_core_init(&srv->core, opts->secret, opts->secret_len, &lim) != 0 ||
      mc_store_server_reserve(srv, 64) < 64) {
    r = mc_err_set(err, MOECOMM_ERR_NO_MEMORY, "rendezvous store: out of host memory");
    goto fail;
  }
  srv->listen_fd = fd;
  srv->wake_rd = pipefd[0];
  srv->wake_wr = pipefd[1];
  srv->port = bound;
  if ((r = mc_store_server_spawn(srv, err)) != MOECOMM_SUCCESS) goto fail;
  MC_INFO("rendezvous store listening on %s port %d", host, bound);
  *srv_p = srv;
  if (port_p != NULL) *port_p = bound;
  return MOECOMM_SUCCESS;

fail:
  if (srv != NULL) {
    mc_store_core_fini(&srv->core);
    free(srv->pfds);
    free(srv->polled);
    free(srv);
  }
  if (pipefd[0] >= 0) close(pipefd[0]);
  if (pipefd[1] >= 0) close(pipefd[1]);
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
  mc_store_list_t *lists[3] = {&srv->core.pending, &srv->core.authed, &srv->core.dead};
  for (int i = 0; i < 3; i++)
    for (mc_store_conn_t *c = lists[i]->head; c != NULL; c = c->next)
      if (c->fd >= 0) close(c->fd);
  mc_store_core_fini(&srv->core);
  close(srv->listen_fd);
  close(srv->wake_rd);
  close(srv->wake_wr);
  free(srv->pfds);
  free(srv->polled);
  free(srv);
}
