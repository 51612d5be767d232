/* SPDX-License-Identifier: Apache-2.0 */
/* capture.h - the custom backend inside the context's capture scope (capture.c). */
#ifndef MC_CUSTOM_CAPTURE_H_
#define MC_CUSTOM_CAPTURE_H_

#include "custom_priv.h"
moecomm_result_t mc_custom_capture_begin(mc_comm_t *comm);
moecomm_result_t mc_custom_capture_end(mc_comm_t *comm);

/* Inside capture: a table entry for a two-shot op on (in, out), to be registered at capture end.
   The caller made sure an entry is free (limits.capture_slots). */
moecomm_result_t mc_custom_capture_record(mc_custom_comm_t *p, const void *in, void *out,
                                          const mc_kern_ptrs_t **entry_p);

#endif
