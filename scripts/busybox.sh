#!/usr/bin/env bash
# Makes sure a static busybox is there: the lotse image (make image) carries
# it as the shell GitLab's docker executor runs job scripts with, and the
# component test runs a job script in that image. Installs Debian's
# busybox-static when missing (as root). Progress goes to stderr.
set -euo pipefail
command -v busybox >/dev/null 2>&1 && exit 0
if [ "$(id -u)" != 0 ]; then
  echo "busybox.sh: busybox is not installed and we are not root: apt-get install busybox-static" >&2
  exit 0
fi
echo "busybox.sh: installing busybox-static (apt-get)" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >&2 || true
apt-get install -y -qq --no-install-recommends busybox-static >&2
