/* SPDX-License-Identifier: Apache-2.0 */
/* setup.h - creating and freeing the custom backend's state of a communicator (setup.c). */
#ifndef MC_CUSTOM_SETUP_H_
#define MC_CUSTOM_SETUP_H_

#include "custom_priv.h"
moecomm_result_t mc_custom_comm_init(mc_comm_t *comm);
void mc_custom_comm_fini(mc_comm_t *comm);

/* The end of a set-up step: every member's outcome (ok, or the reason in why) and payload.  A
   failure anywhere makes every member decline (MC_DEFER) with an INFO line naming `feature`, the
   member and its reason; only a failed exchange is an error. */
moecomm_result_t mc_custom_agree(mc_comm_t *comm, const char *feature, const char *what, int ok,
                                 const mc_err_t *why, const void *payload, void *all, size_t bytes);

#endif
