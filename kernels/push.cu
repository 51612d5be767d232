/* SPDX-License-Identifier: Apache-2.0 */
/* push.cu - barrier-free all-reduce kernels: data moves only as stores into the receiver's slots
 * in staging (lines.cuh, chunk protocol), never as loads from a peer, and no member waits for a
 * barrier.
 *
 *  MC_KERN_TWOSHOT_PUSH  for chunk c of every part q: I send my values to q (A); I reduce chunk c
 *                        of my own part from every member's values and send the result to every
 *                        peer (B); I take the results of chunk c of every other part from its
 *                        owner (D);
 *  MC_KERN_ONESHOT_PUSH  each team sends its chunk of my input to every peer, then reduces the
 *                        chunk from every member's values (one NVLink crossing, (n-1) x the
 *                        bytes of the two-shot's 2(n-1)/n).
 *
 * Chunks are handled by warps (teams of 32), chunk c by team c % teams on every member.  Every
 * part has the same number of chunks (the last ones padded with zeros), so every team of every
 * member sends and receives exactly the same chunks, and every member hears from every peer in
 * every call (the premise of mc_kernels.h's rule for reusing a staging half).
 *
 * Reusing a ring position within a call (ring: mc_shape.h).  Position x of q's slot from sender
 * p is written by p's team w only, for chunks c, c + ring, ... and read by q's team w only.
 *  - two-shot, ring >= teams: p's team writes A(c + teams) into q after it took q's result of
 *    chunk c (D), which q's team sent after it had read every A(c) (B); it writes B's result of
 *    chunk c + teams after it took q's A(c + teams), which q's team sent after finishing chunk c,
 *    including reading p's result of chunk c (D).  So one round of the grid is enough.
 *  - one-shot, ring >= 2 * teams (when a team has two or more chunks): p's team writes chunk
 *    c + 2 * teams after it took q's chunk c + teams, which q's team sent after it had finished
 *    chunk c, including reading p's values of chunk c.
 * In both, a team never overwrites a position its counterpart has not read.
 *
 * Any count, alignment and tail: a member's vectors are read with load_vec and written with
 * store_vec (element-wise where needed); chunks always carry whole 16-byte vectors.  In place
 * (in == out) is safe: a vector of in is read and written by the same thread of the same team,
 * reads first. */
#include "kernels/lines.cuh"
#include "kernels/mc_push.h"

namespace {

struct kpush_t : mc_kern_ar_t {
  mc_kern_plan_t p;
};

constexpr uint64_t kNone = ~0ull;

/* This thread's place in its warp team: team index, lane, and its U vectors of a chunk. */
template <int U>
struct place_t {
  int team, tt;
  uint32_t j[U];
};

template <int U>
__device__ __forceinline__ place_t<U> warp_place() {
  place_t<U> w;
  w.tt = threadIdx.x & 31;
  w.team = blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
#pragma unroll
  for (int u = 0; u < U; u++) w.j[u] = 32u * u + (uint32_t)w.tt;
  return w;
}

/* Index within a part of vector j of chunk, kNone past the part's end. */
__device__ __forceinline__ uint64_t part_vec(const mc_kern_plan_t &p, uint64_t chunk, uint32_t j) {
  const uint64_t k = chunk * p.chunk_vecs + j;
  return k < p.part_vecs ? k : kNone;
}

/* Vector k of part q (kNone, or past the data: zeros). */
template <typename T>
__device__ __forceinline__ uint4 part_load(const kpush_t &a, int q, uint64_t k, size_t nv,
                                           bool in_ok, uint64_t &gi) {
  gi = k == kNone ? kNone : (uint64_t)q * a.p.part_vecs + k;
  if (gi >= nv) {
    gi = kNone;
    return make_uint4(0, 0, 0, 0);
  }
  return load_vec<T>((const char *)a.in, gi, a.count, in_ok);
}

template <typename T, int N, int U>
__device__ __forceinline__ uint4 reduce_at(const uint4 (&v)[N][U], const uint4 &mine, int u,
                                           int rank, int op) {
  acc_t<T> acc;
#pragma unroll
  for (int r = 0; r < N; r++) {
    const uint4 x = r == rank ? mine : v[r][u];
    if (r == 0)
      acc_init<T>(acc, x);
    else
      acc_add<T>(acc, x, op);
  }
  return acc_pack<T>(acc);
}

struct warp_sync_t {
  __device__ void operator()() const { __syncwarp(); }
};

template <typename T, int N, int P>
__global__ void __launch_bounds__(MC_KERN_THREADS) k_push_oneshot(const kpush_t a) {
  constexpr int U = MC_KERN_UNROLL(N);
  constexpr int VE = 16 / sizeof(T);
  __shared__ call_t c;
  if (!call_begin(a, c)) {
    call_end(a, c);
    return;
  }
  const mc_kern_plan_t &p = a.p;
  const uint64_t epoch = c.epoch;
  const place_t<U> w = warp_place<U>();
  const size_t nv = (a.count + VE - 1) / VE;
  const bool in_ok = aligned16(a.in), out_ok = aligned16(a.out);
  for (uint64_t ch = (uint64_t)w.team; ch < p.chunks; ch += (uint64_t)p.teams) {
    if (__any_sync(kFull, *(volatile int *)&c.abort)) break; /* the same for every lane */
    const uint64_t tag = chunk_tag<P>(epoch, ch);
    uint64_t gi[U];
    uint4 mine[U], v[N][U];
    const char *src[N];
    char *dst[N];
#pragma unroll
    for (int u = 0; u < U; u++)
      mine[u] = part_load<T>(a, 0, part_vec(p, ch, w.j[u]), nv, in_ok, gi[u]);
#pragma unroll
    for (int q = 0; q < N; q++) {
      dst[q] = q == a.rank ? nullptr : chunk_at<P>(a, p, epoch, q, 0, a.rank, ch);
      src[q] = q == a.rank ? nullptr : chunk_at<P>(a, p, epoch, a.rank, 0, q, ch);
      if (q == a.rank) continue;
#pragma unroll
      for (int u = 0; u < U; u++) put_vec<P>(dst[q], w.j[u], mine[u], tag);
    }
    publish<P>(dst, p, tag, w.tt, warp_sync_t());
    if (!take_vecs<P, N, U>(a, c, p, src, tag, w.j, v)) break;
#pragma unroll
    for (int u = 0; u < U; u++)
      if (gi[u] != kNone)
        store_vec<T>((char *)a.out, gi[u], a.count, out_ok,
                     reduce_at<T, N, U>(v, mine[u], u, a.rank, a.op));
  }
  call_end(a, c);
}

template <typename T, int N, int P>
__global__ void __launch_bounds__(MC_KERN_THREADS) k_push_twoshot(const kpush_t a) {
  constexpr int U = MC_KERN_UNROLL(N);
  constexpr int VE = 16 / sizeof(T);
  __shared__ call_t c;
  if (!call_begin(a, c)) {
    call_end(a, c);
    return;
  }
  const mc_kern_plan_t &p = a.p;
  const uint64_t epoch = c.epoch;
  const place_t<U> w = warp_place<U>();
  const size_t nv = (a.count + VE - 1) / VE;
  const bool in_ok = aligned16(a.in), out_ok = aligned16(a.out);
  for (uint64_t ch = (uint64_t)w.team; ch < p.chunks; ch += (uint64_t)p.teams) {
    if (__any_sync(kFull, *(volatile int *)&c.abort)) break; /* the same for every lane */
    const uint64_t tag = chunk_tag<P>(epoch, ch);
    uint64_t k[U], gi[U];
    uint4 mine[U], v[N][U];
    const char *src[N];
    char *dst[N];
#pragma unroll
    for (int u = 0; u < U; u++) k[u] = part_vec(p, ch, w.j[u]);

      /* A: my values of chunk ch of every other part go to its owner */
#pragma unroll
    for (int q = 0; q < N; q++) {
      dst[q] = q == a.rank ? nullptr : chunk_at<P>(a, p, epoch, q, 0, a.rank, ch);
      if (q == a.rank) continue;
#pragma unroll
      for (int u = 0; u < U; u++)
        put_vec<P>(dst[q], w.j[u], part_load<T>(a, q, k[u], nv, in_ok, gi[u]), tag);
    }
    publish<P>(dst, p, tag, w.tt, warp_sync_t());

    /* B: chunk ch of my part from every member, reduced in rank order, to out and every peer */
#pragma unroll
    for (int u = 0; u < U; u++) mine[u] = part_load<T>(a, a.rank, k[u], nv, in_ok, gi[u]);
#pragma unroll
    for (int r = 0; r < N; r++)
      src[r] = r == a.rank ? nullptr : chunk_at<P>(a, p, epoch, a.rank, 0, r, ch);
    if (!take_vecs<P, N, U>(a, c, p, src, tag, w.j, v)) break;
#pragma unroll
    for (int u = 0; u < U; u++) {
      mine[u] = reduce_at<T, N, U>(v, mine[u], u, a.rank, a.op);
      if (gi[u] != kNone) store_vec<T>((char *)a.out, gi[u], a.count, out_ok, mine[u]);
    }
#pragma unroll
    for (int q = 0; q < N; q++) {
      dst[q] = q == a.rank ? nullptr : chunk_at<P>(a, p, epoch, q, 1, a.rank, ch);
      if (q == a.rank) continue;
#pragma unroll
      for (int u = 0; u < U; u++) put_vec<P>(dst[q], w.j[u], mine[u], tag);
    }
    publish<P>(dst, p, tag, w.tt, warp_sync_t());

    /* D: chunk ch of every other part, from its owner */
#pragma unroll
    for (int r = 0; r < N; r++)
      src[r] = r == a.rank ? nullptr : chunk_at<P>(a, p, epoch, a.rank, 1, r, ch);
    if (!take_vecs<P, N, U>(a, c, p, src, tag, w.j, v)) break;
#pragma unroll
    for (int r = 0; r < N; r++) {
      if (r == a.rank) continue;
#pragma unroll
      for (int u = 0; u < U; u++) {
        const uint64_t g = k[u] == kNone ? kNone : (uint64_t)r * p.part_vecs + k[u];
        if (g < nv) store_vec<T>((char *)a.out, g, a.count, out_ok, v[r][u]);
      }
    }
  }
  call_end(a, c);
}

typedef void (*pfn_t)(const kpush_t);

#define MC_PROW(K, T, P) \
  { K<T, 2, P>, K<T, 3, P>, K<T, 4, P>, K<T, 5, P>, K<T, 6, P>, K<T, 7, P>, K<T, 8, P> }
#define MC_PALGO(K, P) \
  { MC_PROW(K, float, P), MC_PROW(K, __half, P), MC_PROW(K, __nv_bfloat16, P) }

/* [algo - MC_KERN_TWOSHOT_PUSH][dtype][size - 2] */
const pfn_t kPush[2][3][7] = {MC_PALGO(k_push_twoshot, kChunk), MC_PALGO(k_push_oneshot, kChunk)};

}  // namespace

extern "C" int mc_kern_push_all_reduce(const mc_kern_ar_t *a, void *stream) {
  kpush_t k;
  if (a == nullptr || a->algo < MC_KERN_TWOSHOT_PUSH || a->algo > MC_KERN_ONESHOT_PUSH ||
      a->dtype < 0 || a->dtype > 2 || a->size < 2 || a->size > MC_KERN_MAX_RANKS || a->rank < 0 ||
      a->rank >= a->size || a->in == nullptr || a->out == nullptr ||
      a->stage_off % MC_KERN_LINE_BYTES != 0 || a->stage_half_bytes % MC_KERN_LINE_BYTES != 0)
    return (int)cudaErrorInvalidValue;
  static_cast<mc_kern_ar_t &>(k) = *a;
  if (mc_kern_plan_all_reduce(a->algo, a->size, a->count, a->dtype, a->max_blocks,
                              a->stage_half_bytes, &k.p) != MC_KERN_PLAN_OK)
    return (int)cudaErrorInvalidValue;
  const void *fn = (const void *)kPush[a->algo - MC_KERN_TWOSHOT_PUSH][a->dtype][a->size - 2];
  return (int)launch_kernel(fn, k.p.blocks, k.p.threads, 0, &k, stream, a->pdl);
}
