//! Running external tools (ip, mount, systemd-nspawn, ssh-keygen, ...) with their output
//! captured and failures turned into `LabError::Command` naming the command line.

use std::ffi::OsStr;
use std::process::{Command, Output, Stdio};

use crate::error::{LabError, Result};

/// The command line as a user would type it.
pub fn display(cmd: &Command) -> String {
    let mut parts = vec![kiln_shell::quote(&cmd.get_program().to_string_lossy())];
    parts.extend(
        cmd.get_args()
            .map(|a| kiln_shell::quote(&a.to_string_lossy())),
    );
    parts.join(" ")
}

/// Runs `cmd`, stdin closed, output captured; a non-zero exit is an error.
pub fn run(cmd: &mut Command) -> Result<Output> {
    run_hint(cmd, None)
}

/// As [`run`], with a hint attached to a failure.
pub fn run_hint(cmd: &mut Command, hint: Option<&str>) -> Result<Output> {
    let out = output(cmd)?;
    if out.status.success() {
        Ok(out)
    } else {
        Err(LabError::Command {
            command: display(cmd),
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            hint: hint.map(str::to_string),
        })
    }
}

/// Runs `cmd` and returns its output whatever its exit status (spawn failures are errors).
pub fn output(cmd: &mut Command) -> Result<Output> {
    cmd.stdin(Stdio::null());
    cmd.output().map_err(|source| LabError::Spawn {
        program: cmd.get_program().to_string_lossy().into_owned(),
        hint: missing_hint(&source),
        source,
    })
}

fn missing_hint(err: &std::io::Error) -> Option<String> {
    (err.kind() == std::io::ErrorKind::NotFound)
        .then(|| "not installed? `kiln lab up --yes` installs the lab's prerequisites".to_string())
}

/// A `Command` for a system program, found in PATH or in /usr/sbin and /sbin even when they
/// are not in PATH (sudo and cron often drop them).
pub fn command(program: &str) -> Command {
    match which(program) {
        Some(path) => Command::new(path),
        None => Command::new(program),
    }
}

/// Shorthand: `program args...`, checked.
pub fn run_args<I, S>(program: &str, args: I) -> Result<Output>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    run(command(program).args(args))
}

/// `ip` with arguments, checked.
pub fn ip<I, S>(args: I) -> Result<Output>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    run_args("ip", args)
}

/// Whether `program` is found in PATH (or is an existing absolute path).
pub fn which(program: &str) -> Option<std::path::PathBuf> {
    let p = std::path::Path::new(program);
    if p.is_absolute() {
        return p.is_file().then(|| p.to_path_buf());
    }
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/sbin:/usr/bin:/sbin:/bin".into());
    std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/sbin".into()])
        .map(|d| d.join(program))
        .find(|c| c.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failure_names_the_command_and_its_stderr() {
        let err = run(Command::new("sh").args(["-c", "echo boom >&2; exit 3"])).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("`sh -c 'echo boom >&2; exit 3'` failed"),
            "{text}"
        );
        assert!(text.contains("boom"), "{text}");
    }
}
