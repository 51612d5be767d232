/* SPDX-License-Identifier: Apache-2.0 */
/* nccl_moe.h - expert-parallel dispatch and combine over NCCL (nccl_moe.c): the backend.h slots
 * moe_init, moe_fini, moe_dispatch and moe_combine of the NCCL backend. */
#ifndef MC_NCCL_MOE_H_
#define MC_NCCL_MOE_H_

#include "../../backend.h"

/* Collective over comm (whose NCCL communicator exists): the NCCL-path segment and error record,
   sized from layout; every member ends the same way. */
moecomm_result_t mc_nccl_moe_init(mc_comm_t *comm, const mc_ep_layout_t *layout);
void mc_nccl_moe_fini(mc_comm_t *comm);
moecomm_result_t mc_nccl_moe_dispatch(mc_comm_t *comm, const mc_moe_call_t *call);
moecomm_result_t mc_nccl_moe_combine(mc_comm_t *comm, const mc_moe_call_t *call);

#endif
