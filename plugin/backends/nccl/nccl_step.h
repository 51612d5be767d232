/* SPDX-License-Identifier: Apache-2.0 */
/* nccl_step.h - setup steps run on a helper thread the caller can give up on (nccl_step.c). */
#ifndef MC_NCCL_STEP_H_
#define MC_NCCL_STEP_H_

#include "nccl_priv.h"

typedef struct mc_nccl_step mc_nccl_step_t;
typedef void (*mc_nccl_step_fn_t)(mc_nccl_step_t *s);

enum { MC_STEP_RUNNING = 0, MC_STEP_DONE, MC_STEP_ABANDONED };

/* One setup step.  Inputs are set before mc_nccl_step_run; outputs are readable only when it
   returned SUCCESS (the helper finished).  Fields used depend on the step. */
struct mc_nccl_step {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  int state;                 /* MC_STEP_*: written under mu with atomic stores */
  int refs;                  /* caller and helper: the last one frees */
  mc_nccl_step_fn_t body;    /* on the helper thread, device already set */
  mc_nccl_step_fn_t cleanup; /* on the helper, when the caller gave up: frees what s holds */
  int device;
  /* init (nccl_comm.c) */
  int nranks, rank, max_ctas;
  ncclUniqueId id;
  cudaStream_t stream;  /* out: private stream of the warm-up */
  void *scratch;        /* out: warm-up buffer (stream-ordered allocation on stream) */
  size_t scratch_bytes; /* in */
  size_t free0;         /* out: cudaMemGetInfo free before init */
  uint64_t rss0;        /* out: resident set before init */
  ncclComm_t nc;        /* init: out; connect (nccl_p2p.c): in, the comm's communicator */
  unsigned char *peers; /* connect: 1 for each member to connect with (nranks entries) */
  ncclResult_t nr;      /* out: the failing NCCL call's result, ncclSuccess when all went well */
  cudaError_t ce;       /* out: the failing CUDA call's result */
  const char *where;    /* out: which call failed */
  char last[256];       /* out: ncclGetLastError at the failure */
};

/* In a body: runs a CUDA call; on failure records it in s->ce and s->where and returns. */
#define MC_STEP_CUDA(s, call)                \
  do {                                       \
    if (((s)->ce = (call)) != cudaSuccess) { \
      (s)->where = #call;                    \
      return;                                \
    }                                        \
  } while (0)

/* A step with refs = 1 (the caller's); NULL when out of memory. */
mc_nccl_step_t *mc_nccl_step_new(mc_nccl_step_fn_t body, mc_nccl_step_fn_t cleanup, int device);
/* Runs s->body on a detached helper thread and waits until it ends, a member on this host dies,
   or deadline_ms.  SUCCESS: the body ended (check s->nr, s->ce).  Otherwise p is marked failed
   with the reason (p->nc set to NULL: if it was in s, the helper owns it now) and the code is
   returned; s's resources then belong to the helper.  With p->mu held.  Either way the caller
   still calls mc_nccl_step_release(s). */
moecomm_result_t mc_nccl_step_run(mc_nccl_comm_t *p, mc_nccl_step_t *s, const char *what,
                                  int64_t deadline_ms);
void mc_nccl_step_release(mc_nccl_step_t *s);
/* In a body: records which call failed and NCCL's last error. */
void mc_nccl_step_fail(mc_nccl_step_t *s, const char *where, ncclComm_t nc);

#endif
