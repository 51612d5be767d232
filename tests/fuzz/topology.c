/* SPDX-License-Identifier: Apache-2.0 */
/* topology.c (fuzz target) - mc_topo_init on arbitrary bytes as a moecomm_topology_t, then every
 * group's rank list of every rank.  Besides not crashing (attn_cp = attn_dp = 65536 used to divide
 * by zero): an accepted topology must give groups that hold their rank, stay within the world and
 * agree on the group from every member; a violation aborts (a finding). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../plugin/log.h"
#include "../../plugin/topo.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc;
  (void)argv;
  mc_log_set_level(MC_LOG_NONE);
  return 0;
}

/* Every group of every rank (worlds up to 256, so one input stays fast). */
static void check_groups(const mc_topo_t *t) {
  int32_t *a = malloc(sizeof(int32_t) * (size_t)t->world);
  int32_t *b = malloc(sizeof(int32_t) * (size_t)t->world);
  if (a == NULL || b == NULL) abort();
  for (int k = 0; k < MC_GROUP_KIND_COUNT; k++)
    for (int r = 0; r < t->world; r++) {
      int n = mc_topo_group_ranks(t, (moecomm_group_kind_t)k, r, a), mine = 0;
      if (n < 1 || n > t->world) abort();
      for (int i = 0; i < n; i++) {
        if (a[i] < 0 || a[i] >= t->world) abort();
        mine |= a[i] == r;
      }
      if (!mine) abort();
      /* a member's own view of the group is the same list */
      if (mc_topo_group_ranks(t, (moecomm_group_kind_t)k, a[n - 1], b) != n ||
          memcmp(a, b, sizeof(int32_t) * (size_t)n) != 0)
        abort();
    }
  free(a);
  free(b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  moecomm_topology_t in;
  mc_topo_t t;
  mc_err_t err;
  memset(&in, 0, sizeof(in));
  memcpy(&in, data, size < sizeof(in) ? size : sizeof(in));
  /* any struct_size a host could pass, the real one most of the time */
  if (size < sizeof(in) + 1 || data[sizeof(in)] != 0) in.struct_size = sizeof(in);
  if (mc_topo_init(&in, &t, &err) != MOECOMM_SUCCESS) return 0;
  if (t.attn_tp * t.attn_dp * t.attn_cp != t.tp || t.moe_tp * t.ep * t.moe_dp != t.tp) abort();
  if (t.world <= 256) check_groups(&t);
  return 0;
}
