/* SPDX-License-Identifier: Apache-2.0 */
/* sync.h - barriers between the members of a segment, and giving up (sync.c). */
#ifndef MC_SHM_SYNC_H_
#define MC_SHM_SYNC_H_

#include "layout.h"

/* How to wait, from the ranks on this host and the CPUs this process may use. */
void mc_shm_wait_policy(const mc_comm_t *comm, int64_t *spin_ns_p, int *yields_p);

/* Arrives at the next barrier and waits for every peer there.  On failure the comm is broken
   (later calls fail with MOECOMM_ERR_STATE), peers are told to give up, and the message names
   the collective (`what`), the group and the ranks that did not arrive or died. */
moecomm_result_t mc_shm_barrier(mc_shm_t *shm, const char *what);

/* Marks the comm broken with the message in comm->err and tells peers to give up. */
void mc_shm_break(mc_shm_t *shm, moecomm_result_t code);

#endif
