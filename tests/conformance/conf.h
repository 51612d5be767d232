/* SPDX-License-Identifier: Apache-2.0 */
/* conf.h - the pieces of the backend-conformance suite (tests/conformance/): one collective
 * matrix, run the same way against every backend.
 *
 *   lib_data.c  inputs each rank regenerates for its peers, and the exact expected outputs
 *   lib_mem.c   buffers in host memory (shm) or device memory (nccl, custom) behind one interface
 *   lib_case.c  one collective: poisoned outputs and guards, the call, the exact comparison
 *   lib_real.c  all-reduces of non-integer values: exact rounding, the same bits on every rank
 *   lib_swap.c  one rank's contexts with different backend settings side by side */
#ifndef MC_CONF_H_
#define MC_CONF_H_

#include <stddef.h>
#include <stdint.h>

#include "../../host_shim/lib/data.h"
#include "../common/harness.h"

enum { CONF_AR = 0, CONF_AG, CONF_RS, CONF_BC, CONF_NCOLL };

/* A backend setting under test. */
typedef struct conf_backend {
  const char *name;       /* "shm", "nccl", "custom:ll", ... */
  const char *const *env; /* NULL-terminated "NAME=value" list, set around context_create */
  const char *stats_name; /* group_stats backend_name the TP group must report */
  int gpu;                /* device buffers; rank r uses CUDA device r */
  int fp32_accum;         /* 16-bit floats are summed in fp32 whatever the world size */
  int custom;             /* the custom path: all-reduce of floats, the rest handed to NCCL */
  int byte_offsets;       /* also buffers 2 bytes off an element boundary */
  size_t chunk_bytes;     /* the size the backend moves data in (0: shm's, see conf_chunk) */
  const size_t *big;      /* 0-terminated extra counts (elements) for world 2 on a GPU */
} conf_backend_t;

/* One rank's view of the run. */
typedef struct conf_rank {
  const moecomm_api_t *api;
  moecomm_context_t *ctx;
  const conf_backend_t *be;
  int rank, world;
  void *stream; /* cudaStream_t on a GPU backend; NULL otherwise */
} conf_rank_t;

/* A group and what the test issued on it (compared with group_stats at the end). */
typedef struct conf_group {
  moecomm_group_t *g;
  moecomm_group_stats_t st;
  uint64_t calls;      /* collectives issued */
  uint64_t not_custom; /* ... of which the custom path does not serve (not a float all-reduce) */
} conf_group_t;

typedef struct conf_case {
  int coll; /* CONF_AR ... */
  int inplace;
  moecomm_dtype_t dt;
  moecomm_redop_t op;     /* all_reduce, reduce_scatter */
  int root;               /* broadcast: group rank */
  size_t n;               /* all_reduce/broadcast: count; all_gather: send count; reduce_scatter:
                             receive count */
  size_t off_in, off_out; /* bytes past an aligned address */
  uint64_t id;            /* seeds the inputs */
} conf_case_t;

/* ---- lib_data.c ---- */
/* A rank's input for a case: the host library's test data (non-zero integers in [-4, 4]). */
shim_data_key_t conf_key(uint64_t case_id, int world_rank);
/* The whole expected output of case c (its output count of elements) into want, from the group
   members' input keys; 1 on success (0: out of memory). */
int conf_expect(const conf_case_t *c, const shim_data_key_t *keys, int size, int me, void *want);
uint64_t conf_digest(uint64_t h, const void *p, size_t n);
const char *conf_coll_name(int coll);
const char *conf_op_name(moecomm_redop_t op);

/* ---- lib_mem.c ---- */
/* This rank's view (the plugin loaded, no context yet); on a GPU backend it selects the rank's
   device and makes its stream.  1 on success. */
int conf_mem_open(conf_rank_t *r, const conf_backend_t *be, int rank, int world);
void conf_mem_close(conf_rank_t *r);
/* A buffer of bytes: *dev_p is what the collective gets, *host_p its host image (the same
   pointer on shm).  1 on success (one failed check otherwise). */
int conf_mem_alloc(const conf_rank_t *r, size_t bytes, unsigned char **dev_p,
                   unsigned char **host_p);
void conf_mem_free(const conf_rank_t *r, unsigned char *dev, unsigned char *host);
/* Host image -> buffer, buffer -> host image (no-ops on shm); 1 on success. */
int conf_mem_put(const conf_rank_t *r, unsigned char *dev, const unsigned char *host, size_t n);
int conf_mem_get(const conf_rank_t *r, unsigned char *host, const unsigned char *dev, size_t n);
/* Waits for the stream, never for ever: a hung collective is one failed check. */
int conf_mem_sync(const conf_rank_t *r, const char *what);

/* ---- lib_case.c ---- */
/* Runs case c on group grp (every member with the same case); 1 when it passed.  *digest_p (may
   be NULL) accumulates the output's bytes. */
int conf_run_case(const conf_rank_t *r, conf_group_t *grp, const conf_case_t *c,
                  uint64_t *digest_p);
/* The group's handle and stats; 1 on success. */
int conf_group_get(const conf_rank_t *r, moecomm_group_kind_t kind, conf_group_t *grp);

/* ---- lib_real.c ---- */
/* A sum all-reduce of n non-integer values of dt on grp.  exact: each element's sum is exact in
   fp32 and the result must be its round-to-nearest-even; else the sums round and every rank must
   get the same bits within the accumulation bound of a float64 reference.  1 when it passed. */
int conf_run_real(const conf_rank_t *r, conf_group_t *grp, moecomm_dtype_t dt, int exact, size_t n,
                  uint64_t case_id);

/* ---- lib_swap.c ---- */
/* Contexts with each of `n` settings alive at once on this rank (world 2, tp 2, ep 2): settings
   whose refusal is NULL must run, report those backends, and give the same bits; the others
   must be refused with that text in the message.  Returns the number of failed checks' cases. */
typedef struct conf_setting {
  const char *const *env; /* NULL-terminated "NAME=value" */
  const char *tp, *world; /* backend names TP and WORLD must report; NULL: not checked */
  int refusal;            /* 0: must run; else the moecomm_result_t context_create must return */
  const char *why;        /* refusal: text the message must contain */
} conf_setting_t;
int conf_swap(const conf_rank_t *r, const conf_setting_t *settings, int n);

/* Sets each "NAME=value" of env (NULL: none); conf_env_unset removes those names again. */
void conf_env_set(const char *const *env);
void conf_env_unset(const char *const *env);

#endif
