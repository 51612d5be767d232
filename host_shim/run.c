/* run.c - the shim's run: plugin, ranks, context, --print-groups or the MoE step, report (run.h).
 *
 * This is the order an engine follows: load and negotiate once (before any CUDA call), start the
 * ranks, create one context per rank with the host's all-gather, look at the groups, run
 * collectives eagerly, capture them into a CUDA graph inside capture_begin/capture_end, replay. */
#include "run.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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

static int host_exchange(void *arg, const void *send, void *recv, size_t bytes) {
  return shim_host_allgather(arg, send, recv, bytes);
}

/* ---- the step ----------------------------------------------------------------------------- */

/* Runs the step in this rank; fills *res.  Returns -1 when a call failed (the process should end
   without waiting for peers: its stream may hold work that waits for a peer); -2 when the step
   could not be set up, before any collective (the context can be destroyed in order, so that
   rank 0's rendezvous keeps serving peers that are still starting). */
static int run_step(const shim_job_t *job, const moecomm_api_t *api, moecomm_context_t *ctx,
                    shim_dev_t *dev, int rank, int world, shim_step_t *s,
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
  if (shim_step_init(s, api, ctx, dev, &cfg) != 0) {
    fprintf(stderr, "rank %d: step set-up failed: %s\n", rank, s->err);
    return -2;
  }
  if (rank == 0) {
    shim_step_describe(s, stdout);
    fflush(stdout);
  }
  /* Iteration 0 creates the communicators: verified, not timed. */
  for (int it = 0; it <= o->iters; it++) {
    if (shim_step_eager(s, it > 0) != 0) {
      fprintf(stderr, "rank %d: %s\n", rank, s->err);
      return -1;
    }
  }
  if (shim_dev_is_gpu(dev)) {
    if (shim_step_capture(s, &graph, &supported) != 0) {
      fprintf(stderr, "rank %d: graph capture failed: %s\n", rank, s->err);
      return -1;
    }
    if (!supported) {
      if (rank == 0)
        printf("graph capture: not supported by this plugin (%s); eager only\n", s->err);
    } else {
      for (int it = 0; it < o->iters; it++) {
        if (shim_step_replay(s, &graph) != 0) {
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
  res->mismatches = s->mismatches;
  res->checked = s->checked;
  res->status = s->mismatches ? 1 : 0;
  if (s->mismatches)
    fprintf(stderr, "rank %d: %llu wrong element%s in %llu verified ops\n", rank,
            (unsigned long long)s->mismatches, s->mismatches == 1 ? "" : "s",
            (unsigned long long)s->checked);
  return 0;
}

/* Rank 0, after every rank reported: the verdict and the timing table. */
static int print_verdict(const shim_job_t *job, const shim_step_t *s,
                         const shim_rank_result_t *all, int world, const shim_dev_t *dev,
                         const moecomm_api_t *api, moecomm_context_t *ctx) {
  int bad = 0;
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
  printf("result: verified bit-exact on all %d rank%s (%llu ops each: %d eager iterations%s)\n",
         world, world == 1 ? "" : "s", (unsigned long long)all[0].checked, job->o.iters + 1,
         all[0].graph ? ", then graph replays" : "");
  {
    shim_report_row_t rows[SHIM_STEP_MAX_OPS];
    int n = shim_step_report_rows(s, rows);
    shim_report_print(stdout, rows, n,
                      shim_dev_is_gpu(dev)
                          ? "rank 0; eager: CUDA events around each op; graph: whole-graph "
                            "replay time / ops"
                          : "rank 0; host clock around each call");
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
  plugin_xchg_t px;
  shim_exchange_fn_t xfn;
  void *xarg;
  void *hub = job->external ? NULL : shim_launch_hub();
  moecomm_result_t r;
  int status = 1, rc;

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
  xfn = hub != NULL ? host_exchange : plugin_exchange;
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
    rc = run_step(job, api, ctx, &dev, rank, world, &step, &mine);
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
    if (rc == -2) {
      status = 1;
    } else if (xfn(xarg, &mine, all, sizeof(mine)) != 0) {
      fprintf(stderr, "rank %d: could not collect every rank's result (a rank failed)\n", rank);
      status = 1;
    } else {
      status = mine.status != 0;
      if (rank == 0 && print_verdict(job, &step, all, world, &dev, api, ctx) != 0) status = 1;
    }
    free(all);
    r = api->context_destroy(ctx);
    ctx = NULL;
    if (r != MOECOMM_SUCCESS) {
      fprintf(stderr, "rank %d: context_destroy failed: %s: %s\n", rank, api->result_string(r),
              api->last_error(NULL));
      status = 1;
    }
    shim_step_fini(&step);
  }
  if (ctx != NULL) {
    r = api->context_destroy(ctx);
    if (r != MOECOMM_SUCCESS) {
      fprintf(stderr, "rank %d: context_destroy failed: %s: %s\n", rank, api->result_string(r),
              api->last_error(NULL));
      status = 1;
    }
  }
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
  if (!o->print_groups)
    printf("     tokens %d x hidden %d %s per rank%s, %d iterations, seed 0x%llx\n", o->tokens,
           o->hidden, shim_dtype_name(o->dtype), o->uneven ? " (uneven)" : "", o->iters,
           (unsigned long long)o->seed);
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
    if (env_rank == 0) print_topology(&job.o, "this process is one rank, from MOECOMM_RANK");
    return rank_main(env_rank, env_world, &job) == 0 ? 0 : 1;
  }
  print_topology(&job.o, "forked here");
  failed = shim_launch(job.o.ranks, rank_main, &job, job.o.timeout_s);
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
