/* SPDX-License-Identifier: Apache-2.0 */
/* nccl_lib.c - finding and loading NCCL at run time (nccl_lib.h). */
#include "nccl_lib.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "../../log.h"

mc_nccl_lib_t mc_nccl_lib;

static pthread_mutex_t mc_nccl_lib_lock = PTHREAD_MUTEX_INITIALIZER;
static int mc_nccl_lib_state; /* 0 not tried, 1 loaded, -1 failed */
static moecomm_result_t mc_nccl_lib_code;
static char mc_nccl_lib_why[MC_ERR_MSG_MAX];

/* The table's entries by symbol name. */
static const struct {
  const char *name;
  size_t offset;
} mc_nccl_syms[] = {
    {"ncclGetVersion", offsetof(mc_nccl_lib_t, GetVersion)},
    {"ncclGetUniqueId", offsetof(mc_nccl_lib_t, GetUniqueId)},
    {"ncclCommInitRankConfig", offsetof(mc_nccl_lib_t, CommInitRankConfig)},
    {"ncclCommDestroy", offsetof(mc_nccl_lib_t, CommDestroy)},
    {"ncclCommAbort", offsetof(mc_nccl_lib_t, CommAbort)},
    {"ncclCommGetAsyncError", offsetof(mc_nccl_lib_t, CommGetAsyncError)},
    {"ncclGetErrorString", offsetof(mc_nccl_lib_t, GetErrorString)},
    {"ncclGetLastError", offsetof(mc_nccl_lib_t, GetLastError)},
    {"ncclAllReduce", offsetof(mc_nccl_lib_t, AllReduce)},
    {"ncclAllGather", offsetof(mc_nccl_lib_t, AllGather)},
    {"ncclReduceScatter", offsetof(mc_nccl_lib_t, ReduceScatter)},
    {"ncclBroadcast", offsetof(mc_nccl_lib_t, Broadcast)},
    {"ncclSend", offsetof(mc_nccl_lib_t, Send)},
    {"ncclRecv", offsetof(mc_nccl_lib_t, Recv)},
    {"ncclGroupStart", offsetof(mc_nccl_lib_t, GroupStart)},
    {"ncclGroupEnd", offsetof(mc_nccl_lib_t, GroupEnd)},
};

/* Fills lib from handle; 0, or -1 with the missing symbol or the version problem in why. */
static int mc_nccl_lib_bind(void *handle, const char *where, mc_nccl_lib_t *lib, char *why,
                            size_t size) {
  for (size_t i = 0; i < sizeof(mc_nccl_syms) / sizeof(mc_nccl_syms[0]); i++) {
    void *fn = dlsym(handle, mc_nccl_syms[i].name);
    if (fn == NULL) {
      snprintf(why, size, "%s lacks %s", where, mc_nccl_syms[i].name);
      return -1;
    }
    memcpy((char *)lib + mc_nccl_syms[i].offset, &fn, sizeof(fn));
  }
  if (lib->GetVersion(&lib->version) != ncclSuccess) {
    snprintf(why, size, "%s: ncclGetVersion failed", where);
    return -1;
  }
  if (lib->version < MC_NCCL_MIN_VERSION) {
    snprintf(why, size, "%s is NCCL %d.%d.%d; moecomm needs 2.19 or newer", where,
             lib->version / 10000, (lib->version / 100) % 100, lib->version % 100);
    return -1;
  }
  snprintf(lib->path, sizeof(lib->path), "%s", where);
  return 0;
}

/* One place to look: 1 loaded, 0 not there (why appended). */
static int mc_nccl_lib_try(const char *name, int flags, const char *what, char *why, size_t size) {
  mc_nccl_lib_t lib;
  char reason[512];
  size_t w = strlen(why);
  void *h = dlopen(name, flags);
  if (h == NULL) {
    const char *e = dlerror();
    snprintf(why + w, size - w, "%s%s: %s", w ? "; " : "", what, e ? e : "not found");
    return 0;
  }
  memset(&lib, 0, sizeof(lib));
  if (mc_nccl_lib_bind(h, what, &lib, reason, sizeof(reason)) != 0) {
    snprintf(why + w, size - w, "%s%s", w ? "; " : "", reason);
    dlclose(h);
    return 0;
  }
  mc_nccl_lib = lib; /* the handle stays open for the life of the process */
  return 1;
}

moecomm_result_t mc_nccl_lib_load(const mc_config_t *cfg, mc_err_t *why) {
  char tried[MC_ERR_MSG_MAX] = "", what[600];
  int ok = 0;
  pthread_mutex_lock(&mc_nccl_lib_lock);
  if (mc_nccl_lib_state == 0) {
    if (cfg->nccl.path[0] != '\0') {
      snprintf(what, sizeof(what), "MOECOMM_NCCL_PATH=%s", cfg->nccl.path);
      ok = mc_nccl_lib_try(cfg->nccl.path, RTLD_NOW | RTLD_LOCAL, what, tried, sizeof(tried));
    } else {
      ok = mc_nccl_lib_try("libnccl.so.2", RTLD_NOW | RTLD_NOLOAD,
                           "libnccl.so.2 already loaded in this process", tried, sizeof(tried)) ||
           mc_nccl_lib_try("libnccl.so.2", RTLD_NOW | RTLD_LOCAL,
                           "libnccl.so.2 from the system's library search", tried, sizeof(tried));
    }
    mc_nccl_lib_state = ok ? 1 : -1;
    if (ok) {
      MC_INFO("NCCL %d.%d.%d loaded from %s", mc_nccl_lib.version / 10000,
              (mc_nccl_lib.version / 100) % 100, mc_nccl_lib.version % 100, mc_nccl_lib.path);
    } else {
      mc_nccl_lib_code = MOECOMM_ERR_UNAVAILABLE;
      snprintf(mc_nccl_lib_why, sizeof(mc_nccl_lib_why),
               "no usable NCCL (tried %s); set MOECOMM_NCCL_PATH to a libnccl.so.2 of 2.19 or "
               "newer, or load one first",
               tried);
      MC_INFO("NCCL backend unavailable: %s", mc_nccl_lib_why);
    }
  }
  ok = mc_nccl_lib_state > 0;
  pthread_mutex_unlock(&mc_nccl_lib_lock);
  return ok ? MOECOMM_SUCCESS : mc_err_set(why, mc_nccl_lib_code, "%s", mc_nccl_lib_why);
}
