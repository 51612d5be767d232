/* SPDX-License-Identifier: Apache-2.0 */
/* custom_sanitizer.c - compute-sanitizer memcheck and racecheck over the custom all-reduce.
 *
 * compute-sanitizer follows processes that are exec'd, not plain forks, so the two ranks run as
 * two separate processes, each under the tool with its own log: the shim in external-launcher
 * mode (MOECOMM_RANK / MOECOMM_WORLD_SIZE / MOECOMM_STORE), whose MoE step issues all-reduces on
 * the custom path eagerly and inside a captured graph that is then replayed.  Each forced
 * algorithm (LL, one-shot, two-shot: the captured two-shot reads buffers registered at
 * capture_end) runs under each tool; the run passes when both ranks verified their results and
 * both logs report 0 errors (racecheck: 0 hazards).  memcheck runs with --report-api-errors no:
 * NCCL (the MoE groups' backend) probes its kernels for every architecture at init and gets
 * cudaErrorNoKernelImageForDevice by design; API return codes are checked by the code itself, and
 * memory-access errors are still reported.  Without compute-sanitizer (searched in
 * $COMPUTE_SANITIZER, PATH, $CUDA_HOME/bin and /usr/local/cuda*) or with fewer than 2 GPUs the
 * test is skipped with a visible line. */
#include <dirent.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../common/harness.h"

#define NRANKS 2

static int executable(const char *path) {
  return path && path[0] && access(path, X_OK) == 0;
}

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

/* Reads a whole file (caller frees); NULL when it cannot. */
static char *slurp(const char *path) {
  FILE *f = fopen(path, "r");
  char *buf = NULL;
  long n;
  if (f == NULL) return NULL;
  if (fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) >= 0 && fseek(f, 0, SEEK_SET) == 0 &&
      (buf = malloc((size_t)n + 1)) != NULL) {
    size_t got = fread(buf, 1, (size_t)n, f);
    buf[got] = '\0';
  }
  fclose(f);
  return buf;
}

/* Two ranks, each its own process under the tool, with MOECOMM_ALGO=algo. */
static void run_tool(const char *san, const char *shim, const char *tool, const char *algo,
                     int port) {
  char cmd[8 * PATH_MAX], dir[] = "/tmp/moecomm-san.XXXXXX", path[PATH_MAX + 64], out[4096];
  const char *key = strcmp(tool, "racecheck") == 0 ? "RACECHECK SUMMARY: " : "ERROR SUMMARY: ";
  const char *rcs;
  int rc[2] = {-1, -1}, ok = 1;
  if (!MC_CHECK(port > 0, "no free port for MOECOMM_STORE")) return;
  if (!MC_CHECK(mkdtemp(dir) != NULL, "mkdtemp for the sanitizer logs")) return;
  snprintf(cmd, sizeof(cmd),
           "cd %s && for r in 0 1; do MOECOMM_RANK=$r MOECOMM_WORLD_SIZE=2 "
           "MOECOMM_STORE=tcp://127.0.0.1:%d MOECOMM_ALGO=%s MOECOMM_TIMEOUT_MS=600000 "
           "NCCL_NVLS_ENABLE=0 %s --tool %s%s --log-file san.$r.log %s --tp 2 --ep 2 --tokens 32 "
           "--hidden 512 --iters 2 > out.$r 2>&1 & eval pid$r=$!; done; "
           "wait $pid0; a=$?; wait $pid1; echo \"RC $a $?\"",
           dir, port, algo, san, tool,
           strcmp(tool, "memcheck") == 0 ? " --report-api-errors no" : "", shim);
  mc_test_shell(cmd, out, sizeof(out));
  if ((rcs = strstr(out, "RC ")) == NULL || sscanf(rcs, "RC %d %d", &rc[0], &rc[1]) != 2)
    rc[0] = rc[1] = -1;
  for (int r = 0; r < 2; r++) {
    char *log, *res;
    int seen = 0, clean;
    snprintf(path, sizeof(path), "%s/san.%d.log", dir, r);
    log = slurp(path);
    snprintf(path, sizeof(path), "%s/out.%d", dir, r);
    res = slurp(path);
    clean = log != NULL && all_zero(log, key, &seen) && seen >= 1;
    /* rank 0 prints the verdict for both ranks; each rank exits 0 only if it verified */
    ok &=
        MC_CHECK(rc[r] == 0 && clean &&
                     (r != 0 || (res && strstr(res, "result: verified bit-exact on all 2 ranks") &&
                                 strstr(res, "graph replays"))),
                 "%s, MOECOMM_ALGO=%s, rank %d: exit %d, %d summaries%s; log:\n%s\noutput:\n%s",
                 tool, algo, r, rc[r], seen, clean ? "" : " (not clean or missing)",
                 log ? log : "(none)", res ? res : "(none)");
    free(log);
    free(res);
    unlink(path);
    snprintf(path, sizeof(path), "%s/san.%d.log", dir, r);
    unlink(path);
  }
  if (ok)
    printf("ok: compute-sanitizer --tool %s, MOECOMM_ALGO=%s: both ranks clean and verified\n",
           tool, algo);
  rmdir(dir);
}

int main(int argc, char **argv) {
  char san[PATH_MAX], build[PATH_MAX], shim[PATH_MAX + 16];
  mc_test_init("custom_sanitizer", argc, argv);
  if (!mc_test_need_gpus(NRANKS)) return mc_test_finish();
  if (!find_sanitizer(san, sizeof(san))) {
    mc_test_skip("custom_sanitizer",
                 "compute-sanitizer not found ($COMPUTE_SANITIZER, PATH, $CUDA_HOME/bin, "
                 "/usr/local/cuda*/bin)");
    return mc_test_finish();
  }
  if (!MC_CHECK(mc_test_build_dir(build, sizeof(build)) == 0, "no build directory"))
    return mc_test_finish();
  snprintf(shim, sizeof(shim), "%s/moecomm-shim", build);
  if (!MC_CHECK(executable(shim), "the shim of this build: %s", shim)) return mc_test_finish();
  printf("using %s\n", san);
  {
    static const char *const tools[] = {"memcheck", "racecheck"};
    static const char *const algos[] = {"ll", "oneshot", "twoshot"};
    for (int t = 0; t < 2; t++)
      for (int a = 0; a < 3; a++) run_tool(san, shim, tools[t], algos[a], mc_test_free_port());
  }
  return mc_test_finish();
}
