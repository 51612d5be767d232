/* SPDX-License-Identifier: Apache-2.0 */
/* norm_row.cuh - the RMSNorm of one row by a team of MC_KERN_ROW_TEAM threads, in the fixed order
 * of mc_rmsnorm.h: shared by the fused kernels (rmsnorm.cu) and the standalone add + RMSNorm
 * (norm.cu), so the two give the same bits by construction.
 *
 * A team owns one row at a time; thread k of the team handles vectors k, k + 256, ... of it (the
 * lanes of mc_rmsnorm.h's order).  The row's v = D(a + r) is first written into the team's shared
 * memory (add_residual_t), then finish_row norms it from there.  Teams synchronise with their own
 * named barrier (1 + team in block).  The argument struct A of finish_row has the fields of
 * mc_kern_arn_t it reads (weight, y, hidden, eps, y_fp8, y_scale) and a plan p whose chunk_vecs is
 * the row's vector count. */
#ifndef MC_NORM_ROW_CUH_
#define MC_NORM_ROW_CUH_

#include <cuda_fp8.h>

#include "kernels/lines.cuh"

namespace {

struct team_t {
  int team, tt, bar;
  uint4 *sv;  /* the row being normed: v, chunk_vecs vectors */
  float *red; /* 16 floats: the warps' sums, then their maxima */
};

struct team_sync_t {
  int bar;
  __device__ void operator()() const {
    asm volatile("bar.sync %0, %1;" ::"r"(bar), "r"(MC_KERN_ROW_TEAM) : "memory");
  }
};

__device__ __forceinline__ team_t make_team(const mc_kern_plan_t &p, uint4 *smem, float *red) {
  team_t t;
  const int tb = threadIdx.x / MC_KERN_ROW_TEAM;
  t.team = blockIdx.x * (blockDim.x / MC_KERN_ROW_TEAM) + tb;
  t.tt = threadIdx.x % MC_KERN_ROW_TEAM;
  t.bar = 1 + tb;
  t.sv = smem + (size_t)tb * p.chunk_vecs;
  t.red = red + 16 * tb;
  return t;
}

template <typename T>
__device__ __forceinline__ uint4 add_round(const uint4 &a, const uint4 &r) {
  acc_t<T> acc;
  acc_init<T>(acc, a);
  acc_add<T>(acc, r, MOECOMM_SUM);
  return acc_pack<T>(acc);
}

/* y of one vector: D((v * inv) * w) per element; amax grows by the rounded values. */
template <typename T>
__device__ __forceinline__ uint4 norm_vec(const uint4 &v, const uint4 &w, float inv, float &amax) {
  acc_t<T> y;
#pragma unroll
  for (int k = 0; k < 8; k++) y.f[k] = __fmul_rn(__fmul_rn(elem_f<T>(v, k), inv), elem_f<T>(w, k));
  const uint4 out = acc_pack<T>(y);
#pragma unroll
  for (int k = 0; k < 8; k++) amax = fmaxf(amax, fabsf(elem_f<T>(out, k)));
  return out;
}

/* The team's sum (op 0) or maximum (op 1) of x: butterfly in each warp, warps in order. */
__device__ __forceinline__ float team_total(const team_t &tm, float x, int op) {
#pragma unroll
  for (int m = 16; m >= 1; m /= 2) {
    const float o = __shfl_xor_sync(kFull, x, m);
    x = op == 0 ? __fadd_rn(x, o) : fmaxf(x, o);
  }
  if ((tm.tt & 31) == 0) tm.red[8 * op + (tm.tt >> 5)] = x;
  team_sync_t{tm.bar}();
  float t = tm.red[8 * op];
#pragma unroll
  for (int w = 1; w < MC_KERN_ROW_TEAM / 32; w++)
    t = op == 0 ? __fadd_rn(t, tm.red[8 * op + w]) : fmaxf(t, tm.red[8 * op + w]);
  return t;
}

/* Norms row t from tm.sv (complete after the first barrier) into y (and the fp8 copy). */
template <typename T, typename A>
__device__ void finish_row(const A &a, const team_t &tm, size_t t, bool ok) {
  const uint32_t hv = a.p.chunk_vecs;
  const uint4 *w = reinterpret_cast<const uint4 *>(a.weight);
  uint4 *y = reinterpret_cast<uint4 *>(a.y) + t * hv;
  float c = 0.0f, amax = 0.0f;
  team_sync_t{tm.bar}();
  for (uint32_t j = tm.tt; j < hv; j += MC_KERN_ROW_TEAM) {
    const uint4 v = tm.sv[j];
#pragma unroll
    for (int k = 0; k < 8; k++) c = __fmaf_rn(elem_f<T>(v, k), elem_f<T>(v, k), c);
  }
  const float ss = team_total(tm, c, 0);
  const float inv = __frcp_rn(__fsqrt_rn(__fadd_rn(__fdiv_rn(ss, (float)a.hidden), a.eps)));
  for (uint32_t j = tm.tt; j < hv; j += MC_KERN_ROW_TEAM) {
    const uint4 out = norm_vec<T>(tm.sv[j], w[j], inv, amax);
    if (ok) y[j] = out;
  }
  if (a.y_fp8 != nullptr) {
    const float scale = __fdiv_rn(team_total(tm, amax, 1), 448.0f);
    uint2 *q8 = reinterpret_cast<uint2 *>(static_cast<uint8_t *>(a.y_fp8) + t * a.hidden);
    for (uint32_t j = tm.tt; j < hv; j += MC_KERN_ROW_TEAM) {
      float unused = 0.0f;
      const uint4 out = norm_vec<T>(tm.sv[j], w[j], inv, unused);
      uint32_t b[2] = {0, 0};
#pragma unroll
      for (int k = 0; k < 8; k++) {
        const uint32_t q =
            scale == 0.0f ? 0u
                          : (uint32_t)__nv_cvt_float_to_fp8(__fdiv_rn(elem_f<T>(out, k), scale),
                                                            __NV_SATFINITE, __NV_E4M3);
        b[k >> 2] |= q << (8 * (k & 3));
      }
      if (ok) q8[j] = make_uint2(b[0], b[1]);
    }
    if (ok && tm.tt == 0) a.y_scale[t] = scale;
  }
  team_sync_t{tm.bar}(); /* sv and red are the next row's */
}

/* f for take_row: v = D(a + r) into shared memory and back into the residual row r (nullptr: a
   padding row, nothing to do). */
template <typename T>
struct add_residual_t {
  uint4 *sv, *r;
  __device__ void operator()(uint32_t j, const uint4 &a) const {
    if (r == nullptr) return;
    const uint4 v = add_round<T>(a, r[j]);
    sv[j] = v;
    r[j] = v;
  }
};

}  // namespace

#endif
