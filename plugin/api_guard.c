/* SPDX-License-Identifier: Apache-2.0 */
/* api_guard.c - entering and leaving the plugin through an ABI slot (api_guard.h). */
#include "api_guard.h"

#include <stdatomic.h>
#include <string.h>

#include "handle.h"
#include "util.h"

static moecomm_result_t mc_api_take(mc_context_t *ctx, const char *what) {
  int idle = 0;
  if (atomic_compare_exchange_strong(&ctx->busy, &idle, 1)) return MOECOMM_SUCCESS;
  return mc_err_set(mc_err_thread(), MOECOMM_ERR_STATE,
                    "%s: the context is in use by another thread; a context and its groups are "
                    "used by one thread at a time (the call did nothing)",
                    what);
}

moecomm_result_t mc_api_enter(const moecomm_context_t *h, const char *what, mc_context_t **ctx_p) {
  mc_context_t *ctx = mc_handle_context(h);
  moecomm_result_t r;
  if (ctx == NULL)
    return mc_err_set(mc_err_thread(), MOECOMM_ERR_INVALID_ARGUMENT,
                      "%s: ctx is NULL, destroyed, or not a moecomm context handle", what);
  if ((r = mc_api_take(ctx, what)) != MOECOMM_SUCCESS) return r;
  *ctx_p = ctx;
  return MOECOMM_SUCCESS;
}

moecomm_result_t mc_api_enter_group(const moecomm_group_t *h, const char *what, mc_group_t **g_p) {
  mc_group_t *g = mc_handle_group(h);
  moecomm_result_t r;
  if (g == NULL)
    return mc_err_set(mc_err_thread(), MOECOMM_ERR_INVALID_ARGUMENT,
                      "%s: group is NULL, of a destroyed context, or not a moecomm group handle",
                      what);
  if ((r = mc_api_take(g->ctx, what)) != MOECOMM_SUCCESS) return r;
  *g_p = g;
  return MOECOMM_SUCCESS;
}

moecomm_result_t mc_api_leave(mc_context_t *ctx, moecomm_result_t r) {
  atomic_store(&ctx->busy, 0);
  return r;
}

moecomm_result_t mc_api_write_out(void *dst, const void *src, size_t ours, size_t min_size,
                                  const char *what, mc_err_t *err) {
  size_t theirs = *(const size_t *)dst;
  if (theirs < min_size)
    return mc_err_set(err, MOECOMM_ERR_STRUCT_SIZE,
                      "%s struct_size %zu is smaller than the ABI 1.0 layout (%zu bytes)", what,
                      theirs, min_size);
  memcpy((char *)dst + sizeof(size_t), (const char *)src + sizeof(size_t),
         MC_MIN(theirs, ours) - sizeof(size_t));
  return MOECOMM_SUCCESS;
}

moecomm_result_t mc_api_read_in(void *ours, size_t ours_size, const void *theirs, size_t min_size,
                                const char *what, mc_err_t *err) {
  size_t size;
  if (theirs == NULL) return mc_err_set(err, MOECOMM_ERR_INVALID_ARGUMENT, "%s is NULL", what);
  size = *(const size_t *)theirs;
  if (size < min_size)
    return mc_err_set(err, MOECOMM_ERR_STRUCT_SIZE,
                      "%s struct_size %zu is smaller than its first layout (%zu bytes)", what, size,
                      min_size);
  memset(ours, 0, ours_size);
  memcpy(ours, theirs, MC_MIN(size, ours_size));
  return MOECOMM_SUCCESS;
}
