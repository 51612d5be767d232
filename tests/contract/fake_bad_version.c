/* SPDX-License-Identifier: Apache-2.0 */
/* fake_bad_version.c - answers every request with ABI 1.7, whatever the host asked for: the
 * loader must refuse a negotiated version outside the host's range. */
#include "../../abi/moecomm.h"

static const moecomm_api_t table = {.struct_size = sizeof(moecomm_api_t),
                                    .abi_version = MOECOMM_ABI_VERSION_MAKE(1, 7)};

__attribute__((visibility("default"))) moecomm_result_t moecomm_get_api_v1(
    uint32_t min_version, uint32_t max_version, uint32_t *version_p, const moecomm_api_t **api_p,
    char *why, size_t why_size) {
  (void)min_version;
  (void)max_version;
  (void)why;
  (void)why_size;
  if (version_p == NULL || api_p == NULL) return MOECOMM_ERR_INVALID_ARGUMENT;
  *version_p = MOECOMM_ABI_VERSION_MAKE(1, 7);
  *api_p = &table;
  return MOECOMM_SUCCESS;
}
