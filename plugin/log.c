/* SPDX-License-Identifier: Apache-2.0 */
/* log.c - the one logger: "moecomm[rank R pid P] LEVEL file:line message" on stderr. */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

_Atomic int mc_log_level_now = MC_LOG_WARN;
static _Atomic int mc_log_rank = -1;

void mc_log_set_level(mc_log_level_t level) {
  atomic_store_explicit(&mc_log_level_now, (int)level, memory_order_relaxed);
}

void mc_log_set_rank(int rank) {
  atomic_store_explicit(&mc_log_rank, rank, memory_order_relaxed);
}

void mc_log_write(mc_log_level_t level, const char *file, int line, const char *fmt, ...) {
  static const char *const names[] = {"NONE", "WARN", "INFO", "TRACE"};
  char msg[1536];
  const char *base = strrchr(file, '/');
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof(msg), fmt, ap);
  va_end(ap);
  /* One fprintf per line so lines of concurrent ranks do not interleave mid-line. */
  fprintf(stderr, "moecomm[rank %d pid %d] %s %s:%d %s\n",
          atomic_load_explicit(&mc_log_rank, memory_order_relaxed), (int)getpid(),
          names[level <= MC_LOG_TRACE ? level : MC_LOG_TRACE], base ? base + 1 : file, line, msg);
}
