#!/usr/bin/env bash
# to-hvm.sh: what convert.sh does when a paravirtual image (a bare filesystem, booted by PV-GRUB
# through its /boot/grub/menu.lst) must come out as an hvm disk. Sourced by convert.sh, never run.
#
#   hvm_require_tools              before anything is written: GRUB 2 for i386-pc is on this machine
#   hvm_partition TARGET BYTES     MBR, one bootable Linux partition from sector 2048; the stream
#                                  then goes into the partition (a loop device at its offset)
#   hvm_check_filesystem TARGET    after the stream: a filesystem GRUB and the helper can read
#   hvm_prepare MOUNT_DIR UUID LABEL FSTYPE DISK_ID
#                                  the mounted root: the kernel and initrd that menu.lst names as
#                                  default, their disk and network drivers (refusing a kernel that
#                                  no hvm family can boot), a GRUB 2 configuration that boots them,
#                                  /etc/fstab's root entry by UUID/LABEL
#   hvm_install_loader TARGET      GRUB 2's boot.img in the MBR, its core.img in the gap before
#                                  the partition; core.img finds the partition by filesystem UUID
#
# Why GRUB 2 built here, and not the image's own boot loader: a paravirtual image has none that
# a BIOS can run (PV-GRUB is the AKI, outside the image; grub-legacy-ec2 only writes menu.lst), and
# syslinux 6.03 cannot read ext4 with the 64bit feature. grub2-mkimage and the i386-pc modules are
# in Amazon Linux 2023 (packages grub2-tools and grub2-pc-modules, e.g. 2.06-61.amzn2023.0.16 in
# ALAS2023-2025-937) and in Debian/Ubuntu (grub-common, grub-pc-bin): the image needs nothing.
#
# Result lines: hvm_kernel, hvm_initrd, hvm_root (the root= argument), hvm_xen_disk_driver,
# hvm_nvme, hvm_ena (each: built-in, initramfs, module or no), hvm_families (xen, nitro),
# hvm_bootloader, hvm_fstab_rewritten.
#
# Over 300 lines because it is the whole of one mode (partition, check, prepare, boot loader), in
# short functions; split, it would only be one more file to ship beside convert.sh.
# shellcheck shell=bash disable=SC2154 # work, first_line: set by convert.sh, which sources this

hvm_partition_start_sector=2048
hvm_partition_offset=$((hvm_partition_start_sector * 512))
hvm_config=/boot/grub/instance-to-ebs.cfg

# The GRUB tools: Debian names them grub-*, Amazon Linux and Fedora grub2-*.
hvm_require_tools() {
  local dir
  hvm_mkimage=''
  for dir in grub2-mkimage grub-mkimage; do
    command -v "$dir" >/dev/null 2>&1 && hvm_mkimage=$dir && break
  done
  hvm_modules=''
  # (I2E_GRUB_MODULES: tests name the only folder to look in)
  for dir in ${I2E_GRUB_MODULES:-/usr/lib/grub/i386-pc /usr/lib/grub2/i386-pc /usr/share/grub2/i386-pc}; do
    [[ -f $dir/boot.img && -f $dir/biosdisk.mod ]] && hvm_modules=$dir && break
  done
  if [[ -z $hvm_mkimage || -z $hvm_modules ]]; then
    fail "an hvm result needs GRUB 2 for BIOS (i386-pc) on $(hostname 2>/dev/null || echo this machine) to install a boot loader: $([[ -z $hvm_mkimage ]] && echo 'no grub2-mkimage or grub-mkimage' || echo 'no i386-pc modules with boot.img'); install it with 'dnf install -y grub2-tools grub2-pc-modules' (Amazon Linux 2023) or 'apt-get install -y grub-pc-bin' (Debian/Ubuntu), or keep the result paravirtual"
  fi
  require_cmd sfdisk losetup
  progress "hvm: boot loader from $hvm_mkimage with the modules in $hvm_modules"
}

# hvm_partition TARGET IMAGE_BYTES: sets hvm_loop, the loop device that is the new partition.
hvm_partition() {
  local target=$1 bytes=$2 total sectors size
  total=$(blockdev --getsize64 "$target" 2>/dev/null || stat -c %s "$target")
  sectors=$((total / 512 - hvm_partition_start_sector))
  ((sectors <= 4294967295 - hvm_partition_start_sector)) || sectors=$((4294967295 - hvm_partition_start_sector)) # MBR: 2 TiB
  ((sectors * 512 >= bytes)) || fail "target $target is too small for the partitioned image: $total bytes, needs $((bytes + hvm_partition_offset))"
  printf 'label: dos\nstart=%d, size=%d, type=83, bootable\n' "$hvm_partition_start_sector" "$sectors" |
    sfdisk --no-reread --no-tell-kernel -q "$target" >"$work/sfdisk.out" 2>&1 ||
    fail "cannot write the partition table on $target: $(first_line "$work/sfdisk.out")"
  size=$((sectors * 512))
  hvm_loop=$(losetup -f --show -o "$hvm_partition_offset" --sizelimit "$size" "$target" 2>"$work/losetup.err") ||
    fail "cannot map the new partition of $target: $(first_line "$work/losetup.err")"
  progress "hvm: partition 1 from sector $hvm_partition_start_sector ($size bytes) on $target, written through $hvm_loop"
}

# hvm_check_filesystem TARGET: the image in the partition must be a filesystem that both the
# helper can mount (to read menu.lst and write the GRUB configuration) and GRUB 2 can read.
hvm_check_filesystem() {
  local type
  type=$(blkid -p -O "$hvm_partition_offset" -o value -s TYPE "$1" 2>/dev/null || true)
  case $type in
  ext2 | ext3 | ext4 | xfs | btrfs) ;;
  '') fail "cannot make this image hvm: it holds no filesystem that blkid recognises (a paravirtual image is one bare filesystem); what would work: keep the result paravirtual, or check that the source AMI is the one you meant" ;;
  *) fail "cannot make this image hvm: its filesystem is $type, and only ext2/3/4, xfs and btrfs can be mounted here and read by GRUB 2; what would work: keep the result paravirtual (output-virtualization-type empty)" ;;
  esac
}

# hvm_where_built KERNEL_VERSION MODULE_NAME: built-in, initramfs, module or no (and 'unknown'
# when neither the kernel's config nor modules.builtin can be read).
hvm_where_built() {
  local name=$2 config=$hvm_root/boot/config-$1 builtin=$hvm_root/lib/modules/$1/modules.builtin
  local symbol=${hvm_symbol[$name]}
  if [[ -f $builtin ]] && grep -qE "(^|/)${name//-/[-_]}\.ko" "$builtin"; then echo built-in && return; fi
  if [[ -f $config ]] && grep -qE "^${symbol}=y" "$config"; then echo built-in && return; fi
  if [[ -s $work/hvm.initramfs ]] && grep -qE "(^|/)${name//-/[-_]}\.ko" "$work/hvm.initramfs"; then echo initramfs && return; fi
  if find "$hvm_root/lib/modules/$1" -name "${name}.ko*" 2>/dev/null | grep -q .; then echo module && return; fi
  if [[ -f $config || -f $builtin ]]; then echo no; else echo unknown; fi
}

declare -A hvm_symbol=(
  [xen-blkfront]=CONFIG_XEN_BLKDEV_FRONTEND [ata_piix]=CONFIG_ATA_PIIX
  [nvme]=CONFIG_BLK_DEV_NVME [ena]=CONFIG_ENA_ETHERNET
)

# hvm_menu_default MENU_LST: sets hvm_title, hvm_kernel_path, hvm_kernel_args, hvm_initrd_path
# from the entry that 'default' names (the first one without it).
hvm_menu_default() {
  local menu=$1 default=0 index=-1 line word rest default_re='^[[:space:]]*default[[:space:]=]+([0-9]+)'
  hvm_title='' hvm_kernel_path='' hvm_kernel_args='' hvm_initrd_path=''
  while IFS= read -r line; do
    [[ $line =~ $default_re ]] && default=$((10#${BASH_REMATCH[1]})) && break
  done <"$menu"
  while IFS= read -r line; do
    line=${line%%#*}
    read -r word rest <<<"$line" || true
    case ${word,,} in
    title) index=$((index + 1)) && ((index == default)) && hvm_title=$rest ;;
    kernel) ((index == default)) && [[ -z $hvm_kernel_path ]] && read -r hvm_kernel_path hvm_kernel_args <<<"$rest" ;;
    initrd) ((index == default)) && [[ -z $hvm_initrd_path ]] && read -r hvm_initrd_path _ <<<"$rest" ;;
    esac
  done <"$menu"
  # GRUB legacy paths may carry the device: (hd0)/boot/vmlinuz, (hd0,0)/boot/...
  hvm_kernel_path=${hvm_kernel_path#\(*\)}
  hvm_initrd_path=${hvm_initrd_path#\(*\)}
  hvm_default_index=$default
  hvm_entries=$((index + 1))
}

# hvm_list_initramfs FILE: its file names, one a line, into $work/hvm.initramfs.
hvm_list_initramfs() {
  : >"$work/hvm.initramfs"
  if command -v lsinitramfs >/dev/null 2>&1 && lsinitramfs "$1" >"$work/hvm.initramfs" 2>/dev/null && [[ -s $work/hvm.initramfs ]]; then
    return 0
  fi
  if command -v lsinitrd >/dev/null 2>&1 && lsinitrd "$1" >"$work/hvm.initramfs" 2>/dev/null && [[ -s $work/hvm.initramfs ]]; then
    return 0
  fi
  if command -v cpio >/dev/null 2>&1; then
    local unpack
    for unpack in 'gzip -dc' 'xz -dc' 'zstd -dc' 'lz4 -dc' cat; do
      # shellcheck disable=SC2086 # the decompressor and its options
      $unpack <"$1" 2>/dev/null | cpio -it --quiet >"$work/hvm.initramfs" 2>/dev/null || true
      [[ -s $work/hvm.initramfs ]] && grep -q '\.ko' "$work/hvm.initramfs" && return 0
    done
  fi
  : >"$work/hvm.initramfs"
  return 1
}

# hvm_menu_kernel ROOT: the kernel and initrd that menu.lst's default entry names, which must
# be in the image; sets hvm_version (the kernel's version). Results hvm_kernel, hvm_initrd.
hvm_menu_kernel() {
  local menu=$1/boot/grub/menu.lst kernels=() f
  [[ -f $menu ]] || menu=$1/boot/grub/grub.conf
  for f in "$1"/boot/vmlinuz-*; do [[ -f $f ]] && kernels+=("${f#"$1"}"); done
  local found="kernels in /boot: ${kernels[*]:-none}"
  [[ -f $menu ]] ||
    fail "cannot make this image hvm: it has no /boot/grub/menu.lst naming the kernel to boot ($found); what would work: a menu.lst whose default entry names the kernel and initrd (as PV-GRUB reads it), or keep the result paravirtual"
  hvm_menu_default "$menu"
  [[ -n $hvm_kernel_path ]] ||
    fail "cannot make this image hvm: ${menu#"$1"} has no kernel line in its default entry (default $hvm_default_index of $hvm_entries entries; $found); what would work: fix the default entry on the source and bundle again, or keep the result paravirtual"
  [[ -f $1$hvm_kernel_path ]] ||
    fail "cannot make this image hvm: ${menu#"$1"} names kernel $hvm_kernel_path as default (entry $hvm_default_index), and the image has no such file ($found); what would work: point the default entry at an installed kernel on the source and bundle again, or keep the result paravirtual"
  if [[ -n $hvm_initrd_path && ! -f $1$hvm_initrd_path ]]; then
    fail "cannot make this image hvm: ${menu#"$1"} names initrd $hvm_initrd_path for $hvm_kernel_path, and the image has no such file; what would work: regenerate it on the source (update-initramfs -c -k VERSION) and bundle again"
  fi
  hvm_version=${hvm_kernel_path##*/vmlinuz-}
  result hvm_kernel "$hvm_kernel_path"
  result hvm_initrd "${hvm_initrd_path:-none}"
  progress "hvm: menu.lst default entry $hvm_default_index ('$hvm_title'): $hvm_kernel_path${hvm_initrd_path:+ with $hvm_initrd_path}"
}

# hvm_drivers ROOT VERSION: the kernel must not be xenlinux and must have a disk driver an hvm
# instance boots from. Results hvm_xen_disk_driver, hvm_nvme, hvm_ena, hvm_families.
hvm_drivers() {
  local version=$2
  # A classic Xen kernel (xenlinux: Ubuntu 10.04's -ec2 flavour, old -xen kernels) runs only paravirtualized.
  local config=$1/boot/config-$version
  if [[ -f $config ]] && grep -qE '^CONFIG_X86_(64_)?XEN=y' "$config"; then
    fail "cannot make this image hvm: kernel $version is a classic Xen (xenlinux) kernel that boots only paravirtualized (CONFIG_X86_XEN/CONFIG_X86_64_XEN in ${config#"$1"}); what would work: install a pvops kernel on the source (Ubuntu: linux-image-virtual), make it menu.lst's default and bundle again, or keep the result paravirtual"
  fi

  : >"$work/hvm.initramfs"
  if [[ -n $hvm_initrd_path ]] && ! hvm_list_initramfs "$1$hvm_initrd_path"; then
    progress "hvm: warning: cannot list $hvm_initrd_path (no lsinitramfs, lsinitrd or cpio that reads it): drivers only in it are not seen"
  fi
  local xen ata nvme ena disk
  xen=$(hvm_where_built "$version" xen-blkfront)
  ata=$(hvm_where_built "$version" ata_piix)
  nvme=$(hvm_where_built "$version" nvme)
  ena=$(hvm_where_built "$version" ena)
  # A root disk driver must be there before the root is mounted: built in or in the initramfs.
  at_boot() { [[ $1 == built-in || $1 == initramfs ]]; }
  disk=no
  at_boot "$xen" && disk="xen-blkfront ($xen)"
  [[ $disk == no ]] && at_boot "$ata" && disk="ata_piix ($ata)"
  [[ $disk == no && ($xen == unknown || $ata == unknown) ]] && disk=unknown
  result hvm_xen_disk_driver "$disk"
  result hvm_nvme "$nvme"
  # The network driver is loaded after the root is mounted: a module on the root filesystem does.
  result hvm_ena "$ena"
  local families=()
  [[ $disk != no ]] && families+=(xen)
  at_boot "$nvme" && [[ $ena != no && $ena != unknown ]] && families+=(nitro)
  if ((${#families[@]} == 0)); then
    fail "cannot make this image hvm: kernel $version has no disk driver an hvm instance boots from, built in or in its initramfs (xen-blkfront: $xen, ata_piix: $ata, nvme: $nvme); what would work: a kernel with them (Ubuntu: linux-image-virtual; or add them to /etc/initramfs-tools/modules and run update-initramfs -u) on the source, bundle again, or keep the result paravirtual"
  fi
  [[ $disk == unknown ]] && progress "hvm: warning: cannot tell whether kernel $version has xen-blkfront or ata_piix (no ${config#"$1"}, no modules.builtin): Xen hvm families are assumed"
  result hvm_families "$(
    IFS=,
    printf '%s' "${families[*]}"
  )"
}

# hvm_write_config ROOT UUID LABEL DISK_ID: the GRUB 2 configuration that boots the default
# entry; sets hvm_root_arg (root= as the kernel is given it). Result hvm_root.
hvm_write_config() {
  local uuid=$2 label=$3
  # root= by UUID (unique; the label of a cloud image is shared by every copy of it), or LABEL.
  # The kernel alone understands neither: without an initrd, the partition's PARTUUID.
  local root_arg args=() word
  if [[ -n $hvm_initrd_path && -n $uuid ]]; then
    root_arg=UUID=$uuid
  elif [[ -n $hvm_initrd_path && -n $label ]]; then
    root_arg=LABEL=$label
  else
    root_arg=PARTUUID=${4#0x}-01
  fi
  result hvm_root "$root_arg"
  for word in $hvm_kernel_args; do
    case $word in
    root=* | console=* | xencons=* | earlyprintk=*) ;;
    *) args+=("$word") ;;
    esac
  done
  # console=ttyS0 last: the last console is /dev/console, and the serial port is what EC2's
  # console output shows; tty0 keeps the screenshot console.
  args+=("root=$root_arg" console=tty0 console=ttyS0)
  {
    printf '# Written by instance-to-ebs when this paravirtual image became an hvm disk: GRUB 2 (i386-pc,\n'
    printf '# in the MBR and the gap before the first partition) reads this file and boots the default\n'
    printf '# entry of /boot/grub/menu.lst at that time. A new kernel updates menu.lst, not this file:\n'
    printf '# edit it, or install the distribution'\''s GRUB (e.g. grub-pc) on the instance.\n'
    printf 'set timeout=1\nserial --unit=0 --speed=115200\nterminal_input serial console\nterminal_output serial console\n'
    printf "menuentry '%s' {\n" "${hvm_title//\'/}"
    printf '  linux %s %s\n' "$hvm_kernel_path" "${args[*]}"
    [[ -z $hvm_initrd_path ]] || printf '  initrd %s\n' "$hvm_initrd_path"
    printf '}\n'
  } >"$1$hvm_config"
  progress "hvm: $hvm_config boots $hvm_kernel_path ${args[*]}"
  hvm_root_arg=$root_arg
}

# hvm_prepare MOUNT_DIR UUID LABEL FSTYPE DISK_ID: see the top of this file.
hvm_prepare() {
  hvm_root=$1
  hvm_menu_kernel "$1"
  hvm_drivers "$1" "$hvm_version"
  hvm_write_config "$1" "$2" "$3" "$5"
  hvm_search_uuid=$2
  hvm_fstype=$4
  hvm_fstab "$1" "$hvm_root_arg"
}

# hvm_fstab ROOT ROOT_SPEC: the root entry of /etc/fstab by UUID=/LABEL= instead of a device path
# that the hvm disk does not have (/dev/sda1, /dev/xvde1, ...); the PV layout's other partitions of
# that disk (sda2 instance store, sda3 swap) are gone too. Backup and diff as convert.sh's tidy.
hvm_fstab() {
  local fstab=$1/etc/fstab backup=$1/etc/fstab.instance-to-ebs.bak spec=$2 line fields changed=0 dev_re
  if [[ ! -f $fstab ]]; then
    result hvm_fstab_rewritten 0
    return
  fi
  dev_re='^/dev/(sd|xvd|hd)[a-z]+[0-9]+$'
  : >"$work/fstab.hvm"
  while IFS= read -r line || [[ -n $line ]]; do
    read -ra fields <<<"$line"
    if [[ ${fields[0]-} =~ $dev_re && ${fields[1]-} == / ]]; then
      printf '%s\n' "${line/"${fields[0]}"/$spec}" >>"$work/fstab.hvm"
      changed=$((changed + 1))
    elif [[ ${fields[0]-} =~ $dev_re && ${fields[0]} =~ [a-z][2-9]$ && ${fields[0]} =~ ^/dev/(sd|xvd)a ]]; then
      changed=$((changed + 1)) # /dev/sda2, /dev/sda3: instance store and swap of the PV layout
    else
      printf '%s\n' "$line" >>"$work/fstab.hvm"
    fi
  done <"$fstab"
  if ((changed)); then
    [[ -f $backup ]] || cp -p "$fstab" "$backup"
    cat "$work/fstab.hvm" >"$fstab"
    progress "/etc/fstab: $changed entr$( ((changed == 1)) && echo y || echo ies) of the paravirtual disk layout rewritten for hvm (root as $spec), backup in /etc/fstab.instance-to-ebs.bak:"
    if command -v diff >/dev/null 2>&1; then
      diff -u --label /etc/fstab.instance-to-ebs.bak --label /etc/fstab "$backup" "$fstab" || true
    fi
  else
    progress "/etc/fstab: no root entry by device path"
  fi
  result hvm_fstab_rewritten "$changed"
}

hvm_install_loader() {
  local target=$1 fsmod
  case $hvm_fstype in
  ext2 | ext3 | ext4) fsmod=ext2 ;;
  xfs) fsmod=xfs ;;
  btrfs) fsmod=btrfs ;;
  *) fail "GRUB cannot read a $hvm_fstype root filesystem" ;;
  esac
  {
    printf 'set root=(hd0,msdos1)\n'
    [[ -z $hvm_search_uuid ]] || printf 'search --no-floppy --fs-uuid --set=root %s\n' "$hvm_search_uuid"
    # shellcheck disable=SC2016 # $root is GRUB's variable
    printf 'set prefix=($root)/boot/grub\nconfigfile ($root)%s\n' "$hvm_config"
  } >"$work/early.cfg"
  "$hvm_mkimage" -d "$hvm_modules" -O i386-pc -o "$work/core.img" -c "$work/early.cfg" -p '(hd0,msdos1)/boot/grub' \
    biosdisk part_msdos "$fsmod" search search_fs_uuid configfile normal linux serial terminal echo test \
    >"$work/mkimage.err" 2>&1 || fail "$hvm_mkimage could not build the boot loader: $(first_line "$work/mkimage.err")"
  local core_bytes
  core_bytes=$(stat -c %s "$work/core.img")
  ((core_bytes <= (hvm_partition_start_sector - 1) * 512)) ||
    fail "the boot loader ($core_bytes bytes) does not fit before the partition"
  # boot.img's code only (440 bytes): the disk signature and partition table after it stay. It
  # loads the sector its kernel_sector field names (1, as built) and core.img's first sector
  # lists the rest (from sector 2, as built): core.img belongs at sector 1.
  dd if="$hvm_modules/boot.img" of="$target" bs=440 count=1 conv=notrunc status=none ||
    fail "cannot write the boot code into the MBR of $target"
  dd if="$work/core.img" of="$target" bs=512 seek=1 conv=notrunc status=none ||
    fail "cannot write the boot loader after the MBR of $target"
  sync
  result hvm_bootloader "GRUB 2 i386-pc ($($hvm_mkimage --version 2>/dev/null | awk '{ print $NF }'), $core_bytes bytes)"
  progress "hvm: GRUB 2 installed in the MBR and sectors 1-$((1 + (core_bytes + 511) / 512 - 1)) of $target"
}
