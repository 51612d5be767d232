/* SPDX-License-Identifier: Apache-2.0 */
/* api.c - the ABI boundary: the exported entry point, version negotiation and the function table.
 * The slots live in api_context.c and api_coll.c; every one enters through api_guard.h. */
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "api_coll.h"
#include "api_context.h"
#include "api_info.h"
#include "api_moe.h"
#include "error.h"
#include "log.h"
#include "util.h"

#ifndef MC_PLUGIN_NAME
#define MC_PLUGIN_NAME "moecomm"
#endif
#ifndef MC_VERSION
#define MC_VERSION "0.0.0"
#endif

#define MC_ABI_OLDEST MOECOMM_ABI_VERSION_MAKE(1, 0)

/* ---- the table and the entry point ---- */

static const moecomm_api_t mc_api = {
    .struct_size = sizeof(moecomm_api_t),
    .abi_version = MOECOMM_ABI_VERSION,
    .plugin_name = MC_PLUGIN_NAME,
    .plugin_version = MC_VERSION,
    .result_string = mc_api_result_string,
    .last_error = mc_api_last_error,
    .context_create = mc_api_context_create,
    .context_destroy = mc_api_context_destroy,
    .context_info = mc_api_context_info,
    .group_get = mc_api_group_get,
    .group_stats = mc_api_group_stats,
    .all_reduce = mc_api_all_reduce,
    .all_gather = mc_api_all_gather,
    .reduce_scatter = mc_api_reduce_scatter,
    .broadcast = mc_api_broadcast,
    .capture_begin = mc_api_capture_begin,
    .capture_end = mc_api_capture_end,
    .plan_capture_sizes = mc_api_plan_capture_sizes,
    .layer_mode = mc_api_layer_mode,
    .mode_rows = mc_api_mode_rows,
    .scatter = mc_api_scatter,
    .topology_group_ranks = mc_api_topology_group_ranks,
    .config_var = mc_api_config_var,
    .send = mc_api_send,
    .recv = mc_api_recv,
    .all_to_all = mc_api_all_to_all,
    .all_to_all_v = mc_api_all_to_all_v,
    .moe_configure = mc_api_moe_configure,
    .moe_dispatch = mc_api_moe_dispatch,
    .moe_combine = mc_api_moe_combine,
    .all_reduce_rmsnorm = mc_api_all_reduce_rmsnorm,
};

static moecomm_result_t mc_api_refuse(moecomm_result_t code, char *why, size_t why_size,
                                      const char *fmt, uint32_t a, uint32_t b) {
  char msg[256];
  snprintf(msg, sizeof(msg), fmt, MOECOMM_ABI_VERSION_GET_MAJOR(a),
           MOECOMM_ABI_VERSION_GET_MINOR(a), MOECOMM_ABI_VERSION_GET_MAJOR(b),
           MOECOMM_ABI_VERSION_GET_MINOR(b), MOECOMM_ABI_VERSION_GET_MAJOR(MC_ABI_OLDEST),
           MOECOMM_ABI_VERSION_GET_MINOR(MC_ABI_OLDEST), MOECOMM_ABI_MAJOR, MOECOMM_ABI_MINOR);
  if (why != NULL && why_size > 0) snprintf(why, why_size, "%s", msg);
  return mc_err_set(mc_err_thread(), code, "%s", msg);
}

__attribute__((visibility("default"))) moecomm_result_t MOECOMM_ENTRY_V1(
    uint32_t min_version, uint32_t max_version, uint32_t *version_p, const moecomm_api_t **api_p,
    char *why, size_t why_size) {
  uint32_t pick;
  /* The entry's own type must match the header's, or host and plugin disagree silently. */
  moecomm_get_api_v1_fn_t self = MOECOMM_ENTRY_V1;
  (void)self;
  if (version_p == NULL || api_p == NULL)
    return mc_api_refuse(MOECOMM_ERR_INVALID_ARGUMENT, why, why_size,
                         "version_p and api_p must not be NULL (host asked %u.%u..%u.%u; plugin "
                         "speaks %u.%u..%u.%u)",
                         min_version, max_version);
  if (min_version > max_version)
    return mc_api_refuse(MOECOMM_ERR_VERSION, why, why_size,
                         "the host's ABI range %u.%u..%u.%u is empty (min > max); plugin speaks "
                         "%u.%u..%u.%u",
                         min_version, max_version);
  pick = MC_MIN(max_version, (uint32_t)MOECOMM_ABI_VERSION);
  if (pick < min_version || pick < MC_ABI_OLDEST ||
      MOECOMM_ABI_VERSION_GET_MAJOR(pick) != MOECOMM_ABI_MAJOR)
    return mc_api_refuse(MOECOMM_ERR_VERSION, why, why_size,
                         "no common ABI version: the host speaks %u.%u..%u.%u, this plugin "
                         "speaks %u.%u..%u.%u",
                         min_version, max_version);
  mc_api_set_negotiated(pick);
  MC_INFO("%s %s: negotiated ABI %u.%u", MC_PLUGIN_NAME, MC_VERSION,
          MOECOMM_ABI_VERSION_GET_MAJOR(pick), MOECOMM_ABI_VERSION_GET_MINOR(pick));
  *version_p = pick;
  *api_p = &mc_api;
  return MOECOMM_SUCCESS;
}
