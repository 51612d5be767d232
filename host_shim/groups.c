/* SPDX-License-Identifier: Apache-2.0 */
/* groups.c - group stats and --print-groups (groups.h). */
#include "groups.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/report.h"

static const char *const kind_names[SHIM_GROUP_KINDS] = {
    "WORLD", "TP", "PP", "ATTN_TP", "ATTN_CP", "MOE_EP", "MOE_TP", "MOE_DP", "MOE_CP"};

static const char *backend_name(int id) {
  switch (id) {
    case MOECOMM_BACKEND_SHM: return "shm";
    case MOECOMM_BACKEND_NCCL: return "nccl";
    case MOECOMM_BACKEND_CUSTOM: return "custom";
    default: return "none";
  }
}

/* A rank's record for one kind: size (-1: group_get/group_stats failed), backend, ranks. */
static int32_t *rec(int32_t *all, int world, int r, int kind) {
  return all + ((size_t)r * SHIM_GROUP_KINDS + (size_t)kind) * (size_t)(2 + world);
}

static int same_list(const int32_t *a, const int32_t *b) {
  return a[0] == b[0] && memcmp(a + 2, b + 2, (size_t)a[0] * sizeof(int32_t)) == 0;
}

/* Checks that the lists of `kind` form a partition in which members agree. */
static int check_kind(int32_t *all, int world, int kind, char *err, size_t errlen) {
  for (int r = 0; r < world; r++) {
    int32_t *a = rec(all, world, r, kind);
    int has_self = 0;
    if (a[0] < 1 || a[0] > world) {
      snprintf(err, errlen, "%s: rank %d could not report its group", kind_names[kind], r);
      return -1;
    }
    for (int i = 0; i < a[0]; i++) {
      int m = a[2 + i];
      if (m < 0 || m >= world) {
        snprintf(err, errlen, "%s: rank %d's group names rank %d outside the world of %d",
                 kind_names[kind], r, m, world);
        return -1;
      }
      if (m == r) has_self = 1;
      if (!same_list(a, rec(all, world, m, kind))) {
        snprintf(err, errlen, "%s: ranks %d and %d disagree on their group", kind_names[kind], r,
                 m);
        return -1;
      }
    }
    if (!has_self) {
      snprintf(err, errlen, "%s: rank %d's group does not contain rank %d", kind_names[kind], r, r);
      return -1;
    }
  }
  return 0;
}

/* One line for `kind`: its distinct groups and their backends (the lists are consistent). */
static void print_kind(int32_t *all, int world, int kind) {
  char line[8192] = "", one[512], backends[64] = "";
  for (int r = 0; r < world; r++) {
    int32_t *a = rec(all, world, r, kind);
    int first = 1;
    /* A group is printed by its first member in rank order. */
    for (int q = 0; q < r && first; q++)
      if (same_list(a, rec(all, world, q, kind))) first = 0;
    if (!first) continue;
    shim_format_ranks(a + 2, a[0], one, sizeof(one));
    shim_append(line, sizeof(line), " %s", one);
    if (strstr(backends, backend_name(a[1])) == NULL)
      shim_append(backends, sizeof(backends), "%s%s", backends[0] ? "," : "", backend_name(a[1]));
  }
  printf("  %-8s%s    backend %s\n", kind_names[kind], line, backends);
}

int shim_groups_print(const moecomm_api_t *api, moecomm_context_t *ctx, int rank, int world,
                      shim_exchange_fn_t xfn, void *xarg, char *err, size_t errlen) {
  size_t per_rank = (size_t)SHIM_GROUP_KINDS * (size_t)(2 + world) * sizeof(int32_t);
  int32_t *mine = calloc(1, per_rank);
  int32_t *all = calloc((size_t)world, per_rank);
  int rc = 0;
  err[0] = '\0';
  if (mine == NULL || all == NULL) {
    free(mine);
    free(all);
    snprintf(err, errlen, "out of host memory for %d ranks' group lists", world);
    return -1; /* peers then fail their exchange: this rank is gone */
  }
  for (int k = 0; k < SHIM_GROUP_KINDS; k++) {
    int32_t *a = mine + (size_t)k * (size_t)(2 + world);
    moecomm_group_stats_t st;
    moecomm_result_t r = shim_group_stats(api, ctx, k, &st);
    if (r != MOECOMM_SUCCESS || st.size < 1 || st.size > world || st.ranks == NULL) {
      if (rc == 0)
        snprintf(err, errlen, "group %s: %s: %s", kind_names[k], api->result_string(r),
                 r != MOECOMM_SUCCESS ? api->last_error(ctx) : "inconsistent group_stats");
      rc = -1;
      a[0] = -1;
      continue;
    }
    a[0] = st.size;
    a[1] = st.backend;
    memcpy(a + 2, st.ranks, (size_t)st.size * sizeof(int32_t));
  }
  if (xfn(xarg, mine, all, per_rank) != 0) {
    if (rc == 0) snprintf(err, errlen, "could not gather the ranks' group lists");
    rc = -1;
    goto out;
  }
  if (rank == 0) {
    int bad = 0;
    printf("groups (world %d; each list is one group, in group order):\n", world);
    for (int k = 0; k < SHIM_GROUP_KINDS; k++) {
      char why[256];
      if (check_kind(all, world, k, why, sizeof(why)) != 0) {
        printf("  %-8s INCONSISTENT: %s\n", kind_names[k], why);
        if (!bad) snprintf(err, errlen, "%s", why);
        bad = 1;
        continue;
      }
      print_kind(all, world, k);
    }
    fflush(stdout);
    if (bad) rc = -1;
  }
out:
  free(mine);
  free(all);
  return rc;
}
