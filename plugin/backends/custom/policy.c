/* policy.c - which algorithm serves an all-reduce of a given size.
 *
 * The answer depends only on the size, the member count, whether the call is captured and the
 * configuration (checked equal on every member at comm_init), so every member picks the same one
 * and launches the same kernel.  `make bench` prints the table its measurements suggest
 * (bench/NOTES-custom.md); the rows below are the thresholds in bytes. */
#include <stdint.h>

#include "custom.h"

typedef struct mc_custom_policy_row {
  int max_size;       /* members up to this count */
  size_t ll_max;      /* LL up to here */
  size_t oneshot_max; /* then one-shot up to here */
  size_t twoshot_max; /* then two-shot up to here, NCCL above */
} mc_custom_policy_row_t;

/* Measured on H200 NVLink (bench/results/allreduce-*.json, bf16): 2 members: LL is fastest
   through 256 KiB, one-shot and two-shot tie at 1 MiB, two-shot wins from 4 MiB; 4 members: LL
   through 16 KiB, one-shot at 64 KiB, two-shot from 256 KiB.  8 members: predicted from bytes
   moved and barriers (bench/NOTES-custom.md), not yet measured. */
static const mc_custom_policy_row_t mc_custom_policy[] = {
    {2, 256u << 10, 512u << 10, SIZE_MAX},
    {4, 16u << 10, 64u << 10, SIZE_MAX},
    {8, 64u << 10, 128u << 10, SIZE_MAX},
};

const char *mc_custom_algo_name(int algo) {
  switch (algo) {
    case MC_KERN_LL: return "ll";
    case MC_KERN_ONESHOT: return "oneshot";
    case MC_KERN_TWOSHOT: return "twoshot";
    default: return "nccl";
  }
}

int mc_custom_policy_pick(const mc_custom_comm_t *p, size_t bytes, int capturing) {
  const mc_config_t *cfg = &p->comm->ctx->cfg;
  const size_t padded = (bytes + 15) & ~(size_t)15;
  const int fits_ll = padded <= MC_KERN_LL_PAYLOAD(p->proto.ll_slot_bytes);
  const int fits_stage = padded <= p->proto.stage_half_bytes;
  const mc_custom_policy_row_t *row = &mc_custom_policy[0];

  if (bytes > cfg->custom_max_bytes || cfg->algo == MC_ALGO_NCCL) return 0;
  /* A forced algorithm serves every size it can; the others follow the table. */
  if (cfg->algo == MC_ALGO_LL && fits_ll) return MC_KERN_LL;
  if (cfg->algo == MC_ALGO_ONESHOT && fits_stage) return MC_KERN_ONESHOT;
  if (cfg->algo == MC_ALGO_TWOSHOT && (capturing || fits_stage)) return MC_KERN_TWOSHOT;

  for (size_t i = 0; i < sizeof(mc_custom_policy) / sizeof(mc_custom_policy[0]); i++) {
    row = &mc_custom_policy[i];
    if (p->comm->size <= row->max_size) break;
  }
  if (bytes <= row->ll_max && fits_ll) return MC_KERN_LL;
  if (bytes <= row->oneshot_max && fits_stage) return MC_KERN_ONESHOT;
  /* captured two-shot works on the callers' registered buffers: no staging limit */
  if (bytes <= row->twoshot_max && (capturing || fits_stage)) return MC_KERN_TWOSHOT;
  return 0;
}
