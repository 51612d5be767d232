/* SPDX-License-Identifier: Apache-2.0 */
/* fake_small_table.c - negotiates fine but returns a table smaller than the ABI 1.0 table: the
 * loader must refuse it ("not an ABI 1.x table") rather than call past its end. */
#include <string.h>

#include "../../abi/moecomm.h"

static const struct {
  size_t struct_size;
  uint32_t abi_version;
} small_table = {16, MOECOMM_ABI_VERSION_MAKE(1, 0)};

__attribute__((visibility("default"))) moecomm_result_t moecomm_get_api_v1(
    uint32_t min_version, uint32_t max_version, uint32_t *version_p, const moecomm_api_t **api_p,
    char *why, size_t why_size) {
  const void *t = &small_table;
  (void)max_version;
  (void)why;
  (void)why_size;
  if (version_p == NULL || api_p == NULL) return MOECOMM_ERR_INVALID_ARGUMENT;
  *version_p = min_version;
  memcpy(api_p, &t, sizeof(t));
  return MOECOMM_SUCCESS;
}
