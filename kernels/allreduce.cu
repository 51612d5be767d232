/* allreduce.cu - custom all-reduce kernels (LL, one-shot, two-shot) and their C launcher.
 *
 * Shared rules (see mc_kernels.h for the segment layout):
 *  - data moves in 16-byte vectors; a vector that is partial (tail) or a pointer that is not
 * 16-byte aligned takes an element-wise path, so any count and alignment is exact;
 *  - every rank reduces the members' values in rank order in fp32, so all ranks get the same bits;
 *  - block b of every rank handles the same vector indices (i mod gridDim*blockDim in block b's
 *    range), so a per-block barrier is enough to hand data between ranks;
 *  - barrier values are 4 * epoch + k and only grow, waits use >=, so a peer that is already one
 *    call ahead never deadlocks and an old value never satisfies a new wait. */
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <stdint.h>

#include "abi/moecomm.h"
#include "kernels/mc_kernels.h"

namespace {

constexpr int kThreads = 512;
constexpr int kMaxBlocksData = 64;    /* enough loads in flight for NVLink; all blocks resident */
constexpr uint32_t kSpinCheck = 1024; /* spins between clock reads */

/* ---- memory access primitives ---------------------------------------------------------------- */

__device__ __forceinline__ uint64_t globaltimer() {
  uint64_t t;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
  return t;
}

__device__ __forceinline__ void st_release_sys(uint64_t *p, uint64_t v) {
  asm volatile("st.release.sys.global.u64 [%0], %1;" ::"l"(p), "l"(v) : "memory");
}
__device__ __forceinline__ void st_relaxed_sys(uint64_t *p, uint64_t v) {
  asm volatile("st.relaxed.sys.global.u64 [%0], %1;" ::"l"(p), "l"(v) : "memory");
}
__device__ __forceinline__ uint64_t ld_acquire_sys(const uint64_t *p) {
  uint64_t v;
  asm volatile("ld.acquire.sys.global.u64 %0, [%1];" : "=l"(v) : "l"(p) : "memory");
  return v;
}
__device__ __forceinline__ uint64_t ld_relaxed_sys(const uint64_t *p) {
  uint64_t v;
  asm volatile("ld.relaxed.sys.global.u64 %0, [%1];" : "=l"(v) : "l"(p) : "memory");
  return v;
}

/* LL packets: 16 bytes = {data0, flag, data1, flag}.  Each 8-byte half is written atomically, so a
   half whose flag matches carries this call's data. */
__device__ __forceinline__ void st_ll(uint4 *p, uint4 v) {
  asm volatile("st.volatile.global.v4.u32 [%0], {%1,%2,%3,%4};" ::"l"(p), "r"(v.x), "r"(v.y),
               "r"(v.z), "r"(v.w)
               : "memory");
}
__device__ __forceinline__ uint4 ld_ll(const uint4 *p) {
  uint4 v;
  asm volatile("ld.volatile.global.v4.u32 {%0,%1,%2,%3}, [%4];"
               : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
               : "l"(p)
               : "memory");
  return v;
}

__device__ __forceinline__ bool aligned16(const void *p) { return ((uintptr_t)p & 15u) == 0; }

/* Element-wise access for tails and misaligned pointers: a pointer that is not even aligned to its
   element size is read and written in the widest unit its address allows. */
__device__ __noinline__ uint32_t ld_elem(const char *p, int es) {
  const uintptr_t a = (uintptr_t)p;
  if (es == 4 && (a & 3u) == 0) return *(const volatile uint32_t *)p;
  if ((a & 1u) == 0) {
    uint32_t lo = *(const volatile uint16_t *)p;
    if (es == 2) return lo;
    return lo | ((uint32_t)(*(const volatile uint16_t *)(p + 2)) << 16);
  }
  uint32_t v = 0;
  for (int k = 0; k < es; k++) v |= (uint32_t)(*(const volatile uint8_t *)(p + k)) << (8 * k);
  return v;
}

__device__ __noinline__ void st_elem(char *p, int es, uint32_t v) {
  const uintptr_t a = (uintptr_t)p;
  if (es == 4 && (a & 3u) == 0) {
    *(volatile uint32_t *)p = v;
  } else if ((a & 1u) == 0) {
    *(volatile uint16_t *)p = (uint16_t)v;
    if (es == 4) *(volatile uint16_t *)(p + 2) = (uint16_t)(v >> 16);
  } else {
    for (int k = 0; k < es; k++) *(volatile uint8_t *)(p + k) = (uint8_t)(v >> (8 * k));
  }
}

union vec_u {
  uint4 v;
  uint32_t w[4];
  uint16_t h[8];
};

/* Vector i (elements [i*VE, i*VE+VE) of count): missing elements read as 0. */
template <typename T>
__device__ __noinline__ uint4 load_vec_slow(const char *base, size_t i, size_t count) {
  constexpr int VE = 16 / sizeof(T);
  vec_u u;
  u.v = make_uint4(0, 0, 0, 0);
#pragma unroll
  for (int k = 0; k < VE; k++) {
    const size_t e = i * VE + k;
    if (e < count) {
      const uint32_t x = ld_elem(base + e * sizeof(T), (int)sizeof(T));
      if (sizeof(T) == 4)
        u.w[k] = x;
      else
        u.h[k] = (uint16_t)x;
    }
  }
  return u.v;
}

template <typename T>
__device__ __noinline__ void store_vec_slow(char *base, size_t i, size_t count, uint4 v) {
  constexpr int VE = 16 / sizeof(T);
  vec_u u;
  u.v = v;
#pragma unroll
  for (int k = 0; k < VE; k++) {
    const size_t e = i * VE + k;
    if (e < count) st_elem(base + e * sizeof(T), (int)sizeof(T), sizeof(T) == 4 ? u.w[k] : u.h[k]);
  }
}

/* L2-only loads (.cg): peer data must never come from a stale L1 line. */
template <typename T>
__device__ __forceinline__ uint4 load_vec(const char *base, size_t i, size_t count, bool vec_ok) {
  if (vec_ok && (i + 1) * (16 / sizeof(T)) <= count)
    return __ldcg(reinterpret_cast<const uint4 *>(base) + i);
  return load_vec_slow<T>(base, i, count);
}

template <typename T>
__device__ __forceinline__ void store_vec(char *base, size_t i, size_t count, bool vec_ok,
                                          uint4 v) {
  if (vec_ok && (i + 1) * (16 / sizeof(T)) <= count)
    reinterpret_cast<uint4 *>(base)[i] = v;
  else
    store_vec_slow<T>(base, i, count, v);
}

/* ---- reduction in fp32, rank order ----------------------------------------------------------- */

__device__ __forceinline__ uint32_t word(const uint4 &v, int k) {
  return k == 0 ? v.x : k == 1 ? v.y : k == 2 ? v.z : v.w;
}

template <typename T>
__device__ __forceinline__ float elem_f(const uint4 &v, int k);
template <>
__device__ __forceinline__ float elem_f<float>(const uint4 &v, int k) {
  return __uint_as_float(word(v, k));
}
template <>
__device__ __forceinline__ float elem_f<__half>(const uint4 &v, int k) {
  const uint32_t w = word(v, k >> 1);
  return __half2float(__ushort_as_half((unsigned short)((k & 1) ? (w >> 16) : (w & 0xffffu))));
}
template <>
__device__ __forceinline__ float elem_f<__nv_bfloat16>(const uint4 &v, int k) {
  const uint32_t w = word(v, k >> 1);
  return __uint_as_float((k & 1) ? (w & 0xffff0000u) : (w << 16));
}

template <typename T>
__device__ __forceinline__ uint32_t bits_of(float f);
template <>
__device__ __forceinline__ uint32_t bits_of<float>(float f) {
  return __float_as_uint(f);
}
template <>
__device__ __forceinline__ uint32_t bits_of<__half>(float f) {
  return __half_as_ushort(__float2half_rn(f));
}
template <>
__device__ __forceinline__ uint32_t bits_of<__nv_bfloat16>(float f) {
  return __bfloat16_as_ushort(__float2bfloat16_rn(f));
}

__device__ __forceinline__ float red(float a, float b, int op) {
  return op == MOECOMM_SUM ? __fadd_rn(a, b) : op == MOECOMM_MAX ? fmaxf(a, b) : fminf(a, b);
}

/* Streaming accumulator: acc_init with rank 0's vector, acc_add with ranks 1..n-1 in order. */
template <typename T>
struct acc_t {
  float f[16 / sizeof(T)];
};

template <typename T>
__device__ __forceinline__ void acc_init(acc_t<T> &acc, const uint4 &v) {
#pragma unroll
  for (int k = 0; k < 16 / (int)sizeof(T); k++) acc.f[k] = elem_f<T>(v, k);
}

template <typename T>
__device__ __forceinline__ void acc_add(acc_t<T> &acc, const uint4 &v, int op) {
#pragma unroll
  for (int k = 0; k < 16 / (int)sizeof(T); k++) acc.f[k] = red(acc.f[k], elem_f<T>(v, k), op);
}

template <typename T>
__device__ __forceinline__ uint4 acc_pack(const acc_t<T> &acc) {
  uint32_t w[4];
  if (sizeof(T) == 4) {
#pragma unroll
    for (int k = 0; k < 4; k++) w[k] = bits_of<T>(acc.f[k]);
  } else {
#pragma unroll
    for (int k = 0; k < 4; k++)
      w[k] = bits_of<T>(acc.f[2 * k]) | (bits_of<T>(acc.f[2 * k + 1]) << 16);
  }
  return make_uint4(w[0], w[1], w[2], w[3]);
}

template <typename T, int N>
__device__ __forceinline__ uint4 reduce_vecs(const uint4 (&v)[N], int op) {
  acc_t<T> acc;
  acc_init<T>(acc, v[0]);
#pragma unroll
  for (int r = 1; r < N; r++) acc_add<T>(acc, v[r], op);
  return acc_pack<T>(acc);
}

/* ---- per-call state: epoch, deadline, abort -------------------------------------------------- */

struct call_t {
  uint64_t epoch;
  uint64_t deadline;
  int abort;
};

__device__ __forceinline__ mc_kern_state_t *state_of(const mc_kern_ar_t &a) {
  return reinterpret_cast<mc_kern_state_t *>(a.seg[a.rank] + MC_KERN_STATE_OFF);
}

__device__ __forceinline__ uint64_t *flags_of(char *seg) {
  return reinterpret_cast<uint64_t *>(seg + MC_KERN_FLAGS_OFF);
}

/* The first error of the communicator goes to host memory; later ones are dropped. */
__device__ void report(const mc_kern_ar_t &a, uint32_t code, int peer, uint64_t epoch) {
  mc_kern_state_t *st = state_of(a);
  if (atomicCAS(&st->err_claim, 0u, 1u) != 0u) return;
  volatile mc_kern_err_t *e = a.err;
  e->peer = peer;
  e->epoch = epoch;
  e->algo = (uint32_t)a.algo;
  __threadfence_system();
  e->code = code;
  __threadfence_system();
}

/* Returns false when the communicator already failed: then the call does nothing (the members
   are out of step), so a graph of many ops does not wait one timeout per op. */
__device__ __forceinline__ bool call_begin(const mc_kern_ar_t &a, call_t &c) {
  /* With programmatic dependent launch this block may start before the previous kernel of the
     stream has finished: wait for it (and its memory) before reading anything, then let the next
     kernel be scheduled as early as possible.  Without it both are no-ops. */
  asm volatile("griddepcontrol.wait;" ::: "memory");
  asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
  if (threadIdx.x == 0) {
    const mc_kern_state_t *st = state_of(a);
    c.epoch = *(const volatile uint64_t *)&st->epoch;
    const uint64_t now = globaltimer();
    c.deadline = a.timeout_ns ? now + a.timeout_ns : ~0ull;
    c.abort = *(const volatile uint32_t *)&st->err_claim != 0;
  }
  __syncthreads();
  return !c.abort;
}

/* The last block to finish advances the epoch: every block has read it by then (its value is
   in use since call_begin).  No fence: the next kernel reads the epoch only after this grid has
   completed (stream order, or griddepcontrol.wait), which makes the write visible, and a fence
   here would wait for this thread's outstanding NVLink stores.  One block needs no count. */
__device__ __forceinline__ void call_end(const mc_kern_ar_t &a, const call_t &c) {
  __syncthreads();
  if (threadIdx.x == 0) {
    mc_kern_state_t *st = state_of(a);
    if (gridDim.x == 1) {
      *(volatile uint64_t *)&st->epoch = c.epoch + 1;
    } else if (atomicAdd(&st->done, 1u) == gridDim.x - 1) {
      *(volatile uint32_t *)&st->done = 0;
      *(volatile uint64_t *)&st->epoch = c.epoch + 1;
    }
  }
}

/* Returns false after a timeout (recorded) or when the block already gave up. */
__device__ __forceinline__ bool timed_out(const mc_kern_ar_t &a, call_t &c, uint32_t &spins,
                                          int peer) {
  if (++spins < kSpinCheck) return false;
  spins = 0;
  if (*(volatile int *)&c.abort) return true;
  if (*(const volatile uint32_t *)&state_of(a)->err_claim != 0) { /* another block gave up */
    *(volatile int *)&c.abort = 1;
    return true;
  }
  if (globaltimer() <= c.deadline) return false;
  report(a, MC_KERN_ERR_TIMEOUT, peer, c.epoch);
  *(volatile int *)&c.abort = 1;
  return true;
}

/* Block-level barrier with the same block of every member.  strong: release/acquire at system
   scope (data written in this kernel is handed over); otherwise relaxed (only arrival matters). */
template <int N>
__device__ bool barrier(const mc_kern_ar_t &a, call_t &c, uint64_t value, bool strong) {
  __syncthreads();
  if (threadIdx.x < N && !*(volatile int *)&c.abort) {
    const int q = threadIdx.x;
    uint64_t *remote = flags_of(a.seg[q]) + blockIdx.x * MC_KERN_MAX_RANKS + a.rank;
    const uint64_t *local = flags_of(a.seg[a.rank]) + blockIdx.x * MC_KERN_MAX_RANKS + q;
    if (strong)
      st_release_sys(remote, value);
    else
      st_relaxed_sys(remote, value);
    uint32_t spins = 0;
    for (;;) {
      const uint64_t v = strong ? ld_acquire_sys(local) : ld_relaxed_sys(local);
      if ((int64_t)(v - value) >= 0) break;
      if (timed_out(a, c, spins, q)) break;
    }
  }
  __syncthreads();
  return !*(volatile int *)&c.abort;
}

template <int N>
struct unroll_t {
  static constexpr int value = N <= 2 ? 4 : N <= 4 ? 2 : 1; /* ~8 loads in flight per thread */
};

/* ---- LL: one NVLink crossing, no barrier ----------------------------------------------------- */

/* Waits for the two packets of one vector from peer r; false after a timeout. */
__device__ __forceinline__ bool ll_recv(const mc_kern_ar_t &a, call_t &c, const uint4 *src,
                                        uint32_t flag, int r, uint4 &v) {
  uint32_t spins = 0;
  for (;;) {
    const uint4 p0 = ld_ll(src), p1 = ld_ll(src + 1);
    if (p0.y == flag && p0.w == flag && p1.y == flag && p1.w == flag) {
      v = make_uint4(p0.x, p0.z, p1.x, p1.z);
      return true;
    }
    if (timed_out(a, c, spins, r)) {
      v = make_uint4(0, 0, 0, 0);
      return false;
    }
  }
}

template <typename T, int N>
__global__ void __launch_bounds__(kThreads) k_ll(const mc_kern_ar_t a) {
  __shared__ call_t c;
  if (!call_begin(a, c)) {
    call_end(a, c);
    return;
  }
  constexpr int VE = 16 / sizeof(T);
  const uint64_t epoch = c.epoch;
  const uint32_t flag = (uint32_t)(epoch % 0xffffffffull) + 1u; /* never 0: fresh memory is 0 */
  const size_t parity = epoch & 1u;
  const size_t nv = (a.count + VE - 1) / VE;
  const char *in = (const char *)a.in;
  char *out = (char *)a.out;
  const bool in_ok = aligned16(in), out_ok = aligned16(out);
  const size_t first = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
  const size_t stride = (size_t)gridDim.x * blockDim.x;

  /* my packets go to slot [parity][rank] of every peer */
  for (size_t i = first; i < nv; i += stride) {
    const uint4 v = load_vec<T>(in, i, a.count, in_ok);
    const uint4 p0 = make_uint4(v.x, flag, v.y, flag);
    const uint4 p1 = make_uint4(v.z, flag, v.w, flag);
#pragma unroll
    for (int q = 0; q < N; q++) {
      if (q == a.rank) continue;
      uint4 *dst =
          reinterpret_cast<uint4 *>(a.seg[q] + a.ll_off + (parity * N + a.rank) * a.ll_slot_bytes) +
          2 * i;
      st_ll(dst, p0);
      st_ll(dst + 1, p1);
    }
  }

  bool ok = true;
  for (size_t i = first; ok && i < nv; i += stride) {
    const uint4 *slot0 =
        reinterpret_cast<const uint4 *>(a.seg[a.rank] + a.ll_off + parity * N * a.ll_slot_bytes) +
        2 * i;
    acc_t<T> acc;
#pragma unroll
    for (int r = 0; r < N; r++) {
      uint4 x;
      if (r == a.rank)
        x = load_vec<T>(in, i, a.count, in_ok);
      else
        ok = ll_recv(a, c,
                     reinterpret_cast<const uint4 *>(reinterpret_cast<const char *>(slot0) +
                                                     r * a.ll_slot_bytes),
                     flag, r, x) &&
             ok;
      if (r == 0)
        acc_init<T>(acc, x);
      else
        acc_add<T>(acc, x, a.op);
    }
    if (ok) store_vec<T>(out, i, a.count, out_ok, acc_pack<T>(acc));
  }
  call_end(a, c);
}

/* ---- one-shot: stage own input, one barrier, every rank reduces everything ------------------- */

template <typename T, int N>
__global__ void __launch_bounds__(kThreads) k_oneshot(const mc_kern_ar_t a) {
  __shared__ call_t c;
  if (!call_begin(a, c)) {
    call_end(a, c);
    return;
  }
  constexpr int VE = 16 / sizeof(T);
  constexpr int U = unroll_t<N>::value;
  const uint64_t epoch = c.epoch;
  const size_t half = (epoch & 1u) * a.stage_half_bytes;
  const size_t nv = (a.count + VE - 1) / VE;
  const char *in = (const char *)a.in;
  char *out = (char *)a.out;
  const bool in_ok = aligned16(in), out_ok = aligned16(out);
  const size_t first = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
  const size_t stride = (size_t)gridDim.x * blockDim.x;

  /* Staging (not the caller's buffer) is what peers read: in place is safe and no end barrier is
     needed, because the half used now is rewritten two calls later at the earliest, when every
     peer has passed the next call's barrier and so finished this one. */
  uint4 *mine = reinterpret_cast<uint4 *>(a.seg[a.rank] + a.stage_off + half);
  for (size_t i = first; i < nv; i += stride) mine[i] = load_vec<T>(in, i, a.count, in_ok);

  if (barrier<N>(a, c, 4 * epoch + 1, true)) {
    const uint4 *stage[N];
#pragma unroll
    for (int r = 0; r < N; r++)
      stage[r] = reinterpret_cast<const uint4 *>(a.seg[r] + a.stage_off + half);
    for (size_t i0 = first; i0 < nv; i0 += stride * U) {
      uint4 v[U][N];
#pragma unroll
      for (int u = 0; u < U; u++) {
        const size_t i = i0 + u * stride;
        if (i < nv) {
#pragma unroll
          for (int r = 0; r < N; r++) v[u][r] = __ldcg(stage[r] + i);
        }
      }
#pragma unroll
      for (int u = 0; u < U; u++) {
        const size_t i = i0 + u * stride;
        if (i < nv) store_vec<T>(out, i, a.count, out_ok, reduce_vecs<T, N>(v[u], a.op));
      }
    }
  }
  call_end(a, c);
}

/* ---- two-shot: reduce my part (pull), push it to every output, one barrier at each end ------- */

/* One vector of my part through the element-wise path (tail, or some pointer not 16-byte aligned):
   src[r] is where rank r's input is read, dst[q] where the result goes (dst[rank] is unused: the
   result goes to out). */
template <int N>
struct ptrs_t {
  const char *src[N];
  char *dst[N];
};

template <typename T, int N>
__device__ __noinline__ void twoshot_slow(const ptrs_t<N> p, char *out, size_t count, int op,
                                          int rank, size_t i) {
  acc_t<T> acc;
  acc_init<T>(acc, load_vec_slow<T>(p.src[0], i, count));
  for (int r = 1; r < N; r++) acc_add<T>(acc, load_vec_slow<T>(p.src[r], i, count), op);
  const uint4 res = acc_pack<T>(acc);
  store_vec_slow<T>(out, i, count, res);
  for (int q = 0; q < N; q++)
    if (q != rank) store_vec_slow<T>(p.dst[q], i, count, res);
}

template <typename T, int N>
__global__ void __launch_bounds__(kThreads) k_twoshot(const mc_kern_ar_t a) {
  __shared__ call_t c;
  if (!call_begin(a, c)) {
    call_end(a, c);
    return;
  }
  constexpr int VE = 16 / sizeof(T);
  constexpr int U = unroll_t<N>::value;
  const uint64_t epoch = c.epoch;
  const size_t nv = (a.count + VE - 1) / VE;
  const size_t nfull = a.count / VE;  /* vectors without a tail */
  const size_t ps = (nv + N - 1) / N; /* vectors per part; part r belongs to rank r */
  const bool eager = a.table == nullptr;
  const char *in = (const char *)a.in;
  char *out = (char *)a.out;
  const size_t first = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
  const size_t stride = (size_t)gridDim.x * blockDim.x;
  const size_t my0 = (size_t)a.rank * ps;
  uint4 *stage =
      reinterpret_cast<uint4 *>(a.seg[a.rank] + a.stage_off + (epoch & 1u) * a.stage_half_bytes);

  /* eager: every member's staging (same half) is its input and output, in place; captured: the
     caller's buffers, registered at capture end.  My own input is always read from `in`. */
  const char *src[N];
  char *dst[N];
  bool fast = aligned16(in) && aligned16(out);
  bool registered = true;
#pragma unroll
  for (int r = 0; r < N; r++) {
    const char *s = eager ? a.seg[r] + a.stage_off + (epoch & 1u) * a.stage_half_bytes
                          : (const char *)a.table->in[r];
    dst[r] = eager ? (char *)s : (char *)a.table->out[r];
    registered = registered && s != nullptr && dst[r] != nullptr;
    fast = fast && aligned16(s) && aligned16(dst[r]);
    src[r] = r == a.rank ? in : s;
  }
  if (!registered) {
    if (threadIdx.x == 0) report(a, MC_KERN_ERR_UNREGISTERED, -1, epoch);
    call_end(a, c);
    return;
  }

  if (eager) {
    /* the parts the other ranks reduce go to my staging, at the indices their block b reads */
    const bool in_ok = aligned16(in);
    for (size_t j = first; j < ps; j += stride) {
#pragma unroll
      for (int r = 0; r < N; r++) {
        const size_t i = (size_t)r * ps + j;
        if (r != a.rank && i < nv) stage[i] = load_vec<T>(in, i, a.count, in_ok);
      }
    }
  }

  if (barrier<N>(a, c, 4 * epoch + 1, eager)) {
    for (size_t j0 = first; j0 < ps; j0 += stride * U) {
      if (fast) {
        uint4 v[U][N];
#pragma unroll
        for (int u = 0; u < U; u++) {
          const size_t j = j0 + u * stride, i = my0 + j;
          if (j < ps && i < nfull) {
#pragma unroll
            for (int r = 0; r < N; r++)
              v[u][r] = __ldcg(reinterpret_cast<const uint4 *>(src[r]) + i);
          }
        }
#pragma unroll
        for (int u = 0; u < U; u++) {
          const size_t j = j0 + u * stride, i = my0 + j;
          if (j < ps && i < nfull) {
            const uint4 res = reduce_vecs<T, N>(v[u], a.op);
            reinterpret_cast<uint4 *>(out)[i] = res;
#pragma unroll
            for (int q = 0; q < N; q++)
              if (q != a.rank) reinterpret_cast<uint4 *>(dst[q])[i] = res;
          }
        }
      }
#pragma unroll
      for (int u = 0; u < U; u++) {
        const size_t j = j0 + u * stride, i = my0 + j;
        if (j < ps && i < nv && (!fast || i >= nfull)) {
          ptrs_t<N> p;
#pragma unroll
          for (int r = 0; r < N; r++) {
            p.src[r] = src[r];
            p.dst[r] = dst[r];
          }
          twoshot_slow<T, N>(p, out, a.count, a.op, a.rank, i);
        }
      }
    }
  }

  /* my pushes land before any peer leaves, and nobody reads or overwrites a buffer after its
     owner has left */
  if (barrier<N>(a, c, 4 * epoch + 2, true) && eager) {
    const bool out_ok = aligned16(out);
    for (size_t j = first; j < ps; j += stride) {
#pragma unroll
      for (int r = 0; r < N; r++) {
        const size_t i = (size_t)r * ps + j;
        if (r != a.rank && i < nv) store_vec<T>(out, i, a.count, out_ok, __ldcg(stage + i));
      }
    }
  }
  call_end(a, c);
}

/* ---- launcher -------------------------------------------------------------------------------- */

typedef void (*kfn_t)(const mc_kern_ar_t);

#define MC_KROW(K, T) \
  { K<T, 2>, K<T, 3>, K<T, 4>, K<T, 5>, K<T, 6>, K<T, 7>, K<T, 8> }
#define MC_KALGO(K) \
  { MC_KROW(K, float), MC_KROW(K, __half), MC_KROW(K, __nv_bfloat16) }

/* [algo - 1][dtype][size - 2]; dtype order is moecomm_dtype_t's */
const kfn_t kKernels[3][3][7] = {MC_KALGO(k_ll), MC_KALGO(k_oneshot), MC_KALGO(k_twoshot)};

int unroll_of(int size) { return size <= 2 ? 4 : size <= 4 ? 2 : 1; }

}  // namespace

extern "C" void mc_kern_shape(int algo, int size, size_t count, int dtype, int max_blocks,
                              int *blocks_p, int *threads_p) {
  const size_t es = dtype == MOECOMM_FLOAT32 ? 4 : 2;
  const size_t nv = (count * es + 15) / 16;
  /* LL: one vector per thread (the payload limit keeps it to a few dozen blocks); one-shot and
     two-shot: U vectors per thread per round.  Capped well below the SM count so that every
     block of a call is resident at once. */
  size_t work = nv, per_thread = 1;
  if (algo == MC_KERN_ONESHOT || algo == MC_KERN_TWOSHOT) {
    if (algo == MC_KERN_TWOSHOT) work = (nv + size - 1) / size;
    per_thread = (size_t)unroll_of(size);
  }
  const size_t cap = max_blocks > 0 && max_blocks <= MC_KERN_MAX_BLOCKS ? (size_t)max_blocks
                                                                         : kMaxBlocksData;
  size_t threads = (work + per_thread - 1) / per_thread;
  threads = threads < kThreads ? ((threads + 31) / 32) * 32 : kThreads;
  if (threads < 32) threads = 32;
  size_t blocks = (work + threads * per_thread - 1) / (threads * per_thread);
  if (blocks < 1) blocks = 1;
  if (blocks > cap) blocks = cap;
  *blocks_p = (int)blocks;
  *threads_p = (int)threads;
}

extern "C" int mc_kern_all_reduce(const mc_kern_ar_t *a, void *stream) {
  if (a == nullptr || a->algo < MC_KERN_LL || a->algo > MC_KERN_TWOSHOT || a->dtype < 0 ||
      a->dtype > 2 || a->size < 2 || a->size > MC_KERN_MAX_RANKS || a->count == 0)
    return (int)cudaErrorInvalidValue;
  int blocks, threads;
  mc_kern_shape(a->algo, a->size, a->count, a->dtype, a->max_blocks, &blocks, &threads);
  void *args[] = {(void *)a};
  const void *fn = (const void *)kKernels[a->algo - 1][a->dtype][a->size - 2];
  if (a->pdl) {
    cudaLaunchConfig_t cfg = {};
    cudaLaunchAttribute attr[1] = {};
    attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    attr[0].val.programmaticStreamSerializationAllowed = 1;
    cfg.gridDim = dim3((unsigned)blocks);
    cfg.blockDim = dim3((unsigned)threads);
    cfg.stream = (cudaStream_t)stream;
    cfg.attrs = attr;
    cfg.numAttrs = 1;
    return (int)cudaLaunchKernelExC(&cfg, fn, args);
  }
  return (int)cudaLaunchKernel(fn, dim3((unsigned)blocks), dim3((unsigned)threads), args, 0,
                               (cudaStream_t)stream);
}

extern "C" int mc_kern_check_device(void) {
  cudaFuncAttributes attr;
  return (int)cudaFuncGetAttributes(&attr, (const void *)kKernels[0][0][0]);
}
