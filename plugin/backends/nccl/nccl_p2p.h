/* SPDX-License-Identifier: Apache-2.0 */
/* nccl_p2p.h - send, recv and the all-to-alls of the NCCL backend (nccl_p2p.c). */
#ifndef MC_NCCL_P2P_H_
#define MC_NCCL_P2P_H_

#include "nccl_priv.h"

/* MC_COLL_SEND, MC_COLL_RECV, MC_COLL_ALL_TO_ALL and MC_COLL_ALL_TO_ALL_V on the comm's NCCL
   communicator, enqueued on c->stream (capturable).  The first call that involves a member
   connects this rank with it (a setup step with MOECOMM_TIMEOUT_MS). */
moecomm_result_t mc_nccl_p2p(mc_comm_t *comm, const mc_coll_t *c);

/* Frees what the calls above keep in p (local). */
void mc_nccl_p2p_fini(mc_nccl_comm_t *p);

#endif
