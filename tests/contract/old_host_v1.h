/* SPDX-License-Identifier: Apache-2.0 */
/* old_host_v1.h - a host built against the frozen ABI 1.0 header (lib_old_host_v1.c).  This header
 * includes no moecomm header, so a test built against the current one can call it. */
#ifndef MC_TESTS_ABI_OLD_HOST_V1_H_
#define MC_TESTS_ABI_OLD_HOST_V1_H_

#include <stddef.h>

typedef int (*old_host_allgather_fn_t)(void *user, const void *send, void *recv, size_t bytes);

/* sizeof() of an ABI struct as abi/moecomm_v1.h lays it out ("moecomm_api_t", ...); 0 when the
   1.0 header has no such struct. */
size_t old_host_v1_sizeof(const char *type_name);

/* What an old host leaves in the padding of the structs it passes: C does not define it. */
typedef enum old_host_padding {
  OLD_HOST_PAD_ZERO = 0,    /* memset to 0 first (a careful host, or ctypes) */
  OLD_HOST_PAD_GARBAGE = 1, /* stack garbage: every padding byte 0xA5 */
  OLD_HOST_PAD_ONE = 2      /* the first padding byte of the context params is 1, the rest 0 */
} old_host_padding_t;

/* One rank of `world` (tp = world): dlopens plugin_path, negotiates ABI 1.0..1.0 through the
   entry symbol, creates a CPU context with 1.0-sized structs, and checks context_info, group
   stats (default communicator sharing: WORLD and TP share one), an int32 all-reduce and an fp32
   all-gather against exact expected values, plan_capture_sizes, then destroys the context.
   Returns 0 when everything matched; otherwise 1 and a sentence in why. */
int old_host_v1_run(const char *plugin_path, int rank, int world, old_host_allgather_fn_t ag,
                    void *ag_user, old_host_padding_t padding, char *why, size_t why_size);

#endif
