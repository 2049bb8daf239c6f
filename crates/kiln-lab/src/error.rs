//! The lab's error type: every variant names what it concerns (lab, server, path, command)
//! and, where the user can act, carries a hint. No terminal code here.

use std::path::PathBuf;

/// Everything that can go wrong while starting, using or tearing down a lab.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    #[error(
        "the lab needs root (network namespaces, mounts, systemd-nspawn)\n  hint: run it as root, e.g. with sudo"
    )]
    NotRoot,

    #[error("missing prerequisites on this machine:\n{}\n  hint: {hint}", list(.missing))]
    MissingPrerequisites { missing: Vec<String>, hint: String },

    #[error("`{command}` failed ({status}){}{}", stderr_text(.stderr), hint_text(.hint))]
    Command {
        command: String,
        status: String,
        stderr: String,
        hint: Option<String>,
    },

    #[error("cannot run `{program}`: {source}{}", hint_text(.hint))]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
        hint: Option<String>,
    },

    #[error("{action} {}: {source}", .path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("lab state file {} is unreadable: {message}\n  hint: `kiln lab down --lab {lab}` cleans up from a scan even without it", .path.display())]
    State {
        lab: String,
        path: PathBuf,
        message: String,
    },

    #[error("invalid {what} name `{name}`: {reason}")]
    InvalidName {
        what: &'static str,
        name: String,
        reason: &'static str,
    },

    #[error(
        "no Debian mirror found in this machine's apt sources ({checked})\n  hint: add a `deb http://<mirror>/debian ...` line or a deb822 .sources entry to /etc/apt/sources.list(.d)"
    )]
    NoMirror { checked: String },

    #[error(
        "lab `{lab}` is already running\n  hint: `kiln lab status --lab {lab}`, or `kiln lab down --lab {lab}` first"
    )]
    AlreadyRunning { lab: String },

    #[error(
        "no lab named `{lab}` is running\n  hint: `kiln lab up` starts one; `kiln lab status` lists running labs"
    )]
    NoSuchLab { lab: String },

    #[error("lab `{lab}` has no server named `{server}` (servers: {known})")]
    UnknownServer {
        lab: String,
        server: String,
        known: String,
    },

    #[error(
        "the addresses {addresses} belong to more than one lab ({labs})\n  hint: `kiln lab down --lab NAME` the one not in use"
    )]
    AmbiguousLab { addresses: String, labs: String },

    #[error(
        "no free lab subnet left in 10.77.1.0-10.77.250.0\n  hint: `kiln lab down --all` removes every lab"
    )]
    NoFreeSubnet,

    #[error("{what} on server `{server}` did not happen within {seconds} s{}", hint_text(.hint))]
    Timeout {
        server: String,
        what: String,
        seconds: u64,
        hint: Option<String>,
    },

    #[error("S3 {operation} on {target} failed: {message}")]
    S3 {
        operation: String,
        target: String,
        message: String,
    },

    /// A call to an S3 server failed (the error names the operation and endpoint).
    #[error(transparent)]
    S3Api(#[from] kiln_s3::S3Error),

    #[error("ACME/DNS {operation} on {target} failed: {message}")]
    Acme {
        operation: String,
        target: String,
        message: String,
    },

    #[error("image `{image}`: {message}")]
    Image { image: String, message: String },
}

fn list(items: &[String]) -> String {
    items
        .iter()
        .map(|i| format!("  - {i}"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn stderr_text(stderr: &str) -> String {
    let t = stderr.trim();
    if t.is_empty() {
        String::new()
    } else {
        // Keep the tail: the interesting part of a long tool log is at the end.
        let lines: Vec<&str> = t.lines().collect();
        let start = lines.len().saturating_sub(15);
        format!(":\n  {}", lines[start..].join("\n  "))
    }
}

fn hint_text(hint: &Option<String>) -> String {
    match hint {
        Some(h) => format!("\n  hint: {h}"),
        None => String::new(),
    }
}

pub type Result<T, E = LabError> = std::result::Result<T, E>;

/// Wraps an `std::io::Error` with the action and path concerned.
pub(crate) fn io(
    action: &'static str,
    path: impl Into<PathBuf>,
) -> impl FnOnce(std::io::Error) -> LabError {
    let path = path.into();
    move |source| LabError::Io {
        action,
        path,
        source,
    }
}
