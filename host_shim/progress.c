/* SPDX-License-Identifier: Apache-2.0 */
/* progress.c - progress lines (progress.h). */
#include "progress.h"

#include <stdarg.h>
#include <stdio.h>
#include <time.h>

static double g_t0;        /* monotonic seconds at shim_progress_start */
static double g_last_line; /* elapsed seconds at the last line printed (ticks are spaced) */
static double g_after = SHIM_PROGRESS_AFTER_S; /* --progress-after */

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

void shim_progress_start(int after_s) {
  g_t0 = now_s();
  g_after = after_s;
  g_last_line = 0;
}

double shim_progress_elapsed(void) {
  return now_s() - g_t0;
}

static void progress_line(int rank, double every_s, const char *fmt, va_list ap) {
  double t = shim_progress_elapsed();
  if (rank != 0 || t < g_after || t - g_last_line < every_s) return;
  g_last_line = t;
  printf("[%.1f s] rank 0: ", t);
  vprintf(fmt, ap);
  printf("\n");
  fflush(stdout);
}

void shim_progress(int rank, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  progress_line(rank, 0.0, fmt, ap);
  va_end(ap);
}

void shim_progress_tick(int rank, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  progress_line(rank, SHIM_PROGRESS_EVERY_S, fmt, ap);
  va_end(ap);
}
