//! `kiln secrets`: manage the encrypted secrets kept in the repository (`secrets/`).
//!
//! Terminal side only: where the passphrase comes from (prompt without echo, a file, a
//! command; never argv, never an environment variable holding it), reading values from
//! stdin, running $EDITOR, and printing names. Every vault operation is kiln-secrets'.

use std::fs;
use std::io::{self, IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use kiln_ops::vault::{UnlockOptions, strip_newline};
use kiln_secrets::vault::Rekey;
use kiln_secrets::{Secret, Vault};

pub use crate::args::VaultArgs;
use crate::context::Context;
use crate::error::{CliError, CmdResult};

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

pub fn run(ctx: &Context, args: Args) -> CmdResult {
    let a = &args.vault;
    // A typo must not create a new vault folder: the environment must be declared.
    let env = ctx.environment(a.env.as_deref())?.name.clone();
    let model = ctx.model()?;
    let base = model.base_dir().to_path_buf();
    let unlock = a.unlock();
    let p = &ctx.printer;
    match args.command {
        Sub::List => {
            let v = ctx.open_vault(&env, &unlock)?;
            let names = v.names()?;
            for n in &names {
                p.outln(n);
            }
            if names.is_empty() {
                p.note(format_args!(
                    "no secrets in environment `{env}` yet ({})",
                    v.root().join(&env).display()
                ));
            }
            // What the configuration needs and the vault lacks (names only, on stderr).
            let specs = model.required_secrets_for(&env).ok_or_else(|| {
                CliError::failed(miette::miette!(
                    "environment `{env}` vanished from the model (internal error)"
                ))
            })?;
            for spec in &specs {
                for output in spec.rule.outputs(&spec.name) {
                    if names.binary_search(&output).is_err() {
                        let how = if spec.rule == kiln_secrets::SecretRule::Provided {
                            format!("kiln secrets set {output} --env {env}")
                        } else {
                            format!("kiln secrets generate --env {env}")
                        };
                        p.note(format_args!(
                            "missing: {output} ({}): {how}",
                            spec.description
                        ));
                    }
                }
            }
        }
        Sub::Get { name } => {
            kiln_secrets::check_name(&name)?;
            let v = ctx.open_vault(&env, &unlock)?;
            let value = v.get(&name)?;
            let mut bytes = value.expose().as_bytes().to_vec();
            if p.stdout_is_terminal() && !value.expose().ends_with('\n') {
                bytes.push(b'\n');
            }
            let written = p.out_bytes(&bytes);
            zeroize::Zeroize::zeroize(&mut bytes);
            written
                .map_err(|e| CliError::failed(miette::miette!("writing to stdout failed: {e}")))?;
        }
        Sub::Set { name, keep_newline } => {
            kiln_secrets::check_name(&name)?;
            let v = ctx.open_or_create_vault(&env, &unlock)?;
            let value = read_value(&name, keep_newline)?;
            let existed = v.contains(&name)?;
            // Same value: leave the file alone (no noise in git).
            if existed && v.get(&name)? == value {
                p.note(format_args!("`{name}` unchanged in environment `{env}`"));
                return Ok(ExitCode::SUCCESS);
            }
            v.set(&name, &value)?;
            p.note(format_args!(
                "{} `{name}` in environment `{env}` ({})",
                if existed { "updated" } else { "created" },
                relative(&base, &v.path_of(&name))
            ));
        }
        Sub::Edit { name } => {
            kiln_secrets::check_name(&name)?;
            let v = ctx.open_or_create_vault(&env, &unlock)?;
            edit(ctx, &base, &v, &name)?;
        }
        Sub::Generate => return generate(ctx, &env, &unlock),
        Sub::Rekey {
            new_passphrase_file,
            new_passphrase_command,
            add_recipient,
            remove_recipient,
        } => {
            let mut v = ctx.open_vault(&env, &unlock)?;
            let new_passphrase = ctx.new_passphrase(
                new_passphrase_file.as_deref(),
                new_passphrase_command.as_deref(),
            )?;
            let change = Rekey {
                new_passphrase,
                add: add_recipient
                    .into_iter()
                    .map(|r| (r, "added by kiln secrets rekey".to_owned()))
                    .collect(),
                remove: remove_recipient,
            };
            let report = v.rekey(change)?;
            p.note(format_args!(
                "re-encrypted {} secret(s) to {} recipient(s); no value changed",
                report.reencrypted,
                report.recipients.len()
            ));
            for r in &report.recipients {
                let label = r.label.lines().next().unwrap_or("");
                let label = label.split(" (").next().unwrap_or(label);
                p.outln(format_args!("{}  {}", short_recipient(&r.recipient), label));
            }
        }
        Sub::RecoveryKey => {
            let mut v = ctx.open_vault(&env, &unlock)?;
            let key = v.add_recovery_key(&today())?;
            print_recovery_sheet(ctx, &base, &key);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `kiln secrets generate`: creates the vault when missing and every missing generated secret
/// of `env`; names what still needs a value.
pub fn generate(ctx: &Context, env: &str, unlock: &UnlockOptions) -> CmdResult {
    let model = ctx.model()?;
    let specs = model.required_secrets_for(env).ok_or_else(|| {
        CliError::invalid(miette::miette!(
            "environment `{env}` is not declared in {}",
            model.config_path().display()
        ))
    })?;
    let v = ctx.open_or_create_vault(env, unlock)?;
    let report = v.generate_missing(&specs, &mut kiln_secrets::OsRng)?;
    let p = &ctx.printer;
    for n in &report.created {
        p.outln(format_args!("created {n}"));
    }
    if report.created.is_empty() {
        p.note(format_args!(
            "nothing to generate: every generated secret of `{env}` exists"
        ));
    }
    for (n, description) in &report.needs_value {
        p.note(format_args!(
            "needs a value: {n} ({description}): kiln secrets set {n} --env {env}"
        ));
    }
    Ok(ExitCode::SUCCESS)
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
fn edit(ctx: &Context, base: &Path, v: &Vault, name: &str) -> CmdResult {
    let current = if v.contains(name)? {
        Some(v.get(name)?)
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
            ctx.printer.note(format_args!("`{name}` unchanged"));
            return Ok(());
        }
        v.set(name, &value)?;
        ctx.printer.note(format_args!(
            "saved `{name}` ({})",
            relative(base, &v.path_of(name))
        ));
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
fn print_recovery_sheet(ctx: &Context, base: &Path, key: &kiln_secrets::RecoveryKey) {
    let p = &ctx.printer;
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
    p.outln(format_args!(
        "==================== KILN RECOVERY KEY ===================="
    ));
    p.outln(format_args!(
        "Project: {}    Created: {}",
        project.as_deref().unwrap_or("?"),
        today()
    ));
    p.outln("");
    p.outln(format_args!(
        "Print this page, keep it offline (a safe, a drawer at a relative's)."
    ));
    p.outln(format_args!(
        "Anyone holding it can read every secret of this repository."
    ));
    p.outln("");
    p.outln(format_args!("The key (one line, exactly):"));
    p.outln("");
    p.outln(format_args!("    {secret}"));
    p.outln("");
    p.outln(format_args!(
        "The same key after its fixed AGE-SECRET-KEY-1 prefix, in groups of four:"
    ));
    for row in &grouped {
        p.outln(format_args!("    {row}"));
    }
    p.outln("");
    p.outln(format_args!(
        "Public part (now in secrets/recipients.txt): {}",
        key.public_key
    ));
    p.outln("");
    p.outln(format_args!(
        "To use it, without kiln, with the stock age CLI:"
    ));
    p.outln(format_args!(
        "  1. type the key into a file:  cat > recovery.txt   (paste or type, then Ctrl-D)"
    ));
    p.outln(format_args!(
        "     age needs the one-line form: AGE-SECRET-KEY-1 then the groups, no spaces;"
    ));
    p.outln(format_args!(
        "     kiln --identity also accepts the groups as typed: spaces, lowercase, no prefix"
    ));
    p.outln(format_args!(
        "  2. read a secret:             age -d -i recovery.txt secrets/production/NAME.age"
    ));
    p.outln(format_args!(
        "  With kiln, set a new passphrase: kiln secrets rekey --identity recovery.txt"
    ));
    p.outln(format_args!(
        "============================================================"
    ));
    p.note(format_args!(
        "re-encrypted {} secret(s) to include the recovery key; clear your terminal scrollback \
         after printing",
        key.reencrypted
    ));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generating_for_an_undeclared_environment_is_an_error_and_creates_nothing() {
        // Before: `required_secrets_for(env).unwrap_or_default()` turned an unknown
        // environment into "nothing to generate" and created a vault for it anyway.
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("kiln.toml"),
            "[project]\nname = \"t\"\ndomain = \"example.org\"\nacme_email = \"a@example.org\"\n\
             [environments.lab]\ndomain = \"lab.example.org\"\nacme_ca = \"internal\"\n\
             [environments.lab.hosts.web]\naddress = \"192.0.2.1\"\nadmin_user = \"admin\"\n",
        )
        .unwrap();
        let pass = dir.path().join("pass");
        std::fs::write(&pass, "a long enough passphrase").unwrap();
        let global = crate::GlobalArgs {
            config: Some(dir.path().to_owned()),
        };
        let ctx = Context::new(
            &global,
            crate::printer::Printer::new(crate::printer::Mode::Human),
        );
        let unlock = UnlockOptions {
            passphrase_file: Some(pass),
            ..Default::default()
        };
        let err = generate(&ctx, "nope", &unlock).unwrap_err();
        assert_eq!(err.code, crate::error::INVALID_INPUT);
        assert!(
            err.report
                .to_string()
                .contains("environment `nope` is not declared"),
            "{:?}",
            err.report
        );
        assert!(!dir.path().join("secrets").exists());
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
