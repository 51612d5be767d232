/* run.h - what the shim does once its arguments are parsed: load the plugin, start the ranks,
 * and in each rank create a context and run --print-groups or the MoE layer step. */
#ifndef SHIM_RUN_H_
#define SHIM_RUN_H_

#include <stdint.h>

#include "../abi/moecomm.h"

typedef struct shim_opts {
  int ranks;              /* ranks to fork; 0: CUDA device count, else tp * pp */
  int tp, pp, ep, moe_dp, attn_cp, attn_dp, moe_dense_tp; /* 0: default (tp: ranks / pp) */
  int tokens, hidden;     /* tokens per rank (per attention group in the ABI-1.1 step) x hidden */
  moecomm_dtype_t dtype;
  int iters;              /* timed eager iterations and graph replays */
  int device;             /* MOECOMM_DEVICE_AUTO or MOECOMM_DEVICE_CPU */
  int print_groups, demo;
  int uneven;             /* ABI-1.1 step: attention groups get different token counts */
  int capture_plan;       /* --capture-sizes plan: every size plan_capture_sizes gives */
  int32_t *capture_sizes; /* --capture-sizes list (n_capture distinct sizes), else NULL */
  int n_capture;
  uint32_t abi_max;       /* newest ABI version offered to the plugin (default: this header's) */
  int timeout_s;          /* the launcher kills every rank after this long */
  uint64_t seed;
} shim_opts_t;

void shim_opts_default(shim_opts_t *o);

/* Runs what o asks for; returns the process exit status (0 ok, 1 a rank failed, 2 bad usage
   found late, e.g. a malformed MOECOMM_RANK or capture sizes the planner drops). */
int shim_run(const shim_opts_t *o);

#endif
