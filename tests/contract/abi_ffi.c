/* SPDX-License-Identifier: Apache-2.0 */
/* ffi.c - calls the plugin the way a ctypes engine does: from abi/moecomm_v1.manifest alone.
 *
 * No ABI type or constant of abi/moecomm.h is used here (the harness includes the header for its
 * own use): the entry point and every table slot are called through libffi's ffi_call with the
 * argument and return types the manifest gives, slots are read at the offsets the manifest's
 * layout gives, structs are built byte by byte from the manifest's members, constants come from
 * its enums and defines, and the bootstrap all-gather is a libffi closure (as ctypes.CFUNCTYPE
 * makes one).  Every slot is first called with invalid arguments (expecting the documented codes
 * and untouched outputs), then with valid minimal arguments on a world-1 CPU (shm) context.
 * The ABI 1.2 slots: topology_group_ranks against rank lists written out by hand, config_var up
 * to the index past the last, send/recv to itself refused, all_to_all(_v) and all_reduce_rmsnorm
 * on a group of one (copies; the norm against bf16 bits computed by hand), moe_configure (valid,
 * invalid shapes, the same again) and the dispatch/combine arguments, and the per-backend counts
 * of group_stats. */
#include <dlfcn.h>
#include <ffi.h>
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

typedef struct val {
  long long i;
  void *p;
  double f; /* float members and arguments */
} val_t;
#define P(x) ((val_t){0, (void *)(x), 0})
/* Plumbing checks (lookups, libffi set-up) record only their failures, not a pass each time. */
#define MUST(cond, ...) ((cond) ? 1 : MC_CHECK(cond, __VA_ARGS__))
#define I(x) ((val_t){(long long)(x), NULL, 0})
#define F(x) ((val_t){0, NULL, (double)(x)})

static mf_t *g_man;
static const unsigned char *g_api; /* the plugin's table, as raw bytes */
static int g_ag_calls;
static void *g_ag_user_seen;

/* ---- the manifest as a ctypes host sees it ---- */

/* A constant by name: an enum value or a define. */
static long long K(const char *name) {
  for (int i = 0; i < g_man->nitems; i++) {
    const mf_item_t *it = &g_man->items[i];
    if (it->kind == MF_DEFINE && strcmp(it->name, name) == 0) return it->value;
    if (it->kind == MF_ENUM)
      for (int j = 0; j < it->nmembers; j++)
        if (strcmp(it->members[j].name, name) == 0) return it->members[j].value;
  }
  MUST(0, "the manifest has no constant %s", name);
  return LLONG_MIN;
}

static ffi_type *ffi_of(const char *ctype) {
  size_t size, align;
  mf_class_t cls;
  if (mf_type_info(g_man, ctype, &size, &align, &cls) != 0) {
    MUST(0, "the manifest's type '%s' has no libffi type", ctype);
    return NULL;
  }
  switch (cls) {
    case MF_C_VOID: return &ffi_type_void;
    case MF_C_PTR: return &ffi_type_pointer;
    case MF_C_SINT: return &ffi_type_sint;
    case MF_C_SINT32: return &ffi_type_sint32;
    case MF_C_UINT32: return &ffi_type_uint32;
    case MF_C_SINT64: return &ffi_type_sint64;
    case MF_C_UINT64: return &ffi_type_uint64;
    case MF_C_SIZE: return sizeof(size_t) == 8 ? &ffi_type_uint64 : &ffi_type_uint32;
    case MF_C_FLOAT: return &ffi_type_float;
  }
  return NULL;
}

/* Calls fnptr with signature fn.  0 on success (ret set), -1 when the call could not be made. */
static int ffi_invoke(const char *what, const mf_func_t *fn, void *fnptr, const val_t *args,
                      int nargs, val_t *ret) {
  ffi_cif cif;
  ffi_type *atypes[MF_ARGS], *rtype;
  union {
    int si;
    int32_t s32;
    uint32_t u32;
    int64_t s64;
    uint64_t u64;
    float f;
    void *p;
  } store[MF_ARGS];
  void *avalues[MF_ARGS];
  union {
    ffi_arg a;
    ffi_sarg s;
    void *p;
    uint64_t u64;
  } r;
  if (!MUST(nargs == fn->nargs, "%s takes %d arguments in the manifest; the test passed %d", what,
            fn->nargs, nargs))
    return -1;
  if (!MUST(fnptr != NULL, "%s is NULL", what)) return -1;
  for (int i = 0; i < nargs; i++) {
    atypes[i] = ffi_of(fn->arg_type[i]);
    if (atypes[i] == NULL) return -1;
    memset(&store[i], 0, sizeof(store[i]));
    if (atypes[i] == &ffi_type_pointer)
      store[i].p = args[i].p;
    else if (atypes[i] == &ffi_type_sint)
      store[i].si = (int)args[i].i;
    else if (atypes[i] == &ffi_type_sint32)
      store[i].s32 = (int32_t)args[i].i;
    else if (atypes[i] == &ffi_type_uint32)
      store[i].u32 = (uint32_t)args[i].i;
    else if (atypes[i] == &ffi_type_sint64)
      store[i].s64 = (int64_t)args[i].i;
    else if (atypes[i] == &ffi_type_float)
      store[i].f = (float)args[i].f;
    else
      store[i].u64 = (uint64_t)args[i].i;
    avalues[i] = &store[i];
  }
  rtype = ffi_of(fn->ret);
  if (rtype == NULL) return -1;
  if (!MUST(ffi_prep_cif(&cif, FFI_DEFAULT_ABI, (unsigned)nargs, rtype, atypes) == FFI_OK,
            "ffi_prep_cif for %s failed", what))
    return -1;
  memset(&r, 0, sizeof(r));
  ffi_call(&cif, FFI_FN(fnptr), &r, avalues);
  ret->p = NULL;
  ret->f = 0;
  ret->i = 0;
  if (rtype == &ffi_type_pointer)
    ret->p = r.p;
  else if (rtype == &ffi_type_sint || rtype == &ffi_type_sint32)
    ret->i = (int)r.s;
  else if (rtype == &ffi_type_uint32)
    ret->i = (uint32_t)r.a;
  else
    ret->i = (long long)r.u64;
  return 0;
}

static const mf_member_t *slot_of(const char *name) {
  const mf_item_t *t = mf_find(g_man, MF_STRUCT, "moecomm_api_t");
  const mf_member_t *mb = mf_member(t, name);
  MUST(mb != NULL && mb->is_fn, "the manifest's table has no slot %s", name);
  return mb != NULL && mb->is_fn ? mb : NULL;
}

/* Calls table slot `name`; returns its result as val_t (i: integer results, p: pointers). */
static val_t call_slot(const char *name, const val_t *args, int nargs) {
  const mf_member_t *mb = slot_of(name);
  void *fnptr = NULL;
  val_t ret = {LLONG_MIN, NULL, 0};
  if (mb == NULL) return ret;
  memcpy(&fnptr, g_api + mb->offset, sizeof(fnptr));
  if (ffi_invoke(name, &mb->fn, fnptr, args, nargs, &ret) != 0) ret.i = LLONG_MIN;
  return ret;
}
#define VALS(...) ((val_t[]){__VA_ARGS__})
#define NVALS(...) ((int)(sizeof(VALS(__VA_ARGS__)) / sizeof(val_t)))
#define CALL(name, ...) call_slot(name, VALS(__VA_ARGS__), NVALS(__VA_ARGS__))

static const char *last_error(void *ctx) {
  val_t r;
  if (g_api == NULL) return "(no table negotiated yet)";
  r = CALL("last_error", P(ctx));
  return r.p != NULL ? (const char *)r.p : "(NULL)";
}

static const char *code_name(long long code) {
  const mf_item_t *e = mf_find(g_man, MF_ENUM, "moecomm_result_t");
  for (int j = 0; e != NULL && j < e->nmembers; j++)
    if (e->members[j].value == code) return e->members[j].name;
  return "(not a moecomm_result_t)";
}

/* One check that a slot returned the documented code. */
#define EXPECT(ctx, got, code)                                                      \
  MC_CHECK((got).i == K(code), "%s returned %lld (%s), want %s: %s", #got, (got).i, \
           code_name((got).i), code, last_error(ctx))

/* ---- structs built from the manifest's members ---- */

static const mf_item_t *struct_of(const char *type) {
  const mf_item_t *it = mf_find(g_man, MF_STRUCT, type);
  MUST(it != NULL, "the manifest has no struct %s", type);
  return it;
}

/* A zeroed struct with struct_size set (pass `poison` to fill it with 0x5A first). */
static unsigned char *obj_new(const char *type, int poison) {
  const mf_item_t *it = struct_of(type);
  unsigned char *b;
  size_t sz;
  if (it == NULL) return NULL;
  b = malloc(it->size);
  if (b == NULL) return NULL;
  memset(b, poison ? 0x5A : 0, it->size);
  sz = it->size;
  memcpy(b, &sz, sizeof(sz)); /* every ABI struct starts with size_t struct_size */
  return b;
}

static const mf_member_t *field_of(const char *type, const char *field) {
  const mf_member_t *mb = mf_member(struct_of(type), field);
  MUST(mb != NULL && !mb->is_fn, "the manifest's %s has no field %s", type, field);
  return mb != NULL && !mb->is_fn ? mb : NULL;
}

static void obj_set(unsigned char *b, const char *type, const char *field, val_t v) {
  const mf_member_t *mb = field_of(type, field);
  size_t size, align;
  mf_class_t cls;
  if (b == NULL || mb == NULL || mf_type_info(g_man, mb->type, &size, &align, &cls) != 0) return;
  if (cls == MF_C_PTR) {
    memcpy(b + mb->offset, &v.p, sizeof(v.p));
  } else if (cls == MF_C_FLOAT) {
    float x = (float)v.f;
    memcpy(b + mb->offset, &x, sizeof(x));
  } else if (size == 4) {
    uint32_t x = (uint32_t)v.i;
    memcpy(b + mb->offset, &x, 4);
  } else {
    uint64_t x = (uint64_t)v.i;
    memcpy(b + mb->offset, &x, 8);
  }
}

static val_t obj_get(const unsigned char *b, const char *type, const char *field) {
  const mf_member_t *mb = field_of(type, field);
  val_t v = {LLONG_MIN, NULL, 0};
  size_t size, align;
  mf_class_t cls;
  if (b == NULL || mb == NULL || mf_type_info(g_man, mb->type, &size, &align, &cls) != 0) return v;
  if (cls == MF_C_PTR) {
    memcpy(&v.p, b + mb->offset, sizeof(v.p));
  } else if (cls == MF_C_FLOAT) {
    float x;
    memcpy(&x, b + mb->offset, sizeof(x));
    v.f = x;
  } else if (size == 4) {
    uint32_t x;
    memcpy(&x, b + mb->offset, 4);
    v.i = (cls == MF_C_UINT32) ? (long long)x : (long long)(int32_t)x;
  } else {
    uint64_t x;
    memcpy(&x, b + mb->offset, 8);
    v.i = (long long)x;
  }
  return v;
}

static size_t obj_size(const char *type) {
  const mf_item_t *it = struct_of(type);
  return it != NULL ? it->size : 0;
}

/* ---- the bootstrap all-gather as a libffi closure (what ctypes.CFUNCTYPE builds) ---- */

static void ag_handler(ffi_cif *cif, void *ret, void **args, void *user) {
  void *host_user = *(void **)args[0];
  const void *send = *(const void **)args[1];
  void *recv = *(void **)args[2];
  size_t bytes = *(size_t *)args[3];
  (void)cif;
  (void)user;
  g_ag_calls++;
  g_ag_user_seen = host_user;
  memcpy(recv, send, bytes); /* world 1: the gather of one rank is its own contribution */
  *(ffi_arg *)ret = 0;
}

typedef struct closure {
  ffi_closure *closure;
  void *code;
  ffi_cif cif;
  ffi_type *atypes[MF_ARGS];
} closure_t;

static int make_allgather(closure_t *c) {
  const mf_item_t *ft = mf_find(g_man, MF_FNTYPE, "moecomm_host_allgather_fn_t");
  ffi_type *rtype;
  if (!MC_CHECK(ft != NULL && ft->fn.nargs == 4,
                "the manifest's moecomm_host_allgather_fn_t is missing or not 4 arguments"))
    return -1;
  for (int i = 0; i < 4; i++)
    if ((c->atypes[i] = ffi_of(ft->fn.arg_type[i])) == NULL) return -1;
  MC_CHECK(c->atypes[0] == &ffi_type_pointer && c->atypes[1] == &ffi_type_pointer &&
               c->atypes[2] == &ffi_type_pointer && c->atypes[3] == ffi_of("size_t"),
           "moecomm_host_allgather_fn_t is not (pointer, pointer, pointer, size_t)");
  if ((rtype = ffi_of(ft->fn.ret)) == NULL) return -1;
  c->closure = ffi_closure_alloc(sizeof(ffi_closure), &c->code);
  if (!MC_CHECK(c->closure != NULL, "ffi_closure_alloc failed")) return -1;
  if (!MC_CHECK(ffi_prep_cif(&c->cif, FFI_DEFAULT_ABI, 4, rtype, c->atypes) == FFI_OK &&
                    ffi_prep_closure_loc(c->closure, &c->cif, ag_handler, NULL, c->code) == FFI_OK,
                "cannot prepare the all-gather closure")) {
    ffi_closure_free(c->closure);
    c->closure = NULL;
    return -1;
  }
  return 0;
}

/* ---- the entry point ---- */

static void *g_handle;

static int negotiate(void) {
  char plugin[PATH_MAX + 32], build[PATH_MAX], why[512];
  const char *env = getenv("MOECOMM_PLUGIN");
  const mf_item_t *entry;
  void *sym;
  uint32_t version = 0xdeadbeefu;
  void *api = (void *)0x1234;
  val_t r;
  uint32_t abi = g_man->abi, v10 = MF_VERSION(1, 0);

  if (env != NULL && strchr(env, '/') != NULL) {
    snprintf(plugin, sizeof(plugin), "%s", env);
  } else {
    if (!MC_CHECK(mc_test_build_dir(build, sizeof(build)) == 0, "cannot find the build directory"))
      return -1;
    snprintf(plugin, sizeof(plugin), "%s/libmoecomm.so", build);
  }
  g_handle = dlopen(plugin, RTLD_NOW | RTLD_LOCAL);
  if (!MC_CHECK(g_handle != NULL, "dlopen %s: %s", plugin, dlerror())) return -1;
  entry = NULL; /* the manifest's one entry point of this major */
  for (int i = 0; i < g_man->nitems && entry == NULL; i++)
    if (g_man->items[i].kind == MF_ENTRY) entry = &g_man->items[i];
  if (!MC_CHECK(entry != NULL, "the manifest names no entry point")) return -1;
  sym = dlsym(g_handle, entry->name);
  if (!MC_CHECK(sym != NULL, "%s does not export %s", plugin, entry->name)) return -1;

  /* Invalid requests first: outputs must stay as they were. */
  why[0] = '\0';
  ffi_invoke(entry->name, &entry->fn, sym,
             VALS(I(v10), I(abi), P(NULL), P(NULL), P(why), I(sizeof(why))), 6, &r);
  EXPECT(NULL, r, "MOECOMM_ERR_INVALID_ARGUMENT");
  why[0] = '\0';
  ffi_invoke(
      entry->name, &entry->fn, sym,
      VALS(I(MF_VERSION(2, 0)), I(MF_VERSION(2, 3)), P(&version), P(&api), P(why), I(sizeof(why))),
      6, &r);
  EXPECT(NULL, r, "MOECOMM_ERR_VERSION");
  MC_CHECK(version == 0xdeadbeefu && api == (void *)0x1234,
           "a refused negotiation wrote its outputs (version %#x)", version);
  MC_CHECK(strstr(why, "2.0") != NULL && strstr(why, "2.3") != NULL,
           "the refusal does not name the host's range 2.0..2.3: '%s'", why);
  ffi_invoke(entry->name, &entry->fn, sym,
             VALS(I(abi), I(v10), P(&version), P(&api), P(why), I(sizeof(why))), 6, &r);
  EXPECT(NULL, r, "MOECOMM_ERR_VERSION");

  /* The versions this manifest describes. */
  ffi_invoke(entry->name, &entry->fn, sym,
             VALS(I(v10), I(abi), P(&version), P(&api), P(why), I(sizeof(why))), 6, &r);
  if (!EXPECT(NULL, r, "MOECOMM_SUCCESS")) return -1;
  MC_CHECK(version == abi, "negotiated %#x, want the manifest's %#x", version, abi);
  if (!MC_CHECK(api != NULL && api != (void *)0x1234, "no table")) return -1;
  g_api = api;
  return 0;
}

/* ---- every slot with invalid arguments ---- */

typedef enum { WANT_STRING, WANT_SUCCESS, WANT_INVALID } want_t;

/* What each slot does with all-zero arguments (NULL handles and pointers, 0 numbers).  A slot
   the manifest lists but this table does not is a failure: every slot gets a case. */
static const struct {
  const char *slot;
  want_t want;
} zero_cases[] = {
    {"result_string", WANT_STRING},
    {"last_error", WANT_STRING},
    {"context_create", WANT_INVALID},
    {"context_destroy", WANT_SUCCESS}, /* NULL: no-op */
    {"context_info", WANT_INVALID},
    {"group_get", WANT_INVALID},
    {"group_stats", WANT_INVALID},
    {"all_reduce", WANT_INVALID},
    {"all_gather", WANT_INVALID},
    {"reduce_scatter", WANT_INVALID},
    {"broadcast", WANT_INVALID},
    {"capture_begin", WANT_INVALID},
    {"capture_end", WANT_INVALID},
    {"plan_capture_sizes", WANT_INVALID},
    {"layer_mode", WANT_INVALID},
    {"mode_rows", WANT_INVALID},
    {"scatter", WANT_INVALID},
    {"topology_group_ranks", WANT_INVALID},
    {"config_var", WANT_INVALID},
    {"send", WANT_INVALID},
    {"recv", WANT_INVALID},
    {"all_to_all", WANT_INVALID},
    {"all_to_all_v", WANT_INVALID},
    {"moe_configure", WANT_INVALID},
    {"moe_dispatch", WANT_INVALID},
    {"moe_combine", WANT_INVALID},
    {"all_reduce_rmsnorm", WANT_INVALID},
};

static void check_zero_args(void) {
  const mf_item_t *t = mf_find(g_man, MF_STRUCT, "moecomm_api_t");
  for (int j = 0; t != NULL && j < t->nmembers; j++) {
    const mf_member_t *mb = &t->members[j];
    val_t args[MF_ARGS];
    val_t r;
    int found = -1;
    if (!mb->is_fn) continue;
    for (size_t k = 0; k < sizeof(zero_cases) / sizeof(zero_cases[0]); k++)
      if (strcmp(zero_cases[k].slot, mb->name) == 0) found = (int)k;
    if (!MC_CHECK(found >= 0, "slot %s has no invalid-argument case in tests/contract/abi_ffi.c",
                  mb->name))
      continue;
    memset(args, 0, sizeof(args));
    r = call_slot(mb->name, args, mb->fn.nargs);
    switch (zero_cases[found].want) {
      case WANT_STRING:
        MC_CHECK(r.p != NULL, "%s with zero arguments returned NULL", mb->name);
        break;
      case WANT_SUCCESS: EXPECT(NULL, r, "MOECOMM_SUCCESS"); break;
      case WANT_INVALID:
        MC_CHECK(r.i == K("MOECOMM_ERR_INVALID_ARGUMENT"),
                 "%s with NULL handles returned %lld (%s), want MOECOMM_ERR_INVALID_ARGUMENT",
                 mb->name, r.i, code_name(r.i));
        MC_CHECK(strstr(last_error(NULL), mb->name) != NULL,
                 "last_error(NULL) after %s does not name the call: '%s'", mb->name,
                 last_error(NULL));
        break;
    }
  }
  /* Every result code has static text, and so has a code that is none. */
  {
    const mf_item_t *e = mf_find(g_man, MF_ENUM, "moecomm_result_t");
    for (int j = 0; e != NULL && j <= e->nmembers; j++) {
      long long code = j < e->nmembers ? e->members[j].value : 9999;
      val_t r = CALL("result_string", I(code));
      MC_CHECK(r.p != NULL && ((const char *)r.p)[0] != '\0', "result_string(%lld) is empty", code);
    }
  }
}

/* ---- a world-1 CPU context ---- */

static void *create_context(closure_t *ag) {
  unsigned char *topo = obj_new("moecomm_topology_t", 0);
  unsigned char *params = obj_new("moecomm_context_params_t", 0);
  void *ctx = (void *)0x77, *marker = &g_ag_calls;
  val_t r;
  if (topo == NULL || params == NULL) goto out;
  obj_set(topo, "moecomm_topology_t", "world_size", I(1));
  obj_set(topo, "moecomm_topology_t", "rank", I(0));
  obj_set(topo, "moecomm_topology_t", "tp", I(1));
  obj_set(params, "moecomm_context_params_t", "topology", P(topo));
  obj_set(params, "moecomm_context_params_t", "host_allgather", P(ag->code));
  obj_set(params, "moecomm_context_params_t", "host_user", P(marker));
  obj_set(params, "moecomm_context_params_t", "device", I(K("MOECOMM_DEVICE_CPU")));

  /* Invalid first: a struct smaller than any layout, and no topology. */
  obj_set(params, "moecomm_context_params_t", "struct_size", I(8));
  r = CALL("context_create", P(params), P(&ctx));
  EXPECT(NULL, r, "MOECOMM_ERR_STRUCT_SIZE");
  obj_set(params, "moecomm_context_params_t", "struct_size",
          I(obj_size("moecomm_context_params_t")));
  obj_set(params, "moecomm_context_params_t", "topology", P(NULL));
  r = CALL("context_create", P(params), P(&ctx));
  EXPECT(NULL, r, "MOECOMM_ERR_INVALID_ARGUMENT");
  r = CALL("context_create", P(params), P(NULL));
  EXPECT(NULL, r, "MOECOMM_ERR_INVALID_ARGUMENT");
  MC_CHECK(ctx == (void *)0x77, "a failed context_create wrote ctx_p");

  obj_set(params, "moecomm_context_params_t", "topology", P(topo));
  g_ag_calls = 0;
  r = CALL("context_create", P(params), P(&ctx));
  if (!EXPECT(NULL, r, "MOECOMM_SUCCESS")) ctx = NULL;
  MC_CHECK(ctx == NULL || g_ag_calls > 0, "context_create never called the host all-gather");
  MC_CHECK(ctx == NULL || g_ag_user_seen == marker,
           "the all-gather got host_user %p, not the %p passed", g_ag_user_seen, marker);
out:
  free(topo);
  free(params);
  return ctx == (void *)0x77 ? NULL : ctx;
}

static void check_invalid_with_context(void *ctx) {
  unsigned char *info = obj_new("moecomm_context_info_t", 1);
  unsigned char *stats = obj_new("moecomm_group_stats_t", 1);
  unsigned char *plan = obj_new("moecomm_plan_params_t", 0);
  unsigned char *sargs = obj_new("moecomm_scatter_args_t", 0);
  void *g = NULL, *poison_g = (void *)0x99;
  float send[4] = {1, 2, 3, 4}, recv[4];
  int32_t tokens[1] = {8};
  size_t n = 12345, rows = 12345;
  int32_t m = -7, mode = -7, sizes[2];
  val_t r;
  long long F32 = K("MOECOMM_FLOAT32"), SUM = K("MOECOMM_SUM");
  if (info == NULL || stats == NULL || plan == NULL || sargs == NULL) goto out;

  r = CALL("context_info", P(ctx), P(NULL));
  EXPECT(ctx, r, "MOECOMM_ERR_INVALID_ARGUMENT");
  obj_set(info, "moecomm_context_info_t", "struct_size", I(8));
  r = CALL("context_info", P(ctx), P(info));
  EXPECT(ctx, r, "MOECOMM_ERR_STRUCT_SIZE");
  MC_CHECK(obj_get(info, "moecomm_context_info_t", "device").i == 0x5A5A5A5A,
           "a refused context_info wrote the struct");

  r = CALL("group_get", P(ctx), I(99), P(&poison_g));
  EXPECT(ctx, r, "MOECOMM_ERR_INVALID_ARGUMENT");
  r = CALL("group_get", P(ctx), I(-1), P(&poison_g));
  EXPECT(ctx, r, "MOECOMM_ERR_INVALID_ARGUMENT");
  MC_CHECK(poison_g == (void *)0x99, "a refused group_get wrote group_p");
  MC_CHECK(strstr(last_error(ctx), "group_get") != NULL, "last_error(ctx) is '%s'",
           last_error(ctx));
  r = CALL("group_get", P(ctx), I(K("MOECOMM_GROUP_TP")), P(NULL));
  EXPECT(ctx, r, "MOECOMM_ERR_INVALID_ARGUMENT");
  r = CALL("group_get", P(ctx), I(K("MOECOMM_GROUP_TP")), P(&g));
  if (!EXPECT(ctx, r, "MOECOMM_SUCCESS")) goto out;

  r = CALL("group_stats", P(g), P(NULL));
  EXPECT(ctx, r, "MOECOMM_ERR_INVALID_ARGUMENT");
  obj_set(stats, "moecomm_group_stats_t", "struct_size", I(16));
  r = CALL("group_stats", P(g), P(stats));
  EXPECT(ctx, r, "MOECOMM_ERR_STRUCT_SIZE");
  MC_CHECK(obj_get(stats, "moecomm_group_stats_t", "size").i == 0x5A5A5A5A,
           "a refused group_stats wrote the struct");

  for (int i = 0; i < 4; i++) recv[i] = -99.0f;
  r = CALL("all_reduce", P(g), P(NULL), P(NULL), I(4), I(F32), I(SUM), P(NULL));
  EXPECT(ctx, r, "MOECOMM_ERR_INVALID_ARGUMENT");
  r = CALL("all_reduce", P(g), P(send), P(recv), I(4), I(77), I(SUM), P(NULL));
  EXPECT(ctx, r, "MOECOMM_ERR_INVALID_ARGUMENT");
  r = CALL("all_reduce", P(g), P(send), P(recv), I(4), I(F32), I(9), P(NULL));
  EXPECT(ctx, r, "MOECOMM_ERR_INVALID_ARGUMENT");
  r = CALL("all_reduce", P(g), P(send), P(recv), I(4), I(F32), I(SUM), P((void *)0x10));
  EXPECT(ctx, r, "MOECOMM_ERR_INVALID_ARGUMENT");
  r = CALL("all_gather", P(g), P(send), P(recv), I(4), I(77), P(NULL));
  EXPECT(ctx, r, "MOECOMM_ERR_INVALID_ARGUMENT");
  r = CALL("all_gather", P(g), P(NULL), P(recv), I(4), I(F32), P(NULL));
  EXPECT(ctx, r, "MOECOMM_ERR_INVALID_ARGUMENT");
  r = CALL("reduce_scatter", P(g), P(send), P(recv), I(4), I(F32), I(9), P(NULL));
  EXPECT(ctx, r, "MOECOMM_ERR_INVALID_ARGUMENT");
  r = CALL("broadcast", P(g), P(send), P(recv), I(4), I(F32), I(1), P(NULL));
  EXPECT(ctx, r, "MOECOMM_ERR_INVALID_ARGUMENT");
  r = CALL("broadcast", P(g), P(send), P(recv), I(4), I(F32), I(-1), P(NULL));
  EXPECT(ctx, r, "MOECOMM_ERR_INVALID_ARGUMENT");
  for (int i = 0; i < 4; i++)
    MC_CHECK(recv[i] == -99.0f, "a refused collective wrote recv[%d] = %g", i, (double)recv[i]);

  r = CALL("capture_begin", P(ctx), P((void *)0x10));
  EXPECT(ctx, r, "MOECOMM_ERR_INVALID_ARGUMENT");
  r = CALL("capture_end", P(ctx), P(NULL)); /* no scope open */
  EXPECT(ctx, r, "MOECOMM_ERR_CAPTURE");

  r = CALL("plan_capture_sizes", P(ctx), P(NULL), P(NULL), I(0), P(&n), P(&m));
  EXPECT(ctx, r, "MOECOMM_ERR_INVALID_ARGUMENT");
  obj_set(plan, "moecomm_plan_params_t", "struct_size", I(8));
  r = CALL("plan_capture_sizes", P(ctx), P(plan), P(NULL), I(0), P(&n), P(&m));
  EXPECT(ctx, r, "MOECOMM_ERR_STRUCT_SIZE");
  obj_set(plan, "moecomm_plan_params_t", "struct_size", I(obj_size("moecomm_plan_params_t")));
  r = CALL("plan_capture_sizes", P(ctx), P(plan), P(sizes), I(2), P(&n), P(&m));
  EXPECT(ctx, r, "MOECOMM_ERR_INVALID_ARGUMENT"); /* the default list has more than 2 */
  obj_set(plan, "moecomm_plan_params_t", "flags", I(0x80));
  r = CALL("plan_capture_sizes", P(ctx), P(plan), P(NULL), I(0), P(&n), P(&m));
  EXPECT(ctx, r, "MOECOMM_ERR_INVALID_ARGUMENT");
  MC_CHECK(n == 12345 && m == -7, "a refused plan_capture_sizes wrote num_p or multiple_p");

  r = CALL("layer_mode", P(ctx), I(42), P(&mode));
  EXPECT(ctx, r, "MOECOMM_ERR_INVALID_ARGUMENT");
  r = CALL("layer_mode", P(ctx), I(K("MOECOMM_LAYER_ATTENTION")), P(NULL));
  EXPECT(ctx, r, "MOECOMM_ERR_INVALID_ARGUMENT");
  MC_CHECK(mode == -7, "a refused layer_mode wrote mode_p");
  r = CALL("mode_rows", P(ctx), I(9), P(tokens), P(&rows));
  EXPECT(ctx, r, "MOECOMM_ERR_INVALID_ARGUMENT");
  r = CALL("mode_rows", P(ctx), I(K("MOECOMM_SCATTERED")), P(tokens), P(NULL));
  EXPECT(ctx, r, "MOECOMM_ERR_INVALID_ARGUMENT");
  MC_CHECK(rows == 12345, "a refused mode_rows wrote rows_p");

  r = CALL("scatter", P(ctx), P(NULL), P(NULL));
  EXPECT(ctx, r, "MOECOMM_ERR_INVALID_ARGUMENT");
  obj_set(sargs, "moecomm_scatter_args_t", "struct_size", I(8));
  r = CALL("scatter", P(ctx), P(sargs), P(NULL));
  EXPECT(ctx, r, "MOECOMM_ERR_STRUCT_SIZE");
  obj_set(sargs, "moecomm_scatter_args_t", "struct_size", I(obj_size("moecomm_scatter_args_t")));
  obj_set(sargs, "moecomm_scatter_args_t", "from", I(7));
  obj_set(sargs, "moecomm_scatter_args_t", "hidden", I(4));
  obj_set(sargs, "moecomm_scatter_args_t", "tokens", P(tokens));
  obj_set(sargs, "moecomm_scatter_args_t", "send", P(send));
  obj_set(sargs, "moecomm_scatter_args_t", "recv", P(recv));
  r = CALL("scatter", P(ctx), P(sargs), P(NULL));
  EXPECT(ctx, r, "MOECOMM_ERR_INVALID_ARGUMENT");
out:
  free(info);
  free(stats);
  free(plan);
  free(sargs);
}

/* ---- valid minimal calls ---- */

static uint64_t g_seed = 0x6a09e667f3bcc908ull;

static void fill_f32(float *b, size_t n) {
  for (size_t i = 0; i < n; i++) b[i] = (float)((int)(mc_test_rand(&g_seed) % 17) - 8) + 0.25f;
}

static void check_valid(void *ctx) {
  enum { N = 1031 };
  unsigned char *info = obj_new("moecomm_context_info_t", 1);
  unsigned char *stats = obj_new("moecomm_group_stats_t", 1);
  unsigned char *plan = obj_new("moecomm_plan_params_t", 0);
  unsigned char *sargs = obj_new("moecomm_scatter_args_t", 0);
  const mf_item_t *kinds = mf_find(g_man, MF_ENUM, "moecomm_group_kind_t");
  static float send[N], recv[N];
  int32_t isend[N], irecv[N], sizes[128], tokens[1] = {8}, m = 0, mode = -1;
  size_t n = 0, rows = 0;
  void *g = NULL;
  val_t r;
  long long F32 = K("MOECOMM_FLOAT32"), I32 = K("MOECOMM_INT32");
  if (info == NULL || stats == NULL || plan == NULL || sargs == NULL || kinds == NULL) goto out;

  r = CALL("context_info", P(ctx), P(info));
  EXPECT(ctx, r, "MOECOMM_SUCCESS");
  MC_CHECK(obj_get(info, "moecomm_context_info_t", "device").i == K("MOECOMM_DEVICE_CPU"),
           "context device %lld, want MOECOMM_DEVICE_CPU",
           obj_get(info, "moecomm_context_info_t", "device").i);
  MC_CHECK(obj_get(info, "moecomm_context_info_t", "abi_version").i == (long long)g_man->abi,
           "context abi_version %#llx, want %#x",
           obj_get(info, "moecomm_context_info_t", "abi_version").i, g_man->abi);
  MC_CHECK(obj_get(info, "moecomm_context_info_t", "local_size").i == 1 &&
               obj_get(info, "moecomm_context_info_t", "num_hosts").i == 1 &&
               obj_get(info, "moecomm_context_info_t", "local_rank").i == 0,
           "a world-1 context is not one rank on one host");

  /* Every group kind of the manifest exists, of one rank, on the shm backend. */
  for (int j = 0; j < kinds->nmembers; j++) {
    const int32_t *ranks;
    const char *bname;
    r = CALL("group_get", P(ctx), I(kinds->members[j].value), P(&g));
    if (!EXPECT(ctx, r, "MOECOMM_SUCCESS")) continue;
    memset(stats, 0x5A, obj_size("moecomm_group_stats_t"));
    obj_set(stats, "moecomm_group_stats_t", "struct_size", I(obj_size("moecomm_group_stats_t")));
    r = CALL("group_stats", P(g), P(stats));
    if (!EXPECT(ctx, r, "MOECOMM_SUCCESS")) continue;
    ranks = obj_get(stats, "moecomm_group_stats_t", "ranks").p;
    bname = obj_get(stats, "moecomm_group_stats_t", "backend_name").p;
    MC_CHECK(obj_get(stats, "moecomm_group_stats_t", "kind").i == kinds->members[j].value &&
                 obj_get(stats, "moecomm_group_stats_t", "size").i == 1 &&
                 obj_get(stats, "moecomm_group_stats_t", "rank").i == 0 && ranks != NULL &&
                 ranks[0] == 0,
             "group %s: stats kind/size/rank/ranks wrong", kinds->members[j].name);
    MC_CHECK(bname != NULL && strcmp(bname, "shm") == 0 &&
                 obj_get(stats, "moecomm_group_stats_t", "backend").i == K("MOECOMM_BACKEND_SHM"),
             "group %s: backend %s, want shm", kinds->members[j].name, bname ? bname : "(NULL)");
  }

  r = CALL("group_get", P(ctx), I(K("MOECOMM_GROUP_TP")), P(&g));
  if (!EXPECT(ctx, r, "MOECOMM_SUCCESS")) goto out;
  /* One rank: every collective returns its input, exactly; outputs poisoned before each. */
  fill_f32(send, N);
  for (int op = 0; op < 3; op++) {
    for (int i = 0; i < N; i++) recv[i] = -1.0e30f;
    r = CALL("all_reduce", P(g), P(send), P(recv), I(N), I(F32), I(op), P(NULL));
    EXPECT(ctx, r, "MOECOMM_SUCCESS");
    MC_CHECK(memcmp(send, recv, sizeof(send)) == 0, "all_reduce op %d on one rank changed data",
             op);
  }
  for (int i = 0; i < N; i++) {
    isend[i] = (int32_t)(mc_test_rand(&g_seed) % 2001) - 1000;
    irecv[i] = INT32_MIN;
  }
  r = CALL("all_gather", P(g), P(isend), P(irecv), I(N), I(I32), P(NULL));
  EXPECT(ctx, r, "MOECOMM_SUCCESS");
  MC_CHECK(memcmp(isend, irecv, sizeof(isend)) == 0, "all_gather on one rank changed data");
  for (int i = 0; i < N; i++) recv[i] = -1.0e30f;
  r = CALL("reduce_scatter", P(g), P(send), P(recv), I(N), I(F32), I(K("MOECOMM_SUM")), P(NULL));
  EXPECT(ctx, r, "MOECOMM_SUCCESS");
  MC_CHECK(memcmp(send, recv, sizeof(send)) == 0, "reduce_scatter on one rank changed data");
  for (int i = 0; i < N; i++) recv[i] = -1.0e30f;
  r = CALL("broadcast", P(g), P(send), P(recv), I(N), I(F32), I(0), P(NULL));
  EXPECT(ctx, r, "MOECOMM_SUCCESS");
  MC_CHECK(memcmp(send, recv, sizeof(send)) == 0, "broadcast on one rank changed data");
  r = CALL("all_reduce", P(g), P(send), P(send), I(0), I(F32), I(0), P(NULL)); /* count 0 */
  EXPECT(ctx, r, "MOECOMM_SUCCESS");
  obj_set(stats, "moecomm_group_stats_t", "struct_size", I(obj_size("moecomm_group_stats_t")));
  r = CALL("group_stats", P(g), P(stats));
  EXPECT(ctx, r, "MOECOMM_SUCCESS");
  MC_CHECK(obj_get(stats, "moecomm_group_stats_t", "ops").i >= 6,
           "TP reports %lld ops after 6 collectives",
           obj_get(stats, "moecomm_group_stats_t", "ops").i);

  /* A capture scope on a CPU context (nothing to register) opens and closes. */
  r = CALL("capture_begin", P(ctx), P(NULL));
  if (r.i == K("MOECOMM_ERR_NOT_SUPPORTED")) {
    mc_test_skip("capture on a CPU context", "capture_begin says NOT_SUPPORTED: %s",
                 last_error(ctx));
  } else if (EXPECT(ctx, r, "MOECOMM_SUCCESS")) {
    r = CALL("all_reduce", P(g), P(send), P(recv), I(N), I(F32), I(0), P(NULL));
    EXPECT(ctx, r, "MOECOMM_SUCCESS");
    r = CALL("capture_end", P(ctx), P(NULL));
    EXPECT(ctx, r, "MOECOMM_SUCCESS");
  }

  /* The documented default candidates: 1, 2, 4, 8, 12, 16, 24, 32..256 step 8, 272..512 step 16;
     on one rank every one is valid (multiple 1). */
  r = CALL("plan_capture_sizes", P(ctx), P(plan), P(NULL), I(0), P(&n), P(&m));
  EXPECT(ctx, r, "MOECOMM_SUCCESS");
  {
    int32_t want[128];
    size_t nw = 0;
    const int32_t head[] = {1, 2, 4, 8, 12, 16, 24};
    for (size_t i = 0; i < sizeof(head) / sizeof(head[0]); i++) want[nw++] = head[i];
    for (int v = 32; v <= 256; v += 8) want[nw++] = v;
    for (int v = 272; v <= 512; v += 16) want[nw++] = v;
    MC_CHECK(n == nw && m == 1, "plan: %zu sizes, multiple %d; want %zu, 1", n, (int)m, nw);
    if (n == nw) {
      r = CALL("plan_capture_sizes", P(ctx), P(plan), P(sizes), I(128), P(&n), P(&m));
      EXPECT(ctx, r, "MOECOMM_SUCCESS");
      MC_CHECK(memcmp(sizes, want, nw * sizeof(int32_t)) == 0, "plan: not the documented list");
    }
  }

  /* Scatter modes on one rank: attention TP_ATTN_FULL, dense MLP SCATTERED (moe_dense_tp 1),
     MoE TP_ATTN_FULL (a MoE replica is one attention-TP group); every mode holds T rows. */
  r = CALL("layer_mode", P(ctx), I(K("MOECOMM_LAYER_ATTENTION")), P(&mode));
  EXPECT(ctx, r, "MOECOMM_SUCCESS");
  MC_CHECK(mode == K("MOECOMM_TP_ATTN_FULL"), "attention mode %d", (int)mode);
  r = CALL("layer_mode", P(ctx), I(K("MOECOMM_LAYER_DENSE_MLP")), P(&mode));
  EXPECT(ctx, r, "MOECOMM_SUCCESS");
  MC_CHECK(mode == K("MOECOMM_SCATTERED"), "dense MLP mode %d", (int)mode);
  r = CALL("layer_mode", P(ctx), I(K("MOECOMM_LAYER_SPARSE_MOE")), P(&mode));
  EXPECT(ctx, r, "MOECOMM_SUCCESS");
  MC_CHECK(mode == K("MOECOMM_TP_ATTN_FULL"), "MoE mode %d", (int)mode);
  {
    const mf_item_t *modes = mf_find(g_man, MF_ENUM, "moecomm_scatter_mode_t");
    for (int j = 0; modes != NULL && j < modes->nmembers; j++) {
      rows = 0;
      r = CALL("mode_rows", P(ctx), I(modes->members[j].value), P(tokens), P(&rows));
      EXPECT(ctx, r, "MOECOMM_SUCCESS");
      MC_CHECK(rows == 8, "mode %s holds %zu rows for T = 8 on one rank", modes->members[j].name,
               rows);
    }
  }
  for (int i = 0; i < N; i++) recv[i] = -1.0e30f;
  obj_set(sargs, "moecomm_scatter_args_t", "from", I(K("MOECOMM_SCATTERED")));
  obj_set(sargs, "moecomm_scatter_args_t", "to", I(K("MOECOMM_TP_ATTN_FULL")));
  obj_set(sargs, "moecomm_scatter_args_t", "dtype", I(F32));
  obj_set(sargs, "moecomm_scatter_args_t", "hidden", I(16));
  obj_set(sargs, "moecomm_scatter_args_t", "tokens", P(tokens));
  obj_set(sargs, "moecomm_scatter_args_t", "send", P(send));
  obj_set(sargs, "moecomm_scatter_args_t", "recv", P(recv));
  r = CALL("scatter", P(ctx), P(sargs), P(NULL));
  EXPECT(ctx, r, "MOECOMM_SUCCESS");
  MC_CHECK(memcmp(send, recv, 8 * 16 * sizeof(float)) == 0 && recv[8 * 16] == -1.0e30f,
           "scatter SCATTERED -> TP_ATTN_FULL on one rank is not a copy of 8 rows");
  MC_CHECK(last_error(ctx) != NULL, "last_error(ctx) is NULL");
out:
  free(info);
  free(stats);
  free(plan);
  free(sargs);
}

/* ---- ABI 1.2: the context-free slots ---- */

/* Rank lists written out by hand from DESIGN.md ("Groups"), not computed. */
typedef struct hand_group {
  const char *what;
  int world, tp, pp, ep, moe_dp, attn_cp;
  const char *kind;
  int rank, n, ranks[8];
} hand_group_t;

static const hand_group_t hand_groups[] = {
    {"tp8 ep2", 8, 8, 0, 2, 0, 0, "MOECOMM_GROUP_MOE_EP", 5, 2, {1, 5}},
    {"tp8 ep2", 8, 8, 0, 2, 0, 0, "MOECOMM_GROUP_MOE_TP", 5, 4, {4, 5, 6, 7}},
    {"tp8 ep2", 8, 8, 0, 2, 0, 0, "MOECOMM_GROUP_MOE_DP", 5, 1, {5}},
    {"tp8 ep4", 8, 8, 0, 4, 0, 0, "MOECOMM_GROUP_MOE_EP", 3, 4, {1, 3, 5, 7}},
    {"tp8 ep4 moe_dp2 attn_cp2", 8, 8, 0, 4, 2, 2, "MOECOMM_GROUP_ATTN_CP", 6, 2, {2, 6}},
    {"tp8 ep4 moe_dp2 attn_cp2", 8, 8, 0, 4, 2, 2, "MOECOMM_GROUP_ATTN_TP", 6, 4, {4, 5, 6, 7}},
    {"tp8 ep4 moe_dp2 attn_cp2", 8, 8, 0, 4, 2, 2, "MOECOMM_GROUP_MOE_EP", 1, 4, {0, 1, 2, 3}},
    {"tp8 ep4 moe_dp2 attn_cp2", 8, 8, 0, 4, 2, 2, "MOECOMM_GROUP_MOE_CP", 3, 2, {3, 7}},
    {"tp4 pp2", 8, 4, 2, 0, 0, 0, "MOECOMM_GROUP_PP", 6, 2, {2, 6}},
    {"tp4 pp2", 8, 4, 2, 0, 0, 0, "MOECOMM_GROUP_TP", 6, 4, {4, 5, 6, 7}},
    {"tp4 pp2", 8, 4, 2, 0, 0, 0, "MOECOMM_GROUP_WORLD", 6, 8, {0, 1, 2, 3, 4, 5, 6, 7}},
    {"tp1", 1, 1, 0, 0, 0, 0, "MOECOMM_GROUP_MOE_EP", 0, 1, {0}},
};

static unsigned char *topo_new(int world, int tp, int pp, int ep, int moe_dp, int attn_cp) {
  unsigned char *t = obj_new("moecomm_topology_t", 0);
  obj_set(t, "moecomm_topology_t", "world_size", I(world));
  obj_set(t, "moecomm_topology_t", "tp", I(tp));
  obj_set(t, "moecomm_topology_t", "pp", I(pp));
  obj_set(t, "moecomm_topology_t", "ep", I(ep));
  obj_set(t, "moecomm_topology_t", "moe_dp", I(moe_dp));
  obj_set(t, "moecomm_topology_t", "attn_cp", I(attn_cp));
  return t;
}

static void check_group_ranks_invalid(void) {
  unsigned char *t = topo_new(8, 8, 0, 2, 0, 0);
  int32_t ranks[8] = {-7, -7, -7, -7, -7, -7, -7, -7};
  size_t n = 777;
  val_t r;
  long long EP = K("MOECOMM_GROUP_MOE_EP");
  if (t == NULL) return;
  r = CALL("topology_group_ranks", P(t), I(99), I(0), P(ranks), I(8), P(&n));
  EXPECT(NULL, r, "MOECOMM_ERR_INVALID_ARGUMENT");
  r = CALL("topology_group_ranks", P(t), I(EP), I(0), P(ranks), I(8), P(NULL));
  EXPECT(NULL, r, "MOECOMM_ERR_INVALID_ARGUMENT");
  r = CALL("topology_group_ranks", P(t), I(EP), I(0), P(ranks), I(1), P(&n)); /* group of 2 */
  EXPECT(NULL, r, "MOECOMM_ERR_INVALID_ARGUMENT");
  r = CALL("topology_group_ranks", P(t), I(EP), I(0), P(NULL), I(8), P(&n));
  EXPECT(NULL, r, "MOECOMM_ERR_INVALID_ARGUMENT");
  r = CALL("topology_group_ranks", P(t), I(EP), I(8), P(ranks), I(8), P(&n)); /* rank 8 of 8 */
  EXPECT(NULL, r, "MOECOMM_ERR_CONFIG");
  obj_set(t, "moecomm_topology_t", "tp", I(3));
  r = CALL("topology_group_ranks", P(t), I(EP), I(0), P(ranks), I(8), P(&n));
  EXPECT(NULL, r, "MOECOMM_ERR_CONFIG");
  MC_CHECK(strstr(last_error(NULL), "tp=3") != NULL, "the message does not name tp=3: '%s'",
           last_error(NULL));
  obj_set(t, "moecomm_topology_t", "tp", I(8));
  obj_set(t, "moecomm_topology_t", "struct_size",
          I(field_of("moecomm_topology_t", "moe_dense_tp")->offset));
  r = CALL("topology_group_ranks", P(t), I(EP), I(0), P(ranks), I(8), P(&n));
  EXPECT(NULL, r, "MOECOMM_ERR_STRUCT_SIZE");
  for (int i = 0; i < 8; i++)
    MC_CHECK(ranks[i] == -7, "a refused topology_group_ranks wrote ranks[%d]", i);
  MC_CHECK(n == 777, "a refused topology_group_ranks wrote size_p (%zu)", n);
  free(t);
}

static void check_group_ranks(void) {
  check_group_ranks_invalid();
  for (size_t c = 0; c < sizeof(hand_groups) / sizeof(hand_groups[0]); c++) {
    const hand_group_t *h = &hand_groups[c];
    unsigned char *t = topo_new(h->world, h->tp, h->pp, h->ep, h->moe_dp, h->attn_cp);
    int32_t ranks[10];
    size_t n = 777;
    val_t r;
    if (t == NULL) continue;
    /* the topology's own rank is not the one asked about */
    obj_set(t, "moecomm_topology_t", "rank", I(h->world - 1 - h->rank));
    r = CALL("topology_group_ranks", P(t), I(K(h->kind)), I(h->rank), P(NULL), I(0), P(&n));
    EXPECT(NULL, r, "MOECOMM_SUCCESS");
    MC_CHECK(n == (size_t)h->n, "%s: %s of rank %d has %zu ranks, want %d", h->what, h->kind,
             h->rank, n, h->n);
    for (int i = 0; i < 10; i++) ranks[i] = -7;
    n = 777;
    r = CALL("topology_group_ranks", P(t), I(K(h->kind)), I(h->rank), P(ranks), I(9), P(&n));
    EXPECT(NULL, r, "MOECOMM_SUCCESS");
    MC_CHECK(n == (size_t)h->n && memcmp(ranks, h->ranks, sizeof(int32_t) * (size_t)h->n) == 0 &&
                 ranks[h->n] == -7,
             "%s: %s of rank %d: got %zu ranks starting %d, %d; want %d starting %d, %d", h->what,
             h->kind, h->rank, n, ranks[0], ranks[1], h->n, h->ranks[0], h->ranks[1]);
    free(t);
  }
}

/* Every variable until the index past the last one; names unique, fields filled. */
static void check_config_vars(void) {
  static const char *const types[] = {"choice", "int", "bytes", "bool", "text", "host"};
  unsigned char *v = obj_new("moecomm_config_var_t", 1);
  const char *names[256];
  size_t n = 0;
  int timeout_seen = 0;
  val_t r;
  if (v == NULL) return;
  obj_set(v, "moecomm_config_var_t", "struct_size", I(8));
  r = CALL("config_var", I(0), P(v));
  EXPECT(NULL, r, "MOECOMM_ERR_STRUCT_SIZE");
  MC_CHECK(obj_get(v, "moecomm_config_var_t", "name").p == (void *)0x5A5A5A5A5A5A5A5Aull,
           "a refused config_var wrote the struct");
  for (n = 0; n < 256; n++) {
    const char *name, *type, *def, *range, *help;
    int known = 0;
    memset(v, 0x5A, obj_size("moecomm_config_var_t"));
    obj_set(v, "moecomm_config_var_t", "struct_size", I(obj_size("moecomm_config_var_t")));
    r = CALL("config_var", I(n), P(v));
    if (r.i != K("MOECOMM_SUCCESS")) break;
    name = obj_get(v, "moecomm_config_var_t", "name").p;
    type = obj_get(v, "moecomm_config_var_t", "type").p;
    def = obj_get(v, "moecomm_config_var_t", "default_value").p;
    range = obj_get(v, "moecomm_config_var_t", "range").p;
    help = obj_get(v, "moecomm_config_var_t", "help").p;
    if (!MC_CHECK(name != NULL && type != NULL && def != NULL && range != NULL && help != NULL,
                  "config_var(%zu): a NULL field", n))
      break;
    names[n] = name;
    for (size_t k = 0; k < sizeof(types) / sizeof(types[0]); k++) known |= !strcmp(type, types[k]);
    MC_CHECK(strncmp(name, "MOECOMM_", 8) == 0 && known && range[0] != '\0' && help[0] != '\0',
             "config_var(%zu): name '%s' type '%s' range '%s' help '%s'", n, name, type, range,
             help);
    for (size_t k = 0; k < n; k++)
      MC_CHECK(strcmp(names[k], name) != 0, "config_var %zu and %zu are both %s", k, n, name);
    if (strcmp(name, "MOECOMM_TIMEOUT_MS") == 0)
      timeout_seen =
          MC_CHECK(strcmp(type, "int") == 0 && strcmp(def, "60000") == 0,
                   "MOECOMM_TIMEOUT_MS: type %s default '%s' (README: int, 60000)", type, def);
  }
  EXPECT(NULL, r, "MOECOMM_ERR_INVALID_ARGUMENT"); /* the index past the last */
  MC_CHECK(n >= 10 && n < 256 && timeout_seen, "%zu configuration variables, MOECOMM_TIMEOUT_MS %s",
           n, timeout_seen ? "among them" : "missing");
  MC_CHECK(strstr(last_error(NULL), "config_var") != NULL, "last_error(NULL) is '%s'",
           last_error(NULL));
  r = CALL("config_var", I(n), P(NULL));
  EXPECT(NULL, r, "MOECOMM_ERR_INVALID_ARGUMENT");
  free(v);
}

/* ---- ABI 1.2: point to point and all-to-all on a group of one ---- */

static long long stat_of(void *g, const char *field) {
  unsigned char *st = obj_new("moecomm_group_stats_t", 1);
  long long v = LLONG_MIN;
  obj_set(st, "moecomm_group_stats_t", "struct_size", I(obj_size("moecomm_group_stats_t")));
  if (st != NULL && CALL("group_stats", P(g), P(st)).i == K("MOECOMM_SUCCESS"))
    v = obj_get(st, "moecomm_group_stats_t", field).i;
  free(st);
  return v;
}

static void check_p2p(void *ctx, void *g) {
  float buf[8];
  val_t r;
  long long F32 = K("MOECOMM_FLOAT32");
  for (int i = 0; i < 8; i++) buf[i] = -3.5f;
  /* a group of one has no other member: to itself, or past the end, is refused */
  r = CALL("send", P(g), P(buf), I(8), I(F32), I(0), P(NULL));
  EXPECT(ctx, r, "MOECOMM_ERR_INVALID_ARGUMENT");
  MC_CHECK(strstr(last_error(ctx), "peer 0") != NULL, "send to itself: '%s'", last_error(ctx));
  r = CALL("recv", P(g), P(buf), I(8), I(F32), I(0), P(NULL));
  EXPECT(ctx, r, "MOECOMM_ERR_INVALID_ARGUMENT");
  r = CALL("send", P(g), P(buf), I(8), I(F32), I(1), P(NULL));
  EXPECT(ctx, r, "MOECOMM_ERR_INVALID_ARGUMENT");
  r = CALL("recv", P(g), P(buf), I(8), I(F32), I(-1), P(NULL));
  EXPECT(ctx, r, "MOECOMM_ERR_INVALID_ARGUMENT");
  for (int i = 0; i < 8; i++) MC_CHECK(buf[i] == -3.5f, "a refused recv wrote buf[%d]", i);
}

static void check_all_to_all(void *ctx, void *g) {
  enum { N = 67 };
  float send[N], recv[N + 8];
  val_t r;
  long long F32 = K("MOECOMM_FLOAT32"), ops, local;
  fill_f32(send, N);
  for (int i = 0; i < N + 8; i++) recv[i] = -1.0e30f;
  r = CALL("all_to_all", P(g), P(send), P(recv), I(N), I(K("MOECOMM_FLOAT8_E4M3")), P(NULL));
  EXPECT(ctx, r, "MOECOMM_ERR_INVALID_ARGUMENT"); /* fp8 is a dispatch payload, not a dtype */
  r = CALL("all_to_all", P(g), P(NULL), P(recv), I(N), I(F32), P(NULL));
  EXPECT(ctx, r, "MOECOMM_ERR_INVALID_ARGUMENT");
  r = CALL("all_to_all", P(g), P(recv), P(recv + 1), I(N), I(F32), P(NULL));
  EXPECT(ctx, r, "MOECOMM_ERR_INVALID_ARGUMENT"); /* overlapping */
  r = CALL("all_to_all", P(g), P(send), P(recv), I(N), I(F32), P((void *)0x10));
  EXPECT(ctx, r, "MOECOMM_ERR_INVALID_ARGUMENT"); /* a stream on a CPU context */
  for (int i = 0; i < N + 8; i++)
    MC_CHECK(recv[i] == -1.0e30f, "a refused all_to_all wrote recv[%d]", i);
  ops = stat_of(g, "ops");
  local = stat_of(g, "ops_local");
  r = CALL("all_to_all", P(g), P(send), P(recv), I(N), I(F32), P(NULL));
  EXPECT(ctx, r, "MOECOMM_SUCCESS");
  MC_CHECK(memcmp(send, recv, sizeof(send)) == 0 && recv[N] == -1.0e30f,
           "all_to_all on a group of one is not a copy of exactly %d elements", N);
  MC_CHECK(stat_of(g, "ops") == ops + 1 && stat_of(g, "ops_local") == local + 1 &&
               stat_of(g, "ops_shm") == 0 && stat_of(g, "ops_nccl") == 0 &&
               stat_of(g, "ops_custom") == 0,
           "one all_to_all on a group of one: ops %lld -> %lld, ops_local %lld -> %lld, ops_shm "
           "%lld",
           ops, stat_of(g, "ops"), local, stat_of(g, "ops_local"), stat_of(g, "ops_shm"));
}

static void check_all_to_all_v(void *ctx, void *g) {
  enum { N = 40 };
  int32_t send[N], recv[N];
  size_t sc[1] = {9}, sd[1] = {3}, rc[1] = {9}, rd[1] = {20};
  val_t r;
  long long I32 = K("MOECOMM_INT32");
  for (int i = 0; i < N; i++) send[i] = (int32_t)(mc_test_rand(&g_seed) % 2001) - 1000;
  for (int i = 0; i < N; i++) recv[i] = INT32_MIN;
  r = CALL("all_to_all_v", P(g), P(send), P(NULL), P(sd), P(recv), P(rc), P(rd), I(I32), P(NULL));
  EXPECT(ctx, r, "MOECOMM_ERR_INVALID_ARGUMENT");
  r = CALL("all_to_all_v", P(g), P(send), P(sc), P(sd), P(recv), P(rc), P(NULL), I(I32), P(NULL));
  EXPECT(ctx, r, "MOECOMM_ERR_INVALID_ARGUMENT");
  r = CALL("all_to_all_v", P(g), P(NULL), P(sc), P(sd), P(recv), P(rc), P(rd), I(I32), P(NULL));
  EXPECT(ctx, r, "MOECOMM_ERR_INVALID_ARGUMENT");
  r = CALL("all_to_all_v", P(g), P(send), P(sc), P(sd), P(recv), P(rc), P(rd), I(77), P(NULL));
  EXPECT(ctx, r, "MOECOMM_ERR_INVALID_ARGUMENT");
  r = CALL("all_to_all_v", P(g), P(send), P(sc), P(sd), P(recv), P(rc), P(rd), I(I32),
           P((void *)0x10));
  EXPECT(ctx, r, "MOECOMM_ERR_INVALID_ARGUMENT");
  rc[0] = 8; /* a group of one sends itself 9 and expects 8: they must agree */
  r = CALL("all_to_all_v", P(g), P(send), P(sc), P(sd), P(recv), P(rc), P(rd), I(I32), P(NULL));
  EXPECT(ctx, r, "MOECOMM_ERR_INVALID_ARGUMENT");
  for (int i = 0; i < N; i++)
    MC_CHECK(recv[i] == INT32_MIN, "a refused all_to_all_v wrote recv[%d]", i);
  rc[0] = 9;
  r = CALL("all_to_all_v", P(g), P(send), P(sc), P(sd), P(recv), P(rc), P(rd), I(I32), P(NULL));
  EXPECT(ctx, r, "MOECOMM_SUCCESS");
  for (int i = 0; i < N; i++) {
    int32_t want = i >= 20 && i < 29 ? send[i - 20 + 3] : INT32_MIN;
    MC_CHECK(recv[i] == want, "all_to_all_v on a group of one: recv[%d] = %d, want %d", i,
             (int)recv[i], (int)want);
  }
}

/* ---- ABI 1.2: all_reduce_rmsnorm on a group of one, against a result computed by hand ---- */

/* bits of a bf16 that the float f is exactly (small integers and halves here) */
static uint16_t bf16_exact(float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  MUST((u & 0xffffu) == 0, "%g is not a bf16 value", (double)f);
  return (uint16_t)(u >> 16);
}

#define RMS_H 8
typedef struct rms_bufs {
  uint16_t x[2 * RMS_H], res[2 * RMS_H], w[RMS_H], out[2 * RMS_H + 1];
  unsigned char *args;
} rms_bufs_t;

static void rms_reset(rms_bufs_t *b) {
  /* residual + x: row 0 = 1 2 3 4 0 0 0 0, row 1 = 2 0 0 0 0 0 0 0 */
  static const float x[2 * RMS_H] = {3, -1, 2, 5, 1, -2, 0.5f, 0, 1, 1, 1, 1, 1, 1, 1, 1};
  static const float r[2 * RMS_H] = {-2, 3, 1, -1, -1, 2, -0.5f, 0, 1, -1, -1, -1, -1, -1, -1, -1};
  static const float w[RMS_H] = {1, 2, 0.5f, -1, 3, 1, 1, 1.5f};
  const char *T = "moecomm_rmsnorm_args_t";
  for (int i = 0; i < 2 * RMS_H; i++) {
    b->x[i] = bf16_exact(x[i]);
    b->res[i] = bf16_exact(r[i]);
    b->out[i] = 0x7fc1; /* a NaN no result has */
  }
  b->out[2 * RMS_H] = 0x7fc1;
  for (int i = 0; i < RMS_H; i++) b->w[i] = bf16_exact(w[i]);
  memset(b->args, 0, obj_size(T));
  obj_set(b->args, T, "struct_size", I(obj_size(T)));
  obj_set(b->args, T, "dtype", I(K("MOECOMM_BFLOAT16")));
  obj_set(b->args, T, "eps", F(0.25));
  obj_set(b->args, T, "tokens", I(2));
  obj_set(b->args, T, "hidden", I(RMS_H));
  obj_set(b->args, T, "x", P(b->x));
  obj_set(b->args, T, "residual", P(b->res));
  obj_set(b->args, T, "weight", P(b->w));
  obj_set(b->args, T, "out", P(b->out));
}

/* One refused call (field NULL: args NULL): the code, and residual and out untouched. */
static void rms_refused(void *ctx, void *g, rms_bufs_t *b, const char *field, val_t v, void *stream,
                        const char *code) {
  uint16_t res0[2 * RMS_H];
  val_t r;
  rms_reset(b);
  memcpy(res0, b->res, sizeof(res0));
  if (field != NULL) obj_set(b->args, "moecomm_rmsnorm_args_t", field, v);
  r = CALL("all_reduce_rmsnorm", P(g), P(field != NULL ? b->args : NULL), P(stream));
  MC_CHECK(r.i == K(code), "all_reduce_rmsnorm (%s, stream %p): %lld (%s), want %s: %s",
           field != NULL ? field : "args NULL", stream, r.i, code_name(r.i), code, last_error(ctx));
  MC_CHECK(memcmp(res0, b->res, sizeof(res0)) == 0 && b->out[0] == 0x7fc1 && b->out[9] == 0x7fc1,
           "a refused all_reduce_rmsnorm (%s) wrote residual or out", field ? field : "args");
}

static void check_rmsnorm(void *ctx, void *g) {
  /* by hand, eps 1/4: row 0 sum of squares 30, 30/8 + 1/4 = 4, 1/sqrt = 1/2, out = v/2 * w;
     row 1: 4/8 + 1/4 = 3/4, out[0] = 2/sqrt(3/4) = 2.3094 -> bf16 2.3125 (0x4014); 0 * -1 = -0 */
  static const uint16_t want_out[2 * RMS_H] = {0x3F00, 0x4000, 0x3F40, 0xC000, 0, 0, 0, 0,
                                               0x4014, 0,      0,      0x8000, 0, 0, 0, 0};
  static const float want_res[2 * RMS_H] = {1, 2, 3, 4, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0};
  rms_bufs_t b;
  long long local;
  val_t r;
  b.args = obj_new("moecomm_rmsnorm_args_t", 0);
  if (b.args == NULL) return;
  const char *INVALID = "MOECOMM_ERR_INVALID_ARGUMENT";
  rms_refused(ctx, g, &b, NULL, P(NULL), NULL, INVALID);
  rms_refused(ctx, g, &b, "tokens", I(2), (void *)0x10, INVALID); /* a stream on a CPU context */
  rms_refused(ctx, g, &b, "struct_size", I(8), NULL, "MOECOMM_ERR_STRUCT_SIZE");
  rms_refused(ctx, g, &b, "dtype", I(K("MOECOMM_FLOAT32")), NULL, INVALID);
  rms_refused(ctx, g, &b, "dtype", I(K("MOECOMM_FLOAT8_E4M3")), NULL, INVALID);
  rms_refused(ctx, g, &b, "eps", F(-1), NULL, INVALID);
  rms_refused(ctx, g, &b, "hidden", I(0), NULL, INVALID);
  rms_refused(ctx, g, &b, "x", P(NULL), NULL, INVALID);
  rms_refused(ctx, g, &b, "weight", P(NULL), NULL, INVALID);
  rms_refused(ctx, g, &b, "out", P(b.res + 3), NULL, INVALID); /* overlaps the residual */
  rms_refused(ctx, g, &b, "out_fp8", P(b.x), NULL, INVALID);   /* without out_scale */

  rms_reset(&b);
  local = stat_of(g, "ops_local");
  r = CALL("all_reduce_rmsnorm", P(g), P(b.args), P(NULL));
  EXPECT(ctx, r, "MOECOMM_SUCCESS");
  for (int i = 0; i < 2 * RMS_H; i++)
    MC_CHECK(b.out[i] == want_out[i] && b.res[i] == bf16_exact(want_res[i]),
             "all_reduce_rmsnorm row %d column %d: out %#06x residual %#06x, want %#06x %#06x",
             i / RMS_H, i % RMS_H, b.out[i], b.res[i], want_out[i], bf16_exact(want_res[i]));
  MC_CHECK(b.out[2 * RMS_H] == 0x7fc1, "all_reduce_rmsnorm wrote past out");
  MC_CHECK(stat_of(g, "ops_local") == local + 1,
           "all_reduce_rmsnorm on a group of one: ops_local "
           "%lld -> %lld",
           local, stat_of(g, "ops_local"));
  free(b.args);
}

/* ---- ABI 1.2: moe_configure, and the dispatch arguments (a working dispatch is the EP tests') */

#define MOE_T 16 /* max_tokens */
#define MOE_E 4  /* experts (all local on one rank) */
#define MOE_K 2
#define MOE_H 8

static void moe_config_ok(unsigned char *c) {
  const char *T = "moecomm_moe_config_t";
  memset(c, 0, obj_size(T));
  obj_set(c, T, "struct_size", I(obj_size(T)));
  obj_set(c, T, "num_experts", I(MOE_E));
  obj_set(c, T, "top_k", I(MOE_K));
  obj_set(c, T, "dtype", I(K("MOECOMM_BFLOAT16")));
  obj_set(c, T, "max_tokens", I(MOE_T));
  obj_set(c, T, "hidden", I(MOE_H));
}

static void moe_configure_refused(void *ctx, void *ep, unsigned char *c, const char *field,
                                  long long v, const char *code) {
  val_t r;
  moe_config_ok(c);
  if (field != NULL) obj_set(c, "moecomm_moe_config_t", field, I(v));
  r = CALL("moe_configure", P(ep), P(field != NULL ? c : NULL));
  MC_CHECK(r.i == K(code), "moe_configure with %s = %lld: %lld (%s), want %s: %s",
           field != NULL ? field : "config NULL", v, r.i, code_name(r.i), code, last_error(ctx));
  MC_CHECK(stat_of(ep, "moe_max_tokens") == 0, "a refused moe_configure (%s) took effect",
           field ? field : "NULL");
}

static void check_moe_configure(void *ctx, void *ep, void *tp, unsigned char *c) {
  const char *INVALID = "MOECOMM_ERR_INVALID_ARGUMENT";
  long long fp8 = K("MOECOMM_FLOAT8_E4M3");
  val_t r;
  moe_config_ok(c);
  r = CALL("moe_configure", P(tp), P(c));
  EXPECT(ctx, r, "MOECOMM_ERR_INVALID_ARGUMENT"); /* only the MOE_EP group dispatches */
  moe_configure_refused(ctx, ep, c, NULL, 0, INVALID);
  moe_configure_refused(ctx, ep, c, "struct_size", 8, "MOECOMM_ERR_STRUCT_SIZE");
  moe_configure_refused(ctx, ep, c, "num_experts", 0, INVALID);
  moe_configure_refused(ctx, ep, c, "top_k", 0, INVALID);
  moe_configure_refused(ctx, ep, c, "top_k", K("MOECOMM_MOE_MAX_TOP_K") + 1, INVALID);
  moe_configure_refused(ctx, ep, c, "dtype", K("MOECOMM_INT32"), INVALID);
  moe_configure_refused(ctx, ep, c, "dtype", fp8, INVALID);    /* fp8 without num_scales */
  moe_configure_refused(ctx, ep, c, "num_scales", 2, INVALID); /* scales of a bf16 payload */
  moe_configure_refused(ctx, ep, c, "max_tokens", -1, INVALID);
  moe_configure_refused(ctx, ep, c, "expert_capacity", -1, INVALID);
  moe_configure_refused(ctx, ep, c, "hidden", 0, INVALID);
  moe_config_ok(c); /* fp8 with its scales but an fp8 combine dtype */
  obj_set(c, "moecomm_moe_config_t", "dtype", I(fp8));
  obj_set(c, "moecomm_moe_config_t", "num_scales", I(1));
  obj_set(c, "moecomm_moe_config_t", "combine_dtype", I(fp8));
  r = CALL("moe_configure", P(ep), P(c));
  EXPECT(ctx, r, "MOECOMM_ERR_INVALID_ARGUMENT");

  /* valid; the same again is a no-op; another one before the first dispatch replaces it */
  moe_config_ok(c);
  r = CALL("moe_configure", P(ep), P(c));
  EXPECT(ctx, r, "MOECOMM_SUCCESS");
  MC_CHECK(stat_of(ep, "moe_max_tokens") == MOE_T &&
               stat_of(ep, "moe_expert_capacity") == MOE_T, /* 0: n * T_max, n = 1 */
           "after moe_configure: moe_max_tokens %lld, moe_expert_capacity %lld; want %d, %d",
           stat_of(ep, "moe_max_tokens"), stat_of(ep, "moe_expert_capacity"), MOE_T, MOE_T);
  r = CALL("moe_configure", P(ep), P(c));
  EXPECT(ctx, r, "MOECOMM_SUCCESS");
  obj_set(c, "moecomm_moe_config_t", "max_tokens", I(0)); /* MOECOMM_EP_MAX_TOKENS: 256 */
  obj_set(c, "moecomm_moe_config_t", "expert_capacity", I(5));
  r = CALL("moe_configure", P(ep), P(c));
  EXPECT(ctx, r, "MOECOMM_SUCCESS");
  MC_CHECK(stat_of(ep, "moe_max_tokens") == 256 && stat_of(ep, "moe_expert_capacity") == 5,
           "moe_configure max_tokens 0, capacity 5: stats say %lld, %lld; want 256, 5",
           stat_of(ep, "moe_max_tokens"), stat_of(ep, "moe_expert_capacity"));
  moe_config_ok(c);
  r = CALL("moe_configure", P(ep), P(c));
  EXPECT(ctx, r, "MOECOMM_SUCCESS");
  MC_CHECK(stat_of(tp, "moe_max_tokens") == 0, "TP reports an expert-parallel shape");
}

typedef struct moe_bufs {
  uint16_t x[MOE_T * MOE_H], recv_x[MOE_E * MOE_T * MOE_H], out[MOE_T * MOE_H];
  int32_t ids[MOE_T * MOE_K], counts[MOE_E], src[MOE_E * MOE_T * 3];
  float w[MOE_T * MOE_K];
  unsigned char *d, *c; /* dispatch and combine args */
} moe_bufs_t;

static void moe_args(moe_bufs_t *b, int tokens) {
  const char *D = "moecomm_moe_dispatch_args_t", *C = "moecomm_moe_combine_args_t";
  for (int i = 0; i < MOE_T * MOE_H; i++) b->x[i] = (uint16_t)(0x3f80 + i % 64);
  for (int i = 0; i < MOE_T * MOE_K; i++) {
    b->ids[i] = (int32_t)((i * 3 + i / MOE_K) % MOE_E);
    b->w[i] = 0.5f;
  }
  memset(b->recv_x, 0x5b, sizeof(b->recv_x));
  memset(b->counts, 0x5b, sizeof(b->counts));
  memset(b->src, 0x5b, sizeof(b->src));
  memset(b->out, 0x5b, sizeof(b->out));
  memset(b->d, 0, obj_size(D));
  obj_set(b->d, D, "struct_size", I(obj_size(D)));
  obj_set(b->d, D, "num_tokens", I(tokens));
  obj_set(b->d, D, "x", P(b->x));
  obj_set(b->d, D, "topk_ids", P(b->ids));
  obj_set(b->d, D, "recv_x", P(b->recv_x));
  obj_set(b->d, D, "recv_counts", P(b->counts));
  obj_set(b->d, D, "recv_src", P(b->src));
  memset(b->c, 0, obj_size(C));
  obj_set(b->c, C, "struct_size", I(obj_size(C)));
  obj_set(b->c, C, "num_tokens", I(tokens));
  obj_set(b->c, C, "expert_out", P(b->recv_x));
  obj_set(b->c, C, "topk_weights", P(b->w));
  obj_set(b->c, C, "out", P(b->out));
}

static int moe_untouched(const moe_bufs_t *b) {
  const unsigned char *p = (const unsigned char *)b->counts;
  for (size_t i = 0; i < sizeof(b->counts); i++)
    if (p[i] != 0x5b) return 0;
  p = (const unsigned char *)b->out;
  for (size_t i = 0; i < sizeof(b->out); i++)
    if (p[i] != 0x5b) return 0;
  return 1;
}

/* Arguments every backend refuses the same way, before any data moves. */
static void check_moe_args(void *ctx, void *ep, moe_bufs_t *b) {
  uint64_t handle = 0x77;
  val_t r;
  moe_args(b, 3);
  r = CALL("moe_dispatch", P(ep), P(NULL), P(&handle), P(NULL));
  EXPECT(ctx, r, "MOECOMM_ERR_INVALID_ARGUMENT");
  r = CALL("moe_dispatch", P(ep), P(b->d), P(NULL), P(NULL));
  EXPECT(ctx, r, "MOECOMM_ERR_INVALID_ARGUMENT");
  r = CALL("moe_dispatch", P(ep), P(b->d), P(&handle), P((void *)0x10));
  EXPECT(ctx, r, "MOECOMM_ERR_INVALID_ARGUMENT"); /* a stream on a CPU context */
  obj_set(b->d, "moecomm_moe_dispatch_args_t", "struct_size", I(8));
  r = CALL("moe_dispatch", P(ep), P(b->d), P(&handle), P(NULL));
  EXPECT(ctx, r, "MOECOMM_ERR_STRUCT_SIZE");
  r = CALL("moe_combine", P(ep), P(NULL), P(NULL));
  EXPECT(ctx, r, "MOECOMM_ERR_INVALID_ARGUMENT");
  r = CALL("moe_combine", P(ep), P(b->c), P((void *)0x10));
  EXPECT(ctx, r, "MOECOMM_ERR_INVALID_ARGUMENT");
  obj_set(b->c, "moecomm_moe_combine_args_t", "struct_size", I(8));
  r = CALL("moe_combine", P(ep), P(b->c), P(NULL));
  EXPECT(ctx, r, "MOECOMM_ERR_STRUCT_SIZE");
  MC_CHECK(handle == 0x77 && moe_untouched(b), "a refused moe_dispatch or moe_combine wrote");
}

static void check_moe(void *ctx) {
  unsigned char *c = obj_new("moecomm_moe_config_t", 0);
  static moe_bufs_t b;
  void *ep = NULL, *tp = NULL;
  uint64_t handle = 0x77;
  val_t r;
  b.d = obj_new("moecomm_moe_dispatch_args_t", 0);
  b.c = obj_new("moecomm_moe_combine_args_t", 0);
  if (c == NULL || b.d == NULL || b.c == NULL) goto out;
  if (!EXPECT(ctx, CALL("group_get", P(ctx), I(K("MOECOMM_GROUP_MOE_EP")), P(&ep)),
              "MOECOMM_SUCCESS") ||
      !EXPECT(ctx, CALL("group_get", P(ctx), I(K("MOECOMM_GROUP_TP")), P(&tp)), "MOECOMM_SUCCESS"))
    goto out;
  /* before moe_configure: dispatch and combine are out of order */
  moe_args(&b, 3);
  r = CALL("moe_dispatch", P(ep), P(b.d), P(&handle), P(NULL));
  EXPECT(ctx, r, "MOECOMM_ERR_STATE");
  r = CALL("moe_combine", P(ep), P(b.c), P(NULL));
  EXPECT(ctx, r, "MOECOMM_ERR_STATE");
  MC_CHECK(handle == 0x77 && moe_untouched(&b), "a refused moe_dispatch wrote");
  check_moe_configure(ctx, ep, tp, c);
  check_moe_args(ctx, ep, &b);
  /* A world of one, once configured: served (the EP tests check the data), or, where no
     backend of this context dispatches yet, refused before anything is written. */
  moe_args(&b, 3);
  r = CALL("moe_dispatch", P(ep), P(b.d), P(&handle), P(NULL));
  if (r.i == K("MOECOMM_ERR_NOT_SUPPORTED")) {
    MC_CHECK(handle == 0x77 && moe_untouched(&b) && strstr(last_error(ctx), "moe_dispatch"),
             "a moe_dispatch that is not served wrote, or said '%s'", last_error(ctx));
    mc_test_skip("moe_dispatch on a CPU context", "%s", last_error(ctx));
  } else if (EXPECT(ctx, r, "MOECOMM_SUCCESS")) {
    obj_set(b.c, "moecomm_moe_combine_args_t", "handle", I(handle));
    r = CALL("moe_combine", P(ep), P(b.c), P(NULL));
    EXPECT(ctx, r, "MOECOMM_SUCCESS");
    r = CALL("moe_combine", P(ep), P(b.c), P(NULL)); /* combined already */
    EXPECT(ctx, r, "MOECOMM_ERR_STATE");
    moe_args(&b, MOE_T + 1);
    handle = 0x77;
    r = CALL("moe_dispatch", P(ep), P(b.d), P(&handle), P(NULL));
    EXPECT(ctx, r, "MOECOMM_ERR_INVALID_ARGUMENT");
    MC_CHECK(handle == 0x77 && moe_untouched(&b), "a dispatch of T_max + 1 tokens wrote");
    obj_set(c, "moecomm_moe_config_t", "max_tokens", I(MOE_T * 2));
    r = CALL("moe_configure", P(ep), P(c)); /* another shape once the buffers exist */
    EXPECT(ctx, r, "MOECOMM_ERR_STATE");
  }
out:
  free(c);
  free(b.d);
  free(b.c);
}

/* The 1.2 slots that need a context, on its world-1 groups. */
static void check_abi12(void *ctx) {
  static const char *const counters[] = {"ops",
                                         "ops_local",
                                         "ops_shm",
                                         "ops_nccl",
                                         "ops_custom",
                                         "moe_max_tokens",
                                         "moe_expert_capacity"};
  float one[3] = {1, 2, 3}, got[3];
  void *g = NULL, *dp = NULL;
  val_t r;
  if (!EXPECT(ctx, CALL("group_get", P(ctx), I(K("MOECOMM_GROUP_TP")), P(&g)), "MOECOMM_SUCCESS") ||
      !EXPECT(ctx, CALL("group_get", P(ctx), I(K("MOECOMM_GROUP_MOE_DP")), P(&dp)),
              "MOECOMM_SUCCESS"))
    return;
  /* a group nothing ran on counts nothing; one all_reduce is one local copy */
  for (size_t i = 0; i < sizeof(counters) / sizeof(counters[0]); i++)
    MC_CHECK(stat_of(dp, counters[i]) == 0, "MOE_DP before any call: %s = %lld", counters[i],
             stat_of(dp, counters[i]));
  r = CALL("all_reduce", P(dp), P(one), P(got), I(3), I(K("MOECOMM_FLOAT32")), I(K("MOECOMM_SUM")),
           P(NULL));
  EXPECT(ctx, r, "MOECOMM_SUCCESS");
  MC_CHECK(stat_of(dp, "ops") == 1 && stat_of(dp, "ops_local") == 1 && stat_of(dp, "ops_shm") == 0,
           "MOE_DP after one all_reduce: ops %lld ops_local %lld ops_shm %lld", stat_of(dp, "ops"),
           stat_of(dp, "ops_local"), stat_of(dp, "ops_shm"));
  check_p2p(ctx, g);
  check_all_to_all(ctx, g);
  check_all_to_all_v(ctx, g);
  check_rmsnorm(ctx, g);
  check_moe(ctx);
}

int main(int argc, char **argv) {
  char path[4096];
  closure_t ag;
  void *ctx;
  val_t r;
  mc_test_init("abi_ffi", argc, argv);
  memset(&ag, 0, sizeof(ag));
  g_man = calloc(1, sizeof(*g_man));
  snprintf(path, sizeof(path), "%s/abi/moecomm_v1.manifest", MC_SOURCE_DIR);
  if (!MC_CHECK(g_man != NULL && mf_load_manifest(path, g_man) == 0 && mf_layout(g_man) == 0,
                "reading %s: %s", path, g_man ? g_man->err : "out of memory"))
    goto out;
  if (negotiate() != 0) goto out;
  check_zero_args();
  check_group_ranks();
  check_config_vars();
  if (make_allgather(&ag) != 0) goto out;
  ctx = create_context(&ag);
  if (ctx != NULL) {
    check_invalid_with_context(ctx);
    check_valid(ctx);
    check_abi12(ctx);
    r = CALL("context_destroy", P(ctx));
    EXPECT(NULL, r, "MOECOMM_SUCCESS");
  }
out:
  if (ag.closure != NULL) ffi_closure_free(ag.closure);
  if (g_handle != NULL) dlclose(g_handle);
  free(g_man);
  return mc_test_finish();
}
