#!/usr/bin/env bash
# Installs everything kiln's test suite needs on a fresh Debian machine, as root and
# without questions. Each part of kiln that needs more than the base set ships its own
# .ci/install-<part>.sh, run from here. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -ne 0 ]; then
  echo "install.sh: run as root (it installs Debian packages)" >&2
  exit 2
fi

export DEBIAN_FRONTEND=noninteractive
stamp=/var/lib/apt/periodic/kiln-apt-updated
if [ ! -f "$stamp" ] || [ -n "$(find "$stamp" -mmin +360 2>/dev/null)" ]; then
  apt-get update -qq
  mkdir -p "$(dirname "$stamp")" && touch "$stamp"
fi
apt-get install -y -qq --no-install-recommends openssh-client ca-certificates git >/dev/null

for part in .ci/install-*.sh; do
  [ -e "$part" ] || continue
  echo "== $part"
  bash "$part"
done
