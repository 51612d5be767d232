/* lib_util.c - helpers of the tests/abi binaries (util.h). */
#define _XOPEN_SOURCE 700 /* nftw */
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

int abi_build_dir(char *out, size_t n) {
  char exe[PATH_MAX];
  ssize_t len = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
  char *slash;
  if (len <= 0) return -1;
  exe[len] = '\0';
  for (int i = 0; i < 2; i++) { /* strip "/abi-NAME" then "/tests" */
    slash = strrchr(exe, '/');
    if (slash == NULL || slash == exe) return -1;
    *slash = '\0';
  }
  return (size_t)snprintf(out, n, "%s", exe) >= n ? -1 : 0;
}

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

int abi_copy_file(const char *src, const char *dst, mode_t mode) {
  char buf[65536];
  int in = -1, out = -1, rc = -1;
  ssize_t got;
  in = open(src, O_RDONLY | O_CLOEXEC);
  if (in < 0) goto out;
  out = open(dst, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
  if (out < 0) goto out;
  while ((got = read(in, buf, sizeof(buf))) > 0) {
    ssize_t done = 0;
    while (done < got) {
      ssize_t w = write(out, buf + done, (size_t)(got - done));
      if (w < 0) {
        if (errno == EINTR) continue;
        goto out;
      }
      done += w;
    }
  }
  if (got < 0) goto out;
  if (fchmod(out, mode) != 0) goto out;
  rc = 0;
out:
  if (out >= 0 && close(out) != 0) rc = -1;
  if (in >= 0) close(in);
  return rc;
}

int abi_exists(const char *path) {
  struct stat st;
  return lstat(path, &st) == 0;
}

int abi_run(const char *cmd, char *out, size_t n) {
  char line[4096];
  size_t used = 0, len = strlen(cmd) + 16;
  char *full = malloc(len);
  FILE *p;
  int st;
  if (out != NULL && n > 0) out[0] = '\0';
  if (full == NULL) return -1;
  snprintf(full, len, "(%s) 2>&1", cmd);
  fflush(stdout);
  fflush(stderr);
  p = popen(full, "r");
  free(full);
  if (p == NULL) return -1;
  while (fgets(line, sizeof(line), p) != NULL) {
    size_t l = strlen(line);
    if (out != NULL && used + 1 < n) {
      size_t take = l < n - 1 - used ? l : n - 1 - used;
      memcpy(out + used, line, take);
      used += take;
      out[used] = '\0';
    }
  }
  st = pclose(p);
  if (st == -1) return -1;
  if (WIFEXITED(st)) return WEXITSTATUS(st);
  if (WIFSIGNALED(st)) return 128 + WTERMSIG(st);
  return -1;
}
