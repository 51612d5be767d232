/* SPDX-License-Identifier: Apache-2.0 */
/* planner.c (fuzz target) - mc_plan_capture_sizes on arbitrary topologies, flags, candidates and
 * capacities.  Besides not crashing: on success every size is a candidate, a multiple of the
 * multiple reported, in the candidates' order, and no more than the capacity were written; on
 * failure the outputs are untouched. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../plugin/context.h"
#include "../../plugin/log.h"
#include "../../plugin/planner.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc;
  (void)argv;
  mc_log_set_level(MC_LOG_NONE);
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static mc_context_t ctx; /* the planner reads the topology only */
  moecomm_topology_t in;
  moecomm_plan_params_t p;
  int32_t cand[64], sizes[65];
  size_t ncand, cap, num = 7777;
  int32_t mult = -7;
  mc_err_t err;
  if (size < sizeof(in) + 2) return 0;
  memset(&in, 0, sizeof(in));
  memcpy(&in, data, sizeof(in));
  in.struct_size = sizeof(in);
  if (mc_topo_init(&in, &ctx.topo, &err) != MOECOMM_SUCCESS) return 0;
  data += sizeof(in);
  size -= sizeof(in);
  memset(&p, 0, sizeof(p));
  p.struct_size = sizeof(p);
  p.flags = data[0];
  cap = data[1] % 66;
  data += 2;
  size -= 2;
  ncand = size / 4 > 64 ? 64 : size / 4;
  memcpy(cand, data, ncand * 4);
  p.candidates = ncand > 0 ? cand : NULL;
  p.num_candidates = ncand;
  for (int i = 0; i < 65; i++) sizes[i] = -1;
  if (mc_plan_capture_sizes(&ctx, &p, cap ? sizes : NULL, cap, &num, &mult, &err) !=
      MOECOMM_SUCCESS) {
    if (num != 7777 || mult != -7 || sizes[0] != -1) abort();
    return 0;
  }
  if (mult < 1 || (cap > 0 && num > cap) || sizes[cap < 65 ? cap : 64] != -1) abort();
  for (size_t i = 0; cap > 0 && i < num; i++) {
    int found = ncand == 0;
    if (sizes[i] <= 0 || sizes[i] % mult != 0) abort();
    for (size_t j = 0; j < ncand && !found; j++) found = cand[j] == sizes[i];
    if (!found) abort();
  }
  return 0;
}
