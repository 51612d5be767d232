/* SPDX-License-Identifier: Apache-2.0 */
/* util.h - small helpers of the tests/contract binaries: scratch directories and files (the build
 * directory, shell commands and file copies: mc_test_build_dir, mc_test_shell and
 * mc_test_copy_file in tests/common/harness.h). */
#ifndef MC_TESTS_ABI_UTIL_H_
#define MC_TESTS_ABI_UTIL_H_

#include <stddef.h>

/* A fresh directory under TMPDIR (or /tmp) named moecomm-TAG.XXXXXX.  0 on success. */
int abi_mkdtemp(const char *tag, char *out, size_t n);

/* Removes path and everything under it (no symlinks followed).  0 on success. */
int abi_rm_rf(const char *path);

/* 1 when path exists (any type, symlinks not followed). */
int abi_exists(const char *path);

#endif
