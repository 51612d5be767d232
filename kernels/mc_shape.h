/* SPDX-License-Identifier: Apache-2.0 */
/* mc_shape.h - every host-side decision of the kernel launchers, in plain C (kernels/shape.c):
 * grid shapes, and where the push kernels put their chunks in the staging halves.
 *
 * The answers depend only on their arguments, never on the member's rank, so every member of a
 * call launches the same grid and agrees on every slot offset.  tests/core/kern_shape.c checks
 * them on the CPU for every member count, algorithm, count and dtype.
 *
 * Push kernels (MC_KERN_TWOSHOT_PUSH, MC_KERN_ONESHOT_PUSH, and the fused all-reduce + RMSNorm
 * of mc_rmsnorm.h):
 *  - the data is cut into chunks; a chunk is handled by one team of threads (a warp for the
 *    all-reduce: 32 * unroll vectors of 16 bytes; 256 threads for a fused row: one row), team t
 *    taking chunks t, t + teams, t + 2 * teams ...  The same chunk goes to the same team on every
 *    member, and thread k of a team handles vectors k, k + team_threads, ... of the chunk;
 *  - chunk protocol (staging): a chunk is its data (lines of 8 vectors) and one more 128-byte line
 *    whose first 8 bytes are its flag, stored after the data with release semantics.  Member q's
 *    staging half (the one of the call's epoch parity) holds kinds * (size - 1) slots, one per
 *    (kind, sender): kind 0 receives inputs (one-shot: the sender's whole input; two-shot: the
 *    sender's values of q's part), kind 1 (two-shot) receives the owner's results.  A slot is a
 *    ring of `ring` chunk positions; chunk c lands at position c % ring.  ring is a multiple of
 *    teams, so a position is only ever reused by the team that used it before, and is at least
 *    2 * teams when a one-shot team has two or more chunks (push.cu says why that suffices);
 *  - LL protocol (fused MC_KERN_LL only, in the LL region): every 16-byte vector travels as two
 *    LL packets {data, flag, data, flag} exactly as the LL all-reduce's, chunk c at offset
 *    c * chunk_bytes of the sender's LL slot; the whole call must fit (no ring), since the flag
 *    only names the call. */
#ifndef MC_SHAPE_H_
#define MC_SHAPE_H_

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define MC_KERN_THREADS 512 /* threads per block of every all-reduce kernel */
#define MC_KERN_BLOCKS_DEFAULT                                   \
  64 /* grid cap when max_blocks is 0: a call and the next one's \
        early (PDL) blocks are resident together */
/* 16-byte vectors each thread keeps in flight per member (~8 loads in flight per thread). */
#define MC_KERN_UNROLL(size) ((size) <= 2 ? 4 : (size) <= 4 ? 2 : 1)
#define MC_KERN_LINE_BYTES 128
#define MC_KERN_ROW_TEAM 256           /* threads that own one row of a fused call */
#define MC_KERN_ROW_MAX_H 16384        /* largest hidden size of the fused kernels */
#define MC_KERN_CHUNK_LIMIT (1u << 24) /* chunks per part: a flag holds (epoch << 24) | chunk */

/* Results of the plan functions. */
#define MC_KERN_PLAN_OK 0
#define MC_KERN_PLAN_EINVAL 1   /* an argument is out of range (algo, size, dtype, count, H) */
#define MC_KERN_PLAN_ENOSPACE 2 /* the staging half cannot hold the slots of even one block */

typedef struct mc_kern_plan {
  int blocks, threads;  /* grid: blocks of threads */
  int team_threads;     /* threads of one team: 32 (all-reduce) or MC_KERN_ROW_TEAM (fused) */
  int teams;            /* teams in the grid */
  int unroll;           /* all-reduce: vectors per thread and chunk */
  int kinds;            /* slot kinds: 1 (one-shot) or 2 (two-shot: inputs, results) */
  int ll;               /* 1: LL protocol in the LL region; 0: chunk protocol in staging */
  uint32_t chunk_lines; /* data lines (8 vectors each) per chunk, the last one maybe partial */
  uint32_t chunk_vecs;  /* data vectors per chunk (fused: per row, H * es / 16) */
  size_t chunk_bytes;   /* bytes of one chunk position: lines and the flag line (chunk
                           protocol), or 32 bytes per vector (LL) */
  uint64_t part_vecs;   /* all-reduce: vectors per part (one-shot: all of them) */
  uint64_t part_rows;   /* fused: rows per part (one-shot: all of them) */
  uint64_t chunks;      /* chunks per part (every part has this many, the last ones padded) */
  uint32_t ring;        /* chunk positions per slot (LL: one per chunk) */
  size_t slot_bytes;    /* ring * chunk_bytes */
  size_t smem_bytes;    /* dynamic shared memory per block */
} mc_kern_plan_t;

/* Plan of an all-reduce of count elements of dtype over size members with a push algorithm
   (MC_KERN_TWOSHOT_PUSH, MC_KERN_ONESHOT_PUSH); max_blocks 0 means MC_KERN_BLOCKS_DEFAULT.
   Returns MC_KERN_PLAN_*; *plan_p is written only on success. */
int mc_kern_plan_all_reduce(int algo, int size, size_t count, int dtype, int max_blocks,
                            size_t stage_half_bytes, mc_kern_plan_t *plan_p);

/* Plan of a fused all-reduce + RMSNorm of rows x hidden elements (mc_rmsnorm.h): algo MC_KERN_LL
   (LL region of ll_slot_bytes per sender) or MC_KERN_ONESHOT_PUSH (every member norms every row),
   or MC_KERN_TWOSHOT_PUSH (rows split between members); dtype FLOAT16 or BFLOAT16; hidden a
   multiple of 8 up to MC_KERN_ROW_MAX_H. */
int mc_kern_plan_rmsnorm(int algo, int size, size_t rows, size_t hidden, int dtype, int max_blocks,
                         size_t stage_half_bytes, size_t ll_slot_bytes, mc_kern_plan_t *plan_p);

/* Grid of the LL, one-shot and two-shot kernels (kernels/allreduce.cu); for a push algorithm the
   grid of its plan with unlimited staging. */
void mc_kern_shape(int algo, int size, size_t count, int dtype, int max_blocks, int *blocks_p,
                   int *threads_p);

#ifdef __cplusplus
}
#endif

#endif
