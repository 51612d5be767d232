#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# abi-check.sh - the ABI baseline check (libabigail's abidw / abidiff), run by `make abi-check`,
# `make abi-baseline` and tests/contract/abi_check.c.
#
#   abi-check.sh check PLUGIN OUTDIR     dump PLUGIN's ABI to OUTDIR and compare it with every
#                                        committed dump packaging/abi/libmoecomm-abi-*.abi; also
#                                        check each frozen header abi/moecomm_v*.h against its dump
#   abi-check.sh baseline PLUGIN OUTDIR  write packaging/abi/libmoecomm-abi-<current>.abi from
#                                        PLUGIN
#   abi-check.sh frozen HEADER OUT.abi   dump of a header alone (packaging/abi/probe_v1.c built
#                                        against it): how libmoecomm-abi-1.0.abi was made
#   abi-check.sh compare OLD.abi NEW     NEW (a .so or a dump) against OLD under the policy below
#
# Dumps hold only the types of abi/ headers (--headers-dir + --drop-private-types: the opaque
# moecomm_context/moecomm_group are the plugin's business) and no paths, line numbers or
# machine-dependent ids (--no-show-locs, --no-*-path, hashed type ids), so they compare anywhere.
#
# Policy.  abidiff's status is a bit mask: 1 tool error, 2 usage error, 4 ABI change,
# 8 incompatible change.  Bits 1, 2 and 8 fail.  Bit 4 alone is read from the leaf-change report,
# which lists each changed type once: the only changes allowed are the minor-version appends of
# abi/CHANGELOG.md, i.e. data members (fields, table slots) inserted at or past the old size of a
# struct that grew, and enumerators added to an enum.  Everything else fails: a reordered or
# retyped slot or field, a removal, a member added inside the old size (tail padding: a caller of
# the old version sends the same struct_size, so the receiver cannot tell the member is absent), a
# new or removed exported symbol.  libabigail's suppression files cannot say "past the old size"
# (a suppressed type also hides its parents' changes), hence this reading of the report.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
abidir=$here/abi
CC=${CC:-cc}

die() { echo "abi-check: $*" >&2; exit 1; }

# Scratch space for this run, removed however the script ends.
work=$(mktemp -d "${TMPDIR:-/tmp}/moecomm-abi.XXXXXX")
trap 'rm -rf "$work"' EXIT

need_tools() {
  if ! command -v abidw >/dev/null || ! command -v abidiff >/dev/null; then
    "$here/ensure-deps.sh" test || die "abigail-tools is missing (see the line above)"
  fi
  command -v abidw >/dev/null && command -v abidiff >/dev/null ||
    die "abidw/abidiff still not found after installing abigail-tools"
}

# abi_version HEADER: "major.minor" from MOECOMM_ABI_MAJOR / MOECOMM_ABI_MINOR.
abi_version() {
  awk '$1 == "#define" && $2 == "MOECOMM_ABI_MAJOR" { M = $3 }
       $1 == "#define" && $2 == "MOECOMM_ABI_MINOR" { m = $3 }
       END { if (M == "" || m == "") exit 1; print M "." m }' "$1" ||
    die "$1 defines no MOECOMM_ABI_MAJOR / MOECOMM_ABI_MINOR"
}

# dump SO HEADERS_DIR OUT
dump() {
  local sections
  # Not "readelf | grep -q": grep -q exits early and pipefail then reports readelf's SIGPIPE.
  sections=$(readelf -S "$1" 2>/dev/null) || die "readelf cannot read $1"
  [[ $sections == *.debug_info* ]] ||
    die "$1 has no debug information (abidw needs DWARF): build it with -g in CFLAGS (the default)"
  abidw --no-corpus-path --no-comp-dir-path --no-show-locs --type-id-style hash \
    --headers-dir "$2" --drop-private-types --out-file "$3" "$1" ||
    die "abidw failed on $1"
}

# probe HEADER OUT.so: the entry point alone, compiled against HEADER (run from the source root
# so that the DWARF holds relative paths only).
probe() {
  local hdr
  hdr=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
  (cd "$root" && $CC -std=c11 -g -O0 -fPIC -fvisibility=hidden -shared \
     -DMC_ABI_HEADER="\"$hdr\"" -o "$2" packaging/abi/probe_v1.c \
     -Wl,--version-script=packaging/moecomm.map -Wl,-soname,libmoecomm.so) ||
    die "cannot compile packaging/abi/probe_v1.c against $1"
}

# policy REPORT: 0 when the leaf report holds only allowed appends; prints what is not allowed.
policy() {
  awk '
    function bad(msg) { print "  not allowed: " msg; nbad++ }
    function counts(line, what,   n, w, i) {
      n = split(line, w, /[ ,()]+/)
      for (i = 2; i <= n; i++)
        if ((w[i] == "Removed" || w[i] == "Changed" || w[i] == "Added") && w[i - 1] + 0 > 0)
          bad(w[i - 1] " " what " " tolower(w[i]) " (" line ")")
    }
    /^Leaf changes summary:/ || /^Changed leaf types summary:/ || /^$/ { next }
    /^Removed\/Changed\/Added functions summary:/ { counts($0, "function(s)"); next }
    /^Removed\/Changed\/Added variables summary:/ { counts($0, "variable(s)"); next }
    /symbols changes summary:/ { counts($0, "ELF symbol(s)"); next }
    /^\047.*\047 changed:$/ { type = $0; sub(/ changed:$/, "", type); old = ""; mode = ""; next }
    type != "" && /^  type size changed from [0-9]+ to [0-9]+ \(in bits\)$/ {
      old = $5 + 0
      if ($7 + 0 < old) bad(type " shrank from " $5 " to " $7 " bits")
      mode = ""; next
    }
    type != "" && /^  type size hasn.t changed$/ { old = "same"; mode = ""; next }
    type != "" && /^  [0-9]+ data member insertions?:$/ { mode = "member"; next }
    type != "" && /^  [0-9]+ enumerator insertions?:$/ { mode = "enumerator"; next }
    type != "" && mode == "member" && /^    \047.*\047, at offset [0-9]+ \(in bits\)$/ {
      off = $0; sub(/^.*, at offset /, "", off); sub(/ .*$/, "", off); off += 0
      member = $0; sub(/^    /, "", member); sub(/, at offset .*$/, "", member)
      if (old == "same" || old == "")
        bad(type ": " member " added at bit " off " but the size did not change (it sits in the " \
            "old tail padding: an old caller sends the same struct_size)")
      else if (off < old)
        bad(type ": " member " added at bit " off ", inside the old " old "-bit layout")
      else appended++
      next
    }
    type != "" && mode == "enumerator" && /^    \047.*\047 value \047-?[0-9]+\047$/ {
      appended++; next
    }
    { bad((type != "" ? type ": " : "") "unexpected change: " $0) }
    END {
      if (nbad > 0) exit 1
      print "  allowed appends: " appended + 0
    }' "$1"
}

# compare OLD.abi NEW(.so|.abi) [HEADERS_DIR]: 0 compatible, 1 not.
compare() {
  local old=$1 new=$2 hdrs=${3:-$root/abi} tmp rc=0 report
  tmp=$(mktemp -d "$work/compare.XXXXXX")
  if [[ $new == *.so ]]; then
    dump "$new" "$hdrs" "$tmp/new.abi"
    new=$tmp/new.abi
  fi
  report=$tmp/report
  abidiff --leaf-changes-only --no-show-locs "$old" "$new" >"$report" 2>&1 || rc=$?
  if [ "$rc" -eq 0 ]; then
    echo "abi-check: PASS $(basename "$old"): no ABI change"
    return 0
  fi
  if (((rc & 3) != 0)); then
    echo "abi-check: FAIL $(basename "$old"): abidiff could not compare (status $rc):"
    sed 's/^/  | /' "$report"
    return 1
  fi
  if (((rc & 8) == 0)) && policy "$report" >"$tmp/verdict"; then
    n=$(sed -n 's/^  allowed appends: //p' "$tmp/verdict")
    echo "abi-check: PASS $(basename "$old"): compatible ($n appended members or enumerators)"
    sed 's/^/  | /' "$report"
    return 0
  fi
  echo "abi-check: FAIL $(basename "$old"): incompatible ABI change (abidiff status $rc)"
  policy "$report" | grep -v '^  allowed appends' || true
  echo "  abidiff report:"
  sed 's/^/  | /' "$report"
  echo "  If this is a new ABI version on purpose: a new major (abi/CHANGELOG.md), then"
  echo "  make abi-baseline."
  return 1
}

cmd=${1:-}
case "$cmd" in
  check)
    [ $# -eq 3 ] || die "usage: $0 check PLUGIN OUTDIR"
    need_tools
    mkdir -p "$3"
    dump "$2" "$root/abi" "$3/libmoecomm.abi"
    shopt -s nullglob
    baselines=("$abidir"/libmoecomm-abi-*.abi)
    [ ${#baselines[@]} -gt 0 ] ||
      die "no baseline packaging/abi/libmoecomm-abi-*.abi (make abi-baseline)"
    cur=$(abi_version "$root/abi/moecomm.h")
    [ -f "$abidir/libmoecomm-abi-$cur.abi" ] ||
      die "abi/moecomm.h is ABI $cur but packaging/abi/libmoecomm-abi-$cur.abi is missing:" \
        "run make abi-baseline"
    fails=0
    # A frozen header must still produce exactly the dump made when it was frozen.
    for hdr in "$root"/abi/moecomm_v*.h; do
      ver=$(abi_version "$hdr")
      ref=$abidir/libmoecomm-abi-$ver.abi
      if [ ! -f "$ref" ]; then
        echo "abi-check: FAIL $(basename "$hdr"): no dump packaging/abi/libmoecomm-abi-$ver.abi" \
          "(abi-check.sh frozen $hdr ...)"
        fails=$((fails + 1))
        continue
      fi
      probe "$hdr" "$3/probe-$ver.so"
      dump "$3/probe-$ver.so" "$(dirname "$hdr")" "$3/frozen-$ver.abi"
      if abidiff --no-show-locs "$ref" "$3/frozen-$ver.abi" >"$3/frozen-$ver.diff" 2>&1; then
        echo "abi-check: PASS $(basename "$hdr"): unchanged since ABI $ver was frozen"
      else
        echo "abi-check: FAIL $(basename "$hdr"): the frozen ABI $ver header changed;" \
          "frozen headers are never edited:"
        sed 's/^/  | /' "$3/frozen-$ver.diff"
        fails=$((fails + 1))
      fi
    done
    for b in "${baselines[@]}"; do
      compare "$b" "$3/libmoecomm.abi" || fails=$((fails + 1))
    done
    [ "$fails" -eq 0 ] || { echo "abi-check: $fails check(s) failed"; exit 1; }
    echo "abi-check: OK"
    ;;
  baseline)
    [ $# -eq 3 ] || die "usage: $0 baseline PLUGIN OUTDIR"
    need_tools
    cur=$(abi_version "$root/abi/moecomm.h")
    mkdir -p "$3"
    dump "$2" "$root/abi" "$abidir/libmoecomm-abi-$cur.abi"
    echo "abi-check: wrote packaging/abi/libmoecomm-abi-$cur.abi from $2 (commit it)"
    ;;
  frozen)
    [ $# -eq 3 ] || die "usage: $0 frozen HEADER OUT.abi"
    need_tools
    probe "$2" "$work/probe.so"
    dump "$work/probe.so" "$(cd "$(dirname "$2")" && pwd)" "$3"
    ;;
  compare)
    [ $# -ge 3 ] && [ $# -le 4 ] || die "usage: $0 compare OLD.abi NEW.so|NEW.abi [HEADERS_DIR]"
    need_tools
    compare "$2" "$3" "${4:-}"
    ;;
  *)
    die "usage: $0 check|baseline|frozen|compare ... (see the head of this file)"
    ;;
esac
