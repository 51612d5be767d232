/* SPDX-License-Identifier: Apache-2.0 */
/* handle.h - the handles the host holds are not pointers: a context handle names a slot of one
 * table and the slot's generation, a group handle adds the group kind.  Destroying a context
 * advances its slot's generation, so a stale handle is refused without touching freed memory and
 * can never reach a newer context created at the same address or in the same slot. */
#ifndef MC_HANDLE_H_
#define MC_HANDLE_H_

#include "context.h"

/* Contexts that may be alive at once in one process. */
#define MC_HANDLE_SLOTS 4096

/* Registers ctx: *h_p is its handle.  MOECOMM_ERR_NO_MEMORY when every slot is in use. */
moecomm_result_t mc_handle_register(mc_context_t *ctx, moecomm_context_t **h_p, mc_err_t *err);

/* Every handle of ctx (its own and its groups') is stale from now on. */
void mc_handle_release(mc_context_t *ctx);

/* The live context a handle names, or NULL (NULL, stale, forged, or a group's handle). */
mc_context_t *mc_handle_context(const moecomm_context_t *h);

/* The live group a handle names, or NULL. */
mc_group_t *mc_handle_group(const moecomm_group_t *h);

/* The handle of ctx's group of `kind`. */
moecomm_group_t *mc_handle_of_group(const mc_context_t *ctx, int kind);

#endif
