/* SPDX-License-Identifier: Apache-2.0 */
/* install.c - `make install` and `make uninstall`, run from the source tree against this build
 * (the Makefile compiles in MC_SOURCE_DIR and the make variables of the build):
 *
 *  - install puts exactly the documented files in DESTDIR/PREFIX (modes, contents), the
 *    pkg-config file works (Cflags compile a host that includes <moecomm.h>; the plugin variable
 *    names the installed .so) and the installed shim finds the plugin in ../lib/moecomm/ alone;
 *  - uninstall removes exactly those files and the moecomm directories once empty, leaves files
 *    it did not install, and can run twice.
 *
 * The Debian package is abi_deb's (abi_deb.c). */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/harness.h"
#include "pkg.h"
#include "util.h"

#define CMD_MAX ABI_PKG_CMD_MAX

static char g_build[PATH_MAX];
static char g_tmp[PATH_MAX];
static abi_pkg_names_t g_names;

static int run_make(const char *args, char *out, size_t n) {
  return abi_pkg_make(MC_SOURCE_DIR, MC_MAKE_VARS, args, out, n);
}

/* pkg-config: version, Cflags usable by a host, the plugin variable. */
static void check_pkgconfig(const char *root, const char *prefix) {
  char out[16384], want[8192], p[PATH_MAX * 2], cmd[CMD_MAX];
  int rc;
  snprintf(cmd, sizeof(cmd), "PKG_CONFIG_PATH='%s%s/lib/pkgconfig' pkg-config --modversion moecomm",
           root, prefix);
  rc = mc_test_shell(cmd, out, sizeof(out));
  MC_CHECK(rc == 0 && strncmp(out, g_names.version, strlen(g_names.version)) == 0 &&
               out[strlen(g_names.version)] == '\n',
           "pkg-config --modversion: exit %d, '%s', want %s", rc, out, g_names.version);
  snprintf(cmd, sizeof(cmd),
           "PKG_CONFIG_PATH='%s%s/lib/pkgconfig' pkg-config --variable=plugin moecomm", root,
           prefix);
  rc = mc_test_shell(cmd, out, sizeof(out));
  snprintf(want, sizeof(want), "%s/lib/moecomm/%s\n", prefix, g_names.plugin_file);
  MC_CHECK(rc == 0 && strcmp(out, want) == 0, "pkg-config --variable=plugin: '%s', want '%s'", out,
           want);
  /* A host built with the installed header and Cflags, dlopening the installed plugin. */
  snprintf(p, sizeof(p), "%s/host.c", g_tmp);
  {
    FILE *f = fopen(p, "w");
    if (MC_CHECK(f != NULL, "cannot write %s", p)) {
      fputs(
          "#include <dlfcn.h>\n#include <stdio.h>\n#include <moecomm.h>\n"
          "int main(int argc, char **argv) {\n"
          "  void *h = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);\n"
          "  moecomm_get_api_v1_fn_t entry;\n  const moecomm_api_t *api;\n  uint32_t v;\n"
          "  void *sym = h ? dlsym(h, MOECOMM_ENTRY_SYMBOL_V1) : NULL;\n"
          "  if (sym == NULL) { printf(\"no entry: %s\\n\", dlerror()); return 1; }\n"
          "  *(void **)&entry = sym;\n"
          "  if (entry(MOECOMM_ABI_VERSION_MAKE(1, 0), MOECOMM_ABI_VERSION, &v, &api, NULL, 0))\n"
          "    return 2;\n"
          "  printf(\"host: %s %s ABI %u.%u\\n\", api->plugin_name, api->plugin_version,\n"
          "         v >> 16, v & 0xffff);\n  return argc == 2 ? 0 : 3;\n}\n",
          f);
      fclose(f);
    }
  }
  snprintf(cmd, sizeof(cmd),
           "PKG_CONFIG_PATH='%s%s/lib/pkgconfig' PKG_CONFIG_SYSROOT_DIR='%s' && export "
           "PKG_CONFIG_PATH PKG_CONFIG_SYSROOT_DIR && ${CC:-cc} -std=c99 -Wall -Werror "
           "$(pkg-config --cflags moecomm) -o '%s/host' '%s/host.c' $(pkg-config --libs moecomm) "
           "&& '%s/host' '%s%s/lib/moecomm/%s'",
           root, prefix, root, g_tmp, g_tmp, g_tmp, root, prefix, g_names.plugin_file);
  rc = mc_test_shell(cmd, out, sizeof(out));
  MC_CHECK(rc == 0 && strstr(out, "host: ") != NULL && strstr(out, g_names.version) != NULL,
           "a host built with pkg-config's Cflags against the installed header: exit %d:\n%s", rc,
           out);
}

/* The installed shim finds ../lib/moecomm/ by itself. */
static void check_installed_shim(const char *root, const char *prefix) {
  char out[16384], want[8192], cmd[CMD_MAX];
  int rc;
  snprintf(cmd, sizeof(cmd),
           "env -u MOECOMM_PLUGIN -u MOECOMM_PLUGIN_DIR '%s%s/bin/moecomm-shim' --ranks 2 "
           "--iters 2 --tokens 8 --hidden 64 --device cpu",
           root, prefix);
  rc = mc_test_shell(cmd, out, sizeof(out));
  snprintf(want, sizeof(want), "plugin: %s%s/lib/moecomm/%s", root, prefix, g_names.plugin_file);
  MC_CHECK(rc == 0 && strstr(out, want) != NULL && strstr(out, "verified") != NULL,
           "installed shim: exit %d, want '%s' and a verified run:\n%s", rc, want, out);
}

/* Uninstall removes exactly what install put there. */
static void check_uninstall(const char *root, const char *prefix) {
  char args[CMD_MAX], out[16384], got[8192], want[8192], p[PATH_MAX * 2], cmd[CMD_MAX];
  int rc;
  char foreign[3][PATH_MAX * 2];
  snprintf(foreign[0], sizeof(foreign[0]), "%s%s/bin/other-tool", root, prefix);
  snprintf(foreign[1], sizeof(foreign[1]), "%s%s/lib/moecomm/libmoecomm-foreign.so", root, prefix);
  snprintf(foreign[2], sizeof(foreign[2]), "%s%s/lib/pkgconfig/other.pc", root, prefix);
  for (int i = 0; i < 3; i++) {
    snprintf(cmd, sizeof(cmd), "echo foreign > '%s'", foreign[i]);
    MC_CHECK(mc_test_shell(cmd, NULL, 0) == 0, "cannot write %s", foreign[i]);
  }
  snprintf(args, sizeof(args), "uninstall DESTDIR='%s' PREFIX=%s", root, prefix);
  rc = run_make(args, out, sizeof(out));
  MC_CHECK(rc == 0, "make %s exited %d:\n%s", args, rc, out);
  abi_pkg_tree_list(root, got, sizeof(got));
  snprintf(want, sizeof(want),
           "%s/bin/other-tool\n%s/lib/moecomm/libmoecomm-foreign.so\n"
           "%s/lib/pkgconfig/other.pc\n",
           prefix, prefix, prefix);
  MC_CHECK(strcmp(got, want) == 0, "after make uninstall:\n%swant exactly:\n%s", got, want);
  snprintf(p, sizeof(p), "%s%s/include/moecomm", root, prefix);
  MC_CHECK(!abi_exists(p), "uninstall left the empty %s", p);
  rc = run_make(args, out, sizeof(out));
  MC_CHECK(rc == 0, "a second make uninstall exited %d:\n%s", rc, out);
  MC_CHECK(remove(foreign[1]) == 0, "cannot remove %s", foreign[1]);
  rc = run_make(args, out, sizeof(out));
  snprintf(p, sizeof(p), "%s%s/lib/moecomm", root, prefix);
  MC_CHECK(rc == 0 && !abi_exists(p), "uninstall left the empty %s (exit %d)", p, rc);
}

static void check_install(void) {
  char root[PATH_MAX + 16], args[CMD_MAX], out[16384], got[8192], want[8192], p[PATH_MAX * 2];
  char q[PATH_MAX * 2];
  const char *prefix = "/opt/moecomm";
  int rc;
  snprintf(root, sizeof(root), "%s/root", g_tmp);
  snprintf(args, sizeof(args), "install DESTDIR='%s' PREFIX=%s", root, prefix);
  rc = run_make(args, out, sizeof(out));
  if (!MC_CHECK(rc == 0, "make %s exited %d:\n%s", args, rc, out)) return;

  abi_pkg_tree_list(root, got, sizeof(got));
  abi_pkg_install_list(MC_SOURCE_DIR, &g_names, prefix, "/opt/moecomm/lib/pkgconfig",
                       "/opt/moecomm/share/man", "", NULL, 0, want, sizeof(want));
  MC_CHECK(strcmp(got, want) == 0, "make install put:\n%swant exactly:\n%s", got, want);

  snprintf(p, sizeof(p), "%s%s/lib/moecomm/%s", root, prefix, g_names.plugin_file);
  snprintf(q, sizeof(q), "%s/%s", g_build, g_names.plugin_file);
  MC_CHECK(abi_pkg_same_content(p, q) && abi_pkg_mode(p) == 0644,
           "installed plugin %s: mode %o or "
           "content differs from %s",
           p, (unsigned)abi_pkg_mode(p), q);
  snprintf(p, sizeof(p), "%s%s/bin/moecomm-shim", root, prefix);
  MC_CHECK(abi_pkg_mode(p) == 0755, "installed shim mode %o", (unsigned)abi_pkg_mode(p));
  snprintf(p, sizeof(p), "%s%s/include/moecomm/moecomm_v1.h", root, prefix);
  snprintf(q, sizeof(q), "%s/abi/moecomm_v1.h", MC_SOURCE_DIR);
  MC_CHECK(abi_pkg_same_content(p, q) && abi_pkg_mode(p) == 0644, "installed moecomm_v1.h differs");
  snprintf(p, sizeof(p), "%s%s/include/moecomm/moecomm.h", root, prefix);
  snprintf(q, sizeof(q), "%s/abi/moecomm.h", MC_SOURCE_DIR);
  MC_CHECK(abi_pkg_same_content(p, q) && abi_pkg_mode(p) == 0644, "installed moecomm.h differs");
  snprintf(p, sizeof(p), "%s%s/share/man/man1/moecomm-shim.1", root, prefix);
  snprintf(q, sizeof(q), "%s/packaging/moecomm-shim.1", MC_SOURCE_DIR);
  MC_CHECK(abi_pkg_same_content(p, q) && abi_pkg_mode(p) == 0644, "installed manual page differs");

  check_pkgconfig(root, prefix);
  check_installed_shim(root, prefix);
  check_uninstall(root, prefix);
}

int main(int argc, char **argv) {
  mc_test_init("abi_install", argc, argv);
  if (!MC_CHECK(mc_test_build_dir(g_build, sizeof(g_build)) == 0 &&
                    abi_mkdtemp("install", g_tmp, sizeof(g_tmp)) == 0,
                "no build directory or scratch directory"))
    return mc_test_finish();
  if (MC_CHECK(abi_pkg_names(MC_SOURCE_DIR, MC_MAKE_VARS, &g_names) == 0, "cannot read %s/VERSION",
               MC_SOURCE_DIR))
    check_install();
  abi_rm_rf(g_tmp);
  return mc_test_finish();
}
