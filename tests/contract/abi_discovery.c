/* SPDX-License-Identifier: Apache-2.0 */
/* discovery.c - how the reference loader (host_shim/loader.c) finds a plugin.
 *
 *  - two plugins built under different names (libmoecomm.so "moecomm" and libmoecomm-alt.so
 *    "alt") side by side in one directory: MOECOMM_PLUGIN=<name> + MOECOMM_PLUGIN_DIR selects
 *    each, in this process and in the shim, and each reports its own plugin_name; both can be
 *    loaded at once and each runs a context;
 *  - a comma list is tried in order; "none" disables; an explicit request that fails is loud and
 *    names every path tried and the reason; a default that fails is quiet (one INFO line only
 *    with MOECOMM_DEBUG=INFO);
 *  - the installed layout: a shim in PREFIX/bin finds PREFIX/lib/moecomm/ by itself, by default
 *    and by name, and MOECOMM_PLUGIN_DIR comes before it for the default. */
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../common/harness.h"
#include "util.h"

static char g_build[PATH_MAX];
static char g_tmp[PATH_MAX];

static void path_join(char *out, size_t n, const char *a, const char *b) {
  snprintf(out, n, "%s/%s", a, b);
}

static int install_copy(const char *src, const char *dir, const char *name) {
  char dst[PATH_MAX * 2];
  path_join(dst, sizeof(dst), dir, name);
  return MC_CHECK(mc_test_copy_file(src, dst, 0755) == 0, "cannot copy %s to %s", src, dst);
}

static void set_env(const char *plugin, const char *dir, const char *debug) {
  if (plugin)
    setenv("MOECOMM_PLUGIN", plugin, 1);
  else
    unsetenv("MOECOMM_PLUGIN");
  if (dir)
    setenv("MOECOMM_PLUGIN_DIR", dir, 1);
  else
    unsetenv("MOECOMM_PLUGIN_DIR");
  if (debug)
    setenv("MOECOMM_DEBUG", debug, 1);
  else
    unsetenv("MOECOMM_DEBUG");
}

/* shim_plugin_load with stderr captured into `errout`. */
static shim_load_result_t load_capture(shim_plugin_t *pl, char *err, size_t errlen, char *errout,
                                       size_t outlen) {
  char path[PATH_MAX * 2];
  int saved, fd;
  shim_load_result_t r;
  ssize_t got;
  path_join(path, sizeof(path), g_tmp, "stderr.txt");
  fflush(stderr);
  saved = dup(2);
  fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
  if (saved < 0 || fd < 0 || dup2(fd, 2) < 0) {
    MC_CHECK(0, "cannot capture stderr");
    if (fd >= 0) close(fd);
    if (saved >= 0) close(saved);
    return shim_plugin_load(MOECOMM_ABI_VERSION_MAKE(1, 0), MOECOMM_ABI_VERSION, pl, err, errlen);
  }
  r = shim_plugin_load(MOECOMM_ABI_VERSION_MAKE(1, 0), MOECOMM_ABI_VERSION, pl, err, errlen);
  fflush(stderr);
  dup2(saved, 2);
  close(saved);
  got = pread(fd, errout, outlen - 1, 0);
  errout[got > 0 ? got : 0] = '\0';
  close(fd);
  return r;
}

/* Loads with the given environment and checks the outcome; returns the plugin when loaded. */
static int expect_load(const char *what, const char *plugin, const char *dir, const char *debug,
                       shim_load_result_t want, const char *want_path, const char *want_name,
                       shim_plugin_t *out) {
  shim_plugin_t pl;
  char err[4096] = "", errout[4096] = "";
  shim_load_result_t r;
  set_env(plugin, dir, debug);
  memset(&pl, 0, sizeof(pl));
  r = load_capture(&pl, err, sizeof(err), errout, sizeof(errout));
  MC_CHECK(r == want, "%s: loader result %d, want %d: %s", what, (int)r, (int)want, err);
  if (r == SHIM_LOAD_OK) {
    char real[PATH_MAX];
    if (want_path != NULL && realpath(want_path, real) != NULL)
      MC_CHECK(strcmp(pl.path, real) == 0, "%s: loaded %s, want %s", what, pl.path, real);
    if (want_name != NULL)
      MC_CHECK(pl.api->plugin_name != NULL && strcmp(pl.api->plugin_name, want_name) == 0,
               "%s: plugin_name %s, want %s", what, pl.api->plugin_name, want_name);
    MC_CHECK(errout[0] == '\0', "%s: a successful load printed '%s'", what, errout);
    if (out != NULL)
      *out = pl;
    else
      shim_plugin_unload(&pl);
  } else if (want == SHIM_LOAD_FAILED || want == SHIM_LOAD_NOT_FOUND) {
    MC_CHECK(err[0] != '\0', "%s: no reason given", what);
  }
  set_env(NULL, NULL, NULL);
  return r == SHIM_LOAD_OK;
}

/* A world-1 CPU context on a loaded plugin: one all-reduce, exact. */
static void use_plugin(const shim_plugin_t *pl) {
  const moecomm_api_t *api = pl->api;
  moecomm_topology_t topo = mc_test_topo(1, 0, 1);
  moecomm_context_params_t p = mc_test_ctx_params(&topo, MOECOMM_DEVICE_CPU);
  moecomm_context_t *ctx = NULL;
  moecomm_group_t *g = NULL;
  int32_t x[5] = {3, -1, 4, -1, 5}, y[5] = {0};
  if (!MC_CHECK_RC(api, NULL, api->context_create(&p, &ctx), MOECOMM_SUCCESS)) return;
  MC_CHECK_RC(api, ctx, api->group_get(ctx, MOECOMM_GROUP_WORLD, &g), MOECOMM_SUCCESS);
  MC_CHECK_RC(api, ctx, api->all_reduce(g, x, y, 5, MOECOMM_INT32, MOECOMM_SUM, NULL),
              MOECOMM_SUCCESS);
  MC_CHECK(memcmp(x, y, sizeof(x)) == 0, "%s: world-1 all_reduce is not a copy", api->plugin_name);
  api->context_destroy(ctx);
}

static void check_side_by_side(const char *dir) {
  char main_so[PATH_MAX * 2], alt_so[PATH_MAX * 2], cmd[PATH_MAX * 4], out[16384];
  shim_plugin_t a, b;
  path_join(main_so, sizeof(main_so), dir, "libmoecomm.so");
  path_join(alt_so, sizeof(alt_so), dir, "libmoecomm-alt.so");

  expect_load("MOECOMM_PLUGIN=alt", "alt", dir, NULL, SHIM_LOAD_OK, alt_so, "alt", NULL);
  expect_load("MOECOMM_PLUGIN=moecomm", "moecomm", dir, NULL, SHIM_LOAD_OK, main_so, "moecomm",
              NULL);
  expect_load("default with MOECOMM_PLUGIN_DIR", NULL, dir, NULL, SHIM_LOAD_OK, main_so, "moecomm",
              NULL);
  expect_load("MOECOMM_PLUGIN=<path of alt>", alt_so, NULL, NULL, SHIM_LOAD_OK, alt_so, "alt",
              NULL);

  /* Both at once (RTLD_LOCAL keeps them apart); each runs its own context. */
  if (expect_load("alt, kept", "alt", dir, NULL, SHIM_LOAD_OK, alt_so, "alt", &a)) {
    if (expect_load("moecomm, kept", "moecomm", dir, NULL, SHIM_LOAD_OK, main_so, "moecomm", &b)) {
      MC_CHECK(a.handle != b.handle && a.api != b.api, "the two plugins share one handle");
      use_plugin(&a);
      use_plugin(&b);
      shim_plugin_unload(&b);
    }
    shim_plugin_unload(&a);
  }

  /* The same shim binary, run with each selection, says which plugin it runs. */
  for (int i = 0; i < 2; i++) {
    const char *name = i == 0 ? "alt" : "moecomm";
    int rc;
    snprintf(cmd, sizeof(cmd),
             "MOECOMM_PLUGIN=%s MOECOMM_PLUGIN_DIR='%s' '%s/moecomm-shim' --ranks 2 --iters 2 "
             "--tokens 8 --hidden 64 --device cpu",
             name, dir, g_build);
    rc = mc_test_shell(cmd, out, sizeof(out));
    MC_CHECK(rc == 0, "shim with MOECOMM_PLUGIN=%s exited %d:\n%s", name, rc, out);
    {
      char want_path[PATH_MAX * 2 + 16], want_name[64];
      snprintf(want_path, sizeof(want_path), "plugin: %s", i == 0 ? alt_so : main_so);
      snprintf(want_name, sizeof(want_name), "name %s,", name);
      MC_CHECK(strstr(out, want_path) != NULL && strstr(out, want_name) != NULL,
               "shim with MOECOMM_PLUGIN=%s does not report '%s' and '%s':\n%s", name, want_path,
               want_name, out);
    }
  }
}

static void check_lists_and_errors(const char *dir, const char *empty) {
  char alt_so[PATH_MAX * 2], fake[PATH_MAX * 2], list[PATH_MAX * 4], err[4096], errout[4096];
  shim_plugin_t pl;
  shim_load_result_t r;
  path_join(alt_so, sizeof(alt_so), dir, "libmoecomm-alt.so");
  snprintf(fake, sizeof(fake), "%s/abi/libfake_v2only.so", g_build);

  expect_load("list: missing name, then alt", "nosuch,alt", dir, NULL, SHIM_LOAD_OK, alt_so, "alt",
              NULL);
  snprintf(list, sizeof(list), "%s, alt", fake);
  expect_load("list: refused plugin, then alt", list, dir, NULL, SHIM_LOAD_OK, alt_so, "alt", NULL);
  expect_load("MOECOMM_PLUGIN=none", "none", dir, NULL, SHIM_LOAD_DISABLED, NULL, NULL, NULL);

  /* Explicit requests that fail: loud, naming each path and the reason. */
  set_env("nosuch1,nosuch2", dir, NULL);
  r = load_capture(&pl, err, sizeof(err), errout, sizeof(errout));
  MC_CHECK(r == SHIM_LOAD_FAILED, "missing names: result %d", (int)r);
  MC_CHECK(strstr(err, "libmoecomm-nosuch1.so") != NULL &&
               strstr(err, "libmoecomm-nosuch2.so") != NULL && strstr(err, dir) != NULL &&
               strstr(err, "MOECOMM_PLUGIN_DIR") != NULL,
           "the error should name both files and the directories searched: %s", err);
  set_env(fake, NULL, NULL);
  r = load_capture(&pl, err, sizeof(err), errout, sizeof(errout));
  MC_CHECK(r == SHIM_LOAD_FAILED && strstr(err, fake) != NULL &&
               strstr(err, "does not define moecomm_get_api_v1") != NULL,
           "a refused explicit plugin: result %d: %s", (int)r, err);
  set_env("/nonexistent/dir/libmoecomm.so", NULL, NULL);
  r = load_capture(&pl, err, sizeof(err), errout, sizeof(errout));
  MC_CHECK(r == SHIM_LOAD_FAILED && strstr(err, "/nonexistent/dir/libmoecomm.so") != NULL &&
               strstr(err, "No such file") != NULL,
           "a missing explicit path should give the path and dlerror: result %d: %s", (int)r, err);

  /* A default that fails: quiet, and one INFO line with MOECOMM_DEBUG=INFO. */
  set_env(NULL, empty, NULL);
  r = load_capture(&pl, err, sizeof(err), errout, sizeof(errout));
  MC_CHECK(r == SHIM_LOAD_NOT_FOUND, "default with nothing to find: result %d: %s", (int)r, err);
  MC_CHECK(errout[0] == '\0', "the failing default printed '%s'", errout);
  set_env(NULL, empty, "INFO");
  r = load_capture(&pl, err, sizeof(err), errout, sizeof(errout));
  {
    int lines = 0;
    for (const char *c = errout; *c; c++) lines += *c == '\n';
    MC_CHECK(r == SHIM_LOAD_NOT_FOUND && lines == 1 && strstr(errout, "INFO") != NULL &&
                 strstr(errout, empty) != NULL,
             "MOECOMM_DEBUG=INFO: %d lines, want one INFO line naming %s: '%s'", lines, empty,
             errout);
  }
  set_env(NULL, NULL, NULL);
}

/* PREFIX/bin/moecomm-shim + PREFIX/lib/moecomm/: found without any variable. */
static void check_installed_layout(void) {
  char prefix[PATH_MAX * 2], bin[PATH_MAX * 2], lib[PATH_MAX * 2], other[PATH_MAX * 2];
  char src[PATH_MAX * 2], cmd[PATH_MAX * 8], out[16384], want[PATH_MAX * 3];
  int rc;
  path_join(prefix, sizeof(prefix), g_tmp, "prefix");
  snprintf(bin, sizeof(bin), "%s/bin", prefix);
  snprintf(lib, sizeof(lib), "%s/lib/moecomm", prefix);
  path_join(other, sizeof(other), g_tmp, "override");
  snprintf(cmd, sizeof(cmd), "mkdir -p '%s' '%s' '%s'", bin, lib, other);
  if (!MC_CHECK(mc_test_shell(cmd, NULL, 0) == 0, "mkdir failed")) return;
  snprintf(src, sizeof(src), "%s/moecomm-shim", g_build);
  install_copy(src, bin, "moecomm-shim");
  snprintf(src, sizeof(src), "%s/libmoecomm.so", g_build);
  install_copy(src, lib, "libmoecomm.so");
  snprintf(src, sizeof(src), "%s/abi/libmoecomm-alt.so", g_build);
  install_copy(src, lib, "libmoecomm-alt.so");
  install_copy(src, other, "libmoecomm.so"); /* "alt" under the default file name */

  for (int i = 0; i < 3; i++) {
    static const char *const envs[] = {"", "MOECOMM_PLUGIN=alt", "MOECOMM_PLUGIN_DIR='%s'"};
    char env[PATH_MAX * 2];
    const char *name = i == 0 ? "moecomm" : "alt";
    snprintf(env, sizeof(env), envs[i], other);
    snprintf(cmd, sizeof(cmd),
             "env -u MOECOMM_PLUGIN -u MOECOMM_PLUGIN_DIR %s '%s/moecomm-shim' --ranks 2 --iters 2 "
             "--tokens 8 --hidden 64 --device cpu",
             env, bin);
    rc = mc_test_shell(cmd, out, sizeof(out));
    if (i == 0) snprintf(want, sizeof(want), "plugin: %s/libmoecomm.so", lib);
    if (i == 1) snprintf(want, sizeof(want), "plugin: %s/libmoecomm-alt.so", lib);
    if (i == 2) snprintf(want, sizeof(want), "plugin: %s/libmoecomm.so", other);
    MC_CHECK(rc == 0 && strstr(out, want) != NULL && strstr(out, name) != NULL,
             "installed shim with [%s]: exit %d, want '%s' (plugin %s):\n%s", env, rc, want, name,
             out);
  }
}

int main(int argc, char **argv) {
  char dir[PATH_MAX * 2], empty[PATH_MAX * 2], src[PATH_MAX * 2];
  mc_test_init("abi_discovery", argc, argv);
  set_env(NULL, NULL, NULL);
  if (!MC_CHECK(mc_test_build_dir(g_build, sizeof(g_build)) == 0 &&
                    abi_mkdtemp("discovery", g_tmp, sizeof(g_tmp)) == 0,
                "no build directory or scratch directory"))
    return mc_test_finish();
  path_join(dir, sizeof(dir), g_tmp, "plugins");
  path_join(empty, sizeof(empty), g_tmp, "empty");
  if (MC_CHECK(mkdir(dir, 0755) == 0 && mkdir(empty, 0755) == 0, "mkdir failed")) {
    snprintf(src, sizeof(src), "%s/libmoecomm.so", g_build);
    install_copy(src, dir, "libmoecomm.so");
    snprintf(src, sizeof(src), "%s/abi/libmoecomm-alt.so", g_build);
    install_copy(src, dir, "libmoecomm-alt.so");
    check_side_by_side(dir);
    check_lists_and_errors(dir, empty);
    check_installed_layout();
  }
  abi_rm_rf(g_tmp);
  return mc_test_finish();
}
