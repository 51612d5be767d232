/* SPDX-License-Identifier: Apache-2.0 */
/* api_guard.h - how every ABI slot enters the plugin: the handle is looked up (handle.h), the
 * context is taken for this thread (a second thread gets MOECOMM_ERR_STATE instead of racing the
 * first), and structs cross in the caller's size. */
#ifndef MC_API_GUARD_H_
#define MC_API_GUARD_H_

#include <stddef.h>

#include "context.h"

/* The live context h names, taken for this thread.  A NULL, stale or forged handle is
   MOECOMM_ERR_INVALID_ARGUMENT and a context another thread is in is MOECOMM_ERR_STATE, both with
   the message in the thread's slot (last_error(NULL)).  `what` names the slot. */
moecomm_result_t mc_api_enter(const moecomm_context_t *h, const char *what, mc_context_t **ctx_p);

/* The same for a group handle; *g_p is the group, its context taken. */
moecomm_result_t mc_api_enter_group(const moecomm_group_t *h, const char *what, mc_group_t **g_p);

/* Gives the context back; returns r (so a slot can end with `return mc_api_leave(ctx, r);`). */
moecomm_result_t mc_api_leave(mc_context_t *ctx, moecomm_result_t r);

/* Copies min(caller's struct_size, ours) bytes of `src` to the caller's struct `dst`, keeping the
   caller's struct_size; refuses a struct smaller than min_size (its 1.0 layout). */
moecomm_result_t mc_api_write_out(void *dst, const void *src, size_t ours, size_t min_size,
                                  const char *what, mc_err_t *err);

/* Reads the caller's struct into ours: min(struct_size, ours) bytes, the rest zero; refuses NULL
   and a struct smaller than min_size. */
moecomm_result_t mc_api_read_in(void *ours, size_t ours_size, const void *theirs, size_t min_size,
                                const char *what, mc_err_t *err);

#endif
