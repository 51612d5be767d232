/* SPDX-License-Identifier: Apache-2.0 */
/* route.h - the routing policy: every rule that decides which backend, and which custom
 * algorithm, serves a call lives in route.c and reads top to bottom.  Backends only say what they
 * can do (backend.h: caps and limits). */
#ifndef MC_ROUTE_H_
#define MC_ROUTE_H_

#include <stddef.h>

#include "backend.h"
#include "context.h"

/* Context creation: each group's backend (environment, CPU or GPU, group kind, hosts, what this
   machine can run) and the communicators' hints.  An explicit request that cannot be met is an
   error naming the variable; auto never is. */
moecomm_result_t mc_route_groups(mc_context_t *ctx);

/* One call on group: the backend that serves it now, with c->algo (and c->chunk) set for
   backends that have several algorithms; MOECOMM_BACKEND_NONE: nothing to launch on a backend
   as it is: a group of one rank (the call is a local copy), or an all_reduce_rmsnorm that no
   fused kernel takes (collective.c runs it unfused).  The chosen backend may lack the call's
   kind: the caller handles that (collective.c).  Creates the chosen backend's communicator state
   when needed (lazy.h), since what a custom communicator can take is known only once it exists.
   Deterministic mode: a float reduction no backend can keep independent of the size is refused
   (MOECOMM_ERR_NOT_SUPPORTED, naming why). */
moecomm_result_t mc_route_call(mc_group_t *group, mc_coll_t *c, moecomm_backend_t *backend_p);

/* Which backend serves expert-parallel dispatch/combine on the MOE_EP group (rule 11); the one
   that created its buffers once it has. */
moecomm_result_t mc_route_moe_backend(const mc_group_t *group, moecomm_backend_t *be_p);

/* The custom all-reduce algorithm (MC_KERN_*) for `bytes` on `members` ranks, or 0 (hand it to
   NCCL): the measured table, MOECOMM_ALGO, and what the communicator can take.  The same answer
   on every member.  Exposed for the tests of the table. */
int mc_route_custom_algo(const mc_config_t *cfg, int members, size_t bytes, int capturing,
                         const mc_backend_limits_t *limits);

/* The fused all_reduce_rmsnorm kernel (MC_KERN_LL, MC_KERN_ONESHOT_PUSH, MC_KERN_TWOSHOT_PUSH)
   for tokens x hidden of dtype on members ranks, or 0 (run it unfused): its table, MOECOMM_ALGO,
   and what the communicator can take (every plan checked with mc_kern_plan_rmsnorm).  The same
   answer on every member.  Exposed for the tests of the table. */
int mc_route_fused_algo(const mc_config_t *cfg, int members, size_t tokens, size_t hidden,
                        int dtype, const mc_backend_limits_t *limits);

/* Whether the fused kernels can take these operands at all: hidden a multiple of 8 up to
   MC_KERN_ROW_MAX_H, eps at most 3.4e38 (the kernels' bound: finite), x, residual, weight, out
   (and out_fp8) 16-byte aligned.  Alignment is a local fact: ranks whose buffers are aligned
   differently would run different kernels (fused on some, the unfused pipeline on others) and
   time out, as ranks that pass different sizes do; buffers are expected to be laid out alike on
   every rank, as tensor-parallel engines allocate them. */
int mc_route_fused_possible(const mc_rmsnorm_t *n);

/* What group_stats reports: the backend that serves the group's calls (the one chosen at context
   creation, or NCCL once the custom communicator declined), and in *name_p the backends that
   actually served its calls so far ("custom+nccl" when some went each way; static storage). */
moecomm_backend_t mc_route_group_backend(const mc_group_t *group, const char **name_p);

/* "ll", "oneshot", "twoshot", "twoshot_push", "oneshot_push", "nccl" for logs and the
   benchmark. */
const char *mc_route_algo_name(int algo);

#endif
