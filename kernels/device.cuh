/* SPDX-License-Identifier: Apache-2.0 */
/* device.cuh - device code shared by the kernels (the kernel files): memory access primitives,
 * 16-byte vector loads and stores with an element-wise path for tails and misaligned pointers, the
 * fp32 rank-order reduction, and the per-call state (epoch, deadline, first error, abort).
 *
 * The per-call helpers take any argument struct A with the fields seg[], rank, err, algo and
 * timeout_ns (mc_kern_ar_t, and the push and fused kernels' own).  Everything is in an anonymous
 * namespace: each kernel file gets its own copy. */
#ifndef MC_DEVICE_CUH_
#define MC_DEVICE_CUH_

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <stdint.h>

#include "abi/moecomm.h"
#include "kernels/mc_kernels.h"
#include "kernels/mc_shape.h"

namespace {

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

__device__ __forceinline__ bool aligned16(const void *p) {
  return ((uintptr_t)p & 15u) == 0;
}

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

template <typename A>
__device__ __forceinline__ mc_kern_state_t *state_of(const A &a) {
  return reinterpret_cast<mc_kern_state_t *>(a.seg[a.rank] + MC_KERN_STATE_OFF);
}

__device__ __forceinline__ uint64_t *flags_of(char *seg) {
  return reinterpret_cast<uint64_t *>(seg + MC_KERN_FLAGS_OFF);
}

/* The first error of the communicator goes to host memory; later ones are dropped. */
template <typename A>
__device__ void report(const A &a, uint32_t code, int peer, uint64_t epoch) {
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
template <typename A>
__device__ __forceinline__ bool call_begin(const A &a, call_t &c) {
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
template <typename A>
__device__ __forceinline__ void call_end(const A &a, const call_t &c) {
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
template <typename A>
__device__ __forceinline__ bool timed_out(const A &a, call_t &c, uint32_t &spins, int peer) {
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

/* Launches fn (one argument: *arg) with or without programmatic dependent launch. */
inline cudaError_t launch_kernel(const void *fn, int blocks, int threads, size_t smem, void *arg,
                                 void *stream, int pdl) {
  void *args[] = {arg};
  if (pdl) {
    cudaLaunchConfig_t cfg = {};
    cudaLaunchAttribute attr[1] = {};
    attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    attr[0].val.programmaticStreamSerializationAllowed = 1;
    cfg.gridDim = dim3((unsigned)blocks);
    cfg.blockDim = dim3((unsigned)threads);
    cfg.dynamicSmemBytes = smem;
    cfg.stream = (cudaStream_t)stream;
    cfg.attrs = attr;
    cfg.numAttrs = 1;
    return cudaLaunchKernelExC(&cfg, fn, args);
  }
  return cudaLaunchKernel(fn, dim3((unsigned)blocks), dim3((unsigned)threads), args, smem,
                          (cudaStream_t)stream);
}

}  // namespace

#endif
