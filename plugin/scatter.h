/* SPDX-License-Identifier: Apache-2.0 */
/* scatter.h - scatter modes and the transitions between them (scatter.c, ABI 1.1). */
#ifndef MC_SCATTER_H_
#define MC_SCATTER_H_

#include "context.h"

moecomm_result_t mc_layer_mode(const mc_context_t *ctx, int layer, moecomm_scatter_mode_t *mode_p,
                               mc_err_t *err);
moecomm_result_t mc_mode_rows(const mc_context_t *ctx, int mode, const int32_t *tokens,
                              size_t *rows_p, mc_err_t *err);
moecomm_result_t mc_scatter(mc_context_t *ctx, const moecomm_scatter_args_t *args, void *stream);

#endif
