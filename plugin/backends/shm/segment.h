/* SPDX-License-Identifier: Apache-2.0 */
/* segment.h - the shared segment of a communicator: create, map, unlink (segment.c). */
#ifndef MC_SHM_SEGMENT_H_
#define MC_SHM_SEGMENT_H_

#include "layout.h"

/* Collective over comm: group rank 0 creates the segment (O_CREAT|O_EXCL, after sweeping
   segments of dead processes), the others open and map it after an exchange, and once every
   member has mapped it (second exchange) rank 0 unlinks the name.  Rank 0 picks slot_bytes and
   writes the header; the others check it.  *seg_p written on success; on failure nothing is
   mapped or left in /dev/shm. */
moecomm_result_t mc_shm_segment_attach(mc_comm_t *comm, size_t slot_bytes, mc_shm_segment_t *seg_p);
void mc_shm_segment_detach(mc_shm_segment_t *seg);

/* "/moecomm-<pid namespace>-<creator_pid>-<context id>-<comm key><suffix>" into name: the name
   of a segment of comm made by process creator_pid (what the sweep reads back). */
void mc_shm_segment_name(const mc_comm_t *comm, int creator_pid, const char *suffix, char *name,
                         size_t cap);

/* Creates segment `name` of `bytes` zero bytes (after sweeping), reserves its pages and maps it;
   the caller unlinks it (detach does while seg->unlinked is 0).  A segment of that name already
   there: replace 1 replaces it (a leftover of a dead run), replace 0 returns MC_DEFER with no
   message (someone else made it).  *seg_p written on success; on failure nothing is mapped or
   left. */
moecomm_result_t mc_shm_segment_create(mc_comm_t *comm, const char *name, size_t bytes, int replace,
                                       mc_shm_segment_t *seg_p);

/* Opens and maps the existing segment `name` of `bytes` bytes (seg_p->unlinked set: not ours to
   unlink).  MC_DEFER, with no message: it does not exist yet, or its creator has not reserved
   its pages yet.  *seg_p written on success. */
moecomm_result_t mc_shm_segment_open(mc_comm_t *comm, const char *name, size_t bytes,
                                     mc_shm_segment_t *seg_p);

/* Unlinks /dev/shm/moecomm-<ns>-<pid>-* of this pid namespace whose <pid> no longer exists (runs
   killed during setup); nothing of another namespace, nothing when the namespace is unknown. */
void mc_shm_segment_sweep(void);

/* This process's pid namespace (the inode of /proc/self/ns/pid), 0 when unknown. */
unsigned long long mc_shm_pid_namespace(void);

#endif
