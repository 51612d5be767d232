/* SPDX-License-Identifier: Apache-2.0 */
/* registry.h - the backends compiled into this build, by moecomm_backend_t. */
#ifndef MC_REGISTRY_H_
#define MC_REGISTRY_H_

#include "backend.h"

/* The backend with this id; NULL when it is not compiled in (or id is NONE or out of range). */
const mc_backend_ops_t *mc_backend_get(moecomm_backend_t id);

/* "shm", "nccl", "custom"; "none" for NONE and ids out of range, whether compiled in or not. */
const char *mc_backend_name(moecomm_backend_t id);

/* Whether backend id can run on `device` here: compiled in, and its probe agrees.  why gets the
   reason when it cannot. */
int mc_backend_usable(moecomm_backend_t id, const mc_config_t *cfg, int device, mc_err_t *why);

/* White-box tests only: serve `id` with ops instead of the built-in backend (NULL restores it). */
void mc_backend_override_for_test(moecomm_backend_t id, const mc_backend_ops_t *ops);

#endif
