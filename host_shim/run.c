/* run.c - the shim's run: plugin, ranks, context, --print-groups or the MoE step, report (run.h).
 *
 * This is the order an engine follows: load and negotiate once (before any CUDA call), start the
 * ranks, create one context per rank with the host's all-gather, look at the groups, run
 * collectives eagerly, capture them into a CUDA graph inside capture_begin/capture_end, replay;
 * with --capture-sizes, one graph per planned batch size, replayed in turn. */
#include "run.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "device.h"
#include "groups.h"
#include "launch.h"
#include "loader.h"
#include "memory.h"
#include "moe_step.h"
#include "report.h"

#define SHIM_MIN_ABI MOECOMM_ABI_VERSION_MAKE(1, 0)
#define SHIM_MAX_ABI MOECOMM_ABI_VERSION

typedef struct shim_job {
  shim_opts_t o;               /* resolved: ranks and tp set */
  const shim_plugin_t *plugin;
  int external;                /* one rank per process from MOECOMM_RANK / MOECOMM_WORLD_SIZE */
  int *usage;                  /* process-shared: a rank found the options unusable (exit 2) */
} shim_job_t;

/* What every rank tells rank 0 at the end (fixed layout: it crosses processes). */
typedef struct shim_rank_result {
  int32_t status;    /* 0 verified, 1 mismatches, 2 a call failed */
  int32_t graph;     /* 1 graph replays ran */
  uint64_t mismatches;
  uint64_t checked;  /* ops verified */
  shim_mem_t mem;    /* what the plugin holds after the step */
} shim_rank_result_t;

void shim_opts_default(shim_opts_t *o) {
  memset(o, 0, sizeof(*o));
  o->tokens = 64;
  o->hidden = 1024;
  o->dtype = MOECOMM_BFLOAT16;
  o->iters = 20;
  o->device = MOECOMM_DEVICE_AUTO;
  o->timeout_s = 300;
  o->seed = 0x5eedu;
  o->abi_max = SHIM_MAX_ABI;
}

static int eff(int v) { return v > 0 ? v : 1; }

static void print_version(const char *what, uint32_t v) {
  printf("%s %u.%u", what, MOECOMM_ABI_VERSION_GET_MAJOR(v), MOECOMM_ABI_VERSION_GET_MINOR(v));
}

/* ---- exchanges ---------------------------------------------------------------------------- */

/* A world all-gather over the plugin's WORLD group, for ranks started by an external launcher
   (no host all-gather).  The first call creates the WORLD communicator. */
typedef struct plugin_xchg {
  const moecomm_api_t *api;
  moecomm_context_t *ctx;
  shim_dev_t *dev;
  int rank, world;
} plugin_xchg_t;

static int plugin_exchange(void *arg, const void *send, void *recv, size_t bytes) {
  plugin_xchg_t *x = arg;
  size_t words = (bytes + 3) / 4, wb = words * 4, total = (size_t)x->world * wb;
  moecomm_group_t *g = NULL;
  void *ds = NULL, *dr = NULL, *hs = NULL, *hr = NULL;
  moecomm_result_t r;
  int rc = 1;
  if (shim_dev_alloc(x->dev, wb, &ds) != 0 || shim_dev_alloc(x->dev, total, &dr) != 0 ||
      shim_host_alloc(x->dev, wb, &hs) != 0 || shim_host_alloc(x->dev, total, &hr) != 0) {
    fprintf(stderr, "rank %d: exchange buffers: %s\n", x->rank, x->dev->err);
    goto out;
  }
  memset(hs, 0, wb);
  memcpy(hs, send, bytes);
  r = x->api->group_get(x->ctx, MOECOMM_GROUP_WORLD, &g);
  if (r == MOECOMM_SUCCESS) {
    if (shim_dev_put(x->dev, ds, hs, wb) != 0) {
      fprintf(stderr, "rank %d: exchange: %s\n", x->rank, x->dev->err);
      goto out;
    }
    r = x->api->all_gather(g, ds, dr, words, MOECOMM_INT32, x->dev->stream);
  }
  if (r != MOECOMM_SUCCESS) {
    fprintf(stderr, "rank %d: all_gather on WORLD (result exchange) failed: %s: %s\n", x->rank,
            x->api->result_string(r), x->api->last_error(x->ctx));
    goto out;
  }
  if (shim_dev_get(x->dev, hr, dr, total) != 0 || shim_dev_sync(x->dev) != 0) {
    fprintf(stderr, "rank %d: exchange: %s\n", x->rank, x->dev->err);
    goto out;
  }
  for (int q = 0; q < x->world; q++)
    memcpy((char *)recv + (size_t)q * bytes, (char *)hr + (size_t)q * wb, bytes);
  rc = 0;
out:
  shim_host_free(x->dev, hr);
  shim_host_free(x->dev, hs);
  shim_dev_free(x->dev, dr);
  shim_dev_free(x->dev, ds);
  return rc;
}

/* ---- capture sizes ------------------------------------------------------------------------ */

/* --capture-sizes on this rank: the sizes and what became of each. */
typedef struct shim_sizes {
  int32_t *t;          /* token counts in the planner's order; n 0: no --capture-sizes */
  size_t n;
  int32_t multiple;    /* plan_capture_sizes' multiple */
  size_t largest;      /* index of the largest */
  int graphs;          /* 1: each size replayed its own CUDA graph; 0: eager re-runs */
  shim_graph_t *g;     /* per size */
  shim_samples_t *us;  /* per size: whole-graph replay times on this rank */
  uint64_t *bad;       /* per size: wrong elements on this rank (rank 0, after the exchange:
                          on every rank) */
} shim_sizes_t;

static void sizes_free(shim_sizes_t *z) {
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

/* "8,16,64", cut with "..." when it does not fit. */
static void format_sizes(const int32_t *t, size_t n, char *buf, size_t size) {
  size_t used = 0;
  buf[0] = '\0';
  for (size_t i = 0; i < n; i++) {
    int w = snprintf(buf + used, size - used, "%s%d", i ? "," : "", (int)t[i]);
    if (w < 0 || (size_t)w >= size - used) {
      if (size >= 4) memcpy(buf + size - 4, "...", 4);
      return;
    }
    used += (size_t)w;
  }
}

/* What --capture-sizes asked for: "plan" or the list. */
static void describe_sizes(const shim_opts_t *o, char *buf, size_t size) {
  if (o->capture_plan) snprintf(buf, size, "plan");
  else format_sizes(o->capture_sizes, (size_t)o->n_capture, buf, size);
}

/* The sizes of --capture-sizes from plan_capture_sizes: the default candidates and no flags
   (the topology decides) for `plan`, else the list, every entry of which the planner must keep.
   Returns 0 (z filled), 2 when the planner refuses (rank 0 prints its sentence: every rank
   refuses alike) or 1 when a call failed. */
static int sizes_plan(const shim_opts_t *o, const moecomm_api_t *api, moecomm_context_t *ctx,
                      int rank, shim_sizes_t *z) {
  moecomm_plan_params_t pp;
  moecomm_result_t r;
  size_t n = 0, given = o->capture_plan ? 0 : (size_t)o->n_capture;
  int32_t mult = 0, *t = NULL, *dropped = NULL, largest;
  char list[256];
  memset(z, 0, sizeof(*z));
  describe_sizes(o, list, sizeof(list));
  if (!MOECOMM_API_HAS(api, plan_capture_sizes)) {
    fprintf(stderr, "rank %d: --capture-sizes needs plan_capture_sizes, which the plugin's table "
                    "lacks\n", rank);
    return 1;
  }
  memset(&pp, 0, sizeof(pp));
  pp.struct_size = sizeof(pp);
  pp.candidates = given > 0 ? o->capture_sizes : NULL;
  pp.num_candidates = given;
  r = api->plan_capture_sizes(ctx, &pp, NULL, 0, &n, &mult);
  if (r == MOECOMM_SUCCESS) {
    t = malloc((n ? n : 1) * sizeof(*t));
    if (t == NULL) {
      fprintf(stderr, "rank %d: out of host memory for %zu capture sizes\n", rank, n);
      return 1;
    }
    r = api->plan_capture_sizes(ctx, &pp, t, n, &n, &mult);
  }
  if (r == MOECOMM_ERR_CONFIG) {
    if (rank == 0)
      fprintf(stderr, "moecomm-shim: --capture-sizes %s: plan_capture_sizes keeps none for this "
                      "topology: %s\n", list, api->last_error(ctx));
    free(t);
    return 2;
  }
  if (r != MOECOMM_SUCCESS || n == 0) {
    fprintf(stderr, "rank %d: plan_capture_sizes failed: %s: %s\n", rank,
            api->result_string(r), r != MOECOMM_SUCCESS ? api->last_error(ctx) : "no sizes");
    free(t);
    return 1;
  }
  if (n < given) {
    char drops[256];
    size_t nd = 0, n2 = 0;
    int32_t m2 = 0;
    dropped = malloc(given * sizeof(*dropped));
    if (dropped == NULL) {
      fprintf(stderr, "rank %d: out of host memory\n", rank);
      free(t);
      return 1;
    }
    for (size_t i = 0; i < given; i++) {
      int kept = 0;
      for (size_t j = 0; j < n && !kept; j++) kept = t[j] == o->capture_sizes[i];
      if (!kept) dropped[nd++] = o->capture_sizes[i];
    }
    format_sizes(dropped, nd, drops, sizeof(drops));
    /* The planner's own sentence: ask about the dropped sizes alone. */
    pp.candidates = dropped;
    pp.num_candidates = nd;
    r = nd > 0 ? api->plan_capture_sizes(ctx, &pp, NULL, 0, &n2, &m2) : MOECOMM_SUCCESS;
    if (rank == 0)
      fprintf(stderr, "moecomm-shim: --capture-sizes %s: plan_capture_sizes drops %s for this "
                      "topology (sizes must be multiples of %d): %s\n", list, drops, (int)mult,
              r == MOECOMM_ERR_CONFIG ? api->last_error(ctx) : "(the planner gave no reason)");
    free(dropped);
    free(t);
    return 2;
  }
  z->t = t;
  z->n = n;
  z->multiple = mult;
  for (size_t i = 1; i < n; i++)
    if (t[i] > t[z->largest]) z->largest = i;
  largest = t[z->largest];
  if ((long long)largest * o->hidden > (1LL << 28)) {
    if (rank == 0)
      fprintf(stderr, "moecomm-shim: --capture-sizes %s: size %d x --hidden %d is more than "
                      "2^28 elements per rank\n", list, (int)largest, o->hidden);
    sizes_free(z);
    return 2;
  }
  z->g = calloc(n, sizeof(*z->g));
  z->us = calloc(n, sizeof(*z->us));
  z->bad = calloc(n, sizeof(*z->bad));
  if (z->g == NULL || z->us == NULL || z->bad == NULL) {
    fprintf(stderr, "rank %d: out of host memory for %zu capture sizes\n", rank, n);
    sizes_free(z);
    return 1;
  }
  return 0;
}

/* --capture-sizes: per size one verified eager run, then its own capture scope and graph (all
   kept); timed eager iterations at the largest size; then o->iters rounds over the sizes, each
   replaying that size's graph with new inputs, verified.  Without graphs (a CPU context, or a
   plugin that does not capture) capture is the scope around an eager run and a replay is an
   eager run.  0, or -1 when a call failed (message printed). */
static int run_sizes(const shim_opts_t *o, shim_step_t *s, shim_dev_t *dev, int rank,
                     shim_sizes_t *z) {
  int supported = 1;
  uint64_t before;
  z->graphs = shim_dev_is_gpu(dev);
  for (size_t i = 0; i < z->n; i++) {
    before = s->mismatches;
    if (shim_step_set_tokens(s, z->t[i]) != 0 || shim_step_eager(s, 0) != 0) goto fail;
    if (supported) {
      if (shim_step_capture(s, &z->g[i], &supported) != 0) goto fail;
      if (!supported && i > 0) {
        fprintf(stderr, "rank %d: capture of size %d: the plugin refused after capturing smaller "
                        "sizes: %s\n", rank, (int)z->t[i], s->err);
        return -1;
      }
      if (!supported) {
        if (rank == 0)
          printf("graph capture: not supported by this plugin (%s); eager re-runs only\n",
                 s->err);
        z->graphs = 0;
      }
    }
    z->bad[i] += s->mismatches - before;
  }
  before = s->mismatches;
  if (shim_step_set_tokens(s, z->t[z->largest]) != 0) goto fail;
  for (int it = 0; it < o->iters; it++)
    if (shim_step_eager(s, 1) != 0) goto fail;
  z->bad[z->largest] += s->mismatches - before;
  for (int it = 0; it < o->iters; it++) {
    for (size_t i = 0; i < z->n; i++) {
      double us = 0;
      before = s->mismatches;
      if (shim_step_set_tokens(s, z->t[i]) != 0) goto fail;
      if (z->graphs) {
        if (shim_step_replay(s, &z->g[i], i == z->largest, &us) != 0) goto fail;
        if (shim_samples_add(&z->us[i], us) != 0) {
          fprintf(stderr, "rank %d: out of host memory for timings\n", rank);
          return -1;
        }
      } else if (shim_step_eager(s, 0) != 0) {
        goto fail;
      }
      z->bad[i] += s->mismatches - before;
    }
  }
  /* The timing table describes the largest size. */
  if (shim_step_set_tokens(s, z->t[z->largest]) != 0) goto fail;
  return 0;
fail:
  fprintf(stderr, "rank %d: capture size %d: %s\n", rank, s->cfg.tokens, s->err);
  return -1;
}

/* ---- the step ----------------------------------------------------------------------------- */

/* Runs the step in this rank (s: zeroed by the caller, so that shim_step_fini is safe on it
   whatever happens here); fills *res (and *z with --capture-sizes).  Returns -1 when a call
   failed (the process should end without waiting for peers: its stream may hold work that waits
   for a peer); -2 when the step could not be set up, before any collective (the context can be
   destroyed in order, so that rank 0's rendezvous keeps serving peers that are still starting);
   -3 likewise when the planner refused --capture-sizes (exit status 2). */
static int run_step(const shim_job_t *job, const moecomm_api_t *api, moecomm_context_t *ctx,
                    shim_dev_t *dev, int rank, int world, shim_step_t *s, shim_sizes_t *z,
                    shim_rank_result_t *res) {
  const shim_opts_t *o = &job->o;
  shim_step_cfg_t cfg;
  shim_graph_t graph;
  int supported = 0;
  memset(&graph, 0, sizeof(graph));
  memset(&cfg, 0, sizeof(cfg));
  cfg.seed = o->seed;
  cfg.dtype = o->dtype;
  cfg.tokens = o->tokens;
  cfg.hidden = o->hidden;
  cfg.rank = rank;
  cfg.world = world;
  cfg.gather_moe = eff(o->attn_cp) > eff(o->moe_dp);
  cfg.modes = job->plugin->version >= MOECOMM_ABI_VERSION_MAKE(1, 1);
  cfg.uneven = o->uneven;
  cfg.tp = o->tp;
  cfg.ep = o->ep;
  cfg.moe_dp = o->moe_dp;
  cfg.attn_cp = o->attn_cp;
  cfg.attn_dp = o->attn_dp;
  if (o->capture_plan || o->n_capture > 0) {
    int rc = sizes_plan(o, api, ctx, rank, z);
    if (rc != 0) return rc == 2 ? -3 : -2;
    cfg.sizes = z->t;
    cfg.n_sizes = z->n;
    cfg.tokens = z->t[z->largest]; /* the step starts, and is described, at the largest */
  }
  if (shim_step_init(s, api, ctx, dev, &cfg) != 0) {
    fprintf(stderr, "rank %d: step set-up failed: %s\n", rank, s->err);
    return -2;
  }
  if (rank == 0) {
    if (z->n > 0) {
      char list[1024];
      format_sizes(z->t, z->n, list, sizeof(list));
      printf("capture sizes: %zu %s (tokens per %s; multiple %d): %s\n", z->n,
             o->capture_plan ? "from plan_capture_sizes" : "given, kept by plan_capture_sizes",
             s->modes ? "attention group" : "rank", (int)z->multiple, list);
      printf("  (one graph each, in its own capture scope; the step below is shown at %d)\n",
             (int)z->t[z->largest]);
    }
    shim_step_describe(s, stdout);
    fflush(stdout);
  }
  if (z->n > 0) {
    if (run_sizes(o, s, dev, rank, z) != 0) return -1;
    res->graph = z->graphs;
  }
  /* Iteration 0 creates the communicators: verified, not timed. */
  for (int it = 0; z->n == 0 && it <= o->iters; it++) {
    if (shim_step_eager(s, it > 0) != 0) {
      fprintf(stderr, "rank %d: %s\n", rank, s->err);
      return -1;
    }
  }
  if (z->n == 0 && shim_dev_is_gpu(dev)) {
    if (shim_step_capture(s, &graph, &supported) != 0) {
      fprintf(stderr, "rank %d: graph capture failed: %s\n", rank, s->err);
      return -1;
    }
    if (!supported) {
      if (rank == 0)
        printf("graph capture: not supported by this plugin (%s); eager only\n", s->err);
    } else {
      for (int it = 0; it < o->iters; it++) {
        if (shim_step_replay(s, &graph, 1, NULL) != 0) {
          fprintf(stderr, "rank %d: %s\n", rank, s->err);
          return -1;
        }
      }
      res->graph = 1;
      shim_graph_destroy(&graph);
    }
  }
  if (shim_dev_sync(dev) != 0) {
    fprintf(stderr, "rank %d: %s\n", rank, dev->err);
    return -1;
  }
  for (size_t i = 0; i < z->n; i++) shim_graph_destroy(&z->g[i]); /* nothing in flight now */
  res->mismatches = s->mismatches;
  res->checked = s->checked;
  res->status = s->mismatches ? 1 : 0;
  if (s->mismatches)
    fprintf(stderr, "rank %d: %llu wrong element%s in %llu verified ops\n", rank,
            (unsigned long long)s->mismatches, s->mismatches == 1 ? "" : "s",
            (unsigned long long)s->checked);
  return 0;
}

/* Rank 0, with --capture-sizes: one line per size (z->bad: over every rank). */
static void print_sizes(const shim_opts_t *o, const shim_sizes_t *z, const shim_dev_t *dev) {
  for (size_t i = 0; i < z->n; i++) {
    printf("  size %d: %s, %d %s ", (int)z->t[i],
           z->graphs               ? "graph captured"
           : shim_dev_is_gpu(dev) ? "not captured (the plugin does not capture)"
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

/* Rank 0, after every rank reported: the verdict and the timing table. */
static int print_verdict(const shim_job_t *job, const shim_step_t *s, const shim_sizes_t *z,
                         const shim_rank_result_t *all, int world, const shim_dev_t *dev,
                         const moecomm_api_t *api, moecomm_context_t *ctx) {
  int bad = 0;
  if (z->n > 0) print_sizes(&job->o, z, dev);
  for (int r = 0; r < world; r++) {
    if (all[r].status == 0) continue;
    bad++;
    printf("rank %d: FAILED: %llu wrong element%s\n", r, (unsigned long long)all[r].mismatches,
           all[r].mismatches == 1 ? "" : "s");
  }
  if (bad) {
    printf("result: FAILED on %d of %d ranks\n", bad, world);
    return 1;
  }
  if (z->n > 0)
    printf("result: verified bit-exact on all %d rank%s (%llu ops each: %zu capture sizes, each "
           "eager once and captured; %d timed eager iterations at %d; %d rounds of %s over "
           "every size)\n",
           world, world == 1 ? "" : "s", (unsigned long long)all[0].checked, z->n, job->o.iters,
           (int)z->t[z->largest], job->o.iters, all[0].graph ? "graph replays" : "eager re-runs");
  else
    printf("result: verified bit-exact on all %d rank%s (%llu ops each: %d eager iterations%s)\n",
           world, world == 1 ? "" : "s", (unsigned long long)all[0].checked, job->o.iters + 1,
           all[0].graph ? ", then graph replays" : "");
  {
    shim_report_row_t rows[SHIM_STEP_MAX_OPS];
    char clock[192];
    int n = shim_step_report_rows(s, rows);
    snprintf(clock, sizeof(clock), "%s%s",
             shim_dev_is_gpu(dev) ? "rank 0; eager: CUDA events around each op; graph: "
                                    "whole-graph replay time / ops"
                                  : "rank 0; host clock around each call",
             z->n > 0 ? "; at the largest capture size" : "");
    shim_report_print(stdout, rows, n, clock);
  }
  {
    shim_mem_t *mems = calloc((size_t)world, sizeof(*mems));
    if (mems != NULL) {
      for (int r = 0; r < world; r++) mems[r] = all[r].mem;
      shim_mem_print(stdout, api, ctx, mems, world);
      free(mems);
    }
  }
  return 0;
}

/* Every rank's per-size mismatch counts, summed into z->bad (same sizes on every rank). */
static int sizes_gather(shim_sizes_t *z, int world, shim_exchange_fn_t xfn, void *xarg) {
  uint64_t *all;
  if (z->n == 0) return 0;
  all = calloc((size_t)world * z->n, sizeof(*all));
  if (all == NULL) {
    fprintf(stderr, "out of host memory for the per-size results\n");
    fflush(NULL);
    _exit(1); /* peers see this rank gone */
  }
  if (xfn(xarg, z->bad, all, z->n * sizeof(*all)) != 0) {
    free(all);
    return -1;
  }
  for (size_t i = 0; i < z->n; i++) {
    z->bad[i] = 0;
    for (int r = 0; r < world; r++) z->bad[i] += all[(size_t)r * z->n + i];
  }
  free(all);
  return 0;
}

/* ---- one rank ----------------------------------------------------------------------------- */

static int rank_main(int rank, int world, void *arg) {
  const shim_job_t *job = arg;
  const shim_opts_t *o = &job->o;
  const moecomm_api_t *api = job->plugin->api;
  moecomm_topology_t topo;
  moecomm_context_params_t params;
  moecomm_context_info_t info;
  moecomm_context_t *ctx = NULL;
  shim_dev_t dev;
  shim_step_t step;
  shim_sizes_t sizes;
  plugin_xchg_t px;
  shim_exchange_fn_t xfn;
  void *xarg;
  void *hub = job->external ? NULL : shim_launch_hub();
  moecomm_result_t r;
  int status = 1, rc;

  memset(&sizes, 0, sizeof(sizes));
  memset(&step, 0, sizeof(step)); /* shim_step_fini is safe on it on every path */
  memset(&topo, 0, sizeof(topo));
  topo.struct_size = sizeof(topo);
  topo.world_size = world;
  topo.rank = rank;
  topo.tp = o->tp;
  topo.pp = o->pp;
  topo.ep = o->ep;
  topo.moe_dp = o->moe_dp;
  topo.attn_cp = o->attn_cp;
  topo.attn_dp = o->attn_dp;
  topo.moe_dense_tp = o->moe_dense_tp;
  memset(&params, 0, sizeof(params));
  params.struct_size = sizeof(params);
  params.topology = &topo;
  params.host_allgather = hub != NULL ? shim_host_allgather : NULL; /* NULL: MOECOMM_STORE */
  params.host_user = hub;
  params.device = o->device;

  r = api->context_create(&params, &ctx);
  if (r != MOECOMM_SUCCESS) {
    fprintf(stderr, "rank %d: context_create failed: %s: %s\n", rank, api->result_string(r),
            api->last_error(NULL));
    return 1;
  }
  memset(&info, 0, sizeof(info));
  info.struct_size = sizeof(info);
  r = api->context_info(ctx, &info);
  if (r != MOECOMM_SUCCESS) {
    fprintf(stderr, "rank %d: context_info failed: %s: %s\n", rank, api->result_string(r),
            api->last_error(ctx));
    api->context_destroy(ctx);
    return 1;
  }
  if (rank == 0) {
    if (info.device == MOECOMM_DEVICE_CPU)
      printf("backend: shm (no CUDA device)\n");
    else
      printf("device: cuda:%d on rank 0 (local rank %d of %d, %d host%s)\n", (int)info.device,
             (int)info.local_rank, (int)info.local_size, (int)info.num_hosts,
             info.num_hosts == 1 ? "" : "s");
    fflush(stdout);
  }
  if (shim_dev_open(&dev, info.device) != 0) {
    fprintf(stderr, "rank %d: %s\n", rank, dev.err);
    api->context_destroy(ctx);
    return 1;
  }
  px.api = api;
  px.ctx = ctx;
  px.dev = &dev;
  px.rank = rank;
  px.world = world;
  xfn = hub != NULL ? shim_host_allgather : plugin_exchange;
  xarg = hub != NULL ? hub : (void *)&px;

  if (o->print_groups) {
    char err[512];
    status = shim_groups_print(api, ctx, rank, world, xfn, xarg, err, sizeof(err)) == 0 ? 0 : 1;
    if (status != 0) fprintf(stderr, "rank %d: --print-groups: %s\n", rank, err);
  } else {
    shim_rank_result_t mine, *all = calloc((size_t)world, sizeof(*all));
    memset(&mine, 0, sizeof(mine));
    if (all == NULL) {
      fprintf(stderr, "rank %d: out of host memory\n", rank);
      _exit(1); /* peers see this rank gone */
    }
    rc = run_step(job, api, ctx, &dev, rank, world, &step, &sizes, &mine);
    if (rc == -1) {
      /* A failed call can leave work on the stream that waits for a peer: do not synchronise,
         free or destroy; end the process and let the OS reclaim everything. */
      fflush(NULL);
      _exit(1);
    }
    /* The exchange is also the barrier after which no peer touches our buffers.  A set-up
       failure (nothing issued; the step freed itself) skips it: the peers failed alike. */
    if (rc == 0 && shim_mem_collect(api, ctx, &mine.mem) != 0)
      fprintf(stderr, "rank %d: group_stats failed: %s\n", rank, api->last_error(ctx));
    if (rc == -2 || rc == -3) {
      status = rc == -3 ? 2 : 1;
      if (rc == -3 && job->usage != NULL) __atomic_store_n(job->usage, 1, __ATOMIC_RELAXED);
    } else if (xfn(xarg, &mine, all, sizeof(mine)) != 0 ||
               sizes_gather(&sizes, world, xfn, xarg) != 0) {
      fprintf(stderr, "rank %d: could not collect every rank's result (a rank failed)\n", rank);
      status = 1;
    } else {
      status = mine.status != 0;
      if (rank == 0 && print_verdict(job, &step, &sizes, all, world, &dev, api, ctx) != 0)
        status = 1;
    }
    free(all);
    sizes_free(&sizes);
  }
  r = api->context_destroy(ctx);
  if (r != MOECOMM_SUCCESS) {
    fprintf(stderr, "rank %d: context_destroy failed: %s: %s\n", rank, api->result_string(r),
            api->last_error(NULL));
    status = 1;
  }
  shim_step_fini(&step); /* the step's buffers go after the context that used them */
  shim_dev_close(&dev);
  fflush(NULL);
  return status;
}

/* ---- runs --------------------------------------------------------------------------------- */

static void print_topology(const shim_opts_t *o, const char *how) {
  int tp = o->tp, attn_tp = tp / (eff(o->attn_dp) * eff(o->attn_cp));
  int moe_tp = tp / (eff(o->ep) * eff(o->moe_dp));
  printf("run: %d rank%s (%s); tp %d pp %d ep %d moe_dp %d attn_cp %d attn_dp %d moe_dense_tp %d"
         " -> attn_tp %d moe_tp %d\n",
         o->ranks, o->ranks == 1 ? "" : "s", how, tp, eff(o->pp), eff(o->ep), eff(o->moe_dp),
         eff(o->attn_cp), eff(o->attn_dp), o->moe_dense_tp > 0 ? o->moe_dense_tp : tp,
         attn_tp > 0 ? attn_tp : 0, moe_tp > 0 ? moe_tp : 0);
  if (!o->print_groups) {
    char what[256 + 16];
    if (o->capture_plan || o->n_capture > 0) {
      char list[256];
      describe_sizes(o, list, sizeof(list));
      snprintf(what, sizeof(what), "capture sizes %s", list);
    } else {
      snprintf(what, sizeof(what), "tokens %d", o->tokens);
    }
    printf("     %s x hidden %d %s per rank%s, %d iterations, seed 0x%llx\n", what, o->hidden,
           shim_dtype_name(o->dtype), o->uneven ? " (uneven)" : "", o->iters,
           (unsigned long long)o->seed);
  }
  fflush(stdout);
}

static int run_once(const shim_opts_t *in, const shim_plugin_t *plugin) {
  shim_job_t job;
  int env_rank = 0, env_world = 0, env, failed;
  memset(&job, 0, sizeof(job));
  job.o = *in;
  job.plugin = plugin;
  env = shim_env_rank(&env_rank, &env_world);
  if (env < 0) return 2;
  if (env == 0) {
    if (in->ranks > 0 && in->ranks != env_world) {
      fprintf(stderr, "moecomm-shim: --ranks %d conflicts with MOECOMM_WORLD_SIZE=%d\n",
              in->ranks, env_world);
      return 2;
    }
    job.external = 1;
    job.o.ranks = env_world;
  } else if (job.o.ranks == 0) {
    int gpus = in->device == MOECOMM_DEVICE_CPU ? 0 : shim_gpu_count();
    job.o.ranks = gpus > 0 ? gpus : (in->tp > 0 ? in->tp : 2) * eff(in->pp);
  }
  if (job.o.tp == 0) job.o.tp = job.o.ranks / eff(job.o.pp) > 0 ? job.o.ranks / eff(job.o.pp) : 1;

  if (job.external) {
    int st;
    if (env_rank == 0) print_topology(&job.o, "this process is one rank, from MOECOMM_RANK");
    st = rank_main(env_rank, env_world, &job);
    return st == 0 || st == 2 ? st : 1;
  }
  print_topology(&job.o, "forked here");
  /* One shared word, so that a rank's "the options are unusable" comes back as exit status 2;
     without it (mmap failed) such a run exits 1. */
  job.usage = mmap(NULL, sizeof(int), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (job.usage == MAP_FAILED) job.usage = NULL;
  else *job.usage = 0;
  failed = shim_launch(job.o.ranks, rank_main, &job, job.o.timeout_s);
  if (job.usage != NULL) {
    int usage = __atomic_load_n(job.usage, __ATOMIC_RELAXED);
    munmap(job.usage, sizeof(int));
    if (failed && usage) return 2; /* rank 0 said why */
  }
  if (failed) {
    printf("moecomm-shim: FAILED: %d of %d ranks failed\n", failed, job.o.ranks);
    fflush(stdout);
    return 1;
  }
  return 0;
}

static int run_demo(const shim_opts_t *in, const shim_plugin_t *plugin) {
  shim_opts_t runs[3];
  const char *what[3];
  int n = 0, gpus, rc = 0;
  int er, ew;
  if (shim_env_rank(&er, &ew) != 1) {
    fprintf(stderr, "moecomm-shim: --demo forks its own ranks; unset MOECOMM_RANK and "
                    "MOECOMM_WORLD_SIZE\n");
    return 2;
  }
  gpus = in->device == MOECOMM_DEVICE_CPU ? 0 : shim_gpu_count();
  for (int i = 0; i < 3; i++) {
    runs[i] = *in;
    runs[i].demo = 0;
    runs[i].print_groups = 0;
    runs[i].pp = runs[i].moe_dp = runs[i].attn_cp = runs[i].attn_dp = runs[i].moe_dense_tp = 0;
  }
  if (gpus >= 2) {
    runs[0].ranks = runs[0].tp = runs[0].ep = gpus;
    what[0] = "one rank per GPU, tp = ep = world";
    n = 1;
    if (gpus % 2 == 0) {
      runs[1] = runs[0];
      runs[1].attn_cp = 2;
      runs[1].moe_dp = 1;
      runs[1].uneven = 1;
      what[1] = "attention context-parallel 2: MoE input gathered over MOE_CP (MOE_FULL), "
                "uneven token counts";
      n = 2;
    }
  } else {
    runs[0].ranks = runs[0].tp = 4;
    runs[0].ep = 2;
    runs[0].device = MOECOMM_DEVICE_CPU;
    what[0] = gpus == 1 ? "4 shm ranks (one GPU is not enough for the GPU demo)"
                        : "4 shm ranks (no usable GPU), moe_tp 2";
    runs[1] = runs[0];
    runs[1].ep = 4;
    runs[1].moe_dp = 1;
    runs[1].attn_cp = 2;
    runs[1].uneven = 1;
    what[1] = "4 shm ranks, attention context-parallel 2: MoE input gathered over MOE_CP "
              "(MOE_FULL), uneven token counts";
    runs[2] = runs[0];
    runs[2].ep = 0;
    runs[2].moe_dense_tp = 1;
    what[2] = "4 shm ranks, dense MLP data-parallel (moe_dense_tp 1: SCATTERED)";
    n = 3;
  }
  for (int i = 0; i < n; i++) {
    const shim_opts_t *o = &runs[i];
    int one;
    printf("\n=== demo %d of %d: %s\n    moecomm-shim --ranks %d --tp %d", i + 1, n, what[i],
           o->ranks, o->tp);
    if (o->ep) printf(" --ep %d", o->ep);
    if (o->moe_dp) printf(" --moe-dp %d", o->moe_dp);
    if (o->attn_cp) printf(" --attn-cp %d", o->attn_cp);
    if (o->moe_dense_tp) printf(" --moe-dense-tp %d", o->moe_dense_tp);
    if (o->uneven) printf(" --uneven");
    if (o->device == MOECOMM_DEVICE_CPU) printf(" --device cpu");
    printf(" --dtype %s --tokens %d --hidden %d --iters %d\n", shim_dtype_name(o->dtype),
           o->tokens, o->hidden, o->iters);
    fflush(stdout);
    one = run_once(o, plugin);
    if (one != 0 && rc == 0) rc = one;
  }
  printf("\n=== demo: %s\n", rc == 0 ? "every run verified" : "FAILED");
  return rc;
}

int shim_run(const shim_opts_t *o) {
  shim_plugin_t plugin;
  char err[4096];
  shim_load_result_t lr;
  int rc;
  /* Before any CUDA call: the ranks are forked later and must find CUDA untouched. */
  lr = shim_plugin_load(SHIM_MIN_ABI, o->abi_max, &plugin, err, sizeof(err));
  if (lr != SHIM_LOAD_OK) {
    if (lr == SHIM_LOAD_DISABLED)
      fprintf(stderr, "moecomm-shim: MOECOMM_PLUGIN=none: the shim has nothing to run\n");
    else if (lr == SHIM_LOAD_NOT_FOUND)
      fprintf(stderr, "moecomm-shim: no plugin found: %s\n  (set MOECOMM_PLUGIN to a path or "
                      "MOECOMM_PLUGIN_DIR to its directory)\n", err);
    else
      fprintf(stderr, "moecomm-shim: cannot load the plugin: %s\n", err);
    return 1;
  }
  printf("plugin: %s\n        name %s, version %s, ", plugin.path,
         plugin.api->plugin_name ? plugin.api->plugin_name : "?",
         plugin.api->plugin_version ? plugin.api->plugin_version : "?");
  print_version("ABI", plugin.version);
  printf(" negotiated (host speaks %u.%u-%u.%u)\n", MOECOMM_ABI_VERSION_GET_MAJOR(SHIM_MIN_ABI),
         MOECOMM_ABI_VERSION_GET_MINOR(SHIM_MIN_ABI), MOECOMM_ABI_VERSION_GET_MAJOR(o->abi_max),
         MOECOMM_ABI_VERSION_GET_MINOR(o->abi_max));
  fflush(stdout);
  rc = o->demo ? run_demo(o, &plugin) : run_once(o, &plugin);
  shim_plugin_unload(&plugin);
  return rc;
}
