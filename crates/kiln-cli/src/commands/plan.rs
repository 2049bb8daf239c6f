//! `kiln plan`: shows, per host, what `kiln apply` would create, change and remove, with
//! unified diffs of files (secrets redacted) and a summary. Exit 0 when nothing would
//! change, 3 when changes are pending, 1/2 on errors.
//!
//! Also home to what plan and apply share: choosing the hosts (from kiln.toml, or from a
//! hand-written `--state` JSON file) and rendering plans.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::mpsc;

use kiln_converge::host::ssh::SshTarget;
use kiln_converge::host::{AgentBinary, AgentOutcome, HostError, Privilege};
use kiln_converge::plan::{Diff, Op, Summary};
use kiln_converge::run::{Connect, HostUpdate, Job, run_all};
use kiln_converge::{DesiredState, Plan};
use kiln_secrets::Secret;
use serde::Deserialize;

use crate::GlobalArgs;

/// `print!`/`println!` that do not panic when stdout is closed (e.g. piped into `head`):
/// kiln's work is done by then, and losing the rest of the text is the reader's choice.
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = write!(std::io::stdout(), $($arg)*);
    }};
}
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}
use crate::error::{self, CliError, CmdResult};
pub(crate) use {out, outln};

/// Which hosts, and how to reach them (shared by plan and apply).
#[derive(Debug, Clone, clap::Args)]
pub struct Targeting {
    /// Environment to work on (production, staging, lab…).
    #[arg(long, short, env = "KILN_ENV")]
    pub env: Option<String>,
    /// Only the host playing this role (repeatable).
    #[arg(long = "host", value_name = "ROLE")]
    pub hosts: Vec<String>,
    /// Private key for SSH (default: whatever your ssh configuration uses).
    #[arg(long, env = "KILN_SSH_IDENTITY", value_name = "FILE")]
    pub identity: Option<PathBuf>,
    /// Ask once for the sudo password of the admin user (sent on stdin, never in argv).
    #[arg(long)]
    pub ask_sudo_password: bool,
    /// Desired states and connections from a JSON file instead of kiln.toml (development).
    #[arg(long, value_name = "FILE", hide = true)]
    pub state: Option<PathBuf>,
    /// Hosts converged in parallel.
    #[arg(long, short = 'j', default_value_t = 8, value_name = "N")]
    pub jobs: usize,
    /// Vault passphrase file, for templates that use `secret()`.
    #[arg(long, env = "KILN_PASSPHRASE_FILE", value_name = "FILE")]
    pub passphrase_file: Option<PathBuf>,
}

/// Show what apply would change on each host.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub target: Targeting,
    /// Print the plans as JSON (one object per host).
    #[arg(long)]
    pub json: bool,
}

/// The `--state` file: hosts with their connection and desired state.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StateFile {
    hosts: Vec<StateHost>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StateHost {
    name: String,
    #[serde(default)]
    address: Option<String>,
    #[serde(default = "ssh_port")]
    port: u16,
    #[serde(default = "root")]
    user: String,
    #[serde(default)]
    host_keys: Vec<String>,
    #[serde(default)]
    identity_file: Option<PathBuf>,
    /// Converge this folder on the local machine instead of an SSH host.
    #[serde(default)]
    local_root: Option<PathBuf>,
    desired: DesiredState,
}

fn ssh_port() -> u16 {
    22
}
fn root() -> String {
    "root".into()
}

fn privilege(user: &str, password: &Option<Secret>) -> Privilege {
    if user == "root" {
        Privilege::Root
    } else if let Some(p) = password {
        Privilege::SudoPassword(p.clone())
    } else {
        Privilege::Sudo
    }
}

fn ask_password(t: &Targeting) -> Result<Option<Secret>, CliError> {
    if !t.ask_sudo_password {
        return Ok(None);
    }
    if !std::io::stdin().is_terminal() {
        return Err(CliError::invalid(miette::miette!(
            "--ask-sudo-password needs a terminal to ask on"
        )));
    }
    let p = rpassword::prompt_password("sudo password for the admin user: ")
        .map_err(|e| CliError::failed(miette::miette!("cannot read the password: {e}")))?;
    Ok(Some(Secret::new(p)))
}

fn jobs_from_state(
    path: &Path,
    t: &Targeting,
    password: &Option<Secret>,
) -> Result<Vec<Job>, CliError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| CliError::invalid(miette::miette!("cannot read {}: {e}", path.display())))?;
    let file: StateFile = serde_json::from_str(&text).map_err(|e| {
        CliError::invalid(miette::miette!(
            "{}:{}:{}: {e}",
            path.display(),
            e.line(),
            e.column()
        ))
    })?;
    let mut jobs = vec![];
    for h in file.hosts {
        let connect = match (&h.local_root, &h.address) {
            (Some(root), _) => Connect::Local {
                root: Some(root.clone()),
            },
            (None, Some(address)) => Connect::Ssh(SshTarget {
                name: h.name.clone(),
                address: address.clone(),
                port: h.port,
                user: h.user.clone(),
                host_keys: h.host_keys.clone(),
                identity_file: t.identity.clone().or(h.identity_file.clone()),
                connect_timeout_s: 20,
                test_paths: None,
                env: None,
            }),
            (None, None) => {
                return Err(CliError::invalid(miette::miette!(
                    "{}: host {}: needs `address` or `local_root`",
                    path.display(),
                    h.name
                )));
            }
        };
        let mut desired = h.desired;
        if desired.host.is_empty() {
            desired.host = h.name.clone();
        }
        jobs.push(Job {
            name: h.name.clone(),
            connect,
            privilege: privilege(&h.user, password),
            desired,
        });
    }
    Ok(jobs)
}

/// Desired states from kiln.toml: one job per host of the environment.
fn jobs_from_config(
    global: &GlobalArgs,
    t: &Targeting,
    password: &Option<Secret>,
) -> Result<Vec<Job>, CliError> {
    let model = crate::commands::check::load_model(global)?;
    let names: Vec<&str> = model.environments.iter().map(|e| e.name.as_str()).collect();
    let env_name = match &t.env {
        Some(e) => e.clone(),
        None if names.len() == 1 => names[0].to_owned(),
        None => {
            return Err(CliError::invalid(miette::miette!(
                "several environments ({}): choose one with --env",
                names.join(", ")
            )));
        }
    };
    let env = model.environment(&env_name).ok_or_else(|| {
        CliError::invalid(miette::miette!(
            "no environment {env_name:?} in kiln.toml (known: {})",
            names.join(", ")
        ))
    })?;
    let secrets: std::sync::Arc<dyn kiln_converge::desired::SecretSource> =
        std::sync::Arc::new(kiln_ops::vault::LazyVault::new(
            model.base_dir(),
            &env_name,
            kiln_ops::vault::UnlockOptions {
                passphrase_file: t.passphrase_file.clone(),
                ..Default::default()
            },
            Box::new(crate::context::Terminal),
        ));
    for want in &t.hosts {
        if !env.hosts.contains_key(want) {
            let known: Vec<&str> = env.hosts.keys().map(String::as_str).collect();
            return Err(CliError::invalid(miette::miette!(
                "environment {env_name} has no host playing role {want:?} (known: {})",
                known.join(", ")
            )));
        }
    }
    let mut jobs = vec![];
    for (role, host) in &env.hosts {
        if !t.hosts.is_empty() && !t.hosts.contains(role) {
            continue;
        }
        let desired = kiln_converge::desired::desired_for_host(&model, env, host, secrets.clone())
            .map_err(|e| CliError::invalid(miette::miette!("{e}")))?;
        jobs.push(Job {
            name: role.clone(),
            connect: Connect::Ssh(SshTarget {
                name: role.clone(),
                address: host.address.to_string(),
                port: host.ssh_port,
                user: host.admin_user.clone(),
                host_keys: host.host_keys.clone(),
                identity_file: t.identity.clone(),
                connect_timeout_s: 20,
                test_paths: None,
                env: Some(env_name.clone()),
            }),
            privilege: privilege(&host.admin_user, password),
            desired,
        });
    }
    Ok(jobs)
}

/// The hosts to work on, each with its desired state.
pub fn select_jobs(global: &GlobalArgs, t: &Targeting) -> Result<Vec<Job>, CliError> {
    let password = ask_password(t)?;
    let mut jobs = match &t.state {
        Some(path) => jobs_from_state(path, t, &password)?,
        None => jobs_from_config(global, t, &password)?,
    };
    if !t.hosts.is_empty() {
        for want in &t.hosts {
            if !jobs.iter().any(|j| &j.name == want) {
                let known: Vec<_> = jobs.iter().map(|j| j.name.as_str()).collect();
                return Err(CliError::invalid(miette::miette!(
                    "no host plays role {want:?} (known: {})",
                    known.join(", ")
                )));
            }
        }
        jobs.retain(|j| t.hosts.contains(&j.name));
    }
    if jobs.is_empty() {
        return Err(CliError::invalid(miette::miette!("no host to work on")));
    }
    Ok(jobs)
}

pub fn agent_binary() -> Result<AgentBinary, CliError> {
    AgentBinary::current().map_err(|e| {
        CliError::failed(miette::miette!(
            "cannot read kiln's own binary to ship it: {e}"
        ))
    })
}

/// One host's name and how its agent run went.
pub type HostResult = (String, Result<AgentOutcome, HostError>);

/// Runs the agent in plan-only mode on every job; returns results in job order.
pub fn collect_plans(jobs: Vec<Job>, parallel: usize) -> Result<Vec<HostResult>, CliError> {
    let binary = agent_binary()?;
    let names: Vec<String> = jobs.iter().map(|j| j.name.clone()).collect();
    let (tx, rx) = mpsc::channel();
    let handle = std::thread::spawn(move || run_all(jobs, &binary, true, parallel, tx));
    let mut results: Vec<HostResult> = vec![];
    for (name, update) in rx {
        if let HostUpdate::Done(r) = update {
            results.push((name, r));
        }
    }
    let _ = handle.join();
    results.sort_by_key(|(n, _)| names.iter().position(|x| x == n));
    Ok(results)
}

fn symbol(op: Op) -> &'static str {
    match op {
        Op::Create | Op::Install => "+",
        Op::Remove | Op::Uninstall => "-",
        Op::Restore => "↩",
        Op::Restart | Op::Reload | Op::DaemonReload => "↻",
        Op::Run => "!",
        _ => "~",
    }
}

const CREATE_DIFF_LINES: usize = 20;

/// Renders one host's plan as text.
pub fn render_plan(name: &str, plan: &Plan) -> String {
    let mut out = String::new();
    let c = plan.counts();
    if plan.is_empty() {
        out.push_str(&format!("{name}: no changes\n"));
        return out;
    }
    out.push_str(&format!(
        "{name}: {} to create, {} to change, {} to remove\n",
        c.create, c.change, c.remove
    ));
    for ch in &plan.changes {
        let mut line = format!("  {} {} {}", symbol(ch.op), ch.op, ch.id);
        let mut extra: Vec<String> = ch.details.clone();
        if let Some(r) = &ch.reason {
            extra.push(format!("because {r}"));
        }
        if !extra.is_empty() {
            line.push_str(&format!("  ({})", extra.join("; ")));
        }
        out.push_str(&line);
        out.push('\n');
        match &ch.diff {
            Some(Diff::Unified { text }) => {
                let lines: Vec<&str> = text.lines().collect();
                let limit = if ch.op == Op::Create {
                    CREATE_DIFF_LINES
                } else {
                    usize::MAX
                };
                for l in lines.iter().take(limit) {
                    out.push_str(&format!("      {l}\n"));
                }
                if lines.len() > limit {
                    out.push_str(&format!("      … {} more lines\n", lines.len() - limit));
                }
            }
            Some(Diff::Redacted) => out.push_str("      (content holds a secret: diff hidden)\n"),
            Some(Diff::Opaque { new_bytes }) => out.push_str(&format!(
                "      (binary or large content, {new_bytes} bytes)\n"
            )),
            None => {}
        }
    }
    out
}

/// Adds a plan's counts to a total.
pub fn add(total: &mut Summary, s: Summary) {
    total.create += s.create;
    total.change += s.change;
    total.remove += s.remove;
}

pub fn run(global: &GlobalArgs, args: Args) -> CmdResult {
    let jobs = select_jobs(global, &args.target)?;
    let results = collect_plans(jobs, args.target.jobs)?;
    let mut total = Summary::default();
    let mut pending_hosts = 0;
    let mut failures = vec![];
    for (name, r) in &results {
        match r {
            Ok(outcome) if !outcome.failed => {
                let Some(plan) = &outcome.plan else {
                    failures.push(format!("{name}: the agent reported no plan"));
                    continue;
                };
                if args.json {
                    let v = serde_json::json!({ "host": name, "plan": plan });
                    outln!("{v}");
                } else {
                    out!("{}", render_plan(name, plan));
                }
                if !plan.is_empty() {
                    pending_hosts += 1;
                }
                add(&mut total, plan.counts());
            }
            Ok(outcome) => failures.push(format!("{name}: {}", outcome.errors.join("; "))),
            Err(e) => failures.push(e.to_string()),
        }
    }
    if !args.json {
        outln!(
            "\nPlan: {} to create, {} to change, {} to remove, on {} of {} host(s){}.",
            total.create,
            total.change,
            total.remove,
            pending_hosts,
            results.len(),
            if failures.is_empty() {
                String::new()
            } else {
                format!("; {} could not be planned", failures.len())
            }
        );
    }
    if !failures.is_empty() {
        return Err(CliError::failed(miette::miette!(
            "planning failed on {} host(s):\n{}",
            failures.len(),
            failures.join("\n")
        )));
    }
    Ok(ExitCode::from(if pending_hosts > 0 {
        error::CHANGES_PENDING
    } else {
        error::SUCCESS
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiln_converge::Change;
    use kiln_converge::owned::Owned;
    use kiln_converge::resource::ResourceId;

    fn change(id: ResourceId, op: Op) -> Change {
        Change {
            id,
            op,
            details: vec![],
            diff: None,
            reason: None,
            content: false,
        }
    }

    #[test]
    fn plans_render_with_symbols_details_diffs_and_redaction() {
        let mut upd = change(ResourceId::File("/etc/app.conf".into()), Op::Update);
        upd.details = vec!["content".into(), "mode 0644 → 0600".into()];
        upd.diff = Some(Diff::Unified {
            text: "--- a/etc/app.conf\n+++ b/etc/app.conf\n@@ -1 +1 @@\n-a=1\n+a=2\n".into(),
        });
        let mut secret = change(ResourceId::File("/etc/db.env".into()), Op::Create);
        secret.diff = Some(Diff::Redacted);
        let mut restart = change(ResourceId::Unit("app.service".into()), Op::Restart);
        restart.reason = Some("/etc/app.conf changed".into());
        let plan = Plan {
            host: "web".into(),
            changes: vec![
                upd,
                secret,
                restart,
                change(ResourceId::Symlink("/usr/bin/x".into()), Op::Remove),
            ],
            owned_after: Owned::default(),
            groups: vec![],
        };
        assert_eq!(
            render_plan("web", &plan),
            "web: 1 to create, 2 to change, 1 to remove\n\
             \x20 ~ update file /etc/app.conf  (content; mode 0644 → 0600)\n\
             \x20     --- a/etc/app.conf\n\
             \x20     +++ b/etc/app.conf\n\
             \x20     @@ -1 +1 @@\n\
             \x20     -a=1\n\
             \x20     +a=2\n\
             \x20 + create file /etc/db.env\n\
             \x20     (content holds a secret: diff hidden)\n\
             \x20 ↻ restart unit app.service  (because /etc/app.conf changed)\n\
             \x20 - remove symlink /usr/bin/x\n"
        );
        let empty = Plan {
            host: "web".into(),
            changes: vec![],
            owned_after: Owned::default(),
            groups: vec![],
        };
        assert_eq!(render_plan("web", &empty), "web: no changes\n");
    }

    #[test]
    fn state_file_needs_an_address_or_a_local_root() {
        let dir = tempfile_dir();
        let path = dir.join("state.json");
        std::fs::write(&path, r#"{"hosts":[{"name":"web","desired":{}}]}"#).unwrap();
        let t = Targeting {
            env: None,
            hosts: vec![],
            identity: None,
            ask_sudo_password: false,
            state: Some(path.clone()),
            jobs: 1,
            passphrase_file: None,
        };
        let err = jobs_from_state(&path, &t, &None).unwrap_err();
        assert!(
            err.report
                .to_string()
                .contains("host web: needs `address` or `local_root`")
        );
        std::fs::write(
            &path,
            r#"{"hosts":[{"name":"web","desired":{},"bogus":1}]}"#,
        )
        .unwrap();
        let err = jobs_from_state(&path, &t, &None).unwrap_err();
        assert!(err.report.to_string().contains("unknown field `bogus`"));
        let _ = std::fs::remove_dir_all(&dir);
    }

    fn tempfile_dir() -> PathBuf {
        let d = std::env::temp_dir().join(format!("kiln-plan-test-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }
}
