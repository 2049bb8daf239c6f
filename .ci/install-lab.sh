#!/usr/bin/env bash
# Installs what kiln's lab and its end-to-end tests need, as root, non-interactively, on a
# fresh Debian 12 (or newer) machine. Idempotent. Called by .ci/run.
set -euo pipefail

if [ "$(id -u)" != 0 ]; then
    echo "install-lab.sh: run as root" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive

# debootstrap: the servers' base image; systemd-container: systemd-nspawn; iproute2/nftables:
# namespaces, veths, the host-side filter; apt-cacher-ng: the servers' only way out;
# openssh-client: reaching servers; zstd: cached images; python3-venv: the S3 server (moto);
# procps/util-linux/mount: kill, setsid, losetup, mount.
apt-get update -q
apt-get install -y -q --no-install-recommends \
    debootstrap systemd-container iproute2 nftables apt-cacher-ng openssh-client zstd \
    python3 python3-venv procps util-linux mount ca-certificates

# VM servers (`kiln lab up --vm NAME`, tests/vm_e2e.rs): qemu under software emulation, and
# mkfs.ext4 to make a VM's root disk from a tree. On a Debian 12 host with bookworm-backports'
# qemu-utils this replaces it by Debian 12's own qemu 7.2 stack; the lab needs no qemu-img.
apt-get install -y -q --no-install-recommends qemu-system-x86 e2fsprogs

# Backups (crates/kiln-backup/tests): Debian's stock restic reads and writes the
# repositories kiln writes; btrfs-progs for the btrfs snapshot path (a loop device here;
# objcopy, from binutils, strips the binary shipped to a lab VM).
apt-get install -y -q --no-install-recommends restic btrfs-progs binutils

# The lab's ACME server (`kiln lab up --acme`, tests/acme_e2e.rs): Debian's pebble ships
# pebble and pebble-challtestsrv (the lab DNS). The reverse-proxy tests also probe with
# testssl.sh and dig (bind9-dnsutils).
apt-get install -y -q --no-install-recommends pebble testssl.sh bind9-dnsutils curl

# The apt-cacher-ng package starts a system-wide service listening on every address; the lab
# runs its own instance bound to the lab's proxy address only (10.77.0.1:3142).
if [ -d /run/systemd/system ]; then
    systemctl disable --now apt-cacher-ng >/dev/null 2>&1 || true
elif command -v service >/dev/null; then
    service apt-cacher-ng stop >/dev/null 2>&1 || true
fi

# The S3 server with Object Lock: moto's server from PyPI, in its own venv (Debian's Python
# is externally managed).
VENV=/opt/kiln-lab/venv
if [ ! -x "$VENV/bin/moto_server" ]; then
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q --upgrade pip
    "$VENV/bin/pip" install -q 'moto[server]>=5.1,<6'
fi
"$VENV/bin/moto_server" --help >/dev/null

# ssh-audit (PyPI): the base's test checks that sshd offers no weak algorithm.
AUDIT=/opt/kiln-lab/ssh-audit
if [ ! -x "$AUDIT/bin/ssh-audit" ]; then
    python3 -m venv "$AUDIT"
    "$AUDIT/bin/pip" install -q 'ssh-audit>=3.3,<4'
fi
ln -sf "$AUDIT/bin/ssh-audit" /usr/local/bin/ssh-audit
ssh-audit --help >/dev/null
echo "install-lab.sh: lab prerequisites installed"
