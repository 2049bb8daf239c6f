#!/usr/bin/env bash
# Installs what kiln-secrets' tests need on a fresh Debian machine, as root, without
# prompts: the stock `age` CLI (the no-kiln exit path is tested with it) and ansible-core
# (its `ansible-vault` makes the import test vectors). Idempotent: quick when present.
set -euo pipefail

if ! command -v age >/dev/null 2>&1 || ! command -v age-keygen >/dev/null 2>&1; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq age
fi

if ! command -v ansible-vault >/dev/null 2>&1; then
    # 2.19 is the newest ansible-core that installs on Debian 12's / pyenv's Python 3.11.
    python3 -m pip install --quiet --disable-pip-version-check 'ansible-core>=2.19,<2.20'
    # pyenv installs console scripts behind shims: refresh them when pyenv is in use.
    if command -v pyenv >/dev/null 2>&1; then pyenv rehash; fi
fi

age --version
ansible-vault --version | head -n 1
