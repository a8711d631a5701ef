#!/usr/bin/env bash
# bundle-services.sh: the services bundle.sh stops while ec2-bundle-vol copies the disk (so that
# their files are consistent) and starts again afterwards, sourced by it, never run. Each stop is
# written to the undo journal first (common.sh), so that cleanup.sh starts the service again
# after a SIGKILL. Runs on source instances: bash 4.2 and later, with systemctl, service, or
# /etc/init.d scripts.
# shellcheck shell=bash disable=SC2154 # STOP_SERVICES, STOPPED, I2E_ROOT: set by bundle.sh and bundle-checks.sh

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
