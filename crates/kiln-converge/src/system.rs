//! The agent's access to the machine it runs on: a root prefix for every path (so tests
//! can converge a temporary folder) and a [`Runner`] for the few commands that have no
//! file-level equivalent (package manager, systemctl, useradd, guarded commands).
//!
//! The real runner uses `std::process::Command` with argv vectors: nothing here goes
//! through a shell except the user's own `run`/`unless` text, given to `/bin/sh -c`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::facts::Argv;

/// What a command did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunOutput {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl RunOutput {
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }
    /// The last lines of stderr (or stdout), for error messages.
    pub fn tail(&self) -> String {
        let text = if self.stderr.trim().is_empty() {
            &self.stdout
        } else {
            &self.stderr
        };
        let lines: Vec<&str> = text.trim_end().lines().collect();
        lines[lines.len().saturating_sub(5)..].join("\n")
    }
}

/// Runs commands on the agent's machine.
pub trait Runner: Send {
    fn run(&mut self, argv: &Argv) -> std::io::Result<RunOutput>;
}

/// The real thing.
#[derive(Debug, Default)]
pub struct SystemRunner;

impl Runner for SystemRunner {
    fn run(&mut self, argv: &Argv) -> std::io::Result<RunOutput> {
        let Some((prog, args)) = argv.args.split_first() else {
            return Err(std::io::Error::other("empty command"));
        };
        let mut cmd = Command::new(prog);
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in &argv.env {
            cmd.env(k, v);
        }
        let out = cmd.output()?;
        Ok(RunOutput {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        })
    }
}

/// Records every command and answers from a script; fails on anything unexpected.
/// For tests of observe/apply that must not touch the real system.
#[derive(Debug, Default)]
pub struct ScriptedRunner {
    pub expected: std::collections::VecDeque<(Vec<String>, RunOutput)>,
    pub ran: Vec<Vec<String>>,
}

impl Runner for ScriptedRunner {
    fn run(&mut self, argv: &Argv) -> std::io::Result<RunOutput> {
        self.ran.push(argv.args.clone());
        match self.expected.pop_front() {
            Some((args, out)) if args == argv.args => Ok(out),
            Some((args, _)) => Err(std::io::Error::other(format!(
                "scripted runner: expected {args:?}, got {:?}",
                argv.args
            ))),
            None => Err(std::io::Error::other(format!(
                "scripted runner: unexpected {:?}",
                argv.args
            ))),
        }
    }
}

/// The machine the agent converges: `root` is `/` on a real host.
pub struct Target {
    pub root: PathBuf,
    pub runner: Box<dyn Runner>,
}

impl Target {
    pub fn system() -> Self {
        Target {
            root: PathBuf::from("/"),
            runner: Box::new(SystemRunner),
        }
    }

    /// A host path under this target's root.
    pub fn path(&self, p: &Path) -> PathBuf {
        let rel = p.strip_prefix("/").unwrap_or(p);
        self.root.join(rel)
    }

    /// True when converging the real `/` (systemd, packages and accounts are available).
    pub fn is_real_root(&self) -> bool {
        self.root == Path::new("/")
    }

    pub fn run(&mut self, args: &[&str]) -> std::io::Result<RunOutput> {
        self.runner.run(&Argv {
            env: vec![],
            args: args.iter().map(|s| s.to_string()).collect(),
        })
    }

    /// `/bin/sh -c script` for the user's own command text.
    pub fn shell(&mut self, script: &str) -> std::io::Result<RunOutput> {
        self.run(&["/bin/sh", "-c", script])
    }
}

/// Writes a line to a writer and flushes it (events must reach the laptop promptly).
/// Now, in Unix seconds (0 if the clock is before 1970).
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

pub fn write_line(out: &mut dyn Write, line: &str) -> std::io::Result<()> {
    out.write_all(line.as_bytes())?;
    out.write_all(b"\n")?;
    out.flush()
}
