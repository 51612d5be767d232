/* setup.h - creating and freeing the custom backend's state of a communicator (setup.c). */
#ifndef MC_CUSTOM_SETUP_H_
#define MC_CUSTOM_SETUP_H_

#include "custom_priv.h"
moecomm_result_t mc_custom_comm_init(mc_comm_t *comm);
void mc_custom_comm_fini(mc_comm_t *comm);

#endif
