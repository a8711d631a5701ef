#!/usr/bin/env bash
# cleanup.sh: undoes what a killed bundle.sh or convert.sh left on its instance.
#
#   cleanup.sh --journal /var/tmp/instance-to-ebs/ID.journal
#
# SSM ends a cancelled or timed-out command with SIGKILL of its whole process group
# (amazon-ssm-agent agent/executers/executers_unix.go:42-53, called from executers.go:325-351),
# so the scripts' exit traps never run. Each script writes, before every change it makes, how to
# undo it into the journal (common.sh: journal_add). The action sends this script as a second,
# short command after a cancel or a timeout (and the post step sends it after a killed job).
#
# In order:
#  1. Whatever still runs of the killed command (its process group, carrying I2E_RUN=ID in its
#     environment) is killed, so that nothing writes to the disk or S3 while it is undone. A
#     daemon the script started again has its own process group and is left alone.
#  2. The journal is undone from its last line to its first:
#       flush DEVICE    whatever is mounted from it, its partitions or loop devices over them is
#                       unmounted, those loops detached, then blockdev --flushbufs: detachable
#       mount PATH      unmounted (lazily if busy) and its directory removed
#       loop DEVICE     losetup -d
#       service T NAME  started again with T (systemctl, service, init.d, or epmd -daemon)
#       dir PATH        what is mounted under it unmounted, loop devices over its files detached
#                       (ec2-bundle-vol mounts its image under the bundle folder), then removed
#  3. The journal is removed, or keeps only the lines that could not be undone.
#
# Results: killed (process ids), services_restarted, services_not_restarted, removed, unmounted,
# detached, flushed, left (lines not undone). Exit 0 unless something could not be undone (1).
# Runs on source instances: bash 4.2 and later.
# shellcheck source-path=SCRIPTDIR
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"
I2E_ROOT=${I2E_ROOT:-}

journal='' run_id=''

# parse_args ARG...: sets journal (and run_id, its name: the I2E_RUN mark of the killed command).
parse_args() {
  while (($# > 0)); do
    case $1 in
    --journal) (($# >= 2)) || fail "--journal needs a value" 2; journal=$2; shift 2 ;;
    *) fail "unknown argument '$1' (usage: cleanup.sh --journal FILE)" 2 ;;
    esac
  done
  [[ $journal == /*.journal ]] || fail "--journal must be an absolute path ending in .journal" 2
  run_id=$(basename "$journal" .journal)
}

# The process group of a process, from /proc/PID/stat (field 5, after "pid (comm) state ppid").
# Builtins only: this runs for every process of the machine.
pgrp_of() {
  local stat group
  { read -r stat <"/proc/$1/stat"; } 2>/dev/null || return 1
  read -r _ _ group _ <<<"${stat##*) }"
  printf '%s' "$group"
}

# Processes of the killed command: in its process group and with its marker in their environment.
leftovers() {
  local group=$1 p pid
  for p in /proc/[0-9]*; do
    pid=${p#/proc/}
    [[ $pid != "$$" && $pid != "$BASHPID" ]] || continue
    [[ $(pgrp_of "$pid" || true) == "$group" ]] || continue
    { tr '\0' '\n' <"$p/environ"; } 2>/dev/null | grep -qxF "I2E_RUN=$run_id" && printf '%s\n' "$pid"
  done
  return 0
}

kill_leftovers() {
  local group pids killed='' i
  group=$(sed -n 's/^group \([0-9][0-9]*\)$/\1/p' "$journal" | head -n 1)
  [[ -n $group ]] || return 0
  for ((i = 0; i < 50; i++)); do
    pids=$(leftovers "$group")
    [[ -n $pids ]] || break
    # shellcheck disable=SC2086 # one id per word
    kill -9 $pids 2>/dev/null || true
    killed+="$pids"$'\n'
    sleep 0.2
  done
  [[ -z $(leftovers "$group") ]] || fail "processes of the cancelled command are still running: $(leftovers "$group" | tr '\n' ' ')"
  killed=$(printf '%s' "$killed" | sort -un | grep . | tr '\n' ',' || true)
  result killed "${killed%,}"
  [[ -z $killed ]] || progress "killed what was left of the cancelled command: ${killed%,}"
}

unmount() {
  mountpoint -q "$1" || return 0
  umount "$1" 2>/dev/null || { progress "warning: $1 is busy, detaching it lazily"; umount -l "$1"; }
}

# Mount points at or under DIR, deepest first (/proc/mounts escapes a space as \040).
mounts_under() {
  awk -v dir="$1" '{ gsub(/\\040/, " ", $2); if ($2 == dir || index($2, dir "/") == 1) print $2 }' /proc/mounts | sort -r
}

# Loop devices whose backing file is under DIR.
loops_under() {
  local f backing
  for f in /sys/block/loop*/loop/backing_file; do
    [[ -r $f ]] || continue
    backing=$(cat "$f")
    [[ $backing == "$1"/* ]] && printf '/dev/%s\n' "$(basename "$(dirname "$(dirname "$f")")")"
  done
  return 0
}

# The device, its partitions and the loop devices over either (convert.sh maps a partition with
# losetup when the kernel shows none): everything that keeps a volume busy.
device_family() {
  local name f backing
  name=$(basename "$(readlink -f "$1")")
  printf '/dev/%s\n' "$name"
  for f in /sys/class/block/"$name"/"$name"*; do [[ -e $f/partition ]] && printf '/dev/%s\n' "$(basename "$f")"; done
  for f in /sys/block/loop*/loop/backing_file; do
    [[ -r $f ]] || continue
    backing=$(cat "$f")
    [[ $backing == "/dev/$name" || $backing == "/dev/$name"p[0-9]* || $backing == "/dev/$name"[0-9]* ]] &&
      printf '/dev/%s\n' "$(basename "$(dirname "$(dirname "$f")")")"
  done
  return 0
}

# Unmounts whatever is mounted from the device or its family and detaches the loops over it.
release_device() {
  local -a family=()
  local dev m
  mapfile -t family < <(device_family "$1")
  for dev in "${family[@]}"; do
    while IFS= read -r m; do unmount "$m" && note unmounted "$m"; done < <(
      awk -v dev="$dev" '$1 == dev { gsub(/\\040/, " ", $2); print $2 }' /proc/mounts | sort -r
    )
  done
  local i
  for ((i = 1; i < ${#family[@]}; i++)); do
    dev=${family[i]}
    [[ $dev == /dev/loop* ]] && losetup "$dev" >/dev/null 2>&1 && losetup -d "$dev" && note detached "$dev"
  done
  return 0
}

restarted='' not_restarted='' removed='' unmounted='' detached='' flushed='' left=()
note() { printf -v "$1" '%s' "${!1}${!1:+,}$2"; }

start_service() {
  case $1 in
  systemctl) systemctl start "$2" ;;
  service) service "$2" start ;;
  init.d) "$I2E_ROOT/etc/init.d/$2" start ;;
  epmd) epmd -daemon ;;
  *) return 1 ;;
  esac >/dev/null 2>&1 </dev/null
}

undo() {
  local kind=$1 arg=$2 tool name m loop
  case $kind in
  group) return 0 ;;
  flush)
    [[ -b $arg ]] || return 0
    release_device "$arg"
    sync
    blockdev --flushbufs "$arg" && note flushed "$arg"
    ;;
  mount)
    unmount "$arg" && note unmounted "$arg"
    rmdir "$arg" 2>/dev/null || true
    ;;
  loop)
    if losetup "$arg" >/dev/null 2>&1; then losetup -d "$arg" && note detached "$arg"; fi
    ;;
  service)
    tool=${arg%% *} name=${arg#* }
    if start_service "$tool" "$name"; then note restarted "$name"; else note not_restarted "$name"; return 1; fi
    ;;
  dir)
    [[ -e $arg ]] || return 0
    while IFS= read -r m; do unmount "$m" && note unmounted "$m"; done < <(mounts_under "$arg")
    while IFS= read -r loop; do losetup -d "$loop" && note detached "$loop"; done < <(loops_under "$arg")
    rm -rf -- "$arg" && note removed "$arg"
    ;;
  *) progress "warning: unknown journal line: $kind $arg" ;;
  esac
}

main() {
  parse_args "$@"
  if [[ ! -f $journal ]]; then
    progress "nothing to undo: $journal does not exist (the script ended by itself or was never started)"
    result left ''
    exit 0
  fi
  kill_leftovers
  local -a lines=()
  mapfile -t lines <"$journal"
  local i line
  for ((i = ${#lines[@]} - 1; i >= 0; i--)); do
    line=${lines[i]}
    [[ -n $line ]] || continue
    if ! undo "${line%% *}" "${line#* }"; then
      left+=("$line")
      progress "warning: could not undo: $line"
    fi
  done
  result services_restarted "$restarted"
  [[ -z $not_restarted ]] || result services_not_restarted "$not_restarted"
  result removed "$removed"
  result unmounted "$unmounted"
  result detached "$detached"
  result flushed "$flushed"
  if ((${#left[@]} > 0)); then
    printf '%s\n' "${left[@]}" >"$journal"
    result left "$(IFS=';'; printf '%s' "${left[*]}")"
    fail "could not undo: $(IFS=';'; printf '%s' "${left[*]}")"
  fi
  rm -f -- "$journal" "$journal.new"
  result left ''
  progress "undone: services started ${restarted:-none}; removed ${removed:-nothing}; unmounted ${unmounted:-nothing}"
}

if [[ ${BASH_SOURCE[0]} == "$0" ]]; then
  main "$@"
fi
