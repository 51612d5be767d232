/* SPDX-License-Identifier: Apache-2.0 */
/* store_core.c - the store server's logic without sockets (store_core.h). */
#include "store_core.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "log.h"
#include "sha256.h"
#include "util.h"

/* ---- lists ------------------------------------------------------------------------------- */

static void mc_store_list_push(mc_store_list_t *l, mc_store_conn_t *c) {
  c->prev = l->tail;
  c->next = NULL;
  if (l->tail != NULL)
    l->tail->next = c;
  else
    l->head = c;
  l->tail = c;
  l->n++;
  c->list = l;
}

static void mc_store_list_remove(mc_store_conn_t *c) {
  mc_store_list_t *l = c->list;
  if (c->prev != NULL)
    c->prev->next = c->next;
  else
    l->head = c->next;
  if (c->next != NULL)
    c->next->prev = c->prev;
  else
    l->tail = c->prev;
  l->n--;
  c->prev = c->next = NULL;
  c->list = NULL;
}

static void mc_store_waiter_push(mc_store_core_t *core, mc_store_conn_t *c) {
  c->wnext = NULL;
  c->wprev = core->wtail;
  if (core->wtail != NULL)
    core->wtail->wnext = c;
  else
    core->whead = c;
  core->wtail = c;
}

static void mc_store_waiter_unlink(mc_store_core_t *core, mc_store_conn_t *c) {
  if (c->wprev != NULL)
    c->wprev->wnext = c->wnext;
  else
    core->whead = c->wnext;
  if (c->wnext != NULL)
    c->wnext->wprev = c->wprev;
  else
    core->wtail = c->wprev;
  c->wprev = c->wnext = NULL;
}

/* ---- replies ------------------------------------------------------------------------------ */

/* Queues a reply: header, an inline body of up to MC_STORE_TEXT_MAX bytes, then blob's bytes. */
static void mc_store_reply(mc_store_conn_t *c, uint32_t status, const void *body, size_t body_len,
                           mc_store_blob_t *blob) {
  mc_store_rep_t rep = {MC_STORE_MAGIC, status, body_len + (blob != NULL ? blob->len : 0)};
  mc_store_rep_encode(&rep, c->out);
  if (body_len > 0) memcpy(c->out + MC_STORE_REP_BYTES, body, body_len);
  c->out_len = MC_STORE_REP_BYTES + body_len;
  c->out_off = 0;
  if (blob != NULL) blob->refs++;
  c->out_blob = blob;
  c->state = MC_CONN_WRITE;
}

/* A reply whose body is a sentence (a refusal); `last`: the connection closes after it. */
static void mc_store_refuse(mc_store_core_t *core, mc_store_conn_t *c, uint32_t status, int last,
                            const char *fmt, ...) __attribute__((format(printf, 5, 6)));
static void mc_store_refuse(mc_store_core_t *core, mc_store_conn_t *c, uint32_t status, int last,
                            const char *fmt, ...) {
  char text[MC_STORE_TEXT_MAX + 1];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(text, sizeof(text), fmt, ap);
  va_end(ap);
  size_t len = n < 0 ? 0 : MC_MIN((size_t)n, (size_t)MC_STORE_TEXT_MAX);
  mc_store_reply(c, status, text, len, NULL);
  c->close_after_reply = last;
}

int mc_store_conn_out(const mc_store_conn_t *c, struct iovec iov[2]) {
  int n = 0;
  size_t blen = c->out_blob != NULL ? c->out_blob->len : 0;
  if (c->out_off < c->out_len) {
    iov[n].iov_base = (void *)(c->out + c->out_off);
    iov[n++].iov_len = c->out_len - c->out_off;
  }
  if (blen > 0) {
    size_t boff = c->out_off > c->out_len ? c->out_off - c->out_len : 0;
    iov[n].iov_base = c->out_blob->data + boff;
    iov[n++].iov_len = blen - boff;
  }
  return n;
}

void mc_store_conn_sent(mc_store_core_t *core, mc_store_conn_t *c, size_t n) {
  size_t total = c->out_len + (c->out_blob != NULL ? c->out_blob->len : 0);
  c->out_off += n;
  if (c->out_off < total) return;
  mc_store_blob_release(&core->table, c->out_blob);
  c->out_blob = NULL;
  c->out_len = c->out_off = 0;
  c->got = 0;
  c->state = MC_CONN_READ;
  if (c->close_after_reply) mc_store_conn_drop(core, c, "refused");
}

/* ---- ranks that left ----------------------------------------------------------------------- */

static mc_store_departed_t *mc_store_departed_find(mc_store_core_t *core, uint64_t ns_hash,
                                                   int32_t rank) {
  size_t n = MC_MIN(core->ndeparted, (size_t)MC_STORE_DEPARTED_MAX);
  for (size_t i = 0; i < n; i++)
    if (core->departed[i].rank == rank && core->departed[i].ns_hash == ns_hash)
      return &core->departed[i];
  return NULL;
}

/* Answers a GET whose writer is gone. */
static void mc_store_writer_gone(mc_store_core_t *core, mc_store_conn_t *w, int32_t rank,
                                 int goodbye) {
  if (goodbye)
    mc_store_refuse(core, w, MC_STORE_PEER_GONE, 0,
                    "rank %d said goodbye (closed its store connection)", (int)rank);
  else
    mc_store_refuse(core, w, MC_STORE_PEER_GONE, 0, "rank %d disconnected (process exited?)",
                    (int)rank);
}

static int mc_store_same_ns(const mc_store_conn_t *a, const mc_store_conn_t *b) {
  return a->ns_hash == b->ns_hash && a->ns_len == b->ns_len && memcmp(a->ns, b->ns, a->ns_len) == 0;
}

/* c, which held a rank, is closing: remember that, and end the waits for it. */
static void mc_store_depart(mc_store_core_t *core, mc_store_conn_t *c) {
  mc_store_departed_t *d = mc_store_departed_find(core, c->ns_hash, c->rank);
  if (d == NULL) d = &core->departed[core->ndeparted++ % MC_STORE_DEPARTED_MAX];
  char ns[MC_STORE_KEY_MAX + 1];
  *d = (mc_store_departed_t){c->ns_hash, c->rank, c->goodbye};
  mc_store_printable(c->ns, c->ns_len, ns, sizeof(ns));
  MC_INFO("rendezvous store: rank %d of '%s' (%s, pid %u) %s", (int)c->rank, ns, c->peer, c->pid,
          c->goodbye ? "said goodbye" : "disconnected without a goodbye");
  for (mc_store_conn_t *w = core->whead, *next; w != NULL; w = next) {
    next = w->wnext;
    if (w->req.rank != c->rank || !mc_store_same_ns(w, c)) continue;
    mc_store_waiter_unlink(core, w);
    mc_store_writer_gone(core, w, c->rank, c->goodbye);
  }
}

/* ---- connections -------------------------------------------------------------------------- */

void mc_store_conn_drop(mc_store_core_t *core, mc_store_conn_t *c, const char *why) {
  if (c->state == MC_CONN_DEAD) return;
  MC_TRACE("rendezvous store: dropping client %s: %s", c->peer, why);
  if (c->state == MC_CONN_WAIT) mc_store_waiter_unlink(core, c);
  if (c->list == &core->authed && c->rank >= 0) mc_store_depart(core, c);
  mc_store_blob_release(&core->table, c->in_blob);
  c->in_blob = NULL;
  mc_store_blob_release(&core->table, c->out_blob);
  c->out_blob = NULL;
  c->state = MC_CONN_DEAD;
  mc_store_list_remove(c);
  mc_store_list_push(&core->dead, c);
}

int mc_store_core_evict_pending(mc_store_core_t *core, const char *why) {
  mc_store_conn_t *old = core->pending.head;
  if (old == NULL) return 0;
  if (!core->flood_warned) {
    MC_WARN(
        "rendezvous store: %s: dropping the oldest connection that has not proven the secret "
        "(%s); further drops are logged at INFO",
        why, old->peer);
    core->flood_warned = 1;
  } else {
    MC_INFO("rendezvous store: %s: dropping %s, which has not proven the secret", why, old->peer);
  }
  mc_store_conn_drop(core, old, why);
  return 1;
}

mc_store_conn_t *mc_store_core_accept(mc_store_core_t *core, const char *peer, int64_t now) {
  uint8_t challenge[MC_STORE_NONCE_BYTES];
  if (getrandom(challenge, sizeof(challenge), 0) != (ssize_t)sizeof(challenge)) {
    MC_WARN("rendezvous store: getrandom failed (%s): refusing %s", strerror(errno), peer);
    return NULL;
  }
  mc_store_conn_t *c = calloc(1, sizeof(*c));
  if (c == NULL) {
    MC_WARN("rendezvous store: out of memory for client %s; refusing it", peer);
    return NULL;
  }
  if (core->pending.n >= MC_STORE_PENDING_MAX)
    mc_store_core_evict_pending(core, "too many connections waiting to authenticate");
  c->fd = -1;
  c->rank = -1;
  snprintf(c->peer, sizeof(c->peer), "%s", peer);
  c->deadline = now + MC_STORE_HANDSHAKE_MS;
  memcpy(c->challenge, challenge, sizeof(challenge));
  mc_store_list_push(&core->pending, c);
  mc_store_reply(c, MC_STORE_CHALLENGE, challenge, sizeof(challenge), NULL);
  MC_TRACE("rendezvous store: client %s connected", c->peer);
  return c;
}

mc_store_conn_t *mc_store_core_reap(mc_store_core_t *core) {
  mc_store_conn_t *c = core->dead.head;
  if (c != NULL) mc_store_list_remove(c);
  return c;
}

int64_t mc_store_core_expire(mc_store_core_t *core, int64_t now) {
  /* Pending connections expire in the order they came. */
  while (core->pending.head != NULL && core->pending.head->deadline <= now) {
    MC_INFO("rendezvous store: %s did not prove the secret within %d ms: dropping it",
            core->pending.head->peer, MC_STORE_HANDSHAKE_MS);
    mc_store_conn_drop(core, core->pending.head, "handshake timed out");
  }
  int64_t next = core->pending.head != NULL ? core->pending.head->deadline : -1;
  for (mc_store_conn_t *w = core->whead, *nx; w != NULL; w = nx) {
    nx = w->wnext;
    if (w->deadline <= now) {
      mc_store_waiter_unlink(core, w);
      mc_store_reply(w, MC_STORE_TIMEOUT, NULL, 0, NULL);
    } else if (next < 0 || w->deadline < next) {
      next = w->deadline;
    }
  }
  return next;
}

int mc_store_core_init(mc_store_core_t *core, const uint8_t *secret, size_t secret_len,
                       const mc_store_core_limits_t *lim) {
  memset(core, 0, sizeof(*core));
  memcpy(core->secret, secret, secret_len);
  core->secret_len = secret_len;
  core->lim = *lim;
  return mc_store_table_init(&core->table, lim->max_total);
}

void mc_store_core_fini(mc_store_core_t *core) {
  /* No goodbyes or answers on the way out: the waiters close too. */
  mc_store_list_t *lists[3] = {&core->pending, &core->authed, &core->dead};
  for (int i = 0; i < 3; i++)
    while (lists[i]->head != NULL) {
      mc_store_conn_t *c = lists[i]->head;
      mc_store_blob_release(&core->table, c->in_blob);
      mc_store_blob_release(&core->table, c->out_blob);
      mc_store_list_remove(c);
      free(c);
    }
  core->whead = core->wtail = NULL;
  mc_store_table_fini(&core->table);
  mc_sha256_wipe(core->secret, sizeof(core->secret));
}

/* ---- the handshake ------------------------------------------------------------------------ */

/* The authenticated connection of rank `rank` in namespace ns, or NULL. */
static mc_store_conn_t *mc_store_rank_holder(mc_store_core_t *core, const char *ns, size_t ns_len,
                                             int32_t rank) {
  for (mc_store_conn_t *a = core->authed.head; a != NULL; a = a->next)
    if (a->rank == rank && a->ns_len == ns_len && memcmp(a->ns, ns, ns_len) == 0) return a;
  return NULL;
}

static void mc_store_do_hello(mc_store_core_t *core, mc_store_conn_t *c) {
  mc_store_hello_t h;
  uint8_t want[MC_STORE_MAC_BYTES];
  char ns[MC_STORE_KEY_MAX + 1];
  size_t ns_len = c->req.key_len;
  int32_t rank = c->req.rank;
  mc_store_hello_decode(c->hello, &h);
  mc_store_printable(c->key, ns_len, ns, sizeof(ns));
  mc_store_auth_mac(core->secret, core->secret_len, 'C', c->challenge, h.nonce, c->key, ns_len,
                    rank, h.pid, want);
  if (!mc_sha256_equal(want, h.mac, sizeof(want))) {
    MC_WARN(
        "rendezvous store: %s failed to prove the secret (claimed rank %d of '%s', pid %u): "
        "closing its connection",
        c->peer, (int)rank, ns, h.pid);
    mc_store_refuse(core, c, MC_STORE_DENIED, 1, "the proof of the secret was wrong");
    return;
  }
  mc_store_conn_t *holder = rank >= 0 ? mc_store_rank_holder(core, c->key, ns_len, rank) : NULL;
  if (holder != NULL) {
    MC_WARN(
        "rendezvous store: %s (pid %u) claims rank %d of '%s', which %s (pid %u) holds: "
        "refused (two processes were given the same rank)",
        c->peer, h.pid, (int)rank, ns, holder->peer, holder->pid);
    mc_store_refuse(core, c, MC_STORE_RANK_TAKEN, 1,
                    "rank %d of %s is already checked in by pid %u on %s", (int)rank, ns,
                    holder->pid, holder->peer);
    return;
  }
  if (core->authed.n >= core->lim.max_clients) {
    MC_WARN(
        "rendezvous store: %s (rank %d of '%s') refused: the store already has its maximum "
        "of %zu clients",
        c->peer, (int)rank, ns, core->lim.max_clients);
    mc_store_refuse(core, c, MC_STORE_BUSY, 1, "the store already has its maximum of %zu clients",
                    core->lim.max_clients);
    return;
  }
  mc_store_list_remove(c);
  mc_store_list_push(&core->authed, c);
  c->rank = rank;
  c->pid = h.pid;
  c->ns_hash = mc_store_table_hash(c->key, ns_len);
  c->ns_len = ns_len;
  memcpy(c->ns, c->key, ns_len);
  c->ns[ns_len] = '\0';
  /* Back after its connection closed: no longer gone. */
  mc_store_departed_t *d = rank >= 0 ? mc_store_departed_find(core, c->ns_hash, rank) : NULL;
  if (d != NULL) d->rank = -1;
  mc_store_welcome_t w;
  uint8_t body[MC_STORE_WELCOME_BYTES];
  mc_store_auth_mac(core->secret, core->secret_len, 'S', c->challenge, h.nonce, c->key, ns_len,
                    rank, h.pid, w.mac);
  w.max_value = core->lim.max_value;
  w.max_total = core->lim.max_total;
  w.max_wait_ms = (uint64_t)core->lim.max_wait_ms;
  mc_store_welcome_encode(&w, body);
  mc_store_reply(c, MC_STORE_OK, body, sizeof(body), NULL);
  MC_TRACE("rendezvous store: %s checked in as rank %d of '%s' (pid %u)", c->peer, (int)rank, ns,
           h.pid);
}

/* ---- requests ----------------------------------------------------------------------------- */

/* Hands one read of e to c; 1 when that was e's last read and e is gone. */
static int mc_store_serve_get(mc_store_core_t *core, mc_store_conn_t *c, mc_store_entry_t *e) {
  mc_store_reply(c, MC_STORE_OK, NULL, 0, e->blob);
  return mc_store_table_read(&core->table, e);
}

static void mc_store_do_set(mc_store_core_t *core, mc_store_conn_t *c) {
  mc_store_entry_t *e = NULL;
  size_t klen = c->req.key_len;
  uint32_t st = c->refusal;
  if (st == MC_STORE_OK) {
    st = mc_store_table_set(&core->table, c->key, klen, c->in_blob, c->req.readers, c->req.flags,
                            &e);
    if (st == MC_STORE_OK) c->in_blob = NULL; /* the table took it */
  }
  mc_store_blob_release(&core->table, c->in_blob);
  c->in_blob = NULL;
  if (st == MC_STORE_EXISTS) {
    mc_store_refuse(core, c, st, 0, "key '%s' is write-once and was already set", c->key);
    return;
  }
  if (st != MC_STORE_OK) {
    mc_store_refuse(core, c, MC_STORE_FULL, 0,
                    "the store holds %zu of its %zu bytes (max_total_bytes); the %" PRIu64
                    "-byte value of key '%s' does not fit",
                    core->table.used, core->table.budget, c->req.value_len, c->key);
    return;
  }
  mc_store_reply(c, MC_STORE_OK, NULL, 0, NULL);
  /* Wake the GETs waiting for this key, oldest first, while reads remain. */
  for (mc_store_conn_t *w = core->whead, *next; w != NULL; w = next) {
    next = w->wnext;
    if (w->req.key_len != klen || memcmp(w->key, c->key, klen) != 0) continue;
    mc_store_waiter_unlink(core, w);
    if (mc_store_serve_get(core, w, e)) break; /* e is gone */
  }
}

static void mc_store_do_get(mc_store_core_t *core, mc_store_conn_t *c, int64_t now) {
  mc_store_entry_t *e = mc_store_table_find(&core->table, c->key, c->req.key_len);
  if (e != NULL) {
    mc_store_serve_get(core, c, e);
    return;
  }
  /* Its writer has left without setting it: it will never come. */
  mc_store_departed_t *d =
      c->req.rank >= 0 ? mc_store_departed_find(core, c->ns_hash, c->req.rank) : NULL;
  if (d != NULL) {
    mc_store_writer_gone(core, c, d->rank, d->goodbye);
    return;
  }
  if (c->req.timeout_ms == 0) {
    mc_store_reply(c, MC_STORE_TIMEOUT, NULL, 0, NULL);
    return;
  }
  int64_t wait = (int64_t)MC_MIN(c->req.timeout_ms, (uint64_t)core->lim.max_wait_ms);
  c->deadline = now + wait;
  c->state = MC_CONN_WAIT;
  mc_store_waiter_push(core, c);
}

static void mc_store_process(mc_store_core_t *core, mc_store_conn_t *c, int64_t now) {
  switch (c->req.op) {
    case MC_STORE_OP_HELLO: mc_store_do_hello(core, c); break;
    case MC_STORE_OP_SET: mc_store_do_set(core, c); break;
    case MC_STORE_OP_GET: mc_store_do_get(core, c, now); break;
    case MC_STORE_OP_CHECK: {
      int found = mc_store_table_find(&core->table, c->key, c->req.key_len) != NULL;
      mc_store_reply(c, found ? MC_STORE_OK : MC_STORE_ABSENT, NULL, 0, NULL);
      break;
    }
    default:
      c->goodbye = 1;
      mc_store_conn_drop(core, c, "said goodbye");
      break;
  }
}

/* ---- reading ------------------------------------------------------------------------------ */

/* A complete header: 1 when the connection may go on reading the request. */
static int mc_store_on_header(mc_store_core_t *core, mc_store_conn_t *c) {
  const char *why = mc_store_req_decode(c->hdr, &c->req);
  int authed = c->list == &core->authed;
  if (why == NULL && authed == (c->req.op == MC_STORE_OP_HELLO))
    why = authed ? "a second handshake" : "a request before proving the secret";
  if (why == NULL) return 1;
  MC_WARN(
      "rendezvous store: malformed request from %s (%s; magic %#x, op %u, key %u bytes, "
      "value %" PRIu64 " bytes): dropping that client",
      c->peer, why, c->req.magic, c->req.op, c->req.key_len, c->req.value_len);
  mc_store_conn_drop(core, c, "malformed request");
  return 0;
}

/* A complete key: decides where a SET's value goes before any byte of it is kept. */
static void mc_store_on_key(mc_store_core_t *core, mc_store_conn_t *c) {
  c->key[c->req.key_len] = '\0';
  c->refusal = MC_STORE_OK;
  if (c->req.op != MC_STORE_OP_SET) return;
  uint64_t len = c->req.value_len;
  if (len > core->lim.max_value) {
    char key[MC_STORE_KEY_MAX + 1];
    mc_store_printable(c->key, c->req.key_len, key, sizeof(key));
    MC_WARN("rendezvous store: %s (rank %d) sent a %" PRIu64
            "-byte value for key '%s', over the "
            "limit of %zu bytes: refused, closing its connection",
            c->peer, (int)c->rank, len, key, core->lim.max_value);
    mc_store_refuse(core, c, MC_STORE_TOO_LARGE, 1,
                    "a value of %" PRIu64 " bytes is over the store's limit of %zu bytes", len,
                    core->lim.max_value);
    return;
  }
  int full = 0;
  c->in_blob = mc_store_blob_new(&core->table, (size_t)len, &full);
  if (c->in_blob == NULL) c->refusal = MC_STORE_FULL; /* the value is read and dropped */
}

void mc_store_conn_want(mc_store_conn_t *c, uint8_t **dst_p, size_t *len_p) {
  size_t klen = c->req.key_len, got = c->got;
  if (got < MC_STORE_REQ_BYTES) {
    *dst_p = c->hdr + got;
    *len_p = MC_STORE_REQ_BYTES - got;
    return;
  }
  if (got < MC_STORE_REQ_BYTES + klen) {
    *dst_p = (uint8_t *)c->key + (got - MC_STORE_REQ_BYTES);
    *len_p = MC_STORE_REQ_BYTES + klen - got;
    return;
  }
  size_t off = got - MC_STORE_REQ_BYTES - klen, left = (size_t)c->req.value_len - off;
  if (c->req.op == MC_STORE_OP_HELLO)
    *dst_p = c->hello + off;
  else if (c->in_blob != NULL)
    *dst_p = c->in_blob->data + off;
  else
    *dst_p = c->skip;
  *len_p =
      c->in_blob == NULL && c->req.op != MC_STORE_OP_HELLO ? MC_MIN(left, sizeof(c->skip)) : left;
}

int mc_store_conn_got(mc_store_core_t *core, mc_store_conn_t *c, size_t n, int64_t now) {
  size_t before = c->got;
  c->got += n;
  if (before < MC_STORE_REQ_BYTES) {
    if (c->got < MC_STORE_REQ_BYTES || !mc_store_on_header(core, c)) return 0;
  }
  size_t head = MC_STORE_REQ_BYTES + c->req.key_len;
  if (before < head) {
    if (c->got < head) return 0;
    mc_store_on_key(core, c);
    if (c->state != MC_CONN_READ) return 0; /* refused at once */
  }
  if (c->got < head + (size_t)c->req.value_len) return 0;
  mc_store_process(core, c, now);
  return 1;
}

size_t mc_store_conn_feed(mc_store_core_t *core, mc_store_conn_t *c, const void *buf, size_t len,
                          int64_t now) {
  const uint8_t *p = buf;
  size_t used = 0;
  while (used < len && c->state == MC_CONN_READ) {
    uint8_t *dst;
    size_t want;
    mc_store_conn_want(c, &dst, &want);
    size_t n = MC_MIN(want, len - used);
    memcpy(dst, p + used, n);
    used += n;
    mc_store_conn_got(core, c, n, now);
  }
  return used;
}
