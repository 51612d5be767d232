/* SPDX-License-Identifier: Apache-2.0 */
/* config_table.c - the declared configuration (plugin/config.h) is well formed, and README.md's
 * environment table says exactly what it declares.
 *
 * Every row: a MOECOMM_ name, unique; a non-empty help line; a default that the row's own parser
 * accepts (the defaults are what a context gets with an empty environment); CHOICE defaults
 * among the choices, INT and BYTES defaults within [min, max].  README: the rows between the
 * table header and the next blank line must equal, as a set, one line per plugin variable in the
 * form `moecomm-shim --env` prints (the plugin's own declaration, read through the ABI's
 * config_var; paste it on a mismatch); every loader variable must be named in README. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "../../plugin/config.h"
#include "../common/harness.h"

#define MAX_ROWS 128
#define HEADER "| variable | values | default | meaning |"

static void test_rows(void) {
  const mc_config_var_t *v, *w;
  mc_config_t cfg;
  mc_err_t err;
  extern char **environ;
  char **saved = environ, *empty[] = {NULL};
  moecomm_result_t r;
  for (size_t i = 0; (v = mc_config_var_at(i)) != NULL; i++) {
    MC_CHECK(strncmp(v->name, "MOECOMM_", 8) == 0, "row %zu: name %s", i, v->name);
    MC_CHECK(v->help != NULL && v->help[0] != '\0', "%s: no help", v->name);
    MC_CHECK(v->range != NULL && v->range[0] != '\0', "%s: no range", v->name);
    for (size_t j = i + 1; (w = mc_config_var_at(j)) != NULL; j++)
      MC_CHECK(strcmp(v->name, w->name) != 0, "%s declared twice", v->name);
    if (v->type == MC_VAR_INT || v->type == MC_VAR_BYTES) {
      long long d = atoll(v->def);
      MC_CHECK(v->min <= v->max, "%s: min %lld > max %lld", v->name, v->min, v->max);
      MC_CHECK(v->type == MC_VAR_BYTES || (d >= v->min && d <= v->max),
               "%s: default %s outside %lld..%lld", v->name, v->def, v->min, v->max);
    }
  }
  environ = empty;
  r = mc_config_load(&cfg, &err);
  environ = saved;
  MC_CHECK(r == MOECOMM_SUCCESS, "an empty environment does not load: %s", err.msg);
  MC_CHECK(cfg.timeout_ms == 60000 && cfg.share_comms == 1 && cfg.backend == MC_CHOICE_AUTO &&
               cfg.custom.max_blocks == 64 && cfg.nccl.lean_ctas == 4 &&
               cfg.custom_max_bytes == (size_t)64 << 20,
           "defaults from the table differ from the documented ones");
}

/* README's rows under HEADER, up to the first blank line. */
static int readme_rows(char rows[][1024], int max, char **text_p) {
  char path[4096], *line, *save = NULL, *text;
  int n = -1;
  long len;
  FILE *f;
  snprintf(path, sizeof(path), "%s/README.md", MC_SOURCE_DIR);
  f = fopen(path, "r");
  if (!MC_CHECK(f != NULL, "cannot open %s", path)) return -1;
  fseek(f, 0, SEEK_END);
  len = ftell(f);
  fseek(f, 0, SEEK_SET);
  text = calloc(1, (size_t)len + 1);
  if (text == NULL || fread(text, 1, (size_t)len, f) != (size_t)len) len = 0;
  fclose(f);
  *text_p = strdup(text ? text : "");
  for (line = strtok_r(text, "\n", &save); line != NULL; line = strtok_r(NULL, "\n", &save)) {
    if (n < 0) {
      if (strcmp(line, HEADER) == 0) n = 0;
      continue;
    }
    if (line[0] != '|') break;
    if (strncmp(line, "|---", 4) == 0) continue;
    if (n < max) snprintf(rows[n++], 1024, "%s", line);
  }
  free(text);
  return n;
}

/* The shim's --env rows (the plugin's declaration through the ABI's config_var). */
static int shim_rows(char rows[][1024], int max) {
  char build[4096], cmd[4200];
  static char out[1 << 16];
  char *line, *save = NULL;
  int n = 0;
  if (!MC_CHECK(mc_test_build_dir(build, sizeof(build)) == 0, "build dir")) return 0;
  snprintf(cmd, sizeof(cmd), "%s/moecomm-shim --env 2>/dev/null", build);
  if (!MC_CHECK(mc_test_shell(cmd, out, sizeof(out)) == 0, "moecomm-shim --env failed:\n%s", out))
    return 0;
  for (line = strtok_r(out, "\n", &save); line != NULL; line = strtok_r(NULL, "\n", &save))
    if (line[0] == '|' && strcmp(line, HEADER) != 0 && strncmp(line, "|---", 4) != 0 && n < max)
      snprintf(rows[n++], 1024, "%s", line);
  return n;
}

static void test_readme(void) {
  static char rows[MAX_ROWS][1024], want[MAX_ROWS][1024];
  char *text = NULL;
  const mc_config_var_t *v;
  int n = readme_rows(rows, MAX_ROWS, &text), nwant = shim_rows(want, MAX_ROWS), bad = 0;
  if (!MC_CHECK(n > 0, "README.md has no table under '%s'", HEADER)) n = 0;
  if (text == NULL) return;
  MC_CHECK(nwant > 10, "moecomm-shim --env printed %d rows", nwant);
  for (size_t i = 0; (v = mc_config_var_at(i)) != NULL; i++)
    if (v->type == MC_VAR_HOST)
      MC_CHECK(strstr(text, v->name) != NULL, "README.md never names %s", v->name);
  for (int i = 0; i < nwant; i++) {
    int found = 0;
    for (int j = 0; j < n && !found; j++) found = strcmp(want[i], rows[j]) == 0;
    bad += !MC_CHECK(found, "README.md lacks (or words differently) the row\n%s", want[i]);
  }
  for (int j = 0; j < n; j++) {
    int found = 0;
    for (int i = 0; i < nwant && !found; i++) found = strcmp(want[i], rows[j]) == 0;
    bad += !MC_CHECK(found, "README.md has a row the plugin does not declare\n%s", rows[j]);
  }
  if (bad)
    printf("moecomm-shim --env prints the table the plugin declares: paste it into README.\n");
  free(text);
}

int main(int argc, char **argv) {
  mc_test_init("config_table", argc, argv);
  test_rows();
  test_readme();
  return mc_test_finish();
}
