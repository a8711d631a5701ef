#!/usr/bin/env bash
# Checks made before bundling an instance-store instance; sourced by bundle.sh, and runnable
# alone as a dry run:
#
#   bash bundle-checks.sh [--check all|efi|menu-lst|space] [--destination auto|DIR] [--fix-menu-lst]
#
# - efi:      refuses an EFI partition in /etc/fstab (exit 4);
# - menu-lst: compares /proc/cmdline with the default kernel line of /boot/grub/menu.lst (or
#             grub.conf), reports the difference, rewrites the kernel arguments only with
#             --fix-menu-lst (keeping a backup); refuses a machine without either file (exit 4);
# - space:    picks the bundle destination (auto: /mnt, the instance-store scratch disk, else
#             /tmp) with three times the used size of / free, or fails saying how much (exit 5).
#
# Every system path is read under $I2E_ROOT (unset on instances), so tests point the checks at
# fixture files. Output follows common.sh: ::result lines, progress lines, one ::fail line.
# shellcheck shell=bash source-path=SCRIPTDIR

# Exit codes shared with bundle.sh (which reads the ones not used here).
# shellcheck disable=SC2034
{
  EXIT_USAGE=2
  EXIT_PREREQUISITE=3
  EXIT_REFUSED=4
  EXIT_SPACE=5
  EXIT_KEYS=6
  EXIT_BUNDLE=7
  EXIT_UPLOAD=8
}

I2E_ROOT=${I2E_ROOT:-}

# Filled by the checks, for bundle.sh.
CHOSEN_DESTINATION=''
ROOT_USED_BYTES=0
SPACE_NEEDED_BYTES=0
MENU_LST_CONFIG=''
MENU_LST_MATCHES=''
MENU_LST_DIFFERENCES=''

gib() { awk -v b="$1" 'BEGIN { printf "%.1f GiB", b / 1073741824 }'; }

# --- EFI --------------------------------------------------------------------------------------

check_efi() {
  local fstab="$I2E_ROOT/etc/fstab" spec mount type _
  if [[ -f $fstab ]]; then
    while read -r spec mount type _; do
      [[ -z $spec || $spec == \#* ]] && continue
      if [[ $mount == /boot/efi || ($type == vfat && $mount == /boot*) || $spec == LABEL=UEFI ]]; then
        fail "/etc/fstab mounts an EFI partition ($spec on $mount): ec2-bundle-vol copies only the root filesystem and boots the image with GRUB legacy, which cannot boot EFI, so the bundled image would not boot; comment out that line while bundling (AWS's procedure for Ubuntu 14.04 and later) and restore it afterwards" "$EXIT_REFUSED"
      fi
    done <"$fstab"
  fi
  result efi_partition none
}

# --- menu.lst ---------------------------------------------------------------------------------

grub_config() {
  local file
  for file in "$I2E_ROOT/boot/grub/menu.lst" "$I2E_ROOT/boot/grub/grub.conf"; do
    [[ -f $file ]] && { printf '%s\n' "$file"; return 0; }
  done
  return 1
}

# The arguments of a "kernel [--opts] PATH ARGS..." line, one per line.
kernel_line_args() {
  local -a tokens
  read -r -a tokens <<<"$1"
  local i=1
  while [[ ${tokens[i]:-} == --* ]]; do i=$((i + 1)); done
  if ((${#tokens[@]} > i + 1)); then printf '%s\n' ${tokens[@]+"${tokens[@]:i+1}"}; fi
}

# Arguments worth comparing: BOOT_IMAGE is added by GRUB 2 and never in menu.lst, and root=
# may be spelt UUID= or LABEL= (the tool keeps both on the new filesystem).
comparable() { case ${1%%=*} in BOOT_IMAGE | root) return 1 ;; esac; }

# Prints the kernel line of the entry that "default N" selects (GRUB counts from 0).
default_kernel_line() {
  local config=$1 n
  n=$(awk '/^[[:space:]]*default[[:space:]=]/ { n = 0; if (match($0, /[0-9]+/)) n = substr($0, RSTART, RLENGTH) } END { print n + 0 }' "$config")
  grep -E '^[[:space:]]*kernel[[:space:]]' "$config" | awk -v n="$n" 'NR == n + 1 { print; found = 1 } END { exit !found }'
}

# Sets MENU_LST_DIFFERENCES (";"-joined); returns 0 when there are none.
compare_cmdline() {
  local config=$1 cmdline line token key
  local -a want=() have=()
  local -A have_value=() want_value=() seen=()
  read -r cmdline <"$I2E_ROOT/proc/cmdline" || true
  read -r -a want <<<"$cmdline"
  line=$(default_kernel_line "$config") || line=
  mapfile -t have < <(kernel_line_args "$line")
  for token in ${have[@]+"${have[@]}"}; do
    key=${token%%=*}
    have_value[$key]=${token#"$key"}
  done
  for token in ${want[@]+"${want[@]}"}; do
    key=${token%%=*}
    want_value[$key]=${token#"$key"}
  done
  MENU_LST_DIFFERENCES=''
  for token in ${want[@]+"${want[@]}"}; do
    key=${token%%=*}
    comparable "$key" || continue
    [[ -n ${seen[$key]:-} ]] && continue
    seen[$key]=1
    if [[ -z ${have_value[$key]+set} ]]; then
      MENU_LST_DIFFERENCES+="${MENU_LST_DIFFERENCES:+; }$key${want_value[$key]} (missing in menu.lst)"
    elif [[ ${have_value[$key]} != "${want_value[$key]}" ]]; then
      MENU_LST_DIFFERENCES+="${MENU_LST_DIFFERENCES:+; }$key${want_value[$key]} (menu.lst: $key${have_value[$key]})"
    fi
  done
  [[ -z $MENU_LST_DIFFERENCES ]]
}

# Rewrites the arguments of every Linux kernel line (vmlinu*): arguments named on the running
# kernel's command line are replaced by its values, the others (root=, single…) are kept.
fix_kernel_lines() {
  local config=$1 cmdline line prefix rest token
  local -a want=() keep=() args=()
  local -A replaced=()
  read -r cmdline <"$I2E_ROOT/proc/cmdline" || true
  read -r -a want <<<"$cmdline"
  for token in ${want[@]+"${want[@]}"}; do comparable "$token" && replaced[${token%%=*}]=1; done
  local backup
  backup="$config.i2e-backup-$(date -u +%Y%m%dT%H%M%SZ)"
  cp -p "$config" "$backup"
  local tmp="$config.i2e-new"
  : >"$tmp"
  while IFS= read -r line || [[ -n $line ]]; do
    if [[ $line =~ ^([[:space:]]*kernel[[:space:]]+(--[^[:space:]]+[[:space:]]+)*[^[:space:]]*/vmlinu[^[:space:]]*)(.*)$ ]]; then
      prefix=${BASH_REMATCH[1]}
      rest=${BASH_REMATCH[3]}
      keep=()
      read -r -a args <<<"$rest"
      for token in ${args[@]+"${args[@]}"}; do [[ -n ${replaced[${token%%=*}]:-} ]] || keep+=("$token"); done
      for token in ${want[@]+"${want[@]}"}; do comparable "$token" && keep+=("$token"); done
      line="$prefix ${keep[*]+${keep[*]}}"
    fi
    printf '%s\n' "$line" >>"$tmp"
  done <"$config"
  # cat, not mv: keeps the file's owner and mode and any grub.conf -> menu.lst link
  cat "$tmp" >"$config"
  rm -f "$tmp"
  result menu_lst_fixed yes
  result menu_lst_backup "$backup"
}

# check_menu_lst FIX: FIX is yes (rewrite now), no (report only) or later (bundle.sh rewrites
# with fix_kernel_lines "$MENU_LST_CONFIG" once nothing else can refuse the run).
check_menu_lst() {
  local fix=$1
  MENU_LST_CONFIG=$(grub_config) || fail "neither /boot/grub/menu.lst nor /boot/grub/grub.conf exists: the bundled image boots with GRUB legacy (PV-GRUB for paravirtual) and would not boot without one; create it (on Ubuntu: apt-get install grub-legacy-ec2) and bundle again" "$EXIT_REFUSED"
  local shown=${MENU_LST_CONFIG#"$I2E_ROOT"}
  if compare_cmdline "$MENU_LST_CONFIG"; then
    MENU_LST_MATCHES=yes
    result cmdline_matches_menu_lst yes
    return 0
  fi
  MENU_LST_MATCHES=no
  progress "the kernel command line differs from the default entry of $shown: $MENU_LST_DIFFERENCES"
  result cmdline_matches_menu_lst no
  result menu_lst_differences "$MENU_LST_DIFFERENCES"
  case $fix in
  yes)
    fix_kernel_lines "$MENU_LST_CONFIG"
    progress "rewrote the kernel arguments in $shown"
    ;;
  later) progress "the kernel arguments in $shown will be rewritten before bundling" ;;
  *) progress "the image boots with the arguments in $shown; pass --fix-menu-lst (fix-menu-lst: true) to copy the running ones into it" ;;
  esac
}

# --- space ------------------------------------------------------------------------------------

# df_kb PATH COLUMN: a column of POSIX df output in KiB (3 = used, 4 = available).
df_kb() { df -P -k "$1" 2>/dev/null | awk -v c="$2" 'NR == 2 { print $c }'; }

# The bundle holds, at its peak, the image (the used size), the encrypted archive and its
# parts (each up to the used size when the data does not compress).
check_space() {
  local destination=$1 used_kb need_kb avail_kb dir report=
  used_kb=$(df_kb "$I2E_ROOT/" 3)
  [[ $used_kb =~ ^[0-9]+$ ]] || fail "could not read the used size of / from df" "$EXIT_SPACE"
  need_kb=$((used_kb * 3))
  ROOT_USED_BYTES=$((used_kb * 1024))
  SPACE_NEEDED_BYTES=$((need_kb * 1024))
  result root_used_bytes "$ROOT_USED_BYTES"
  result space_needed_bytes "$SPACE_NEEDED_BYTES"
  if ((used_kb > 10 * 1024 * 1024)); then
    progress "warning: / uses $(gib "$ROOT_USED_BYTES"); ec2-bundle-vol images hold at most 10 GiB (-s 10240), so exclude data or clean up first"
  fi
  local -a candidates
  if [[ $destination == auto ]]; then
    candidates=("$I2E_ROOT/mnt" "$I2E_ROOT/tmp")
  else
    [[ -d $destination ]] || fail "the bundle destination $destination does not exist (need $(gib "$SPACE_NEEDED_BYTES") free there)" "$EXIT_SPACE"
    candidates=("$destination")
  fi
  for dir in ${candidates[@]+"${candidates[@]}"}; do
    [[ -d $dir ]] || continue
    avail_kb=$(df_kb "$dir" 4)
    [[ $avail_kb =~ ^[0-9]+$ ]] || continue
    if ((avail_kb >= need_kb)); then
      CHOSEN_DESTINATION=$dir
      return 0
    fi
    report+="${report:+, }${dir#"$I2E_ROOT"} has $(gib $((avail_kb * 1024)))"
  done
  fail "not enough free space for the bundle: it needs $(gib "$SPACE_NEEDED_BYTES") (three times the $(gib "$ROOT_USED_BYTES") used on /), but ${report:-no destination is available}; attach and mount an EBS volume and pass its mount point as destination" "$EXIT_SPACE"
}

# --- alone ------------------------------------------------------------------------------------

checks_main() {
  local which=all destination=auto fix=no
  while (($# > 0)); do
    case $1 in
    --check) which=${2:?--check needs a value}; shift 2 ;;
    --destination) destination=${2:?--destination needs a value}; shift 2 ;;
    --fix-menu-lst) fix=yes; shift ;;
    *) fail "unknown argument '$1' (usage: bundle-checks.sh [--check all|efi|menu-lst|space] [--destination auto|DIR] [--fix-menu-lst])" "$EXIT_USAGE" ;;
    esac
  done
  case $which in
  efi) check_efi ;;
  menu-lst) check_menu_lst "$fix" ;;
  space) check_space "$destination" && result bundle_destination "$CHOSEN_DESTINATION" ;;
  all) check_efi && check_menu_lst "$fix" && check_space "$destination" && result bundle_destination "$CHOSEN_DESTINATION" ;;
  *) fail "unknown check '$which' (all, efi, menu-lst or space)" "$EXIT_USAGE" ;;
  esac
}

if [[ ${BASH_SOURCE[0]} == "$0" ]]; then
  set -euo pipefail
  . "$(dirname "${BASH_SOURCE[0]}")/common.sh"
  checks_main "$@"
fi
