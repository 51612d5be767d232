/* store_server.h - the rendezvous store's server: a thread on rank 0 that holds the keys.
 *
 * Values are opaque bytes.  A get waits until the key exists or its deadline passes.  A key set
 * with readers = n is deleted after its n-th get, so exchanges leave nothing behind. */
#ifndef MC_STORE_SERVER_H_
#define MC_STORE_SERVER_H_

#include <stddef.h>

#include "error.h"

typedef struct mc_store_server mc_store_server_t;

/* Listens on bind_host:port (port 0 picks one) and serves until stopped; *port_p is the port. */
moecomm_result_t mc_store_server_start(const char *bind_host, int port, mc_store_server_t **srv_p,
                                       int *port_p, mc_err_t *err);
void mc_store_server_stop(mc_store_server_t *srv);

/* Clients connected now (as of the server thread's last pass). */
size_t mc_store_server_clients(mc_store_server_t *srv);

#endif
