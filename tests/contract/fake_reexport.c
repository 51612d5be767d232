/* SPDX-License-Identifier: Apache-2.0 */
/* fake_reexport.c - a library that links libmoecomm.so but is not a plugin itself: dlsym on it
 * finds the plugin's moecomm_get_api_v1 through its dependency, and the loader must notice (with
 * dladdr) that the symbol comes from another object.  Linked against the plugin by the Makefile. */
__attribute__((visibility("default"))) int moecomm_fake_reexport_marker(void) {
  return 42;
}
