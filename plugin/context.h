/* context.h - the objects behind the ABI handles: context, group, communicator.
 *
 * A context owns one group per kind and one communicator per distinct rank list (per group when
 * MOECOMM_SHARE_COMMS=0).  A communicator's backend state is created by the first collective that
 * needs it (comm.c), never at context creation. */
#ifndef MC_CONTEXT_H_
#define MC_CONTEXT_H_

#include <stdint.h>

#include "config.h"
#include "error.h"
#include "store_client.h"
#include "topo.h"

typedef struct moecomm_context mc_context_t;
typedef struct moecomm_group mc_group_t;

/* Per-backend state of one communicator. */
typedef struct mc_comm_backend {
  void *priv;            /* the backend's object; NULL until comm_init succeeded */
  int created;           /* comm_init succeeded */
  int declined;          /* comm_init returned MC_DEFER: calls go to the backend's fallback */
  moecomm_result_t failed; /* comm_init failed with this code: later calls fail fast */
  uint64_t device_bytes; /* device memory this backend holds for the comm */
  uint64_t host_bytes;   /* host and shared memory this backend holds for the comm */
} mc_comm_backend_t;

typedef struct mc_comm {
  mc_context_t *ctx;
  int id;            /* index in ctx->comms (local numbering) */
  int size;          /* ranks in the communicator */
  int rank;          /* this rank's index in ranks */
  int32_t *ranks;    /* world ranks, group order */
  char key[96];      /* the same on every member: "c0.4" (+ ".TP" when not shared); store keys */
  char label[128];   /* for messages: "TP ranks 0,4" (every group kind that uses it) */
  uint64_t seq;      /* exchanges done through the store; advances identically on every member */
  int same_host;     /* every member is on this rank's host */
  mc_comm_backend_t be[4]; /* indexed by moecomm_backend_t */
} mc_comm_t;

#define MC_GROUP_MAGIC 0x6d636772u   /* "mcgr": a group handle */
#define MC_CONTEXT_MAGIC 0x6d636378u /* "mccx": a context handle */

struct moecomm_group {
  uint32_t magic;             /* MC_GROUP_MAGIC while the context lives */
  mc_context_t *ctx;
  int kind;                   /* moecomm_group_kind_t */
  mc_comm_t *comm;            /* shared with groups of equal rank list */
  moecomm_backend_t backend;  /* chosen at context creation; all-reduce goes here first */
  uint64_t ops;               /* collectives issued */
  uint64_t captured_ops;      /* collectives issued inside the current capture scope */
};

struct moecomm_context {
  uint32_t magic;            /* MC_CONTEXT_MAGIC while alive */
  mc_err_t err;              /* last failure on this context (last_error) */
  mc_config_t cfg;
  mc_topo_t topo;
  int device;                /* CUDA ordinal or MOECOMM_DEVICE_CPU */
  uint32_t abi_version;      /* negotiated for the process */

  /* world picture from bootstrap */
  int local_rank, local_size, num_hosts;
  uint64_t *host_hash;       /* per world rank: hash of its host id */
  int *pids;                 /* per world rank: process id (same-host liveness checks) */
  char id[48];               /* context id, the same on every rank: names segments and keys */
  mc_store_t *store;         /* client connection to rank 0's store */
  void *store_server;        /* rank 0: the server (refcounted when MOECOMM_STORE is shared) */
  uint64_t world_seq;        /* world exchanges done */

  mc_group_t groups[MC_GROUP_KIND_COUNT];
  mc_comm_t *comms[MC_GROUP_KIND_COUNT];
  int num_comms;

  int capturing;             /* inside capture_begin .. capture_end */
};

/* ---- exchanges through the store (bootstrap.c) ---- */

/* All-gather of `bytes` from every member of comm (recv: comm->size * bytes, in group order).
   `what` names the exchange in errors; a timeout names the members that never arrived. */
moecomm_result_t mc_comm_exchange(mc_comm_t *comm, const char *what, const void *send, void *recv,
                                  size_t bytes);

/* The same over the world. */
moecomm_result_t mc_world_exchange(mc_context_t *ctx, const char *what, const void *send,
                                   void *recv, size_t bytes);

/* Bootstrap at context creation: host all-gather or MOECOMM_STORE, store server on rank 0,
   host layout and context id.  On failure nothing is left running. */
moecomm_result_t mc_boot_init(mc_context_t *ctx, const moecomm_context_params_t *params,
                              size_t params_size);
void mc_boot_fini(mc_context_t *ctx);

/* 1 when world rank r's process is alive (same host only; other hosts: always 1). */
int mc_boot_peer_alive(const mc_context_t *ctx, int world_rank);

/* ---- communicators (comm.c) ---- */

/* Makes sure backend `id` has its state on comm (collective over the comm on first use).
   `capturing`: the caller's stream is being captured (setup runs in relaxed capture mode).
   Returns MC_DEFER when the backend declined the comm. */
moecomm_result_t mc_comm_ensure(mc_comm_t *comm, moecomm_backend_t id, int capturing);

/* Backend that serves all-reduce on a group now (its choice, or the fallback if declined). */
moecomm_backend_t mc_group_backend_in_use(const mc_group_t *group);

/* ---- context (context.c) ---- */
moecomm_result_t mc_context_create(const moecomm_context_params_t *params, mc_context_t **ctx_p,
                                   mc_err_t *err);
void mc_context_destroy(mc_context_t *ctx);

#endif
