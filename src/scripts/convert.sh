#!/usr/bin/env bash
# convert.sh: rebuild the disk image of an instance-store bundle (ec2-ami-tools manifest
# version 2007-10-10) straight onto a target, verifying everything on the way, then check
# and tidy its root filesystem so that the target can become the root of an EBS-backed AMI.
#
#   convert.sh --manifest FILE|s3://bucket/key/x.manifest.xml [--parts DIR|s3://bucket/prefix/]
#              --key FILE | --key-parameter NAME       (SSM SecureString holding the PEM key)
#              --target FILE|BLOCK_DEVICE | --volume-id vol-... [--device /dev/sdf]
#              [--region REGION] [--no-finalize | --finalize] [--write-zeros]
#              [--output-virtualization-type hvm|paravirtual]
#   convert.sh --help
#
# --output-virtualization-type hvm makes a paravirtual image (a bare filesystem) an hvm disk:
# MBR with one bootable partition from sector 2048, the filesystem streamed into it, GRUB 2 in
# the MBR booting menu.lst's default kernel, fstab's root by UUID (to-hvm.sh). A file target is
# finalized too then (as with --finalize), so that it is a bootable disk image.
#
# The bundle is streamed, never copied: parts in manifest order (names from the manifest
# only, each one's SHA-1 checked as it passes) | AES-128-CBC decrypt | gunzip | SHA-1 of the
# tar stream | GNU tar, writing the image member straight onto the target. The run succeeds
# only when the tar stream's SHA-1 equals the manifest's image digest, the image has exactly
# the manifest's size, and the manifest's signature verifies against the public half of the
# private key.
#
# Zero runs are skipped, not written. Bundles hold the image as a GNU sparse member (only
# the data regions are stored), and tar, given the seekable target as its stdout, seeks over
# the holes (a member that is not sparse is simply written in full). (Expanding them through a pipe for dd conv=sparse would cost tar one 512-byte
# write per zero block: two million system calls per GiB of zeros.) Skipping is only right
# on a target that already reads zeros: a new, empty EBS volume, or a file, which this
# script truncates to 0 and then to the image size first. A block device is sampled before
# writing and refused if it holds data; --write-zeros writes every block instead (through
# dd, for a reused device).
#
# Block-device targets are then finalized (unless --no-finalize): partition table re-read,
# root filesystem found and checked (fsck -n), instance-store entries removed from /etc/fstab
# (backup kept, diff printed), facts reported (tidy-fstab.sh: an ext filesystem unmounted, with
# debugfs at a time fixed by the image, so the same bundle always gives the same bytes; xfs, btrfs
# and an image made hvm mounted in a private directory). A FILE target is
# NOT finalized (it is left exactly as bundled, so it does not boot as is) unless --finalize is
# given: then, as root, it is attached as a loop device and finalized like a volume.
#
# Result lines (stdout, see common.sh): target, image_bytes (size of the rebuilt image),
# bytes_written (bytes actually written to the target; the rest were holes, left as they were),
# digest=ok, and when finalizing partition_table, root_partition, root_partition_offset_bytes,
# filesystem, filesystem_label, filesystem_uuid, kernel_version, bootloader_config,
# bootloader_kernel, initramfs, initramfs_nvme, initramfs_ena, initramfs_note,
# fstab_removed, fstab_backup, and the hvm_* lines of to-hvm.sh.
#
# The script is this file and the companions it sources from its own folder, each one part of the
# run: convert-manifest.sh (manifest, key, parts), convert-target.sh (the target), convert-stream.sh
# (the stream), convert-finalize.sh (finalize), tidy-fstab.sh (facts and fstab tidy), to-hvm.sh
# (hvm), common.sh (output protocol, undo journal). The action ships them together
# (src/scripts/index.ts: companions).
#
# Test hooks (environment): I2E_SYS_ROOT (/sys), I2E_BYID_DIR (/dev/disk/by-id), I2E_DEV_DIR
# (/dev, for --device names), I2E_DEVICE_WAIT_SECONDS (60),
# I2E_PARTITION_NODES=0 (ignore partition nodes: use the loop-device fallback), I2E_SHM_DIR
# (/dev/shm, where the private work directory is made).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR # (the companions, from any working folder)
# shellcheck source=SCRIPTDIR/common.sh
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"
# shellcheck source=SCRIPTDIR/to-hvm.sh
. "$(dirname "${BASH_SOURCE[0]}")/to-hvm.sh"
# shellcheck source=SCRIPTDIR/convert-manifest.sh
. "$(dirname "${BASH_SOURCE[0]}")/convert-manifest.sh"
# shellcheck source=SCRIPTDIR/convert-target.sh
. "$(dirname "${BASH_SOURCE[0]}")/convert-target.sh"
# shellcheck source=SCRIPTDIR/convert-stream.sh
. "$(dirname "${BASH_SOURCE[0]}")/convert-stream.sh"
# shellcheck source=SCRIPTDIR/convert-finalize.sh
. "$(dirname "${BASH_SOURCE[0]}")/convert-finalize.sh"
# shellcheck source=SCRIPTDIR/tidy-fstab.sh
. "$(dirname "${BASH_SOURCE[0]}")/tidy-fstab.sh"

# ---------------------------------------------------------------- arguments

manifest_arg='' parts_arg='' key_arg='' key_param='' target_arg='' volume_id='' device_arg=''
region='' finalize=1 finalize_file=0 write_zeros=0 output_type=''

usage_fail() {
  fail "$1 (usage: convert.sh --manifest FILE|s3://... [--parts DIR|s3://.../] --key FILE|--key-parameter NAME --target FILE|DEVICE|--volume-id vol-... [--device /dev/sdX] [--region R] [--no-finalize|--finalize] [--write-zeros] [--output-virtualization-type hvm|paravirtual]; --help)" 2
}

# parse_args ARG...: the options into the variables above, each one checked.
parse_args() {
  while (($#)); do
    case $1 in
    --manifest | --parts | --key | --key-parameter | --target | --volume-id | --device | --region | --output-virtualization-type)
      if (($# < 2)) || [[ -z $2 ]]; then usage_fail "option $1 needs a value"; fi
      case $1 in
      --manifest) manifest_arg=$2 ;;
      --parts) parts_arg=$2 ;;
      --key) key_arg=$2 ;;
      --key-parameter) key_param=$2 ;;
      --target) target_arg=$2 ;;
      --volume-id) volume_id=$2 ;;
      --device) device_arg=$2 ;;
      --region) region=$2 ;;
      --output-virtualization-type) output_type=$2 ;;
      esac
      shift 2
      ;;
    --no-finalize) finalize=0 && shift ;;
    --finalize) finalize_file=1 && shift ;;
    --help | -h)
      sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"
      exit 0
      ;;
    --write-zeros) write_zeros=1 && shift ;;
    *) usage_fail "unknown argument '$1'" ;;
    esac
  done

  [[ -n $manifest_arg ]] || usage_fail "--manifest is required"
  ((finalize || !finalize_file)) || usage_fail "give only one of --finalize and --no-finalize"
  [[ -n $key_arg || -n $key_param ]] || usage_fail "--key or --key-parameter is required"
  [[ -z $key_arg || -z $key_param ]] || usage_fail "give only one of --key and --key-parameter"
  [[ -n $target_arg || -n $volume_id ]] || usage_fail "--target or --volume-id is required"
  [[ -z $target_arg || -z $volume_id ]] || usage_fail "give only one of --target and --volume-id"
  [[ -z $volume_id || $volume_id =~ ^vol-[0-9a-f]{8,17}$ ]] || usage_fail "--volume-id '$volume_id' is not a volume id (vol-0123456789abcdef0)"
  [[ -z $device_arg || $device_arg =~ ^/dev/(sd|xvd)[a-z]{1,2}$ ]] || usage_fail "--device '$device_arg' is not a device name like /dev/sdf"
  [[ -z $output_type || $output_type =~ ^(hvm|paravirtual)$ ]] || usage_fail "--output-virtualization-type '$output_type' is not hvm or paravirtual"
  to_hvm=0
  [[ $output_type != hvm ]] || to_hvm=1
  ((!to_hvm || finalize)) || usage_fail "--output-virtualization-type hvm installs a boot loader: it cannot be combined with --no-finalize"
}

# ---------------------------------------------------------------- private work dir, cleanup

# make_work_dir: the private work directory (in memory when it can be), and the traps that undo
# everything this run changed.
make_work_dir() {
  local shm
  shm=${I2E_SHM_DIR:-/dev/shm} # memory, so that the key never lands on a disk
  [[ -d $shm && -w $shm ]] || shm=${TMPDIR:-/tmp}
  work=$(mktemp -d "$shm/i2e-convert.XXXXXX") || fail "cannot create a private temporary directory in $shm"
  # SSM ends a cancelled or timed-out command with SIGKILL: cleanup() below never runs then. So each
  # thing it would undo is first written to the undo journal (common.sh), which cleanup.sh undoes.
  journal_add "dir $work"
  chmod 700 "$work"
  hasher_pid='' mount_dir='' loops=()
  trap cleanup EXIT
  trap 'exit 143' TERM
  trap 'exit 130' INT
}

cleanup() {
  local rc=$?
  set +e
  [[ -n $hasher_pid ]] && kill "$hasher_pid" 2>/dev/null
  if [[ -n $mount_dir ]]; then
    if mountpoint -q "$mount_dir" && ! umount "$mount_dir" 2>/dev/null; then
      progress "warning: could not unmount $mount_dir cleanly, detaching it lazily"
      umount -l "$mount_dir" 2>/dev/null
    fi
    rmdir "$mount_dir" 2>/dev/null
  fi
  local loop
  for loop in ${loops[@]+"${loops[@]}"}; do # (bash 4.2 calls an empty array unbound)
    losetup -d "$loop" 2>/dev/null || progress "warning: could not detach $loop"
  done
  rm -rf "$work"
  journal_end
  exit "$rc"
}

# first_line FILE: the first non-empty line of a tool's error output, for one-line reasons.
first_line() {
  local line
  line=$(grep -m1 -v '^[[:space:]]*$' "$1" 2>/dev/null || true)
  printf '%s' "${line:0:300}"
}

aws_cli() {
  aws ${region:+--region "$region"} "$@"
}

# check_tools: every tool the run needs, before anything is read or written.
check_tools() {
  require_cmd openssl gzip tar dd sha1sum tee mkfifo sed grep truncate
  ((!to_hvm)) || hvm_require_tools # before anything is read or written
  if [[ -n $key_param || $manifest_arg == s3://* || $parts_arg == s3://* ]] && ! command -v aws >/dev/null 2>&1; then
    fail "the aws CLI is not installed on $(hostname 2>/dev/null || echo this machine) but is needed to read S3/SSM: install the package 'awscli' (dnf install -y awscli, or apt-get install -y awscli), or use a helper AMI that has it"
  fi
}

# ---------------------------------------------------------------- private key

# read_key: the private key into the private directory, from SSM or a file; it must be an
# unencrypted PEM private key.
read_key() {
  key_file=$work/key.pem
  if [[ -n $key_param ]]; then
    aws_cli ssm get-parameter --name "$key_param" --with-decryption --query Parameter.Value \
      --output text >"$key_file" 2>"$work/ssm.err" </dev/null ||
      fail "cannot read the private key from SSM parameter '$key_param': $(first_line "$work/ssm.err") (the helper's instance profile needs ssm:GetParameter and kms:Decrypt on it)"
  else
    [[ -f $key_arg && -r $key_arg ]] || fail "private key file '$key_arg' does not exist or is not readable"
    cp "$key_arg" "$key_file"
  fi
  openssl pkey -in "$key_file" -passin pass: -noout </dev/null 2>/dev/null ||
    fail "the private key ${key_param:+in SSM parameter $key_param }${key_arg:+$key_arg }is not an unencrypted PEM private key: give the key the bundle was made with (ec2-bundle-vol -k)"
}

# ---------------------------------------------------------------- main

main() {
  umask 077
  parse_args "$@"
  make_work_dir
  check_tools
  read_key
  read_manifest
  parse_manifest
  parse_parts
  verify_manifest
  check_parts
  find_target
  prepare_target
  stream_image
  check_image
  ((!to_hvm)) || hvm_check_filesystem "$target"
  ((!to_hvm)) || finalize_file=1 # an hvm disk needs its boot loader, also in a file
  attach_file_target
  ((finalize && target_is_device)) || exit 0
  finalize_target
}

if [[ ${BASH_SOURCE[0]} == "$0" ]]; then
  main "$@"
fi
