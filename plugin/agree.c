/* SPDX-License-Identifier: Apache-2.0 */
/* agree.c - outcomes exchanged, first failure named (agree.h). */
#include "agree.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct mc_agree_head {
  int32_t code;
  char msg[MC_AGREE_MSG_BYTES];
} mc_agree_head_t;

moecomm_result_t mc_agree(const mc_xchg_set_t *set, const char *what, moecomm_result_t mine,
                          const char *mine_msg, const void *payload, void *all_payload,
                          size_t payload_bytes, int *bad_p, mc_err_t *err) {
  const size_t rec = sizeof(mc_agree_head_t) + payload_bytes;
  char *send = calloc(1, rec), *all = calloc((size_t)set->n, rec);
  mc_agree_head_t head;
  moecomm_result_t r;
  int bad = -1;

  if (send == NULL || all == NULL) {
    free(send);
    free(all);
    return mc_err_set(err, MOECOMM_ERR_NO_MEMORY, "%s: out of host memory", what);
  }
  memset(&head, 0, sizeof(head));
  head.code = (int32_t)mine;
  if (mine != MOECOMM_SUCCESS) snprintf(head.msg, sizeof(head.msg), "%s", mine_msg ? mine_msg : "");
  memcpy(send, &head, sizeof(head));
  if (payload_bytes > 0) memcpy(send + sizeof(head), payload, payload_bytes);
  r = mc_xchg_allgather(set, what, send, all, rec, err);
  for (int i = 0; r == MOECOMM_SUCCESS && i < set->n; i++) {
    memcpy(&head, all + (size_t)i * rec, sizeof(head));
    if (payload_bytes > 0)
      memcpy((char *)all_payload + (size_t)i * payload_bytes, all + (size_t)i * rec + sizeof(head),
             payload_bytes);
    if (bad < 0 && head.code != MOECOMM_SUCCESS) bad = i;
  }
  if (r == MOECOMM_SUCCESS) {
    *bad_p = bad;
    if (bad >= 0) {
      memcpy(&head, all + (size_t)bad * rec, sizeof(head));
      head.msg[sizeof(head.msg) - 1] = '\0';
      /* A peer's code outside the known range must not leak out as is. */
      if (head.code < 0 || (head.code > MOECOMM_ERR_INTERNAL && head.code != (int32_t)MC_DEFER))
        head.code = MOECOMM_ERR_PEER;
      r = mc_err_set(err, (moecomm_result_t)head.code, "%s: on rank %d: %s", what,
                     (int)set->ranks[bad], head.msg);
    }
  }
  free(send);
  free(all);
  return r;
}
