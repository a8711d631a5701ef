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
  [dash]=dash [ruby]=ruby
  [grub-mkimage]=grub-pc-bin [cpio]=cpio [qemu-system-x86_64]=qemu-system-x86 [mkfs.ext4]=e2fsprogs
)
missing=()
for cmd in "${!PACKAGE[@]}"; do
  command -v "$cmd" >/dev/null 2>&1 || PATH=$PATH:/usr/sbin:/sbin command -v "$cmd" >/dev/null 2>&1 || missing+=("${PACKAGE[$cmd]}")
done
# GRUB 2's BIOS modules (what an hvm result of a paravirtual image is booted by) come without a command.
[[ -f /usr/lib/grub/i386-pc/boot.img ]] || missing+=(grub-pc-bin)
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

# bash 4.2 and 4.3, the shells of the oldest source instances, for the old-shell test suites
# (built once per machine into a cache; tools/old-shells.sh is the one file that reads their
# sources, which CI keeps beside the clone). CI requires them; elsewhere those suites say they were skipped.
if [[ ${CI:-} == true ]]; then
  bash tools/old-shells.sh build
elif ! bash tools/old-shells.sh build; then
  echo 'setup: note: no old shells; the bash 4.2/4.3 test suites will be skipped' >&2
fi

# The emulator for the end-to-end tests and the demo. tools/emulator.sh start takes, in order, a
# server named by I2E_MOTO_URL, a working moto_server on PATH, else the cached root: install the
# root (once, into a cache outside the repository; reused afterwards) only when it will be used.
emulator_started=$SECONDS
source=${I2E_MOTO_SOURCE:-auto}
if [[ $source != root && -n ${I2E_MOTO_URL:-} ]] && curl -fsS --max-time 3 -o /dev/null "$I2E_MOTO_URL/moto-api/"; then
  echo "setup: emulator: the moto server at $I2E_MOTO_URL"
elif [[ $source == auto || $source == path ]] && command -v moto_server >/dev/null && moto_server --help >/dev/null 2>&1; then
  echo "setup: emulator: moto_server on PATH ($(command -v moto_server))"
else
  bash tools/emulator.sh install
  echo "setup: emulator: the cached moto root, ready in $((SECONDS - emulator_started)) s"
fi
# The end-to-end tests and the demo give the convert script loop devices: that needs root.
if [[ $(id -u) -ne 0 ]]; then
  echo 'setup: note: not root; the end-to-end tests need root for loop devices (sudo npm test); CI fails without it' >&2
fi
