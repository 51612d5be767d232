/* SPDX-License-Identifier: Apache-2.0 */
/* api_context.h - the ABI slots on contexts and groups: lifecycle, info, stats, capture scope,
 * planner and scatter modes (api_context.c). */
#ifndef MC_API_CONTEXT_H_
#define MC_API_CONTEXT_H_

#include "../abi/moecomm.h"

const char *mc_api_result_string(moecomm_result_t result);
const char *mc_api_last_error(const moecomm_context_t *ctx);
moecomm_result_t mc_api_context_create(const moecomm_context_params_t *params,
                                       moecomm_context_t **ctx_p);
moecomm_result_t mc_api_context_destroy(moecomm_context_t *ctx);
moecomm_result_t mc_api_context_info(const moecomm_context_t *ctx, moecomm_context_info_t *info_p);
moecomm_result_t mc_api_group_get(moecomm_context_t *ctx, moecomm_group_kind_t kind,
                                  moecomm_group_t **group_p);
moecomm_result_t mc_api_group_stats(const moecomm_group_t *group, moecomm_group_stats_t *stats_p);
moecomm_result_t mc_api_capture_begin(moecomm_context_t *ctx, void *stream);
moecomm_result_t mc_api_capture_end(moecomm_context_t *ctx, void *stream);
moecomm_result_t mc_api_plan_capture_sizes(const moecomm_context_t *ctx,
                                           const moecomm_plan_params_t *params, int32_t *sizes,
                                           size_t capacity, size_t *num_p, int32_t *multiple_p);
moecomm_result_t mc_api_layer_mode(const moecomm_context_t *ctx, moecomm_layer_kind_t layer,
                                   moecomm_scatter_mode_t *mode_p);
moecomm_result_t mc_api_mode_rows(const moecomm_context_t *ctx, moecomm_scatter_mode_t mode,
                                  const int32_t *tokens, size_t *rows_p);
moecomm_result_t mc_api_scatter(moecomm_context_t *ctx, const moecomm_scatter_args_t *args,
                                void *stream);

/* The ABI version negotiated for the process (contexts record it at creation). */
void mc_api_set_negotiated(uint32_t version);

#endif
