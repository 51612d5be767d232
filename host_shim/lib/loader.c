/* SPDX-License-Identifier: Apache-2.0 */
/* loader.c - the reference plugin loader (loader.h): discovery, dlopen, entry check, negotiation.
 *
 * Written to be copied into an engine: it depends only on abi/moecomm.h and libc/libdl. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* dladdr, Dl_info: this file is meant to be copied as is */
#endif
#include "loader.h"

#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

/* The 1.0 table ends with plan_capture_sizes; a smaller table is not a 1.x plugin. */
#define SHIM_API_V1_0_SIZE MOECOMM_STRUCT_SIZE(moecomm_api_t, plan_capture_sizes)

/* Appends printf text to err (errlen bytes, always NUL-terminated). */
static void err_append(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void err_append(char *err, size_t errlen, const char *fmt, ...) {
  size_t used;
  va_list ap;
  if (err == NULL || errlen == 0) return;
  used = strnlen(err, errlen);
  if (used >= errlen - 1) return;
  va_start(ap, fmt);
  vsnprintf(err + used, errlen - used, fmt, ap);
  va_end(ap);
}

static void err_reset(char *err, size_t errlen) {
  if (err != NULL && errlen > 0) err[0] = '\0';
}

/* The plugin's table is not available before negotiation succeeds: name the entry's codes here. */
static const char *entry_result_name(moecomm_result_t r) {
  static const char *const names[] = {
      "MOECOMM_SUCCESS",         "MOECOMM_ERR_INVALID_ARGUMENT", "MOECOMM_ERR_STRUCT_SIZE",
      "MOECOMM_ERR_VERSION",     "MOECOMM_ERR_CONFIG",           "MOECOMM_ERR_NOT_SUPPORTED",
      "MOECOMM_ERR_UNAVAILABLE", "MOECOMM_ERR_TIMEOUT",          "MOECOMM_ERR_PEER",
      "MOECOMM_ERR_BACKEND",     "MOECOMM_ERR_NO_MEMORY",        "MOECOMM_ERR_CAPTURE",
      "MOECOMM_ERR_STATE",       "MOECOMM_ERR_INTERNAL"};
  if ((unsigned)r < sizeof(names) / sizeof(names[0])) return names[r];
  return "unknown moecomm result";
}

static int debug_info_enabled(void) {
  const char *v = getenv("MOECOMM_DEBUG");
  return v != NULL && (strcasecmp(v, "INFO") == 0 || strcasecmp(v, "TRACE") == 0);
}

/* MOECOMM_PLUGIN_DIR, looked at once per shim_plugin_load: a directory that does not exist is
   one warning line naming it, then ignored like an unset one. */
typedef struct plugin_dir {
  int checked;
  const char *dir; /* NULL: unset, empty or missing */
} plugin_dir_t;

static const char *plugin_dir_get(plugin_dir_t *pd) {
  struct stat st;
  const char *v, *why = NULL;
  if (pd->checked) return pd->dir;
  pd->checked = 1;
  v = getenv("MOECOMM_PLUGIN_DIR");
  if (v == NULL || v[0] == '\0') return NULL;
  if (stat(v, &st) != 0)
    why = strerror(errno);
  else if (!S_ISDIR(st.st_mode))
    why = "not a directory";
  if (why != NULL) {
    fprintf(stderr, "moecomm loader: WARN MOECOMM_PLUGIN_DIR=%s: %s; ignoring it\n", v, why);
    return NULL;
  }
  pd->dir = v;
  return v;
}

int shim_loader_exe_dir(char *out, size_t out_size) {
  char buf[PATH_MAX];
  ssize_t n = readlink("/proc/self/exe", buf, sizeof(buf) - 1);
  char *slash;
  if (n <= 0) return -1;
  buf[n] = '\0';
  slash = strrchr(buf, '/');
  if (slash == NULL) return -1;
  if (slash == buf) slash++; /* the executable lives in "/" */
  *slash = '\0';
  if ((size_t)snprintf(out, out_size, "%s", buf) >= out_size) return -1;
  return 0;
}

static int join_path(char *out, size_t out_size, const char *dir, const char *file) {
  size_t dl = strlen(dir);
  const char *sep = (dl > 0 && dir[dl - 1] == '/') ? "" : "/";
  return (size_t)snprintf(out, out_size, "%s%s%s", dir, sep, file) >= out_size ? -1 : 0;
}

/* The installed layout (make install, the .deb): PREFIX/bin/<exe> finds PREFIX/lib/moecomm/. */
static int installed_dir(char *out, size_t out_size) {
  char dir[PATH_MAX];
  if (shim_loader_exe_dir(dir, sizeof(dir)) != 0) return -1;
  return join_path(out, out_size, dir, "../lib/moecomm");
}

/* 1 when dli_fname (as reported by dladdr) is the very file we dlopen'ed. */
static int same_file(const char *a, const char *b) {
  struct stat sa, sb;
  if (a == NULL || b == NULL) return 0;
  if (stat(a, &sa) != 0 || stat(b, &sb) != 0) return 0;
  return sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

/* What a successful negotiation returned must be usable: a version in the range asked for, a
   1.x table, and the two calls every failure is reported through.  0, or -1 with err set. */
static int check_table(const char *resolved, const moecomm_api_t *api, uint32_t version,
                       uint32_t min_version, uint32_t max_version, char *err, size_t errlen) {
  if (api == NULL) {
    err_append(err, errlen, "%s: %s succeeded but returned no function table", resolved,
               MOECOMM_ENTRY_SYMBOL_V1);
    return -1;
  }
  if (version < min_version || version > max_version) {
    err_append(
        err, errlen, "%s: negotiated ABI %u.%u, outside the requested range [%u.%u, %u.%u]",
        resolved, MOECOMM_ABI_VERSION_GET_MAJOR(version), MOECOMM_ABI_VERSION_GET_MINOR(version),
        MOECOMM_ABI_VERSION_GET_MAJOR(min_version), MOECOMM_ABI_VERSION_GET_MINOR(min_version),
        MOECOMM_ABI_VERSION_GET_MAJOR(max_version), MOECOMM_ABI_VERSION_GET_MINOR(max_version));
    return -1;
  }
  if (api->struct_size < SHIM_API_V1_0_SIZE ||
      MOECOMM_ABI_VERSION_GET_MAJOR(api->abi_version) != 1) {
    err_append(err, errlen,
               "%s: function table is not an ABI 1.x table (struct_size %zu, at least %zu "
               "expected; abi_version %u.%u)",
               resolved, api->struct_size, (size_t)SHIM_API_V1_0_SIZE,
               MOECOMM_ABI_VERSION_GET_MAJOR(api->abi_version),
               MOECOMM_ABI_VERSION_GET_MINOR(api->abi_version));
    return -1;
  }
  /* The host reports every failure through these two; a table without them is unusable. */
  if (api->result_string == NULL || api->last_error == NULL) {
    err_append(err, errlen, "%s: function table lacks result_string or last_error", resolved);
    return -1;
  }
  return 0;
}

shim_load_result_t shim_plugin_load_path(const char *path, uint32_t min_version,
                                         uint32_t max_version, shim_plugin_t *plugin, char *err,
                                         size_t errlen) {
  void *handle = NULL;
  void *sym;
  moecomm_get_api_v1_fn_t entry;
  Dl_info info;
  const moecomm_api_t *api = NULL;
  uint32_t version = 0;
  char why[512] = "";
  char resolved[PATH_MAX];
  const char *dlerr;
  moecomm_result_t r;

  err_reset(err, errlen);
  if (path == NULL || path[0] == '\0' || plugin == NULL) {
    err_append(err, errlen, "shim_plugin_load_path: empty plugin path or NULL plugin argument");
    return SHIM_LOAD_FAILED;
  }
  if (MOECOMM_ABI_VERSION_GET_MAJOR(min_version) != 1 ||
      MOECOMM_ABI_VERSION_GET_MAJOR(max_version) != 1 || min_version > max_version) {
    err_append(err, errlen,
               "%s: this loader speaks ABI major 1 only; the requested range [%u.%u, %u.%u] is "
               "not a range of major-1 versions",
               path, MOECOMM_ABI_VERSION_GET_MAJOR(min_version),
               MOECOMM_ABI_VERSION_GET_MINOR(min_version),
               MOECOMM_ABI_VERSION_GET_MAJOR(max_version),
               MOECOMM_ABI_VERSION_GET_MINOR(max_version));
    return SHIM_LOAD_FAILED;
  }

  /* RTLD_LOCAL: the plugin's own dependencies must not leak into the host's symbol space. */
  dlerror();
  handle = dlopen(path, RTLD_NOW | RTLD_LOCAL);
  if (handle == NULL) {
    dlerr = dlerror();
    err_append(err, errlen, "cannot load %s: %s", path, dlerr ? dlerr : "dlopen failed");
    return SHIM_LOAD_FAILED;
  }
  if (realpath(path, resolved) == NULL) snprintf(resolved, sizeof(resolved), "%s", path);

  dlerror();
  sym = dlsym(handle, MOECOMM_ENTRY_SYMBOL_V1);
  if (sym == NULL) {
    dlerr = dlerror();
    err_append(err, errlen, "%s is not a moecomm plugin: it does not define %s (%s)", resolved,
               MOECOMM_ENTRY_SYMBOL_V1, dlerr ? dlerr : "symbol is NULL");
    goto fail;
  }
  /* dlsym also searches the file's dependencies: insist the entry is defined by this file, so a
     library that merely links a plugin is not mistaken for one. */
  memset(&info, 0, sizeof(info));
  if (dladdr(sym, &info) == 0 || !same_file(info.dli_fname, resolved)) {
    err_append(err, errlen, "%s is not a moecomm plugin: its %s comes from another object (%s)",
               resolved, MOECOMM_ENTRY_SYMBOL_V1,
               info.dli_fname ? info.dli_fname : "dladdr could not name it");
    goto fail;
  }

  /* dlsym returns void *; POSIX guarantees it converts to a function pointer. */
  memcpy(&entry, &sym, sizeof(entry));
  r = entry(min_version, max_version, &version, &api, why, sizeof(why));
  why[sizeof(why) - 1] = '\0';
  if (r != MOECOMM_SUCCESS) {
    err_append(
        err, errlen, "%s refused ABI versions [%u.%u, %u.%u]: %s (%s)", resolved,
        MOECOMM_ABI_VERSION_GET_MAJOR(min_version), MOECOMM_ABI_VERSION_GET_MINOR(min_version),
        MOECOMM_ABI_VERSION_GET_MAJOR(max_version), MOECOMM_ABI_VERSION_GET_MINOR(max_version),
        why[0] ? why : "no reason given", entry_result_name(r));
    goto fail;
  }
  if (check_table(resolved, api, version, min_version, max_version, err, errlen) != 0) goto fail;

  memset(plugin, 0, sizeof(*plugin));
  plugin->handle = handle;
  snprintf(plugin->path, sizeof(plugin->path), "%s", resolved);
  plugin->api = api;
  plugin->version = version;
  return SHIM_LOAD_OK;

fail:
  dlclose(handle);
  return SHIM_LOAD_FAILED;
}

/* The first of dirs that holds `file`: its path into path.  0, or -1 when none does. */
static int find_in(char dirs[][PATH_MAX], int ndirs, const char *file, char *path, size_t size) {
  for (int i = 0; i < ndirs; i++)
    if (join_path(path, size, dirs[i], file) == 0 && access(path, F_OK) == 0) return 0;
  return -1;
}

/* One explicit entry of MOECOMM_PLUGIN (a path or a name).  A name is looked for in
   MOECOMM_PLUGIN_DIR, next to the executable, then in ../lib/moecomm/ from the executable. */
static shim_load_result_t load_entry(const char *entry, uint32_t min_version, uint32_t max_version,
                                     plugin_dir_t *pd, shim_plugin_t *plugin, char *err,
                                     size_t errlen) {
  char file[512];
  char dirs[3][PATH_MAX];
  const char *labels[3];
  int ndirs = 0;
  const char *plugin_dir;
  char path[PATH_MAX];

  if (strchr(entry, '/') != NULL)
    return shim_plugin_load_path(entry, min_version, max_version, plugin, err, errlen);

  err_reset(err, errlen);
  if ((size_t)snprintf(file, sizeof(file), "libmoecomm-%s.so", entry) >= sizeof(file)) {
    err_append(err, errlen, "MOECOMM_PLUGIN name '%.40s...' is too long", entry);
    return SHIM_LOAD_FAILED;
  }
  plugin_dir = plugin_dir_get(pd);
  if (plugin_dir != NULL) {
    labels[ndirs] = "MOECOMM_PLUGIN_DIR";
    snprintf(dirs[ndirs++], sizeof(dirs[0]), "%s", plugin_dir);
  }
  labels[ndirs] = "executable's directory";
  if (shim_loader_exe_dir(dirs[ndirs], sizeof(dirs[0])) == 0) ndirs++;
  labels[ndirs] = "installed plugin directory";
  if (installed_dir(dirs[ndirs], sizeof(dirs[0])) == 0) ndirs++;

  /* The default build (PLUGIN_NAME=moecomm) is named libmoecomm.so, not libmoecomm-moecomm.so. */
  if (find_in(dirs, ndirs, file, path, sizeof(path)) == 0 ||
      (strcmp(entry, "moecomm") == 0 &&
       find_in(dirs, ndirs, "libmoecomm.so", path, sizeof(path)) == 0))
    return shim_plugin_load_path(path, min_version, max_version, plugin, err, errlen);
  err_append(err, errlen, "plugin '%s': no %s in ", entry, file);
  if (ndirs == 0)
    err_append(err, errlen,
               "any directory (no usable MOECOMM_PLUGIN_DIR and "
               "/proc/self/exe unreadable)");
  for (int i = 0; i < ndirs; i++)
    err_append(err, errlen, "%s%s (%s)", i ? " or " : "", dirs[i], labels[i]);
  return SHIM_LOAD_FAILED;
}

/* The default: libmoecomm.so next to the executable, then in MOECOMM_PLUGIN_DIR, then in
   ../lib/moecomm/ from the executable (the installed layout).  Quiet. */
static shim_load_result_t load_default(uint32_t min_version, uint32_t max_version, plugin_dir_t *pd,
                                       shim_plugin_t *plugin, char *err, size_t errlen) {
  char dir[PATH_MAX];
  char inst[PATH_MAX];
  char path[PATH_MAX];
  char one[1024];
  const char *plugin_dir = plugin_dir_get(pd);
  const char *dirs[3];
  int ndirs = 0;

  err_reset(err, errlen);
  if (shim_loader_exe_dir(dir, sizeof(dir)) == 0) dirs[ndirs++] = dir;
  if (plugin_dir != NULL) dirs[ndirs++] = plugin_dir;
  if (installed_dir(inst, sizeof(inst)) == 0) dirs[ndirs++] = inst;
  err_append(err, errlen, "no usable default plugin:");
  if (ndirs == 0)
    err_append(err, errlen, " /proc/self/exe unreadable and no usable MOECOMM_PLUGIN_DIR");
  for (int i = 0; i < ndirs; i++) {
    if (join_path(path, sizeof(path), dirs[i], "libmoecomm.so") != 0) continue;
    if (access(path, F_OK) != 0) {
      err_append(err, errlen, "%s %s: %s", i ? ";" : "", path, strerror(errno));
      continue;
    }
    if (shim_plugin_load_path(path, min_version, max_version, plugin, one, sizeof(one)) ==
        SHIM_LOAD_OK) {
      err_reset(err, errlen);
      return SHIM_LOAD_OK;
    }
    err_append(err, errlen, "%s %s", i ? ";" : "", one);
  }
  if (debug_info_enabled()) fprintf(stderr, "moecomm loader: INFO %s\n", err ? err : "");
  return SHIM_LOAD_NOT_FOUND;
}

shim_load_result_t shim_plugin_load(uint32_t min_version, uint32_t max_version,
                                    shim_plugin_t *plugin, char *err, size_t errlen) {
  const char *spec = getenv("MOECOMM_PLUGIN");
  char list[4096];
  char one[2048];
  char *save = NULL;
  int tried = 0;
  plugin_dir_t pd = {0, NULL};

  err_reset(err, errlen);
  if (plugin == NULL) {
    err_append(err, errlen, "shim_plugin_load: NULL plugin argument");
    return SHIM_LOAD_FAILED;
  }
  if (spec == NULL || spec[0] == '\0') {
    char quiet[4096] = "";
    shim_load_result_t r =
        load_default(min_version, max_version, &pd, plugin, quiet, sizeof(quiet));
    if (r != SHIM_LOAD_OK) err_append(err, errlen, "%s", quiet);
    return r;
  }
  if (strcmp(spec, "none") == 0) {
    err_append(err, errlen, "MOECOMM_PLUGIN=none: plugin disabled");
    return SHIM_LOAD_DISABLED;
  }
  if ((size_t)snprintf(list, sizeof(list), "%s", spec) >= sizeof(list)) {
    err_append(err, errlen, "MOECOMM_PLUGIN is longer than %zu characters", sizeof(list) - 1);
    return SHIM_LOAD_FAILED;
  }
  /* Every entry is explicit: all failing is loud and names each entry's reason. */
  for (char *tok = strtok_r(list, ",", &save); tok != NULL; tok = strtok_r(NULL, ",", &save)) {
    char *end;
    while (*tok == ' ' || *tok == '\t') tok++;
    end = tok + strlen(tok);
    while (end > tok && (end[-1] == ' ' || end[-1] == '\t')) *--end = '\0';
    if (*tok == '\0') continue;
    tried++;
    if (load_entry(tok, min_version, max_version, &pd, plugin, one, sizeof(one)) == SHIM_LOAD_OK) {
      err_reset(err, errlen);
      return SHIM_LOAD_OK;
    }
    err_append(err, errlen, "%s%s", tried > 1 ? "; " : "", one);
  }
  if (tried == 0) err_append(err, errlen, "MOECOMM_PLUGIN='%s' names no plugin", spec);
  return SHIM_LOAD_FAILED;
}

void shim_plugin_unload(shim_plugin_t *plugin) {
  if (plugin == NULL) return;
  if (plugin->handle != NULL) dlclose(plugin->handle);
  memset(plugin, 0, sizeof(*plugin));
}
