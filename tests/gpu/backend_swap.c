/* backend_swap.c (GPU) - the same binary, run with MOECOMM_BACKEND=nccl, =custom and nccl with a
 * per-group override MOECOMM_BACKEND_TP=custom, reports those backends in group stats and
 * computes bit-identical results.  The CPU variant is tests/abi/backend_swap.c.
 *
 * This binary runs itself as a worker (--worker) once per setting: 2 ranks on 2 GPUs (tp 2,
 * ep 2) run all-reduces of several sizes (small ones are the custom kernels' range), an
 * all-gather and a reduce-scatter on device buffers, check every element exactly against the
 * inputs the peers' seeds give (outputs poisoned before each call), and rank 0 prints a digest of
 * all outputs and the backend each group reports.  Skips visibly without 2 GPUs. */
#include <cuda_runtime_api.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../host_shim/lib/data.h"
#include "../common/harness.h"

#define NRANKS 2
#define MAXN ((size_t)1 << 18)

static uint64_t fnv(uint64_t h, const void *p, size_t n) {
  const unsigned char *b = p;
  for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * 0x100000001b3ull;
  return h;
}

typedef struct op {
  const char *name;
  moecomm_group_kind_t group;
  int kind; /* 0 all_reduce, 1 all_gather, 2 reduce_scatter */
  moecomm_dtype_t dtype;
  size_t n; /* elements per rank (send of all_reduce / all_gather, recv of reduce_scatter) */
} op_t;

static const op_t ops[] = {
    {"all_reduce fp32 1Ki on TP", MOECOMM_GROUP_TP, 0, MOECOMM_FLOAT32, 1024},
    {"all_reduce bf16 8Ki on TP", MOECOMM_GROUP_TP, 0, MOECOMM_BFLOAT16, 8192},
    {"all_reduce fp16 100003 on TP", MOECOMM_GROUP_TP, 0, MOECOMM_FLOAT16, 100003},
    {"all_reduce fp32 256Ki on TP", MOECOMM_GROUP_TP, 0, MOECOMM_FLOAT32, MAXN},
    {"all_reduce bf16 4Ki on MOE_EP", MOECOMM_GROUP_MOE_EP, 0, MOECOMM_BFLOAT16, 4096},
    {"all_gather int32 on WORLD", MOECOMM_GROUP_WORLD, 1, MOECOMM_INT32, 3001},
    {"reduce_scatter fp32 on TP", MOECOMM_GROUP_TP, 2, MOECOMM_FLOAT32, 5003},
};

static void input(void *buf, size_t n, moecomm_dtype_t dt, int op, int r) {
  mc_test_fill(buf, n, dt, 7000u * (unsigned)op + (unsigned)r + 11u);
}

static int worker_rank(int rank, int world, void *arg) {
  const moecomm_api_t *api = mc_test_plugin();
  moecomm_topology_t topo = mc_test_topo(world, rank, world);
  moecomm_context_params_t p;
  moecomm_context_t *ctx = NULL;
  cudaStream_t s = NULL;
  void *dsend = NULL, *drecv = NULL;
  size_t bytes = MAXN * 4 * NRANKS;
  unsigned char *hsend = malloc(bytes), *hrecv = malloc(bytes), *peer = malloc(bytes * NRANKS);
  uint64_t digest = 0xcbf29ce484222325ull;
  moecomm_result_t r;
  (void)arg;
  topo.ep = 2;
  p = mc_test_ctx_params(&topo, rank);
  if (!MC_CHECK(hsend && hrecv && peer, "host malloc")) goto out;
  r = api->context_create(&p, &ctx);
  if (!MC_CHECK_RC(api, NULL, r, MOECOMM_SUCCESS)) goto out;
  if (!MC_CUDA_OK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking)) ||
      !MC_CUDA_OK(cudaMalloc(&dsend, bytes)) || !MC_CUDA_OK(cudaMalloc(&drecv, bytes)))
    goto out;
  for (size_t k = 0; k < sizeof(ops) / sizeof(ops[0]); k++) {
    const op_t *o = &ops[k];
    moecomm_group_t *g = NULL;
    moecomm_group_stats_t st;
    size_t es = shim_dtype_size(o->dtype), n_in = o->n, n_out = o->n;
    long bad = -1;
    if (!MC_CHECK_RC(api, ctx, api->group_get(ctx, o->group, &g), MOECOMM_SUCCESS)) continue;
    memset(&st, 0, sizeof(st));
    st.struct_size = sizeof(st);
    if (!MC_CHECK_RC(api, ctx, api->group_stats(g, &st), MOECOMM_SUCCESS)) continue;
    if (o->kind == 1) n_out = o->n * (size_t)st.size;
    if (o->kind == 2) n_in = o->n * (size_t)st.size;
    input(hsend, n_in, o->dtype, (int)k, rank);
    if (!MC_CUDA_OK(cudaMemcpyAsync(dsend, hsend, n_in * es, cudaMemcpyHostToDevice, s)) ||
        !MC_CUDA_OK(cudaMemsetAsync(drecv, 0x7f, n_out * es, s))) /* outside every input range */
      continue;
    switch (o->kind) {
      case 0: r = api->all_reduce(g, dsend, drecv, o->n, o->dtype, MOECOMM_SUM, s); break;
      case 1: r = api->all_gather(g, dsend, drecv, o->n, o->dtype, s); break;
      default: r = api->reduce_scatter(g, dsend, drecv, o->n, o->dtype, MOECOMM_SUM, s); break;
    }
    if (!MC_CHECK_RC(api, ctx, r, MOECOMM_SUCCESS)) continue;
    if (!MC_CUDA_OK(cudaMemcpyAsync(hrecv, drecv, n_out * es, cudaMemcpyDeviceToHost, s)) ||
        !MC_CUDA_OK(cudaStreamSynchronize(s)))
      continue;
    for (int m = 0; m < st.size && m < NRANKS; m++)
      input(peer + (size_t)m * bytes, n_in, o->dtype, (int)k, st.ranks[m]);
    for (size_t i = 0; i < n_out && bad < 0; i++) {
      double want = 0;
      if (o->kind == 1) {
        want = mc_test_get(peer + (i / o->n) * bytes, i % o->n, o->dtype);
      } else {
        size_t at = o->kind == 2 ? (size_t)st.rank * o->n + i : i;
        for (int m = 0; m < st.size; m++)
          want += mc_test_get(peer + (size_t)m * bytes, at, o->dtype);
      }
      if (mc_test_get(hrecv, i, o->dtype) != want) bad = (long)i;
    }
    MC_CHECK(bad < 0, "%s: element %ld is %g, not the exact result", o->name, bad,
             bad >= 0 ? mc_test_get(hrecv, (size_t)bad, o->dtype) : 0.0);
    digest = fnv(digest, hrecv, n_out * es);
    /* The backend that served this group's all-reduce so far. */
    if (MC_CHECK_RC(api, ctx, api->group_stats(g, &st), MOECOMM_SUCCESS) && rank == 0)
      printf("RESULT backend %s %s\n", st.kind_name, st.backend_name);
  }
  if (rank == 0) printf("RESULT digest %016llx\n", (unsigned long long)digest);
  fflush(stdout);
out:
  if (s != NULL) cudaStreamSynchronize(s);
  if (ctx != NULL) api->context_destroy(ctx);
  if (dsend != NULL) cudaFree(dsend);
  if (drecv != NULL) cudaFree(drecv);
  if (s != NULL) cudaStreamDestroy(s);
  free(hsend);
  free(hrecv);
  free(peer);
  return 0;
}

typedef struct setting {
  const char *env;
  const char *tp, *world; /* the backends TP and WORLD must report */
} setting_t;

static const setting_t settings[] = {
    {"MOECOMM_BACKEND=nccl", "nccl", "nccl"},
    {"MOECOMM_BACKEND=custom", "custom", "custom"},
    {"MOECOMM_BACKEND=nccl MOECOMM_BACKEND_TP=custom", "custom", "nccl"},
};

/* The last backend reported for `kind` in the worker's output, into out. */
static void reported(const char *text, const char *kind, char *out, size_t n) {
  char key[64];
  const char *p = text, *hit = NULL;
  snprintf(key, sizeof(key), "RESULT backend %s ", kind);
  while ((p = strstr(p, key)) != NULL) hit = p++;
  out[0] = '\0';
  if (hit != NULL) sscanf(hit + strlen(key), "%31s", out);
}

int main(int argc, char **argv) {
  char self[PATH_MAX], cmd[PATH_MAX * 2], digest0[64] = "";
  static char out[1 << 16];
  ssize_t len;
  mc_test_init("backend_swap", argc, argv);
  if (argc > 1 && strcmp(argv[1], "--worker") == 0) {
    mc_test_ranks(NRANKS, worker_rank, NULL, 300);
    return mc_test_finish();
  }
  if (!mc_test_need_gpus(NRANKS)) return mc_test_finish();
  len = readlink("/proc/self/exe", self, sizeof(self) - 1);
  if (!MC_CHECK(len > 0, "cannot read /proc/self/exe")) return mc_test_finish();
  self[len] = '\0';
  for (size_t i = 0; i < sizeof(settings) / sizeof(settings[0]); i++) {
    const setting_t *st = &settings[i];
    char tp[32], world[32], digest[64] = "";
    const char *d;
    int rc;
    snprintf(cmd, sizeof(cmd),
             "env -u MOECOMM_BACKEND -u MOECOMM_BACKEND_TP NCCL_NVLS_ENABLE=0 %s '%s' --worker",
             st->env, self);
    rc = mc_test_shell(cmd, out, sizeof(out));
    /* Indented, so that the worker's own TESTSUM line is not taken for this binary's. */
    printf("--- worker [%s]:\n", st->env);
    for (const char *l = out; *l != '\0';) {
      const char *e = strchr(l, '\n');
      int ll = e != NULL ? (int)(e - l) : (int)strlen(l);
      printf("  | %.*s\n", ll, l);
      l += ll + (e != NULL);
    }
    if (!MC_CHECK(rc == 0 && strstr(out, "TESTSUM") != NULL, "[%s] worker exit status %d", st->env,
                  rc))
      continue;
    reported(out, "TP", tp, sizeof(tp));
    reported(out, "WORLD", world, sizeof(world));
    MC_CHECK(strcmp(tp, st->tp) == 0, "[%s] TP reports backend '%s', want %s", st->env, tp, st->tp);
    MC_CHECK(strcmp(world, st->world) == 0, "[%s] WORLD reports backend '%s', want %s", st->env,
             world, st->world);
    d = strstr(out, "RESULT digest ");
    if (!MC_CHECK(d != NULL, "[%s] no digest", st->env)) continue;
    sscanf(d + 14, "%63s", digest);
    if (digest0[0] == '\0')
      snprintf(digest0, sizeof(digest0), "%s", digest);
    else
      MC_CHECK(strcmp(digest, digest0) == 0, "[%s] results differ: digest %s, first %s", st->env,
               digest, digest0);
  }
  return mc_test_finish();
}
