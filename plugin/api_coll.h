/* SPDX-License-Identifier: Apache-2.0 */
/* api_coll.h - the ABI's collective slots (api_coll.c). */
#ifndef MC_API_COLL_H_
#define MC_API_COLL_H_

#include "../abi/moecomm.h"

moecomm_result_t mc_api_all_reduce(moecomm_group_t *group, const void *send, void *recv,
                                   size_t count, moecomm_dtype_t dtype, moecomm_redop_t op,
                                   void *stream);
moecomm_result_t mc_api_all_gather(moecomm_group_t *group, const void *send, void *recv,
                                   size_t send_count, moecomm_dtype_t dtype, void *stream);
moecomm_result_t mc_api_reduce_scatter(moecomm_group_t *group, const void *send, void *recv,
                                       size_t recv_count, moecomm_dtype_t dtype, moecomm_redop_t op,
                                       void *stream);
moecomm_result_t mc_api_broadcast(moecomm_group_t *group, const void *send, void *recv,
                                  size_t count, moecomm_dtype_t dtype, int32_t root, void *stream);

/* ABI 1.2 */
moecomm_result_t mc_api_send(moecomm_group_t *group, const void *buf, size_t count,
                             moecomm_dtype_t dtype, int32_t peer, void *stream);
moecomm_result_t mc_api_recv(moecomm_group_t *group, void *buf, size_t count, moecomm_dtype_t dtype,
                             int32_t peer, void *stream);
moecomm_result_t mc_api_all_to_all(moecomm_group_t *group, const void *send, void *recv,
                                   size_t count, moecomm_dtype_t dtype, void *stream);
moecomm_result_t mc_api_all_to_all_v(moecomm_group_t *group, const void *send,
                                     const size_t *send_counts, const size_t *send_displs,
                                     void *recv, const size_t *recv_counts,
                                     const size_t *recv_displs, moecomm_dtype_t dtype,
                                     void *stream);
moecomm_result_t mc_api_all_reduce_rmsnorm(moecomm_group_t *group,
                                           const moecomm_rmsnorm_args_t *args, void *stream);

#endif
