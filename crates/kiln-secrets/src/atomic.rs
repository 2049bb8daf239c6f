//! Crash-safe file replacement: the only way the vault writes a file.
//!
//! A write goes to a temporary file in the destination's folder, created with mode 0600
//! before any content is written, then fsync, rename over the destination, fsync of the
//! folder. A reader sees the old file or the new one, never a mix, and an interruption at
//! any step leaves the previous file intact. Temporary files start with `.` and end with
//! `.tmp`, so the vault never mistakes a leftover for a secret.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// The steps of an atomic write, in order (for fault-injection tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    Created,
    Written,
    Synced,
    Renamed,
}

/// Writes `contents` to `path` atomically with mode 0600.
#[cfg(test)]
pub(crate) fn write(path: &Path, contents: &[u8]) -> io::Result<()> {
    write_with(path, contents, &mut |_| Ok(()))
}

/// [`write`], calling `fault` after each step; an error from `fault` aborts the write
/// there, as a crash would (tests use it to prove the previous file survives).
pub(crate) fn write_with(
    path: &Path,
    contents: &[u8],
    fault: &mut dyn FnMut(Step) -> io::Result<()>,
) -> io::Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let file_name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path has no file name"))?;
    let tmp = temp_path(dir, &file_name.to_string_lossy());
    let result = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        fault(Step::Created)?;
        file.write_all(contents)?;
        fault(Step::Written)?;
        file.sync_all()?;
        fault(Step::Synced)?;
        drop(file);
        fs::rename(&tmp, path)?;
        fault(Step::Renamed)?;
        File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        // Best effort: a leftover temp file is harmless (ignored by the vault) but untidy.
        let _ = fs::remove_file(&tmp);
    }
    result
}

fn temp_path(dir: &Path, name: &str) -> PathBuf {
    let nonce: u64 = rand::random();
    dir.join(format!(".{name}.{}.{nonce:016x}.tmp", std::process::id()))
}

/// Creates `dir` (and parents) with mode 0700 for the folders kiln creates itself.
pub(crate) fn create_private_dir(dir: &Path) -> io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn writes_with_mode_0600_and_replaces() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.age");
        write(&p, b"one").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"one");
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        write(&p, b"two").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        assert_eq!(
            fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temp file left"
        );
    }

    #[test]
    fn a_failure_at_any_step_before_rename_keeps_the_previous_file() {
        for failing in [Step::Created, Step::Written, Step::Synced] {
            let dir = tempfile::tempdir().unwrap();
            let p = dir.path().join("a.age");
            write(&p, b"previous").unwrap();
            let err = write_with(&p, b"next", &mut |step| {
                if step == failing {
                    Err(io::Error::other("injected crash"))
                } else {
                    Ok(())
                }
            })
            .unwrap_err();
            assert_eq!(err.to_string(), "injected crash");
            assert_eq!(fs::read(&p).unwrap(), b"previous", "failing at {failing:?}");
            assert_eq!(
                fs::read_dir(dir.path()).unwrap().count(),
                1,
                "temp file removed"
            );
        }
    }

    #[test]
    fn the_temp_file_has_mode_0600_before_any_content() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.age");
        let mut seen = None;
        write_with(&p, b"content", &mut |step| {
            if step == Step::Created {
                let tmp = fs::read_dir(dir.path())
                    .unwrap()
                    .next()
                    .unwrap()
                    .unwrap()
                    .path();
                let meta = fs::metadata(&tmp).unwrap();
                seen = Some((meta.permissions().mode() & 0o777, meta.len()));
            }
            Ok(())
        })
        .unwrap();
        assert_eq!(seen, Some((0o600, 0)));
    }
}
