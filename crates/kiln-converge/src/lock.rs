//! One writer per host (style rule 14): the agent holds an exclusive `flock` on
//! [`LOCK_PATH`] for the whole of an apply (from before it observes until after it wrote
//! the ownership record) and for a guarded group's rollback. A second writer waits
//! briefly, then is refused with who holds the lock and since when ([`Holder`], written
//! into the lock file by its holder).
//!
//! Plan-only runs take no lock: they write nothing, so they run alongside each other and
//! alongside an apply. The lock is the kernel's: it goes away with the process holding it,
//! so a killed run never leaves a stale lock behind (the holder record it leaves is only
//! read while someone holds the lock).

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::system::unix_now;

use serde::{Deserialize, Serialize};

use crate::system::Target;

/// Where the lock lives, relative to the host's root.
pub const LOCK_PATH: &str = "/var/lib/kiln/lock";

/// How long a second writer waits by default before it is refused.
pub const DEFAULT_WAIT: Duration = Duration::from_secs(5);

/// Who holds the lock (the content of the lock file while it is held).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holder {
    /// What it does: `apply`, `rollback`.
    pub purpose: String,
    /// The kiln version of the agent.
    pub kiln: String,
    pub pid: u32,
    /// `user@laptop` of the person who started the run, when the laptop said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operator: Option<String>,
    /// Seconds since the Unix epoch.
    pub since: u64,
}

impl Holder {
    /// A holder record for this process, now.
    pub fn now(purpose: &str, operator: Option<String>) -> Holder {
        Holder {
            purpose: purpose.to_owned(),
            kiln: env!("CARGO_PKG_VERSION").to_owned(),
            pid: std::process::id(),
            operator,
            since: unix_now() as u64,
        }
    }

    fn describe(&self, now: u64) -> String {
        format!(
            "{} by {} (kiln {}, pid {}) since {} ({} s ago)",
            if self.purpose.is_empty() {
                "a run"
            } else {
                &self.purpose
            },
            self.operator.as_deref().unwrap_or("an unknown operator"),
            self.kiln,
            self.pid,
            utc(self.since),
            now.saturating_sub(self.since)
        )
    }
}

/// The lock could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error(
        "another kiln run holds the lock on this host ({path}): {}; waited {waited_s} s\n  hint: let it finish, then run again (the lock goes away when that run ends, even if it is killed)",
        match holder { Some(h) => h.describe(unix_now() as u64), None => "its holder record could not be read".to_owned() }
    )]
    Held {
        path: String,
        holder: Option<Holder>,
        waited_s: u64,
    },
    #[error("{path}: {action}: {source}")]
    Io {
        path: String,
        action: &'static str,
        #[source]
        source: std::io::Error,
    },
}

/// The held lock; released when dropped (or when the process ends).
#[derive(Debug)]
pub struct HostLock {
    _file: File,
    pub path: PathBuf,
}

/// `2026-12-01 22:30:05 UTC` from seconds since the epoch (civil-from-days, proleptic
/// Gregorian calendar).
pub fn utc(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

fn io(path: &Path, action: &'static str) -> impl FnOnce(std::io::Error) -> LockError {
    let path = path.display().to_string();
    move |source| LockError::Io {
        path,
        action,
        source,
    }
}

/// Reads the holder record of the lock at `path` (None when absent or unreadable).
pub fn read_holder(path: &Path) -> Option<Holder> {
    let text = std::fs::read_to_string(path).ok()?;
    serde_json::from_str(&text).ok()
}

/// Takes the host's lock under `target`'s root, waiting up to `wait` for another holder
/// to finish; then records `holder` in it.
pub fn acquire(target: &Target, holder: &Holder, wait: Duration) -> Result<HostLock, LockError> {
    acquire_at(&target.path(Path::new(LOCK_PATH)), holder, wait)
}

/// [`acquire`] for an explicit lock file path.
pub fn acquire_at(path: &Path, holder: &Holder, wait: Duration) -> Result<HostLock, LockError> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io(dir, "create folder"))?;
    }
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o644)
        .open(path)
        .map_err(io(path, "open"))?;
    let start = Instant::now();
    loop {
        match file.try_lock() {
            Ok(()) => break,
            Err(TryLockError::WouldBlock) => {
                if start.elapsed() >= wait {
                    let mut text = String::new();
                    let _ = file.read_to_string(&mut text);
                    return Err(LockError::Held {
                        path: path.display().to_string(),
                        holder: serde_json::from_str(&text).ok(),
                        waited_s: start.elapsed().as_secs(),
                    });
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(TryLockError::Error(e)) => return Err(io(path, "lock")(e)),
        }
    }
    let record = serde_json::to_vec(holder).map_err(|e| io(path, "encode")(e.into()))?;
    file.set_len(0).map_err(io(path, "truncate"))?;
    file.rewind().map_err(io(path, "rewind"))?;
    file.write_all(&record).map_err(io(path, "write"))?;
    file.flush().map_err(io(path, "write"))?;
    Ok(HostLock {
        _file: file,
        path: path.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_formats_known_instants() {
        assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc(951_782_400), "2000-02-29 00:00:00 UTC");
        assert_eq!(utc(1_796_164_205), "2026-12-01 22:30:05 UTC");
    }

    #[test]
    fn a_second_writer_waits_then_is_refused_naming_the_holder() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("var/lib/kiln/lock");
        let first = Holder::now("apply", Some("alice@laptop".into()));
        let held = acquire_at(&path, &first, Duration::ZERO).unwrap();
        let start = Instant::now();
        let err = acquire_at(
            &path,
            &Holder::now("apply", None),
            Duration::from_millis(300),
        )
        .unwrap_err();
        assert!(start.elapsed() >= Duration::from_millis(300), "it waited");
        let text = err.to_string();
        assert!(
            text.starts_with(&format!(
                "another kiln run holds the lock on this host ({}): apply by alice@laptop (kiln {}, pid {}) since ",
                path.display(),
                env!("CARGO_PKG_VERSION"),
                std::process::id()
            )),
            "{text}"
        );
        assert!(matches!(err, LockError::Held { holder: Some(h), .. } if h == first));
        drop(held);
        let again = acquire_at(&path, &Holder::now("apply", None), Duration::ZERO).unwrap();
        assert_eq!(read_holder(&again.path).unwrap().operator, None);
    }
}
