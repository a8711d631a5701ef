#!/usr/bin/env bash
# Bundles the running instance-store instance into an S3 bundle with Amazon's AMI tools.
# Runs as root through SSM Run Command, with common.sh and bundle-checks.sh beside it:
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

# --- prerequisites ----------------------------------------------------------------------------

detect_package_manager() {
  local pm
  for pm in apt-get dnf yum; do
    command -v "$pm" >/dev/null 2>&1 && { PACKAGE_MANAGER=$pm; return 0; }
  done
  PACKAGE_MANAGER=
}

grub_legacy_present() {
  command -v grub >/dev/null 2>&1 || return 1
  grub --version 2>&1 </dev/null | grep -q '0\.9[0-9]' || return 1
  # ec2-bundle-vol copies the stages from /usr/**/grub*/**/stage1 of the volume
  compgen -G "$I2E_ROOT/usr/lib/grub/*/stage1" >/dev/null ||
    compgen -G "$I2E_ROOT/usr/share/grub/*/stage1" >/dev/null ||
    [[ -f $I2E_ROOT/usr/lib/grub/stage1 ]]
}

has_piece() {
  case $1 in
  ruby-openssl) ruby -ropenssl -e 'exit 0' ;;
  grub-legacy) grub_legacy_present ;;
  *) command -v "$1" ;;
  esac >/dev/null 2>&1 </dev/null
}

describe_piece() {
  case $1 in
  ruby-openssl) echo "ruby's openssl library" ;;
  grub-legacy) echo "GRUB legacy (grub 0.9x with its stage files)" ;;
  sgdisk) echo "gdisk (sgdisk)" ;;
  *) echo "$1" ;;
  esac
}

package_for() {
  case $PACKAGE_MANAGER:$1 in
  apt-get:ruby | apt-get:ruby-openssl) echo ruby-full ;;
  *:ruby-openssl) echo ruby-libs ;;
  *:sgdisk) echo gdisk ;;
  *:grub-legacy) echo grub ;;
  *) echo "$1" ;;
  esac
}

install_command() {
  case $PACKAGE_MANAGER in
  apt-get) echo "apt-get update && apt-get install -y $*" ;;
  dnf | yum) echo "$PACKAGE_MANAGER install -y $*" ;;
  *) echo "install $* with the system's package manager" ;;
  esac
}

install_packages() {
  local package
  if [[ $PACKAGE_MANAGER == apt-get ]]; then
    run_tool apt-get-update apt-get update -q || true
  fi
  # one at a time: an unknown name (awscli on newer Ubuntu) must not block the others
  for package in "$@"; do
    progress "installing $package with $PACKAGE_MANAGER"
    case $PACKAGE_MANAGER in
    apt-get) DEBIAN_FRONTEND=noninteractive run_tool "install-$package" apt-get install -y -q "$package" ||
      { [[ $package == grub ]] && DEBIAN_FRONTEND=noninteractive run_tool install-grub-legacy apt-get install -y -q grub-legacy; } || true ;;
    *) run_tool "install-$package" "$PACKAGE_MANAGER" install -y "$package" || true ;;
    esac
  done
}

ensure_prerequisites() {
  local -a pieces=(ruby ruby-openssl openssl curl rsync "$@") missing=() packages=()
  local piece package descriptions=
  [[ $VIRTUALIZATION == hvm ]] && pieces+=(sgdisk kpartx parted grub-legacy)
  for piece in ${pieces[@]+"${pieces[@]}"}; do has_piece "$piece" || missing+=("$piece"); done
  ((${#missing[@]} == 0)) && return 0
  detect_package_manager
  for piece in ${missing[@]+"${missing[@]}"}; do
    package=$(package_for "$piece")
    [[ " ${packages[*]+${packages[*]}} " == *" $package "* ]] || packages+=("$package")
  done
  if [[ $INSTALL == true && -n $PACKAGE_MANAGER ]]; then
    install_packages ${packages[@]+"${packages[@]}"}
    local -a still=()
    for piece in ${missing[@]+"${missing[@]}"}; do has_piece "$piece" || still+=("$piece"); done
    missing=(${still[@]+"${still[@]}"})
    ((${#missing[@]} == 0)) && return 0
  fi
  for piece in ${missing[@]+"${missing[@]}"}; do descriptions+="${descriptions:+, }$(describe_piece "$piece")"; done
  local how
  how="install with: $(install_command ${packages[@]+"${packages[@]}"})"
  [[ $INSTALL == true ]] && how="installing ${packages[*]+${packages[*]}} with ${PACKAGE_MANAGER:-no package manager} did not provide them; $how"
  [[ $INSTALL == false ]] && how+=" (or set install-prerequisites: true)"
  fail "missing on this instance: $descriptions; $how" "$EXIT_PREREQUISITE"
}

# --- AMI tools --------------------------------------------------------------------------------

use_ami_tools() {
  export EC2_AMITOOL_HOME=$1
  export PATH="$1/bin:$PATH"
}

ami_tools_version() { ec2-bundle-vol --version 2>/dev/null </dev/null | awk 'NR == 1 { print $1 }'; }

version_at_least_1_5() { [[ $1 =~ ^([0-9]+)\.([0-9]+) ]] && ((BASH_REMATCH[1] > 1 || (BASH_REMATCH[1] == 1 && BASH_REMATCH[2] >= 5))); }

# Puts usable tools (>= 1.5) first on PATH: those already on PATH, else Amazon Linux's
# /opt/aws/amitools/ec2, else the newest /opt/ec2-ami-tools-* (where install_ami_tools unpacks).
# Otherwise sets AMI_TOOLS_PROBLEM and returns 1.
find_ami_tools() {
  local version home
  AMI_TOOLS_PROBLEM="ec2-ami-tools are not installed"
  if command -v ec2-bundle-vol >/dev/null 2>&1 && command -v ec2-upload-bundle >/dev/null 2>&1; then
    version=$(ami_tools_version)
    version_at_least_1_5 "$version" && return 0
    AMI_TOOLS_PROBLEM="ec2-ami-tools ${version:-of unknown version} ($(command -v ec2-bundle-vol)) are older than 1.5"
  fi
  local -a homes=()
  [[ -d $I2E_ROOT/opt/aws/amitools/ec2/bin ]] && homes+=("$I2E_ROOT/opt/aws/amitools/ec2")
  mapfile -t -O "${#homes[@]}" homes < <(compgen -G "$I2E_ROOT/opt/ec2-ami-tools-*" | sort -V -r)
  for home in ${homes[@]+"${homes[@]}"}; do
    [[ -x $home/bin/ec2-bundle-vol ]] || continue
    version=$("$home/bin/ec2-bundle-vol" --version 2>/dev/null </dev/null | awk 'NR == 1 { print $1 }')
    if version_at_least_1_5 "$version"; then
      use_ami_tools "$home"
      return 0
    fi
  done
  return 1
}

install_ami_tools() {
  local zip="$WORK/ec2-ami-tools.zip"
  progress "downloading $AMI_TOOLS_URL"
  curl -fsSL --retry 3 -o "$zip" "$AMI_TOOLS_URL" </dev/null ||
    fail "could not download the AMI tools from $AMI_TOOLS_URL" "$EXIT_PREREQUISITE"
  local sum
  sum=$(sha256sum "$zip" | cut -d' ' -f1)
  [[ $sum == "$AMI_TOOLS_SHA256" ]] ||
    fail "the AMI tools downloaded from $AMI_TOOLS_URL have SHA-256 $sum, not the expected $AMI_TOOLS_SHA256: not installed" "$EXIT_PREREQUISITE"
  mkdir -p "$I2E_ROOT/opt"
  local unpacked="$WORK/ami-tools"
  mkdir -p "$unpacked"
  run_tool unzip unzip -q -o "$zip" -d "$unpacked" || fail "could not unpack $AMI_TOOLS_URL" "$EXIT_PREREQUISITE"
  # Ruby 3.2 removed File.exists? (the tools call it); File.exist? is there since Ruby 1.8.
  local file
  while IFS= read -r file; do
    sed -i 's/File\.exists?/File.exist?/g' "$file"
  done < <(grep -rl --include='*.rb' 'File\.exists?' "$unpacked" || true)
  cp -R "$unpacked/." "$I2E_ROOT/opt/"
  find_ami_tools || fail "$AMI_TOOLS_URL did not give ec2-ami-tools 1.5 or later under /opt: $AMI_TOOLS_PROBLEM" "$EXIT_PREREQUISITE"
}

ensure_ami_tools() {
  if ! find_ami_tools; then
    [[ $INSTALL == true ]] ||
      fail "$AMI_TOOLS_PROBLEM; install 1.5 or later: curl -fsSLo /tmp/ec2-ami-tools.zip $AMI_TOOLS_URL && echo '$AMI_TOOLS_SHA256  /tmp/ec2-ami-tools.zip' | sha256sum -c && unzip -q /tmp/ec2-ami-tools.zip -d /opt (or set install-prerequisites: true)" "$EXIT_PREREQUISITE"
    install_ami_tools
  fi
  result ami_tools_version "$(ami_tools_version)"
}

# --- instance metadata (IMDSv2) ---------------------------------------------------------------

imds_token() {
  curl -sf -X PUT -H 'X-aws-ec2-metadata-token-ttl-seconds: 21600' --connect-timeout 2 --max-time 10 \
    "$IMDS/latest/api/token" </dev/null
}

# The token goes to curl through its config on stdin, not through its arguments.
imds_get() {
  printf 'header = "X-aws-ec2-metadata-token: %s"\n' "$IMDS_TOKEN" |
    curl -sf --connect-timeout 2 --max-time 10 --config - "$IMDS/latest/$1"
}

check_instance_profile() {
  IMDS_TOKEN=$(imds_token) || fail "the instance metadata service (IMDSv2) did not answer" "$EXIT_KEYS"
  INSTANCE_ROLE=$(imds_get meta-data/iam/security-credentials/ | head -n 1) || INSTANCE_ROLE=
  [[ -n $INSTANCE_ROLE ]] ||
    fail "the instance has no instance profile: ec2-upload-bundle needs its credentials to write to s3://$BUCKET" "$EXIT_KEYS"
}

# ec2-bundle-vol copies kernel, ramdisk, product codes and mappings from the metadata with
# IMDSv1 and stops when that is refused; registration sets them anyway.
choose_inherit() {
  local code
  code=$(curl -s -o /dev/null -w '%{http_code}' --connect-timeout 2 --max-time 10 "$IMDS/latest/meta-data/" </dev/null) || code=000
  if [[ $code == 200 ]]; then
    INHERIT_FLAGS=()
    result inherit_metadata yes
  else
    progress "the instance refuses IMDSv1 (HTTP $code): bundling with --no-inherit"
    INHERIT_FLAGS=(--no-inherit)
    result inherit_metadata no
  fi
}

json_string() {
  local pattern="\"$1\"[[:space:]]*:[[:space:]]*\"([^\"]*)\""
  [[ $2 =~ $pattern ]] && printf '%s' "${BASH_REMATCH[1]}"
}

# --- key material -----------------------------------------------------------------------------

make_work_dir() {
  local base
  for base in "$I2E_ROOT/dev/shm" "$I2E_ROOT/tmp"; do
    if [[ -d $base && -w $base ]] && WORK=$(mktemp -d "$base/i2e-keys.XXXXXX"); then
      journal_add "dir $WORK"
      chmod 700 "$WORK"
      return 0
    fi
  done
  fail "could not create a private folder for the key material in /dev/shm or /tmp"
}

# Reads the instance profile's current credentials into CRED_KEY/SECRET/TOKEN, every time: EC2
# rotates them ("new credentials at least five minutes before the expiration of the old").
read_credentials() {
  local json
  json=$(imds_get "meta-data/iam/security-credentials/$INSTANCE_ROLE") ||
    fail "could not read the credentials of the instance profile $INSTANCE_ROLE from IMDSv2" "$EXIT_KEYS"
  CRED_KEY=$(json_string AccessKeyId "$json") || CRED_KEY=
  CRED_SECRET=$(json_string SecretAccessKey "$json") || CRED_SECRET=
  CRED_TOKEN=$(json_string Token "$json") || CRED_TOKEN=
  [[ -n $CRED_KEY && -n $CRED_SECRET ]] || fail "the instance profile $INSTANCE_ROLE returned no usable credentials" "$EXIT_KEYS"
}

forget_credentials() { CRED_KEY='' CRED_SECRET='' CRED_TOKEN=''; }

# The parameter through ssm-get-parameter.rb (no AWS CLI on old sources), credentials in its
# environment only.
fetch_parameter() {
  local name=$1 file=$2
  read_credentials
  if ! (umask 077 && AWS_ACCESS_KEY_ID=$CRED_KEY AWS_SECRET_ACCESS_KEY=$CRED_SECRET AWS_SESSION_TOKEN=$CRED_TOKEN \
    ruby "$SCRIPT_DIR/ssm-get-parameter.rb" "$REGION" "$name" >"$file" 2>"$WORK/ssm.err" </dev/null); then
    forget_credentials
    fail "could not read the SecureString parameter $name: $(error_line "$WORK/ssm.err")" "$EXIT_KEYS"
  fi
  forget_credentials
  grep -q -- '-----BEGIN' "$file" || fail "the parameter $name does not hold PEM text" "$EXIT_KEYS"
}

# --- services ---------------------------------------------------------------------------------

service_tool() {
  if [[ -d $I2E_ROOT/run/systemd/system ]] && command -v systemctl >/dev/null 2>&1; then
    echo systemctl
  elif command -v service >/dev/null 2>&1; then
    echo service
  else
    echo init.d
  fi
}

service_running() {
  local out
  case $(service_tool) in
  systemctl) systemctl is-active --quiet "$1" ;;
  # upstart's "service x status" exits 0 with "stop/waiting"
  service) out=$(service "$1" status 2>&1) && [[ $out != *stop/waiting* ]] ;;
  init.d) [[ -x $I2E_ROOT/etc/init.d/$1 ]] && "$I2E_ROOT/etc/init.d/$1" status ;;
  esac >/dev/null 2>&1 </dev/null
}

service_do() {
  case $(service_tool) in
  systemctl) systemctl "$2" "$1" ;;
  service) service "$1" "$2" ;;
  init.d) "$I2E_ROOT/etc/init.d/$1" "$2" ;;
  esac >>"$WORK/services.log" 2>&1 </dev/null
}

# Each one is written to the undo journal before it is stopped: if SSM kills this script
# (SIGKILL, no trap), cleanup.sh starts it again.
stop_services() {
  local service tool
  tool=$(service_tool)
  for service in $STOP_SERVICES; do
    if [[ $service == epmd ]]; then
      # the Erlang port mapper is no service: it outlives rabbitmq-server, so it is killed
      if pgrep -x epmd >/dev/null 2>&1; then
        journal_add "service epmd epmd"
        pkill -x epmd || fail "could not stop epmd"
        STOPPED+=(epmd)
      fi
    elif service_running "$service"; then
      journal_add "service $tool $service"
      service_do "$service" stop || fail "could not stop $service: $(error_line "$WORK/services.log")"
      STOPPED+=("$service")
    else
      progress "$service is not running; leaving it alone"
    fi
  done
  result services_stopped "$(IFS=,; echo "${STOPPED[*]+${STOPPED[*]}}")"
}

# In reverse order; a service that does not come back is a warning, never the failure.
restart_services() {
  local i service restarted=() failed=() tool
  tool=$(service_tool)
  for ((i = ${#STOPPED[@]} - 1; i >= 0; i--)); do
    service=${STOPPED[i]}
    if [[ $service == epmd ]]; then
      if epmd -daemon >/dev/null 2>&1 </dev/null; then restarted+=(epmd); else failed+=(epmd); fi
      journal_drop "service epmd epmd"
    else
      if service_do "$service" start; then restarted+=("$service"); else failed+=("$service"); fi
      journal_drop "service $tool $service"
    fi
  done
  STOPPED=()
  result services_restarted "$(IFS=,; echo "${restarted[*]+${restarted[*]}}")"
  if ((${#failed[@]} > 0)); then
    progress "warning: could not start again: ${failed[*]+${failed[*]}}"
    result services_not_restarted "$(IFS=,; echo "${failed[*]+${failed[*]}}")"
  fi
}

# --- credentials for ec2-upload-bundle --------------------------------------------------------

# Ruby preloaded into ec2-upload-bundle (RUBYOPT=-rFILE): when no -a is given the tool calls
# S3ToolParameters#get_creds_from_instance_profile; once that class is loaded, the method first
# takes the credentials from the environment. Written for Ruby 1.8.7 and later.
write_credentials_shim() {
  cat >"$1" <<'RUBY'
module I2eCredentialsFromEnvironment
  def self.install
    return if @installed || !defined?(::S3ToolParameters)
    return unless ::S3ToolParameters.method_defined?(:get_creds_from_instance_profile)
    @installed = true
    ::S3ToolParameters.class_eval do
      alias_method :i2e_imdsv1_credentials, :get_creds_from_instance_profile
      def get_creds_from_instance_profile
        key = ENV['AWS_ACCESS_KEY_ID'].to_s
        secret = ENV['AWS_SECRET_ACCESS_KEY'].to_s
        return i2e_imdsv1_credentials if key.empty? || secret.empty?
        token = ENV['AWS_SESSION_TOKEN'].to_s
        @user = { 'aws_access_key_id' => key, 'aws_secret_access_key' => secret,
                  'aws_delegation_token' => (token.empty? ? nil : token) }
        @pass = secret
      end
    end
    $stderr.puts 'Using the instance-profile credentials passed in the environment.'
  end
end

module Kernel
  alias_method :i2e_require_without_credentials, :require
  def require(name)
    loaded = i2e_require_without_credentials(name)
    I2eCredentialsFromEnvironment.install
    loaded
  end
  private :require
end
RUBY
}

# ec2-upload-bundle gets no endpoint from "--region" alone for regions missing from its map.
s3_url_flags() {
  [[ $AMI_TOOLS_REGIONS == *" $REGION "* ]] && return 0
  local suffix=amazonaws.com
  [[ $REGION == cn-* ]] && suffix=amazonaws.com.cn
  printf '%s\n' --url "https://s3.$REGION.$suffix"
}

upload_bundle() {
  local manifest=$1 location=$2 shim="$WORK/credentials-from-env.rb" attempt rc=0
  local -a url=()
  mapfile -t url < <(s3_url_flags)
  write_credentials_shim "$shim"
  progress "uploading to s3://$location"
  for ((attempt = 1; attempt <= UPLOAD_ATTEMPTS; attempt++)); do
    read_credentials
    rc=0
    AWS_ACCESS_KEY_ID=$CRED_KEY AWS_SECRET_ACCESS_KEY=$CRED_SECRET AWS_SESSION_TOKEN=$CRED_TOKEN RUBYOPT="-r$shim${RUBYOPT:+ $RUBYOPT}" \
      run_tool ec2-upload-bundle ec2-upload-bundle -b "$location" -m "$manifest" --region "$REGION" \
      ${url[@]+"${url[@]}"} --retry --batch || rc=$?
    forget_credentials
    ((rc != 0)) || break
    # only a refusal for expired credentials is worth another try with fresh ones
    grep -qiE 'ExpiredToken|token has expired|RequestExpired|security token included in the request is expired' \
      "$WORK/ec2-upload-bundle.log" || break
    ((attempt < UPLOAD_ATTEMPTS)) && progress "the credentials expired during the upload: reading fresh ones and uploading again ($((attempt + 1)) of $UPLOAD_ATTEMPTS)"
  done
  if ((rc != 0)); then
    local extra=
    ((rc == 3)) && extra=" (the bucket may not exist, or exist and be owned by somebody else)"
    fail "ec2-upload-bundle failed (exit $rc)$extra: $(error_line "$WORK/ec2-upload-bundle.log")" "$EXIT_UPLOAD"
  fi
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
