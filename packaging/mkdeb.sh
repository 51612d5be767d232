#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# mkdeb.sh ROOT OUTDIR BASE VERSION WITH_CUDA NCCL_MIN MAINTAINER: turns ROOT (a `make install
# DESTDIR=ROOT PREFIX=/usr` tree) into two Debian packages in OUTDIR, what dh_strip,
# dh_installdocs, dh_shlibdeps and dh_gencontrol would make of it:
#
#   PACKAGE_VERSION_ARCH.deb         the files, stripped; copyright and changelog.gz in its doc dir
#   PACKAGE-dbgsym_VERSION_ARCH.deb  the debug info, /usr/lib/debug/.build-id/xx/yyyy.debug
#
# PACKAGE is BASE for a CPU-only build and BASE-cuda for one with CUDA kernels (WITH_CUDA=1): two
# flavours of one source that install the same files, so each Conflicts with and Replaces the
# other.  Depends is what the installed ELF files link (dpkg-shlibdeps).  Nothing installed may
# link NCCL or carry a RUNPATH (the plugin opens libnccl.so.2 and libcuda.so.1 at run time): the
# driver is a Recommends and NCCL (>= NCCL_MIN) a Suggests, so the package installs on plain Debian.
set -euo pipefail
if [ $# -ne 7 ]; then
  echo "usage: $0 ROOT OUTDIR BASE VERSION WITH_CUDA NCCL_MIN MAINTAINER" >&2
  exit 2
fi
root=$1 outdir=$2 base=$3 version=$4 with_cuda=$5 nccl_min=$6 maintainer=$7
here=$(cd "$(dirname "$0")" && pwd)
arch=$(dpkg --print-architecture)
package=$base
[ "$with_cuda" = 1 ] && package=$base-cuda
die() {
  echo "mkdeb: $*" >&2
  exit 1
}

# The changelog names this version (a release bumps VERSION and adds an entry), and its date is
# the packages' timestamp, so two builds of one commit give the same files.
changelog=$here/debian/changelog
clversion=$(dpkg-parsechangelog -l "$changelog" -S Version)
[ "$clversion" = "$version" ] || die "the latest entry of $changelog is $clversion but VERSION" \
  "is $version: add an entry for $version"
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(dpkg-parsechangelog -l "$changelog" -S Timestamp)}

work=$(mktemp -d "${TMPDIR:-/tmp}/moecomm-deb.XXXXXX")
trap 'rm -rf "$work"' EXIT
dbg=$work/dbgsym
build_ids=()

is_elf() { [ "$(head -c 4 "$1" | od -An -c | tr -d ' ')" = '177ELF' ]; }

# Refuses what would tie the package to the build machine: a run path that is not relative to
# the file ($ORIGIN), or a link to NCCL.
check_links() {
  local f=$1 dyn path
  dyn=$(readelf -d "$f")
  for path in $(sed -n 's/.*(R[UN]*PATH).*\[\(.*\)\]$/\1/p' <<<"$dyn" | tr ':' ' '); do
    # shellcheck disable=SC2016
    [[ $path == '$ORIGIN'* || $path == '${ORIGIN}'* ]] ||
      die "$f has the run path $path: an installed file must not search a build machine's" \
        "directories"
  done
  if grep -q 'NEEDED.*\[libnccl' <<<"$dyn"; then
    die "$f links libnccl: the package must not depend on NCCL (the plugin opens it at run time)"
  fi
}

# Moves f's debug info to the dbgsym tree under its build id and strips f as dh_strip does.
split_debug() {
  local f=$1 id out
  id=$(readelf -n "$f" | sed -n 's/^ *Build ID: *\([0-9a-f]*\)$/\1/p')
  [ ${#id} -ge 3 ] || die "$f has no build id (link with -Wl,--build-id)"
  out=$dbg/usr/lib/debug/.build-id/${id:0:2}/${id:2}.debug
  mkdir -p "$(dirname "$out")"
  objcopy --only-keep-debug --compress-debug-sections "$f" "$out"
  chmod 0644 "$out"
  if [[ $f == *.so ]]; then
    strip --remove-section=.comment --remove-section=.note --strip-unneeded "$f"
  else
    strip --remove-section=.comment --remove-section=.note "$f"
  fi
  objcopy --add-gnu-debuglink="$out" "$f"
  build_ids+=("$id")
}

elves=()
while IFS= read -r f; do
  is_elf "$f" && elves+=("$(cd "$(dirname "$f")" && pwd)/$(basename "$f")")
done < <(find "$root" -type f | sort)
[ ${#elves[@]} -gt 0 ] || die "no installed ELF files under $root"
for f in "${elves[@]}"; do
  check_links "$f"
  split_debug "$f"
done

# Documentation as Debian wants it: copyright, changelog.gz, manual pages gzipped.
doc=$root/usr/share/doc/$package
install -d "$doc"
install -m 0644 "$here/debian/copyright" "$doc/copyright"
gzip -9n <"$changelog" >"$doc/changelog.gz"
find "$root/usr/share/man" -type f ! -name '*.gz' -exec gzip -9n {} + 2>/dev/null || true
find "$root" -type d -exec chmod 0755 {} +
chmod -R go-w "$root"

# dpkg-shlibdeps wants a source tree: a scratch one with only debian/control.
mkdir -p "$work/src/debian"
printf 'Source: %s\n\nPackage: %s\nArchitecture: %s\n' "$base" "$package" "$arch" \
  >"$work/src/debian/control"
depends=$(cd "$work/src" && dpkg-shlibdeps -O "${elves[@]}" 2>"$work/warn" |
          sed -n 's/^shlibs:Depends=//p') || { cat "$work/warn" >&2; exit 1; }
[ -n "$depends" ] || { cat "$work/warn" >&2; die "dpkg-shlibdeps found no dependencies"; }

# The two flavours replace each other; the CUDA one also stands in for the plain name.
if [ "$with_cuda" = 1 ]; then
  relations="Recommends: libcuda1 | cuda-drivers
Suggests: libnccl2 (>= $nccl_min)
Conflicts: $base
Replaces: $base
Provides: $base (= $version)
" flavour="CUDA build" note=$here/debian/flavour-cuda.txt
else
  relations="Conflicts: $base-cuda
Replaces: $base-cuda
" flavour="CPU-only build" note=$here/debian/flavour-cpu.txt
fi
[ "$with_cuda" != 1 ] || [ -n "$nccl_min" ] || die "a CUDA build needs NCCL_MIN"
source=""
[ "$package" = moecomm ] || source="Source: moecomm
"

# fill TEMPLATE KEY=VALUE...: the template with each @KEY@ replaced.
fill() {
  local text kv
  text=$(cat "$1")
  shift
  for kv in "$@"; do text=${text//@${kv%%=*}@/${kv#*=}}; done
  printf '%s\n' "$text"
}
size_of() { du -sk --exclude=DEBIAN "$1" | cut -f1; }

mkdir -p "$root/DEBIAN" "$dbg/DEBIAN" "$dbg/usr/share/doc" "$outdir"
fill "$here/debian/control.in" PACKAGE="$package" SOURCE="$source" VERSION="$version" \
  ARCH="$arch" MAINTAINER="$maintainer" INSTALLED_SIZE="$(size_of "$root")" \
  DEPENDS="$depends" RELATIONS="$relations" FLAVOUR="$flavour" FLAVOUR_NOTE="$(cat "$note")" \
  >"$root/DEBIAN/control"
# The dbgsym package's doc dir is a link to the package's, which it depends on exactly.
ln -sfn "$package" "$dbg/usr/share/doc/$package-dbgsym"
find "$dbg" -type d -exec chmod 0755 {} +
fill "$here/debian/dbgsym-control.in" PACKAGE="$package" VERSION="$version" ARCH="$arch" \
  MAINTAINER="$maintainer" INSTALLED_SIZE="$(size_of "$dbg")" BUILD_IDS="${build_ids[*]}" \
  >"$dbg/DEBIAN/control"

# DEBIAN/md5sums, as dh_md5sums writes it (debsums and dpkg --verify read it).
md5sums() { (cd "$1" && find . -type f ! -path './DEBIAN/*' -printf '%P\0' | sort -z |
             xargs -0r md5sum >DEBIAN/md5sums); }
md5sums "$root"
md5sums "$dbg"

deb=$outdir/${package}_${version}_$arch.deb
dbgdeb=$outdir/${package}-dbgsym_${version}_$arch.deb
dpkg-deb --root-owner-group -Zxz --build "$root" "$deb" >/dev/null
dpkg-deb --root-owner-group -Zxz --build "$dbg" "$dbgdeb" >/dev/null
echo "moecomm: built $deb (Depends: $depends)"
echo "moecomm: built $dbgdeb"
