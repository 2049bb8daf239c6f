#!/usr/bin/env bash
# Installs what kiln-secrets' tests need on a fresh Debian machine, as root, without
# prompts: the stock `age` CLI (the no-kiln exit path is tested with it) and ansible-core
# (its `ansible-vault` makes the import test vectors). Idempotent: quick when present.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

apt_install() {
    apt-get install -y -qq --no-install-recommends "$@" >/dev/null || {
        apt-get update -qq
        apt-get install -y -qq --no-install-recommends "$@" >/dev/null
    }
}

command -v age >/dev/null 2>&1 || apt_install age
# The tests drive `age`'s passphrase prompt through a pseudo-terminal with python3's pty.
command -v python3 >/dev/null 2>&1 || apt_install python3

if ! command -v ansible-vault >/dev/null 2>&1; then
    # A private venv: Debian's system Python refuses `pip install` (PEP 668).
    # ansible-core 2.19 is the newest that installs on Python 3.11 (Debian 12).
    venv=/opt/kiln-ci/ansible
    if [ ! -x "$venv/bin/pip" ]; then
        python3 -m venv "$venv" 2>/dev/null || { apt_install python3-venv; rm -rf "$venv"; python3 -m venv "$venv"; }
    fi
    "$venv/bin/pip" install --quiet --disable-pip-version-check 'ansible-core>=2.19,<2.20'
    ln -sf "$venv/bin/ansible-vault" /usr/local/bin/ansible-vault
fi

echo "age $(age --version)"
ansible-vault --version 2>&1 | sed -n 1p  # read it all: `head` closing the pipe breaks ansible
