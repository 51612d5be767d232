/* SPDX-License-Identifier: Apache-2.0 */
/* pkg.h - helpers shared by abi_install and abi_deb: make in the source tree, file lists of a tree
 * and of the install layout, the names a build gives its plugin and package. */
#ifndef MC_TESTS_ABI_PKG_H_
#define MC_TESTS_ABI_PKG_H_

#include <limits.h>
#include <stddef.h>
#include <sys/types.h>

/* The tests/contract binaries are compiled with the source tree and the build's make variables. */
#ifndef MC_SOURCE_DIR
#define MC_SOURCE_DIR "."
#endif
#ifndef MC_MAKE_VARS
#define MC_MAKE_VARS ""
#endif

#define ABI_PKG_CMD_MAX 16384
#define ABI_PKG_MAX_FILES 64

/* The names a build gives its products (from the make variables it was built with). */
typedef struct {
  char version[64];      /* the VERSION file */
  char plugin_file[128]; /* libmoecomm.so, or libmoecomm-<name>.so for PLUGIN_NAME=<name> */
  char deb_base[96];     /* moecomm, or moecomm-<name> */
} abi_pkg_names_t;

/* Reads VERSION in source_dir and PLUGIN_NAME= in make_vars.  0 on success. */
int abi_pkg_names(const char *source_dir, const char *make_vars, abi_pkg_names_t *names_p);

/* Runs make in source_dir with make_vars and args, as a separate make (the parent make's jobserver
   and flags are not passed on).  Returns make's exit status; its output goes to out. */
int abi_pkg_make(const char *source_dir, const char *make_vars, const char *args, char *out,
                 size_t n);

/* Sorted, newline-joined list of the files and symlinks under root, as "/rel/path". */
void abi_pkg_tree_list(const char *root, char *out, size_t n);

/* What `make install` puts under prefix (pkg-config file in pcdir, manual page in mandir with
   man_suffix appended, e.g. ".gz" in a package), plus extra[0..nextra), sorted and joined as
   abi_pkg_tree_list does. */
void abi_pkg_install_list(const char *source_dir, const abi_pkg_names_t *names, const char *prefix,
                          const char *pcdir, const char *mandir, const char *man_suffix,
                          const char *const *extra, int nextra, char *out, size_t n);

/* The permission bits of path (0 when it cannot be read). */
mode_t abi_pkg_mode(const char *path);

/* 1 when files a and b have the same bytes. */
int abi_pkg_same_content(const char *a, const char *b);

#endif
