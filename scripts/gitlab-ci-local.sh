#!/usr/bin/env bash
# gitlab-ci-local for the component tests (test/components), installed on
# first use:
#
#   export GITLAB_CI_LOCAL="$(scripts/gitlab-ci-local.sh)"
#
# installs gitlab-ci-local $version from the npm registry into
# $LOTSE_TOOLS_DIR (default ${XDG_CACHE_HOME:-~/.cache}/lotse-tools), outside
# the repository, and rsync from Debian's packages when it is missing
# (gitlab-ci-local copies the project with it). Only the path of the
# gitlab-ci-local executable goes to stdout; progress goes to stderr. It is
# idempotent.
#
# 4.73.0 is the last release that runs on Node 20: 4.74 and later call
# Set.prototype.union, which needs Node 22.
set -euo pipefail

version=4.73.0
tools="${LOTSE_TOOLS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/lotse-tools}"
dir="$tools/gitlab-ci-local-$version"
bin="$dir/node_modules/.bin/gitlab-ci-local"

log() { echo "gitlab-ci-local.sh: $*" >&2; }

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

if ! command -v rsync >/dev/null 2>&1; then
  log "installing rsync (apt-get)"
  as_root apt-get install -y -qq rsync >&2 || {
    as_root apt-get update -qq >&2
    as_root apt-get install -y -qq rsync >&2
  }
fi

if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  log "node and npm are needed (Debian: apt-get install nodejs npm)"
  exit 1
fi

if [ ! -x "$bin" ] || [ "$("$bin" --version 2>/dev/null)" != "$version" ]; then
  log "installing gitlab-ci-local $version into $dir (npm)"
  mkdir -p "$dir"
  npm install --prefix "$dir" --no-audit --no-fund --loglevel=error "gitlab-ci-local@$version" >&2
fi
echo "$bin"
