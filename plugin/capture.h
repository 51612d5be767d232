/* SPDX-License-Identifier: Apache-2.0 */
/* capture.h - the context's one capture scope, which covers every group (capture.c). */
#ifndef MC_CAPTURE_H_
#define MC_CAPTURE_H_

#include "context.h"

/* Local: opens the scope; a second begin without end is MOECOMM_ERR_CAPTURE. */
moecomm_result_t mc_capture_begin(mc_context_t *ctx);

/* Collective over the world: checks per-group op counts on every communicator, lets each backend
   register what its captured work touches, and agrees on success across all ranks. */
moecomm_result_t mc_capture_end(mc_context_t *ctx);

#endif
