/* install.c - `make install`, `make uninstall` and `make deb`, run from the source tree against
 * this build (the Makefile compiles in MC_SOURCE_DIR and the make variables of the build).
 *
 *  - install puts exactly the documented files in DESTDIR/PREFIX (modes, contents), the
 *    pkg-config file works (Cflags compile a host that includes <moecomm.h>; the plugin variable
 *    names the installed .so) and the installed shim finds the plugin in ../lib/moecomm/ alone;
 *  - uninstall removes exactly those files and the moecomm directories once empty, leaves files
 *    it did not install, and can run twice;
 *  - deb builds a package whose fields are right (Package, Version from VERSION, Architecture,
 *    a Depends entry for every library the installed ELF files link and nothing else), which
 *    extracted into a scratch root runs its shim on 2 shm ranks with the plugin from that root. */
#include <ftw.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "../common/harness.h"
#include "util.h"

#ifndef MC_SOURCE_DIR
#define MC_SOURCE_DIR "."
#endif
#ifndef MC_MAKE_VARS
#define MC_MAKE_VARS ""
#endif

#define CMD_MAX 16384

static char g_build[PATH_MAX];
static char g_tmp[PATH_MAX];
static char g_plugin_file[256] = "libmoecomm.so";
static char g_version[64];
static char g_package[80] = "moecomm";

/* Runs make in the source tree with this build's variables; the parent make's jobserver and
   flags are not passed on (this is a separate make, not a sub-make of the one running tests). */
static int run_make(const char *args, char *out, size_t n) {
  char cmd[CMD_MAX];
  const char *make = getenv("MAKE");
  snprintf(cmd, sizeof(cmd),
           "env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL %s --no-print-directory -C '%s' %s %s",
           make != NULL && make[0] != '\0' ? make : "make", MC_SOURCE_DIR, MC_MAKE_VARS, args);
  return mc_test_shell(cmd, out, n);
}

/* ---- the file list of a tree ---- */

static char g_list[64][PATH_MAX];
static int g_nlist;
static size_t g_root_len;

static int collect(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
  (void)st;
  (void)ftw;
  if ((flag == FTW_F || flag == FTW_SL) && g_nlist < 64)
    snprintf(g_list[g_nlist++], PATH_MAX, "%s", path + g_root_len);
  return 0;
}

static int cmp_str(const void *a, const void *b) { return strcmp(a, b); }

/* Sorted, newline-joined list of the files under root, as "/rel/path". */
static void list_files(const char *root, char *out, size_t n) {
  size_t w = 0;
  g_nlist = 0;
  g_root_len = strlen(root);
  out[0] = '\0';
  if (!abi_exists(root)) return;
  nftw(root, collect, 16, FTW_PHYS);
  qsort(g_list, (size_t)g_nlist, sizeof(g_list[0]), cmp_str);
  for (int i = 0; i < g_nlist && w < n; i++)
    w += (size_t)snprintf(out + w, n - w, "%s\n", g_list[i]);
}

static int same_file_content(const char *a, const char *b) {
  char cmd[CMD_MAX];
  snprintf(cmd, sizeof(cmd), "cmp -s '%s' '%s'", a, b);
  return mc_test_shell(cmd, NULL, 0) == 0;
}

static mode_t mode_of(const char *path) {
  struct stat st;
  return stat(path, &st) == 0 ? (st.st_mode & 07777) : 0;
}

/* The headers install must copy: abi/moecomm.h and every frozen abi/moecomm_v*.h. */
static int abi_headers(char names[][64], int max) {
  char out[4096], *save = NULL, *tok;
  char cmd[CMD_MAX];
  int n = 0;
  snprintf(cmd, sizeof(cmd), "cd '%s/abi' && ls moecomm.h moecomm_v*.h", MC_SOURCE_DIR);
  if (mc_test_shell(cmd, out, sizeof(out)) != 0) return 0;
  for (tok = strtok_r(out, "\n", &save); tok != NULL && n < max; tok = strtok_r(NULL, "\n", &save))
    snprintf(names[n++], 64, "%s", tok);
  return n;
}

static void expected_install(const char *prefix, const char *pcdir, char *out, size_t n) {
  char names[16][64];
  int nh = abi_headers(names, 16);
  size_t w = 0;
  g_nlist = 0;
  snprintf(g_list[g_nlist++], PATH_MAX, "%s/bin/moecomm-shim", prefix);
  snprintf(g_list[g_nlist++], PATH_MAX, "%s/lib/moecomm/%s", prefix, g_plugin_file);
  snprintf(g_list[g_nlist++], PATH_MAX, "%s/moecomm.pc", pcdir);
  for (int i = 0; i < nh; i++)
    snprintf(g_list[g_nlist++], PATH_MAX, "%s/include/moecomm/%s", prefix, names[i]);
  qsort(g_list, (size_t)g_nlist, sizeof(g_list[0]), cmp_str);
  out[0] = '\0';
  for (int i = 0; i < g_nlist && w < n; i++)
    w += (size_t)snprintf(out + w, n - w, "%s\n", g_list[i]);
}

/* ---- install and uninstall ---- */

static void check_install(void) {
  char root[PATH_MAX + 16], args[CMD_MAX], out[16384], got[8192], want[8192], p[PATH_MAX * 2];
  char q[PATH_MAX * 2], cmd[CMD_MAX];
  const char *prefix = "/opt/moecomm";
  int rc;
  snprintf(root, sizeof(root), "%s/root", g_tmp);
  snprintf(args, sizeof(args), "install DESTDIR='%s' PREFIX=%s", root, prefix);
  rc = run_make(args, out, sizeof(out));
  if (!MC_CHECK(rc == 0, "make %s exited %d:\n%s", args, rc, out)) return;

  list_files(root, got, sizeof(got));
  expected_install(prefix, "/opt/moecomm/lib/pkgconfig", want, sizeof(want));
  MC_CHECK(strcmp(got, want) == 0, "make install put:\n%swant exactly:\n%s", got, want);

  snprintf(p, sizeof(p), "%s%s/lib/moecomm/%s", root, prefix, g_plugin_file);
  snprintf(q, sizeof(q), "%s/%s", g_build, g_plugin_file);
  MC_CHECK(same_file_content(p, q) && mode_of(p) == 0644,
           "installed plugin %s: mode %o or "
           "content differs from %s",
           p, (unsigned)mode_of(p), q);
  snprintf(p, sizeof(p), "%s%s/bin/moecomm-shim", root, prefix);
  MC_CHECK(mode_of(p) == 0755, "installed shim mode %o", (unsigned)mode_of(p));
  snprintf(p, sizeof(p), "%s%s/include/moecomm/moecomm_v1.h", root, prefix);
  snprintf(q, sizeof(q), "%s/abi/moecomm_v1.h", MC_SOURCE_DIR);
  MC_CHECK(same_file_content(p, q) && mode_of(p) == 0644, "installed moecomm_v1.h differs");
  snprintf(p, sizeof(p), "%s%s/include/moecomm/moecomm.h", root, prefix);
  snprintf(q, sizeof(q), "%s/abi/moecomm.h", MC_SOURCE_DIR);
  MC_CHECK(same_file_content(p, q) && mode_of(p) == 0644, "installed moecomm.h differs");

  /* pkg-config: version, Cflags usable by a host, the plugin variable. */
  snprintf(cmd, sizeof(cmd), "PKG_CONFIG_PATH='%s%s/lib/pkgconfig' pkg-config --modversion moecomm",
           root, prefix);
  rc = mc_test_shell(cmd, out, sizeof(out));
  MC_CHECK(
      rc == 0 && strncmp(out, g_version, strlen(g_version)) == 0 && out[strlen(g_version)] == '\n',
      "pkg-config --modversion: exit %d, '%s', want %s", rc, out, g_version);
  snprintf(cmd, sizeof(cmd),
           "PKG_CONFIG_PATH='%s%s/lib/pkgconfig' pkg-config --variable=plugin moecomm", root,
           prefix);
  rc = mc_test_shell(cmd, out, sizeof(out));
  snprintf(want, sizeof(want), "%s/lib/moecomm/%s\n", prefix, g_plugin_file);
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
           root, prefix, root, g_tmp, g_tmp, g_tmp, root, prefix, g_plugin_file);
  rc = mc_test_shell(cmd, out, sizeof(out));
  MC_CHECK(rc == 0 && strstr(out, "host: ") != NULL && strstr(out, g_version) != NULL,
           "a host built with pkg-config's Cflags against the installed header: exit %d:\n%s", rc,
           out);

  /* The installed shim finds ../lib/moecomm/ by itself. */
  snprintf(cmd, sizeof(cmd),
           "env -u MOECOMM_PLUGIN -u MOECOMM_PLUGIN_DIR '%s%s/bin/moecomm-shim' --ranks 2 "
           "--iters 2 --tokens 8 --hidden 64 --device cpu",
           root, prefix);
  rc = mc_test_shell(cmd, out, sizeof(out));
  snprintf(want, sizeof(want), "plugin: %s%s/lib/moecomm/%s", root, prefix, g_plugin_file);
  MC_CHECK(rc == 0 && strstr(out, want) != NULL && strstr(out, "verified") != NULL,
           "installed shim: exit %d, want '%s' and a verified run:\n%s", rc, want, out);

  /* Uninstall removes exactly what install put there. */
  {
    char foreign[3][PATH_MAX * 2];
    snprintf(foreign[0], sizeof(foreign[0]), "%s%s/bin/other-tool", root, prefix);
    snprintf(foreign[1], sizeof(foreign[1]), "%s%s/lib/moecomm/libmoecomm-foreign.so", root,
             prefix);
    snprintf(foreign[2], sizeof(foreign[2]), "%s%s/lib/pkgconfig/other.pc", root, prefix);
    for (int i = 0; i < 3; i++) {
      snprintf(cmd, sizeof(cmd), "echo foreign > '%s'", foreign[i]);
      MC_CHECK(mc_test_shell(cmd, NULL, 0) == 0, "cannot write %s", foreign[i]);
    }
    snprintf(args, sizeof(args), "uninstall DESTDIR='%s' PREFIX=%s", root, prefix);
    rc = run_make(args, out, sizeof(out));
    MC_CHECK(rc == 0, "make %s exited %d:\n%s", args, rc, out);
    list_files(root, got, sizeof(got));
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
}

/* ---- the Debian package ---- */

/* The Debian package of a library a plugin or shim links (by soname); NULL: unknown. */
static const char *package_of(const char *soname) {
  static const struct {
    const char *prefix, *package;
  } map[] = {
      {"libc.so.", "libc6"},       {"libm.so.", "libc6"},           {"libdl.so.", "libc6"},
      {"libpthread.so.", "libc6"}, {"librt.so.", "libc6"},          {"ld-linux", "libc6"},
      {"libnccl.so.", "libnccl2"}, {"libstdc++.so.", "libstdc++6"}, {"libgcc_s.so.", "libgcc-s1"},
  };
  for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++)
    if (strncmp(soname, map[i].prefix, strlen(map[i].prefix)) == 0) return map[i].package;
  return NULL;
}

/* Adds the packages of file's DT_NEEDED entries to pkgs (space-separated, each once). */
static void needed_packages(const char *file, char *pkgs, size_t n, int *uses_nccl) {
  char cmd[CMD_MAX], out[8192], *save = NULL, *line;
  snprintf(cmd, sizeof(cmd), "readelf -d '%s' | sed -n 's/.*(NEEDED).*\\[\\(.*\\)\\]/\\1/p'", file);
  if (!MC_CHECK(mc_test_shell(cmd, out, sizeof(out)) == 0, "readelf -d %s failed", file)) return;
  for (line = strtok_r(out, "\n", &save); line != NULL; line = strtok_r(NULL, "\n", &save)) {
    const char *pkg = package_of(line);
    char key[80];
    if (!MC_CHECK(pkg != NULL,
                  "%s links %s: which Debian package provides it? (add it to "
                  "package_of and check packaging/mkdeb.sh)",
                  file, line))
      continue;
    if (strcmp(pkg, "libnccl2") == 0) *uses_nccl = 1;
    snprintf(key, sizeof(key), " %s ", pkg);
    if (strstr(pkgs, key) == NULL) {
      size_t l = strlen(pkgs);
      snprintf(pkgs + l, n - l, "%s ", pkg);
    }
  }
}

static void check_deb(void) {
  char out[16384], cmd[CMD_MAX], deb[PATH_MAX * 2], arch[64], field[1024], root[PATH_MAX + 16];
  char want[PATH_MAX * 2], pkgs[512] = " ", plugin[PATH_MAX * 2];
  int rc, uses_nccl = 0;
  rc = mc_test_shell("dpkg --print-architecture", arch, sizeof(arch));
  if (!MC_CHECK(rc == 0 && arch[0] != '\0', "dpkg --print-architecture failed")) return;
  arch[strcspn(arch, "\n")] = '\0';
  snprintf(deb, sizeof(deb), "%s/%s_%s_%s.deb", g_build, g_package, g_version, arch);
  remove(deb);
  rc = run_make("deb", out, sizeof(out));
  if (!MC_CHECK(rc == 0 && abi_exists(deb), "make deb exited %d, %s missing:\n%s", rc, deb, out))
    return;

  snprintf(cmd, sizeof(cmd), "dpkg-deb -f '%s' Package Version Architecture", deb);
  rc = mc_test_shell(cmd, field, sizeof(field));
  snprintf(want, sizeof(want), "Package: %s\nVersion: %s\nArchitecture: %s\n", g_package, g_version,
           arch);
  MC_CHECK(rc == 0 && strcmp(field, want) == 0, "control fields:\n%swant:\n%s", field, want);

  /* Depends: exactly the packages of what the installed ELF files link. */
  snprintf(plugin, sizeof(plugin), "%s/%s", g_build, g_plugin_file);
  needed_packages(plugin, pkgs, sizeof(pkgs), &uses_nccl);
  snprintf(want, sizeof(want), "%s/moecomm-shim", g_build);
  needed_packages(want, pkgs, sizeof(pkgs), &uses_nccl);
  snprintf(cmd, sizeof(cmd), "dpkg-deb -f '%s' Depends", deb);
  rc = mc_test_shell(cmd, field, sizeof(field));
  MC_CHECK(rc == 0 && field[0] != '\0', "no Depends in %s", deb);
  {
    char copy[1024], names[1024] = " ", *save = NULL, *tok;
    snprintf(copy, sizeof(copy), "%s", field);
    for (tok = strtok_r(copy, ",\n", &save); tok != NULL; tok = strtok_r(NULL, ",\n", &save)) {
      char name[128], key[140];
      size_t l = strlen(names);
      if (sscanf(tok, " %127[^ (|]", name) != 1) continue;
      snprintf(key, sizeof(key), " %s ", name);
      MC_CHECK(strstr(pkgs, key) != NULL,
               "Depends lists %s, which nothing installed links "
               "(linked: %s)",
               name, pkgs);
      snprintf(names + l, sizeof(names) - l, "%s ", name);
    }
    for (tok = strtok_r(pkgs, " ", &save); tok != NULL; tok = strtok_r(NULL, " ", &save)) {
      char key[140];
      snprintf(key, sizeof(key), " %s ", tok);
      MC_CHECK(strstr(names, key) != NULL,
               "the plugin or shim links a library of %s but Depends is '%s'", tok, field);
    }
    MC_CHECK(strcmp(names, " ") != 0, "Depends is empty");
  }
  snprintf(cmd, sizeof(cmd), "dpkg-deb -f '%s' Recommends", deb);
  mc_test_shell(cmd, field, sizeof(field));
  field[strcspn(field, "\n")] = '\0';
  /* A CUDA build loads NCCL and the driver at run time (no NEEDED entry): it recommends them. */
  MC_CHECK(MC_WITH_CUDA ? strstr(field, "libcuda1") != NULL : field[0] == '\0',
           "Recommends '%s' (a build %s CUDA)", field, MC_WITH_CUDA ? "with" : "without");

  /* Contents: the install layout under /usr. */
  snprintf(cmd, sizeof(cmd), "dpkg-deb -c '%s' | awk '$1 !~ /^d/ { print $NF }' | sort", deb);
  rc = mc_test_shell(cmd, out, sizeof(out));
  {
    char exp[8192], *w;
    expected_install("/usr", "/usr/lib/pkgconfig", exp, sizeof(exp));
    /* dpkg-deb prints ./usr/...; the expected list is /usr/... */
    for (w = out; *w; w++)
      if (w[0] == '.' && w[1] == '/' && (w == out || w[-1] == '\n')) memmove(w, w + 1, strlen(w));
    MC_CHECK(rc == 0 && strcmp(out, exp) == 0, "the package holds:\n%swant:\n%s", out, exp);
  }

  /* Extracted into a scratch root, its shim runs with its own plugin. */
  snprintf(root, sizeof(root), "%s/debroot", g_tmp);
  snprintf(cmd, sizeof(cmd), "dpkg-deb -x '%s' '%s'", deb, root);
  rc = mc_test_shell(cmd, out, sizeof(out));
  if (!MC_CHECK(rc == 0, "dpkg-deb -x: %s", out)) return;
  snprintf(cmd, sizeof(cmd),
           "env -u MOECOMM_PLUGIN -u MOECOMM_PLUGIN_DIR '%s/usr/bin/moecomm-shim' --ranks 2 "
           "--iters 2 --tokens 8 --hidden 64 --device cpu",
           root);
  rc = mc_test_shell(cmd, out, sizeof(out));
  snprintf(want, sizeof(want), "plugin: %s/usr/lib/moecomm/%s", root, g_plugin_file);
  MC_CHECK(rc == 0 && strstr(out, want) != NULL && strstr(out, "verified") != NULL,
           "the shim from the extracted package: exit %d, want '%s' and a verified run:\n%s", rc,
           want, out);
}

int main(int argc, char **argv) {
  char path[PATH_MAX], buf[256];
  const char *pn;
  FILE *f;
  mc_test_init("abi_install", argc, argv);
  if (!MC_CHECK(mc_test_build_dir(g_build, sizeof(g_build)) == 0 &&
                    abi_mkdtemp("install", g_tmp, sizeof(g_tmp)) == 0,
                "no build directory or scratch directory"))
    return mc_test_finish();
  snprintf(path, sizeof(path), "%s/VERSION", MC_SOURCE_DIR);
  f = fopen(path, "r");
  if (MC_CHECK(f != NULL && fgets(buf, sizeof(buf), f) != NULL, "cannot read %s", path)) {
    buf[strcspn(buf, "\n")] = '\0';
    snprintf(g_version, sizeof(g_version), "%s", buf);
  }
  if (f != NULL) fclose(f);
  /* A build under another PLUGIN_NAME installs libmoecomm-<name>.so. */
  pn = strstr(MC_MAKE_VARS, "PLUGIN_NAME=");
  if (pn != NULL) {
    char name[64];
    if (sscanf(pn + 12, "%63[^ ]", name) == 1 && strcmp(name, "moecomm") != 0) {
      snprintf(g_plugin_file, sizeof(g_plugin_file), "libmoecomm-%s.so", name);
      snprintf(g_package, sizeof(g_package), "moecomm-%s", name);
    }
  }
  check_install();
  check_deb();
  abi_rm_rf(g_tmp);
  return mc_test_finish();
}
