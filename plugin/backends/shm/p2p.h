/* SPDX-License-Identifier: Apache-2.0 */
/* p2p.h - send and recv of the shm backend: a channel per pair of members (p2p.c). */
#ifndef MC_SHM_P2P_H_
#define MC_SHM_P2P_H_

#include "../../backend.h"
#include "layout.h"

/* c->count elements of c->dtype from c->send to group member c->peer.  Returns once the peer's
   matching recv has accepted the message and every byte has left c->send (the peer may still be
   copying it out).  Involves the two members only. */
moecomm_result_t mc_shm_send(mc_comm_t *comm, const mc_coll_t *c);

/* c->count elements of c->dtype from group member c->peer into c->recv; returns once they are
   there.  A message whose count or dtype differs is refused on both sides, recv left unwritten. */
moecomm_result_t mc_shm_recv(mc_comm_t *comm, const mc_coll_t *c);

/* Unmaps every pair channel of shm and frees the table (local, never waits). */
void mc_shm_p2p_fini(mc_shm_t *shm);

#endif
