/* SPDX-License-Identifier: Apache-2.0 */
/* store_core.h - what the store server does with the bytes of its connections, without sockets.
 *
 * store_server.c owns the sockets and the thread; it asks a connection where its next bytes go
 * (mc_store_conn_want), says how many arrived (mc_store_conn_got), and sends what the connection
 * has to say (mc_store_conn_out / mc_store_conn_sent).  Everything else (the handshake, the
 * requests, the keys, waiting gets, ranks) happens here, so a connection's input handling can be
 * driven from a buffer (mc_store_conn_feed) by tests and fuzzers.
 *
 * A connection carries one request at a time: its next request is read only after the previous
 * one was answered.  Connections start pending (they must prove the secret within
 * MC_STORE_HANDSHAKE_MS; at most MC_STORE_PENDING_MAX at once, the oldest dropped first) and
 * become authenticated; a dropped connection waits in the dead list until the socket layer has
 * closed its descriptor (mc_store_core_reap). */
#ifndef MC_STORE_CORE_H_
#define MC_STORE_CORE_H_

#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "store_table.h"
#include "store_wire.h"

#define MC_STORE_PENDING_MAX 64
#define MC_STORE_HANDSHAKE_MS 2000
/* Ranks whose connection closed that the server remembers (the oldest are forgotten first). */
#define MC_STORE_DEPARTED_MAX 4096

typedef enum mc_store_conn_state {
  MC_CONN_WRITE, /* a reply is queued (the greeting first) */
  MC_CONN_READ,  /* reading a request */
  MC_CONN_WAIT,  /* a GET waits for its key */
  MC_CONN_DEAD   /* dropped; in the dead list */
} mc_store_conn_state_t;

typedef struct mc_store_conn mc_store_conn_t;

typedef struct mc_store_list {
  mc_store_conn_t *head, *tail;
  size_t n;
} mc_store_list_t;

struct mc_store_conn {
  mc_store_conn_t *prev, *next;   /* in the core's pending, authed or dead list */
  mc_store_conn_t *wprev, *wnext; /* in the core's waiting GETs */
  mc_store_list_t *list;
  int fd; /* the socket layer's; the core never uses it */
  mc_store_conn_state_t state;
  int close_after_reply;
  int goodbye; /* it said goodbye before closing */
  char peer[80];
  int64_t deadline; /* pending: of the handshake; waiting: of the GET */
  /* who it is, once the proof succeeded */
  int32_t rank; /* -1: an observer */
  uint32_t pid;
  uint64_t ns_hash;
  size_t ns_len;
  char ns[MC_STORE_KEY_MAX + 1];
  uint8_t challenge[MC_STORE_NONCE_BYTES];
  /* the request being read */
  uint8_t hdr[MC_STORE_REQ_BYTES];
  size_t got; /* bytes of it so far */
  mc_store_req_t req;
  char key[MC_STORE_KEY_MAX + 1];
  uint8_t hello[MC_STORE_HELLO_BYTES];
  mc_store_blob_t *in_blob;
  uint32_t refusal; /* SET: the status decided when its key arrived; its value is skipped */
  uint8_t skip[512];
  /* the reply being sent: header and inline body, then out_blob's bytes */
  uint8_t out[MC_STORE_REP_BYTES + MC_STORE_TEXT_MAX];
  size_t out_len, out_off;
  mc_store_blob_t *out_blob;
};

typedef struct mc_store_core_limits {
  size_t max_clients;  /* authenticated connections at once */
  size_t max_value;    /* largest value */
  size_t max_total;    /* bytes all values and keys may hold */
  int64_t max_wait_ms; /* cap on a GET's wait */
} mc_store_core_limits_t;

/* A rank whose connection closed: GETs naming it as the writer fail at once. */
typedef struct mc_store_departed {
  uint64_t ns_hash;
  int32_t rank;
  int32_t goodbye;
} mc_store_departed_t;

typedef struct mc_store_core {
  mc_store_table_t table;
  uint8_t secret[MC_STORE_SECRET_MAX];
  size_t secret_len;
  mc_store_core_limits_t lim;
  mc_store_list_t pending, authed, dead;
  mc_store_conn_t *whead, *wtail; /* waiting GETs, oldest first */
  int flood_warned;               /* the pending cap was hit once (one WARN per server) */
  mc_store_departed_t departed[MC_STORE_DEPARTED_MAX]; /* a ring */
  size_t ndeparted;                                    /* recorded so far (the ring wraps) */
} mc_store_core_t;

/* 0 on success, -1 out of memory.  secret: MC_STORE_SECRET_MIN..MAX bytes (checked by the
   caller); limits all non-zero. */
int mc_store_core_init(mc_store_core_t *core, const uint8_t *secret, size_t secret_len,
                       const mc_store_core_limits_t *lim);
/* Frees every connection and key; the caller has closed the descriptors. */
void mc_store_core_fini(mc_store_core_t *core);

/* A new pending connection from `peer` with its greeting queued; when MC_STORE_PENDING_MAX are
   pending, the oldest is dropped first.  NULL when out of memory or randomness. */
mc_store_conn_t *mc_store_core_accept(mc_store_core_t *core, const char *peer, int64_t now);
/* Drops the oldest pending connection (to free a descriptor); 0 when none is pending. */
int mc_store_core_evict_pending(mc_store_core_t *core, const char *why);

/* Answers GETs whose time is up and drops handshakes whose time is up; returns the next deadline
   (mc_now_ms clock) or -1 when nothing waits. */
int64_t mc_store_core_expire(mc_store_core_t *core, int64_t now);

/* The next dropped connection, unlinked, or NULL; the caller closes its fd and frees it. */
mc_store_conn_t *mc_store_core_reap(mc_store_core_t *core);

/* In state MC_CONN_READ: where the next bytes go and how many at most. */
void mc_store_conn_want(mc_store_conn_t *c, uint8_t **dst_p, size_t *len_p);
/* n (1..*len_p of want) bytes arrived; a complete request is served.  1 when a request
   completed. */
int mc_store_conn_got(mc_store_core_t *core, mc_store_conn_t *c, size_t n, int64_t now);
/* Feeds bytes as if they arrived on the socket, while the connection reads; returns how many
   it took (it stops when a reply is queued, a GET waits, or the connection was dropped). */
size_t mc_store_conn_feed(mc_store_core_t *core, mc_store_conn_t *c, const void *buf, size_t len,
                          int64_t now);

/* In state MC_CONN_WRITE: the unsent rest of the reply in iov (at most 2); returns the count. */
int mc_store_conn_out(const mc_store_conn_t *c, struct iovec iov[2]);
/* n bytes of it went out; when all did, the connection reads again (or is dropped when the
   reply was its last). */
void mc_store_conn_sent(mc_store_core_t *core, mc_store_conn_t *c, size_t n);

/* The connection is gone or must go (end of stream, error, malformed input): one TRACE line.
   When it held a rank, every GET waiting for that rank as its writer is answered PEER_GONE. */
void mc_store_conn_drop(mc_store_core_t *core, mc_store_conn_t *c, const char *why);

#endif
