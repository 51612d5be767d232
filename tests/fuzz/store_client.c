/* SPDX-License-Identifier: Apache-2.0 */
/* store_client.c (fuzz target) - the store client's reply parsing (plugin/store_client.c): a
 * scripted server on the other end of a socketpair (tests/core/store_peer.h) sends the input.
 *
 * First byte odd: the peer completes a real handshake (so the input reaches the replies to
 * set, get and check), even: the input is all the client gets, greeting included.  The client
 * then runs a fixed series of calls; each must return (the peer closes after the input, so no
 * call may wait), write its outputs only on success, and never report success for a get whose
 * length exceeds what was announced. */
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../plugin/log.h"
#include "../../plugin/store_client.h"
#include "../../plugin/util.h"
#include "../core/store_peer.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const uint8_t fuzz_secret[32] = "moecomm-store-fuzz-secret-000000";

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc;
  (void)argv;
  signal(SIGPIPE, SIG_IGN);
  mc_log_set_level(MC_LOG_TRACE); /* every log line is formatted */
  return 0;
}

static void fuzz_calls(mc_store_t *s) {
  mc_err_t err;
  uint8_t value[16] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}, got[16];
  size_t len = SIZE_MAX;
  int exists = -1;
  int64_t deadline = mc_now_ms() + 1000;
  (void)mc_store_set(s, "fuzz/a", value, sizeof(value), 2, 0, &err);
  for (int cap = 0; cap <= 16; cap += 8) {
    len = SIZE_MAX;
    if (mc_store_get(s, "fuzz/a", cap == 16 ? 2 : -1, got, (size_t)cap, &len, deadline, &err) ==
            MOECOMM_SUCCESS &&
        len == SIZE_MAX)
      abort(); /* success must say the length */
    if (len != SIZE_MAX && len > (size_t)64 << 20) abort();
  }
  if (mc_store_check(s, "fuzz/a", &exists, &err) == MOECOMM_SUCCESS && exists != 0 && exists != 1)
    abort();
  (void)mc_store_set(s, "fuzz/once", value, 4, 0, MC_STORE_WRITE_ONCE, &err);
  (void)mc_store_get(s, "fuzz/none", 0, NULL, 0, &len, mc_now_ms(), &err);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size == 0) return 0;
  st_peer_t p = {.secret = fuzz_secret,
                 .secret_len = sizeof(fuzz_secret),
                 .handshake = data[0] & 1,
                 .script = data + 1,
                 .script_len = size - 1};
  int fd;
  if (st_peer_start(&p, &fd) != 0) return 0;
  mc_store_t *s = NULL;
  mc_err_t err;
  if (mc_store_open_fd(fd, "fuzz-peer", fuzz_secret, sizeof(fuzz_secret), "fuzz", 1,
                       mc_now_ms() + 1000, &s, &err) == MOECOMM_SUCCESS) {
    if (s == NULL) abort();
    fuzz_calls(s);
  }
  mc_store_close(s);
  st_peer_join(&p);
  return 0;
}
