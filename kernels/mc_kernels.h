/* SPDX-License-Identifier: Apache-2.0 */
/* mc_kernels.h - custom all-reduce kernels behind plain C launchers (kernels/allreduce.cu for LL,
 * one-shot and two-shot; kernels/push.cu for the barrier-free push kernels).
 *
 * Every member of a communicator owns one device "segment" that the others map (CUDA IPC).  Its
 * layout is fixed here so the host (plugin/backends/custom) and the kernels agree:
 *
 *   [MC_KERN_FLAGS_OFF]  uint64 flags[MC_KERN_MAX_BLOCKS][MC_KERN_MAX_RANKS]: barrier arrivals,
 *                        row = block, column = the member that wrote it (remote stores)
 *   [MC_KERN_STATE_OFF]  mc_kern_state_t: this member's call counter (local only)
 *   [ll_off]             LL packets: [2 parities][size senders][ll_slot_bytes]; only ever LL
 *                        packets (the fused LL kernel writes the same format), so a stale word
 *                        there always carries an older call's flag
 *   [stage_off]          staging: [2 halves][stage_half_bytes]; the push kernels (plain and fused)
 *                        carve their receive slots out of the same halves (mc_shape.h)
 *
 * Ordering between calls rests on one per-communicator epoch kept in device memory: every kernel
 * reads it, the last block to finish advances it, so graph replays and eager calls count alike and
 * every member sees the same sequence.  Flags and packets carry values derived from the epoch
 * (never reset), staging and LL halves alternate with its parity.  A kernel that waits longer than
 * timeout_ns records the first error in the host-mapped mc_kern_err_t and returns; once an error
 * is recorded, every later kernel on the communicator returns at once (its members are out of
 * step), so a replayed graph of many ops costs one timeout, not one per op.
 *
 * Why a half can be reused (every algorithm, fused ones included): a member finishes call k only
 * after it received something that every peer wrote in call k (barrier arrivals, or data that
 * passed through the owner of part 0, which hears from everyone), so every peer had started call
 * k and, by stream order, finished call k-1.  Call k+1 therefore writes the half of call k-1 only
 * when nobody reads it any more, whatever algorithm and grid each of the two calls used.
 *
 * Determinism (every algorithm, every dtype): element i of the result is
 *   round_dtype(op(...op(op(x_0[i], x_1[i]), x_2[i])..., x_{n-1}[i]))
 * with the members' values widened exactly to fp32, each op one IEEE fp32 operation (sum: add
 * rounded to nearest even; max/min: fmaxf/fminf), in rank order 0..n-1, and one rounding to the
 * dtype at the end (nearest even; fp32 is not rounded again).  It depends on nothing else: not
 * on the count, the batch the element is part of, the algorithm, the grid or the chunking, so
 * every member gets the same bits and a row reduced alone or inside any batch gets the same bits.
 * kernels/rmsnorm_ref.c (mc_kern_ref_all_reduce) is this definition in plain C. */
#ifndef MC_KERNELS_H_
#define MC_KERNELS_H_

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define MC_KERN_MAX_RANKS 8
#define MC_KERN_MAX_BLOCKS 128

#define MC_KERN_FLAGS_OFF 0
#define MC_KERN_STATE_OFF (MC_KERN_MAX_BLOCKS * MC_KERN_MAX_RANKS * 8)
#define MC_KERN_HEADER_BYTES 65536 /* flags + state, rounded; ll_off starts here */

/* Algorithms (values shared with the policy table). */
#define MC_KERN_LL 1      /* packets with the flag inside, written into the peers' LL slots */
#define MC_KERN_ONESHOT 2 /* own input to own staging, one barrier, every rank reduces all */
#define MC_KERN_TWOSHOT 3 /* reduce-scatter by pulling, results pushed to every output */
/* Push kernels without any barrier (kernels/push.cu): data travels only as stores into the
   receiver's staging slots, in chunks each followed by a flag stored with release semantics. */
#define MC_KERN_TWOSHOT_PUSH                                           \
  4 /* part q's chunks stored into its owner q, which reduces them and \
       stores the result chunks into every peer; no barrier */
#define MC_KERN_ONESHOT_PUSH                                     \
  5 /* every member's chunks stored into every peer, each member \
       reduces everything; no barrier */
#define MC_KERN_ALGOS 5

/* "ll", "oneshot", "twoshot", "twoshot_push", "oneshot_push"; "nccl" for 0 (no kernel: the call
   goes to NCCL).  Without the MC_KERN_FUSED bit of mc_rmsnorm.h. */
static inline const char *mc_kern_algo_name(int algo) {
  algo &= 0xff;
  return algo == MC_KERN_LL             ? "ll"
         : algo == MC_KERN_ONESHOT      ? "oneshot"
         : algo == MC_KERN_TWOSHOT      ? "twoshot"
         : algo == MC_KERN_TWOSHOT_PUSH ? "twoshot_push"
         : algo == MC_KERN_ONESHOT_PUSH ? "oneshot_push"
                                        : "nccl";
}

/* Error codes in mc_kern_err_t.code (0: none). */
#define MC_KERN_ERR_TIMEOUT 1      /* a peer did not arrive within timeout_ns */
#define MC_KERN_ERR_UNREGISTERED 2 /* a captured op ran before capture_end registered it */

/* Local per-member state inside the segment. */
typedef struct mc_kern_state {
  uint64_t epoch;     /* calls completed on this communicator + 1 */
  uint32_t done;      /* blocks of the running call that finished */
  uint32_t err_claim; /* 1 once an error was recorded */
  uint64_t check;     /* access-check nonce, written by the host at init */
} mc_kern_state_t;

/* First error of a communicator, in host-mapped memory; written once by the device. */
typedef struct mc_kern_err {
  uint32_t code;  /* MC_KERN_ERR_*, written last */
  int32_t peer;   /* member index that did not answer, -1 when unknown */
  uint64_t epoch; /* call number on the communicator */
  uint32_t algo;  /* MC_KERN_* of the call */
  uint32_t pad;
} mc_kern_err_t;

/* One captured two-shot op: every member's buffers, mapped in this process (device table entry,
   filled at capture end; all NULL until then). */
typedef struct mc_kern_ptrs {
  const void *in[MC_KERN_MAX_RANKS];
  void *out[MC_KERN_MAX_RANKS];
} mc_kern_ptrs_t;

/* One all-reduce launch. */
typedef struct mc_kern_ar {
  int algo;                           /* MC_KERN_* */
  int dtype;                          /* moecomm_dtype_t: FLOAT32, FLOAT16 or BFLOAT16 */
  int op;                             /* moecomm_redop_t */
  int rank, size;                     /* this member, members (2..MC_KERN_MAX_RANKS) */
  size_t count;                       /* elements, > 0 */
  const void *in;                     /* this member's input (any alignment) */
  void *out;                          /* this member's output (may equal in) */
  char *seg[MC_KERN_MAX_RANKS];       /* every member's segment, as mapped in this process */
  size_t ll_off, ll_slot_bytes;       /* LL region; a slot holds 2 * ll_max bytes of packets */
  size_t stage_off, stage_half_bytes; /* staging region */
  const mc_kern_ptrs_t *table;        /* two-shot captured: registered buffers; NULL: use staging */
  mc_kern_err_t *err;                 /* host-mapped error record (device address) */
  uint64_t timeout_ns;                /* 0: wait forever */
  int pdl; /* launch with programmatic dependent launch: the kernel may be scheduled while the
              previous kernel of the stream drains (it waits for it before touching memory) */
  int max_blocks; /* grid cap for one-shot/two-shot and the push kernels, 1..MC_KERN_MAX_BLOCKS;
                     0: MC_KERN_BLOCKS_DEFAULT */
} mc_kern_ar_t;

/* Bytes of user data one LL slot can carry (ll_slot_bytes / 2). */
#define MC_KERN_LL_PAYLOAD(slot_bytes) ((slot_bytes) / 2)

/* Enqueues the all-reduce on stream (a cudaStream_t).  Returns a cudaError_t (0: success).  Grid
   shape is a function of (algo, size, count, dtype, max_blocks, stage_half_bytes) only
   (kernels/mc_shape.h), so every member launches the same one.  The push kernels take any count,
   eager or captured, and touch only in, out and the segments (nothing to register); they return
   cudaErrorInvalidValue when the staging half cannot hold one chunk ring
   (mc_kern_plan_all_reduce says so first). */
int mc_kern_all_reduce(const mc_kern_ar_t *args, void *stream);

/* cudaSuccess when the kernels have an image for the current device. */
int mc_kern_check_device(void);

#ifdef __cplusplus
}
#endif

#endif
