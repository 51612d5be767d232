/* SPDX-License-Identifier: Apache-2.0 */
/* util.c - small helpers shared by the core and the backends. */
#include "util.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

int64_t mc_now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void mc_sleep_us(long us) {
  struct timespec ts = {us / 1000000, (us % 1000000) * 1000};
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
}

size_t mc_dtype_size(moecomm_dtype_t dtype) {
  switch (dtype) {
    case MOECOMM_FLOAT32: return 4;
    case MOECOMM_FLOAT16: return 2;
    case MOECOMM_BFLOAT16: return 2;
    case MOECOMM_INT32: return 4;
  }
  return 0;
}

const char *mc_dtype_name(moecomm_dtype_t dtype) {
  switch (dtype) {
    case MOECOMM_FLOAT32: return "fp32";
    case MOECOMM_FLOAT16: return "fp16";
    case MOECOMM_BFLOAT16: return "bf16";
    case MOECOMM_INT32: return "int32";
  }
  return "?";
}

const char *mc_redop_name(moecomm_redop_t op) {
  switch (op) {
    case MOECOMM_SUM: return "sum";
    case MOECOMM_MAX: return "max";
    case MOECOMM_MIN: return "min";
  }
  return "?";
}

void mc_format_ranks(const int32_t *ranks, int n, char *buf, size_t buf_size) {
  size_t used = 0;
  if (buf_size == 0) return;
  buf[0] = '\0';
  for (int i = 0; i < n; i++) {
    int w = snprintf(buf + used, buf_size - used, "%s%d", i ? "," : "", (int)ranks[i]);
    if (w < 0 || (size_t)w >= buf_size - used) {
      if (buf_size >= 4) strcpy(buf + buf_size - 4, "...");
      return;
    }
    used += (size_t)w;
  }
}
