/* SPDX-License-Identifier: Apache-2.0 */
/* loader.h - the reference plugin loader: how an engine finds, loads and negotiates with moecomm.
 *
 * Discovery (MOECOMM_PLUGIN): unset -> the default, libmoecomm.so next to the running executable,
 * then in MOECOMM_PLUGIN_DIR, then in ../lib/moecomm/ from the executable's directory (the layout
 * of make install and the .deb); a path (contains '/') -> that file; a name -> libmoecomm-<name>.so
 * in MOECOMM_PLUGIN_DIR (else next to the executable, else ../lib/moecomm/); a comma list -> each
 * tried in order; "none" -> no plugin.  A default that fails is a quiet fallback (one INFO line);
 * an explicit request that fails is a loud error naming the path and the dlerror or negotiation
 * reason.  A MOECOMM_PLUGIN_DIR that is not a directory is one warning line on stderr naming it
 * (when the search would look there), then ignored. */
#ifndef SHIM_LOADER_H_
#define SHIM_LOADER_H_

#include <stdint.h>

#include "../../abi/moecomm.h"

typedef struct shim_plugin {
  void *handle;             /* dlopen handle, NULL when not loaded */
  char path[4096];          /* resolved file that was loaded */
  const moecomm_api_t *api; /* negotiated table */
  uint32_t version;         /* negotiated ABI version */
} shim_plugin_t;

typedef enum shim_load_result {
  SHIM_LOAD_OK = 0,
  SHIM_LOAD_DISABLED = 1,  /* MOECOMM_PLUGIN=none */
  SHIM_LOAD_NOT_FOUND = 2, /* the default was not found or failed: quiet */
  SHIM_LOAD_FAILED = 3     /* an explicit request failed: message in err */
} shim_load_result_t;

/* Finds and loads the plugin, negotiating an ABI version in [min_version, max_version].
 *plugin written only on SHIM_LOAD_OK; err (errlen bytes) explains any other result. */
shim_load_result_t shim_plugin_load(uint32_t min_version, uint32_t max_version,
                                    shim_plugin_t *plugin, char *err, size_t errlen);

/* Loads exactly `path` (no search) and negotiates. */
shim_load_result_t shim_plugin_load_path(const char *path, uint32_t min_version,
                                         uint32_t max_version, shim_plugin_t *plugin, char *err,
                                         size_t errlen);

void shim_plugin_unload(shim_plugin_t *plugin);

/* Directory of the running executable, from /proc/self/exe (where the default plugin is looked
   for first).  0 on success. */
int shim_loader_exe_dir(char *out, size_t out_size);

#endif
