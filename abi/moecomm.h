/* SPDX-License-Identifier: Apache-2.0 */
/*
 * moecomm.h - the public C ABI of the moecomm communicator plugin (current version).
 *
 * An engine includes this one header, dlopens libmoecomm.so, looks up the entry symbol named by
 * MOECOMM_ENTRY_SYMBOL_V1 and calls it with the range of ABI versions it speaks.  Everything else
 * is reached through the returned const table of function pointers.
 *
 * Rules (see abi/CHANGELOG.md):
 *  - plain C99, no CUDA or NCCL types: streams are `void *` (a cudaStream_t), buffers are `void *`;
 *  - every struct that crosses the boundary starts with `size_t struct_size`; the receiver reads
 *    min(struct_size, its own size) and defaults the rest; a struct smaller than the 1.0 layout is
 *    refused with MOECOMM_ERR_STRUCT_SIZE;
 *  - minor versions only append fields and table slots; a released version's header is frozen under
 *    abi/moecomm_v<major>.h and kept;
 *  - every call returns a moecomm_result_t; output arguments (`*_p`) are written only on success;
 *  - a NULL slot, or one past the table's struct_size, means "not supported" (MOECOMM_API_HAS).
 *
 * Include either this header or a frozen one (moecomm_v1.h), never both.  How the plugin is built
 * behind this header: DESIGN.md at the repository root.
 */
#ifndef MOECOMM_H_
#define MOECOMM_H_

#ifdef MOECOMM_ABI_HEADER_INCLUDED
#error "include exactly one moecomm ABI header (moecomm.h or a frozen moecomm_vN.h)"
#endif
#define MOECOMM_ABI_HEADER_INCLUDED 1

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- versions ---------------------------------------------------------------------------- */

/* An ABI version is (major << 16) | minor. */
#define MOECOMM_ABI_VERSION_MAKE(major, minor) ((((uint32_t)(major)) << 16) | (uint32_t)(minor))
#define MOECOMM_ABI_VERSION_GET_MAJOR(v) ((uint32_t)(v) >> 16)
#define MOECOMM_ABI_VERSION_GET_MINOR(v) ((uint32_t)(v)&0xffffu)

#define MOECOMM_ABI_MAJOR 1
#define MOECOMM_ABI_MINOR 2
#define MOECOMM_ABI_VERSION MOECOMM_ABI_VERSION_MAKE(MOECOMM_ABI_MAJOR, MOECOMM_ABI_MINOR)

/* The one exported symbol of ABI major 1; its type is moecomm_get_api_v1_fn_t. */
#define MOECOMM_ENTRY_V1 moecomm_get_api_v1
#define MOECOMM_ENTRY_SYMBOL_V1 "moecomm_get_api_v1"

/* Size of a struct up to and including `last_field`: what a caller built against this header
   sets. */
#define MOECOMM_STRUCT_SIZE(type, last_field) \
  (offsetof(type, last_field) + sizeof(((type *)0)->last_field))

/* ---- results ----------------------------------------------------------------------------- */

typedef enum moecomm_result {
  MOECOMM_SUCCESS = 0,
  MOECOMM_ERR_INVALID_ARGUMENT = 1, /* NULL pointer, value out of range, or misuse of a handle */
  MOECOMM_ERR_STRUCT_SIZE = 2,      /* a struct_size smaller than the 1.0 layout of that struct */
  MOECOMM_ERR_VERSION = 3,          /* no ABI version in common with the host */
  MOECOMM_ERR_CONFIG = 4,           /* topology or MOECOMM_* environment is inconsistent */
  MOECOMM_ERR_NOT_SUPPORTED = 5,    /* feature, dtype or op not supported (yet) here */
  MOECOMM_ERR_UNAVAILABLE = 6, /* requested backend or device is not available on this machine */
  MOECOMM_ERR_TIMEOUT = 7,     /* peers did not arrive or answer within MOECOMM_TIMEOUT_MS */
  MOECOMM_ERR_PEER = 8,        /* a peer failed, disconnected or reported an error */
  MOECOMM_ERR_BACKEND = 9,     /* a CUDA, NCCL or operating-system call failed */
  MOECOMM_ERR_NO_MEMORY = 10,  /* host or device allocation failed */
  MOECOMM_ERR_CAPTURE = 11,    /* graph-capture misuse, or ranks captured different work */
  MOECOMM_ERR_STATE = 12,      /* the context (or communicator) is unusable after an earlier
                                  fatal error, or another thread is using it right now */
  MOECOMM_ERR_INTERNAL = 13    /* a bug in moecomm: please report the message */
} moecomm_result_t;
/* One cause, one code: when a collective fails because of one cause (a rank that died, one that
   is late, ranks that issued different calls), every rank that sees it returns the same code, that
   of the first rank that noticed, and names the cause in last_error. */

/* ---- enums ------------------------------------------------------------------------------- */

typedef enum moecomm_dtype {
  MOECOMM_FLOAT32 = 0,
  MOECOMM_FLOAT16 = 1,  /* IEEE half; reductions accumulate in fp32 */
  MOECOMM_BFLOAT16 = 2, /* reductions accumulate in fp32 */
  MOECOMM_INT32 = 3     /* sum wraps modulo 2^32 */
} moecomm_dtype_t;
/* ABI 1.2: float8 e4m3, a dispatch payload only (moecomm_moe_config_t.dtype, with per-row fp32
   scales); not a moecomm_dtype_t value, so that hosts' switches over the enum stay complete. */
#define MOECOMM_FLOAT8_E4M3 4

typedef enum moecomm_redop { MOECOMM_SUM = 0, MOECOMM_MAX = 1, MOECOMM_MIN = 2 } moecomm_redop_t;

/* Parallel groups; rank lists are given in DESIGN.md ("Groups"). */
typedef enum moecomm_group_kind {
  MOECOMM_GROUP_WORLD = 0,
  MOECOMM_GROUP_TP = 1,
  MOECOMM_GROUP_PP = 2,
  MOECOMM_GROUP_ATTN_TP = 3,
  MOECOMM_GROUP_ATTN_CP = 4,
  MOECOMM_GROUP_MOE_EP = 5,
  MOECOMM_GROUP_MOE_TP = 6,
  MOECOMM_GROUP_MOE_DP = 7,
  MOECOMM_GROUP_MOE_CP = 8 /* where the MoE all-gather runs when attn_cp > moe_dp */
} moecomm_group_kind_t;

typedef enum moecomm_backend {
  MOECOMM_BACKEND_NONE = 0,  /* not chosen */
  MOECOMM_BACKEND_SHM = 1,   /* CPU processes over POSIX shared memory (host buffers) */
  MOECOMM_BACKEND_NCCL = 2,  /* NCCL (device buffers) */
  MOECOMM_BACKEND_CUSTOM = 3 /* moecomm CUDA kernels for all-reduce, NCCL for the rest */
} moecomm_backend_t;

/* How a layer's hidden states are spread over ranks (ABI 1.1).  Token layouts: see scatter. */
typedef enum moecomm_scatter_mode {
  MOECOMM_SCATTERED = 0,    /* each rank its own slice of its attention-TP group's tokens */
  MOECOMM_TP_ATTN_FULL = 1, /* every rank of an ATTN_TP group holds the group's tokens */
  MOECOMM_FULL = 2,         /* every rank holds all tokens of its TP group (padded per slice) */
  MOECOMM_MOE_FULL = 3      /* every rank holds all tokens of its MOE_CP group (padded per group) */
} moecomm_scatter_mode_t;

/* Layer kinds whose input mode the plugin decides (ABI 1.1). */
typedef enum moecomm_layer_kind {
  MOECOMM_LAYER_ATTENTION = 0,
  MOECOMM_LAYER_DENSE_MLP = 1,
  MOECOMM_LAYER_SPARSE_MOE = 2
} moecomm_layer_kind_t;

/* Context flags (ABI 1.1). */
#define MOECOMM_CONTEXT_SEPARATE_COMMS 0x1ull /* no sharing: one communicator per group */
/* ABI 1.2: every all_reduce, reduce_scatter and all_reduce_rmsnorm gives each element the same
   bits whatever the message size, the batch it is in, the algorithm or the chunking (ranks summed
   in rank order in fp32, rounded once); also MOECOMM_DETERMINISTIC=1.  A group whose backend
   cannot promise it routes to one that can, or the call fails with MOECOMM_ERR_NOT_SUPPORTED. */
#define MOECOMM_CONTEXT_DETERMINISTIC 0x2ull

/* Context device request. */
#define MOECOMM_DEVICE_CPU (-1)  /* host buffers, shm backend */
#define MOECOMM_DEVICE_AUTO (-2) /* a GPU (local rank modulo device count) if any, else CPU */

/* ---- opaque handles ---------------------------------------------------------------------- */

typedef struct moecomm_context moecomm_context_t; /* one per rank per model instance */
typedef struct moecomm_group moecomm_group_t; /* owned by its context; never freed by the host */

/* ---- structs ----------------------------------------------------------------------------- */

/* Sizes of the parallel layout.  Optional sizes given as 0 take their default. */
typedef struct moecomm_topology {
  size_t struct_size; /* caller sets sizeof(moecomm_topology_t) */
  int32_t world_size; /* ranks in the world, >= 1 */
  int32_t rank;       /* this process's rank, 0 <= rank < world_size */
  int32_t tp;         /* tensor-parallel size; tp * pp divides world_size */
  int32_t pp;         /* pipeline-parallel size; 0 means 1 */
  int32_t ep;         /* MoE expert-parallel size; 0 means 1; ep * moe_dp divides tp */
  int32_t moe_dp;     /* MoE data-parallel size; 0 means 1 */
  int32_t attn_cp;    /* attention context-parallel size; 0 means 1; attn_cp * attn_dp divides tp */
  int32_t attn_dp;    /* attention data-parallel size; 0 means 1 */
  int32_t moe_dense_tp; /* TP size of dense MLP layers: 1 or tp; 0 means tp */
} moecomm_topology_t;

/*
 * Bootstrap all-gather supplied by the host.  Called collectively by every rank of the world from
 * context_create; `send` holds `bytes` bytes, `recv` receives world_size * `bytes` bytes in rank
 * order.  May block; must return 0 on success and non-zero on failure (context_create then fails
 * with MOECOMM_ERR_PEER).  Never called after context_create returns.
 */
typedef int (*moecomm_host_allgather_fn_t)(void *user, const void *send, void *recv, size_t bytes);

typedef struct moecomm_context_params {
  size_t struct_size;                         /* caller sets sizeof(moecomm_context_params_t) */
  const moecomm_topology_t *topology;         /* required; copied, need not outlive the call */
  moecomm_host_allgather_fn_t host_allgather; /* world all-gather; NULL: use MOECOMM_STORE */
  void *host_user;                            /* passed unchanged to host_allgather */
  int32_t device; /* CUDA ordinal, MOECOMM_DEVICE_CPU or MOECOMM_DEVICE_AUTO */
  /* ABI 1.1; 64 bits wide so it starts past the 1.0 layout's tail padding (offset 40) */
  uint64_t flags; /* MOECOMM_CONTEXT_*; absent (1.0 caller): 0 */
} moecomm_context_params_t;

/* What a context ended up with (filled by context_info). */
typedef struct moecomm_context_info {
  size_t struct_size; /* caller sets sizeof(moecomm_context_info_t); plugin writes min(...) bytes */
  int32_t device;     /* CUDA ordinal in use, or MOECOMM_DEVICE_CPU: buffers are host memory */
  int32_t local_rank; /* index of this rank among the ranks on its host */
  int32_t local_size; /* ranks on this host */
  int32_t num_hosts;  /* distinct hosts in the world */
  uint32_t abi_version; /* ABI version negotiated for this process */
} moecomm_context_info_t;

typedef struct moecomm_group_stats {
  size_t struct_size; /* caller sets sizeof(moecomm_group_stats_t); plugin writes min(...) bytes */
  int32_t kind;       /* moecomm_group_kind_t of the group asked about */
  const char *kind_name;    /* "TP", "MOE_EP", ...: static storage */
  int32_t size;             /* ranks in the group */
  int32_t rank;             /* this rank's index in the group */
  const int32_t *ranks;     /* `size` world ranks in group order; valid until context_destroy */
  int32_t backend;          /* moecomm_backend_t serving all-reduce on this group */
  const char *backend_name; /* "shm", "nccl", "custom": static storage */
  int32_t comm_id;          /* communicator object; groups with equal comm_id share it */
  int32_t created;          /* 1 once the communicator's resources exist (first collective) */
  uint64_t device_bytes;    /* device memory held by the communicator (shared by equal comm_id) */
  uint64_t host_bytes;      /* host and shared memory held by the communicator */
  uint64_t ops;             /* collectives issued on this group so far */
  /* ABI 1.2 */
  uint64_t ops_local;          /* calls served as local copies (a group of one rank) */
  uint64_t ops_shm;            /* calls served by the shm backend */
  uint64_t ops_nccl;           /* calls served by NCCL */
  uint64_t ops_custom;         /* calls served by moecomm's CUDA kernels */
  int32_t moe_max_tokens;      /* moe_configure's T_max (tokens per rank per dispatch); 0: none */
  int32_t moe_expert_capacity; /* rows each local expert receives per dispatch at most; 0: none */
} moecomm_group_stats_t;

/* Flags for capture-size planning. */
#define MOECOMM_PLAN_DENSE_DP 0x1u          /* dense MLP layers run fully data-parallel */
#define MOECOMM_PLAN_DP_ATTENTION 0x2u      /* attention runs data-parallel (attn_dp > 1) */
#define MOECOMM_PLAN_TWO_BATCH_OVERLAP 0x4u /* each step runs as two micro-batches */

typedef struct moecomm_plan_params {
  size_t struct_size;        /* caller sets sizeof(moecomm_plan_params_t) */
  uint32_t flags;            /* MOECOMM_PLAN_* */
  const int32_t *candidates; /* candidate token counts per step, > 0 */
  size_t num_candidates;     /* entries in candidates */
} moecomm_plan_params_t;

/*
 * A transition between scatter modes (ABI 1.1).  Token counts: T[g] is the number of tokens of
 * attention group g (the ATTN_TP groups of this rank's TP block, g = index in the block / attn_tp,
 * attn_dp * attn_cp groups); a transition from or to SCATTERED or FULL needs every T[g] to be a
 * multiple of attn_tp (plan_capture_sizes gives such counts whenever the topology's layer modes
 * need them).  Rows of hidden elements, per mode, for a rank of group g with ATTN_TP index a:
 *   SCATTERED     T[g] / attn_tp rows: rows a*T[g]/attn_tp .. of the group's tokens;
 *   TP_ATTN_FULL  T[g] rows;
 *   MOE_FULL      one block of P rows per MOE_CP member, P = max T over the members' attention
 *                 groups; block c holds the tokens of the c-th member's group, then zero padding;
 *   FULL          tp blocks of S rows, S = max T[g] / attn_tp over the TP block; block r holds the
 *                 SCATTERED rows of the block's r-th rank, then zero padding.
 * mode_rows gives the row count of a mode, so the host can size buffers.
 */
typedef struct moecomm_scatter_args {
  size_t struct_size;    /* caller sets sizeof(moecomm_scatter_args_t) */
  int32_t from;          /* moecomm_scatter_mode_t of send */
  int32_t to;            /* moecomm_scatter_mode_t wanted in recv */
  int32_t reduce;        /* 1: send holds partial sums of the layer that made it; sum them */
  int32_t dtype;         /* moecomm_dtype_t of both buffers */
  size_t hidden;         /* elements per token row, > 0 */
  const int32_t *tokens; /* T[g] for the attn_dp * attn_cp groups of this TP block, the same on
                            every rank of the block; host memory, read during the call only */
  void *send;            /* rows of mode `from`; reduce transitions may overwrite it */
  void *recv;            /* rows of mode `to`; must not overlap send */
} moecomm_scatter_args_t;

/* ---- ABI 1.2 structs ------------------------------------------------------------------------ */

/* One configuration variable the plugin (or its host-side loader) reads; static storage. */
typedef struct moecomm_config_var {
  size_t struct_size;        /* caller sets sizeof(moecomm_config_var_t) */
  const char *name;          /* "MOECOMM_TIMEOUT_MS"; "..._<GROUP>" stands for one per group */
  const char *type;          /* "choice", "int", "bytes", "bool", "text" or "host" (the loader's) */
  const char *default_value; /* as a user would write it; "" when unset by default */
  const char *range;         /* the accepted values in words ("auto|shm|nccl|custom", "1 to 64") */
  const char *help;          /* one line */
} moecomm_config_var_t;

/* Expert-parallel dispatch/combine on the MOE_EP group (n ranks), fixed by moe_configure before
   the first dispatch.  Rank r holds experts [r*E/n, (r+1)*E/n): E_local = E / n of them. */
#define MOECOMM_MOE_MAX_TOP_K 32
typedef struct moecomm_moe_config {
  size_t struct_size;      /* caller sets sizeof(moecomm_moe_config_t) */
  int32_t num_experts;     /* E > 0, a multiple of n */
  int32_t top_k;           /* K, 1..MOECOMM_MOE_MAX_TOP_K */
  int32_t dtype;           /* dispatched rows: BFLOAT16, FLOAT16, FLOAT32 or FLOAT8_E4M3 */
  int32_t max_tokens;      /* T_max: tokens a rank dispatches per call; 0: MOECOMM_EP_MAX_TOKENS */
  size_t hidden;           /* H > 0: elements per row */
  int32_t expert_capacity; /* C: rows a local expert receives per call at most; 0: n * T_max */
  int32_t num_scales;      /* FLOAT8_E4M3: fp32 scales per row (> 0); otherwise 0 */
  int32_t combine_dtype;   /* FLOAT8_E4M3: the experts' output dtype (BFLOAT16, FLOAT16 or
                              FLOAT32); otherwise ignored (outputs have dtype) */
} moecomm_moe_config_t;

/* One dispatch.  Device buffers; the layout is what a grouped expert GEMM wants. */
typedef struct moecomm_moe_dispatch_args {
  size_t struct_size;      /* caller sets sizeof(moecomm_moe_dispatch_args_t) */
  int32_t num_tokens;      /* T on this rank, 0..T_max (ranks may differ) */
  const void *x;           /* [T, H] of the config's dtype */
  const float *x_scales;   /* FLOAT8_E4M3: [T, num_scales]; otherwise NULL */
  const int32_t *topk_ids; /* [T, K] expert ids; -1 masks a slot */
  void *recv_x;            /* [E_local, C, H]: local expert e's rows from row 0 on */
  float *recv_scales;      /* FLOAT8_E4M3: [E_local, C, num_scales]; otherwise NULL */
  int32_t *recv_counts;    /* [E_local]: rows each local expert received (at most C) */
  int32_t *recv_src;       /* [E_local, C, 3]: (source index in the group, token, k) per row;
                              rows ordered by source, then token, then k */
} moecomm_moe_dispatch_args_t;

/* The matching combine: out[t] = sum over k of topk_weights[t,k] * expert_out[row of (t,k)], in
   fp32 in the order k = 0..K-1 (masked slots skipped), the same bits every run and whatever the
   number of ranks; written in token order. */
typedef struct moecomm_moe_combine_args {
  size_t struct_size;        /* caller sets sizeof(moecomm_moe_combine_args_t) */
  int32_t num_tokens;        /* T: the same as in the matching dispatch */
  uint64_t handle;           /* what the matching moe_dispatch wrote to *handle_p */
  const void *expert_out;    /* [E_local, C, H] in the layout dispatch produced (combine dtype) */
  const float *topk_weights; /* [T, K] */
  void *out;                 /* [T, H] (combine dtype) */
} moecomm_moe_combine_args_t;

/* All-reduce fused with the residual add and RMSNorm (a TP group's layer epilogue):
   residual += sum over ranks of x; out = RMSNorm(residual) * weight, with fp32 math
   (kernels/mc_rmsnorm.h gives every rounding). */
typedef struct moecomm_rmsnorm_args {
  size_t struct_size; /* caller sets sizeof(moecomm_rmsnorm_args_t) */
  int32_t dtype;      /* of x, residual, weight and out: BFLOAT16 or FLOAT16 */
  float eps;          /* >= 0, added to the mean of squares */
  size_t tokens;      /* T rows (0: no-op) */
  size_t hidden;      /* H elements per row, > 0 (a multiple of 8 up to 16384 can be fused;
                         other sizes run as all-reduce + norm, the same definition) */
  const void *x;      /* [T, H] this rank's partial sums */
  void *residual;     /* [T, H], updated in place to residual + sum of x */
  const void *weight; /* [H] */
  void *out;          /* [T, H]; must not overlap x or residual */
  void *out_fp8;      /* optional [T, H] float8 e4m3 copy of out; NULL: none */
  float *out_scale;   /* [T] per-row scale of out_fp8 (amax / 448); with out_fp8 only */
} moecomm_rmsnorm_args_t;

/* ---- the function table ------------------------------------------------------------------ */

typedef struct moecomm_api {
  size_t struct_size;         /* bytes of this table that are valid; slots past it are absent */
  uint32_t abi_version;       /* newest ABI version this table implements */
  const char *plugin_name;    /* name the plugin was built under, e.g. "moecomm" */
  const char *plugin_version; /* release version of the plugin, e.g. "0.1.0" */

  /* Static text for a result code; never NULL. Thread-safe. */
  const char *(*result_string)(moecomm_result_t result);

  /* Message of the last failed call on ctx; ctx NULL: the calling thread's last failure of a call
     that had no context (entry, context_create).  "" when none.  Valid until the next call. */
  const char *(*last_error)(const moecomm_context_t *ctx);

  /* Collective over the world: validates the topology and environment, bootstraps, and returns a
     context.  Creates no communicator resources.  Blocks up to MOECOMM_TIMEOUT_MS for peers.
     A context and its groups are used by one thread at a time; on a GPU context that thread's
     current CUDA device is the context's (context_create sets it). */
  moecomm_result_t (*context_create)(const moecomm_context_params_t *params,
                                     moecomm_context_t **ctx_p);

  /* Local: frees every resource of ctx and its groups; does not wait for peers, except that rank
     0, which serves the rendezvous, keeps serving until the other ranks have destroyed their
     contexts or exited (at most MOECOMM_TIMEOUT_MS).  ctx NULL is a no-op success.  Must not be
     called while work of ctx is still running on a stream. */
  moecomm_result_t (*context_destroy)(moecomm_context_t *ctx);

  /* Local: what the context uses (device, host layout, negotiated ABI). */
  moecomm_result_t (*context_info)(const moecomm_context_t *ctx, moecomm_context_info_t *info_p);

  /* Local: this rank's group of `kind`.  Never creates communicator resources. */
  moecomm_result_t (*group_get)(moecomm_context_t *ctx, moecomm_group_kind_t kind,
                                moecomm_group_t **group_p);

  /* Local: kind, rank list, backend, creation state and memory of a group. */
  moecomm_result_t (*group_stats)(const moecomm_group_t *group, moecomm_group_stats_t *stats_p);

  /* Collectives.  Called by every rank of the group in the same order.  On a GPU context buffers
     are device memory and the work is enqueued on `stream` (a cudaStream_t, NULL = legacy
     default); on a CPU context buffers are host memory, stream must be NULL and the call returns
     when the result is in recv.  send == recv is in place.  count 0 is a no-op.  The first
     collective on a group creates its communicator (collective over the group's ranks). */

  /* recv[i] = op over ranks of send[i], i < count. */
  moecomm_result_t (*all_reduce)(moecomm_group_t *group, const void *send, void *recv, size_t count,
                                 moecomm_dtype_t dtype, moecomm_redop_t op, void *stream);
  /* recv holds size * send_count elements, rank r's send at r * send_count; in place when
     send == recv + rank * send_count. */
  moecomm_result_t (*all_gather)(moecomm_group_t *group, const void *send, void *recv,
                                 size_t send_count, moecomm_dtype_t dtype, void *stream);
  /* send holds size * recv_count elements; recv = op over ranks of this rank's block; in place
     when recv == send + rank * recv_count. */
  moecomm_result_t (*reduce_scatter)(moecomm_group_t *group, const void *send, void *recv,
                                     size_t recv_count, moecomm_dtype_t dtype, moecomm_redop_t op,
                                     void *stream);
  /* recv = root's send on every rank; root is an index in the group; send read on root only. */
  moecomm_result_t (*broadcast)(moecomm_group_t *group, const void *send, void *recv, size_t count,
                                moecomm_dtype_t dtype, int32_t root, void *stream);

  /* Opens the context's capture scope, which covers every group.  Call before the host begins
     stream capture; collectives issued until capture_end are recorded.  Local. */
  moecomm_result_t (*capture_begin)(moecomm_context_t *ctx, void *stream);

  /* Closes the scope: collective over the world; checks that every rank captured the same number
     of operations per group and registers the buffers the captured work touches with peers.
     Call after the host ends stream capture and before the first replay. */
  moecomm_result_t (*capture_end)(moecomm_context_t *ctx, void *stream);

  /* Local: writes the candidates every group can split, in the given order, to sizes (capacity
     entries), their number to *num_p and the multiple they had to be of to *multiple_p.  None
     valid: MOECOMM_ERR_CONFIG naming the multiple.  sizes NULL with capacity 0 asks for the
     number only; a capacity below it is MOECOMM_ERR_INVALID_ARGUMENT.  No candidates (NULL, 0):
     the engines' usual list 1, 2, 4, 8, 12, 16, 24, 32..256 step 8, 272..512 step 16. */
  moecomm_result_t (*plan_capture_sizes)(const moecomm_context_t *ctx,
                                         const moecomm_plan_params_t *params, int32_t *sizes,
                                         size_t capacity, size_t *num_p, int32_t *multiple_p);

  /* ---- ABI 1.1 ---- */

  /* Local: the scatter mode a layer kind's input must be in, from the topology: attention
     TP_ATTN_FULL; dense MLP SCATTERED when moe_dense_tp is 1, else FULL; sparse MoE MOE_FULL when
     attn_cp > moe_dp, TP_ATTN_FULL when a MoE replica is one attention-TP group, FULL when
     moe_dp is 1.  A FULL that equals TP_ATTN_FULL (attn_tp == tp) is reported as TP_ATTN_FULL.
     MOECOMM_ERR_NOT_SUPPORTED where a MoE replica would mix unrelated tokens: MOE_FULL with
     attn_dp > 1, or moe_dp > 1 with a replica that is not one attention-TP group. */
  moecomm_result_t (*layer_mode)(const moecomm_context_t *ctx, moecomm_layer_kind_t layer,
                                 moecomm_scatter_mode_t *mode_p);

  /* Local: rows (tokens, padding included) a buffer of `mode` holds on this rank for the token
     counts T (see moecomm_scatter_args_t). */
  moecomm_result_t (*mode_rows)(const moecomm_context_t *ctx, moecomm_scatter_mode_t mode,
                                const int32_t *tokens, size_t *rows_p);

  /* Moves hidden states from one mode to another through the collectives above (so it is
     captured like them): ATTN_TP all-gather / reduce-scatter / all-reduce, the MOE_CP all-gather
     padded to the largest member's count, the TP all-gather and reduce-scatter of FULL, the MoE
     all-reduce (MOE_TP, MOE_EP) of MOE_FULL and the slice back.  Collective over the groups it
     uses, called by every rank of the world in the same order.  A pair it cannot do:
     MOECOMM_ERR_NOT_SUPPORTED naming it. */
  moecomm_result_t (*scatter)(moecomm_context_t *ctx, const moecomm_scatter_args_t *args,
                              void *stream);

  /* ---- ABI 1.2 ---- */

  /* Local, no context needed: the rank list of the `kind` group that contains `rank` in topology
     (DESIGN.md "Groups"), in group order, to ranks (capacity entries); its length to *size_p.
     ranks NULL with capacity 0 asks for the length only. */
  moecomm_result_t (*topology_group_ranks)(const moecomm_topology_t *topology,
                                           moecomm_group_kind_t kind, int32_t rank, int32_t *ranks,
                                           size_t capacity, size_t *size_p);

  /* Local, no context needed: the index-th configuration variable (0, 1, ...); past the last,
     MOECOMM_ERR_INVALID_ARGUMENT. */
  moecomm_result_t (*config_var)(size_t index, moecomm_config_var_t *var_p);

  /* Point to point on any group: `peer` is an index in the group.  Sends and receives between a
     pair match in issue order; count and dtype must agree.  On a CPU context a send may block
     until the peer receives. */
  moecomm_result_t (*send)(moecomm_group_t *group, const void *buf, size_t count,
                           moecomm_dtype_t dtype, int32_t peer, void *stream);
  moecomm_result_t (*recv)(moecomm_group_t *group, void *buf, size_t count, moecomm_dtype_t dtype,
                           int32_t peer, void *stream);

  /* Block p of recv (count elements at p * count) is what peer p sent in its block for this
     rank; send and recv hold size * count elements and must not overlap. */
  moecomm_result_t (*all_to_all)(moecomm_group_t *group, const void *send, void *recv, size_t count,
                                 moecomm_dtype_t dtype, void *stream);
  /* The same with per-peer counts and displacements in elements (host arrays of the group's
     size, read during the call): send_counts[p] elements from send + send_displs[p] go to peer p,
     recv_counts[p] from peer p land at recv + recv_displs[p]; they must agree pairwise. */
  moecomm_result_t (*all_to_all_v)(moecomm_group_t *group, const void *send,
                                   const size_t *send_counts, const size_t *send_displs, void *recv,
                                   const size_t *recv_counts, const size_t *recv_displs,
                                   moecomm_dtype_t dtype, void *stream);

  /* Local: fixes the MOE_EP group's dispatch shape (the same on every rank; checked when the
     first dispatch creates the buffers, sized once from it).  Again with the same config: no-op;
     with another once buffers exist: MOECOMM_ERR_STATE. */
  moecomm_result_t (*moe_configure)(moecomm_group_t *group, const moecomm_moe_config_t *config);

  /* Sends each token to the ranks of the MOE_EP group that hold its top-k experts (once per rank)
     into the expert-major receive layout; counts stay on the device, so it needs no host sync and
     can be captured.  More tokens than T_max: MOECOMM_ERR_INVALID_ARGUMENT, nothing written.  An
     expert receiving more than C rows keeps the first C (row order above) and the next call
     reports MOECOMM_ERR_NOT_SUPPORTED naming it.  *handle_p: pass it to the matching combine. */
  moecomm_result_t (*moe_dispatch)(moecomm_group_t *group, const moecomm_moe_dispatch_args_t *args,
                                   uint64_t *handle_p, void *stream);
  /* Brings the experts' outputs back and sums them (moecomm_moe_combine_args_t). */
  moecomm_result_t (*moe_combine)(moecomm_group_t *group, const moecomm_moe_combine_args_t *args,
                                  void *stream);

  /* all_reduce of x over the group fused with the residual add and RMSNorm (see the struct);
     called by every rank of the group like all_reduce. */
  moecomm_result_t (*all_reduce_rmsnorm)(moecomm_group_t *group, const moecomm_rmsnorm_args_t *args,
                                         void *stream);
} moecomm_api_t;

/* True when the table provides `slot` (inside its struct_size and not NULL). */
#define MOECOMM_API_HAS(api, slot)                                                             \
  ((api) != NULL &&                                                                            \
   (api)->struct_size >= offsetof(moecomm_api_t, slot) + sizeof(((moecomm_api_t *)0)->slot) && \
   (api)->slot != NULL)

/*
 * The entry point, exported as MOECOMM_ENTRY_SYMBOL_V1.  The host passes the oldest and newest ABI
 * versions it speaks (both of major 1); the plugin picks the newest it also speaks, writes it to
 * *version_p and its table to *api_p.  No common version: MOECOMM_ERR_VERSION, and a sentence on
 * why in `why` (why_size bytes, NUL-terminated) when why is not NULL.  Thread-safe; may be called
 * more than once.
 */
typedef moecomm_result_t (*moecomm_get_api_v1_fn_t)(uint32_t min_version, uint32_t max_version,
                                                    uint32_t *version_p,
                                                    const moecomm_api_t **api_p, char *why,
                                                    size_t why_size);

#ifdef __cplusplus
}
#endif

#endif /* MOECOMM_H_ */
