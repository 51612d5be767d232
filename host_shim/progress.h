/* SPDX-License-Identifier: Apache-2.0 */
/* progress.h - what the shim says while it runs: on runs longer than a few seconds, a line on
 * stdout as each phase completes ("[12.3 s] rank 0: captured size 64 (5/24)").  Each rank also
 * records the phase it starts with shim_launch_phase (lib/launch.h), which the launcher names
 * when the run times out. */
#ifndef SHIM_PROGRESS_H_
#define SHIM_PROGRESS_H_

/* Lines are printed only once the run is this old (--progress-after): short runs stay quiet. */
#define SHIM_PROGRESS_AFTER_S 3
/* Repeated steps (iterations, replay rounds) print at most one line per this many seconds. */
#define SHIM_PROGRESS_EVERY_S 5.0

/* The run starts now, and lines are printed once it is after_s seconds old (called once, before
   the ranks are forked: they inherit the clock). */
void shim_progress_start(int after_s);
/* Seconds since shim_progress_start. */
double shim_progress_elapsed(void);

/* What just completed, on rank 0 only: "[t s] rank 0: <text>" once the run is old enough. */
void shim_progress(int rank, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* The same for one of many repeated steps: also at most one line per SHIM_PROGRESS_EVERY_S. */
void shim_progress_tick(int rank, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
