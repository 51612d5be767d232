/* SPDX-License-Identifier: Apache-2.0 */
/* deb.c - `make deb`, run from the source tree against this build (the Makefile compiles in
 * MC_SOURCE_DIR and the make variables of the build), checked as plain Debian would meet it:
 *
 *  - BUILD/deb/ holds PACKAGE_VERSION_ARCH.deb and PACKAGE-dbgsym_VERSION_ARCH.deb, PACKAGE being
 *    moecomm for a CPU-only build and moecomm-cuda for one with CUDA kernels;
 *  - control: Version from VERSION, a Maintainer with a real address, Depends exactly the packages
 *    of the libraries the installed ELF files link (never NCCL or the CUDA driver: those are the
 *    CUDA flavour's Suggests and Recommends), the two flavours conflicting with each other;
 *  - contents: the install layout under /usr (moecomm.pc in the multiarch directory, the manual
 *    page gzipped), a DEP-5 copyright saying Apache-2.0 and changelog.gz naming this version;
 *  - the ELF files stripped, with no NEEDED libnccl and no run path outside $ORIGIN, each with a
 *    .gnu_debuglink, and their debug info in the dbgsym package under their build ids;
 *  - extracted into a scratch root, the shim runs 2 shm ranks verified in an environment with no
 *    NCCL (env -i, LD_LIBRARY_PATH empty, no GPU visible), and the dynamic loader's log shows the
 *    package's plugin loaded and no libnccl;
 *  - lintian, when installed, reports no error and no warning.
 * Without dpkg-dev and binutils the binary prints one SKIP line. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/harness.h"
#include "pkg.h"
#include "util.h"

#ifndef MC_WITH_CUDA
#define MC_WITH_CUDA 0
#endif

#define CMD_MAX ABI_PKG_CMD_MAX
#define PATH_LEN (PATH_MAX * 2)

static char g_build[PATH_MAX];
static char g_tmp[PATH_MAX];
static abi_pkg_names_t g_names;
static char g_package[128]; /* moecomm or moecomm-cuda (or moecomm-<name>[-cuda]) */
static char g_arch[64];
static char g_deb[PATH_LEN], g_dbgsym[PATH_LEN];
static char g_root[PATH_LEN], g_dbgroot[PATH_LEN]; /* the two packages extracted */

/* Runs a shell command whose output is one line; returns its exit status, the line in out. */
static int shell_line(const char *cmd, char *out, size_t n) {
  int rc = mc_test_shell(cmd, out, n);
  out[strcspn(out, "\n")] = '\0';
  return rc;
}

/* The value of one control field of deb ("" when absent). */
static void field(const char *deb, const char *name, char *out, size_t n) {
  char cmd[CMD_MAX];
  snprintf(cmd, sizeof(cmd), "dpkg-deb -f '%s' %s", deb, name);
  if (mc_test_shell(cmd, out, n) != 0) out[0] = '\0';
  out[strcspn(out, "\n")] = '\0';
}

static void check_field(const char *deb, const char *name, const char *want) {
  char got[1024];
  field(deb, name, got, sizeof(got));
  MC_CHECK(strcmp(got, want) == 0, "%s: %s is '%s', want '%s'", deb, name, got, want);
}

/* ---- Depends against what the installed ELF files link ---- */

/* The Debian package of a library the plugin or the shim may link (by soname); NULL: unknown,
   which includes libnccl and libcuda on purpose: the package must not depend on them. */
static const char *package_of(const char *soname) {
  static const struct {
    const char *prefix, *package;
  } map[] = {
      {"libc.so.", "libc6"},           {"libm.so.", "libc6"},         {"libdl.so.", "libc6"},
      {"libpthread.so.", "libc6"},     {"librt.so.", "libc6"},        {"ld-linux", "libc6"},
      {"libstdc++.so.", "libstdc++6"}, {"libgcc_s.so.", "libgcc-s1"},
  };
  for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++)
    if (strncmp(soname, map[i].prefix, strlen(map[i].prefix)) == 0) return map[i].package;
  return NULL;
}

/* Adds the packages of file's DT_NEEDED entries to pkgs (" a b ", each once). */
static void needed_packages(const char *file, char *pkgs, size_t n) {
  char cmd[CMD_MAX], out[8192], *save = NULL, *line;
  snprintf(cmd, sizeof(cmd), "readelf -d '%s' | sed -n 's/.*(NEEDED).*\\[\\(.*\\)\\]/\\1/p'", file);
  if (!MC_CHECK(mc_test_shell(cmd, out, sizeof(out)) == 0, "readelf -d %s failed", file)) return;
  for (line = strtok_r(out, "\n", &save); line != NULL; line = strtok_r(NULL, "\n", &save)) {
    const char *pkg = package_of(line);
    char key[80];
    if (!MC_CHECK(pkg != NULL,
                  "%s links %s: the package may depend only on libc6, libstdc++6 and libgcc-s1 "
                  "(NCCL and the driver are opened at run time)",
                  file, line))
      continue;
    snprintf(key, sizeof(key), " %s ", pkg);
    if (strstr(pkgs, key) == NULL) {
      size_t l = strlen(pkgs);
      snprintf(pkgs + l, n - l, "%s ", pkg);
    }
  }
}

static void check_depends(void) {
  char depends[1024], copy[1024], linked[512] = " ", names[1024] = " ", path[PATH_LEN];
  char *save = NULL, *tok;
  snprintf(path, sizeof(path), "%s/usr/lib/moecomm/%s", g_root, g_names.plugin_file);
  needed_packages(path, linked, sizeof(linked));
  snprintf(path, sizeof(path), "%s/usr/bin/moecomm-shim", g_root);
  needed_packages(path, linked, sizeof(linked));
  field(g_deb, "Depends", depends, sizeof(depends));
  MC_CHECK(depends[0] != '\0', "no Depends in %s", g_deb);
  snprintf(copy, sizeof(copy), "%s", depends);
  for (tok = strtok_r(copy, ",", &save); tok != NULL; tok = strtok_r(NULL, ",", &save)) {
    char name[128], key[140];
    size_t l = strlen(names);
    if (sscanf(tok, " %127[^ (|]", name) != 1) continue;
    snprintf(key, sizeof(key), " %s ", name);
    MC_CHECK(strstr(linked, key) != NULL, "Depends lists %s, which nothing installed links (%s)",
             name, linked);
    snprintf(names + l, sizeof(names) - l, "%s ", name);
  }
  for (tok = strtok_r(linked, " ", &save); tok != NULL; tok = strtok_r(NULL, " ", &save)) {
    char key[140];
    snprintf(key, sizeof(key), " %s ", tok);
    MC_CHECK(strstr(names, key) != NULL, "the plugin or shim links a library of %s; Depends: %s",
             tok, depends);
  }
  MC_CHECK(strstr(depends, "nccl") == NULL && strstr(depends, "cuda") == NULL,
           "Depends names NCCL or CUDA: %s", depends);
}

/* ---- control fields ---- */

static void check_control(void) {
  char want[512], got[512], other[160];
  snprintf(want, sizeof(want), "Package: %s\nVersion: %s\nArchitecture: %s\n", g_package,
           g_names.version, g_arch);
  {
    char cmd[CMD_MAX];
    snprintf(cmd, sizeof(cmd), "dpkg-deb -f '%s' Package Version Architecture", g_deb);
    mc_test_shell(cmd, got, sizeof(got));
    MC_CHECK(strcmp(got, want) == 0, "control fields:\n%swant:\n%s", got, want);
  }
  field(g_deb, "Maintainer", got, sizeof(got));
  MC_CHECK(strchr(got, '<') != NULL && strchr(got, '@') != NULL && got[strlen(got) - 1] == '>' &&
               strstr(got, "@localhost") == NULL,
           "Maintainer '%s' is not 'Name <address>' with a real mail host", got);
  check_depends();
  /* The flavours: each conflicts with and replaces the other; only CUDA names the driver. */
  if (MC_WITH_CUDA) {
    snprintf(other, sizeof(other), "%s", g_names.deb_base);
    check_field(g_deb, "Recommends", "libcuda1 | cuda-drivers");
    field(g_deb, "Suggests", got, sizeof(got));
    MC_CHECK(strncmp(got, "libnccl2 (>= 2.", 15) == 0, "Suggests '%s', want libnccl2 (>= 2.x)",
             got);
    snprintf(want, sizeof(want), "%s (= %s)", g_names.deb_base, g_names.version);
    check_field(g_deb, "Provides", want);
  } else {
    snprintf(other, sizeof(other), "%s-cuda", g_names.deb_base);
    check_field(g_deb, "Recommends", "");
    check_field(g_deb, "Suggests", "");
  }
  check_field(g_deb, "Conflicts", other);
  check_field(g_deb, "Replaces", other);

  snprintf(want, sizeof(want), "%s-dbgsym", g_package);
  check_field(g_dbgsym, "Package", want);
  snprintf(want, sizeof(want), "%s (= %s)", g_package, g_names.version);
  check_field(g_dbgsym, "Depends", want);
  check_field(g_dbgsym, "Section", "debug");
}

/* ---- contents and documents ---- */

static void check_contents(void) {
  char multiarch[128], pcdir[256], got[8192], want[8192], doc[2][PATH_LEN], cmd[CMD_MAX];
  char p[PATH_LEN], out[1024];
  const char *extra[2] = {doc[0], doc[1]};
  int rc = shell_line("dpkg-architecture -qDEB_HOST_MULTIARCH", multiarch, sizeof(multiarch));
  MC_CHECK(rc == 0 && multiarch[0] != '\0', "dpkg-architecture -qDEB_HOST_MULTIARCH failed");
  snprintf(pcdir, sizeof(pcdir), "/usr/lib/%s/pkgconfig", multiarch);
  snprintf(doc[0], sizeof(doc[0]), "/usr/share/doc/%s/copyright", g_package);
  snprintf(doc[1], sizeof(doc[1]), "/usr/share/doc/%s/changelog.gz", g_package);
  abi_pkg_tree_list(g_root, got, sizeof(got));
  abi_pkg_install_list(MC_SOURCE_DIR, &g_names, "/usr", pcdir, "/usr/share/man", ".gz", extra, 2,
                       want, sizeof(want));
  MC_CHECK(strcmp(got, want) == 0, "the package holds:\n%swant exactly:\n%s", got, want);

  /* copyright: the repository's DEP-5 file, Apache-2.0 like LICENSE. */
  snprintf(p, sizeof(p), "%s%s", g_root, doc[0]);
  snprintf(
      cmd, sizeof(cmd),
      "cmp '%s' '%s/packaging/debian/copyright' && head -n 1 '%s' && "
      "grep -c '^License: Apache-2.0$' '%s' && grep -c 'Version 2.0, January 2004' '%s/LICENSE'",
      p, MC_SOURCE_DIR, p, p, MC_SOURCE_DIR);
  rc = mc_test_shell(cmd, out, sizeof(out));
  MC_CHECK(rc == 0 && strcmp(out,
                             "Format: https://www.debian.org/doc/packaging-manuals/"
                             "copyright-format/1.0/\n2\n1\n") == 0,
           "copyright is not the repository's DEP-5 Apache-2.0 file (exit %d):\n%s", rc, out);
  /* changelog.gz: Debian format, its latest entry this version. */
  snprintf(cmd, sizeof(cmd),
           "gzip -dc '%s%s' >'%s/changelog' && dpkg-parsechangelog -l '%s/changelog' -S Version",
           g_root, doc[1], g_tmp, g_tmp);
  rc = shell_line(cmd, out, sizeof(out));
  MC_CHECK(rc == 0 && strcmp(out, g_names.version) == 0, "changelog.gz: version '%s', want %s", out,
           g_names.version);
  snprintf(
      cmd, sizeof(cmd),
      "gzip -dc '%s/usr/share/man/man1/moecomm-shim.1.gz' | cmp - '%s/packaging/moecomm-shim.1'",
      g_root, MC_SOURCE_DIR);
  MC_CHECK(mc_test_shell(cmd, out, sizeof(out)) == 0, "the manual page differs: %s", out);
}

/* ---- stripped files and their debug info ---- */

/* file's build id, or "" */
static void build_id(const char *file, char *out, size_t n) {
  char cmd[CMD_MAX];
  snprintf(cmd, sizeof(cmd), "readelf -n '%s' | sed -n 's/^ *Build ID: *\\([0-9a-f]*\\)$/\\1/p'",
           file);
  if (shell_line(cmd, out, n) != 0) out[0] = '\0';
}

static void check_stripped_file(const char *rel, char *ids, size_t n) {
  char file[PATH_LEN], cmd[CMD_MAX], out[16384], id[128], debug[PATH_LEN * 2];
  snprintf(file, sizeof(file), "%s%s", g_root, rel);
  snprintf(cmd, sizeof(cmd), "readelf -S --wide '%s' | grep -o ' \\.[a-z_.]*' | sort -u", file);
  MC_CHECK(mc_test_shell(cmd, out, sizeof(out)) == 0, "readelf -S %s failed", file);
  MC_CHECK(strstr(out, " .debug_info\n") == NULL && strstr(out, " .symtab\n") == NULL &&
               strstr(out, " .gnu_debuglink\n") != NULL,
           "%s: want no .debug_info and no .symtab, and a .gnu_debuglink; sections:\n%s", rel, out);
  snprintf(cmd, sizeof(cmd), "readelf -d '%s' | grep -E '\\((RUNPATH|RPATH|NEEDED)\\)'", file);
  mc_test_shell(cmd, out, sizeof(out));
  MC_CHECK(strstr(out, "libnccl") == NULL, "%s links NCCL:\n%s", rel, out);
  for (char *r = strstr(out, "PATH)"); r != NULL; r = strstr(r + 1, "PATH)")) {
    char *open = strchr(r, '[');
    MC_CHECK(open != NULL && strncmp(open, "[$ORIGIN", 8) == 0, "%s has a run path:\n%s", rel, out);
  }
  build_id(file, id, sizeof(id));
  if (!MC_CHECK(strlen(id) > 2, "%s has no build id", rel)) return;
  snprintf(debug, sizeof(debug), "%s/usr/lib/debug/.build-id/%.2s/%s.debug", g_dbgroot, id, id + 2);
  snprintf(cmd, sizeof(cmd), "readelf -S --wide '%s' 2>/dev/null | grep -c ' \\.debug_info '",
           debug);
  MC_CHECK(shell_line(cmd, out, sizeof(out)) == 0 && strcmp(out, "1") == 0,
           "%s: the dbgsym package has no debug info at %s", rel, debug);
  snprintf(ids + strlen(ids), n - strlen(ids), "%s ", id);
}

static void check_stripped(void) {
  char rel[PATH_LEN], ids[512] = "", got[512], cmd[CMD_MAX], listed[4096];
  snprintf(rel, sizeof(rel), "/usr/lib/moecomm/%s", g_names.plugin_file);
  check_stripped_file(rel, ids, sizeof(ids));
  check_stripped_file("/usr/bin/moecomm-shim", ids, sizeof(ids));
  /* Build-Ids names exactly those, and the dbgsym package holds nothing else but its doc link. */
  snprintf(cmd, sizeof(cmd), "dpkg-deb -f '%s' Build-Ids | tr ' ' '\\n' | sort | tr '\\n' ' '",
           g_dbgsym);
  mc_test_shell(cmd, got, sizeof(got));
  snprintf(cmd, sizeof(cmd), "echo %s | tr ' ' '\\n' | sort | tr '\\n' ' '", ids);
  mc_test_shell(cmd, listed, sizeof(listed));
  MC_CHECK(strcmp(got, listed) == 0, "Build-Ids '%s', want '%s'", got, listed);
  abi_pkg_tree_list(g_dbgroot, listed, sizeof(listed));
  {
    int lines = 0;
    for (const char *c = listed; *c; c++) lines += *c == '\n';
    MC_CHECK(lines == 3, "the dbgsym package holds:\n%swant 2 .debug files and its doc link",
             listed);
  }
}

/* ---- the shim from the package, without NCCL ---- */

static void check_run_without_nccl(void) {
  char cmd[CMD_MAX], out[16384], want[PATH_LEN], loaded[1024];
  int rc;
  snprintf(cmd, sizeof(cmd),
           "env -i PATH=/usr/bin:/bin LD_LIBRARY_PATH= CUDA_VISIBLE_DEVICES= LD_DEBUG=files "
           "LD_DEBUG_OUTPUT='%s/ld' '%s/usr/bin/moecomm-shim' --ranks 2 --iters 2 --tokens 8 "
           "--hidden 64 --device cpu",
           g_tmp, g_root);
  rc = mc_test_shell(cmd, out, sizeof(out));
  snprintf(want, sizeof(want), "plugin: %s/usr/lib/moecomm/%s", g_root, g_names.plugin_file);
  MC_CHECK(rc == 0 && strstr(out, want) != NULL && strstr(out, "verified") != NULL,
           "the packaged shim without NCCL: exit %d, want '%s' and a verified run:\n%s", rc, want,
           out);
  /* What the dynamic loader opened in every process of the run. */
  snprintf(cmd, sizeof(cmd),
           "cat '%s'/ld.* | grep -o 'file=[^ ]*' | sed 's/^file=//; s/.*\\///' | sort -u | "
           "tr '\\n' ' '",
           g_tmp);
  mc_test_shell(cmd, loaded, sizeof(loaded));
  snprintf(want, sizeof(want), "%s ", g_names.plugin_file);
  MC_CHECK(strstr(loaded, want) != NULL && strstr(loaded, "libnccl") == NULL,
           "want the plugin loaded and no libnccl; the loader opened: %s", loaded);
}

static void check_lintian(void) {
  char cmd[CMD_MAX], out[16384];
  int rc;
  if (mc_test_shell("command -v lintian", NULL, 0) != 0) {
    mc_test_skip("lintian", "not installed (apt-get install lintian)");
    return;
  }
  /* lintian's exit status, then its errors and warnings (info and experimental tags pass). */
  snprintf(cmd, sizeof(cmd),
           "lintian --fail-on error,warning '%s' '%s' >'%s/lintian' 2>&1; echo \"exit $?\"; "
           "grep -E '^[EW]: ' '%s/lintian'; true",
           g_deb, g_dbgsym, g_tmp, g_tmp);
  rc = mc_test_shell(cmd, out, sizeof(out));
  MC_CHECK(rc == 0 && strcmp(out, "exit 0\n") == 0, "lintian:\n%s", out);
}

/* Builds the packages and extracts both; 0 when the checks can go on. */
static int build_packages(void) {
  char cmd[CMD_MAX], out[16384];
  int rc;
  MC_CHECK(shell_line("dpkg --print-architecture", g_arch, sizeof(g_arch)) == 0 && g_arch[0],
           "dpkg --print-architecture failed");
  snprintf(g_deb, sizeof(g_deb), "%s/deb/%s_%s_%s.deb", g_build, g_package, g_names.version,
           g_arch);
  snprintf(g_dbgsym, sizeof(g_dbgsym), "%s/deb/%s-dbgsym_%s_%s.deb", g_build, g_package,
           g_names.version, g_arch);
  remove(g_deb);
  remove(g_dbgsym);
  rc = abi_pkg_make(MC_SOURCE_DIR, MC_MAKE_VARS, "deb", out, sizeof(out));
  if (!MC_CHECK(rc == 0 && abi_exists(g_deb) && abi_exists(g_dbgsym),
                "make deb exited %d; want %s and %s:\n%s", rc, g_deb, g_dbgsym, out))
    return -1;
  snprintf(g_root, sizeof(g_root), "%s/root", g_tmp);
  snprintf(g_dbgroot, sizeof(g_dbgroot), "%s/dbgsym", g_tmp);
  snprintf(cmd, sizeof(cmd), "dpkg-deb -x '%s' '%s' && dpkg-deb -x '%s' '%s'", g_deb, g_root,
           g_dbgsym, g_dbgroot);
  rc = mc_test_shell(cmd, out, sizeof(out));
  return MC_CHECK(rc == 0, "dpkg-deb -x: %s", out) ? 0 : -1;
}

int main(int argc, char **argv) {
  char out[1024];
  mc_test_init("abi_deb", argc, argv);
  if (mc_test_shell("for t in dpkg-deb dpkg-shlibdeps dpkg-parsechangelog dpkg-architecture "
                    "objcopy strip readelf; do command -v $t >/dev/null || printf '%s ' $t; done",
                    out, sizeof(out)) != 0 ||
      out[0] != '\0') {
    mc_test_skip("make deb", "missing %s(apt-get install dpkg-dev binutils)", out);
    return mc_test_finish();
  }
  if (!MC_CHECK(mc_test_build_dir(g_build, sizeof(g_build)) == 0 &&
                    abi_mkdtemp("deb", g_tmp, sizeof(g_tmp)) == 0 &&
                    abi_pkg_names(MC_SOURCE_DIR, MC_MAKE_VARS, &g_names) == 0,
                "no build directory, scratch directory or VERSION"))
    return mc_test_finish();
  snprintf(g_package, sizeof(g_package), "%s%s", g_names.deb_base, MC_WITH_CUDA ? "-cuda" : "");
  if (build_packages() == 0) {
    check_control();
    check_contents();
    check_stripped();
    check_run_without_nccl();
    check_lintian();
  }
  abi_rm_rf(g_tmp);
  return mc_test_finish();
}
