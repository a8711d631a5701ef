#!/usr/bin/env bash
# convert-finalize.sh: what convert.sh does to the rebuilt disk once it is on a block device (a
# volume, or a file attached as a loop device), sourced by it, never run: the partition table is
# read again, the root filesystem found and checked (fsck -n), its facts reported and the
# instance-store entries removed from /etc/fstab (tidy-fstab.sh: an ext filesystem unmounted, the
# others and an image made hvm mounted in a private directory), and (hvm) the boot loader installed
# by to-hvm.sh.
#
#   attach_file_target    --finalize on a file (or an hvm result): the file as a loop device
#   finalize_target       all of the above, in order; each step is one function below:
#     find_root             partition table and root partition; results partition_table,
#                           root_partition, root_partition_offset_bytes
#     map_root_partition    root_node: the root partition's device node (or a loop device)
#     check_root_filesystem fsck -n; results filesystem, filesystem_label, filesystem_uuid
#     tidy_root             (tidy-fstab.sh) kernel_version, bootloader_config, bootloader_kernel,
#                           initramfs*, fstab_removed, fstab_backup
#     mount_root            mount_dir: the root filesystem, mounted read-write (not ext, or hvm)
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
  find_disk_root "$target" "$work" # tidy-fstab.sh
  root_size=${root_size:-$image_size}
  [[ -n $root_type ]] || fail "$target has neither a partition table nor a filesystem after writing: the image is not a disk or filesystem image"
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
  # Facts and fstab tidy (tidy-fstab.sh): an ext filesystem unmounted, with debugfs at a time
  # fixed by the image, so that the runner path (which does the same) gives the same bytes; xfs,
  # btrfs and an image made hvm (to-hvm.sh edits it mounted) are mounted.
  if [[ $root_type == ext[234] ]] && ((!to_hvm)); then
    require_cmd debugfs
    tidy_root "$root_node" "$work"
  else
    mount_root
    tidy_root "$mount_dir" "$work"
    if ((to_hvm)); then
      hvm_prepare "$mount_dir" "$(blkid -p -o value -s UUID "$root_node" 2>/dev/null || true)" \
        "$(blkid -p -o value -s LABEL "$root_node" 2>/dev/null || true)" "$root_type" "$(sfdisk --disk-id "$target")"
    fi
    unmount_root
  fi
  ((!to_hvm)) || hvm_install_loader "$target"
  progress "finalized $target"
}
