/* SPDX-License-Identifier: Apache-2.0 */
/* shim_run.c - runs build/moecomm-shim as a subprocess: default runs, the scatter-mode step (ABI
 * 1.1: mode chains, uneven token counts, fallback), the ABI-1.0 step (--abi-max 1.0),
 * --capture-sizes (one capture per planned size, sizes the planner drops), --pp (the hand-off
 * between pipeline stages, ABI 1.2), --print-groups
 * against the DESIGN.md rank lists, usage errors, failures that must name the moecomm result,
 * the MoE all-to-all step (--moe-a2a), progress lines, the timeout (scaled to the work; a run past
 * it names each rank's phase) and the warning for a MOECOMM_PLUGIN_DIR that is not a directory.
 *
 * On a machine with GPUs a run that asks for more ranks than there are devices adds
 * --device cpu: this is a CPU test. */
#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../common/harness.h"

#define RUN_TIMEOUT_S 180
#define OUT_MAX (1 << 20)

static char g_shim[PATH_MAX];
static char g_plugin[PATH_MAX];
static char g_out[OUT_MAX];
static int g_gpus;

static int64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Runs the shim with argv (NULL-terminated, without argv[0]) and env changes ("N=v" sets, "N"
   unsets); stdout and stderr both into g_out.  Returns the exit status, 128+signal, or -1. */
static int run_shim(const char *const *env, const char *const *args) {
  const char *argv[64];
  int fds[2], st = 0, n = 0;
  size_t used = 0;
  pid_t pid;
  int64_t deadline = now_ms() + RUN_TIMEOUT_S * 1000;
  int killed = 0;

  argv[n++] = g_shim;
  for (int i = 0; args[i] != NULL && n < 63; i++) argv[n++] = args[i];
  argv[n] = NULL;
  g_out[0] = '\0';
  if (pipe(fds) != 0) return -1;
  fflush(stdout);
  fflush(stderr);
  pid = fork();
  if (pid == 0) {
    dup2(fds[1], 1);
    dup2(fds[1], 2);
    close(fds[0]);
    close(fds[1]);
    setenv("MOECOMM_PLUGIN", g_plugin, 1);
    setenv("MOECOMM_TIMEOUT_MS", "30000", 1);
    unsetenv("MOECOMM_RANK");
    unsetenv("MOECOMM_WORLD_SIZE");
    mc_test_env_apply(env);
    execv(g_shim, (char *const *)argv);
    _exit(127);
  }
  close(fds[1]);
  if (pid < 0) {
    close(fds[0]);
    return -1;
  }
  for (;;) {
    struct pollfd p = {fds[0], POLLIN, 0};
    int64_t left = deadline - now_ms();
    int pr;
    ssize_t got;
    if (left <= 0 && !killed) {
      kill(pid, SIGKILL); /* the ranks die with it (PR_SET_PDEATHSIG) */
      killed = 1;
    }
    pr = poll(&p, 1, left > 0 ? (int)(left < 1000 ? left : 1000) : 1000);
    if (pr < 0 && errno == EINTR) continue;
    if (pr == 0) continue;
    if (used + 1 >= sizeof(g_out)) {
      char sink[4096];
      got = read(fds[0], sink, sizeof(sink));
    } else {
      got = read(fds[0], g_out + used, sizeof(g_out) - 1 - used);
      if (got > 0) used += (size_t)got;
    }
    if (got <= 0) break;
  }
  g_out[used] = '\0';
  close(fds[0]);
  while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
  }
  if (killed) return -1;
  if (WIFSIGNALED(st)) return 128 + WTERMSIG(st);
  return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* The group lists printed for `kind` ("MOE_EP"): the line's tokens that start with '[', joined
   with single spaces.  "" when the kind's line is missing. */
static void groups_of(const char *out, const char *kind, char *buf, size_t size) {
  char pat[32];
  const char *line = out;
  buf[0] = '\0';
  snprintf(pat, sizeof(pat), "  %s ", kind);
  while ((line = strstr(line, pat)) != NULL) {
    if (line == out || line[-1] == '\n') break;
    line++;
  }
  if (line == NULL) return;
  {
    const char *end = strchr(line, '\n');
    size_t used = 0;
    const char *p = line + strlen(pat);
    if (end == NULL) end = line + strlen(line);
    while (p < end) {
      const char *tok;
      while (p < end && *p == ' ') p++;
      tok = p;
      while (p < end && *p != ' ') p++;
      if (tok < p && *tok == '[') {
        int w = snprintf(buf + used, size - used, "%s%.*s", used ? " " : "", (int)(p - tok), tok);
        if (w < 0 || (size_t)w >= size - used) return;
        used += (size_t)w;
      }
    }
  }
}

static void show_output_on_failure(int ok, const char *what) {
  if (!ok) printf("---- output of %s ----\n%s---- end ----\n", what, g_out);
}

static void test_default_runs(void) {
  static const int worlds[] = {2, 4};
  for (size_t i = 0; i < sizeof(worlds) / sizeof(worlds[0]); i++) {
    char ranks[16], want[96], abi[64];
    const char *cpu = g_gpus > 0 && g_gpus < worlds[i] ? "--device" : NULL;
    const char *args[] = {"--ranks", ranks, cpu, "cpu", NULL};
    int rc, ok = 1;
    snprintf(ranks, sizeof(ranks), "%d", worlds[i]);
    snprintf(abi, sizeof(abi), "ABI %u.%u negotiated", (unsigned)MOECOMM_ABI_MAJOR,
             (unsigned)MOECOMM_ABI_MINOR);
    rc = run_shim(NULL, args);
    ok &= MC_CHECK(rc == 0, "--ranks %d: exit %d", worlds[i], rc);
    ok &= MC_CHECK(strstr(g_out, "plugin: ") != NULL && strstr(g_out, "name moecomm") != NULL &&
                       strstr(g_out, "version ") != NULL && strstr(g_out, abi) != NULL,
                   "--ranks %d: plugin path, name, version and '%s' not printed", worlds[i], abi);
    snprintf(want, sizeof(want), "result: verified bit-exact on all %d ranks", worlds[i]);
    ok &= MC_CHECK(strstr(g_out, want) != NULL, "--ranks %d: no '%s'", worlds[i], want);
    /* ABI 1.1, tp = world, ep 1: the MoE replica is the attention-TP group. */
    ok &= MC_CHECK(strstr(g_out, "step: ABI 1.1 scatter modes") != NULL &&
                       strstr(g_out,
                              "modes: attention TP_ATTN_FULL -> MoE TP_ATTN_FULL -> "
                              "attention TP_ATTN_FULL") != NULL,
                   "--ranks %d: the scatter-mode step and its modes are not printed", worlds[i]);
    ok &= MC_CHECK(strstr(g_out, "\nmoe->attn ") != NULL && strstr(g_out, "eager med") != NULL,
                   "--ranks %d: no timing table with a row per transition", worlds[i]);
    ok &= MC_CHECK(strstr(g_out, " s] rank 0: ") == NULL,
                   "--ranks %d: a run of about a second printed progress lines", worlds[i]);
    if (cpu != NULL || g_gpus == 0) {
      ok &= MC_CHECK(strstr(g_out, "backend: shm (no CUDA device)") != NULL,
                     "--ranks %d: CPU run does not say it runs on shm", worlds[i]);
    } else {
      /* One rank per GPU: eager warm-up, then capture and graph replays. */
      ok &= MC_CHECK(strstr(g_out, "device: cuda:") != NULL, "--ranks %d: no GPU", worlds[i]);
      ok &= MC_CHECK(strstr(g_out, "then graph replays") != NULL,
                     "--ranks %d: the graph was not captured and replayed", worlds[i]);
    }
    show_output_on_failure(ok, "default run");
  }
}

/* The ABI-1.0 step (--abi-max 1.0): the all-gather path (attn_cp > moe_dp) in fp16 and fp32. */
static void test_abi10_gather(void) {
  static const char *const dtypes[] = {"fp16", "fp32"};
  for (size_t i = 0; i < 2; i++) {
    const char *args[] = {"--abi-max", "1.0",     "--ranks",  "4",   "--tp",      "4",
                          "--ep",      "4",       "--moe-dp", "1",   "--attn-cp", "2",
                          "--dtype",   dtypes[i], "--iters",  "2",   "--tokens",  "16",
                          "--hidden",  "256",     "--device", "cpu", NULL};
    int rc = run_shim(NULL, args), ok = 1;
    ok &= MC_CHECK(rc == 0, "abi 1.0 attn-cp 2 %s: exit %d", dtypes[i], rc);
    ok &= MC_CHECK(strstr(g_out, "ABI 1.0 negotiated (host speaks 1.0-1.0)") != NULL &&
                       strstr(g_out, "step: ABI 1.0 collectives") != NULL,
                   "abi 1.0 %s: not negotiated down to 1.0 or not the 1.0 step", dtypes[i]);
    ok &= MC_CHECK(strstr(g_out, "moe all-gather on MOE_CP [0,2]") != NULL,
                   "abi 1.0 %s: the MoE all-gather did not run on MOE_CP [0,2]", dtypes[i]);
    ok &= MC_CHECK(strstr(g_out, "result: verified bit-exact on all 4 ranks (15 ops each") != NULL,
                   "abi 1.0 %s: not verified (5 ops x 3 iterations)", dtypes[i]);
    show_output_on_failure(ok, "abi 1.0 attn-cp run");
  }
}

/* The ABI-1.1 step on shm ranks: each topology prints its mode chain and verifies every
   transition (ops = transitions x (iters + 1)). */
static void test_modes(void) {
  static const struct {
    const char *what;
    const char *args[24];
    const char *chain, *tokens, *table;
    int ranks, ops;
  } cases[] = {
      {"tp4 ep4 moe_dp1 attn_cp2 --uneven",
       {"--ranks", "4", "--tp", "4", "--ep", "4", "--moe-dp", "1", "--attn-cp", "2", "--uneven",
        NULL},
       "attention TP_ATTN_FULL -> MoE MOE_FULL -> attention TP_ATTN_FULL -> dense MLP FULL -> "
       "attention TP_ATTN_FULL",
       "(attn_tp 2): [64,48]\n",
       "\nattn->moe              TP_ATTN_FULL->MOE_FULL ",
       4,
       16},
      {"tp8 ep4 moe_dp2 attn_cp2",
       {"--ranks", "8", "--tp", "8", "--ep", "4", "--moe-dp", "2", "--attn-cp", "2", "--dtype",
        "fp16", NULL},
       "attention TP_ATTN_FULL -> MoE TP_ATTN_FULL -> attention TP_ATTN_FULL -> dense MLP FULL -> "
       "attention TP_ATTN_FULL",
       "(attn_tp 4): [64,64]\n",
       "\ndense->attn            FULL->TP_ATTN_FULL ",
       8,
       16},
      {"tp4 moe_dense_tp1",
       {"--ranks", "4", "--tp", "4", "--moe-dense-tp", "1", "--dtype", "fp32", "--uneven", NULL},
       "attention TP_ATTN_FULL -> MoE TP_ATTN_FULL -> attention TP_ATTN_FULL -> dense MLP "
       "SCATTERED -> attention TP_ATTN_FULL",
       "(attn_tp 4): [64]\n",
       "\nattn->dense            TP_ATTN_FULL->SCATTERED ",
       4,
       16},
      {"world 8 tp4 ep4 moe_dp1 attn_cp2 --uneven (two TP blocks)",
       {"--ranks", "8", "--tp", "4", "--ep", "4", "--moe-dp", "1", "--attn-cp", "2", "--uneven",
        NULL},
       "attention TP_ATTN_FULL -> MoE MOE_FULL -> attention TP_ATTN_FULL -> dense MLP FULL -> "
       "attention TP_ATTN_FULL",
       "(attn_tp 2): [64,48], [48,32] (per TP block)",
       "\nmoe->attn              MOE_FULL->",
       8,
       16},
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    const char *args[40];
    static const char *const common[] = {"--iters", "3", "--hidden", "256", "--device", "cpu"};
    char want[96], chain[256];
    int n = 0, rc, ok = 1;
    for (int k = 0; cases[i].args[k] != NULL; k++) args[n++] = cases[i].args[k];
    for (size_t k = 0; k < sizeof(common) / sizeof(common[0]); k++) args[n++] = common[k];
    args[n] = NULL;
    rc = run_shim(NULL, args);
    ok &= MC_CHECK(rc == 0, "%s: exit %d", cases[i].what, rc);
    ok &= MC_CHECK(strstr(g_out, "step: ABI 1.1 scatter modes, 4 transitions") != NULL,
                   "%s: not the scatter-mode step with 4 transitions", cases[i].what);
    snprintf(chain, sizeof(chain), "modes: %s\n", cases[i].chain);
    ok &= MC_CHECK(strstr(g_out, chain) != NULL, "%s: no '%s'", cases[i].what, cases[i].chain);
    ok &= MC_CHECK(strstr(g_out, cases[i].tokens) != NULL, "%s: token counts are not '%s'",
                   cases[i].what, cases[i].tokens);
    ok &= MC_CHECK(strstr(g_out, cases[i].table) != NULL, "%s: no timing row '%s'", cases[i].what,
                   cases[i].table + 1);
    snprintf(want, sizeof(want), "result: verified bit-exact on all %d ranks (%d ops each",
             cases[i].ranks, cases[i].ops);
    ok &= MC_CHECK(strstr(g_out, want) != NULL, "%s: no '%s'", cases[i].what, want);
    ok &= MC_CHECK(strstr(g_out, "MISMATCH") == NULL, "%s: mismatches printed", cases[i].what);
    show_output_on_failure(ok, cases[i].what);
  }
}

/* Where the plugin cannot run a topology's modes the ABI-1.0 step runs and says why; a token
   count the scatter contract refuses fails naming the multiple. */
static void test_modes_edges(void) {
  const char *fallback[] = {"--ranks", "4", "--tp",     "4",  "--ep",     "2",   "--moe-dp", "2",
                            "--iters", "2", "--hidden", "64", "--device", "cpu", NULL};
  /* SCATTERED (moe_dense_tp 1) splits each group's tokens over attn_tp: 30 is refused. */
  const char *odd[] = {"--ranks",  "4",        "--tp", "4",       "--moe-dense-tp",
                       "1",        "--tokens", "30",   "--iters", "1",
                       "--device", "cpu",      NULL};
  /* Only TP_ATTN_FULL (attn_tp == tp, dense MLP tensor-parallel): nothing is split, and the
     planner's multiple is 1, so 30 runs. */
  const char *odd_ok[] = {"--ranks", "4",        "--tp", "4",        "--tokens", "30", "--iters",
                          "1",       "--hidden", "64",   "--device", "cpu",      NULL};
  int rc = run_shim(NULL, fallback), ok;
  ok = MC_CHECK(rc == 0, "tp4 ep2 moe_dp2: exit %d", rc);
  ok &= MC_CHECK(strstr(g_out, "step: ABI 1.0 collectives") != NULL &&
                     strstr(g_out, "not the scatter-mode step: layer_mode(SPARSE_MOE)") != NULL &&
                     strstr(g_out, "MOECOMM_ERR_NOT_SUPPORTED") != NULL,
                 "tp4 ep2 moe_dp2: no fallback to the ABI-1.0 step with layer_mode's reason");
  ok &= MC_CHECK(strstr(g_out, "result: verified bit-exact on all 4 ranks") != NULL,
                 "tp4 ep2 moe_dp2: not verified");
  show_output_on_failure(ok, "modes fallback");

  rc = run_shim(NULL, odd);
  ok = MC_CHECK(rc == 1, "--tokens 30 with attn_tp 4: exit %d, want 1", rc);
  ok &= MC_CHECK(strstr(g_out, "--tokens 30") != NULL && strstr(g_out, "multiple of") != NULL &&
                     strstr(g_out, "attn_tp=4") != NULL,
                 "--tokens 30 with attn_tp 4: the multiple is not named");
  show_output_on_failure(ok, "tokens not a multiple of attn_tp");

  rc = run_shim(NULL, odd_ok);
  ok = MC_CHECK(rc == 0, "--tokens 30, tp 4, no split mode: exit %d", rc);
  ok &= MC_CHECK(strstr(g_out, "tokens per attention group (attn_tp 4): [30]\n") != NULL &&
                     strstr(g_out, "result: verified bit-exact on all 4 ranks") != NULL,
                 "--tokens 30, tp 4, no split mode: not run at 30 tokens and verified");
  show_output_on_failure(ok, "tokens 30 without a split mode");
}

/* The "  size N: ..." lines of a --capture-sizes run, in order, into sizes (at most cap);
   returns how many.  *all_ok: every line ends in "verified" (or the replay times after it). */
static int printed_sizes(int *sizes, int cap, int *all_ok) {
  const char *p = g_out;
  int n = 0;
  *all_ok = 1;
  while ((p = strstr(p, "\n  size ")) != NULL) {
    const char *end;
    int v = 0;
    p += strlen("\n  size ");
    if (sscanf(p, "%d:", &v) != 1) continue;
    if (n < cap) sizes[n] = v;
    n++;
    end = strchr(p, '\n');
    if (end == NULL) end = p + strlen(p);
    {
      const char *ver = strstr(p, " verified"), *failed = strstr(p, "FAILED");
      if (ver == NULL || ver > end || (failed != NULL && failed < end)) *all_ok = 0;
    }
  }
  return n;
}

/* --capture-sizes plan with tp 4 and moe_dense_tp 1 (SCATTERED: multiples of attn_tp = 4): the
   sizes are abi/moecomm.h's default candidates (1, 2, 4, 8, 12, 16, 24, 32..256 step 8,
   272..512 step 16) that are multiples of 4, in order; each is run, captured (the scope, on CPU)
   and re-run, verified.  A list the planner drops a size of exits 2 naming the multiple. */
static void test_capture_sizes(void) {
  const char *plan[] = {"--ranks",         "4",    "--tp",     "4",  "--moe-dense-tp", "1",
                        "--capture-sizes", "plan", "--hidden", "24", "--iters",        "2",
                        "--device",        "cpu",  NULL};
  const char *list[] = {
      "--ranks",  "4",        "--tp",      "4",        "--ep",     "4",
      "--moe-dp", "1",        "--attn-cp", "2",        "--uneven", "--capture-sizes",
      "16,64,8",  "--dtype",  "fp16",      "--hidden", "32",       "--iters",
      "3",        "--device", "cpu",       NULL};
  const char *drop[] = {"--ranks",         "4",         "--tp",     "4",  "--moe-dense-tp", "1",
                        "--capture-sizes", "8,6,16,10", "--hidden", "32", "--iters",        "1",
                        "--device",        "cpu",       NULL};
  const char *none[] = {"--ranks",         "4",   "--tp",     "4",  "--moe-dense-tp", "1",
                        "--capture-sizes", "6",   "--hidden", "32", "--iters",        "1",
                        "--device",        "cpu", NULL};
  int want[64], got[64], nw = 0, ng, rc, ok, all_ok, same;
  char line[160];
  {
    int cand[64], nc = 0;
    static const int head[] = {1, 2, 4, 8, 12, 16, 24};
    for (size_t i = 0; i < sizeof(head) / sizeof(head[0]); i++) cand[nc++] = head[i];
    for (int v = 32; v <= 256; v += 8) cand[nc++] = v;
    for (int v = 272; v <= 512; v += 16) cand[nc++] = v;
    for (int i = 0; i < nc; i++)
      if (cand[i] % 4 == 0) want[nw++] = cand[i];
  }
  rc = run_shim(NULL, plan);
  ok = MC_CHECK(rc == 0, "capture-sizes plan: exit %d", rc);
  ng = printed_sizes(got, 64, &all_ok);
  same = ng == nw;
  for (int i = 0; same && i < nw; i++) same = got[i] == want[i];
  ok &= MC_CHECK(same,
                 "capture-sizes plan: %d sizes printed, want the %d multiples of 4 of the "
                 "default candidates (first printed %d, want %d)",
                 ng, nw, ng > 0 ? got[0] : -1, want[0]);
  ok &= MC_CHECK(all_ok, "capture-sizes plan: a size line does not say verified");
  snprintf(line, sizeof(line),
           "capture sizes: %d from plan_capture_sizes (tokens per attention "
           "group; multiple 4): 4,8,12,",
           nw);
  ok &= MC_CHECK(strstr(g_out, line) != NULL, "capture-sizes plan: no '%s'", line);
  ok &= MC_CHECK(strstr(g_out, "  size 4: capture scope only") != NULL,
                 "capture-sizes plan: the CPU run does not say capture is the scope only");
  /* 4 transitions x (50 eager + 50 inside the scopes + 2 timed eager + 2 rounds of 50) */
  snprintf(line, sizeof(line),
           "result: verified bit-exact on all 4 ranks (%d ops each: %d "
           "capture sizes",
           4 * (2 * nw + 2 + 2 * nw), nw);
  ok &= MC_CHECK(strstr(g_out, line) != NULL, "capture-sizes plan: no '%s'", line);
  ok &= MC_CHECK(strstr(g_out, "at the largest capture size") != NULL &&
                     strstr(g_out, "\nattn->dense ") != NULL && strstr(g_out, "\nmemory") != NULL,
                 "capture-sizes plan: no timing table at the largest size or no memory table");
  ok &= MC_CHECK(strstr(g_out, "MISMATCH") == NULL, "capture-sizes plan: mismatches printed");
  show_output_on_failure(ok, "capture-sizes plan");

  /* A list out of order, uneven counts and MOE_FULL padding: buffers fit 64, runs at 16 and 8
     reuse them. */
  rc = run_shim(NULL, list);
  ok = MC_CHECK(rc == 0, "capture-sizes 16,64,8 attn-cp 2 uneven: exit %d", rc);
  ng = printed_sizes(got, 64, &all_ok);
  ok &= MC_CHECK(ng == 3 && got[0] == 16 && got[1] == 64 && got[2] == 8 && all_ok,
                 "capture-sizes 16,64,8: sizes not printed in the given order, verified");
  ok &= MC_CHECK(strstr(g_out, "(attn_tp 2): [64,48]\n") != NULL,
                 "capture-sizes 16,64,8: the step is not described at the largest size");
  /* 4 transitions x (3 eager + 3 inside the scopes + 3 timed eager + 3 rounds of 3) */
  ok &= MC_CHECK(strstr(g_out,
                        "result: verified bit-exact on all 4 ranks (72 ops each: 3 capture "
                        "sizes") != NULL,
                 "capture-sizes 16,64,8: not verified");
  show_output_on_failure(ok, "capture-sizes list");

  rc = run_shim(NULL, drop);
  ok = MC_CHECK(rc == 2, "capture-sizes 8,6,16,10 with tp4 moe_dense_tp1: exit %d, want 2", rc);
  ok &= MC_CHECK(strstr(g_out, "drops 6,10") != NULL && strstr(g_out, "multiples of 4") != NULL,
                 "capture-sizes 8,6,16,10: the dropped sizes and the multiple are not named");
  ok &= MC_CHECK(strstr(g_out, "result:") == NULL, "capture-sizes 8,6,16,10: the step ran");
  show_output_on_failure(ok, "capture-sizes with sizes the planner drops");

  rc = run_shim(NULL, none);
  ok = MC_CHECK(rc == 2, "capture-sizes 6 with tp4 moe_dense_tp1: exit %d, want 2", rc);
  ok &= MC_CHECK(strstr(g_out, "multiples of 4") != NULL && strstr(g_out, "MOECOMM") == NULL,
                 "capture-sizes 6: the planner's sentence naming the multiple is not printed");
  show_output_on_failure(ok, "capture-sizes the planner drops entirely");
}

/* On 2 or more GPUs: the scatter-mode step with MOE_FULL and uneven counts, eager then through
   capture and graph replays. */
static void test_gpu_graph(void) {
  const char *args[] = {"--ranks",  "2",       "--tp",      "2", "--ep",     "2",
                        "--moe-dp", "1",       "--attn-cp", "2", "--uneven", "--dtype",
                        "fp32",     "--iters", "3",         NULL};
  int rc, ok = 1;
  if (g_gpus < 2) {
    mc_test_skip("shim GPU graph run", "%d CUDA device(s); needs 2", g_gpus);
    return;
  }
  rc = run_shim(NULL, args);
  ok &= MC_CHECK(rc == 0, "GPU attn-cp 2: exit %d", rc);
  ok &= MC_CHECK(strstr(g_out,
                        "modes: attention TP_ATTN_FULL -> MoE MOE_FULL -> attention "
                        "TP_ATTN_FULL -> dense MLP FULL -> attention TP_ATTN_FULL") != NULL,
                 "GPU attn-cp 2: the mode chain is not printed");
  ok &= MC_CHECK(strstr(g_out, "then graph replays") != NULL &&
                     strstr(g_out, "result: verified bit-exact on all 2 ranks") != NULL,
                 "GPU attn-cp 2: not verified through graph replays");
  show_output_on_failure(ok, "GPU attn-cp 2");

  {
    /* One graph per size, each in its own capture scope, replayed round-robin. */
    const char *sz[] = {"--ranks",
                        "2",
                        "--tp",
                        "2",
                        "--moe-dense-tp",
                        "1",
                        "--capture-sizes",
                        "8,2,64",
                        "--hidden",
                        "512",
                        "--iters",
                        "3",
                        NULL};
    int got[8], n, all_ok;
    rc = run_shim(NULL, sz);
    ok = MC_CHECK(rc == 0, "GPU capture-sizes 8,2,64: exit %d", rc);
    n = printed_sizes(got, 8, &all_ok);
    ok &= MC_CHECK(n == 3 && got[0] == 8 && got[1] == 2 && got[2] == 64 && all_ok,
                   "GPU capture-sizes 8,2,64: sizes not all printed and verified");
    ok &= MC_CHECK(strstr(g_out, "  size 2: graph captured, 3 replays verified") != NULL &&
                       strstr(g_out, "3 rounds of graph replays") != NULL,
                   "GPU capture-sizes 8,2,64: not one graph per size replayed");
    show_output_on_failure(ok, "GPU capture-sizes");
  }
}

/* --pp: the step ends with the hand-off between pipeline stages on PP (ABI 1.2), verified with
   the rest; on 2 GPUs (tp 1 pp 2) also through graph replays.  An older ABI runs the step
   without it and says why. */
static void test_pp(void) {
  static const struct {
    const char *what;
    const char *args[24];
    const char *want[3];
  } cases[] = {
      {"tp2 pp2",
       {"--ranks", "4", "--tp", "2", "--pp", "2", "--iters", "2", "--hidden", "256", "--device",
        "cpu", NULL},
       {"then pp hand-off on PP [0,2]: each stage receives the previous stage's [64 x 256] bf16",
        "\npp hand-off            PP [0,2] ",
        "result: verified bit-exact on all 4 ranks (9 ops each"}},
      {"tp2 pp4 ep2 fp32",
       {"--ranks", "8", "--tp", "2", "--pp", "4", "--ep", "2", "--dtype", "fp32", "--iters", "1",
        "--hidden", "128", "--device", "cpu", NULL},
       {"then pp hand-off on PP [0,2,4,6]", "\npp hand-off            PP [0,2,4,6] ",
        "result: verified bit-exact on all 8 ranks"}},
      {"tp2 pp2 --abi-max 1.1",
       {"--ranks", "4", "--tp", "2", "--pp", "2", "--abi-max", "1.1", "--iters", "1", "--hidden",
        "256", "--device", "cpu", NULL},
       {"(pp 2, but send/recv need ABI 1.2 and an older one was negotiated: no hand-off",
        "result: verified bit-exact on all 4 ranks (4 ops each", "step: ABI 1.1 scatter modes"}},
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    int rc = run_shim(NULL, cases[i].args), ok;
    ok = MC_CHECK(rc == 0, "--pp, %s: exit %d", cases[i].what, rc);
    for (int w = 0; w < 3; w++)
      ok &= MC_CHECK(strstr(g_out, cases[i].want[w]) != NULL, "--pp, %s: no '%s'", cases[i].what,
                     cases[i].want[w]);
    ok &= MC_CHECK(strstr(g_out, "MISMATCH") == NULL, "--pp, %s: mismatches", cases[i].what);
    show_output_on_failure(ok, cases[i].what);
  }
  if (g_gpus < 2) {
    mc_test_skip("shim --pp on GPUs", "%d CUDA device(s); needs 2", g_gpus);
    return;
  }
  {
    const char *args[] = {"--ranks", "2", "--tp", "1", "--pp", "2", "--iters", "3", NULL};
    int rc = run_shim(NULL, args), ok;
    ok = MC_CHECK(rc == 0, "GPU --pp 2: exit %d", rc);
    ok &= MC_CHECK(strstr(g_out, "then pp hand-off on PP [0,1]") != NULL &&
                       strstr(g_out, "then graph replays") != NULL &&
                       strstr(g_out, "result: verified bit-exact on all 2 ranks") != NULL,
                   "GPU --pp 2: the hand-off was not verified through graph replays");
    show_output_on_failure(ok, "GPU --pp 2");
  }
}

/* --moe-a2a: the attention all-reduce, then dispatch, identity experts and combine on MOE_EP,
   verified bit-exactly: on shm ranks (MOE_EP every rank, and two groups of 2 with fp32 and
   capture sizes); on GPUs (1 or 2 ranks) through capture and graph replays, on the NVLink
   path and on the NCCL path. */
static void test_moe_a2a(void) {
  static const struct {
    const char *what;
    const char *args[24];
    const char *step;
    int ranks, ops;
  } cases[] = {
      {"tp4 ep4 bf16",
       {"--ranks", "4", "--tp", "4", "--ep", "4", "--iters", "3", NULL},
       "moe dispatch on MOE_EP [0-3] (16 experts, top-4, capacity 256 rows)",
       4,
       12},
      {"tp4 ep2 fp32 capture sizes",
       {"--ranks", "4", "--tp", "4", "--ep", "2", "--dtype", "fp32", "--iters", "2",
        "--capture-sizes", "4,12,32", NULL},
       "moe dispatch on MOE_EP [0,2] (8 experts, top-4, capacity 64 rows)",
       4,
       42},
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    static const char *const common[] = {"--moe-a2a", "--hidden", "256", "--device", "cpu"};
    const char *args[40];
    char want[96];
    int n = 0, rc, ok = 1;
    for (int k = 0; cases[i].args[k] != NULL; k++) args[n++] = cases[i].args[k];
    for (size_t k = 0; k < sizeof(common) / sizeof(common[0]); k++) args[n++] = common[k];
    args[n] = NULL;
    rc = run_shim(NULL, args);
    snprintf(want, sizeof(want), "result: verified bit-exact on all %d ranks (%d ops each",
             cases[i].ranks, cases[i].ops);
    ok &= MC_CHECK(rc == 0 && strstr(g_out, "step: MoE all-to-all (ABI 1.2)") != NULL &&
                       strstr(g_out, cases[i].step) != NULL && strstr(g_out, want) != NULL,
                   "--moe-a2a %s: exit %d, or no '%s' / '%s'", cases[i].what, rc, cases[i].step,
                   want);
    ok &= MC_CHECK(strstr(g_out, "\nmoe dispatch ") != NULL &&
                       strstr(g_out, "\nmoe combine ") != NULL && strstr(g_out, "MISMATCH") == NULL,
                   "--moe-a2a %s: no timing rows for dispatch and combine, or mismatches",
                   cases[i].what);
    show_output_on_failure(ok, cases[i].what);
  }
  if (g_gpus < 1) {
    mc_test_skip("shim --moe-a2a on GPUs", "no CUDA device");
    return;
  }
  for (int path = 0; path < 2; path++) {
    const char *ranks = g_gpus >= 2 ? "2" : "1";
    const char *args[] = {"--ranks",   ranks,     "--tp", ranks,      "--ep", ranks,
                          "--moe-a2a", "--iters", "5",    "--hidden", "512",  NULL};
    const char *nccl[] = {"MOECOMM_BACKEND_MOE_EP=nccl", NULL};
    int rc = run_shim(path ? nccl : NULL, args), ok;
    ok = MC_CHECK(rc == 0 && strstr(g_out, "then graph replays") != NULL &&
                      strstr(g_out, "result: verified bit-exact on all") != NULL,
                  "GPU --moe-a2a (%s path, %s ranks): exit %d, or not verified through graph "
                  "replays",
                  path ? "nccl" : "nvlink", ranks, rc);
    {
      /* the timing row of the dispatch names the backend that served it */
      const char *row = strstr(g_out, "\nmoe dispatch ");
      char line[256] = "";
      if (row != NULL) sscanf(row + 1, "%255[^\n]", line);
      ok &= MC_CHECK(strstr(line, path ? " nccl " : " custom ") != NULL,
                     "GPU --moe-a2a: the %s path did not serve the dispatch: '%s'",
                     path ? "nccl" : "nvlink", line);
    }
    show_output_on_failure(ok, "GPU --moe-a2a");
  }
}

static void check_groups(const char *what, const char *kind, const char *want) {
  char got[1024];
  groups_of(g_out, kind, got, sizeof(got));
  MC_CHECK(strcmp(got, want) == 0, "%s: %s printed '%s', want '%s'", what, kind, got, want);
}

static void test_print_groups(void) {
  const char *a1[] = {"--ranks",        "8",        "--tp", "8", "--ep", "2",
                      "--print-groups", "--device", "cpu",  NULL};
  const char *a2[] = {"--ranks",  "8", "--tp", "8", "--attn-cp",      "2",
                      "--moe-dp", "2", "--ep", "4", "--print-groups", "--device",
                      "cpu",      NULL};
  int rc = run_shim(NULL, a1), ok;
  ok = MC_CHECK(rc == 0, "print-groups tp8 ep2: exit %d", rc);
  /* DESIGN.md: tp=8, ep=2 -> moe_tp=4, MOE_EP [0,4][1,5][2,6][3,7], MOE_TP [0-3][4-7],
     MOE_DP singletons. */
  check_groups("tp8 ep2", "MOE_EP", "[0,4] [1,5] [2,6] [3,7]");
  check_groups("tp8 ep2", "MOE_TP", "[0-3] [4-7]");
  check_groups("tp8 ep2", "MOE_DP", "[0] [1] [2] [3] [4] [5] [6] [7]");
  check_groups("tp8 ep2", "TP", "[0-7]");
  check_groups("tp8 ep2", "WORLD", "[0-7]");
  MC_CHECK(strstr(g_out, "INCONSISTENT") == NULL, "tp8 ep2: ranks disagree");
  MC_CHECK(strstr(g_out, "backend ") != NULL, "tp8 ep2: no backend printed");
  show_output_on_failure(ok, "print-groups tp8 ep2");

  /* DESIGN.md: tp=8, attn_cp=2, moe_dp=2, ep=4 -> ATTN_CP [0,4][1,5][2,6][3,7],
     ATTN_TP [0-3][4-7], MOE_EP [0-3][4-7]. */
  rc = run_shim(NULL, a2);
  ok = MC_CHECK(rc == 0, "print-groups tp8 cp2 dp2 ep4: exit %d", rc);
  check_groups("tp8 cp2 dp2 ep4", "ATTN_CP", "[0,4] [1,5] [2,6] [3,7]");
  check_groups("tp8 cp2 dp2 ep4", "ATTN_TP", "[0-3] [4-7]");
  check_groups("tp8 cp2 dp2 ep4", "MOE_EP", "[0-3] [4-7]");
  show_output_on_failure(ok, "print-groups tp8 cp2 dp2 ep4");
}

static void test_usage_errors(void) {
  static const char *const cases[][4] = {
      {"--bogus", NULL},
      {"--tp", "abc", NULL},
      {"--dtype", "int8", NULL},
      {"--ranks", "0", NULL},
      {"--iters", NULL},
      {"--device", "gpu7", NULL},
      {"--print-groups=1", NULL},
      {"--tokens", "-3", NULL},
      {"--abi-max", "2.0", NULL},
      {"--abi-max", "1.9", NULL},
      {"--abi-max", "1", NULL},
      {"--uneven=1", NULL},
      {"--capture-sizes", NULL},
      {"--capture-sizes", "8,,16", NULL},
      {"--capture-sizes", "8,8", NULL},
      {"--capture-sizes", "0,8", NULL},
      {"--capture-sizes", "plan,8", NULL},
      {"--capture-sizes", "16,", NULL},
      {"--demo", "--capture-sizes", "plan", NULL},
      {"--timeout", "0", NULL},
      {"--progress-after", "-1", NULL},
      {"--progress-after", "x", NULL},
      {"--moe-a2a", "--uneven", NULL},
      {"--moe-a2a", "--abi-max", "1.1", NULL},
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    int rc = run_shim(NULL, cases[i]);
    MC_CHECK(rc == 2, "'%s %s': exit %d, want 2", cases[i][0], cases[i][1] ? cases[i][1] : "", rc);
    MC_CHECK(strstr(g_out, "usage: moecomm-shim") != NULL, "'%s': no usage text", cases[i][0]);
  }
  {
    const char *help[] = {"--help", NULL};
    int rc = run_shim(NULL, help);
    MC_CHECK(rc == 0 && strstr(g_out, "--print-groups") != NULL &&
                 strstr(g_out, "--capture-sizes") != NULL,
             "--help: exit %d, or --print-groups / --capture-sizes not in the usage", rc);
  }
}

/* Failures must exit non-zero and say why: the moecomm result name and the plugin's sentence. */
static void test_failures(void) {
  const char *bad_topo[] = {"--ranks", "4", "--tp", "4", "--ep", "3", "--device", "cpu", NULL};
  const char *plain[] = {"--ranks", "2", "--device", "cpu", NULL};
  const char *missing[] = {"MOECOMM_PLUGIN=/nonexistent/libmoecomm.so", NULL};
  int rc = run_shim(NULL, bad_topo), ok;
  ok = MC_CHECK(rc == 1, "ep 3 with tp 4: exit %d, want 1", rc);
  ok &= MC_CHECK(strstr(g_out, "MOECOMM_ERR_CONFIG") != NULL,
                 "ep 3 with tp 4: the result name is not printed");
  ok &= MC_CHECK(strstr(g_out, "context_create failed") != NULL,
                 "ep 3 with tp 4: the failing call is not named");
  show_output_on_failure(ok, "ep 3 with tp 4");

  rc = run_shim(missing, plain);
  ok = MC_CHECK(rc == 1, "missing plugin: exit %d, want 1", rc);
  ok &= MC_CHECK(strstr(g_out, "/nonexistent/libmoecomm.so") != NULL,
                 "missing plugin: the path is not named");
  show_output_on_failure(ok, "missing plugin");

  {
    const char *env[] = {"MOECOMM_RANK=3", "MOECOMM_WORLD_SIZE=2", NULL};
    rc = run_shim(env, plain + 2);
    MC_CHECK(rc == 2 && strstr(g_out, "MOECOMM_RANK") != NULL,
             "MOECOMM_RANK=3 of 2: exit %d, want 2 naming the variable", rc);
  }
}

/* The "[t s] rank 0: " lines in order: how many, and whether their times never go back. */
static int progress_lines(int *ordered) {
  const char *p = g_out;
  double last = -1;
  int n = 0;
  *ordered = 1;
  while ((p = strstr(p, "\n[")) != NULL) {
    double t;
    int used = 0;
    p++;
    if (sscanf(p, "[%lf s] rank 0: %n", &t, &used) != 1 || used == 0) continue;
    if (t < last) *ordered = 0;
    last = t;
    n++;
  }
  return n;
}

/* --progress-after 0: a line as each phase and capture size completes, with the time. */
static void test_progress(void) {
  const char *sizes[] = {"--ranks",  "2",  "--capture-sizes",  "8,16,4", "--iters",  "2",
                         "--hidden", "64", "--progress-after", "0",      "--device", "cpu",
                         NULL};
  const char *plain[] = {"--ranks",          "2", "--iters",  "2",   "--hidden", "64",
                         "--progress-after", "0", "--device", "cpu", NULL};
  int rc = run_shim(NULL, sizes), ok, ordered, n;
  ok = MC_CHECK(rc == 0, "capture sizes with progress: exit %d", rc);
  n = progress_lines(&ordered);
  ok &= MC_CHECK(n >= 6 && ordered,
                 "capture sizes with progress: %d lines%s, want 6 or more in "
                 "time order",
                 n, ordered ? "" : " out of order");
  ok &= MC_CHECK(
      strstr(g_out, "] rank 0: context created (2 ranks)\n") != NULL &&
          strstr(g_out, "] rank 0: ran size 8 in its capture scope (1/3)\n") != NULL &&
          strstr(g_out, "] rank 0: ran size 4 in its capture scope (3/3)\n") != NULL &&
          strstr(g_out, "] rank 0: 2 timed eager iterations at size 16 done\n") != NULL &&
          strstr(g_out, "] rank 0: 2 rounds of eager re-runs over every size done\n") != NULL,
      "capture sizes with progress: a phase line is missing");
  ok &= MC_CHECK(strstr(g_out, "rank 1: ") == NULL || strstr(g_out, "] rank 1: ") == NULL,
                 "capture sizes with progress: a rank other than 0 printed progress");
  show_output_on_failure(ok, "capture sizes with progress lines");

  rc = run_shim(NULL, plain);
  ok = MC_CHECK(rc == 0, "plain run with progress: exit %d", rc);
  n = progress_lines(&ordered);
  ok &= MC_CHECK(
      n >= 3 && ordered &&
          strstr(g_out, "] rank 0: warm-up iteration done (communicators created)\n") != NULL &&
          strstr(g_out, "] rank 0: 2 timed eager iterations done\n") != NULL,
      "plain run with progress: %d lines, or the warm-up or timed iterations line is "
      "missing",
      n);
  show_output_on_failure(ok, "plain run with progress lines");
}

/* "timeout N s" of the run line, or -1. */
static int printed_timeout(void) {
  const char *p = strstr(g_out, "\n     timeout ");
  int t = -1;
  if (p != NULL && sscanf(p, "\n     timeout %d s", &t) != 1) t = -1;
  return t;
}

/* The default timeout grows with the work asked; runs with a bad topology (ep 3 with tp 4) fail
   at once but print the run lines first.  --timeout S is taken as given. */
static void test_timeout_scaling(void) {
  static const char *const base[] = {"--tp", "4", "--ep", "3", "--device", "cpu"};
  static const char *const extra[][5] = {
      {"--ranks", "4", NULL},
      {"--ranks", "4", "--capture-sizes", "plan", NULL},
      {"--ranks", "4", "--iters", "2000", NULL},
      {"--ranks", "4", "--tokens", "4096", NULL},
      {"--ranks", "32", NULL},
      {"--ranks", "4", "--timeout", "7", NULL},
  };
  int t[6];
  for (size_t i = 0; i < 6; i++) {
    const char *args[16];
    int n = 0, rc;
    for (int k = 0; extra[i][k] != NULL; k++) args[n++] = extra[i][k];
    for (size_t k = 0; k < sizeof(base) / sizeof(base[0]); k++) args[n++] = base[k];
    args[n] = NULL;
    rc = run_shim(NULL, args);
    t[i] = printed_timeout();
    if (!MC_CHECK(rc == 1 && t[i] > 0, "%s %s %s: exit %d, printed timeout %d", extra[i][0],
                  extra[i][1], extra[i][2] ? extra[i][2] : "", rc, t[i]))
      show_output_on_failure(0, "a run line with its timeout");
  }
  MC_CHECK(t[0] >= 60 && t[1] > t[0] && t[2] > t[0] && t[3] > t[0] && t[4] > t[0],
           "timeouts: default %d s, capture-sizes plan %d, 2000 iterations %d, 4096 tokens %d, "
           "32 ranks %d: each should exceed the default",
           t[0], t[1], t[2], t[3], t[4]);
  MC_CHECK(t[5] == 7 && strstr(g_out, "timeout 7 s (--timeout)") != NULL, "--timeout 7: printed %d",
           t[5]);
}

/* A run past a tiny --timeout fails, names each rank's phase, and says how to raise it. */
static void test_timeout_message(void) {
  const char *args[] = {"--ranks",
                        "4",
                        "--tp",
                        "4",
                        "--moe-dense-tp",
                        "1",
                        "--capture-sizes",
                        "plan",
                        "--timeout",
                        "1",
                        "--device",
                        "cpu",
                        NULL};
  const char *line, *bad = NULL;
  int rc = run_shim(NULL, args), ok, phases = 0;
  ok = MC_CHECK(rc == 1, "--timeout 1: exit %d, want 1", rc);
  ok &= MC_CHECK(
      strstr(g_out, "ranks still running after 1 s; killed every rank. They were:") != NULL,
      "--timeout 1: no timeout line");
  /* The lines after the header, up to the hint: "  rank N: <phase>" or "  ranks A-B: <phase>". */
  for (line = strstr(g_out, "They were:\n"); line != NULL; line = strchr(line + 1, '\n')) {
    size_t len = strcspn(line + 1, "\n");
    if (strncmp(line + 1, "  rank", 6) != 0) continue;
    phases++;
    if (len <= 12 || memmem(line + 1, len, "(no phase reported)", 19) != NULL) bad = line + 1;
  }
  ok &= MC_CHECK(phases >= 1 && bad == NULL, "--timeout 1: %d phase lines, %s%.*s", phases,
                 bad ? "a rank without a phase: " : "", bad ? (int)strcspn(bad, "\n") : 0,
                 bad ? bad : "");
  ok &= MC_CHECK(strstr(g_out, "raise the limit with --timeout S") != NULL &&
                     strstr(g_out, "its 1 s timeout (--timeout)") != NULL,
                 "--timeout 1: the message does not say how to raise the limit");
  ok &= MC_CHECK(strstr(g_out, "timed out") != NULL && strstr(g_out, "result: verified") == NULL,
                 "--timeout 1: the run's last line does not say it timed out");
  ok &= MC_CHECK(strstr(g_out, "was killed by signal") == NULL,
                 "--timeout 1: each killed rank is reported again after the phases");
  show_output_on_failure(ok, "--timeout 1");
}

/* MOECOMM_PLUGIN_DIR that does not exist: one warning line naming it; the default (next to the
   shim) still loads. */
static void test_plugin_dir_warning(void) {
  const char *env[] = {"MOECOMM_PLUGIN", "MOECOMM_PLUGIN_DIR=/nonexistent/moecomm-plugins", NULL};
  const char *args[] = {"--ranks", "2", "--iters", "1", "--hidden", "64", "--device", "cpu", NULL};
  const char *w;
  int rc = run_shim(env, args), ok;
  w = strstr(g_out, "WARN MOECOMM_PLUGIN_DIR=/nonexistent/moecomm-plugins: No such file");
  ok = MC_CHECK(rc == 0, "missing MOECOMM_PLUGIN_DIR: exit %d", rc);
  ok &= MC_CHECK(w != NULL && strstr(strchr(w, '\n'), "MOECOMM_PLUGIN_DIR=") == NULL,
                 "missing MOECOMM_PLUGIN_DIR: want exactly one warning naming it");
  show_output_on_failure(ok, "missing MOECOMM_PLUGIN_DIR");
}

int main(int argc, char **argv) {
  char build[PATH_MAX];
  mc_test_init("shim_run", argc, argv);
  if (!MC_CHECK(mc_test_build_dir(build, sizeof(build)) == 0, "no build directory"))
    return mc_test_finish();
  snprintf(g_shim, sizeof(g_shim), "%.*s/moecomm-shim", PATH_MAX - 20, build);
  snprintf(g_plugin, sizeof(g_plugin), "%.*s/libmoecomm.so", PATH_MAX - 20, build);
  if (!MC_CHECK(access(g_shim, X_OK) == 0, "%s: %s (make shim)", g_shim, strerror(errno)) ||
      !MC_CHECK(access(g_plugin, R_OK) == 0, "%s: %s", g_plugin, strerror(errno)))
    return mc_test_finish();
  g_gpus = mc_test_gpu_count();

  test_usage_errors();
  test_default_runs();
  test_print_groups();
  test_abi10_gather();
  test_modes();
  test_modes_edges();
  test_capture_sizes();
  test_gpu_graph();
  test_pp();
  test_moe_a2a();
  test_failures();
  test_progress();
  test_timeout_scaling();
  test_timeout_message();
  test_plugin_dir_warning();
  return mc_test_finish();
}
