/* custom_sanitizer.c - compute-sanitizer memcheck and racecheck over a small run of the custom
 * all-reduce (custom_allreduce --small: every algorithm eagerly at small counts, misaligned and
 * in-place cases, and a captured graph of two-shot all-reduces on registered buffers).
 *
 * Each tool runs with --target-processes all (the ranks are forked children); the run passes when
 * the inner test passed and every process's summary reports 0 errors (racecheck: 0 hazards).
 * Without compute-sanitizer (searched in $COMPUTE_SANITIZER, PATH, $CUDA_HOME/bin and
 * /usr/local/cuda*) or with fewer than 2 GPUs the test is skipped with a visible line. */
#include <dirent.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../common/harness.h"

#define NRANKS 2

static int executable(const char *path) { return path && path[0] && access(path, X_OK) == 0; }

static int find_sanitizer(char *out, size_t size) {
  const char *env = getenv("COMPUTE_SANITIZER"), *path = getenv("PATH"),
             *cuda = getenv("CUDA_HOME");
  char buf[PATH_MAX];
  if (executable(env)) return snprintf(out, size, "%s", env) > 0;
  for (const char *p = path; p && *p;) {
    const char *colon = strchr(p, ':');
    size_t n = colon ? (size_t)(colon - p) : strlen(p);
    snprintf(buf, sizeof(buf), "%.*s/compute-sanitizer", (int)n, p);
    if (n > 0 && executable(buf)) return snprintf(out, size, "%s", buf) > 0;
    p = colon ? colon + 1 : NULL;
  }
  if (cuda) {
    snprintf(buf, sizeof(buf), "%s/bin/compute-sanitizer", cuda);
    if (executable(buf)) return snprintf(out, size, "%s", buf) > 0;
  }
  {
    DIR *d = opendir("/usr/local");
    struct dirent *e;
    int found = 0;
    while (d && !found && (e = readdir(d)) != NULL) {
      if (strncmp(e->d_name, "cuda", 4) != 0) continue;
      snprintf(buf, sizeof(buf), "/usr/local/%s/bin/compute-sanitizer", e->d_name);
      found = executable(buf);
    }
    if (d) closedir(d);
    if (found) return snprintf(out, size, "%s", buf) > 0;
  }
  return 0;
}

static int self_dir_file(const char *name, char *out, size_t size) {
  char exe[PATH_MAX];
  ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
  char *slash;
  if (n <= 0) return -1;
  exe[n] = '\0';
  if ((slash = strrchr(exe, '/')) == NULL) return -1;
  *slash = '\0';
  return (size_t)snprintf(out, size, "%s/%s", exe, name) < size ? 0 : -1;
}

/* Runs cmd, returns its output (caller frees) and exit status. */
static char *run(const char *cmd, int *status_p) {
  char *out = NULL;
  size_t len = 0, cap = 0;
  FILE *p;
  fflush(stdout);
  if ((p = popen(cmd, "r")) == NULL) return NULL;
  for (;;) {
    size_t got;
    if (len + 4097 > cap) {
      char *n = realloc(out, cap = cap ? 2 * cap : 65536);
      if (n == NULL) break;
      out = n;
    }
    if ((got = fread(out + len, 1, 4096, p)) == 0) break;
    len += got;
  }
  *status_p = pclose(p);
  if (out) out[len] = '\0';
  return out;
}

/* Every "<key> N" in out has N == 0; *seen_p counts them. */
static int all_zero(const char *out, const char *key, int *seen_p) {
  int ok = 1;
  *seen_p = 0;
  for (const char *q = out; (q = strstr(q, key)) != NULL; q += strlen(key)) {
    (*seen_p)++;
    if (atoi(q + strlen(key)) != 0) ok = 0;
  }
  return ok;
}

/* Concatenates every file in dir (the per-process logs); *files_p counts those with a summary. */
static char *read_logs(const char *dir, const char *key, int *files_p) {
  DIR *d = opendir(dir);
  struct dirent *e;
  char *all = NULL, path[PATH_MAX + 300];
  size_t len = 0;
  *files_p = 0;
  while (d && (e = readdir(d)) != NULL) {
    FILE *f;
    long n;
    char *nb;
    if (e->d_name[0] == '.') continue;
    snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
    if ((f = fopen(path, "r")) == NULL) continue;
    fseek(f, 0, SEEK_END);
    n = ftell(f);
    fseek(f, 0, SEEK_SET);
    if (n > 0 && (nb = realloc(all, len + (size_t)n + 1)) != NULL) {
      all = nb;
      len += fread(all + len, 1, (size_t)n, f);
      all[len] = '\0';
      if (strstr(all + len - (size_t)n, key) != NULL) (*files_p)++;
    }
    fclose(f);
    unlink(path);
  }
  if (d) closedir(d);
  rmdir(dir);
  return all;
}

/* One log per process (%p): a clean summary from at least one process per rank shows that the
   forked ranks, not just the launcher, ran under the tool. */
static void run_tool(const char *san, const char *test, const char *tool) {
  char cmd[4 * PATH_MAX], dir[] = "/tmp/moecomm-san.XXXXXX";
  const char *key = strcmp(tool, "racecheck") == 0 ? "RACECHECK SUMMARY: " : "ERROR SUMMARY: ";
  int status = -1, seen = 0, files = 0, ok, p = 0, f = 0, s = 0;
  char *out, *logs, *sum;
  if (!MC_CHECK(mkdtemp(dir) != NULL, "mkdtemp for the sanitizer logs")) return;
  snprintf(cmd, sizeof(cmd),
           "MOECOMM_TIMEOUT_MS=600000 NCCL_NVLS_ENABLE=0 %s --tool %s --target-processes all "
           "--log-file %s/san.%%p.log %s --small 2>&1",
           san, tool, dir, test);
  out = run(cmd, &status);
  logs = read_logs(dir, key, &files);
  if (!MC_CHECK(out != NULL && logs != NULL, "running %s (no output or no logs)", cmd)) {
    free(out);
    free(logs);
    return;
  }
  ok = all_zero(logs, key, &seen);
  sum = strstr(out, "\nTESTSUM ");
  if (sum) sscanf(sum + 1, "TESTSUM %d %d %d", &p, &f, &s);
  if (MC_CHECK(status == 0 && sum != NULL && p > 0 && f == 0 && ok && files >= NRANKS,
               "%s: exit status %d, inner test %d passed %d failed, %d process logs with a "
               "summary (want >= %d)%s; logs:\n%s\noutput:\n%s",
               tool, status, p, f, files, NRANKS, ok ? "" : ", not all clean", logs, out))
    printf("ok: compute-sanitizer --tool %s: %d process logs, all clean; inner test %d passed\n",
           tool, files, p);
  free(out);
  free(logs);
}

int main(int argc, char **argv) {
  char san[PATH_MAX], test[PATH_MAX];
  int n;
  mc_test_init("custom_sanitizer", argc, argv);
  n = mc_test_gpu_count();
  if (n < NRANKS) {
    mc_test_skip("custom_sanitizer", "needs %d CUDA devices, this machine has %d", NRANKS, n);
    return mc_test_finish();
  }
  if (!find_sanitizer(san, sizeof(san))) {
    mc_test_skip("custom_sanitizer",
                 "compute-sanitizer not found ($COMPUTE_SANITIZER, PATH, $CUDA_HOME/bin, "
                 "/usr/local/cuda*/bin)");
    return mc_test_finish();
  }
  if (!MC_CHECK(self_dir_file("custom_allreduce", test, sizeof(test)) == 0 && executable(test),
                "custom_allreduce next to this binary: %s", test))
    return mc_test_finish();
  printf("using %s\n", san);
  run_tool(san, test, "memcheck");
  run_tool(san, test, "racecheck");
  return mc_test_finish();
}
