/* custom_allreduce.c - the custom all-reduce called eagerly, 2 ranks on 2 GPUs, every algorithm.
 *
 * One context per MOECOMM_ALGO value (auto, ll, oneshot, twoshot; staging raised so that every
 * size below runs on the custom path), on the TP group.  Cases: fp32, fp16 and bf16 at 1, 7, 8,
 * 4095, 65537 and 1 M elements; 16 M and 32 M elements in bf16 and fp32; max and min; pointers
 * offset by 2 and 4 bytes (an fp32 buffer at +2 is not even element-aligned); in place.  Inputs
 * are random and non-zero (integers or reals), outputs are poisoned (0xff) with guard bytes on both
 * sides that must survive, and every result is compared bit for bit with the float64 reference.
 * Back-to-back calls on one communicator exercise the epoch flags and the staging halves.
 *
 * --small: a short run for compute-sanitizer (custom_sanitizer.c): small counts, each forced
 * algorithm, and a captured graph of two two-shot all-reduces (registered buffers, in place). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "custom_util.h"

#define NRANKS 2
#define GUARD 64 /* bytes on each side of every buffer that must stay poisoned */

static int g_small;

typedef struct test_case {
  moecomm_dtype_t dt;
  moecomm_redop_t op;
  size_t count;
  int in_off, out_off; /* bytes past a 16-byte aligned address */
  int inplace;
  int kind; /* cu_fill kind */
} test_case_t;

typedef struct bufs {
  char *din, *dout; /* device, cap + 2 * GUARD bytes each */
  void *in[NRANKS]; /* host inputs of every rank */
  void *want, *got; /* host reference, and the output buffer read back */
  size_t cap;       /* largest payload in bytes */
} bufs_t;

static int bufs_alloc(bufs_t *b, size_t cap) {
  memset(b, 0, sizeof(*b));
  b->cap = cap;
  if (!MC_CUDA_OK(cudaMalloc((void **)&b->din, cap + 2 * GUARD)) ||
      !MC_CUDA_OK(cudaMalloc((void **)&b->dout, cap + 2 * GUARD)))
    return 0;
  for (int r = 0; r < NRANKS; r++) b->in[r] = malloc(cap);
  b->want = malloc(cap);
  b->got = malloc(cap + 2 * GUARD);
  return MC_CHECK(b->in[0] && b->in[1] && b->want && b->got, "host buffers of %zu bytes", cap);
}

static void bufs_free(bufs_t *b) {
  cudaFree(b->din);
  cudaFree(b->dout);
  for (int r = 0; r < NRANKS; r++) free(b->in[r]);
  free(b->want);
  free(b->got);
  memset(b, 0, sizeof(*b));
}

/* Guard bytes around [lo, hi) of the read-back buffer still hold the poison. */
static int guards_intact(const unsigned char *buf, size_t lo, size_t hi, size_t total,
                         const char *what) {
  for (size_t i = 0; i < total; i++) {
    if (i >= lo && i < hi) continue;
    if (buf[i] != 0xff)
      return MC_CHECK(0, "%s: byte %ld relative to the output's start was overwritten (0x%02x)",
                      what, (long)i - (long)lo, buf[i]);
  }
  return 1;
}

static int run_case(const moecomm_api_t *api, moecomm_context_t *ctx, moecomm_group_t *g,
                    cudaStream_t s, int rank, bufs_t *b, const test_case_t *c, uint64_t seed,
                    const char *algo) {
  const size_t es = shim_dtype_size(c->dt), bytes = c->count * es;
  const size_t total = bytes + 2 * GUARD;
  char *send = b->din + GUARD + c->in_off;
  char *recv = c->inplace ? send : b->dout + GUARD + c->out_off;
  char *obase = c->inplace ? b->din : b->dout;
  const size_t lo = (size_t)(recv - obase);
  char what[160];
  moecomm_result_t rc;

  snprintf(what, sizeof(what), "%s %s %s count %zu in+%d out+%d%s", algo, shim_dtype_name(c->dt),
           c->op == MOECOMM_SUM   ? "sum"
           : c->op == MOECOMM_MAX ? "max"
                                  : "min",
           c->count, c->in_off, c->inplace ? c->in_off : c->out_off, c->inplace ? " in place" : "");
  if (!MC_CHECK(bytes + 16 <= b->cap, "%s: case larger than the buffers", what)) return 0;
  for (int r = 0; r < NRANKS; r++)
    cu_fill(b->in[r], c->count, c->dt, c->kind, seed * 16 + (uint64_t)r);
  cu_reference(b->want, b->in, NRANKS, c->count, c->dt, c->op);
  if (!MC_CUDA_OK(cudaMemsetAsync(obase, 0xff, total + 16, s)) ||
      !MC_CUDA_OK(cudaMemcpyAsync(send, b->in[rank], bytes, cudaMemcpyHostToDevice, s)))
    return 0;
  rc = api->all_reduce(g, send, recv, c->count, c->dt, c->op, s);
  if (!MC_CHECK_RC(api, ctx, rc, MOECOMM_SUCCESS)) return 0;
  if (!MC_CUDA_OK(cudaStreamSynchronize(s)) ||
      !MC_CUDA_OK(cudaMemcpy(b->got, obase, total + 16, cudaMemcpyDeviceToHost)))
    return 0;
  if (!guards_intact(b->got, lo, lo + bytes, total + 16, what)) return 0;
  return cu_compare((char *)b->got + lo, b->want, c->count, c->dt, what);
}

/* A captured graph of two two-shot all-reduces (MOECOMM_ALGO=twoshot), replayed 3 times. */
static int run_graph_small(const moecomm_api_t *api, moecomm_context_t *ctx, moecomm_group_t *g,
                           cudaStream_t s, int rank, bufs_t *b) {
  const size_t n1 = 4099, n2 = 257; /* bf16 out of place, fp32 in place */
  char *in1 = b->din + GUARD, *out1 = b->dout + GUARD;
  char *io2 = b->din + GUARD + 65536;
  void *ins2[NRANKS];
  cudaGraph_t graph = NULL;
  cudaGraphExec_t exec = NULL;
  int ok = 0;
  moecomm_result_t rc;
  for (int r = 0; r < NRANKS; r++) ins2[r] = (char *)b->in[r] + 65536;
  if (!MC_CHECK_RC(api, ctx, api->capture_begin(ctx, s), MOECOMM_SUCCESS)) return 0;
  if (!MC_CUDA_OK(cudaStreamBeginCapture(s, cudaStreamCaptureModeGlobal))) return 0;
  rc = api->all_reduce(g, in1, out1, n1, MOECOMM_BFLOAT16, MOECOMM_SUM, s);
  MC_CHECK_RC(api, ctx, rc, MOECOMM_SUCCESS);
  rc = api->all_reduce(g, io2, io2, n2, MOECOMM_FLOAT32, MOECOMM_SUM, s);
  MC_CHECK_RC(api, ctx, rc, MOECOMM_SUCCESS);
  if (!MC_CUDA_OK(cudaStreamEndCapture(s, &graph))) return 0;
  if (!MC_CHECK_RC(api, ctx, api->capture_end(ctx, s), MOECOMM_SUCCESS)) goto out;
  if (!MC_CUDA_OK(cudaGraphInstantiate(&exec, graph, 0))) goto out;
  for (int rep = 0; rep < 3; rep++) {
    char *want2 = malloc(n2 * 4);
    if (!MC_CHECK(want2 != NULL, "malloc")) goto out;
    for (int r = 0; r < NRANKS; r++) {
      cu_fill(b->in[r], n1, MOECOMM_BFLOAT16, 1, 900 + (uint64_t)rep * 4 + (uint64_t)r);
      cu_fill(ins2[r], n2, MOECOMM_FLOAT32, 0, 950 + (uint64_t)rep * 4 + (uint64_t)r);
    }
    cu_reference(b->want, b->in, NRANKS, n1, MOECOMM_BFLOAT16, MOECOMM_SUM);
    cu_reference(want2, ins2, NRANKS, n2, MOECOMM_FLOAT32, MOECOMM_SUM);
    ok = MC_CUDA_OK(cudaMemsetAsync(out1, 0xff, n1 * 2, s)) &&
         MC_CUDA_OK(cudaMemcpyAsync(in1, b->in[rank], n1 * 2, cudaMemcpyHostToDevice, s)) &&
         MC_CUDA_OK(cudaMemcpyAsync(io2, ins2[rank], n2 * 4, cudaMemcpyHostToDevice, s)) &&
         MC_CUDA_OK(cudaGraphLaunch(exec, s)) && MC_CUDA_OK(cudaStreamSynchronize(s)) &&
         MC_CUDA_OK(cudaMemcpy(b->got, out1, n1 * 2, cudaMemcpyDeviceToHost)) &&
         cu_compare(b->got, b->want, n1, MOECOMM_BFLOAT16, "graph: two-shot bf16 4099") &&
         MC_CUDA_OK(cudaMemcpy(b->got, io2, n2 * 4, cudaMemcpyDeviceToHost)) &&
         cu_compare(b->got, want2, n2, MOECOMM_FLOAT32, "graph: fp32 257 in place");
    free(want2);
    if (!ok) goto out;
  }
out:
  if (exec) cudaGraphExecDestroy(exec);
  if (graph) cudaGraphDestroy(graph);
  return ok;
}

static int run_algo(const moecomm_api_t *api, int rank, const char *algo, bufs_t *b) {
  const char *env[] = {
      "MOECOMM_ALGO", algo, "MOECOMM_CUSTOM_BUFFER_BYTES", "256M", "MOECOMM_CUSTOM_MAX_BYTES",
      "128M",         NULL};
  const char *env_small[] = {"MOECOMM_ALGO", algo, NULL};
  static const moecomm_dtype_t dts[3] = {MOECOMM_FLOAT32, MOECOMM_FLOAT16, MOECOMM_BFLOAT16};
  static const size_t counts[6] = {1, 7, 8, 4095, 65537, 1u << 20};
  moecomm_context_t *ctx = cu_context(api, rank, NRANKS, 0, g_small ? env_small : env);
  moecomm_group_t *g;
  moecomm_group_stats_t st;
  cudaStream_t s = NULL;
  uint64_t seed = (uint64_t)(algo[0] + 7 * algo[1]) * 100000;
  int ok = 1;
  if (ctx == NULL) return 0;
  if ((g = cu_group(api, ctx, MOECOMM_GROUP_TP)) == NULL ||
      !MC_CUDA_OK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking))) {
    ok = 0;
    goto out;
  }

  if (g_small) {
    /* compute-sanitizer: a few cases per path, each kernel kind and alignment once */
    static const test_case_t small[] = {
        {MOECOMM_FLOAT32, MOECOMM_SUM, 1, 0, 0, 0, 0},
        {MOECOMM_FLOAT32, MOECOMM_SUM, 4095, 0, 0, 0, 1},
        {MOECOMM_FLOAT32, MOECOMM_SUM, 65537, 0, 0, 0, 0},
        {MOECOMM_BFLOAT16, MOECOMM_SUM, 7, 0, 0, 0, 1},
        {MOECOMM_BFLOAT16, MOECOMM_MAX, 4095, 0, 0, 0, 1},
        {MOECOMM_BFLOAT16, MOECOMM_SUM, 4095, 2, 4, 0, 1},
        {MOECOMM_FLOAT32, MOECOMM_SUM, 4095, 0, 0, 1, 0},
    };
    for (size_t k = 0; k < sizeof(small) / sizeof(small[0]) && ok; k++)
      ok = run_case(api, ctx, g, s, rank, b, &small[k], ++seed, algo);
    goto done;
  }
  for (int d = 0; d < 3 && ok; d++) {
    for (int k = 0; k < 6 && ok; k++) {
      test_case_t c = {dts[d], MOECOMM_SUM, counts[k], 0, 0, 0, k & 1};
      ok = run_case(api, ctx, g, s, rank, b, &c, ++seed, algo);
    }
  }
  for (int d = 0; d < 3 && ok; d += 2) {
    for (int op = MOECOMM_MAX; op <= MOECOMM_MIN && ok; op++) {
      test_case_t c = {dts[d], (moecomm_redop_t)op, 65537, 0, 0, 0, 1};
      ok = run_case(api, ctx, g, s, rank, b, &c, ++seed, algo);
    }
  }
  {
    static const int offs[3][2] = {{2, 4}, {4, 2}, {2, 2}};
    static const size_t oc[3] = {7, 4095, 65537};
    for (int o = 0; o < 3 && ok; o++)
      for (int d = 0; d < 3 && ok; d += 2)
        for (int k = 0; k < 3 && ok; k++) {
          test_case_t c = {dts[d], MOECOMM_SUM, oc[k], offs[o][0], offs[o][1], 0, 1};
          ok = run_case(api, ctx, g, s, rank, b, &c, ++seed, algo);
        }
  }
  {
    static const size_t ic[3] = {4095, 65537, 1u << 20};
    for (int d = 0; d < 3 && ok; d++)
      for (int k = 0; k < 3 && ok; k++) {
        test_case_t c = {dts[d], MOECOMM_SUM, ic[k], k == 1 ? 4 : 0, 0, 1, 0};
        ok = run_case(api, ctx, g, s, rank, b, &c, ++seed, algo);
      }
  }
  if (strcmp(algo, "ll") != 0) {
    static const size_t lc[2] = {16u << 20, 32u << 20};
    for (int k = 0; k < 2 && ok; k++)
      for (int d = 0; d < 3 && ok; d += 2) {
        test_case_t c = {dts[d], MOECOMM_SUM, lc[k], 0, 0, k == 1 && d == 2, 0};
        ok = run_case(api, ctx, g, s, rank, b, &c, ++seed, algo);
      }
  }
done:
  if (g_small && ok && strcmp(algo, "twoshot") == 0) ok = run_graph_small(api, ctx, g, s, rank, b);

  /* the group kept the custom backend and its memory is accounted */
  memset(&st, 0, sizeof(st));
  st.struct_size = sizeof(st);
  if (MC_CHECK_RC(api, ctx, api->group_stats(g, &st), MOECOMM_SUCCESS))
    MC_CHECK(strcmp(st.backend_name, "custom") == 0 && st.created && st.device_bytes > 0,
             "%s: TP backend %s, created %d, %llu device bytes", algo, st.backend_name,
             (int)st.created, (unsigned long long)st.device_bytes);
out:
  if (s) cudaStreamDestroy(s);
  MC_CHECK_RC(api, ctx, api->context_destroy(ctx), MOECOMM_SUCCESS);
  return ok;
}

static int rank_main(int rank, int world, void *arg) {
  static const char *const algos[] = {"auto", "ll", "oneshot", "twoshot"};
  const moecomm_api_t *api;
  bufs_t b;
  (void)world;
  (void)arg;
  setenv("NCCL_NVLS_ENABLE", "0", 1);
  api = mc_test_plugin();
  if (!MC_CUDA_OK(cudaSetDevice(rank))) return 1;
  if (!bufs_alloc(&b, g_small ? (1u << 20) : (128u << 20) + 64)) return 1;
  for (int a = g_small ? 1 : 0; a < 4; a++)
    if (!run_algo(api, rank, algos[a], &b)) break;
  bufs_free(&b);
  return 0;
}

int main(int argc, char **argv) {
  g_small = argc > 1 && strcmp(argv[1], "--small") == 0;
  mc_test_init("custom_allreduce", argc, argv);
  if (!mc_test_need_gpus(NRANKS)) return mc_test_finish();
  mc_test_ranks(NRANKS, rank_main, NULL, g_small ? 900 : 300);
  return mc_test_finish();
}
