/* main.c - moecomm-shim: argument parsing only; the run is in run.c. */
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data.h"
#include "run.h"

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
          "  --timeout S       kill every rank after S seconds (default 300)\n"
          "  --print-groups    print every group kind's rank lists and backend, then stop\n"
          "  --demo            the runs of `make demo` (GPUs when there are 2 or more, else shm)\n"
          "  --help            this text\n"
          "\n"
          "Environment: MOECOMM_PLUGIN (path, name, comma list or none), MOECOMM_PLUGIN_DIR,\n"
          "MOECOMM_TIMEOUT_MS, MOECOMM_DEBUG and the plugin's other MOECOMM_* variables.\n");
}

/* Bad usage: the reason, the usage text, exit status 2. */
static int bad(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int bad(const char *fmt, ...) {
  va_list ap;
  fprintf(stderr, "moecomm-shim: ");
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fprintf(stderr, "\n\n");
  usage(stderr);
  return 2;
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

int main(int argc, char **argv) {
  shim_opts_t o;
  int rc;
  static const struct {
    const char *name;
    size_t offset;
    int lo, hi;
  } ints[] = {
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
  };
  shim_opts_default(&o);
  for (int i = 1; i < argc; i++) {
    char name[64];
    const char *arg = argv[i], *val = NULL, *eq = strchr(arg, '=');
    int matched = 0;
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
      return 0;
    }
    if (strcmp(name, "--print-groups") == 0 || strcmp(name, "--demo") == 0 ||
        strcmp(name, "--uneven") == 0) {
      if (val != NULL) return bad("%s takes no value", name);
      if (strcmp(name, "--demo") == 0) o.demo = 1;
      else if (strcmp(name, "--uneven") == 0) o.uneven = 1;
      else o.print_groups = 1;
      continue;
    }
    if (val == NULL) val = i + 1 < argc ? argv[++i] : NULL;
    for (size_t k = 0; k < sizeof(ints) / sizeof(ints[0]); k++) {
      if (strcmp(name, ints[k].name) != 0) continue;
      if (parse_int(val, ints[k].lo, ints[k].hi, (int *)((char *)&o + ints[k].offset)) != 0) {
        return bad("%s needs an integer in %d..%d, got '%s'", name, ints[k].lo, ints[k].hi,
                   val ? val : "(nothing)");
      }
      matched = 1;
      break;
    }
    if (matched) continue;
    if (strcmp(name, "--dtype") == 0) {
      if (shim_dtype_parse(val, &o.dtype) != 0)
        return bad("--dtype must be bf16, fp16 or fp32, got '%s'", val ? val : "(nothing)");
    } else if (strcmp(name, "--device") == 0) {
      if (val != NULL && strcmp(val, "auto") == 0) o.device = MOECOMM_DEVICE_AUTO;
      else if (val != NULL && strcmp(val, "cpu") == 0) o.device = MOECOMM_DEVICE_CPU;
      else return bad("--device must be auto or cpu, got '%s'", val ? val : "(nothing)");
    } else if (strcmp(name, "--abi-max") == 0) {
      if (parse_abi(val, &o.abi_max) != 0)
        return bad("--abi-max must be 1.0 or 1.1 (an ABI version this shim speaks), got '%s'",
                   val ? val : "(nothing)");
    } else if (strcmp(name, "--capture-sizes") == 0) {
      if (parse_sizes(val, &o) != 0)
        return bad("--capture-sizes needs 'plan' or a comma list of at most %d distinct token "
                   "counts in 1..%d, got '%s'",
                   SHIM_MAX_CAPTURE_SIZES, 1 << 20, val ? val : "(nothing)");
    } else if (strcmp(name, "--seed") == 0) {
      if (parse_u64(val, &o.seed) != 0)
        return bad("--seed needs a non-negative integer, got '%s'", val ? val : "(nothing)");
    } else {
      return bad("unknown option '%s'", arg);
    }
  }
  if ((long long)o.tokens * o.hidden > (1LL << 28))
    return bad("--tokens x --hidden must be at most 2^28 elements per rank");
  for (int i = 0; i < o.n_capture; i++)
    if ((long long)o.capture_sizes[i] * o.hidden > (1LL << 28))
      return bad("--capture-sizes: %d x --hidden %d is more than 2^28 elements per rank",
                 (int)o.capture_sizes[i], o.hidden);
  if (o.demo && o.print_groups) return bad("--demo and --print-groups do not mix");
  if (o.demo && (o.capture_plan || o.n_capture > 0))
    return bad("--demo and --capture-sizes do not mix");
  rc = shim_run(&o);
  free(o.capture_sizes);
  return rc;
}
