/* SPDX-License-Identifier: Apache-2.0 */
/* error.c - result strings and failure messages. */
#include "error.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "log.h"

static _Thread_local mc_err_t mc_err_tls;

mc_err_t *mc_err_thread(void) {
  return &mc_err_tls;
}

moecomm_result_t mc_err_set(mc_err_t *err, moecomm_result_t code, const char *fmt, ...) {
  char buf[MC_ERR_MSG_MAX];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, sizeof(buf), fmt, ap);
  va_end(ap);
  if (err != NULL) memcpy(err->msg, buf, sizeof(buf));
  MC_INFO("%s: %s", mc_result_string(code), buf);
  return code;
}

moecomm_result_t mc_err_wrap(mc_err_t *err, moecomm_result_t code, const char *fmt, ...) {
  char what[256], buf[MC_ERR_MSG_MAX];
  va_list ap;
  if (err == NULL) return code;
  va_start(ap, fmt);
  vsnprintf(what, sizeof(what), fmt, ap);
  va_end(ap);
  snprintf(buf, sizeof(buf), "%s: %s", what, err->msg);
  memcpy(err->msg, buf, sizeof(buf));
  return code;
}

void mc_err_clear(mc_err_t *err) {
  if (err != NULL) err->msg[0] = '\0';
}

const char *mc_result_string(moecomm_result_t result) {
  switch (result) {
    case MOECOMM_SUCCESS: return "MOECOMM_SUCCESS";
    case MOECOMM_ERR_INVALID_ARGUMENT: return "MOECOMM_ERR_INVALID_ARGUMENT";
    case MOECOMM_ERR_STRUCT_SIZE: return "MOECOMM_ERR_STRUCT_SIZE";
    case MOECOMM_ERR_VERSION: return "MOECOMM_ERR_VERSION";
    case MOECOMM_ERR_CONFIG: return "MOECOMM_ERR_CONFIG";
    case MOECOMM_ERR_NOT_SUPPORTED: return "MOECOMM_ERR_NOT_SUPPORTED";
    case MOECOMM_ERR_UNAVAILABLE: return "MOECOMM_ERR_UNAVAILABLE";
    case MOECOMM_ERR_TIMEOUT: return "MOECOMM_ERR_TIMEOUT";
    case MOECOMM_ERR_PEER: return "MOECOMM_ERR_PEER";
    case MOECOMM_ERR_BACKEND: return "MOECOMM_ERR_BACKEND";
    case MOECOMM_ERR_NO_MEMORY: return "MOECOMM_ERR_NO_MEMORY";
    case MOECOMM_ERR_CAPTURE: return "MOECOMM_ERR_CAPTURE";
    case MOECOMM_ERR_STATE: return "MOECOMM_ERR_STATE";
    case MOECOMM_ERR_INTERNAL: return "MOECOMM_ERR_INTERNAL";
  }
  if (result == MC_DEFER) return "MC_DEFER (internal)";
  return "MOECOMM_ERR_UNKNOWN (not a moecomm result code)";
}
