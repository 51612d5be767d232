/* harness.c - counts checks, runs ranks, loads the plugin, runs commands, makes exact test data
 * (harness.h). */
#include "harness.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
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

#include "../../host_shim/launch.h"

#if MC_WITH_CUDA
#include <cuda_runtime_api.h>
#endif

/* Counts of one process.  In a child of mc_test_ranks they live in the MAP_SHARED page, so the
   parent sees every check that was made even when the child crashes later. */
typedef struct mc_test_counts {
  long passed, failed, skipped;
  int finished; /* the rank function returned (status below is valid) */
  int status;   /* its return value */
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
  char exe[PATH_MAX];
  ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
  char *slash;
  if (n <= 0) return -1;
  exe[n] = '\0';
  slash = strrchr(exe, '/');
  if (slash == NULL) return -1;
  *slash = '\0'; /* exe is now the binary's directory */
  if (strcmp(base_name(exe), "gpu") == 0) {
    slash = strrchr(exe, '/');
    if (slash != NULL) *slash = '\0';
  }
  if (strcmp(base_name(exe), "tests") == 0 || strcmp(base_name(exe), "bench") == 0) {
    slash = strrchr(exe, '/');
    if (slash != NULL) *slash = '\0';
  }
  return (size_t)snprintf(out, size, "%s", exe) < size ? 0 : -1;
}

const moecomm_api_t *mc_test_plugin(void) {
  static shim_plugin_t plugin;
  static int loaded;
  char err[2048] = "";
  shim_load_result_t r;
  if (loaded) return plugin.api;
  if (getenv("MOECOMM_PLUGIN") == NULL) {
    char dir[PATH_MAX], path[PATH_MAX + 32];
    if (mc_test_build_dir(dir, sizeof(dir)) != 0) {
      mc_test_check(0, __FILE__, __LINE__, "mc_test_build_dir",
                    "cannot find this binary's build directory from /proc/self/exe");
      fatal_exit();
    }
    snprintf(path, sizeof(path), "%s/libmoecomm.so", dir);
    setenv("MOECOMM_PLUGIN", path, 1);
  }
  r = shim_plugin_load(MOECOMM_ABI_VERSION_MAKE(1, 0), MOECOMM_ABI_VERSION, &plugin, err,
                       sizeof(err));
  if (r != SHIM_LOAD_OK || plugin.api == NULL) {
    mc_test_check(0, __FILE__, __LINE__, "shim_plugin_load",
                  "MOECOMM_PLUGIN=%s: result %d: %s", getenv("MOECOMM_PLUGIN"), (int)r,
                  err[0] ? err : "(no reason given)");
    fatal_exit();
  }
  if (g_verbose) printf("plugin %s (ABI %u.%u)\n", plugin.path,
                        MOECOMM_ABI_VERSION_GET_MAJOR(plugin.version),
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
  for (int i = 0; env != NULL && env[i] != NULL; i++) {
    const char *eq = strchr(env[i], '=');
    if (eq == NULL) {
      unsetenv(env[i]);
    } else {
      char name[128];
      snprintf(name, sizeof(name), "%.*s", (int)(eq - env[i]), env[i]);
      setenv(name, eq + 1, 1);
    }
  }
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
  __atomic_store_n(&g_counts->finished, 1, __ATOMIC_RELEASE);
}

int mc_test_ranks(int world, mc_test_rank_fn_t fn, void *arg, int timeout_s) {
  size_t bytes = (size_t)(world > 0 ? world : 1) * sizeof(mc_test_counts_t);
  ranks_job_t job;
  int failed_ranks = 0;
  if (world < 1 || fn == NULL) {
    mc_test_check(0, __FILE__, __LINE__, "mc_test_ranks", "bad world %d or NULL fn", world);
    return world < 1 ? 1 : world;
  }
  job.fn = fn;
  job.arg = arg;
  job.slots = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (job.slots == MAP_FAILED) {
    mc_test_check(0, __FILE__, __LINE__, "mmap", "%s", strerror(errno));
    return world;
  }
  memset(job.slots, 0, bytes);
  fflush(stdout); /* or the children print the parent's buffered lines again */
  fflush(stderr);
  shim_launch(world, rank_main, &job, timeout_s);
  for (int r = 0; r < world; r++) {
    mc_test_counts_t *s = &job.slots[r];
    int finished = __atomic_load_n(&s->finished, __ATOMIC_ACQUIRE);
    g_counts->passed += s->passed;
    g_counts->failed += s->failed;
    g_counts->skipped += s->skipped;
    if (!finished) {
      failed_ranks++;
      mc_test_check(0, __FILE__, __LINE__, "rank finished",
                    "rank %d of %d crashed, exited early or ran past %d s (see the launcher's line)",
                    r, world, timeout_s);
    } else if (s->status != 0 || s->failed != 0) {
      failed_ranks++;
      if (s->failed == 0)
        mc_test_check(0, __FILE__, __LINE__, "rank status",
                      "rank %d of %d returned %d without a failed check", r, world, s->status);
    }
  }
  munmap(job.slots, bytes);
  return failed_ranks;
}

/* The all-gather of a world of one: the rank's own contribution. */
static int allgather_one(void *user, const void *send, void *recv, size_t bytes) {
  (void)user;
  memcpy(recv, send, bytes);
  return 0;
}

moecomm_context_params_t mc_test_ctx_params(const moecomm_topology_t *topo, int device) {
  moecomm_context_params_t p;
  memset(&p, 0, sizeof(p));
  p.struct_size = sizeof(p);
  p.topology = topo;
  if (topo != NULL && topo->world_size == 1) {
    p.host_allgather = allgather_one;
  } else {
    p.host_allgather = shim_host_allgather;
    p.host_user = shim_launch_hub();
  }
  p.device = device;
  return p;
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
  moecomm_topology_t t;
  memset(&t, 0, sizeof(t));
  t.struct_size = sizeof(t);
  t.world_size = world;
  t.rank = rank;
  t.tp = tp;
  return t;
}

moecomm_scatter_args_t mc_test_scatter_args(int from, int to, int reduce, moecomm_dtype_t dtype,
                                            size_t hidden, const int32_t *tokens, void *send,
                                            void *recv) {
  moecomm_scatter_args_t a;
  memset(&a, 0, sizeof(a));
  a.struct_size = sizeof(a);
  a.from = from;
  a.to = to;
  a.reduce = reduce;
  a.dtype = dtype;
  a.hidden = hidden;
  a.tokens = tokens;
  a.send = send;
  a.recv = recv;
  return a;
}

/* ---- devices --------------------------------------------------------------------------- */

/* Counted in a forked child: CUDA initialised in this process would make it unusable in the
   ranks mc_test_ranks forks later. */
int mc_test_gpu_count(void) {
  static int cached = -1;
  const char *req = getenv("MC_TEST_REQUIRE_GPU");
  if (cached >= 0) return cached;
  cached = 0;
#if MC_WITH_CUDA
  {
    int fds[2];
    pid_t pid;
    if (pipe(fds) == 0) {
      fflush(stdout);
      fflush(stderr);
      pid = fork();
      if (pid == 0) {
        int n = 0;
        close(fds[0]);
        if (cudaGetDeviceCount(&n) != cudaSuccess) n = 0;
        if (write(fds[1], &n, sizeof(n)) != (ssize_t)sizeof(n)) _exit(1);
        _exit(0);
      }
      close(fds[1]);
      if (pid > 0) {
        int n = 0, st = 0;
        ssize_t got;
        do got = read(fds[0], &n, sizeof(n));
        while (got < 0 && errno == EINTR);
        while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
        }
        if (got == (ssize_t)sizeof(n) && n > 0) cached = n;
      }
      close(fds[0]);
    }
  }
#endif
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

/* ---- data ------------------------------------------------------------------------------ */

uint64_t mc_test_rand(uint64_t *state) {
  uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

static uint32_t f32_bits(float f) {
  uint32_t u;
  memcpy(&u, &f, sizeof(u));
  return u;
}

static float bits_f32(uint32_t u) {
  float f;
  memcpy(&f, &u, sizeof(f));
  return f;
}

uint16_t mc_test_to_bf16(float f) {
  uint32_t u = f32_bits(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x0040u); /* quiet NaN */
  u += 0x7fffu + ((u >> 16) & 1u); /* round to nearest, ties to even; overflows to inf */
  return (uint16_t)(u >> 16);
}

float mc_test_from_bf16(uint16_t b) { return bits_f32((uint32_t)b << 16); }

uint16_t mc_test_to_half(float f) {
  uint32_t u = f32_bits(f);
  uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
  uint32_t a = u & 0x7fffffffu;
  if (a > 0x7f800000u) return (uint16_t)(sign | 0x7e00u);  /* NaN */
  if (a >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u); /* >= 65520 rounds to inf */
  if (a < 0x38800000u) {
    /* Subnormal half (or zero): the value in units of 2^-24, rounded to nearest even. */
    uint32_t exp = a >> 23;
    uint32_t mant, shift, q, rem, half;
    if (exp < 102) return sign; /* below half of the smallest subnormal */
    mant = (a & 0x7fffffu) | 0x800000u;
    shift = 126 - exp; /* value = mant * 2^(exp-150) = q * 2^-24 */
    q = mant >> shift;
    rem = mant & ((1u << shift) - 1u);
    half = 1u << (shift - 1);
    if (rem > half || (rem == half && (q & 1u))) q++;
    return (uint16_t)(sign | q);
  }
  {
    uint32_t r = a + 0xfffu + ((a >> 13) & 1u); /* ties to even on the 13 dropped bits */
    return (uint16_t)(sign | ((r - 0x38000000u) >> 13));
  }
}

float mc_test_from_half(uint16_t h) {
  uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1fu;
  uint32_t mant = h & 0x3ffu;
  if (exp == 0x1f) return bits_f32(sign | 0x7f800000u | (mant << 13));
  if (exp == 0) {
    float v = (float)mant * (1.0f / 16777216.0f); /* mant * 2^-24, exact */
    return sign ? -v : v;
  }
  return bits_f32(sign | ((exp + 112u) << 23) | (mant << 13));
}

void mc_test_fill(void *buf, size_t n, moecomm_dtype_t dtype, uint64_t seed) {
  uint64_t st = seed * 0x2545f4914f6cdd1dull + 0x632be59bd9b4e019ull;
  /* Non-zero integers in [-m, m]: 64 ranks' sum stays within the dtype's exact integers
     (bf16 has 8 significant bits: |sum| <= 256; fp16 11 bits: 512 fits). */
  int m = dtype == MOECOMM_BFLOAT16 ? 4 : 8;
  for (size_t i = 0; i < n; i++) {
    int v = (int)(mc_test_rand(&st) % (uint64_t)(2 * m)) - m; /* [-m, m-1] */
    if (v >= 0) v++;                                           /* [-m, -1] u [1, m] */
    switch (dtype) {
      case MOECOMM_FLOAT32: ((float *)buf)[i] = (float)v; break;
      case MOECOMM_FLOAT16: ((uint16_t *)buf)[i] = mc_test_to_half((float)v); break;
      case MOECOMM_BFLOAT16: ((uint16_t *)buf)[i] = mc_test_to_bf16((float)v); break;
      case MOECOMM_INT32: ((int32_t *)buf)[i] = v; break;
      default: return;
    }
  }
}

double mc_test_get(const void *buf, size_t i, moecomm_dtype_t dtype) {
  switch (dtype) {
    case MOECOMM_FLOAT32: return ((const float *)buf)[i];
    case MOECOMM_FLOAT16: return mc_test_from_half(((const uint16_t *)buf)[i]);
    case MOECOMM_BFLOAT16: return mc_test_from_bf16(((const uint16_t *)buf)[i]);
    case MOECOMM_INT32: return ((const int32_t *)buf)[i];
    default: return NAN;
  }
}
