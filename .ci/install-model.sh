#!/usr/bin/env bash
# kiln-model's test needs: BIND's zone checker, to prove `kiln dns --format zone` output
# is a valid zone file (crates/kiln-model/tests/dns.rs, zones_pass_named_checkzone).
# Run as root from .ci/install.sh (after apt-get update). Safe to run again.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
if ! command -v named-checkzone >/dev/null; then
  apt-get install -y -qq --no-install-recommends bind9-utils >/dev/null
fi
named-checkzone -v >/dev/null
