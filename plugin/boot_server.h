/* SPDX-License-Identifier: Apache-2.0 */
/* boot_server.h - rank 0's rendezvous store servers: one per context, or one per (port, secret)
 * shared by the contexts of a process that use the same MOECOMM_STORE (boot_server.c). */
#ifndef MC_BOOT_SERVER_H_
#define MC_BOOT_SERVER_H_

#include <stddef.h>
#include <stdint.h>

#include "error.h"

typedef struct mc_boot_server mc_boot_server_t;

/* A server bound to bind_host:port (port 0: any) with this secret.  shared: reuse (refcounted)
   the process's server on that port with that secret, if any.  *port_p: the port it listens on. */
moecomm_result_t mc_boot_server_acquire(const char *bind_host, int port, int shared,
                                        const uint8_t *secret, size_t secret_len, int timeout_ms,
                                        mc_boot_server_t **server_p, int *port_p, mc_err_t *err);

/* The last user of a server stops it; the other ranks may still be reading the keys of their last
   exchange, so it keeps serving until every client has gone (they leave when they destroy their
   context or exit) or linger_ms passes. */
void mc_boot_server_release(mc_boot_server_t *server, int linger_ms);

#endif
