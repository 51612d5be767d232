/* SPDX-License-Identifier: Apache-2.0 */
/* schedule.c - the order of a rank's MoE step: warm-up, timed eager iterations, capture and
 * replay (schedule.h), with a phase for the launcher and a progress line for each part. */
#include "schedule.h"

#include <stdio.h>
#include <string.h>

#include "lib/launch.h"
#include "options.h"
#include "progress.h"

/* A failed step call: this rank's message; work may be in flight. */
static shim_status_t step_failed(const shim_rank_t *r, const shim_step_t *s) {
  fprintf(stderr, "rank %d: %s\n", r->rank, s->err);
  return SHIM_ABANDON;
}

/* The same at a capture size (the step's current token count). */
static shim_status_t size_failed(const shim_rank_t *r, const shim_step_t *s) {
  fprintf(stderr, "rank %d: capture size %d: %s\n", r->rank, s->cfg.tokens, s->err);
  return SHIM_ABANDON;
}

/* The step's configuration from the options (and the capture sizes, when planned). */
static void step_config(const shim_rank_t *r, const shim_sizes_t *z, shim_step_cfg_t *cfg) {
  const shim_opts_t *o = &r->job->o;
  memset(cfg, 0, sizeof(*cfg));
  cfg->seed = o->seed;
  cfg->dtype = o->dtype;
  cfg->tokens = o->tokens;
  cfg->hidden = o->hidden;
  cfg->rank = r->rank;
  cfg->world = r->world;
  cfg->gather_moe = shim_eff(o->attn_cp) > shim_eff(o->moe_dp);
  cfg->modes = r->job->plugin->version >= MOECOMM_ABI_VERSION_MAKE(1, 1);
  cfg->uneven = o->uneven;
  cfg->a2a = o->moe_a2a;
  cfg->tp = o->tp;
  cfg->ep = o->ep;
  cfg->moe_dp = o->moe_dp;
  cfg->attn_cp = o->attn_cp;
  cfg->attn_dp = o->attn_dp;
  cfg->pp = shim_eff(o->pp);
  cfg->p2p = r->job->plugin->version >= MOECOMM_ABI_VERSION_MAKE(1, 2);
  if (z->n > 0) {
    cfg->sizes = z->t;
    cfg->n_sizes = z->n;
    cfg->tokens = z->t[z->largest]; /* the step starts, and is described, at the largest */
  }
  /* The launcher's all-gather is a cheap barrier; the plugin's WORLD is not used for it. */
  if (r->hub) {
    cfg->barrier = r->xfn;
    cfg->barrier_arg = r->xarg;
  }
}

/* Rank 0: what the step runs. */
static void describe(const shim_rank_t *r, const shim_step_t *s, const shim_sizes_t *z) {
  if (z->n > 0) {
    char list[1024];
    shim_format_sizes(z->t, z->n, list, sizeof(list));
    printf("capture sizes: %zu %s (tokens per %s; multiple %d): %s\n", z->n,
           r->job->o.capture_plan ? "from plan_capture_sizes" : "given, kept by plan_capture_sizes",
           s->ops_of->tokens_per, (int)z->multiple, list);
    printf("  (one graph each, in its own capture scope; the step below is shown at %d)\n",
           (int)z->t[z->largest]);
  }
  shim_step_describe(s, stdout);
  fflush(stdout);
}

/* Plain schedule: iteration 0 creates the communicators (verified, not timed), o->iters timed
   eager iterations, then on a GPU one graph captured and replayed o->iters times. */
static shim_status_t run_plain(shim_rank_t *r, shim_step_t *s, shim_rank_result_t *res) {
  const shim_opts_t *o = &r->job->o;
  shim_graph_t graph;
  int supported = 0;
  for (int it = 0; it <= o->iters; it++) {
    shim_launch_phase("eager iteration %d/%d%s", it, o->iters, it ? "" : " (warm-up)");
    if (shim_step_eager(s, it > 0) != 0) return step_failed(r, s);
    if (it == 0)
      shim_progress(r->rank, "warm-up iteration done (communicators created)");
    else
      shim_progress_tick(r->rank, "eager iteration %d of %d done", it, o->iters);
  }
  shim_progress(r->rank, "%d timed eager iterations done", o->iters);
  if (!shim_dev_is_gpu(&r->dev)) return SHIM_OK;
  shim_launch_phase("capturing the step into a CUDA graph");
  if (shim_step_capture(s, &graph, &supported) != 0) {
    fprintf(stderr, "rank %d: graph capture failed: %s\n", r->rank, s->err);
    return SHIM_ABANDON;
  }
  if (!supported) {
    if (r->rank == 0)
      printf("graph capture: not supported by this plugin (%s); eager only\n", s->err);
    return SHIM_OK;
  }
  shim_progress(r->rank, "graph captured");
  for (int it = 0; it < o->iters; it++) {
    shim_launch_phase("graph replay %d/%d", it + 1, o->iters);
    if (shim_step_replay(s, &graph, 1, NULL) != 0) return step_failed(r, s);
    shim_progress_tick(r->rank, "graph replay %d/%d done", it + 1, o->iters);
  }
  shim_progress(r->rank, "%d graph replays done", o->iters);
  res->graph = 1;
  shim_graph_destroy(&graph);
  return SHIM_OK;
}

/* Size i of z: one verified eager run, then its own capture scope and graph (kept). */
static shim_status_t capture_size(shim_rank_t *r, shim_step_t *s, shim_sizes_t *z, size_t i,
                                  int *supported_p) {
  uint64_t before = s->mismatches;
  shim_launch_phase("size %d (%zu/%zu): eager run and capture", (int)z->t[i], i + 1, z->n);
  if (shim_step_set_tokens(s, z->t[i]) != 0 || shim_step_eager(s, 0) != 0) return size_failed(r, s);
  if (*supported_p) {
    if (shim_step_capture(s, &z->g[i], supported_p) != 0) return size_failed(r, s);
    if (!*supported_p && i > 0) {
      fprintf(stderr,
              "rank %d: capture of size %d: the plugin refused after capturing smaller "
              "sizes: %s\n",
              r->rank, (int)z->t[i], s->err);
      return SHIM_ABANDON;
    }
    if (!*supported_p) {
      if (r->rank == 0)
        printf("graph capture: not supported by this plugin (%s); eager re-runs only\n", s->err);
      z->graphs = 0;
    }
  }
  z->bad[i] += s->mismatches - before;
  if (z->graphs)
    shim_progress(r->rank, "captured size %d (%zu/%zu)", (int)z->t[i], i + 1, z->n);
  else
    shim_progress(r->rank, "ran size %d in its capture scope (%zu/%zu)", (int)z->t[i], i + 1, z->n);
  return SHIM_OK;
}

/* One round: every size once, its graph replayed with new inputs (or an eager re-run). */
static shim_status_t replay_round(shim_rank_t *r, shim_step_t *s, shim_sizes_t *z) {
  for (size_t i = 0; i < z->n; i++) {
    uint64_t before = s->mismatches;
    double us = 0;
    if (shim_step_set_tokens(s, z->t[i]) != 0) return size_failed(r, s);
    if (z->graphs) {
      if (shim_step_replay(s, &z->g[i], i == z->largest, &us) != 0) return size_failed(r, s);
      if (shim_samples_add(&z->us[i], us) != 0) {
        fprintf(stderr, "rank %d: out of host memory for timings\n", r->rank);
        return SHIM_ABANDON;
      }
    } else if (shim_step_eager(s, 0) != 0) {
      return size_failed(r, s);
    }
    z->bad[i] += s->mismatches - before;
  }
  return SHIM_OK;
}

/* --capture-sizes schedule (schedule.h). */
static shim_status_t run_sizes(shim_rank_t *r, shim_step_t *s, shim_sizes_t *z,
                               shim_rank_result_t *res) {
  const shim_opts_t *o = &r->job->o;
  int supported = 1, largest = (int)z->t[z->largest];
  uint64_t before;
  shim_status_t st;
  z->graphs = shim_dev_is_gpu(&r->dev);
  for (size_t i = 0; i < z->n; i++)
    if ((st = capture_size(r, s, z, i, &supported)) != SHIM_OK) return st;
  before = s->mismatches;
  if (shim_step_set_tokens(s, largest) != 0) return size_failed(r, s);
  for (int it = 0; it < o->iters; it++) {
    shim_launch_phase("timed eager iteration %d/%d at size %d", it + 1, o->iters, largest);
    if (shim_step_eager(s, 1) != 0) return size_failed(r, s);
    shim_progress_tick(r->rank, "timed eager iteration %d/%d done", it + 1, o->iters);
  }
  z->bad[z->largest] += s->mismatches - before;
  shim_progress(r->rank, "%d timed eager iterations at size %d done", o->iters, largest);
  for (int it = 0; it < o->iters; it++) {
    shim_launch_phase("round %d/%d over the %zu sizes", it + 1, o->iters, z->n);
    if ((st = replay_round(r, s, z)) != SHIM_OK) return st;
    shim_progress_tick(r->rank, "round %d/%d over every size done", it + 1, o->iters);
  }
  shim_progress(r->rank, "%d rounds of %s over every size done", o->iters,
                z->graphs ? "graph replays" : "eager re-runs");
  res->graph = z->graphs;
  /* The timing table describes the largest size. */
  if (shim_step_set_tokens(s, largest) != 0) return size_failed(r, s);
  return SHIM_OK;
}

shim_status_t shim_schedule_run(shim_rank_t *r, shim_step_t *s, shim_sizes_t *z,
                                shim_rank_result_t *res) {
  const shim_opts_t *o = &r->job->o;
  shim_step_cfg_t cfg;
  shim_status_t st;
  if (o->capture_plan || o->n_capture > 0) {
    shim_launch_phase("planning the capture sizes");
    st = shim_sizes_plan(o, r->api, r->ctx, r->rank, z);
    if (st != SHIM_OK) return st;
  }
  step_config(r, z, &cfg);
  shim_launch_phase("setting up the step");
  if (shim_step_init(s, r->api, r->ctx, &r->dev, &cfg) != 0) {
    fprintf(stderr, "rank %d: step set-up failed: %s\n", r->rank, s->err);
    return SHIM_FAIL;
  }
  if (r->rank == 0) describe(r, s, z);
  st = z->n > 0 ? run_sizes(r, s, z, res) : run_plain(r, s, res);
  if (st != SHIM_OK) return st;
  if (shim_dev_sync(&r->dev) != 0) {
    fprintf(stderr, "rank %d: %s\n", r->rank, r->dev.err);
    return SHIM_ABANDON;
  }
  for (size_t i = 0; i < z->n; i++) shim_graph_destroy(&z->g[i]); /* nothing in flight now */
  res->mismatches = s->mismatches;
  res->checked = s->checked;
  res->status = s->mismatches ? 1 : 0;
  if (s->mismatches)
    fprintf(stderr, "rank %d: %llu wrong element%s in %llu verified ops\n", r->rank,
            (unsigned long long)s->mismatches, s->mismatches == 1 ? "" : "s",
            (unsigned long long)s->checked);
  return SHIM_OK;
}
