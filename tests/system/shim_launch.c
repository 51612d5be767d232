/* SPDX-License-Identifier: Apache-2.0 */
/* shim_launch.c - the launcher and host all-gather of host_shim/lib/launch.c: repeated
 * all-gathers, failed and killed ranks, the launcher's timeout and its message naming each
 * running rank's phase, a dead sibling and a size mismatch ending the others' waits early,
 * MOECOMM_TIMEOUT_MS, strict MOECOMM_RANK / MOECOMM_WORLD_SIZE parsing, and a rank that returns 0
 * and then exits non-zero (each rank's wait status, and one failed check in mc_test_ranks). */
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../../host_shim/lib/launch.h"
#include "../common/harness.h"

static int64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Many all-gathers of different sizes and contents, checked element by element. */
static int rank_repeat(int rank, int world, void *arg) {
  uint64_t seed = 0x1234u + (uint64_t)(uintptr_t)arg;
  size_t max_words = 4096;
  uint64_t *send = malloc(max_words * sizeof(uint64_t));
  uint64_t *recv = malloc((size_t)world * max_words * sizeof(uint64_t));
  int bad = 0;
  MC_CHECK(shim_launch_hub() != NULL, "rank %d has no hub", rank);
  if (send == NULL || recv == NULL) return 1;
  for (int it = 0; it < 200; it++) {
    uint64_t st = seed + (uint64_t)it; /* the same on every rank: sizes agree */
    size_t words = 1 + (size_t)(mc_test_rand(&st) % max_words);
    for (size_t i = 0; i < words; i++)
      send[i] = ((uint64_t)it << 40) ^ ((uint64_t)rank << 24) ^ (uint64_t)i ^ 0xa5a5000000000000ull;
    memset(recv, 0xee, (size_t)world * words * sizeof(uint64_t));
    if (!MC_CHECK(shim_host_allgather(shim_launch_hub(), send, recv, words * 8) == 0,
                  "all-gather %d of %zu bytes failed", it, words * 8)) {
      bad = 1;
      break;
    }
    for (int r = 0; r < world && !bad; r++)
      for (size_t i = 0; i < words; i++) {
        uint64_t want =
            ((uint64_t)it << 40) ^ ((uint64_t)r << 24) ^ (uint64_t)i ^ 0xa5a5000000000000ull;
        if (recv[(size_t)r * words + i] != want) {
          MC_CHECK(0, "all-gather %d: rank %d's word %zu is 0x%llx, want 0x%llx", it, r, i,
                   (unsigned long long)recv[(size_t)r * words + i], (unsigned long long)want);
          bad = 1;
          break;
        }
      }
    if (bad) break;
  }
  /* The largest size the header allows. */
  if (!bad) {
    size_t bytes = (size_t)1 << 20;
    unsigned char *s = malloc(bytes), *r = malloc((size_t)world * bytes);
    if (s != NULL && r != NULL) {
      memset(s, rank + 1, bytes);
      MC_CHECK(shim_host_allgather(shim_launch_hub(), s, r, bytes) == 0, "1 MiB all-gather");
      for (int q = 0; q < world; q++)
        MC_CHECK(r[(size_t)q * bytes] == q + 1 && r[(size_t)q * bytes + bytes - 1] == q + 1,
                 "1 MiB all-gather: rank %d's block", q);
    }
    free(s);
    free(r);
  }
  free(send);
  free(recv);
  return bad;
}

/* rank 2 fails with status 3; rank 3 is killed by a signal. */
static int rank_fail(int rank, int world, void *arg) {
  if (rank == 2) return 3;
  if (rank == 3) raise(SIGKILL);
  return 0;
}

static int rank_hang(int rank, int world, void *arg) {
  if (rank == 1) sleep(30);
  return 0;
}

/* Rank 1 leaves at once; the others' all-gather must fail long before MOECOMM_TIMEOUT_MS. */
static int rank_dead_sibling(int rank, int world, void *arg) {
  char b = 1, r[8];
  int64_t t0;
  int rc;
  if (rank == 1) return 0;
  t0 = now_ms();
  rc = shim_host_allgather(shim_launch_hub(), &b, r, 1);
  if (rc == 0) return 10;              /* completed without rank 1: wrong */
  if (now_ms() - t0 > 5000) return 11; /* not early */
  return 0;
}

/* Sizes differ between ranks: everyone fails, nobody hangs. */
static int rank_size_mismatch(int rank, int world, void *arg) {
  char s[16] = {0}, r[64];
  return shim_host_allgather(shim_launch_hub(), s, r, rank == 0 ? 8 : 16) != 0 ? 0 : 10;
}

/* Rank 1 is alive but late: MOECOMM_TIMEOUT_MS (300 ms) ends the others' wait. */
static int rank_late(int rank, int world, void *arg) {
  char b = 1, r[8];
  int64_t t0;
  int rc;
  if (rank == 1) {
    usleep(1500 * 1000);
    return 0;
  }
  t0 = now_ms();
  rc = shim_host_allgather(shim_launch_hub(), &b, r, 1);
  if (rc == 0) return 10;
  if (now_ms() - t0 > 1200) return 11;
  return 0;
}

/* Phases for the timeout message: ranks 0 and 1 share one, rank 2 has a long one (cut), rank 3
   finishes early, rank 4 never says. */
#define LONG_PHASE_X 200
static int rank_phases(int rank, int world, void *arg) {
  char x[LONG_PHASE_X + 1];
  (void)world;
  (void)arg;
  memset(x, 'x', LONG_PHASE_X);
  x[LONG_PHASE_X] = '\0';
  if (rank != 4) shim_launch_phase("starting");
  if (rank <= 1) shim_launch_phase("waiting at A (%d)", 7);
  if (rank == 2) shim_launch_phase("stuck at B %s", x);
  if (rank == 3) {
    shim_launch_phase("done early");
    return 0;
  }
  sleep(30);
  return 0;
}

/* shim_launch_ex with this process's stderr into out (n bytes). */
static int launch_capture(int world, shim_rank_fn_t fn, const shim_launch_cfg_t *cfg,
                          int *timed_out_p, char *out, size_t n) {
  FILE *tmp = tmpfile();
  int saved = dup(2), failed;
  size_t got = 0;
  out[0] = '\0';
  if (tmp == NULL || saved < 0) {
    if (tmp != NULL) fclose(tmp);
    if (saved >= 0) close(saved);
    return -1;
  }
  fflush(stderr);
  dup2(fileno(tmp), 2);
  failed = shim_launch_ex(world, fn, NULL, cfg, timed_out_p);
  fflush(stderr);
  dup2(saved, 2);
  close(saved);
  rewind(tmp);
  got = fread(out, 1, n - 1, tmp);
  out[got] = '\0';
  fclose(tmp);
  return failed;
}

static void test_timeout_phases(void) {
  shim_launch_cfg_t cfg;
  char out[8192], want[256];
  const char *line;
  int timed_out = -1, failed;
  int64_t t0 = now_ms();
  memset(&cfg, 0, sizeof(cfg));
  cfg.timeout_s = 1;
  cfg.on_timeout = "raise it with --timeout S (a test's hint)";
  failed = launch_capture(5, rank_phases, &cfg, &timed_out, out, sizeof(out));
  MC_CHECK(failed == 4 && timed_out == 1, "5 ranks, 4 hanging past 1 s: failed %d, timed_out %d",
           failed, timed_out);
  MC_CHECK(now_ms() - t0 < 8000, "the timeout took %lld ms", (long long)(now_ms() - t0));
  MC_CHECK(strstr(out, "4 of 5 ranks still running after 1 s; killed every rank") != NULL,
           "no line naming 4 of 5 running ranks and the limit: '%s'", out);
  MC_CHECK(strstr(out, "\n  ranks 0,1: waiting at A (7)\n") != NULL,
           "ranks 0 and 1 not named with their shared phase: '%s'", out);
  MC_CHECK(strstr(out, "\n  rank 4: (no phase reported)\n") != NULL,
           "rank 4 (no phase) not named: '%s'", out);
  MC_CHECK(strstr(out, "done early") == NULL && strstr(out, "starting") == NULL,
           "a finished rank or an old phase is named: '%s'", out);
  MC_CHECK(strstr(out, "\nraise it with --timeout S (a test's hint)\n") != NULL,
           "the caller's hint is not the message's last line: '%s'", out);
  /* The long phase is cut to 95 characters. */
  snprintf(want, sizeof(want), "\n  rank 2: stuck at B ");
  line = strstr(out, want);
  if (MC_CHECK(line != NULL, "rank 2's phase not named: '%s'", out)) {
    const char *text = line + strlen("\n  rank 2: "), *end = strchr(text, '\n');
    MC_CHECK(end != NULL && end - text == 95, "rank 2's phase is %d characters, want 95 (cut)",
             end ? (int)(end - text) : -1);
  }
  /* No timeout: timed_out 0 and no phase lines. */
  cfg.timeout_s = 60;
  failed = launch_capture(3, rank_fail, &cfg, &timed_out, out, sizeof(out));
  MC_CHECK(failed == 1 && timed_out == 0 && strstr(out, "still running") == NULL,
           "3 ranks, rank 2 fails: failed %d (want 1), timed_out %d: '%s'", failed, timed_out, out);
  MC_CHECK(shim_launch_ex(2, rank_fail, NULL, NULL, &timed_out) != 0, "NULL cfg is refused");
}

static void test_env_rank(void) {
  static const struct {
    const char *rank, *world;
    int want, r, w;
  } cases[] = {
      {NULL, NULL, 1, 0, 0},          {"1", "4", 0, 1, 4},   {"0", "1", 0, 0, 1},
      {"4", "4", -1, 0, 0},           {"x", "2", -1, 0, 0},  {"1", NULL, -1, 0, 0},
      {NULL, "2", -1, 0, 0},          {" 1", "2", -1, 0, 0}, {"1a", "2", -1, 0, 0},
      {"-1", "2", -1, 0, 0},          {"1", "0", -1, 0, 0},  {"", "2", -1, 0, 0},
      {"1", "99999999999", -1, 0, 0},
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    int r = -7, w = -7, got;
    if (cases[i].rank)
      setenv("MOECOMM_RANK", cases[i].rank, 1);
    else
      unsetenv("MOECOMM_RANK");
    if (cases[i].world)
      setenv("MOECOMM_WORLD_SIZE", cases[i].world, 1);
    else
      unsetenv("MOECOMM_WORLD_SIZE");
    got = shim_env_rank(&r, &w);
    MC_CHECK(got == cases[i].want, "MOECOMM_RANK=%s MOECOMM_WORLD_SIZE=%s: got %d, want %d",
             cases[i].rank ? cases[i].rank : "(unset)", cases[i].world ? cases[i].world : "(unset)",
             got, cases[i].want);
    if (cases[i].want == 0)
      MC_CHECK(r == cases[i].r && w == cases[i].w, "case %zu: rank %d world %d", i, r, w);
    else
      MC_CHECK(r == -7 && w == -7, "case %zu: outputs written on failure", i);
  }
  unsetenv("MOECOMM_RANK");
  unsetenv("MOECOMM_WORLD_SIZE");
}

/* ---- a rank that passes, then its process exits non-zero ----
   The launcher's child flushes every stdio stream after the rank function returns; a stream whose
   write ends the process makes that happen after the function returned 0, deterministically. */

static ssize_t exit_on_write(void *cookie, const char *buf, size_t n) {
  (void)cookie;
  (void)buf;
  (void)n;
  _exit(7);
}

static int rank_exit_after(int rank, int world, void *arg) {
  static const cookie_io_functions_t io = {NULL, exit_on_write, NULL, NULL};
  FILE *f;
  (void)world;
  (void)arg;
  MC_CHECK(1, "rank %d ran", rank);
  if (rank != 1) return 0;
  f = fopencookie(NULL, "w", io);
  if (f == NULL) return 1;
  fputc('x', f); /* buffered: written by the flush after this function returns */
  return 0;
}

static void test_exit_after_return(const char *self) {
  int status[3] = {-2, -2, -2}, failed;
  shim_launch_cfg_t cfg;
  char cmd[4200], out[8192];
  memset(&cfg, 0, sizeof(cfg));
  cfg.timeout_s = 60;
  cfg.wait_status = status;
  printf("(a launcher line about rank 1 exiting with status 7 is expected)\n");
  failed = shim_launch_ex(3, rank_exit_after, NULL, &cfg, NULL);
  MC_CHECK(failed == 1 && status[0] == 0 && status[2] == 0 && WIFEXITED(status[1]) &&
               WEXITSTATUS(status[1]) == 7,
           "rank 1 exits 7 after returning 0: failed %d, wait statuses 0x%x 0x%x 0x%x", failed,
           status[0], status[1], status[2]);
  /* The harness counts it as a failed check (the probe below runs mc_test_ranks). */
  snprintf(cmd, sizeof(cmd), "'%s' --probe-exit-after", self);
  failed = mc_test_shell(cmd, out, sizeof(out));
  MC_CHECK(failed == 1 && strstr(out, "\nTESTSUM 3 1 0\n") != NULL &&
               strstr(out,
                      "rank 1 of 3 passed its checks, then its process exited with "
                      "status 7") != NULL,
           "mc_test_ranks must count rank 1's exit status 7 as one failed check: exit %d, "
           "output:\n%s",
           failed, out);
}

int main(int argc, char **argv) {
  int64_t t0;
  int failed;
  if (argc > 1 && strcmp(argv[1], "--probe-exit-after") == 0) {
    mc_test_init("shim_launch probe", argc, argv);
    mc_test_ranks(3, rank_exit_after, NULL, 60);
    return mc_test_finish();
  }
  mc_test_init("shim_launch", argc, argv);
  unsetenv("MOECOMM_TIMEOUT_MS");

  MC_CHECK(shim_launch_hub() == NULL, "the parent has a hub");
  MC_CHECK(mc_test_ranks(4, rank_repeat, (void *)1, 60) == 0, "4 ranks, repeated all-gathers");
  MC_CHECK(mc_test_ranks(1, rank_repeat, (void *)2, 60) == 0, "1 rank, repeated all-gathers");
  MC_CHECK(mc_test_ranks(7, rank_repeat, (void *)3, 60) == 0, "7 ranks, repeated all-gathers");

  printf("(the next lines from shim_launch are expected)\n");
  failed = shim_launch(4, rank_fail, NULL, 30);
  MC_CHECK(failed == 2, "ranks 2 (status 3) and 3 (SIGKILL) failed: launch returned %d", failed);

  t0 = now_ms();
  failed = shim_launch(3, rank_hang, NULL, 1);
  MC_CHECK(failed == 1, "a hanging rank past the 1 s timeout: launch returned %d", failed);
  MC_CHECK(now_ms() - t0 < 8000, "the timeout took %lld ms", (long long)(now_ms() - t0));

  t0 = now_ms();
  failed = shim_launch(4, rank_dead_sibling, NULL, 60);
  MC_CHECK(failed == 0, "a dead sibling must end the others' all-gather early (%d ranks failed)",
           failed);
  MC_CHECK(now_ms() - t0 < 8000, "dead sibling: took %lld ms", (long long)(now_ms() - t0));

  failed = shim_launch(3, rank_size_mismatch, NULL, 60);
  MC_CHECK(failed == 0, "mismatched sizes must fail every rank's all-gather (%d ranks wrong)",
           failed);

  setenv("MOECOMM_TIMEOUT_MS", "300", 1);
  failed = shim_launch(3, rank_late, NULL, 60);
  MC_CHECK(failed == 0, "MOECOMM_TIMEOUT_MS=300 must end the wait for a late rank (%d wrong)",
           failed);
  unsetenv("MOECOMM_TIMEOUT_MS");

  MC_CHECK(shim_launch(0, rank_fail, NULL, 1) != 0, "world 0 is refused");

  test_timeout_phases();
  test_exit_after_return(argv[0]);

  test_env_rank();
  return mc_test_finish();
}
