/* SPDX-License-Identifier: Apache-2.0 */
/* lib_manifest.c - reads abi/moecomm_v1.manifest and the ABI headers (manifest.h). */
#include "manifest.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int fail(mf_t *m, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(mf_t *m, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(m->err, sizeof(m->err), fmt, ap);
  va_end(ap);
  return -1;
}

static char *read_file(const char *path, mf_t *m) {
  FILE *f = fopen(path, "rb");
  char *buf = NULL;
  long n;
  if (f == NULL) {
    fail(m, "cannot open %s: %s", path, strerror(errno));
    return NULL;
  }
  if (fseek(f, 0, SEEK_END) != 0 || (n = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) != 0) {
    fail(m, "cannot size %s", path);
    goto out;
  }
  buf = malloc((size_t)n + 1);
  if (buf == NULL) {
    fail(m, "out of memory reading %s", path);
    goto out;
  }
  if (fread(buf, 1, (size_t)n, f) != (size_t)n) {
    fail(m, "cannot read %s", path);
    free(buf);
    buf = NULL;
    goto out;
  }
  buf[n] = '\0';
out:
  fclose(f);
  return buf;
}

static char *trim(char *s) {
  char *e;
  while (isspace((unsigned char)*s)) s++;
  e = s + strlen(s);
  while (e > s && isspace((unsigned char)e[-1])) *--e = '\0';
  return s;
}

static int is_ident_char(int c) {
  return isalnum(c) || c == '_';
}

static int copy(char *dst, size_t n, const char *src) {
  return (size_t)snprintf(dst, n, "%s", src) >= n ? -1 : 0;
}

/* "const char*" / "const  char *" -> "const char *": identifiers one space apart, stars together
   after one space. */
static int norm_type(const char *in, char *out, size_t n) {
  size_t w = 0;
  int prev = 0; /* 0 start, 1 identifier, 2 star */
  const char *p = in;
  out[0] = '\0';
  while (*p) {
    if (isspace((unsigned char)*p)) {
      p++;
    } else if (*p == '*') {
      if (w + 3 >= n) return -1;
      if (prev == 1) out[w++] = ' ';
      out[w++] = '*';
      prev = 2;
      p++;
    } else if (is_ident_char((unsigned char)*p)) {
      const char *s = p;
      while (is_ident_char((unsigned char)*p)) p++;
      if (w + (size_t)(p - s) + 2 >= n) return -1;
      if (prev != 0) out[w++] = ' ';
      memcpy(out + w, s, (size_t)(p - s));
      w += (size_t)(p - s);
      prev = 1;
    } else {
      return -1;
    }
  }
  out[w] = '\0';
  return w > 0 ? 0 : -1;
}

/* "TYPE NAME" -> type and name (NAME is the last identifier). */
static int split_decl(const char *decl, char *type, size_t tn, char *name, size_t nn) {
  char buf[256];
  char *e, *s;
  if (copy(buf, sizeof(buf), decl) != 0) return -1;
  s = trim(buf);
  e = s + strlen(s);
  while (e > s && is_ident_char((unsigned char)e[-1])) e--;
  if (*e == '\0' || e == s) return -1;
  if (copy(name, nn, e) != 0) return -1;
  *e = '\0';
  return norm_type(s, type, tn);
}

static int parse_version(const char *s, uint32_t *v) {
  unsigned major, minor;
  char extra;
  if (sscanf(s, "%u.%u%c", &major, &minor, &extra) != 2 || major > 0xffff || minor > 0xffff)
    return -1;
  *v = MF_VERSION(major, minor);
  return 0;
}

static int parse_int(const char *s, long long *v) {
  char buf[64];
  char *p, *end;
  size_t l;
  if (copy(buf, sizeof(buf), s) != 0) return -1;
  p = trim(buf);
  /* (-1), (0x1u): strip one level of parentheses and an unsigned/long suffix. */
  l = strlen(p);
  if (l >= 2 && p[0] == '(' && p[l - 1] == ')') {
    p[l - 1] = '\0';
    p = trim(p + 1);
  }
  l = strlen(p);
  while (l > 0 && strchr("uUlL", p[l - 1]) != NULL) p[--l] = '\0';
  if (l == 0) return -1;
  errno = 0;
  *v = strtoll(p, &end, 0);
  return errno == 0 && *end == '\0' ? 0 : -1;
}

/* "TYPE NAME, TYPE NAME" or "void" into fn's arguments. */
static int parse_args(const char *text, mf_func_t *fn) {
  char buf[1024];
  char *save = NULL, *tok, *s;
  if (copy(buf, sizeof(buf), text) != 0) return -1;
  s = trim(buf);
  fn->nargs = 0;
  if (strcmp(s, "void") == 0 || s[0] == '\0') return 0;
  for (tok = strtok_r(s, ",", &save); tok != NULL; tok = strtok_r(NULL, ",", &save)) {
    if (fn->nargs >= MF_ARGS) return -1;
    if (split_decl(tok, fn->arg_type[fn->nargs], MF_TYPE, fn->arg_name[fn->nargs], MF_NAME) != 0)
      return -1;
    fn->nargs++;
  }
  return 0;
}

static mf_item_t *new_item(mf_t *m, mf_kind_t kind, const char *name, int line) {
  mf_item_t *it;
  if (m->nitems >= MF_ITEMS) return NULL;
  it = &m->items[m->nitems++];
  memset(it, 0, sizeof(*it));
  it->kind = kind;
  it->line = line;
  if (copy(it->name, sizeof(it->name), name) != 0) return NULL;
  return it;
}

/* ---- the manifest ---- */

/* Splits s at '|' into at most max trimmed fields. */
static int fields(char *s, char **f, int max) {
  int n = 0;
  char *p = s;
  for (;;) {
    char *bar = strchr(p, '|');
    if (n >= max) return -1;
    if (bar != NULL) *bar = '\0';
    f[n++] = trim(p);
    if (bar == NULL) break;
    p = bar + 1;
  }
  return n;
}

int mf_load_manifest(const char *path, mf_t *m) {
  char *text = read_file(path, m), *save = NULL, *raw;
  mf_item_t *block = NULL;
  int line = 0, have_format = 0, rc = -1;
  if (text == NULL) return -1;
  for (raw = strtok_r(text, "\n", &save); raw != NULL; raw = strtok_r(NULL, "\n", &save)) {
    char *s = trim(raw), *f[6], *rest;
    char word[32];
    int nf, wl = 0;
    line++; /* strtok_r skips empty lines: numbers are of non-empty lines only */
    if (s[0] == '\0' || s[0] == '#') continue;
    while (s[wl] && !isspace((unsigned char)s[wl]) && wl < (int)sizeof(word) - 1) wl++;
    memcpy(word, s, (size_t)wl);
    word[wl] = '\0';
    rest = trim(s + wl);
    if (block != NULL && strcmp(word, "end") != 0) {
      mf_member_t *mb;
      nf = fields(s, f, 6);
      if (block->nmembers >= MF_MEMBERS) {
        fail(m, "%s: %s has too many members", path, block->name);
        goto out;
      }
      mb = &block->members[block->nmembers];
      memset(mb, 0, sizeof(*mb));
      if (block->kind == MF_ENUM) {
        if (nf != 3 || copy(mb->name, MF_NAME, f[0]) != 0 || parse_int(f[1], &mb->value) != 0 ||
            parse_version(f[2], &mb->since) != 0) {
          fail(m, "%s: bad enum value line in %s: '%s'", path, block->name, s);
          goto out;
        }
      } else {
        char *end;
        long idx = strtol(f[0], &end, 10);
        if ((nf != 4 && nf != 5) || *end != '\0' || idx != block->nmembers ||
            copy(mb->name, MF_NAME, f[1]) != 0 || parse_version(f[2], &mb->since) != 0) {
          fail(m, "%s: bad member line %d of %s (index must be %d): '%s'", path, block->nmembers,
               block->name, block->nmembers, s);
          goto out;
        }
        mb->index = (int)idx;
        if (nf == 4) {
          if (norm_type(f[3], mb->type, MF_TYPE) != 0) {
            fail(m, "%s: bad type '%s' of %s.%s", path, f[3], block->name, mb->name);
            goto out;
          }
        } else {
          mb->is_fn = 1;
          if (norm_type(f[3], mb->fn.ret, MF_TYPE) != 0 || parse_args(f[4], &mb->fn) != 0) {
            fail(m, "%s: bad signature of %s.%s: '%s | %s'", path, block->name, mb->name, f[3],
                 f[4]);
            goto out;
          }
        }
      }
      block->nmembers++;
      continue;
    }
    if (strcmp(word, "end") == 0) {
      if (block == NULL) {
        fail(m, "%s: 'end' outside an enum or struct", path);
        goto out;
      }
      block = NULL;
    } else if (strcmp(word, "format") == 0) {
      if (strcmp(rest, "1") != 0) {
        fail(m, "%s: format '%s' is not 1", path, rest);
        goto out;
      }
      have_format = 1;
    } else if (strcmp(word, "abi") == 0) {
      if (parse_version(rest, &m->abi) != 0) {
        fail(m, "%s: bad abi line '%s'", path, s);
        goto out;
      }
    } else if (strcmp(word, "entry") == 0 || strcmp(word, "fntype") == 0) {
      mf_item_t *it;
      nf = fields(rest, f, 6);
      if (nf != 4 ||
          (it = new_item(m, word[0] == 'e' ? MF_ENTRY : MF_FNTYPE, f[0], line)) == NULL ||
          parse_version(f[1], &it->since) != 0 || norm_type(f[2], it->fn.ret, MF_TYPE) != 0 ||
          parse_args(f[3], &it->fn) != 0) {
        fail(m, "%s: bad %s line '%s'", path, word, s);
        goto out;
      }
    } else if (strcmp(word, "opaque") == 0) {
      mf_item_t *it;
      nf = fields(rest, f, 6);
      if (nf != 2 || (it = new_item(m, MF_OPAQUE, f[0], line)) == NULL ||
          parse_version(f[1], &it->since) != 0) {
        fail(m, "%s: bad opaque line '%s'", path, s);
        goto out;
      }
    } else if (strcmp(word, "define") == 0) {
      mf_item_t *it;
      nf = fields(rest, f, 6);
      if (nf != 3 || (it = new_item(m, MF_DEFINE, f[0], line)) == NULL ||
          parse_int(f[1], &it->value) != 0 || parse_version(f[2], &it->since) != 0) {
        fail(m, "%s: bad define line '%s'", path, s);
        goto out;
      }
    } else if (strcmp(word, "enum") == 0 || strcmp(word, "struct") == 0) {
      block = new_item(m, word[0] == 'e' ? MF_ENUM : MF_STRUCT, rest, line);
      if (block == NULL || rest[0] == '\0') {
        fail(m, "%s: bad %s line '%s'", path, word, s);
        goto out;
      }
    } else {
      fail(m, "%s: unknown line '%s'", path, s);
      goto out;
    }
  }
  if (block != NULL) {
    fail(m, "%s: %s is not closed with 'end'", path, block->name);
    goto out;
  }
  if (!have_format || m->abi == 0) {
    fail(m, "%s: missing 'format 1' or 'abi' line", path);
    goto out;
  }
  /* A struct's since is its first member's; an enum's its first value's. */
  for (int i = 0; i < m->nitems; i++) {
    mf_item_t *it = &m->items[i];
    if ((it->kind == MF_STRUCT || it->kind == MF_ENUM) && it->nmembers == 0) {
      fail(m, "%s: %s has no members", path, it->name);
      goto out;
    }
    if (it->kind == MF_STRUCT || it->kind == MF_ENUM) it->since = it->members[0].since;
  }
  rc = 0;
out:
  free(text);
  return rc;
}

/* ---- the header ---- */

/* Removes comments (keeping newlines) in place; string and char literals are left alone. */
static void strip_comments(char *s) {
  char *r = s, *w = s;
  while (*r) {
    if (r[0] == '"' || r[0] == '\'') {
      char q = *r;
      *w++ = *r++;
      while (*r && *r != q) {
        if (*r == '\\' && r[1]) *w++ = *r++;
        *w++ = *r++;
      }
      if (*r) *w++ = *r++;
    } else if (r[0] == '/' && r[1] == '*') {
      r += 2;
      while (*r && !(r[0] == '*' && r[1] == '/')) {
        if (*r == '\n') *w++ = '\n';
        r++;
      }
      if (*r) r += 2;
      *w++ = ' ';
    } else if (r[0] == '/' && r[1] == '/') {
      while (*r && *r != '\n') r++;
    } else {
      *w++ = *r++;
    }
  }
  *w = '\0';
}

/* #define NAME integer -> an MF_DEFINE; anything else is ignored.  Only the header's own
   integer constants are ABI: the include-guard style marker below is not. */
static int header_define(mf_t *m, const char *line, int lineno) {
  char name[MF_NAME];
  const char *p = line, *s;
  long long v;
  mf_item_t *it;
  while (*p == '#' || isspace((unsigned char)*p)) p++;
  if (strncmp(p, "define", 6) != 0 || !isspace((unsigned char)p[6])) return 0;
  p += 6;
  while (isspace((unsigned char)*p)) p++;
  s = p;
  while (is_ident_char((unsigned char)*p)) p++;
  if (p == s || (size_t)(p - s) >= sizeof(name) || *p == '(') return 0; /* function-like */
  memcpy(name, s, (size_t)(p - s));
  name[p - s] = '\0';
  if (strcmp(name, "MOECOMM_ABI_HEADER_INCLUDED") == 0) return 0;
  if (strncmp(name, "MOECOMM_", 8) != 0 || parse_int(p, &v) != 0) return 0;
  if ((it = new_item(m, MF_DEFINE, name, lineno)) == NULL) return fail(m, "too many items");
  it->value = v;
  return 0;
}

/* One member declaration of a struct body ("TYPE NAME" or "RET (*NAME)(ARGS)"). */
static int header_member(mf_t *m, mf_item_t *st, char *decl, const char *path) {
  mf_member_t *mb;
  char *fp = strstr(decl, "(*");
  if (st->nmembers >= MF_MEMBERS) return fail(m, "%s: %s has too many members", path, st->name);
  mb = &st->members[st->nmembers];
  memset(mb, 0, sizeof(*mb));
  mb->index = st->nmembers;
  if (fp != NULL) {
    char *close = strchr(fp, ')'), *open, *last;
    if (close == NULL || (open = strchr(close, '(')) == NULL || (last = strrchr(open, ')')) == NULL)
      return fail(m, "%s: cannot read slot '%s' of %s", path, decl, st->name);
    *fp = '\0';
    *close = '\0';
    *last = '\0';
    mb->is_fn = 1;
    if (norm_type(decl, mb->fn.ret, MF_TYPE) != 0 || copy(mb->name, MF_NAME, trim(fp + 2)) != 0 ||
        parse_args(open + 1, &mb->fn) != 0)
      return fail(m, "%s: cannot read slot '%s' of %s", path, trim(fp + 2), st->name);
  } else if (split_decl(decl, mb->type, MF_TYPE, mb->name, MF_NAME) != 0) {
    return fail(m, "%s: cannot read member '%s' of %s", path, decl, st->name);
  }
  st->nmembers++;
  return 0;
}

/* One top-level statement (without its ';'). */
static int header_statement(mf_t *m, char *st, const char *path, int lineno) {
  char *s = trim(st), *open, *close, *name;
  mf_item_t *it;
  if (*s == '\0') return 0;
  if (strncmp(s, "typedef", 7) != 0)
    return fail(m, "%s:%d: not a typedef the manifest can describe: '%.80s'", path, lineno, s);
  s = trim(s + 7);
  open = strchr(s, '{');
  if (strncmp(s, "enum", 4) == 0 && open != NULL) {
    char *save = NULL, *tok;
    close = strrchr(s, '}');
    if (close == NULL) return fail(m, "%s:%d: unclosed enum", path, lineno);
    *close = '\0';
    name = trim(close + 1);
    if ((it = new_item(m, MF_ENUM, name, lineno)) == NULL) return fail(m, "too many items");
    for (tok = strtok_r(open + 1, ",", &save); tok != NULL; tok = strtok_r(NULL, ",", &save)) {
      char *eq = strchr(tok, '=');
      mf_member_t *mb;
      if (*trim(tok) == '\0') continue;
      if (eq == NULL || it->nmembers >= MF_MEMBERS)
        return fail(m, "%s:%d: enum %s: value '%s' has no explicit '= N'", path, lineno, name,
                    trim(tok));
      *eq = '\0';
      mb = &it->members[it->nmembers];
      memset(mb, 0, sizeof(*mb));
      if (copy(mb->name, MF_NAME, trim(tok)) != 0 || parse_int(eq + 1, &mb->value) != 0)
        return fail(m, "%s:%d: enum %s: bad value", path, lineno, name);
      mb->index = it->nmembers++;
    }
    return 0;
  }
  if (strncmp(s, "struct", 6) == 0 && open != NULL) {
    char *p, *start;
    int depth = 0;
    close = strrchr(s, '}');
    if (close == NULL) return fail(m, "%s:%d: unclosed struct", path, lineno);
    *close = '\0';
    name = trim(close + 1);
    if ((it = new_item(m, MF_STRUCT, name, lineno)) == NULL) return fail(m, "too many items");
    for (p = start = open + 1; *p; p++) {
      if (*p == '(') depth++;
      if (*p == ')') depth--;
      if (*p == ';' && depth == 0) {
        *p = '\0';
        if (*trim(start) != '\0' && header_member(m, it, start, path) != 0) return -1;
        start = p + 1;
      }
    }
    if (*trim(start) != '\0') return fail(m, "%s:%d: %s: member without ';'", path, lineno, name);
    return 0;
  }
  if (strncmp(s, "struct", 6) == 0) { /* typedef struct tag name: an opaque handle */
    char tag[MF_TYPE], nm[MF_NAME];
    if (split_decl(s + 6, tag, sizeof(tag), nm, sizeof(nm)) != 0 ||
        (it = new_item(m, MF_OPAQUE, nm, lineno)) == NULL)
      return fail(m, "%s:%d: cannot read '%s'", path, lineno, s);
    return 0;
  }
  /* typedef RET (*NAME)(ARGS): a callback type, or the entry point's type. */
  {
    char *fp = strstr(s, "(*"), *nclose, *aopen, *alast, nm[MF_NAME];
    size_t l;
    if (fp == NULL || (nclose = strchr(fp, ')')) == NULL || (aopen = strchr(nclose, '(')) == NULL ||
        (alast = strrchr(aopen, ')')) == NULL)
      return fail(m, "%s:%d: not a typedef the manifest can describe: '%.80s'", path, lineno, s);
    *fp = '\0';
    *nclose = '\0';
    *alast = '\0';
    if (copy(nm, sizeof(nm), trim(fp + 2)) != 0) return fail(m, "name too long");
    l = strlen(nm);
    /* moecomm_get_api_vN_fn_t is the type of the exported entry moecomm_get_api_vN. */
    if (strncmp(nm, "moecomm_get_api_v", 17) == 0 && l > 5 && strcmp(nm + l - 5, "_fn_t") == 0) {
      nm[l - 5] = '\0';
      it = new_item(m, MF_ENTRY, nm, lineno);
    } else {
      it = new_item(m, MF_FNTYPE, nm, lineno);
    }
    if (it == NULL || norm_type(s, it->fn.ret, MF_TYPE) != 0 || parse_args(aopen + 1, &it->fn) != 0)
      return fail(m, "%s:%d: cannot read function type %s", path, lineno, nm);
    return 0;
  }
}

int mf_load_header(const char *path, mf_t *m) {
  char *text = read_file(path, m), *code = NULL, *p, *line, *next;
  size_t w = 0;
  int lineno = 0, skip_depth = 0, depth = 0, rc = -1, stmt_line = 1;
  const mf_item_t *major, *minor;
  if (text == NULL) return -1;
  strip_comments(text);
  code = calloc(strlen(text) + 2, 1);
  if (code == NULL) {
    fail(m, "out of memory");
    goto out;
  }
  /* Preprocessor lines: integer #defines are kept; #ifdef __cplusplus blocks are dropped. */
  for (line = text; line != NULL && *line; line = next) {
    char *t;
    next = strchr(line, '\n');
    if (next != NULL) *next++ = '\0';
    lineno++;
    t = trim(line);
    if (t[0] == '#') {
      const char *last = t; /* continuation lines belong to this directive */
      while (last[0] != '\0' && last[strlen(last) - 1] == '\\' && next != NULL) {
        char *n2 = strchr(next, '\n');
        if (n2 != NULL) *n2++ = '\0';
        last = next;
        lineno++;
        next = n2;
      }
      if (strncmp(t, "#if", 3) == 0) {
        if (skip_depth > 0 || strstr(t, "__cplusplus") != NULL) skip_depth++;
      } else if (strncmp(t, "#endif", 6) == 0) {
        if (skip_depth > 0) skip_depth--;
      } else if (skip_depth == 0 && header_define(m, t, lineno) != 0) {
        goto out;
      }
      code[w++] = '\n';
      continue;
    }
    if (skip_depth > 0) {
      code[w++] = '\n';
      continue;
    }
    memcpy(code + w, line, strlen(line));
    w += strlen(line);
    code[w++] = '\n';
  }
  code[w] = '\0';
  /* Top-level statements end at ';' outside braces and parentheses. */
  lineno = 1;
  for (p = line = code; *p; p++) {
    if (*p == '\n') lineno++;
    if (*p == '{' || *p == '(') depth++;
    if (*p == '}' || *p == ')') depth--;
    if (*p == ';' && depth == 0) {
      *p = '\0';
      if (header_statement(m, line, path, stmt_line) != 0) goto out;
      line = p + 1;
      stmt_line = lineno;
    }
  }
  if (*trim(line) != '\0') {
    fail(m, "%s: text after the last ';': '%.60s'", path, trim(line));
    goto out;
  }
  major = mf_find(m, MF_DEFINE, "MOECOMM_ABI_MAJOR");
  minor = mf_find(m, MF_DEFINE, "MOECOMM_ABI_MINOR");
  if (major == NULL || minor == NULL) {
    fail(m, "%s: no MOECOMM_ABI_MAJOR / MOECOMM_ABI_MINOR", path);
    goto out;
  }
  m->abi = MF_VERSION(major->value, minor->value);
  rc = 0;
out:
  free(code);
  free(text);
  return rc;
}

/* ---- layout ---- */

const mf_item_t *mf_find(const mf_t *m, mf_kind_t kind, const char *name) {
  for (int i = 0; i < m->nitems; i++)
    if (m->items[i].kind == kind && strcmp(m->items[i].name, name) == 0) return &m->items[i];
  return NULL;
}

const mf_member_t *mf_member(const mf_item_t *it, const char *name) {
  for (int i = 0; it != NULL && i < it->nmembers; i++)
    if (strcmp(it->members[i].name, name) == 0) return &it->members[i];
  return NULL;
}

int mf_type_info(const mf_t *m, const char *type, size_t *size, size_t *align, mf_class_t *cls) {
  static const struct {
    const char *name;
    size_t size;
    mf_class_t cls;
  } scalars[] = {
      {"int", sizeof(int), MF_C_SINT},      {"int32_t", 4, MF_C_SINT32},
      {"uint32_t", 4, MF_C_UINT32},         {"int64_t", 8, MF_C_SINT64},
      {"uint64_t", 8, MF_C_UINT64},         {"size_t", sizeof(size_t), MF_C_SIZE},
      {"float", sizeof(float), MF_C_FLOAT},
  };
  const char *t = type;
  if (strncmp(t, "const ", 6) == 0) t += 6;
  if (strchr(t, '*') != NULL || mf_find(m, MF_FNTYPE, t) != NULL) {
    *size = *align = sizeof(void *);
    *cls = MF_C_PTR;
    return 0;
  }
  if (strcmp(t, "void") == 0) {
    *size = *align = 0;
    *cls = MF_C_VOID;
    return 0;
  }
  if (mf_find(m, MF_ENUM, t) != NULL) { /* C enums with small values are int */
    *size = *align = sizeof(int);
    *cls = MF_C_SINT;
    return 0;
  }
  for (size_t i = 0; i < sizeof(scalars) / sizeof(scalars[0]); i++)
    if (strcmp(t, scalars[i].name) == 0) {
      *size = *align = scalars[i].size;
      *cls = scalars[i].cls;
      return 0;
    }
  return -1;
}

int mf_layout(mf_t *m) {
  for (int i = 0; i < m->nitems; i++) {
    mf_item_t *it = &m->items[i];
    size_t off = 0, maxal = 1;
    if (it->kind != MF_STRUCT) continue;
    for (int j = 0; j < it->nmembers; j++) {
      mf_member_t *mb = &it->members[j];
      mf_class_t cls;
      if (mb->is_fn) {
        mb->size = mb->align = sizeof(void (*)(void));
      } else if (mf_type_info(m, mb->type, &mb->size, &mb->align, &cls) != 0 || mb->size == 0) {
        return fail(m, "%s.%s: type '%s' is not one the layout knows", it->name, mb->name,
                    mb->type);
      }
      off = (off + mb->align - 1) / mb->align * mb->align;
      mb->offset = off;
      off += mb->size;
      if (mb->align > maxal) maxal = mb->align;
    }
    it->align = maxal;
    it->size = (off + maxal - 1) / maxal * maxal;
  }
  return 0;
}

const char *mf_version_str(uint32_t v, char *buf, size_t n) {
  snprintf(buf, n, "%u.%u", v >> 16, v & 0xffffu);
  return buf;
}
