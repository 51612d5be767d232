/* SPDX-License-Identifier: Apache-2.0 */
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
#include "kernels/device.cuh"
#include "kernels/mc_push.h"

namespace {

constexpr int kThreads = MC_KERN_THREADS;

/* ---- per-block barrier (one-shot, two-shot) ------------------------------------------------ */

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
  static constexpr int value = MC_KERN_UNROLL(N);
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

/* Two-shot, phase 1: this rank's part (vectors [my0, my0 + ps)) reduced from every member's
   source and pushed to every member's destination. */
template <typename T, int N>
__device__ __forceinline__ void twoshot_reduce_part(const mc_kern_ar_t &a, const char *const *src,
                                                    char *const *dst, char *out, bool fast,
                                                    size_t ps, size_t first, size_t stride) {
  constexpr int VE = 16 / sizeof(T);
  constexpr int U = unroll_t<N>::value;
  const size_t nv = (a.count + VE - 1) / VE;
  const size_t nfull = a.count / VE;
  const size_t my0 = (size_t)a.rank * ps;
  for (size_t j0 = first; j0 < ps; j0 += stride * U) {
    if (fast) {
      uint4 v[U][N];
#pragma unroll
      for (int u = 0; u < U; u++) {
        const size_t j = j0 + u * stride, i = my0 + j;
        if (j < ps && i < nfull) {
#pragma unroll
          for (int r = 0; r < N; r++) v[u][r] = __ldcg(reinterpret_cast<const uint4 *>(src[r]) + i);
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

template <typename T, int N>
__global__ void __launch_bounds__(kThreads) k_twoshot(const mc_kern_ar_t a) {
  __shared__ call_t c;
  if (!call_begin(a, c)) {
    call_end(a, c);
    return;
  }
  constexpr int VE = 16 / sizeof(T);
  const uint64_t epoch = c.epoch;
  const size_t nv = (a.count + VE - 1) / VE;
  const size_t ps = (nv + N - 1) / N; /* vectors per part; part r belongs to rank r */
  const bool eager = a.table == nullptr;
  const char *in = (const char *)a.in;
  char *out = (char *)a.out;
  const size_t first = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
  const size_t stride = (size_t)gridDim.x * blockDim.x;
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

  if (barrier<N>(a, c, 4 * epoch + 1, eager))
    twoshot_reduce_part<T, N>(a, src, dst, out, fast, ps, first, stride);

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

}  // namespace

extern "C" int mc_kern_all_reduce(const mc_kern_ar_t *a, void *stream) {
  if (a == nullptr || a->algo < MC_KERN_LL || a->algo > MC_KERN_ALGOS || a->dtype < 0 ||
      a->dtype > 2 || a->size < 2 || a->size > MC_KERN_MAX_RANKS || a->count == 0)
    return (int)cudaErrorInvalidValue;
  if (a->algo > MC_KERN_TWOSHOT) return mc_kern_push_all_reduce(a, stream);
  int blocks, threads;
  mc_kern_shape(a->algo, a->size, a->count, a->dtype, a->max_blocks, &blocks, &threads);
  const void *fn = (const void *)kKernels[a->algo - 1][a->dtype][a->size - 2];
  return (int)launch_kernel(fn, blocks, threads, 0, (void *)a, stream, a->pdl);
}

extern "C" int mc_kern_check_device(void) {
  cudaFuncAttributes attr;
  return (int)cudaFuncGetAttributes(&attr, (const void *)kKernels[0][0][0]);
}
