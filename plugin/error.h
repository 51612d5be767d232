/* SPDX-License-Identifier: Apache-2.0 */
/* error.h - result codes and the message that goes with a failure.
 *
 * Every internal function that can fail returns a moecomm_result_t and, on failure, leaves a
 * sentence in an mc_err_t (the context's, or a local one while a context is being built).  The API
 * layer hands that sentence to the host through last_error. */
#ifndef MC_ERROR_H_
#define MC_ERROR_H_

#include "../abi/moecomm.h"

#define MC_ERR_MSG_MAX 1024

typedef struct mc_err {
  char msg[MC_ERR_MSG_MAX];
} mc_err_t;

/* Internal-only result: a backend declines this call; the core routes it to the backend's
   fallback.  Never crosses the ABI. */
#define MC_DEFER ((moecomm_result_t)1000)

/* Writes the message (printf format) into err (may be NULL) and returns code.  Logged at INFO. */
moecomm_result_t mc_err_set(mc_err_t *err, moecomm_result_t code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Prefixes err's message with "<what>: " (what is printf format); returns code. */
moecomm_result_t mc_err_wrap(mc_err_t *err, moecomm_result_t code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

void mc_err_clear(mc_err_t *err);

const char *mc_result_string(moecomm_result_t result);

/* The calling thread's message for failures that have no context (entry, context_create). */
mc_err_t *mc_err_thread(void);

#endif
