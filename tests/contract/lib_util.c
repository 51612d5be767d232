/* SPDX-License-Identifier: Apache-2.0 */
/* lib_util.c - helpers of the tests/contract binaries (util.h). */
#define _XOPEN_SOURCE 700 /* nftw */
#include "util.h"

#include <errno.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

int abi_mkdtemp(const char *tag, char *out, size_t n) {
  const char *tmp = getenv("TMPDIR");
  if (tmp == NULL || tmp[0] == '\0') tmp = "/tmp";
  if ((size_t)snprintf(out, n, "%s/moecomm-%s.XXXXXX", tmp, tag) >= n) return -1;
  return mkdtemp(out) != NULL ? 0 : -1;
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
  (void)st;
  (void)ftw;
  return (flag == FTW_DP ? rmdir(path) : unlink(path)) == 0 || errno == ENOENT ? 0 : -1;
}

int abi_rm_rf(const char *path) {
  if (!abi_exists(path)) return 0;
  return nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

int abi_exists(const char *path) {
  struct stat st;
  return lstat(path, &st) == 0;
}
