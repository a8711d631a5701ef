#!/usr/bin/env bash
# Rebuilds dist/ from exactly what is staged in git (not the working tree, where others may have
# work in progress) and stages the result, so a commit carries the dist/ of its own sources.
set -euo pipefail
cd "$(git rev-parse --show-toplevel)"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
git checkout-index -a --prefix="$tmp/"
# A real node_modules under the build folder (hard links, instant): through a symlink ncc resolves
# modules outside the project and numbers them differently from a build in a clean clone.
cp -al node_modules "$tmp/node_modules"
(cd "$tmp" && npm run --silent package >/dev/null)
rm -rf dist
cp -r "$tmp/dist" dist
git add -A dist
