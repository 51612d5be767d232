/* SPDX-License-Identifier: Apache-2.0 */
/* a2a.h - all_to_all and all_to_all_v of the shm backend (a2a.c). */
#ifndef MC_SHM_A2A_H_
#define MC_SHM_A2A_H_

#include "../../backend.h"

/* all_to_all (equal blocks of c->count elements: block p of send goes to member p, block p of
   recv comes from member p) and all_to_all_v (per-peer counts and displacements, c->send_counts
   ...).  Every member takes part.  all_to_all_v counts that do not agree pairwise are
   MOECOMM_ERR_INVALID_ARGUMENT on every member, with recv unwritten and the comm usable. */
moecomm_result_t mc_shm_all_to_all(mc_comm_t *comm, const mc_coll_t *c);

#endif
