/* SPDX-License-Identifier: Apache-2.0 */
/* api_info.h - the ABI slots that need no context: group layouts and the configuration table
 * (api_info.c, ABI 1.2). */
#ifndef MC_API_INFO_H_
#define MC_API_INFO_H_

#include "../abi/moecomm.h"

moecomm_result_t mc_api_topology_group_ranks(const moecomm_topology_t *topology,
                                             moecomm_group_kind_t kind, int32_t rank,
                                             int32_t *ranks, size_t capacity, size_t *size_p);
moecomm_result_t mc_api_config_var(size_t index, moecomm_config_var_t *var_p);

#endif
