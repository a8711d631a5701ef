#!/usr/bin/env bash
# boot-images.sh: builds (once per machine) the small bootable Debian images of the boot tests
# and prints where they are. Cached outside the repository, keyed by this script's SHA-256:
#   ${I2E_BOOT_IMAGE_CACHE:-~/.cache/instance-to-ebs/boot-images}/<hash>/
#     hvm.img   MBR disk, one ext4 partition from sector 2048 (label i2e-hvm-root), GRUB 2
#               (i386-pc) in the MBR and the gap after it, console=ttyS0 on the kernel line
#     pv.img    bare ext4 filesystem (label i2e-pv-root, no partition table) with
#               /boot/grub/menu.lst as pv-grub reads it, kernel and initrd in /boot
#     pv-xvda1.img  bare ext4 filesystem (label i2e-pv-root) laid out as a paravirtual image is:
#               menu.lst naming root=/dev/xvda1 console=hvc0, /etc/fstab naming /dev/xvda1 for /,
#               no GRUB 2 modules at all (removed from the shared root), so that only the
#               conversion's boot loader (to-hvm.sh, with the helper's GRUB) can boot it as hvm
#     images.env  what the tests need (paths, labels, kernel, markers)
# hvm.img and pv.img carry an instance-store line in /etc/fstab that blocks the boot when the disk
# is missing ("/dev/xvdb /mnt auto defaults 0 2": no nofail/nobootwait; checked below with
# systemd's own fstab generator). Every image has a unit that prints its marker on the console
# once multi-user.target is reached, then powers the machine off.
#
#   boot-images.sh [--print]   build if needed; print images.env (KEY=VALUE lines)
#   boot-images.sh --key       print the cache key only
# Timings here (2 cores, busy): cold (debootstrap) about 5-6 min, from the kept debootstrap
# result under 1 min, cached: instant.
#
# Needs root (debootstrap, chroot, a loop device for grub-install), debootstrap and e2fsprogs;
# the Debian archive comes from I2E_DEBIAN_MIRROR or the machine's apt sources. A run holds a
# lock, so concurrent callers wait for one build and share it.
set -euo pipefail

self=$(readlink -f "${BASH_SOURCE[0]}")
key=$(sha256sum "$self" | cut -c1-16)
if [[ ${1-} == --key ]]; then
  echo "$key"
  exit 0
fi
cache_root=${I2E_BOOT_IMAGE_CACHE:-${HOME:-/root}/.cache/instance-to-ebs/boot-images}
cache=$cache_root/$key
suite=${I2E_DEBIAN_SUITE:-bookworm}
image_mib=1024
marker_prefix=I2E-BOOT-MARKER

say() { printf 'boot-images: %s\n' "$*" >&2; }
die() {
  say "error: $*"
  exit 1
}

if [[ -f $cache/images.env ]]; then
  cat "$cache/images.env"
  exit 0
fi

[[ $(id -u) -eq 0 ]] || die "building the boot images needs root (debootstrap, chroot, loop devices)"
export PATH=$PATH:/usr/sbin:/sbin
for cmd in debootstrap mkfs.ext4 sfdisk losetup chroot mount flock; do
  command -v "$cmd" >/dev/null || die "$cmd is not installed (apt-get install -y debootstrap e2fsprogs fdisk mount util-linux)"
done

mkdir -p "$cache_root"
exec 9>"$cache_root/.lock"
flock 9
if [[ -f $cache/images.env ]]; then # built by another caller while we waited
  cat "$cache/images.env"
  exit 0
fi

# The Debian archive this machine already uses (deb822 .sources or one-line .list files).
mirror=${I2E_DEBIAN_MIRROR:-}
if [[ -z $mirror ]]; then
  mirror=$(
    {
      awk '$1 == "deb" { for (i = 2; i <= NF; i++) if ($i ~ /^https?:/) { print $i; break } }' \
        /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null || true
      awk '/^URIs:/ { for (i = 2; i <= NF; i++) print $i }' /etc/apt/sources.list.d/*.sources 2>/dev/null || true
    } | grep -E '/debian/?$' | head -n 1
  )
fi
mirror=${mirror:-http://deb.debian.org/debian}

build=$(mktemp -d "$cache_root/.build.XXXXXX")
loop='' made_node='' mounted=()
cleanup() {
  local rc=$? m
  set +e
  for ((m = ${#mounted[@]} - 1; m >= 0; m--)); do umount "${mounted[m]}" 2>/dev/null || umount -l "${mounted[m]}"; done
  [[ -z $loop ]] || losetup -d "$loop"
  [[ -z $made_node ]] || rm -f "$made_node"
  rm -rf "$build"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 143' TERM
trap 'exit 130' INT

started=$SECONDS
root=$build/root
# The debootstrap result is kept too (base-<hash of its parameters>/), so that changing the rest
# of this script does not download and install the packages again.
packages=linux-image-cloud-amd64,systemd,systemd-sysv,udev,e2fsprogs,initramfs-tools,zstd,grub-pc-bin,grub2-common
base=$cache_root/base-$(printf '%s\n' "$suite" "$packages" minbase | sha256sum | cut -c1-16)
if [[ ! -f $base/.complete ]]; then
  rm -rf "$base"
  say "debootstrap $suite from $mirror into $base (minbase + cloud kernel + systemd)"
  # Bounded: a stalled mirror must not hold CI (about 4-5 min on a busy 2-core machine).
  timeout "${I2E_DEBOOTSTRAP_SECONDS:-1200}" debootstrap --variant=minbase --include="$packages" \
    "$suite" "$base" "$mirror" >"$build/debootstrap.log" 2>&1 ||
    die "debootstrap failed or took longer than ${I2E_DEBOOTSTRAP_SECONDS:-1200} s: $(tail -n 5 "$build/debootstrap.log")"
  rm -rf "$base"/var/cache/apt/archives/*.deb "$base"/var/lib/apt/lists/*
  touch "$base/.complete"
  say "debootstrap done in $((SECONDS - started)) s"
fi
cp -a "$base" "$root"
rm -f "$root/.complete"

kernel=$(find "$root/boot" -maxdepth 1 -name 'vmlinuz-*' -printf '%f\n' | sed 's/^vmlinuz-//' | sort -V | tail -n 1)
[[ -n $kernel && -f $root/boot/initrd.img-$kernel ]] || die "no kernel and initrd in $root/boot"

# Boot fast under software emulation: nothing starts that the test does not need.
for unit in apt-daily.timer apt-daily-upgrade.timer dpkg-db-backup.timer e2scrub_all.timer \
  e2scrub_reap.service fstrim.timer getty@.service serial-getty@.service systemd-firstboot.service; do
  ln -sf /dev/null "$root/etc/systemd/system/$unit"
done
# A missing device fails after 15 s instead of 90 s: the boot still stops on it, only sooner.
mkdir -p "$root/etc/systemd/system.conf.d"
printf '[Manager]\nDefaultDeviceTimeoutSec=15s\n' >"$root/etc/systemd/system.conf.d/i2e-boot-test.conf"
head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$root/etc/machine-id"
echo i2e-boot-test >"$root/etc/hostname"
rm -rf "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/locale/*

# image_tree KIND MARKER FSTAB: a copy of the root for one image, with its fstab and marker unit.
image_tree() {
  local tree=$build/$1
  cp -a "$root" "$tree"
  printf '%s\n' "$3" >"$tree/etc/fstab"
  cat >"$tree/etc/systemd/system/i2e-boot-marker.service" <<EOF
[Unit]
Description=Tell the boot test that multi-user.target was reached
After=multi-user.target

[Service]
Type=oneshot
StandardOutput=journal+console
ExecStart=/bin/echo $2
ExecStartPost=/bin/systemctl --no-block poweroff

[Install]
WantedBy=multi-user.target
EOF
  ln -sf /etc/systemd/system/i2e-boot-marker.service "$tree/etc/systemd/system/multi-user.target.wants/i2e-boot-marker.service"
}

# blocks_on_instance_store KIND: the instance-store line must really block the boot: systemd's
# generator makes the mount a hard requirement of local-fs.target (with nofail it would only be
# wanted).
blocks_on_instance_store() {
  local gen=$build/gen-$1
  mkdir -p "$gen"
  SYSTEMD_FSTAB=$build/$1/etc/fstab SYSTEMD_PROC_CMDLINE='' \
    "${I2E_FSTAB_GENERATOR:-/lib/systemd/system-generators/systemd-fstab-generator}" "$gen" "$gen" "$gen" ||
    die "systemd-fstab-generator failed on the $1 image's fstab"
  [[ -e $gen/local-fs.target.requires/mnt.mount ]] ||
    die "the $1 image's /dev/xvdb line would not block the boot (no local-fs.target.requires/mnt.mount)"
}

# menu_lst KIND ARGS: /boot/grub/menu.lst in GRUB legacy syntax, as pv-grub reads it.
menu_lst() {
  mkdir -p "$build/$1/boot/grub"
  cat >"$build/$1/boot/grub/menu.lst" <<EOF
default 0
timeout 0
hiddenmenu

title Debian $suite ($kernel)
root (hd0)
kernel /boot/vmlinuz-$kernel $2
initrd /boot/initrd.img-$kernel
EOF
}

token=$(head -c 8 /dev/urandom | od -An -tx1 | tr -d ' \n')
hvm_marker="$marker_prefix-hvm-$token" pv_marker="$marker_prefix-pv-$token"
pv_xvda1_marker="$marker_prefix-pv-xvda1-$token"
instance_store='/dev/xvdb /mnt auto defaults 0 2'
image_tree hvm "$hvm_marker" "LABEL=i2e-hvm-root / ext4 defaults,errors=remount-ro 0 1
$instance_store"
image_tree pv "$pv_marker" "LABEL=i2e-pv-root / ext4 defaults,errors=remount-ro 0 1
$instance_store"
blocks_on_instance_store hvm
blocks_on_instance_store pv
# The paravirtual layout: the root by the device path PV-GRUB's kernel saw, no boot loader at all.
image_tree pv-xvda1 "$pv_xvda1_marker" "$(printf '/dev/xvda1\t/\text4\tdefaults,errors=remount-ro\t0 1')"
rm -rf "$build/pv-xvda1/usr/lib/grub"
args='ro console=ttyS0 systemd.show_status=1'

# ---- pv and pv-xvda1: bare filesystems with menu.lst
menu_lst pv "root=LABEL=i2e-pv-root $args"
menu_lst pv-xvda1 'root=/dev/xvda1 ro console=hvc0 rootdelay=20 systemd.show_status=1'
for kind in pv pv-xvda1; do
  truncate -s "${image_mib}M" "$build/$kind.img"
  mkfs.ext4 -q -L i2e-pv-root -d "$build/$kind" "$build/$kind.img" || die "mkfs.ext4 -d failed for $kind.img"
done

# ---- hvm: MBR, one partition from sector 2048, GRUB 2 installed from the image's own grub-pc-bin
mkdir -p "$build/hvm/boot/grub"
cat >"$build/hvm/boot/grub/grub.cfg" <<EOF
serial --unit=0 --speed=115200
terminal_input serial console
terminal_output serial console
set timeout=0
set default=0
insmod part_msdos
insmod ext2
search --no-floppy --label --set=root i2e-hvm-root
menuentry 'Debian $suite ($kernel)' {
  linux /boot/vmlinuz-$kernel root=LABEL=i2e-hvm-root $args
  initrd /boot/initrd.img-$kernel
}
EOF
disk=$build/hvm.img
truncate -s "${image_mib}M" "$disk"
echo 'start=2048, type=83, bootable' | sfdisk -q "$disk" >/dev/null
mkfs.ext4 -q -L i2e-hvm-root -E offset=$((2048 * 512)) -d "$build/hvm" "$disk" $(((image_mib - 1) * 1024)) ||
  die "mkfs.ext4 -d failed for the partition of hvm.img"
loop=$(losetup -f --show -P "$disk")
part=${loop}p1
for _ in $(seq 50); do
  [[ -b $part ]] && break
  # The scan at attach time does not always happen here: ask for it again.
  partx -a "$loop" >/dev/null 2>&1 || blockdev --rereadpt "$loop" >/dev/null 2>&1 || true
  # Without udev (containers) the kernel may have the partition with nobody to make its node.
  if [[ ! -e $part && -r /sys/class/block/${part##*/}/dev ]]; then
    IFS=: read -r major minor <"/sys/class/block/${part##*/}/dev"
    mknod "$part" b "$major" "$minor" && made_node=$part
  fi
  sleep 0.2
done
[[ -b $part ]] || die "no partition node $part for $loop"
mount --bind /dev "$root/dev" && mounted+=("$root/dev")
mount -t proc proc "$root/proc" && mounted+=("$root/proc")
mount -t sysfs sys "$root/sys" && mounted+=("$root/sys")
mkdir -p "$root/target"
mount "$part" "$root/target" && mounted+=("$root/target")
chroot "$root" grub-install --target=i386-pc --boot-directory=/target/boot \
  --modules='part_msdos ext2 search_label serial' "$loop" >"$build/grub.log" 2>&1 ||
  die "grub-install failed: $(tail -n 5 "$build/grub.log")"
for ((m = ${#mounted[@]} - 1; m >= 0; m--)); do umount "${mounted[m]}"; done
mounted=()
losetup -d "$loop"
loop=''
[[ -z $made_node ]] || rm -f "$made_node"
made_node=''

mkdir -p "$cache.new"
mv "$build/hvm.img" "$build/pv.img" "$build/pv-xvda1.img" "$cache.new/"
cat >"$cache.new/images.env" <<EOF
key=$key
suite=$suite
kernel=$kernel
hvm_image=$cache/hvm.img
hvm_label=i2e-hvm-root
hvm_marker=$hvm_marker
pv_image=$cache/pv.img
pv_label=i2e-pv-root
pv_marker=$pv_marker
pv_xvda1_image=$cache/pv-xvda1.img
pv_xvda1_marker=$pv_xvda1_marker
build_seconds=$((SECONDS - started))
EOF
rm -rf "$cache"
mv "$cache.new" "$cache"
say "built $cache in $((SECONDS - started)) s"
cat "$cache/images.env"
