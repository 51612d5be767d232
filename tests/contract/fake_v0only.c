/* SPDX-License-Identifier: Apache-2.0 */
/* fake_v0only.c - a plugin that exports only an older entry symbol (moecomm_get_api_v0, a
 * pre-release ABI).  A major-1 loader must refuse it ("does not define moecomm_get_api_v1"). */
#include <stddef.h>
#include <stdint.h>

__attribute__((visibility("default"))) const void *moecomm_get_api_v0(void) {
  return NULL;
}
