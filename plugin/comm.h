/* SPDX-License-Identifier: Apache-2.0 */
/* comm.h - the communicator object: one distinct rank list of a context, shared by every group
 * with that list (groups are in context.h).
 *
 * This is what a backend sees of the world: the members, a key that names the communicator the
 * same way on every member, the context's settings and error slot, the exchange endpoint, the
 * policy's hints, and one slot of state per backend, created lazily by the first call routed to
 * that backend (collective.c).  It includes nothing above it: backends build on this header. */
#ifndef MC_COMM_H_
#define MC_COMM_H_

#include <stdint.h>

#include "agree.h"
#include "config.h"
#include "error.h"
#include "exchange.h"
#include "world.h"

/* One slot per moecomm_backend_t value (NONE, SHM, NCCL, CUSTOM); the registry (registry.c) has
   one entry per slot. */
#define MC_BACKEND_COUNT 4

/* Per-backend state of one communicator. */
typedef struct mc_comm_backend {
  void *priv;              /* the backend's object; NULL until comm_init succeeded */
  int created;             /* comm_init succeeded */
  int declined;            /* comm_init returned MC_DEFER: this backend cannot serve the comm */
  moecomm_result_t failed; /* comm_init failed with this code: later calls fail fast */
  uint64_t device_bytes;   /* device memory this backend holds for the comm */
  uint64_t host_bytes;     /* host and shared memory this backend holds for the comm */
  void *moe;               /* the backend's expert-parallel state; NULL until moe_init */
} mc_comm_backend_t;

/* What the routing policy decided about a communicator at context creation (route.c), for the
   backends that act on it. */
typedef struct mc_comm_hints {
  int nccl_lean; /* only MoE groups use it: NCCL with fewer channels (less memory) */
} mc_comm_hints_t;

typedef struct mc_comm {
  /* identity: the same on every member */
  int id;          /* index in the context's list (local numbering) */
  int size;        /* ranks in the communicator */
  int rank;        /* this rank's index in ranks */
  int32_t *ranks;  /* world ranks, member order */
  char key[96];    /* "c0.4" (+ ".TP" when not shared): names its store keys and segments */
  char label[128]; /* for messages: "TP/MOE_EP (ranks 0,4)" (every group kind that uses it) */
  int same_host;   /* every member is on this rank's host */

  /* the context it belongs to (not owned) */
  const mc_config_t *cfg;
  mc_err_t *err;           /* the context's error slot */
  int device;              /* CUDA ordinal, or MOECOMM_DEVICE_CPU */
  const mc_world_t *world; /* placement and liveness of every rank */
  const mc_xchg_t *xchg;   /* the exchange endpoint */
  const int *capturing;    /* the context's capture scope is open */

  uint64_t seq; /* exchanges done on this comm; advances identically on members */
  mc_comm_hints_t hints;
  mc_comm_backend_t be[MC_BACKEND_COUNT]; /* indexed by moecomm_backend_t */
} mc_comm_t;

/* A communicator for `ranks` (n members, this rank among them), with key and label; NULL when
   out of memory.  The context fills the pointers to itself. */
mc_comm_t *mc_comm_new(const int32_t *ranks, int n, int my_rank, const char *key,
                       const char *label);
void mc_comm_free(mc_comm_t *comm);

/* All-gather of `bytes` from every member (recv: size * bytes, member order), through the store.
   `what` names it in errors; a timeout names the members that never arrived. */
moecomm_result_t mc_comm_exchange(mc_comm_t *comm, const char *what, const void *send, void *recv,
                                  size_t bytes);

/* The agreement primitive (agree.h) over the comm's members; messages go to comm->err. */
moecomm_result_t mc_comm_agree(mc_comm_t *comm, const char *what, moecomm_result_t mine,
                               const char *mine_msg, const void *payload, void *all_payload,
                               size_t payload_bytes, int *bad_p);

#endif
