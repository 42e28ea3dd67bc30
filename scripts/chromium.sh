#!/usr/bin/env bash
# Prints the path of a headless-capable Chromium for the board's browser
# test, installing Debian's chromium package when it is missing (as root;
# otherwise it prints nothing and the test says it was skipped). Progress
# goes to stderr.
set -euo pipefail
for c in chromium chromium-browser; do
  if p=$(command -v "$c"); then echo "$p"; exit 0; fi
done
if [ "$(id -u)" != 0 ]; then
  echo "chromium.sh: chromium is not installed and we are not root: apt-get install chromium" >&2
  exit 0
fi
echo "chromium.sh: installing chromium (apt-get)" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >&2 || true
apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >&2
command -v chromium
