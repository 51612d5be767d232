/* ffi.c - calls the plugin the way a ctypes engine does: from abi/moecomm_v1.manifest alone.
 *
 * No ABI type or constant of abi/moecomm.h is used here (the harness includes the header for its
 * own use): the entry point and every table slot are called through libffi's ffi_call with the
 * argument and return types the manifest gives, slots are read at the offsets the manifest's
 * layout gives, structs are built byte by byte from the manifest's members, constants come from
 * its enums and defines, and the bootstrap all-gather is a libffi closure (as ctypes.CFUNCTYPE
 * makes one).  Every slot is first called with invalid arguments (expecting the documented codes
 * and untouched outputs), then with valid minimal arguments on a world-1 CPU (shm) context. */
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
} val_t;
#define P(x) ((val_t){0, (void *)(x)})
/* Plumbing checks (lookups, libffi set-up) record only their failures, not a pass each time. */
#define MUST(cond, ...) ((cond) ? 1 : MC_CHECK(cond, __VA_ARGS__))
#define I(x) ((val_t){(long long)(x), NULL})

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
  val_t ret = {LLONG_MIN, NULL};
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
  val_t v = {LLONG_MIN, NULL};
  size_t size, align;
  mf_class_t cls;
  if (b == NULL || mb == NULL || mf_type_info(g_man, mb->type, &size, &align, &cls) != 0) return v;
  if (cls == MF_C_PTR) {
    memcpy(&v.p, b + mb->offset, sizeof(v.p));
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
    {"result_string", WANT_STRING},   {"last_error", WANT_STRING},
    {"context_create", WANT_INVALID}, {"context_destroy", WANT_SUCCESS}, /* NULL: no-op */
    {"context_info", WANT_INVALID},   {"group_get", WANT_INVALID},
    {"group_stats", WANT_INVALID},    {"all_reduce", WANT_INVALID},
    {"all_gather", WANT_INVALID},     {"reduce_scatter", WANT_INVALID},
    {"broadcast", WANT_INVALID},      {"capture_begin", WANT_INVALID},
    {"capture_end", WANT_INVALID},    {"plan_capture_sizes", WANT_INVALID},
    {"layer_mode", WANT_INVALID},     {"mode_rows", WANT_INVALID},
    {"scatter", WANT_INVALID},
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
    if (!MC_CHECK(found >= 0, "slot %s has no invalid-argument case in tests/contract/abi_ffi.c", mb->name))
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
  if (make_allgather(&ag) != 0) goto out;
  ctx = create_context(&ag);
  if (ctx != NULL) {
    check_invalid_with_context(ctx);
    check_valid(ctx);
    r = CALL("context_destroy", P(ctx));
    EXPECT(NULL, r, "MOECOMM_SUCCESS");
  }
out:
  if (ag.closure != NULL) ffi_closure_free(ag.closure);
  if (g_handle != NULL) dlclose(g_handle);
  free(g_man);
  return mc_test_finish();
}
