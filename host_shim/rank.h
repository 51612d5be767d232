/* SPDX-License-Identifier: Apache-2.0 */
/* rank.h - one rank of the shim: its context (with the host's all-gather, or MOECOMM_STORE for an
 * external launcher), its device, a world all-gather for the results, and what it runs:
 * --print-groups or the MoE step (schedule.h), then the results (results.h). */
#ifndef SHIM_RANK_H_
#define SHIM_RANK_H_

#include "groups.h"
#include "job.h"
#include "lib/device.h"

/* A world all-gather over the plugin's WORLD group, for ranks started by an external launcher
   (no host all-gather).  The first call creates the WORLD communicator. */
typedef struct shim_plugin_xchg {
  const moecomm_api_t *api;
  moecomm_context_t *ctx;
  shim_dev_t *dev;
  int rank, world;
} shim_plugin_xchg_t;

typedef struct shim_rank {
  const shim_job_t *job;
  const moecomm_api_t *api;
  moecomm_context_t *ctx;
  shim_dev_t dev;
  int rank, world;
  shim_exchange_fn_t xfn; /* a world all-gather: the host's, or over the plugin */
  void *xarg;
  int hub; /* 1: xfn is the launcher's host all-gather (cheap, no plugin) */
  shim_plugin_xchg_t px;
} shim_rank_t;

/* Runs rank `rank` of `world` in this process (an external launcher's rank, or a forked one). */
shim_status_t shim_rank_run(const shim_job_t *job, int rank, int world);

/* shim_launch's rank function (arg: the shim_job_t): shim_rank_run's exit status. */
int shim_rank_main(int rank, int world, void *arg);

#endif
