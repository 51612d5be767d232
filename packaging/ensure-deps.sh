#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# ensure-deps.sh PROFILE...: makes sure the Debian packages a make target needs are installed.
# As root it installs what is missing; otherwise it stops and prints the exact apt-get line.
# Profile python also makes the venv MOECOMM_PYVENV with the Python suite's pip packages (below).
set -eu
declare -A want=(
  [build]="gcc make libc6-dev"
  [test]="libffi-dev abigail-tools pkgconf clang-format"
  [bench-cpu]="openmpi-bin libopenmpi-dev"
  [deb]="dpkg-dev binutils"
  [python]="python3 python3-venv"
)
# A package also counts as present when what it provides is there (images that are not Debian's,
# or toolchains installed outside dpkg); MOECOMM_SKIP_DEPS=1 skips the check altogether.
declare -A provides=(
  [gcc]="command -v gcc" [make]="command -v make" [libc6-dev]="test -e /usr/include/stdio.h"
  [python3]="command -v python3" [python3-venv]="python3 -c 'import venv, ensurepip'"
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
# The pip step of profile python: a project-local venv, installed the same way (root) or named.
python_venv() {
  local venv=${MOECOMM_PYVENV:?MOECOMM_PYVENV names the venv to make} pkgs
  pkgs="numpy>=1.24,<3 pytest>=7,<10 ml_dtypes>=0.3,<1"
  "$venv/bin/python" -c 'import numpy, pytest, ml_dtypes' >/dev/null 2>&1 && return 0
  if [ "$(id -u)" -ne 0 ]; then
    echo "moecomm: the Python suite needs a venv with numpy, pytest and ml_dtypes. Run:" >&2
    echo "  python3 -m venv $venv && $venv/bin/pip install '${pkgs// /' '}'" >&2
    return 1
  fi
  echo "moecomm: making $venv (pip install ${pkgs})" >&2
  # shellcheck disable=SC2086
  if python3 -m venv "$venv" && "$venv/bin/pip" install -q --disable-pip-version-check $pkgs \
       >"$venv.log" 2>&1; then
    return 0
  fi
  echo "moecomm: pip install into $venv failed (no package index or network?); see $venv.log" >&2
  return 1
}
[ ${#missing[@]} -eq 0 ] && { [[ " $* " != *" python "* ]] || python_venv; exit; }
line="apt-get install -y --no-install-recommends ${missing[*]}"
if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
  # make -j runs several profiles at once (deps, deps-test, deps-python): one apt at a time, and
  # apt waits for dpkg's lock rather than failing when something else holds it.
  lockdir=/run/lock
  [ -d "$lockdir" ] && [ -w "$lockdir" ] || lockdir=/tmp
  exec 9>"$lockdir/moecomm-ensure-deps.lock"
  flock 9
  echo "moecomm: installing ${missing[*]} ($line)" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt=(apt-get -o DPkg::Lock::Timeout=300)
  if "${apt[@]}" install -y --no-install-recommends "${missing[@]}" >/dev/null 2>&1 ||
     { "${apt[@]}" update >/dev/null 2>&1 &&
       "${apt[@]}" install -y --no-install-recommends "${missing[@]}" >/dev/null 2>&1; }; then
    [[ " $* " != *" python "* ]] || python_venv
    exit
  fi
  echo "moecomm: installing ${missing[*]} failed (no package index or network?). Run:" >&2
  echo "  apt-get update && $line" >&2
  exit 1
fi
echo "moecomm: missing Debian packages: ${missing[*]}. Run as root:" >&2
echo "  $line" >&2
exit 1
