"""What the lab benchmarks share: running a command that must succeed, timing one, and
the lab's own ssh to a server (its key, its pinned host keys)."""

import subprocess
import sys
import time


def run(cmd, **kw):
    """Runs `cmd`; exits with its output when it fails. Returns stdout."""
    p = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if p.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed ({p.returncode}):\n{p.stdout}\n{p.stderr}")
    return p.stdout


def timed(cmd):
    """Runs `cmd`, which must succeed: (seconds, stdout + stderr)."""
    t = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True)
    dt = time.perf_counter() - t
    if p.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed ({p.returncode}):\n{p.stdout}\n{p.stderr}")
    return dt, p.stdout + p.stderr


def lab_ssh(lab, address, *command):
    """`ssh kiln@address command` with the lab's key and pinned host keys."""
    lab_dir = f"/var/lib/kiln-lab/{lab}"
    return ["ssh", "-o", "BatchMode=yes", "-o", f"UserKnownHostsFile={lab_dir}/known_hosts",
            "-o", "StrictHostKeyChecking=yes", "-i", f"{lab_dir}/id_ed25519", f"kiln@{address}", *command]
