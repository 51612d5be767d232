/* backend.h - the internal interface every backend implements (plugin/backends/<name>/).
 *
 * A backend serves collectives on a communicator (comm.h: one distinct rank list).  It says what
 * it can do (caps, and limits once a communicator exists); whether a call goes to it is decided by
 * the routing policy alone (route.c).  Its per-communicator state is created lazily by comm_init
 * on the first call routed to it (lazy.c).  A NULL slot means "not supported". */
#ifndef MC_BACKEND_H_
#define MC_BACKEND_H_

#include "comm.h"

typedef enum mc_coll_kind {
  MC_COLL_ALL_REDUCE = 0,
  MC_COLL_ALL_GATHER,
  MC_COLL_REDUCE_SCATTER,
  MC_COLL_BROADCAST,
  MC_COLL_KIND_COUNT
} mc_coll_kind_t;

/* One collective call, validated by the core. */
typedef struct mc_coll {
  mc_coll_kind_t kind;
  const void *send;
  void *recv;
  size_t count;       /* > 0. all_reduce/broadcast: elements; all_gather: send count;
                         reduce_scatter: recv count */
  moecomm_dtype_t dtype;
  moecomm_redop_t op; /* all_reduce, reduce_scatter */
  int root;           /* broadcast: index in the group */
  void *stream;       /* cudaStream_t on a GPU context, NULL on CPU */
  int capturing;      /* 1 when stream is being captured into a graph */
  int algo;           /* the policy's algorithm for backends that have several (custom:
                         MC_KERN_*), 0 otherwise */
} mc_coll_t;

typedef moecomm_result_t (*mc_coll_fn_t)(mc_comm_t *comm, const mc_coll_t *coll);

/* What a backend can serve at all (static; known before any communicator exists). */
typedef struct mc_backend_caps {
  uint32_t colls;  /* bit (1u << mc_coll_kind_t) per collective it serves */
  uint32_t dtypes; /* bit (1u << moecomm_dtype_t) per dtype it serves */
  int max_ranks;   /* largest communicator it serves; 0: any */
  int one_host;    /* 1: every member must be on one host */
  int gpu;         /* 1: device buffers (a GPU context); 0: host buffers (a CPU context) */
} mc_backend_caps_t;

/* What a created communicator can take now (backends with size-dependent algorithms). */
typedef struct mc_backend_limits {
  size_t ll_max_bytes;     /* largest message of the flag-in-data (LL) algorithm; 0: none */
  size_t staged_max_bytes; /* largest eager message of the staged algorithms */
  int capture_slots;       /* captured ops needing registration it can still take; -1: no limit */
} mc_backend_limits_t;

typedef struct mc_backend_ops {
  const char *name; /* "shm", "nccl", "custom" */
  moecomm_backend_t id;
  mc_backend_caps_t caps;

  /* Context creation: can this backend run on `device` (a CUDA ordinal or MOECOMM_DEVICE_CPU) at
     all (library, device generation...)?  Local, cheap, must not allocate.  Failure fills why. */
  moecomm_result_t (*probe)(int device, mc_err_t *why);

  /* First call routed to this backend on comm: collective over the comm's members.  Sets
     comm->be[id].priv and the byte counts; on failure leaves nothing allocated.  MC_DEFER: the
     backend cannot serve this comm (decided alike on every member); calls then go elsewhere.  On
     a GPU context it runs (as does comm_fini) with the context's device current and the thread
     in relaxed capture mode (gpu.h, mc_gpu_scope_enter). */
  moecomm_result_t (*comm_init)(mc_comm_t *comm);

  /* Local; must not wait for peers; safe on a half-failed comm. */
  void (*comm_fini)(mc_comm_t *comm);

  /* Created communicator: what it can take now (NULL: no size limits). */
  void (*limits)(const mc_comm_t *comm, mc_backend_limits_t *limits_p);

  /* Collectives, indexed by mc_coll_kind_t (NULL where caps.colls lacks the bit). */
  mc_coll_fn_t coll[MC_COLL_KIND_COUNT];

  /* Capture scope hooks (NULL: nothing to do).  capture_begin is local; capture_end is collective
     over the comm's members and registers whatever the captured work needs; every member must
     make the same exchanges in it whatever happened locally. */
  moecomm_result_t (*capture_begin)(mc_comm_t *comm);
  moecomm_result_t (*capture_end)(mc_comm_t *comm);
} mc_backend_ops_t;

/* The name of a collective ("all_reduce") for messages. */
const char *mc_coll_name(mc_coll_kind_t kind);

#endif
