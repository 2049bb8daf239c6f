//! `kiln lab demo` as a workflow: kiln's main job end to end on an embedded example
//! repository (examples/demo/), on throwaway lab servers of this machine. Write the
//! repository, start the lab (its addresses and host keys recorded in kiln.toml), check
//! it, create the vault and generate secrets, plan, apply exactly that plan, verify the web
//! page over HTTP, plan again (no change), tear the lab down (unless kept).
//!
//! Owns: the steps, their order and timings, what counts as success for each, and the
//! clean-up (teardown after a failure, [`interrupted`] for Ctrl-C).
//! Must not: print or prompt (everything the user sees is a [`DemoEvent`] the CLI
//! renders), install signal handlers or exit the process (the CLI does, and calls
//! [`interrupted`]), or shell out to kiln.

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kiln_converge::Plan;
use kiln_converge::plan::Summary;
use kiln_converge::run::{HostUpdate, Slot, close_all};
use kiln_lab::Lab;
use kiln_model::{Diagnostics, Model};

use crate::jobs::{JobOptions, JobsError};
use crate::session::{self, HostFailure, SessionError, SessionSink};
use crate::vault::{Notice, UnlockError, UnlockOptions};

/// The demo repository, embedded in the binary: (path relative to the folder, content).
pub const FILES: &[(&str, &str)] = &[
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

/// The demo's environment.
pub const ENV: &str = "lab";
/// The role whose web page is checked.
pub const WEB_ROLE: &str = "services";
/// The role whose prober looks at it too.
pub const PROBE_ROLE: &str = "monitoring";
/// The random vault passphrase, next to kiln.toml (ignored by the demo's .gitignore).
pub const PASSPHRASE_FILE: &str = "demo-passphrase.txt";
/// Steps with a number (the teardown is not one).
pub const STEPS: usize = 7;
/// Hosts planned and applied in parallel.
const PARALLEL: usize = 8;

/// How to run the demo.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// Folder for the demo repository (new or empty); `None`: a new folder under the
    /// temporary directory.
    pub dir: Option<PathBuf>,
    /// The demo's lab name.
    pub lab: String,
    /// Leave the lab running at the end (and after a failure).
    pub keep: bool,
    /// Consent to install missing host prerequisites with apt.
    pub install_missing: bool,
    /// Where labs live.
    pub roots: kiln_lab::Roots,
}

/// What the demo tells the user, as it happens.
#[derive(Debug)]
pub enum DemoEvent<'a> {
    /// Step `number` of [`STEPS`] begins.
    StepStarted {
        number: usize,
        title: &'static str,
    },
    RepositoryWritten {
        dir: &'a Path,
        files: usize,
    },
    LabStarting {
        lab: &'a str,
        roles: &'a [String],
    },
    /// The lab's progress.
    Lab(&'a kiln_lab::LabEvent),
    ServerUp {
        server: &'a kiln_lab::Server,
    },
    HostsRecorded {
        config: &'a Path,
    },
    ConfigValid {
        config: &'a Path,
        hosts: Vec<String>,
        roles: Vec<String>,
    },
    PassphraseWritten {
        path: &'a Path,
    },
    /// Something the vault layer says (a vault created…).
    Vault(&'a Notice),
    SecretsGenerated {
        created: &'a [String],
        /// Secrets that need a value from the user: (name, description).
        needs_value: &'a [(String, String)],
        dir: &'a Path,
    },
    /// Plans to show (the first, pinned plans, and the no-change check's).
    Plans {
        plans: &'a [(String, Plan)],
    },
    Planned {
        total: Summary,
        hosts: usize,
        elapsed: Duration,
    },
    ApplyStarted,
    /// Apply progress of one host.
    Host {
        host: &'a str,
        update: &'a HostUpdate,
    },
    Applied {
        changed: usize,
        hosts: usize,
        elapsed: Duration,
    },
    PageVerified {
        address: SocketAddr,
        server: &'a str,
        title: &'a str,
        bytes: usize,
        elapsed: Duration,
    },
    /// What the monitoring host's prober last wrote (`seen`: it saw HTTP 200).
    Probe {
        role: &'static str,
        seen: bool,
        last: &'a str,
    },
    NoChange {
        hosts: usize,
        elapsed: Duration,
    },
    RemovingLab {
        lab: &'a str,
    },
    LabRemoved {
        elapsed: Duration,
        dir: &'a Path,
    },
    /// The teardown after a failed step failed too (the step's error is returned).
    TeardownFailed {
        error: &'a DemoError,
    },
    /// `keep`: the lab stays up.
    Kept {
        lab: &'a str,
        dir: &'a Path,
        identity: &'a Path,
    },
}

/// Receives the demo's events; called from the lab's threads too.
pub trait DemoSink: Send + Sync {
    fn event(&self, e: &DemoEvent<'_>);
}

impl<F: Fn(&DemoEvent<'_>) + Send + Sync> DemoSink for F {
    fn event(&self, e: &DemoEvent<'_>) {
        self(e)
    }
}

/// The numbers of a successful run.
#[derive(Debug, Clone, Default)]
pub struct DemoSummary {
    pub total: Duration,
    pub servers: Vec<(String, IpAddr)>,
    pub applied: usize,
    /// When the first server answered SSH, since the start (when the lab said so).
    pub first_server: Option<Duration>,
    /// When every server was ready, since the start.
    pub lab_ready: Duration,
    pub apply: Duration,
    pub noop_plan: Duration,
    /// Each step's title and duration, the teardown included.
    pub steps: Vec<(String, Duration)>,
    pub dir: PathBuf,
}

/// What went wrong in a step.
#[derive(Debug, thiserror::Error)]
pub enum StepError {
    #[error("{} is not empty: the demo writes a fresh repository and overwrites nothing", .dir.display())]
    NotEmpty { dir: PathBuf },
    #[error("cannot {action} {}: {source}", .path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Lab(#[from] kiln_lab::LabError),
    #[error("{0}")]
    Up(#[from] crate::lab::UpError),
    /// kiln.toml does not validate (every diagnostic is in it).
    #[error("{} problem(s) in {}", .diagnostics.len(), .config.display())]
    Config {
        config: PathBuf,
        diagnostics: Diagnostics,
    },
    #[error("{0}")]
    Unlock(#[from] UnlockError),
    #[error("{0}")]
    Vault(#[from] kiln_secrets::VaultError),
    #[error("cannot generate the demo passphrase: {0}")]
    Passphrase(String),
    #[error("{0}")]
    Jobs(#[from] JobsError),
    #[error("{0}")]
    Session(#[from] SessionError),
    #[error("{} host(s) failed:\n{}", .0.len(), indented(.0))]
    HostsFailed(Vec<HostFailure>),
    #[error("planning failed on {} host(s):\n{}", .0.len(), lines(.0))]
    PlanningFailed(Vec<HostFailure>),
    #[error("{0}")]
    Page(String),
    #[error(
        "the second plan is not empty on {}: a converged host must show zero changes",
        .hosts.join(", ")
    )]
    NotConverged { hosts: Vec<String> },
}

fn indented(f: &[HostFailure]) -> String {
    f.iter()
        .map(|f| format!("  {f}"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn lines(f: &[HostFailure]) -> String {
    f.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

/// The demo failed.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("{0}")]
    InvalidLabName(kiln_lab::LabError),
    /// A step failed (the underlying error names the host or file).
    #[error("kiln lab demo: step {number}/{STEPS} ({title}) failed")]
    Step {
        number: usize,
        title: &'static str,
        #[source]
        error: Box<StepError>,
    },
    #[error("removing the demo's lab failed: {error}")]
    Teardown {
        lab: String,
        #[source]
        error: kiln_lab::LabError,
    },
}

impl DemoError {
    /// Whether the user gave something the demo cannot use (exit 2).
    pub fn is_bad_input(&self) -> bool {
        match self {
            DemoError::InvalidLabName(_) => true,
            DemoError::Step { error, .. } => match error.as_ref() {
                StepError::NotEmpty { .. } | StepError::Config { .. } => true,
                StepError::Up(e) => e.is_bad_input(),
                _ => false,
            },
            DemoError::Teardown { .. } => false,
        }
    }

    /// What the user can do about it.
    pub fn hint(&self) -> Option<String> {
        match self {
            DemoError::Step { error, .. } => match error.as_ref() {
                StepError::NotEmpty { .. } => Some(
                    "pick a new or empty folder, or leave out --dir for a new temporary one".into(),
                ),
                StepError::Up(crate::lab::UpError::Lab(
                    kiln_lab::LabError::MissingPrerequisites { .. },
                )) => Some("or run `kiln lab demo --yes` to let the demo install them".into()),
                _ => None,
            },
            DemoError::Teardown { lab, .. } => Some(format!("kiln lab down --lab {lab}")),
            DemoError::InvalidLabName(_) => None,
        }
    }
}

/// Step bookkeeping: events, timings, errors wrapped with the step.
struct Run<'s> {
    sink: &'s dyn DemoSink,
    start: Instant,
    summary: DemoSummary,
}

impl Run<'_> {
    fn say(&self, e: DemoEvent<'_>) {
        self.sink.event(&e)
    }

    /// Runs step `number`, recording its duration.
    fn step<T>(
        &mut self,
        number: usize,
        title: &'static str,
        f: impl FnOnce(&mut Self) -> Result<T, StepError>,
    ) -> Result<T, DemoError> {
        self.say(DemoEvent::StepStarted { number, title });
        let s = Instant::now();
        let r = f(self).map_err(|error| DemoError::Step {
            number,
            title,
            error: Box::new(error),
        })?;
        self.summary.steps.push((title.into(), s.elapsed()));
        Ok(r)
    }
}

/// Runs the demo. On success, its numbers; a failed step tears the lab down first (unless
/// `keep`) and is returned as the error.
pub fn run(opts: &DemoOptions, sink: &dyn DemoSink) -> Result<DemoSummary, DemoError> {
    // A bad lab name is refused before anything is written.
    kiln_lab::layout::validate_lab_name(&opts.lab).map_err(DemoError::InvalidLabName)?;
    let mut r = Run {
        sink,
        start: Instant::now(),
        summary: DemoSummary::default(),
    };

    let dir = r.step(1, "write the demo repository", |r| {
        let dir = write_repository(opts.dir.as_deref())?;
        r.say(DemoEvent::RepositoryWritten {
            dir: &dir,
            files: FILES.len(),
        });
        Ok(dir)
    })?;
    r.summary.dir = dir.clone();
    let config = dir.join("kiln.toml");

    let lab = r.step(2, "start the lab servers", |r| start_lab(r, opts, &config))?;

    // 3-7 with the lab up; torn down afterwards, success or not, unless kept.
    let result = with_lab(&mut r, &lab, &dir);
    r.summary.servers = lab
        .servers()
        .iter()
        .map(|s| (s.name.clone(), s.address))
        .collect();
    if opts.keep {
        let name = lab.name().to_owned();
        let identity = lab.identity_file();
        lab.detach();
        r.say(DemoEvent::Kept {
            lab: &name,
            dir: &dir,
            identity: &identity,
        });
    } else {
        let s = Instant::now();
        r.say(DemoEvent::RemovingLab { lab: lab.name() });
        let down = lab.down();
        r.summary.steps.push(("remove the lab".into(), s.elapsed()));
        match down {
            Ok(_) => r.say(DemoEvent::LabRemoved {
                elapsed: s.elapsed(),
                dir: &dir,
            }),
            Err(error) => {
                let e = DemoError::Teardown {
                    lab: opts.lab.clone(),
                    error,
                };
                return Err(match result {
                    // The first failure matters most; the teardown one is told too.
                    Err(first) => {
                        r.say(DemoEvent::TeardownFailed { error: &e });
                        first
                    }
                    Ok(()) => e,
                });
            }
        }
    }
    result?;
    r.summary.total = r.start.elapsed();
    Ok(r.summary)
}

/// Ctrl-C or SIGTERM during the demo: removes its lab unless kept. `Ok(None)`: kept.
pub fn interrupted(
    roots: &kiln_lab::Roots,
    lab: &str,
    keep: bool,
) -> Result<Option<kiln_lab::Cleaned>, kiln_lab::LabError> {
    if keep {
        return Ok(None);
    }
    kiln_lab::down(roots, lab).map(Some)
}

fn io(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> StepError {
    let path = path.to_owned();
    move |source| StepError::Io {
        action,
        path,
        source,
    }
}

/// Step 1: a new folder (or an empty one) with the embedded files.
pub fn write_repository(dir: Option<&Path>) -> Result<PathBuf, StepError> {
    let dir = match dir {
        Some(d) => {
            if let Ok(mut entries) = std::fs::read_dir(d)
                && entries.next().is_some()
            {
                return Err(StepError::NotEmpty { dir: d.to_owned() });
            }
            std::fs::create_dir_all(d).map_err(io("create", d))?;
            d.to_path_buf()
        }
        None => {
            let stamp = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0);
            let d = std::env::temp_dir().join(format!("kiln-demo-{stamp}-{}", std::process::id()));
            std::fs::create_dir(&d).map_err(io("create", &d))?;
            d
        }
    };
    let dir = std::path::absolute(&dir).map_err(io("resolve", &dir))?;
    for (rel, content) in FILES {
        let path = dir.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(io("create", parent))?;
        }
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(io("write", &path))?;
        f.write_all(content.as_bytes())
            .map_err(io("write", &path))?;
    }
    Ok(dir)
}

fn load(config: &Path) -> Result<Model, StepError> {
    kiln_model::load(config).map_err(|diagnostics| StepError::Config {
        config: config.to_owned(),
        diagnostics,
    })
}

/// Step 2: one server per host role of the `lab` environment, recorded in kiln.toml.
fn start_lab(r: &mut Run<'_>, opts: &DemoOptions, config: &Path) -> Result<Lab, StepError> {
    let model = load(config)?;
    let roles = crate::lab::roles(&model);
    r.say(DemoEvent::LabStarting {
        lab: &opts.lab,
        roles: &roles,
    });
    let first_ready: Arc<Mutex<Option<Duration>>> = Arc::new(Mutex::new(None));
    let (first, start) = (first_ready.clone(), r.start);
    // The lab calls back from its own threads; the sink is Sync.
    let sink: &dyn DemoSink = r.sink;
    let lab = std::thread::scope(|s| {
        let (tx, rx) = std::sync::mpsc::channel::<kiln_lab::LabEvent>();
        let up = crate::lab::UpOptions {
            name: opts.lab.clone(),
            install_missing: opts.install_missing,
            roots: opts.roots.clone(),
            progress: Some(Arc::new(move |e: &kiln_lab::LabEvent| {
                if matches!(e, kiln_lab::LabEvent::ServerReady { .. })
                    && let Ok(mut f) = first.lock()
                    && f.is_none()
                {
                    *f = Some(start.elapsed());
                }
                let _ = tx.send(e.clone());
            })),
            ..Default::default()
        };
        // Progress lines are handed to the sink in order, from this thread.
        let relay = s.spawn(move || {
            for e in rx {
                sink.event(&DemoEvent::Lab(&e));
            }
        });
        let lab = crate::lab::up(&up, Some((config, &model))).map(|(mut lab, _)| {
            // The lab keeps its progress callback: drop it so that the relay ends.
            lab.set_progress(None);
            lab
        });
        drop(up);
        let _ = relay.join();
        lab
    })?;
    r.summary.lab_ready = r.start.elapsed();
    r.summary.first_server = first_ready.lock().ok().and_then(|f| *f);
    for server in lab.servers() {
        r.say(DemoEvent::ServerUp { server });
    }
    r.say(DemoEvent::HostsRecorded { config });
    Ok(lab)
}

/// Steps 3 to 7, with the lab running.
fn with_lab(r: &mut Run<'_>, lab: &Lab, dir: &Path) -> Result<(), DemoError> {
    let config = dir.join("kiln.toml");

    let model = r.step(3, "check kiln.toml", |r| {
        let model = load(&config)?;
        r.say(DemoEvent::ConfigValid {
            config: &config,
            hosts: model
                .environment(ENV)
                .map(|e| e.hosts.keys().cloned().collect())
                .unwrap_or_default(),
            roles: model.roles.keys().cloned().collect(),
        });
        Ok(model)
    })?;

    let pass = r.step(4, "create the vault and generate secrets", |r| {
        let pass = write_passphrase(dir)?;
        r.say(DemoEvent::PassphraseWritten { path: &pass });
        generate_secrets(r, &model, &pass)?;
        Ok(pass)
    })?;

    let jobs = JobOptions {
        env: Some(ENV.into()),
        identity: Some(lab.identity_file()),
        lab_roots: lab.roots().clone(),
        ..Default::default()
    };
    let unlock = UnlockOptions {
        passphrase_file: Some(pass),
        ..Default::default()
    };

    let apply_start = Instant::now();
    r.step(5, "plan, then apply", |r| {
        plan_and_apply(r, &model, &jobs, &unlock)
    })?;
    r.summary.apply = apply_start.elapsed();

    r.step(6, "verify the web page over HTTP", |r| verify(r, lab))?;

    r.step(7, "plan again: nothing should change", |r| {
        noop_plan(r, &model, &jobs, &unlock)
    })?;
    Ok(())
}

fn write_passphrase(dir: &Path) -> Result<PathBuf, StepError> {
    let spec = kiln_secrets::SecretSpec {
        name: "demo_passphrase".into(),
        rule: kiln_secrets::SecretRule::Random {
            length: 32,
            alphabet: kiln_secrets::Alphabet::Alphanumeric,
        },
        description: "the demo vault's passphrase".into(),
    };
    let values = kiln_secrets::generate::generate(&spec, &mut kiln_secrets::OsRng)
        .map_err(|e| StepError::Passphrase(e.to_string()))?;
    let (_, value) = values
        .into_iter()
        .next()
        .ok_or_else(|| StepError::Passphrase("no value was generated".into()))?;
    let path = dir.join(PASSPHRASE_FILE);
    // Mode 0600 from creation, before any content.
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .map_err(io("create", &path))?;
    f.write_all(format!("{}\n", value.expose()).as_bytes())
        .map_err(io("write", &path))?;
    Ok(path)
}

/// `kiln secrets generate` for the demo's environment, unlocked by the passphrase file.
fn generate_secrets(r: &Run<'_>, model: &Model, pass: &Path) -> Result<(), StepError> {
    let specs = model.required_secrets_for(ENV).unwrap_or_default();
    let unlock = UnlockOptions {
        passphrase_file: Some(pass.to_owned()),
        ..Default::default()
    };
    let sink = r.sink;
    let vault = crate::vault::open_or_create(
        model.base_dir(),
        ENV,
        &unlock,
        &crate::vault::NoTerminal,
        &mut |n| sink.event(&DemoEvent::Vault(&n)),
    )?;
    let report = vault.generate_missing(&specs, &mut kiln_secrets::OsRng)?;
    r.say(DemoEvent::SecretsGenerated {
        created: &report.created,
        needs_value: &report.needs_value,
        dir: &model.base_dir().join("secrets").join(ENV),
    });
    Ok(())
}

fn jobs(
    model: &Model,
    opts: &JobOptions,
    unlock: &UnlockOptions,
) -> Result<Vec<kiln_converge::run::Job>, StepError> {
    let secrets = Arc::new(crate::vault::LazyVault::new(
        model.base_dir(),
        ENV,
        unlock.clone(),
        Box::new(crate::vault::NoTerminal),
    ));
    Ok(crate::jobs::from_config(model, opts, secrets)?)
}

/// Apply progress, forwarded to the demo's sink.
struct HostEvents<'s>(&'s dyn DemoSink);

impl SessionSink for HostEvents<'_> {
    fn update(&mut self, host: &str, update: &HostUpdate) {
        self.0.event(&DemoEvent::Host { host, update })
    }
}

/// Step 5: `kiln apply` without the question: the plan is shown, pinned, then applied.
fn plan_and_apply(
    r: &mut Run<'_>,
    model: &Model,
    opts: &JobOptions,
    unlock: &UnlockOptions,
) -> Result<(), StepError> {
    let binary = session::agent_binary()?;
    let mut slots: Vec<Slot> = jobs(model, opts, unlock)?
        .into_iter()
        .map(Slot::new)
        .collect();
    let s = Instant::now();
    let plans = session::plan_pinned(&mut slots, &binary, PARALLEL, &mut session::no_progress())?;
    r.say(DemoEvent::Plans { plans: &plans });
    r.say(DemoEvent::Planned {
        total: session::total(plans.iter().map(|(_, p)| p)),
        hosts: plans.len(),
        elapsed: s.elapsed(),
    });
    r.say(DemoEvent::ApplyStarted);
    let report = session::apply(&mut slots, &binary, PARALLEL, &mut HostEvents(r.sink));
    close_all(slots);
    let report = report?;
    if !report.failed.is_empty() {
        return Err(StepError::HostsFailed(report.failed));
    }
    r.summary.applied = report.changed;
    r.say(DemoEvent::Applied {
        changed: report.changed,
        hosts: report.hosts,
        elapsed: report.elapsed,
    });
    Ok(())
}

/// The line the demo's index.html template renders for a host (checked in step 6).
pub fn page_marker(role: &str) -> String {
    format!("served by the {role} host of the {ENV} environment")
}

/// Step 6: the services server answers HTTP with its page (connecting only to its address);
/// then what the monitoring host's prober sees.
fn verify(r: &mut Run<'_>, lab: &Lab) -> Result<(), StepError> {
    let server = lab.server(WEB_ROLE)?.clone();
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
            r.say(DemoEvent::PageVerified {
                address: addr,
                server: &server.name,
                title,
                bytes: body.len(),
                elapsed: s.elapsed(),
            });
        }
        Ok((status, body)) => {
            return Err(StepError::Page(format!(
                "http://{addr}/ on host {} answered {status} without \"{marker}\" (first bytes: {:?})",
                server.name,
                body.chars().take(200).collect::<String>()
            )));
        }
        Err(e) => {
            return Err(StepError::Page(format!(
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
        r.say(DemoEvent::Probe {
            role: PROBE_ROLE,
            seen: last.contains("HTTP 200"),
            last: last.trim(),
        });
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
    parse_http(&raw)
}

fn parse_http(raw: &[u8]) -> Result<(u16, String), String> {
    let text = String::from_utf8_lossy(raw);
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

/// Step 7: a plan on fresh connections; every host must report no changes.
fn noop_plan(
    r: &mut Run<'_>,
    model: &Model,
    opts: &JobOptions,
    unlock: &UnlockOptions,
) -> Result<(), StepError> {
    let s = Instant::now();
    let binary = session::agent_binary()?;
    let report = session::plan(
        jobs(model, opts, unlock)?,
        &binary,
        PARALLEL,
        &mut session::no_progress(),
    )?;
    r.summary.noop_plan = s.elapsed();
    let plans: Vec<(String, Plan)> = report
        .plans()
        .map(|(h, p)| (h.to_owned(), p.clone()))
        .collect();
    r.say(DemoEvent::Plans { plans: &plans });
    let pending: Vec<String> = report.pending().into_iter().map(str::to_owned).collect();
    let hosts = report.hosts.len();
    let failures: Vec<HostFailure> = report
        .hosts
        .into_iter()
        .filter_map(|h| h.plan.err())
        .collect();
    if !failures.is_empty() {
        return Err(StepError::PlanningFailed(failures));
    }
    if !pending.is_empty() {
        return Err(StepError::NotConverged { hosts: pending });
    }
    r.say(DemoEvent::NoChange {
        hosts,
        elapsed: r.summary.noop_plan,
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_repository_is_valid_and_written_once() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("demo");
        let written = write_repository(Some(&target)).unwrap();
        let model = load(&written.join("kiln.toml")).unwrap();
        assert_eq!(crate::lab::roles(&model), [PROBE_ROLE, WEB_ROLE]);
        assert!(model.required_secrets_for(ENV).is_some());
        let err = write_repository(Some(&target)).unwrap_err();
        assert!(
            err.to_string().ends_with(
                "is not empty: the demo writes a fresh repository and overwrites nothing"
            ),
            "{err}"
        );
        let index = FILES
            .iter()
            .find(|(p, _)| *p == "templates/index.html.j2")
            .map(|(_, c)| *c)
            .unwrap();
        assert!(
            index.contains("served by the {{"),
            "the page marker comes from the template"
        );
    }

    #[test]
    fn a_bad_lab_name_is_refused_before_anything_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let opts = DemoOptions {
            dir: Some(dir.path().join("demo")),
            lab: "Bad Name".into(),
            keep: false,
            install_missing: false,
            roots: kiln_lab::Roots {
                state: dir.path().join("state"),
                cache: dir.path().join("cache"),
            },
        };
        let seen = Mutex::new(0);
        let err = run(&opts, &|_: &DemoEvent<'_>| *seen.lock().unwrap() += 1).unwrap_err();
        assert!(err.is_bad_input());
        assert_eq!(*seen.lock().unwrap(), 0);
        assert!(!dir.path().join("demo").exists());
    }

    #[test]
    fn http_answers_are_parsed() {
        assert_eq!(
            parse_http(b"HTTP/1.1 200 OK\r\nServer: x\r\n\r\n<h1>hi</h1>").unwrap(),
            (200, "<h1>hi</h1>".into())
        );
        assert!(
            parse_http(b"garbage")
                .unwrap_err()
                .starts_with("not an HTTP answer")
        );
        assert!(
            parse_http(b"HTTP/1.1 abc\r\n\r\n")
                .unwrap_err()
                .starts_with("no HTTP status line")
        );
    }
}
