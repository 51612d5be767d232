/* SPDX-License-Identifier: Apache-2.0 */
/* custom_route.c - which path serves an all-reduce (2 ranks on 2 GPUs).
 *
 * With MOECOMM_DEBUG=TRACE the custom backend logs one line per all-reduce naming the algorithm
 * it launched or "handed to nccl".  Each rank sends its log (stderr) to a file and checks, call by
 * call: a forced MOECOMM_ALGO runs that algorithm where it can (ll for small sizes, one-shot,
 * two-shot eager and captured), falls back to the table where it cannot (ll at 2 MB), and hands
 * to NCCL what the custom path does not take (an eager size above the staging buffers, int32);
 * MOECOMM_ALGO=nccl leaves the group on NCCL.  Every result is also checked exactly, so the other
 * tests can rely on MOECOMM_ALGO meaning what it says. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "custom_util.h"

#define NRANKS 2

static int g_log_fd = -1;

/* The log written since `from`, NUL-terminated (caller frees). */
static char *log_since(off_t from) {
  off_t end;
  char *buf;
  ssize_t got = 0;
  fflush(stderr);
  end = lseek(g_log_fd, 0, SEEK_END);
  if (end < from) return NULL;
  buf = malloc((size_t)(end - from) + 1);
  if (buf == NULL) return NULL;
  while (got < end - from) {
    ssize_t n = pread(g_log_fd, buf + got, (size_t)(end - from - got), from + got);
    if (n <= 0) break;
    got += n;
  }
  buf[got] = '\0';
  return buf;
}

/* One all-reduce of count elements (exactly checked); want: the algorithm the trace line must
   name ("ll", "oneshot", "twoshot", "handed to nccl"), "!ll" for anything custom but ll, or NULL
   when the custom backend must not log a line at all. */
static int routed(const moecomm_api_t *api, moecomm_context_t *ctx, moecomm_group_t *g,
                  cudaStream_t s, int rank, moecomm_dtype_t dt, size_t count, int capture,
                  const char *want, const char *what) {
  const size_t bytes = count * shim_dtype_size(dt);
  char *log = NULL, key[96], *line = NULL;
  void *ins[NRANKS] = {NULL, NULL};
  off_t from;
  int ok = 0;

  for (int r = 0; r < NRANKS; r++) {
    ins[r] = malloc(bytes);
    if (ins[r] != NULL) mc_test_fill(ins[r], count, dt, 77 + (uint64_t)r * 13 + count);
  }
  if (!MC_CHECK(ins[0] && ins[1], "host buffers")) goto out;
  from = lseek(g_log_fd, 0, SEEK_END);
  if (!cu_check_sum(api, ctx, g, s, ins, NRANKS, rank, dt, count, capture, what)) goto out;

  log = log_since(from);
  snprintf(key, sizeof(key), "custom all-reduce of %zu bytes on ", bytes);
  line = log ? strstr(log, key) : NULL;
  if (line != NULL) {
    char *nl = strchr(line, '\n');
    if (nl) *nl = '\0';
  }
  if (want == NULL) {
    ok = MC_CHECK(line == NULL, "%s: the custom backend should not see it, logged: %s", what,
                  line ? line : "");
  } else if (line == NULL) {
    ok = MC_CHECK(0, "%s: no trace line \"%s...\" (want %s)", what, key, want);
  } else {
    const char *tag = strrchr(line, ':');
    tag = tag ? tag + 2 : "";
    if (strcmp(want, "!ll") == 0)
      ok = MC_CHECK(strcmp(tag, "oneshot") == 0 || strcmp(tag, "twoshot") == 0,
                    "%s: want oneshot or twoshot: %s", what, line);
    else
      ok = MC_CHECK(strcmp(tag, want) == 0, "%s: want %s: %s", what, want, line);
    if (ok && capture) ok = MC_CHECK(strstr(line, "(captured)") != NULL, "%s: %s", what, line);
  }
out:
  for (int r = 0; r < NRANKS; r++) free(ins[r]);
  free(log);
  return ok;
}

static int run_algo(const moecomm_api_t *api, int rank, const char *algo) {
  const char *env[] = {"MOECOMM_ALGO", algo, "MOECOMM_DEBUG", "TRACE", NULL};
  moecomm_context_t *ctx = cu_context(api, rank, NRANKS, 0, env);
  moecomm_group_t *g;
  cudaStream_t s = NULL;
  moecomm_group_stats_t st;
  int ok = 1;
  if (ctx == NULL) return 0;
  if ((g = cu_group(api, ctx, MOECOMM_GROUP_TP)) == NULL ||
      !MC_CUDA_OK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking))) {
    ok = 0;
    goto out;
  }
  if (strcmp(algo, "ll") == 0) {
    ok = routed(api, ctx, g, s, rank, MOECOMM_BFLOAT16, 512, 0, "ll", "ll 1 KB") &&
         routed(api, ctx, g, s, rank, MOECOMM_BFLOAT16, 1u << 20, 0, "!ll", "ll 2 MB") &&
         routed(api, ctx, g, s, rank, MOECOMM_FLOAT32, 1000, 1, "ll", "ll captured 4 KB");
  } else if (strcmp(algo, "oneshot") == 0) {
    ok = routed(api, ctx, g, s, rank, MOECOMM_FLOAT32, 1024, 0, "oneshot", "oneshot 4 KB") &&
         routed(api, ctx, g, s, rank, MOECOMM_FLOAT16, 3u << 20, 1, "oneshot",
                "oneshot captured 6 MB");
  } else if (strcmp(algo, "twoshot") == 0) {
    ok = routed(api, ctx, g, s, rank, MOECOMM_FLOAT32, 1024, 0, "twoshot", "twoshot 4 KB") &&
         routed(api, ctx, g, s, rank, MOECOMM_BFLOAT16, 24u << 20, 0, "handed to nccl",
                "twoshot eager 48 MB (above the staging half)") &&
         routed(api, ctx, g, s, rank, MOECOMM_BFLOAT16, 24u << 20, 1, "twoshot",
                "twoshot captured 48 MB") &&
         routed(api, ctx, g, s, rank, MOECOMM_INT32, 1024, 0, NULL, "int32 4 KB");
  } else if (strcmp(algo, "auto") == 0) {
    ok = routed(api, ctx, g, s, rank, MOECOMM_BFLOAT16, 512, 0, "ll", "auto 1 KB");
  } else {
    ok = routed(api, ctx, g, s, rank, MOECOMM_BFLOAT16, 512, 0, NULL, "nccl 1 KB");
    memset(&st, 0, sizeof(st));
    st.struct_size = sizeof(st);
    if (ok && MC_CHECK_RC(api, ctx, api->group_stats(g, &st), MOECOMM_SUCCESS))
      ok = MC_CHECK(strcmp(st.backend_name, "nccl") == 0, "MOECOMM_ALGO=nccl: TP uses %s",
                    st.backend_name);
  }
out:
  if (s) cudaStreamDestroy(s);
  MC_CHECK_RC(api, ctx, api->context_destroy(ctx), MOECOMM_SUCCESS);
  return ok;
}

static int rank_main(int rank, int world, void *arg) {
  static const char *const algos[] = {"ll", "oneshot", "twoshot", "auto", "nccl"};
  char path[] = "/tmp/moecomm-route-XXXXXX";
  const moecomm_api_t *api;
  int saved;
  (void)world;
  (void)arg;
  setenv("NCCL_NVLS_ENABLE", "0", 1);
  g_log_fd = mkstemp(path);
  if (!MC_CHECK(g_log_fd >= 0, "mkstemp")) return 1;
  unlink(path);
  fflush(stderr);
  saved = dup(2);
  if (!MC_CHECK(saved >= 0 && dup2(g_log_fd, 2) == 2, "redirecting stderr")) return 1;
  api = mc_test_plugin();
  if (MC_CUDA_OK(cudaSetDevice(rank)))
    for (int a = 0; a < 5; a++)
      if (!run_algo(api, rank, algos[a])) break;
  fflush(stderr);
  dup2(saved, 2);
  close(saved);
  close(g_log_fd);
  return 0;
}

int main(int argc, char **argv) {
  mc_test_init("custom_route", argc, argv);
  if (!mc_test_need_gpus(NRANKS)) return mc_test_finish();
  mc_test_ranks(NRANKS, rank_main, NULL, 240);
  return mc_test_finish();
}
