/* SPDX-License-Identifier: Apache-2.0 */
/* shim_loader.c - plugin discovery and negotiation of the reference loader
 * (host_shim/lib/loader.c).
 *
 * Cases run in this process by setting MOECOMM_PLUGIN / MOECOMM_PLUGIN_DIR, except those that
 * depend on where the executable lives or on what reaches stderr (the default's INFO line, the
 * warning for a MOECOMM_PLUGIN_DIR that is not a directory): for those this binary, or a copy
 * of it in a temporary directory, runs in "--child" mode and prints what shim_plugin_load
 * returned. */
#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../common/harness.h"

#define V10 MOECOMM_ABI_VERSION_MAKE(1, 0)

static char g_build[PATH_MAX];  /* BUILD directory */
static char g_plugin[PATH_MAX]; /* BUILD/libmoecomm.so, resolved */
static char g_tmp[PATH_MAX];    /* scratch directory */

/* Child mode: load with the inherited environment and print the outcome on stdout. */
static int child_main(void) {
  shim_plugin_t p;
  char err[4096] = "";
  shim_load_result_t r = shim_plugin_load(V10, MOECOMM_ABI_VERSION, &p, err, sizeof(err));
  printf("result=%d\n", (int)r);
  if (r == SHIM_LOAD_OK) {
    printf("path=%s\n", p.path);
    shim_plugin_unload(&p);
  } else {
    printf("err=%s\n", err);
  }
  fflush(stdout);
  return 0;
}

/* Runs exe --child with the given environment changes ("NAME=value" sets, "NAME" unsets);
   stdout goes to out, stderr to err_out. Returns the exit status or -1. */
static int run_child(const char *exe, const char *const *env, char *out, size_t out_size,
                     char *err_out, size_t err_size) {
  int po[2], pe[2], st = 0;
  pid_t pid;
  if (pipe(po) != 0) return -1;
  if (pipe(pe) != 0) {
    close(po[0]);
    close(po[1]);
    return -1;
  }
  fflush(stdout);
  fflush(stderr);
  pid = fork();
  if (pid == 0) {
    dup2(po[1], 1);
    dup2(pe[1], 2);
    close(po[0]);
    close(pe[0]);
    mc_test_env_apply(env);
    execl(exe, exe, "--child", (char *)NULL);
    _exit(127);
  }
  close(po[1]);
  close(pe[1]);
  if (pid < 0) {
    close(po[0]);
    close(pe[0]);
    return -1;
  }
  /* The child prints little: read stdout to the end, then stderr. */
  {
    size_t used = 0;
    ssize_t n;
    while (used + 1 < out_size && (n = read(po[0], out + used, out_size - 1 - used)) > 0)
      used += (size_t)n;
    out[used] = '\0';
    used = 0;
    while (used + 1 < err_size && (n = read(pe[0], err_out + used, err_size - 1 - used)) > 0)
      used += (size_t)n;
    err_out[used] = '\0';
  }
  close(po[0]);
  close(pe[0]);
  while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
  }
  return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static int count_lines(const char *s) {
  int n = 0;
  for (; *s; s++)
    if (*s == '\n') n++;
  return n;
}

static void resolve(const char *path, char *out) {
  if (realpath(path, out) == NULL) snprintf(out, PATH_MAX, "%s", path);
}

static void env_reset(void) {
  unsetenv("MOECOMM_PLUGIN");
  unsetenv("MOECOMM_PLUGIN_DIR");
  unsetenv("MOECOMM_DEBUG");
}

/* Loads with the current environment; checks the result, and the resolved path when OK. */
static void expect_load(const char *what, shim_load_result_t want, const char *want_path,
                        const char *err_part) {
  shim_plugin_t p;
  char err[4096] = "";
  shim_load_result_t r;
  memset(&p, 0x5a, sizeof(p)); /* written only on success */
  r = shim_plugin_load(V10, MOECOMM_ABI_VERSION, &p, err, sizeof(err));
  MC_CHECK(r == want, "%s: result %d, want %d (err: %s)", what, (int)r, (int)want, err);
  if (r == SHIM_LOAD_OK) {
    MC_CHECK(p.handle != NULL && p.api != NULL, "%s: no handle or table", what);
    /* The plugin is built from this tree: it speaks the header's version. */
    MC_CHECK(p.version == MOECOMM_ABI_VERSION, "%s: negotiated 0x%x, want 0x%x", what, p.version,
             (unsigned)MOECOMM_ABI_VERSION);
    MC_CHECK(p.api != NULL &&
                 p.api->struct_size >= MOECOMM_STRUCT_SIZE(moecomm_api_t, plan_capture_sizes),
             "%s: short table", what);
    MC_CHECK(p.api != NULL && p.api->plugin_name != NULL && p.api->plugin_version != NULL,
             "%s: table without name or version", what);
    if (want_path != NULL)
      MC_CHECK(strcmp(p.path, want_path) == 0, "%s: loaded %s, want %s", what, p.path, want_path);
    shim_plugin_unload(&p);
    MC_CHECK(p.handle == NULL && p.api == NULL, "%s: unload left the struct set", what);
  } else {
    unsigned char *b = (unsigned char *)&p;
    int untouched = 1;
    for (size_t i = 0; i < sizeof(p); i++) untouched &= b[i] == 0x5a;
    MC_CHECK(untouched, "%s: plugin struct written on failure", what);
    MC_CHECK(err[0] != '\0', "%s: no message", what);
    if (err_part != NULL)
      MC_CHECK(strstr(err, err_part) != NULL, "%s: message '%s' lacks '%s'", what, err, err_part);
  }
}

static void test_explicit(void) {
  char dir_copy[PATH_MAX], list[2 * PATH_MAX + 8], missing[PATH_MAX];

  env_reset();
  setenv("MOECOMM_PLUGIN", g_plugin, 1);
  expect_load("path", SHIM_LOAD_OK, g_plugin, NULL);

  /* A name: libmoecomm-<name>.so in MOECOMM_PLUGIN_DIR. */
  snprintf(dir_copy, sizeof(dir_copy), "%s/libmoecomm-mctest.so", g_tmp);
  MC_CHECK(mc_test_copy_file(g_plugin, dir_copy, 0755) == 0, "copy plugin to %s: %s", dir_copy,
           strerror(errno));
  env_reset();
  setenv("MOECOMM_PLUGIN", "mctest", 1);
  setenv("MOECOMM_PLUGIN_DIR", g_tmp, 1);
  expect_load("name in MOECOMM_PLUGIN_DIR", SHIM_LOAD_OK, dir_copy, NULL);

  /* The name "moecomm" is the default build's libmoecomm.so. */
  env_reset();
  setenv("MOECOMM_PLUGIN", "moecomm", 1);
  setenv("MOECOMM_PLUGIN_DIR", g_build, 1);
  expect_load("name moecomm", SHIM_LOAD_OK, g_plugin, NULL);

  /* A name that is nowhere: loud, names the file looked for. */
  env_reset();
  setenv("MOECOMM_PLUGIN", "nosuchname", 1);
  setenv("MOECOMM_PLUGIN_DIR", g_tmp, 1);
  expect_load("missing name", SHIM_LOAD_FAILED, NULL, "libmoecomm-nosuchname.so");

  /* A comma list whose first entry is missing: the second loads. */
  snprintf(missing, sizeof(missing), "%s/does-not-exist/libmoecomm.so", g_tmp);
  snprintf(list, sizeof(list), "%s, %s", missing, g_plugin);
  env_reset();
  setenv("MOECOMM_PLUGIN", list, 1);
  expect_load("comma list", SHIM_LOAD_OK, g_plugin, NULL);

  /* Every entry missing: every path named. */
  snprintf(list, sizeof(list), "%s,nosuchname", missing);
  env_reset();
  setenv("MOECOMM_PLUGIN", list, 1);
  expect_load("comma list, all missing", SHIM_LOAD_FAILED, NULL, missing);
  expect_load("comma list, all missing (second)", SHIM_LOAD_FAILED, NULL, "nosuchname");

  env_reset();
  setenv("MOECOMM_PLUGIN", "none", 1);
  expect_load("none", SHIM_LOAD_DISABLED, NULL, NULL);

  env_reset();
  setenv("MOECOMM_PLUGIN", missing, 1);
  expect_load("missing path", SHIM_LOAD_FAILED, NULL, missing);
}

/* A shared library that is not a plugin: libm (this binary links it). */
static void test_not_a_plugin(void) {
  Dl_info info;
  double (*fn)(double) = cos;
  void *sym;
  char libm[PATH_MAX] = "";
  memcpy(&sym, &fn, sizeof(sym));
  if (dladdr(sym, &info) != 0 && info.dli_fname != NULL && strchr(info.dli_fname, '/') != NULL)
    resolve(info.dli_fname, libm);
  if (libm[0] == '\0' || access(libm, R_OK) != 0) {
    mc_test_skip("not a plugin", "cannot locate libm (dladdr gave '%s')", libm);
    return;
  }
  env_reset();
  setenv("MOECOMM_PLUGIN", libm, 1);
  expect_load("libm", SHIM_LOAD_FAILED, NULL, "is not a moecomm plugin");
  expect_load("libm names the symbol", SHIM_LOAD_FAILED, NULL, MOECOMM_ENTRY_SYMBOL_V1);
  expect_load("libm names the file", SHIM_LOAD_FAILED, NULL, libm);
  /* A text file is not even a shared object: dlopen's reason is passed on. */
  {
    char txt[PATH_MAX];
    FILE *f;
    snprintf(txt, sizeof(txt), "%s/libmoecomm-text.so", g_tmp);
    f = fopen(txt, "w");
    MC_CHECK(f != NULL, "create %s", txt);
    if (f != NULL) {
      fputs("not an ELF file\n", f);
      fclose(f);
      setenv("MOECOMM_PLUGIN", txt, 1);
      expect_load("text file", SHIM_LOAD_FAILED, NULL, "cannot load");
    }
  }
}

static void test_versions(void) {
  shim_plugin_t p;
  char err[4096] = "";
  shim_load_result_t r;
  env_reset();
  /* A range the plugin does not speak: its refusal, with its own reason, is passed on. */
  memset(&p, 0, sizeof(p));
  r = shim_plugin_load_path(g_plugin, MOECOMM_ABI_VERSION_MAKE(1, 60),
                            MOECOMM_ABI_VERSION_MAKE(1, 70), &p, err, sizeof(err));
  MC_CHECK(r == SHIM_LOAD_FAILED, "range [1.60, 1.70]: result %d", (int)r);
  MC_CHECK(strstr(err, "refused") != NULL && strstr(err, "MOECOMM_ERR_VERSION") != NULL,
           "range [1.60, 1.70]: message '%s'", err);
  MC_CHECK(strstr(err, "no reason given") == NULL,
           "range [1.60, 1.70]: the plugin's own reason is missing: '%s'", err);
  MC_CHECK(strstr(err, g_plugin) != NULL, "range [1.60, 1.70]: path missing: '%s'", err);
  MC_CHECK(p.handle == NULL && p.api == NULL, "range [1.60, 1.70]: plugin struct written");

  /* A range this loader cannot speak: refused before dlopen. */
  r = shim_plugin_load_path(g_plugin, MOECOMM_ABI_VERSION_MAKE(2, 0),
                            MOECOMM_ABI_VERSION_MAKE(2, 1), &p, err, sizeof(err));
  MC_CHECK(r == SHIM_LOAD_FAILED && strstr(err, "major 1") != NULL, "major 2: %d '%s'", (int)r,
           err);
  r = shim_plugin_load_path(g_plugin, MOECOMM_ABI_VERSION_MAKE(1, 1), V10, &p, err, sizeof(err));
  MC_CHECK(r == SHIM_LOAD_FAILED, "min > max: result %d", (int)r);

  /* A range reaching past what the plugin speaks negotiates down to its newest. */
  r = shim_plugin_load_path(g_plugin, V10, MOECOMM_ABI_VERSION_MAKE(1, 90), &p, err, sizeof(err));
  MC_CHECK(r == SHIM_LOAD_OK, "range [1.0, 1.90]: %d '%s'", (int)r, err);
  if (r == SHIM_LOAD_OK) {
    MC_CHECK(p.version == MOECOMM_ABI_VERSION && p.version == p.api->abi_version,
             "range [1.0, 1.90]: negotiated 0x%x, table speaks 0x%x", p.version,
             p.api->abi_version);
    shim_plugin_unload(&p);
  }
  /* An older host (1.0 only) gets 1.0 from a newer plugin. */
  r = shim_plugin_load_path(g_plugin, V10, V10, &p, err, sizeof(err));
  MC_CHECK(r == SHIM_LOAD_OK && p.version == V10, "range [1.0, 1.0]: %d, negotiated 0x%x '%s'",
           (int)r, r == SHIM_LOAD_OK ? p.version : 0u, err);
  if (r == SHIM_LOAD_OK) shim_plugin_unload(&p);
}

/* The default: next to the executable (a copy of this binary in g_tmp/bin), then
   MOECOMM_PLUGIN_DIR, then ../lib/moecomm/; quiet unless MOECOMM_DEBUG=INFO. */
static void test_default(void) {
  const char *self = "/proc/self/exe"; /* this binary */
  char exe[PATH_MAX], link[PATH_MAX], out[8192], err[8192], want[PATH_MAX + 16];
  char dir_env[PATH_MAX + 32], empty_dir[PATH_MAX];
  int rc;
  const char *plain[] = {"MOECOMM_PLUGIN", "MOECOMM_PLUGIN_DIR", "MOECOMM_DEBUG", NULL};
  const char *info[] = {"MOECOMM_PLUGIN", "MOECOMM_PLUGIN_DIR", "MOECOMM_DEBUG=INFO", NULL};
  const char *with_dir[] = {"MOECOMM_PLUGIN", dir_env, "MOECOMM_DEBUG", NULL};

  snprintf(empty_dir, sizeof(empty_dir), "%s/bin", g_tmp);
  MC_CHECK(mkdir(empty_dir, 0755) == 0, "mkdir %s: %s", empty_dir, strerror(errno));
  snprintf(exe, sizeof(exe), "%s/bin/loader-child", g_tmp);
  if (!MC_CHECK(mc_test_copy_file(self, exe, 0755) == 0, "copy %s to %s: %s", self, exe,
                strerror(errno)))
    return;

  /* Nothing next to the executable, no MOECOMM_PLUGIN_DIR: NOT_FOUND, silent. */
  rc = run_child(exe, plain, out, sizeof(out), err, sizeof(err));
  MC_CHECK(rc == 0, "child exit %d", rc);
  MC_CHECK(strstr(out, "result=2\n") != NULL, "default, nothing there: '%s'", out);
  MC_CHECK(err[0] == '\0', "default, nothing there: stderr should be empty: '%s'", err);

  /* The same with MOECOMM_DEBUG=INFO: exactly one INFO line naming the place looked at. */
  rc = run_child(exe, info, out, sizeof(out), err, sizeof(err));
  MC_CHECK(rc == 0 && strstr(out, "result=2\n") != NULL, "default + INFO: %d '%s'", rc, out);
  MC_CHECK(count_lines(err) == 1 && strstr(err, "INFO") != NULL &&
               strstr(err, "bin/libmoecomm.so") != NULL,
           "default + INFO: want one INFO line naming bin/libmoecomm.so, got '%s'", err);

  /* Fallback to MOECOMM_PLUGIN_DIR. */
  snprintf(dir_env, sizeof(dir_env), "MOECOMM_PLUGIN_DIR=%s", g_build);
  rc = run_child(exe, with_dir, out, sizeof(out), err, sizeof(err));
  snprintf(want, sizeof(want), "path=%s\n", g_plugin);
  MC_CHECK(rc == 0 && strstr(out, "result=0\n") != NULL && strstr(out, want) != NULL,
           "default via MOECOMM_PLUGIN_DIR: %d '%s'", rc, out);

  /* Next to the executable comes first. */
  snprintf(link, sizeof(link), "%s/bin/libmoecomm.so", g_tmp);
  MC_CHECK(mc_test_copy_file(g_plugin, link, 0755) == 0, "copy plugin to %s", link);
  snprintf(dir_env, sizeof(dir_env), "MOECOMM_PLUGIN_DIR=%s", g_build);
  rc = run_child(exe, with_dir, out, sizeof(out), err, sizeof(err));
  snprintf(want, sizeof(want), "path=%s\n", link);
  MC_CHECK(rc == 0 && strstr(out, "result=0\n") != NULL && strstr(out, want) != NULL,
           "default next to the executable: %d '%s'", rc, out);
  MC_CHECK(err[0] == '\0', "default next to the executable: stderr '%s'", err);
  unlink(link);

  /* The installed layout: PREFIX/bin/<exe> finds PREFIX/lib/moecomm/libmoecomm.so, by default
     and for a name. */
  {
    char lib[PATH_MAX], inst[PATH_MAX], named[PATH_MAX];
    const char *by_name[] = {"MOECOMM_PLUGIN=inst", "MOECOMM_PLUGIN_DIR", "MOECOMM_DEBUG", NULL};
    snprintf(lib, sizeof(lib), "%s/lib", g_tmp);
    snprintf(inst, sizeof(inst), "%s/lib/moecomm/libmoecomm.so", g_tmp);
    snprintf(named, sizeof(named), "%s/lib/moecomm/libmoecomm-inst.so", g_tmp);
    MC_CHECK(mkdir(lib, 0755) == 0, "mkdir %s: %s", lib, strerror(errno));
    snprintf(lib, sizeof(lib), "%s/lib/moecomm", g_tmp);
    MC_CHECK(mkdir(lib, 0755) == 0, "mkdir %s: %s", lib, strerror(errno));
    MC_CHECK(mc_test_copy_file(g_plugin, inst, 0755) == 0, "copy plugin to %s", inst);
    MC_CHECK(mc_test_copy_file(g_plugin, named, 0755) == 0, "copy plugin to %s", named);
    rc = run_child(exe, plain, out, sizeof(out), err, sizeof(err));
    snprintf(want, sizeof(want), "path=%s\n", inst);
    MC_CHECK(rc == 0 && strstr(out, "result=0\n") != NULL && strstr(out, want) != NULL,
             "default in ../lib/moecomm: %d '%s'", rc, out);
    rc = run_child(exe, by_name, out, sizeof(out), err, sizeof(err));
    snprintf(want, sizeof(want), "path=%s\n", named);
    MC_CHECK(rc == 0 && strstr(out, "result=0\n") != NULL && strstr(out, want) != NULL,
             "name in ../lib/moecomm: %d '%s'", rc, out);
    unlink(inst);
    unlink(named);
    rmdir(lib);
    snprintf(lib, sizeof(lib), "%s/lib", g_tmp);
    rmdir(lib);
  }
  unlink(exe);
  rmdir(empty_dir);
}

/* A MOECOMM_PLUGIN_DIR that is not a directory: one WARN line naming it wherever the search
   would look there (default, a name), then ignored; none where it is not looked at (a path). */
static void test_plugin_dir_warning(void) {
  char exe[PATH_MAX], missing[PATH_MAX + 32], file[PATH_MAX + 32], out[8192], err[8192];
  char dir_env[PATH_MAX + 64], file_env[PATH_MAX + 64], path_env[PATH_MAX + 32];
  const char *by_default[] = {"MOECOMM_PLUGIN", dir_env, "MOECOMM_DEBUG", NULL};
  const char *not_dir[] = {"MOECOMM_PLUGIN", file_env, "MOECOMM_DEBUG", NULL};
  const char *by_name[] = {"MOECOMM_PLUGIN=mctest", dir_env, "MOECOMM_DEBUG", NULL};
  const char *by_path[] = {path_env, dir_env, "MOECOMM_DEBUG", NULL};
  FILE *f;
  int rc;
  resolve("/proc/self/exe", exe);
  snprintf(missing, sizeof(missing), "%s/no-such-dir", g_tmp);
  snprintf(file, sizeof(file), "%s/a-file", g_tmp);
  snprintf(dir_env, sizeof(dir_env), "MOECOMM_PLUGIN_DIR=%s", missing);
  snprintf(file_env, sizeof(file_env), "MOECOMM_PLUGIN_DIR=%s", file);
  snprintf(path_env, sizeof(path_env), "MOECOMM_PLUGIN=%s", g_plugin);
  f = fopen(file, "w");
  if (!MC_CHECK(f != NULL, "create %s: %s", file, strerror(errno))) return;
  fclose(f);

  /* The default search (this binary's directory has no plugin): not found, one warning. */
  rc = run_child(exe, by_default, out, sizeof(out), err, sizeof(err));
  MC_CHECK(rc == 0 && strstr(out, "result=2\n") != NULL, "default, missing dir: %d '%s'", rc, out);
  MC_CHECK(count_lines(err) == 1 && strstr(err, "WARN") != NULL && strstr(err, dir_env) != NULL &&
               strstr(err, "No such file") != NULL,
           "default, missing dir: want one WARN line naming %s, got '%s'", dir_env, err);
  rc = run_child(exe, not_dir, out, sizeof(out), err, sizeof(err));
  MC_CHECK(rc == 0 && count_lines(err) == 1 && strstr(err, file_env) != NULL &&
               strstr(err, "not a directory") != NULL,
           "default, a file as the dir: want one line naming %s, got '%s'", file_env, err);
  /* A name: the warning, and the failure names the other places searched. */
  rc = run_child(exe, by_name, out, sizeof(out), err, sizeof(err));
  MC_CHECK(rc == 0 && strstr(out, "result=3\n") != NULL && strstr(out, missing) == NULL,
           "name, missing dir: %d '%s' (want a failure that does not list the dir)", rc, out);
  MC_CHECK(count_lines(err) == 1 && strstr(err, dir_env) != NULL,
           "name, missing dir: want one line naming %s, got '%s'", dir_env, err);
  /* A path: the directory is not looked at, so no warning. */
  rc = run_child(exe, by_path, out, sizeof(out), err, sizeof(err));
  MC_CHECK(rc == 0 && strstr(out, "result=0\n") != NULL && err[0] == '\0',
           "path, missing dir: %d '%s', stderr '%s' (want a load and no warning)", rc, out, err);
  unlink(file);
}

int main(int argc, char **argv) {
  if (argc > 1 && strcmp(argv[1], "--child") == 0) return child_main();
  mc_test_init("shim_loader", argc, argv);

  if (!MC_CHECK(mc_test_build_dir(g_build, sizeof(g_build)) == 0, "no build directory"))
    return mc_test_finish();
  {
    char p[PATH_MAX + 32];
    snprintf(p, sizeof(p), "%s/libmoecomm.so", g_build);
    if (!MC_CHECK(access(p, R_OK) == 0, "plugin %s: %s", p, strerror(errno)))
      return mc_test_finish();
    resolve(p, g_plugin);
  }
  snprintf(g_tmp, sizeof(g_tmp), "%s/moecomm-loader.XXXXXX",
           getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
  if (!MC_CHECK(mkdtemp(g_tmp) != NULL, "mkdtemp: %s", strerror(errno))) return mc_test_finish();
  {
    char r[PATH_MAX];
    resolve(g_tmp, r);
    snprintf(g_tmp, sizeof(g_tmp), "%s", r);
  }

  test_explicit();
  test_not_a_plugin();
  test_versions();
  test_default();
  test_plugin_dir_warning();

  {
    char p[PATH_MAX + 64];
    snprintf(p, sizeof(p), "%s/libmoecomm-mctest.so", g_tmp);
    unlink(p);
    snprintf(p, sizeof(p), "%s/libmoecomm-text.so", g_tmp);
    unlink(p);
    MC_CHECK(rmdir(g_tmp) == 0, "rmdir %s: %s", g_tmp, strerror(errno));
  }
  env_reset();
  return mc_test_finish();
}
