/* SPDX-License-Identifier: Apache-2.0 */
/* moe.h - expert-parallel dispatch and combine over NVLink (moe.c): the backend.h slots moe_init,
 * moe_fini, moe_dispatch and moe_combine of the custom backend. */
#ifndef MC_CUSTOM_MOE_H_
#define MC_CUSTOM_MOE_H_

#include "../../backend.h"

/* Collective over comm: a segment per member, mapped by every other member.  MC_DEFER on every
   member when any of them cannot (no P2P path, an IPC mapping that fails or reads wrong): the
   group then takes the NCCL path.  An error only when an exchange fails (a member is gone). */
moecomm_result_t mc_custom_moe_init(mc_comm_t *comm, const mc_ep_layout_t *layout);
void mc_custom_moe_fini(mc_comm_t *comm);
moecomm_result_t mc_custom_moe_dispatch(mc_comm_t *comm, const mc_moe_call_t *call);
moecomm_result_t mc_custom_moe_combine(mc_comm_t *comm, const mc_moe_call_t *call);

#endif
