/* store_wire.c - encode and decode of the rendezvous store's frames (store_wire.h). */
#include "store_wire.h"

static void mc_store_put32(unsigned char *p, uint32_t v) {
  for (int i = 0; i < 4; i++) p[i] = (unsigned char)(v >> (8 * i));
}
static void mc_store_put64(unsigned char *p, uint64_t v) {
  for (int i = 0; i < 8; i++) p[i] = (unsigned char)(v >> (8 * i));
}
static uint32_t mc_store_get32(const unsigned char *p) {
  uint32_t v = 0;
  for (int i = 0; i < 4; i++) v |= (uint32_t)p[i] << (8 * i);
  return v;
}
static uint64_t mc_store_get64(const unsigned char *p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; i++) v |= (uint64_t)p[i] << (8 * i);
  return v;
}

const char *mc_store_op_name(uint32_t op) {
  switch (op) {
    case MC_STORE_OP_HELLO: return "handshake";
    case MC_STORE_OP_SET: return "set";
    case MC_STORE_OP_GET: return "get";
    case MC_STORE_OP_CHECK: return "check";
    default: return "request";
  }
}

void mc_store_req_encode(const mc_store_req_t *req, unsigned char out[MC_STORE_REQ_BYTES]) {
  mc_store_put32(out, req->magic);
  mc_store_put32(out + 4, req->op);
  mc_store_put32(out + 8, req->key_len);
  mc_store_put32(out + 12, req->readers);
  mc_store_put64(out + 16, req->timeout_ms);
  mc_store_put64(out + 24, req->value_len);
}

int mc_store_req_decode(const unsigned char in[MC_STORE_REQ_BYTES], mc_store_req_t *req_p) {
  mc_store_req_t q;
  q.magic = mc_store_get32(in);
  q.op = mc_store_get32(in + 4);
  q.key_len = mc_store_get32(in + 8);
  q.readers = mc_store_get32(in + 12);
  q.timeout_ms = mc_store_get64(in + 16);
  q.value_len = mc_store_get64(in + 24);
  *req_p = q;
  int key_ok =
      q.op == MC_STORE_OP_HELLO ? q.key_len == 0 : q.key_len >= 1 && q.key_len <= MC_STORE_KEY_MAX;
  int value_ok = q.op == MC_STORE_OP_SET ? q.value_len <= MC_STORE_VALUE_MAX : q.value_len == 0;
  return q.magic == MC_STORE_MAGIC && q.op >= MC_STORE_OP_HELLO && q.op <= MC_STORE_OP_CHECK &&
         key_ok && value_ok;
}

void mc_store_rep_encode(const mc_store_rep_t *rep, unsigned char out[MC_STORE_REP_BYTES]) {
  mc_store_put32(out, rep->magic);
  mc_store_put32(out + 4, rep->status);
  mc_store_put64(out + 8, rep->value_len);
}

int mc_store_rep_decode(const unsigned char in[MC_STORE_REP_BYTES], uint32_t op,
                        mc_store_rep_t *rep_p) {
  mc_store_rep_t p;
  p.magic = mc_store_get32(in);
  p.status = mc_store_get32(in + 4);
  p.value_len = mc_store_get64(in + 8);
  *rep_p = p;
  return p.magic == MC_STORE_MAGIC && p.status <= MC_STORE_TIMEOUT &&
         p.value_len <= MC_STORE_VALUE_MAX &&
         (p.value_len == 0 || (op == MC_STORE_OP_GET && p.status == MC_STORE_OK));
}
