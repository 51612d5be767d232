/* store.h - a small TCP key-value store for rendezvous (rank 0 serves, every rank is a client).
 *
 * Values are opaque bytes.  A get waits until the key exists or its deadline passes.  A key set
 * with readers = n is deleted after its n-th get, so exchanges leave nothing behind. */
#ifndef MC_STORE_H_
#define MC_STORE_H_

#include <stddef.h>
#include <stdint.h>

#include "error.h"

typedef struct mc_store mc_store_t;               /* one client connection */
typedef struct mc_store_server mc_store_server_t; /* the server thread on rank 0 */

/* Listens on bind_host:port (port 0 picks one) and serves until stopped; *port_p is the port. */
moecomm_result_t mc_store_server_start(const char *bind_host, int port, mc_store_server_t **srv_p,
                                       int *port_p, mc_err_t *err);
void mc_store_server_stop(mc_store_server_t *srv);

/* Clients connected now (as of the server thread's last pass). */
size_t mc_store_server_clients(mc_store_server_t *srv);

/* Connects, retrying until deadline_ms (mc_now_ms clock) while the server is not up yet. */
moecomm_result_t mc_store_connect(const char *host, int port, int64_t deadline_ms,
                                  mc_store_t **store_p, mc_err_t *err);
void mc_store_close(mc_store_t *store);

moecomm_result_t mc_store_set(mc_store_t *store, const char *key, const void *value, size_t len,
                              uint32_t readers, mc_err_t *err);

/* Waits for key until deadline_ms; copies at most cap bytes to value; *len_p = full length.
   MOECOMM_ERR_TIMEOUT when the key never appeared, MOECOMM_ERR_PEER when the server is gone. */
moecomm_result_t mc_store_get(mc_store_t *store, const char *key, void *value, size_t cap,
                              size_t *len_p, int64_t deadline_ms, mc_err_t *err);

/* *exists_p = 1 when key is present now (does not count as a read). */
moecomm_result_t mc_store_check(mc_store_t *store, const char *key, int *exists_p, mc_err_t *err);

#endif
