//! The one place where failures become exit codes and are rendered for the terminal.
//!
//! Exit codes: 0 success (or: nothing would change); 1 an operation failed;
//! 2 bad input (usage, invalid configuration, wrong passphrase);
//! 3 `kiln plan` found changes to make.

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
}

pub type CmdResult = Result<ExitCode, CliError>;

pub fn finish(result: CmdResult) -> ExitCode {
    match result {
        Ok(code) => code,
        Err(err) => {
            let text = format!("{:?}", err.report);
            if !text.trim().is_empty() {
                eprintln!("{text}");
            }
            ExitCode::from(err.code)
        }
    }
}

impl From<kiln_ops::jobs::JobsError> for CliError {
    fn from(e: kiln_ops::jobs::JobsError) -> Self {
        let bad = e.is_bad_input();
        let report = match &e {
            kiln_ops::jobs::JobsError::Target(t) => miette::miette!(help = t.hint(), "{e}"),
            _ => miette::miette!("{e}"),
        };
        if bad {
            CliError::invalid(report)
        } else {
            CliError::failed(report)
        }
    }
}

impl From<kiln_ops::session::SessionError> for CliError {
    fn from(e: kiln_ops::session::SessionError) -> Self {
        CliError::failed(miette::miette!("{e}"))
    }
}
