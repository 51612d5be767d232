/* SPDX-License-Identifier: Apache-2.0 */
/* harness.c - counts checks, runs ranks, runs commands (harness.h); loading the plugin, launching
 * ranks and making exact test data come from the host library (host_shim/lib/). */
#include "harness.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../../host_shim/lib/buildtree.h"
#include "../../host_shim/lib/data.h"
#include "../../host_shim/lib/device.h"
#include "../../host_shim/lib/launch.h"
#include "../../host_shim/lib/scatter_ref.h"

#if MC_WITH_CUDA
#include <cuda_runtime_api.h>
#endif

/* Counts of one process.  In a child of mc_test_ranks they live in the MAP_SHARED page, so the
   parent sees every check that was made even when the child crashes later. */
typedef struct mc_test_counts {
  long passed, failed, skipped;
  int finished; /* the rank function returned (status below is valid) */
  int status;   /* its return value */
  int doomed;   /* mc_test_rank_expect_death: how the process ends is not judged */
} mc_test_counts_t;

static mc_test_counts_t g_own;
static mc_test_counts_t *g_counts = &g_own;
static const char *g_name = "test";
static int g_verbose;
static int g_rank = -1; /* >= 0 inside a child of mc_test_ranks: prefixes every line */

static const char *base_name(const char *path) {
  const char *s = strrchr(path, '/');
  return s ? s + 1 : path;
}

static void line_prefix(FILE *f) {
  if (g_rank >= 0) fprintf(f, "[rank %d] ", g_rank);
}

void mc_test_init(const char *name, int argc, char **argv) {
  const char *v = getenv("MC_TEST_VERBOSE");
  g_name = name ? name : (argc > 0 && argv && argv[0] ? base_name(argv[0]) : "test");
  g_verbose = v != NULL && v[0] != '\0' && strcmp(v, "0") != 0;
  /* Line buffering keeps the lines of forked ranks whole and in order when stdout is a pipe. */
  setvbuf(stdout, NULL, _IOLBF, 0);
}

int mc_test_finish(void) {
  int failed = g_counts->failed != 0;
  if (g_rank >= 0) return failed; /* a child: its parent reports the totals */
  printf("%s: %ld passed, %ld failed, %ld skipped\n", g_name, g_counts->passed, g_counts->failed,
         g_counts->skipped);
  printf("TESTSUM %ld %ld %ld\n", g_counts->passed, g_counts->failed, g_counts->skipped);
  fflush(stdout);
  return failed;
}

int mc_test_check(int ok, const char *file, int line, const char *expr, const char *fmt, ...) {
  /* atomic: a test may check from several threads */
  if (ok) {
    __atomic_fetch_add(&g_counts->passed, 1, __ATOMIC_RELAXED);
    if (g_verbose) {
      line_prefix(stdout);
      printf("ok   %s:%d: %s\n", base_name(file), line, expr);
    }
    return 1;
  }
  __atomic_fetch_add(&g_counts->failed, 1, __ATOMIC_RELAXED);
  fflush(stdout);
  line_prefix(stdout);
  printf("FAIL %s:%d: %s", base_name(file), line, expr);
  if (fmt != NULL && fmt[0] != '\0') {
    va_list ap;
    va_start(ap, fmt);
    printf(": ");
    vprintf(fmt, ap);
    va_end(ap);
  }
  printf("\n");
  fflush(stdout);
  return 0;
}

int mc_test_check_rc(const moecomm_api_t *api, const moecomm_context_t *ctx, int got, int want,
                     const char *file, int line, const char *expr) {
  if (got == want) return mc_test_check(1, file, line, expr, "%s", "");
  return mc_test_check(0, file, line, expr, "got %d (%s), want %d: %s", got,
                       api ? api->result_string((moecomm_result_t)got) : "?", want,
                       api ? api->last_error(ctx) : "");
}

void mc_test_skip(const char *what, const char *fmt, ...) {
  va_list ap;
  __atomic_fetch_add(&g_counts->skipped, 1, __ATOMIC_RELAXED);
  line_prefix(stdout);
  printf("SKIP %s: ", what);
  va_start(ap, fmt);
  vprintf(fmt, ap);
  va_end(ap);
  printf("\n");
  fflush(stdout);
}

/* Gives up on the whole binary (or, in a rank, on that rank) after a failure it cannot go past. */
static void fatal_exit(void) {
  fflush(stdout);
  fflush(stderr);
  if (g_rank >= 0) _exit(1);
  mc_test_finish();
  exit(1);
}

/* ---- plugin ---------------------------------------------------------------------------- */

int mc_test_build_dir(char *out, size_t size) {
  return shim_buildtree_dir(out, size);
}

const moecomm_api_t *mc_test_plugin(void) {
  static shim_plugin_t plugin;
  static int loaded;
  char err[2048] = "";
  shim_load_result_t r;
  if (loaded) return plugin.api;
  r = shim_buildtree_plugin(&plugin, err, sizeof(err));
  if (r != SHIM_LOAD_OK || plugin.api == NULL) {
    mc_test_check(0, __FILE__, __LINE__, "shim_buildtree_plugin",
                  "MOECOMM_PLUGIN=%s: result %d: %s", getenv("MOECOMM_PLUGIN"), (int)r,
                  err[0] ? err : "(no reason given)");
    fatal_exit();
  }
  if (g_verbose)
    printf("plugin %s (ABI %u.%u)\n", plugin.path, MOECOMM_ABI_VERSION_GET_MAJOR(plugin.version),
           MOECOMM_ABI_VERSION_GET_MINOR(plugin.version));
  loaded = 1;
  return plugin.api;
}

/* ---- commands, files, environment ------------------------------------------------------ */

int mc_test_shell(const char *cmd, char *out, size_t n) {
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

int mc_test_copy_file(const char *src, const char *dst, mode_t mode) {
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

void mc_test_env_apply(const char *const *env) {
  shim_env_apply(env);
}

/* ---- ranks ----------------------------------------------------------------------------- */

typedef struct ranks_job {
  mc_test_rank_fn_t fn;
  void *arg;
  mc_test_counts_t *slots; /* world entries, MAP_SHARED */
} ranks_job_t;

static int rank_main(int rank, int world, void *arg) {
  ranks_job_t *job = arg;
  int status;
  g_counts = &job->slots[rank];
  memset(g_counts, 0, sizeof(*g_counts));
  g_rank = rank;
  status = job->fn(rank, world, job->arg);
  g_counts->status = status;
  __atomic_store_n(&g_counts->finished, 1, __ATOMIC_RELEASE);
  /* shim_launch leaves with _exit(), which does not flush stdio. */
  fflush(stdout);
  fflush(stderr);
  return status != 0 || g_counts->failed != 0;
}

void mc_test_rank_expect_death(void) {
  if (g_rank < 0) return;
  fflush(stdout);
  fflush(stderr);
  g_counts->status = 0;
  g_counts->doomed = 1;
  __atomic_store_n(&g_counts->finished, 1, __ATOMIC_RELEASE);
}

/* A rank's process that ended badly although its function returned 0 with no failed check
   (a crash or exit code from an atexit handler, a destructor, a sanitizer's report): one failed
   check that says how it ended. */
static void check_rank_exit(int r, int world, int wait_status) {
  if (wait_status == -1)
    mc_test_check(0, __FILE__, __LINE__, "rank exit", "rank %d of %d was never started", r, world);
  else if (WIFSIGNALED(wait_status))
    mc_test_check(0, __FILE__, __LINE__, "rank exit",
                  "rank %d of %d passed its checks, then was killed by signal %d (%s)", r, world,
                  WTERMSIG(wait_status), strsignal(WTERMSIG(wait_status)));
  else if (!WIFEXITED(wait_status) || WEXITSTATUS(wait_status) != 0)
    mc_test_check(0, __FILE__, __LINE__, "rank exit",
                  "rank %d of %d passed its checks, then its process exited with status %d", r,
                  world, WIFEXITED(wait_status) ? WEXITSTATUS(wait_status) : -1);
}

int mc_test_ranks(int world, mc_test_rank_fn_t fn, void *arg, int timeout_s) {
  size_t bytes = (size_t)(world > 0 ? world : 1) * sizeof(mc_test_counts_t);
  ranks_job_t job;
  shim_launch_cfg_t cfg;
  int failed_ranks = 0;
  if (world < 1 || fn == NULL) {
    mc_test_check(0, __FILE__, __LINE__, "mc_test_ranks", "bad world %d or NULL fn", world);
    return world < 1 ? 1 : world;
  }
  memset(&cfg, 0, sizeof(cfg));
  cfg.timeout_s = timeout_s;
  cfg.wait_status = calloc((size_t)world, sizeof(int));
  job.fn = fn;
  job.arg = arg;
  job.slots = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (job.slots == MAP_FAILED || cfg.wait_status == NULL) {
    mc_test_check(0, __FILE__, __LINE__, "mmap", "counts of %d ranks: %s", world, strerror(errno));
    if (job.slots != MAP_FAILED) munmap(job.slots, bytes);
    free(cfg.wait_status);
    return world;
  }
  memset(job.slots, 0, bytes);
  fflush(stdout); /* or the children print the parent's buffered lines again */
  fflush(stderr);
  shim_launch_ex(world, rank_main, &job, &cfg, NULL);
  for (int r = 0; r < world; r++) {
    mc_test_counts_t *s = &job.slots[r];
    int finished = __atomic_load_n(&s->finished, __ATOMIC_ACQUIRE);
    g_counts->passed += s->passed;
    g_counts->failed += s->failed;
    g_counts->skipped += s->skipped;
    if (!finished) {
      failed_ranks++;
      mc_test_check(
          0, __FILE__, __LINE__, "rank finished",
          "rank %d of %d crashed, exited early or ran past %d s (see the launcher's line)", r,
          world, timeout_s);
    } else if (s->status != 0 || s->failed != 0) {
      failed_ranks++;
      if (s->failed == 0)
        mc_test_check(0, __FILE__, __LINE__, "rank status",
                      "rank %d of %d returned %d without a failed check", r, world, s->status);
    } else if (!s->doomed && cfg.wait_status[r] != 0) {
      failed_ranks++;
      check_rank_exit(r, world, cfg.wait_status[r]);
    }
  }
  munmap(job.slots, bytes);
  free(cfg.wait_status);
  return failed_ranks;
}

moecomm_context_params_t mc_test_ctx_params(const moecomm_topology_t *topo, int device) {
  return shim_launch_params(topo, device);
}

int mc_test_free_port(void) {
  struct sockaddr_in a;
  socklen_t len = sizeof(a);
  int fd = socket(AF_INET, SOCK_STREAM, 0), port = -1;
  if (fd < 0) return -1;
  memset(&a, 0, sizeof(a));
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
      getsockname(fd, (struct sockaddr *)&a, &len) == 0)
    port = ntohs(a.sin_port);
  close(fd);
  return port;
}

moecomm_topology_t mc_test_topo(int world, int rank, int tp) {
  return shim_launch_topology(world, rank, tp);
}

moecomm_scatter_args_t mc_test_scatter_args(int from, int to, int reduce, moecomm_dtype_t dtype,
                                            size_t hidden, const int32_t *tokens, void *send,
                                            void *recv) {
  return sref_args(from, to, reduce, dtype, hidden, tokens, send, recv);
}

/* ---- devices --------------------------------------------------------------------------- */

/* Counted in a forked child (device.h): CUDA initialised in this process would make it unusable
   in the ranks mc_test_ranks forks later. */
int mc_test_gpu_count(void) {
  static int cached = -1;
  const char *req = getenv("MC_TEST_REQUIRE_GPU");
  if (cached >= 0) return cached;
  cached = shim_gpu_devices();
  /* tests/run.sh --gpu: a machine without a device is a failure, not a skip. */
  if (cached == 0 && req != NULL && strcmp(req, "1") == 0)
    mc_test_check(0, __FILE__, __LINE__, "mc_test_gpu_count() > 0",
                  "no CUDA device%s, but MC_TEST_REQUIRE_GPU=1 (tests/run.sh --gpu)",
                  MC_WITH_CUDA ? "" : " (built without CUDA)");
  return cached;
}

int mc_test_need_gpus(int n) {
  int have = mc_test_gpu_count();
  if (have >= n) return 1;
  mc_test_skip(g_name, "needs %d CUDA device%s, this machine has %d", n, n == 1 ? "" : "s", have);
  return 0;
}

int mc_test_cuda_check(int err, const char *file, int line, const char *expr) {
  if (err == 0) return 1; /* cudaSuccess */
#if MC_WITH_CUDA
  return mc_test_check(0, file, line, expr, "%s", cudaGetErrorString((cudaError_t)err));
#else
  return mc_test_check(0, file, line, expr, "CUDA error %d", err);
#endif
}

/* ---- data: the host library's (host_shim/lib/data.h) ------------------------------------ */

uint64_t mc_test_rand(uint64_t *state) {
  return shim_data_rand(state);
}
uint16_t mc_test_to_bf16(float f) {
  return shim_data_to_bf16(f);
}
float mc_test_from_bf16(uint16_t b) {
  return shim_data_from_bf16(b);
}
uint16_t mc_test_to_half(float f) {
  return shim_data_to_half(f);
}
float mc_test_from_half(uint16_t h) {
  return shim_data_from_half(h);
}

void mc_test_fill(void *buf, size_t n, moecomm_dtype_t dtype, uint64_t seed) {
  shim_data_fill_random(buf, n, dtype, seed);
}

double mc_test_get(const void *buf, size_t i, moecomm_dtype_t dtype) {
  return shim_data_get(buf, i, dtype);
}
