/* SPDX-License-Identifier: Apache-2.0 */
/* api_moe.c - the expert-parallel slots: enter the group, then moe.c. */
#include "api_moe.h"

#include "api_guard.h"
#include "moe.h"

moecomm_result_t mc_api_moe_configure(moecomm_group_t *group, const moecomm_moe_config_t *config) {
  mc_group_t *g = NULL;
  moecomm_result_t r = mc_api_enter_group(group, "moe_configure", &g);
  if (r != MOECOMM_SUCCESS) return r;
  return mc_api_leave(g->ctx, mc_moe_configure(g, config));
}

moecomm_result_t mc_api_moe_dispatch(moecomm_group_t *group,
                                     const moecomm_moe_dispatch_args_t *args, uint64_t *handle_p,
                                     void *stream) {
  mc_group_t *g = NULL;
  moecomm_result_t r = mc_api_enter_group(group, "moe_dispatch", &g);
  if (r != MOECOMM_SUCCESS) return r;
  return mc_api_leave(g->ctx, mc_moe_dispatch(g, args, handle_p, stream));
}

moecomm_result_t mc_api_moe_combine(moecomm_group_t *group, const moecomm_moe_combine_args_t *args,
                                    void *stream) {
  mc_group_t *g = NULL;
  moecomm_result_t r = mc_api_enter_group(group, "moe_combine", &g);
  if (r != MOECOMM_SUCCESS) return r;
  return mc_api_leave(g->ctx, mc_moe_combine(g, args, stream));
}
