/* SPDX-License-Identifier: Apache-2.0 */
/* kern_world.h - simulated members for the kernel tests (custom_kernels.c, kern_*.c): every
 * member of a communicator on the one GPU, each with its own segment, error record and stream;
 * a call launches every member's kernel together (grids capped at SMs / members so all of them
 * are resident at once).  Segments are laid out as the custom backend does (mc_kernels.h). */
#ifndef KERN_WORLD_H_
#define KERN_WORLD_H_

#include <cuda_runtime_api.h>
#include <stdint.h>
#include <string.h>

#include "../../kernels/mc_kernels.h"
#include "../../kernels/mc_rmsnorm.h"
#include "../../kernels/mc_shape.h"
#include "../common/harness.h"

#define KW_MAXN MC_KERN_MAX_RANKS

typedef struct kw_world {
  int n, sms;
  char *seg[KW_MAXN];
  size_t ll_off, ll_slot, stage_off, stage_half, seg_bytes;
  mc_kern_err_t *err_h[KW_MAXN], *err_d[KW_MAXN];
  cudaStream_t s[KW_MAXN];
} kw_world_t;

/* Zeroed segments, call counters at 1, no error recorded. */
static inline int kw_reset(kw_world_t *w) {
  mc_kern_state_t st;
  memset(&st, 0, sizeof(st));
  st.epoch = 1;
  for (int r = 0; r < w->n; r++) {
    if (!MC_CUDA_OK(cudaMemset(w->seg[r], 0, w->seg_bytes)) ||
        !MC_CUDA_OK(
            cudaMemcpy(w->seg[r] + MC_KERN_STATE_OFF, &st, sizeof(st), cudaMemcpyHostToDevice)))
      return 0;
    memset(w->err_h[r], 0, sizeof(mc_kern_err_t));
  }
  return MC_CUDA_OK(cudaDeviceSynchronize());
}

static inline int kw_open(kw_world_t *w, int n, size_t ll_payload, size_t stage_half) {
  memset(w, 0, sizeof(*w));
  w->n = n;
  if (!MC_CUDA_OK(cudaDeviceGetAttribute(&w->sms, cudaDevAttrMultiProcessorCount, 0))) return 0;
  w->ll_off = MC_KERN_HEADER_BYTES;
  w->ll_slot = 2 * ll_payload;
  w->stage_off = (w->ll_off + 2 * (size_t)n * w->ll_slot + 4095) & ~(size_t)4095;
  w->stage_half = stage_half;
  w->seg_bytes = w->stage_off + 2 * stage_half;
  for (int r = 0; r < n; r++)
    if (!MC_CUDA_OK(cudaMalloc((void **)&w->seg[r], w->seg_bytes)) ||
        !MC_CUDA_OK(
            cudaHostAlloc((void **)&w->err_h[r], sizeof(mc_kern_err_t), cudaHostAllocMapped)) ||
        !MC_CUDA_OK(cudaHostGetDevicePointer((void **)&w->err_d[r], w->err_h[r], 0)) ||
        !MC_CUDA_OK(cudaStreamCreateWithFlags(&w->s[r], cudaStreamNonBlocking)))
      return 0;
  return kw_reset(w);
}

static inline void kw_close(kw_world_t *w) {
  (void)cudaDeviceSynchronize();
  for (int r = 0; r < w->n; r++) {
    cudaFree(w->seg[r]);
    cudaFreeHost(w->err_h[r]);
    cudaStreamDestroy(w->s[r]);
  }
  memset(w, 0, sizeof(*w));
}

/* Grid cap that keeps every member's grid resident. */
static inline int kw_cap(const kw_world_t *w) {
  const int cap = w->sms / w->n;
  return cap < MC_KERN_BLOCKS_DEFAULT ? cap : MC_KERN_BLOCKS_DEFAULT;
}

/* Launch arguments of member r (everything but algo, dtype, op, count, in, out). */
static inline mc_kern_ar_t kw_ar(const kw_world_t *w, int r, uint64_t timeout_ns) {
  mc_kern_ar_t a;
  memset(&a, 0, sizeof(a));
  a.rank = r;
  a.size = w->n;
  for (int q = 0; q < w->n; q++) a.seg[q] = w->seg[q];
  a.ll_off = w->ll_off;
  a.ll_slot_bytes = w->ll_slot;
  a.stage_off = w->stage_off;
  a.stage_half_bytes = w->stage_half;
  a.err = w->err_d[r];
  a.timeout_ns = timeout_ns;
  a.max_blocks = kw_cap(w);
  return a;
}

static inline mc_kern_arn_t kw_arn(const kw_world_t *w, int r, uint64_t timeout_ns) {
  mc_kern_arn_t a;
  memset(&a, 0, sizeof(a));
  a.rank = r;
  a.size = w->n;
  for (int q = 0; q < w->n; q++) a.seg[q] = w->seg[q];
  a.ll_off = w->ll_off;
  a.ll_slot_bytes = w->ll_slot;
  a.stage_off = w->stage_off;
  a.stage_half_bytes = w->stage_half;
  a.err = w->err_d[r];
  a.timeout_ns = timeout_ns;
  a.max_blocks = kw_cap(w);
  return a;
}

static inline int kw_sync(const kw_world_t *w) {
  for (int r = 0; r < w->n; r++)
    if (!MC_CUDA_OK(cudaStreamSynchronize(w->s[r]))) return 0;
  return 1;
}

/* No member recorded an error. */
static inline int kw_no_error(const kw_world_t *w, const char *what) {
  for (int r = 0; r < w->n; r++)
    if (!MC_CHECK(w->err_h[r]->code == 0, "%s: member %d recorded error %u (peer %d, algo %u)",
                  what, r, w->err_h[r]->code, w->err_h[r]->peer, w->err_h[r]->algo))
      return 0;
  return 1;
}

/* Starts capturing every member's stream into one graph (forked from and joined to `cap`). */
static inline int kw_capture_begin(const kw_world_t *w, cudaStream_t cap, cudaEvent_t fork) {
  if (!MC_CUDA_OK(cudaStreamBeginCapture(cap, cudaStreamCaptureModeGlobal)) ||
      !MC_CUDA_OK(cudaEventRecord(fork, cap)))
    return 0;
  for (int r = 0; r < w->n; r++)
    if (!MC_CUDA_OK(cudaStreamWaitEvent(w->s[r], fork, 0))) return 0;
  return 1;
}

static inline int kw_capture_end(const kw_world_t *w, cudaStream_t cap, cudaEvent_t *join,
                                 cudaGraphExec_t *exec_p) {
  cudaGraph_t g = NULL;
  int ok;
  for (int r = 0; r < w->n; r++)
    if (!MC_CUDA_OK(cudaEventRecord(join[r], w->s[r])) ||
        !MC_CUDA_OK(cudaStreamWaitEvent(cap, join[r], 0)))
      return 0;
  if (!MC_CUDA_OK(cudaStreamEndCapture(cap, &g))) return 0;
  ok = MC_CUDA_OK(cudaGraphInstantiate(exec_p, g, 0));
  cudaGraphDestroy(g);
  return ok;
}

/* Small xorshift-style generator for test data (splitmix64 of the harness). */
static inline float kw_real(uint64_t *st) {
  const uint64_t r = mc_test_rand(st);
  const double m = 1.0 + (double)(r >> 40) / (double)(1ull << 24); /* [1, 2) */
  const int e = (int)((r >> 8) % 8) - 4;                           /* 2^-4 .. 2^3 */
  double v = (r & 1) ? -m : m;
  for (int k = e; k > 0; k--) v *= 2;
  for (int k = e; k < 0; k++) v /= 2;
  return (float)v;
}

#endif
