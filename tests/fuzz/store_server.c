/* SPDX-License-Identifier: Apache-2.0 */
/* store_server.c (fuzz target) - the store server's connection state machine
 * (plugin/store_core.c) fed arbitrary byte streams on up to four connections, without sockets.
 *
 * The input is a list of commands; the first byte picks the number of connections (1..4):
 *   c & 7 in 0..3  feed conn (c >> 3) % n the next L bytes (L: the following byte)
 *             4    the clock moves by 20 ms * (next byte); expired waits and handshakes end
 *             5    conn i reads part of its queued reply (next byte: how much, 0 = all)
 *             6    conn i disconnects (end of stream) and a new one connects
 *             7    conn i proves the secret as rank (next byte - 1) of namespace "ns<k>"
 * (i = (c >> 3) % n).  A real client cannot forge command 7's MAC; it lets the fuzzer reach
 * every request past the handshake.  Small limits (1 KiB values, 4 KiB in all, 3 clients,
 * 1 s waits) so the fuzzer reaches them.  After every command the core's invariants are
 * checked; a violation aborts (a finding). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../plugin/log.h"
#include "../../plugin/store_core.h"
#include "../core/store_peer.h"

#define NCONN 4

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const uint8_t fuzz_secret[32] = "moecomm-store-fuzz-secret-000000";

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc;
  (void)argv;
  mc_log_set_level(MC_LOG_TRACE); /* every log line is formatted */
  return 0;
}

typedef struct fuzz {
  mc_store_core_t core;
  mc_store_conn_t *conn[NCONN];
  int n;
  int64_t now;
} fuzz_t;

static void fuzz_check(fuzz_t *f) {
  mc_store_core_t *c = &f->core;
  if (c->table.used > c->table.budget || c->pending.n > MC_STORE_PENDING_MAX ||
      c->authed.n > c->lim.max_clients)
    abort();
  size_t waiting = 0;
  for (mc_store_conn_t *w = c->whead; w != NULL; w = w->wnext, waiting++)
    if (w->state != MC_CONN_WAIT || waiting > NCONN) abort();
}

/* The reaped connections are freed; a slot whose connection died gets a new one. */
static void fuzz_reap(fuzz_t *f) {
  mc_store_conn_t *d;
  while ((d = mc_store_core_reap(&f->core)) != NULL) {
    for (int i = 0; i < f->n; i++)
      if (f->conn[i] == d) f->conn[i] = NULL;
    free(d);
  }
  for (int i = 0; i < f->n; i++)
    if (f->conn[i] == NULL) f->conn[i] = mc_store_core_accept(&f->core, "fuzz-peer", f->now);
}

/* The client reads up to `n` bytes (0: all) of the queued reply. */
static void fuzz_read(fuzz_t *f, mc_store_conn_t *c, size_t n) {
  while (c != NULL && c->state == MC_CONN_WRITE) {
    struct iovec iov[2];
    int k = mc_store_conn_out(c, iov);
    size_t take = k > 0 ? iov[0].iov_len : 0;
    if (n > 0) take = take < n ? take : n;
    if (take == 0) abort(); /* a queued reply always has bytes left */
    mc_store_conn_sent(&f->core, c, take);
    if (n > 0 && (n -= take) == 0) break;
  }
}

static void fuzz_hello(fuzz_t *f, mc_store_conn_t *c, int rank, int ns) {
  uint8_t buf[MC_STORE_REQ_BYTES + 8 + MC_STORE_HELLO_BYTES];
  char name[8];
  snprintf(name, sizeof(name), "ns%d", ns);
  size_t n = st_hello_frame(c->challenge, fuzz_secret, sizeof(fuzz_secret), name, rank,
                            (uint32_t)(1000 + rank), buf);
  fuzz_read(f, c, 0);
  mc_store_conn_feed(&f->core, c, buf, n, f->now);
}

/* One command at data[*pos]; advances *pos. */
static void fuzz_command(fuzz_t *f, const uint8_t *data, size_t size, size_t *pos) {
  uint8_t cmd = data[(*pos)++];
  uint8_t arg = *pos < size ? data[(*pos)++] : 0;
  mc_store_conn_t *c = f->conn[(cmd >> 3) % f->n];
  if (c == NULL) return; /* no memory or randomness for it */
  switch (cmd & 7) {
    case 4:
      f->now += 20 * (int64_t)arg;
      mc_store_core_expire(&f->core, f->now);
      break;
    case 5: fuzz_read(f, c, arg); break;
    case 6: mc_store_conn_drop(&f->core, c, "fuzz: disconnected"); break;
    case 7: fuzz_hello(f, c, (int)arg % 8 - 1, (arg >> 3) & 1); break;
    default: {
      size_t len = arg;
      if (len > size - *pos) len = size - *pos;
      fuzz_read(f, c, 0);
      mc_store_conn_feed(&f->core, c, data + *pos, len, f->now);
      *pos += len;
      break;
    }
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static fuzz_t f;
  mc_store_core_limits_t lim = {3, 1024, 4096, 1000};
  if (size == 0) return 0;
  memset(&f, 0, sizeof(f));
  if (mc_store_core_init(&f.core, fuzz_secret, sizeof(fuzz_secret), &lim) != 0) return 0;
  f.n = 1 + data[0] % NCONN;
  f.now = 1000000;
  fuzz_reap(&f);
  for (size_t pos = 1; pos < size;) {
    fuzz_command(&f, data, size, &pos);
    fuzz_reap(&f);
    fuzz_check(&f);
  }
  mc_store_core_fini(&f.core);
  return 0;
}
