/* SPDX-License-Identifier: Apache-2.0 */
/* log.h - the one logger of the plugin.  Level from MOECOMM_DEBUG=WARN|INFO|TRACE (default
   WARN). */
#ifndef MC_LOG_H_
#define MC_LOG_H_

#include <stdatomic.h>

typedef enum mc_log_level {
  MC_LOG_NONE = 0,
  MC_LOG_WARN = 1,
  MC_LOG_INFO = 2,
  MC_LOG_TRACE = 3
} mc_log_level_t;

/* Current level; cheap to read on hot paths (a relaxed atomic: contexts created on other threads
   may set it at any time). */
extern _Atomic int mc_log_level_now;

void mc_log_set_level(mc_log_level_t level);
/* Rank shown in every line; -1 until a context knows it. */
void mc_log_set_rank(int rank);
void mc_log_write(mc_log_level_t level, const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#define MC_LOG_(lvl, ...)                                                       \
  do {                                                                          \
    if (atomic_load_explicit(&mc_log_level_now, memory_order_relaxed) >= (lvl)) \
      mc_log_write((lvl), __FILE__, __LINE__, __VA_ARGS__);                     \
  } while (0)
#define MC_WARN(...) MC_LOG_(MC_LOG_WARN, __VA_ARGS__)
#define MC_INFO(...) MC_LOG_(MC_LOG_INFO, __VA_ARGS__)
#define MC_TRACE(...) MC_LOG_(MC_LOG_TRACE, __VA_ARGS__)

#endif
