/* SPDX-License-Identifier: Apache-2.0 */
/* fake_v2only.c - a plugin of a later ABI major that dropped major 1: it exports only
 * moecomm_get_api_v2.  A major-1 loader must refuse it ("does not define moecomm_get_api_v1"). */
#include <stddef.h>
#include <stdint.h>

__attribute__((visibility("default"))) int moecomm_get_api_v2(uint32_t min_version,
                                                              uint32_t max_version,
                                                              uint32_t *version_p,
                                                              const void **api_p, char *why,
                                                              size_t why_size) {
  (void)min_version;
  (void)max_version;
  (void)version_p;
  (void)api_p;
  (void)why;
  (void)why_size;
  return 3; /* MOECOMM_ERR_VERSION */
}
