/* SPDX-License-Identifier: Apache-2.0 */
/* manifest.h - reads the ABI manifest (abi/moecomm_v1.manifest) and the ABI headers into one form,
 * so that tests can compare them and call the plugin from the manifest alone (tests/contract/).
 *
 * The header reader understands the subset of C the ABI headers are written in (typedef'd enums,
 * structs, opaque structs and function pointers, integer #defines) and fails on anything else,
 * so a construct the manifest cannot describe is noticed rather than skipped. */
#ifndef MC_TESTS_ABI_MANIFEST_H_
#define MC_TESTS_ABI_MANIFEST_H_

#include <stddef.h>
#include <stdint.h>

#define MF_NAME 64
#define MF_TYPE 96
#define MF_ARGS 12
#define MF_MEMBERS 32
#define MF_ITEMS 48

#define MF_VERSION(major, minor) ((((uint32_t)(major)) << 16) | (uint32_t)(minor))

typedef enum mf_kind {
  MF_ENTRY = 1, /* the exported entry point (header: its moecomm_get_api_vN_fn_t typedef) */
  MF_FNTYPE,    /* a function-pointer typedef */
  MF_OPAQUE,    /* typedef struct tag name; */
  MF_DEFINE,    /* #define NAME integer */
  MF_ENUM,
  MF_STRUCT
} mf_kind_t;

/* How a C type is passed (libffi's view). */
typedef enum mf_class {
  MF_C_VOID = 0,
  MF_C_PTR,
  MF_C_SINT, /* int and enums */
  MF_C_SINT32,
  MF_C_UINT32,
  MF_C_SINT64,
  MF_C_UINT64,
  MF_C_SIZE,
  MF_C_FLOAT /* float (ABI 1.2: moecomm_rmsnorm_args_t.eps) */
} mf_class_t;

typedef struct mf_func {
  char ret[MF_TYPE];
  int nargs;
  char arg_type[MF_ARGS][MF_TYPE];
  char arg_name[MF_ARGS][MF_NAME];
} mf_func_t;

/* A struct member (data or slot) or an enum value. */
typedef struct mf_member {
  int index;
  char name[MF_NAME];
  uint32_t since; /* 0 when read from a header */
  int is_fn;
  char type[MF_TYPE];         /* data member's type */
  mf_func_t fn;               /* slot's signature */
  long long value;            /* enum value */
  size_t offset, size, align; /* mf_layout */
} mf_member_t;

typedef struct mf_item {
  mf_kind_t kind;
  char name[MF_NAME];
  uint32_t since;
  int line;
  long long value; /* MF_DEFINE */
  mf_func_t fn;    /* MF_ENTRY, MF_FNTYPE */
  int nmembers;    /* MF_ENUM, MF_STRUCT */
  mf_member_t members[MF_MEMBERS];
  size_t size, align; /* MF_STRUCT, mf_layout */
} mf_item_t;

typedef struct mf {
  uint32_t abi; /* manifest: its "abi" line; header: MOECOMM_ABI_MAJOR.MOECOMM_ABI_MINOR */
  int nitems;
  mf_item_t items[MF_ITEMS];
  char err[512]; /* why a load or layout failed */
} mf_t;

/* Both return 0, or -1 with m->err set.  m must be zeroed (calloc) first. */
int mf_load_manifest(const char *path, mf_t *m);
int mf_load_header(const char *path, mf_t *m);

/* Computes every struct's member offsets, size and alignment (x86-64 / AArch64 LP64 rules). */
int mf_layout(mf_t *m);

/* Size, alignment and passing class of a type named in m; -1 when unknown. */
int mf_type_info(const mf_t *m, const char *type, size_t *size, size_t *align, mf_class_t *cls);

const mf_item_t *mf_find(const mf_t *m, mf_kind_t kind, const char *name);
const mf_member_t *mf_member(const mf_item_t *it, const char *name);

/* "1.1" for a version. */
const char *mf_version_str(uint32_t v, char *buf, size_t n);

#endif
