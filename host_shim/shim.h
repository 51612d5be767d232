/* SPDX-License-Identifier: Apache-2.0 */
/* shim.h - moecomm-shim, the reference host application, on the host library (host_shim/lib/).
 *
 * It does what an engine does, in this order: load and negotiate once (before any CUDA call,
 * job.c), start the ranks (job.c), create one context per rank with the host's all-gather
 * (rank.c), look at the groups (groups.c), run the MoE step (step.c and its two variants)
 * eagerly, capture it into CUDA graphs inside capture_begin/capture_end and replay them
 * (schedule.c; --capture-sizes: sizes.c), and report (results.c).  Options: options.c; the runs
 * of `make demo`: demo.c; progress lines and phases: progress.c.
 *
 * Error convention of the application (every function in host_shim/, not lib/, that can fail):
 *  - it returns a shim_status_t: SHIM_OK (0), or the code that says what the caller must do;
 *  - the function that finds a failure prints its one message on stderr ("rank N: ..." inside a
 *    rank, "moecomm-shim: ..." outside) before returning; callers pass the code up unchanged and
 *    print nothing more (the library's functions, host_shim/lib/, return 0 / -1 with a message
 *    in a buffer: the application prints that message where it calls them);
 *  - no function ends the process: main() turns the code into the exit status, and a rank
 *    process that returns SHIM_ABANDON ends without any clean-up (the launcher's child exits
 *    with _exit; main() does so for a rank started by an external launcher). */
#ifndef SHIM_SHIM_H_
#define SHIM_SHIM_H_

#include <stdint.h>

#include "../abi/moecomm.h"

typedef enum shim_status {
  SHIM_OK = 0,
  SHIM_FAIL = 1,    /* a call failed or a rank was wrong; the state is clean (exit status 1) */
  SHIM_USAGE = 2,   /* the options cannot work, found after parsing (exit status 2) */
  SHIM_ABANDON = 3, /* a call failed with work perhaps still in flight that waits for a peer: no
                       synchronise, free or destroy; end the process (exit status 1) */
  SHIM_HELP = 4     /* --help was printed: nothing to run (exit status 0) */
} shim_status_t;

/* The process exit status for a code: 0 (SHIM_OK, SHIM_HELP), 2 (SHIM_USAGE), else 1. */
static inline int shim_exit_status(shim_status_t st) {
  return st == SHIM_OK || st == SHIM_HELP ? 0 : st == SHIM_USAGE ? 2 : 1;
}

/* A parallel size as the plugin reads it: 0 (not given) means 1. */
static inline int shim_eff(int v) {
  return v > 0 ? v : 1;
}

typedef struct shim_opts {
  int ranks; /* ranks to fork; 0: CUDA device count, else tp * pp */
  int tp, pp, ep, moe_dp, attn_cp, attn_dp, moe_dense_tp; /* 0: default (tp: ranks / pp) */
  int tokens, hidden; /* tokens per rank (per attention group in the ABI-1.1 step) x hidden */
  moecomm_dtype_t dtype;
  int iters;  /* timed eager iterations and graph replays */
  int device; /* MOECOMM_DEVICE_AUTO or MOECOMM_DEVICE_CPU */
  int print_groups, demo;
  int env;                /* --env: print the plugin's configuration table and stop */
  int uneven;             /* ABI-1.1 step: attention groups get different token counts */
  int moe_a2a;            /* the MoE by moe_dispatch / moe_combine on MOE_EP (ABI 1.2) */
  int capture_plan;       /* --capture-sizes plan: every size plan_capture_sizes gives */
  int32_t *capture_sizes; /* --capture-sizes list (n_capture distinct sizes), else NULL */
  int n_capture;
  uint32_t abi_max; /* newest ABI version offered to the plugin (default: this header's) */
  int timeout_s;    /* the launcher kills every rank after this long; 0: scaled to the
                       work (job.c) */
  uint64_t seed;
  int progress_after_s; /* progress lines once the run is this old (progress.h) */
} shim_opts_t;

#endif
