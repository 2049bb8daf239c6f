#!/usr/bin/env python3
"""kiln vs ansible-playbook on the same lab server, same work.

Workload (per tool, under its own prefix so the two never share state): 100 templated
files in 10 directories, 5 systemd units enabled and started, 3 Debian packages.

For each round: reset the server, time the first run, then time a no-change run; for
kiln also the same on all lab servers at once (8 by default) versus one. Prints medians
and ratios. Benchmark only: nothing here is a test, and the targets are reported, not
asserted.

Needs: root, a `kiln` with `kiln lab` (to start the lab) and a release `kiln` to measure
(may be the same binary), ansible-core 2.19 in a venv (bench/setup.sh makes it).
Talks only to the lab's own servers (network namespaces on this machine).
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

PACKAGES = ["tree", "jq", "nano"]
N_FILES, N_DIRS, N_UNITS = 100, 10, 5


def render(tool, i):
    """The template both tools render (kiln on the laptop, ansible with its template module)."""
    lines = [f"# managed by {tool}: file {i}", "[section]", f"name = bench-{i}", f"value = {i * 7}"]
    lines += [f"key{k} = {i + k}" for k in range(5)]
    return "\n".join(lines) + "\n"


TEMPLATE_J2 = """# managed by {{ tool }}: file {{ i }}
[section]
name = bench-{{ i }}
value = {{ i * 7 }}
{% for k in range(5) %}key{{ k }} = {{ i + k }}
{% endfor %}"""


def unit(tool, i):
    return (
        f"[Unit]\nDescription={tool} bench unit {i}\n\n[Service]\nExecStart=/bin/sleep infinity\n\n"
        f"[Install]\nWantedBy=multi-user.target\n"
    )


def paths(prefix):
    dirs = [f"/srv/{prefix}/d{d}" for d in range(N_DIRS)]
    files = [(i, f"/srv/{prefix}/d{i % N_DIRS}/f{i:03}.conf") for i in range(N_FILES)]
    units = [f"{prefix}-{u}.service" for u in range(N_UNITS)]
    return dirs, files, units


def kiln_desired(name):
    dirs, files, units = paths("kb")
    return {
        "host": name,
        "os": "debian",
        "packages": [{"name": p} for p in PACKAGES],
        "directories": [{"path": f"/srv/kb"}] + [{"path": d} for d in dirs],
        "files": [{"path": p, "content": render("kiln", i), "notify": []} for i, p in files],
        "units": [{"name": u, "content": unit("kiln", n)} for n, u in enumerate(units)],
    }


def kiln_state(servers, identity):
    return {
        "hosts": [
            {
                "name": s["name"],
                "address": s["address"],
                "port": 22,
                "user": "kiln",
                "host_keys": s["host_keys"],
                "identity_file": identity,
                "desired": kiln_desired(s["name"]),
            }
            for s in servers
        ]
    }


def ansible_files(work, server, identity, known_hosts):
    dirs, files, units = paths("ab")
    with open(os.path.join(work, "file.conf.j2"), "w") as f:
        f.write(TEMPLATE_J2)
    with open(os.path.join(work, "inventory.ini"), "w") as f:
        f.write(
            f"[bench]\n{server['name']} ansible_host={server['address']} ansible_user=kiln "
            f"ansible_ssh_private_key_file={identity} ansible_python_interpreter=/usr/bin/python3\n"
        )
    with open(os.path.join(work, "ansible.cfg"), "w") as f:
        f.write(
            "[defaults]\nhost_key_checking = True\ngathering = explicit\nforks = 10\n"
            "[ssh_connection]\npipelining = True\n"
            f"ssh_args = -o ControlMaster=auto -o ControlPersist=60s -o UserKnownHostsFile={known_hosts} "
            "-o StrictHostKeyChecking=yes\n"
        )
    play = [
        {
            "hosts": "bench",
            "become": True,
            "gather_facts": False,
            "vars": {"tool": "ansible"},
            "tasks": [
                {"name": "packages", "ansible.builtin.apt": {"name": PACKAGES, "state": "present", "install_recommends": False}},
                {"name": "directories", "ansible.builtin.file": {"path": "{{ item }}", "state": "directory", "mode": "0755"},
                 "loop": ["/srv/ab"] + dirs},
                {"name": "files", "ansible.builtin.template": {"src": "file.conf.j2", "dest": "{{ item.1 }}", "mode": "0644"},
                 "loop": [[i, p] for i, p in files], "vars": {"i": "{{ item.0 }}"}},
                {"name": "unit files", "ansible.builtin.copy": {"content": "{{ item.1 }}", "dest": "/etc/systemd/system/{{ item.0 }}", "mode": "0644"},
                 "loop": [[u, unit("ansible", n)] for n, u in enumerate(units)]},
                {"name": "units", "ansible.builtin.systemd_service": {"name": "{{ item }}", "enabled": True, "state": "started", "daemon_reload": True},
                 "loop": units},
            ],
        }
    ]
    with open(os.path.join(work, "playbook.json"), "w") as f:
        json.dump(play, f, indent=1)  # JSON is valid YAML


def busy_cpu_seconds():
    """CPU time the whole machine spent busy (all cores; not idle, not iowait), from /proc/stat.

    The lab's servers share this machine's cores, so for runs on many servers at once the
    busy time divided by the core count is a floor no orchestration can beat here."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields[:8]
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def timed(cmd, env=None, cwd=None):
    """Wall seconds, output, and machine-wide busy CPU seconds of one run."""
    c = busy_cpu_seconds()
    t = time.monotonic()
    r = subprocess.run(cmd, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    dt = time.monotonic() - t
    cpu = busy_cpu_seconds() - c
    if r.returncode != 0:
        sys.stderr.write(r.stdout[-3000:])
        raise SystemExit(f"failed ({r.returncode}): {' '.join(cmd)}")
    return dt, r.stdout, cpu


def ssh(server, identity, known_hosts, command):
    subprocess.run(
        ["ssh", "-o", "BatchMode=yes", "-o", f"UserKnownHostsFile={known_hosts}", "-o", "StrictHostKeyChecking=yes",
         "-i", identity, f"kiln@{server['address']}", command],
        check=True, stdout=subprocess.DEVNULL,
    )


RESET = (
    "sudo sh -c 'for u in /etc/systemd/system/kb-*.service /etc/systemd/system/ab-*.service; do "
    "[ -e \"$u\" ] && systemctl disable --now \"$(basename $u)\" >/dev/null 2>&1; rm -f \"$u\"; done; "
    "systemctl daemon-reload; rm -rf /srv/kb /srv/ab /var/lib/kiln/owned.json; "
    "DEBIAN_FRONTEND=noninteractive apt-get purge -y -q " + " ".join(PACKAGES) + " >/dev/null 2>&1; true'"
)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--kiln", required=True, help="release kiln binary to measure")
    ap.add_argument("--lab-kiln", help="kiln binary with `kiln lab` (default: --kiln)")
    ap.add_argument("--ansible", default="/opt/kiln-bench/ansible/bin/ansible-playbook")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--servers", type=int, default=8)
    ap.add_argument("--lab", default="kilnbench")
    ap.add_argument("--keep-lab", action="store_true")
    ap.add_argument("--skip-ansible-first", action="store_true", help="time ansible's first run only once")
    a = ap.parse_args()
    lab_kiln = a.lab_kiln or a.kiln
    work = tempfile.mkdtemp(prefix="kiln-bench-")
    print(f"work folder: {work}", flush=True)
    subprocess.run([lab_kiln, "lab", "up", "--lab", a.lab, "--servers", str(a.servers), "--yes"], check=True,
                   cwd=work, stdout=subprocess.DEVNULL)
    try:
        status = json.loads(subprocess.run([lab_kiln, "lab", "status", "--json"], check=True, cwd=work,
                                           stdout=subprocess.PIPE, text=True).stdout)
        lab = next(l for l in status if l["name"] == a.lab)
        servers = lab["servers"]
        identity = f"/var/lib/kiln-lab/{a.lab}/id_ed25519"
        known_hosts = os.path.join(work, "known_hosts")
        with open(known_hosts, "w") as f:
            for s in servers:
                for k in s["host_keys"]:
                    f.write(f"{s['address']} {k}\n")
        one = servers[0]
        with open(os.path.join(work, "one.json"), "w") as f:
            json.dump(kiln_state([one], identity), f)
        with open(os.path.join(work, "all.json"), "w") as f:
            json.dump(kiln_state(servers, identity), f)
        ansible_files(work, one, identity, known_hosts)
        env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(work, "ansible.cfg"))
        kiln_apply = lambda state: [a.kiln, "apply", "--yes", "--state", os.path.join(work, state), "--jobs", str(a.servers)]
        play = [a.ansible, "-i", os.path.join(work, "inventory.ini"), os.path.join(work, "playbook.json")]

        res = {k: [] for k in ["kiln_first", "kiln_nochange", "ansible_first", "ansible_nochange", "kiln_first_all", "kiln_nochange_all"]}
        cpu = {k: [] for k in res}

        def measure(key, cmd, **kw):
            dt, _, c = timed(cmd, **kw)
            res[key].append(dt)
            cpu[key].append(c)

        for r in range(a.rounds):
            for s in servers:
                ssh(s, identity, known_hosts, RESET)
            measure("kiln_first", kiln_apply("one.json"))
            for _ in range(3):
                measure("kiln_nochange", kiln_apply("one.json"))
            ssh(one, identity, known_hosts, RESET)
            if not (a.skip_ansible_first and r > 0):
                measure("ansible_first", play, env=env, cwd=work)
            measure("ansible_nochange", play, env=env, cwd=work)
            ssh(one, identity, known_hosts, RESET)
            measure("kiln_first_all", kiln_apply("all.json"))
            for _ in range(3):
                measure("kiln_nochange_all", kiln_apply("all.json"))
            print(f"round {r + 1}: " + ", ".join(f"{k}={v[-1]:.2f}s" for k, v in res.items() if v), flush=True)

        med = {k: statistics.median(v) for k, v in res.items() if v}
        med_cpu = {k: statistics.median(v) for k, v in cpu.items() if v}
        cores = os.cpu_count() or 1
        print(f"\nmedians (seconds; busy CPU = the whole machine's, {cores} cores):")
        for k, v in med.items():
            print(f"  {k:20} {v:8.3f}   busy CPU {med_cpu[k]:7.2f} s ({100 * med_cpu[k] / (cores * v):3.0f}% of {cores} cores)   (n={len(res[k])})")
        print("\nratios:")
        print(f"  no-change  ansible/kiln          = {med['ansible_nochange'] / med['kiln_nochange']:.1f}x  (target >= 30x, kiln < 1 s)")
        print(f"  first run  ansible/kiln          = {med['ansible_first'] / med['kiln_first']:.1f}x")
        print(f"  {len(servers)} servers / 1 server, first run = {med['kiln_first_all'] / med['kiln_first']:.2f}  (target < 2)")
        print(f"  {len(servers)} servers / 1 server, no-change = {med['kiln_nochange_all'] / med['kiln_nochange']:.2f}")
        floor = med_cpu["kiln_first_all"] / cores
        print(f"  {len(servers)} servers, first run: the servers share this machine's {cores} cores; its busy CPU "
              f"{med_cpu['kiln_first_all']:.1f} s / {cores} = {floor:.1f} s is the floor here; wall/floor = "
              f"{med['kiln_first_all'] / floor:.2f}")
        with open(os.path.join(work, "results.json"), "w") as f:
            json.dump({"raw": res, "median": med, "busy_cpu": cpu}, f, indent=1)
    finally:
        if not a.keep_lab:
            subprocess.run([lab_kiln, "lab", "down", "--lab", a.lab], cwd=work, stdout=subprocess.DEVNULL)
        shutil.rmtree(work, ignore_errors=True) if not a.keep_lab else None


if __name__ == "__main__":
    main()
