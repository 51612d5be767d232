/* SPDX-License-Identifier: Apache-2.0 */
/* nccl_lib.c - loading NCCL at run time (plugin/backends/nccl/nccl_lib.c), on the CPU, with fake
 * libraries built beside this test (tests/core/fake_nccl.c): a good one (2.28.9) loads and
 * its version is read; one too old (2.18.0), one lacking ncclSend and a path that does not exist
 * are each refused with a message naming what was tried and why; the first outcome sticks for the
 * process.  And the plugin itself names no NCCL library and no run path (readelf). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../../plugin/backends/nccl/nccl_lib.h"
#include "../common/harness.h"

static char g_build[4096];

/* In a child (the outcome is per process): load with MOECOMM_NCCL_PATH = path. */
static void expect_load(const char *variant, int want_ok, int want_version, const char *needle) {
  char path[4200];
  pid_t pid;
  int st = 0;
  snprintf(path, sizeof(path), "%s/tests/nccl/%s/libnccl.so.2", g_build, variant);
  fflush(stdout);
  pid = fork();
  if (pid == 0) {
    mc_config_t cfg;
    mc_err_t err;
    moecomm_result_t r;
    memset(&cfg, 0, sizeof(cfg));
    snprintf(cfg.nccl.path, sizeof(cfg.nccl.path), "%s", path);
    r = mc_nccl_lib_load(&cfg, &err);
    if (want_ok) {
      MC_CHECK(r == MOECOMM_SUCCESS && mc_nccl_lib.version == want_version, "%s: %d %s", variant,
               (int)r, r ? err.msg : "");
    } else {
      MC_CHECK(r == MOECOMM_ERR_UNAVAILABLE && strstr(err.msg, needle) != NULL &&
                   strstr(err.msg, "MOECOMM_NCCL_PATH") != NULL,
               "%s: %d, message lacks '%s': %s", variant, (int)r, needle, err.msg);
      /* the first outcome sticks: a second call says the same without trying again */
      MC_CHECK(mc_nccl_lib_load(&cfg, &err) == MOECOMM_ERR_UNAVAILABLE, "%s: second call", variant);
    }
    _exit(mc_test_finish() == 0 ? 0 : 1);
  }
  waitpid(pid, &st, 0);
  MC_CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "loading %s (checks printed above)", variant);
}

int main(int argc, char **argv) {
  char cmd[4300], out[4096];
  mc_test_init("nccl_lib", argc, argv);
  if (!MC_CHECK(mc_test_build_dir(g_build, sizeof(g_build)) == 0, "build dir"))
    return mc_test_finish();
  expect_load("good", 1, 22809, NULL);
  expect_load("old", 0, 0, "2.18.0");
  expect_load("nosend", 0, 0, "lacks ncclSend");
  expect_load("absent", 0, 0, "absent/libnccl.so.2");
  snprintf(cmd, sizeof(cmd), "readelf -d %s/libmoecomm.so", g_build);
  if (mc_test_shell(cmd, out, sizeof(out)) == 0)
    MC_CHECK(strstr(out, "libnccl") == NULL && strstr(out, "RUNPATH") == NULL &&
                 strstr(out, "RPATH") == NULL,
             "the plugin names NCCL or a run path:\n%s", out);
  else
    mc_test_skip("readelf", "not installed");
  return mc_test_finish();
}
