/* SPDX-License-Identifier: Apache-2.0 */
/* segment.c - the life of one communicator's POSIX shared-memory segment.
 *
 * Named "/moecomm-<pid namespace>-<creator pid>-<context id>-<comm key>": unique per context and
 * comm, the same on every member.  The namespace and pid let a later run tell a leftover of a
 * dead process from a live one: a pid means something only in its own pid namespace (containers
 * sharing /dev/shm see each other's names but not each other's processes), so only leftovers of
 * this namespace whose creator is gone are swept.  The name exists only during comm_init: once
 * every member has mapped the segment, group rank 0 unlinks it, so a run killed afterwards leaves
 * nothing in /dev/shm. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../../log.h"
#include "segment.h"

/* What group rank 0 tells the others with its outcome: where the segment is. */
typedef struct mc_shm_where {
  uint64_t bytes; /* segment size */
  char name[224]; /* segment name */
} mc_shm_where_t;

/* Copies s into out keeping only characters safe in a file name. */
static void mc_shm_name_part(char *out, size_t cap, const char *s) {
  size_t i = 0;
  for (; s[i] != '\0' && i + 1 < cap; i++) {
    char ch = s[i];
    int ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
             ch == '.' || ch == '_' || ch == '-';
    out[i] = ok ? ch : '_';
  }
  out[i] = '\0';
}

unsigned long long mc_shm_pid_namespace(void) {
  char link[64];
  unsigned long long ns = 0;
  ssize_t n = readlink("/proc/self/ns/pid", link, sizeof link - 1);
  if (n <= 0) return 0;
  link[n] = '\0';
  if (sscanf(link, "pid:[%llu]", &ns) != 1) return 0;
  return ns;
}

void mc_shm_segment_sweep(void) {
  const unsigned long long my_ns = mc_shm_pid_namespace();
  const size_t plen = strlen(MC_SHM_PREFIX);
  struct dirent *ent;
  DIR *dir;
  if (my_ns == 0) return; /* cannot prove anything about a pid: sweep nothing */
  dir = opendir("/dev/shm");
  if (dir == NULL) return; /* no tmpfs view of POSIX shm here: nothing to sweep */
  while ((ent = readdir(dir)) != NULL) {
    unsigned long long ns = 0;
    long pid = 0;
    int used = 0;
    char name[300];
    if (strncmp(ent->d_name, MC_SHM_PREFIX, plen) != 0) continue;
    if (sscanf(ent->d_name + plen, "%llu-%ld-%n", &ns, &pid, &used) != 2 || used == 0) continue;
    if (ns != my_ns || pid <= 0 || pid > 0x7fffffffL) continue; /* not ours to judge */
    if (kill((pid_t)pid, 0) == 0 || errno != ESRCH) continue;   /* alive, or not provably dead */
    snprintf(name, sizeof name, "/%s", ent->d_name);
    if (shm_unlink(name) == 0)
      MC_INFO("shm: removed stale segment /dev/shm%s (its creator, pid %ld, no longer exists)",
              name, pid);
  }
  closedir(dir);
}

/* Maps fd read-write and shared; pages are touched now so the first collective is not slow. */
static moecomm_result_t mc_shm_map(mc_comm_t *comm, int fd, const char *name, size_t bytes,
                                   void **base_p) {
  void *base = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, 0);
  if (base == MAP_FAILED)
    return mc_err_set(comm->err, MOECOMM_ERR_NO_MEMORY,
                      "shm: mmap of %zu bytes of %s for %s failed: %s", bytes, name, comm->label,
                      strerror(errno));
  *base_p = base;
  return MOECOMM_SUCCESS;
}

void mc_shm_segment_name(const mc_comm_t *comm, int creator_pid, const char *suffix, char *name,
                         size_t cap) {
  char id[64], key[112];
  mc_shm_name_part(id, sizeof id, comm->xchg->ns);
  mc_shm_name_part(key, sizeof key, comm->key);
  snprintf(name, cap, "/%s%llu-%d-%s-%s%s", MC_SHM_PREFIX, mc_shm_pid_namespace(), creator_pid, id,
           key, suffix);
}

moecomm_result_t mc_shm_segment_create(mc_comm_t *comm, const char *name, size_t bytes, int replace,
                                       mc_shm_segment_t *seg_p) {
  mc_err_t *err = comm->err;
  moecomm_result_t res;
  mc_shm_segment_t seg;
  memset(&seg, 0, sizeof seg);
  snprintf(seg.name, sizeof seg.name, "%s", name);

  mc_shm_segment_sweep();
  int fd = shm_open(seg.name, O_RDWR | O_CREAT | O_EXCL, 0600);
  if (fd < 0 && errno == EEXIST && !replace) return MC_DEFER;
  if (fd < 0 && errno == EEXIST) {
    /* Only a dead process with our pid (pid reuse) or a killed run can have left it. */
    MC_INFO("shm: replacing leftover segment %s", seg.name);
    shm_unlink(seg.name);
    fd = shm_open(seg.name, O_RDWR | O_CREAT | O_EXCL, 0600);
  }
  if (fd < 0)
    return mc_err_set(err, MOECOMM_ERR_BACKEND, "shm: shm_open(%s) for %s failed: %s", seg.name,
                      comm->label, strerror(errno));
  /* Reserve the pages now: a sparse file on a small /dev/shm would SIGBUS later instead. */
  int rc;
  do {
    rc = posix_fallocate(fd, 0, (off_t)bytes);
  } while (rc == EINTR);
  if (rc != 0) {
    res = mc_err_set(err, rc == ENOSPC ? MOECOMM_ERR_NO_MEMORY : MOECOMM_ERR_BACKEND,
                     "shm: cannot reserve %zu bytes in /dev/shm for %s (%s): %s; /dev/shm may be "
                     "too small (a container needs e.g. --shm-size=1g)",
                     bytes, comm->label, seg.name, strerror(rc));
    goto fail_unlink;
  }
  res = mc_shm_map(comm, fd, seg.name, bytes, &seg.base);
  if (res != MOECOMM_SUCCESS) goto fail_unlink;
  close(fd);
  seg.bytes = bytes;
  seg.unlinked = 0;
  *seg_p = seg;
  return MOECOMM_SUCCESS;

fail_unlink:
  close(fd);
  shm_unlink(seg.name);
  return res;
}

/* Group rank 0: create under the comm's name; fallocate gave zero pages, so every step, waiter
   count and flag starts at 0; then the header. */
static moecomm_result_t mc_shm_create(mc_comm_t *comm, size_t slot_bytes, mc_shm_segment_t *seg) {
  char name[sizeof seg->name];
  size_t bytes = mc_shm_segment_bytes(comm->size, slot_bytes);
  mc_shm_segment_name(comm, (int)getpid(), "", name, sizeof name);
  moecomm_result_t res = mc_shm_segment_create(comm, name, bytes, 1, seg);
  if (res != MOECOMM_SUCCESS) return res;
  mc_shm_hdr_t *hdr = seg->base;
  hdr->magic = MC_SHM_MAGIC;
  hdr->layout = MC_SHM_LAYOUT;
  hdr->size = comm->size;
  hdr->creator_pid = (int32_t)getpid();
  hdr->slot_bytes = slot_bytes;
  hdr->total_bytes = bytes;
  return MOECOMM_SUCCESS;
}

moecomm_result_t mc_shm_segment_open(mc_comm_t *comm, const char *name, size_t bytes,
                                     mc_shm_segment_t *seg_p) {
  mc_shm_segment_t seg;
  struct stat st;
  moecomm_result_t res;
  memset(&seg, 0, sizeof seg);
  snprintf(seg.name, sizeof seg.name, "%s", name);
  seg.unlinked = 1; /* not ours to unlink */
  int fd = shm_open(seg.name, O_RDWR, 0);
  if (fd < 0 && errno == ENOENT) return MC_DEFER;
  if (fd < 0)
    return mc_err_set(comm->err, MOECOMM_ERR_BACKEND, "shm: shm_open(%s) for %s failed: %s",
                      seg.name, comm->label, strerror(errno));
  if (fstat(fd, &st) != 0) {
    res = mc_err_set(comm->err, MOECOMM_ERR_BACKEND, "shm: fstat of %s for %s failed: %s", seg.name,
                     comm->label, strerror(errno));
    close(fd);
    return res;
  }
  if ((uint64_t)st.st_size != bytes) {
    /* Smaller: its creator has not reserved the pages yet. */
    res = (uint64_t)st.st_size < bytes
              ? MC_DEFER
              : mc_err_set(comm->err, MOECOMM_ERR_INTERNAL,
                           "shm: segment %s for %s has %lld bytes, its creator made %zu", seg.name,
                           comm->label, (long long)st.st_size, bytes);
    close(fd);
    return res;
  }
  res = mc_shm_map(comm, fd, seg.name, bytes, &seg.base);
  close(fd);
  if (res != MOECOMM_SUCCESS) return res;
  seg.bytes = bytes;
  *seg_p = seg;
  return MOECOMM_SUCCESS;
}

/* Other members: open the name rank 0 sent, map it, check it is what rank 0 described. */
static moecomm_result_t mc_shm_open_map(mc_comm_t *comm, const mc_shm_where_t *root,
                                        mc_shm_segment_t *seg) {
  char name[sizeof root->name];
  memcpy(name, root->name, sizeof name);
  name[sizeof name - 1] = '\0';
  moecomm_result_t res = mc_shm_segment_open(comm, name, (size_t)root->bytes, seg);
  if (res == MC_DEFER)
    return mc_err_set(comm->err, MOECOMM_ERR_INTERNAL,
                      "shm: segment %s for %s is missing or smaller than the %llu bytes rank 0 "
                      "made",
                      name, comm->label, (unsigned long long)root->bytes);
  if (res != MOECOMM_SUCCESS) return res;
  const mc_shm_hdr_t *hdr = seg->base;
  if (hdr->magic != MC_SHM_MAGIC || hdr->layout != MC_SHM_LAYOUT || hdr->size != comm->size ||
      hdr->total_bytes != root->bytes ||
      mc_shm_segment_bytes(comm->size, (size_t)hdr->slot_bytes) != seg->bytes) {
    res = mc_err_set(comm->err, MOECOMM_ERR_INTERNAL,
                     "shm: segment %s for %s does not hold the expected header (size %d, layout "
                     "%u): two moecomm versions mixed in one run?",
                     seg->name, comm->label, (int)hdr->size, (unsigned)hdr->layout);
    munmap(seg->base, seg->bytes);
    seg->base = NULL;
    return res;
  }
  return MOECOMM_SUCCESS;
}

/* The first member of `all` whose status is not 0, -1 if none. */
moecomm_result_t mc_shm_segment_attach(mc_comm_t *comm, size_t slot_bytes,
                                       mc_shm_segment_t *seg_p) {
  moecomm_result_t res = MOECOMM_SUCCESS;
  mc_shm_segment_t seg;
  mc_shm_where_t mine, *all;
  int bad = -1;
  memset(&seg, 0, sizeof seg);
  memset(&mine, 0, sizeof mine);
  all = calloc((size_t)comm->size, sizeof *all);
  if (all == NULL)
    return mc_err_set(comm->err, MOECOMM_ERR_NO_MEMORY, "shm: out of memory setting up %s",
                      comm->label);

  /* 1: rank 0 creates and says where; its failure reaches everyone in the same agreement, so
     every member fails together instead of waiting for a name that never comes. */
  if (comm->rank == 0 && (res = mc_shm_create(comm, slot_bytes, &seg)) == MOECOMM_SUCCESS) {
    mine.bytes = seg.bytes;
    memcpy(mine.name, seg.name, sizeof mine.name);
  }
  res = mc_comm_agree(comm, "shm segment created", res, comm->err->msg, &mine, all, sizeof mine,
                      &bad);
  if (res != MOECOMM_SUCCESS) goto fail;

  /* 2: the others map it; everyone reports, then rank 0 removes the name whatever happened. */
  if (comm->rank != 0) res = mc_shm_open_map(comm, &all[0], &seg);
  res = mc_comm_agree(comm, "shm segment mapped", res, comm->err->msg, NULL, NULL, 0, &bad);
  if (comm->rank == 0 && seg.base != NULL && !seg.unlinked) {
    shm_unlink(seg.name);
    seg.unlinked = 1;
  }
  if (res != MOECOMM_SUCCESS) goto fail;
  free(all);
  MC_INFO("shm: %s mapped %zu bytes (%s, slots of %llu bytes)", comm->label, seg.bytes, seg.name,
          (unsigned long long)((mc_shm_hdr_t *)seg.base)->slot_bytes);
  *seg_p = seg;
  return MOECOMM_SUCCESS;

fail:
  mc_shm_segment_detach(&seg);
  free(all);
  return res;
}

void mc_shm_segment_detach(mc_shm_segment_t *seg) {
  if (seg->base != NULL) {
    if (munmap(seg->base, seg->bytes) != 0)
      MC_WARN("shm: munmap of %s failed: %s", seg->name, strerror(errno));
    seg->base = NULL;
  }
  if (!seg->unlinked && seg->name[0] != '\0') shm_unlink(seg->name);
  seg->unlinked = 1;
}
