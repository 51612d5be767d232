/* SPDX-License-Identifier: Apache-2.0 */
/* mc_ep.h - expert-parallel dispatch and combine kernels behind plain C launchers (kernels/ep.cu).
 *
 * Buffer layout, row order and the combine's arithmetic: plugin/ep_layout.h.  Every member owns
 * one segment of layout.seg_bytes, zeroed once at creation (zero is a valid initial state).
 *
 * NVLink path (members of one host, every segment peer-mapped): one kernel per call.
 *  dispatch: block 0 ranks this member's items by expert (stable, so the row order is the item
 *    order) and writes each destination's mailbox header, histogram and row list; the other blocks
 *    write each token's row once into the mailbox of every member that holds one of its experts.
 *    The last block to finish sending publishes mailbox.tag = call number with a system-scope
 *    release, after a system fence by every block: counts travel in the mailbox, the tag is written
 *    right after the data.  Then every block waits for the tags of all n sources (its own included)
 *    and fans the received rows out to [El][C][H] in row order, writes recv_src and recv_counts,
 *    and turns its own items' ranks into rows and combine-message indices (segment scratch).
 *  combine: every row r < count of local expert e goes back to its source's combine region, slot
 *    t*K + k (the item is looked up in the source's row list, still in the inbox); the last block
 *    raises cflag[this member] = call number in every member's segment; then every block waits for
 *    all n flags and reduces its tokens in k order in fp32 with the weights.
 * NCCL path: the same kernels split in two with the exchange between them (plugin/ep_layout.h):
 *  dispatch_pack (mailboxes to stage[d], own one to inbox[me]) -> for d != me: send stage[d] to d
 *  and receive inbox[d] from d, mb_bytes each -> dispatch_unpack (checks every tag, fans out);
 *  combine_pack (messages to cstage[s], own one to cin[me]) -> send cstage[s] to s, receive
 *  cin[q] from q, cmsg_bytes each -> combine_unpack (checks every tag, reduces).  The fan-out and
 *  the reduction are the same code as the NVLink path's, so the layout and the bits are the same.
 *
 * Call numbers.  state.calls counts the dispatch and combine calls completed on the communicator
 * (advanced by the last block of the kernel that ends the call; graph replays count like eager
 * calls).  Calls must alternate, dispatch first: a dispatch sees an even count, a combine an odd
 * one, anything else is MC_EP_ERR_ORDER.  The tag of call pair i (dispatch i and combine i) is i =
 * calls / 2 + 1, never 0, so fresh (zeroed) memory never matches, and tags only grow: waits accept
 * any value >= i.
 *
 * Why a fast member never overwrites what a slow one has not read (NVLink path; single buffers,
 * no resets).  Write D_q(i), C_q(i) for member q's dispatch and combine of pair i; a member runs
 * them in stream order D(i) < C(i) < D(i+1), and a kernel that writes a flag does so only after
 * every read it makes of memory that peers write (the reads precede its last block's fence).
 *  - q's inbox[s] (mailbox from s; read by q in D_q(i) and by the send phase of C_q(i)) is next
 *    written by D_s(i+1).  D_s(i+1) starts after C_s(i) ended; C_s(i) ended only after it saw
 *    cflag[q] = i, raised by C_q(i) after its send phase, which follows all of D_q(i).
 *  - q's cin (written by C_s(i), read by the reduction of C_q(i)) is next written by C_s(i+1).
 *    C_s(i+1) starts after D_s(i+1) ended, which waited for q's tag i+1, written by D_q(i+1),
 *    which starts after C_q(i) ended.
 *  - q's cflag[s] and mailbox tags only grow; the scratch is local (stream order).
 * On the NCCL path every buffer is local and stream order protects it; the tags only check that
 * each received block is this call's (MC_EP_ERR_TAG otherwise).
 *
 * Errors.  A wait that outlasts timeout_ns records MC_EP_ERR_TIMEOUT (which member, which call)
 * in the host-mapped mc_ep_err_t and gives up; once a fatal error is recorded every later kernel
 * on the segment returns at once, so a replayed graph costs one timeout, not one per call.  An
 * expert that receives more than C rows keeps the first C (row order), its source members skip
 * the others in the combine, and MC_EP_ERR_OVERFLOW is recorded (expert, rows dropped); a top-k
 * id outside [-1, E) is treated as masked and recorded as MC_EP_ERR_EXPERT_ID.  These data errors
 * are not fatal: the members stay in step.  The host reads the record after synchronising and
 * clears data_code once it has reported it (a later call's data error replaces it anyway). */
#ifndef MC_EP_H_
#define MC_EP_H_

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#include "plugin/ep_layout.h"

/* mc_ep_err_t.code: fatal, the first one of the segment */
#define MC_EP_ERR_TIMEOUT 1 /* a peer did not arrive within timeout_ns; peer names it */
#define MC_EP_ERR_ORDER 2   /* a combine without its dispatch, or two dispatches in a row */
#define MC_EP_ERR_TAG 3     /* NCCL path: a received block is not this call's; peer is its sender */
/* mc_ep_err_t.data_code: the first data error of the latest call that had one */
#define MC_EP_ERR_OVERFLOW 16  /* data_expert got data_rows rows more than the capacity */
#define MC_EP_ERR_EXPERT_ID 17 /* data_expert is an invalid id at (data_token, data_rows = k) */

#define MC_EP_OP_DISPATCH 1
#define MC_EP_OP_COMBINE 2

/* Local state at offset 0 of the segment. */
typedef struct mc_ep_state {
  uint64_t calls;      /* dispatch + combine calls completed */
  uint64_t data_claim; /* call pair of the recorded data error */
  uint32_t sent;       /* blocks of the running call done sending */
  uint32_t done;       /* blocks of the running call finished */
  uint32_t err_claim;  /* 1 once a fatal error was recorded */
  uint32_t pad;
} mc_ep_state_t;

/* Errors of one member, in host-mapped memory; each group's code is written last. */
typedef struct mc_ep_err {
  uint32_t code;       /* MC_EP_ERR_TIMEOUT / ORDER / TAG; 0: none */
  int32_t peer;        /* member that did not answer or sent a stale block; -1 when none */
  uint64_t epoch;      /* call pair number (1, 2, ...) */
  uint32_t op;         /* MC_EP_OP_* */
  uint32_t data_code;  /* MC_EP_ERR_OVERFLOW / EXPERT_ID; 0: none */
  int32_t data_expert; /* global expert id (overflow) or the invalid id */
  int32_t data_token;  /* token of the invalid id; -1 for an overflow */
  int64_t data_rows;   /* rows dropped (overflow) or the slot k (invalid id) */
  uint64_t data_epoch; /* call pair of the data error */
} mc_ep_err_t;

/* One call of one member.  Pointers are device addresses; x, recv_x, y and out 16-byte aligned. */
typedef struct mc_ep_args {
  mc_ep_layout_t layout;           /* the same on every member */
  int32_t rank;                    /* this member */
  int32_t tokens;                  /* this member's T, 0..t_max */
  char *seg;                       /* this member's segment */
  char *peer[MC_EP_MAX_NVL_RANKS]; /* NVLink: every member's segment as mapped here */
  /* dispatch (pack and unpack alike) */
  const int32_t *topk_ids; /* [T][K], -1 masked */
  const void *x;           /* [T][H] payload */
  const float *x_scales;   /* [T][S] when S > 0 */
  void *recv_x;            /* [El][C][H] */
  float *recv_scales;      /* [El][C][S] when S > 0 */
  int32_t *recv_counts;    /* [El] */
  int32_t *recv_src;       /* [El][C][3] */
  /* combine (reads the routing the dispatch left in the segment, not topk_ids) */
  const void *y;             /* [El][C][H] experts' outputs, rows below recv_counts */
  const float *topk_weights; /* [T][K] */
  void *out;                 /* [T][H] */
  mc_ep_err_t *err;          /* host-mapped record (device address) */
  uint64_t timeout_ns;       /* 0: wait forever */
  int32_t max_blocks;        /* grid, 1..MC_EP_MAX_BLOCKS (0: default), at most 2 per SM */
} mc_ep_args_t;

#define MC_EP_MAX_BLOCKS 128
#define MC_EP_DEFAULT_BLOCKS 32

/* Launchers: enqueue on stream (a cudaStream_t) and return a cudaError_t (0: success);
   cudaErrorInvalidValue for arguments out of range (rank, tokens, NULL or misaligned buffers, a
   layout of the other path).  Every member's grid must be resident at once (NVLink kernels wait
   for each other). */
int mc_ep_dispatch(const mc_ep_args_t *args, void *stream);        /* NVLink */
int mc_ep_combine(const mc_ep_args_t *args, void *stream);         /* NVLink */
int mc_ep_dispatch_pack(const mc_ep_args_t *args, void *stream);   /* NCCL path, before send */
int mc_ep_dispatch_unpack(const mc_ep_args_t *args, void *stream); /* NCCL path, after recv */
int mc_ep_combine_pack(const mc_ep_args_t *args, void *stream);    /* NCCL path, before send */
int mc_ep_combine_unpack(const mc_ep_args_t *args, void *stream);  /* NCCL path, after recv */

/* Blocks and threads per block the launchers use for max_blocks on the current device (at most
   two blocks per SM, which are always resident together). */
void mc_ep_shape(int max_blocks, int *blocks_p, int *threads_p);

/* cudaSuccess when the kernels have an image for the current device. */
int mc_ep_check_device(void);

#ifdef __cplusplus
}
#endif

#endif
