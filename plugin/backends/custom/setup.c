/* SPDX-License-Identifier: Apache-2.0 */
/* setup.c - creating and freeing the custom backend's state of a communicator.
 *
 * comm_init is collective over the comm and decides the same thing on every member: every step
 * that can fail locally (a missing P2P path, an allocation, an IPC open, the access check) is
 * followed by an exchange of the outcome, and any failure anywhere makes every member return
 * MC_DEFER (the comm then uses NCCL) with an INFO line saying why.  Only a failed exchange (a
 * peer that is gone) is an error.  It may run while the caller's stream is captured (relaxed
 * mode): it uses its own non-blocking stream and never the caller's or the legacy stream. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../gpu.h"
#include "../../log.h"
#include "../../util.h"
#include "setup.h"

#include "peer.h"

/* Exchange A: what must be equal, and where each member runs. */
typedef struct mc_custom_hello {
  int32_t algo;
  int32_t timeout_ms;
  uint64_t buffer_bytes;
  uint64_t max_bytes;
  int32_t max_blocks;    /* grid shapes must match: the barrier pairs block b with block b */
  int32_t deterministic; /* routing differs with it (route.c rule 10): members must agree */
  int32_t pid;
  char bus_id[32];
} mc_custom_hello_t;

/* Agreement B's payload: a member's segment. */
typedef struct mc_custom_seg_rec {
  uint64_t nonce;         /* written in the segment's check word */
  mc_custom_export_t seg; /* the segment */
} mc_custom_seg_rec_t;

/* Frees whatever p holds (any subset); p itself too. */
static void mc_custom_teardown(mc_custom_comm_t *p) {
  cudaError_t e;
  if (p == NULL) return;
  if (p->stream != NULL && (e = cudaStreamSynchronize(p->stream)) != cudaSuccess)
    MC_WARN("custom backend of %s: cudaStreamSynchronize: %s", p->comm->label,
            cudaGetErrorString(e));
  mc_custom_close_all(p);
  if (p->table != NULL && (e = cudaFree(p->table)) != cudaSuccess)
    MC_WARN("custom backend of %s: cudaFree(table): %s", p->comm->label, cudaGetErrorString(e));
  if (p->scratch != NULL && (e = cudaFree(p->scratch)) != cudaSuccess)
    MC_WARN("custom backend of %s: cudaFree(scratch): %s", p->comm->label, cudaGetErrorString(e));
  if (p->seg_local != NULL && (e = cudaFree(p->seg_local)) != cudaSuccess)
    MC_WARN("custom backend of %s: cudaFree(segment): %s", p->comm->label, cudaGetErrorString(e));
  if (p->err_host != NULL && (e = cudaFreeHost(p->err_host)) != cudaSuccess)
    MC_WARN("custom backend of %s: cudaFreeHost: %s", p->comm->label, cudaGetErrorString(e));
  if (p->stream != NULL && (e = cudaStreamDestroy(p->stream)) != cudaSuccess)
    MC_WARN("custom backend of %s: cudaStreamDestroy: %s", p->comm->label, cudaGetErrorString(e));
  free(p->pending);
  free(p);
}

/* Local part of the setup: device checks, P2P with every member, memory.  On failure the reason
   is in why (nothing is torn down here: the caller does that after telling the others). */
static moecomm_result_t mc_custom_setup_local(mc_custom_comm_t *p, const mc_custom_hello_t *all,
                                              uint64_t nonce, mc_err_t *why) {
  mc_comm_t *comm = p->comm;
  const mc_config_t *cfg = comm->cfg;
  const size_t ll_slot = 2 * (size_t)MC_CUSTOM_LL_BYTES;
  const size_t ll_off = MC_KERN_HEADER_BYTES;
  const size_t stage_off = (ll_off + 2 * (size_t)comm->size * ll_slot + 4095) & ~(size_t)4095;
  size_t half = (cfg->custom.buffer_bytes / 2) & ~(size_t)255;
  mc_kern_state_t st;
  cudaError_t e;

  e = (cudaError_t)mc_kern_check_device();
  if (e != cudaSuccess)
    return mc_err_set(why, MOECOMM_ERR_UNAVAILABLE,
                      "the custom kernels cannot run on device %d (%s); they are built for "
                      "sm_90 and newer",
                      comm->device, cudaGetErrorString(e));
  for (int r = 0; r < comm->size; r++) {
    int dev = -1, can = 0;
    if (r == comm->rank) continue;
    if (strcmp(all[r].bus_id, all[comm->rank].bus_id) == 0)
      return mc_err_set(why, MOECOMM_ERR_UNAVAILABLE, "ranks %d and %d share GPU %s",
                        (int)comm->ranks[comm->rank], (int)comm->ranks[r], all[r].bus_id);
    /* A member's GPU that this process cannot see is checked by the access test instead. */
    if (cudaDeviceGetByPCIBusId(&dev, all[r].bus_id) != cudaSuccess) {
      (void)cudaGetLastError();
      continue;
    }
    MC_CUDA_TRY(why, cudaDeviceCanAccessPeer(&can, comm->device, dev));
    if (!can)
      return mc_err_set(why, MOECOMM_ERR_UNAVAILABLE, "no P2P path between GPU %s and GPU %s",
                        all[comm->rank].bus_id, all[r].bus_id);
  }
  if (half < 256) half = 256;
  p->seg_bytes = stage_off + 2 * half;
  MC_CUDA_TRY(why, cudaStreamCreateWithFlags(&p->stream, cudaStreamNonBlocking));
  MC_CUDA_TRY(why, cudaMalloc((void **)&p->seg_local, p->seg_bytes));
  MC_CUDA_TRY(why, cudaMemsetAsync(p->seg_local, 0, p->seg_bytes, p->stream));
  MC_CUDA_TRY(why, cudaMalloc((void **)&p->table, sizeof(mc_kern_ptrs_t) * MC_CUSTOM_TABLE_CAP));
  MC_CUDA_TRY(
      why, cudaMemsetAsync(p->table, 0, sizeof(mc_kern_ptrs_t) * MC_CUSTOM_TABLE_CAP, p->stream));
  if (cfg->deterministic)
    MC_CUDA_TRY(why, cudaMalloc((void **)&p->scratch, MC_CUSTOM_SCRATCH_BYTES));
  memset(&st, 0, sizeof(st));
  st.epoch = 1; /* flags and packets start at 0, so no value of call 1 is already there */
  st.check = nonce;
  MC_CUDA_TRY(why, cudaMemcpyAsync(p->seg_local + MC_KERN_STATE_OFF, &st, sizeof(st),
                                   cudaMemcpyHostToDevice, p->stream));
  MC_CUDA_TRY(why, cudaStreamSynchronize(p->stream));
  MC_CUDA_TRY(why,
              cudaHostAlloc((void **)&p->err_host, sizeof(mc_kern_err_t), cudaHostAllocMapped));
  memset(p->err_host, 0, sizeof(mc_kern_err_t));
  MC_CUDA_TRY(why, cudaHostGetDevicePointer((void **)&p->err_dev, p->err_host, 0));

  memset(&p->proto, 0, sizeof(p->proto));
  p->proto.rank = comm->rank;
  p->proto.size = comm->size;
  p->proto.ll_off = ll_off;
  p->proto.ll_slot_bytes = ll_slot;
  p->proto.stage_off = stage_off;
  p->proto.stage_half_bytes = half;
  p->proto.err = p->err_dev;
  p->proto.timeout_ns = (uint64_t)cfg->timeout_ms * 1000000ull;
  p->proto.pdl = cfg->custom.pdl;
  p->proto.max_blocks = cfg->custom.max_blocks;
  return MOECOMM_SUCCESS;
}

moecomm_result_t mc_custom_agree(mc_comm_t *comm, const char *feature, const char *what, int ok,
                                 const mc_err_t *why, const void *payload, void *all,
                                 size_t bytes) {
  int bad = -1;
  moecomm_result_t r = mc_comm_agree(comm, what, ok ? MOECOMM_SUCCESS : MOECOMM_ERR_UNAVAILABLE,
                                     why->msg, payload, all, bytes, &bad);
  if (bad < 0) return r;
  MC_INFO("%s off for %s: %s; using nccl", feature, comm->label, comm->err->msg);
  return MC_DEFER;
}

/* C: map every member's segment and read its check word through the mapping. */
static int mc_custom_map_all(mc_custom_comm_t *p, const mc_custom_seg_rec_t *segs, mc_err_t *why) {
  mc_comm_t *comm = p->comm;
  for (int i = 0; i < comm->size; i++) {
    uint64_t seen = 0;
    if (mc_custom_open(p, i, &segs[i].seg, &p->proto.seg[i], why) != MOECOMM_SUCCESS ||
        mc_custom_peek(p, p->proto.seg[i] + MC_KERN_STATE_OFF + offsetof(mc_kern_state_t, check),
                       &seen, why) != MOECOMM_SUCCESS)
      return 0;
    if (seen != segs[i].nonce) {
      mc_err_set(why, MOECOMM_ERR_UNAVAILABLE,
                 "reading rank %d's memory through the IPC mapping returned 0x%llx instead of "
                 "0x%llx",
                 (int)comm->ranks[i], (unsigned long long)seen, (unsigned long long)segs[i].nonce);
      return 0;
    }
  }
  return 1;
}

/* A: the settings every member must share, and which GPU each one drives.  MC_DEFER (with a
   WARN) when they differ. */
static moecomm_result_t mc_custom_hello(mc_custom_comm_t *p, mc_custom_hello_t *hellos) {
  mc_comm_t *comm = p->comm;
  const mc_config_t *cfg = comm->cfg;
  mc_custom_hello_t hello;
  moecomm_result_t r;
  memset(&hello, 0, sizeof(hello));
  hello.algo = (int32_t)cfg->algo;
  hello.timeout_ms = cfg->timeout_ms;
  hello.buffer_bytes = cfg->custom.buffer_bytes;
  hello.max_bytes = cfg->custom_max_bytes;
  hello.max_blocks = cfg->custom.max_blocks;
  hello.deterministic = cfg->deterministic;
  hello.pid = p->pid;
  if (cudaDeviceGetPCIBusId(hello.bus_id, (int)sizeof(hello.bus_id), comm->device) != cudaSuccess)
    snprintf(hello.bus_id, sizeof(hello.bus_id), "pid%d-dev%d", p->pid, comm->device);
  r = mc_comm_exchange(comm, "custom all-reduce settings", &hello, hellos, sizeof(hello));
  if (r != MOECOMM_SUCCESS) return r;
  for (int i = 0; i < comm->size; i++) {
    hellos[i].bus_id[sizeof(hellos[i].bus_id) - 1] = '\0';
    if (hellos[i].algo != hello.algo || hellos[i].buffer_bytes != hello.buffer_bytes ||
        hellos[i].max_bytes != hello.max_bytes || hellos[i].timeout_ms != hello.timeout_ms ||
        hellos[i].max_blocks != hello.max_blocks ||
        hellos[i].deterministic != hello.deterministic) {
      MC_WARN(
          "custom all-reduce off for %s: rank %d has other MOECOMM_ALGO, "
          "MOECOMM_CUSTOM_BUFFER_BYTES, MOECOMM_CUSTOM_MAX_BYTES, MOECOMM_CUSTOM_MAX_BLOCKS, "
          "MOECOMM_TIMEOUT_MS or MOECOMM_DETERMINISTIC values than rank %d; set them alike on "
          "every rank. Using nccl",
          comm->label, (int)comm->ranks[i], (int)comm->ranks[comm->rank]);
      return MC_DEFER;
    }
  }
  return MOECOMM_SUCCESS;
}

moecomm_result_t mc_custom_comm_init(mc_comm_t *comm) {
  mc_custom_comm_t *p = NULL;
  mc_custom_hello_t *hellos = NULL;
  mc_custom_seg_rec_t rec, *recs = NULL;
  mc_err_t why;
  moecomm_result_t r = MOECOMM_SUCCESS;
  int ok;

  p = calloc(1, sizeof(*p));
  hellos = calloc((size_t)comm->size, sizeof(*hellos));
  recs = calloc((size_t)comm->size, sizeof(*recs));
  if (p == NULL || hellos == NULL || recs == NULL) {
    r = mc_err_set(comm->err, MOECOMM_ERR_NO_MEMORY, "out of host memory");
    goto out;
  }
  p->comm = comm;
  p->pid = (int)getpid();
  if ((r = mc_custom_hello(p, hellos)) != MOECOMM_SUCCESS) goto out;

  /* B: local setup, then everyone's outcome and segment. */
  memset(&rec, 0, sizeof(rec));
  rec.nonce = ((uint64_t)(uint32_t)p->pid << 32) ^ (uint64_t)mc_now_ms() ^
              (0x9e3779b97f4a7c15ull * (uint64_t)(comm->rank + 1));
  mc_err_clear(&why);
  ok = mc_custom_setup_local(p, hellos, rec.nonce, &why) == MOECOMM_SUCCESS &&
       mc_custom_export(p->seg_local, &rec.seg, &why) == MOECOMM_SUCCESS;
  r = mc_custom_agree(comm, "custom all-reduce", "custom all-reduce segments", ok, &why, &rec, recs,
                      sizeof(rec));
  if (r != MOECOMM_SUCCESS) goto out;

  /* C: every member maps every segment and checks it reads what its owner wrote. */
  mc_err_clear(&why);
  ok = mc_custom_map_all(p, recs, &why);
  r = mc_custom_agree(comm, "custom all-reduce", "custom all-reduce access check", ok, &why, NULL,
                      NULL, 0);
  if (r != MOECOMM_SUCCESS) goto out;

  comm->be[MOECOMM_BACKEND_CUSTOM].priv = p;
  /* added: the expert-parallel buffers (moe.c) may be counted there already */
  comm->be[MOECOMM_BACKEND_CUSTOM].device_bytes +=
      p->seg_bytes + sizeof(mc_kern_ptrs_t) * MC_CUSTOM_TABLE_CAP +
      (p->scratch != NULL ? MC_CUSTOM_SCRATCH_BYTES : 0);
  comm->be[MOECOMM_BACKEND_CUSTOM].host_bytes += sizeof(mc_kern_err_t);
  MC_INFO(
      "custom all-reduce ready for %s: %zu MiB of device memory per rank (staging 2 x %zu "
      "KiB, LL %zu KiB per rank)",
      comm->label, (p->seg_bytes + sizeof(mc_kern_ptrs_t) * MC_CUSTOM_TABLE_CAP) >> 20,
      p->proto.stage_half_bytes >> 10, (size_t)MC_CUSTOM_LL_BYTES >> 10);
  p = NULL;

out:
  mc_custom_teardown(p);
  free(hellos);
  free(recs);
  return r;
}

void mc_custom_comm_fini(mc_comm_t *comm) {
  mc_custom_teardown(comm->be[MOECOMM_BACKEND_CUSTOM].priv);
  comm->be[MOECOMM_BACKEND_CUSTOM].priv = NULL;
}
