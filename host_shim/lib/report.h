/* SPDX-License-Identifier: Apache-2.0 */
/* report.h - timing samples, the timing table and text formatting. */
#ifndef SHIM_REPORT_H_
#define SHIM_REPORT_H_

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

typedef struct shim_samples {
  double *v; /* microseconds */
  size_t n, cap;
} shim_samples_t;

/* 0 on success, -1 when out of memory. */
int shim_samples_add(shim_samples_t *s, double us);
void shim_samples_free(shim_samples_t *s);
/* Nearest-rank quantile (q in [0, 1]) of the samples; -1 when there are none. */
double shim_samples_quantile(const shim_samples_t *s, double q);

/* "[0-3]" for a run of 3 or more consecutive ranks, "[0,4]" otherwise, e.g. "[0,2,4-7]". */
void shim_format_ranks(const int32_t *ranks, int n, char *buf, size_t size);

/* Appends printf text to the string in buf (size bytes), cutting with "..." rather than
   overflowing. */
void shim_append(char *buf, size_t size, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* One row of the timing table: one op of the step. */
typedef struct shim_report_row {
  const char *op;              /* "attn all-reduce" */
  const char *group;           /* "ATTN_TP [0-3]" */
  const char *backend;         /* "nccl" */
  size_t bytes;                /* the op's largest buffer on this rank */
  const shim_samples_t *eager; /* per-op µs, eager (NULL or empty: not run) */
  const shim_samples_t *graph; /* per-op µs from graph replays (NULL or empty: not run) */
} shim_report_row_t;

/* Prints the table; `clock` says how the times were taken. */
void shim_report_print(FILE *f, const shim_report_row_t *rows, int n, const char *clock);

#endif
