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
# fstab_removed, fstab_backup, and the hvm_* lines of to-hvm.sh. The action ships it with
# common.sh, to-hvm.sh and tidy-fstab.sh.
#
# Test hooks (environment): I2E_SYS_ROOT (/sys), I2E_BYID_DIR (/dev/disk/by-id), I2E_DEV_DIR
# (/dev, for --device names), I2E_DEVICE_WAIT_SECONDS (60),
# I2E_PARTITION_NODES=0 (ignore partition nodes: use the loop-device fallback), I2E_SHM_DIR
# (/dev/shm, where the private work directory is made).
set -euo pipefail
# shellcheck source=common.sh disable=SC1091 # checked on its own; shellcheck -x follows it
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"
# shellcheck source=to-hvm.sh disable=SC1091
. "$(dirname "${BASH_SOURCE[0]}")/to-hvm.sh"
# shellcheck source=tidy-fstab.sh disable=SC1091
. "$(dirname "${BASH_SOURCE[0]}")/tidy-fstab.sh"
umask 077

# ---------------------------------------------------------------- arguments

manifest_arg='' parts_arg='' key_arg='' key_param='' target_arg='' volume_id='' device_arg=''
region='' finalize=1 finalize_file=0 write_zeros=0 output_type=''

usage_fail() {
  fail "$1 (usage: convert.sh --manifest FILE|s3://... [--parts DIR|s3://.../] --key FILE|--key-parameter NAME --target FILE|DEVICE|--volume-id vol-... [--device /dev/sdX] [--region R] [--no-finalize|--finalize] [--write-zeros] [--output-virtualization-type hvm|paravirtual]; --help)" 2
}

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

# ---------------------------------------------------------------- private work dir, cleanup

shm=${I2E_SHM_DIR:-/dev/shm} # memory, so that the key never lands on a disk
[[ -d $shm && -w $shm ]] || shm=${TMPDIR:-/tmp}
work=$(mktemp -d "$shm/i2e-convert.XXXXXX") || fail "cannot create a private temporary directory in $shm"
# SSM ends a cancelled or timed-out command with SIGKILL: cleanup() below never runs then. So each
# thing it would undo is first written to the undo journal (common.sh), which cleanup.sh undoes.
journal_add "dir $work"
chmod 700 "$work"
hasher_pid='' mount_dir='' loops=()

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
trap cleanup EXIT
trap 'exit 143' TERM
trap 'exit 130' INT

# first_line FILE: the first non-empty line of a tool's error output, for one-line reasons.
first_line() {
  local line
  line=$(grep -m1 -v '^[[:space:]]*$' "$1" 2>/dev/null || true)
  printf '%s' "${line:0:300}"
}

aws_cli() {
  aws ${region:+--region "$region"} "$@"
}

require_cmd openssl gzip tar dd sha1sum tee mkfifo sed grep truncate
((!to_hvm)) || hvm_require_tools # before anything is read or written
if [[ -n $key_param || $manifest_arg == s3://* || $parts_arg == s3://* ]] && ! command -v aws >/dev/null 2>&1; then
  fail "the aws CLI is not installed on $(hostname 2>/dev/null || echo this machine) but is needed to read S3/SSM: install the package 'awscli' (dnf install -y awscli, or apt-get install -y awscli), or use a helper AMI that has it"
fi

# ---------------------------------------------------------------- private key

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

# ---------------------------------------------------------------- manifest

manifest_file=$work/manifest.xml
if [[ $manifest_arg == s3://* ]]; then
  aws_cli s3 cp --only-show-errors "$manifest_arg" "$manifest_file" </dev/null >"$work/s3.err" 2>&1 ||
    fail "cannot read the manifest $manifest_arg: $(first_line "$work/s3.err")"
  default_parts=${manifest_arg%/*}/
else
  [[ -f $manifest_arg && -r $manifest_arg ]] || fail "manifest file '$manifest_arg' does not exist or is not readable"
  cp "$manifest_arg" "$manifest_file"
  default_parts=$(dirname "$manifest_arg")
fi
parts_src=${parts_arg:-$default_parts}

manifest_bad() {
  fail "manifest $manifest_arg is unreadable or truncated: $1; download it again (it must be the image.manifest.xml that ec2-bundle-vol or ec2-bundle-image wrote)"
}

manifest_xml=$(<"$manifest_file")
re_end='</manifest>[[:space:]]*$'
[[ $manifest_xml =~ $re_end ]] || manifest_bad "it does not end with </manifest>"
re_version='<version>([^<]*)</version>'
[[ $manifest_xml =~ $re_version ]] || manifest_bad "no <version>"
[[ ${BASH_REMATCH[1]} == 2007-10-10 ]] ||
  fail "manifest $manifest_arg has version '${BASH_REMATCH[1]}'; only version 2007-10-10 (ec2-ami-tools 1.3 and later) is supported: bundle the image again with current AMI tools"
re_machine='(<machine_configuration>.*</machine_configuration>)'
[[ $manifest_xml =~ $re_machine ]] || manifest_bad "no <machine_configuration>"
machine_xml=${BASH_REMATCH[1]}
re_image='(<image>(.*)</image>)'
[[ $manifest_xml =~ $re_image ]] || manifest_bad "no <image> element"
image_xml=${BASH_REMATCH[1]}
image_inner=${BASH_REMATCH[2]}
re_parts="(<parts[[:space:]]+count=['\"]([0-9]+)['\"][[:space:]]*>(.*)</parts>)"
[[ $image_inner =~ $re_parts ]] || manifest_bad "no <parts> list"
part_count=$((10#${BASH_REMATCH[2]}))
parts_xml=${BASH_REMATCH[3]}
image_fields=${image_inner/"${BASH_REMATCH[1]}"/}

# field TEXT TAG: the text of the first <TAG> or <TAG attr...> element (without children) in TEXT.
field() {
  local re="<$2([[:space:]][^>]*)?>([^<]*)</$2>"
  [[ $1 =~ $re ]] || manifest_bad "no <$2>"
  printf '%s' "${BASH_REMATCH[2]}"
}
image_name=$(field "$image_fields" name)
image_size=$(field "$image_fields" size)
bundled_size=$(field "$image_fields" bundled_size)
image_digest=$(field "$image_fields" digest)
user_key_hex=$(field "$image_fields" user_encrypted_key)
user_iv_hex=$(field "$image_fields" user_encrypted_iv)
signature_hex=$(field "$manifest_xml" signature)

safe_name='^[A-Za-z0-9_][A-Za-z0-9._+-]*$'
[[ $image_name =~ $safe_name ]] || manifest_bad "image name '$image_name' is not a plain file name"
[[ $image_size =~ ^[0-9]{1,19}$ && $image_size -gt 0 ]] || manifest_bad "image size '$image_size' is not a positive number"
[[ $bundled_size =~ ^[0-9]{1,19}$ ]] || manifest_bad "bundled_size '$bundled_size' is not a number"
[[ ${image_digest,,} =~ ^[0-9a-f]{40}$ ]] || manifest_bad "image digest is not a SHA-1"
image_digest=${image_digest,,}
[[ $user_key_hex =~ ^([0-9a-fA-F]{2})+$ && $user_iv_hex =~ ^([0-9a-fA-F]{2})+$ ]] ||
  manifest_bad "user_encrypted_key or user_encrypted_iv is not hex"
((part_count > 0)) || manifest_bad "it lists no parts"

part_names=() part_digests=()
re_part_index="<part[[:space:]]+index=['\"]([0-9]+)['\"]"
re_part_file='<filename>([^<]*)</filename>'
re_part_digest='<digest[^>]*>([0-9a-fA-F]{40})</digest>'
rest=$parts_xml
while [[ $rest == *"</part>"* ]]; do
  one=${rest%%"</part>"*}
  rest=${rest#*"</part>"}
  [[ $one =~ $re_part_index ]] || manifest_bad "a <part> without an index"
  index=$((10#${BASH_REMATCH[1]}))
  ((index < part_count)) || manifest_bad "part index $index is not below the part count $part_count"
  [[ -z ${part_names[index]-} ]] || manifest_bad "part index $index is listed twice"
  [[ $one =~ $re_part_file ]] || manifest_bad "part $index has no file name"
  part_names[index]=${BASH_REMATCH[1]}
  [[ ${part_names[index]} =~ $safe_name ]] || manifest_bad "part $index's file name is not a plain file name"
  [[ $one =~ $re_part_digest ]] || manifest_bad "part $index has no SHA-1 digest"
  part_digests[index]=${BASH_REMATCH[1],,}
done
((${#part_names[@]} == part_count)) || manifest_bad "it lists ${#part_names[@]} parts but says count='$part_count'"
progress "manifest: image '$image_name', $image_size bytes, $part_count part(s), $bundled_size bytes bundled"

# ---------------------------------------------------------------- key, IV and signature

# decrypt_user_field HEX OUT: RSA PKCS#1 v1.5 decryption with the private key; the result must
# be the 32 hex characters of a 16-byte AES key or IV, or the key is not the bundle's.
decrypt_user_field() {
  if ! hex_to_bin <<<"$1" | openssl pkeyutl -decrypt -inkey "$key_file" -passin pass: -out "$2" 2>/dev/null ||
    ! LC_ALL=C grep -qxE '[0-9a-fA-F]{32}' "$2" || (($(wc -c <"$2") != 32)); then
    fail "wrong private key: it does not decrypt the manifest's user_encrypted_key/iv; give the private key whose certificate was used to bundle this image (ec2-bundle-vol -c/-k)"
  fi
}
decrypt_user_field "$user_key_hex" "$work/aes.key"
decrypt_user_field "$user_iv_hex" "$work/aes.iv"
aes_key=$(<"$work/aes.key")
aes_iv=$(<"$work/aes.iv")

openssl pkey -in "$key_file" -passin pass: -pubout -out "$work/public.pem" </dev/null 2>/dev/null ||
  fail "cannot derive the public key from the private key"
[[ $signature_hex =~ ^[0-9a-fA-F]+$ ]] || manifest_bad "the signature is not hex"
hex_to_bin <<<"$signature_hex" >"$work/signature.bin"
printf '%s%s' "$machine_xml" "$image_xml" |
  openssl dgst -sha1 -verify "$work/public.pem" -signature "$work/signature.bin" >/dev/null 2>&1 ||
  fail "manifest signature mismatch: $manifest_arg was changed after it was signed, or belongs to another key; use the manifest exactly as the bundler wrote it"
progress "key and IV decrypted, manifest signature verified"

# ---------------------------------------------------------------- parts: where, and are they all there

parts_remote=0
if [[ $parts_src == s3://* ]]; then
  parts_remote=1
  parts_src=${parts_src%/}/
else
  [[ -d $parts_src ]] || fail "parts folder '$parts_src' does not exist"
fi

part_location() { # part_location NAME
  if ((parts_remote)); then printf '%s%s' "$parts_src" "$1"; else printf '%s/%s' "${parts_src%/}" "$1"; fi
}

# Sizes known before streaming point at a truncated or missing part by name. Parts are all
# the same size except the last one, and add up to bundled_size.
part_sizes=()
if ((parts_remote)); then
  if aws_cli s3 ls "$parts_src" </dev/null >"$work/listing" 2>"$work/s3.err"; then
    declare -A listed=()
    while read -r _ _ size name; do
      [[ -n ${name-} ]] && listed[$name]=$size
    done <"$work/listing"
    for ((i = 0; i < part_count; i++)); do
      [[ -n ${listed[${part_names[i]}]-} ]] ||
        fail "missing part $(part_location "${part_names[i]}"): upload the complete bundle again (ec2-upload-bundle)"
      part_sizes[i]=${listed[${part_names[i]}]}
    done
  else
    progress "note: cannot list $parts_src ($(first_line "$work/s3.err")); parts are checked by digest only"
  fi
else
  for ((i = 0; i < part_count; i++)); do
    f=$(part_location "${part_names[i]}")
    [[ -f $f && -r $f ]] || fail "missing part file $f: copy the complete bundle (all $part_count parts listed in the manifest)"
    part_sizes[i]=$(stat -Lc %s "$f")
  done
fi
if ((${#part_sizes[@]} == part_count)); then
  total=0
  for ((i = 0; i < part_count; i++)); do total=$((total + part_sizes[i])); done
  if ((total != bundled_size)); then
    short=$((part_count - 1))
    for ((i = 1; i < part_count - 1; i++)); do
      ((part_sizes[i] == part_sizes[0])) || short=$i
    done
    fail "part ${part_names[short]} is truncated or has the wrong size: the parts add up to $total bytes, the manifest's bundled_size is $bundled_size; copy that part again"
  fi
fi

# ---------------------------------------------------------------- target

sys_root=${I2E_SYS_ROOT:-/sys}
byid_dir=${I2E_BYID_DIR:-/dev/disk/by-id}
dev_dir=${I2E_DEV_DIR:-/dev}

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

if ((target_is_device)); then
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

# ---------------------------------------------------------------- the stream

# note STAGE TEXT: why a pipeline stage failed (read by the main shell afterwards).
note() { printf '%s' "$2" >"$work/reason.$1"; }

# fetch_part NAME: one part's bytes on stdout.
fetch_part() {
  if ((parts_remote)); then
    aws_cli s3 cp --only-show-errors "$(part_location "$1")" - </dev/null
  else
    cat -- "$(part_location "$1")"
  fi
}

# Parts from S3 are fetched ahead into the private directory when it is in memory (tmpfs), a
# few at a time, so that the aws CLI's start-up and S3's latency overlap the stream (hundreds
# of parts would otherwise each wait for both), and each part is verified before any of its
# bytes go on. Memory used: up to that many parts (10 MiB each). Elsewhere parts stream through.
lookahead=0
if ((parts_remote)) && [[ $(stat -f -c %T "$work" 2>/dev/null) == tmpfs ]]; then
  lookahead=${I2E_LOOKAHEAD:-3}
fi

# A part whose reader has gone is still hashed to its end (tee --output-error, coreutils 8.24+)
# so that a corrupt part is named rather than the stage that choked on it.
tee_keep_going=(--output-error=warn)
tee "${tee_keep_going[@]}" </dev/null >/dev/null 2>&1 || tee_keep_going=()

digest_mismatch() { # digest_mismatch INDEX GOT
  note parts "part ${part_names[$1]} digest mismatch (SHA-1 $2, the manifest says ${part_digests[$1]}): the part is corrupt, truncated or from another bundle; copy it again"
  exit 1
}

# pass_part INDEX: the part on stdout, hashed as it passes.
pass_part() {
  local i=$1 got st
  set +e
  fetch_part "${part_names[i]}" 2>"$work/fetch.err" |
    tee ${tee_keep_going[@]+"${tee_keep_going[@]}"} /dev/fd/3 2>/dev/null | sha1sum >"$work/part.sha1"
  st=("${PIPESTATUS[@]}")
  set -e
  ((st[0] == 0)) || cannot_read "$i" "$work/fetch.err"
  got=$(cut -d' ' -f1 "$work/part.sha1")
  [[ $got == "${part_digests[i]}" ]] || digest_mismatch "$i" "$got"
  ((st[1] == 0)) || exit 141 # the reader stopped: its own stage says why
}

cannot_read() { # cannot_read INDEX ERROR_FILE
  note parts "cannot read part $(part_location "${part_names[$1]}"): $(first_line "$2")"
  exit 1
}

# fetch_ahead INDEX: start fetching a part into memory.
fetch_ahead() {
  fetch_part "${part_names[$1]}" >"$work/part.$1" 2>"$work/fetch.$1.err" &
  fetchers[$1]=$!
}

# pass_fetched INDEX: wait for a part fetched ahead, verify it, then put it on stdout.
pass_fetched() {
  local i=$1 got
  wait "${fetchers[i]}" || cannot_read "$i" "$work/fetch.$i.err"
  unset 'fetchers[i]'
  got=$(sha1sum <"$work/part.$i" | cut -d' ' -f1)
  [[ $got == "${part_digests[i]}" ]] || digest_mismatch "$i" "$got"
  cat "$work/part.$i" >&3 2>/dev/null || exit 141
  rm -f "$work/part.$i" "$work/fetch.$i.err"
}

# stream_parts: the encrypted bundle on stdout, parts in manifest order, each one verified.
stream_parts() {
  exec 3>&1
  local i j pct last_pct=0 last_time=$SECONDS
  fetchers=()
  trap 'kill ${fetchers[@]+"${fetchers[@]}"} 2>/dev/null || true' EXIT
  for ((i = 0; i < part_count; i++)); do
    if ((lookahead)); then
      for ((j = i; j < part_count && j <= i + lookahead; j++)); do
        [[ -n ${fetchers[j]-} || -e $work/part.$j ]] || fetch_ahead "$j"
      done
      pass_fetched "$i"
    else
      pass_part "$i"
    fi
    pct=$(((i + 1) * 100 / part_count))
    if ((pct >= last_pct + 5 || (SECONDS - last_time >= 60 && pct > last_pct) || i + 1 == part_count)); then
      progress "parts: $((i + 1))/$part_count verified ($pct%)" >&4
      last_pct=$pct last_time=$SECONDS
    fi
  done
}

decrypt() {
  openssl enc -d -aes-128-cbc -K "$aes_key" -iv "$aes_iv" 2>"$work/openssl.err"
}

decompress() {
  gzip -dc 2>"$work/gzip.err"
}

tar_list=(tar -xO -vv --index-file="$work/tar.index" -f - "$image_name")

# record_written FILE...: the bytes this stage's processes passed to write(), less what they
# wrote to FILE... (their own reports): wchar of this subshell includes its reaped children.
record_written() {
  local io=/proc/$BASHPID/io wchar own=0 f # (BASHPID here: inside $(...) it is another process)
  wchar=$(awk '$1 == "wchar:" { print $2 }' "$io" 2>/dev/null || true)
  for f in "$@"; do own=$((own + $(wc -c <"$f"))); done
  echo $((${wchar:-0} - own)) >"$work/written"
}

# untar_onto_target: GNU tar writes the image member straight onto the target, given as its
# stdout. The target is seekable, so tar seeks over the sparse member's holes (the zero runs
# the bundler recorded) instead of writing zeros. What follows the member is drained so that
# the digest covers the whole stream.
untar_onto_target() {
  "${tar_list[@]}" 1<>"$stream_target" 2>"$work/tar.err" || exit $?
  record_written "$work/tar.index" "$work/tar.err"
  cat >/dev/null
}

# --write-zeros: the member with its holes expanded to stdout, and dd writing every block.
untar_to_stdout() {
  "${tar_list[@]}" 2>"$work/tar.err" || exit $?
  cat >/dev/null
}
write_every_block() {
  dd of="$stream_target" bs=65536 iflag=fullblock conv=notrunc 2>"$work/dd.err" || exit $?
  record_written "$work/dd.err"
}

progress "streaming $part_count part(s) from $parts_src onto $target"
started=$SECONDS
mkfifo "$work/tar.fifo"
sha1sum <"$work/tar.fifo" >"$work/tar.sha1" &
hasher_pid=$!
exec 4>&1
stage_names=(parts decrypt gunzip tee tar write)
set +e
if ((write_zeros)); then
  stream_parts | decrypt | decompress | tee "$work/tar.fifo" 2>"$work/tee.err" | untar_to_stdout | write_every_block
else
  stream_parts | decrypt | decompress | tee "$work/tar.fifo" 2>"$work/tee.err" | untar_onto_target
fi
status=("${PIPESTATUS[@]}")
set -e
wait "$hasher_pid" || true
hasher_pid=''

stage_texts=(
  "reading the parts failed"
  "decryption failed ($(first_line "$work/openssl.err")): the parts do not form the complete encrypted bundle"
  "gunzip failed ($(first_line "$work/gzip.err")): the decrypted bundle is not a complete gzip stream"
  "the tar stream could not be hashed ($(first_line "$work/tee.err"))"
  "tar could not extract '$image_name' onto $target ($(first_line "$work/tar.err"))"
  "writing to $target failed ($(first_line "$work/dd.err"))"
)
[[ ! -s $work/reason.parts ]] || fail "$(<"$work/reason.parts")"
for i in "${!status[@]}"; do
  if ((status[i] != 0 && status[i] != 141)); then
    fail "${stage_texts[i]}"
  fi
done
for i in "${!status[@]}"; do
  ((status[i] == 0)) || fail "the ${stage_names[i]} stage was interrupted (exit ${status[i]})"
done
[[ -s $work/tar.index ]] || fail "tar found no '$image_name' in the bundle: the manifest does not belong to these parts"
sync "$stream_target" 2>/dev/null || sync
if ((to_hvm)); then
  losetup -d "$hvm_loop" 2>/dev/null || progress "warning: could not detach $hvm_loop"
  loops=()
fi

stream_digest=$(cut -d' ' -f1 "$work/tar.sha1")
[[ $stream_digest == "$image_digest" ]] ||
  fail "the decrypted tar stream's SHA-1 $stream_digest differs from the manifest's image digest $image_digest: the bundle is corrupt; bundle the image again"
# The member's size as tar lists it ("-rw-r--r-- 0/0 SIZE DATE TIME NAME"; sparse: real size).
image_bytes=$(awk 'NR == 1 { print $3 }' "$work/tar.index")
[[ $image_bytes =~ ^[0-9]+$ ]] || fail "cannot read the image size from tar's listing ($(head -c 200 "$work/tar.index"))"
((image_bytes == image_size)) ||
  fail "the manifest's image size $image_size differs from the image in the bundle ($image_bytes bytes): the manifest does not belong to these parts"
if ((!target_is_device)); then
  actual=$(stat -c %s "$target")
  ((actual == image_size + to_hvm * hvm_partition_offset)) || fail "target file $target is $actual bytes after writing, expected $((image_size + to_hvm * hvm_partition_offset))"
fi
bytes_written=$(<"$work/written")
elapsed=$((SECONDS - started))
result image_bytes "$image_bytes"
result bytes_written "$bytes_written"
result digest ok
progress "image rebuilt: $((image_bytes / 1048576)) MiB, of which $((bytes_written / 1048576)) MiB written (the rest: holes left unwritten), in ${elapsed}s"

((!to_hvm)) || hvm_check_filesystem "$target"
((!to_hvm)) || finalize_file=1 # an hvm disk needs its boot loader, also in a file
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
((finalize && target_is_device)) || exit 0

# ---------------------------------------------------------------- finalize: find the root filesystem

require_cmd sfdisk blkid losetup mount umount mountpoint
blockdev --rereadpt "$target" >/dev/null 2>&1 || true
command -v partprobe >/dev/null 2>&1 && { partprobe "$target" >/dev/null 2>&1 || true; }
command -v partx >/dev/null 2>&1 && { partx -u "$target" >/dev/null 2>&1 || true; }
command -v udevadm >/dev/null 2>&1 && { udevadm settle --timeout=10 >/dev/null 2>&1 || true; }

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
  # The root is the largest partition holding a Linux root filesystem (bootable wins a tie).
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

# ---------------------------------------------------------------- finalize: facts, /etc/fstab

# tidy-fstab.sh: an ext filesystem is read and tidied unmounted with debugfs, at a time fixed by
# the image, so that the runner path (which does the same) gives the same bytes; the others, and
# an image made hvm (to-hvm.sh edits it mounted), are mounted.
if [[ $root_type == ext[234] ]] && ((!to_hvm)); then
  require_cmd debugfs
  tidy_root "$root_node" "$work"
else
  mount_dir=$(mktemp -d "${TMPDIR:-/tmp}/i2e-root.XXXXXX")
  journal_add "mount $mount_dir"
  mount_opts=rw
  [[ $root_type != xfs ]] || mount_opts=rw,nouuid # the helper may run from a copy of the same image
  mount -t "$root_type" -o "$mount_opts" "$root_node" "$mount_dir" 2>"$work/mount.err" ||
    fail "cannot mount the root filesystem $root_node: $(first_line "$work/mount.err")"
  tidy_root "$mount_dir" "$work"
  if ((to_hvm)); then
    hvm_prepare "$mount_dir" "$(blkid -p -o value -s UUID "$root_node" 2>/dev/null || true)" \
      "$(blkid -p -o value -s LABEL "$root_node" 2>/dev/null || true)" "$root_type" "$(sfdisk --disk-id "$target")"
  fi
  sync
  umount "$mount_dir" 2>"$work/umount.err" || fail "cannot unmount $mount_dir: $(first_line "$work/umount.err")"
  rmdir "$mount_dir"
  mount_dir=''
fi
((!to_hvm)) || hvm_install_loader "$target"
progress "finalized $target"
