/* SPDX-License-Identifier: Apache-2.0 */
/* registry.c - which backends this build has (registry.h). */
#include "registry.h"

#include <stddef.h>

#include "backends/shm/shm.h"
#if MC_WITH_CUDA
#include "backends/custom/custom.h"
#include "backends/nccl/nccl.h"
#endif

#if MC_WITH_CUDA
static const mc_backend_ops_t *const mc_builtin[MC_BACKEND_COUNT] = {NULL, &mc_shm_ops,
                                                                     &mc_nccl_ops, &mc_custom_ops};
#else
static const mc_backend_ops_t *const mc_builtin[MC_BACKEND_COUNT] = {NULL, &mc_shm_ops, NULL, NULL};
#endif
static const mc_backend_ops_t *mc_override[MC_BACKEND_COUNT];

const mc_backend_ops_t *mc_backend_get(moecomm_backend_t id) {
  if ((unsigned)id >= MC_BACKEND_COUNT) return NULL;
  return mc_override[id] != NULL ? mc_override[id] : mc_builtin[id];
}

const char *mc_backend_name(moecomm_backend_t id) {
  static const char *const names[MC_BACKEND_COUNT] = {"none", "shm", "nccl", "custom"};
  return (unsigned)id < MC_BACKEND_COUNT ? names[id] : "none";
}

int mc_backend_usable(moecomm_backend_t id, const mc_config_t *cfg, int device, mc_err_t *why) {
  const mc_backend_ops_t *ops = mc_backend_get(id);
  mc_err_clear(why);
  if (ops == NULL) {
    mc_err_set(why, MOECOMM_ERR_UNAVAILABLE, "the %s backend is not compiled into this build",
               mc_backend_name(id));
    return 0;
  }
  return ops->probe == NULL || ops->probe(cfg, device, why) == MOECOMM_SUCCESS;
}

void mc_backend_override_for_test(moecomm_backend_t id, const mc_backend_ops_t *ops) {
  if ((unsigned)id < MC_BACKEND_COUNT) mc_override[id] = ops;
}
