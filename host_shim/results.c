/* SPDX-License-Identifier: Apache-2.0 */
/* results.c - every rank's result, and rank 0's verdict and tables (results.h). */
#include "results.h"

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "lib/report.h"

/* The verdict line of a run where every rank verified. */
static void print_verified(const shim_opts_t *o, const shim_sizes_t *z,
                           const shim_rank_result_t *all, int world) {
  if (z->n > 0)
    printf(
        "result: verified bit-exact on all %d rank%s (%llu ops each: %zu capture sizes, each "
        "eager once and captured; %d timed eager iterations at %d; %d rounds of %s over "
        "every size)\n",
        world, world == 1 ? "" : "s", (unsigned long long)all[0].checked, z->n, o->iters,
        (int)z->t[z->largest], o->iters, all[0].graph ? "graph replays" : "eager re-runs");
  else
    printf("result: verified bit-exact on all %d rank%s (%llu ops each: %d eager iterations%s)\n",
           world, world == 1 ? "" : "s", (unsigned long long)all[0].checked, o->iters + 1,
           all[0].graph ? ", then graph replays" : "");
}

/* Rank 0's timing table and memory table. */
static void print_tables(const shim_rank_t *r, const shim_step_t *s, const shim_sizes_t *z,
                         const shim_rank_result_t *all) {
  shim_report_row_t rows[SHIM_STEP_MAX_OPS];
  shim_mem_t *mems = calloc((size_t)r->world, sizeof(*mems));
  long cpus = sysconf(_SC_NPROCESSORS_ONLN);
  char clock[256];
  int n = shim_step_report_rows(s, rows);
  snprintf(clock, sizeof(clock), "%s%s%s",
           shim_dev_is_gpu(&r->dev) ? "rank 0; eager: CUDA events around each op; graph: "
                                      "whole-graph replay time / ops"
                                    : "rank 0; host clock around each call",
           r->hub ? ", every rank at a barrier before each timed eager op" : "",
           z->n > 0 ? "; at the largest capture size" : "");
  shim_report_print(stdout, rows, n, clock);
  if (!shim_dev_is_gpu(&r->dev) && r->hub && cpus > 0 && r->world > cpus)
    printf(
        "note: %d ranks share %ld CPUs: these shm times include waiting for a CPU, not only "
        "for peers (a run with no more ranks than CPUs shows the transport; make bench-cpu "
        "times it alone)\n",
        r->world, cpus);
  if (mems != NULL) {
    for (int q = 0; q < r->world; q++) mems[q] = all[q].mem;
    shim_mem_print(stdout, r->api, r->ctx, mems, r->world);
    free(mems);
  }
}

/* Rank 0, after every rank reported: the per-size lines, the verdict and the tables.  SHIM_OK
   when every rank verified. */
static shim_status_t print_verdict(const shim_rank_t *r, const shim_step_t *s,
                                   const shim_sizes_t *z, const shim_rank_result_t *all) {
  const shim_opts_t *o = &r->job->o;
  int bad = 0;
  if (z->n > 0) shim_sizes_print(o, z, shim_dev_is_gpu(&r->dev));
  for (int q = 0; q < r->world; q++) {
    if (all[q].status == 0) continue;
    bad++;
    printf("rank %d: FAILED: %llu wrong element%s\n", q, (unsigned long long)all[q].mismatches,
           all[q].mismatches == 1 ? "" : "s");
  }
  if (bad) {
    printf("result: FAILED on %d of %d ranks\n", bad, r->world);
    return SHIM_FAIL;
  }
  print_verified(o, z, all, r->world);
  print_tables(r, s, z, all);
  return SHIM_OK;
}

shim_status_t shim_results_report(shim_rank_t *r, const shim_step_t *s, shim_sizes_t *z,
                                  const shim_rank_result_t *mine) {
  shim_rank_result_t *all = calloc((size_t)r->world, sizeof(*all));
  shim_status_t st;
  if (all == NULL) {
    /* Not joining the gather: this rank must end, so that its peers see it gone. */
    fprintf(stderr, "rank %d: out of host memory for %d ranks' results\n", r->rank, r->world);
    return SHIM_ABANDON;
  }
  if (r->xfn(r->xarg, mine, all, sizeof(*mine)) != 0) {
    fprintf(stderr, "rank %d: could not collect every rank's result (a rank failed)\n", r->rank);
    free(all);
    return SHIM_FAIL;
  }
  st = shim_sizes_gather(z, r->rank, r->world, r->xfn, r->xarg);
  if (st == SHIM_OK && r->rank == 0) st = print_verdict(r, s, z, all);
  if (st == SHIM_OK && mine->status != 0) st = SHIM_FAIL;
  free(all);
  return st;
}
