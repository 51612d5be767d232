/* SPDX-License-Identifier: Apache-2.0 */
/* probe_v1.c - the entry point of ABI major 1 and nothing else, compiled against one ABI header
 * (-DMC_ABI_HEADER="path").  abidw on it records exactly the types that header promises: this is
 * how the dump of a frozen header (libmoecomm-abi-1.0.abi from abi/moecomm_v1.h) is made and
 * re-checked, and how tests/contract/abi_check.c tries deliberately broken copies of abi/moecomm.h.
 */
#include MC_ABI_HEADER

__attribute__((visibility("default"))) moecomm_result_t moecomm_get_api_v1(
    uint32_t min_version, uint32_t max_version, uint32_t *version_p, const moecomm_api_t **api_p,
    char *why, size_t why_size) {
  /* The same type check as plugin/api.c: the entry must have the header's type. */
  moecomm_get_api_v1_fn_t self = moecomm_get_api_v1;
  (void)self;
  (void)min_version;
  (void)max_version;
  (void)version_p;
  (void)api_p;
  (void)why;
  (void)why_size;
  return MOECOMM_ERR_VERSION;
}
