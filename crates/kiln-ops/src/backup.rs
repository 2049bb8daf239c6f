//! What `kiln backup init|list|check` do from the laptop: find the environment's
//! repository ([`kiln_backup::Location::for_environment`]), take the credential each
//! operation needs from the environment's vault (the admin one to create the repository
//! and fix the bucket, the servers' one only to prove it cannot delete, the read-only one
//! to list and check), and run the operation.
//!
//! Owns: which credential an operation uses, what `init` verifies and refuses.
//! Must not: print, prompt (the vault arrives open), or send a credential anywhere but to
//! the S3 endpoint of the model.

use kiln_backup::bucket::{self, Finding};
use kiln_backup::plan::{HostPlan, PLAN_PATH};
use kiln_backup::restore::RestoreEvent;
use kiln_backup::run::BackupEvent;
use kiln_backup::{Location, Repo, RepoError, SnapshotInfo};
use kiln_converge::host::{AGENT_LINK, HostError};
use kiln_converge::run::Job;
use kiln_model::{Backups, Environment, Model, S3Credential};
use kiln_s3::{Credentials, LifecycleRule, S3Client, S3Error};
use kiln_secrets::{Secret, Vault, VaultError};

/// The id of the lifecycle rule `kiln backup init --set-lifecycle` adds.
pub const LIFECYCLE_RULE: &str = "kiln-expire-noncurrent-versions";

/// A backup operation could not run or found the bucket unfit.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error(
        "{config} has no [backups] section\n  hint: add one (schedule, object_lock_days, retention, repository, credentials): docs/config-reference.md"
    )]
    NotConfigured { config: String },
    #[error("environment `{env}` has backups off (`backups = false` in [environments.{env}])")]
    Disabled { env: String },
    #[error("the {what} backup credential: {source}")]
    Credential {
        what: &'static str,
        #[source]
        source: VaultError,
    },
    #[error(transparent)]
    Vault(#[from] VaultError),
    #[error("archiving the infrastructure repository: {message}")]
    Archive { message: String },
    #[error(transparent)]
    Repo(#[from] RepoError),
    #[error("backup bucket at {endpoint}: {source}")]
    S3 {
        endpoint: String,
        #[source]
        source: S3Error,
    },
    #[error(
        "backup repository {url}: no snapshot of service `{service}`\n  hint: `kiln backup list` shows what there is"
    )]
    NoSnapshot { service: String, url: String },
    #[error(
        "backup repository {url}: the bucket is not fit for backups; nothing was created:\n{}",
        findings.iter().map(|f| format!("- {f}")).collect::<Vec<_>>().join("\n")
    )]
    Unfit { url: String, findings: Vec<Finding> },
}

impl BackupError {
    /// Whether the user gave something kiln cannot use (the model, the environment).
    pub fn is_bad_input(&self) -> bool {
        matches!(
            self,
            BackupError::NotConfigured { .. } | BackupError::Disabled { .. }
        )
    }
}

/// The backups of one environment: where they live and the vault that holds the keys.
pub struct Target<'a> {
    pub backups: &'a Backups,
    pub env: &'a Environment,
    pub location: Location,
    vault: &'a Vault,
}

impl<'a> Target<'a> {
    /// The backups of `env` in `model`, with the keys in `vault` (the environment's).
    pub fn new(
        model: &'a Model,
        env: &'a Environment,
        vault: &'a Vault,
    ) -> Result<Self, BackupError> {
        let backups = model
            .backups
            .as_ref()
            .ok_or_else(|| BackupError::NotConfigured {
                config: model.config_path().display().to_string(),
            })?;
        if !env.backups_enabled {
            return Err(BackupError::Disabled {
                env: env.name.clone(),
            });
        }
        Ok(Target {
            backups,
            env,
            location: Location::for_environment(backups, env),
            vault,
        })
    }

    fn credential(&self, c: &S3Credential, what: &'static str) -> Result<Credentials, BackupError> {
        let get = |name: String| {
            self.vault
                .get(&name)
                .map_err(|source| BackupError::Credential { what, source })
        };
        let id = get(c.access_key())?;
        Ok(Credentials::new(id.expose(), get(c.secret_key())?.expose()))
    }

    /// The owner's admin credential.
    pub fn admin(&self) -> Result<Credentials, BackupError> {
        self.credential(&self.backups.credentials.admin, "admin")
    }

    /// The servers' credential.
    pub fn server(&self) -> Result<Credentials, BackupError> {
        self.credential(&self.backups.credentials.server, "servers'")
    }

    /// The read-only credential.
    pub fn readonly(&self) -> Result<Credentials, BackupError> {
        self.credential(&self.backups.credentials.readonly, "read-only")
    }

    /// The repository password.
    pub fn password(&self) -> Result<Secret, BackupError> {
        self.vault
            .get(&self.backups.credentials.repository_password)
            .map_err(|source| BackupError::Credential {
                what: "repository password",
                source,
            })
    }

    fn client(&self, creds: Credentials) -> S3Client {
        S3Client::new(&self.location.endpoint, &self.location.region, creds)
    }

    fn s3(&self, source: S3Error) -> BackupError {
        BackupError::S3 {
            endpoint: self.location.endpoint.clone(),
            source,
        }
    }

    /// The repository, opened with the read-only credential.
    pub fn open_readonly(&self) -> Result<Repo, BackupError> {
        Ok(Repo::open(
            &self.location,
            &self.readonly()?,
            &self.password()?,
        )?)
    }
}

/// What `kiln backup init` may do beyond checking.
#[derive(Debug, Clone, Copy, Default)]
pub struct InitOptions {
    /// Add a lifecycle rule expiring non-current versions when the bucket has none.
    pub set_lifecycle: bool,
}

/// What `init` found and did.
#[derive(Debug, Clone)]
pub struct InitReport {
    /// The repository, as the restic CLI takes it.
    pub url: String,
    /// Whether a repository was created (false: one was there and the password opens it).
    pub created: bool,
    /// Findings accepted: no Object Lock with `allow_unlocked = true`, no lifecycle rule.
    pub warnings: Vec<Finding>,
    /// The lifecycle rule added (`--set-lifecycle`): its days.
    pub lifecycle_set: Option<u32>,
    /// The servers' credential was refused deleting the canary's version.
    pub server_cannot_delete: bool,
}

/// `kiln backup init`: verifies the bucket (with the admin and the servers' credentials),
/// refuses an unfit one before writing the repository, then creates the repository with
/// the admin credential (or, when there is one, proves the password opens it).
pub fn init(target: &Target<'_>, opts: InitOptions) -> Result<InitReport, BackupError> {
    let admin = target.client(target.admin()?);
    let server = target.client(target.server()?);
    let loc = &target.location;
    let lock_days = target.backups.object_lock_days;
    let mut findings = bucket::verify(
        &admin,
        &server,
        &loc.bucket,
        &loc.prefix,
        lock_days.unwrap_or(0),
    )
    .map_err(|e| target.s3(e))?;
    let mut lifecycle_set = None;
    if opts.set_lifecycle
        && findings
            .iter()
            .any(|f| matches!(f, Finding::NoLifecycle { .. }))
    {
        // Non-current versions are kept as long as the lock holds them, and a day more.
        let days = lock_days.unwrap_or(30) + 1;
        let mut rules = match admin.get_bucket_lifecycle(&loc.bucket) {
            Ok(r) => r,
            Err(S3Error::Refused { status: 404, .. }) => vec![],
            Err(e) => return Err(target.s3(e)),
        };
        rules.retain(|r| r.id != LIFECYCLE_RULE);
        rules.push(LifecycleRule {
            id: LIFECYCLE_RULE.into(),
            prefix: String::new(),
            noncurrent_version_expiration_days: Some(days),
            ..Default::default()
        });
        admin
            .put_bucket_lifecycle(&loc.bucket, &rules)
            .map_err(|e| target.s3(e))?;
        findings.retain(|f| !matches!(f, Finding::NoLifecycle { .. }));
        lifecycle_set = Some(days);
    }
    let server_cannot_delete = !findings.iter().any(|f| {
        matches!(
            f,
            Finding::ServerCanDelete { .. } | Finding::ServerCannotWrite { .. }
        )
    });
    let (warnings, fatal): (Vec<_>, Vec<_>) = findings.into_iter().partition(|f| match f {
        Finding::NoLifecycle { .. } => true,
        Finding::NoObjectLock { .. } | Finding::ShortRetention { .. } => lock_days.is_none(),
        Finding::NoVersioning { .. }
        | Finding::ServerCanDelete { .. }
        | Finding::ServerCannotWrite { .. } => false,
    });
    if !fatal.is_empty() {
        return Err(BackupError::Unfit {
            url: loc.restic_url(),
            findings: fatal,
        });
    }
    let password = target.password()?;
    let created = match Repo::init(loc, &target.admin()?, &password) {
        Ok(_) => true,
        Err(RepoError::Exists { .. }) => {
            Repo::open(loc, &target.admin()?, &password)?;
            false
        }
        Err(e) => return Err(e.into()),
    };
    Ok(InitReport {
        url: loc.restic_url(),
        created,
        warnings,
        lifecycle_set,
        server_cannot_delete,
    })
}

/// One snapshot with what kiln's tags say of it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Listed {
    /// The service (`service=` tag), `None` for a snapshot kiln did not tag.
    pub service: Option<String>,
    /// `dump` or `files` (`kind=` tag).
    pub kind: Option<String>,
    #[serde(flatten)]
    pub snapshot: SnapshotInfo,
}

/// `kiln backup list`: the repository and its snapshots, oldest first.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Listing {
    pub environment: String,
    /// The repository as the restic CLI takes it (`restic -r <this> snapshots`).
    pub repository: String,
    pub snapshots: Vec<Listed>,
}

/// The value of tag `key=value` among `tags`.
pub fn tag<'t>(tags: &'t [String], key: &str) -> Option<&'t str> {
    tags.iter()
        .find_map(|t| t.strip_prefix(key)?.strip_prefix('='))
}

/// Lists the snapshots, with the read-only credential.
pub fn list(target: &Target<'_>) -> Result<Listing, BackupError> {
    let repo = target.open_readonly()?;
    let snapshots = repo
        .snapshots()?
        .into_iter()
        .map(|s| Listed {
            service: tag(&s.tags, "service").map(str::to_owned),
            kind: tag(&s.tags, "kind").map(str::to_owned),
            snapshot: s,
        })
        .collect();
    Ok(Listing {
        environment: target.env.name.clone(),
        repository: target.location.restic_url(),
        snapshots,
    })
}

/// `kiln backup check`: the repository's structure, and with `read_data_subset` (`10%`,
/// `1/5`, `all`, a size) that share of the data read back and verified; read-only.
pub fn check(target: &Target<'_>, read_data_subset: Option<&str>) -> Result<String, BackupError> {
    target.open_readonly()?.check(read_data_subset)?;
    Ok(target.location.restic_url())
}

/// `kiln backup forget`: the model's retention applied with the admin credential (the
/// only one allowed to remove snapshots), or only judged with `dry_run`.
pub fn forget(
    target: &Target<'_>,
    dry_run: bool,
) -> Result<Vec<kiln_backup::repo::Judged>, BackupError> {
    let r = &target.backups.retention;
    let keep = kiln_backup::repo::Keep {
        daily: r.daily,
        weekly: r.weekly,
        monthly: r.monthly,
        yearly: r.yearly,
    };
    let repo = Repo::open(&target.location, &target.admin()?, &target.password()?)?;
    Ok(repo.forget(keep, dry_run)?)
}

/// Where the archives of the infrastructure repository of `env` go in the bucket (beside
/// the repositories, never inside one).
pub fn repository_archive_prefix(env: &str) -> String {
    format!("kiln-repository/{env}/")
}

/// The infrastructure repository, archived and stored.
#[derive(Debug, Clone)]
pub struct Archived {
    /// `s3://bucket/key`.
    pub url: String,
    pub files: usize,
    /// Size of the encrypted archive.
    pub bytes: usize,
    /// How many keys can decrypt it (the vault's recipients, recovery keys included).
    pub recipients: usize,
}

/// The files of the infrastructure repository at `base` (kiln.toml's folder) that go into
/// its archive, sorted: in a git work tree, those git tracks or would (not the ignored
/// ones: a passphrase file beside kiln.toml stays out); elsewhere every regular file but
/// git's own and build output.
pub fn repository_files(base: &std::path::Path) -> std::io::Result<Vec<std::path::PathBuf>> {
    let git = std::process::Command::new("git")
        .arg("-C")
        .arg(base)
        .args([
            "ls-files",
            "-z",
            "--cached",
            "--others",
            "--exclude-standard",
        ])
        .stderr(std::process::Stdio::null())
        .output();
    if let Ok(o) = git
        && o.status.success()
    {
        let mut out: Vec<std::path::PathBuf> = o
            .stdout
            .split(|b| *b == 0)
            .filter(|n| !n.is_empty())
            .map(|n| base.join(String::from_utf8_lossy(n).as_ref()))
            .filter(|p| p.is_file())
            .collect();
        out.sort();
        return Ok(out);
    }
    let mut out = vec![];
    let mut stack = vec![base.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir)? {
            let e = e?;
            let name = e.file_name();
            let t = e.file_type()?;
            if t.is_dir() {
                if name != ".git" && name != "target" {
                    stack.push(e.path());
                }
            } else if t.is_file() {
                out.push(e.path());
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Archives the infrastructure repository at `base` (kiln.toml, templates, the encrypted
/// vault), encrypts it to the vault's recipients (recovery keys included) and stores it in
/// the bucket with the servers' credential (Object Lock keeps it): a lost laptop and a lost
/// git host are survivable with a recovery key and a read-only credential.
pub fn archive_repository(
    target: &Target<'_>,
    base: &std::path::Path,
) -> Result<Archived, BackupError> {
    let io = |e: std::io::Error| BackupError::Archive {
        message: format!("{}: {e}", base.display()),
    };
    let files = repository_files(base).map_err(io)?;
    let mut tar = tar::Builder::new(Vec::new());
    tar.mode(tar::HeaderMode::Deterministic);
    for f in &files {
        let rel = f.strip_prefix(base).unwrap_or(f);
        tar.append_path_with_name(f, std::path::Path::new("kiln-repository").join(rel))
            .map_err(io)?;
    }
    let plain = tar.into_inner().map_err(io)?;
    let (sealed, recipients) = target.vault.seal(&plain)?;
    let now = jiff::Timestamp::now()
        .strftime("%Y%m%dT%H%M%SZ")
        .to_string();
    let key = format!(
        "{}{now}.tar.age",
        repository_archive_prefix(&target.env.name)
    );
    target
        .client(target.server()?)
        .put_object(&target.location.bucket, &key, &sealed)
        .map_err(|e| target.s3(e))?;
    Ok(Archived {
        url: format!("s3://{}/{key}", target.location.bucket),
        files: files.len(),
        bytes: sealed.len(),
        recipients,
    })
}

/// What `kiln backup run` got from one host: its events, and whether it succeeded.
#[derive(Debug, Clone)]
pub struct HostRun {
    pub host: String,
    pub events: Vec<BackupEvent>,
    /// The host's backup mode exited 0 (every item done).
    pub ok: bool,
    /// What it said on stderr (the last lines), when it failed.
    pub stderr: String,
}

/// Exit status of the remote wrapper when the host has no kiln agent yet.
const NO_AGENT: i32 = 97;

/// The hosts among `jobs` that back something up (their desired state has a backup plan),
/// with their plans; with `service`, only those whose plan has it (an error when none has).
pub fn hosts_with_backups<'j>(
    jobs: &'j [Job],
    service: Option<&str>,
) -> Result<Vec<(&'j Job, HostPlan)>, RunHostsError> {
    let mut out = vec![];
    let mut all_services = vec![];
    for job in jobs {
        let Some(f) = job
            .desired
            .files
            .iter()
            .find(|f| f.path == std::path::Path::new(PLAN_PATH))
        else {
            continue;
        };
        let text = String::from_utf8_lossy(f.content.bytes()).into_owned();
        let plan: HostPlan = serde_json::from_str(&text).map_err(|e| RunHostsError::Plan {
            host: job.name.clone(),
            message: e.to_string(),
        })?;
        all_services.extend(plan.items.iter().map(|i| i.service.clone()));
        if service.is_none_or(|s| plan.items.iter().any(|i| i.service == s)) {
            out.push((job, plan));
        }
    }
    if let Some(s) = service
        && out.is_empty()
    {
        all_services.sort();
        all_services.dedup();
        return Err(RunHostsError::UnknownService {
            service: s.to_owned(),
            known: all_services.join(", "),
        });
    }
    Ok(out)
}

/// `kiln backup run` could not start.
#[derive(Debug, thiserror::Error)]
pub enum RunHostsError {
    #[error("host {host}: its backup plan does not read: {message}")]
    Plan { host: String, message: String },
    #[error("no host backs up a service `{service}` (backed up: {known})")]
    UnknownService { service: String, known: String },
}

/// Runs each host's backup mode now (in parallel), under systemd like the timer does so
/// that a killed run is undone by the unit's `ExecStopPost`, streaming its events to
/// `on_event` as they come. One result per host, in order.
pub fn run_hosts(
    hosts: &[(&Job, HostPlan)],
    service: Option<&str>,
    on_event: &(dyn Fn(&str, &BackupEvent) + Sync),
) -> Vec<(String, Result<HostRun, HostError>)> {
    std::thread::scope(|scope| {
        let handles: Vec<_> = hosts
            .iter()
            .map(|(job, _)| {
                let name = job.name.clone();
                let handle = scope.spawn(move || run_host(job, service, on_event));
                (name, handle)
            })
            .collect();
        handles
            .into_iter()
            .map(|(name, h)| {
                let r = h.join().unwrap_or_else(|_| {
                    Err(HostError::Internal {
                        host: name.clone(),
                        message: "the backup run's thread panicked".into(),
                    })
                });
                (name, r)
            })
            .collect()
    })
}

/// The words that run the host's backup mode under systemd (as root once wrapped).
pub fn remote_words(service: Option<&str>) -> Vec<String> {
    let mut w: Vec<String> = [
        "systemd-run",
        "--pipe",
        "--wait",
        "--collect",
        "--quiet",
        "--service-type=oneshot",
        "--unit=kiln-backup-now",
        "--property=Nice=10",
    ]
    .map(str::to_owned)
    .to_vec();
    w.push(format!(
        "--property=ExecStopPost={AGENT_LINK} agent backup --recover"
    ));
    w.extend([AGENT_LINK.to_owned(), "agent".into(), "backup".into()]);
    if let Some(s) = service {
        w.extend(["--service".into(), s.to_owned()]);
    }
    w
}

fn run_host(
    job: &Job,
    service: Option<&str>,
    on_event: &(dyn Fn(&str, &BackupEvent) + Sync),
) -> Result<HostRun, HostError> {
    let (events, ok, stderr) =
        agent_json(job, &remote_words(service), &|e| on_event(&job.name, e))?;
    Ok(HostRun {
        host: job.name.clone(),
        ok,
        events,
        stderr,
    })
}

/// Runs `words` (a kiln agent mode) as root on the job's host, when its agent is there;
/// each stdout line that is an `E` goes to `on_event`. Returns the events, whether it
/// exited 0, and its other output (the last lines of stderr, unparsed stdout).
fn agent_json<E: serde::de::DeserializeOwned>(
    job: &Job,
    words: &[String],
    on_event: &dyn Fn(&E),
) -> Result<(Vec<E>, bool, String), HostError> {
    let mut host = kiln_converge::run::connect(job)?;
    let (wrapped, stdin) = host.privilege().wrap(words);
    let command = format!(
        "if [ -x {link} ]; then {wrapped}; else echo 'kiln: no agent at {AGENT_LINK}' >&2; exit {NO_AGENT}; fi",
        link = kiln_shell::quote(AGENT_LINK)
    );
    let mut events = vec![];
    let mut unparsed = vec![];
    let out = host.exec(
        &command,
        &stdin,
        &mut |line| match serde_json::from_str::<E>(line) {
            Ok(e) => {
                on_event(&e);
                events.push(e);
            }
            Err(_) => unparsed.push(line.to_owned()),
        },
    )?;
    if out.code == Some(NO_AGENT) {
        return Err(HostError::Check {
            host: job.name.clone(),
            what: "backups".into(),
            message: format!(
                "kiln's agent is not on the host yet ({AGENT_LINK})\n  hint: run `kiln apply --env {}` first: it installs the agent, the backup plan and its timer",
                job.desired.host
            ),
        });
    }
    let mut stderr = out.stderr_tail();
    if !unparsed.is_empty() {
        stderr = format!("{}\n{stderr}", unparsed.join("\n"));
    }
    Ok((events, out.code == Some(0), stderr))
}

/// `kiln backup restore SERVICE --in-place`: the host's restore mode, on the host that
/// backs the service up. Returns whether it succeeded and what it said otherwise.
pub fn restore_in_place(
    job: &Job,
    service: &str,
    snapshot: Option<&str>,
    on_event: &dyn Fn(&RestoreEvent),
) -> Result<(bool, String), HostError> {
    let mut words: Vec<String> = [AGENT_LINK, "agent", "restore", service]
        .map(str::to_owned)
        .to_vec();
    if let Some(s) = snapshot {
        words.extend(["--snapshot".into(), s.to_owned()]);
    }
    let (_, ok, stderr) = agent_json(job, &words, on_event)?;
    Ok((ok, stderr))
}

/// `kiln backup restore SERVICE --to DIR`: the latest snapshot of each of the service's
/// kinds (or `snapshot`), read with the read-only credential, under `dir/<kind>/`.
/// Returns what was restored where.
pub fn restore_to(
    target: &Target<'_>,
    service: &str,
    snapshot: Option<&str>,
    dir: &std::path::Path,
) -> Result<Vec<(SnapshotInfo, std::path::PathBuf)>, BackupError> {
    let mut repo = target.open_readonly()?;
    let env = format!("env={}", target.env.name);
    let svc = format!("service={service}");
    let mut chosen = vec![];
    match snapshot {
        Some(id) => chosen.push(repo.find(id)?),
        None => {
            for kind in ["dump", "files"] {
                if let Some(s) = repo.latest(&[env.clone(), svc.clone(), format!("kind={kind}")])? {
                    chosen.push(s);
                }
            }
        }
    }
    if chosen.is_empty() {
        return Err(BackupError::NoSnapshot {
            service: service.to_owned(),
            url: target.location.restic_url(),
        });
    }
    let mut out = vec![];
    for s in chosen {
        let kind = tag(&s.tags, "kind").unwrap_or("snapshot").to_owned();
        let dest = dir.join(&kind);
        repo.restore(&s.id, &dest)?;
        out.push((s, dest));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_are_read_as_key_equals_value() {
        let tags = vec![
            "env=lab".to_owned(),
            "service=synapse".to_owned(),
            "servicex=no".to_owned(),
            "kind=dump".to_owned(),
        ];
        assert_eq!(tag(&tags, "service"), Some("synapse"));
        assert_eq!(tag(&tags, "kind"), Some("dump"));
        assert_eq!(tag(&tags, "host"), None);
        assert_eq!(tag(&tags, "servic"), None);
    }
}
