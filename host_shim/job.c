/* SPDX-License-Identifier: Apache-2.0 */
/* job.c - the plugin, the ranks, the timeout and the run's verdict (job.h). */
#include "job.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "demo.h"
#include "lib/data.h"
#include "lib/device.h"
#include "lib/launch.h"
#include "options.h"
#include "progress.h"
#include "rank.h"

#define SHIM_MIN_ABI MOECOMM_ABI_VERSION_MAKE(1, 0)

/* Token rows the step runs per rank over the whole run, each row one hidden vector per op:
   plain, warm-up plus timed iterations (and as many graph replays); --capture-sizes, each size
   eager and captured, timed iterations at the largest, then every size each round. */
static double run_rows(const shim_opts_t *o) {
  double sum = 0, largest = 0;
  int n = o->n_capture;
  if (!o->capture_plan && n == 0) return (double)o->tokens * (2.0 * o->iters + 2);
  if (o->capture_plan) {
    /* plan: at most the default candidates (abi/moecomm.h), 1..512, which sum to 10515 */
    sum = 10515;
    largest = 512;
  }
  for (int i = 0; i < n; i++) {
    sum += o->capture_sizes[i];
    if (o->capture_sizes[i] > largest) largest = o->capture_sizes[i];
  }
  return 2 * sum + largest * o->iters + sum * o->iters;
}

int shim_job_timeout(const shim_opts_t *o, int cpus) {
  /* Calibrated on the project's 2-core CPU machine while other jobs loaded it (load 5-15): the
     README's `--ranks 4 --tp 4 --moe-dense-tp 1 --capture-sizes plan` took 51 s where this model
     says 50 s, and `--ranks 64` 29 s where it says 115 s: at worst about 5 ns per element a rank
     makes or checks (every op checks its group's contributions, up to tp of them), with the
     ranks taking turns on the CPUs.  Then two minutes for the start (every rank's rendezvous,
     the communicators) plus four times the estimate, capped at a day (--timeout's limit). */
  const double ns_per_element = 5.0, ops = 4;
  double ranks_per_cpu = (double)o->ranks / (cpus > 0 && cpus < o->ranks ? cpus : o->ranks);
  double elements = run_rows(o) * o->hidden * ops * (1 + shim_eff(o->tp));
  double seconds = elements * ns_per_element * 1e-9 * ranks_per_cpu;
  double total = 120 + 0.5 * o->ranks + 4 * seconds;
  return total > 86400 ? 86400 : (int)total;
}

static void print_topology(const shim_opts_t *o, const char *how) {
  int tp = o->tp, attn_tp = tp / (shim_eff(o->attn_dp) * shim_eff(o->attn_cp));
  int moe_tp = tp / (shim_eff(o->ep) * shim_eff(o->moe_dp));
  printf(
      "run: %d rank%s (%s); tp %d pp %d ep %d moe_dp %d attn_cp %d attn_dp %d moe_dense_tp %d"
      " -> attn_tp %d moe_tp %d\n",
      o->ranks, o->ranks == 1 ? "" : "s", how, tp, shim_eff(o->pp), shim_eff(o->ep),
      shim_eff(o->moe_dp), shim_eff(o->attn_cp), shim_eff(o->attn_dp),
      o->moe_dense_tp > 0 ? o->moe_dense_tp : tp, attn_tp > 0 ? attn_tp : 0,
      moe_tp > 0 ? moe_tp : 0);
  if (!o->print_groups) {
    char what[256 + 16];
    if (o->capture_plan || o->n_capture > 0) {
      char list[256];
      shim_opts_sizes_text(o, list, sizeof(list));
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

/* The ranks and tp the run uses: MOECOMM_RANK / MOECOMM_WORLD_SIZE (external), else --ranks,
   else one per GPU, else tp * pp. */
static shim_status_t resolve_ranks(const shim_opts_t *in, shim_job_t *job, int *env_rank_p) {
  int env_world = 0, env = shim_env_rank(env_rank_p, &env_world);
  if (env < 0) return SHIM_USAGE; /* shim_env_rank said why */
  if (env == 0) {
    if (in->ranks > 0 && in->ranks != env_world) {
      fprintf(stderr, "moecomm-shim: --ranks %d conflicts with MOECOMM_WORLD_SIZE=%d\n", in->ranks,
              env_world);
      return SHIM_USAGE;
    }
    job->external = 1;
    job->o.ranks = env_world;
  } else if (job->o.ranks == 0) {
    int gpus = in->device == MOECOMM_DEVICE_CPU ? 0 : shim_gpu_count();
    job->o.ranks = gpus > 0 ? gpus : (in->tp > 0 ? in->tp : 2) * shim_eff(in->pp);
  }
  if (job->o.tp == 0)
    job->o.tp = job->o.ranks / shim_eff(job->o.pp) > 0 ? job->o.ranks / shim_eff(job->o.pp) : 1;
  return SHIM_OK;
}

/* Forks the ranks under the launcher's timeout and says how the run ended. */
static shim_status_t launch_ranks(shim_job_t *job) {
  long cpus = sysconf(_SC_NPROCESSORS_ONLN);
  int scaled = job->o.timeout_s == 0, failed, timed_out = 0, usage = 0;
  shim_launch_cfg_t cfg;
  char hint[160];
  if (scaled) job->o.timeout_s = shim_job_timeout(&job->o, cpus > 0 ? (int)cpus : 1);
  printf("     timeout %d s (%s)\n", job->o.timeout_s,
         scaled ? "scaled to the work; --timeout S sets it" : "--timeout");
  fflush(stdout);
  snprintf(hint, sizeof(hint),
           "moecomm-shim: the run took longer than its %d s timeout (%s); "
           "raise the limit with --timeout S",
           job->o.timeout_s, scaled ? "scaled to the work asked" : "--timeout");
  memset(&cfg, 0, sizeof(cfg));
  cfg.timeout_s = job->o.timeout_s;
  cfg.on_timeout = hint;
  /* One shared word, so that a rank's "the options are unusable" comes back as SHIM_USAGE;
     without it (mmap failed) such a run ends as SHIM_FAIL. */
  job->usage = mmap(NULL, sizeof(int), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (job->usage == MAP_FAILED)
    job->usage = NULL;
  else
    *job->usage = 0;
  failed = shim_launch_ex(job->o.ranks, shim_rank_main, job, &cfg, &timed_out);
  if (job->usage != NULL) {
    usage = __atomic_load_n(job->usage, __ATOMIC_RELAXED);
    munmap(job->usage, sizeof(int));
    job->usage = NULL;
  }
  if (failed && usage) return SHIM_USAGE; /* rank 0 said why */
  if (failed) {
    printf("moecomm-shim: FAILED: %d of %d ranks failed%s\n", failed, job->o.ranks,
           timed_out ? " (timed out: see the phases above)" : "");
    fflush(stdout);
    return SHIM_FAIL;
  }
  return SHIM_OK;
}

shim_status_t shim_job_run(const shim_opts_t *in, const shim_plugin_t *plugin) {
  shim_job_t job;
  int env_rank = 0;
  shim_status_t st;
  memset(&job, 0, sizeof(job));
  job.o = *in;
  job.plugin = plugin;
  st = resolve_ranks(in, &job, &env_rank);
  if (st != SHIM_OK) return st;
  if (job.external) {
    if (env_rank == 0) print_topology(&job.o, "this process is one rank, from MOECOMM_RANK");
    st = shim_rank_run(&job, env_rank, job.o.ranks);
    return st == SHIM_OK || st == SHIM_USAGE || st == SHIM_ABANDON ? st : SHIM_FAIL;
  }
  print_topology(&job.o, "forked here");
  return launch_ranks(&job);
}

/* Loads and negotiates, before any CUDA call: the ranks are forked later and must find CUDA
   untouched.  Prints why on failure. */
static shim_status_t load_plugin(const shim_opts_t *o, shim_plugin_t *plugin) {
  char err[4096];
  shim_load_result_t lr = shim_plugin_load(SHIM_MIN_ABI, o->abi_max, plugin, err, sizeof(err));
  if (lr == SHIM_LOAD_OK) return SHIM_OK;
  if (lr == SHIM_LOAD_DISABLED)
    fprintf(stderr, "moecomm-shim: MOECOMM_PLUGIN=none: the shim has nothing to run\n");
  else if (lr == SHIM_LOAD_NOT_FOUND)
    fprintf(stderr,
            "moecomm-shim: no plugin found: %s\n  (set MOECOMM_PLUGIN to a path or "
            "MOECOMM_PLUGIN_DIR to its directory)\n",
            err);
  else
    fprintf(stderr, "moecomm-shim: cannot load the plugin: %s\n", err);
  return SHIM_FAIL;
}

/* A choice list "a|b" as `a`, `b` (a bare '|' would split a markdown cell); anything else as is. */
static void shim_job_env_range(const moecomm_config_var_t *v, char *out, size_t size) {
  size_t w = 0;
  if (strcmp(v->type, "choice") != 0) {
    snprintf(out, size, "%s", v->range);
    return;
  }
  for (const char *p = v->range; *p != '\0' && w + 8 < size; p++) {
    if (p == v->range) out[w++] = '`';
    if (*p == '|') {
      memcpy(out + w, "`, `", 4);
      w += 4;
    } else {
      out[w++] = *p;
    }
  }
  snprintf(out + w, size - w, "`");
}

/* --env: the plugin's configuration table (ABI 1.2's config_var), one README row per variable:
   the same rows tests/core/config_table.c checks README.md against. */
static shim_status_t shim_job_env(const shim_plugin_t *plugin) {
  const moecomm_api_t *api = plugin->api;
  if (!MOECOMM_API_HAS(api, config_var)) {
    fprintf(stderr,
            "shim: this plugin (ABI %u.%u) cannot list its configuration (config_var is "
            "ABI 1.2)\n",
            MOECOMM_ABI_VERSION_GET_MAJOR(plugin->version),
            MOECOMM_ABI_VERSION_GET_MINOR(plugin->version));
    return SHIM_FAIL;
  }
  printf("| variable | values | default | meaning |\n|---|---|---|---|\n");
  for (size_t i = 0;; i++) {
    moecomm_config_var_t v;
    memset(&v, 0, sizeof(v));
    v.struct_size = sizeof(v);
    char range[512];
    if (api->config_var(i, &v) != MOECOMM_SUCCESS) break;
    if (strcmp(v.type, "host") == 0) continue; /* the loader's: listed in README's prose */
    shim_job_env_range(&v, range, sizeof(range));
    printf("| `%s` | %s | %s | %s |\n", v.name, range,
           v.default_value[0] ? v.default_value : "(unset)", v.help);
  }
  return SHIM_OK;
}

shim_status_t shim_run(const shim_opts_t *o) {
  shim_plugin_t plugin;
  shim_status_t st;
  shim_progress_start(o->progress_after_s);
  st = load_plugin(o, &plugin);
  if (st != SHIM_OK) return st;
  printf(
      "plugin: %s\n        name %s, version %s, ABI %u.%u negotiated (host speaks %u.%u-%u.%u)\n",
      plugin.path, plugin.api->plugin_name ? plugin.api->plugin_name : "?",
      plugin.api->plugin_version ? plugin.api->plugin_version : "?",
      MOECOMM_ABI_VERSION_GET_MAJOR(plugin.version), MOECOMM_ABI_VERSION_GET_MINOR(plugin.version),
      MOECOMM_ABI_VERSION_GET_MAJOR(SHIM_MIN_ABI), MOECOMM_ABI_VERSION_GET_MINOR(SHIM_MIN_ABI),
      MOECOMM_ABI_VERSION_GET_MAJOR(o->abi_max), MOECOMM_ABI_VERSION_GET_MINOR(o->abi_max));
  fflush(stdout);
  st = o->env    ? shim_job_env(&plugin)
       : o->demo ? shim_demo_run(o, &plugin)
                 : shim_job_run(o, &plugin);
  /* A rank of an external launcher that abandoned work in flight: the plugin stays loaded. */
  if (st != SHIM_ABANDON) shim_plugin_unload(&plugin);
  return st;
}
