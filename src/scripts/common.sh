#!/usr/bin/env bash
# Shared helpers for the scripts that run on instances (and locally in tests).
# Sourced, never executed: the action writes it beside the script it runs.
#
# Output protocol (read by src/aws/remote-script.ts):
#   ::result key=value   a machine-readable fact, on stdout
#   ::fail reason        the one-line reason for a non-zero exit, on stdout (SSM keeps the
#                        first 24,000 characters of stdout but only 8,000 of stderr)
#   anything else        human progress
# shellcheck shell=bash

result() {
  printf '::result %s=%s\n' "$1" "$2"
}

progress() {
  printf '%s %s\n' "$(date -u +%H:%M:%S)" "$*"
}

# fail REASON [EXIT_CODE]: print the reason once, as the protocol line, and exit.
fail() {
  printf '::fail %s\n' "$1"
  exit "${2:-1}"
}

require_cmd() {
  local cmd
  for cmd in "$@"; do
    command -v "$cmd" >/dev/null 2>&1 || fail "required command '$cmd' is not installed on $(hostname 2>/dev/null || echo this machine)"
  done
}

# hex_to_bin: hex text on stdin, raw bytes on stdout (no xxd on minimal images).
hex_to_bin() {
  local hex
  hex=$(tr -d ' \n\r')
  [[ $hex =~ ^([0-9a-fA-F]{2})*$ ]] || fail "not hex text: ${hex:0:16}..."
  # shellcheck disable=SC2001,SC2059
  printf "$(sed 's/../\\x&/g' <<<"$hex")"
}

# The undo journal. SSM ends a cancelled or timed-out command with SIGKILL of its process group
# (amazon-ssm-agent agent/executers/executers_unix.go:42-53), so no trap runs. The command the
# action sends names a journal file (I2E_JOURNAL); a script writes into it, BEFORE each change to
# the machine, how to undo it, and removes the lines it undid itself. After a cancel or a timeout
# the action sends cleanup.sh, which undoes what the journal still holds. One line each:
#   group PGID  (the command's process group)   dir PATH   mount PATH   loop DEVICE
#   flush DEVICE   service systemctl|service|init.d|epmd NAME
# Without I2E_JOURNAL (a local run) nothing is written.
journal_add() {
  [[ -n ${I2E_JOURNAL:-} ]] || return 0
  printf '%s\n' "$*" >>"$I2E_JOURNAL"
}

journal_drop() {
  [[ -n ${I2E_JOURNAL:-} && -f $I2E_JOURNAL ]] || return 0
  { grep -vxF -- "$*" "$I2E_JOURNAL" || true; } >"$I2E_JOURNAL.new"
  mv -f -- "$I2E_JOURNAL.new" "$I2E_JOURNAL"
}

# Everything was undone by the script itself: nothing is left for cleanup.sh.
journal_end() {
  [[ -z ${I2E_JOURNAL:-} ]] || rm -f -- "$I2E_JOURNAL" "$I2E_JOURNAL.new"
}
