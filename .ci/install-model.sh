#!/usr/bin/env bash
# The DNS tools kiln's tests need:
# - BIND's zone checker, to prove `kiln dns --format zone` output is a valid zone file
#   (crates/kiln-model/tests/dns.rs, zones_pass_named_checkzone);
# - pebble-challtestsrv (package pebble), the lab's DNS server, which
#   `kiln dns --check` is tested against on loopback (crates/kiln-cli/tests/dns_check.rs).
# Run as root from .ci/install.sh (after apt-get update). Safe to run again.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
if ! command -v named-checkzone >/dev/null; then
  apt-get install -y -qq --no-install-recommends bind9-utils >/dev/null
fi
named-checkzone -v >/dev/null
if ! command -v pebble-challtestsrv >/dev/null; then
  apt-get install -y -qq --no-install-recommends pebble >/dev/null
fi
# It has no version flag: check that it runs and knows the DNS server's option.
usage=$(pebble-challtestsrv -h 2>&1 || true)
grep -q -- -dns01 <<<"$usage"
