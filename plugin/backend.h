/* backend.h - the internal interface every backend implements (plugin/backends/<name>/).
 *
 * A backend serves collectives on a communicator (mc_comm_t: one distinct rank list).  Its
 * per-communicator state is created lazily by comm_init on the first call routed to it.  A NULL
 * slot means "not supported": the core then routes the call to `fallback` (one place: comm.c). */
#ifndef MC_BACKEND_H_
#define MC_BACKEND_H_

#include "context.h"

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
  size_t count;            /* > 0. all_reduce/broadcast: elements; all_gather: send count;
                              reduce_scatter: recv count */
  moecomm_dtype_t dtype;
  moecomm_redop_t op;      /* all_reduce, reduce_scatter */
  int root;                /* broadcast: index in the group */
  void *stream;            /* cudaStream_t on a GPU context, NULL on CPU */
  int capturing;           /* 1 when stream is being captured into a graph */
} mc_coll_t;

typedef moecomm_result_t (*mc_coll_fn_t)(mc_comm_t *comm, const mc_coll_t *coll);

typedef struct mc_backend_ops {
  const char *name;          /* "shm", "nccl", "custom" */
  moecomm_backend_t id;
  moecomm_backend_t fallback; /* where NULL slots and MC_DEFER go; NONE: none */

  /* Context creation: can this backend run here at all (library, device, P2P...)?  Local, cheap,
     must not allocate.  Failure fills err with the reason. */
  moecomm_result_t (*probe)(mc_context_t *ctx, mc_err_t *err);

  /* First call routed to this backend on comm: collective over the comm's ranks.  Sets
     comm->be[id].priv and the byte counts; on failure leaves nothing allocated.  On a GPU
     context the core runs it (and comm_fini) with the context's device current and the thread
     in relaxed capture mode (gpu.h, mc_gpu_scope_enter). */
  moecomm_result_t (*comm_init)(mc_comm_t *comm);

  /* Local; must not wait for peers; safe on a half-failed comm. */
  void (*comm_fini)(mc_comm_t *comm);

  /* Collectives, indexed by mc_coll_kind_t.  May return MC_DEFER to hand the call to fallback
     before doing any work. */
  mc_coll_fn_t coll[MC_COLL_KIND_COUNT];

  /* Capture scope hooks (NULL: nothing to do).  capture_begin is local; capture_end is collective
     over the comm's ranks and registers whatever the captured work needs. */
  moecomm_result_t (*capture_begin)(mc_comm_t *comm);
  moecomm_result_t (*capture_end)(mc_comm_t *comm);
} mc_backend_ops_t;

/* The backends compiled in, indexed by moecomm_backend_t (NULL where absent). */
extern const mc_backend_ops_t *const mc_backends[];

extern const mc_backend_ops_t mc_shm_ops;
extern const mc_backend_ops_t mc_nccl_ops;
extern const mc_backend_ops_t mc_custom_ops;

#endif
