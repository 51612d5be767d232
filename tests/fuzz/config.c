/* SPDX-License-Identifier: Apache-2.0 */
/* config.c (fuzz target) - mc_config_load on an arbitrary environment: the input's lines are the
 * environment (NAME=VALUE, MOECOMM_ names most of the time).  Besides not crashing: a load either
 * succeeds with every value inside its declared range or fails with MOECOMM_ERR_CONFIG and a
 * message naming a variable; nothing else. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../plugin/config.h"
#include "../../plugin/log.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

extern char **environ;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc;
  (void)argv;
  mc_log_set_level(MC_LOG_NONE);
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char *text = malloc(size + 1), *vars[64], **saved = environ;
  int n = 0;
  mc_config_t cfg;
  mc_err_t err;
  moecomm_result_t r;
  if (text == NULL) abort();
  memcpy(text, data, size);
  text[size] = '\0';
  for (char *p = text; *p != '\0' && n < 63;) {
    char *nl = strchr(p, '\n');
    if (nl != NULL) *nl = '\0';
    vars[n++] = p;
    if (nl == NULL) break;
    p = nl + 1;
  }
  vars[n] = NULL;
  environ = vars;
  r = mc_config_load(&cfg, &err);
  environ = saved;
  if (r != MOECOMM_SUCCESS && (r != MOECOMM_ERR_CONFIG || strstr(err.msg, "MOECOMM_") == NULL))
    abort();
  if (r == MOECOMM_SUCCESS &&
      (cfg.timeout_ms < 1 || cfg.timeout_ms > 86400000 || cfg.custom.max_blocks < 1 ||
       cfg.custom.max_blocks > 128 || cfg.nccl.lean_ctas < 1 || cfg.nccl.lean_ctas > 64 ||
       cfg.custom_max_bytes < 4096 || cfg.ep_max_tokens < 1 || cfg.backend < 0 || cfg.backend > 3))
    abort();
  free(text);
  mc_log_set_level(MC_LOG_NONE);
  return 0;
}
