/* SPDX-License-Identifier: Apache-2.0 */
/* memory.c - the plugin's memory as an engine sees it: group_stats of every group. */
#include "memory.h"

#include <string.h>

moecomm_result_t shim_group_stats(const moecomm_api_t *api, moecomm_context_t *ctx, int kind,
                                  moecomm_group_stats_t *st) {
  moecomm_group_t *g = NULL;
  moecomm_result_t r;
  memset(st, 0, sizeof(*st));
  st->struct_size = sizeof(*st);
  r = api->group_get(ctx, (moecomm_group_kind_t)kind, &g);
  return r == MOECOMM_SUCCESS ? api->group_stats(g, st) : r;
}

int shim_mem_collect(const moecomm_api_t *api, moecomm_context_t *ctx, shim_mem_t *mem_p) {
  int seen[SHIM_GROUP_KINDS];
  int nseen = 0;
  shim_mem_t m;
  memset(&m, 0, sizeof(m));
  for (int k = 0; k < SHIM_GROUP_KINDS; k++) {
    moecomm_group_stats_t st;
    int dup = 0;
    if (shim_group_stats(api, ctx, k, &st) != MOECOMM_SUCCESS) return -1;
    for (int i = 0; i < nseen; i++) dup |= seen[i] == st.comm_id;
    if (dup) continue;
    seen[nseen++] = st.comm_id;
    m.comms++;
    m.comms_created += st.created != 0;
    m.device_bytes += st.device_bytes;
    m.host_bytes += st.host_bytes;
  }
  *mem_p = m;
  return 0;
}

void shim_mem_print(FILE *f, const moecomm_api_t *api, moecomm_context_t *ctx,
                    const shim_mem_t *all, int world) {
  const double mib = 1024.0 * 1024.0;
  shim_mem_t top;
  memset(&top, 0, sizeof(top));
  for (int r = 0; r < world; r++) {
    if (all[r].device_bytes > top.device_bytes) top.device_bytes = all[r].device_bytes;
    if (all[r].host_bytes > top.host_bytes) top.host_bytes = all[r].host_bytes;
    if (all[r].comms_created > top.comms_created) top.comms_created = all[r].comms_created;
    if (all[r].comms > top.comms) top.comms = all[r].comms;
  }
  fprintf(f, "memory (group_stats; a shared communicator is counted once):\n");
  fprintf(f, "  %-8s %-6s %-8s %5s %8s %12s %10s\n", "group", "size", "backend", "comm", "created",
          "device MiB", "host MiB");
  for (int k = 0; k < SHIM_GROUP_KINDS; k++) {
    moecomm_group_stats_t st;
    if (shim_group_stats(api, ctx, k, &st) != MOECOMM_SUCCESS) continue;
    fprintf(f, "  %-8s %-6d %-8s %5d %8s %12.1f %10.1f\n", st.kind_name, (int)st.size,
            st.backend_name, (int)st.comm_id, st.created ? "yes" : "no",
            (double)st.device_bytes / mib, (double)st.host_bytes / mib);
  }
  fprintf(f,
          "  per rank (largest over %d ranks): %.1f MiB device, %.1f MiB host, %d of %d "
          "communicator objects created\n",
          world, (double)top.device_bytes / mib, (double)top.host_bytes / mib,
          (int)top.comms_created, (int)top.comms);
}
