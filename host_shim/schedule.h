/* SPDX-License-Identifier: Apache-2.0 */
/* schedule.h - what a rank runs of the MoE step, in which order: the step set up (at the largest
 * capture size with --capture-sizes), a verified warm-up that creates the communicators, timed
 * eager iterations, then the CUDA graph captured and replayed; with --capture-sizes, each size
 * eager and captured into its own graph (own capture scope), timed eager iterations at the
 * largest, then rounds replaying every size's graph.  Without graphs (a CPU context, or a plugin
 * that does not capture) capture is the scope around an eager run and a replay an eager run. */
#ifndef SHIM_SCHEDULE_H_
#define SHIM_SCHEDULE_H_

#include "rank.h"
#include "results.h"
#include "sizes.h"
#include "step.h"

/* Runs the step in rank r; s and z zeroed by the caller (shim_step_fini and shim_sizes_free are
   safe on them whatever happens here).  Fills *res.  SHIM_OK: the step ran (mismatches are in
   *res); SHIM_FAIL: set-up failed before any collective was issued (the context can still be
   destroyed in order); SHIM_USAGE: the planner refused --capture-sizes; SHIM_ABANDON: a call
   failed with work perhaps in flight.  Every failure is printed. */
shim_status_t shim_schedule_run(shim_rank_t *r, shim_step_t *s, shim_sizes_t *z,
                                shim_rank_result_t *res);

#endif
