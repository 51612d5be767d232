/* SPDX-License-Identifier: Apache-2.0 */
/* replay.c - runs a fuzz target over its seed corpus, built with the normal compiler: the
 * BUILD/tests/fuzz/fuzz_<target> binaries of `make test` (the target's name comes from the
 * binary's, its corpus is MC_SOURCE_DIR/tests/fuzz/corpus/<target>/).
 *
 * Each corpus file runs in its own process (stderr to /dev/null: targets log every line), so a
 * crash, an abort or a hang (10 s) is one failed check naming the file.  An argument replaces
 * the corpus directory, e.g. to replay what `make fuzz` found. */
#include <dirent.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <fcntl.h>
#include <unistd.h>

#include "../common/harness.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MC_FUZZ_MAX_INPUT (1 << 20)

static int cmp_names(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Runs one input in a child; 0 when it returned normally. */
static int replay_one(const char *path, int argc, char **argv, char *why, size_t why_size) {
  fflush(stdout);
  pid_t pid = fork();
  if (pid == 0) {
    int null = open("/dev/null", O_WRONLY);
    if (null >= 0) dup2(null, 2);
    alarm(10);
    FILE *f = fopen(path, "rb");
    uint8_t *buf = malloc(MC_FUZZ_MAX_INPUT);
    if (f == NULL || buf == NULL) _exit(3);
    size_t n = fread(buf, 1, MC_FUZZ_MAX_INPUT, f);
    fclose(f);
    LLVMFuzzerInitialize(&argc, &argv);
    LLVMFuzzerTestOneInput(buf, n);
    free(buf);
    _exit(0);
  }
  int status = 0;
  if (pid < 0 || waitpid(pid, &status, 0) != pid) {
    snprintf(why, why_size, "could not run it");
    return -1;
  }
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return 0;
  if (WIFSIGNALED(status))
    snprintf(why, why_size, "killed by signal %d (%s)", WTERMSIG(status),
             WTERMSIG(status) == SIGALRM ? "hung for 10 s" : strsignal(WTERMSIG(status)));
  else
    snprintf(why, why_size, "exit status %d", WEXITSTATUS(status));
  return -1;
}

int main(int argc, char **argv) {
  const char *base = strrchr(argv[0], '/') != NULL ? strrchr(argv[0], '/') + 1 : argv[0];
  const char *target = strncmp(base, "fuzz_", 5) == 0 ? base + 5 : base;
  char dir_buf[4096];
  mc_test_init(base, argc, argv);
  snprintf(dir_buf, sizeof(dir_buf), "%s/tests/fuzz/corpus/%s", MC_SOURCE_DIR, target);
  const char *dir = argc > 1 && argv[1][0] != '-' ? argv[1] : dir_buf;
  DIR *d = opendir(dir);
  if (!MC_CHECK(d != NULL, "corpus directory %s", dir)) return mc_test_finish();
  char **names = NULL;
  size_t n = 0, cap = 0;
  for (struct dirent *e; (e = readdir(d)) != NULL;) {
    if (e->d_name[0] == '.') continue;
    if (n == cap) {
      cap = cap ? 2 * cap : 64;
      char **nn = realloc(names, cap * sizeof(*nn));
      if (nn == NULL) break;
      names = nn;
    }
    names[n++] = strdup(e->d_name);
  }
  closedir(d);
  if (n > 0) qsort(names, n, sizeof(*names), cmp_names);
  MC_CHECK(n > 0, "corpus directory %s holds no input", dir);
  for (size_t i = 0; i < n; i++) {
    char path[4096], why[128] = "";
    snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
    MC_CHECK(replay_one(path, argc, argv, why, sizeof(why)) == 0, "%s: %s", path, why);
    free(names[i]);
  }
  free(names);
  printf("  %zu inputs of %s replayed\n", n, target);
  return mc_test_finish();
}
