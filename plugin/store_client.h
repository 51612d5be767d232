/* SPDX-License-Identifier: Apache-2.0 */
/* store_client.h - a blocking client of the rendezvous store (store_server.h); every rank has one.
 *
 * A connection is shared by the threads of a process (one exchange at a time).  A failure in
 * the middle of an exchange leaves the stream out of step: the connection is then broken and
 * every later call fails at once with the same sentence.  A closed connection (the server or its
 * process gone) is MOECOMM_ERR_PEER at once, never a wait. */
#ifndef MC_STORE_CLIENT_H_
#define MC_STORE_CLIENT_H_

#include <stddef.h>
#include <stdint.h>

#include "error.h"

typedef struct mc_store mc_store_t; /* one client connection */

#define MC_STORE_WRITE_ONCE 0x1u /* a second set of the key is refused */

/* Connects (retrying until deadline while nothing listens), proves the secret, and checks in as
   `rank` in namespace `ns` (a context's id or bootstrap name; ranks are unique per namespace;
   rank -1: an observer that does not check in).  The server proves the secret back.  Wrong
   secret or a rank already held: MOECOMM_ERR_CONFIG naming it; a server that went away after it
   was reached: MOECOMM_ERR_PEER at once; nothing listening until deadline: MOECOMM_ERR_TIMEOUT. */
moecomm_result_t mc_store_connect(const char *host, int port, const uint8_t *secret,
                                  size_t secret_len, const char *ns, int rank, int64_t deadline_ms,
                                  mc_store_t **store_p, mc_err_t *err);

/* The same over a connected stream socket `fd` (taken over, closed on failure too); `where`
   names the server in messages.  For tests and the fuzz target. */
moecomm_result_t mc_store_open_fd(int fd, const char *where, const uint8_t *secret,
                                  size_t secret_len, const char *ns, int rank, int64_t deadline_ms,
                                  mc_store_t **store_p, mc_err_t *err);

/* Says goodbye (the server then ends waits on this rank at once), then closes. */
void mc_store_close(mc_store_t *store);

/* Stores value under key; readers > 0: deleted after that many gets.  flags: MC_STORE_WRITE_ONCE.
   A value over the server's largest is MOECOMM_ERR_INVALID_ARGUMENT (nothing sent); a store
   that is full MOECOMM_ERR_NO_MEMORY; a write-once key set twice MOECOMM_ERR_CONFIG. */
moecomm_result_t mc_store_set(mc_store_t *store, const char *key, const void *value, size_t len,
                              uint32_t readers, uint32_t flags, mc_err_t *err);

/* Waits for key until deadline_ms (the server caps the wait at its timeout); copies at most cap
   bytes to value; *len_p = full length.  writer: the rank (same namespace) expected to set key,
   or -1.  When that rank's connection closes without a goodbye (process died) or it said
   goodbye, the wait ends at once with MOECOMM_ERR_PEER naming the rank ("rank 2 disconnected
   (process exited?) while rank 0 waited for <key>").  MOECOMM_ERR_TIMEOUT when the key never
   appeared, MOECOMM_ERR_PEER when the server is gone. */
moecomm_result_t mc_store_get(mc_store_t *store, const char *key, int writer, void *value,
                              size_t cap, size_t *len_p, int64_t deadline_ms, mc_err_t *err);

/* *exists_p = 1 when key is present now (does not count as a read). */
moecomm_result_t mc_store_check(mc_store_t *store, const char *key, int *exists_p, mc_err_t *err);

#endif
