/* SPDX-License-Identifier: Apache-2.0 */
/* store_wire.c - encode and decode of the rendezvous store's frames (store_wire.h). */
#include "store_wire.h"

#include <string.h>

#include "sha256.h"

#define MC_STORE_AUTH_LABEL "moecomm-store-v2"

static void mc_store_put32(uint8_t *p, uint32_t v) {
  for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static void mc_store_put64(uint8_t *p, uint64_t v) {
  for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static uint32_t mc_store_get32(const uint8_t *p) {
  uint32_t v = 0;
  for (int i = 0; i < 4; i++) v |= (uint32_t)p[i] << (8 * i);
  return v;
}
static uint64_t mc_store_get64(const uint8_t *p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; i++) v |= (uint64_t)p[i] << (8 * i);
  return v;
}

const char *mc_store_op_name(uint32_t op) {
  switch (op) {
    case MC_STORE_OP_GREETING: return "greeting";
    case MC_STORE_OP_HELLO: return "handshake";
    case MC_STORE_OP_SET: return "set";
    case MC_STORE_OP_GET: return "get";
    case MC_STORE_OP_CHECK: return "check";
    case MC_STORE_OP_BYE: return "goodbye";
    default: return "request";
  }
}

void mc_store_req_encode(const mc_store_req_t *req, uint8_t out[MC_STORE_REQ_BYTES]) {
  mc_store_put32(out, req->magic);
  mc_store_put32(out + 4, req->op);
  mc_store_put32(out + 8, req->key_len);
  mc_store_put32(out + 12, req->readers);
  mc_store_put32(out + 16, req->flags);
  mc_store_put32(out + 20, (uint32_t)req->rank);
  mc_store_put64(out + 24, req->timeout_ms);
  mc_store_put64(out + 32, req->value_len);
}

const char *mc_store_req_decode(const uint8_t in[MC_STORE_REQ_BYTES], mc_store_req_t *req_p) {
  mc_store_req_t q;
  q.magic = mc_store_get32(in);
  q.op = mc_store_get32(in + 4);
  q.key_len = mc_store_get32(in + 8);
  q.readers = mc_store_get32(in + 12);
  q.flags = mc_store_get32(in + 16);
  q.rank = (int32_t)mc_store_get32(in + 20);
  q.timeout_ms = mc_store_get64(in + 24);
  q.value_len = mc_store_get64(in + 32);
  *req_p = q;
  if (q.magic != MC_STORE_MAGIC)
    return "wrong magic (not a moecomm store client, or another version)";
  if (q.op < MC_STORE_OP_HELLO || q.op > MC_STORE_OP_BYE) return "unknown op";
  int keyed = q.op != MC_STORE_OP_BYE;
  if (keyed ? q.key_len < 1 || q.key_len > MC_STORE_KEY_MAX : q.key_len != 0)
    return "key length out of range";
  uint64_t value_max = q.op == MC_STORE_OP_SET     ? MC_STORE_VALUE_MAX
                       : q.op == MC_STORE_OP_HELLO ? MC_STORE_HELLO_BYTES
                                                   : 0;
  if (q.value_len > value_max || (q.op == MC_STORE_OP_HELLO && q.value_len != value_max))
    return "value length out of range";
  int ranked = q.op == MC_STORE_OP_HELLO || q.op == MC_STORE_OP_GET;
  if (ranked ? q.rank < -1 : q.rank != -1) return "rank out of range";
  if (q.op != MC_STORE_OP_SET && (q.readers != 0 || q.flags != 0)) return "readers or flags set";
  if (q.flags & ~MC_STORE_FLAG_WRITE_ONCE) return "unknown flags";
  if (q.op != MC_STORE_OP_GET && q.timeout_ms != 0) return "timeout set";
  return NULL;
}

void mc_store_rep_encode(const mc_store_rep_t *rep, uint8_t out[MC_STORE_REP_BYTES]) {
  mc_store_put32(out, rep->magic);
  mc_store_put32(out + 4, rep->status);
  mc_store_put64(out + 8, rep->value_len);
}

/* The value length a status may carry in answer to op: -1 not an answer to op, 0 none,
   1 up to MC_STORE_TEXT_MAX bytes of text, 2 exactly the given size, 3 up to VALUE_MAX. */
static int mc_store_rep_shape(uint32_t op, uint32_t status, uint64_t *size_p) {
  *size_p = 0;
  switch (op) {
    case MC_STORE_OP_GREETING:
      *size_p = MC_STORE_NONCE_BYTES;
      return status == MC_STORE_CHALLENGE ? 2 : -1;
    case MC_STORE_OP_HELLO:
      *size_p = MC_STORE_WELCOME_BYTES;
      if (status == MC_STORE_OK) return 2;
      return status == MC_STORE_DENIED || status == MC_STORE_RANK_TAKEN || status == MC_STORE_BUSY
                 ? 1
                 : -1;
    case MC_STORE_OP_SET:
      if (status == MC_STORE_OK) return 0;
      return status == MC_STORE_EXISTS || status == MC_STORE_TOO_LARGE || status == MC_STORE_FULL
                 ? 1
                 : -1;
    case MC_STORE_OP_GET:
      if (status == MC_STORE_OK) return 3;
      if (status == MC_STORE_TIMEOUT) return 0;
      return status == MC_STORE_PEER_GONE ? 1 : -1;
    case MC_STORE_OP_CHECK: return status == MC_STORE_OK || status == MC_STORE_ABSENT ? 0 : -1;
    default: return -1;
  }
}

const char *mc_store_rep_decode(const uint8_t in[MC_STORE_REP_BYTES], uint32_t op,
                                mc_store_rep_t *rep_p) {
  mc_store_rep_t p;
  p.magic = mc_store_get32(in);
  p.status = mc_store_get32(in + 4);
  p.value_len = mc_store_get64(in + 8);
  *rep_p = p;
  if (p.magic != MC_STORE_MAGIC) return "wrong magic";
  uint64_t size = 0;
  switch (mc_store_rep_shape(op, p.status, &size)) {
    case 0: return p.value_len == 0 ? NULL : "a value where none belongs";
    case 1: return p.value_len <= MC_STORE_TEXT_MAX ? NULL : "refusal text too long";
    case 2: return p.value_len == size ? NULL : "wrong body length";
    case 3: return p.value_len <= MC_STORE_VALUE_MAX ? NULL : "value too long";
    default: return "status does not answer this request";
  }
}

void mc_store_hello_encode(const mc_store_hello_t *h, uint8_t out[MC_STORE_HELLO_BYTES]) {
  memcpy(out, h->nonce, MC_STORE_NONCE_BYTES);
  mc_store_put32(out + MC_STORE_NONCE_BYTES, h->pid);
  memcpy(out + MC_STORE_NONCE_BYTES + 4, h->mac, MC_STORE_MAC_BYTES);
}

void mc_store_hello_decode(const uint8_t in[MC_STORE_HELLO_BYTES], mc_store_hello_t *h_p) {
  memcpy(h_p->nonce, in, MC_STORE_NONCE_BYTES);
  h_p->pid = mc_store_get32(in + MC_STORE_NONCE_BYTES);
  memcpy(h_p->mac, in + MC_STORE_NONCE_BYTES + 4, MC_STORE_MAC_BYTES);
}

void mc_store_welcome_encode(const mc_store_welcome_t *w, uint8_t out[MC_STORE_WELCOME_BYTES]) {
  memcpy(out, w->mac, MC_STORE_MAC_BYTES);
  mc_store_put64(out + MC_STORE_MAC_BYTES, w->max_value);
  mc_store_put64(out + MC_STORE_MAC_BYTES + 8, w->max_total);
  mc_store_put64(out + MC_STORE_MAC_BYTES + 16, w->max_wait_ms);
}

const char *mc_store_welcome_decode(const uint8_t in[MC_STORE_WELCOME_BYTES],
                                    mc_store_welcome_t *w_p) {
  mc_store_welcome_t w;
  memcpy(w.mac, in, MC_STORE_MAC_BYTES);
  w.max_value = mc_store_get64(in + MC_STORE_MAC_BYTES);
  w.max_total = mc_store_get64(in + MC_STORE_MAC_BYTES + 8);
  w.max_wait_ms = mc_store_get64(in + MC_STORE_MAC_BYTES + 16);
  *w_p = w;
  if (w.max_value == 0 || w.max_value > MC_STORE_VALUE_MAX) return "largest value out of range";
  if (w.max_total < w.max_value) return "total smaller than the largest value";
  if (w.max_wait_ms == 0 || w.max_wait_ms > (uint64_t)INT32_MAX) return "wait limit out of range";
  return NULL;
}

void mc_store_auth_mac(const uint8_t *secret, size_t secret_len, char side,
                       const uint8_t challenge[MC_STORE_NONCE_BYTES],
                       const uint8_t nonce[MC_STORE_NONCE_BYTES], const char *ns, size_t ns_len,
                       int32_t rank, uint32_t pid, uint8_t out[MC_STORE_MAC_BYTES]) {
  /* Every variable-length field is preceded by its length, so no two transcripts collide. */
  uint8_t side_byte = (uint8_t)side, n[4], tail[8];
  mc_store_put32(n, (uint32_t)ns_len);
  mc_store_put32(tail, (uint32_t)rank);
  mc_store_put32(tail + 4, pid);
  mc_sha256_hmac_t h;
  mc_sha256_hmac_init(&h, secret, secret_len);
  mc_sha256_hmac_update(&h, MC_STORE_AUTH_LABEL, sizeof(MC_STORE_AUTH_LABEL) - 1);
  mc_sha256_hmac_update(&h, &side_byte, 1);
  mc_sha256_hmac_update(&h, challenge, MC_STORE_NONCE_BYTES);
  mc_sha256_hmac_update(&h, nonce, MC_STORE_NONCE_BYTES);
  mc_sha256_hmac_update(&h, n, sizeof(n));
  mc_sha256_hmac_update(&h, ns, ns_len);
  mc_sha256_hmac_update(&h, tail, sizeof(tail));
  mc_sha256_hmac_final(&h, out);
}

void mc_store_printable(const void *text, size_t n, char *out, size_t size) {
  const uint8_t *t = text;
  size_t i = 0;
  for (; i < n && i + 1 < size; i++) out[i] = t[i] >= 0x20 && t[i] < 0x7f ? (char)t[i] : '?';
  out[i] = '\0';
}
