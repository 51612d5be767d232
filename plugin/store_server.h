/* SPDX-License-Identifier: Apache-2.0 */
/* store_server.h - the rendezvous store's server: a thread on rank 0 that holds the keys.
 *
 * Values are opaque bytes.  A get waits until the key exists or its deadline passes.  A key set
 * with readers = n is deleted after its n-th get, so exchanges leave nothing behind.  Every
 * connection proves the shared secret before anything else (store_wire.h has the handshake);
 * each rank checks in once per namespace; connections, sizes and waits are bounded. */
#ifndef MC_STORE_SERVER_H_
#define MC_STORE_SERVER_H_

#include <stddef.h>
#include <stdint.h>

#include "error.h"

typedef struct mc_store_server mc_store_server_t;

#define MC_STORE_DEFAULT_MAX_CLIENTS 1024
#define MC_STORE_DEFAULT_MAX_VALUE ((size_t)1 << 20)
#define MC_STORE_DEFAULT_MAX_TOTAL ((size_t)64 << 20)
#define MC_STORE_DEFAULT_TIMEOUT_MS 60000

typedef struct mc_store_server_opts {
  const char *bind_host;  /* numeric IPv4/IPv6 address or name to bind; NULL or "" = 127.0.0.1.
                             Never the wildcard unless the caller passes "0.0.0.0"/"::" itself
                             ("::" serves IPv4 too, and falls back to 0.0.0.0 without IPv6). */
  int port;               /* 0: the kernel picks */
  const uint8_t *secret;  /* every connection proves it before anything else; */
  size_t secret_len;      /* 16..64 bytes */
  int timeout_ms;         /* caps every wait a client asks for (MOECOMM_TIMEOUT_MS; 0: 60000) */
  int max_clients;        /* authenticated connections at once (0: 1024) */
  size_t max_value_bytes; /* largest value (0: default 1 MiB; at most 64 MiB) */
  size_t max_total_bytes; /* all values held together (0: default 64 MiB) */
} mc_store_server_opts_t;

/* Listens and serves until stopped; *port_p is the port.  Bad options: INVALID_ARGUMENT; the
   address cannot be bound: CONFIG (cannot resolve) or BACKEND naming the address. */
moecomm_result_t mc_store_server_start(const mc_store_server_opts_t *opts,
                                       mc_store_server_t **srv_p, int *port_p, mc_err_t *err);
void mc_store_server_stop(mc_store_server_t *srv);

/* Clients connected now (as of the server thread's last pass): authenticated ones and those
   still proving the secret (at most 64), so that rank 0's linger also waits for a rank that is
   in the middle of its handshake. */
size_t mc_store_server_clients(mc_store_server_t *srv);

#endif
