#!/usr/bin/env bash
# npm test: jest with a private TMPDIR that must be empty when the run ends. Every test removes
# what it made, also when it fails; whatever is left is listed, removed, and fails the run.
# Arguments go to jest (npm test -- __tests__/e2e --coverage=false).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
outer=${TMPDIR:-/tmp}
private=$(mktemp -d "$outer/i2e-test-tmp.XXXXXX")
trap 'rm -rf --one-file-system "$private"' EXIT
trap 'exit 130' INT # the EXIT trap runs on a signal too
trap 'exit 143' TERM
status=0
# jest's cache stays outside: it is meant to outlive the run.
TMPDIR=$private node --experimental-vm-modules node_modules/jest/bin/jest.js \
  --cacheDirectory "$outer/jest-instance-to-ebs" "$@" || status=$?
mapfile -t left < <(find "$private" -mindepth 1 -maxdepth 1 -printf '%f\n' | sort)
if ((${#left[@]} > 0)); then
  echo "test: the tests left ${#left[@]} file(s) or folder(s) in their TMPDIR; each test must remove what it makes:" >&2
  printf '  %s\n' "${left[@]}" >&2
  if ((status == 0)); then status=1; fi
fi
exit "$status"
