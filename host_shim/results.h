/* SPDX-License-Identifier: Apache-2.0 */
/* results.h - the end of a rank's run: every rank's result gathered (the gather is also the
 * barrier after which no peer touches this rank's buffers), and on rank 0 the verdict, the
 * per-size lines, the timing table and the memory table. */
#ifndef SHIM_RESULTS_H_
#define SHIM_RESULTS_H_

#include <stdint.h>

#include "lib/memory.h"
#include "rank.h"
#include "sizes.h"
#include "step.h"

/* What every rank tells rank 0 at the end (fixed layout: it crosses processes). */
typedef struct shim_rank_result {
  int32_t status; /* 0 verified, 1 mismatches */
  int32_t graph;  /* 1 graph replays ran */
  uint64_t mismatches;
  uint64_t checked; /* ops verified */
  shim_mem_t mem;   /* what the plugin holds after the step */
} shim_rank_result_t;

/* A collective: gathers every rank's `mine` and z's per-size counts; rank 0 prints the verdict
   and the tables.  SHIM_OK when every rank verified; SHIM_FAIL when one did not or the gather
   failed (printed); SHIM_ABANDON when this rank could not take part (printed). */
shim_status_t shim_results_report(shim_rank_t *r, const shim_step_t *s, shim_sizes_t *z,
                                  const shim_rank_result_t *mine);

#endif
