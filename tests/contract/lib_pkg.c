/* SPDX-License-Identifier: Apache-2.0 */
/* lib_pkg.c - helpers shared by abi_install and abi_deb (pkg.h). */
#define _XOPEN_SOURCE 700 /* nftw */
#include "pkg.h"

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "../common/harness.h"
#include "util.h"

int abi_pkg_names(const char *source_dir, const char *make_vars, abi_pkg_names_t *names_p) {
  abi_pkg_names_t names = {.plugin_file = "libmoecomm.so", .deb_base = "moecomm"};
  char path[PATH_MAX], name[64];
  const char *pn = strstr(make_vars, "PLUGIN_NAME=");
  FILE *f;
  int ok;
  snprintf(path, sizeof(path), "%s/VERSION", source_dir);
  f = fopen(path, "r");
  if (f == NULL) return -1;
  ok = fgets(names.version, sizeof(names.version), f) != NULL;
  fclose(f);
  if (!ok) return -1;
  names.version[strcspn(names.version, "\n")] = '\0';
  /* A build under another PLUGIN_NAME installs libmoecomm-<name>.so as package moecomm-<name>. */
  if (pn != NULL && sscanf(pn + 12, "%63[^ ]", name) == 1 && strcmp(name, "moecomm") != 0) {
    snprintf(names.plugin_file, sizeof(names.plugin_file), "libmoecomm-%s.so", name);
    snprintf(names.deb_base, sizeof(names.deb_base), "moecomm-%s", name);
  }
  *names_p = names;
  return 0;
}

int abi_pkg_make(const char *source_dir, const char *make_vars, const char *args, char *out,
                 size_t n) {
  char cmd[ABI_PKG_CMD_MAX];
  const char *make = getenv("MAKE");
  snprintf(cmd, sizeof(cmd),
           "env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL %s --no-print-directory -C '%s' %s %s",
           make != NULL && make[0] != '\0' ? make : "make", source_dir, make_vars, args);
  return mc_test_shell(cmd, out, n);
}

static char g_list[ABI_PKG_MAX_FILES][PATH_MAX];
static int g_nlist;
static size_t g_root_len;

static int collect(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
  (void)st;
  (void)ftw;
  if ((flag == FTW_F || flag == FTW_SL) && g_nlist < ABI_PKG_MAX_FILES)
    snprintf(g_list[g_nlist++], PATH_MAX, "%s", path + g_root_len);
  return 0;
}

static int cmp_str(const void *a, const void *b) {
  return strcmp(a, b);
}

/* Sorts g_list and joins it into out, one path a line. */
static void join_list(char *out, size_t n) {
  size_t w = 0;
  qsort(g_list, (size_t)g_nlist, sizeof(g_list[0]), cmp_str);
  out[0] = '\0';
  for (int i = 0; i < g_nlist && w < n; i++)
    w += (size_t)snprintf(out + w, n - w, "%s\n", g_list[i]);
}

void abi_pkg_tree_list(const char *root, char *out, size_t n) {
  g_nlist = 0;
  g_root_len = strlen(root);
  if (abi_exists(root)) nftw(root, collect, 16, FTW_PHYS);
  join_list(out, n);
}

void abi_pkg_install_list(const char *source_dir, const abi_pkg_names_t *names, const char *prefix,
                          const char *pcdir, const char *mandir, const char *man_suffix,
                          const char *const *extra, int nextra, char *out, size_t n) {
  char cmd[ABI_PKG_CMD_MAX], headers[4096], *save = NULL, *tok;
  g_nlist = 0;
  snprintf(g_list[g_nlist++], PATH_MAX, "%s/bin/moecomm-shim", prefix);
  snprintf(g_list[g_nlist++], PATH_MAX, "%s/lib/moecomm/%s", prefix, names->plugin_file);
  snprintf(g_list[g_nlist++], PATH_MAX, "%s/moecomm.pc", pcdir);
  snprintf(g_list[g_nlist++], PATH_MAX, "%s/man1/moecomm-shim.1%s", mandir, man_suffix);
  /* The headers: abi/moecomm.h and every frozen abi/moecomm_v*.h. */
  snprintf(cmd, sizeof(cmd), "cd '%s/abi' && ls moecomm.h moecomm_v*.h", source_dir);
  if (mc_test_shell(cmd, headers, sizeof(headers)) != 0) headers[0] = '\0';
  for (tok = strtok_r(headers, "\n", &save); tok != NULL && g_nlist < ABI_PKG_MAX_FILES;
       tok = strtok_r(NULL, "\n", &save))
    snprintf(g_list[g_nlist++], PATH_MAX, "%s/include/moecomm/%s", prefix, tok);
  for (int i = 0; i < nextra && g_nlist < ABI_PKG_MAX_FILES; i++)
    snprintf(g_list[g_nlist++], PATH_MAX, "%s", extra[i]);
  join_list(out, n);
}

mode_t abi_pkg_mode(const char *path) {
  struct stat st;
  return stat(path, &st) == 0 ? (st.st_mode & 07777) : 0;
}

int abi_pkg_same_content(const char *a, const char *b) {
  char cmd[ABI_PKG_CMD_MAX];
  snprintf(cmd, sizeof(cmd), "cmp -s '%s' '%s'", a, b);
  return mc_test_shell(cmd, NULL, 0) == 0;
}
