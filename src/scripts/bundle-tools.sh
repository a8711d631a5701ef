#!/usr/bin/env bash
# bundle-tools.sh: what bundle.sh needs installed before it bundles, sourced by it, never run:
# the prerequisites (ruby with openssl, curl, rsync; for hvm sgdisk, kpartx, parted, GRUB legacy)
# found or, with --install-prerequisites, installed with the package manager, and Amazon's AMI tools
# (ec2-bundle-vol 1.5 or later) found or downloaded, checked against their SHA-256 and unpacked.
# Runs on source instances: bash 4.2 and later, and Ubuntu 12.04's commands
# (__tests__/scripts/source-commands.test.ts).
# shellcheck shell=bash disable=SC2154 # the settings and EXIT_* codes: set by bundle.sh and bundle-checks.sh

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
