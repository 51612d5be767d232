/* SPDX-License-Identifier: Apache-2.0 */
/* lines.cuh - how the push kernels (push.cu, rmsnorm.cu) move chunks between members: where a
 * chunk lives, and the two protocols that say it has arrived (mc_shape.h has the layout).
 *
 * Thread k of a team handles vectors k, k + team_threads, ... of a chunk, the same ones on every
 * member, so a team stores and reads whole warps' worth of consecutive vectors.
 *
 * kChunk (staging): the team stores the chunk's vectors (to every receiver), every thread fences
 *   at system scope, the team synchronises, and one thread fences again and stores the tag
 *   (epoch << 24) | chunk into the chunk's flag line: a release that covers the whole team's
 *   stores.  Each receiving thread loads the tag with acquire until it matches, then its vectors.
 *   The tag never repeats (64 bits), so no older call and no earlier chunk in the same ring
 *   position matches, and raw data left in staging by other algorithms would have to equal it.
 * kLL (LL region): each vector is stored as two LL packets {data, flag, data, flag}, the flag being
 *   the LL all-reduce's flag of the call (never 0); a reader takes a packet when both its flags
 *   match (each 8-byte half is written at once, the assumption of the LL all-reduce and of
 *   NCCL's LL protocol).  The region only ever holds LL packets, so a stale word carries an
 *   older call's flag.
 * (128-byte lines with one flag, LL128, were tried: on one GPU a reader saw a line's flag before
 * the rest of the line, so the protocol is not used.) */
#ifndef MC_LINES_CUH_
#define MC_LINES_CUH_

#include "kernels/device.cuh"

namespace {

constexpr int kLL = 0;
constexpr int kChunk = 1;
constexpr unsigned kFull = 0xffffffffu;

template <int P>
__device__ __forceinline__ uint64_t chunk_tag(uint64_t epoch, uint64_t chunk) {
  if (P == kLL) return (uint32_t)(epoch % 0xffffffffull) + 1u;
  return (epoch << 24) | (chunk & (MC_KERN_CHUNK_LIMIT - 1));
}

/* Start of chunk `chunk` in member q's slot (kind, sender) for the call of `epoch`.  kChunk:
   staging half of the epoch's parity, slots of one kind ordered by sender (q left out), ring
   position chunk % ring.  kLL: the sender's LL slot of that parity, no ring. */
template <int P, typename A>
__device__ __forceinline__ char *chunk_at(const A &a, const mc_kern_plan_t &p, uint64_t epoch,
                                          int q, int kind, int sender, uint64_t chunk) {
  const size_t parity = epoch & 1u;
  if (P == kLL)
    return a.seg[q] + a.ll_off + (parity * (size_t)a.size + (size_t)sender) * a.ll_slot_bytes +
           (size_t)chunk * p.chunk_bytes;
  const int idx = kind * (a.size - 1) + (sender < q ? sender : sender - 1);
  return a.seg[q] + a.stage_off + parity * a.stage_half_bytes + (size_t)idx * p.slot_bytes +
         (size_t)((uint32_t)chunk % p.ring) * p.chunk_bytes;
}

/* Stores vector j (< chunk_vecs) of a chunk. */
template <int P>
__device__ __forceinline__ void put_vec(char *chunk, uint32_t j, const uint4 &v, uint64_t tag) {
  if (P == kLL) {
    const uint32_t f = (uint32_t)tag;
    uint4 *dst = reinterpret_cast<uint4 *>(chunk) + 2 * (size_t)j;
    st_ll(dst, make_uint4(v.x, f, v.y, f));
    st_ll(dst + 1, make_uint4(v.z, f, v.w, f));
  } else {
    reinterpret_cast<uint4 *>(chunk)[j] = v;
  }
}

/* kChunk: publishes a chunk this team stored into every non-null dst[q].  sync() synchronises
   the team; tt is the thread's index in it.  kLL: nothing to do, the flags went with the data. */
template <int P, int N, typename S>
__device__ __forceinline__ void publish(char *const (&dst)[N], const mc_kern_plan_t &p,
                                        uint64_t tag, int tt, S sync) {
  if (P != kChunk) return;
  __threadfence_system(); /* this thread's vectors are visible to every GPU ... */
  sync();                 /* ... and so are the rest of the team's */
  if (tt == 0) {
    __threadfence_system();
#pragma unroll
    for (int q = 0; q < N; q++)
      if (dst[q] != nullptr)
        st_relaxed_sys(
            reinterpret_cast<uint64_t *>(dst[q] + (size_t)p.chunk_lines * MC_KERN_LINE_BYTES), tag);
  }
}

/* Whether the warp gives up waiting (a timeout recorded, or the call aborted by another block);
   the same answer for every lane. */
template <typename A>
__device__ __forceinline__ bool warp_gives_up(const A &a, call_t &c, uint32_t &spins, int peer) {
  return __any_sync(kFull, timed_out(a, c, spins, peer));
}

/* Reads this thread's vectors j[u] (u < U; those at or past chunk_vecs are not read) of the
   chunk at src[r] for every r with src[r] != nullptr, waiting until each has arrived.  The whole
   warp calls it with the same src and tag.  Returns false after a timeout or an abort. */
template <int P, int N, int U, typename A>
__device__ bool take_vecs(const A &a, call_t &c, const mc_kern_plan_t &p,
                          const char *const (&src)[N], uint64_t tag, const uint32_t (&j)[U],
                          uint4 (&v)[N][U]) {
  uint32_t spins = 0, pending = 0;
  if (__any_sync(kFull, *(volatile int *)&c.abort)) return false;
  if (P == kChunk) {
#pragma unroll
    for (int r = 0; r < N; r++)
      if (src[r] != nullptr) pending |= 1u << r;
    /* every lane acquires the tag itself, so its own data loads are ordered after it */
    while (pending != 0) {
#pragma unroll
      for (int r = 0; r < N; r++) {
        if (!(pending & (1u << r))) continue;
        const uint64_t *f =
            reinterpret_cast<const uint64_t *>(src[r] + (size_t)p.chunk_lines * MC_KERN_LINE_BYTES);
        if (__all_sync(kFull, ld_acquire_sys(f) == tag)) pending &= ~(1u << r);
      }
      if (pending != 0 && warp_gives_up(a, c, spins, __ffs(pending) - 1)) return false;
    }
#pragma unroll
    for (int r = 0; r < N; r++) {
      if (src[r] == nullptr) continue;
#pragma unroll
      for (int u = 0; u < U; u++)
        if (j[u] < p.chunk_vecs) v[r][u] = __ldcg(reinterpret_cast<const uint4 *>(src[r]) + j[u]);
    }
    return true;
  }
  /* kLL: one pending bit per (sender, vector) of this lane; the warp loops until all lanes are
     done, so the timeout check stays uniform */
  const uint32_t f = (uint32_t)tag;
#pragma unroll
  for (int r = 0; r < N; r++)
#pragma unroll
    for (int u = 0; u < U; u++)
      if (src[r] != nullptr && j[u] < p.chunk_vecs) pending |= 1u << (r * U + u);
  for (;;) {
#pragma unroll
    for (int r = 0; r < N; r++)
#pragma unroll
      for (int u = 0; u < U; u++) {
        if (!(pending & (1u << (r * U + u)))) continue;
        const uint4 *s = reinterpret_cast<const uint4 *>(src[r]) + 2 * (size_t)j[u];
        const uint4 p0 = ld_ll(s), p1 = ld_ll(s + 1);
        if (p0.y == f && p0.w == f && p1.y == f && p1.w == f) {
          v[r][u] = make_uint4(p0.x, p0.z, p1.x, p1.z);
          pending &= ~(1u << (r * U + u));
        }
      }
    if (__all_sync(kFull, pending == 0)) return true;
    const int peer = __reduce_min_sync(kFull, pending ? (unsigned)(__ffs(pending) - 1) / U : N);
    if (warp_gives_up(a, c, spins, peer)) return false;
  }
}

}  // namespace

#endif
