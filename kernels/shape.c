/* SPDX-License-Identifier: Apache-2.0 */
/* shape.c - grid shapes and slot plans of the kernels (mc_shape.h); plain C, no CUDA. */
#include "kernels/mc_shape.h"

#include "abi/moecomm.h"
#include "kernels/mc_kernels.h"

static uint64_t mc_shape_div_up(uint64_t a, uint64_t b) {
  return (a + b - 1) / b;
}

static int mc_shape_cap(int max_blocks) {
  return max_blocks > 0 && max_blocks <= MC_KERN_MAX_BLOCKS ? max_blocks : MC_KERN_BLOCKS_DEFAULT;
}

static int mc_shape_is_push(int algo) {
  return algo == MC_KERN_TWOSHOT_PUSH || algo == MC_KERN_ONESHOT_PUSH;
}

void mc_kern_shape(int algo, int size, size_t count, int dtype, int max_blocks, int *blocks_p,
                   int *threads_p) {
  const size_t es = dtype == MOECOMM_FLOAT32 ? 4 : 2;
  const size_t nv = (count * es + 15) / 16;
  const size_t cap = (size_t)mc_shape_cap(max_blocks);
  size_t work = nv, per_thread = 1, threads, blocks;
  if (mc_shape_is_push(algo)) {
    mc_kern_plan_t p;
    const int rc = mc_kern_plan_all_reduce(algo, size, count, dtype, max_blocks, SIZE_MAX, &p);
    *blocks_p = rc == MC_KERN_PLAN_OK ? p.blocks : 0;
    *threads_p = rc == MC_KERN_PLAN_OK ? p.threads : 0;
    return;
  }
  /* LL: one vector per thread (the payload limit keeps it to a few dozen blocks); one-shot and
     two-shot: U vectors per thread per round.  Capped well below the SM count so that every
     block of a call is resident at once. */
  if (algo == MC_KERN_ONESHOT || algo == MC_KERN_TWOSHOT) {
    if (algo == MC_KERN_TWOSHOT) work = (nv + size - 1) / size;
    per_thread = (size_t)MC_KERN_UNROLL(size);
  }
  threads = (work + per_thread - 1) / per_thread;
  threads = threads < MC_KERN_THREADS ? ((threads + 31) / 32) * 32 : MC_KERN_THREADS;
  if (threads < 32) threads = 32;
  blocks = (work + threads * per_thread - 1) / (threads * per_thread);
  if (blocks < 1) blocks = 1;
  if (blocks > cap) blocks = cap;
  *blocks_p = (int)blocks;
  *threads_p = (int)threads;
}

/* Grid and ring once the chunk geometry of p is set: the most teams (up to cap blocks of
   per_block teams, and no more teams than chunks) whose slots fit in the staging half.  A ring
   holds a whole number of rounds of the grid, at least two for a one-shot team with several
   chunks (push.cu explains why). */
static int mc_shape_fit(mc_kern_plan_t *p, int size, size_t half, int cap, int per_block) {
  const size_t slots = (size_t)p->kinds * (size_t)(size - 1);
  const size_t slot_cap = half / slots / MC_KERN_LINE_BYTES * MC_KERN_LINE_BYTES;
  uint64_t blocks = mc_shape_div_up(p->chunks, (uint64_t)per_block);
  uint64_t in_block = (uint64_t)per_block;
  if (blocks > (uint64_t)cap) blocks = (uint64_t)cap;
  if (blocks == 1 && p->chunks < in_block) in_block = p->chunks;
  for (;;) {
    const uint64_t teams = blocks * in_block;
    const uint64_t rounds = mc_shape_div_up(p->chunks, teams);
    const uint64_t need = p->kinds == 1 && rounds >= 2 ? 2 : 1;
    const uint64_t most = slot_cap / (teams * p->chunk_bytes);
    if (most >= need) {
      const uint64_t k = rounds < most ? rounds : most;
      p->blocks = (int)blocks;
      p->threads = (int)in_block * p->team_threads;
      p->teams = (int)teams;
      p->ring = (uint32_t)(teams * k);
      p->slot_bytes = (size_t)p->ring * p->chunk_bytes;
      return MC_KERN_PLAN_OK;
    }
    if (blocks > 1)
      blocks /= 2;
    else if (in_block > 1)
      in_block /= 2;
    else
      return MC_KERN_PLAN_ENOSPACE;
  }
}

/* The fields every push plan shares; the caller sets the chunk geometry. */
static void mc_shape_init(mc_kern_plan_t *p, int algo, int team_threads) {
  p->team_threads = team_threads;
  p->kinds = algo == MC_KERN_TWOSHOT_PUSH ? 2 : 1;
  p->ll = algo == MC_KERN_LL;
  p->unroll = 0;
  p->smem_bytes = 0;
}

/* Chunk protocol: the data lines and the flag line; LL: two 16-byte packets per vector. */
static size_t mc_shape_chunk_bytes(const mc_kern_plan_t *p) {
  return p->ll ? (size_t)p->chunk_vecs * 32
               : (size_t)p->chunk_lines * MC_KERN_LINE_BYTES + MC_KERN_LINE_BYTES;
}

int mc_kern_plan_all_reduce(int algo, int size, size_t count, int dtype, int max_blocks,
                            size_t stage_half_bytes, mc_kern_plan_t *plan_p) {
  mc_kern_plan_t p = {0};
  size_t es;
  int rc;
  if (!mc_shape_is_push(algo) || size < 2 || size > MC_KERN_MAX_RANKS || count == 0 ||
      (dtype != MOECOMM_FLOAT32 && dtype != MOECOMM_FLOAT16 && dtype != MOECOMM_BFLOAT16))
    return MC_KERN_PLAN_EINVAL;
  es = dtype == MOECOMM_FLOAT32 ? 4 : 2;
  if (count > SIZE_MAX / 4) return MC_KERN_PLAN_EINVAL;
  mc_shape_init(&p, algo, 32);
  p.unroll = MC_KERN_UNROLL(size);
  p.chunk_vecs = 32u * (uint32_t)p.unroll;
  p.chunk_lines = p.chunk_vecs / 8;
  p.chunk_bytes = mc_shape_chunk_bytes(&p);
  p.part_vecs = mc_shape_div_up(mc_shape_div_up(count * es, 16), p.kinds == 1 ? 1 : size);
  p.chunks = mc_shape_div_up(p.part_vecs, p.chunk_vecs);
  if (p.chunks > MC_KERN_CHUNK_LIMIT) return MC_KERN_PLAN_EINVAL;
  rc = mc_shape_fit(&p, size, stage_half_bytes, mc_shape_cap(max_blocks), MC_KERN_THREADS / 32);
  if (rc == MC_KERN_PLAN_OK) *plan_p = p;
  return rc;
}

int mc_kern_plan_rmsnorm(int algo, int size, size_t rows, size_t hidden, int dtype, int max_blocks,
                         size_t stage_half_bytes, size_t ll_slot_bytes, mc_kern_plan_t *plan_p) {
  mc_kern_plan_t p = {0};
  int rc;
  if ((algo != MC_KERN_LL && !mc_shape_is_push(algo)) || size < 2 || size > MC_KERN_MAX_RANKS ||
      rows == 0 || hidden == 0 || hidden % 8 != 0 || hidden > MC_KERN_ROW_MAX_H ||
      (dtype != MOECOMM_FLOAT16 && dtype != MOECOMM_BFLOAT16))
    return MC_KERN_PLAN_EINVAL;
  mc_shape_init(&p, algo, MC_KERN_ROW_TEAM);
  p.chunk_vecs = (uint32_t)(hidden / 8);
  p.chunk_lines = (uint32_t)mc_shape_div_up(p.chunk_vecs, 8);
  p.chunk_bytes = mc_shape_chunk_bytes(&p);
  p.part_rows = mc_shape_div_up(rows, p.kinds == 1 ? 1 : size);
  p.part_vecs = p.part_rows * p.chunk_vecs;
  p.chunks = p.part_rows;
  if (p.chunks > MC_KERN_CHUNK_LIMIT) return MC_KERN_PLAN_EINVAL;
  /* two rows per block while a block's rows fit in 32 KiB of shared memory */
  rc = mc_shape_fit(&p, size, p.ll ? SIZE_MAX : stage_half_bytes, mc_shape_cap(max_blocks),
                    hidden <= 8192 ? 2 : 1);
  if (rc == MC_KERN_PLAN_OK && p.ll) {
    /* LL packets name only the call: every row needs its own place in the sender's LL slot */
    if (rows > ll_slot_bytes / p.chunk_bytes) return MC_KERN_PLAN_ENOSPACE;
    p.ring = (uint32_t)rows;
    p.slot_bytes = (size_t)p.ring * p.chunk_bytes;
  }
  if (rc != MC_KERN_PLAN_OK) return rc;
  p.smem_bytes = (size_t)(p.threads / MC_KERN_ROW_TEAM) * p.chunk_vecs * 16;
  *plan_p = p;
  return MC_KERN_PLAN_OK;
}
