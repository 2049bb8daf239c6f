//! `kiln lab demo`: kiln's main job end to end on an embedded example repository
//! (examples/demo/), on throwaway lab servers of this machine: write the repository, start
//! the lab (its addresses and host keys recorded in kiln.toml), check it, create the vault
//! and generate secrets, plan, apply, verify the web page over HTTP, plan again (no change),
//! tear the lab down.
//!
//! Terminal side only: narration with timings on stderr, plans and the summary on stdout.
//! Each step reuses what the matching command does (`lab up`, `check`, `secrets generate`,
//! `plan`, `apply`); nothing here shells out to kiln.

use std::fmt::Write as _;
use std::io::{IsTerminal, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kiln_converge::plan::Summary;
use kiln_converge::run::Slot;
use kiln_lab::{Lab, LabOptions};

use super::plan::{Targeting, add, agent_binary, collect_plans, render_plan, select_jobs};
use crate::GlobalArgs;
use crate::error::{CliError, CmdResult};

/// The demo repository, embedded in the binary: (path relative to the folder, content).
const FILES: &[(&str, &str)] = &[
    (
        "kiln.toml",
        include_str!("../../../../examples/demo/kiln.toml"),
    ),
    (
        ".gitignore",
        include_str!("../../../../examples/demo/.gitignore"),
    ),
    (
        "templates/index.html.j2",
        include_str!("../../../../examples/demo/templates/index.html.j2"),
    ),
    (
        "templates/Caddyfile.j2",
        include_str!("../../../../examples/demo/templates/Caddyfile.j2"),
    ),
    (
        "templates/wireguard.key.j2",
        include_str!("../../../../examples/demo/templates/wireguard.key.j2"),
    ),
    (
        "templates/probe.py.j2",
        include_str!("../../../../examples/demo/templates/probe.py.j2"),
    ),
    (
        "files/caddy.service",
        include_str!("../../../../examples/demo/files/caddy.service"),
    ),
    (
        "files/kiln-demo-probe.service",
        include_str!("../../../../examples/demo/files/kiln-demo-probe.service"),
    ),
];

/// The demo's environment, and the role whose web page is checked.
const ENV: &str = "lab";
const WEB_ROLE: &str = "services";
const PROBE_ROLE: &str = "monitoring";
/// The random vault passphrase, next to kiln.toml (ignored by the demo's .gitignore).
const PASSPHRASE_FILE: &str = "demo-passphrase.txt";
const STEPS: usize = 7;

/// Run kiln's main job end to end on an embedded example, on throwaway lab servers.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Needs root (the lab's servers are systemd-nspawn machines).

Examples:
  kiln lab demo --yes                 everything, then the lab is removed
  kiln lab demo --yes --keep          keep the servers to look around (kiln lab ssh, kiln plan)
  kiln lab demo --dir ./my-demo       write the demo repository there (an empty or new folder)"
)]
pub struct Args {
    /// Install missing host prerequisites with apt without asking.
    #[arg(long, short = 'y')]
    yes: bool,
    /// Folder for the demo repository (new or empty); default: a new folder under the
    /// temporary directory, kept afterwards.
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
    /// Leave the lab running at the end (and after a failure), to look around.
    #[arg(long)]
    keep: bool,
    /// Name of the demo's lab (distinct from your other labs).
    #[arg(long = "lab", default_value = "demo", value_name = "NAME")]
    lab: String,
}

/// Step headers and timings on stderr.
struct Narrator {
    start: Instant,
    tty: bool,
}

impl Narrator {
    fn at(&self) -> String {
        format!("[{:6.1}s]", self.start.elapsed().as_secs_f64())
    }
    fn step(&self, n: usize, title: &str) -> Instant {
        if self.tty {
            eprintln!("\n{} \x1b[1mStep {n}/{STEPS}: {title}\x1b[0m", self.at());
        } else {
            eprintln!("\n{} Step {n}/{STEPS}: {title}", self.at());
        }
        Instant::now()
    }
    fn say(&self, m: &str) {
        eprintln!("{}   {m}", self.at());
    }
}

/// A failed step: the error says which step (and the underlying error names the host).
fn in_step(n: usize, title: &str, e: CliError) -> CliError {
    CliError {
        code: e.code,
        report: e
            .report
            .wrap_err(format!("kiln lab demo: step {n}/{STEPS} ({title}) failed")),
    }
}

fn failed(m: String) -> CliError {
    CliError::failed(miette::miette!("{m}"))
}

/// Step timings for the summary.
#[derive(Default)]
struct Timings {
    first_server: Option<Duration>,
    lab_ready: Duration,
    apply: Duration,
    applied: usize,
    noop_plan: Duration,
    steps: Vec<(String, Duration)>,
}

pub fn run(_global: &GlobalArgs, args: Args) -> CmdResult {
    let n = Narrator {
        start: Instant::now(),
        tty: std::io::stderr().is_terminal(),
    };
    let mut t = Timings::default();
    // A bad lab name is refused before anything is written.
    kiln_lab::layout::validate_lab_name(&args.lab)
        .map_err(|e| CliError::invalid(miette::miette!("{e}")))?;

    // 1. The repository.
    let title = "write the demo repository";
    let s = n.step(1, title);
    let dir = write_repository(args.dir.as_deref()).map_err(|e| in_step(1, title, e))?;
    let config = dir.join("kiln.toml");
    n.say(&format!(
        "wrote {} files to {} (kept afterwards: look at kiln.toml and templates/)",
        FILES.len(),
        dir.display()
    ));
    t.steps.push((title.into(), s.elapsed()));

    // Interrupted (Ctrl-C, SIGTERM): remove the lab, unless --keep, and stop.
    let (lab_name, keep) = (args.lab.clone(), args.keep);
    let _ = ctrlc::set_handler(move || {
        if keep {
            eprintln!("\ninterrupted: the lab `{lab_name}` is left as it is (--keep)");
        } else {
            eprintln!("\ninterrupted: removing the lab `{lab_name}`");
            if let Err(e) = kiln_lab::down(&kiln_lab::Roots::default(), &lab_name) {
                eprintln!("removing it failed: {e}\n  hint: kiln lab down --lab {lab_name}");
            }
        }
        std::process::exit(130);
    });

    // 2. The lab.
    let title = "start the lab servers";
    let s = n.step(2, title);
    let lab = start_lab(&n, &args, &config, &mut t).map_err(|e| in_step(2, title, e))?;
    t.steps.push((title.into(), s.elapsed()));

    // 3-7 with the lab up; torn down afterwards, success or not, unless --keep.
    let result = with_lab(&n, &lab, &dir, &mut t);
    let servers: Vec<(String, IpAddr)> = lab
        .servers()
        .iter()
        .map(|s| (s.name.clone(), s.address))
        .collect();
    let identity = lab.identity_file();
    if args.keep {
        let name = lab.name().to_owned();
        lab.detach();
        keep_hints(&name, &dir, &identity);
    } else {
        let s = Instant::now();
        n.say(&format!("removing lab `{}`", lab.name()));
        let down = lab.down();
        t.steps.push(("remove the lab".into(), s.elapsed()));
        match down {
            Ok(_) => n.say(&format!(
                "lab removed in {:.1} s (the demo repository stays in {})",
                s.elapsed().as_secs_f64(),
                dir.display()
            )),
            Err(e) => {
                let e = failed(format!(
                    "removing the demo's lab failed: {e}\n  hint: kiln lab down --lab {}",
                    args.lab
                ));
                return Err(match result {
                    // The first failure matters most; the teardown one is printed too.
                    Err(first) => {
                        eprintln!("{:?}", e.report);
                        first
                    }
                    Ok(()) => e,
                });
            }
        }
    }
    result?;
    summary(&n, &t, &servers, &dir);
    Ok(ExitCode::SUCCESS)
}

/// Step 1: a new folder (or an empty one) with the embedded files.
fn write_repository(dir: Option<&Path>) -> Result<PathBuf, CliError> {
    let dir = match dir {
        Some(d) => {
            if let Ok(mut entries) = std::fs::read_dir(d)
                && entries.next().is_some()
            {
                return Err(CliError::invalid(miette::miette!(
                    help = "pick a new or empty folder, or leave out --dir for a new temporary one",
                    "{} is not empty: the demo writes a fresh repository and overwrites nothing",
                    d.display()
                )));
            }
            std::fs::create_dir_all(d)
                .map_err(|e| failed(format!("cannot create {}: {e}", d.display())))?;
            d.to_path_buf()
        }
        None => {
            let stamp = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0);
            let d = std::env::temp_dir().join(format!("kiln-demo-{stamp}-{}", std::process::id()));
            std::fs::create_dir(&d)
                .map_err(|e| failed(format!("cannot create {}: {e}", d.display())))?;
            d
        }
    };
    let dir = std::path::absolute(&dir)
        .map_err(|e| failed(format!("cannot resolve {}: {e}", dir.display())))?;
    for (rel, content) in FILES {
        let path = dir.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| failed(format!("cannot create {}: {e}", parent.display())))?;
        }
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| failed(format!("cannot write {}: {e}", path.display())))?;
        f.write_all(content.as_bytes())
            .map_err(|e| failed(format!("cannot write {}: {e}", path.display())))?;
    }
    Ok(dir)
}

/// Step 2: one server per host role of the `lab` environment, recorded in kiln.toml.
fn start_lab(n: &Narrator, args: &Args, config: &Path, t: &mut Timings) -> Result<Lab, CliError> {
    let lab_err = |e: kiln_lab::LabError| failed(e.to_string());
    let roles = kiln_lab::config::lab_roles(config).map_err(lab_err)?;
    n.say(&format!(
        "lab `{}`: one Debian 13 server per host role of the `{ENV}` environment ({})",
        args.lab,
        roles.join(", ")
    ));
    let first_ssh: Arc<Mutex<Option<Duration>>> = Arc::new(Mutex::new(None));
    let demo_start = n.start;
    let first = first_ssh.clone();
    let opts = LabOptions {
        name: args.lab.clone(),
        server_names: roles,
        install_missing: args.yes,
        progress: Some(Arc::new(move |m: &kiln_lab::LabEvent| {
            if matches!(m, kiln_lab::LabEvent::ServerReady { .. })
                && let Ok(mut f) = first.lock()
                && f.is_none()
            {
                *f = Some(demo_start.elapsed());
            }
            eprintln!("[{:6.1}s]     lab: {m}", demo_start.elapsed().as_secs_f64())
        })),
        ..Default::default()
    };
    let lab = Lab::start(opts).map_err(|e| {
        let mut m = e.to_string();
        if matches!(e, kiln_lab::LabError::MissingPrerequisites { .. }) {
            m.push_str("\n  (or run `kiln lab demo --yes` to let the demo install them)");
        }
        failed(m)
    })?;
    t.lab_ready = n.start.elapsed();
    t.first_server = first_ssh.lock().ok().and_then(|f| *f);
    for s in lab.servers() {
        n.say(&format!(
            "{:<11} {}  (ssh {}@{}, {} host keys)",
            s.name,
            s.address,
            s.admin_user,
            s.address,
            s.host_keys.len()
        ));
    }
    // From here, a failure drops `lab`, which tears it down.
    kiln_lab::config::record_hosts(config, lab.servers()).map_err(lab_err)?;
    n.say(&format!(
        "recorded their addresses and pinned SSH host keys in {}",
        config.display()
    ));
    Ok(lab)
}

/// Steps 3 to 7, with the lab running.
fn with_lab(n: &Narrator, lab: &Lab, dir: &Path, t: &mut Timings) -> Result<(), CliError> {
    let config = dir.join("kiln.toml");
    let global = GlobalArgs {
        config: Some(config.clone()),
    };

    // 3. kiln check.
    let title = "check kiln.toml";
    let s = n.step(3, title);
    let model = super::check::load_model(&global).map_err(|e| in_step(3, title, e))?;
    let roles: Vec<String> = model.roles.keys().cloned().collect();
    n.say(&format!(
        "{}: valid — environment `{ENV}`, hosts {}, roles {}",
        config.display(),
        model
            .environment(ENV)
            .map(|e| e.hosts.keys().cloned().collect::<Vec<_>>().join(", "))
            .unwrap_or_default(),
        roles.join(", ")
    ));
    t.steps.push((title.into(), s.elapsed()));

    // 4. The vault.
    let title = "create the vault and generate secrets";
    let s = n.step(4, title);
    let pass = write_passphrase(dir).map_err(|e| in_step(4, title, e))?;
    n.say(&format!(
        "random demo passphrase written to {} (mode 0600; a real repository keeps its passphrase out of git, e.g. in a password manager)",
        pass.display()
    ));
    let unlock = kiln_ops::vault::UnlockOptions {
        passphrase_file: Some(pass.clone()),
        ..Default::default()
    };
    let ctx = crate::context::Context::new(
        &global,
        crate::printer::Printer::new(crate::printer::Mode::Human),
    );
    super::secrets::generate(&ctx, ENV, &unlock).map_err(|e| in_step(4, title, e))?;
    n.say(&format!(
        "secrets are in {}, one age file per secret",
        dir.join("secrets").join(ENV).display()
    ));
    t.steps.push((title.into(), s.elapsed()));

    let target = Targeting {
        env: Some(ENV.into()),
        hosts: vec![],
        identity: Some(lab.identity_file()),
        ask_sudo_password: false,
        state: None,
        jobs: 8,
        passphrase_file: Some(pass),
    };

    // 5. Plan, then apply exactly that plan.
    let title = "plan, then apply";
    let s = n.step(5, title);
    let apply_start = Instant::now();
    plan_and_apply(n, &global, &target, t).map_err(|e| in_step(5, title, e))?;
    t.apply = apply_start.elapsed();
    t.steps.push((title.into(), s.elapsed()));

    // 6. The page, from this machine.
    let title = "verify the web page over HTTP";
    let s = n.step(6, title);
    verify(n, lab).map_err(|e| in_step(6, title, e))?;
    t.steps.push((title.into(), s.elapsed()));

    // 7. Plan again: nothing to do.
    let title = "plan again: nothing should change";
    let s = n.step(7, title);
    noop_plan(n, &global, &target, t).map_err(|e| in_step(7, title, e))?;
    t.steps.push((title.into(), s.elapsed()));
    Ok(())
}

fn write_passphrase(dir: &Path) -> Result<PathBuf, CliError> {
    let spec = kiln_secrets::SecretSpec {
        name: "demo_passphrase".into(),
        rule: kiln_secrets::SecretRule::Random {
            length: 32,
            alphabet: kiln_secrets::Alphabet::Alphanumeric,
        },
        description: "the demo vault's passphrase".into(),
    };
    let values = kiln_secrets::generate::generate(&spec, &mut kiln_secrets::OsRng)
        .map_err(|e| failed(format!("cannot generate the demo passphrase: {e}")))?;
    let (_, value) = values
        .into_iter()
        .next()
        .ok_or_else(|| failed("no demo passphrase was generated".into()))?;
    let path = dir.join(PASSPHRASE_FILE);
    // Mode 0600 from creation, before any content.
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .map_err(|e| failed(format!("cannot create {}: {e}", path.display())))?;
    f.write_all(format!("{}\n", value.expose()).as_bytes())
        .map_err(|e| failed(format!("cannot write {}: {e}", path.display())))?;
    Ok(path)
}

/// `kiln apply` without the question: the plan is shown, pinned, then applied.
fn plan_and_apply(
    n: &Narrator,
    global: &GlobalArgs,
    target: &Targeting,
    t: &mut Timings,
) -> Result<(), CliError> {
    let jobs = select_jobs(global, target)?;
    let binary = agent_binary()?;
    let mut slots: Vec<Slot> = jobs.into_iter().map(Slot::new).collect();
    let s = Instant::now();
    let plans = super::apply::plan_pinned(&mut slots, &binary, target.jobs)?;
    let mut total = Summary::default();
    for (name, p) in &plans {
        print!("{}", render_plan(name, p));
        add(&mut total, p.counts());
    }
    let _ = std::io::stdout().flush();
    n.say(&format!(
        "plan: {} to create, {} to change, {} to remove on {} host(s), in {:.1} s",
        total.create,
        total.change,
        total.remove,
        plans.len(),
        s.elapsed().as_secs_f64()
    ));
    n.say("applying exactly this plan (Caddy comes from Debian through the lab's apt proxy)");
    let report = super::apply::apply_slots(&mut slots, &binary, target.jobs, false);
    if !report.failed.is_empty() {
        return Err(failed(format!(
            "{} host(s) failed:\n{}",
            report.failed.len(),
            report.failed.join("\n")
        )));
    }
    t.applied = report.changed;
    n.say(&format!(
        "applied {} change(s) on {} host(s) in {:.1} s",
        report.changed,
        report.hosts,
        report.elapsed.as_secs_f64()
    ));
    Ok(())
}

/// The line the demo's index.html template renders for a host (checked in step 6).
fn page_marker(role: &str) -> String {
    format!("served by the {role} host of the {ENV} environment")
}

/// Step 6: the services server answers HTTP with its page (connecting only to its address);
/// then what the monitoring host's prober sees.
fn verify(n: &Narrator, lab: &Lab) -> Result<(), CliError> {
    let server = lab
        .server(WEB_ROLE)
        .map_err(|e| failed(e.to_string()))?
        .clone();
    let addr = SocketAddr::new(server.address, 80);
    let marker = page_marker(WEB_ROLE);
    let deadline = Instant::now() + Duration::from_secs(20);
    let s = Instant::now();
    let outcome = loop {
        let r = http_get(addr, &format!("{WEB_ROLE}.demo.lab"));
        match &r {
            Ok((200, body)) if body.contains(&marker) => break r,
            _ if Instant::now() >= deadline => break r,
            _ => std::thread::sleep(Duration::from_millis(300)),
        }
    };
    match outcome {
        Ok((200, body)) if body.contains(&marker) => {
            let title = body
                .split("<h1>")
                .nth(1)
                .and_then(|r| r.split("</h1>").next())
                .unwrap_or("");
            n.say(&format!(
                "page verified: http://{addr}/ on {} answered 200 \"{title}\" ({} bytes, {:.0} ms)",
                server.name,
                body.len(),
                s.elapsed().as_secs_f64() * 1000.0
            ));
        }
        Ok((status, body)) => {
            return Err(failed(format!(
                "http://{addr}/ on host {} answered {status} without \"{marker}\" (first bytes: {:?})",
                server.name,
                body.chars().take(200).collect::<String>()
            )));
        }
        Err(e) => {
            return Err(failed(format!(
                "http://{addr}/ on host {}: {e}\n  hint: kiln lab demo --keep, then `kiln lab ssh --lab {} {} -- systemctl status caddy`",
                server.name,
                lab.name(),
                server.name
            )));
        }
    }
    // What the monitoring host sees: informative, the check above is the verification.
    if lab.server(PROBE_ROLE).is_ok() {
        let deadline = Instant::now() + Duration::from_secs(15);
        let mut last = String::new();
        while Instant::now() < deadline {
            last = lab
                .exec_ok(
                    PROBE_ROLE,
                    "cat /var/lib/kiln-demo/probe.txt 2>/dev/null || true",
                )
                .unwrap_or_default();
            if last.contains("HTTP 200") {
                break;
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        if last.contains("HTTP 200") {
            n.say(&format!(
                "{PROBE_ROLE}'s prober sees it too: {}",
                last.trim()
            ));
        } else {
            n.say(&format!(
                "warning: {PROBE_ROLE}'s prober has not seen the page yet ({})",
                if last.trim().is_empty() {
                    "no result written"
                } else {
                    last.trim()
                }
            ));
        }
    }
    Ok(())
}

/// A plain HTTP/1.0 GET; returns the status and the body.
fn http_get(addr: SocketAddr, host: &str) -> Result<(u16, String), String> {
    let timeout = Duration::from_secs(5);
    let mut stream =
        TcpStream::connect_timeout(&addr, timeout).map_err(|e| format!("cannot connect: {e}"))?;
    stream
        .set_read_timeout(Some(timeout))
        .and_then(|_| stream.set_write_timeout(Some(timeout)))
        .map_err(|e| format!("socket: {e}"))?;
    let request = format!("GET / HTTP/1.0\r\nHost: {host}\r\nUser-Agent: kiln-demo\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .map_err(|e| format!("sending the request: {e}"))?;
    let mut raw = Vec::new();
    stream
        .take(1 << 20)
        .read_to_end(&mut raw)
        .map_err(|e| format!("reading the answer: {e}"))?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").ok_or_else(|| {
        format!(
            "not an HTTP answer: {:?}",
            text.chars().take(80).collect::<String>()
        )
    })?;
    let status = head
        .lines()
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse::<u16>().ok())
        .ok_or_else(|| format!("no HTTP status line: {:?}", head.lines().next()))?;
    Ok((status, body.to_owned()))
}

/// Step 7: `kiln plan` on fresh connections; every host must report no changes.
fn noop_plan(
    n: &Narrator,
    global: &GlobalArgs,
    target: &Targeting,
    t: &mut Timings,
) -> Result<(), CliError> {
    let s = Instant::now();
    let jobs = select_jobs(global, target)?;
    let results = collect_plans(jobs, target.jobs)?;
    t.noop_plan = s.elapsed();
    let mut pending = vec![];
    let mut failures = vec![];
    for (name, r) in &results {
        match r {
            Ok(o) if !o.failed => match &o.plan {
                Some(p) => {
                    print!("{}", render_plan(name, p));
                    if !p.is_empty() {
                        pending.push(name.clone());
                    }
                }
                None => failures.push(format!("{name}: the agent reported no plan")),
            },
            Ok(o) => failures.push(format!("{name}: {}", o.errors.join("; "))),
            Err(e) => failures.push(e.to_string()),
        }
    }
    let _ = std::io::stdout().flush();
    if !failures.is_empty() {
        return Err(failed(format!(
            "planning failed on {} host(s):\n{}",
            failures.len(),
            failures.join("\n")
        )));
    }
    if !pending.is_empty() {
        return Err(failed(format!(
            "the second plan is not empty on {}: a converged host must show zero changes",
            pending.join(", ")
        )));
    }
    n.say(&format!(
        "zero changes on {} host(s); the plan took {:.1} s (connect, ship the agent if needed, observe, compare)",
        results.len(),
        t.noop_plan.as_secs_f64()
    ));
    Ok(())
}

fn keep_hints(lab: &str, dir: &Path, identity: &Path) {
    let config = dir.join("kiln.toml");
    eprintln!(
        "\nThe lab `{lab}` keeps running. To look around:\n\
         \x20 kiln lab ssh --lab {lab} {WEB_ROLE}\n\
         \x20 KILN_PASSPHRASE_FILE={pass} kiln plan --config {config} --env {ENV} --identity {identity}\n\
         \x20 kiln lab down --lab {lab}",
        pass = dir.join(PASSPHRASE_FILE).display(),
        config = config.display(),
        identity = identity.display(),
    );
}

fn summary(n: &Narrator, t: &Timings, servers: &[(String, IpAddr)], dir: &Path) {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\nkiln lab demo: done in {:.1} s",
        n.start.elapsed().as_secs_f64()
    );
    for (name, addr) in servers {
        let _ = writeln!(out, "  server {name:<11} {addr}");
    }
    let _ = writeln!(out, "  resources applied:       {} change(s)", t.applied);
    match t.first_server {
        Some(d) => {
            let _ = writeln!(
                out,
                "  time to first server:    {:.1} s (all servers ready at {:.1} s)",
                d.as_secs_f64(),
                t.lab_ready.as_secs_f64()
            );
        }
        None => {
            let _ = writeln!(
                out,
                "  time to servers ready:   {:.1} s",
                t.lab_ready.as_secs_f64()
            );
        }
    }
    let _ = writeln!(
        out,
        "  first apply (plan+apply): {:.1} s",
        t.apply.as_secs_f64()
    );
    let _ = writeln!(
        out,
        "  no-change plan:          {:.1} s",
        t.noop_plan.as_secs_f64()
    );
    let _ = writeln!(out, "  steps:");
    for (i, (title, d)) in t.steps.iter().enumerate() {
        let _ = writeln!(out, "    {}. {title:<40} {:6.1} s", i + 1, d.as_secs_f64());
    }
    let _ = writeln!(out, "  the demo repository: {}", dir.display());
    print!("{out}");
    let _ = std::io::stdout().flush();
}
