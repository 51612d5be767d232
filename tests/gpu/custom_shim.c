/* SPDX-License-Identifier: Apache-2.0 */
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

static void run_shim(const char *shim, const char *args, const char *env_algo, int share,
                     const char *want_step) {
  static char out[1 << 20];
  char cmd[PATH_MAX + 512];
  int status;
  if (env_algo) setenv("MOECOMM_ALGO", env_algo, 1);
  if (!share) setenv("MOECOMM_SHARE_COMMS", "0", 1);
  snprintf(cmd, sizeof(cmd), "%s %s", shim, args);
  status = mc_test_shell(cmd, out, sizeof(out));
  unsetenv("MOECOMM_ALGO");
  unsetenv("MOECOMM_SHARE_COMMS");
  if (MC_CHECK(status == 0 && strstr(out, "device: cuda:") != NULL &&
                   strstr(out, "result: verified bit-exact") != NULL &&
                   strstr(out, "graph replays") != NULL && strstr(out, want_step) != NULL,
               "MOECOMM_ALGO=%s MOECOMM_SHARE_COMMS=%d %s (want '%s'): exit status %d, "
               "output:\n%s",
               env_algo ? env_algo : "(unset)", share, cmd, want_step, status, out))
    printf("ok: %s (MOECOMM_ALGO=%s, share %d)\n", args, env_algo ? env_algo : "(unset)", share);
}

int main(int argc, char **argv) {
  char build[PATH_MAX], shim[PATH_MAX + 16];
  mc_test_init("custom_shim", argc, argv);
  if (!mc_test_need_gpus(NRANKS)) return mc_test_finish();
  if (!MC_CHECK(mc_test_build_dir(build, sizeof(build)) == 0, "no build directory"))
    return mc_test_finish();
  snprintf(shim, sizeof(shim), "%s/moecomm-shim", build);
  if (!MC_CHECK(access(shim, X_OK) == 0, "the shim of this build: %s", shim))
    return mc_test_finish();
  setenv("NCCL_NVLS_ENABLE", "0", 1);
  run_shim(shim, "--ranks 2 --tp 2 --ep 2 --iters 20", NULL, 1, "step: ABI 1.1 scatter modes");
  run_shim(shim, "--abi-max 1.0 --ranks 2 --tp 2 --ep 2 --iters 20", "twoshot", 0,
           "step: ABI 1.0 collectives");
  run_shim(shim, "--abi-max 1.0 --ranks 2 --tp 2 --dtype fp16 --tokens 33 --hidden 1001 --iters 10",
           "oneshot", 1, "step: ABI 1.0 collectives");
  return mc_test_finish();
}
