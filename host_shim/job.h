/* SPDX-License-Identifier: Apache-2.0 */
/* job.h - a run of the shim: the plugin, the ranks (forked here, or this process as one rank of
 * an external launcher), the launcher's timeout scaled to the work, and the verdict of the run
 * as a whole. */
#ifndef SHIM_JOB_H_
#define SHIM_JOB_H_

#include "lib/loader.h"
#include "shim.h"

typedef struct shim_job {
  shim_opts_t o; /* resolved: ranks and tp set */
  const shim_plugin_t *plugin;
  int external; /* one rank per process from MOECOMM_RANK / MOECOMM_WORLD_SIZE */
  int *usage;   /* process-shared: a rank found the options unusable (SHIM_USAGE) */
} shim_job_t;

/* Loads the plugin and runs what o asks for: --demo (demo.c), or one run. */
shim_status_t shim_run(const shim_opts_t *o);

/* One run of o with a loaded plugin: resolves the ranks, prints the run line, starts the ranks
   (or runs this process as one rank) and says how it ended. */
shim_status_t shim_job_run(const shim_opts_t *o, const shim_plugin_t *plugin);

/* The launcher's default timeout for a run of o (ranks and tp resolved) on `cpus` CPUs: the
   seconds the work should take at worst on a small machine, with a generous margin. */
int shim_job_timeout(const shim_opts_t *o, int cpus);

#endif
