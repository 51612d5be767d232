/* SPDX-License-Identifier: Apache-2.0 */
/* planner.h - which graph-capture token counts every group can split (planner.c). */
#ifndef MC_PLANNER_H_
#define MC_PLANNER_H_

#include "context.h"

moecomm_result_t mc_plan_capture_sizes(const mc_context_t *ctx, const moecomm_plan_params_t *params,
                                       int32_t *sizes, size_t capacity, size_t *num_p,
                                       int32_t *multiple_p, mc_err_t *err);

#endif
