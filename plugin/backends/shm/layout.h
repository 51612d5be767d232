/* SPDX-License-Identifier: Apache-2.0 */
/* layout.h - the shm backend's shared segment and its per-communicator state, shared by its files.
 *
 * One POSIX shared-memory segment per communicator, mapped by every member:
 *
 *   header page | ctl[size] (one 128-byte block per rank) | notes[size] | slots
 *
 * Slots: per rank two buffers (double buffering) of slot_bytes each; rank r writes only its own
 * two buffers and its own ctl block, every rank reads all of them.
 *
 * Synchronisation is a sequence of barriers numbered 1, 2, 3, ... identically on every member.
 * Arriving at barrier b stores b in the rank's ctl.step (release); waiting at b waits until every
 * peer's step has reached b (acquire).  Steps only grow, so a late reader never confuses two
 * barriers, and a futex on the step word sleeps without lost wake-ups (sync.c).
 *
 * Why double buffering is enough (no fast rank overwrites data a slow rank has not read):
 * every collective is a sequence of "uses"; a use copies data into buffer (use & 1) of the
 * writer's slot and then passes at least one barrier before anyone reads it.  A rank reads the
 * data of use u only before it arrives at the first barrier of use u+1 (its reads of use u are
 * program-ordered before that arrival).  A rank writes buffer (u & 1) again at use u+2 only after
 * it has passed the first barrier of use u+1, i.e. after every peer has arrived there, i.e. after
 * every peer has finished reading use u.  The release store of the arrival and the acquire load
 * of the wait order those reads before the overwrite. */
#ifndef MC_SHM_LAYOUT_H_
#define MC_SHM_LAYOUT_H_

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "../../comm.h"

#define MC_SHM_MAGIC 0x6d634d53u /* "SMcm" */
#define MC_SHM_LAYOUT 1u
#define MC_SHM_LINE                                                                            \
  128u                           /* ctl block: two cache lines, so adjacent-line prefetch of a \
                                    neighbour's block never steals ours */
#define MC_SHM_NOTE_BYTES 256u   /* per-rank error note read by peers after an abort */
#define MC_SHM_ALIGN 64u         /* slices and pieces of a buffer start on cache lines */
#define MC_SHM_PREFIX "moecomm-" /* names: "/" MC_SHM_PREFIX "<pid namespace>-<pid>-..." */

typedef struct mc_shm_hdr {
  uint32_t magic;
  uint32_t layout;
  int32_t size;               /* ranks in the comm */
  int32_t creator_pid;        /* group rank 0's pid */
  uint64_t slot_bytes;        /* bytes of one buffer of one rank */
  uint64_t total_bytes;       /* bytes of the whole segment */
  _Atomic uint32_t abort_any; /* non-zero once some rank gave up: see ctl[].aborted */
} mc_shm_hdr_t;

typedef struct mc_shm_ctl {
  _Atomic uint32_t step;    /* futex word: the last barrier this rank arrived at */
  _Atomic uint32_t waiters; /* peers sleeping (or about to) on step: wake only when non-zero */
  _Atomic uint32_t aborted; /* the code this rank gave up with (0: it has not); note: why */
  uint32_t pad0;
  _Atomic uint64_t desc[2]; /* the collective in progress, indexed by op number parity */
  unsigned char pad[MC_SHM_LINE - 32];
} mc_shm_ctl_t;

_Static_assert(sizeof(mc_shm_ctl_t) == MC_SHM_LINE, "ctl block must be exactly MC_SHM_LINE");

/* A mapped segment. */
typedef struct mc_shm_segment {
  void *base;
  size_t bytes;
  char name[224]; /* shm_open name, "/moecomm-<ns>-<pid>-<ctx id>-<comm key>" */
  int unlinked;   /* the name is gone from /dev/shm (creator only tracks this) */
} mc_shm_segment_t;

struct mc_shm_pair; /* a pair channel of send/recv (p2p.c) */

/* The backend's per-communicator state (comm->be[MOECOMM_BACKEND_SHM].priv). */
typedef struct mc_shm {
  mc_comm_t *comm;
  mc_shm_segment_t seg;
  mc_shm_hdr_t *hdr;
  mc_shm_ctl_t *ctl;    /* comm->size blocks */
  char *notes;          /* comm->size notes of MC_SHM_NOTE_BYTES */
  unsigned char *slots; /* rank r, buffer b at slots + (2 * r + b) * slot_bytes */
  size_t slot_bytes;
  const void **in;         /* comm->size input pointers for mc_shm_reduce */
  uint32_t step;           /* the last barrier this rank arrived at */
  uint64_t uses;           /* buffer fills so far: the next one uses buffer (uses & 1) */
  uint64_t ops;            /* collectives so far: the next one's descriptor goes to desc[ops & 1] */
  int64_t spin_ns;         /* polling before yielding or sleeping (0 when ranks outnumber CPUs) */
  int yields;              /* sched_yield calls before sleeping on a futex */
  moecomm_result_t broken; /* non-zero after a failure that left peers out of step */
  char cause[MC_ERR_MSG_MAX]; /* the message of that failure */
  struct mc_shm_pair **pairs; /* by peer index: send/recv channels, made by the first use */
} mc_shm_t;

#define MC_SHM_PAGE 4096u

/* Offsets inside a segment of `size` ranks (the layout at the top of this file). */
static inline size_t mc_shm_ctl_offset(void) {
  return MC_SHM_PAGE;
}
static inline size_t mc_shm_notes_offset(int size) {
  return MC_SHM_PAGE + (size_t)size * MC_SHM_LINE;
}
static inline size_t mc_shm_slots_offset(int size) {
  size_t end = mc_shm_notes_offset(size) + (size_t)size * MC_SHM_NOTE_BYTES;
  return (end + MC_SHM_PAGE - 1) / MC_SHM_PAGE * MC_SHM_PAGE;
}
/* Buffer b (0 or 1) of rank r's slot. */
static inline unsigned char *mc_shm_slot(const mc_shm_t *shm, int r, int b) {
  return shm->slots + (size_t)(2 * r + b) * shm->slot_bytes;
}
/* Bytes of a segment for `size` ranks with `slot_bytes` per buffer. */
static inline size_t mc_shm_segment_bytes(int size, size_t slot_bytes) {
  return mc_shm_slots_offset(size) + 2 * (size_t)size * slot_bytes;
}

#endif
