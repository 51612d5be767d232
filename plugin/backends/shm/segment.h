/* segment.h - the shared segment of a communicator: create, map, unlink (segment.c). */
#ifndef MC_SHM_SEGMENT_H_
#define MC_SHM_SEGMENT_H_

#include "layout.h"

/* Collective over comm: group rank 0 creates the segment (O_CREAT|O_EXCL, after sweeping
   segments of dead processes), the others open and map it after an exchange, and once every
   member has mapped it (second exchange) rank 0 unlinks the name.  Rank 0 picks slot_bytes and
   writes the header; the others check it.  *seg_p written on success; on failure nothing is
   mapped or left in /dev/shm. */
moecomm_result_t mc_shm_segment_attach(mc_comm_t *comm, size_t slot_bytes,
                                       mc_shm_segment_t *seg_p);
void mc_shm_segment_detach(mc_shm_segment_t *seg);

/* Unlinks /dev/shm/moecomm-<pid>-* whose <pid> no longer exists (runs killed during setup). */
void mc_shm_segment_sweep(void);

#endif
