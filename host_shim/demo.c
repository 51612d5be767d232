/* SPDX-License-Identifier: Apache-2.0 */
/* demo.c - the runs of `make demo` (demo.h). */
#include "demo.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "job.h"
#include "lib/data.h"
#include "lib/device.h"
#include "lib/launch.h"

#define SHIM_DEMO_MAX_RUNS 4

/* Attention context-parallel 2 over the MoE's data-parallel 1: the MoE input is gathered over
   MOE_CP (MOE_FULL), and uneven token counts exercise its padding. */
static void with_attn_cp2(shim_opts_t *run) {
  run->attn_cp = 2;
  run->moe_dp = 1;
  run->uneven = 1;
}

/* The demo's runs into runs/what; returns how many.  Without GPUs, on a machine with fewer
   CPUs than the 4 shm ranks, a last run with 2 ranks: 4 ranks take turns on the CPUs, so their
   times are mostly waiting for a CPU; 2 ranks show the shm transport itself. */
static int demo_plan(const shim_opts_t *in, int gpus, int cpus, shim_opts_t *runs,
                     const char **what) {
  for (int i = 0; i < SHIM_DEMO_MAX_RUNS; i++) {
    runs[i] = *in;
    runs[i].demo = 0;
    runs[i].print_groups = 0;
    runs[i].pp = runs[i].moe_dp = runs[i].attn_cp = runs[i].attn_dp = runs[i].moe_dense_tp = 0;
  }
  if (gpus >= 2) {
    runs[0].ranks = runs[0].tp = runs[0].ep = gpus;
    what[0] = "one rank per GPU, tp = ep = world";
    if (gpus % 2 != 0) return 1;
    runs[1] = runs[0];
    with_attn_cp2(&runs[1]);
    what[1] =
        "attention context-parallel 2: MoE input gathered over MOE_CP (MOE_FULL), "
        "uneven token counts";
    return 2;
  }
  runs[0].ranks = runs[0].tp = 4;
  runs[0].ep = 2;
  runs[0].device = MOECOMM_DEVICE_CPU;
  what[0] = gpus == 1 ? "4 shm ranks (one GPU is not enough for the GPU demo)"
                      : "4 shm ranks (no usable GPU), moe_tp 2";
  runs[1] = runs[0];
  runs[1].ep = 4;
  with_attn_cp2(&runs[1]);
  what[1] =
      "4 shm ranks, attention context-parallel 2: MoE input gathered over MOE_CP "
      "(MOE_FULL), uneven token counts";
  runs[2] = runs[0];
  runs[2].ep = 0;
  runs[2].moe_dense_tp = 1;
  what[2] = "4 shm ranks, dense MLP data-parallel (moe_dense_tp 1: SCATTERED)";
  if (cpus >= runs[0].ranks) return 3;
  runs[3] = runs[0];
  runs[3].ranks = runs[3].tp = runs[3].ep = 2;
  what[3] =
      "2 shm ranks, for comparison: this machine has fewer CPUs than 4 ranks, which take "
      "turns on them, so the times above are mostly waiting for a CPU";
  return 4;
}

/* The command line that repeats run o. */
static void print_command(const shim_opts_t *o) {
  printf("    moecomm-shim --ranks %d --tp %d", o->ranks, o->tp);
  if (o->ep) printf(" --ep %d", o->ep);
  if (o->moe_dp) printf(" --moe-dp %d", o->moe_dp);
  if (o->attn_cp) printf(" --attn-cp %d", o->attn_cp);
  if (o->moe_dense_tp) printf(" --moe-dense-tp %d", o->moe_dense_tp);
  if (o->uneven) printf(" --uneven");
  if (o->device == MOECOMM_DEVICE_CPU) printf(" --device cpu");
  printf(" --dtype %s --tokens %d --hidden %d --iters %d\n", shim_dtype_name(o->dtype), o->tokens,
         o->hidden, o->iters);
}

shim_status_t shim_demo_run(const shim_opts_t *in, const shim_plugin_t *plugin) {
  shim_opts_t runs[SHIM_DEMO_MAX_RUNS];
  const char *what[SHIM_DEMO_MAX_RUNS];
  shim_status_t rc = SHIM_OK;
  int n, er, ew;
  if (shim_env_rank(&er, &ew) != 1) {
    fprintf(stderr,
            "moecomm-shim: --demo forks its own ranks; unset MOECOMM_RANK and "
            "MOECOMM_WORLD_SIZE\n");
    return SHIM_USAGE;
  }
  n = demo_plan(in, in->device == MOECOMM_DEVICE_CPU ? 0 : shim_gpu_count(),
                (int)sysconf(_SC_NPROCESSORS_ONLN), runs, what);
  for (int i = 0; i < n; i++) {
    shim_status_t one;
    printf("\n=== demo %d of %d: %s\n", i + 1, n, what[i]);
    print_command(&runs[i]);
    fflush(stdout);
    one = shim_job_run(&runs[i], plugin);
    if (one != SHIM_OK && rc == SHIM_OK) rc = one;
  }
  printf("\n=== demo: %s\n", rc == SHIM_OK ? "every run verified" : "FAILED");
  return rc;
}
