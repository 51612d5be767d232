/* SPDX-License-Identifier: Apache-2.0 */
/* ep_layout.h - expert-parallel dispatch and combine: shapes, buffer layout, row order, and a CPU
 * reference of both (pure C; shared by the NVLink kernels, the NCCL path, the CPU backend and the
 * tests).
 *
 * Terms: n members of the MOE_EP group, E experts split evenly in rank order (member r holds
 * experts [r*El, (r+1)*El), El = E/n), top-k K, T <= T_max tokens per member (may differ), H
 * hidden, C rows per expert.  An "item" is one (token t, slot k) of a member, numbered t*K + k.
 *
 * Row order (every backend): the rows of expert e are its items from member 0, then member 1, ...;
 * within a member by token, then by k.  Row j of e exists when j < C; later items are dropped
 * (an overflow the kernels report) and contribute nothing to the combine.  A top-k id of -1 is a
 * masked slot; any other id outside [0, E) is invalid.
 *
 * Dispatch result on member d: recv_x [El][C][H] (dispatch dtype), recv_scales [El][C][S] fp32
 * (fp8 payload only), recv_counts [El] int32 = min(rows, C), recv_src [El][C][3] int32 = (member,
 * token, k) of each row.  Combine: out[t] = sum over k = 0..K-1 of weight[t,k] * y(row of (t,k)),
 * kept items only, accumulated in fp32 in that order (products and sums rounded separately, never
 * fused), then rounded to the combine dtype; a token with no kept item gets 0.
 *
 * Buffers (offsets in bytes; every region 16-byte aligned):
 *
 *  mailbox (what one member sends one destination in a dispatch), mb_bytes:
 *    [0]              header: uint64 tag (call number), int32 tokens of the sender
 *    [mb_hist_off]    int32 [E]: the sender's item count per expert (all experts)
 *    [mb_rowlist_off] int32 [T_max*K]: the sender's items routed to this destination, grouped by
 *                     expert (ascending), in item order within an expert
 *    [mb_scales_off]  fp32 [T_max][S] (S = 0 without an fp8 payload)
 *    [mb_rows_off]    [T_max][row_bytes]: token t's row in slot t (slots of other tokens unused)
 *
 *  combine message (NCCL path: the rows one member returns to one source), cmsg_bytes:
 *    [0] header: uint64 tag;  [MC_EP_HEADER_BYTES] [cmsg_rows][crow_bytes] rows
 *
 *  segment (one per member; on the NVLink path every member maps every other's):
 *    [0]           kernel state (kernels/mc_ep.h), local
 *    [MC_EP_CFLAG_OFF] uint64 [n] combine arrival flags (NVLink), written by the senders
 *    [inbox_off]   [n][mb_bytes] mailboxes received, by source
 *    [cin_off]     NVLink: [T_max*K][crow_bytes] combine rows, slot = item;
 *                  NCCL:   [n][cmsg_bytes] combine messages received, by sender
 *    [scratch_off] int32 item_row[T_max*K], item_seq[T_max*K], pair_cnt[n][El] (local)
 *    [stage_off]   NCCL only: [n][mb_bytes] mailboxes to send, by destination
 *    [cstage_off]  NCCL only: [n][cmsg_bytes] combine messages to send, by source
 * A member's own mailbox and message go straight to its inbox / cin (never through NCCL). */
#ifndef MC_EP_LAYOUT_H_
#define MC_EP_LAYOUT_H_

#include <stddef.h>
#include <stdint.h>

#include "../abi/moecomm.h"
#include "error.h"

#define MC_EP_MAX_RANKS 64     /* n on the NCCL path (and the reference) */
#define MC_EP_MAX_NVL_RANKS 8  /* n on the NVLink path: the members of one host */
#define MC_EP_MAX_EXPERTS 1024 /* E */
#define MC_EP_MAX_TOPK 32      /* K */
#define MC_EP_FLOAT8_E4M3 4    /* dispatch payload dtype beyond moecomm_dtype_t (1 byte) */
#define MC_EP_HEADER_BYTES 64  /* mailbox and message header */
#define MC_EP_CFLAG_OFF 1024   /* combine flags inside the segment header */
#define MC_EP_SEG_HEADER 4096  /* segment bytes before the inbox */

typedef enum mc_ep_path {
  MC_EP_PATH_NVLINK = 1, /* peer-mapped segments, one kernel per call */
  MC_EP_PATH_NCCL = 2    /* pack kernel, fixed-size send/recv, unpack kernel */
} mc_ep_path_t;

typedef struct mc_ep_config {
  int32_t ranks;         /* n, 1..MC_EP_MAX_RANKS (NVLink: ..MC_EP_MAX_NVL_RANKS) */
  int32_t experts;       /* E, a multiple of n, <= MC_EP_MAX_EXPERTS */
  int32_t top_k;         /* K, 1..MC_EP_MAX_TOPK */
  int32_t dtype;         /* payload: MOECOMM_FLOAT32/FLOAT16/BFLOAT16 or MC_EP_FLOAT8_E4M3 */
  int32_t combine_dtype; /* experts' outputs and the combine result: FLOAT32/FLOAT16/BFLOAT16 */
  int32_t scales;        /* S: fp32 scales per token carried with an fp8 payload; 0 otherwise */
  int32_t path;          /* mc_ep_path_t: which regions the segment holds */
  int64_t t_max;         /* tokens per member per call, >= 1 */
  int64_t hidden;        /* H: H * element size must be a multiple of 16 bytes */
  int64_t capacity;      /* C rows per expert; 0: n * t_max (lossless for distinct top-k ids) */
} mc_ep_config_t;

typedef struct mc_ep_layout {
  mc_ep_config_t cfg; /* capacity resolved */
  int32_t local_experts;
  int64_t items;      /* T_max * K */
  int64_t row_bytes;  /* H * payload element size */
  int64_t crow_bytes; /* H * combine element size */
  int64_t mb_hist_off, mb_rowlist_off, mb_scales_off, mb_rows_off, mb_bytes;
  int64_t cmsg_rows, cmsg_bytes; /* cmsg_rows = min(T_max * K, El * C) */
  int64_t inbox_off, cin_off, scratch_off, stage_off, cstage_off, seg_bytes;
  int64_t item_row_off, item_seq_off, pair_cnt_off; /* inside the segment */
  /* the caller's buffers */
  int64_t x_bytes, x_scales_bytes;           /* dispatch input for T_max tokens */
  int64_t recv_x_bytes, recv_scales_bytes;   /* [El][C][H], [El][C][S] */
  int64_t recv_src_bytes, recv_counts_bytes; /* [El][C][3], [El] */
  int64_t y_bytes, out_bytes;                /* combine input [El][C][H], output [T_max][H] */
} mc_ep_layout_t;

/* Validates cfg and computes every size and offset; every product is checked in 64 bits (a size
   above PTRDIFF_MAX, or an item or row count above INT32_MAX, is refused naming the values).
   MOECOMM_ERR_INVALID_ARGUMENT or MOECOMM_ERR_NOT_SUPPORTED with a message in err. */
moecomm_result_t mc_ep_layout_init(const mc_ep_config_t *cfg, mc_ep_layout_t *layout_p,
                                   mc_err_t *err);

/* Bytes per element of a payload or combine dtype; 0 when unknown. */
size_t mc_ep_dtype_size(int32_t dtype);

/* Member holding expert e; -1 for a masked or invalid id. */
int32_t mc_ep_expert_rank(const mc_ep_layout_t *layout, int32_t expert);

/* One member's routing and data, host memory (reference only). */
typedef struct mc_ep_ref_rank {
  int64_t tokens;       /* T, 0..T_max */
  const int32_t *ids;   /* [T][K] top-k expert ids, -1 masked */
  const void *x;        /* [T][H] payload (dispatch) */
  const float *scales;  /* [T][S] (dispatch with S > 0) */
  const float *weights; /* [T][K] (combine) */
} mc_ep_ref_rank_t;

/* Row of each of member `rank`'s items inside its expert (-1 for masked slots); a row >= C was
   dropped.  ranks[0..n) hold every member's routing; rows has T*K entries. */
moecomm_result_t mc_ep_ref_item_rows(const mc_ep_layout_t *layout, const mc_ep_ref_rank_t *ranks,
                                     int32_t rank, int32_t *rows, mc_err_t *err);

/* What member `dest` receives.  Writes recv_counts, and the rows below each count of recv_x,
   recv_scales (when S > 0) and recv_src; nothing else.  totals (may be NULL): [El] rows before the
   capacity cut.  Every input is checked before anything is written. */
moecomm_result_t mc_ep_ref_dispatch(const mc_ep_layout_t *layout, const mc_ep_ref_rank_t *ranks,
                                    int32_t dest, void *recv_x, float *recv_scales,
                                    int32_t *recv_counts, int32_t *recv_src, int64_t *totals,
                                    mc_err_t *err);

/* Member `rank`'s combine result out [T][H] from the experts' outputs y[q] ([El][C][H] of member
   q, combine dtype) and ranks[rank].weights. */
moecomm_result_t mc_ep_ref_combine(const mc_ep_layout_t *layout, const mc_ep_ref_rank_t *ranks,
                                   int32_t rank, const void *const *y, void *out, mc_err_t *err);

/* One token of the combine: out [H] (combine dtype) = sum over k = 0..K-1 of weights[k] *
   rows[k] [H] (combine dtype; NULL: the slot is skipped), with the roundings above.  Every
   backend that combines on the CPU uses it, so the bits are the reference's by construction. */
void mc_ep_ref_combine_token(const mc_ep_layout_t *layout, const float *weights,
                             const void *const *rows, void *out);

/* Data errors of a dispatch (backend.h: a later combine reports them), the same words on every
   backend.  An expert over its capacity: MOECOMM_ERR_NOT_SUPPORTED naming the expert and the rows
   dropped; an expert id outside [-1, E): MOECOMM_ERR_INVALID_ARGUMENT naming the id, the token
   and the slot.  `pair` is the dispatch's number on the communicator (1, 2, ...). */
moecomm_result_t mc_ep_report_overflow(mc_err_t *err, const mc_ep_layout_t *layout, uint64_t pair,
                                       int32_t expert, int64_t dropped);
moecomm_result_t mc_ep_report_bad_id(mc_err_t *err, const mc_ep_layout_t *layout, uint64_t pair,
                                     int32_t id, int64_t token, int64_t slot);

/* fp32 <-> 16-bit floats, round to nearest even (the kernels' conversions). */
uint16_t mc_ep_to_half(float f);
uint16_t mc_ep_to_bf16(float f);
float mc_ep_from_half(uint16_t h);
float mc_ep_from_bf16(uint16_t b);

#endif
