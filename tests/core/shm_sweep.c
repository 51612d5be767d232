/* SPDX-License-Identifier: Apache-2.0 */
/* shm_sweep.c - the stale-segment sweep of the shm backend removes only segments whose creator is
 * provably dead in this pid namespace (white-box: plugin/backends/shm/segment.c).
 *
 * A container sharing /dev/shm with another sees its segment names but not its processes: a
 * segment of another pid namespace, even with a pid that does not exist here, belongs to a job
 * that may be alive (the sweep used to delete it, and that job failed).  Cases: this namespace
 * with a dead pid (removed), another namespace with the same dead pid (kept), this namespace with
 * a live pid (kept), a name that does not parse (kept). */
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../../plugin/backends/shm/segment.h"
#include "../common/harness.h"

static int make_seg(const char *name) {
  int fd = shm_open(name, O_RDWR | O_CREAT | O_EXCL, 0600);
  if (fd < 0) return 0;
  close(fd);
  return 1;
}

static int exists(const char *name) {
  int fd = shm_open(name, O_RDONLY, 0);
  if (fd < 0) return 0;
  close(fd);
  return 1;
}

int main(int argc, char **argv) {
  unsigned long long ns;
  pid_t dead;
  char mine_dead[128], other_ns[128], mine_live[128], odd[128];
  mc_test_init("shm_sweep", argc, argv);
  ns = mc_shm_pid_namespace();
  if (ns == 0) {
    mc_test_skip("shm sweep", "this system shows no /proc/self/ns/pid");
    return mc_test_finish();
  }
  dead = fork(); /* a pid that existed and is gone */
  if (dead == 0) _exit(0);
  waitpid(dead, NULL, 0);
  snprintf(mine_dead, sizeof(mine_dead), "/moecomm-%llu-%d-sweeptest-a", ns, (int)dead);
  snprintf(other_ns, sizeof(other_ns), "/moecomm-%llu-%d-sweeptest-b", ns + 1, (int)dead);
  snprintf(mine_live, sizeof(mine_live), "/moecomm-%llu-%d-sweeptest-c", ns, (int)getpid());
  snprintf(odd, sizeof(odd), "/moecomm-notanumber-%d-sweeptest-d", (int)dead);
  MC_CHECK(make_seg(mine_dead) && make_seg(other_ns) && make_seg(mine_live) && make_seg(odd),
           "creating the test segments");
  mc_shm_segment_sweep();
  MC_CHECK(!exists(mine_dead), "a segment of this namespace whose creator is dead was kept");
  MC_CHECK(exists(other_ns), "a segment of another pid namespace was removed");
  MC_CHECK(exists(mine_live), "a segment of a live process was removed");
  MC_CHECK(exists(odd), "a segment whose name does not parse was removed");
  shm_unlink(mine_dead);
  shm_unlink(other_ns);
  shm_unlink(mine_live);
  shm_unlink(odd);
  return mc_test_finish();
}
