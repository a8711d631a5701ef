#!/usr/bin/env bash
# tidy-fstab.sh: the root filesystem's facts and fstab tidy, done on the UNMOUNTED ext2/3/4
# filesystem with e2fsprogs' debugfs, so that it needs no mount, no loop device and no root, and so
# that the same image comes out byte for byte wherever it runs (on the helper, through convert.sh,
# and on the runner, for convert-on: runner).
#
#   tidy-fstab.sh --image FILE [--offset BYTES]   (a whole disk image, or a bare filesystem)
#   tidy-fstab.sh --check-tools
#   tidy-fstab.sh --help
#
# Without --offset the root filesystem is found as convert.sh finds it (sfdisk -d and blkid -p
# work on a plain file): the largest partition holding a Linux filesystem, bootable winning a tie.
# The filesystem is then checked read-only (e2fsck -fn), its facts reported and /etc/fstab tidied.
# A root filesystem that is not ext2/3/4 is refused (exit 3): debugfs cannot change it.
#
# Why debugfs and not a read-write mount: a mount writes mount times, a mount count and journal
# blocks, so two conversions of one bundle would never give the same bytes. debugfs writes only
# what it is told, and every time stamp it sets (the new fstab's, the directory's, the superblock's
# last write time) comes from `set_current_time`, fixed from the input: the later of the original
# fstab's mtime and ctime. Two runs on identical images give identical images.
#
# The tidy: lines for instance-store disks (is_instance_store) leave /etc/fstab. The original
# file (inode, owner, mode, times, extended attributes) is renamed /etc/fstab.instance-to-ebs.bak;
# the new /etc/fstab gets the original's owner, mode and extended attributes (an SELinux label
# among them). Result lines as convert.sh's: kernel_version, bootloader_config, bootloader_kernel,
# initramfs, initramfs_nvme, initramfs_ena, initramfs_note, fstab_removed, fstab_backup (and with
# --image: partition_table, root_partition, root_partition_offset_bytes, filesystem,
# filesystem_label, filesystem_uuid).
#
# Sourced by convert.sh, which calls tidy_root DEVICE WORKDIR for ext filesystems, and
# tidy_root MOUNT_DIR WORKDIR for the others and for images made hvm (which it mounts anyway).
#
# Over 300 lines because it is the whole of one job in two settings (sourced on the helper, run
# alone on the runner), and each file operation exists twice, through debugfs and on a mount;
# tidy_facts is over 60 because the kernel, boot loader and initramfs facts feed one another.
set -euo pipefail

TIDY_BACKUP=/etc/fstab.instance-to-ebs.bak

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

# tidy_fs_run FS OUT REQUEST...: debugfs with each REQUEST as one command (-w when the first is -w);
# its output in OUT. Fails with debugfs's own words on any error (debugfs itself exits 0 then).
tidy_fs_run() {
  local fs=$1 out=$2 write=()
  shift 2
  if [[ $1 == -w ]]; then
    write=(-w)
    shift
  fi
  printf '%s\n' "$@" >"$out.cmds"
  debugfs "${write[@]}" -f "$out.cmds" "$fs" >"$out" 2>"$out.err" </dev/null ||
    fail "debugfs could not open the root filesystem $fs: $(grep -v '^debugfs [0-9]' "$out.err" | head -n 1)"
  # stderr holds the version banner, then one line per failed request.
  if grep -qv '^debugfs [0-9]' "$out.err"; then
    fail "debugfs failed on the root filesystem $fs: $(grep -v '^debugfs [0-9]' "$out.err" | head -n 1)"
  fi
}

# The filesystem FS is either a device or FILE?offset=BYTES read with debugfs, or (convert.sh's
# mount path, for xfs, btrfs and images made hvm) the directory it is mounted on.

# tidy_type FS PATH: regular, directory, symlink, ... of PATH in the filesystem, or nothing.
tidy_type() {
  if [[ -d $1 ]]; then
    local f=$1$2
    if [[ -L $f ]]; then echo symlink; elif [[ -d $f ]]; then echo directory; elif [[ -f $f ]]; then echo regular; elif [[ -e $f ]]; then echo other; fi
    return
  fi
  debugfs -R "stat $2" "$1" 2>/dev/null </dev/null | sed -n '1s/.*Type: \([a-z]*\).*/\1/p'
}

# tidy_dump FS PATH FILE: FILE holds the file PATH of the filesystem (true when it was there).
tidy_dump() {
  rm -f "$3"
  if [[ -d $1 ]]; then
    [[ -f $1$2 ]] && ln -s "$1$2" "$3"
  else
    debugfs -R "dump $2 $3" "$1" >/dev/null 2>&1 </dev/null
  fi
  [[ -f $3 ]]
}

# tidy_list FS DIR: the names in DIR, each with its octal mode's type digits (10 file, 12 link, 4
# directory), "MODE NAME" per line.
tidy_list() {
  if [[ -d $1 ]]; then
    local f
    for f in "$1$2"/*; do
      if [[ -L $f ]]; then echo "120777 ${f##*/}"; elif [[ -d $f ]]; then echo "40755 ${f##*/}"; elif [[ -f $f ]]; then echo "100644 ${f##*/}"; fi
    done
    return
  fi
  debugfs -R "ls -p $2" "$1" 2>/dev/null </dev/null | awk -F/ 'NF >= 7 && $6 != "." && $6 != ".." { print $3, $6 }'
}

# tidy_is_file FS PATH: a regular file (or a link to one, as a mount's -f would say).
tidy_is_file() {
  local t
  t=$(tidy_type "$1" "$2")
  [[ $t == regular || $t == symlink ]]
}

# tidy_facts FS WORK: kernel, boot loader and initramfs drivers, as result lines.
tidy_facts() {
  local fs=$1 work=$2 kernels=() mode name f kernel=none
  while read -r mode name; do
    [[ $name == vmlinuz-* && ($mode == 10* || $mode == 12*) ]] && kernels+=("${name#vmlinuz-}")
  done < <(tidy_list "$fs" /boot)
  if ((${#kernels[@]})); then
    kernel=$(printf '%s\n' "${kernels[@]}" | sort -V | tail -n 1)
    ((${#kernels[@]} == 1)) || progress "kernels in /boot: ${kernels[*]}"
  fi
  result kernel_version "$kernel"

  local configs=()
  for f in /boot/grub/menu.lst /boot/grub/grub.conf /boot/grub/grub.cfg /boot/grub2/grub.cfg /boot/extlinux/extlinux.conf; do
    tidy_is_file "$fs" "$f" && configs+=("$f")
  done
  while read -r mode name; do
    [[ $mode == 4* ]] && tidy_is_file "$fs" "/boot/efi/EFI/$name/grub.cfg" && configs+=("/boot/efi/EFI/$name/grub.cfg")
  done < <(tidy_list "$fs" /boot/efi/EFI)
  result bootloader_config "$(
    IFS=,
    printf '%s' "${configs[*]:-none}"
  )"
  local boot_kernel=none
  if ((${#configs[@]})) && tidy_dump "$fs" "${configs[0]}" "$work/boot.cfg"; then
    boot_kernel=$(grep -hoE '^[[:space:]]*(kernel|linux|linux16|linuxefi)[[:space:]]+[^[:space:]]*vmlinuz-[^[:space:]]+' \
      "$work/boot.cfg" 2>/dev/null | head -n 1 | sed 's/.*vmlinuz-//' || true)
    boot_kernel=${boot_kernel:-none}
  fi
  result bootloader_kernel "$boot_kernel"
  if [[ $kernel == none ]]; then
    progress "warning: no /boot/vmlinuz-* in the image${configs[0]:+ (${configs[0]} names kernel $boot_kernel)}"
  fi

  # Are the NVMe and ENA drivers available at boot (initramfs, or built into the kernel)?
  local initramfs=none nvme=unknown ena=unknown note='' lister=''
  if [[ $kernel != none ]]; then
    for f in "/boot/initrd.img-$kernel" "/boot/initramfs-$kernel.img" "/boot/initrd-$kernel" "/boot/initrd-$kernel.img"; do
      tidy_is_file "$fs" "$f" && initramfs=$f && break
    done
  fi
  if [[ $initramfs == none ]]; then
    while read -r mode name; do
      [[ $name == initrd.img-* || ($name == initramfs-* && $name == *.img) ]] && initramfs=/boot/$name
    done < <(tidy_list "$fs" /boot | LC_ALL=C sort -k2)
  fi
  if [[ $initramfs == none ]]; then
    note="no initramfs in /boot (initrd.img-*, initramfs-*.img)"
  else
    if command -v lsinitramfs >/dev/null 2>&1; then
      lister=lsinitramfs
    elif command -v lsinitrd >/dev/null 2>&1; then
      lister=lsinitrd
    fi
    if [[ -z $lister ]]; then
      note="cannot list $initramfs: neither lsinitramfs (initramfs-tools) nor lsinitrd (dracut) is installed on $(hostname 2>/dev/null || echo this machine)"
    elif tidy_dump "$fs" "$initramfs" "$work/initramfs" && "$lister" "$work/initramfs" >"$work/initramfs.list" 2>/dev/null; then
      nvme=no ena=no
      grep -qE '(^|/)nvme\.ko' "$work/initramfs.list" && nvme=yes
      grep -qE '(^|/)ena\.ko' "$work/initramfs.list" && ena=yes
    else
      note="$lister could not read $initramfs"
    fi
    rm -f "$work/initramfs" "$work/initramfs.list"
  fi
  if [[ $kernel != none ]] && tidy_dump "$fs" "/lib/modules/$kernel/modules.builtin" "$work/modules.builtin"; then
    grep -qE '(^|/)nvme\.ko' "$work/modules.builtin" && nvme=yes && note+="${note:+; }nvme is built into the kernel"
    grep -qE '(^|/)ena\.ko' "$work/modules.builtin" && ena=yes && note+="${note:+; }ena is built into the kernel"
  fi
  result initramfs "$initramfs"
  result initramfs_nvme "$nvme"
  result initramfs_ena "$ena"
  [[ -z $note ]] || result initramfs_note "$note"
}

# tidy_fstab FS WORK: instance-store lines out of /etc/fstab, the original kept as the backup.
tidy_fstab() {
  local fs=$1 work=$2 removed=0 backup=none type line
  type=$(tidy_type "$fs" /etc/fstab)
  if [[ -z $type ]]; then
    progress "warning: the image has no /etc/fstab"
  elif [[ $type != regular ]] || ! tidy_dump "$fs" /etc/fstab "$work/fstab.old" || ! cp "$work/fstab.old" "$work/fstab.orig"; then
    progress "warning: /etc/fstab in the image is a $type, not a file: not tidied"
  else
    : >"$work/fstab.new"
    while IFS= read -r line || [[ -n $line ]]; do
      if [[ ! $line =~ ^[[:space:]]*(#|$) ]] && is_instance_store "$line"; then
        removed=$((removed + 1))
      else
        printf '%s\n' "$line" >>"$work/fstab.new"
      fi
    done <"$work/fstab.orig"
  fi
  if ((removed)); then
    tidy_rewrite_fstab "$fs" "$work"
    backup=$TIDY_BACKUP
    progress "/etc/fstab: removed $removed instance-store entr$( ((removed == 1)) && echo y || echo ies), backup in $TIDY_BACKUP:"
    if command -v diff >/dev/null 2>&1; then
      diff -u --label "$TIDY_BACKUP" --label /etc/fstab "$work/fstab.orig" "$work/fstab.new" || true
    else
      grep -vxFf "$work/fstab.new" "$work/fstab.orig" | sed 's/^/-/' || true
    fi
  elif [[ $type == regular ]]; then
    progress "/etc/fstab: no instance-store entries"
  fi
  result fstab_removed "$removed"
  result fstab_backup "$backup"
}

# tidy_rewrite_fstab FS WORK: $WORK/fstab.new becomes /etc/fstab, the original the backup.
tidy_rewrite_fstab() {
  local fs=$1 work=$2 stat mode uid gid when=0 t name i=0 requests=()
  if [[ -d $fs ]]; then # mounted: the file keeps its inode, the backup is a copy
    cp -p "$fs/etc/fstab" "$fs$TIDY_BACKUP"
    cat "$work/fstab.new" >"$fs/etc/fstab"
    return
  fi
  debugfs -R 'stat /etc/fstab' "$fs" >"$work/fstab.stat" 2>/dev/null </dev/null
  stat=$(<"$work/fstab.stat")
  [[ $stat =~ Mode:[[:space:]]+0*([0-7]+) ]] || fail "cannot read the mode of /etc/fstab in $fs"
  mode=${BASH_REMATCH[1]}
  [[ $stat =~ User:[[:space:]]+([0-9]+)[[:space:]]+Group:[[:space:]]+([0-9]+) ]] || fail "cannot read the owner of /etc/fstab in $fs"
  uid=${BASH_REMATCH[1]} gid=${BASH_REMATCH[2]}
  # The fixed "now" of every change: the later of the original's mtime and ctime (from the input,
  # so the same on every run; a clock would make each conversion's bytes different).
  while read -r t; do
    ((16#$t <= when)) || when=$((16#$t))
  done < <(sed -nE 's/^ *(m|c)time: 0x([0-9a-f]+).*/\2/p' "$work/fstab.stat")
  requests=("set_current_time @$when")
  # A backup left by an earlier conversion is replaced, as cp would replace it.
  [[ $(tidy_type "$fs" "$TIDY_BACKUP") != regular ]] || requests+=("rm $TIDY_BACKUP")
  # ln and unlink leave link counts alone: together they rename the original inode.
  requests+=("ln /etc/fstab $TIDY_BACKUP" "unlink /etc/fstab" "write $work/fstab.new /etc/fstab"
    "sif /etc/fstab mode $(printf '0%o' $((8#100000 | 8#$mode)))" "sif /etc/fstab uid $uid" "sif /etc/fstab gid $gid")
  # Extended attributes (an SELinux label...) go to the new file too; system.data is inline data.
  debugfs -R 'ea_list /etc/fstab' "$fs" >"$work/fstab.ea" 2>/dev/null </dev/null || true
  while read -r name; do
    [[ -n $name && $name != system.data ]] || continue
    i=$((i + 1))
    tidy_fs_run "$fs" "$work/ea.out" "ea_get -f $work/ea.$i /etc/fstab $name"
    requests+=("ea_set -f $work/ea.$i /etc/fstab $name")
  done < <(sed -nE 's/^  ([^ ]+) \([0-9]+\)( =.*)?$/\1/p' "$work/fstab.ea")
  tidy_fs_run "$fs" "$work/tidy.out" -w "${requests[@]}"
  rm -f "$work"/ea.*
}

# tidy_root FS WORK: facts and fstab tidy of the filesystem FS (an ext2/3/4 device or
# FILE?offset=BYTES, or the directory a filesystem is mounted on), with WORK a private directory.
tidy_root() {
  # debugfs must read the filesystem: a file it cannot see is no reason to report "no /etc/fstab".
  [[ -d $1 ]] || tidy_fs_run "$1" "$2/probe" 'stat /'
  tidy_facts "$1" "$2"
  tidy_fstab "$1" "$2"
}

# find_disk_root DISK WORK: the root filesystem of a disk image or device, found as convert.sh
# finds it on the helper and the runner finds it in its image: the largest partition holding a
# Linux filesystem (bootable wins a tie), or the whole DISK when it holds a bare filesystem. Sets
# partition_table (mbr, gpt or none), root_number (empty for a bare filesystem), root_offset and
# root_size (bytes; no size for a bare filesystem) and root_type (blkid's TYPE; empty if none).
# shellcheck disable=SC2034 # root_size and root_type: read by convert-finalize.sh
find_disk_root() {
  local disk=$1 work=$2 label sector best=0 line number start size type bytes
  partition_table=none root_number='' root_offset=0 root_size='' root_type=''
  if sfdisk -d "$disk" >"$work/table" 2>/dev/null && grep -q '^label:' "$work/table"; then
    label=$(sed -n 's/^label: *//p' "$work/table")
    case $label in
    dos) partition_table=mbr ;;
    gpt) partition_table=gpt ;;
    *) fail "unsupported partition table '$label' on $disk" ;;
    esac
    sector=$(sed -n 's/^sector-size: *//p' "$work/table")
    sector=${sector:-512}
    while IFS= read -r line; do
      [[ $line =~ ^([^[:space:]]*[^0-9])([0-9]+)[[:space:]]*:.*start=[[:space:]]*([0-9]+),[[:space:]]*size=[[:space:]]*([0-9]+) ]] || continue
      number=${BASH_REMATCH[2]} start=${BASH_REMATCH[3]} size=${BASH_REMATCH[4]}
      type=$(blkid -p -O $((start * sector)) -S $((size * sector)) -o value -s TYPE "$disk" 2>/dev/null || true)
      [[ $type =~ ^(ext2|ext3|ext4|xfs|btrfs)$ ]] || continue
      bytes=$((size * sector))
      [[ $line == *bootable* ]] && bytes=$((bytes + 1))
      if ((bytes > best)); then
        best=$bytes root_number=$number root_offset=$((start * sector)) root_size=$((size * sector)) root_type=$type
      fi
    done <"$work/table"
    [[ -n $root_number ]] || fail "no partition on $disk holds a Linux filesystem (ext2/3/4, xfs, btrfs): the image is not a Linux root disk"
  else
    root_type=$(blkid -p -o value -s TYPE "$disk" 2>/dev/null || true)
  fi
}

# ---------------------------------------------------------------- standalone (the runner)

tidy_main() {
  local image='' offset='' work
  while (($#)); do
    case $1 in
    --image | --offset)
      if (($# < 2)) || [[ -z $2 ]]; then fail "option $1 needs a value (usage: tidy-fstab.sh --image FILE [--offset BYTES])" 2; fi
      if [[ $1 == --image ]]; then image=$2; else offset=$2; fi
      shift 2
      ;;
    --check-tools)
      require_cmd debugfs e2fsck sfdisk blkid
      exit 0
      ;;
    --help | -h)
      sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"
      exit 0
      ;;
    *) fail "unknown argument '$1' (usage: tidy-fstab.sh --image FILE [--offset BYTES])" 2 ;;
    esac
  done
  [[ -n $image ]] || fail "--image is required (usage: tidy-fstab.sh --image FILE [--offset BYTES])" 2
  [[ -f $image && -w $image ]] || fail "image '$image' is not a writable file"
  [[ -z $offset || $offset =~ ^[0-9]+$ ]] || fail "--offset '$offset' is not a number of bytes" 2
  require_cmd debugfs e2fsck sfdisk blkid
  work=$(mktemp -d "${TMPDIR:-/tmp}/i2e-tidy.XXXXXX")
  # shellcheck disable=SC2064 # the directory is known now
  trap "rm -rf '$work'" EXIT

  local table=none number='' type
  if [[ -z $offset ]]; then
    find_disk_root "$image" "$work"
    table=$partition_table number=$root_number offset=$root_offset
  fi
  type=$(blkid -p -O "$offset" -o value -s TYPE "$image" 2>/dev/null || true)
  result partition_table "$table"
  result root_partition "${number:-none}"
  result root_partition_offset_bytes "$offset"
  [[ $type =~ ^ext[234]$ ]] ||
    fail "the root filesystem is ${type:-of no type blkid knows}, not ext2/3/4: its /etc/fstab cannot be tidied without a mount; convert it with convert-on: helper" 3
  local fs="$image?offset=$offset"
  if ! e2fsck -fn "$fs" </dev/null >"$work/fsck.out" 2>&1; then
    fail "e2fsck -fn found errors in the $type filesystem of the image ($(grep -v '^e2fsck\|^Pass\|^$' "$work/fsck.out" | head -1)): repair it on the source and bundle again"
  fi
  progress "e2fsck -fn: clean ($(tail -n 1 "$work/fsck.out"))"
  result filesystem "$type"
  result filesystem_label "$(blkid -p -O "$offset" -o value -s LABEL "$image" 2>/dev/null || true)"
  result filesystem_uuid "$(blkid -p -O "$offset" -o value -s UUID "$image" 2>/dev/null || true)"
  tidy_root "$fs" "$work"
  progress "tidied $image (root filesystem at byte $offset)"
}

if [[ ${BASH_SOURCE[0]} == "$0" ]]; then
  # shellcheck source=common.sh disable=SC1091
  . "$(dirname "${BASH_SOURCE[0]}")/common.sh"
  umask 077
  tidy_main "$@"
fi
