#!/usr/bin/env bash
# ensure-deps.sh PROFILE...: makes sure the Debian packages a make target needs are installed.
# As root it installs what is missing; otherwise it stops and prints the exact apt-get line.
set -eu
declare -A want=(
  [build]="gcc make libc6-dev"
  [test]="libffi-dev abigail-tools pkgconf"
  [bench-cpu]="openmpi-bin libopenmpi-dev"
  [deb]="dpkg-dev fakeroot"
)
# A package also counts as present when what it provides is there (images that are not Debian's,
# or toolchains installed outside dpkg); MOECOMM_SKIP_DEPS=1 skips the check altogether.
declare -A provides=(
  [gcc]="command -v gcc" [make]="command -v make" [libc6-dev]="test -e /usr/include/stdio.h"
)
[ "${MOECOMM_SKIP_DEPS:-0}" = 1 ] && exit 0
missing=()
for profile in "$@"; do
  for pkg in ${want[$profile]:?unknown profile $profile}; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" && continue
    [ -n "${provides[$pkg]:-}" ] && eval "${provides[$pkg]}" >/dev/null 2>&1 && continue
    missing+=("$pkg")
  done
done
[ ${#missing[@]} -eq 0 ] && exit 0
line="apt-get install -y --no-install-recommends ${missing[*]}"
if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
  echo "moecomm: installing ${missing[*]} ($line)" >&2
  export DEBIAN_FRONTEND=noninteractive
  if apt-get install -y --no-install-recommends "${missing[@]}" >/dev/null 2>&1 ||
     { apt-get update >/dev/null 2>&1 &&
       apt-get install -y --no-install-recommends "${missing[@]}" >/dev/null 2>&1; }; then
    exit 0
  fi
  echo "moecomm: installing ${missing[*]} failed (no package index or network?). Run:" >&2
  echo "  apt-get update && $line" >&2
  exit 1
fi
echo "moecomm: missing Debian packages: ${missing[*]}. Run as root:" >&2
echo "  $line" >&2
exit 1
