/* SPDX-License-Identifier: Apache-2.0 */
/* backend.c - names shared by every backend (backend.h). */
#include "backend.h"

const char *mc_coll_name(mc_coll_kind_t kind) {
  static const char *const names[MC_COLL_KIND_COUNT] = {
      "all_reduce", "all_gather", "reduce_scatter", "broadcast",         "send",
      "recv",       "all_to_all", "all_to_all_v",   "all_reduce_rmsnorm"};
  return (unsigned)kind < MC_COLL_KIND_COUNT ? names[kind] : "?";
}
