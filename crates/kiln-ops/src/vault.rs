//! Opening an environment's vault from library options: where the passphrase comes from
//! (a file, a command, an age identity, or a prompt the caller provides), creating the
//! vault when a command may, and a lazily-opening [`LazyVault`] for templates that call
//! `secret()` (configurations without secrets never ask for the passphrase).
//!
//! No terminal here: prompting is the [`Ask`] callback's job, and what the user should
//! hear (a passphrase file readable by others, a vault just created) comes back as
//! [`Notice`]s. Passphrases travel as [`Secret`]s, never in argv or the environment.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;

use kiln_secrets::vault::{self, Vault};
use kiln_secrets::{Secret, Unlock, VaultError};

/// Where the vault's passphrase (or identity) comes from.
#[derive(Debug, Clone, Default)]
pub struct UnlockOptions {
    /// A file holding the passphrase (its content, one final newline removed).
    pub passphrase_file: Option<PathBuf>,
    /// A command (run with `sh -c`) printing the passphrase, e.g. `pass show kiln/vault`.
    pub passphrase_command: Option<String>,
    /// age identity files (a recovery key, or a recipient's private key); they take
    /// precedence over the passphrase options.
    pub identities: Vec<PathBuf>,
}

/// Asks the person at the terminal. `None`: there is no terminal to ask on.
pub trait Ask {
    /// The current passphrase.
    fn passphrase(&self) -> Option<Result<Secret, UnlockError>>;
    /// A new passphrase, asked twice ([`UnlockError::Mismatch`] when the answers differ);
    /// `Ok(None)` keeps the current one (only offered when `allow_keep`).
    fn new_passphrase(&self, allow_keep: bool) -> Option<Result<Option<Secret>, UnlockError>>;
}

/// Never asks: for non-interactive runs (the demo, tests, `--yes` workflows).
pub struct NoTerminal;

impl Ask for NoTerminal {
    fn passphrase(&self) -> Option<Result<Secret, UnlockError>> {
        None
    }
    fn new_passphrase(&self, _allow_keep: bool) -> Option<Result<Option<Secret>, UnlockError>> {
        None
    }
}

/// Something the user should be told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// The passphrase file can be read by other users.
    ReadableByOthers { path: PathBuf },
    /// A new vault was created.
    Created { root: PathBuf },
}

impl std::fmt::Display for Notice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Notice::ReadableByOthers { path } => write!(
                f,
                "warning: passphrase file {} is readable by other users (chmod 600 it)",
                path.display()
            ),
            Notice::Created { root } => write!(
                f,
                "created a new vault in {} (vault key in identity.age, protected by your passphrase);\n\
                 consider `kiln secrets recovery-key` and keep it offline",
                root.display()
            ),
        }
    }
}

/// Why the vault could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum UnlockError {
    #[error(transparent)]
    Vault(#[from] VaultError),
    #[error("cannot read the passphrase file {}: {source}", .path.display())]
    ReadFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the passphrase file {} is empty", .path.display())]
    EmptyFile { path: PathBuf },
    #[error("cannot run the passphrase command: {0}")]
    StartCommand(#[source] std::io::Error),
    #[error("the passphrase command failed ({status})")]
    CommandFailed { status: String },
    #[error("the passphrase command printed non-UTF-8 output")]
    CommandNotUtf8,
    #[error("the passphrase command printed nothing")]
    CommandEmpty,
    #[error("no passphrase source: not on a terminal and none given")]
    NoSource,
    #[error("the vault needs a passphrase")]
    PassphraseRequired,
    #[error("the new passphrase is shorter than 8 characters")]
    TooShort,
    #[error("reading the passphrase failed: {0}")]
    Prompt(String),
    #[error("the two passphrases differ; nothing changed")]
    Mismatch,
}

impl UnlockError {
    /// Whether this is the user's input (exit 2) rather than a failed operation (exit 1).
    pub fn is_bad_input(&self) -> bool {
        match self {
            UnlockError::Vault(e) => e.is_bad_input(),
            UnlockError::StartCommand(_) | UnlockError::Prompt(_) => false,
            _ => true,
        }
    }

    /// What the user can do about it.
    pub fn hint(&self) -> Option<&'static str> {
        match self {
            UnlockError::Vault(e) => e.hint(),
            UnlockError::NoSource => Some(
                "use --passphrase-file FILE (or KILN_PASSPHRASE_FILE), --passphrase-command CMD, \
                 or --identity FILE; or run kiln in a terminal to be prompted",
            ),
            UnlockError::TooShort => Some("a few random words make a good passphrase"),
            _ => None,
        }
    }
}

/// Strips one final line ending (files and commands usually end with one).
pub fn strip_newline(mut s: String) -> String {
    if s.ends_with('\n') {
        s.pop();
        if s.ends_with('\r') {
            s.pop();
        }
    }
    s
}

/// The passphrase in `path` (one final newline removed).
pub fn passphrase_from_file(
    path: &Path,
    notice: &mut dyn FnMut(Notice),
) -> Result<Secret, UnlockError> {
    let text = zeroize::Zeroizing::new(std::fs::read_to_string(path).map_err(|source| {
        UnlockError::ReadFile {
            path: path.to_owned(),
            source,
        }
    })?);
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = std::fs::metadata(path)
        && meta.permissions().mode() & 0o077 != 0
    {
        notice(Notice::ReadableByOthers {
            path: path.to_owned(),
        });
    }
    let p = strip_newline(text.to_string());
    if p.is_empty() {
        return Err(UnlockError::EmptyFile {
            path: path.to_owned(),
        });
    }
    Ok(Secret::new(p))
}

/// The passphrase printed by `cmd` (run with `sh -c`; its stderr and stdin are the user's).
pub fn passphrase_from_command(cmd: &str) -> Result<Secret, UnlockError> {
    let out = Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .stdin(Stdio::inherit())
        .stderr(Stdio::inherit())
        .output()
        .map_err(UnlockError::StartCommand)?;
    let stdout = zeroize::Zeroizing::new(out.stdout);
    if !out.status.success() {
        return Err(UnlockError::CommandFailed {
            status: out.status.to_string(),
        });
    }
    let text = String::from_utf8(stdout.to_vec()).map_err(|_| UnlockError::CommandNotUtf8)?;
    let p = strip_newline(text);
    if p.is_empty() {
        return Err(UnlockError::CommandEmpty);
    }
    Ok(Secret::new(p))
}

/// A new passphrase must be at least 8 characters.
pub fn check_new_passphrase(p: &Secret) -> Result<(), UnlockError> {
    if p.expose().chars().count() < 8 {
        return Err(UnlockError::TooShort);
    }
    Ok(())
}

/// The current passphrase, from the file, the command, or by asking.
pub fn passphrase(
    opts: &UnlockOptions,
    ask: &dyn Ask,
    notice: &mut dyn FnMut(Notice),
) -> Result<Secret, UnlockError> {
    match (&opts.passphrase_file, &opts.passphrase_command) {
        (Some(f), _) => passphrase_from_file(f, notice),
        (_, Some(c)) => passphrase_from_command(c),
        _ => match ask.passphrase() {
            Some(r) => r,
            None => Err(UnlockError::NoSource),
        },
    }
}

/// A new passphrase from a file or a command, else by asking (`Ok(None)`: keep the current
/// one, or no terminal to ask on when `allow_keep`). Checked for length.
pub fn new_passphrase(
    file: Option<&Path>,
    command: Option<&str>,
    allow_keep: bool,
    ask: &dyn Ask,
    notice: &mut dyn FnMut(Notice),
) -> Result<Option<Secret>, UnlockError> {
    let p = match (file, command) {
        (Some(f), _) => Some(passphrase_from_file(f, notice)?),
        (_, Some(c)) => Some(passphrase_from_command(c)?),
        _ => match ask.new_passphrase(allow_keep) {
            Some(r) => r?,
            None if allow_keep => None,
            None => return Err(UnlockError::NoSource),
        },
    };
    if let Some(p) = &p {
        check_new_passphrase(p)?;
    }
    Ok(p)
}

/// Opens the existing vault of `env` next to kiln.toml (`base`).
pub fn open(
    base: &Path,
    env: &str,
    opts: &UnlockOptions,
    ask: &dyn Ask,
    notice: &mut dyn FnMut(Notice),
) -> Result<Vault, UnlockError> {
    if !vault::exists(base) && opts.identities.is_empty() {
        return Err(VaultError::NotInitialised {
            dir: vault::secrets_dir(base),
        }
        .into());
    }
    let unlock = if opts.identities.is_empty() {
        Unlock::Passphrase(passphrase(opts, ask, notice)?)
    } else {
        Unlock::Identities(opts.identities.clone())
    };
    Ok(Vault::open(base, env, unlock)?)
}

/// Opens the vault, or creates it (with a new passphrase) when there is none.
pub fn open_or_create(
    base: &Path,
    env: &str,
    opts: &UnlockOptions,
    ask: &dyn Ask,
    notice: &mut dyn FnMut(Notice),
) -> Result<Vault, UnlockError> {
    if vault::exists(base) || !opts.identities.is_empty() {
        return open(base, env, opts, ask, notice);
    }
    let p = new_passphrase(
        opts.passphrase_file.as_deref(),
        opts.passphrase_command.as_deref(),
        false,
        ask,
        notice,
    )?
    .ok_or(UnlockError::PassphraseRequired)?;
    let v = Vault::create(base, env, p)?;
    notice(Notice::Created {
        root: v.root().to_owned(),
    });
    Ok(v)
}

/// Template secrets from an environment's vault, opened on first use.
pub struct LazyVault {
    base: PathBuf,
    env: String,
    opts: UnlockOptions,
    ask: Box<dyn Ask + Send + Sync>,
    vault: Mutex<Option<Vault>>,
}

impl LazyVault {
    pub fn new(
        base: &Path,
        env: &str,
        opts: UnlockOptions,
        ask: Box<dyn Ask + Send + Sync>,
    ) -> LazyVault {
        LazyVault {
            base: base.to_owned(),
            env: env.to_owned(),
            opts,
            ask,
            vault: Mutex::new(None),
        }
    }
}

impl kiln_converge::desired::SecretSource for LazyVault {
    fn secret(&self, name: &str) -> Result<Secret, String> {
        let mut guard = self
            .vault
            .lock()
            .map_err(|_| format!("the vault of {} is unusable (a thread panicked)", self.env))?;
        if guard.is_none() {
            // Notices (a readable passphrase file) are not worth failing a plan over, and a
            // library cannot print them: they are dropped here.
            let v = open(&self.base, &self.env, &self.opts, &*self.ask, &mut |_| {})
                .map_err(|e| format!("cannot open the vault of {}: {e}", self.env))?;
            *guard = Some(v);
        }
        match guard.as_ref() {
            Some(v) => v.get(name).map_err(|e| e.to_string()),
            None => Err(format!("the vault of {} is not open", self.env)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiln_converge::desired::SecretSource;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn strip_newline_removes_one_line_ending() {
        // (moved from kiln-cli's secrets.rs with the function)
        assert_eq!(strip_newline("a\n".into()), "a");
        assert_eq!(strip_newline("a\r\n".into()), "a");
        assert_eq!(strip_newline("a\n\n".into()), "a\n");
        assert_eq!(strip_newline("a".into()), "a");
    }

    #[test]
    fn passphrase_sources_and_their_errors() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("pass");
        std::fs::write(&f, "correct horse\n").unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
        let mut notices = vec![];
        let p = passphrase_from_file(&f, &mut |n| notices.push(n)).unwrap();
        assert_eq!(p.expose(), "correct horse");
        assert_eq!(notices, [Notice::ReadableByOthers { path: f.clone() }]);
        std::fs::write(&f, "\n").unwrap();
        assert!(matches!(
            passphrase_from_file(&f, &mut |_| {}),
            Err(UnlockError::EmptyFile { .. })
        ));
        assert_eq!(
            passphrase_from_command("printf 'abc\\n'").unwrap().expose(),
            "abc"
        );
        let err = passphrase_from_command("exit 3").unwrap_err();
        assert!(err.is_bad_input());
        let err = passphrase(&UnlockOptions::default(), &NoTerminal, &mut |_| {}).unwrap_err();
        assert!(matches!(err, UnlockError::NoSource));
        assert!(err.hint().unwrap().contains("--passphrase-file"));
        let short = new_passphrase(None, Some("echo short"), false, &NoTerminal, &mut |_| {});
        assert!(matches!(short, Err(UnlockError::TooShort)));
    }

    #[test]
    fn a_lazy_vault_opens_on_first_use_only() {
        let dir = tempfile::tempdir().unwrap();
        let pass = dir.path().join("pass");
        std::fs::write(&pass, "a long enough passphrase").unwrap();
        std::fs::set_permissions(&pass, std::fs::Permissions::from_mode(0o600)).unwrap();
        let opts = UnlockOptions {
            passphrase_file: Some(pass),
            ..Default::default()
        };
        // No vault yet: nothing fails until a secret is asked for.
        let lazy = LazyVault::new(dir.path(), "lab", opts.clone(), Box::new(NoTerminal));
        let err = lazy.secret("db_password").unwrap_err();
        assert!(err.contains("cannot open the vault of lab"), "{err}");
        let mut notices = vec![];
        let v = open_or_create(dir.path(), "lab", &opts, &NoTerminal, &mut |n| {
            notices.push(n)
        })
        .unwrap();
        assert!(matches!(notices.as_slice(), [Notice::Created { .. }]));
        v.set("db_password", &Secret::new("s3cret")).unwrap();
        let lazy = LazyVault::new(dir.path(), "lab", opts, Box::new(NoTerminal));
        assert_eq!(lazy.secret("db_password").unwrap().expose(), "s3cret");
    }
}
