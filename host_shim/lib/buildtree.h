/* SPDX-License-Identifier: Apache-2.0 */
/* buildtree.h - binaries of this source tree that run from their build directory (the tests
 * under BUILD/tests/, the benchmarks under BUILD/bench/): where that directory is, and its plugin.
 */
#ifndef SHIM_BUILDTREE_H_
#define SHIM_BUILDTREE_H_

#include <stddef.h>

#include "loader.h"

/* The build directory this binary belongs to, from /proc/self/exe: BUILD for BUILD/x,
   BUILD/tests/x, BUILD/tests/<dir>/x (core, gpu, ...) and BUILD/bench/x.  0 on success. */
int shim_buildtree_dir(char *out, size_t size);

/* Loads the plugin the way an engine does (loader.h), negotiating ABI 1.0 up to this header's
   version: MOECOMM_PLUGIN when set, else BUILD/libmoecomm.so of this binary's build (which is
   then also put in MOECOMM_PLUGIN, so that child processes load the same file).  *plugin_p is
   written only on SHIM_LOAD_OK; err (errlen bytes) explains any other result. */
shim_load_result_t shim_buildtree_plugin(shim_plugin_t *plugin_p, char *err, size_t errlen);

#endif
