#!/usr/bin/env bash
# pv-boot-image.sh: builds (once per machine) a paravirtual-style Debian image for the test that a
# paravirtual image made hvm boots through its own new boot loader, and prints where it is:
#   ${I2E_PV_BOOT_CACHE:-~/.cache/instance-to-ebs/pv-boot-image}/<hash of this script>/
#     pv.img      bare ext4 filesystem (no partition table, label i2e-pv-root) as a PV image is:
#                 /boot/grub/menu.lst (GRUB legacy, as PV-GRUB reads it) naming the kernel and
#                 initrd with root=/dev/xvda1 console=hvc0, /etc/fstab naming /dev/xvda1 for /,
#                 Debian's cloud kernel (xen-blkfront, nvme, ena as modules; initramfs MODULES=most)
#                 and a unit that prints the marker on the console once multi-user.target is
#                 reached, then powers off. No boot loader of any kind is installed.
#     image.env   pv_image, marker, kernel
# Needs root, debootstrap and e2fsprogs; the Debian archive is I2E_DEBIAN_MIRROR or the one in
# the machine's apt sources. A lock makes concurrent callers share one build.
set -euo pipefail

self=$(readlink -f "${BASH_SOURCE[0]}")
key=$(sha256sum "$self" | cut -c1-16)
cache_root=${I2E_PV_BOOT_CACHE:-${HOME:-/root}/.cache/instance-to-ebs/pv-boot-image}
cache=$cache_root/$key
say() { printf 'pv-boot-image: %s\n' "$*" >&2; }
die() {
  say "error: $*"
  exit 1
}
if [[ -f $cache/image.env ]]; then
  cat "$cache/image.env"
  exit 0
fi
[[ $(id -u) -eq 0 ]] || die "building the image needs root (debootstrap)"
export PATH=$PATH:/usr/sbin:/sbin
for cmd in debootstrap mkfs.ext4 flock; do
  command -v "$cmd" >/dev/null || die "$cmd is not installed (apt-get install -y debootstrap e2fsprogs util-linux)"
done
mkdir -p "$cache_root"
exec 9>"$cache_root/.lock"
flock 9
if [[ -f $cache/image.env ]]; then
  cat "$cache/image.env"
  exit 0
fi

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
trap 'rm -rf "$build"' EXIT
started=$SECONDS
root=$build/root
say "debootstrap bookworm from $mirror (minbase, cloud kernel, systemd): a few minutes, once"
debootstrap --variant=minbase \
  --include=linux-image-cloud-amd64,systemd,systemd-sysv,udev,e2fsprogs,initramfs-tools,zstd \
  bookworm "$root" "$mirror" >"$build/debootstrap.log" 2>&1 ||
  die "debootstrap failed: $(tail -n 5 "$build/debootstrap.log")"
kernel=$(find "$root/boot" -maxdepth 1 -name "vmlinuz-*" -printf "%f\n" | sed "s/^vmlinuz-//" | sort -V | tail -n 1)
[[ -n $kernel && -f $root/boot/initrd.img-$kernel ]] || die "no kernel and initrd in $root/boot"

# Boot fast under software emulation: nothing starts that the test does not need.
for unit in apt-daily.timer apt-daily-upgrade.timer dpkg-db-backup.timer e2scrub_all.timer \
  e2scrub_reap.service fstrim.timer getty@.service serial-getty@.service systemd-firstboot.service; do
  ln -sf /dev/null "$root/etc/systemd/system/$unit"
done
head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$root/etc/machine-id"
echo i2e-pv-boot >"$root/etc/hostname"
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* "$root"/usr/share/doc/* \
  "$root"/usr/share/man/* "$root"/usr/share/locale/*

marker="I2E-PV-TO-HVM-MARKER-$(head -c 8 /dev/urandom | od -An -tx1 | tr -d ' \n')"
cat >"$root/etc/systemd/system/i2e-boot-marker.service" <<EOF
[Unit]
Description=Tell the boot test that multi-user.target was reached
After=multi-user.target

[Service]
Type=oneshot
StandardOutput=journal+console
ExecStart=/bin/echo $marker
ExecStartPost=/bin/systemctl --no-block poweroff

[Install]
WantedBy=multi-user.target
EOF
ln -sf /etc/systemd/system/i2e-boot-marker.service "$root/etc/systemd/system/multi-user.target.wants/"
# The paravirtual layout: the root by the device path PV-GRUB's kernel saw.
printf '/dev/xvda1\t/\text4\tdefaults,errors=remount-ro\t0 1\n' >"$root/etc/fstab"
mkdir -p "$root/boot/grub"
cat >"$root/boot/grub/menu.lst" <<EOF
default 0
timeout 0
hiddenmenu

title Debian bookworm ($kernel)
root (hd0)
kernel /boot/vmlinuz-$kernel root=/dev/xvda1 ro console=hvc0 rootdelay=20 systemd.show_status=1
initrd /boot/initrd.img-$kernel
EOF

truncate -s 1G "$build/pv.img"
mkfs.ext4 -q -L i2e-pv-root -d "$root" "$build/pv.img" || die "mkfs.ext4 -d failed"
mkdir -p "$cache.new"
mv "$build/pv.img" "$cache.new/"
cat >"$cache.new/image.env" <<EOF
pv_image=$cache/pv.img
marker=$marker
kernel=$kernel
build_seconds=$((SECONDS - started))
EOF
rm -rf "$cache"
mv "$cache.new" "$cache"
say "built $cache in $((SECONDS - started)) s"
cat "$cache/image.env"
