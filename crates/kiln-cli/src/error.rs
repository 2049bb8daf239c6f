//! The one place where failures become exit codes and are rendered for the terminal.
//!
//! Library errors convert into [`CliError`] through the `From` impls below, so commands
//! use `?` and never decide an exit code by hand: bad input (a typo in kiln.toml, an
//! unknown environment, a wrong passphrase) exits 2, a failed operation (a host that
//! cannot be reached, a disk error) exits 1. Hints travel with the error as miette help.
//!
//! Exit codes: 0 success (or: nothing would change); 1 an operation failed;
//! 2 bad input (usage, invalid configuration, wrong passphrase);
//! 3 `kiln plan` found changes to make (`kiln dns --check`: records missing or different);
//! 130 interrupted.

use std::process::ExitCode;

pub const SUCCESS: u8 = 0;
pub const FAILURE: u8 = 1;
pub const INVALID_INPUT: u8 = 2;
pub const CHANGES_PENDING: u8 = 3;

/// A command's failure: what to show, and which exit code it maps to.
#[derive(Debug)]
pub struct CliError {
    pub code: u8,
    pub report: miette::Report,
}

impl CliError {
    /// The user gave kiln something it cannot use (exit 2).
    pub fn invalid(report: impl Into<miette::Report>) -> Self {
        CliError {
            code: INVALID_INPUT,
            report: report.into(),
        }
    }

    /// An operation failed (exit 1).
    pub fn failed(report: impl Into<miette::Report>) -> Self {
        CliError {
            code: FAILURE,
            report: report.into(),
        }
    }

    /// The errors were already rendered (e.g. all validation diagnostics); exit with `code`.
    pub fn silent(code: u8) -> Self {
        CliError {
            code,
            report: miette::Report::msg(""),
        }
    }

    fn from_parts(bad_input: bool, message: String, hint: Option<String>) -> Self {
        let report = match hint {
            Some(h) => miette::miette!(help = h, "{message}"),
            None => miette::miette!("{message}"),
        };
        if bad_input {
            CliError::invalid(report)
        } else {
            CliError::failed(report)
        }
    }
}

pub type CmdResult = Result<ExitCode, CliError>;

impl From<kiln_ops::config::LocateError> for CliError {
    fn from(e: kiln_ops::config::LocateError) -> Self {
        CliError::from_parts(true, e.to_string(), Some(e.hint().to_owned()))
    }
}

impl From<kiln_ops::backup::BackupError> for CliError {
    fn from(e: kiln_ops::backup::BackupError) -> Self {
        CliError::from_parts(e.is_bad_input(), e.to_string(), None)
    }
}

impl From<kiln_ops::init::InitError> for CliError {
    fn from(e: kiln_ops::init::InitError) -> Self {
        CliError::from_parts(e.is_bad_input(), e.to_string(), e.hint().map(str::to_owned))
    }
}

impl From<kiln_ops::target::TargetError> for CliError {
    fn from(e: kiln_ops::target::TargetError) -> Self {
        CliError::from_parts(true, e.to_string(), Some(e.hint()))
    }
}

impl From<kiln_ops::dns_check::DnsCheckError> for CliError {
    fn from(e: kiln_ops::dns_check::DnsCheckError) -> Self {
        CliError::from_parts(e.is_bad_input(), e.to_string(), e.hint().map(str::to_owned))
    }
}

impl From<kiln_ops::vault::UnlockError> for CliError {
    fn from(e: kiln_ops::vault::UnlockError) -> Self {
        CliError::from_parts(e.is_bad_input(), e.to_string(), e.hint().map(str::to_owned))
    }
}

impl From<kiln_secrets::VaultError> for CliError {
    fn from(e: kiln_secrets::VaultError) -> Self {
        CliError::from_parts(e.is_bad_input(), e.to_string(), e.hint().map(str::to_owned))
    }
}

impl From<kiln_secrets::ansible::AnsibleError> for CliError {
    fn from(e: kiln_secrets::ansible::AnsibleError) -> Self {
        CliError::from_parts(e.is_bad_input(), e.to_string(), None)
    }
}

impl From<kiln_secrets::InvalidName> for CliError {
    fn from(e: kiln_secrets::InvalidName) -> Self {
        CliError::from_parts(true, e.to_string(), None)
    }
}

impl From<kiln_lab::LabError> for CliError {
    fn from(e: kiln_lab::LabError) -> Self {
        CliError::from_parts(false, e.to_string(), None)
    }
}

impl From<kiln_converge::host::HostError> for CliError {
    fn from(e: kiln_converge::host::HostError) -> Self {
        CliError::from_parts(false, e.to_string(), None)
    }
}

impl From<kiln_converge::desired::DesiredError> for CliError {
    fn from(e: kiln_converge::desired::DesiredError) -> Self {
        CliError::from_parts(true, e.to_string(), None)
    }
}

impl From<kiln_ops::jobs::JobsError> for CliError {
    fn from(e: kiln_ops::jobs::JobsError) -> Self {
        let hint = match &e {
            kiln_ops::jobs::JobsError::Target(t) => Some(t.hint()),
            _ => None,
        };
        CliError::from_parts(e.is_bad_input(), e.to_string(), hint)
    }
}

impl From<kiln_ops::session::SessionError> for CliError {
    fn from(e: kiln_ops::session::SessionError) -> Self {
        CliError::from_parts(false, e.to_string(), None)
    }
}

impl From<kiln_model::edit::EditError> for CliError {
    fn from(e: kiln_model::edit::EditError) -> Self {
        let bad = !matches!(e, kiln_model::edit::EditError::Write { .. });
        CliError::from_parts(bad, e.to_string(), None)
    }
}

impl From<kiln_ops::trust::TrustError> for CliError {
    fn from(e: kiln_ops::trust::TrustError) -> Self {
        CliError::from_parts(e.is_bad_input(), e.to_string(), e.hint())
    }
}

impl From<kiln_ops::lab::UpError> for CliError {
    fn from(e: kiln_ops::lab::UpError) -> Self {
        CliError::from_parts(e.is_bad_input(), e.to_string(), None)
    }
}

/// A demo failure as the terminal shows it: the step, then what went wrong in it (with
/// its hint); an invalid kiln.toml has its diagnostics rendered to stderr first.
pub fn demo_report(e: &kiln_ops::workflows::demo::DemoError) -> CliError {
    use kiln_ops::workflows::demo::{DemoError, StepError};
    let code = if e.is_bad_input() {
        INVALID_INPUT
    } else {
        FAILURE
    };
    let report = match e {
        DemoError::Step { error, .. } => {
            if let StepError::Config { diagnostics, .. } = error.as_ref() {
                let p = crate::printer::Printer::new(crate::printer::Mode::Human);
                p.prompt(diagnostics.render(p.width(), p.colors()));
            }
            let inner = match e.hint() {
                Some(h) => miette::miette!(help = h, "{error}"),
                None => miette::miette!("{error}"),
            };
            inner.wrap_err(e.to_string())
        }
        _ => match e.hint() {
            Some(h) => miette::miette!(help = h, "{e}"),
            None => miette::miette!("{e}"),
        },
    };
    CliError { code, report }
}

impl From<kiln_ops::workflows::demo::DemoError> for CliError {
    fn from(e: kiln_ops::workflows::demo::DemoError) -> Self {
        demo_report(&e)
    }
}

/// Renders the error (unless already rendered) and turns it into the process exit code.
pub fn finish(result: CmdResult) -> ExitCode {
    match result {
        Ok(code) => code,
        Err(err) => {
            // A silent error (already rendered) has an empty message; miette would still
            // draw its marker.
            if !err.report.to_string().is_empty() {
                crate::printer::Printer::stderr_line(format!("{:?}", err.report));
            }
            ExitCode::from(err.code)
        }
    }
}
