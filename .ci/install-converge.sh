#!/usr/bin/env bash
# What kiln-converge's tests need on a fresh Debian machine (root, non-interactive):
# the OpenSSH client (transport, ssh-keygen/ssh-keyscan in tests) and server (the SSH
# transport tests start a throwaway sshd on 127.0.0.1, never on the network).
# firewalld: its offline checker reads the base's zone files (desired::base tests); nothing
# starts it (policy-rc.d below; the tests never touch the system's firewall).
# The Ansible comparison in bench/ installs ansible-core itself (bench only, not tests).
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
if ! command -v ssh >/dev/null || ! command -v ssh-keyscan >/dev/null || [ ! -x /usr/sbin/sshd ]; then
  # Do not start a system sshd: the tests run their own on loopback.
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
    chmod 755 /usr/sbin/policy-rc.d
    trap 'rm -f /usr/sbin/policy-rc.d' EXIT
  fi
  apt-get install -y -qq --no-install-recommends openssh-client openssh-server >/dev/null
fi
if ! command -v firewall-offline-cmd >/dev/null; then
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
    chmod 755 /usr/sbin/policy-rc.d
    trap 'rm -f /usr/sbin/policy-rc.d' EXIT
  fi
  apt-get install -y -qq --no-install-recommends firewalld >/dev/null
fi
# sshd's privilege separation folder.
mkdir -p /run/sshd
