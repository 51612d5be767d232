/* bench_plugin.c - the benchmarks' plugin (bench_plugin.h). */
#include "bench_plugin.h"

#include <stdio.h>
#include <stdlib.h>

#include "../../host_shim/lib/buildtree.h"

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
