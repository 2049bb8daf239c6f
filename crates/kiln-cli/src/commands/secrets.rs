//! `kiln secrets`: manage the encrypted secrets kept in the repository (`secrets/`).
//!
//! Terminal side only: where the passphrase comes from (prompt without echo, a file, a
//! command; never argv, never an environment variable holding it), reading values from
//! stdin, running $EDITOR, and printing names. Every vault operation is kiln-secrets'.

use std::fs;
use std::io::{self, IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};

use kiln_secrets::vault::{self, Rekey};
use kiln_secrets::{Secret, Unlock, Vault, VaultError};

use kiln_model::Model;

use crate::GlobalArgs;
use crate::commands::check;
use crate::exit::{CliError, CmdResult};

/// Manage the encrypted secrets kept in the repository.
///
/// Secrets live in secrets/<env>/<name>.age next to kiln.toml, one age file per secret,
/// readable with the stock `age` CLI: `age -d -i secrets/identity.age FILE`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  kiln secrets list
  printf %s 'value' | kiln secrets set smtp_password
  kiln secrets get smtp_password --env staging
  kiln secrets generate
  kiln secrets rekey --add-recipient 'ssh-ed25519 AAAA... alice'
  KILN_PASSPHRASE_FILE=~/.config/kiln/pass kiln secrets list")]
pub struct Args {
    #[command(flatten)]
    pub vault: VaultArgs,
    #[command(subcommand)]
    pub command: Sub,
}

/// How to find and unlock the vault (shared with `kiln import`).
#[derive(Debug, clap::Args)]
pub struct VaultArgs {
    /// Environment whose secrets to use.
    #[arg(long, global = true, default_value = "production", value_name = "ENV")]
    pub env: String,
    /// Read the vault passphrase from this file (its content, final newline removed).
    #[arg(long, global = true, env = "KILN_PASSPHRASE_FILE", value_name = "FILE")]
    pub passphrase_file: Option<PathBuf>,
    /// Run this command (with sh) and use its output as the vault passphrase,
    /// e.g. "pass show kiln/vault".
    #[arg(
        long,
        global = true,
        value_name = "COMMAND",
        conflicts_with = "passphrase_file"
    )]
    pub passphrase_command: Option<String>,
    /// Unlock with an age identity file instead of the passphrase: a recovery key or the
    /// private key of a recipient listed in secrets/recipients.txt. Takes precedence over
    /// the passphrase options.
    #[arg(long, global = true, value_name = "FILE")]
    pub identity: Vec<PathBuf>,
}

#[derive(Debug, clap::Subcommand)]
pub enum Sub {
    /// List the secrets of the environment (names only).
    List,
    /// Print a secret's value on stdout.
    Get {
        /// Secret name, e.g. grafana_admin_password.
        name: String,
    },
    /// Store a secret, reading its value from stdin (prompted without echo on a terminal).
    Set {
        /// Secret name: lowercase letters, digits and `_`.
        name: String,
        /// Keep a final newline from stdin as part of the value.
        #[arg(long)]
        keep_newline: bool,
    },
    /// Edit a secret in $EDITOR (a temporary file in a private folder, removed after).
    Edit {
        /// Secret name (created if missing).
        name: String,
    },
    /// Create every missing secret the configured services and hosts need.
    Generate,
    /// Change the passphrase and/or recipients; no secret value changes.
    Rekey {
        /// Read the new passphrase from this file (default: prompt, or keep the current one).
        #[arg(long, value_name = "FILE")]
        new_passphrase_file: Option<PathBuf>,
        /// Run this command (with sh) for the new passphrase.
        #[arg(long, value_name = "COMMAND", conflicts_with = "new_passphrase_file")]
        new_passphrase_command: Option<String>,
        /// Add a recipient: `age1…`, `ssh-ed25519 …` or `ssh-rsa …`.
        #[arg(long, value_name = "RECIPIENT")]
        add_recipient: Vec<String>,
        /// Remove a recipient (as written in secrets/recipients.txt).
        #[arg(long, value_name = "RECIPIENT")]
        remove_recipient: Vec<String>,
    },
    /// Create a recovery key to print and keep offline; every secret is re-encrypted to it.
    RecoveryKey,
}

pub fn run(global: &GlobalArgs, args: Args) -> CmdResult {
    let a = &args.vault;
    let model = load(global, &a.env)?;
    let base = model.base_dir().to_path_buf();
    match args.command {
        Sub::List => {
            let v = open(&base, a)?;
            let names = v.names().map_err(vault_err)?;
            let mut out = io::stdout().lock();
            for n in &names {
                writeln!(out, "{n}").map_err(stdout_err)?;
            }
            if names.is_empty() {
                eprintln!(
                    "no secrets in environment `{}` yet ({})",
                    a.env,
                    v.root().join(&a.env).display()
                );
            }
            // What the configuration needs and the vault lacks (names only, on stderr).
            let specs = model.required_secrets_for(&a.env).unwrap_or_default();
            for spec in &specs {
                for output in spec.rule.outputs(&spec.name) {
                    if names.binary_search(&output).is_err() {
                        let how = if spec.rule == kiln_secrets::SecretRule::Provided {
                            format!("kiln secrets set {output} --env {}", a.env)
                        } else {
                            format!("kiln secrets generate --env {}", a.env)
                        };
                        eprintln!("missing: {output} ({}): {how}", spec.description);
                    }
                }
            }
        }
        Sub::Get { name } => {
            kiln_secrets::check_name(&name)
                .map_err(|e| CliError::invalid(miette::miette!("{e}")))?;
            let v = open(&base, a)?;
            let value = v.get(&name).map_err(vault_err)?;
            let mut out = io::stdout().lock();
            out.write_all(value.expose().as_bytes())
                .map_err(stdout_err)?;
            if io::stdout().is_terminal() && !value.expose().ends_with('\n') {
                out.write_all(b"\n").map_err(stdout_err)?;
            }
            out.flush().map_err(stdout_err)?;
        }
        Sub::Set { name, keep_newline } => {
            kiln_secrets::check_name(&name)
                .map_err(|e| CliError::invalid(miette::miette!("{e}")))?;
            let v = open_or_create(&base, a)?;
            let value = read_value(&name, keep_newline)?;
            let existed = v.contains(&name).map_err(vault_err)?;
            // Same value: leave the file alone (no noise in git).
            if existed && v.get(&name).map_err(vault_err)? == value {
                eprintln!("`{name}` unchanged in environment `{}`", a.env);
                return Ok(ExitCode::SUCCESS);
            }
            v.set(&name, &value).map_err(vault_err)?;
            eprintln!(
                "{} `{name}` in environment `{}` ({})",
                if existed { "updated" } else { "created" },
                a.env,
                relative(&base, &v.path_of(&name))
            );
        }
        Sub::Edit { name } => {
            kiln_secrets::check_name(&name)
                .map_err(|e| CliError::invalid(miette::miette!("{e}")))?;
            let v = open_or_create(&base, a)?;
            edit(&base, &v, &name)?;
        }
        Sub::Generate => return generate(&model, a),
        Sub::Rekey {
            new_passphrase_file,
            new_passphrase_command,
            add_recipient,
            remove_recipient,
        } => {
            let mut v = open(&base, a)?;
            let new_passphrase = match (&new_passphrase_file, &new_passphrase_command) {
                (Some(f), _) => Some(passphrase_from_file(f)?),
                (_, Some(c)) => Some(passphrase_from_command(c)?),
                _ if has_tty() => prompt_new_passphrase(true)?,
                _ => None,
            };
            if let Some(p) = &new_passphrase {
                check_new_passphrase(p)?;
            }
            let change = Rekey {
                new_passphrase,
                add: add_recipient
                    .into_iter()
                    .map(|r| (r, "added by kiln secrets rekey".to_owned()))
                    .collect(),
                remove: remove_recipient,
            };
            let report = v.rekey(change).map_err(vault_err)?;
            eprintln!(
                "re-encrypted {} secret(s) to {} recipient(s); no value changed",
                report.reencrypted,
                report.recipients.len()
            );
            for r in &report.recipients {
                let label = r.label.lines().next().unwrap_or("");
                let label = label.split(" (").next().unwrap_or(label);
                println!("{}  {}", short_recipient(&r.recipient), label);
            }
        }
        Sub::RecoveryKey => {
            let mut v = open(&base, a)?;
            let key = v.add_recovery_key(&today()).map_err(vault_err)?;
            print_recovery_sheet(&base, &key);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `kiln secrets generate`: creates the vault when missing and every missing generated secret
/// of `a.env`; names what still needs a value.
pub fn generate(model: &Model, a: &VaultArgs) -> CmdResult {
    let specs = model.required_secrets_for(&a.env).unwrap_or_default();
    let v = open_or_create(model.base_dir(), a)?;
    let report = v
        .generate_missing(&specs, &mut kiln_secrets::OsRng)
        .map_err(vault_err)?;
    let mut out = io::stdout().lock();
    for n in &report.created {
        writeln!(out, "created {n}").map_err(stdout_err)?;
    }
    if report.created.is_empty() {
        eprintln!(
            "nothing to generate: every generated secret of `{}` exists",
            a.env
        );
    }
    for (n, description) in &report.needs_value {
        eprintln!(
            "needs a value: {n} ({description}): kiln secrets set {n} --env {}",
            a.env
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Loads and validates kiln.toml (as every command does) and checks that it declares
/// `env`: a typo must not create a new vault folder.
pub fn load(global: &GlobalArgs, env: &str) -> Result<Model, CliError> {
    let model = check::load_model(global)?;
    if model.environment(env).is_none() {
        let known: Vec<&str> = model.environments.iter().map(|e| e.name.as_str()).collect();
        return Err(CliError::invalid(miette::miette!(
            help = format!(
                "environments in {}: {}",
                model.config_path().display(),
                known.join(", ")
            ),
            "environment `{env}` is not declared in {}",
            model.config_path().display()
        )));
    }
    Ok(model)
}

pub fn vault_err(e: VaultError) -> CliError {
    let bad = e.is_bad_input();
    let report = match e.hint() {
        Some(h) => miette::miette!(help = h, "{e}"),
        None => miette::miette!("{e}"),
    };
    if bad {
        CliError::invalid(report)
    } else {
        CliError::failed(report)
    }
}

fn stdout_err(e: io::Error) -> CliError {
    CliError::failed(miette::miette!("writing to stdout failed: {e}"))
}

fn has_tty() -> bool {
    fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/tty")
        .is_ok()
}

/// Opens an existing vault, unlocking it from the configured source.
pub fn open(base: &Path, a: &VaultArgs) -> Result<Vault, CliError> {
    if !vault::exists(base) && a.identity.is_empty() {
        return Err(vault_err(VaultError::NotInitialised {
            dir: vault::secrets_dir(base),
        }));
    }
    let unlock = if a.identity.is_empty() {
        Unlock::Passphrase(passphrase(a)?)
    } else {
        Unlock::Identities(a.identity.clone())
    };
    Vault::open(base, &a.env, unlock).map_err(vault_err)
}

/// Opens the vault, or creates it (asking for a new passphrase) when there is none.
pub fn open_or_create(base: &Path, a: &VaultArgs) -> Result<Vault, CliError> {
    if vault::exists(base) || !a.identity.is_empty() {
        return open(base, a);
    }
    let p = match (&a.passphrase_file, &a.passphrase_command) {
        (Some(f), _) => passphrase_from_file(f)?,
        (_, Some(c)) => passphrase_from_command(c)?,
        _ if has_tty() => prompt_new_passphrase(false)?
            .ok_or_else(|| CliError::invalid(miette::miette!("the vault needs a passphrase")))?,
        _ => return Err(no_passphrase_source()),
    };
    check_new_passphrase(&p)?;
    let v = Vault::create(base, &a.env, p).map_err(vault_err)?;
    eprintln!(
        "created a new vault in {} (vault key in identity.age, protected by your passphrase);\n\
         consider `kiln secrets recovery-key` and keep it offline",
        relative(base, v.root())
    );
    Ok(v)
}

fn no_passphrase_source() -> CliError {
    CliError::invalid(miette::miette!(
        help = "use --passphrase-file FILE (or KILN_PASSPHRASE_FILE), --passphrase-command CMD, \
                or --identity FILE; or run kiln in a terminal to be prompted",
        "no passphrase source: not on a terminal and none given"
    ))
}

fn passphrase(a: &VaultArgs) -> Result<Secret, CliError> {
    match (&a.passphrase_file, &a.passphrase_command) {
        (Some(f), _) => passphrase_from_file(f),
        (_, Some(c)) => passphrase_from_command(c),
        _ if has_tty() => {
            let p = rpassword::prompt_password("Vault passphrase: ").map_err(|e| {
                CliError::failed(miette::miette!("reading the passphrase failed: {e}"))
            })?;
            Ok(Secret::new(p))
        }
        _ => Err(no_passphrase_source()),
    }
}

/// Strips one final line ending (files and commands usually end with one).
fn strip_newline(mut s: String) -> String {
    if s.ends_with('\n') {
        s.pop();
        if s.ends_with('\r') {
            s.pop();
        }
    }
    s
}

fn passphrase_from_file(path: &Path) -> Result<Secret, CliError> {
    let text = zeroize::Zeroizing::new(fs::read_to_string(path).map_err(|e| {
        CliError::invalid(miette::miette!(
            "cannot read the passphrase file {}: {e}",
            path.display()
        ))
    })?);
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = fs::metadata(path)
        && meta.permissions().mode() & 0o077 != 0
    {
        eprintln!(
            "warning: passphrase file {} is readable by other users (chmod 600 it)",
            path.display()
        );
    }
    let p = strip_newline(text.to_string());
    if p.is_empty() {
        return Err(CliError::invalid(miette::miette!(
            "the passphrase file {} is empty",
            path.display()
        )));
    }
    Ok(Secret::new(p))
}

fn passphrase_from_command(cmd: &str) -> Result<Secret, CliError> {
    let out = Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .stdin(Stdio::inherit())
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| CliError::failed(miette::miette!("cannot run the passphrase command: {e}")))?;
    let stdout = zeroize::Zeroizing::new(out.stdout);
    if !out.status.success() {
        return Err(CliError::invalid(miette::miette!(
            "the passphrase command failed ({})",
            out.status
        )));
    }
    let text = String::from_utf8(stdout.to_vec()).map_err(|_| {
        CliError::invalid(miette::miette!(
            "the passphrase command printed non-UTF-8 output"
        ))
    })?;
    let p = strip_newline(text);
    if p.is_empty() {
        return Err(CliError::invalid(miette::miette!(
            "the passphrase command printed nothing"
        )));
    }
    Ok(Secret::new(p))
}

/// Asks twice for a new passphrase. `allow_keep`: an empty answer keeps the current one.
fn prompt_new_passphrase(allow_keep: bool) -> Result<Option<Secret>, CliError> {
    let read = |prompt: &str| {
        rpassword::prompt_password(prompt)
            .map(Secret::new)
            .map_err(|e| CliError::failed(miette::miette!("reading the passphrase failed: {e}")))
    };
    let first = read(if allow_keep {
        "New vault passphrase (empty: keep the current one): "
    } else {
        "New vault passphrase: "
    })?;
    if first.expose().is_empty() && allow_keep {
        return Ok(None);
    }
    let second = read("Repeat it: ")?;
    if first != second {
        return Err(CliError::invalid(miette::miette!(
            "the two passphrases differ; nothing changed"
        )));
    }
    Ok(Some(first))
}

fn check_new_passphrase(p: &Secret) -> Result<(), CliError> {
    if p.expose().chars().count() < 8 {
        return Err(CliError::invalid(miette::miette!(
            help = "a few random words make a good passphrase",
            "the new passphrase is shorter than 8 characters"
        )));
    }
    Ok(())
}

fn read_value(name: &str, keep_newline: bool) -> Result<Secret, CliError> {
    if io::stdin().is_terminal() {
        let first = rpassword::prompt_password(format!("Value for {name}: "))
            .map_err(|e| CliError::failed(miette::miette!("reading the value failed: {e}")))?;
        let first = Secret::new(first);
        let again = Secret::new(
            rpassword::prompt_password("Repeat it: ")
                .map_err(|e| CliError::failed(miette::miette!("reading the value failed: {e}")))?,
        );
        if first != again {
            return Err(CliError::invalid(miette::miette!(
                "the two values differ; nothing stored"
            )));
        }
        return Ok(first);
    }
    let mut buf = zeroize::Zeroizing::new(Vec::new());
    io::stdin()
        .read_to_end(&mut buf)
        .map_err(|e| CliError::failed(miette::miette!("reading stdin failed: {e}")))?;
    let text = String::from_utf8(buf.to_vec())
        .map_err(|_| CliError::invalid(miette::miette!("the value on stdin is not UTF-8 text")))?;
    let text = if keep_newline {
        text
    } else {
        strip_newline(text)
    };
    if text.is_empty() {
        return Err(CliError::invalid(miette::miette!(
            help = "printf %s 'VALUE' | kiln secrets set NAME",
            "empty value on stdin: nothing stored"
        )));
    }
    Ok(Secret::new(text))
}

/// Edits `name` in $EDITOR on a file in a fresh 0700 folder; the folder goes afterwards.
fn edit(base: &Path, v: &Vault, name: &str) -> CmdResult {
    let current = if v.contains(name).map_err(vault_err)? {
        Some(v.get(name).map_err(vault_err)?)
    } else {
        None
    };
    // Prefer RAM-backed $XDG_RUNTIME_DIR when there is one.
    let parent = std::env::var_os("XDG_RUNTIME_DIR")
        .map(PathBuf::from)
        .filter(|p| p.is_dir())
        .unwrap_or_else(std::env::temp_dir);
    let dir = tempfile::Builder::new()
        .prefix("kiln-edit-")
        .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o700))
        .tempdir_in(&parent)
        .map_err(|e| {
            CliError::failed(miette::miette!(
                "cannot create a private temp folder in {}: {e}",
                parent.display()
            ))
        })?;
    let file = dir.path().join(format!("{name}.txt"));
    let result = (|| {
        {
            use std::os::unix::fs::OpenOptionsExt;
            let mut f = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&file)
                .map_err(|e| CliError::failed(miette::miette!("{}: {e}", file.display())))?;
            if let Some(c) = &current {
                f.write_all(c.expose().as_bytes())
                    .map_err(|e| CliError::failed(miette::miette!("{}: {e}", file.display())))?;
            }
        }
        let editor = std::env::var("VISUAL")
            .ok()
            .filter(|e| !e.trim().is_empty())
            .or_else(|| {
                std::env::var("EDITOR")
                    .ok()
                    .filter(|e| !e.trim().is_empty())
            })
            .unwrap_or_else(|| "vi".to_owned());
        // The editor may carry arguments ("code --wait"): run it through sh, the path as $1.
        let status = Command::new("sh")
            .arg("-c")
            .arg(format!("{editor} \"$1\""))
            .arg("sh")
            .arg(&file)
            .status()
            .map_err(|e| {
                CliError::failed(miette::miette!("cannot run the editor `{editor}`: {e}"))
            })?;
        if !status.success() {
            return Err(CliError::failed(miette::miette!(
                "the editor `{editor}` failed ({status}); nothing changed"
            )));
        }
        let text = zeroize::Zeroizing::new(
            fs::read_to_string(&file)
                .map_err(|e| CliError::failed(miette::miette!("{}: {e}", file.display())))?,
        );
        // Editors add a final newline; keep one only if the value had one.
        let had_newline = current.as_ref().is_some_and(|c| c.expose().ends_with('\n'));
        let text = if had_newline {
            text.to_string()
        } else {
            strip_newline(text.to_string())
        };
        if text.is_empty() {
            return Err(CliError::invalid(miette::miette!(
                "empty value: nothing changed"
            )));
        }
        let value = Secret::new(text);
        if current.as_ref() == Some(&value) {
            eprintln!("`{name}` unchanged");
            return Ok(());
        }
        v.set(name, &value).map_err(vault_err)?;
        eprintln!("saved `{name}` ({})", relative(base, &v.path_of(name)));
        Ok(())
    })();
    // Overwrite before removing (best effort; the folder was private all along).
    if let Ok(meta) = fs::metadata(&file) {
        let _ = fs::write(&file, vec![0u8; meta.len() as usize]);
    }
    drop(dir);
    result.map(|()| ExitCode::SUCCESS)
}

fn relative(base: &Path, p: &Path) -> String {
    p.strip_prefix(base).unwrap_or(p).display().to_string()
}

fn short_recipient(r: &str) -> String {
    let mut parts = r.split_whitespace();
    let (kind, key) = (parts.next().unwrap_or(""), parts.next());
    match key {
        Some(k) if k.len() > 24 => format!("{kind} {}…{}", &k[..12], &k[k.len() - 8..]),
        Some(k) => format!("{kind} {k}"),
        None => kind.to_owned(),
    }
}

/// Today's date (UTC) as YYYY-MM-DD.
fn today() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let days = (secs / 86_400) as i64;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

/// The one time the recovery key is shown: laid out to be printed on paper.
fn print_recovery_sheet(base: &Path, key: &kiln_secrets::RecoveryKey) {
    let secret = key.secret_key.expose();
    let groups: Vec<String> = secret
        .strip_prefix("AGE-SECRET-KEY-1")
        .unwrap_or(secret)
        .as_bytes()
        .chunks(4)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect();
    let grouped: Vec<String> = groups.chunks(8).map(|row| row.join(" ")).collect();
    let project = base
        .canonicalize()
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()));
    println!("==================== KILN RECOVERY KEY ====================");
    println!(
        "Project: {}    Created: {}",
        project.as_deref().unwrap_or("?"),
        today()
    );
    println!();
    println!("Print this page, keep it offline (a safe, a drawer at a relative's).");
    println!("Anyone holding it can read every secret of this repository.");
    println!();
    println!("The key (one line, exactly):");
    println!();
    println!("    {secret}");
    println!();
    println!("The same key after its fixed AGE-SECRET-KEY-1 prefix, in groups of four:");
    for row in &grouped {
        println!("    {row}");
    }
    println!();
    println!(
        "Public part (now in secrets/recipients.txt): {}",
        key.public_key
    );
    println!();
    println!("To use it, without kiln, with the stock age CLI:");
    println!("  1. type the key into a file:  cat > recovery.txt   (paste or type, then Ctrl-D)");
    println!("     age needs the one-line form: AGE-SECRET-KEY-1 then the groups, no spaces;");
    println!("     kiln --identity also accepts the groups as typed: spaces, lowercase, no prefix");
    println!("  2. read a secret:             age -d -i recovery.txt secrets/production/NAME.age");
    println!("  With kiln, set a new passphrase: kiln secrets rekey --identity recovery.txt");
    println!("============================================================");
    eprintln!(
        "re-encrypted {} secret(s) to include the recovery key; clear your terminal scrollback \
         after printing",
        key.reencrypted
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strip_newline_removes_one_line_ending() {
        assert_eq!(strip_newline("a\n".into()), "a");
        assert_eq!(strip_newline("a\r\n".into()), "a");
        assert_eq!(strip_newline("a\n\n".into()), "a\n");
        assert_eq!(strip_newline("a".into()), "a");
    }

    #[test]
    fn today_is_a_date() {
        let t = today();
        assert_eq!(t.len(), 10);
        assert!(t.starts_with("20"));
    }

    #[test]
    fn short_recipient_abbreviates_long_keys_only() {
        let key = "AAAAC3NzaC1lZDI1NTE5AAAAIH3cKJa4mbBp";
        assert_eq!(
            short_recipient(&format!("ssh-ed25519 {key} alice")),
            format!("ssh-ed25519 {}…{}", &key[..12], &key[key.len() - 8..])
        );
        assert_eq!(short_recipient("age1abc"), "age1abc");
    }
}
