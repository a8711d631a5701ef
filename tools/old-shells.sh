#!/usr/bin/env bash
# The old shells of the source instances, for the compatibility tests: bash 4.2 (Ubuntu 12.04) and
# bash 4.3 (Ubuntu 14.04), built from the GNU bash sources CI keeps beside the repository in
# ../shared/compat (bash-4.2.tar.gz, bash-4.3.tar.gz). This is the ONE file of the project that
# reads outside the repository: nothing else, at build, test or run time, may depend on it.
#
#   bash tools/old-shells.sh build [4.2 4.3]   build what is missing (about 40 s each on 2 cores)
#   bash tools/old-shells.sh path VERSION      print the built bash's path; exit 1 and say why when
#                                                there is none (no sources, or not built yet)
#
# The build goes into a cache outside the repository, keyed by the tarball's SHA-256:
#   ${XDG_CACHE_HOME:-~/.cache}/instance-to-ebs/shells/bash-VERSION-SHA256/bash
# so a machine builds each tarball once, and a changed tarball is built again. I2E_COMPAT_DIR
# overrides where the sources are (default: ../shared/compat beside the repository).
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
compat=${I2E_COMPAT_DIR:-$repo/../shared/compat}
cache=${XDG_CACHE_HOME:-$HOME/.cache}/instance-to-ebs/shells
versions=(4.2 4.3)

die() {
  printf 'old-shells: %s\n' "$*" >&2
  exit 1
}

tarball() { printf '%s/bash-%s.tar.gz' "$compat" "$1"; }

# The cache folder for VERSION, from the tarball's checksum (fails when there is no tarball).
target() {
  local file sum
  file=$(tarball "$1")
  [[ -f $file ]] || die "no bash $1 sources: $file does not exist (CI keeps them in ../shared/compat; set I2E_COMPAT_DIR to another folder holding bash-$1.tar.gz)"
  sum=$(sha256sum "$file" | cut -d' ' -f1)
  printf '%s/bash-%s-%s' "$cache" "$1" "$sum"
}

# Checks that a built bash is the version it claims and has the bug the tests exist for.
# shellcheck disable=SC2016 # the single-quoted code is for the built bash to expand
verify() {
  local bash=$1 version=$2 out
  out=$("$bash" -c 'echo "${BASH_VERSINFO[0]}.${BASH_VERSINFO[1]}"') || return 1
  [[ $out == "$version" ]] || { echo "old-shells: $bash says it is bash $out, not $version" >&2; return 1; }
  # Before 4.4, "${a[@]}" of an empty array is an unbound variable under set -u.
  if "$bash" -c 'set -u; a=(); : "${a[@]}"' 2>/dev/null; then
    echo "old-shells: $bash accepts an empty \"\${a[@]}\" under set -u, unlike bash $version" >&2
    return 1
  fi
}

build_one() {
  local version=$1 dir file tmp flags
  dir=$(target "$version")
  file=$(tarball "$version")
  if [[ -x $dir/bash ]] && verify "$dir/bash" "$version"; then
    echo "old-shells: bash $version: $dir/bash (cached)"
    return 0
  fi
  mkdir -p "$cache"
  exec 9>"$cache/.lock-$version"
  flock 9 # another build of the same version (a parallel run) finishes first
  if [[ -x $dir/bash ]] && verify "$dir/bash" "$version"; then
    echo "old-shells: bash $version: $dir/bash (built meanwhile)"
    return 0
  fi
  tmp=$(mktemp -d "$cache/.build-$version.XXXXXX")
  # shellcheck disable=SC2064 # expand now: tmp is local
  trap "rm -rf '$tmp'" EXIT
  echo "old-shells: building bash $version from $file (about 40 s)"
  tar xzf "$file" -C "$tmp"
  local src
  src=$(find "$tmp" -mindepth 1 -maxdepth 1 -type d | head -n 1)
  [[ -n $src && -x $src/configure ]] || die "$file holds no bash source tree with a configure script"
  # Old C meets a modern gcc: implicit declarations and int are errors from gcc 14 on, so they
  # are only warnings here; -std=gnu89 keeps the K&R function definitions of 4.2 compiling.
  flags='-O2 -std=gnu89 -Wno-implicit-function-declaration -Wno-implicit-int -Wno-int-conversion -Wno-incompatible-pointer-types -Wno-return-type'
  (
    cd "$src"
    CFLAGS=$flags ./configure --without-bash-malloc -q >"$tmp/configure.log" 2>&1 ||
      { tail -n 30 "$tmp/configure.log" >&2; exit 1; }
    make -j2 -s >"$tmp/make.log" 2>&1 || { tail -n 30 "$tmp/make.log" >&2; exit 1; }
  ) || die "building bash $version failed (last lines above)"
  verify "$src/bash" "$version" || die "the bash $version just built does not behave like bash $version"
  mkdir -p "$tmp/out"
  cp "$src/bash" "$tmp/out/bash"
  rm -rf "$dir"
  mv "$tmp/out" "$dir"
  rm -rf "$tmp"
  trap - EXIT
  echo "old-shells: bash $version: $dir/bash"
}

case ${1:-} in
build)
  shift
  (($# > 0)) || set -- "${versions[@]}"
  for version in "$@"; do build_one "$version"; done
  ;;
path)
  version=${2:?usage: old-shells.sh path VERSION}
  dir=$(target "$version")
  [[ -x $dir/bash ]] || die "bash $version is not built yet: run bash tools/old-shells.sh build"
  verify "$dir/bash" "$version" || die "$dir/bash is broken: remove $dir and run bash tools/old-shells.sh build"
  printf '%s\n' "$dir/bash"
  ;;
*) die "usage: old-shells.sh build [VERSION...] | path VERSION" ;;
esac
