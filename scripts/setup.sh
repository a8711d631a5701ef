#!/usr/bin/env bash
# Installs what the tests need on a fresh Debian/Ubuntu machine: the Debian tools the scripts and
# their tests use, the npm packages (including the Node 24 the tests run on), and the cached AWS
# emulator root. Safe to run again: it installs only what is missing.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# command → Debian package
declare -A PACKAGE=(
  [shellcheck]=shellcheck [sfdisk]=fdisk [e2fsck]=e2fsprogs [debugfs]=e2fsprogs
  [losetup]=mount [debootstrap]=debootstrap [openssl]=openssl [curl]=curl [gzip]=gzip
)
missing=()
for cmd in "${!PACKAGE[@]}"; do
  command -v "$cmd" >/dev/null 2>&1 || PATH=$PATH:/usr/sbin:/sbin command -v "$cmd" >/dev/null 2>&1 || missing+=("${PACKAGE[$cmd]}")
done
if ((${#missing[@]} > 0)); then
  mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
  if [[ $(id -u) -ne 0 ]]; then
    echo "setup: missing Debian packages: ${missing[*]}; run as root or: sudo apt-get install -y ${missing[*]}" >&2
    exit 1
  fi
  echo "setup: installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if [[ ! -x node_modules/.bin/jest || package-lock.json -nt node_modules/.package-lock.json ]]; then
  npm ci --no-audit --no-fund
fi

# The emulator root for the end-to-end tests and the demo (cached outside the repository).
bash scripts/emulator.sh install
