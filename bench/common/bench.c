/* SPDX-License-Identifier: Apache-2.0 */
/* bench.c - the helpers every benchmark shares (bench.h).  Also built by mpicc (bench/run-cpu.sh):
 * keep it free of moecomm, CUDA and NCCL. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* clock_gettime under mpicc's flags as well as the Makefile's */
#endif
#include "bench.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

double mc_bench_now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int mc_bench_cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

double mc_bench_median(double *v, int n) {
  qsort(v, (size_t)n, sizeof(v[0]), mc_bench_cmp_double);
  return v[n / 2];
}

int mc_bench_fail(char *err, size_t cap, const char *fmt, ...) {
  va_list ap;
  if (cap == 0 || err[0] != '\0') return 0;
  va_start(ap, fmt);
  vsnprintf(err, cap, fmt, ap);
  va_end(ap);
  return 0;
}

void mc_bench_json_str(FILE *f, const char *s) {
  fputc('"', f);
  for (; *s; s++) {
    if (*s == '"' || *s == '\\') fputc('\\', f);
    if ((unsigned char)*s < 0x20)
      fprintf(f, "\\u%04x", *s);
    else
      fputc(*s, f);
  }
  fputc('"', f);
}

size_t mc_bench_parse_size(const char *s) {
  char *end = NULL;
  unsigned long long v = strtoull(s, &end, 10);
  if (end != NULL && (*end == 'k' || *end == 'K')) v <<= 10;
  if (end != NULL && (*end == 'm' || *end == 'M')) v <<= 20;
  return (size_t)v;
}

int mc_bench_run_args(int argc, char **argv, mc_bench_run_t *run_p) {
  mc_bench_run_t run = {NULL, "unknown", "unknown", "unknown"};
  for (int i = 1; i < argc; i++) {
    const char **dst = NULL;
    if (strcmp(argv[i], "--json") == 0)
      dst = &run.json;
    else if (strcmp(argv[i], "--commit") == 0)
      dst = &run.commit;
    else if (strcmp(argv[i], "--date") == 0)
      dst = &run.date;
    else if (strcmp(argv[i], "--driver") == 0)
      dst = &run.driver;
    if (dst == NULL || i + 1 >= argc) {
      fprintf(stderr, "usage: %s [--json PATH] [--commit C] [--date D] [--driver V]\n", argv[0]);
      return 2;
    }
    *dst = argv[++i];
  }
  *run_p = run;
  return 0;
}

uint16_t mc_bench_f2bf(float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40u);
  return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

float mc_bench_bf2f(uint16_t b) {
  uint32_t u = (uint32_t)b << 16;
  float f;
  memcpy(&f, &u, 4);
  return f;
}

int mc_bench_batch_calls(size_t bytes) {
  size_t k = ((size_t)32 << 20) / bytes;
  return k < 1 ? 1 : k > 1000 ? 1000 : (int)k;
}

/* Element i of rank r's input. */
static int cpu_input(int r, size_t i) {
  return (int)((i * 7u + (size_t)r * 3u) % 9u) - 4;
}

void mc_bench_cpu_fill(void *buf, size_t count, int fp32, int rank) {
  for (size_t i = 0; i < count; i++) {
    float v = (float)cpu_input(rank, i);
    if (fp32)
      ((float *)buf)[i] = v;
    else
      ((uint16_t *)buf)[i] = mc_bench_f2bf(v);
  }
}

size_t mc_bench_cpu_wrong(const void *buf, size_t count, int fp32, int world) {
  size_t wrong = 0;
  for (size_t i = 0; i < count; i++) {
    int want = 0;
    float got = fp32 ? ((const float *)buf)[i] : mc_bench_bf2f(((const uint16_t *)buf)[i]);
    for (int r = 0; r < world; r++) want += cpu_input(r, i);
    wrong += got != (float)want;
  }
  return wrong;
}
