#!/usr/bin/env bash
# Bundles the running instance-store instance into an S3 bundle with Amazon's AMI tools.
# Runs as root through SSM Run Command, with common.sh, bundle-checks.sh, bundle-tools.sh
# (prerequisites, AMI tools), bundle-services.sh and bundle-aws.sh (IMDS, keys, upload) beside it:
#
#   bash bundle.sh --virtualization-type hvm|paravirtual --architecture x86_64|i386|arm64
#                  [--root-device-name /dev/sda1|/dev/xvda]      hvm only; default /dev/sda1
#                  [--partition mbr|gpt]                         hvm only; default mbr
#                  --account-id 123456789012 --bucket BUCKET --prefix PREFIX --region REGION
#                  --cert-parameter NAME --key-parameter NAME    SecureString parameter names
#                  [--bundle-name image] [--destination auto|DIR]
#                  [--stop-services "jenkins rabbitmq-server redis-server epmd"]
#                  [--exclude "/path1 /path2"] [--install-prerequisites true|false] [--fix-menu-lst]
#                  [--ami-tools-url URL --ami-tools-sha256 HEX]   default: ec2-ami-tools 1.5.19
#
# What it does, in order (nothing is changed before the checks pass):
#  1. bundle-checks.sh: no EFI partition in /etc/fstab; /proc/cmdline vs menu.lst; a destination
#     with three times the used size of / free. With --fix-menu-lst the kernel arguments in
#     menu.lst are rewritten (backup beside it) only after every other check and step before
#     bundling has passed.
#  2. Prerequisites: ruby with its openssl library, openssl, curl (IMDSv2 needs PUT), rsync; for
#     hvm gdisk, kpartx, parted and GRUB legacy (grub 0.9x); ec2-ami-tools >= 1.5 (the pinned
#     1.5.19 zip, checked against its SHA-256, unpacked under /opt, File.exists? patched for
#     Ruby >= 3.2). Missing pieces are installed with apt-get/dnf/yum only with
#     --install-prerequisites true; otherwise the ::fail line gives the command. No AWS CLI:
#     Ubuntu 12.04/14.04 cannot install a current one.
#  3. The X.509 certificate and key are read from SSM (ssm-get-parameter.rb: one SigV4-signed
#     GetParameter call from the AMI tools' Ruby, with the instance profile's credentials) into
#     a mode-700 folder (on /dev/shm when possible) always excluded from the bundle, removed on
#     exit.
#  4. The services are stopped (systemctl, else service, else /etc/init.d; epmd is killed) and
#     those that were running are started again right after ec2-bundle-vol, also when it fails.
#  5. ec2-bundle-vol -k -c -u -r -d -p -e --batch --no-filter [--no-inherit] -P ..., with
#     hvm: -P mbr (GRUB legacy on Ubuntu needs MBR; --partition gpt for GPT) and
#          -B ami=<disk>,root=<root device> (ami=sda,root=/dev/sda1 or ami=xvda,root=/dev/xvda);
#     paravirtual: -P none (PV-GRUB boots a bare filesystem) and no -B.
#     --no-filter keeps *.pem and the like (e.g. /etc/ssl) in the image: the key folder is
#     excluded explicitly instead. --no-inherit is added when the instance refuses IMDSv1,
#     which the tool's own metadata lookup uses.
#  6. ec2-upload-bundle -b BUCKET/PREFIX -m MANIFEST --region REGION [--url URL] --retry --batch
#     (--url https://s3.REGION.amazonaws.com for regions missing from the tool's built-in map,
#     which would leave it without an endpoint). An upload refused for expired credentials is
#     tried again (3 times in all) with credentials read afresh: the instance profile's rotate.
#     Credentials: the instance profile's, read here through IMDSv2. ec2-ami-tools 1.5 reads no
#     environment variable for -a/-s/-t (its fallback is an IMDSv1 lookup, which IMDSv2-only
#     instances refuse), and arguments would show the secret in ps. So the credentials go to
#     the tool only as AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY/AWS_SESSION_TOKEN in its
#     environment, with a small Ruby file loaded through RUBYOPT that makes the tool's
#     instance-profile fallback take them from there. They are never printed.
#  7. The local bundle (image, parts, manifest) is removed on exit.
#  SSM ends a cancelled or timed-out command with SIGKILL, and then no exit trap runs: each change
#  above (key folder, bundle folder, every service stopped) is first written to the undo journal
#  (I2E_JOURNAL, see common.sh), which cleanup.sh, sent by the action next, undoes.
#
# Results (::result key=value): efi_partition, cmdline_matches_menu_lst, menu_lst_differences,
# menu_lst_fixed, menu_lst_backup, root_used_bytes, space_needed_bytes, ami_tools_version,
# inherit_metadata, partition, block_device_mapping, services_stopped, services_restarted,
# services_not_restarted, bundle_destination, image_bytes, bundled_bytes, part_count,
# image_location (BUCKET/PREFIX/NAME.manifest.xml, for RegisterImage), manifest_location (s3://…).
#
# Exit codes: 0 done; 1 unexpected; 2 bad arguments; 3 prerequisite missing; 4 refused by a check
# (EFI, no menu.lst); 5 not enough space; 6 key material or instance credentials unavailable;
# 7 ec2-bundle-vol failed; 8 ec2-upload-bundle failed. The reason is the single ::fail line.
#
# Tests: I2E_ROOT prefixes every system path (and skips the root check).
# shellcheck source-path=SCRIPTDIR
set -euo pipefail
SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$SCRIPT_DIR/common.sh"
. "$SCRIPT_DIR/bundle-checks.sh"
. "$SCRIPT_DIR/bundle-tools.sh"
. "$SCRIPT_DIR/bundle-services.sh"
. "$SCRIPT_DIR/bundle-aws.sh"

# Pinned: the latest published version, and the SHA-256 of that zip as published in Homebrew's
# formula (Formula/e/ec2-ami-tools.rb, url .../ec2-ami-tools-1.5.19.zip).
DEFAULT_AMI_TOOLS_URL=https://s3.amazonaws.com/ec2-downloads/ec2-ami-tools-1.5.19.zip
DEFAULT_AMI_TOOLS_SHA256=bdda4494bea7d55dfff995459dd4705a953f3365bbc69f03430c796b5cc1dd7f
# Regions in the S3 endpoint map of ec2-ami-tools (REGION_MAP, lib/ec2/amitools/
# s3toolparameters.rb): for any other, "--region" alone leaves the tool without a URL.
AMI_TOOLS_REGIONS=" us-east-1 us-west-1 us-west-2 eu-west-1 ap-southeast-1 ap-southeast-2 ap-northeast-1 sa-east-1 cn-north-1 us-gov-west-1 "
UPLOAD_ATTEMPTS=3
IMDS=http://169.254.169.254

# Arguments (see the usage above).
VIRTUALIZATION='' ARCHITECTURE='' ROOT_DEVICE=/dev/sda1 PARTITION='' ACCOUNT_ID='' BUCKET=''
PREFIX='' PREFIX_SET=no REGION='' CERT_PARAMETER='' KEY_PARAMETER='' BUNDLE_NAME=image
DESTINATION=auto STOP_SERVICES='' EXCLUDES='' INSTALL=false FIX_MENU_LST=no
AMI_TOOLS_URL=$DEFAULT_AMI_TOOLS_URL AMI_TOOLS_SHA256=''

# State, for the steps and the exit trap.
WORK='' BUNDLE_DIR='' IMDS_TOKEN='' INSTANCE_ROLE='' PACKAGE_MANAGER='' AMI_TOOLS_PROBLEM=''
CRED_KEY='' CRED_SECRET='' CRED_TOKEN=''
STOPPED=() INHERIT_FLAGS=()

usage_error() { fail "$1 (usage: see the top of bundle.sh)" "$EXIT_USAGE"; }

parse_args() {
  while (($# > 0)); do
    [[ $1 == --fix-menu-lst ]] && { FIX_MENU_LST=yes; shift; continue; }
    (($# >= 2)) || usage_error "$1 needs a value"
    case $1 in
    --virtualization-type) VIRTUALIZATION=$2 ;;
    --architecture) ARCHITECTURE=$2 ;;
    --root-device-name) ROOT_DEVICE=$2 ;;
    --partition) PARTITION=$2 ;;
    --account-id) ACCOUNT_ID=$2 ;;
    --bucket) BUCKET=$2 ;;
    --prefix) PREFIX=$2 PREFIX_SET=yes ;;
    --region) REGION=$2 ;;
    --cert-parameter) CERT_PARAMETER=$2 ;;
    --key-parameter) KEY_PARAMETER=$2 ;;
    --bundle-name) BUNDLE_NAME=$2 ;;
    --destination) DESTINATION=$2 ;;
    --stop-services) STOP_SERVICES=$2 ;;
    --exclude) EXCLUDES=$2 ;;
    --install-prerequisites) INSTALL=$2 ;;
    --ami-tools-url) AMI_TOOLS_URL=$2 ;;
    --ami-tools-sha256) AMI_TOOLS_SHA256=$2 ;;
    *) usage_error "unknown argument '$1'" ;;
    esac
    shift 2
  done
  [[ $VIRTUALIZATION =~ ^(hvm|paravirtual)$ ]] || usage_error "--virtualization-type must be hvm or paravirtual"
  [[ $ARCHITECTURE =~ ^(x86_64|i386|arm64)$ ]] || usage_error "--architecture must be x86_64, i386 or arm64"
  [[ $ACCOUNT_ID =~ ^[0-9]{12}$ ]] || usage_error "--account-id must be the 12-digit AWS account number"
  [[ $BUCKET =~ ^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$ ]] || usage_error "--bucket must be an S3 bucket name"
  [[ $PREFIX_SET == yes ]] || usage_error "--prefix is required (an S3 key prefix, may be empty)"
  PREFIX=${PREFIX#/} PREFIX=${PREFIX%/}
  [[ $PREFIX =~ ^[A-Za-z0-9/._-]*$ ]] || usage_error "--prefix may contain letters, digits and / . _ -"
  [[ $REGION =~ ^[a-z]{2}(-[a-z]+)+-[0-9]+$ ]] || usage_error "--region must be a region name such as us-east-1"
  [[ -n $CERT_PARAMETER && -n $KEY_PARAMETER ]] || usage_error "--cert-parameter and --key-parameter are required"
  [[ $BUNDLE_NAME =~ ^[A-Za-z0-9._-]+$ ]] || usage_error "--bundle-name may contain letters, digits and . _ -"
  [[ $INSTALL =~ ^(true|false)$ ]] || usage_error "--install-prerequisites must be true or false"
  [[ $DESTINATION == auto || $DESTINATION == /* ]] || usage_error "--destination must be auto or an absolute path"
  if [[ $AMI_TOOLS_URL == "$DEFAULT_AMI_TOOLS_URL" ]]; then
    AMI_TOOLS_SHA256=${AMI_TOOLS_SHA256:-$DEFAULT_AMI_TOOLS_SHA256}
  fi
  [[ $AMI_TOOLS_SHA256 =~ ^[0-9a-f]{64}$ ]] || usage_error "--ami-tools-url needs --ami-tools-sha256 (the zip's SHA-256, 64 hex digits)"
  local path service
  for path in $EXCLUDES; do
    [[ $path == /* && $path != *,* ]] || usage_error "--exclude takes absolute paths without commas, got '$path'"
  done
  for service in $STOP_SERVICES; do
    [[ $service =~ ^[A-Za-z0-9@._:-]+$ ]] || usage_error "--stop-services: '$service' is not a service name"
  done
  if [[ $VIRTUALIZATION == hvm ]]; then
    [[ $ROOT_DEVICE =~ ^/dev/(sda1|xvda)$ ]] || usage_error "--root-device-name must be /dev/sda1 or /dev/xvda"
    PARTITION=${PARTITION:-mbr}
    [[ $PARTITION =~ ^(mbr|gpt)$ ]] || usage_error "--partition must be mbr or gpt"
  else
    [[ -z $PARTITION || $PARTITION == none ]] || usage_error "--partition applies to hvm only: a paravirtual image is a bare filesystem"
    PARTITION=none
  fi
}

# --- running tools ----------------------------------------------------------------------------

# run_tool NAME COMMAND...: output to $WORK/NAME.log (the tools are chatty: one line per part);
# on failure the last lines go to stdout. Returns the command's exit code.
run_tool() {
  local name=$1 rc=0
  shift
  "$@" >"$WORK/$name.log" 2>&1 </dev/null || rc=$?
  if ((rc != 0)); then
    printf '%s failed (exit %s); its last lines:\n' "$name" "$rc"
    tail -n 20 "$WORK/$name.log" | tr -d '\r' | sed 's/^/  | /'
  fi
  return "$rc"
}

# The line of a tool's log that says what went wrong (for the ::fail line and the hints).
error_line() {
  local line
  line=$(tr -d '\r' <"$1" | grep -v '^Unable to read instance meta-data' |
    grep -iE "error|fail|couldn.t|unable|invalid|denied|no space|not found|cannot|expired" | tail -n 1) || true
  [[ -n $line ]] || line=$(tr -d '\r' <"$1" | grep -v '^[[:space:]]*$' | tail -n 1) || true
  printf '%s' "${line:0:300}"
}

# --- main -------------------------------------------------------------------------------------

on_exit() {
  local rc=$?
  set +e
  ((${#STOPPED[@]} > 0)) && restart_services
  [[ -n $BUNDLE_DIR && -d $BUNDLE_DIR ]] && rm -rf -- "$BUNDLE_DIR"
  [[ -n $WORK && -d $WORK ]] && rm -rf -- "$WORK"
  journal_end
  exit "$rc"
}

main() {
  parse_args "$@"
  trap on_exit EXIT
  trap 'exit 143' TERM
  trap 'exit 130' INT
  [[ -n $I2E_ROOT || $(id -u) == 0 ]] || fail "bundle.sh must run as root (ec2-bundle-vol mounts and copies the root filesystem)"

  progress "checking the instance"
  check_efi
  if [[ $FIX_MENU_LST == yes ]]; then check_menu_lst later; else check_menu_lst no; fi
  check_space "$DESTINATION"

  make_work_dir
  if find_ami_tools; then ensure_prerequisites; else ensure_prerequisites unzip; fi
  ensure_ami_tools
  check_instance_profile
  choose_inherit

  progress "reading the X.509 certificate and key from SSM into $WORK"
  fetch_parameter "$CERT_PARAMETER" "$WORK/cert.pem"
  fetch_parameter "$KEY_PARAMETER" "$WORK/pk.pem"

  BUNDLE_DIR=$(mktemp -d "$CHOSEN_DESTINATION/i2e-bundle.XXXXXX")
  journal_add "dir $BUNDLE_DIR"
  result bundle_destination "$BUNDLE_DIR"
  local excludes="$WORK,$BUNDLE_DIR" path
  for path in $EXCLUDES; do excludes+=",$path"; done
  local -a flags=(-P "$PARTITION")
  if [[ $VIRTUALIZATION == hvm ]]; then
    local disk=${ROOT_DEVICE#/dev/}
    disk=${disk%1}
    flags+=(-B "ami=$disk,root=$ROOT_DEVICE")
    result block_device_mapping "ami=$disk,root=$ROOT_DEVICE"
  fi
  result partition "$PARTITION"

  if [[ $FIX_MENU_LST == yes && $MENU_LST_MATCHES == no ]]; then
    fix_kernel_lines "$MENU_LST_CONFIG"
    progress "rewrote the kernel arguments in ${MENU_LST_CONFIG#"$I2E_ROOT"}"
  fi
  stop_services
  progress "bundling / into $BUNDLE_DIR with ec2-bundle-vol (this takes a while)"
  local rc=0
  run_tool ec2-bundle-vol ec2-bundle-vol -k "$WORK/pk.pem" -c "$WORK/cert.pem" -u "$ACCOUNT_ID" \
    -r "$ARCHITECTURE" -d "$BUNDLE_DIR" -p "$BUNDLE_NAME" -e "$excludes" --batch --no-filter \
    ${INHERIT_FLAGS[@]+"${INHERIT_FLAGS[@]}"} ${flags[@]+"${flags[@]}"} || rc=$?
  restart_services
  ((rc == 0)) || fail "ec2-bundle-vol failed (exit $rc): $(error_line "$WORK/ec2-bundle-vol.log")" "$EXIT_BUNDLE"

  local manifest="$BUNDLE_DIR/$BUNDLE_NAME.manifest.xml"
  [[ -f $manifest ]] || fail "ec2-bundle-vol finished but wrote no $BUNDLE_NAME.manifest.xml" "$EXIT_BUNDLE"
  result image_bytes "$(grep -o '<size>[0-9]*</size>' "$manifest" | head -n 1 | tr -dc '0-9')"
  result bundled_bytes "$(grep -o '<bundled_size>[0-9]*</bundled_size>' "$manifest" | head -n 1 | tr -dc '0-9')"
  result part_count "$(grep -o "<parts count=.[0-9]*" "$manifest" | head -n 1 | tr -dc '0-9')"

  local location=$BUCKET${PREFIX:+/$PREFIX}
  upload_bundle "$manifest" "$location"
  result image_location "$location/$BUNDLE_NAME.manifest.xml"
  result manifest_location "s3://$location/$BUNDLE_NAME.manifest.xml"
  progress "bundle uploaded"
}

if [[ ${BASH_SOURCE[0]} == "$0" ]]; then
  main "$@"
fi
