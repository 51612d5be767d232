/* SPDX-License-Identifier: Apache-2.0 */
/* step.h - one MoE layer step as an engine runs it, verified exactly after every op.
 *
 * Three variants, by the ABI version negotiated and the options, behind one table
 * (shim_step_ops_t):
 *  - ABI 1.1 (step_v11.c, scatter modes, modes.h): per iteration the transitions around the
 *    layers, each one moecomm scatter(reduce): attention output (TP_ATTN_FULL partial sums) into
 *    the MoE's input mode, MoE output back to TP_ATTN_FULL, and the same pair for the dense MLP
 *    where its mode differs.  Token counts are per attention group (modes.c, optionally uneven, so
 *    MOE_FULL and FULL padding is exercised); inputs and expected outputs come from the reference
 *    model in lib/scatter_ref.h, padding rows included (they must be zero).
 *  - ABI 1.0 (step_v10.c, collectives; also when layer_mode refuses the topology):
 *      attention all-reduce (sum) on ATTN_TP;
 *      when attn_cp > moe_dp, the MoE all-gather of the tokens on MOE_CP;
 *      MoE all-reduce (sum) on MOE_TP, then on MOE_EP (over the gathered tokens when gathered);
 *      reduce-scatter (sum) on ATTN_TP of the attn_tp groups' tokens back to this rank's tokens.
 * With pp > 1 (ABI 1.2) both end with the pipeline hand-off (step_pp.c): the stage's activations
 * sent to the next stage and the previous stage's received, on the PP group.
 *  - ABI 1.2 with --moe-a2a (step_a2a.c): the attention all-reduce on ATTN_TP, then the MoE by
 *    moe_dispatch on MOE_EP, identity experts and moe_combine instead of the MoE all-reduces.
 * What they share (step.c): each op has its own input and output buffers (fixed addresses, so a
 * captured graph can be replayed with new inputs), its inputs are regenerated from (seed,
 * iteration, rank, op) before every run, its output is poisoned first and compared bit for bit
 * with the exact result; eager runs, capture and replay.  A step may run at several token counts
 * (capture sizes, as an engine alternates batch sizes): the buffers fit the largest and
 * shim_step_set_tokens switches between them.
 *
 * The step's functions return 0 or -1 with s->err set (the caller prints it once, shim.h). */
#ifndef SHIM_STEP_H_
#define SHIM_STEP_H_

#include <stdint.h>
#include <stdio.h>

#include "../abi/moecomm.h"
#include "lib/data.h"
#include "lib/device.h"
#include "lib/report.h"
#include "modes.h"

#define SHIM_STEP_MAX_OPS 8

typedef enum shim_coll {
  SHIM_ALL_REDUCE = 0,
  SHIM_ALL_GATHER,
  SHIM_REDUCE_SCATTER,
  SHIM_SCATTER,      /* a scatter-mode transition (ABI 1.1) */
  SHIM_SENDRECV,     /* the pipeline hand-off (ABI 1.2, step_pp.c) */
  SHIM_MOE_DISPATCH, /* expert-parallel dispatch and combine (ABI 1.2, --moe-a2a) */
  SHIM_MOE_COMBINE
} shim_coll_t;

typedef struct shim_op {
  const char *name; /* "attn all-reduce", "attn->moe" */
  shim_coll_t coll;
  char label[160];     /* "ATTN_TP [0-3]"; a transition: "TP_ATTN_FULL->MOE_FULL" */
  const char *backend; /* backend_name from group_stats */
  /* collectives (ABI 1.0) */
  moecomm_group_t *group;
  int gsize, grank;                  /* the group's size and this rank's index in it */
  int32_t *granks;                   /* the group's world ranks, group order */
  size_t send_per_tok, recv_per_tok; /* elements per token */
  /* transitions (ABI 1.1) */
  const shim_transition_t *tr;
  size_t send_rows, recv_rows;
  char groups[256];  /* the groups it communicates on: "ATTN_TP [0,1], MOE_CP [0,2]" */
  char backends[32]; /* their backends: "shm", "custom+nccl" */
  /* both */
  size_t send_count, recv_count; /* elements at the current token count */
  size_t send_cap, recv_cap;     /* elements allocated: the most over the step's token counts */
  void *send, *recv;             /* what the call gets (device memory on a GPU) */
  void *h_send, *h_recv;         /* host side: inputs made here, results checked here */
  shim_samples_t eager_us;       /* per eager run */
} shim_op_t;

typedef struct shim_step_cfg {
  uint64_t seed;
  moecomm_dtype_t dtype;
  int tokens, hidden;   /* per rank (ABI 1.0); per attention group (ABI 1.1) */
  const int32_t *sizes; /* further token counts the step may be set to (capture sizes) */
  size_t n_sizes;       /* entries in sizes; 0: tokens only */
  int rank, world;
  int gather_moe; /* attn_cp > moe_dp: the MoE all-gather on MOE_CP runs (ABI 1.0) */
  int modes;      /* 1: the ABI-1.1 step when the plugin allows it */
  int uneven;     /* ABI 1.1: attention groups get different token counts */
  int a2a;        /* --moe-a2a: the MoE by dispatch and combine on MOE_EP (step_a2a.c) */
  int tp, ep, moe_dp, attn_cp, attn_dp; /* topology for the reference model (tp resolved) */
  int pp;  /* pipeline stages: > 1 adds the hand-off on the PP group (step_pp.c)... */
  int p2p; /* ...when the plugin negotiated ABI 1.2 (send, recv) */
  /* A world barrier before each timed eager op (NULL: none), so that an op's time does not
     include waiting for peers still checking the previous one: a world all-gather of 4 bytes. */
  moecomm_host_allgather_fn_t barrier;
  void *barrier_arg;
} shim_step_cfg_t;

typedef struct shim_step_ops shim_step_ops_t;

typedef struct shim_step {
  const moecomm_api_t *api;
  moecomm_context_t *ctx;
  shim_dev_t *dev;
  shim_step_cfg_t cfg;
  const shim_step_ops_t *ops_of;    /* the variant */
  shim_op_t ops[SHIM_STEP_MAX_OPS]; /* the variant's ops */
  int n_ops;
  shim_op_t pp; /* the pipeline hand-off, after them when pp_on (op number n_ops) */
  int pp_on;
  char pp_note[160]; /* why there is no hand-off although pp > 1 */
  shim_timer_t timer;
  int timer_ready;
  shim_samples_t graph_us; /* per op: whole-graph replay time / n_ops */
  int iter;                /* next iteration number (inputs differ per iteration) */
  uint64_t mismatches;     /* over every op and iteration */
  uint64_t checked;        /* ops verified */
  int printed;             /* mismatch lines printed so far (capped) */
  int32_t *sync;           /* world entries for cfg->barrier */
  struct {                 /* ABI-1.0 variant */
    int32_t *acc;          /* scratch for expected sums (largest recv_count) */
    uint32_t enc[513];     /* dtype bits of the integers -256..256 */
  } v10;
  struct {                /* ABI-1.1 variant */
    shim_modes_t plan;    /* layer modes and transitions */
    sref_t ref;           /* reference model; ref.tokens = tokens */
    int32_t *tokens;      /* T[g] of every TP block (world / tp blocks of attn_dp * attn_cp) */
    void *want, *scratch; /* expected rows of the largest output; one row */
  } v11;
  struct {               /* MoE all-to-all variant (step_a2a.c) */
    int n, me;           /* MOE_EP's size and this rank's index in it */
    int experts, top_k;  /* E = 4 n experts, K = 4 */
    int64_t t_max, cap;  /* tokens per dispatch at most; rows per expert (n * t_max) */
    size_t rx_bytes;     /* recv_x's bytes in the dispatch's output (counts, sources follow) */
    uint64_t handle;     /* the latest dispatch's, for its combine */
    int32_t *ids;        /* [t_max * K] one member's routing (scratch) */
    unsigned char *x;    /* [t_max * H] one member's payload (scratch) */
    unsigned char *want; /* the dispatch's expected output */
    int64_t *rows;       /* [E / n] rows counted per local expert */
  } a2a;
  char note[768]; /* why the ABI-1.0 step runs although the plugin speaks 1.1 */
  char err[1536]; /* why the step stopped: the call, result name, last_error */
} shim_step_t;

/* A variant of the step.  Every hook returns 0 or -1 with s->err set, except where noted. */
struct shim_step_ops {
  const char *name;       /* "ABI 1.0 collectives" */
  const char *tokens_per; /* what a token count counts: "rank", "attention group" */
  /* Adds the ops.  1: this variant cannot run here (s->note says why; the other one runs). */
  int (*plan)(shim_step_t *s);
  /* Sets every op's element counts (and the variant's own state) for `tokens`. */
  int (*layout)(shim_step_t *s, int tokens);
  /* Host scratch for verification, once the ops' capacities are known. */
  int (*alloc)(shim_step_t *s);
  void (*fini)(shim_step_t *s);
  /* Op k's input for iteration iter into its host send buffer. */
  void (*input)(shim_step_t *s, int k, int iter);
  moecomm_result_t (*call)(shim_step_t *s, shim_op_t *op);
  /* Op k's result (in its host receive buffer) against the exact one; counts mismatches. */
  void (*verify)(shim_step_t *s, int k, int iter, const char *phase);
  void (*describe)(const shim_step_t *s, FILE *f);
};

extern const shim_step_ops_t shim_step_v10; /* step_v10.c */
extern const shim_step_ops_t shim_step_v11; /* step_v11.c */
/* The pipeline hand-off (step_pp.c): not a variant but one more op, s->pp, after the variant's;
   its hooks see only s->pp (plan adds it when cfg.pp > 1 and the plugin has send/recv). */
extern const shim_step_ops_t shim_step_pp;
extern const shim_step_ops_t shim_step_a2a; /* step_a2a.c */

/* Plans the ops and allocates their buffers: the ABI-1.1 step when cfg->modes is set and the
   plugin's table has layer_mode, mode_rows and scatter and layer_mode accepts the topology (else
   the ABI-1.0 step, with s->note saying why).  Buffers fit cfg->tokens and every cfg->sizes
   entry; the step is left at cfg->tokens.  0 on success; -1 with s->err set (nothing left
   allocated). */
int shim_step_init(shim_step_t *s, const moecomm_api_t *api, moecomm_context_t *ctx,
                   shim_dev_t *dev, const shim_step_cfg_t *cfg);
void shim_step_fini(shim_step_t *s);

/* Switches the step to `tokens` (cfg->tokens or one of cfg->sizes): token counts, rows and
   element counts of every op; the buffers stay.  -1 with s->err set when the layout does not
   fit the buffers or the plugin's mode_rows disagrees (the step keeps its previous count). */
int shim_step_set_tokens(shim_step_t *s, int tokens);

/* One eager iteration (every op: new inputs, poison, call, verify).  timed: record per-op times
   (after cfg->barrier).  Mismatches are counted and printed (first few) but do not stop the
   step, so every rank stays in step with its peers; -1 only when a call failed (s->err). */
int shim_step_eager(shim_step_t *s, int timed);

/* Captures one step into g between capture_begin and capture_end.  *supported_p = 0 (and 0
   returned) when the plugin answers MOECOMM_ERR_NOT_SUPPORTED; the reason is in s->err.  On a
   CPU context (no graphs) the scope is bookkeeping around one verified eager run, so that
   capture_end still checks that every rank issued the same collectives; g stays empty. */
int shim_step_capture(shim_step_t *s, shim_graph_t *g, int *supported_p);

/* One replay of g (GPU) with new inputs, verified.  timed: its time goes into the timing table
   (s->graph_us).  *us_p (may be NULL): the whole replay in microseconds. */
int shim_step_replay(shim_step_t *s, shim_graph_t *g, int timed, double *us_p);

/* Prints what the step runs (rank 0 calls it): which step, the mode chain, token counts and
   each op with its groups. */
void shim_step_describe(const shim_step_t *s, FILE *f);

/* Rows of the timing table for this rank's ops, the hand-off included (rows: SHIM_STEP_MAX_OPS
   entries: the plan leaves room for it). */
int shim_step_report_rows(const shim_step_t *s, shim_report_row_t *rows);

/* For the variants (step_v10.c, step_v11.c): */
/* s->err from printf text; returns -1. */
int shim_step_fail(shim_step_t *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* s->err naming a failed moecomm call, where, the result and the plugin's sentence; -1. */
int shim_step_api_fail(shim_step_t *s, const char *call, const char *where, moecomm_result_t r);
/* This rank's group of `kind`: handle and stats, checked for consistency; 0 or -1. */
int shim_step_group(shim_step_t *s, moecomm_group_kind_t kind, moecomm_group_t **group_p,
                    moecomm_group_stats_t *st);
/* op's group of `kind` (shim_step_group): handle, size, rank, backend, member list and label
   ("PP [0,2]"); st gets the stats.  0 or -1. */
int shim_step_op_group(shim_step_t *s, shim_op_t *op, moecomm_group_kind_t kind,
                       moecomm_group_stats_t *st);
/* Adds one op on the group of `kind` (step_v10.c; that step's input, call and verify hooks
   serve its collectives); `n` is the op's per-rank tensor (elements): all-reduce n -> n,
   all-gather n -> size*n, reduce-scatter size*n -> n; other kinds: the caller sets the counts.
   0 or -1. */
int shim_step_add_coll(shim_step_t *s, const char *name, shim_coll_t coll,
                       moecomm_group_kind_t kind, size_t n);
/* The next free op, zeroed (NULL with s->err when the step is full); s->n_ops is not changed. */
shim_op_t *shim_step_next_op(shim_step_t *s);
/* Counts one wrong element; 1 when its line should be printed (the first few per rank). */
int shim_step_mismatch(shim_step_t *s);

#endif
