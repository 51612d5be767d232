/* SPDX-License-Identifier: Apache-2.0 */
/* harness.h - the test harness every test binary uses.
 *
 * A binary counts checks, not functions: each MC_CHECK is one passed or failed check.  It ends by
 * calling mc_test_finish(), which prints "TESTSUM <passed> <failed> <skipped>" for tests/run.sh and
 * a human line "<name>: N passed, N failed, N skipped", and returns the exit status.
 *
 * Multi-process tests run ranks with mc_test_ranks(): each child counts its own checks and the
 * parent folds them into its totals (a child that dies or times out is one failed check). */
#ifndef MC_TEST_HARNESS_H_
#define MC_TEST_HARNESS_H_

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "../../abi/moecomm.h"
#include "../../host_shim/lib/loader.h"

void mc_test_init(const char *name, int argc, char **argv);
int mc_test_finish(void);

/* Records one check; on failure prints file:line, the expression and the message. Returns ok. */
int mc_test_check(int ok, const char *file, int line, const char *expr, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
#define MC_CHECK(cond, ...) mc_test_check(!!(cond), __FILE__, __LINE__, #cond, __VA_ARGS__)
/* Check that a moecomm call returned `want`; prints both codes and last_error on mismatch.
   `got` is evaluated once (it may be the call itself); last_error is read only on a mismatch. */
int mc_test_check_rc(const moecomm_api_t *api, const moecomm_context_t *ctx, int got, int want,
                     const char *file, int line, const char *expr);
#define MC_CHECK_RC(api, ctx, got, want) \
  mc_test_check_rc((api), (ctx), (int)(got), (int)(want), __FILE__, __LINE__, #got " == " #want)

/* Records a skipped case with a visible line "SKIP <name>: <why>". */
void mc_test_skip(const char *what, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Loads the plugin the way an engine does (host_shim/lib/loader.c), negotiating the current ABI.
   Exits the test with a failure when it cannot. */
const moecomm_api_t *mc_test_plugin(void);

/* The build directory this binary belongs to (from /proc/self/exe): BUILD for BUILD/tests/x,
   BUILD/tests/<dir>/x (core, gpu, ...) and BUILD/bench/x.  0 on success. */
int mc_test_build_dir(char *out, size_t size);

/* Runs `sh -c cmd` with stderr merged into stdout; up to n-1 bytes of the output go to out
   (NUL-terminated; out may be NULL), the rest is read and dropped.  Returns the exit status,
   128+N for signal N, -1 when it could not run. */
int mc_test_shell(const char *cmd, char *out, size_t n);

/* Copies a regular file, giving the copy `mode`.  0 on success. */
int mc_test_copy_file(const char *src, const char *dst, mode_t mode);

/* Environment changes from a NULL-terminated list (NULL: none): "NAME=value" sets NAME, "NAME"
   unsets it. */
void mc_test_env_apply(const char *const *env);

/* Runs fn(rank, world, arg) in `world` forked processes with the shim's host all-gather; the
   children's check counts are added to this process's.  Returns the number of ranks that failed
   (non-zero exit, crash, or timeout_s passed). */
typedef int (*mc_test_rank_fn_t)(int rank, int world, void *arg);
int mc_test_ranks(int world, mc_test_rank_fn_t fn, void *arg, int timeout_s);
/* In a rank of mc_test_ranks: this rank is about to die on purpose (killed by the test, or left to
   the launcher's timeout); mc_test_ranks then counts its checks so far but not its death. */
void mc_test_rank_expect_death(void);

/* Context params for a rank of mc_test_ranks (host all-gather bootstrap); for a world of one the
   all-gather is a copy, so such a context works in any process. */
moecomm_context_params_t mc_test_ctx_params(const moecomm_topology_t *topo, int device);
moecomm_topology_t mc_test_topo(int world, int rank, int tp);
/* Scatter-mode transition arguments (ABI 1.1), struct_size set. */
moecomm_scatter_args_t mc_test_scatter_args(int from, int to, int reduce, moecomm_dtype_t dtype,
                                            size_t hidden, const int32_t *tokens, void *send,
                                            void *recv);

/* A TCP port on 127.0.0.1 that nothing listened on a moment ago (for MOECOMM_STORE); -1 on
   error. */
int mc_test_free_port(void);

/* Number of CUDA devices (0 on a machine without a GPU or without CUDA support built in). */
int mc_test_gpu_count(void);
/* 1 when this machine has at least n CUDA devices; else the whole binary is one visible skip
   ("SKIP <name>: needs n CUDA devices, this machine has m") and 0. */
int mc_test_need_gpus(int n);

/* A CUDA runtime call's result (cudaError_t as an int): 1 on cudaSuccess, else one failed check
   naming the call and CUDA's reason. */
int mc_test_cuda_check(int err, const char *file, int line, const char *expr);
#define MC_CUDA_OK(call) mc_test_cuda_check((int)(call), __FILE__, __LINE__, #call)

/* Deterministic random numbers (splitmix64), the same on every rank for the same seed. */
uint64_t mc_test_rand(uint64_t *state);
/* Fills n elements of dtype with non-zero random values that are exactly representable and whose
   sums over up to 64 ranks stay exact in the dtype (small integers times a power of two). */
void mc_test_fill(void *buf, size_t n, moecomm_dtype_t dtype, uint64_t seed);
/* Element i of buf as double. */
double mc_test_get(const void *buf, size_t i, moecomm_dtype_t dtype);
/* Converts between float and fp16/bf16 bits (round to nearest even). */
uint16_t mc_test_to_half(float f);
uint16_t mc_test_to_bf16(float f);
float mc_test_from_half(uint16_t h);
float mc_test_from_bf16(uint16_t b);

#endif
