//! Running the host's tools (systemctl, podman, psql, lvm, btrfs, mount) for the backup
//! mode, with one way of saying why one failed: the command line, its exit status and
//! the last lines of its stderr.

use std::process::{Command, ExitStatus};

/// Why `argv` failed: `` `argv` failed (exit status: N): last / lines / of stderr ``.
pub(crate) fn failure<S: AsRef<str>>(argv: &[S], status: ExitStatus, stderr: &[u8]) -> String {
    let err = String::from_utf8_lossy(stderr);
    let tail: Vec<&str> = err.trim_end().lines().collect();
    let line: Vec<&str> = argv.iter().map(AsRef::as_ref).collect();
    format!(
        "`{}` failed ({status}): {}",
        line.join(" "),
        tail[tail.len().saturating_sub(5)..].join(" / ")
    )
}

/// Runs `argv` (no shell): its stdout, or why it failed.
pub(crate) fn output<S: AsRef<str>>(argv: &[S]) -> Result<String, String> {
    let Some((program, args)) = argv.split_first() else {
        return Err("empty command".into());
    };
    let out = Command::new(program.as_ref())
        .args(args.iter().map(AsRef::as_ref))
        .output()
        .map_err(|e| format!("{}: {e}", program.as_ref()))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(failure(argv, out.status, &out.stderr))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_names_the_command_its_status_and_the_end_of_its_stderr() {
        let e = output(&[
            "sh",
            "-c",
            "for i in 1 2 3 4 5 6 7; do echo line$i >&2; done; exit 3",
        ])
        .unwrap_err();
        assert!(e.starts_with("`sh -c for i in"), "{e}");
        assert!(e.contains("(exit status: 3)"), "{e}");
        assert!(e.ends_with("line3 / line4 / line5 / line6 / line7"), "{e}");
        assert_eq!(output(&["echo", "hi"]).unwrap(), "hi\n");
        assert!(output::<&str>(&[]).is_err());
    }
}
