/* SPDX-License-Identifier: Apache-2.0 */
/* peer.h - peer memory of a custom communicator (peer.c). */
#ifndef MC_CUSTOM_PEER_H_
#define MC_CUSTOM_PEER_H_

#include "custom_priv.h"

/* Base address and IPC handle of the allocation that holds ptr (a cudaMalloc'ed buffer). */
moecomm_result_t mc_custom_export(const void *ptr, mc_custom_export_t *exp_p, mc_err_t *err);

/* Address in this process of member's allocation `exp` (opened once, then cached). */
moecomm_result_t mc_custom_open(mc_custom_comm_t *p, int member, const mc_custom_export_t *exp,
                                char **base_p, mc_err_t *err);

/* Closes every peer allocation opened by mc_custom_open. */
void mc_custom_close_all(mc_custom_comm_t *p);

/* Reads 8 bytes at src (a peer's mapped memory) into *value_p through the private stream. */
moecomm_result_t mc_custom_peek(mc_custom_comm_t *p, const void *src, uint64_t *value_p,
                                mc_err_t *err);

#endif
