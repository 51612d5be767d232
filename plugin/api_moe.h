/* SPDX-License-Identifier: Apache-2.0 */
/* api_moe.h - the ABI's expert-parallel slots (api_moe.c, ABI 1.2). */
#ifndef MC_API_MOE_H_
#define MC_API_MOE_H_

#include "../abi/moecomm.h"

moecomm_result_t mc_api_moe_configure(moecomm_group_t *group, const moecomm_moe_config_t *config);
moecomm_result_t mc_api_moe_dispatch(moecomm_group_t *group,
                                     const moecomm_moe_dispatch_args_t *args, uint64_t *handle_p,
                                     void *stream);
moecomm_result_t mc_api_moe_combine(moecomm_group_t *group, const moecomm_moe_combine_args_t *args,
                                    void *stream);

#endif
