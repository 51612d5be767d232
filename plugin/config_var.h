/* SPDX-License-Identifier: Apache-2.0 */
/* config_var.h - how a MOECOMM_* variable is declared: one row per variable, in the table of the
 * module that owns it (config.c for the core, backends/<name>/<name>_config.c for a backend).
 * The same row parses the value, gives its default, and documents it (moecomm-shim --env, the
 * ABI's config_var, README's table). */
#ifndef MC_CONFIG_VAR_H_
#define MC_CONFIG_VAR_H_

#include <stddef.h>

typedef enum mc_var_type {
  MC_VAR_CHOICE, /* one of `range` ("a|b|c", case-insensitive); the field (int) gets its index */
  MC_VAR_INT,    /* a decimal integer in [min, max]; int field */
  MC_VAR_BYTES,  /* a byte count in [min, max], optional K/M/G suffix; size_t field */
  MC_VAR_BOOL,   /* 0|1|false|true|no|yes|off|on; int field */
  MC_VAR_TEXT,   /* a string up to size - 1 characters, checked by `check`; char[size] field */
  MC_VAR_HOST    /* read by the host-side loader, not by the plugin: listed, never parsed */
} mc_var_type_t;

typedef struct mc_config_var {
  const char *name; /* "MOECOMM_TIMEOUT_MS"; "..._<GROUP>" stands for one variable per group */
  mc_var_type_t type;
  size_t offset;      /* of the field in mc_config_t */
  size_t size;        /* MC_VAR_TEXT: the field's size */
  const char *def;    /* the default, written as a user would set it ("" when there is none) */
  const char *range;  /* CHOICE: the values; others: the accepted values in words */
  long long min, max; /* INT and BYTES */
  int (*check)(const char *value); /* TEXT: 1 when the value is acceptable (NULL: any) */
  const char *help;                /* one line */
} mc_config_var_t;

#endif
