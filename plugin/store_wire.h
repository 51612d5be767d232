/* SPDX-License-Identifier: Apache-2.0 */
/* store_wire.h - the rendezvous store's wire format: frames, limits, encode and decode.
 *
 * Little-endian throughout.  A connection starts with the server's greeting (a reply with status
 * CHALLENGE carrying a random challenge); the client answers with HELLO, proving the shared
 * secret with an HMAC over the transcript; the server's reply to HELLO carries its own HMAC and
 * its limits.  Only then are SET, GET, CHECK and BYE accepted.
 *
 *   request 40 bytes: magic u32, op u32, key_len u32, readers u32, flags u32, rank i32,
 *           timeout_ms u64, value_len u64; then key_len key bytes, then value_len value bytes.
 *           HELLO: key = namespace, rank = the rank checking in (-1: observer), value = hello body.
 *           SET: readers, flags; GET: rank = the writer expected to set the key (-1: none),
 *           timeout_ms = how long the server may wait.  Unused fields must be 0 (rank: -1).
 *   reply   16 bytes: magic u32, status u32, value_len u64; then the value (a GET's value, the
 *           challenge, the welcome body, or a refusal's sentence).
 *   hello body   68 bytes: client nonce [32], pid u32, client MAC [32].
 *   welcome body 56 bytes: server MAC [32], max value u64, max total u64, max wait ms u64.
 *
 * Pure functions over byte buffers (no sockets), so every decoder can be fuzzed. */
#ifndef MC_STORE_WIRE_H_
#define MC_STORE_WIRE_H_

#include <stddef.h>
#include <stdint.h>

#define MC_STORE_MAGIC 0x3253434dU /* "MCS2": protocol version 2 (authenticated) */
#define MC_STORE_KEY_MAX 256
#define MC_STORE_VALUE_MAX ((uint64_t)64 << 20) /* protocol cap; a server's limit may be lower */
#define MC_STORE_REQ_BYTES 40
#define MC_STORE_REP_BYTES 16
#define MC_STORE_NONCE_BYTES 32
#define MC_STORE_MAC_BYTES 32
#define MC_STORE_HELLO_BYTES (MC_STORE_NONCE_BYTES + 4 + MC_STORE_MAC_BYTES)
#define MC_STORE_WELCOME_BYTES (MC_STORE_MAC_BYTES + 24)
#define MC_STORE_TEXT_MAX 320 /* a refusal's sentence */
#define MC_STORE_SECRET_MIN 16
#define MC_STORE_SECRET_MAX 64
#define MC_STORE_FLAG_WRITE_ONCE 0x1u

enum {
  MC_STORE_OP_GREETING = 0, /* not a request: what rep_decode expects first on a connection */
  MC_STORE_OP_HELLO = 1,
  MC_STORE_OP_SET = 2,
  MC_STORE_OP_GET = 3,
  MC_STORE_OP_CHECK = 4,
  MC_STORE_OP_BYE = 5 /* no reply */
};

enum {
  MC_STORE_OK = 0,
  MC_STORE_ABSENT = 1,     /* CHECK: no such key */
  MC_STORE_TIMEOUT = 2,    /* GET: the key did not appear in time */
  MC_STORE_CHALLENGE = 3,  /* the greeting */
  MC_STORE_DENIED = 4,     /* HELLO: the proof of the secret failed */
  MC_STORE_RANK_TAKEN = 5, /* HELLO: another live connection holds the rank */
  MC_STORE_BUSY = 6,       /* HELLO: the server has max_clients connections */
  MC_STORE_EXISTS = 7,     /* SET: the key is write-once and exists */
  MC_STORE_TOO_LARGE = 8,  /* SET: over the largest value; the server closes the connection */
  MC_STORE_FULL = 9,       /* SET: over the bytes all values may hold; the value was skipped */
  MC_STORE_PEER_GONE = 10  /* GET: the writer's connection closed */
};

typedef struct mc_store_req {
  uint32_t magic;
  uint32_t op;
  uint32_t key_len;
  uint32_t readers;    /* SET: gets before the key is deleted; 0 keeps it */
  uint32_t flags;      /* SET: MC_STORE_FLAG_* */
  int32_t rank;        /* HELLO: rank checking in; GET: writer; else -1 */
  uint64_t timeout_ms; /* GET: how long the server may wait for the key */
  uint64_t value_len;  /* bytes after the key */
} mc_store_req_t;

typedef struct mc_store_rep {
  uint32_t magic;
  uint32_t status;
  uint64_t value_len;
} mc_store_rep_t;

typedef struct mc_store_hello {
  uint8_t nonce[MC_STORE_NONCE_BYTES];
  uint32_t pid;
  uint8_t mac[MC_STORE_MAC_BYTES];
} mc_store_hello_t;

typedef struct mc_store_welcome {
  uint8_t mac[MC_STORE_MAC_BYTES];
  uint64_t max_value;
  uint64_t max_total;
  uint64_t max_wait_ms;
} mc_store_welcome_t;

void mc_store_req_encode(const mc_store_req_t *req, uint8_t out[MC_STORE_REQ_BYTES]);
/* Decodes a request header into *req_p (always, so a log line can name the raw fields) and
   checks it against its op; NULL when valid, else why not ("unknown op", ...). */
const char *mc_store_req_decode(const uint8_t in[MC_STORE_REQ_BYTES], mc_store_req_t *req_p);

void mc_store_rep_encode(const mc_store_rep_t *rep, uint8_t out[MC_STORE_REP_BYTES]);
/* Decodes a reply header into *rep_p (always) and checks that its status and length answer a
   request `op` (MC_STORE_OP_GREETING for the first frame); NULL when valid, else why not. */
const char *mc_store_rep_decode(const uint8_t in[MC_STORE_REP_BYTES], uint32_t op,
                                mc_store_rep_t *rep_p);

void mc_store_hello_encode(const mc_store_hello_t *h, uint8_t out[MC_STORE_HELLO_BYTES]);
void mc_store_hello_decode(const uint8_t in[MC_STORE_HELLO_BYTES], mc_store_hello_t *h_p);
void mc_store_welcome_encode(const mc_store_welcome_t *w, uint8_t out[MC_STORE_WELCOME_BYTES]);
/* NULL when the limits it announces are usable (non-zero, within the protocol's), else why not. */
const char *mc_store_welcome_decode(const uint8_t in[MC_STORE_WELCOME_BYTES],
                                    mc_store_welcome_t *w_p);

/* The MAC of one side of the handshake: HMAC-SHA256 keyed with the secret over the protocol
   label, the side ('C' client, 'S' server), the server's challenge, the client's nonce, the
   namespace, the rank and the client's pid.  Both sides compute both MACs. */
void mc_store_auth_mac(const uint8_t *secret, size_t secret_len, char side,
                       const uint8_t challenge[MC_STORE_NONCE_BYTES],
                       const uint8_t nonce[MC_STORE_NONCE_BYTES], const char *ns, size_t ns_len,
                       int32_t rank, uint32_t pid, uint8_t out[MC_STORE_MAC_BYTES]);

/* "set", "get", ... for messages. */
const char *mc_store_op_name(uint32_t op);

/* Copies at most n bytes of untrusted text into out (size > 0), replacing bytes that are not
   printable ASCII with '?', so a log line cannot be forged or garbled; NUL-terminated. */
void mc_store_printable(const void *text, size_t n, char *out, size_t size);

#endif
