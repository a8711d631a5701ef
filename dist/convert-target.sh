#!/usr/bin/env bash
# convert-target.sh: the target convert.sh writes the image onto, sourced by it, never run.
#
#   find_target       target (and target_is_device): the volume's block device (found by its
#                     NVMe serial, or at its Xen name; waited for), the block device, or the file
#   prepare_target    a device must be unused, large enough and (unless --write-zeros) blank; a
#                     file is cut to nothing and extended sparsely to the image size; with an
#                     hvm result the partition is made and stream_target is it; result target
# shellcheck shell=bash disable=SC2154,SC2034 # volume_id, device_arg, target_arg, image_size, work...: set by convert.sh; what this file sets, the others read

# device_for_volume SERIAL: the block device whose NVMe serial is SERIAL (vol0abc...), or the
# Xen device at the name the volume was attached as; nothing if it is not there (yet).
device_for_volume() {
  local serial=$1 link=$byid_dir/nvme-Amazon_Elastic_Block_Store_$1 f s name
  if [[ -e $link ]]; then
    readlink -f "$link"
    return
  fi
  for f in "$sys_root"/block/*/device/serial; do
    [[ -r $f ]] || continue
    s=$(tr -d '[:space:]' <"$f")
    if [[ $s == "$serial" ]]; then
      name=${f%/device/serial}
      printf '/dev/%s\n' "${name##*/}"
      return
    fi
  done
  if command -v lsblk >/dev/null 2>&1; then
    name=$(lsblk -dno NAME,SERIAL 2>/dev/null | awk -v s="$serial" '$2 == s { print $1; exit }')
    [[ -n $name ]] && printf '/dev/%s\n' "$name" && return
  fi
  if [[ -n $device_arg ]]; then
    local letters=${device_arg#/dev/sd} candidate
    letters=${letters#/dev/xvd}
    for candidate in "$dev_dir/xvd$letters" "$dev_dir/sd$letters"; do
      # A name that resolves to an NVMe disk is a udev alias: only its serial identifies it.
      if [[ -b $candidate && $(readlink -f "$candidate") != */nvme* ]]; then
        readlink -f "$candidate"
        return
      fi
    done
  fi
}

find_target() {
  local serial wait_seconds deadline
  sys_root=${I2E_SYS_ROOT:-/sys}
  byid_dir=${I2E_BYID_DIR:-/dev/disk/by-id}
  dev_dir=${I2E_DEV_DIR:-/dev}

  target_is_device=0
  if [[ -n $volume_id ]]; then
    serial=${volume_id/-/}
    wait_seconds=${I2E_DEVICE_WAIT_SECONDS:-60}
    deadline=$((SECONDS + wait_seconds))
    target=''
    while :; do
      target=$(device_for_volume "$serial")
      [[ -z $target && $SECONDS -lt $deadline ]] || break
      sleep 2
    done
    [[ -n $target && -b $target ]] ||
      fail "volume $volume_id did not appear on this instance within ${wait_seconds}s (no block device with NVMe serial $serial${device_arg:+, and no Xen device for $device_arg}): check that it is attached to this instance"
    progress "volume $volume_id is $target"
    target_is_device=1
  elif [[ -b $target_arg ]]; then
    target=$(readlink -f "$target_arg")
    target_is_device=1
  elif [[ -e $target_arg && ! -f $target_arg ]]; then
    fail "target '$target_arg' is neither a block device nor a regular file"
  else
    target=$target_arg
  fi
}

# check_device: the block device is not in use, large enough, and (holes are not written) blank.
check_device() {
  local mounts base holders device_size needed step offsets offset nonzero i
  journal_add "flush $target" # undone last: after everything on it is unmounted
  require_cmd blockdev lsblk
  mounts=$(lsblk -nrpo NAME,MOUNTPOINT "$target" 2>/dev/null | awk 'NF > 1 { printf "%s on %s; ", $1, $2 }')
  [[ -z $mounts ]] || fail "target $target is in use (${mounts%; }): unmount it, or give a new empty volume"
  base=${target##*/}
  holders=("$sys_root/class/block/$base/holders/"*)
  [[ ! -e ${holders[0]} ]] || fail "target $target is in use by ${holders[0]##*/} (device-mapper, RAID or swap): give a new empty volume"
  ! grep -q "^${target}[[:space:]]" /proc/swaps 2>/dev/null || fail "target $target is a swap device in use"
  device_size=$(blockdev --getsize64 "$target")
  # shellcheck disable=SC2154 # from to-hvm.sh
  needed=$((image_size + to_hvm * hvm_partition_offset))
  ((device_size >= needed)) ||
    fail "target $target is too small: $device_size bytes, the image needs $needed ($(((needed + 1073741823) / 1073741824)) GiB): attach a larger volume"
  if ((!write_zeros)); then
    # Holes are not written, so the device must read zeros: refuse one that visibly holds data.
    step=$((device_size / 16 / 65536 * 65536))
    offsets=(0 $((device_size - 1048576)))
    for ((i = 1; i < 16; i++)); do offsets+=($((i * step))); done
    for offset in "${offsets[@]}"; do
      ((offset >= 0)) || continue
      nonzero=$(dd if="$target" bs=65536 iflag=skip_bytes,count_bytes skip="$offset" count=1048576 status=none | tr -d '\000' | wc -c)
      ((nonzero == 0)) ||
        fail "target $target is not blank (data at byte $offset); holes in the image are not written, so it needs a new empty volume, or run with --write-zeros"
    done
  fi
}

prepare_target() {
  if ((target_is_device)); then
    check_device
  else
    # A file is made to read zeros: cut to nothing, then extended (sparsely) to the image size.
    truncate -s 0 "$target" 2>"$work/truncate.err" || fail "cannot create target file $target: $(first_line "$work/truncate.err")"
    truncate -s $((image_size + to_hvm * hvm_partition_offset)) "$target"
  fi
  result target "$target"
  stream_target=$target
  if ((to_hvm)); then
    hvm_partition "$target" "$image_size"
    loops+=("$hvm_loop")
    stream_target=$hvm_loop
  fi
}
