/* shm.h - the shm backend: collectives between the CPU processes of one host over shared memory
 * (shm.c; the segment's layout and the double-buffering argument: layout.h). */
#ifndef MC_SHM_H_
#define MC_SHM_H_

#include "../../backend.h"

extern const mc_backend_ops_t mc_shm_ops;

#endif
