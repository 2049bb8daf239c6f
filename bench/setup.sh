#!/usr/bin/env bash
# Bench prerequisites (not needed by the tests): ansible-core 2.19 from PyPI in a private
# venv (2.19 is the newest that installs on Debian 12's Python 3.11), and a static release
# build of kiln to ship to the lab servers.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=/opt/kiln-bench/ansible
if [ ! -x "$venv/bin/ansible-playbook" ]; then
  python3 -m venv "$venv" 2>/dev/null || { apt-get install -y -qq python3-venv >/dev/null; python3 -m venv "$venv"; }
  "$venv/bin/pip" install --quiet --disable-pip-version-check 'ansible-core>=2.19,<2.20'
fi
RUSTFLAGS='-C target-feature=+crt-static' cargo build --release -p kiln-cli --target x86_64-unknown-linux-gnu
echo "kiln: ${CARGO_TARGET_DIR:-target}/x86_64-unknown-linux-gnu/release/kiln"
