/* SPDX-License-Identifier: Apache-2.0 */
/* rmsnorm.cu - fused all-reduce + residual add + RMSNorm (mc_rmsnorm.h), on the push machinery
 * of lines.cuh.
 *
 * A row is a chunk and belongs to one team of 256 threads (two teams per block while H <= 8192);
 * thread k of the team handles vectors k, k + 256, ... of the row, the lanes of mc_rmsnorm.h's
 * order.  The team moves the row, reduces it, writes v = D(a + r) into shared memory, and norms
 * the row from there in that fixed order, whatever the algorithm (norm_row.cuh, shared with the
 * standalone norm of norm.cu).  Teams synchronise with their own named barrier (1 + team in
 * block).
 *
 *  k_arn_oneshot (MC_KERN_LL: LL packets in the LL region; MC_KERN_ONESHOT_PUSH: chunks in
 *    staging): team w sends my row t to every peer, reduces row t from every member's values,
 *    and norms it.  Ring reuse as for the one-shot all-reduce (push.cu), per team; LL uses no
 *    ring (every row has its own place).
 *  k_arn_twoshot (MC_KERN_TWOSHOT_PUSH): for row index ch of every part q (rows
 *    q * part_rows + ch): A sends my x row to q; B reduces my part's row from every member,
 *    sends a to every peer and norms it; D takes every other part's a from its owner and norms
 *    it.  Ring reuse as for the two-shot all-reduce (push.cu).  Rows past T (padding of the last
 *    parts) travel and are waited for like the others, so the chain of push.cu holds; they are
 *    never normed or stored.
 * On a timeout the team keeps its barrier count (waits return at once, stores are skipped), so
 * no barrier is left half-arrived. */
#include "kernels/mc_rmsnorm.h"
#include "kernels/norm_row.cuh"

namespace {

struct karn_t : mc_kern_arn_t {
  mc_kern_plan_t p;
};

/* Sends rows[q] (nullptr: zeros) to every non-null dst[q], then publishes them. */
template <int P, int N>
__device__ void send_rows(const karn_t &a, const team_t &tm, char *const (&dst)[N],
                          const uint4 *const (&rows)[N], uint64_t tag) {
  const mc_kern_plan_t &p = a.p;
  for (uint32_t j = tm.tt; j < p.chunk_vecs; j += MC_KERN_ROW_TEAM) {
#pragma unroll
    for (int q = 0; q < N; q++)
      if (dst[q] != nullptr)
        put_vec<P>(dst[q], j, rows[q] != nullptr ? rows[q][j] : make_uint4(0, 0, 0, 0), tag);
  }
  publish<P>(dst, p, tag, tm.tt, team_sync_t{tm.bar});
}

template <typename T, int N>
__device__ __forceinline__ uint4 reduce_at(const uint4 (&v)[N][1], const uint4 &mine, int rank) {
  acc_t<T> acc;
#pragma unroll
  for (int r = 0; r < N; r++) {
    const uint4 x = r == rank ? mine : v[r][0];
    if (r == 0)
      acc_init<T>(acc, x);
    else
      acc_add<T>(acc, x, MOECOMM_SUM);
  }
  return acc_pack<T>(acc);
}

/* Takes the row from every non-null src[r], reduces them with my own row `own` (nullptr:
   zeros) in rank order, calls f(j, a) for each of my vectors, and forwards a to every non-null
   fwd[q].  With one non-null src[q] and own == nullptr it is only the take (the sum of one
   value and zeros is not what we want): f gets q's vector as is. */
template <typename T, int P, int N, typename F>
__device__ bool take_row(const karn_t &a, call_t &c, const team_t &tm, const char *const (&src)[N],
                         int only, const uint4 *own, char *const (&fwd)[N], uint64_t tag, F f) {
  const mc_kern_plan_t &p = a.p;
  bool ok = true;
  for (uint32_t j0 = 0; j0 < p.chunk_vecs; j0 += MC_KERN_ROW_TEAM) {
    const uint32_t j[1] = {j0 + (uint32_t)tm.tt};
    const bool mine = j[0] < p.chunk_vecs;
    uint4 v[N][1], res = make_uint4(0, 0, 0, 0);
    ok = ok && take_vecs<P, N, 1>(a, c, p, src, tag, j, v);
    if (ok && mine && only >= 0) {
#pragma unroll
      for (int r = 0; r < N; r++)
        if (r == only) res = v[r][0];
    } else if (ok && mine) {
      res = reduce_at<T, N>(v, own != nullptr ? own[j[0]] : make_uint4(0, 0, 0, 0), a.rank);
    }
    if (ok && mine) {
      f(j[0], res);
#pragma unroll
      for (int q = 0; q < N; q++)
        if (fwd[q] != nullptr) put_vec<P>(fwd[q], j[0], res, tag);
    }
  }
  publish<P>(fwd, p, tag, tm.tt, team_sync_t{tm.bar});
  return ok;
}

template <typename T, int N, int P>
__global__ void __launch_bounds__(2 * MC_KERN_ROW_TEAM) k_arn_oneshot(const karn_t a) {
  extern __shared__ uint4 smem[];
  __shared__ float red[2 * 16];
  __shared__ call_t c;
  if (!call_begin(a, c)) {
    call_end(a, c);
    return;
  }
  const mc_kern_plan_t &p = a.p;
  const uint64_t epoch = c.epoch;
  const team_t tm = make_team(p, smem, red);
  for (uint64_t ch = (uint64_t)tm.team; ch < p.chunks; ch += (uint64_t)p.teams) {
    const uint64_t tag = chunk_tag<P>(epoch, ch);
    const uint4 *x = reinterpret_cast<const uint4 *>(a.x) + ch * p.chunk_vecs;
    const uint4 *rows[N];
    const char *src[N];
    char *dst[N], *none[N];
#pragma unroll
    for (int q = 0; q < N; q++) {
      rows[q] = x;
      none[q] = nullptr;
      dst[q] = q == a.rank ? nullptr : chunk_at<P>(a, p, epoch, q, 0, a.rank, ch);
      src[q] = q == a.rank ? nullptr : chunk_at<P>(a, p, epoch, a.rank, 0, q, ch);
    }
    send_rows<P, N>(a, tm, dst, rows, tag);
    const add_residual_t<T> f = {tm.sv, reinterpret_cast<uint4 *>(a.residual) + ch * p.chunk_vecs};
    const bool ok = take_row<T, P, N>(a, c, tm, src, -1, x, none, tag, f);
    finish_row<T>(a, tm, ch, ok);
  }
  call_end(a, c);
}

template <typename T, int N, int P>
__global__ void __launch_bounds__(2 * MC_KERN_ROW_TEAM) k_arn_twoshot(const karn_t a) {
  extern __shared__ uint4 smem[];
  __shared__ float red[2 * 16];
  __shared__ call_t c;
  if (!call_begin(a, c)) {
    call_end(a, c);
    return;
  }
  const mc_kern_plan_t &p = a.p;
  const uint64_t epoch = c.epoch;
  const team_t tm = make_team(p, smem, red);
  const uint4 *x = reinterpret_cast<const uint4 *>(a.x);
  uint4 *res = reinterpret_cast<uint4 *>(a.residual);
  for (uint64_t ch = (uint64_t)tm.team; ch < p.chunks; ch += (uint64_t)p.teams) {
    const uint64_t tag = chunk_tag<P>(epoch, ch);
    const uint4 *rows[N];
    const char *src[N];
    char *dst[N], *none[N];
    bool ok;

    /* A: my x row of every other part goes to its owner */
#pragma unroll
    for (int q = 0; q < N; q++) {
      const uint64_t t = (uint64_t)q * p.part_rows + ch;
      rows[q] = t < a.rows ? x + t * p.chunk_vecs : nullptr;
      none[q] = nullptr;
      dst[q] = q == a.rank ? nullptr : chunk_at<P>(a, p, epoch, q, 0, a.rank, ch);
    }
    send_rows<P, N>(a, tm, dst, rows, tag);

    /* B: my part's row from every member; a to every peer; my norm of it */
    const uint64_t t0 = (uint64_t)a.rank * p.part_rows + ch;
#pragma unroll
    for (int q = 0; q < N; q++) {
      src[q] = q == a.rank ? nullptr : chunk_at<P>(a, p, epoch, a.rank, 0, q, ch);
      dst[q] = q == a.rank ? nullptr : chunk_at<P>(a, p, epoch, q, 1, a.rank, ch);
    }
    const add_residual_t<T> f0 = {tm.sv, t0 < a.rows ? res + t0 * p.chunk_vecs : nullptr};
    ok = take_row<T, P, N>(a, c, tm, src, -1, t0 < a.rows ? x + t0 * p.chunk_vecs : nullptr, dst,
                           tag, f0);
    if (t0 < a.rows) finish_row<T>(a, tm, t0, ok);

    /* D: every other part's row from its owner (waited for even when it is padding) */
    for (int q = 0; q < N; q++) {
      if (q == a.rank) continue;
      const uint64_t t = (uint64_t)q * p.part_rows + ch;
      const char *one[N];
#pragma unroll
      for (int r = 0; r < N; r++)
        one[r] = r == q ? chunk_at<P>(a, p, epoch, a.rank, 1, q, ch) : nullptr;
      const add_residual_t<T> f = {tm.sv, t < a.rows ? res + t * p.chunk_vecs : nullptr};
      ok = take_row<T, P, N>(a, c, tm, one, q, nullptr, none, tag, f);
      if (t < a.rows) finish_row<T>(a, tm, t, ok);
    }
  }
  call_end(a, c);
}

typedef void (*nfn_t)(const karn_t);

#define MC_NROW(K, T, P) \
  { K<T, 2, P>, K<T, 3, P>, K<T, 4, P>, K<T, 5, P>, K<T, 6, P>, K<T, 7, P>, K<T, 8, P> }
#define MC_NALGO(K, P) \
  { MC_NROW(K, __half, P), MC_NROW(K, __nv_bfloat16, P) }

/* [LL, ONESHOT_PUSH, TWOSHOT_PUSH][dtype - MOECOMM_FLOAT16][size - 2] */
const nfn_t kFused[3][2][7] = {MC_NALGO(k_arn_oneshot, kLL), MC_NALGO(k_arn_oneshot, kChunk),
                               MC_NALGO(k_arn_twoshot, kChunk)};

bool aligned_ok(const void *p) {
  return p != nullptr && ((uintptr_t)p & 15u) == 0;
}

}  // namespace

extern "C" int mc_kern_ar_rmsnorm(const mc_kern_arn_t *a, void *stream) {
  karn_t k;
  if (a == nullptr || a->rank < 0 || a->rank >= a->size || !aligned_ok(a->x) ||
      !aligned_ok(a->residual) || !aligned_ok(a->weight) || !aligned_ok(a->y) ||
      a->y == a->residual || (a->y_fp8 != nullptr) != (a->y_scale != nullptr) ||
      (a->y_fp8 != nullptr && !aligned_ok(a->y_fp8)) || !(a->eps >= 0.0f && a->eps <= 3.4e38f) ||
      a->stage_off % MC_KERN_LINE_BYTES != 0 || a->stage_half_bytes % MC_KERN_LINE_BYTES != 0 ||
      a->ll_off % 16 != 0 || a->ll_slot_bytes % 16 != 0)
    return (int)cudaErrorInvalidValue;
  if (mc_kern_plan_rmsnorm(a->algo, a->size, a->rows, a->hidden, a->dtype, a->max_blocks,
                           a->stage_half_bytes, a->ll_slot_bytes, &k.p) != MC_KERN_PLAN_OK)
    return (int)cudaErrorInvalidValue;
  static_cast<mc_kern_arn_t &>(k) = *a;
  k.algo = a->algo | MC_KERN_FUSED;
  const int which = a->algo == MC_KERN_LL ? 0 : a->algo == MC_KERN_ONESHOT_PUSH ? 1 : 2;
  const void *fn = (const void *)kFused[which][a->dtype - MOECOMM_FLOAT16][a->size - 2];
  return (int)launch_kernel(fn, k.p.blocks, k.p.threads, k.p.smem_bytes, &k, stream, a->pdl);
}
