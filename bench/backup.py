#!/usr/bin/env python3
"""Backups: kiln's host backup mode vs the stock `restic`, side by side in one run, on the
same data and the same lab S3 server (moto with Object Lock, on the lab bridge).

Data: 1 GiB of mixed files (512 MiB of random bytes in 8 MiB files, 512 MiB of base64
text in 2 MiB files: compressible, not deduplicable) and a tree of 10 000 small files
(1-4 KiB, 100 folders). Each tool writes its own repository (a new one per first-backup
round; restic's created by `restic init`, kiln's by `kiln backup init`):

- first backup of the 1 GiB, and of the tree;
- no-change backup of each (restic with its local cache, as users run it; kiln keeps no
  cache: the servers must never trust a stale one);
- restore of the 1 GiB into an empty folder (kiln: `kiln backup restore --to`, restic:
  `restic restore latest`).

kiln runs exactly what a host's timer runs: `kiln agent backup` with a plan and a 0600
secrets file. The repository, its credentials and the password come from `kiln lab up
--s3` with a small kiln.toml (the lab's three credentials in its vault). Prints every
round, medians and ratios (kiln / restic: below 1 means kiln is faster). Benchmark only:
nothing is asserted. Needs root, a release kiln, restic; talks only to the lab's S3.
"""

import argparse
import base64
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile

from labcommon import run, timed

KILN_TOML = """
[project]
name = "bench"
domain = "bench.test"
acme_email = "admin@bench.example.org"

[environments.lab]
domain = "bench.test"
acme_ca = "internal"

[environments.lab.hosts.services]
address = "10.77.0.11"
admin_user = "kiln"

[backups]
schedule = "daily"
object_lock_days = 1
retention = { daily = 7 }

[backups.repository]
endpoint = "https://s3.example.org"
bucket = "bench"
prefix = "PREFIX"

[backups.credentials]
server = "backup_server"
admin = "backup_admin"
readonly = "backup_readonly"
repository_password = "backup_repository_password"
"""


def make_data(root):
    mixed = os.path.join(root, "mixed")
    tree = os.path.join(root, "tree")
    os.makedirs(mixed)
    for i in range(64):
        with open(os.path.join(mixed, f"random-{i:02}.bin"), "wb") as f:
            f.write(os.urandom(8 << 20))
    for i in range(256):
        with open(os.path.join(mixed, f"text-{i:03}.txt"), "wb") as f:
            f.write(base64.encodebytes(os.urandom((2 << 20) * 3 // 4)))
    for d in range(100):
        os.makedirs(os.path.join(tree, f"d{d:02}"))
        for i in range(100):
            size = 1024 + (d * 100 + i) * 37 % 3072
            with open(os.path.join(tree, f"d{d:02}", f"f{i:02}"), "wb") as f:
                f.write(os.urandom(size))
    return mixed, tree


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--kiln", required=True)
    ap.add_argument("--rounds", type=int, default=3, help="first-backup rounds (fresh repositories)")
    ap.add_argument("--repeat", type=int, default=5, help="no-change and restore rounds")
    ap.add_argument("--lab", default="benchbk")
    ap.add_argument("--keep", action="store_true")
    a = ap.parse_args()
    kiln = os.path.abspath(a.kiln)
    work = tempfile.mkdtemp(prefix="kiln-bench-backup-")
    config = os.path.join(work, "kiln.toml")
    with open(config, "w") as f:
        f.write(KILN_TOML.replace("PREFIX", "kiln/r0"))
    passfile = os.path.join(work, "passphrase")
    with open(passfile, "w") as f:
        f.write("bench passphrase, not a secret\n")
    os.chmod(passfile, 0o600)
    env = ["--env", "lab", "--config", config]
    print("data: 1 GiB mixed + 10 000 small files ...", flush=True)
    mixed, tree = make_data(os.path.join(work, "data"))
    try:
        run([kiln, "lab", "up", "--yes", "--lab", a.lab, "--servers", "1", "--s3", "bench",
             "--retention-days", "1", "--passphrase-file", passfile, "--config", config])
        out = run([kiln, "secrets", "recovery-key", "--passphrase-file", passfile] + env)
        key = re.search(r"AGE-SECRET-KEY-[0-9A-Z]+", out).group(0)
        identity = os.path.join(work, "recovery.txt")
        with open(identity, "w") as f:
            f.write(key + "\n")
        os.chmod(identity, 0o600)
        vault = env + ["--identity", identity]

        def secret(name):
            return run([kiln, "secrets", "get", name] + vault).rstrip("\n")

        with open(config) as f:
            recorded = f.read()
        with open(config) as f:
            endpoint = re.search(r'backup_repository = \{ endpoint = "([^"]+)"', f.read()).group(1)
        server = (secret("backup_server_access_key"), secret("backup_server_secret_key"))
        password = secret("backup_repository_password")
        secrets = os.path.join(work, "secrets.json")
        with open(secrets, "w") as f:
            json.dump({"access_key_id": server[0], "secret_access_key": server[1],
                       "repository_password": password}, f)
        os.chmod(secrets, 0o600)
        restic_env = dict(os.environ, AWS_ACCESS_KEY_ID=server[0], AWS_SECRET_ACCESS_KEY=server[1],
                          RESTIC_PASSWORD=password,
                          RESTIC_CACHE_DIR=os.path.join(work, "restic-cache"))

        def plan(prefix, service, path):
            p = os.path.join(work, f"plan-{prefix.replace('/', '-')}-{service}.json")
            with open(p, "w") as f:
                json.dump({"environment": "lab", "host": "bench",
                           "repository": {"endpoint": endpoint, "region": "us-east-1",
                                          "bucket": "bench", "prefix": prefix},
                           "metrics_dir": None, "state_path": os.path.join(work, "state", "last.json"),
                           "items": [{"service": service, "kind": "files",
                                      "source": {"paths": {"paths": [path]}},
                                      "description": f"bench {service}"}]}, f)
            return p

        def kiln_backup(prefix, service, path):
            dt, _ = timed([kiln, "agent", "backup", "--plan", plan(prefix, service, path), "--secrets", secrets])
            return dt

        def restic(repo, *args):
            t = timed_env(["restic", "-r", f"s3:{endpoint}/bench/{repo}", *args], restic_env)
            return t

        results = {k: [] for k in ["kiln first 1GiB", "restic first 1GiB", "kiln first tree",
                                   "restic first tree", "kiln no-change 1GiB", "restic no-change 1GiB",
                                   "kiln no-change tree", "restic no-change tree",
                                   "kiln restore 1GiB", "restic restore 1GiB"]}
        for r in range(1, a.rounds + 1):
            prefix = f"kiln/r{r}"
            # What `lab up` recorded (backup_repository) stays; only the prefix changes.
            with open(config, "w") as f:
                f.write(re.sub(r'prefix = "[^"]*"', f'prefix = "{prefix}"', recorded))
            run([kiln, "backup", "init"] + vault)
            restic(f"restic/r{r}", "init")
            k1 = kiln_backup(prefix, "mixed", mixed)
            r1 = restic(f"restic/r{r}", "backup", "--host", "bench", mixed)
            k2 = kiln_backup(prefix, "tree", tree)
            r2 = restic(f"restic/r{r}", "backup", "--host", "bench", tree)
            results["kiln first 1GiB"].append(k1)
            results["restic first 1GiB"].append(r1)
            results["kiln first tree"].append(k2)
            results["restic first tree"].append(r2)
            print(f"round {r}: first 1GiB kiln {k1:.1f} s restic {r1:.1f} s; "
                  f"first tree kiln {k2:.1f} s restic {r2:.1f} s", flush=True)
        last = a.rounds
        prefix = f"kiln/r{last}"
        for i in range(a.repeat):
            k1 = kiln_backup(prefix, "mixed", mixed)
            r1 = restic(f"restic/r{last}", "backup", "--host", "bench", mixed)
            k2 = kiln_backup(prefix, "tree", tree)
            r2 = restic(f"restic/r{last}", "backup", "--host", "bench", tree)
            for k, v in [("kiln no-change 1GiB", k1), ("restic no-change 1GiB", r1),
                         ("kiln no-change tree", k2), ("restic no-change tree", r2)]:
                results[k].append(v)
            print(f"no-change {i + 1}: 1GiB kiln {k1:.2f} s restic {r1:.2f} s; "
                  f"tree kiln {k2:.2f} s restic {r2:.2f} s", flush=True)
        for i in range(a.repeat):
            kd = os.path.join(work, f"restore-kiln-{i}")
            rd = os.path.join(work, f"restore-restic-{i}")
            k, _ = timed([kiln, "backup", "restore", "mixed", "--to", kd] + vault)
            r = restic(f"restic/r{last}", "restore", "latest", "--host", "bench", "--path", mixed,
                       "--target", rd)
            results["kiln restore 1GiB"].append(k)
            results["restic restore 1GiB"].append(r)
            same = run(["diff", "-rq", mixed, kd + "/files" + mixed]) == ""
            shutil.rmtree(kd)
            shutil.rmtree(rd)
            print(f"restore {i + 1}: kiln {k:.1f} s (identical: {same}) restic {r:.1f} s", flush=True)
        print("\n| run | kiln median | restic median | kiln / restic | n |")
        print("| --- | ---: | ---: | ---: | ---: |")
        for what in ["first 1GiB", "first tree", "no-change 1GiB", "no-change tree", "restore 1GiB"]:
            k = statistics.median(results[f"kiln {what}"])
            r = statistics.median(results[f"restic {what}"])
            print(f"| {what} | {k:.2f} s | {r:.2f} s | {k / r:.2f} | {len(results[f'kiln {what}'])} |")
        with open(os.path.join(work, "results.json"), "w") as f:
            json.dump(results, f, indent=1)
    finally:
        if not a.keep:
            subprocess.run([kiln, "lab", "down", "--lab", a.lab], capture_output=True)
            shutil.rmtree(work, ignore_errors=True)


def timed_env(cmd, env):
    import time

    t = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True, env=env)
    dt = time.perf_counter() - t
    if p.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed ({p.returncode}):\n{p.stdout}\n{p.stderr}")
    return dt


if __name__ == "__main__":
    main()
