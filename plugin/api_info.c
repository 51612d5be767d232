/* SPDX-License-Identifier: Apache-2.0 */
/* api_info.c - context-free slots (api_info.h): messages go to the thread's slot. */
#include "api_info.h"

#include <stdlib.h>
#include <string.h>

#include "api_guard.h"
#include "config.h"
#include "topo.h"

moecomm_result_t mc_api_topology_group_ranks(const moecomm_topology_t *topology,
                                             moecomm_group_kind_t kind, int32_t rank,
                                             int32_t *ranks, size_t capacity, size_t *size_p) {
  mc_err_t *err = mc_err_thread();
  moecomm_topology_t t;
  mc_topo_t topo;
  int32_t *all;
  moecomm_result_t r;
  int n;
  mc_err_clear(err);
  if (topology == NULL || size_p == NULL)
    return mc_err_set(err, MOECOMM_ERR_INVALID_ARGUMENT,
                      "topology_group_ranks: topology and size_p must not be NULL");
  if ((int)kind < 0 || (int)kind >= MC_GROUP_KIND_COUNT)
    return mc_err_set(err, MOECOMM_ERR_INVALID_ARGUMENT,
                      "topology_group_ranks: kind %d is not a group kind (0..%d)", (int)kind,
                      MC_GROUP_KIND_COUNT - 1);
  if (topology->struct_size < MOECOMM_STRUCT_SIZE(moecomm_topology_t, moe_dense_tp))
    return mc_err_set(err, MOECOMM_ERR_STRUCT_SIZE,
                      "topology_group_ranks: topology struct_size %zu is smaller than the ABI 1.0 "
                      "layout (%zu bytes)",
                      topology->struct_size, MOECOMM_STRUCT_SIZE(moecomm_topology_t, moe_dense_tp));
  /* the topology's own rank is replaced by the one asked about (validated as it would be) */
  memset(&t, 0, sizeof(t));
  memcpy(&t, topology, topology->struct_size < sizeof(t) ? topology->struct_size : sizeof(t));
  t.struct_size = sizeof(t);
  t.rank = rank;
  if ((r = mc_topo_init(&t, &topo, err)) != MOECOMM_SUCCESS) return r;
  if ((all = malloc(sizeof(int32_t) * (size_t)topo.world)) == NULL)
    return mc_err_set(err, MOECOMM_ERR_NO_MEMORY, "out of host memory");
  n = mc_topo_group_ranks(&topo, kind, rank, all);
  if (ranks == NULL && capacity == 0) {
    *size_p = (size_t)n;
  } else if (ranks == NULL || capacity < (size_t)n) {
    r = mc_err_set(err, MOECOMM_ERR_INVALID_ARGUMENT,
                   "topology_group_ranks: the %s group has %d ranks; ranks holds %zu%s",
                   mc_topo_kind_name(kind), n, capacity, ranks == NULL ? " (and is NULL)" : "");
  } else {
    memcpy(ranks, all, sizeof(int32_t) * (size_t)n);
    *size_p = (size_t)n;
  }
  free(all);
  return r;
}

moecomm_result_t mc_api_config_var(size_t index, moecomm_config_var_t *var_p) {
  static const char *const types[] = {"choice", "int", "bytes", "bool", "text", "host"};
  const mc_config_var_t *v = mc_config_var_at(index);
  moecomm_config_var_t out;
  mc_err_t *err = mc_err_thread();
  if (var_p == NULL)
    return mc_err_set(err, MOECOMM_ERR_INVALID_ARGUMENT, "config_var: var_p is NULL");
  if (v == NULL)
    return mc_err_set(err, MOECOMM_ERR_INVALID_ARGUMENT,
                      "config_var: index %zu is past the last variable", index);
  memset(&out, 0, sizeof(out));
  out.struct_size = sizeof(out);
  out.name = v->name;
  out.type = types[v->type];
  out.default_value = v->def;
  out.range = v->range;
  out.help = v->help;
  return mc_api_write_out(var_p, &out, sizeof(out), MOECOMM_STRUCT_SIZE(moecomm_config_var_t, help),
                          "config_var", err);
}
