/* SPDX-License-Identifier: Apache-2.0 */
/* sizes.h - --capture-sizes on one rank: the sizes plan_capture_sizes keeps, one graph and one
 * set of timings and mismatch counts per size, and the per-size lines of the report. */
#ifndef SHIM_SIZES_H_
#define SHIM_SIZES_H_

#include <stddef.h>
#include <stdint.h>

#include "groups.h"
#include "lib/device.h"
#include "lib/report.h"
#include "shim.h"

typedef struct shim_sizes {
  int32_t *t; /* token counts in the planner's order; n 0: no --capture-sizes */
  size_t n;
  int32_t multiple;   /* plan_capture_sizes' multiple */
  size_t largest;     /* index of the largest */
  int graphs;         /* 1: each size replayed its own CUDA graph; 0: eager re-runs */
  shim_graph_t *g;    /* per size */
  shim_samples_t *us; /* per size: whole-graph replay times on this rank */
  uint64_t *bad;      /* per size: wrong elements on this rank (after shim_sizes_gather: on
                         every rank) */
} shim_sizes_t;

/* The sizes from plan_capture_sizes: the default candidates and no flags (the topology decides)
   for `plan`, else the list, every entry of which the planner must keep.  SHIM_OK with z
   filled; SHIM_USAGE when the planner refuses the sizes (rank 0 prints why: every rank refuses
   alike); SHIM_FAIL when a call failed (printed).  z is zeroed first. */
shim_status_t shim_sizes_plan(const shim_opts_t *o, const moecomm_api_t *api,
                              moecomm_context_t *ctx, int rank, shim_sizes_t *z);
void shim_sizes_free(shim_sizes_t *z);

/* Every rank's per-size mismatch counts, summed into z->bad (the same sizes on every rank; a
   collective: every rank calls it).  SHIM_OK, or SHIM_FAIL / SHIM_ABANDON after a message. */
shim_status_t shim_sizes_gather(shim_sizes_t *z, int rank, int world, shim_exchange_fn_t xfn,
                                void *xarg);

/* Rank 0, after shim_sizes_gather: one line per size ("  size 64: graph captured, 20 replays
   verified, replay med ..."). */
void shim_sizes_print(const shim_opts_t *o, const shim_sizes_t *z, int gpu);

#endif
