//! What every command starts from: the global options, the printer, and — loaded on
//! first use — the kiln.toml path (one resolution rule, `kiln_ops::config::locate`), the
//! validated model (its diagnostics rendered once, here), the environment a command works
//! on (one rule, `kiln_ops::target`), and vaults unlocked from the command's options with
//! prompts on the terminal.

use std::cell::OnceCell;
use std::path::{Path, PathBuf};

use kiln_model::{Environment, Model};
use kiln_ops::vault::{self, Ask, Notice, UnlockError, UnlockOptions};
use kiln_secrets::{Secret, Vault};

use crate::GlobalArgs;
use crate::error::CliError;
use crate::printer::Printer;

pub struct Context {
    pub printer: Printer,
    config_arg: Option<PathBuf>,
    config: OnceCell<PathBuf>,
    model: OnceCell<Model>,
}

impl Context {
    pub fn new(global: &GlobalArgs, printer: Printer) -> Context {
        Context {
            printer,
            config_arg: global.config.clone(),
            config: OnceCell::new(),
            model: OnceCell::new(),
        }
    }

    /// The kiln.toml to use: `--config`/`KILN_CONFIG` (a file, or a folder holding one),
    /// else the nearest one from the current folder upward.
    pub fn config_path(&self) -> Result<&Path, CliError> {
        if let Some(p) = self.config.get() {
            return Ok(p);
        }
        let cwd = std::env::current_dir().map_err(|e| {
            CliError::failed(miette::miette!("cannot read the current folder: {e}"))
        })?;
        let found = kiln_ops::config::locate(self.config_arg.as_deref(), &cwd)?;
        Ok(self.config.get_or_init(|| found))
    }

    /// The validated model; on failure every diagnostic is printed to stderr and the
    /// error exits 2.
    pub fn model(&self) -> Result<&Model, CliError> {
        if let Some(m) = self.model.get() {
            return Ok(m);
        }
        let path = self.config_path()?.to_owned();
        let model = kiln_model::load(&path).map_err(|diags| {
            self.printer
                .prompt(diags.render(self.printer.width(), self.printer.colors()));
            let n = diags.len();
            CliError::invalid(miette::miette!(
                "{n} problem{} in {}",
                if n == 1 { "" } else { "s" },
                path.display()
            ))
        })?;
        Ok(self.model.get_or_init(|| model))
    }

    /// The environment a single-environment command works on.
    pub fn environment(&self, wanted: Option<&str>) -> Result<&Environment, CliError> {
        Ok(kiln_ops::target::environment(self.model()?, wanted)?)
    }

    /// The environments a listing command shows (the named one, or all).
    pub fn environments(&self, wanted: Option<&str>) -> Result<Vec<&Environment>, CliError> {
        Ok(kiln_ops::target::environments(self.model()?, wanted)?)
    }

    /// Notices from the vault layer go to stderr.
    fn notice(&self) -> impl FnMut(Notice) + '_ {
        move |n| self.printer.note(n)
    }

    /// Opens the existing vault of `env`.
    pub fn open_vault(&self, env: &str, opts: &UnlockOptions) -> Result<Vault, CliError> {
        let base = self.model()?.base_dir().to_owned();
        Ok(vault::open(
            &base,
            env,
            opts,
            &Terminal,
            &mut self.notice(),
        )?)
    }

    /// Opens the vault of `env`, creating it (asking for a new passphrase) when missing.
    pub fn open_or_create_vault(&self, env: &str, opts: &UnlockOptions) -> Result<Vault, CliError> {
        let base = self.model()?.base_dir().to_owned();
        Ok(vault::open_or_create(
            &base,
            env,
            opts,
            &Terminal,
            &mut self.notice(),
        )?)
    }

    /// A new passphrase from a file, a command, or asked twice on the terminal
    /// (`None`: keep the current one).
    pub fn new_passphrase(
        &self,
        file: Option<&Path>,
        command: Option<&str>,
    ) -> Result<Option<Secret>, CliError> {
        Ok(vault::new_passphrase(
            file,
            command,
            true,
            &Terminal,
            &mut self.notice(),
        )?)
    }
}

/// Whether there is a terminal to prompt on (also when stdin is a pipe).
pub fn has_tty() -> bool {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/tty")
        .is_ok()
}

/// Prompts on the terminal, without echo.
pub struct Terminal;

fn read_password(prompt: &str) -> Result<Secret, UnlockError> {
    rpassword::prompt_password(prompt)
        .map(Secret::new)
        .map_err(|e| UnlockError::Prompt(e.to_string()))
}

impl Ask for Terminal {
    fn passphrase(&self) -> Option<Result<Secret, UnlockError>> {
        has_tty().then(|| read_password("Vault passphrase: "))
    }

    fn new_passphrase(&self, allow_keep: bool) -> Option<Result<Option<Secret>, UnlockError>> {
        if !has_tty() {
            return None;
        }
        Some((|| {
            let first = read_password(if allow_keep {
                "New vault passphrase (empty: keep the current one): "
            } else {
                "New vault passphrase: "
            })?;
            if first.expose().is_empty() && allow_keep {
                return Ok(None);
            }
            let second = read_password("Repeat it: ")?;
            if first != second {
                return Err(UnlockError::Mismatch);
            }
            Ok(Some(first))
        })())
    }
}
