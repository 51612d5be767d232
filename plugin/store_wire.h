/* store_wire.h - the rendezvous store's wire format: frames, limits, encode and decode.
 *
 * Little-endian throughout:
 *   request 32 bytes: magic u32, op u32, key_len u32, readers u32, timeout_ms u64, value_len u64,
 *           then key_len key bytes, then value_len value bytes (SET only);
 *   reply   16 bytes: magic u32, status u32, value_len u64, then the value (GET only).
 * Pure functions over byte buffers (no sockets), so every decoder can be fuzzed. */
#ifndef MC_STORE_WIRE_H_
#define MC_STORE_WIRE_H_

#include <stddef.h>
#include <stdint.h>

#define MC_STORE_MAGIC 0x3153434dU /* "MCS1": protocol version 1 */
#define MC_STORE_KEY_MAX 256
#define MC_STORE_VALUE_MAX ((size_t)64 << 20)
#define MC_STORE_REQ_BYTES 32
#define MC_STORE_REP_BYTES 16

enum { MC_STORE_OP_HELLO = 1, MC_STORE_OP_SET = 2, MC_STORE_OP_GET = 3, MC_STORE_OP_CHECK = 4 };
enum { MC_STORE_OK = 0, MC_STORE_ABSENT = 1, MC_STORE_TIMEOUT = 2 };

typedef struct mc_store_req {
  uint32_t magic;
  uint32_t op;
  uint32_t key_len;
  uint32_t readers;    /* SET: gets before the key is deleted; 0 keeps it */
  uint64_t timeout_ms; /* GET: how long the server may wait for the key */
  uint64_t value_len;  /* SET: bytes of value after the key */
} mc_store_req_t;

typedef struct mc_store_rep {
  uint32_t magic;
  uint32_t status;
  uint64_t value_len;
} mc_store_rep_t;

void mc_store_req_encode(const mc_store_req_t *req, unsigned char out[MC_STORE_REQ_BYTES]);
/* Decodes a request header and checks it: 1 when valid, else 0 (*req_p holds the raw fields
   either way, for the log line that names them). */
int mc_store_req_decode(const unsigned char in[MC_STORE_REQ_BYTES], mc_store_req_t *req_p);

void mc_store_rep_encode(const mc_store_rep_t *rep, unsigned char out[MC_STORE_REP_BYTES]);
/* Decodes a reply header to the request `op` and checks it: 1 when valid, else 0 (raw fields
   in *rep_p either way). */
int mc_store_rep_decode(const unsigned char in[MC_STORE_REP_BYTES], uint32_t op,
                        mc_store_rep_t *rep_p);

/* "set", "get", ... for messages. */
const char *mc_store_op_name(uint32_t op);

#endif
