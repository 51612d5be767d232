/* SPDX-License-Identifier: Apache-2.0 */
/* agree.h - the one agreement primitive: members exchange their outcomes and all learn the first
 * failure.
 *
 * Wherever ranks must decide the same thing after a step that can fail locally (creating a
 * communicator's resources, registering captured buffers, closing the capture scope), each member
 * publishes its outcome (a result code and its message) and, optionally, a payload; every member
 * then sees every outcome and acts on the first failing member, by index, so all members take the
 * same branch.  A member must call it even when it failed locally: that is what lets the others
 * fail at once instead of waiting for it until MOECOMM_TIMEOUT_MS. */
#ifndef MC_AGREE_H_
#define MC_AGREE_H_

#include <stddef.h>

#include "exchange.h"

/* Message bytes each outcome carries (longer messages are cut). */
#define MC_AGREE_MSG_BYTES 480

/* Exchanges (mine, mine_msg, payload) among the members of set.  payload_bytes may be 0 (then
   payload and all_payload may be NULL); otherwise all_payload receives set->n * payload_bytes in
   member order.
   - The exchange itself failed (a member gone or late): its code, *bad_p untouched.
   - Every member succeeded: MOECOMM_SUCCESS and *bad_p = -1.
   - Some member failed: *bad_p = the first failing member's index, err = "<what>: on rank R:
     <its message>" (this rank's own message when it is the first) and the return value is that
     member's code, so every member returns the same code and message. */
moecomm_result_t mc_agree(const mc_xchg_set_t *set, const char *what, moecomm_result_t mine,
                          const char *mine_msg, const void *payload, void *all_payload,
                          size_t payload_bytes, int *bad_p, mc_err_t *err);

#endif
