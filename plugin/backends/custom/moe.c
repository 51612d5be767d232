/* SPDX-License-Identifier: Apache-2.0 */
/* moe.c - expert-parallel dispatch and combine over NVLink (moe.h).
 *
 * One kernel per call (kernels/mc_ep.h, "NVLink path"): each member writes its rows straight into
 * the other members' segments and raises flags there; the receivers spin on their own memory with
 * MOECOMM_TIMEOUT_MS as the limit, so a member that never comes is an error recorded by the
 * kernel and reported by the next call, not a hang.  Nothing else runs on the host per call: one
 * look at the host-mapped error record and one launch (ep_dev.h).  The kernels touch only the
 * caller's buffers and the pre-mapped segments, so a captured call needs no registration.
 *
 * moe_init is this backend's own set-up, separate from the all-reduce's (setup.c), so a group
 * that only dispatches does not pay for all-reduce buffers: (A) every member allocates its
 * segment, writes a random word in the header bytes the kernels leave alone and exports the
 * segment; an agreement shares the exports; (B) every member checks the P2P path to every other
 * GPU, maps every segment (peer.c) and reads the word back through the mapping; an agreement
 * ends it.  A failure anywhere in A or B makes every member decline (MC_DEFER): moe.c then
 * takes the NCCL path. */
#include "moe.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../log.h"
#include "../../util.h"
#include "../ep_dev.h"
#include "peer.h"
#include "setup.h"

#define MC_CUSTOM_EP_FEATURE "the NVLink expert-parallel path"

/* Where the access check's word lives: header bytes no kernel uses (mc_ep.h's state at 0, the
   combine flags at MC_EP_CFLAG_OFF). */
#define MC_CUSTOM_EP_CHECK_OFF 2048
_Static_assert(sizeof(mc_ep_state_t) <= MC_EP_CFLAG_OFF &&
                   MC_EP_CFLAG_OFF + 8 * MC_EP_MAX_NVL_RANKS <= MC_CUSTOM_EP_CHECK_OFF &&
                   MC_CUSTOM_EP_CHECK_OFF + 8 <= MC_EP_SEG_HEADER,
               "the check word sits in unused segment header bytes");

/* comm->be[MOECOMM_BACKEND_CUSTOM].moe */
typedef struct mc_custom_moe {
  mc_ep_dev_t dev;
  mc_custom_comm_t peers; /* what peer.c uses: comm, pid, stream and the peers' opened segments */
} mc_custom_moe_t;

/* What a member publishes in step A. */
typedef struct mc_custom_moe_rec {
  uint64_t nonce;         /* the word at MC_CUSTOM_EP_CHECK_OFF */
  mc_custom_export_t seg; /* the segment */
  char bus_id[32];        /* its GPU */
} mc_custom_moe_rec_t;

static void mc_custom_moe_free(mc_custom_moe_t *m) {
  if (m == NULL) return;
  if (m->peers.comm != NULL) mc_custom_close_all(&m->peers);
  mc_ep_dev_close(&m->dev);
  free(m);
}

/* A: the segment, its check word and its export. */
static int mc_custom_moe_local(mc_comm_t *comm, const mc_ep_layout_t *layout, mc_custom_moe_t *m,
                               mc_custom_moe_rec_t *rec, mc_err_t *why) {
  cudaError_t e;
  if (mc_ep_dev_open(comm, layout, &m->dev, why) != MOECOMM_SUCCESS) return 0;
  m->peers.comm = comm;
  m->peers.pid = (int)getpid();
  m->peers.stream = m->dev.stream;
  rec->nonce = ((uint64_t)(uint32_t)m->peers.pid << 32) ^ (uint64_t)mc_now_ms() ^
               (0xd1b54a32d192ed03ull * (uint64_t)(comm->rank + 1));
  if ((e = cudaMemcpyAsync(m->dev.proto.seg + MC_CUSTOM_EP_CHECK_OFF, &rec->nonce, 8,
                           cudaMemcpyHostToDevice, m->dev.stream)) != cudaSuccess ||
      (e = cudaStreamSynchronize(m->dev.stream)) != cudaSuccess) {
    mc_err_set(why, MOECOMM_ERR_BACKEND, "writing the segment's check word: %s",
               cudaGetErrorString(e));
    return 0;
  }
  if (cudaDeviceGetPCIBusId(rec->bus_id, (int)sizeof(rec->bus_id), comm->device) != cudaSuccess) {
    (void)cudaGetLastError();
    snprintf(rec->bus_id, sizeof(rec->bus_id), "pid%d-dev%d", m->peers.pid, comm->device);
  }
  return mc_custom_export(m->dev.proto.seg, &rec->seg, why) == MOECOMM_SUCCESS;
}

/* B: a P2P path to every member's GPU this process can see, every segment mapped and its word
   read back through the mapping. */
static int mc_custom_moe_map(mc_custom_moe_t *m, mc_custom_moe_rec_t *recs, mc_err_t *why) {
  mc_comm_t *comm = m->dev.comm;
  for (int i = 0; i < comm->size; i++) {
    uint64_t seen = 0;
    int dev = -1, can = 0;
    recs[i].bus_id[sizeof(recs[i].bus_id) - 1] = '\0';
    if (i != comm->rank && cudaDeviceGetByPCIBusId(&dev, recs[i].bus_id) == cudaSuccess &&
        (cudaDeviceCanAccessPeer(&can, comm->device, dev) != cudaSuccess || !can)) {
      (void)cudaGetLastError();
      mc_err_set(why, MOECOMM_ERR_UNAVAILABLE, "no P2P path from this GPU to rank %d's GPU %s",
                 (int)comm->ranks[i], recs[i].bus_id);
      return 0;
    }
    (void)cudaGetLastError(); /* a GPU this process cannot see: the mapping below decides */
    if (mc_custom_open(&m->peers, i, &recs[i].seg, &m->dev.proto.peer[i], why) != MOECOMM_SUCCESS ||
        mc_custom_peek(&m->peers, m->dev.proto.peer[i] + MC_CUSTOM_EP_CHECK_OFF, &seen, why) !=
            MOECOMM_SUCCESS)
      return 0;
    if (seen != recs[i].nonce) {
      mc_err_set(why, MOECOMM_ERR_UNAVAILABLE,
                 "reading rank %d's segment through its mapping gave 0x%llx, not 0x%llx",
                 (int)comm->ranks[i], (unsigned long long)seen, (unsigned long long)recs[i].nonce);
      return 0;
    }
  }
  return 1;
}

moecomm_result_t mc_custom_moe_init(mc_comm_t *comm, const mc_ep_layout_t *layout) {
  mc_comm_backend_t *be = &comm->be[MOECOMM_BACKEND_CUSTOM];
  mc_custom_moe_t *m = calloc(1, sizeof(*m));
  mc_custom_moe_rec_t rec, *recs = calloc((size_t)comm->size, sizeof(*recs));
  uint64_t dev_bytes = 0, host_bytes = 0;
  moecomm_result_t r;
  mc_err_t why;
  int ok;
  if (m == NULL || recs == NULL) {
    free(m);
    free(recs);
    return mc_err_set(comm->err, MOECOMM_ERR_NO_MEMORY, "out of host memory");
  }
  memset(&rec, 0, sizeof(rec));
  mc_err_clear(&why);
  ok = mc_custom_moe_local(comm, layout, m, &rec, &why);
  r = mc_custom_agree(comm, MC_CUSTOM_EP_FEATURE, "NVLink expert-parallel segments", ok, &why, &rec,
                      recs, sizeof(rec));
  if (r == MOECOMM_SUCCESS) {
    mc_err_clear(&why);
    ok = mc_custom_moe_map(m, recs, &why);
    r = mc_custom_agree(comm, MC_CUSTOM_EP_FEATURE, "NVLink expert-parallel access check", ok, &why,
                        NULL, NULL, 0);
  }
  free(recs);
  if (r != MOECOMM_SUCCESS) {
    mc_custom_moe_free(m);
    return r;
  }
  mc_ep_dev_bytes(&m->dev, &dev_bytes, &host_bytes);
  be->moe = m;
  be->device_bytes += dev_bytes;
  be->host_bytes += host_bytes;
  MC_INFO("NVLink expert parallelism on %s: %.1f MiB of device memory per rank", comm->label,
          (double)dev_bytes / 1048576.0);
  return MOECOMM_SUCCESS;
}

void mc_custom_moe_fini(mc_comm_t *comm) {
  mc_comm_backend_t *be = &comm->be[MOECOMM_BACKEND_CUSTOM];
  mc_custom_moe_t *m = be->moe;
  uint64_t dev_bytes = 0, host_bytes = 0;
  if (m == NULL) return;
  mc_ep_dev_bytes(&m->dev, &dev_bytes, &host_bytes);
  be->device_bytes -= MC_MIN(be->device_bytes, dev_bytes);
  be->host_bytes -= MC_MIN(be->host_bytes, host_bytes);
  mc_custom_moe_free(m);
  be->moe = NULL;
}

static moecomm_result_t mc_custom_moe_run(mc_comm_t *comm, const mc_moe_call_t *call, int combine) {
  mc_custom_moe_t *m = comm->be[MOECOMM_BACKEND_CUSTOM].moe;
  moecomm_result_t report = MOECOMM_SUCCESS, r;
  mc_err_t msg;
  mc_ep_args_t a;
  if ((r = mc_ep_dev_begin(&m->dev, call, combine, &a, &report, &msg)) != MOECOMM_SUCCESS) return r;
  r = mc_ep_dev_launched(
      &m->dev, combine ? mc_ep_combine(&a, call->stream) : mc_ep_dispatch(&a, call->stream),
      combine ? "combine" : "dispatch");
  return r != MOECOMM_SUCCESS ? r : mc_ep_dev_end(&m->dev, call, report, &msg);
}

moecomm_result_t mc_custom_moe_dispatch(mc_comm_t *comm, const mc_moe_call_t *call) {
  return mc_custom_moe_run(comm, call, 0);
}

moecomm_result_t mc_custom_moe_combine(mc_comm_t *comm, const mc_moe_call_t *call) {
  return mc_custom_moe_run(comm, call, 1);
}
