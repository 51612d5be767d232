/* status.h - the sticky failure of a custom communicator (status.c). */
#ifndef MC_CUSTOM_STATUS_H_
#define MC_CUSTOM_STATUS_H_

#include "custom_priv.h"

/* The sticky failure of p (a kernel's timeout, a failed launch) as this call's error. */
moecomm_result_t mc_custom_check_dead(mc_custom_comm_t *p);

#endif
