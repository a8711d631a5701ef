#!/usr/bin/env bash
# convert-finalize.sh: what convert.sh does to the rebuilt disk once it is on a block device (a
# volume, or a file attached as a loop device), sourced by it, never run: the partition table is
# read again, the root filesystem found and checked (fsck -n), mounted in a private directory, its
# facts reported, the instance-store entries removed from /etc/fstab, and (hvm) the boot loader
# installed by to-hvm.sh.
#
#   attach_file_target    --finalize on a file (or an hvm result): the file as a loop device
#   finalize_target       all of the above, in order; each step is one function below:
#     find_root             partition table and root partition; results partition_table,
#                           root_partition, root_partition_offset_bytes
#     map_root_partition    root_node: the root partition's device node (or a loop device)
#     check_root_filesystem fsck -n; results filesystem, filesystem_label, filesystem_uuid
#     mount_root            mount_dir: the root filesystem, mounted read-write
#     finalize_facts        kernel_version, bootloader_config, bootloader_kernel, initramfs*
#     finalize_fstab        fstab_removed, fstab_backup
#     unmount_root
# shellcheck shell=bash disable=SC2154,SC2034 # work, target, image_size, loops, to_hvm...: set by convert.sh; what this file sets, the others read

# attach_file_target: --finalize on a file: finalize it through a loop device (partition nodes
# scanned), as a volume; without --finalize, say that the file is left as bundled.
attach_file_target() {
  if ((finalize && finalize_file && !target_is_device)); then
    # --finalize on a file: finalize it through a loop device (partition nodes scanned), as a volume.
    [[ $(id -u) -eq 0 ]] || fail "--finalize on the file $target needs root (it is attached as a loop device); the image was written but not finalized"
    require_cmd losetup
    file_target=$target
    target=$(losetup -f --show -P "$file_target" 2>"$work/losetup.err") ||
      fail "cannot attach $file_target as a loop device to finalize it: $(first_line "$work/losetup.err")"
    loops+=("$target")
    target_is_device=1
    progress "finalizing the file $file_target through $target"
  elif ((finalize && !target_is_device)); then
    progress "note: the file $target is not finalized (no fstab tidy, fsck or facts; it may not boot as is): add --finalize (as root) to finalize it"
  fi
}

# reread_partitions: the kernel, udev and we see the partition table just written.
reread_partitions() {
  require_cmd sfdisk blkid losetup mount umount mountpoint
  blockdev --rereadpt "$target" >/dev/null 2>&1 || true
  command -v partprobe >/dev/null 2>&1 && { partprobe "$target" >/dev/null 2>&1 || true; }
  command -v partx >/dev/null 2>&1 && { partx -u "$target" >/dev/null 2>&1 || true; }
  command -v udevadm >/dev/null 2>&1 && { udevadm settle --timeout=10 >/dev/null 2>&1 || true; }
  return 0 # (any of these tools may be missing: then the table is read as it is)
}

# find_root: sets partition_table, root_number, root_offset, root_size, root_type. The root is
# the largest partition holding a Linux root filesystem (bootable wins a tie), or the whole
# target when it holds a bare filesystem.
find_root() {
  local label sector best_size line number start size type bytes
  partition_table=none root_number='' root_offset=0 root_size=$image_size root_type=''
  if sfdisk -d "$target" >"$work/table" 2>/dev/null && grep -q '^label:' "$work/table"; then
    label=$(sed -n 's/^label: *//p' "$work/table")
    case $label in
    dos) partition_table=mbr ;;
    gpt) partition_table=gpt ;;
    *) fail "unsupported partition table '$label' on $target" ;;
    esac
    sector=$(sed -n 's/^sector-size: *//p' "$work/table")
    sector=${sector:-512}
    best_size=0
    while IFS= read -r line; do
      [[ $line =~ ^([^[:space:]]*[^0-9])([0-9]+)[[:space:]]*:.*start=[[:space:]]*([0-9]+),[[:space:]]*size=[[:space:]]*([0-9]+) ]] || continue
      number=${BASH_REMATCH[2]} start=${BASH_REMATCH[3]} size=${BASH_REMATCH[4]}
      type=$(blkid -p -O $((start * sector)) -S $((size * sector)) -o value -s TYPE "$target" 2>/dev/null || true)
      [[ $type =~ ^(ext2|ext3|ext4|xfs|btrfs)$ ]] || continue
      bytes=$((size * sector))
      [[ $line == *bootable* ]] && bytes=$((bytes + 1))
      if ((bytes > best_size)); then
        best_size=$bytes root_number=$number root_offset=$((start * sector)) root_size=$((size * sector)) root_type=$type
      fi
    done <"$work/table"
    [[ -n $root_number ]] || fail "no partition on $target holds a Linux filesystem (ext2/3/4, xfs, btrfs): the image is not a Linux root disk"
  else
    root_type=$(blkid -p -o value -s TYPE "$target" 2>/dev/null || true)
    [[ -n $root_type ]] || fail "$target has neither a partition table nor a filesystem after writing: the image is not a disk or filesystem image"
  fi
  result partition_table "$partition_table"
  result root_partition "${root_number:-none}"
  result root_partition_offset_bytes "$root_offset"
}

# map_root_partition: sets root_node, the device node of the root partition: the kernel's
# partition node, or a loop device mapped over the partition when there is none.
map_root_partition() {
  local i p
  root_node=$target
  if [[ -n $root_number ]]; then
    root_node=''
    for ((i = 0; i < 10 && ${I2E_PARTITION_NODES:-1}; i++)); do
      for p in "/sys/class/block/${target##*/}"/*/partition; do
        [[ -r $p && $(<"$p") == "$root_number" ]] || continue
        p=${p%/partition}
        root_node=/dev/${p##*/}
      done
      [[ -z $root_node || ! -b $root_node ]] || break
      root_node=''
      sleep 0.5
    done
    if [[ -z $root_node ]]; then
      # No partition node (e.g. a loop device without partition scanning): map the partition.
      root_node=$(losetup -f --show -o "$root_offset" --sizelimit "$root_size" "$target" 2>"$work/losetup.err") ||
        fail "cannot map partition $root_number of $target: $(first_line "$work/losetup.err")"
      loops+=("$root_node")
      journal_add "loop $root_node"
    fi
  fi
  progress "root filesystem: $root_type on $root_node (partition ${root_number:-none}, offset $root_offset)"
}

# check_root_filesystem: fsck -n of the root filesystem (read-only: nothing is repaired).
check_root_filesystem() {
  local fsck_cmd fsck_pkg
  case $root_type in
  ext2 | ext3 | ext4) fsck_cmd=(e2fsck -fn) fsck_pkg=e2fsprogs ;;
  xfs) fsck_cmd=(xfs_repair -n) fsck_pkg=xfsprogs ;;
  btrfs) fsck_cmd=(btrfs check --readonly) fsck_pkg=btrfs-progs ;;
  *) fail "root filesystem type '$root_type' is not supported (ext2/3/4, xfs, btrfs)" ;;
  esac
  command -v "${fsck_cmd[0]}" >/dev/null 2>&1 || fail "${fsck_cmd[0]} is not installed: install the package '$fsck_pkg' on the helper"
  if ! "${fsck_cmd[@]}" "$root_node" </dev/null >"$work/fsck.out" 2>&1; then
    fail "${fsck_cmd[*]} found errors in the $root_type filesystem of the image ($(grep -v '^e2fsck\|^Pass\|^$' "$work/fsck.out" | head -1)): repair it on the source and bundle again"
  fi
  progress "${fsck_cmd[*]}: clean ($(tail -n 1 "$work/fsck.out"))"
  result filesystem "$root_type"
  result filesystem_label "$(blkid -p -o value -s LABEL "$root_node" 2>/dev/null || true)"
  result filesystem_uuid "$(blkid -p -o value -s UUID "$root_node" 2>/dev/null || true)"
  if ((to_hvm)) && [[ $partition_table != mbr || $root_number != 1 ]]; then
    fail "the image is not a bare filesystem (partition table $partition_table, root partition ${root_number:-none}): only a paravirtual image can be made hvm"
  fi
}

# mount_root: sets mount_dir, where the root filesystem is mounted read-write.
mount_root() {
  local mount_opts
  mount_dir=$(mktemp -d "${TMPDIR:-/tmp}/i2e-root.XXXXXX")
  journal_add "mount $mount_dir"
  mount_opts=rw
  [[ $root_type != xfs ]] || mount_opts=rw,nouuid # the helper may run from a copy of the same image
  mount -t "$root_type" -o "$mount_opts" "$root_node" "$mount_dir" 2>"$work/mount.err" ||
    fail "cannot mount the root filesystem $root_node: $(first_line "$work/mount.err")"
}

# facts_kernel_and_loader: sets kernel (the newest /boot/vmlinuz-*, or none); results
# kernel_version, bootloader_config, bootloader_kernel.
facts_kernel_and_loader() {
  local kernels=() configs=() f boot_kernel
  kernels=()
  for f in "$mount_dir"/boot/vmlinuz-*; do [[ -f $f ]] && kernels+=("${f##*/vmlinuz-}"); done
  kernel=none
  if ((${#kernels[@]})); then
    kernel=$(printf '%s\n' "${kernels[@]}" | sort -V | tail -n 1)
    ((${#kernels[@]} == 1)) || progress "kernels in /boot: ${kernels[*]}"
  fi
  result kernel_version "$kernel"

  configs=()
  for f in /boot/grub/menu.lst /boot/grub/grub.conf /boot/grub/grub.cfg /boot/grub2/grub.cfg /boot/extlinux/extlinux.conf; do
    [[ -f $mount_dir$f ]] && configs+=("$f")
  done
  for f in "$mount_dir"/boot/efi/EFI/*/grub.cfg; do [[ -f $f ]] && configs+=("${f#"$mount_dir"}"); done
  result bootloader_config "$(
    IFS=,
    printf '%s' "${configs[*]:-none}"
  )"
  boot_kernel=none
  if ((${#configs[@]})); then
    boot_kernel=$(grep -hoE '^[[:space:]]*(kernel|linux|linux16|linuxefi)[[:space:]]+[^[:space:]]*vmlinuz-[^[:space:]]+' \
      "$mount_dir${configs[0]}" 2>/dev/null | head -n 1 | sed 's/.*vmlinuz-//' || true)
    boot_kernel=${boot_kernel:-none}
  fi
  result bootloader_kernel "$boot_kernel"
  if [[ $kernel == none ]]; then
    progress "warning: no /boot/vmlinuz-* in the image${configs[0]:+ (${configs[0]} names kernel $boot_kernel)}"
  fi
}

# facts_initramfs: are the NVMe and ENA drivers available at boot (initramfs, or built into the
# kernel)? Results initramfs, initramfs_nvme, initramfs_ena, initramfs_note.
facts_initramfs() {
  local initramfs initramfs_nvme initramfs_ena initramfs_note f lister builtin_list
  initramfs=none initramfs_nvme=unknown initramfs_ena=unknown initramfs_note=''
  if [[ $kernel != none ]]; then
    for f in "/boot/initrd.img-$kernel" "/boot/initramfs-$kernel.img" "/boot/initrd-$kernel" "/boot/initrd-$kernel.img"; do
      [[ -f $mount_dir$f ]] && initramfs=$f && break
    done
  fi
  if [[ $initramfs == none ]]; then
    for f in "$mount_dir"/boot/initrd.img-* "$mount_dir"/boot/initramfs-*.img; do
      [[ -f $f ]] && initramfs=${f#"$mount_dir"}
    done
  fi
  if [[ $initramfs == none ]]; then
    initramfs_note="no initramfs in /boot (initrd.img-*, initramfs-*.img)"
  else
    lister=''
    if command -v lsinitramfs >/dev/null 2>&1; then
      lister=lsinitramfs
    elif command -v lsinitrd >/dev/null 2>&1; then
      lister=lsinitrd
    fi
    if [[ -z $lister ]]; then
      initramfs_note="cannot list $initramfs: neither lsinitramfs (initramfs-tools) nor lsinitrd (dracut) is installed on the helper"
    elif "$lister" "$mount_dir$initramfs" >"$work/initramfs.list" 2>/dev/null; then
      initramfs_nvme=no initramfs_ena=no
      grep -qE '(^|/)nvme\.ko' "$work/initramfs.list" && initramfs_nvme=yes
      grep -qE '(^|/)ena\.ko' "$work/initramfs.list" && initramfs_ena=yes
    else
      initramfs_note="$lister could not read $initramfs"
    fi
  fi
  builtin_list=$mount_dir/lib/modules/$kernel/modules.builtin
  if [[ $kernel != none && -f $builtin_list ]]; then
    grep -qE '(^|/)nvme\.ko' "$builtin_list" && initramfs_nvme=yes && initramfs_note+="${initramfs_note:+; }nvme is built into the kernel"
    grep -qE '(^|/)ena\.ko' "$builtin_list" && initramfs_ena=yes && initramfs_note+="${initramfs_note:+; }ena is built into the kernel"
  fi
  result initramfs "$initramfs"
  result initramfs_nvme "$initramfs_nvme"
  result initramfs_ena "$initramfs_ena"
  [[ -z $initramfs_note ]] || result initramfs_note "$initramfs_note"
}

# finalize_facts: what the image will boot, for the report.
finalize_facts() {
  facts_kernel_and_loader
  facts_initramfs
}

# is_instance_store FSTAB_LINE: true for mounts of instance-store (ephemeral) disks, which an
# EBS-backed instance does not have: sdb..sde / xvdb..xvde, anything named ephemeral, and
# cloud-init's comment=cloudconfig mounts on /mnt.
is_instance_store() {
  local fields
  read -ra fields <<<"$1"
  ((${#fields[@]} >= 2)) || return 1
  local dev=${fields[0]} dir=${fields[1]} opts=${fields[3]-}
  [[ $dev =~ ^/dev/(sd|xvd)[b-e][0-9]*$ ]] && return 0
  [[ ${dev,,} == *ephemeral* || ${dir,,} == *ephemeral* ]] && return 0
  [[ $opts == *comment=cloudconfig* && ($dir == /mnt || $dir == /mnt/*) ]] && return 0
  return 1
}

# finalize_fstab: instance-store entries out of the mounted root's /etc/fstab (backup kept, diff
# printed); results fstab_removed, fstab_backup.
finalize_fstab() {
  local fstab backup_name removed fstab_backup line
  fstab=$mount_dir/etc/fstab
  backup_name=/etc/fstab.instance-to-ebs.bak
  removed=0 fstab_backup=none
  if [[ -f $fstab ]]; then
    : >"$work/fstab.new"
    while IFS= read -r line || [[ -n $line ]]; do
      if [[ ! $line =~ ^[[:space:]]*(#|$) ]] && is_instance_store "$line"; then
        removed=$((removed + 1))
      else
        printf '%s\n' "$line" >>"$work/fstab.new"
      fi
    done <"$fstab"
    if ((removed)); then
      cp -p "$fstab" "$mount_dir$backup_name"
      cat "$work/fstab.new" >"$fstab"
      fstab_backup=$backup_name
      progress "/etc/fstab: removed $removed instance-store entr$( ((removed == 1)) && echo y || echo ies), backup in $backup_name:"
      if command -v diff >/dev/null 2>&1; then
        diff -u --label "$backup_name" --label /etc/fstab "$mount_dir$backup_name" "$fstab" || true
      else
        grep -vxFf "$fstab" "$mount_dir$backup_name" | sed 's/^/-/' || true
      fi
    else
      progress "/etc/fstab: no instance-store entries"
    fi
  else
    progress "warning: the image has no /etc/fstab"
  fi
  result fstab_removed "$removed"
  result fstab_backup "$fstab_backup"
}

# unmount_root: everything written reaches the disk; the private mount point goes.
unmount_root() {
  sync
  umount "$mount_dir" 2>"$work/umount.err" || fail "cannot unmount $mount_dir: $(first_line "$work/umount.err")"
  rmdir "$mount_dir"
  mount_dir=''
}

finalize_target() {
  reread_partitions
  find_root
  map_root_partition
  check_root_filesystem
  mount_root
  finalize_facts
  finalize_fstab
  if ((to_hvm)); then
    hvm_prepare "$mount_dir" "$(blkid -p -o value -s UUID "$root_node" 2>/dev/null || true)" \
      "$(blkid -p -o value -s LABEL "$root_node" 2>/dev/null || true)" "$root_type" "$(sfdisk --disk-id "$target")"
  fi
  unmount_root
  ((!to_hvm)) || hvm_install_loader "$target"
  progress "finalized $target"
}
