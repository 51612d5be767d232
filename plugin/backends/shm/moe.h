/* SPDX-License-Identifier: Apache-2.0 */
/* moe.h - expert-parallel dispatch and combine between the CPU processes of a shm communicator
 * (moe.c): the backend.h slots moe_init, moe_fini, moe_dispatch and moe_combine. */
#ifndef MC_SHM_MOE_H_
#define MC_SHM_MOE_H_

#include "../../backend.h"

/* Collective over comm (whose shm state exists): maps the expert-parallel segment sized from
   layout; every member ends the same way (a local failure fails all of them with its message). */
moecomm_result_t mc_shm_moe_init(mc_comm_t *comm, const mc_ep_layout_t *layout);
void mc_shm_moe_fini(mc_comm_t *comm);
moecomm_result_t mc_shm_moe_dispatch(mc_comm_t *comm, const mc_moe_call_t *call);
moecomm_result_t mc_shm_moe_combine(mc_comm_t *comm, const mc_moe_call_t *call);

#endif
