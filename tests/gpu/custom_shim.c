/* custom_shim.c - the host shim's MoE layer step on 2 GPUs with the custom all-reduce: warm-up,
 * graph capture and replays, every result verified bit-exact by the shim itself.
 *
 * Runs BUILD/moecomm-shim (found next to this binary's build) three ways: the defaults, i.e. the
 * ABI-1.1 scatter-mode step, whose transitions all-reduce on ATTN_TP = TP through the custom
 * path; the ABI-1.0 collectives step (--abi-max 1.0: attention groups on the custom path, MoE
 * groups on NCCL) with two-shot forced and communicators not shared, so the captured step
 * registers buffers of several communicators at capture_end; the ABI-1.0 step with one-shot forced
 * on an odd fp16 shape (33 tokens per rank, hidden 1001).  Each run must
 * exit 0, run on CUDA devices, run the step it asked for and report its graph replays verified. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../common/harness.h"

#define NRANKS 2

static int shim_path(char *out, size_t size) {
  char exe[PATH_MAX];
  ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
  char *slash;
  if (n <= 0) return -1;
  exe[n] = '\0';
  for (int up = 0; up < 3; up++) { /* BUILD/tests/gpu/custom_shim -> BUILD */
    slash = strrchr(exe, '/');
    if (slash == NULL) return -1;
    *slash = '\0';
  }
  return (size_t)snprintf(out, size, "%s/moecomm-shim", exe) < size ? 0 : -1;
}

static void run_shim(const char *shim, const char *args, const char *env_algo, int share,
                     const char *want_step) {
  char cmd[PATH_MAX + 512], *out = NULL;
  size_t len = 0, cap = 0;
  FILE *p;
  int status;
  if (env_algo) setenv("MOECOMM_ALGO", env_algo, 1);
  if (!share) setenv("MOECOMM_SHARE_COMMS", "0", 1);
  snprintf(cmd, sizeof(cmd), "%s %s 2>&1", shim, args);
  fflush(stdout);
  p = popen(cmd, "r");
  unsetenv("MOECOMM_ALGO");
  unsetenv("MOECOMM_SHARE_COMMS");
  if (!MC_CHECK(p != NULL, "popen %s", cmd)) return;
  for (;;) {
    if (len + 4096 + 1 > cap) {
      char *n = realloc(out, cap = cap ? 2 * cap : 65536);
      if (n == NULL) break;
      out = n;
    }
    size_t got = fread(out + len, 1, 4096, p);
    if (got == 0) break;
    len += got;
  }
  status = pclose(p);
  if (out == NULL) return;
  out[len] = '\0';
  if (MC_CHECK(status == 0 && strstr(out, "device: cuda:") != NULL &&
                   strstr(out, "result: verified bit-exact") != NULL &&
                   strstr(out, "graph replays") != NULL && strstr(out, want_step) != NULL,
               "MOECOMM_ALGO=%s MOECOMM_SHARE_COMMS=%d %s (want '%s'): exit status %d, "
               "output:\n%s",
               env_algo ? env_algo : "(unset)", share, cmd, want_step, status, out))
    printf("ok: %s (MOECOMM_ALGO=%s, share %d)\n", args, env_algo ? env_algo : "(unset)", share);
  free(out);
}

int main(int argc, char **argv) {
  char shim[PATH_MAX];
  int n;
  mc_test_init("custom_shim", argc, argv);
  n = mc_test_gpu_count();
  if (n < NRANKS) {
    mc_test_skip("custom_shim", "needs %d CUDA devices, this machine has %d", NRANKS, n);
    return mc_test_finish();
  }
  if (!MC_CHECK(shim_path(shim, sizeof(shim)) == 0 && access(shim, X_OK) == 0,
                "the shim next to this build: %s", shim))
    return mc_test_finish();
  setenv("NCCL_NVLS_ENABLE", "0", 1);
  run_shim(shim, "--ranks 2 --tp 2 --ep 2 --iters 20", NULL, 1, "step: ABI 1.1 scatter modes");
  run_shim(shim, "--abi-max 1.0 --ranks 2 --tp 2 --ep 2 --iters 20", "twoshot", 0,
           "step: ABI 1.0 collectives");
  run_shim(shim,
           "--abi-max 1.0 --ranks 2 --tp 2 --dtype fp16 --tokens 33 --hidden 1001 --iters 10",
           "oneshot", 1, "step: ABI 1.0 collectives");
  return mc_test_finish();
}
