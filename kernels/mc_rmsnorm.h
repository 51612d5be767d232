/* SPDX-License-Identifier: Apache-2.0 */
/* mc_rmsnorm.h - fused all-reduce + residual add + RMSNorm in one kernel (kernels/rmsnorm.cu).
 *
 * Every member m holds partial sums x_m [T, H] and a copy of the residual r [T, H] (the same on
 * every member, as tensor parallelism keeps it).  One call replaces r by r + sum_m x_m and writes
 * y = RMSNorm(r + sum_m x_m) * w, optionally also as fp8 e4m3 with a per-row scale, on every
 * member, with one pass over the data and no other launch.
 *
 * Definition, bit for bit (kernels/rmsnorm_ref.c is the same in plain C).  D is the dtype (fp16
 * or bf16), D(f) rounds an fp32 value to D (nearest even), every operation is one IEEE fp32
 * operation rounded to nearest even, and float(.) widens exactly:
 *   s   = x_0 + x_1 + ... + x_{n-1}     in rank order (the all-reduce rule of mc_kernels.h)
 *   a   = D(s)                          the all-reduce result, rounded once
 *   v   = D(float(a) + float(r))        the new residual, written back to r
 *   ss  = the row's sum of v^2 in the fixed order below
 *   inv = 1 / sqrt(ss / H + eps)        division and square root correctly rounded
 *   y   = D((v * inv) * w)              two multiplications, left to right
 * Order of ss: lane l (0..255) starts at 0 and accumulates c = fmaf(v, v, c) over the elements
 * of vectors l, l + 256, l + 512, ... in order (vector j is elements 8j .. 8j+7); lanes 32g ..
 * 32g+31 are summed by a butterfly (pairs (l, l^16), then l^8, l^4, l^2, l^1); the 8 group sums
 * are added in order 0..7.  (The unfused path, kernels/mc_norm.h, also takes other H: there the
 * last vector of a row may be short and adds only its elements.)  It depends only on H: a row
 * gets the same bits alone or in any batch, through every algorithm, on every member; and the
 * same bits as an unfused pipeline that runs the all-reduce (mc_kernels.h's rule) and then this
 * definition from a.
 * fp8 (y_fp8 != NULL): scale = amax |y| / 448 over the row (the rounded y); q = e4m3(y / scale),
 * nearest even, saturated to +-448, NaN -> 0x7f; a row whose amax is 0 gets scale 0 and q = 0.
 *
 * Algorithms (mc_kern_arn_t.algo; all barrier-free; a row is never split between members, its
 * norm needs the whole row):
 *   MC_KERN_LL            every member sends its x rows to every peer as LL packets (the LL
 *                         all-reduce's format, in the LL region) and norms every row: one NVLink
 *                         crossing, twice the bytes; T * H * es up to half an LL slot (small T);
 *   MC_KERN_ONESHOT_PUSH  the same with chunks in staging (release flag per row): any T;
 *   MC_KERN_TWOSHOT_PUSH  rows are split between members: row t of part q goes to q, which
 *                         reduces it and sends a = D(s) to every peer; every member adds its
 *                         residual and norms the row (large T; a crosses NVLink once, instead of
 *                         y and r' separately: half the bytes of pushing both). */
#ifndef MC_RMSNORM_H_
#define MC_RMSNORM_H_

#include <stddef.h>
#include <stdint.h>

#include "kernels/mc_kernels.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Or-ed into mc_kern_err_t.algo by a fused call that records an error. */
#define MC_KERN_FUSED 0x100

/* One fused launch.  x, residual, weight, y (and y_fp8) 16-byte aligned; hidden a multiple of 8
   up to MC_KERN_ROW_MAX_H; y may equal x but not residual; rows and hidden the same on every
   member. */
typedef struct mc_kern_arn {
  int algo;                     /* MC_KERN_LL, MC_KERN_ONESHOT_PUSH or MC_KERN_TWOSHOT_PUSH */
  int dtype;                    /* MOECOMM_FLOAT16 or MOECOMM_BFLOAT16: x, residual, weight, y */
  int rank, size;               /* this member, members (2..MC_KERN_MAX_RANKS) */
  size_t rows, hidden;          /* T >= 1, H */
  const void *x;                /* this member's partial sums [T, H] */
  void *residual;               /* [T, H]: read, then replaced by r + sum(x) (rounded as above) */
  const void *weight;           /* [H] */
  float eps;                    /* >= 0 */
  void *y;                      /* [T, H] */
  void *y_fp8;                  /* [T, H] e4m3, or NULL */
  float *y_scale;               /* [T], with y_fp8 (NULL without) */
  char *seg[MC_KERN_MAX_RANKS]; /* every member's segment, as mapped in this process */
  size_t ll_off, ll_slot_bytes; /* LL region, as in mc_kern_ar_t (used by MC_KERN_LL) */
  size_t stage_off, stage_half_bytes; /* staging region of the segment (multiples of 128) */
  mc_kern_err_t *err;                 /* host-mapped error record (device address) */
  uint64_t timeout_ns;                /* 0: wait forever */
  int pdl;                            /* programmatic dependent launch, as in mc_kern_ar_t */
  int max_blocks; /* grid cap, 1..MC_KERN_MAX_BLOCKS; 0: MC_KERN_BLOCKS_DEFAULT */
} mc_kern_arn_t;

/* Enqueues the fused op on stream (a cudaStream_t).  Returns a cudaError_t (0: success);
   cudaErrorInvalidValue for arguments outside the above, or staging too small for the plan
   (mc_kern_plan_rmsnorm says which).  Eager and captured calls are the same kernel: it touches
   only this member's buffers and the segments, so nothing needs registering. */
int mc_kern_ar_rmsnorm(const mc_kern_arn_t *args, void *stream);

#ifdef __cplusplus
}
#endif

#endif
