/* SPDX-License-Identifier: Apache-2.0 */
/* store_wire.c (fuzz target) - the rendezvous store's decoders (plugin/store_wire.c) on arbitrary
 * bytes.  Besides not crashing, every frame a decoder accepts must encode back to the same bytes
 * and respect the limits the decoder promises; a violation aborts (a finding). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../plugin/log.h"
#include "../../plugin/store_wire.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc;
  (void)argv;
  mc_log_set_level(MC_LOG_TRACE); /* every log line is formatted */
  return 0;
}

static void fuzz_req(const uint8_t *in) {
  mc_store_req_t q;
  uint8_t back[MC_STORE_REQ_BYTES];
  if (mc_store_req_decode(in, &q) != NULL) return;
  mc_store_req_encode(&q, back);
  if (memcmp(back, in, sizeof(back)) != 0) abort();
  int keyed = q.op != MC_STORE_OP_BYE;
  if (q.key_len > MC_STORE_KEY_MAX || (keyed && q.key_len == 0) || q.rank < -1) abort();
  if (q.value_len > MC_STORE_VALUE_MAX) abort();
  if (q.op == MC_STORE_OP_HELLO && q.value_len != MC_STORE_HELLO_BYTES) abort();
}

static void fuzz_rep(const uint8_t *in) {
  for (uint32_t op = MC_STORE_OP_GREETING; op <= MC_STORE_OP_BYE; op++) {
    mc_store_rep_t p;
    uint8_t back[MC_STORE_REP_BYTES];
    if (mc_store_rep_decode(in, op, &p) != NULL) continue;
    mc_store_rep_encode(&p, back);
    if (memcmp(back, in, sizeof(back)) != 0 || p.value_len > MC_STORE_VALUE_MAX) abort();
    if (op == MC_STORE_OP_BYE) abort(); /* a goodbye has no reply */
    if (p.status != MC_STORE_OK && p.value_len > MC_STORE_TEXT_MAX &&
        p.status != MC_STORE_CHALLENGE)
      abort();
  }
}

static void fuzz_bodies(const uint8_t *data, size_t size) {
  if (size >= MC_STORE_HELLO_BYTES) {
    mc_store_hello_t h;
    uint8_t back[MC_STORE_HELLO_BYTES];
    mc_store_hello_decode(data, &h);
    mc_store_hello_encode(&h, back);
    if (memcmp(back, data, sizeof(back)) != 0) abort();
  }
  if (size >= MC_STORE_WELCOME_BYTES) {
    mc_store_welcome_t w;
    if (mc_store_welcome_decode(data, &w) == NULL &&
        (w.max_value == 0 || w.max_value > MC_STORE_VALUE_MAX || w.max_total < w.max_value ||
         w.max_wait_ms == 0 || w.max_wait_ms > INT32_MAX))
      abort();
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  /* Every offset, so a frame is tried wherever it may start in a stream. */
  for (size_t off = 0; off + MC_STORE_REP_BYTES <= size && off < 64; off++) {
    if (off + MC_STORE_REQ_BYTES <= size) fuzz_req(data + off);
    fuzz_rep(data + off);
  }
  fuzz_bodies(data, size);
  char text[MC_STORE_TEXT_MAX + 1];
  mc_store_printable(data, size, text, sizeof(text));
  for (const char *p = text; *p != '\0'; p++)
    if (*p < 0x20 || *p >= 0x7f) abort();
  if (size >= 2 * MC_STORE_NONCE_BYTES) {
    uint8_t mac[MC_STORE_MAC_BYTES];
    size_t ns = size - 2 * MC_STORE_NONCE_BYTES;
    mc_store_auth_mac(data, size < MC_STORE_SECRET_MAX ? size : MC_STORE_SECRET_MAX, 'C', data,
                      data + MC_STORE_NONCE_BYTES, (const char *)data + 2 * MC_STORE_NONCE_BYTES,
                      ns, (int32_t)size, (uint32_t)ns, mac);
  }
  return 0;
}
