#!/usr/bin/env bash
# Provides the moto AWS emulator for the demo and the end-to-end tests (see tools/EMULATOR.md).
#
#   tools/emulator.sh install   put moto (Debian sid's python3-moto) in a cached debootstrap root
#   tools/emulator.sh start     start (or reuse) a server; prints I2E_MOTO_URL=... and nothing else
#   tools/emulator.sh stop      stop the server this state file recorded (idempotent)
#   tools/emulator.sh status    say whether it runs; exit 0 if it answers, 3 if not
#
# Environment:
#   I2E_MOTO_URL         a running moto to use instead (e.g. moto's container image on a laptop)
#   I2E_MOTO_SOURCE      auto (default: I2E_MOTO_URL, then moto_server on PATH, then the root),
#                        or url, path, root to insist on one
#   I2E_MOTO_ROOT        the cached root (default ${XDG_CACHE_HOME:-$HOME/.cache}/instance-to-ebs/moto-root)
#   I2E_DEBIAN_MIRROR    the mirror for install (default: the main Debian suite in the apt sources)
#   I2E_EMULATOR_STATE   the state file (default /tmp/instance-to-ebs-emulator.env)
#   I2E_MOTO_AMIS_PATH   a JSON list of AMIs in moto's MOTO_AMIS_PATH format, loaded by a server this
#                        script starts INSTEAD of moto's default AMIs; the only way to get an AMI
#                        whose RootDeviceType is instance-store (RegisterImage ignores ImageLocation)
set -euo pipefail

readonly WANTED_VERSION=5.2.4 # sid's version verified with SDK v3 (trixie's 5.1.1 breaks it)
readonly PACKAGES=python3-cffi-backend,python3-moto,python3-flask,python3-flask-cors
ROOT=${I2E_MOTO_ROOT:-${XDG_CACHE_HOME:-$HOME/.cache}/instance-to-ebs/moto-root}
STATE=${I2E_EMULATOR_STATE:-/tmp/instance-to-ebs-emulator.env}
LOG=${STATE%.env}.log
MARKER=.instance-to-ebs-complete # inside ROOT; written only after moto ran there

log() { printf 'emulator: %s\n' "$*" >&2; }
die() {
  log "$*"
  exit 1
}

answers() { curl -fsS --max-time 3 -o /dev/null "$1/moto-api/" 2>/dev/null; }

# The main Debian suite's URI from the apt sources (deb822 first, then one-line format):
# not the security archive, not a -updates/-backports suite.
debian_mirror() {
  if [[ -n ${I2E_DEBIAN_MIRROR:-} ]]; then
    printf '%s\n' "$I2E_DEBIAN_MIRROR"
    return
  fi
  local found=''
  local f
  for f in /etc/apt/sources.list.d/*.sources; do
    [[ -f $f ]] || continue
    found=$(awk '
      function flush() {
        if (!found && types ~ /(^| )deb( |$)/ && uris != "" && uris !~ /security/ && suites ~ /(^| )[a-z]+( |$)/) {
          split(uris, u, " "); print u[1]; found = 1
        }
        types = ""; uris = ""; suites = ""
      }
      /^[ \t]*$/ { flush(); next }
      tolower($1) == "types:" { $1 = ""; types = $0 }
      tolower($1) == "uris:" { $1 = ""; uris = $0; sub(/^ +/, "", uris) }
      tolower($1) == "suites:" { $1 = ""; suites = $0 }
      END { flush() }' "$f")
    [[ -z $found ]] || break
  done
  if [[ -z $found && -f /etc/apt/sources.list ]]; then
    found=$(awk '$1 == "deb" {
        i = 2; if ($2 ~ /^\[/) { while ($i !~ /\]$/) i++; i++ }
        if ($i !~ /security/ && $(i + 1) ~ /^[a-z]+$/) { print $i; exit }
      }' /etc/apt/sources.list)
  fi
  [[ -n $found ]] || die "no Debian mirror found in /etc/apt/sources.list.d/*.sources or /etc/apt/sources.list; set I2E_DEBIAN_MIRROR"
  printf '%s\n' "${found%/}"
}

moto_version_in() { chroot "$1" python3 -c 'import moto; print(moto.__version__)' 2>/dev/null; }

# Unmounts anything left mounted under a root (an interrupted debootstrap, a started server).
unmount_under() {
  local mnt
  while read -r mnt; do
    umount -l "$mnt" 2>/dev/null || true
  done < <(awk -v r="$1/" 'index($2, r) == 1 { print $2 }' /proc/mounts | sort -r)
}

cmd_install() {
  if [[ -f $ROOT/$MARKER ]]; then
    log "moto $(cat "$ROOT/$MARKER") is installed in $ROOT"
    return
  fi
  [[ $(id -u) -eq 0 ]] || die "installing moto needs root (debootstrap and chroot); run as root, put moto_server on PATH, or set I2E_MOTO_URL"
  command -v debootstrap >/dev/null || die "debootstrap is not installed: apt-get install debootstrap"
  [[ ! -e $ROOT ]] || die "$ROOT exists but is not a complete moto root (no $MARKER); remove it and retry"
  local mirror
  mirror=$(debian_mirror)
  curl -fs --max-time 20 -o /dev/null "$mirror/dists/sid/Release" ||
    die "cannot reach the Debian mirror $mirror (needed once, to install moto); check the network or set I2E_DEBIAN_MIRROR"

  mkdir -p "$(dirname "$ROOT")"
  # One installer at a time (the lock is closed again: a started server must not inherit it).
  exec 9>"$ROOT.lock"
  flock 9
  if [[ ! -f $ROOT/$MARKER ]]; then install_locked "$mirror"; fi
  exec 9>&-
}

# Works in ROOT.partial and renames it to ROOT only when moto ran there.
install_locked() {
  local mirror=$1 partial=$ROOT.partial
  if [[ -e $partial ]]; then
    log "removing an interrupted install in $partial"
    unmount_under "$partial"
    rm -rf --one-file-system "$partial"
  fi
  trap 'unmount_under "$partial"; rm -rf --one-file-system "$partial"' EXIT
  log "installing moto from Debian sid ($mirror) into $ROOT (1-2 minutes, ~450 MB)"
  local started=$SECONDS
  if ! debootstrap --variant=minbase --include="$PACKAGES" sid "$partial" "$mirror" >"$ROOT.install.log" 2>&1; then
    tail -n 5 "$ROOT.install.log" >&2
    die "debootstrap failed; the whole log is $ROOT.install.log"
  fi
  chroot "$partial" moto_server --help >/dev/null 2>&1 || die "moto_server does not run in the new root"
  local version
  version=$(moto_version_in "$partial") || die "python3 cannot import moto in the new root"
  [[ $version == "$WANTED_VERSION" ]] ||
    log "warning: Debian sid now has moto $version; $WANTED_VERSION is the version verified with SDK v3"
  unmount_under "$partial"
  printf '%s\n' "$version" >"$partial/$MARKER"
  mv -T "$partial" "$ROOT"
  trap - EXIT
  log "moto $version installed in $ROOT in $((SECONDS - started)) s"
}

# State file: shell-style KEY=value lines, written whole (temp file + rename).
write_state() {
  local tmp=$STATE.$$
  printf 'I2E_MOTO_URL=%s\nI2E_MOTO_PID=%s\nI2E_MOTO_SOURCE=%s\nI2E_MOTO_ROOT=%s\nI2E_MOTO_LOG=%s\nI2E_MOTO_AMIS_COPY=%s\n' \
    "$1" "$2" "$3" "$4" "$LOG" "${5:-}" >"$tmp"
  mv -f "$tmp" "$STATE"
}

read_state() {
  url='' pid='' source='' root='' amis_copy=''
  [[ -f $STATE ]] || return 1
  local key value
  while IFS='=' read -r key value; do
    case $key in
      I2E_MOTO_URL) url=$value ;;
      I2E_MOTO_PID) pid=$value ;;
      I2E_MOTO_SOURCE) source=$value ;;
      I2E_MOTO_ROOT) root=$value ;;
      I2E_MOTO_AMIS_COPY) amis_copy=$value ;;
    esac
  done <"$STATE"
}

# True when PID is alive and is a moto server (guards against a recycled pid).
is_our_moto() {
  [[ $1 =~ ^[0-9]+$ ]] && tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null | grep -q moto_server
}

free_port() {
  if command -v python3 >/dev/null; then
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
  else
    node -e 'const s = require("net").createServer().listen(0, "127.0.0.1", () => { console.log(s.address().port); s.close() })'
  fi
}

path_moto_works() { command -v moto_server >/dev/null && moto_server --help >/dev/null 2>&1; }

cmd_start() {
  local url pid source root amis_copy
  if read_state && is_our_moto "$pid" && answers "$url"; then
    log "moto already runs at $url (pid $pid)"
    printf 'I2E_MOTO_URL=%s\n' "$url"
    return
  fi
  local want=${I2E_MOTO_SOURCE:-auto}
  case $want in auto | url | path | root) ;; *) die "I2E_MOTO_SOURCE must be auto, url, path or root, not '$want'" ;; esac

  if [[ $want == auto || $want == url ]] && [[ -n ${I2E_MOTO_URL:-} ]]; then
    if answers "$I2E_MOTO_URL"; then
      [[ -z ${I2E_MOTO_AMIS_PATH:-} ]] || log "warning: I2E_MOTO_AMIS_PATH is ignored for a server this script did not start"
      write_state "${I2E_MOTO_URL%/}" '' url ''
      log "using the moto server at $I2E_MOTO_URL"
      printf 'I2E_MOTO_URL=%s\n' "${I2E_MOTO_URL%/}"
      return
    fi
    [[ $want == auto ]] || die "I2E_MOTO_URL=$I2E_MOTO_URL does not answer"
    log "I2E_MOTO_URL=$I2E_MOTO_URL does not answer; starting a server instead"
  fi
  [[ $want != url ]] || die "I2E_MOTO_SOURCE=url but I2E_MOTO_URL is not set"

  local port command amis=${I2E_MOTO_AMIS_PATH:-}
  if [[ -n $amis ]]; then
    [[ -f $amis ]] || die "I2E_MOTO_AMIS_PATH=$amis is not a file"
    python3 -c 'import json, sys; json.load(open(sys.argv[1]))' "$amis" 2>/dev/null ||
      die "I2E_MOTO_AMIS_PATH=$amis is not valid JSON"
  fi
  port=$(free_port)
  if [[ -n $amis_copy ]]; then rm -f "$amis_copy"; fi # left by a server that died
  amis_copy=''
  if [[ $want == path ]] || { [[ $want == auto ]] && path_moto_works; }; then
    path_moto_works || die "I2E_MOTO_SOURCE=path but moto_server is not on PATH or does not run"
    source=path root=''
    command=(moto_server -H 127.0.0.1 -p "$port")
    [[ -z $amis ]] || command=(env "MOTO_AMIS_PATH=$(realpath "$amis")" "${command[@]}")
  else
    [[ $(id -u) -eq 0 ]] || die "running moto from its root needs root (chroot); run as root, put moto_server on PATH, or set I2E_MOTO_URL"
    cmd_install
    source=root root=$ROOT
    command=(chroot "$ROOT" moto_server -H 127.0.0.1 -p "$port")
    if [[ -n $amis ]]; then # the server sees only the root's files
      amis_copy=$ROOT/tmp/instance-to-ebs-amis-$port.json
      cp "$amis" "$amis_copy"
      command=(env "MOTO_AMIS_PATH=${amis_copy#"$ROOT"}" "${command[@]}")
    fi
  fi
  url=http://127.0.0.1:$port
  # Own session, output to a log: the server outlives this script and keeps no caller's pipe open.
  setsid "${command[@]}" </dev/null >"$LOG" 2>&1 &
  pid=$!
  local deadline=$((SECONDS + ${I2E_MOTO_START_TIMEOUT:-30}))
  until answers "$url"; do
    if ! kill -0 "$pid" 2>/dev/null; then
      tail -n 5 "$LOG" >&2 || true
      die "moto exited while starting; its log is $LOG"
    fi
    if ((SECONDS >= deadline)); then
      kill "$pid" 2>/dev/null || true
      die "moto did not answer at $url within ${I2E_MOTO_START_TIMEOUT:-30} s; its log is $LOG"
    fi
    sleep 0.2
  done
  write_state "$url" "$pid" "$source" "$root" "$amis_copy"
  log "moto ($source) answers at $url, pid $pid; state in $STATE"
  printf 'I2E_MOTO_URL=%s\n' "$url"
}

cmd_stop() {
  local url pid source root amis_copy
  if ! read_state; then
    log "not running (no $STATE)"
    return
  fi
  if is_our_moto "$pid"; then
    kill "$pid"
    local i
    for ((i = 0; i < 50; i++)); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid" 2>/dev/null || true; fi
    log "stopped moto (pid $pid)"
  elif [[ -n $pid ]]; then
    log "moto (pid $pid) was not running any more"
  else
    log "left the external moto at $url alone"
  fi
  if [[ -n $amis_copy ]]; then rm -f "$amis_copy"; fi
  rm -f "$STATE"
}

cmd_status() {
  local url pid source root amis_copy
  if read_state && answers "$url"; then
    printf 'running %s=%s pid=%s source=%s\n' I2E_MOTO_URL "$url" "${pid:-none}" "$source"
    return 0
  fi
  if [[ -f $STATE ]]; then
    printf 'not answering (stale state in %s)\n' "$STATE"
  else
    printf 'not running\n'
  fi
  if [[ -f $ROOT/$MARKER ]]; then printf 'moto %s installed in %s\n' "$(cat "$ROOT/$MARKER")" "$ROOT"; fi
  return 3
}

case ${1:-} in
  install) cmd_install ;;
  start) cmd_start ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  *) die "usage: $0 install|start|stop|status" ;;
esac
