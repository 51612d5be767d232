/* SPDX-License-Identifier: Apache-2.0 */
/* manifest.c - abi/moecomm_v1.manifest against the headers and the plugin.
 *
 * The manifest must describe abi/moecomm.h exactly (every entry, callback type, handle, integer
 * constant, enum value, struct member and table slot, in order, with the same C types), and its
 * members of version 1.0 must describe the frozen abi/moecomm_v1.h exactly: a slot added to a
 * header but not to the manifest fails here, and so does the reverse.  The layout the manifest
 * implies must match the compiler's (sizeof of each struct in both headers), every member a minor
 * version added must start past the end of the struct as the older version laid it out, and the
 * plugin's table must have the manifest's size and no NULL slot.  Two negative controls show the
 * comparison catching a slot added to a copy of the header and a slot removed from the manifest. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/harness.h"
#include "manifest.h"
#include "old_host_v1.h"
#include "util.h"

#ifndef MC_SOURCE_DIR
#define MC_SOURCE_DIR "."
#endif

typedef void (*note_fn_t)(int ok, const char *msg, void *user);

static void note_check(int ok, const char *msg, void *user) {
  (void)user;
  MC_CHECK(ok, "%s", msg);
}

static void note_count(int ok, const char *msg, void *user) {
  (void)msg;
  if (!ok) ++*(int *)user;
}

static const char *kind_name(mf_kind_t k) {
  switch (k) {
    case MF_ENTRY: return "entry";
    case MF_FNTYPE: return "callback type";
    case MF_OPAQUE: return "handle";
    case MF_DEFINE: return "constant";
    case MF_ENUM: return "enum";
    case MF_STRUCT: return "struct";
  }
  return "?";
}

static int same_fn(const mf_func_t *a, const mf_func_t *b, char *why, size_t n) {
  if (strcmp(a->ret, b->ret) != 0) {
    snprintf(why, n, "returns '%s' in the manifest, '%s' in the header", a->ret, b->ret);
    return 0;
  }
  if (a->nargs != b->nargs) {
    snprintf(why, n, "has %d arguments in the manifest, %d in the header", a->nargs, b->nargs);
    return 0;
  }
  for (int i = 0; i < a->nargs; i++)
    if (strcmp(a->arg_type[i], b->arg_type[i]) != 0) {
      snprintf(why, n, "argument %d (%s) is '%s' in the manifest, '%s' in the header", i,
               a->arg_name[i], a->arg_type[i], b->arg_type[i]);
      return 0;
    }
  return 1;
}

/* Manifest items (and members, values) of version <= upto against header hdr (name hname),
   in both directions.  One note per item. */
static void compare(const mf_t *man, const mf_t *hdr, uint32_t upto, const char *hname,
                    note_fn_t note, void *user) {
  char msg[1024], why[512];
  for (int i = 0; i < man->nitems; i++) {
    const mf_item_t *mi = &man->items[i];
    const mf_item_t *hi = mf_find(hdr, mi->kind, mi->name);
    int ok = 1;
    if (mi->since > upto) {
      snprintf(msg, sizeof(msg), "%s %s (since %u.%u) must not be in %s", kind_name(mi->kind),
               mi->name, mi->since >> 16, mi->since & 0xffff, hname);
      note(hi == NULL, msg, user);
      continue;
    }
    if (hi == NULL) {
      snprintf(msg, sizeof(msg), "%s %s is in the manifest but not in %s", kind_name(mi->kind),
               mi->name, hname);
      note(0, msg, user);
      continue;
    }
    why[0] = '\0';
    switch (mi->kind) {
      case MF_ENTRY:
      case MF_FNTYPE: ok = same_fn(&mi->fn, &hi->fn, why, sizeof(why)); break;
      case MF_OPAQUE: break;
      case MF_DEFINE: {
        /* The version constants say which version a header is. */
        long long want = mi->value;
        if (strcmp(mi->name, "MOECOMM_ABI_MAJOR") == 0) want = upto >> 16;
        if (strcmp(mi->name, "MOECOMM_ABI_MINOR") == 0) want = upto & 0xffff;
        ok = hi->value == want;
        snprintf(why, sizeof(why), "is %lld in the header, %lld expected", hi->value, want);
        break;
      }
      case MF_ENUM:
      case MF_STRUCT: {
        int k = 0; /* next header member */
        for (int j = 0; j < mi->nmembers && ok; j++) {
          const mf_member_t *a = &mi->members[j], *b;
          if (a->since > upto) continue;
          if (k >= hi->nmembers) {
            snprintf(why, sizeof(why),
                     "member %s (index %d) is in the manifest but not in the "
                     "header",
                     a->name, a->index);
            ok = 0;
            break;
          }
          b = &hi->members[k++];
          if (strcmp(a->name, b->name) != 0) {
            snprintf(why, sizeof(why), "member %d is %s in the manifest, %s in the header", k - 1,
                     a->name, b->name);
            ok = 0;
          } else if (mi->kind == MF_ENUM && a->value != b->value) {
            snprintf(why, sizeof(why), "%s = %lld in the manifest, %lld in the header", a->name,
                     a->value, b->value);
            ok = 0;
          } else if (mi->kind == MF_STRUCT && a->is_fn != b->is_fn) {
            snprintf(why, sizeof(why), "%s is a %s in the manifest but not in the header", a->name,
                     a->is_fn ? "table slot" : "data member");
            ok = 0;
          } else if (mi->kind == MF_STRUCT && a->is_fn) {
            char w2[400];
            if (!same_fn(&a->fn, &b->fn, w2, sizeof(w2))) {
              snprintf(why, sizeof(why), "slot %s %s", a->name, w2);
              ok = 0;
            }
          } else if (mi->kind == MF_STRUCT && strcmp(a->type, b->type) != 0) {
            snprintf(why, sizeof(why), "member %s is '%s' in the manifest, '%s' in the header",
                     a->name, a->type, b->type);
            ok = 0;
          }
        }
        if (ok && k < hi->nmembers) {
          snprintf(why, sizeof(why),
                   "member %s (index %d) is in the header but not in the "
                   "manifest",
                   hi->members[k].name, k);
          ok = 0;
        }
        break;
      }
    }
    snprintf(msg, sizeof(msg), "%s %s: manifest and %s differ: %s", kind_name(mi->kind), mi->name,
             hname, why);
    note(ok, msg, user);
  }
  /* The reverse: everything the header declares is in the manifest. */
  for (int i = 0; i < hdr->nitems; i++) {
    const mf_item_t *hi = &hdr->items[i];
    snprintf(msg, sizeof(msg), "%s %s is in %s but not in the manifest", kind_name(hi->kind),
             hi->name, hname);
    note(mf_find(man, hi->kind, hi->name) != NULL, msg, user);
  }
}

static mf_t *load(int manifest, const char *rel) {
  char path[4096];
  mf_t *m = calloc(1, sizeof(*m));
  int rc;
  snprintf(path, sizeof(path), "%s/%s", MC_SOURCE_DIR, rel);
  if (m == NULL) return NULL;
  rc = manifest ? mf_load_manifest(path, m) : mf_load_header(path, m);
  if (!MC_CHECK(rc == 0, "reading %s: %s", path, m->err)) {
    free(m);
    return NULL;
  }
  return m;
}

/* The compiler's sizes, against the manifest's layout. */
#define MC_ABI_STRUCTS(X)        \
  X(moecomm_topology_t)          \
  X(moecomm_context_params_t)    \
  X(moecomm_context_info_t)      \
  X(moecomm_group_stats_t)       \
  X(moecomm_plan_params_t)       \
  X(moecomm_scatter_args_t)      \
  X(moecomm_config_var_t)        \
  X(moecomm_moe_config_t)        \
  X(moecomm_moe_dispatch_args_t) \
  X(moecomm_moe_combine_args_t)  \
  X(moecomm_rmsnorm_args_t)      \
  X(moecomm_api_t)

static size_t current_sizeof(const char *name) {
#define MC_SIZE_OF(t) \
  if (strcmp(name, #t) == 0) return sizeof(t);
  MC_ABI_STRUCTS(MC_SIZE_OF)
#undef MC_SIZE_OF
  return 0;
}

static void check_layout(const mf_t *man) {
  for (int i = 0; i < man->nitems; i++) {
    const mf_item_t *it = &man->items[i];
    size_t v1 = old_host_v1_sizeof(it->name);
    size_t end10 = 0, al10 = 1;
    if (it->kind != MF_STRUCT) continue;
    MC_CHECK(current_sizeof(it->name) == it->size,
             "%s: the manifest lays it out in %zu bytes, abi/moecomm.h in %zu (0: the test's list "
             "MC_ABI_STRUCTS lacks it)",
             it->name, it->size, current_sizeof(it->name));
    for (int j = 0; j < it->nmembers; j++) {
      const mf_member_t *mb = &it->members[j];
      if (mb->since <= MF_VERSION(1, 0)) {
        end10 = mb->offset + mb->size;
        if (mb->align > al10) al10 = mb->align;
      }
    }
    end10 = (end10 + al10 - 1) / al10 * al10;
    if (it->since <= MF_VERSION(1, 0))
      MC_CHECK(v1 == end10,
               "%s: its 1.0 members take %zu bytes in the manifest, %zu in the frozen "
               "abi/moecomm_v1.h",
               it->name, end10, v1);
    else
      MC_CHECK(v1 == 0, "%s is new in %u.%u but abi/moecomm_v1.h has it", it->name, it->since >> 16,
               it->since & 0xffff);

    /* Minor versions only append, and past the old end: a member inside the old layout's tail
       padding is sent by an old host with the same struct_size, uninitialised. */
    for (int j = 0; j < it->nmembers; j++) {
      const mf_member_t *mb = &it->members[j];
      size_t end = 0, al = 1;
      int older = 0;
      for (int k = 0; k < it->nmembers; k++) {
        const mf_member_t *o = &it->members[k];
        if (o->since >= mb->since) continue;
        older = 1;
        if (o->offset + o->size > end) end = o->offset + o->size;
        if (o->align > al) al = o->align;
      }
      if (!older) continue;
      end = (end + al - 1) / al * al;
      {
        const mf_member_t *prev = &it->members[j > 0 ? j - 1 : 0];
        MC_CHECK(prev->since <= mb->since,
                 "%s.%s (%u.%u) comes before the older %s: minor versions only append", it->name,
                 prev->name, prev->since >> 16, prev->since & 0xffff, mb->name);
      }
      MC_CHECK(mb->offset >= end,
               "%s.%s (ABI %u.%u) starts at byte %zu, inside the %zu bytes of the struct as older "
               "versions lay it out (their tail padding): an older host sends struct_size %zu with "
               "that padding uninitialised, so the receiver cannot tell the member is absent. "
               "Place it at byte >= %zu (e.g. a wider type, or an explicit reserved field before "
               "it).",
               it->name, mb->name, mb->since >> 16, mb->since & 0xffff, mb->offset, end, end, end);
    }
  }
}

static void check_plugin_table(const mf_t *man) {
  const moecomm_api_t *api = mc_test_plugin();
  const mf_item_t *t = mf_find(man, MF_STRUCT, "moecomm_api_t");
  if (!MC_CHECK(t != NULL, "the manifest has no moecomm_api_t")) return;
  MC_CHECK(api->struct_size == t->size, "the plugin's table is %zu bytes, the manifest's %zu",
           api->struct_size, t->size);
  MC_CHECK(api->abi_version == man->abi, "the plugin's table is ABI %#x, the manifest %#x",
           api->abi_version, man->abi);
  for (int j = 0; j < t->nmembers; j++) {
    const mf_member_t *mb = &t->members[j];
    void *slot = NULL;
    if (!mb->is_fn) continue;
    if (!MC_CHECK(mb->offset + sizeof(slot) <= api->struct_size,
                  "slot %s (byte %zu) is past the plugin's table (%zu bytes)", mb->name, mb->offset,
                  api->struct_size))
      continue;
    memcpy(&slot, (const char *)api + mb->offset, sizeof(slot));
    MC_CHECK(slot != NULL, "the plugin leaves slot %s (index %d) NULL", mb->name, mb->index);
  }
}

/* Negative controls: the comparison must notice a slot added to (a copy of) the header, and a
   slot missing from the manifest. */
static void check_controls(const mf_t *man, const mf_t *hdr) {
  char dir[4096], src[4096], dst[4200], cmd[16384];
  mf_t *copy;
  int diffs = 0, base = 0;
  mf_item_t *api;

  /* Differences already there (reported above) are not the controls'. */
  compare(man, hdr, man->abi, "abi/moecomm.h", note_count, &base);

  if (!MC_CHECK(abi_mkdtemp("manifest", dir, sizeof(dir)) == 0, "mkdtemp failed")) return;
  snprintf(src, sizeof(src), "%s/abi/moecomm.h", MC_SOURCE_DIR);
  snprintf(dst, sizeof(dst), "%s/moecomm.h", dir);
  snprintf(cmd, sizeof(cmd),
           "sed 's|^} moecomm_api_t;|  moecomm_result_t (*added_slot)(moecomm_context_t *ctx);\\n"
           "} moecomm_api_t;|' '%s' > '%s'",
           src, dst);
  MC_CHECK(mc_test_shell(cmd, NULL, 0) == 0, "could not write %s", dst);
  copy = calloc(1, sizeof(*copy));
  if (copy != NULL && MC_CHECK(mf_load_header(dst, copy) == 0, "reading %s: %s", dst, copy->err)) {
    compare(man, copy, man->abi, "a header with a slot added", note_count, &diffs);
    MC_CHECK(diffs == base + 1, "a slot added to the header gave %d new differences, 1 expected",
             diffs - base);
  }
  free(copy);
  abi_rm_rf(dir);

  /* The manifest without its last slot. */
  copy = malloc(sizeof(*copy));
  if (copy == NULL) return;
  memcpy(copy, man, sizeof(*copy));
  api = (mf_item_t *)mf_find(copy, MF_STRUCT, "moecomm_api_t");
  if (MC_CHECK(api != NULL && api->nmembers > 0, "no moecomm_api_t in the manifest")) {
    api->nmembers--;
    diffs = 0;
    compare(copy, hdr, copy->abi, "abi/moecomm.h", note_count, &diffs);
    MC_CHECK(diffs == base + 1,
             "a slot removed from the manifest gave %d new differences, 1 "
             "expected",
             diffs - base);
  }
  free(copy);
}

int main(int argc, char **argv) {
  mf_t *man, *cur, *v1;
  mc_test_init("abi_manifest", argc, argv);
  man = load(1, "abi/moecomm_v1.manifest");
  cur = load(0, "abi/moecomm.h");
  v1 = load(0, "abi/moecomm_v1.h");
  if (man != NULL && cur != NULL && v1 != NULL) {
    MC_CHECK(mf_layout(man) == 0, "manifest layout: %s", man->err);
    MC_CHECK(man->abi == cur->abi, "the manifest describes ABI %#x, abi/moecomm.h is %#x", man->abi,
             cur->abi);
    MC_CHECK(v1->abi == MF_VERSION(1, 0), "abi/moecomm_v1.h is ABI %#x, not 1.0", v1->abi);
    compare(man, cur, man->abi, "abi/moecomm.h", note_check, NULL);
    compare(man, v1, MF_VERSION(1, 0), "abi/moecomm_v1.h", note_check, NULL);
    check_layout(man);
    check_plugin_table(man);
    check_controls(man, cur);
  }
  free(man);
  free(cur);
  free(v1);
  return mc_test_finish();
}
