/* SPDX-License-Identifier: Apache-2.0 */
/* report.c - timing samples and the timing table (report.h). */
#include "report.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

int shim_samples_add(shim_samples_t *s, double us) {
  if (s->n == s->cap) {
    size_t cap = s->cap ? 2 * s->cap : 64;
    double *v = realloc(s->v, cap * sizeof(*v));
    if (v == NULL) return -1;
    s->v = v;
    s->cap = cap;
  }
  s->v[s->n++] = us;
  return 0;
}

void shim_samples_free(shim_samples_t *s) {
  free(s->v);
  memset(s, 0, sizeof(*s));
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

double shim_samples_quantile(const shim_samples_t *s, double q) {
  double *tmp, r;
  size_t k;
  if (s == NULL || s->n == 0) return -1.0;
  tmp = malloc(s->n * sizeof(*tmp));
  if (tmp == NULL) return -1.0;
  memcpy(tmp, s->v, s->n * sizeof(*tmp));
  qsort(tmp, s->n, sizeof(*tmp), cmp_double);
  /* Nearest rank: the smallest sample with at least q of the samples at or below it. */
  k = (size_t)(q * (double)s->n + 0.999999);
  if (k > 0) k--;
  if (k >= s->n) k = s->n - 1;
  r = tmp[k];
  free(tmp);
  return r;
}

void shim_format_ranks(const int32_t *ranks, int n, char *buf, size_t size) {
  size_t used = 0;
  if (size == 0) return;
  buf[0] = '\0';
#define SHIM_PUT(...)                                        \
  do {                                                       \
    int w_ = snprintf(buf + used, size - used, __VA_ARGS__); \
    if (w_ < 0 || (size_t)w_ >= size - used) goto cut;       \
    used += (size_t)w_;                                      \
  } while (0)
  SHIM_PUT("[");
  for (int i = 0; i < n;) {
    int j = i;
    while (j + 1 < n && ranks[j + 1] == ranks[j] + 1) j++;
    if (i > 0) SHIM_PUT(",");
    if (j - i >= 2) {
      SHIM_PUT("%d-%d", (int)ranks[i], (int)ranks[j]);
      i = j + 1;
    } else {
      SHIM_PUT("%d", (int)ranks[i]);
      i++;
    }
  }
  SHIM_PUT("]");
  return;
#undef SHIM_PUT
cut:
  if (size >= 4) memcpy(buf + size - 4, "...", 4);
}

void shim_append(char *buf, size_t size, const char *fmt, ...) {
  size_t used = strlen(buf);
  va_list ap;
  int w;
  if (used + 1 >= size) return;
  va_start(ap, fmt);
  w = vsnprintf(buf + used, size - used, fmt, ap);
  va_end(ap);
  if (w >= 0 && (size_t)w >= size - used && size >= 4) memcpy(buf + size - 4, "...", 4);
}

static void fmt_us(char *buf, size_t size, double us) {
  if (us < 0)
    snprintf(buf, size, "-");
  else
    snprintf(buf, size, "%.1f", us);
}

/* Width of a text column: its header or its longest cell, at least `min`. */
static int col_width(const shim_report_row_t *rows, int n, size_t field, int min) {
  int w = min;
  for (int i = 0; i < n; i++) {
    const char *cell = *(const char *const *)((const char *)&rows[i] + field);
    int len = cell != NULL ? (int)strlen(cell) : 0;
    if (len > w) w = len;
  }
  return w;
}

void shim_report_print(FILE *f, const shim_report_row_t *rows, int n, const char *clock) {
  int wo = col_width(rows, n, offsetof(shim_report_row_t, op), 22);
  int wg = col_width(rows, n, offsetof(shim_report_row_t, group), 24);
  int wb = col_width(rows, n, offsetof(shim_report_row_t, backend), 7);
  fprintf(f, "%-*s %-*s %-*s %10s %12s %10s %12s %10s\n", wo, "op", wg, "group", wb, "backend",
          "bytes", "eager med", "eager p90", "graph med", "graph p90");
  for (int i = 0; i < n; i++) {
    const shim_report_row_t *r = &rows[i];
    char em[32], ep[32], gm[32], gp[32];
    fmt_us(em, sizeof(em), shim_samples_quantile(r->eager, 0.5));
    fmt_us(ep, sizeof(ep), shim_samples_quantile(r->eager, 0.9));
    fmt_us(gm, sizeof(gm), shim_samples_quantile(r->graph, 0.5));
    fmt_us(gp, sizeof(gp), shim_samples_quantile(r->graph, 0.9));
    fprintf(f, "%-*s %-*s %-*s %10zu %12s %10s %12s %10s\n", wo, r->op ? r->op : "", wg,
            r->group ? r->group : "", wb, r->backend ? r->backend : "", r->bytes, em, ep, gm, gp);
  }
  fprintf(f, "times in us per op (%s)\n", clock);
}
