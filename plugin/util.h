/* SPDX-License-Identifier: Apache-2.0 */
/* util.h - small helpers shared by the core and the backends. */
#ifndef MC_UTIL_H_
#define MC_UTIL_H_

#include <stddef.h>
#include <stdint.h>

#include "../abi/moecomm.h"

#define MC_MIN(a, b) ((a) < (b) ? (a) : (b))
#define MC_MAX(a, b) ((a) > (b) ? (a) : (b))
#define MC_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* Monotonic clock in milliseconds. */
int64_t mc_now_ms(void);

/* Sleeps `us` microseconds (resumed after signals). */
void mc_sleep_us(long us);

/* Bytes per element of a collective's dtype; 0 for one out of range. */
size_t mc_dtype_size(moecomm_dtype_t dtype);
const char *mc_dtype_name(moecomm_dtype_t dtype);
const char *mc_redop_name(moecomm_redop_t op);

/* Formats n ranks as "0,4,5" into buf (always NUL-terminated, "..." when cut). */
void mc_format_ranks(const int32_t *ranks, int n, char *buf, size_t buf_size);

#endif
