/* store_client.h - a blocking client of the rendezvous store (store_server.h); every rank has one.
 */
#ifndef MC_STORE_CLIENT_H_
#define MC_STORE_CLIENT_H_

#include <stddef.h>
#include <stdint.h>

#include "error.h"

typedef struct mc_store mc_store_t; /* one client connection */

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
