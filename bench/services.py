#!/usr/bin/env python3
"""A no-change `kiln apply` of a whole services stack vs a bare `ssh host true`.

The stack is the reference infrastructure's services host in the lab: PostgreSQL and
Synapse (real), HedgeDoc and Nextcloud (contract images, the lab's test doubles), each a
Podman quadlet with its files, secrets, data directories, image and health check, plus the
databases command and its real check. After one apply that brings everything up, the
rounds alternate `ssh host true` and a no-change `kiln apply --env lab --yes`, the vault
opened with an age identity (a recovery key: no scrypt) and, separately, with the
passphrase (scrypt N=2^18, what a user typing the passphrase pays once per run). Prints
medians and ratios. Benchmark only: nothing is asserted.

Needs: root, a release `kiln`; talks only to the lab's own server.
"""

import argparse
import os
import statistics
import subprocess
import sys

from labcommon import addresses, lab_repo, lab_ssh, timed

# The stack, shared with crates/kiln-cli/tests/services_lab_e2e.rs.
STACK = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "examples", "lab-services", "kiln.toml")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--kiln", required=True, help="release kiln binary to measure")
    ap.add_argument("--rounds", type=int, default=11)
    ap.add_argument("--lab", default="kilnsvcbench")
    ap.add_argument("--keep-lab", action="store_true")
    a = ap.parse_args()
    kiln = a.kiln
    base = [kiln]
    try:
        _work, config, passfile, identity, env = lab_repo(kiln, STACK, "services", a.lab)
        first, _ = timed(base + ["apply", "--yes", "--vault-identity", identity] + env)
        print(f"first apply (whole stack from a fresh server, images preloaded): {first:.1f} s")
        ssh = lab_ssh(a.lab, addresses(config)[0], "true")
        apply_id = base + ["apply", "--yes", "--vault-identity", identity] + env
        apply_pass = base + ["apply", "--yes", "--passphrase-file", passfile] + env
        times = {"ssh": [], "apply": [], "apply_pass": []}
        for _ in range(a.rounds):
            times["ssh"].append(timed(ssh)[0])
            dt, out = timed(apply_id)
            if "Applied 0 change(s)" not in out and "no changes" not in out:
                sys.exit(f"the no-change apply changed something:\n{out}")
            times["apply"].append(dt)
            times["apply_pass"].append(timed(apply_pass)[0])
        med = {k: statistics.median(v) for k, v in times.items()}
        print(f"rounds: {a.rounds}")
        print(f"ssh host true:                          median {med['ssh'] * 1000:.0f} ms")
        print(f"kiln apply, no change (vault identity): median {med['apply'] * 1000:.0f} ms"
              f"  = {med['apply'] / med['ssh']:.2f}x ssh true (target: within 2x)")
        print(f"kiln apply, no change (passphrase):     median {med['apply_pass'] * 1000:.0f} ms"
              f"  = {med['apply_pass'] / med['ssh']:.2f}x ssh true (scrypt once per run)")
    finally:
        if not a.keep_lab:
            subprocess.run(base + ["lab", "down", "--lab", a.lab], capture_output=True)


if __name__ == "__main__":
    main()
