//! All terminal output goes through here (style rule 15; uv's `printer.rs`).
//!
//! Results go to stdout, narration, warnings and prompts to stderr. Writing never panics:
//! a reader that went away (`kiln plan | head`) closes the pipe, kiln's work is done by
//! then, and losing the rest of the text is the reader's choice. In `--json` mode stdout
//! carries JSON only; human text still goes to stderr.

use std::fmt::Display;
use std::io::{IsTerminal, Write};

/// How a command's output looks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Text for a person, plain (not a terminal) or with colours and bars (a terminal).
    Human,
    /// JSON on stdout, nothing else there.
    Json,
}

/// The one printer.
#[derive(Debug, Clone, Copy)]
pub struct Printer {
    mode: Mode,
}

impl Printer {
    pub fn new(mode: Mode) -> Printer {
        Printer { mode }
    }

    /// A printer for a command's `--json` flag.
    pub fn json_if(json: bool) -> Printer {
        Printer::new(if json { Mode::Json } else { Mode::Human })
    }

    pub fn is_json(&self) -> bool {
        self.mode == Mode::Json
    }

    /// Text on stdout, as is.
    pub fn out(&self, text: impl Display) {
        let mut out = std::io::stdout().lock();
        let _ = write!(out, "{text}");
        let _ = out.flush();
    }

    /// A line on stdout.
    pub fn outln(&self, text: impl Display) {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{text}");
        let _ = out.flush();
    }

    /// Raw bytes on stdout (a secret's value for `kiln secrets get`): here a closed pipe
    /// is an error, the value did not reach its reader.
    pub fn out_bytes(&self, bytes: &[u8]) -> std::io::Result<()> {
        let mut out = std::io::stdout().lock();
        out.write_all(bytes)?;
        out.flush()
    }

    /// One JSON document on stdout, pretty-printed.
    pub fn json(&self, value: &impl serde::Serialize) -> Result<(), crate::error::CliError> {
        let text = serde_json::to_string_pretty(value).map_err(|e| {
            crate::error::CliError::failed(miette::miette!("cannot write JSON: {e}"))
        })?;
        self.outln(text);
        Ok(())
    }

    /// Narration, warnings, hints: a line on stderr.
    pub fn note(&self, text: impl Display) {
        Printer::stderr_line(text);
    }

    /// Text on stderr without a newline (a question before reading the answer).
    pub fn prompt(&self, text: impl Display) {
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "{text}");
        let _ = err.flush();
    }

    /// A line on stderr, for code that has no printer at hand (the error map).
    pub fn stderr_line(text: impl Display) {
        let mut err = std::io::stderr().lock();
        let _ = writeln!(err, "{text}");
    }

    pub fn stdout_is_terminal(&self) -> bool {
        std::io::stdout().is_terminal()
    }

    pub fn stderr_is_terminal(&self) -> bool {
        std::io::stderr().is_terminal()
    }

    /// Colours on stderr: a terminal, and `NO_COLOR` unset.
    pub fn colors(&self) -> bool {
        self.stderr_is_terminal() && std::env::var_os("NO_COLOR").is_none()
    }

    /// Width to wrap diagnostics at: `COLUMNS`, else 100, within 60..=160.
    pub fn width(&self) -> usize {
        std::env::var("COLUMNS")
            .ok()
            .and_then(|c| c.parse().ok())
            .unwrap_or(100)
            .clamp(60, 160)
    }
}
