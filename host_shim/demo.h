/* SPDX-License-Identifier: Apache-2.0 */
/* demo.h - the runs of `make demo` (moecomm-shim --demo): on 2 or more GPUs one rank per GPU;
 * else shm ranks on the CPU. */
#ifndef SHIM_DEMO_H_
#define SHIM_DEMO_H_

#include "lib/loader.h"
#include "shim.h"

/* Runs the demo's runs one after the other (each as shim_job_run); the first failure's code. */
shim_status_t shim_demo_run(const shim_opts_t *o, const shim_plugin_t *plugin);

#endif
