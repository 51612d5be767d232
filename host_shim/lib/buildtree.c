/* SPDX-License-Identifier: Apache-2.0 */
/* buildtree.c - a build's own directory and plugin (buildtree.h). */
#include "buildtree.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *base_name(const char *path) {
  const char *s = strrchr(path, '/');
  return s ? s + 1 : path;
}

/* Cuts the last component of path when it is `name`. */
static void drop_dir(char *path, const char *name) {
  char *slash = strrchr(path, '/');
  if (slash != NULL && strcmp(base_name(path), name) == 0) *slash = '\0';
}

/* 1 when path is .../<name>/<last>. */
static int parent_is(const char *path, const char *name) {
  char up[PATH_MAX];
  snprintf(up, sizeof(up), "%s", path);
  drop_dir(up, base_name(up));
  return strcmp(up, path) != 0 && strcmp(base_name(up), name) == 0;
}

int shim_buildtree_dir(char *out, size_t size) {
  char dir[PATH_MAX];
  if (shim_loader_exe_dir(dir, sizeof(dir)) != 0) return -1;
  if (parent_is(dir, "tests")) drop_dir(dir, base_name(dir)); /* BUILD/tests/<purpose>/x */
  if (strcmp(base_name(dir), "tests") == 0)
    drop_dir(dir, "tests");
  else
    drop_dir(dir, "bench");
  return (size_t)snprintf(out, size, "%s", dir) < size ? 0 : -1;
}

shim_load_result_t shim_buildtree_plugin(shim_plugin_t *plugin_p, char *err, size_t errlen) {
  if (getenv("MOECOMM_PLUGIN") == NULL) {
    char dir[PATH_MAX], path[PATH_MAX + 32];
    if (shim_buildtree_dir(dir, sizeof(dir)) != 0) {
      snprintf(err, errlen, "cannot find this binary's build directory from /proc/self/exe");
      return SHIM_LOAD_FAILED;
    }
    snprintf(path, sizeof(path), "%s/libmoecomm.so", dir);
    setenv("MOECOMM_PLUGIN", path, 1);
  }
  return shim_plugin_load(MOECOMM_ABI_VERSION_MAKE(1, 0), MOECOMM_ABI_VERSION, plugin_p, err,
                          errlen);
}
