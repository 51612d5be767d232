/* SPDX-License-Identifier: Apache-2.0 */
/* options.h - moecomm-shim's command line: defaults, parsing and the usage text. */
#ifndef SHIM_OPTIONS_H_
#define SHIM_OPTIONS_H_

#include <stddef.h>

#include "shim.h"

void shim_opts_default(shim_opts_t *o);

/* Defaults, then argv.  SHIM_OK; SHIM_HELP after printing the usage on stdout; SHIM_USAGE after
   printing the reason and the usage on stderr.  *o must be released with shim_opts_free. */
shim_status_t shim_opts_parse(int argc, char **argv, shim_opts_t *o);
void shim_opts_free(shim_opts_t *o);

/* What --capture-sizes asked for: "plan" or the list ("8,16,64", cut with "..."). */
void shim_opts_sizes_text(const shim_opts_t *o, char *buf, size_t size);

/* "8,16,64" (n entries), cut with "..." when it does not fit. */
void shim_format_sizes(const int32_t *t, size_t n, char *buf, size_t size);

#endif
