/* nccl_comm.h - creating and destroying the NCCL communicator of a comm (nccl_comm.c). */
#ifndef MC_NCCL_COMM_H_
#define MC_NCCL_COMM_H_

#include "nccl_priv.h"

moecomm_result_t mc_nccl_comm_init(mc_comm_t *comm);
void mc_nccl_comm_fini(mc_comm_t *comm);

#endif
