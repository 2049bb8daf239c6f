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


def lab_repo(kiln, source_toml, prefix, lab):
    """A kiln repository in a new folder (a copy of `source_toml`, a passphrase file), its
    lab up, its secrets generated, and a recovery key written as an age identity so that
    measured runs open the vault without scrypt. Returns (work, config, passfile, identity,
    env), env being `--env lab --config CONFIG`."""
    import os
    import re
    import tempfile

    work = tempfile.mkdtemp(prefix=f"kiln-bench-{prefix}-")
    config = os.path.join(work, "kiln.toml")
    with open(source_toml) as src, open(config, "w") as f:
        f.write(src.read())
    passfile = os.path.join(work, "passphrase")
    with open(passfile, "w") as f:
        f.write("bench passphrase, not a secret\n")
    env = ["--env", "lab", "--config", config]
    run([kiln, "lab", "up", "--yes", "--lab", lab, "--config", config])
    run([kiln, "secrets", "generate", "--passphrase-file", passfile] + env)
    out = run([kiln, "secrets", "recovery-key", "--passphrase-file", passfile] + env)
    key = re.search(r"AGE-SECRET-KEY-[0-9A-Z]+", out)
    if not key:
        sys.exit(f"no recovery key in:\n{out}")
    identity = os.path.join(work, "recovery.txt")
    with open(identity, "w") as f:
        f.write(key.group(0) + "\n")
    os.chmod(identity, 0o600)
    return work, config, passfile, identity, env


def addresses(config):
    """The server addresses `kiln lab up` recorded in kiln.toml, in file order."""
    import re

    with open(config) as f:
        return re.findall(r'address = "([0-9.]+)"', f.read())
