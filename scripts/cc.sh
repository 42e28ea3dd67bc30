#!/usr/bin/env bash
# Makes sure a C toolchain is there for `go test -race` (the race detector
# needs cgo): installs gcc and the C library headers from Debian's packages
# when missing. Progress goes to stderr.
set -euo pipefail
if command -v gcc >/dev/null 2>&1 && [ -e /usr/include/stdlib.h ]; then
  exit 0
fi
echo "cc.sh: installing gcc for the race detector" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >&2
apt-get install -y -qq --no-install-recommends gcc libc6-dev >&2
