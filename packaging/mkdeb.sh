#!/usr/bin/env bash
# mkdeb.sh ROOT DEB PACKAGE VERSION WITH_CUDA NCCL_H MAINTAINER: turns ROOT (a `make install
# DESTDIR=ROOT PREFIX=/usr` tree) into the Debian package DEB with dpkg-deb.  `make deb` runs it.
#
# Depends is computed from what the installed ELF files really link (dpkg-shlibdeps): libc6 from
# its symbols file, and libnccl.so.2 through shlibs.local as libnccl2 (>= the major.minor of the
# nccl.h it was built against), because NCCL often comes from outside dpkg (CUDA_HOME, a wheel).
# The CUDA runtime is linked statically and opens the driver's libcuda.so.1 at run time: that is
# a Recommends (no package name for it is the same everywhere) and a line in the Description.
set -euo pipefail
if [ $# -ne 7 ]; then
  echo "usage: $0 ROOT DEB PACKAGE VERSION WITH_CUDA NCCL_H MAINTAINER" >&2
  exit 2
fi
root=$1 deb=$2 package=$3 version=$4 with_cuda=$5 nccl_h=$6 maintainer=$7
here=$(cd "$(dirname "$0")" && pwd)
arch=$(dpkg --print-architecture)

mapfile -t elves < <(find "$root" -type f \( -name '*.so' -o -path '*/bin/*' \) | sort)
[ ${#elves[@]} -gt 0 ] || { echo "mkdeb: no installed files under $root" >&2; exit 1; }
mkdir -p "$root/DEBIAN"

# dpkg-shlibdeps wants a source tree: a scratch one with only debian/control (and shlibs.local).
work=$(mktemp -d "${TMPDIR:-/tmp}/moecomm-deb.XXXXXX")
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/debian"
printf 'Source: %s\n\nPackage: %s\nArchitecture: %s\n' "$package" "$package" "$arch" \
  >"$work/debian/control"
: >"$work/debian/shlibs.local"
if [ -n "$nccl_h" ] && [ -f "$nccl_h" ]; then
  major=$(awk '$1 == "#define" && $2 == "NCCL_MAJOR" { print $3 }' "$nccl_h")
  minor=$(awk '$1 == "#define" && $2 == "NCCL_MINOR" { print $3 }' "$nccl_h")
  echo "libnccl 2 libnccl2 (>= $major.$minor)" >"$work/debian/shlibs.local"
fi
abs=()
for f in "${elves[@]}"; do abs+=("$(cd "$(dirname "$f")" && pwd)/$(basename "$f")"); done
depends=$(cd "$work" && dpkg-shlibdeps -O "${abs[@]}" 2>"$work/warn" |
          sed -n 's/^shlibs:Depends=//p') || { cat "$work/warn" >&2; exit 1; }
if [ -z "$depends" ]; then
  echo "mkdeb: dpkg-shlibdeps found no dependencies" >&2
  cat "$work/warn" >&2
  exit 1
fi

recommends=""
cuda_note=" .
 Built without CUDA: only the CPU shm backend is in this build."
if [ "$with_cuda" = 1 ]; then
  recommends="Recommends: libcuda1 | cuda-drivers
"
  cuda_note=" .
 The CUDA runtime is linked statically; at run time it opens the NVIDIA
 driver's libcuda.so.1 (Debian: libcuda1; NVIDIA's repositories: cuda-drivers),
 hence a Recommends.  Without a driver the plugin runs its CPU shm backend.
 NCCL is libnccl.so.2 (libnccl2, or pip's nvidia-nccl wheel on the library path)."
fi
size=$(du -sk --exclude=DEBIAN "$root" | cut -f1)

control=$(cat "$here/debian/control.in")
control=${control//@PACKAGE@/$package}
control=${control//@VERSION@/$version}
control=${control//@ARCH@/$arch}
control=${control//@MAINTAINER@/$maintainer}
control=${control//@INSTALLED_SIZE@/$size}
control=${control//@DEPENDS@/$depends}
control=${control//@RECOMMENDS@/$recommends}
control=${control//@CUDA_NOTE@/$cuda_note}
printf '%s\n' "$control" >"$root/DEBIAN/control"

mkdir -p "$(dirname "$deb")"
dpkg-deb --root-owner-group -Zxz --build "$root" "$deb" >/dev/null
echo "moecomm: built $deb (Depends: $depends)"
