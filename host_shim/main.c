/* SPDX-License-Identifier: Apache-2.0 */
/* main.c - moecomm-shim: options, the run, the exit status (shim.h says how errors travel). */
#include <stdio.h>
#include <unistd.h>

#include "job.h"
#include "options.h"

int main(int argc, char **argv) {
  shim_opts_t o;
  shim_status_t st = shim_opts_parse(argc, argv, &o);
  if (st == SHIM_OK) st = shim_run(&o);
  if (st == SHIM_ABANDON) {
    /* This process was a rank of an external launcher and left work in flight that waits for a
       peer: no clean-up (no context destroy, no CUDA teardown at exit). */
    fflush(NULL);
    _exit(1);
  }
  shim_opts_free(&o);
  return shim_exit_status(st);
}
