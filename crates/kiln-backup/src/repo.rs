//! A restic-format repository on S3, through rustic_core on kiln's S3 client
//! ([`crate::backend`]).
//!
//! - Uploads carry a checksum (`x-amz-checksum-sha256`): a bucket with Object Lock refuses
//!   uploads without one.
//! - The credentials are the ones given, from the vault (no AWS environment or files).
//! - Paths are stored as given: callers give absolute paths, as restic does.

use std::path::{Path, PathBuf};

use kiln_s3::Credentials;
use kiln_secrets::Secret;
use rustic_core::repofile::SnapshotFile;
use rustic_core::{
    BackupOptions, CheckOptions, ConfigOptions, Credentials as RepoPassword, KeyOptions,
    LocalDestination, LsOptions, OpenStatus, PathList, Repository, RepositoryBackends,
    RepositoryOptions, RestoreOptions, RusticError, SnapshotOptions,
};

/// Where a repository lives: an S3 endpoint, bucket and key prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// `http(s)://host[:port]`.
    pub endpoint: String,
    pub region: String,
    pub bucket: String,
    /// Key prefix inside the bucket (no leading or trailing `/`), e.g. `kiln/production`.
    pub prefix: String,
}

impl Location {
    /// The repository of environment `env` as `[backups.repository]` and the
    /// environment's `backup_repository` describe it (the prefix's `{env}` filled in;
    /// region `us-east-1` when none is given, as S3 clients default to).
    pub fn for_environment(
        backups: &kiln_model::Backups,
        env: &kiln_model::Environment,
    ) -> Location {
        let repository = backups.repository_for(env);
        let env = env.name.as_str();
        Location {
            endpoint: repository.endpoint.clone(),
            region: repository
                .region
                .clone()
                .unwrap_or_else(|| "us-east-1".into()),
            bucket: repository.bucket.clone(),
            prefix: repository.prefix_for(env).trim_matches('/').to_owned(),
        }
    }

    /// The repository as the restic CLI takes it: `s3:<endpoint>/<bucket>/<prefix>`.
    pub fn restic_url(&self) -> String {
        let prefix = self.prefix.trim_matches('/');
        let base = format!("s3:{}/{}", self.endpoint.trim_end_matches('/'), self.bucket);
        if prefix.is_empty() {
            base
        } else {
            format!("{base}/{prefix}")
        }
    }

    /// The storage backend for this location and credential.
    fn backend(&self, creds: &Credentials) -> crate::backend::S3Backend {
        crate::backend::S3Backend::new(
            kiln_s3::S3Client::new(&self.endpoint, &self.region, creds.clone()),
            &self.bucket,
            &self.prefix,
            self.restic_url(),
        )
    }
}

/// A repository operation failed; every message names the repository (its restic URL).
#[derive(Debug, thiserror::Error)]
pub enum RepoError {
    #[error(
        "backup repository {url}: no repository there yet\n  hint: `kiln backup init` creates it (with the admin credential)"
    )]
    Missing { url: String },
    #[error("backup repository {url}: a repository is already there; nothing was written")]
    Exists { url: String },
    #[error(
        "backup repository {url}: the repository password does not open it (no key of the repository matches); nothing was written\n  hint: the password is the vault secret named in [backups.credentials] repository_password"
    )]
    WrongPassword { url: String },
    #[error("backup repository {url}: {action}: {message}")]
    Failed {
        url: String,
        action: &'static str,
        message: String,
    },
    #[error("backup repository {url}: the check found problems:\n{problems}")]
    CheckFailed { url: String, problems: String },
}

/// One snapshot, as listed.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SnapshotInfo {
    /// Full id (hex); restic shows its first 8 characters.
    pub id: String,
    /// RFC 3339.
    pub time: String,
    /// Unix seconds.
    pub unix: i64,
    pub hostname: String,
    pub paths: Vec<String>,
    pub tags: Vec<String>,
    /// What the snapshot holds, as its maker described it.
    pub description: Option<String>,
    /// Whether the snapshot has a summary (restic 0.14's have none: then the counts
    /// below are 0 and say nothing).
    pub summarized: bool,
    /// Files (every entry but directories) and bytes the backup read, and the bytes it
    /// added to the repository.
    pub files: u64,
    pub bytes: u64,
    pub bytes_added: u64,
}

impl SnapshotInfo {
    fn from_file(s: &SnapshotFile) -> SnapshotInfo {
        let summary = s.summary.as_ref();
        SnapshotInfo {
            id: s.id.to_hex().to_string(),
            time: s.time.timestamp().to_string(),
            unix: s.time.timestamp().as_second(),
            hostname: s.hostname.clone(),
            paths: s.paths.iter().cloned().collect(),
            tags: s.tags.iter().cloned().collect(),
            description: s.description.clone(),
            summarized: summary.is_some(),
            files: summary.map_or(0, |x| x.total_files_processed),
            bytes: summary.map_or(0, |x| x.total_bytes_processed),
            bytes_added: summary.map_or(0, |x| x.data_added),
        }
    }
}

/// How many snapshots to keep per period, in each group of snapshots of one host, service
/// and kind (restic's `forget --keep-*`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Keep {
    pub daily: u32,
    pub weekly: u32,
    pub monthly: u32,
    pub yearly: u32,
}

/// One snapshot as `forget` judged it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Judged {
    pub snapshot: SnapshotInfo,
    pub keep: bool,
    /// Why it is kept (`daily`, `weekly`, …).
    pub reasons: Vec<String>,
}

/// An open repository. Operations that read the index take the repository out, index it,
/// and put it back without its index afterwards; one that fails on the way leaves the
/// value unusable (open it again).
pub struct Repo {
    repo: Option<Repository<OpenStatus>>,
    location: Location,
}

impl Repo {
    /// The repository at `location`, not opened yet, and whether one is there (its
    /// `config` exists).
    fn unopened(
        location: &Location,
        creds: &Credentials,
    ) -> Result<(Repository<()>, bool), RepoError> {
        let url = location.restic_url();
        let backends = RepositoryBackends::new(std::sync::Arc::new(location.backend(creds)), None);
        // No local cache: the servers back up as root, and a stale cache must never
        // hide what the bucket holds.
        let repo = Repository::new(&RepositoryOptions::default().no_cache(true), &backends)
            .map_err(|e| failed(&url, "reach it", &e))?;
        let exists = repo
            .config_id()
            .map_err(|e| failed(&url, "read its configuration", &e))?
            .is_some();
        Ok((repo, exists))
    }

    fn opened(repo: Repository<OpenStatus>, location: &Location) -> Repo {
        Repo {
            repo: Some(repo),
            location: location.clone(),
        }
    }

    /// Opens the repository at `location` with `password`.
    pub fn open(
        location: &Location,
        creds: &Credentials,
        password: &Secret,
    ) -> Result<Repo, RepoError> {
        let url = location.restic_url();
        let (repo, exists) = Self::unopened(location, creds)?;
        if !exists {
            return Err(RepoError::Missing { url });
        }
        let repo = repo
            .open(&RepoPassword::password(password.expose()))
            .map_err(|e| {
                if e.is_incorrect_password() {
                    RepoError::WrongPassword { url: url.clone() }
                } else {
                    failed(&url, "open it", &e)
                }
            })?;
        Ok(Self::opened(repo, location))
    }

    /// Creates a repository at `location`, encrypted with `password`; refuses when one is
    /// there already.
    pub fn init(
        location: &Location,
        creds: &Credentials,
        password: &Secret,
    ) -> Result<Repo, RepoError> {
        let url = location.restic_url();
        let (repo, exists) = Self::unopened(location, creds)?;
        if exists {
            return Err(RepoError::Exists { url });
        }
        let repo = repo
            .init(
                &RepoPassword::password(password.expose()),
                &KeyOptions::default(),
                &ConfigOptions::default(),
            )
            .map_err(|e| failed(&url, "create it", &e))?;
        Ok(Self::opened(repo, location))
    }

    pub fn location(&self) -> &Location {
        &self.location
    }

    fn url(&self) -> String {
        self.location.restic_url()
    }

    /// Whether an earlier operation failed half-way and left this handle unusable (open
    /// the repository again).
    pub fn is_spent(&self) -> bool {
        self.repo.is_none()
    }

    /// A repository an earlier operation left unusable.
    fn spent(&self) -> RepoError {
        RepoError::Failed {
            url: self.url(),
            action: "use it",
            message: "an earlier operation failed half-way; open the repository again".into(),
        }
    }

    /// The open repository, taken out (give it back with `self.repo = Some(..)`).
    fn take(&mut self) -> Result<Repository<OpenStatus>, RepoError> {
        self.repo.take().ok_or_else(|| self.spent())
    }

    fn open_repo(&self) -> Result<&Repository<OpenStatus>, RepoError> {
        self.repo.as_ref().ok_or_else(|| self.spent())
    }

    /// Backs up `paths` (absolute) as one snapshot with `tags`, recorded as made on `host`,
    /// with `description` (what it holds, for humans and for a restore's checks).
    pub fn backup_paths(
        &mut self,
        paths: &[PathBuf],
        host: &str,
        tags: &[String],
        description: Option<&str>,
    ) -> Result<SnapshotInfo, RepoError> {
        let url = self.url();
        if let Some(p) = paths.iter().find(|p| !p.is_absolute()) {
            return Err(RepoError::Failed {
                url,
                action: "back up",
                message: format!("{} is not an absolute path", p.display()),
            });
        }
        if paths.is_empty() {
            return Err(RepoError::Failed {
                url,
                action: "back up",
                message: "no path given".into(),
            });
        }
        let line = paths
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(" ");
        let mut opts = SnapshotOptions::default()
            .host(host.to_owned())
            // Otherwise the process's argv is recorded as the snapshot's command.
            .command(format!("kiln backup {line}"));
        if let Some(d) = description {
            opts = opts.description(d.to_owned());
        }
        let snap = snapshot(&url, opts, tags)?;
        let source: PathList = paths.iter().cloned().collect();
        let indexed = self
            .take()?
            .to_indexed_ids()
            .map_err(|e| failed(&url, "read its index", &e))?;
        let saved = indexed.backup(&BackupOptions::default(), &source, snap);
        self.repo = Some(indexed.drop_index());
        let saved = saved.map_err(|e| failed(&url, "back up", &e))?;
        Ok(SnapshotInfo::from_file(&saved))
    }

    /// Backs up what `argv` writes on its stdout (a database dump) as one file named
    /// `filename` in a snapshot tagged `tags`, streamed: nothing the size of the dump is
    /// kept on disk or in memory. rustic saves the snapshot before it looks at the
    /// command's exit status; when the command fails, that snapshot is deleted again, so
    /// a failed dump never looks like a backup.
    pub fn backup_command(
        &mut self,
        argv: &[String],
        filename: &str,
        host: &str,
        tags: &[String],
        description: Option<&str>,
    ) -> Result<SnapshotInfo, RepoError> {
        let url = self.url();
        if argv.is_empty() {
            return Err(RepoError::Failed {
                url,
                action: "back up a command's output",
                message: "no command given".into(),
            });
        }
        let line = argv
            .iter()
            .map(|a| shell_quote(a))
            .collect::<Vec<_>>()
            .join(" ");
        // A label only this run uses, to find the snapshot again if the command fails
        // (and to name the file that keeps the command's stderr for the error message).
        let label = format!(
            "kiln-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos())
        );
        let stderr_file = std::env::temp_dir().join(format!("{label}.stderr"));
        // rustic lets the command's stderr through; it is kept instead, to say why a dump
        // failed.
        let wrapped = ["sh", "-c", "exec \"$@\" 2>\"$0\""]
            .into_iter()
            .map(str::to_owned)
            .chain(std::iter::once(stderr_file.display().to_string()))
            .chain(argv.iter().cloned())
            .map(|a| shell_quote(&a))
            .collect::<Vec<_>>()
            .join(" ");
        let command: rustic_core::CommandInput =
            wrapped.parse().map_err(|e| RepoError::Failed {
                url: url.clone(),
                action: "back up a command's output",
                message: format!("{line}: {e}"),
            })?;
        let mut opts = SnapshotOptions::default()
            .host(host.to_owned())
            .label(label.clone())
            .command(format!("kiln backup: {line}"));
        if let Some(d) = description {
            opts = opts.description(d.to_owned());
        }
        let snap = snapshot(&url, opts, tags)?;
        let backup = BackupOptions::default()
            .stdin_filename(filename.to_owned())
            .stdin_command(Some(command));
        let source = PathList::from_string("-").map_err(|e| failed(&url, "back up", &e))?;
        let indexed = self
            .take()?
            .to_indexed_ids()
            .map_err(|e| failed(&url, "read its index", &e))?;
        let saved = indexed.backup(&backup, &source, snap);
        let repo = indexed.drop_index();
        let result = match saved {
            Ok(s) => Ok(SnapshotInfo::from_file(&s)),
            Err(e) => {
                let left: Vec<_> = repo
                    .get_matching_snapshots(|s| s.label == label)
                    .map(|v| v.into_iter().map(|s| s.id).collect())
                    .unwrap_or_default();
                let removed = if left.is_empty() {
                    String::new()
                } else {
                    match repo.delete_snapshots(&left) {
                        Ok(()) => " (the snapshot it left was removed)".to_owned(),
                        Err(d) => format!(
                            " (removing the snapshot it left failed too: {})",
                            d.display_log()
                        ),
                    }
                };
                let said = std::fs::read_to_string(&stderr_file).unwrap_or_default();
                let tail: Vec<&str> = said.trim_end().lines().collect();
                let tail = tail[tail.len().saturating_sub(5)..].join(" / ");
                let said = if tail.is_empty() {
                    String::new()
                } else {
                    format!(": it said: {tail}")
                };
                // rustic's own words, shortened to the exit status when it gives one.
                let log = e.display_log();
                let how = log
                    .find("exit status")
                    .map(|i| log[i..].lines().next().unwrap_or_default().to_owned())
                    .unwrap_or(log);
                Err(RepoError::Failed {
                    url: url.clone(),
                    action: "back up a command's output",
                    message: format!("`{line}` failed ({how}){said}{removed}"),
                })
            }
        };
        let _ = std::fs::remove_file(&stderr_file);
        self.repo = Some(repo);
        result
    }

    /// Every snapshot, oldest first.
    pub fn snapshots(&self) -> Result<Vec<SnapshotInfo>, RepoError> {
        let mut all = self
            .open_repo()?
            .get_all_snapshots()
            .map_err(|e| failed(&self.url(), "list its snapshots", &e))?;
        all.sort_by(|a, b| a.time.cmp(&b.time));
        Ok(all.iter().map(SnapshotInfo::from_file).collect())
    }

    /// The latest snapshot carrying every one of `tags`, if any.
    pub fn latest(&self, tags: &[String]) -> Result<Option<SnapshotInfo>, RepoError> {
        Ok(self
            .snapshots()?
            .into_iter()
            .rfind(|s| tags.iter().all(|t| s.tags.contains(t))))
    }

    /// The snapshot whose id starts with `prefix` (at least 4 characters; refused when
    /// several match).
    pub fn find(&self, prefix: &str) -> Result<SnapshotInfo, RepoError> {
        let url = self.url();
        let all = self.snapshots()?;
        let hits: Vec<_> = all
            .into_iter()
            .filter(|s| s.id.starts_with(prefix))
            .collect();
        match (prefix.len() >= 4, hits.as_slice()) {
            (true, [one]) => Ok(one.clone()),
            (true, []) => Err(RepoError::Failed {
                url,
                action: "find the snapshot",
                message: format!("no snapshot {prefix}"),
            }),
            _ => Err(RepoError::Failed {
                url,
                action: "find the snapshot",
                message: format!(
                    "`{prefix}` names {} snapshot(s): give more of its id (kiln backup list)",
                    hits.len()
                ),
            }),
        }
    }

    /// Writes file `path` of snapshot `id` (a dump: `/<filename>`) to `w`, streamed.
    pub fn dump_file(
        &mut self,
        id: &str,
        path: &str,
        w: &mut impl std::io::Write,
    ) -> Result<(), RepoError> {
        let url = self.url();
        let repo = self
            .take()?
            .to_indexed()
            .map_err(|e| failed(&url, "read its index", &e))?;
        let result = repo
            .node_from_snapshot_path(&format!("{id}:{path}"), |_| true)
            .map_err(|e| failed(&url, "find the file in the snapshot", &e))
            .and_then(|node| {
                repo.dump(&node, w)
                    .map_err(|e| failed(&url, "read the file", &e))
            });
        self.repo = Some(repo.drop_index());
        result
    }

    /// Restores each path of snapshot `id` in place, where it was backed up: contents,
    /// owners (by number) and modes; with `delete`, files under those paths that the
    /// snapshot does not have are removed (nothing outside them is touched).
    pub fn restore_in_place(&mut self, id: &str, delete: bool) -> Result<(), RepoError> {
        let url = self.url();
        let snap = self.find(id)?;
        let repo = self
            .take()?
            .to_indexed()
            .map_err(|e| failed(&url, "read its index", &e))?;
        let mut result = Ok(());
        for p in &snap.paths {
            if !Path::new(p).is_absolute() {
                result = Err(RepoError::Failed {
                    url: url.clone(),
                    action: "restore in place",
                    message: format!("the snapshot's path {p} is not absolute"),
                });
                break;
            }
            let opts = RestoreOptions::default().delete(delete).numeric_id(true);
            if let Err(e) = Self::restore_node(
                &repo,
                &url,
                &format!("{}:{p}", snap.id),
                Path::new(p),
                &opts,
            ) {
                result = Err(e);
                break;
            }
        }
        self.repo = Some(repo.drop_index());
        result
    }

    fn restore_node(
        repo: &Repository<impl rustic_core::IndexedFull>,
        url: &str,
        snap_path: &str,
        dest: &Path,
        opts: &RestoreOptions,
    ) -> Result<(), RepoError> {
        let node = repo
            .node_from_snapshot_path(snap_path, |_| true)
            .map_err(|e| failed(url, "find the snapshot", &e))?;
        let ls = repo
            .ls(&node, &LsOptions::default())
            .map_err(|e| failed(url, "read the snapshot", &e))?;
        let mut target = dest.display().to_string();
        if node.is_dir() && !target.ends_with('/') {
            target.push('/');
        }
        let dest = LocalDestination::new(&target, true, !node.is_dir())
            .map_err(|e| failed(url, "prepare the destination", &e))?;
        let plan = repo
            .prepare_restore(opts, ls.clone(), &dest, false)
            .map_err(|e| failed(url, "plan the restore", &e))?;
        repo.restore(plan, opts, ls, &dest)
            .map_err(|e| failed(url, "restore", &e))
    }

    /// Restores snapshot `id` (a unique prefix of its id, or `latest`) into `dest`, a folder
    /// created if needed: the snapshot's paths appear under it as they were stored.
    pub fn restore(&mut self, id: &str, dest: &Path) -> Result<(), RepoError> {
        let url = self.url();
        let repo = self
            .take()?
            .to_indexed()
            .map_err(|e| failed(&url, "read its index", &e))?;
        let mut target = PathBuf::from(dest).display().to_string();
        if !target.ends_with('/') {
            target.push('/');
        }
        let result = Self::restore_node(
            &repo,
            &url,
            &format!("{id}:"),
            Path::new(&target),
            &RestoreOptions::default(),
        );
        self.repo = Some(repo.drop_index());
        result
    }

    /// Applies `keep` to each group of snapshots (same host and tags: one service's one
    /// kind), oldest first in the result; unless `dry_run`, removes the snapshots not kept
    /// (their data stays until a prune, and in a versioned bucket until its lifecycle rule
    /// expires the old versions).
    pub fn forget(&self, keep: Keep, dry_run: bool) -> Result<Vec<Judged>, RepoError> {
        let url = self.url();
        let repo = self.open_repo()?;
        let all = repo
            .get_all_snapshots()
            .map_err(|e| failed(&url, "list its snapshots", &e))?;
        let opts = rustic_core::KeepOptions::default()
            .keep_daily(keep.daily as i32)
            .keep_weekly(keep.weekly as i32)
            .keep_monthly(keep.monthly as i32)
            .keep_yearly(keep.yearly as i32);
        let mut groups: std::collections::BTreeMap<(String, Vec<String>), Vec<SnapshotFile>> =
            Default::default();
        for s in all {
            let mut tags: Vec<String> = s.tags.iter().cloned().collect();
            tags.sort();
            groups
                .entry((s.hostname.clone(), tags))
                .or_default()
                .push(s);
        }
        let now = jiff::Zoned::now();
        let mut judged = vec![];
        for (_, snaps) in groups {
            for f in opts
                .apply(snaps, &now)
                .map_err(|e| failed(&url, "apply the retention", &e))?
            {
                judged.push(Judged {
                    snapshot: SnapshotInfo::from_file(&f.snapshot),
                    keep: f.keep,
                    reasons: f.reasons,
                });
            }
        }
        judged.sort_by_key(|j| j.snapshot.unix);
        if !dry_run {
            let ids: Vec<_> = judged
                .iter()
                .filter(|j| !j.keep)
                .filter_map(|j| j.snapshot.id.parse().ok())
                .collect();
            if !ids.is_empty() {
                repo.delete_snapshots(&ids)
                    .map_err(|e| failed(&url, "remove the forgotten snapshots", &e))?;
            }
        }
        Ok(judged)
    }

    /// Checks the repository's structure (index, packs, trees); with `read_data_subset`
    /// (`10%`, `1/5`, `all`, a size like `500MiB`, as restic takes it) also reads that
    /// share of the data back and verifies it.
    pub fn check(&self, read_data_subset: Option<&str>) -> Result<(), RepoError> {
        let url = self.url();
        let mut opts = CheckOptions::default();
        if let Some(subset) = read_data_subset {
            let subset: rustic_core::ReadSubsetOption =
                subset
                    .parse()
                    .map_err(|e: Box<RusticError>| RepoError::Failed {
                        url: url.clone(),
                        action: "read a subset of its data",
                        message: format!("`{subset}`: {}", e.display_log()),
                    })?;
            opts = opts.read_data(true).read_data_subset(subset);
        }
        let results = self
            .open_repo()?
            .check(opts)
            .map_err(|e| failed(&url, "check it", &e))?;
        results.is_ok().map_err(|e| RepoError::CheckFailed {
            url,
            problems: e.to_string(),
        })
    }
}

/// A new snapshot from `opts` with `tags`.
fn snapshot(url: &str, opts: SnapshotOptions, tags: &[String]) -> Result<SnapshotFile, RepoError> {
    let mut opts = opts;
    for t in tags {
        opts = opts
            .add_tags(t)
            .map_err(|e| failed(url, "tag the snapshot", &e))?;
    }
    opts.to_snapshot()
        .map_err(|e| failed(url, "prepare the snapshot", &e))
}

/// `arg` as one shell word (single quotes; a quote inside closes, escapes and reopens).
fn shell_quote(arg: &str) -> String {
    if !arg.is_empty()
        && arg
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,@%+".contains(c))
    {
        arg.to_owned()
    } else {
        format!("'{}'", arg.replace('\'', "'\\''"))
    }
}

fn failed(url: &str, action: &'static str, e: &RusticError) -> RepoError {
    RepoError::Failed {
        url: url.to_owned(),
        action,
        message: e.display_log(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_stay_one_word_each() {
        assert_eq!(shell_quote("pg_dump"), "pg_dump");
        assert_eq!(shell_quote("--dbname=synapse"), "--dbname=synapse");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), "'it'\\''s'");
        assert_eq!(shell_quote(""), "''");
        let line = ["sh", "-c", "echo 'x y'; exit 3"]
            .map(shell_quote)
            .join(" ");
        let parsed: rustic_core::CommandInput = line.parse().unwrap();
        assert_eq!(parsed.to_string(), line);
    }

    #[test]
    fn the_restic_url_is_the_one_the_restic_cli_takes() {
        let l = Location {
            endpoint: "http://10.77.0.1:9000/".into(),
            region: "us-east-1".into(),
            bucket: "kiln-backups".into(),
            prefix: "/kiln/lab/".into(),
        };
        assert_eq!(
            l.restic_url(),
            "s3:http://10.77.0.1:9000/kiln-backups/kiln/lab"
        );
        let bare = Location {
            prefix: String::new(),
            ..l
        };
        assert_eq!(bare.restic_url(), "s3:http://10.77.0.1:9000/kiln-backups");
    }
}
