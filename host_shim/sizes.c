/* SPDX-License-Identifier: Apache-2.0 */
/* sizes.c - --capture-sizes: the planner's sizes and what became of each (sizes.h). */
#include "sizes.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "options.h"

void shim_sizes_free(shim_sizes_t *z) {
  for (size_t i = 0; i < z->n; i++) {
    if (z->g != NULL) shim_graph_destroy(&z->g[i]);
    if (z->us != NULL) shim_samples_free(&z->us[i]);
  }
  free(z->g);
  free(z->us);
  free(z->bad);
  free(z->t);
  memset(z, 0, sizeof(*z));
}

/* The planner kept n of the given sizes (kept: t[0..n)): rank 0 names the others and the
   planner's own sentence about them.  Always SHIM_USAGE (or SHIM_FAIL when out of memory). */
static shim_status_t report_dropped(const shim_opts_t *o, const moecomm_api_t *api,
                                    moecomm_context_t *ctx, int rank, const int32_t *t, size_t n,
                                    int32_t mult) {
  size_t given = (size_t)o->n_capture, nd = 0, n2 = 0;
  int32_t *dropped = malloc(given * sizeof(*dropped)), m2 = 0;
  moecomm_plan_params_t pp;
  moecomm_result_t r;
  char list[256], drops[256];
  if (dropped == NULL) {
    fprintf(stderr, "rank %d: out of host memory\n", rank);
    return SHIM_FAIL;
  }
  for (size_t i = 0; i < given; i++) {
    int kept = 0;
    for (size_t j = 0; j < n && !kept; j++) kept = t[j] == o->capture_sizes[i];
    if (!kept) dropped[nd++] = o->capture_sizes[i];
  }
  shim_opts_sizes_text(o, list, sizeof(list));
  shim_format_sizes(dropped, nd, drops, sizeof(drops));
  /* The planner's own sentence: ask about the dropped sizes alone. */
  memset(&pp, 0, sizeof(pp));
  pp.struct_size = sizeof(pp);
  pp.candidates = dropped;
  pp.num_candidates = nd;
  r = nd > 0 ? api->plan_capture_sizes(ctx, &pp, NULL, 0, &n2, &m2) : MOECOMM_SUCCESS;
  if (rank == 0)
    fprintf(stderr,
            "moecomm-shim: --capture-sizes %s: plan_capture_sizes drops %s for this "
            "topology (sizes must be multiples of %d): %s\n",
            list, drops, (int)mult,
            r == MOECOMM_ERR_CONFIG ? api->last_error(ctx) : "(the planner gave no reason)");
  free(dropped);
  return SHIM_USAGE;
}

/* plan_capture_sizes into a new array *t_p (*n_p sizes, multiple *mult_p). */
static shim_status_t ask_planner(const shim_opts_t *o, const moecomm_api_t *api,
                                 moecomm_context_t *ctx, int rank, int32_t **t_p, size_t *n_p,
                                 int32_t *mult_p) {
  moecomm_plan_params_t pp;
  moecomm_result_t r;
  size_t n = 0;
  int32_t mult = 0, *t = NULL;
  char list[256];
  memset(&pp, 0, sizeof(pp));
  pp.struct_size = sizeof(pp);
  pp.candidates = o->capture_plan ? NULL : o->capture_sizes;
  pp.num_candidates = o->capture_plan ? 0 : (size_t)o->n_capture;
  r = api->plan_capture_sizes(ctx, &pp, NULL, 0, &n, &mult);
  if (r == MOECOMM_SUCCESS) {
    t = malloc((n ? n : 1) * sizeof(*t));
    if (t == NULL) {
      fprintf(stderr, "rank %d: out of host memory for %zu capture sizes\n", rank, n);
      return SHIM_FAIL;
    }
    r = api->plan_capture_sizes(ctx, &pp, t, n, &n, &mult);
  }
  if (r == MOECOMM_ERR_CONFIG) {
    shim_opts_sizes_text(o, list, sizeof(list));
    if (rank == 0)
      fprintf(stderr,
              "moecomm-shim: --capture-sizes %s: plan_capture_sizes keeps none for this "
              "topology: %s\n",
              list, api->last_error(ctx));
    free(t);
    return SHIM_USAGE;
  }
  if (r != MOECOMM_SUCCESS || n == 0) {
    fprintf(stderr, "rank %d: plan_capture_sizes failed: %s: %s\n", rank, api->result_string(r),
            r != MOECOMM_SUCCESS ? api->last_error(ctx) : "no sizes");
    free(t);
    return SHIM_FAIL;
  }
  *t_p = t;
  *n_p = n;
  *mult_p = mult;
  return SHIM_OK;
}

shim_status_t shim_sizes_plan(const shim_opts_t *o, const moecomm_api_t *api,
                              moecomm_context_t *ctx, int rank, shim_sizes_t *z) {
  shim_status_t st;
  char list[256];
  memset(z, 0, sizeof(*z));
  if (!MOECOMM_API_HAS(api, plan_capture_sizes)) {
    fprintf(stderr,
            "rank %d: --capture-sizes needs plan_capture_sizes, which the plugin's table "
            "lacks\n",
            rank);
    return SHIM_FAIL;
  }
  st = ask_planner(o, api, ctx, rank, &z->t, &z->n, &z->multiple);
  if (st != SHIM_OK) return st;
  if (!o->capture_plan && z->n < (size_t)o->n_capture) {
    st = report_dropped(o, api, ctx, rank, z->t, z->n, z->multiple);
    shim_sizes_free(z);
    return st;
  }
  for (size_t i = 1; i < z->n; i++)
    if (z->t[i] > z->t[z->largest]) z->largest = i;
  if ((long long)z->t[z->largest] * o->hidden > (1LL << 28)) {
    shim_opts_sizes_text(o, list, sizeof(list));
    if (rank == 0)
      fprintf(stderr,
              "moecomm-shim: --capture-sizes %s: size %d x --hidden %d is more than "
              "2^28 elements per rank\n",
              list, (int)z->t[z->largest], o->hidden);
    shim_sizes_free(z);
    return SHIM_USAGE;
  }
  z->g = calloc(z->n, sizeof(*z->g));
  z->us = calloc(z->n, sizeof(*z->us));
  z->bad = calloc(z->n, sizeof(*z->bad));
  if (z->g == NULL || z->us == NULL || z->bad == NULL) {
    fprintf(stderr, "rank %d: out of host memory for %zu capture sizes\n", rank, z->n);
    shim_sizes_free(z);
    return SHIM_FAIL;
  }
  return SHIM_OK;
}

shim_status_t shim_sizes_gather(shim_sizes_t *z, int rank, int world, shim_exchange_fn_t xfn,
                                void *xarg) {
  uint64_t *all;
  if (z->n == 0) return SHIM_OK;
  all = calloc((size_t)world * z->n, sizeof(*all));
  if (all == NULL) {
    /* Not joining the exchange: this rank must end, so that its peers see it gone. */
    fprintf(stderr, "rank %d: out of host memory for the per-size results\n", rank);
    return SHIM_ABANDON;
  }
  if (xfn(xarg, z->bad, all, z->n * sizeof(*all)) != 0) {
    fprintf(stderr, "rank %d: could not collect every rank's per-size results (a rank failed)\n",
            rank);
    free(all);
    return SHIM_FAIL;
  }
  for (size_t i = 0; i < z->n; i++) {
    z->bad[i] = 0;
    for (int r = 0; r < world; r++) z->bad[i] += all[(size_t)r * z->n + i];
  }
  free(all);
  return SHIM_OK;
}

void shim_sizes_print(const shim_opts_t *o, const shim_sizes_t *z, int gpu) {
  for (size_t i = 0; i < z->n; i++) {
    printf("  size %d: %s, %d %s ", (int)z->t[i],
           z->graphs ? "graph captured"
           : gpu     ? "not captured (the plugin does not capture)"
                     : "capture scope only (no graphs on a CPU context)",
           o->iters, z->graphs ? "replays" : "eager re-runs");
    if (z->bad[i] != 0)
      printf("FAILED: %llu wrong element%s over all ranks\n", (unsigned long long)z->bad[i],
             z->bad[i] == 1 ? "" : "s");
    else if (z->graphs)
      printf("verified, replay med %.1f us p90 %.1f us\n", shim_samples_quantile(&z->us[i], 0.5),
             shim_samples_quantile(&z->us[i], 0.9));
    else
      printf("verified\n");
  }
}
