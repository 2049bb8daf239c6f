#!/usr/bin/env python3
"""The hardened base: a no-change `kiln apply` vs a bare `ssh host true`, and the cost of
the lockout guard.

Two lab servers (services, monitoring) get the whole base: sshd's drop-in, firewalld,
unattended-upgrades, chrony, node-exporter and the WireGuard mesh. After the first apply,
the rounds alternate `ssh host true` (to one server) and a no-change `kiln apply --env lab
--yes` on both (vault opened by an age identity: no scrypt). Then guarded applies: an sshd
change that is harmless (`AllowGroups` with the admin's own group, then back), each
armed on the host, proven by a fresh SSH login and disarmed; the times from "armed" to
"kept" are read off kiln's progress lines as they arrive. Prints medians and ratios.
Benchmark only: nothing is asserted.

Needs: root, a release `kiln`; talks only to the lab's own servers.
"""

import argparse
import os
import statistics
import subprocess
import sys
import time

from labcommon import addresses, lab_repo, lab_ssh, timed

# The configuration, shared with crates/kiln-cli/tests/base_lab_e2e.rs.
CONFIG = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "examples", "lab-base", "kiln.toml")


def parallel(cmds):
    """Runs `cmds` at once; seconds until the last one ended (each must succeed)."""
    t = time.perf_counter()
    ps = [subprocess.Popen(c, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) for c in cmds]
    for c, p in zip(cmds, ps):
        if p.wait() != 0:
            sys.exit(f"{' '.join(c)} failed: {p.stderr.read().decode()}")
    return time.perf_counter() - t


def guarded(cmd):
    """One apply with a guarded change: (total, armed→kept) in seconds."""
    t = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    armed = kept = None
    lines = []
    for line in p.stderr:
        lines.append(line)
        if "guarded ssh: applied, rollback armed" in line:
            armed = time.perf_counter()
        if "guarded ssh: a fresh SSH login works, changes kept" in line:
            kept = time.perf_counter()
    p.wait()
    total = time.perf_counter() - t
    if p.returncode != 0 or armed is None or kept is None:
        sys.exit(f"guarded apply failed ({p.returncode}):\n{''.join(lines)}")
    return total, kept - armed


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--kiln", required=True, help="release kiln binary to measure")
    ap.add_argument("--rounds", type=int, default=11)
    ap.add_argument("--guarded-rounds", type=int, default=6)
    ap.add_argument("--lab", default="kilnbasebench")
    ap.add_argument("--keep-lab", action="store_true")
    a = ap.parse_args()
    kiln = a.kiln
    try:
        _work, config, _passfile, identity, env = lab_repo(kiln, CONFIG, "base", a.lab)
        apply_id = [kiln, "apply", "--yes", "--vault-identity", identity] + env
        first, _ = timed(apply_id)
        print(f"first apply (the base on two fresh servers, packages through the apt proxy): {first:.1f} s")
        servers = addresses(config)
        ssh = lab_ssh(a.lab, servers[0], "true")
        times = {"ssh": [], "ssh_both": [], "apply": []}
        for _ in range(a.rounds):
            times["ssh"].append(timed(ssh)[0])
            times["ssh_both"].append(parallel([lab_ssh(a.lab, x, "true") for x in servers]))
            dt, out = timed(apply_id)
            if "Applied 0 change(s)" not in out:
                sys.exit(f"the no-change apply changed something:\n{out}")
            times["apply"].append(dt)
        med = {k: statistics.median(v) for k, v in times.items()}
        print(f"rounds: {a.rounds}")
        print(f"ssh host true:                               median {med['ssh'] * 1000:.0f} ms")
        print(f"ssh host true to both hosts at once:          median {med['ssh_both'] * 1000:.0f} ms")
        print(f"kiln apply, no change, 2 hosts with the base: median {med['apply'] * 1000:.0f} ms"
              f"  = {med['apply'] / med['ssh']:.2f}x ssh true to one host,"
              f" {med['apply'] / med['ssh_both']:.2f}x ssh true to both at once")

        with open(config) as f:
            plain = f.read()
        group = plain.replace("[base.sshd]\n", "[base.sshd]\nallow_groups = [\"kiln\"]\n")
        totals, proofs = [], []
        for i in range(a.guarded_rounds):
            with open(config, "w") as f:
                f.write(group if i % 2 == 0 else plain)
            total, proof = guarded(apply_id)
            totals.append(total)
            proofs.append(proof)
        if totals:
            print(f"guarded sshd change (rounds: {a.guarded_rounds}): apply median {statistics.median(totals):.2f} s,"
                  f" armed -> fresh SSH login -> disarmed median {statistics.median(proofs) * 1000:.0f} ms")
    finally:
        if not a.keep_lab:
            subprocess.run([kiln, "lab", "down", "--lab", a.lab], capture_output=True)


if __name__ == "__main__":
    main()
