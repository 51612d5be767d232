/* SPDX-License-Identifier: Apache-2.0 */
/* fake_nccl.c - a stand-in libnccl.so.2 for tests/core/nccl_lib.c: every entry point the plugin
 * binds, doing nothing.  FAKE_VERSION sets what ncclGetVersion says; FAKE_NO_SEND leaves out
 * ncclSend (a library that lacks a symbol). */
#include <stddef.h>

typedef int res_t;

res_t ncclGetVersion(int *v) {
  *v = FAKE_VERSION;
  return 0;
}
#define FAKE(name)   \
  res_t name(void) { \
    return 0;        \
  }
FAKE(ncclGetUniqueId)
FAKE(ncclCommInitRankConfig)
FAKE(ncclCommDestroy)
FAKE(ncclCommAbort)
FAKE(ncclCommGetAsyncError)
FAKE(ncclAllReduce)
FAKE(ncclAllGather)
FAKE(ncclReduceScatter)
FAKE(ncclBroadcast)
FAKE(ncclRecv)
FAKE(ncclGroupStart)
FAKE(ncclGroupEnd)
#ifndef FAKE_NO_SEND
FAKE(ncclSend)
#endif
const char *ncclGetErrorString(res_t r) {
  return r ? "fake error" : "no error";
}
const char *ncclGetLastError(void *comm) {
  return "fake";
}
