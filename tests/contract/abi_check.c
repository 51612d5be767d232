/* SPDX-License-Identifier: Apache-2.0 */
/* check.c - `make abi-check` inside `make test`, and proof that it can fail.
 *
 * Runs packaging/abi-check.sh on this build's plugin (each baseline and frozen header it checks is
 * one check here, and every committed dump and frozen header must be among them), then builds
 * deliberately changed copies of abi/moecomm.h through the same script (packaging/abi/probe_v1.c
 * compiled against each) and compares them with the current baseline: an unchanged copy and appends
 * (a slot at the end of the table, an enumerator) must pass; two slots swapped, an argument retyped
 * and a field placed in the old tail padding must fail. */
#include <glob.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/harness.h"
#include "manifest.h"
#include "util.h"

#ifndef MC_SOURCE_DIR
#define MC_SOURCE_DIR "."
#endif

#define CMD_MAX 16384
#define OUT_MAX 65536

static char g_build[PATH_MAX];
static char g_tmp[PATH_MAX];

static char *read_text(const char *path) {
  FILE *f = fopen(path, "rb");
  char *buf;
  long n;
  if (f == NULL) return NULL;
  if (fseek(f, 0, SEEK_END) != 0 || (n = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) != 0 ||
      (buf = malloc((size_t)n + 1)) == NULL) {
    fclose(f);
    return NULL;
  }
  if (fread(buf, 1, (size_t)n, f) != (size_t)n) {
    free(buf);
    fclose(f);
    return NULL;
  }
  buf[n] = '\0';
  fclose(f);
  return buf;
}

/* Replaces the one occurrence of `from` in text by `to` (a new string); NULL if not exactly one. */
static char *replace_once(const char *text, const char *from, const char *to) {
  const char *at = strstr(text, from);
  size_t lt = strlen(text), lf = strlen(from), lto = strlen(to);
  char *out;
  if (at == NULL || strstr(at + 1, from) != NULL) return NULL;
  out = malloc(lt - lf + lto + 1);
  if (out == NULL) return NULL;
  memcpy(out, text, (size_t)(at - text));
  memcpy(out + (at - text), to, lto);
  memcpy(out + (at - text) + lto, at + lf, lt - (size_t)(at - text) - lf + 1);
  return out;
}

/* Every committed dump (1.0 from the frozen header, 1.1, the current one) and every frozen header
   was compared and passed: a baseline the script silently skipped would fail here. */
static void check_each_baseline(const char *out) {
  char pattern[PATH_MAX], want[PATH_MAX];
  glob_t gl;
  snprintf(pattern, sizeof(pattern), "%s/packaging/abi/libmoecomm-abi-*.abi", MC_SOURCE_DIR);
  if (!MC_CHECK(glob(pattern, 0, NULL, &gl) == 0, "no dump %s", pattern)) return;
  MC_CHECK(gl.gl_pathc >= 3, "%zu dumps %s: want 1.0, 1.1 and the current one at least",
           (size_t)gl.gl_pathc, pattern);
  for (size_t i = 0; i < gl.gl_pathc; i++) {
    const char *base = strrchr(gl.gl_pathv[i], '/') + 1;
    snprintf(want, sizeof(want), "abi-check: PASS %s:", base);
    MC_CHECK(strstr(out, want) != NULL, "abi-check did not pass %s against the build", base);
  }
  globfree(&gl);
  snprintf(pattern, sizeof(pattern), "%s/abi/moecomm_v*.h", MC_SOURCE_DIR);
  if (!MC_CHECK(glob(pattern, 0, NULL, &gl) == 0, "no frozen header %s", pattern)) return;
  for (size_t i = 0; i < gl.gl_pathc; i++) {
    const char *base = strrchr(gl.gl_pathv[i], '/') + 1;
    snprintf(want, sizeof(want), "abi-check: PASS %s: unchanged", base);
    MC_CHECK(strstr(out, want) != NULL, "abi-check did not check the frozen %s", base);
  }
  globfree(&gl);
}

static void run_check(void) {
  char cmd[CMD_MAX], out[OUT_MAX], *save = NULL, *line, *copy;
  int rc, pass = 0, fail = 0;
  snprintf(cmd, sizeof(cmd), "cd '%s' && packaging/abi-check.sh check '%s/libmoecomm.so' '%s/abi'",
           MC_SOURCE_DIR, g_build, g_build);
  rc = mc_test_shell(cmd, out, sizeof(out));
  copy = strdup(out);
  if (copy == NULL) return;
  for (line = strtok_r(copy, "\n", &save); line != NULL; line = strtok_r(NULL, "\n", &save)) {
    if (strncmp(line, "abi-check: PASS ", 16) == 0) {
      pass++;
      MC_CHECK(1, "%s", line);
    } else if (strncmp(line, "abi-check: FAIL ", 16) == 0) {
      fail++;
      MC_CHECK(0, "%s", line + 11);
    }
  }
  free(copy);
  MC_CHECK(pass + fail >= 3,
           "abi-check compared %d things (want the frozen header and two "
           "baselines at least)",
           pass + fail);
  MC_CHECK((rc == 0) == (fail == 0), "abi-check exited %d with %d failures", rc, fail);
  check_each_baseline(out);
  if (rc != 0 || fail != 0) printf("--- packaging/abi-check.sh output:\n%s---\n", out);
}

typedef struct variant {
  const char *what;
  int want_pass;
  const char *from, *to;   /* one edit of abi/moecomm.h ... */
  const char *from2, *to2; /* ... and an optional second one */
} variant_t;

static const variant_t variants[] = {
    {"unchanged copy of abi/moecomm.h", 1, NULL, NULL, NULL, NULL},
    {"a slot appended to the table and an enumerator to an enum", 1,
     "const moecomm_rmsnorm_args_t *args,\n"
     "                                         void *stream);\n} moecomm_api_t;",
     "const moecomm_rmsnorm_args_t *args,\n"
     "                                         void *stream);\n"
     "  moecomm_result_t (*appended)(moecomm_context_t *ctx, int32_t x);\n} moecomm_api_t;",
     "  MOECOMM_ERR_INTERNAL = 13 ", "  MOECOMM_ERR_INTERNAL = 13, MOECOMM_ERR_APPENDED = 14 "},
    {"capture_begin and capture_end swapped", 0,
     "  moecomm_result_t (*capture_begin)(moecomm_context_t *ctx, void *stream);",
     "  moecomm_result_t (*capture_end_)(moecomm_context_t *ctx, void *stream);",
     "  moecomm_result_t (*capture_end)(moecomm_context_t *ctx, void *stream);",
     "  moecomm_result_t (*capture_begin)(moecomm_context_t *ctx, void *stream);"},
    {"all_reduce count retyped size_t -> uint32_t", 0,
     "  moecomm_result_t (*all_reduce)(moecomm_group_t *group, const void *send, void *recv, "
     "size_t count,",
     "  moecomm_result_t (*all_reduce)(moecomm_group_t *group, const void *send, void *recv, "
     "uint32_t count,",
     NULL, NULL},
    {"a field added in the tail padding of moecomm_context_info_t", 0,
     "  uint32_t abi_version; /* ABI version negotiated for this process */\n} "
     "moecomm_context_info_t;",
     "  uint32_t abi_version; /* ABI version negotiated for this process */\n  int32_t added;\n} "
     "moecomm_context_info_t;",
     NULL, NULL},
    {"a result code renumbered", 0, "  MOECOMM_ERR_STATE = 12,", "  MOECOMM_ERR_STATE = 15,", NULL,
     NULL},
};

static void run_variants(const char *baseline) {
  char src[PATH_MAX], cmd[CMD_MAX], out[OUT_MAX];
  char *orig;
  snprintf(src, sizeof(src), "%s/abi/moecomm.h", MC_SOURCE_DIR);
  orig = read_text(src);
  if (!MC_CHECK(orig != NULL, "cannot read %s", src)) return;
  for (size_t i = 0; i < sizeof(variants) / sizeof(variants[0]); i++) {
    const variant_t *v = &variants[i];
    char dir[PATH_MAX + 32], hdr[PATH_MAX + 48];
    char *text = strdup(orig), *next;
    FILE *f;
    int rc;
    if (text == NULL) break;
    /* Swaps go through a placeholder name (capture_end_) that the last step renames. */
    if (v->from != NULL) {
      next = replace_once(text, v->from, v->to);
      free(text);
      text = next;
    }
    if (text != NULL && v->from2 != NULL) {
      next = replace_once(text, v->from2, v->to2);
      free(text);
      text = next;
    }
    if (text != NULL && strstr(text, "capture_end_") != NULL) {
      next = replace_once(text, "(*capture_end_)", "(*capture_end)");
      free(text);
      text = next;
    }
    if (!MC_CHECK(text != NULL,
                  "%s: abi/moecomm.h no longer has the text this variant edits "
                  "(update tests/contract/abi_check.c)",
                  v->what))
      continue;
    snprintf(dir, sizeof(dir), "%s/v%zu", g_tmp, i);
    snprintf(hdr, sizeof(hdr), "%s/moecomm.h", dir);
    snprintf(cmd, sizeof(cmd), "mkdir -p '%s'", dir);
    mc_test_shell(cmd, NULL, 0);
    f = fopen(hdr, "w");
    if (!MC_CHECK(f != NULL && fputs(text, f) >= 0, "cannot write %s", hdr)) {
      if (f != NULL) fclose(f);
      free(text);
      continue;
    }
    fclose(f);
    free(text);
    snprintf(cmd, sizeof(cmd),
             "cd '%s' && packaging/abi-check.sh frozen '%s' '%s/probe.abi' && "
             "packaging/abi-check.sh compare '%s' '%s/probe.abi' '%s'",
             MC_SOURCE_DIR, hdr, dir, baseline, dir, dir);
    rc = mc_test_shell(cmd, out, sizeof(out));
    if (v->want_pass)
      MC_CHECK(rc == 0 && strstr(out, "abi-check: PASS") != NULL,
               "%s should pass abi-check; exit %d:\n%s", v->what, rc, out);
    else
      MC_CHECK(
          rc == 1 && strstr(out, "abi-check: FAIL") != NULL && strstr(out, "not allowed") != NULL,
          "%s should fail abi-check; exit %d:\n%s", v->what, rc, out);
  }
  free(orig);
}

int main(int argc, char **argv) {
  char path[PATH_MAX], baseline[PATH_MAX + 64];
  mf_t *hdr;
  mc_test_init("abi_check", argc, argv);
  if (!MC_CHECK(mc_test_build_dir(g_build, sizeof(g_build)) == 0 &&
                    abi_mkdtemp("abicheck", g_tmp, sizeof(g_tmp)) == 0,
                "no build directory or scratch directory"))
    return mc_test_finish();
  run_check();
  /* The baseline of the header's own version. */
  hdr = calloc(1, sizeof(*hdr));
  snprintf(path, sizeof(path), "%s/abi/moecomm.h", MC_SOURCE_DIR);
  if (MC_CHECK(hdr != NULL && mf_load_header(path, hdr) == 0, "reading %s: %s", path,
               hdr ? hdr->err : "out of memory")) {
    snprintf(baseline, sizeof(baseline), "%s/packaging/abi/libmoecomm-abi-%u.%u.abi", MC_SOURCE_DIR,
             hdr->abi >> 16, hdr->abi & 0xffff);
    if (MC_CHECK(abi_exists(baseline), "no baseline %s (make abi-baseline)", baseline))
      run_variants(baseline);
  }
  free(hdr);
  abi_rm_rf(g_tmp);
  return mc_test_finish();
}
