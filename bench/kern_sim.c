/* SPDX-License-Identifier: Apache-2.0 */
/* kern_sim.c - per-op time of the all-reduce kernels and the fused all-reduce + RMSNorm with
 * SIMULATED members: both members of a 2-member communicator live on ONE GPU (own segment, own
 * stream), so they share its SMs and its HBM.  This measures the kernels' overheads (launch,
 * flags, waits, grid), not NVLink: a 2-GPU number it is not.  (MC_KERN_SIM_GPUS=2 puts member m
 * on GPU m with peer access instead, one process; labelled as such.)  Standalone: CUDA and
 * kernels/ only.
 *
 * Method: per variant and size a CUDA graph of 20 back-to-back calls of both members (member
 * m's calls on its stream, forked from and joined to a capture stream) is replayed once to warm
 * up and then 15 times, each replay timed with CUDA events; the time per op is the median replay
 * / 20.  No programmatic dependent launch (MC_KERN_SIM_PDL=1 turns it on): on one GPU a call's
 * early blocks could take the SMs its partner still needs.  Grids are capped at 64 blocks.
 * After timing, every all-reduce output is compared with the C reference of the deterministic
 * rule (mc_kern_ref_all_reduce), and fused outputs up to T = 512 with mc_kern_ref_add_rmsnorm
 * after one more eager call from a fresh residual; the count of wrong elements is printed.
 *
 * Segments as the custom backend's defaults: LL payload 256 KiB, staging halves 64 MiB (so the
 * eager one-shot and two-shot reach 64 MB).
 * All-reduce, bf16, 1 KB .. 64 MB (x4): ll (<= 256 KiB), oneshot, twoshot (staging), twoshot-table
 * (the captured form on registered buffers), twoshot-push, oneshot-push.
 * Fused, bf16, T in {1, 8, 64, 512, 4096} x H in {4096, 7168}: ll (where T * H * 4 bytes fit the
 * LL slot), oneshot-push, twoshot-push, ll+fp8, twoshot-push+fp8, and "ar-best": the fastest
 * plain all-reduce of the same T * H elements, for comparison.
 * Output: two tables; JSON to $BENCH_OUT when set. */
#include <stdio.h>
#include <stdlib.h>

#if !MC_WITH_CUDA
int main(void) {
  printf("SKIP kern_sim: this build has no CUDA support\n");
  return 0;
}
#else

#include <cuda_runtime_api.h>
#include <string.h>

#include "../abi/moecomm.h"
#include "../kernels/mc_kernels.h"
#include "../kernels/mc_rmsnorm.h"
#include "../kernels/mc_shape.h"
#include "../kernels/rmsnorm_ref.h"

#define N 2
#define OPS 20
#define REPLAYS 15
#define NSIZES 9
#define MAX_BYTES ((size_t)64 << 20)
#define LL_PAYLOAD ((size_t)256 << 10)
#define STAGE_HALF ((size_t)64 << 20)
#define NPLAIN 6
#define NFUSED 5
#define MAXT 4096
#define MAXH 7168

static const char *const kPlain[NPLAIN] = {
    "ll", "oneshot", "twoshot", "twoshot-table", "twoshot-push", "oneshot-push"};
static const int kPlainAlgo[NPLAIN] = {MC_KERN_LL,      MC_KERN_ONESHOT,      MC_KERN_TWOSHOT,
                                       MC_KERN_TWOSHOT, MC_KERN_TWOSHOT_PUSH, MC_KERN_ONESHOT_PUSH};
static const char *const kFused[NFUSED] = {"ll", "oneshot-push", "twoshot-push", "ll+fp8",
                                           "twoshot-push+fp8"};
static const int kFusedAlgo[NFUSED] = {MC_KERN_LL, MC_KERN_ONESHOT_PUSH, MC_KERN_TWOSHOT_PUSH,
                                       MC_KERN_LL, MC_KERN_TWOSHOT_PUSH};
static const size_t kT[5] = {1, 8, 64, 512, 4096};
static const size_t kH[2] = {4096, 7168};

#define TRY(call)                                                                           \
  do {                                                                                      \
    cudaError_t e_ = (call);                                                                \
    if (e_ != cudaSuccess) {                                                                \
      fprintf(stderr, "kern_sim: %s failed: %s (line %d)\n", #call, cudaGetErrorString(e_), \
              __LINE__);                                                                    \
      exit(1);                                                                              \
    }                                                                                       \
  } while (0)

typedef struct sim {
  int ngpu, pdl, dev[N];
  char *seg[N];
  size_t ll_off, stage_off, seg_bytes;
  mc_kern_err_t *err_h[N], *err_d[N];
  cudaStream_t s[N], cap;
  cudaEvent_t fork, join[N], ev[REPLAYS + 1];
  mc_kern_ptrs_t *table[N];
  uint16_t *in[N], *out[N], *res[N], *w;
  uint8_t *q[N];
  float *sc[N];
  uint16_t *hin[N], *hres, *hw, *want, *want_res, *got;
} sim_t;

static void sim_open(sim_t *s) {
  mc_kern_state_t st;
  const char *g = getenv("MC_KERN_SIM_GPUS"), *p = getenv("MC_KERN_SIM_PDL");
  int have = 0;
  memset(s, 0, sizeof(*s));
  TRY(cudaGetDeviceCount(&have));
  s->ngpu = g != NULL && atoi(g) == 2 && have >= 2 ? 2 : 1;
  s->pdl = p != NULL && atoi(p) == 1;
  s->ll_off = MC_KERN_HEADER_BYTES;
  s->stage_off = (s->ll_off + 2 * N * 2 * LL_PAYLOAD + 4095) & ~(size_t)4095;
  s->seg_bytes = s->stage_off + 2 * STAGE_HALF;
  memset(&st, 0, sizeof(st));
  st.epoch = 1;
  for (int m = 0; m < N; m++) {
    s->dev[m] = m % s->ngpu;
    TRY(cudaSetDevice(s->dev[m]));
    if (s->ngpu == 2) {
      int can = 0;
      TRY(cudaDeviceCanAccessPeer(&can, s->dev[m], 1 - s->dev[m]));
      if (!can) {
        fprintf(stderr, "kern_sim: no peer access between GPU 0 and 1\n");
        exit(1);
      }
      TRY(cudaDeviceEnablePeerAccess(1 - s->dev[m], 0));
    }
    TRY(cudaMalloc((void **)&s->seg[m], s->seg_bytes));
    TRY(cudaMemset(s->seg[m], 0, s->seg_bytes));
    TRY(cudaMemcpy(s->seg[m] + MC_KERN_STATE_OFF, &st, sizeof(st), cudaMemcpyHostToDevice));
    TRY(cudaHostAlloc((void **)&s->err_h[m], sizeof(mc_kern_err_t), cudaHostAllocMapped));
    memset(s->err_h[m], 0, sizeof(mc_kern_err_t));
    TRY(cudaHostGetDevicePointer((void **)&s->err_d[m], s->err_h[m], 0));
    TRY(cudaStreamCreateWithFlags(&s->s[m], cudaStreamNonBlocking));
    TRY(cudaEventCreateWithFlags(&s->join[m], cudaEventDisableTiming));
    TRY(cudaMalloc((void **)&s->table[m], sizeof(mc_kern_ptrs_t)));
    TRY(cudaMalloc((void **)&s->in[m], MAX_BYTES));
    TRY(cudaMalloc((void **)&s->out[m], MAX_BYTES));
    TRY(cudaMalloc((void **)&s->res[m], MAX_BYTES));
    TRY(cudaMalloc((void **)&s->q[m], MAX_BYTES / 2));
    TRY(cudaMalloc((void **)&s->sc[m], MAXT * sizeof(float)));
    s->hin[m] = malloc(MAX_BYTES);
    if (s->hin[m] == NULL) exit(1);
  }
  TRY(cudaSetDevice(0));
  TRY(cudaMalloc((void **)&s->w, MAXH * 2));
  TRY(cudaStreamCreateWithFlags(&s->cap, cudaStreamNonBlocking));
  TRY(cudaEventCreateWithFlags(&s->fork, cudaEventDisableTiming));
  for (int i = 0; i <= REPLAYS; i++) TRY(cudaEventCreate(&s->ev[i]));
  s->hres = malloc(MAX_BYTES);
  s->hw = malloc(MAXH * 2);
  s->want = malloc(MAX_BYTES);
  s->want_res = malloc(MAX_BYTES);
  s->got = malloc(MAX_BYTES);
  if (!s->hres || !s->hw || !s->want || !s->want_res || !s->got) exit(1);
}

/* Inputs: small reals (bf16), the same data for every size (prefixes). */
static void sim_fill(sim_t *s) {
  uint64_t x = 88172645463325252ull;
  const size_t el = MAX_BYTES / 2;
  for (int m = 0; m < N; m++) {
    for (size_t i = 0; i < el; i++) {
      x ^= x << 13, x ^= x >> 7, x ^= x << 17;
      s->hin[m][i] = mc_kern_ref_to_bf16((float)((int)(x % 255) - 127) / 64.0f);
    }
    TRY(cudaMemcpy(s->in[m], s->hin[m], MAX_BYTES, cudaMemcpyHostToDevice));
  }
  for (size_t i = 0; i < el; i++) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    s->hres[i] = mc_kern_ref_to_bf16((float)((int)(x % 255) - 127) / 32.0f);
  }
  for (size_t h = 0; h < MAXH; h++) s->hw[h] = mc_kern_ref_to_bf16(0.5f + (float)(h % 101) / 101);
  TRY(cudaMemcpy(s->w, s->hw, MAXH * 2, cudaMemcpyHostToDevice));
}

/* One call of member m: plain variant v of count elements, or (fused) fused variant v of T x H. */
static void enqueue(sim_t *s, int m, int fused, int v, size_t count, size_t T, size_t H) {
  int e;
  TRY(cudaSetDevice(s->dev[m]));
  if (fused) {
    mc_kern_arn_t a;
    memset(&a, 0, sizeof(a));
    a.algo = kFusedAlgo[v];
    a.dtype = MOECOMM_BFLOAT16;
    a.rank = m;
    a.size = N;
    a.rows = T;
    a.hidden = H;
    a.x = s->in[m];
    a.residual = s->res[m];
    a.weight = s->w;
    a.eps = 1e-6f;
    a.y = s->out[m];
    a.y_fp8 = v >= 3 ? s->q[m] : NULL;
    a.y_scale = v >= 3 ? s->sc[m] : NULL;
    for (int q = 0; q < N; q++) a.seg[q] = s->seg[q];
    a.ll_off = s->ll_off;
    a.ll_slot_bytes = 2 * LL_PAYLOAD;
    a.stage_off = s->stage_off;
    a.stage_half_bytes = STAGE_HALF;
    a.err = s->err_d[m];
    a.timeout_ns = 20000000000ull;
    a.pdl = s->pdl;
    e = mc_kern_ar_rmsnorm(&a, s->s[m]);
  } else {
    mc_kern_ar_t a;
    memset(&a, 0, sizeof(a));
    a.algo = kPlainAlgo[v];
    a.dtype = MOECOMM_BFLOAT16;
    a.op = MOECOMM_SUM;
    a.rank = m;
    a.size = N;
    a.count = count;
    a.in = s->in[m];
    a.out = s->out[m];
    for (int q = 0; q < N; q++) a.seg[q] = s->seg[q];
    a.ll_off = s->ll_off;
    a.ll_slot_bytes = 2 * LL_PAYLOAD;
    a.stage_off = s->stage_off;
    a.stage_half_bytes = STAGE_HALF;
    a.table = v == 3 ? s->table[m] : NULL;
    a.err = s->err_d[m];
    a.timeout_ns = 20000000000ull;
    a.pdl = s->pdl;
    e = mc_kern_all_reduce(&a, s->s[m]);
  }
  if (e != 0) {
    fprintf(stderr, "kern_sim: launch of %s %s failed: %s\n", fused ? "fused" : "plain",
            fused ? kFused[v] : kPlain[v], cudaGetErrorString((cudaError_t)e));
    exit(1);
  }
}

static int cmp_double(const void *a, const void *b) {
  const double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

/* Median us per op of a graph of OPS calls of every member. */
static double time_graph(sim_t *s, int fused, int v, size_t count, size_t T, size_t H) {
  cudaGraph_t g;
  cudaGraphExec_t exec;
  double ms[REPLAYS];
  TRY(cudaSetDevice(0));
  if (!fused && v == 3) { /* register the captured two-shot's buffers */
    mc_kern_ptrs_t ent;
    memset(&ent, 0, sizeof(ent));
    for (int q = 0; q < N; q++) {
      ent.in[q] = s->in[q];
      ent.out[q] = s->out[q];
    }
    for (int m = 0; m < N; m++)
      TRY(cudaMemcpy(s->table[m], &ent, sizeof(ent), cudaMemcpyHostToDevice));
  }
  TRY(cudaStreamBeginCapture(s->cap, cudaStreamCaptureModeGlobal));
  TRY(cudaEventRecord(s->fork, s->cap));
  for (int m = 0; m < N; m++) TRY(cudaStreamWaitEvent(s->s[m], s->fork, 0));
  for (int i = 0; i < OPS; i++)
    for (int m = 0; m < N; m++) enqueue(s, m, fused, v, count, T, H);
  for (int m = 0; m < N; m++) {
    TRY(cudaEventRecord(s->join[m], s->s[m]));
    TRY(cudaStreamWaitEvent(s->cap, s->join[m], 0));
  }
  TRY(cudaSetDevice(0));
  TRY(cudaStreamEndCapture(s->cap, &g));
  TRY(cudaGraphInstantiate(&exec, g, 0));
  TRY(cudaGraphLaunch(exec, s->cap));
  TRY(cudaEventRecord(s->ev[0], s->cap));
  for (int i = 0; i < REPLAYS; i++) {
    TRY(cudaGraphLaunch(exec, s->cap));
    TRY(cudaEventRecord(s->ev[i + 1], s->cap));
  }
  TRY(cudaStreamSynchronize(s->cap));
  for (int i = 0; i < REPLAYS; i++) {
    float t;
    TRY(cudaEventElapsedTime(&t, s->ev[i], s->ev[i + 1]));
    ms[i] = t;
  }
  TRY(cudaGraphExecDestroy(exec));
  TRY(cudaGraphDestroy(g));
  qsort(ms, REPLAYS, sizeof(ms[0]), cmp_double);
  return ms[REPLAYS / 2] * 1000.0 / OPS;
}

static int any_error(const sim_t *s) {
  for (int m = 0; m < N; m++)
    if (s->err_h[m]->code != 0) {
      fprintf(stderr, "kern_sim: member %d recorded error %u (peer %d, algo %u)\n", m,
              s->err_h[m]->code, s->err_h[m]->peer, s->err_h[m]->algo);
      return 1;
    }
  return 0;
}

/* Elements of every member's output that differ from want (count of them). */
static long wrong_of(sim_t *s, uint16_t *const *dev, const uint16_t *want, size_t count) {
  long bad = 0;
  for (int m = 0; m < N; m++) {
    TRY(cudaSetDevice(s->dev[m]));
    TRY(cudaMemcpy(s->got, dev[m], count * 2, cudaMemcpyDeviceToHost));
    for (size_t i = 0; i < count; i++) bad += s->got[i] != want[i];
  }
  return bad;
}

static long verify_plain(sim_t *s, size_t count) {
  const void *ins[N];
  for (int m = 0; m < N; m++) ins[m] = s->hin[m];
  mc_kern_ref_all_reduce(ins, N, count, MOECOMM_BFLOAT16, MOECOMM_SUM, s->want);
  return wrong_of(s, s->out, s->want, count);
}

/* One eager call from the saved residual, against the reference (y and the new residual). */
static long verify_fused(sim_t *s, int v, size_t T, size_t H) {
  const void *ins[N];
  const size_t el = T * H;
  for (int m = 0; m < N; m++) {
    ins[m] = s->hin[m];
    TRY(cudaSetDevice(s->dev[m]));
    TRY(cudaMemcpy(s->res[m], s->hres, el * 2, cudaMemcpyHostToDevice));
    TRY(cudaDeviceSynchronize());
  }
  for (int m = 0; m < N; m++) enqueue(s, m, 1, v, 0, T, H);
  for (int m = 0; m < N; m++) TRY(cudaStreamSynchronize(s->s[m]));
  mc_kern_ref_all_reduce(ins, N, el, MOECOMM_BFLOAT16, MOECOMM_SUM, s->want_res);
  memcpy(s->got, s->want_res, el * 2); /* a, then the reference turns want_res into r' */
  memcpy(s->want_res, s->hres, el * 2);
  mc_kern_ref_add_rmsnorm(MOECOMM_BFLOAT16, T, H, s->got, s->want_res, s->hw, 1e-6f, s->want, NULL,
                          NULL);
  return wrong_of(s, s->out, s->want, el) + wrong_of(s, s->res, s->want_res, el);
}

int main(void) {
  static double plain[NPLAIN][NSIZES], fused[NFUSED + 1][5][2];
  static long plain_bad[NPLAIN][NSIZES], fused_bad[NFUSED][5][2];
  const char *json = getenv("BENCH_OUT");
  struct cudaDeviceProp prop;
  sim_t s;
  FILE *f;
  sim_open(&s);
  sim_fill(&s);
  TRY(cudaGetDeviceProperties(&prop, 0));
  printf(
      "kern_sim: SIMULATED members: %d members on %s %s (%d SMs)%s; per-op us, median of %d "
      "replays of a graph of %d ops\n",
      N, s.ngpu == 1 ? "ONE" : "TWO (peer access, one process)", prop.name,
      prop.multiProcessorCount, s.pdl ? ", PDL on" : "", REPLAYS, OPS);
  printf("\nall-reduce bf16 (us per op; '-' not applicable; wrong elements after the run)\n");
  printf("%10s", "bytes");
  for (int v = 0; v < NPLAIN; v++) printf(" %14s", kPlain[v]);
  printf("\n");
  for (int z = 0; z < NSIZES; z++) {
    const size_t bytes = (size_t)1024 << (2 * z), count = bytes / 2;
    printf("%10zu", bytes);
    for (int v = 0; v < NPLAIN; v++) {
      plain[v][z] = -1;
      if (v == 0 && bytes > LL_PAYLOAD) {
        printf(" %14s", "-");
        continue;
      }
      plain[v][z] = time_graph(&s, 0, v, count, 0, 0);
      plain_bad[v][z] = any_error(&s) ? -1 : verify_plain(&s, count);
      printf(" %9.2f/%-4ld", plain[v][z], plain_bad[v][z]);
    }
    printf("\n");
  }
  printf(
      "\nfused all-reduce + residual + RMSNorm, bf16 (us per op/wrong; ar-best: fastest plain "
      "all-reduce of T*H)\n%6s %6s",
      "T", "H");
  for (int v = 0; v < NFUSED; v++) printf(" %18s", kFused[v]);
  printf(" %10s\n", "ar-best");
  for (int t = 0; t < 5; t++)
    for (int h = 0; h < 2; h++) {
      double best = 1e30;
      printf("%6zu %6zu", kT[t], kH[h]);
      for (int v = 0; v < NFUSED; v++) {
        mc_kern_plan_t plan;
        fused[v][t][h] = -1;
        if (mc_kern_plan_rmsnorm(kFusedAlgo[v], N, kT[t], kH[h], MOECOMM_BFLOAT16, 0, STAGE_HALF,
                                 2 * LL_PAYLOAD, &plan) != MC_KERN_PLAN_OK) {
          printf(" %18s", "-");
          continue;
        }
        fused[v][t][h] = time_graph(&s, 1, v, 0, kT[t], kH[h]);
        fused_bad[v][t][h] = any_error(&s)  ? -1
                             : kT[t] <= 512 ? verify_fused(&s, v, kT[t], kH[h])
                                            : 0;
        printf(" %13.2f/%-4ld", fused[v][t][h], fused_bad[v][t][h]);
      }
      for (int v = 0; v < NPLAIN; v++)
        if (!(v == 0 && kT[t] * kH[h] * 2 > LL_PAYLOAD)) {
          const double us = time_graph(&s, 0, v, kT[t] * kH[h], 0, 0);
          if (us < best) best = us;
        }
      fused[NFUSED][t][h] = best;
      printf(" %10.2f\n", best);
    }
  if (json == NULL) return 0;
  f = fopen(json, "w");
  if (f == NULL) {
    fprintf(stderr, "kern_sim: cannot write %s\n", json);
    return 1;
  }
  fprintf(f,
          "{\"bench\": \"kern_sim\", \"simulated\": true, \"members\": %d, \"gpus\": %d, "
          "\"device\": \"%s\", \"pdl\": %d, \"ops_per_graph\": %d, \"replays\": %d,\n"
          " \"allreduce_bf16\": [",
          N, s.ngpu, prop.name, s.pdl, OPS, REPLAYS);
  for (int z = 0, first = 1; z < NSIZES; z++)
    for (int v = 0; v < NPLAIN; v++) {
      if (plain[v][z] < 0) continue;
      fprintf(f, "%s\n  {\"bytes\": %zu, \"variant\": \"%s\", \"us\": %.3f, \"wrong\": %ld}",
              first ? "" : ",", (size_t)1024 << (2 * z), kPlain[v], plain[v][z], plain_bad[v][z]);
      first = 0;
    }
  fprintf(f, "],\n \"fused_bf16\": [");
  for (int t = 0, first = 1; t < 5; t++)
    for (int h = 0; h < 2; h++)
      for (int v = 0; v <= NFUSED; v++) {
        fprintf(f,
                "%s\n  {\"T\": %zu, \"H\": %zu, \"variant\": \"%s\", \"us\": %.3f, \"wrong\": %ld}",
                first ? "" : ",", kT[t], kH[h], v < NFUSED ? kFused[v] : "ar-best", fused[v][t][h],
                v < NFUSED ? fused_bad[v][t][h] : 0);
        first = 0;
      }
  fprintf(f, "]}\n");
  fclose(f);
  return 0;
}

#endif
