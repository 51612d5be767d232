/* SPDX-License-Identifier: Apache-2.0 */
/* norm.cu - the residual add + RMSNorm alone (mc_norm.h).
 *
 * A team of MC_KERN_ROW_TEAM threads owns a row at a time (rows t, t + teams, ...), thread k the
 * vectors k, k + 256, ... of it: the lanes of mc_rmsnorm.h's order.  No communication, so any
 * grid works; teams synchronise with their own named barrier, never with the whole block (the two
 * teams of a block may own different numbers of rows).
 *
 *  k_norm_rows (hidden a multiple of 8 up to MC_KERN_ROW_MAX_H, every pointer 16-byte aligned):
 *    the fused kernels' own code (norm_row.cuh): v = D(a + r) into shared memory and into r, then
 *    finish_row.
 *  k_norm_any (anything else): element by element, the same operations in the same order; the
 *    row's v lives in r (written in the first pass, read back by the same thread in the second),
 *    so the row needs no shared memory and any hidden size works.
 * y may be a: every element of a row is read and written by one thread, a before y. */
#include <string.h>

#include "kernels/mc_norm.h"
#include "kernels/norm_row.cuh"

namespace {

constexpr int kNormBlocksMax = 4096; /* grid cap; teams loop over the rows */

struct knorm_t : mc_kern_norm_t {
  mc_kern_plan_t p; /* p.chunk_vecs: a row's vectors (finish_row reads it); 0 in k_norm_any */
};

template <typename T>
__global__ void __launch_bounds__(2 * MC_KERN_ROW_TEAM) k_norm_rows(const knorm_t k) {
  extern __shared__ uint4 smem[];
  __shared__ float red[2 * 16];
  const team_t tm = make_team(k.p, smem, red);
  const uint64_t teams = (uint64_t)gridDim.x * (blockDim.x / MC_KERN_ROW_TEAM);
  const uint32_t hv = k.p.chunk_vecs;
  for (uint64_t t = (uint64_t)tm.team; t < k.rows; t += teams) {
    const uint4 *a = reinterpret_cast<const uint4 *>(k.a) + t * hv;
    const add_residual_t<T> f = {tm.sv, reinterpret_cast<uint4 *>(k.residual) + t * hv};
    for (uint32_t j = tm.tt; j < hv; j += MC_KERN_ROW_TEAM) f(j, a[j]);
    finish_row<T>(k, tm, t, true);
  }
}

/* Element e of a buffer of T at any 2-byte alignment, widened exactly (the same widening as the
   vector path's elem_f). */
template <typename T>
__device__ __forceinline__ float ld_t(const void *buf, size_t e) {
  return elem_f<T>(make_uint4(ld_elem(static_cast<const char *>(buf) + 2 * e, 2), 0, 0, 0), 0);
}

/* f rounded to T (nearest even) into element e, and the stored value widened again. */
template <typename T>
__device__ __forceinline__ float st_t(void *buf, size_t e, float f) {
  const uint32_t b = bits_of<T>(f);
  st_elem(static_cast<char *>(buf) + 2 * e, 2, b);
  return elem_f<T>(make_uint4(b, 0, 0, 0), 0);
}

template <typename T>
__global__ void __launch_bounds__(2 * MC_KERN_ROW_TEAM) k_norm_any(const knorm_t k) {
  extern __shared__ uint4 smem[];
  __shared__ float red[2 * 16];
  const team_t tm = make_team(k.p, smem, red);
  const uint64_t teams = (uint64_t)gridDim.x * (blockDim.x / MC_KERN_ROW_TEAM);
  const size_t H = k.hidden, nv = (H + 7) / 8;
  for (uint64_t t = (uint64_t)tm.team; t < k.rows; t += teams) {
    const size_t base = t * H;
    float c = 0.0f, amax = 0.0f;
    for (size_t j = tm.tt; j < nv; j += MC_KERN_ROW_TEAM)
      for (size_t h = 8 * j; h < 8 * j + 8 && h < H; h++) {
        const float v = st_t<T>(k.residual, base + h,
                                __fadd_rn(ld_t<T>(k.a, base + h), ld_t<T>(k.residual, base + h)));
        c = __fmaf_rn(v, v, c);
      }
    const float ss = team_total(tm, c, 0);
    const float inv = __frcp_rn(__fsqrt_rn(__fadd_rn(__fdiv_rn(ss, (float)k.hidden), k.eps)));
    for (size_t j = tm.tt; j < nv; j += MC_KERN_ROW_TEAM)
      for (size_t h = 8 * j; h < 8 * j + 8 && h < H; h++) {
        const float y =
            st_t<T>(k.y, base + h,
                    __fmul_rn(__fmul_rn(ld_t<T>(k.residual, base + h), inv), ld_t<T>(k.weight, h)));
        amax = fmaxf(amax, fabsf(y));
      }
    if (k.y_fp8 != nullptr) {
      const float scale = __fdiv_rn(team_total(tm, amax, 1), 448.0f);
      uint8_t *q8 = static_cast<uint8_t *>(k.y_fp8) + base;
      for (size_t j = tm.tt; j < nv; j += MC_KERN_ROW_TEAM)
        for (size_t h = 8 * j; h < 8 * j + 8 && h < H; h++)
          q8[h] = scale == 0.0f
                      ? 0
                      : (uint8_t)__nv_cvt_float_to_fp8(__fdiv_rn(ld_t<T>(k.y, base + h), scale),
                                                       __NV_SATFINITE, __NV_E4M3);
      if (tm.tt == 0) k.y_scale[t] = scale;
    }
    team_sync_t{tm.bar}(); /* red is the next row's */
  }
}

bool host_aligned16(const void *p) {
  return ((uintptr_t)p & 15u) == 0;
}

}  // namespace

extern "C" int mc_kern_add_rmsnorm(const mc_kern_norm_t *n, void *stream) {
  knorm_t k;
  size_t elems;
  if (n == nullptr || (n->dtype != MOECOMM_FLOAT16 && n->dtype != MOECOMM_BFLOAT16) ||
      n->hidden == 0 || (n->y_fp8 != nullptr) != (n->y_scale != nullptr) || !(n->eps >= 0.0f) ||
      __builtin_mul_overflow(n->rows, n->hidden, &elems) || elems > PTRDIFF_MAX / 2)
    return (int)cudaErrorInvalidValue;
  if (n->rows == 0) return (int)cudaSuccess;
  if (n->a == nullptr || n->residual == nullptr || n->weight == nullptr || n->y == nullptr)
    return (int)cudaErrorInvalidValue;
  static_cast<mc_kern_norm_t &>(k) = *n;
  memset(&k.p, 0, sizeof(k.p));
  const bool fast = n->hidden % 8 == 0 && n->hidden <= MC_KERN_ROW_MAX_H && host_aligned16(n->a) &&
                    host_aligned16(n->residual) && host_aligned16(n->weight) &&
                    host_aligned16(n->y) && (n->y_fp8 == nullptr || host_aligned16(n->y_fp8));
  /* two rows per block while a block's rows fit in 32 KiB of shared memory (as the fused ones) */
  const size_t per_block = fast && n->hidden > 8192 ? 1 : 2;
  const size_t blocks = (n->rows + per_block - 1) / per_block;
  if (fast) k.p.chunk_vecs = (uint32_t)(n->hidden / 8);
  const void *fn = fast ? (n->dtype == MOECOMM_FLOAT16 ? (const void *)k_norm_rows<__half>
                                                       : (const void *)k_norm_rows<__nv_bfloat16>)
                        : (n->dtype == MOECOMM_FLOAT16 ? (const void *)k_norm_any<__half>
                                                       : (const void *)k_norm_any<__nv_bfloat16>);
  return (int)launch_kernel(fn, blocks < (size_t)kNormBlocksMax ? (int)blocks : kNormBlocksMax,
                            (int)per_block * MC_KERN_ROW_TEAM,
                            per_block * k.p.chunk_vecs * sizeof(uint4), &k, stream, 0);
}
