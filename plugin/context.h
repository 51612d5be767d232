/* SPDX-License-Identifier: Apache-2.0 */
/* context.h - the objects behind the ABI handles: the context and its groups.
 *
 * A context owns one group per kind and one communicator (comm.h) per distinct rank list (per
 * group when MOECOMM_SHARE_COMMS=0).  A communicator's backend state is created by the first call
 * routed to it (lazy.c), never at context creation.  DESIGN.md explains the layers. */
#ifndef MC_CONTEXT_H_
#define MC_CONTEXT_H_

#include <stdatomic.h>
#include <stdint.h>

#include "bootstrap.h"
#include "comm.h"
#include "config.h"
#include "ep_layout.h"
#include "error.h"
#include "topo.h"

typedef struct moecomm_context mc_context_t;
typedef struct moecomm_group mc_group_t;

struct moecomm_group {
  mc_context_t *ctx;
  int kind;                          /* moecomm_group_kind_t */
  mc_comm_t *comm;                   /* shared with groups of equal rank list */
  moecomm_backend_t backend;         /* the policy's choice at context creation (route.c) */
  uint64_t ops;                      /* calls issued */
  uint64_t captured_ops;             /* calls issued inside the current capture scope */
  uint64_t served[MC_BACKEND_COUNT]; /* calls served, per backend (NONE: size-1 local copies) */
  /* expert parallelism (moe.c; the MOE_EP group) */
  int moe_configured;            /* moe_configure called */
  mc_ep_layout_t moe_layout;     /* its shape; buffers sized from it at the first dispatch */
  moecomm_backend_t moe_backend; /* who serves dispatch/combine once created (NONE before) */
  uint64_t moe_dispatches;       /* dispatch handles handed out */
  int moe_pending;               /* a dispatch awaits its combine */
  int32_t moe_pending_tokens;    /* its token count */
};

struct moecomm_context {
  int handle_slot;     /* the host's handle names this slot of the handle table (handle.h)... */
  uint32_t handle_gen; /* ...at this generation */
  _Atomic int busy;    /* a thread is inside an ABI call on this context (api_guard.c) */
  mc_err_t err;        /* last failure on this context (last_error) */
  mc_config_t cfg;
  mc_topo_t topo;
  int device;           /* CUDA ordinal or MOECOMM_DEVICE_CPU */
  uint32_t abi_version; /* negotiated for the process */
  mc_boot_t boot;       /* world layout, store connection, exchange endpoint */

  mc_group_t groups[MC_GROUP_KIND_COUNT];
  mc_comm_t *comms[MC_GROUP_KIND_COUNT];
  int num_comms;

  int capturing; /* inside capture_begin .. capture_end */
};

/* Collective over the world: environment, topology, device, bootstrap, groups and communicator
   objects (no backend resources).  *ctx_p written on success; on failure err says why. */
moecomm_result_t mc_context_create(const moecomm_context_params_t *params, mc_context_t **ctx_p,
                                   mc_err_t *err);

/* Local: frees everything (backend state in reverse order of creation). */
void mc_context_destroy(mc_context_t *ctx);

/* The context's world as an exchange set; ranks needs room for topo.world entries. */
void mc_context_world_set(mc_context_t *ctx, int32_t *ranks, mc_xchg_set_t *set_p);

#endif
