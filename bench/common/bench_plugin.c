/* SPDX-License-Identifier: Apache-2.0 */
/* bench_plugin.c - the benchmarks' plugin (bench_plugin.h). */
#include "bench_plugin.h"

#include <stdio.h>
#include <stdlib.h>

#include "../../host_shim/lib/buildtree.h"
#include "../../host_shim/lib/launch.h"

const moecomm_api_t *mc_bench_plugin(void) {
  static shim_plugin_t plugin;
  char err[2048] = "";
  shim_load_result_t r;
  if (plugin.api != NULL) return plugin.api;
  r = shim_buildtree_plugin(&plugin, err, sizeof(err));
  if (r != SHIM_LOAD_OK) {
    fprintf(stderr, "bench: cannot load the plugin (MOECOMM_PLUGIN=%s): %s\n",
            getenv("MOECOMM_PLUGIN") ? getenv("MOECOMM_PLUGIN") : "(unset)",
            err[0] ? err : "no reason given");
    exit(1);
  }
  return plugin.api;
}

moecomm_context_t *mc_bench_open_ctx(const moecomm_api_t *api, int world, int rank,
                                     const char *const *env) {
  moecomm_topology_t topo = shim_launch_topology(world, rank, world);
  moecomm_context_params_t params = shim_launch_params(&topo, rank);
  moecomm_context_t *ctx = NULL;
  moecomm_result_t rc;
  for (int i = 0; env[i] != NULL; i += 2) setenv(env[i], env[i + 1], 1);
  rc = api->context_create(&params, &ctx);
  for (int i = 0; env[i] != NULL; i += 2) unsetenv(env[i]);
  if (rc != MOECOMM_SUCCESS) {
    fprintf(stderr, "rank %d: context_create: %s: %s\n", rank, api->result_string(rc),
            api->last_error(NULL));
    return NULL;
  }
  return ctx;
}
