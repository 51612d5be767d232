/* SPDX-License-Identifier: Apache-2.0 */
/* bench_plugin.h - the benchmarks' plugin, loaded the way an engine does (host_shim/lib). */
#ifndef MC_BENCH_PLUGIN_H_
#define MC_BENCH_PLUGIN_H_

#include "../../abi/moecomm.h"

/* MOECOMM_PLUGIN when set, else this build's BUILD/libmoecomm.so (host_shim/lib/buildtree.h),
   negotiated once per process.  When it cannot be loaded: a line naming the plugin and the
   reason on stderr, and the process exits with status 1. */
const moecomm_api_t *mc_bench_plugin(void);

/* In a rank of shim_launch: a context of `world` ranks (tp = world, the launcher's all-gather),
   with env (NULL-terminated NAME, VALUE pairs) set only while it is created.  NULL after a line on
   stderr naming the rank and the plugin's reason. */
moecomm_context_t *mc_bench_open_ctx(const moecomm_api_t *api, int world, int rank,
                                     const char *const *env);

#endif
