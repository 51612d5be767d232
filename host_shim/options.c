/* SPDX-License-Identifier: Apache-2.0 */
/* options.c - moecomm-shim's command line (options.h). */
#include "options.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/data.h"
#include "progress.h"

static void usage(FILE *f) {
  fprintf(f,
          "usage: moecomm-shim [options]\n"
          "Loads the moecomm plugin, starts ranks and runs a MoE layer step (warm-up, CUDA graph\n"
          "capture and replay on GPUs), verifying every result exactly and printing timings.\n"
          "\n"
          "  --ranks N         fork N ranks (default: the CUDA device count, else tp * pp);\n"
          "                    with MOECOMM_RANK and MOECOMM_WORLD_SIZE set, this process is one\n"
          "                    rank of an external launcher (bootstrap through MOECOMM_STORE)\n"
          "  --tp N --pp N --ep N --moe-dp N --attn-cp N --attn-dp N --moe-dense-tp N\n"
          "                    parallel sizes (default tp = ranks / pp, the rest 1)\n"
          "  --tokens T        tokens per rank, i.e. per attention group in the scatter-mode\n"
          "                    step (default 64; there a multiple of attn_tp when a layer\n"
          "                    runs SCATTERED or FULL, and of plan_capture_sizes' multiple)\n"
          "  --uneven          scatter-mode step: attention groups get different token counts\n"
          "                    (capture sizes from plan_capture_sizes), so padding is exercised\n"
          "  --moe-a2a         the MoE layer by moe_dispatch, identity experts and moe_combine\n"
          "                    on MOE_EP (ABI 1.2) after the attention all-reduce, instead of\n"
          "                    the MoE all-reduces; tokens are per rank\n"
          "  --capture-sizes S plan, or a comma list such as 8,16,64: run the step at each size\n"
          "                    (tokens as --tokens means them, replacing it), each eager once and\n"
          "                    captured into its own CUDA graph (own capture scope), then replay\n"
          "                    the graphs round-robin --iters times; plan: every size\n"
          "                    plan_capture_sizes gives for this topology; a list: every size\n"
          "                    must be kept by plan_capture_sizes, else exit 2\n"
          "  --abi-max V       newest ABI version offered to the plugin, 1.0 or 1.1 (default\n"
          "                    1.1): ABI 1.1 runs the step through scatter modes, 1.0 through\n"
          "                    the collectives\n"
          "  --hidden H        hidden size (default 1024)\n"
          "  --dtype D         bf16 | fp16 | fp32 (default bf16)\n"
          "  --iters N         timed iterations and graph replays (default 20)\n"
          "  --device D        auto | cpu (default auto: a GPU when there is one)\n"
          "  --seed S          input seed (default 0x5eed)\n"
          "  --timeout S       kill every rank after S seconds (default: scaled to the work\n"
          "                    asked - ranks, tp, capture sizes, tokens, iterations - and\n"
          "                    printed under the run line); a timeout names each rank's phase\n"
          "  --progress-after S  on runs longer than S seconds (default 3; 0: always), rank 0\n"
          "                    prints a line as each phase or capture size completes, with the\n"
          "                    time since the start: \"[12.3 s] rank 0: captured size 64 (5/24)\"\n"
          "  --print-groups    print every group kind's rank lists and backend, then stop\n"
          "  --env             print every MOECOMM_* variable the plugin reads (name, values,\n"
          "                    default, meaning: the README's table), then stop\n"
          "  --demo            the runs of `make demo` (GPUs when there are 2 or more, else shm)\n"
          "  --help            this text\n"
          "\n"
          "Environment: MOECOMM_PLUGIN (path, name, comma list or none), MOECOMM_PLUGIN_DIR,\n"
          "MOECOMM_TIMEOUT_MS, MOECOMM_DEBUG and the plugin's other MOECOMM_* variables.\n");
}

/* Bad usage: the reason, then the usage text. */
static shim_status_t bad(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static shim_status_t bad(const char *fmt, ...) {
  va_list ap;
  fprintf(stderr, "moecomm-shim: ");
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fprintf(stderr, "\n\n");
  usage(stderr);
  return SHIM_USAGE;
}

/* Strict decimal integer in [lo, hi]. */
static int parse_int(const char *s, int lo, int hi, int *out) {
  char *end = NULL;
  long v;
  if (s == NULL || s[0] == '\0') return -1;
  errno = 0;
  v = strtol(s, &end, 10);
  if (errno != 0 || *end != '\0' || v < lo || v > hi) return -1;
  *out = (int)v;
  return 0;
}

static int parse_u64(const char *s, uint64_t *out) {
  char *end = NULL;
  unsigned long long v;
  if (s == NULL || s[0] == '\0' || s[0] == '-') return -1;
  errno = 0;
  v = strtoull(s, &end, 0);
  if (errno != 0 || *end != '\0') return -1;
  *out = (uint64_t)v;
  return 0;
}

#define SHIM_MAX_CAPTURE_SIZES 1024

void shim_format_sizes(const int32_t *t, size_t n, char *buf, size_t size) {
  size_t used = 0;
  buf[0] = '\0';
  for (size_t i = 0; i < n; i++) {
    int w = snprintf(buf + used, size - used, "%s%d", i ? "," : "", (int)t[i]);
    if (w < 0 || (size_t)w >= size - used) {
      if (size >= 4) memcpy(buf + size - 4, "...", 4);
      return;
    }
    used += (size_t)w;
  }
}

void shim_opts_sizes_text(const shim_opts_t *o, char *buf, size_t size) {
  if (o->capture_plan)
    snprintf(buf, size, "plan");
  else
    shim_format_sizes(o->capture_sizes, (size_t)o->n_capture, buf, size);
}

/* "plan" | "8,16,64": distinct sizes in 1..2^20.  0 on success (o updated), -1 otherwise. */
static int parse_sizes(const char *s, shim_opts_t *o) {
  int32_t *t;
  int n = 0;
  if (s == NULL || s[0] == '\0') return -1;
  if (strcmp(s, "plan") == 0) {
    free(o->capture_sizes);
    o->capture_sizes = NULL;
    o->n_capture = 0;
    o->capture_plan = 1;
    return 0;
  }
  t = malloc(SHIM_MAX_CAPTURE_SIZES * sizeof(*t));
  if (t == NULL) return -1;
  for (const char *p = s;;) {
    char item[16];
    const char *comma = strchr(p, ',');
    size_t len = comma != NULL ? (size_t)(comma - p) : strlen(p);
    int v;
    if (len == 0 || len >= sizeof(item) || n == SHIM_MAX_CAPTURE_SIZES) goto bad;
    memcpy(item, p, len);
    item[len] = '\0';
    if (parse_int(item, 1, 1 << 20, &v) != 0) goto bad;
    for (int i = 0; i < n; i++)
      if (t[i] == v) goto bad;
    t[n++] = v;
    if (comma == NULL) break;
    p = comma + 1;
  }
  free(o->capture_sizes);
  o->capture_sizes = t;
  o->n_capture = n;
  o->capture_plan = 0;
  return 0;
bad:
  free(t);
  return -1;
}

/* "1.0" | "1.1": a version in the range this shim speaks. */
static int parse_abi(const char *s, uint32_t *out) {
  unsigned major, minor;
  char tail;
  if (s == NULL || sscanf(s, "%u.%u%c", &major, &minor, &tail) != 2) return -1;
  if (major != MOECOMM_ABI_MAJOR || minor > MOECOMM_ABI_MINOR) return -1;
  *out = MOECOMM_ABI_VERSION_MAKE(major, minor);
  return 0;
}

void shim_opts_default(shim_opts_t *o) {
  memset(o, 0, sizeof(*o));
  o->tokens = 64;
  o->hidden = 1024;
  o->dtype = MOECOMM_BFLOAT16;
  o->iters = 20;
  o->device = MOECOMM_DEVICE_AUTO;
  o->timeout_s = 0; /* scaled to the work (job.c) */
  o->seed = 0x5eedu;
  o->abi_max = MOECOMM_ABI_VERSION;
  o->progress_after_s = SHIM_PROGRESS_AFTER_S;
}

void shim_opts_free(shim_opts_t *o) {
  free(o->capture_sizes);
  o->capture_sizes = NULL;
  o->n_capture = 0;
}

/* Options that take no value, each setting one flag of shim_opts_t. */
static const struct {
  const char *name;
  size_t offset;
} k_flags[] = {
    {"--print-groups", offsetof(shim_opts_t, print_groups)},
    {"--env", offsetof(shim_opts_t, env)},
    {"--demo", offsetof(shim_opts_t, demo)},
    {"--uneven", offsetof(shim_opts_t, uneven)},
    {"--moe-a2a", offsetof(shim_opts_t, moe_a2a)},
};

/* Options that take an integer in [lo, hi]. */
static const struct {
  const char *name;
  size_t offset;
  int lo, hi;
} k_ints[] = {
    {"--ranks", offsetof(shim_opts_t, ranks), 1, 1024},
    {"--tp", offsetof(shim_opts_t, tp), 1, 1024},
    {"--pp", offsetof(shim_opts_t, pp), 1, 1024},
    {"--ep", offsetof(shim_opts_t, ep), 1, 1024},
    {"--moe-dp", offsetof(shim_opts_t, moe_dp), 1, 1024},
    {"--attn-cp", offsetof(shim_opts_t, attn_cp), 1, 1024},
    {"--attn-dp", offsetof(shim_opts_t, attn_dp), 1, 1024},
    {"--moe-dense-tp", offsetof(shim_opts_t, moe_dense_tp), 1, 1024},
    {"--tokens", offsetof(shim_opts_t, tokens), 1, 1 << 20},
    {"--hidden", offsetof(shim_opts_t, hidden), 1, 1 << 20},
    {"--iters", offsetof(shim_opts_t, iters), 1, 1000000},
    {"--timeout", offsetof(shim_opts_t, timeout_s), 1, 86400},
    {"--progress-after", offsetof(shim_opts_t, progress_after_s), 0, 86400},
};

/* An option with a value other than an integer (arg: as written, for the message when `name` is
   not an option at all). */
static shim_status_t parse_valued(const char *arg, const char *name, const char *val,
                                  shim_opts_t *o) {
  const char *v = val ? val : "(nothing)";
  if (strcmp(name, "--dtype") == 0) {
    if (shim_dtype_parse(val, &o->dtype) != 0)
      return bad("--dtype must be bf16, fp16 or fp32, got '%s'", v);
  } else if (strcmp(name, "--device") == 0) {
    if (val != NULL && strcmp(val, "auto") == 0)
      o->device = MOECOMM_DEVICE_AUTO;
    else if (val != NULL && strcmp(val, "cpu") == 0)
      o->device = MOECOMM_DEVICE_CPU;
    else
      return bad("--device must be auto or cpu, got '%s'", v);
  } else if (strcmp(name, "--abi-max") == 0) {
    if (parse_abi(val, &o->abi_max) != 0)
      return bad("--abi-max must be 1.0 or 1.1 (an ABI version this shim speaks), got '%s'", v);
  } else if (strcmp(name, "--capture-sizes") == 0) {
    if (parse_sizes(val, o) != 0)
      return bad(
          "--capture-sizes needs 'plan' or a comma list of at most %d distinct token "
          "counts in 1..%d, got '%s'",
          SHIM_MAX_CAPTURE_SIZES, 1 << 20, v);
  } else if (strcmp(name, "--seed") == 0) {
    if (parse_u64(val, &o->seed) != 0)
      return bad("--seed needs a non-negative integer, got '%s'", v);
  } else {
    return bad("unknown option '%s'", arg);
  }
  return SHIM_OK;
}

/* argv[*i] (and its value, which may be argv[*i + 1]: *i then moves past it). */
static shim_status_t parse_one(int argc, char **argv, int *i, shim_opts_t *o) {
  char name[64];
  const char *arg = argv[*i], *val = NULL, *eq = strchr(arg, '=');
  /* "--name value" and "--name=value" */
  if (eq != NULL && strncmp(arg, "--", 2) == 0 && (size_t)(eq - arg) < sizeof(name)) {
    memcpy(name, arg, (size_t)(eq - arg));
    name[eq - arg] = '\0';
    val = eq + 1;
  } else {
    snprintf(name, sizeof(name), "%s", arg);
  }
  if (strcmp(name, "--help") == 0 || strcmp(name, "-h") == 0) {
    usage(stdout);
    return SHIM_HELP;
  }
  for (size_t k = 0; k < sizeof(k_flags) / sizeof(k_flags[0]); k++) {
    if (strcmp(name, k_flags[k].name) != 0) continue;
    if (val != NULL) return bad("%s takes no value", name);
    *(int *)((char *)o + k_flags[k].offset) = 1;
    return SHIM_OK;
  }
  if (val == NULL) val = *i + 1 < argc ? argv[++*i] : NULL;
  for (size_t k = 0; k < sizeof(k_ints) / sizeof(k_ints[0]); k++) {
    if (strcmp(name, k_ints[k].name) != 0) continue;
    if (parse_int(val, k_ints[k].lo, k_ints[k].hi, (int *)((char *)o + k_ints[k].offset)) != 0)
      return bad("%s needs an integer in %d..%d, got '%s'", name, k_ints[k].lo, k_ints[k].hi,
                 val ? val : "(nothing)");
    return SHIM_OK;
  }
  return parse_valued(arg, name, val, o);
}

/* What no single option can check. */
static shim_status_t check_opts(const shim_opts_t *o) {
  if ((long long)o->tokens * o->hidden > (1LL << 28))
    return bad("--tokens x --hidden must be at most 2^28 elements per rank");
  for (int i = 0; i < o->n_capture; i++)
    if ((long long)o->capture_sizes[i] * o->hidden > (1LL << 28))
      return bad("--capture-sizes: %d x --hidden %d is more than 2^28 elements per rank",
                 (int)o->capture_sizes[i], o->hidden);
  if (o->demo && o->print_groups) return bad("--demo and --print-groups do not mix");
  if (o->demo && (o->capture_plan || o->n_capture > 0))
    return bad("--demo and --capture-sizes do not mix");
  if (o->moe_a2a && o->uneven)
    return bad("--moe-a2a and --uneven do not mix (the all-to-all step's tokens are per rank)");
  if (o->moe_a2a && o->abi_max < MOECOMM_ABI_VERSION_MAKE(1, 2))
    return bad("--moe-a2a needs ABI 1.2 (moe_dispatch); --abi-max is lower");
  return SHIM_OK;
}

shim_status_t shim_opts_parse(int argc, char **argv, shim_opts_t *o) {
  shim_opts_default(o);
  for (int i = 1; i < argc; i++) {
    shim_status_t st = parse_one(argc, argv, &i, o);
    if (st != SHIM_OK) return st;
  }
  return check_opts(o);
}
