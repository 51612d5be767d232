/* lines.cuh - how the push kernels (push.cu, rmsnorm.cu) move chunks between members: slot
 * addresses in the staging halves, and the two protocols that say a chunk has arrived.
 *
 * A team of threads moves a chunk as 128-byte lines; thread tt of the team handles 16-byte slot
 * s = tt % 8 of line (tt / 8) + k * (team_threads / 8) for k = 0, 1, ...  (mc_shape.h has the
 * layout of slots and rings).
 *
 * kLL128: data vectors in slots 0..6, the flag vector {tag, ~tag} in slot 7.  A warp stores its
 *   four lines with one instruction and reads them with one; a line whose flag matches is taken
 *   whole (the 128-byte atomicity NCCL's LL128 relies on).  No fence, no separate flag store.
 * kChunk: data in all 8 slots; after all of a chunk's lines are stored (to every receiver),
 *   every thread fences, the team synchronises and one thread fences again and stores the tag
 *   into the chunk's flag line; receivers load the tag with acquire before reading the data.
 *
 * Tags are (epoch << 24) | chunk (mc_shape.h bounds the chunk index), never 0, so neither fresh
 * memory, nor an older call, nor an earlier chunk in the same ring position matches. */
#ifndef MC_LINES_CUH_
#define MC_LINES_CUH_

#include "kernels/device.cuh"

namespace {

constexpr int kLL128 = 0;
constexpr int kChunk = 1;
constexpr unsigned kFull = 0xffffffffu;

__device__ __forceinline__ uint64_t chunk_tag(uint64_t epoch, uint64_t chunk) {
  return (epoch << 24) | (chunk & (MC_KERN_CHUNK_LIMIT - 1));
}

__device__ __forceinline__ uint4 flag_vec(uint64_t tag) {
  const uint32_t lo = (uint32_t)tag, hi = (uint32_t)(tag >> 32);
  return make_uint4(lo, hi, ~lo, ~hi);
}

__device__ __forceinline__ bool flag_ok(const uint4 &v, uint64_t tag) {
  const uint4 f = flag_vec(tag);
  return v.x == f.x && v.y == f.y && v.z == f.z && v.w == f.w;
}

/* Start of chunk position `chunk % ring` in member q's slot (kind, sender), in the staging half
   at half_off.  Slots of one kind are ordered by sender, q itself left out. */
template <typename A>
__device__ __forceinline__ char *chunk_at(const A &a, const mc_kern_plan_t &p, size_t half_off,
                                          int q, int kind, int sender, uint64_t chunk) {
  const int idx = kind * (a.size - 1) + (sender < q ? sender : sender - 1);
  return a.seg[q] + a.stage_off + half_off + (size_t)idx * p.slot_bytes +
         (size_t)((uint32_t)chunk % p.ring) * p.chunk_bytes;
}

/* Stores this thread's vector of slot s of `line` (kLL128: slot 7 gets the flag).  Every lane of
   the warp calls it together (a line is one store instruction); lines at or past `lines` are not
   stored. */
template <int P>
__device__ __forceinline__ void put_line(char *chunk, uint32_t line, uint32_t lines, int s,
                                         const uint4 &v, uint64_t tag) {
  uint4 *dst = reinterpret_cast<uint4 *>(chunk + (size_t)line * MC_KERN_LINE_BYTES) + s;
  __syncwarp();
  if (line >= lines) return;
  if (P == kLL128)
    st_ll(dst, s == 7 ? flag_vec(tag) : v);
  else
    *dst = v;
}

/* kChunk: publishes a chunk whose lines this team stored into every non-null dst[q] (each
   chunk_lines long).  sync() synchronises the team; tt is the thread's index in it.  kLL128:
   nothing to do, the flags went with the lines. */
template <int P, int N, typename S>
__device__ __forceinline__ void publish(char *const (&dst)[N], uint32_t chunk_lines, uint64_t tag,
                                        int tt, S sync) {
  if (P != kChunk) return;
  __threadfence_system(); /* this thread's lines are visible to every GPU ... */
  sync();                 /* ... and so are the rest of the team's */
  if (tt == 0) {
    __threadfence_system();
#pragma unroll
    for (int q = 0; q < N; q++)
      if (dst[q] != nullptr)
        st_relaxed_sys(
            reinterpret_cast<uint64_t *>(dst[q] + (size_t)chunk_lines * MC_KERN_LINE_BYTES), tag);
  }
}

/* Whether every thread of the warp may give up waiting (a timeout recorded, or the call aborted
   by another block); the same answer for all lanes. */
template <typename A>
__device__ __forceinline__ bool warp_gives_up(const A &a, call_t &c, uint32_t &spins, int peer) {
  return __any_sync(kFull, timed_out(a, c, spins, peer));
}

/* Reads this thread's vector of lines line[u] (u < U; lines at or past `lines` are not read)
   from src[r] for every r with src[r] != nullptr, waiting until each has arrived.  The whole
   warp calls it with the same src and tag.  Returns false after a timeout or an abort. */
template <int P, int N, int U, typename A>
__device__ bool take_lines(const A &a, call_t &c, const char *const (&src)[N], uint64_t tag,
                           const uint32_t (&line)[U], uint32_t lines, int s, uint4 (&v)[N][U]) {
  uint32_t pending = 0, spins = 0;
  if (*(volatile int *)&c.abort) return false;
#pragma unroll
  for (int r = 0; r < N; r++)
    if (src[r] != nullptr) pending |= 1u << r;
  if (P == kChunk) {
    /* every lane acquires the tag itself, so its own data loads are ordered after it */
    while (pending != 0) {
#pragma unroll
      for (int r = 0; r < N; r++) {
        if (!(pending & (1u << r))) continue;
        const uint64_t *f =
            reinterpret_cast<const uint64_t *>(src[r] + (size_t)lines * MC_KERN_LINE_BYTES);
        if (__all_sync(kFull, ld_acquire_sys(f) == tag)) pending &= ~(1u << r);
      }
      if (pending != 0 && warp_gives_up(a, c, spins, __ffs(pending) - 1)) return false;
    }
#pragma unroll
    for (int r = 0; r < N; r++) {
      if (src[r] == nullptr) continue;
#pragma unroll
      for (int u = 0; u < U; u++)
        if (line[u] < lines)
          v[r][u] = __ldcg(reinterpret_cast<const uint4 *>(src[r] +
                                                           (size_t)line[u] * MC_KERN_LINE_BYTES) +
                           s);
    }
    return true;
  }
  /* kLL128: one pending bit per (sender, line group); a line group is ready when the flag of
     every line the warp read in that instruction matched */
  uint32_t wait = 0;
#pragma unroll
  for (int r = 0; r < N; r++)
#pragma unroll
    for (int u = 0; u < U; u++)
      if (pending & (1u << r)) wait |= 1u << (r * U + u);
  while (wait != 0) {
    __syncwarp();
#pragma unroll
    for (int r = 0; r < N; r++)
#pragma unroll
      for (int u = 0; u < U; u++)
        if ((wait & (1u << (r * U + u))) && line[u] < lines)
          v[r][u] = ld_ll(reinterpret_cast<const uint4 *>(src[r] +
                                                          (size_t)line[u] * MC_KERN_LINE_BYTES) +
                          s);
#pragma unroll
    for (int r = 0; r < N; r++)
#pragma unroll
      for (int u = 0; u < U; u++) {
        if (!(wait & (1u << (r * U + u)))) continue;
        const bool mine = line[u] >= lines || s != 7 || flag_ok(v[r][u], tag);
        const bool ok = __shfl_sync(kFull, mine, (threadIdx.x & 31) | 7);
        if (__all_sync(kFull, ok)) wait &= ~(1u << (r * U + u));
      }
    if (wait != 0 && warp_gives_up(a, c, spins, (__ffs(wait) - 1) / U)) return false;
  }
  return true;
}

}  // namespace

#endif
