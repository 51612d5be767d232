/* SPDX-License-Identifier: Apache-2.0 */
/* backend.h - the internal interface every backend implements (plugin/backends/<name>/).
 *
 * A backend serves collectives on a communicator (comm.h: one distinct rank list).  It says what
 * it can do (caps, and limits once a communicator exists); whether a call goes to it is decided by
 * the routing policy alone (route.c).  Its per-communicator state is created lazily by comm_init
 * on the first call routed to it (lazy.c).  A NULL slot means "not supported". */
#ifndef MC_BACKEND_H_
#define MC_BACKEND_H_

#include "comm.h"
#include "ep_layout.h"

typedef enum mc_coll_kind {
  MC_COLL_ALL_REDUCE = 0,
  MC_COLL_ALL_GATHER,
  MC_COLL_REDUCE_SCATTER,
  MC_COLL_BROADCAST,
  MC_COLL_SEND, /* ABI 1.2: point to point */
  MC_COLL_RECV,
  MC_COLL_ALL_TO_ALL,   /* equal blocks */
  MC_COLL_ALL_TO_ALL_V, /* per-peer counts and displacements */
  MC_COLL_RMSNORM,      /* all-reduce + residual add + RMSNorm (mc_rmsnorm_t) */
  MC_COLL_KIND_COUNT
} mc_coll_kind_t;

/* The fused op's operands (moecomm_rmsnorm_args_t, validated). */
typedef struct mc_rmsnorm {
  float eps;
  size_t tokens, hidden;
  const void *x;      /* [T, H] partial sums (the call's send) */
  void *residual;     /* [T, H] += sum of x */
  const void *weight; /* [H] */
  void *out;          /* [T, H] (the call's recv) */
  void *out_fp8;      /* [T, H] e4m3, or NULL */
  float *out_scale;   /* [T], with out_fp8 */
} mc_rmsnorm_t;

/* One collective call, validated by the core. */
typedef struct mc_coll {
  mc_coll_kind_t kind;
  const void *send;
  void *recv;
  size_t count; /* > 0. all_reduce/broadcast: elements; all_gather: send count;
                   reduce_scatter: recv count */
  moecomm_dtype_t dtype;
  moecomm_redop_t op; /* all_reduce, reduce_scatter */
  int root;           /* broadcast: index in the group */
  void *stream;       /* cudaStream_t on a GPU context, NULL on CPU */
  int capturing;      /* 1 when stream is being captured into a graph */
  int algo;           /* the policy's algorithm for backends that have several (custom:
                         MC_KERN_*), 0 otherwise */
  size_t chunk;       /* custom, deterministic mode: elements per launch, each through the
                         staged form of algo (reduce_scatter: per launch inside a block); 0: the
                         whole call in one launch */
  int deterministic;  /* each element's bits must not depend on size, batch or algorithm */
  int peer;           /* send, recv: index in the group */
  const size_t *send_counts, *send_displs; /* all_to_all_v: elements, per peer */
  const size_t *recv_counts, *recv_displs;
  const mc_rmsnorm_t *norm; /* rmsnorm */
} mc_coll_t;

/* all_to_all / all_to_all_v: block p of the send side (send = 1) or of the recv side, as its
   first element and its element count. */
static inline void mc_coll_block(const mc_coll_t *c, int send, int p, size_t *displ_p,
                                 size_t *count_p) {
  if (c->kind == MC_COLL_ALL_TO_ALL) {
    *displ_p = (size_t)p * c->count;
    *count_p = c->count;
    return;
  }
  *displ_p = (send ? c->send_displs : c->recv_displs)[p];
  *count_p = (send ? c->send_counts : c->recv_counts)[p];
}

/* One expert-parallel dispatch or combine on the MOE_EP communicator (moe.c). */
typedef struct mc_moe_call {
  int32_t tokens; /* T on this rank, 0..t_max */
  void *stream;   /* cudaStream_t, NULL on CPU */
  int capturing;
  /* dispatch */
  const int32_t *topk_ids; /* [T][K] */
  const void *x;           /* [T][H] */
  const float *x_scales;   /* [T][S] */
  void *recv_x;            /* [El][C][H] */
  float *recv_scales;      /* [El][C][S] */
  int32_t *recv_counts;    /* [El] */
  int32_t *recv_src;       /* [El][C][3] */
  /* combine */
  const void *expert_out;    /* [El][C][H] */
  const float *topk_weights; /* [T][K] */
  void *out;                 /* [T][H] */
  int *ran_p;                /* combine, out: set to 1 when the call did its work although it
                                returns an error (it reports an earlier dispatch's data error) */
} mc_moe_call_t;

typedef moecomm_result_t (*mc_coll_fn_t)(mc_comm_t *comm, const mc_coll_t *coll);

/* caps masks of a general backend (shm, NCCL): every collective but the fused one, every dtype
   the ABI reduces. */
#define MC_COLLS_GENERAL                                                                      \
  ((1u << MC_COLL_ALL_REDUCE) | (1u << MC_COLL_ALL_GATHER) | (1u << MC_COLL_REDUCE_SCATTER) | \
   (1u << MC_COLL_BROADCAST) | (1u << MC_COLL_SEND) | (1u << MC_COLL_RECV) |                  \
   (1u << MC_COLL_ALL_TO_ALL) | (1u << MC_COLL_ALL_TO_ALL_V))
#define MC_DTYPES_GENERAL                                                         \
  ((1u << MOECOMM_FLOAT32) | (1u << MOECOMM_FLOAT16) | (1u << MOECOMM_BFLOAT16) | \
   (1u << MOECOMM_INT32))

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
  size_t scratch_bytes;    /* custom, deterministic mode: the reduce_scatter's scratch; 0: none */
} mc_backend_limits_t;

typedef struct mc_backend_ops {
  const char *name; /* "shm", "nccl", "custom" */
  moecomm_backend_t id;
  mc_backend_caps_t caps;

  /* Context creation: can this backend run on `device` (a CUDA ordinal or MOECOMM_DEVICE_CPU) at
     all (library, device generation...)?  Local and cheap.  Failure fills why. */
  moecomm_result_t (*probe)(const mc_config_t *cfg, int device, mc_err_t *why);

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

  /* Expert-parallel dispatch/combine (NULL: not served).  moe_init runs on the first dispatch
     routed here: collective over the comm, sizes everything from `layout` (the same on every
     member), sets comm->be[id].moe and adds what it holds to the byte counts; on failure leaves
     nothing allocated.  moe_fini is local.  dispatch and combine alternate, dispatch first.
     Data errors (an expert over its capacity, an expert id outside [-1, E)) never stop a call:
     the rows are dropped or the slot masked (ep_layout.h), the members stay in step, and a later
     combine on the member that saw the error reports it (MOECOMM_ERR_NOT_SUPPORTED naming the
     expert, or MOECOMM_ERR_INVALID_ARGUMENT naming the id), having done its own work (*ran_p). */
  moecomm_result_t (*moe_init)(mc_comm_t *comm, const mc_ep_layout_t *layout);
  void (*moe_fini)(mc_comm_t *comm);
  moecomm_result_t (*moe_dispatch)(mc_comm_t *comm, const mc_moe_call_t *call);
  moecomm_result_t (*moe_combine)(mc_comm_t *comm, const mc_moe_call_t *call);

  /* Capture scope hooks (NULL: nothing to do).  capture_begin is local; capture_end is collective
     over the comm's members and registers whatever the captured work needs; every member must
     make the same exchanges in it whatever happened locally. */
  moecomm_result_t (*capture_begin)(mc_comm_t *comm);
  moecomm_result_t (*capture_end)(mc_comm_t *comm);
} mc_backend_ops_t;

/* The name of a collective ("all_reduce") for messages. */
const char *mc_coll_name(mc_coll_kind_t kind);

#endif
