/* SPDX-License-Identifier: Apache-2.0 */
/* moe.h - expert-parallel dispatch and combine on the MOE_EP group (ABI 1.2): the group's fixed
 * shape, the launch path of each call, and the lazy creation of the buffers (moe.c). */
#ifndef MC_MOE_H_
#define MC_MOE_H_

#include "context.h"

/* Fixes the group's shape (validated; the same config again is a no-op, another one once the
   buffers exist is MOECOMM_ERR_STATE). */
moecomm_result_t mc_moe_configure(mc_group_t *group, const moecomm_moe_config_t *config);

/* One dispatch: checks, creates the buffers on first use (collective over the group, which
   first agrees that every member configured the same shape), runs the backend's dispatch.
   *handle_p gets the handle the matching combine must pass. */
moecomm_result_t mc_moe_dispatch(mc_group_t *group, const moecomm_moe_dispatch_args_t *args,
                                 uint64_t *handle_p, void *stream);

/* The matching combine. */
moecomm_result_t mc_moe_combine(mc_group_t *group, const moecomm_moe_combine_args_t *args,
                                void *stream);

#endif
