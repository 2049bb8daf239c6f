//! The vault: one ASCII-armored age file per secret under `secrets/<env>/<name>.age`,
//! next to kiln.toml. Reads, writes (always through [`crate::atomic`]), rekeying and
//! recovery keys. No terminal code: passphrases come in as [`Unlock`] values, results go
//! back as values.
//!
//! # Layout
//!
//! ```text
//! secrets/
//!   identity.age          the vault key (an X25519 age identity), encrypted with the
//!                         passphrase (age's scrypt recipient)
//!   recipients.txt        public recipients, one a line (age recipients-file format):
//!                         the vault key's public half, recovery keys, extra people's
//!                         age1… or ssh-ed25519/ssh-rsa keys
//!   production/
//!     grafana_admin_password.age
//!     …
//! ```
//!
//! age's passphrase (scrypt) recipient must be a file's only recipient, so the passphrase
//! protects the vault key and every secret is encrypted to the recipients listed in
//! `recipients.txt` (the vault key among them). Each secret decrypts with any of: the
//! passphrase (through `identity.age`), a recovery key, or the private key of any listed
//! recipient.
//!
//! # Reading secrets without kiln
//!
//! With the stock `age` CLI (Debian package `age`):
//!
//! ```text
//! age -d -i secrets/identity.age secrets/production/NAME.age     # asks for the passphrase
//! age -d -i recovery-key.txt secrets/production/NAME.age         # with a printed recovery key
//! age -d -i ~/.ssh/id_ed25519 secrets/production/NAME.age        # a listed SSH key
//! ```
//!
//! A new secret can be added without kiln too:
//! `printf %s VALUE | age -a -R secrets/recipients.txt > secrets/production/NAME.age`.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use age::secrecy::{ExposeSecret, SecretString};
use rand::{CryptoRng, RngCore};

use crate::armor_check;
use crate::atomic;
use crate::generate::{self, GenerationPlan};
use crate::spec::{self, InvalidName, SecretSpec};
use crate::value::Secret;

/// Folder of the vault, relative to the folder holding kiln.toml.
pub const SECRETS_DIR: &str = "secrets";
/// The passphrase-encrypted vault key.
pub const IDENTITY_FILE: &str = "identity.age";
/// Public recipients of every secret.
pub const RECIPIENTS_FILE: &str = "recipients.txt";

/// scrypt work factor (N = 2^18) for `identity.age`: what the age CLI itself uses for
/// passphrases; about half a second here, and within what every age implementation
/// accepts.
pub const SCRYPT_LOG_N: u8 = 18;

const VAULT_LABEL: &str = "kiln: vault key";
const RECOVERY_LABEL: &str = "kiln: recovery key";

/// How to open the vault.
pub enum Unlock {
    /// The vault passphrase: decrypts `identity.age`.
    Passphrase(Secret),
    /// age identity files: X25519 (`AGE-SECRET-KEY-1…`, e.g. a recovery key) or
    /// unencrypted OpenSSH private keys whose public half is in `recipients.txt`.
    Identities(Vec<PathBuf>),
}

impl std::fmt::Debug for Unlock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Unlock::Passphrase(_) => f.write_str("Unlock::Passphrase(<redacted>)"),
            Unlock::Identities(p) => f.debug_tuple("Unlock::Identities").field(p).finish(),
        }
    }
}

/// Vault failures. Each names the file (and the line, when a file is damaged).
#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    #[error("wrong passphrase for {path}")]
    WrongPassphrase { path: PathBuf },
    #[error("no vault in {dir}: {IDENTITY_FILE} is missing")]
    NotInitialised { dir: PathBuf },
    #[error("a vault already exists in {dir}")]
    AlreadyExists { dir: PathBuf },
    #[error("secret `{name}` does not exist in environment `{env}` ({path})")]
    NotFound {
        name: String,
        env: String,
        path: PathBuf,
    },
    #[error("secret `{name}` is damaged: {path}:{line}: {reason}")]
    Corrupt {
        name: String,
        path: PathBuf,
        line: usize,
        reason: String,
    },
    #[error(
        "secret `{name}` ({path}) cannot be decrypted with the key you unlocked with: it was \
         encrypted to other recipients, or its header (lines 2-{header_end}) is damaged"
    )]
    NotARecipient {
        name: String,
        path: PathBuf,
        header_end: usize,
    },
    #[error("{path}:{line}: {reason}")]
    BadRecipient {
        path: PathBuf,
        line: usize,
        reason: String,
    },
    #[error("{path}: {reason}")]
    BadIdentity { path: PathBuf, reason: String },
    #[error("secret `{name}` ({path}) is not UTF-8 text")]
    NotText { name: String, path: PathBuf },
    #[error(transparent)]
    InvalidName(#[from] InvalidName),
    #[error("{path}: not a valid secret file name ({source})")]
    StrayFile { path: PathBuf, source: InvalidName },
    #[error("invalid environment name `{env}`: only lowercase letters, digits, `_` and `-`")]
    InvalidEnv { env: String },
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("encrypting `{name}` failed: {reason}")]
    Encrypt { name: String, reason: String },
    #[error(transparent)]
    Generate(#[from] generate::GenerateError),
    #[error(
        "cannot generate `{missing}`: `{present}` exists and generating would change it; \
         set `{missing}` with `kiln secrets set {missing}` or remove `{present}`"
    )]
    Conflict { present: String, missing: String },
    #[error("the recipient to remove is not in {path}: {recipient}")]
    UnknownRecipient { path: PathBuf, recipient: String },
    #[error("rekeying needs a passphrase for the new vault key")]
    PassphraseNeeded,
}

impl VaultError {
    /// A hint for the user, when there is one.
    pub fn hint(&self) -> Option<&'static str> {
        Some(match self {
            VaultError::WrongPassphrase { .. } => {
                "check the passphrase source; a recovery key can unlock instead (--identity FILE)"
            }
            VaultError::NotInitialised { .. } => {
                "`kiln secrets set NAME` or `kiln secrets generate` creates the vault"
            }
            VaultError::Corrupt { .. } | VaultError::NotARecipient { .. } => {
                "restore the file from git (`git checkout -- FILE`) or set the secret again"
            }
            VaultError::NotFound { .. } => "`kiln secrets list` shows what exists",
            _ => return None,
        })
    }

    /// Whether the error is the user's input (exit 2) rather than a failed operation.
    pub fn is_bad_input(&self) -> bool {
        matches!(
            self,
            VaultError::WrongPassphrase { .. }
                | VaultError::InvalidName(_)
                | VaultError::InvalidEnv { .. }
                | VaultError::NotFound { .. }
                | VaultError::BadRecipient { .. }
                | VaultError::BadIdentity { .. }
                | VaultError::NotInitialised { .. }
                | VaultError::UnknownRecipient { .. }
                | VaultError::PassphraseNeeded
        )
    }
}

type Result<T, E = VaultError> = std::result::Result<T, E>;

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> VaultError + '_ {
    move |source| VaultError::Io {
        path: path.to_owned(),
        source,
    }
}

/// One line of `recipients.txt` with the comment right above it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecipientEntry {
    /// The comment lines directly above the recipient, without `# `.
    pub label: String,
    /// The recipient as written: `age1…`, `ssh-ed25519 AAAA… comment`, `ssh-rsa …`.
    pub recipient: String,
}

impl RecipientEntry {
    pub fn is_vault_key(&self) -> bool {
        self.label.starts_with(VAULT_LABEL)
    }
    pub fn is_recovery_key(&self) -> bool {
        self.label.starts_with(RECOVERY_LABEL)
    }
}

/// A recovery key just created: show [`RecoveryKey::secret_key`] once, then forget it.
#[derive(Debug)]
pub struct RecoveryKey {
    /// `AGE-SECRET-KEY-1…`: the whole private key.
    pub secret_key: Secret,
    /// `age1…`: now in `recipients.txt`.
    pub public_key: String,
    /// How many secret files were re-encrypted to include it.
    pub reencrypted: usize,
}

/// What `rekey` changes. Values never change.
#[derive(Debug, Default)]
pub struct Rekey {
    /// New passphrase for the (new) vault key; `None` keeps the current one (only
    /// possible when the vault was unlocked with the passphrase).
    pub new_passphrase: Option<Secret>,
    /// Recipients to add (`age1…`, `ssh-ed25519 …`, `ssh-rsa …`), with an optional label.
    pub add: Vec<(String, String)>,
    /// Recipients to remove (exact text, or the `age1…`/key part).
    pub remove: Vec<String>,
}

/// Result of [`Vault::rekey`].
#[derive(Debug)]
pub struct RekeyReport {
    pub reencrypted: usize,
    pub recipients: Vec<RecipientEntry>,
}

/// Result of [`Vault::generate_missing`]: names only, never values.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct GenerateReport {
    /// Secrets created, in creation order.
    pub created: Vec<String>,
    /// `Provided` secrets still missing, with their description.
    pub needs_value: Vec<(String, String)>,
}

/// An open vault for one environment.
pub struct Vault {
    root: PathBuf,
    env: String,
    identities: Vec<Box<dyn age::Identity + Send + Sync>>,
    /// The vault key, when unlocked with the passphrase.
    vault_key: Option<age::x25519::Identity>,
    passphrase: Option<Secret>,
    scrypt_log_n: u8,
    /// Test hook: file writes left before an injected failure (see
    /// [`Vault::fail_after_writes`]).
    writes_before_fault: std::cell::Cell<Option<usize>>,
}

impl std::fmt::Debug for Vault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vault")
            .field("root", &self.root)
            .field("env", &self.env)
            .finish_non_exhaustive()
    }
}

/// The vault folder for a project: `<base_dir>/secrets`.
pub fn secrets_dir(base_dir: &Path) -> PathBuf {
    base_dir.join(SECRETS_DIR)
}

/// Whether a vault exists under `base_dir` (the folder holding kiln.toml).
pub fn exists(base_dir: &Path) -> bool {
    secrets_dir(base_dir).join(IDENTITY_FILE).exists()
}

impl Vault {
    /// Opens the vault of `env` under `base_dir` (the folder holding kiln.toml).
    /// A passphrase is checked here: a wrong one fails before anything is read or written.
    pub fn open(base_dir: &Path, env: &str, unlock: Unlock) -> Result<Vault> {
        Self::open_with(base_dir, env, unlock, SCRYPT_LOG_N)
    }

    /// Creates a new vault under `base_dir`: a fresh vault key, `identity.age` encrypted
    /// with `passphrase`, and `recipients.txt` listing the vault key.
    pub fn create(base_dir: &Path, env: &str, passphrase: Secret) -> Result<Vault> {
        Self::create_with(base_dir, env, passphrase, SCRYPT_LOG_N)
    }

    /// [`Vault::open`] with a chosen scrypt work factor for files it writes later (tests).
    #[doc(hidden)]
    pub fn open_with(
        base_dir: &Path,
        env: &str,
        unlock: Unlock,
        scrypt_log_n: u8,
    ) -> Result<Vault> {
        check_env(env)?;
        let root = secrets_dir(base_dir);
        let mut vault = Vault {
            root,
            env: env.to_owned(),
            identities: vec![],
            vault_key: None,
            passphrase: None,
            scrypt_log_n,
            writes_before_fault: Default::default(),
        };
        let identity_path = vault.identity_path();
        match unlock {
            Unlock::Passphrase(passphrase) => {
                if !identity_path.exists() {
                    return Err(VaultError::NotInitialised {
                        dir: vault.root.clone(),
                    });
                }
                let key = read_vault_key(&identity_path, &passphrase)?;
                vault.identities.push(Box::new(key.clone()));
                vault.vault_key = Some(key);
                vault.passphrase = Some(passphrase);
            }
            Unlock::Identities(files) => {
                for file in files {
                    vault.identities.extend(read_identity_file(&file)?);
                }
            }
        }
        // Fail early on a broken recipients.txt.
        vault.recipients()?;
        Ok(vault)
    }

    #[doc(hidden)]
    pub fn create_with(
        base_dir: &Path,
        env: &str,
        passphrase: Secret,
        scrypt_log_n: u8,
    ) -> Result<Vault> {
        check_env(env)?;
        let root = secrets_dir(base_dir);
        if root.join(IDENTITY_FILE).exists() {
            return Err(VaultError::AlreadyExists { dir: root });
        }
        atomic::create_private_dir(&root).map_err(io_err(&root))?;
        let key = age::x25519::Identity::generate();
        let vault = Vault {
            root,
            env: env.to_owned(),
            identities: vec![Box::new(key.clone())],
            vault_key: Some(key.clone()),
            passphrase: Some(passphrase),
            scrypt_log_n,
            writes_before_fault: Default::default(),
        };
        let mut entries = if vault.recipients_path().exists() {
            vault.recipients()?
        } else {
            vec![]
        };
        entries.retain(|e| !e.is_vault_key());
        entries.insert(0, vault_entry(&key));
        vault.write_recipients(&entries)?;
        vault.write_identity(&key)?;
        Ok(vault)
    }

    /// Test hook: the next `n` file writes succeed, then every write fails as a crash
    /// would (the file being written keeps its previous content). Used to prove that an
    /// interrupted set/rekey/recovery-key leaves every secret readable.
    #[doc(hidden)]
    pub fn fail_after_writes(&self, n: usize) {
        self.writes_before_fault.set(Some(n));
    }

    /// Every file the vault writes goes through here: atomic, mode 0600.
    fn write_file(&self, path: &Path, contents: &[u8]) -> Result<()> {
        let left = self.writes_before_fault.get();
        let mut fault = |step: atomic::Step| match left {
            Some(0) if step == atomic::Step::Synced => Err(io::Error::other("injected fault")),
            _ => Ok(()),
        };
        atomic::write_with(path, contents, &mut fault).map_err(io_err(path))?;
        if let Some(n) = left {
            self.writes_before_fault.set(Some(n.saturating_sub(1)));
        }
        Ok(())
    }

    /// The environment this vault serves.
    pub fn env(&self) -> &str {
        &self.env
    }

    /// `<base>/secrets`.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The file holding secret `name` in this environment.
    pub fn path_of(&self, name: &str) -> PathBuf {
        self.env_dir(&self.env).join(format!("{name}.age"))
    }

    fn env_dir(&self, env: &str) -> PathBuf {
        self.root.join(env)
    }
    fn identity_path(&self) -> PathBuf {
        self.root.join(IDENTITY_FILE)
    }
    fn recipients_path(&self) -> PathBuf {
        self.root.join(RECIPIENTS_FILE)
    }

    /// Names of the secrets in this environment, sorted.
    pub fn names(&self) -> Result<Vec<String>> {
        self.names_in(&self.env)
    }

    fn names_in(&self, env: &str) -> Result<Vec<String>> {
        let dir = self.env_dir(env);
        let read = match fs::read_dir(&dir) {
            Ok(r) => r,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(vec![]),
            Err(e) => {
                return Err(VaultError::Io {
                    path: dir,
                    source: e,
                });
            }
        };
        let mut names = vec![];
        for entry in read {
            let entry = entry.map_err(io_err(&dir))?;
            let file_name = entry.file_name().to_string_lossy().into_owned();
            // Temp files of interrupted writes and anything not `.age` are not secrets.
            if file_name.starts_with('.') {
                continue;
            }
            let Some(name) = file_name.strip_suffix(".age") else {
                continue;
            };
            spec::check_name(name).map_err(|source| VaultError::StrayFile {
                path: entry.path(),
                source,
            })?;
            names.push(name.to_owned());
        }
        names.sort();
        Ok(names)
    }

    /// Whether secret `name` exists in this environment.
    pub fn contains(&self, name: &str) -> Result<bool> {
        spec::check_name(name)?;
        Ok(self.path_of(name).exists())
    }

    /// Reads secret `name`.
    pub fn get(&self, name: &str) -> Result<Secret> {
        spec::check_name(name)?;
        self.read_secret(&self.path_of(name), name, &self.env)
    }

    fn read_secret(&self, path: &Path, name: &str, env: &str) -> Result<Secret> {
        let text = match fs::read(path) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(VaultError::NotFound {
                    name: name.to_owned(),
                    env: env.to_owned(),
                    path: path.to_owned(),
                });
            }
            Err(e) => {
                return Err(VaultError::Io {
                    path: path.to_owned(),
                    source: e,
                });
            }
        };
        let plain = decrypt(
            &text,
            self.identities
                .iter()
                .map(|i| i.as_ref() as &dyn age::Identity),
        )
        .map_err(|kind| locate(kind, &text, name, path))?;
        let plain = zeroize::Zeroizing::new(plain);
        let s = std::str::from_utf8(&plain).map_err(|_| VaultError::NotText {
            name: name.to_owned(),
            path: path.to_owned(),
        })?;
        Ok(Secret::new(s))
    }

    /// Every secret of this environment, by name (all or nothing: a damaged file fails
    /// the whole read, naming it).
    pub fn get_all(&self) -> Result<BTreeMap<String, Secret>> {
        let mut out = BTreeMap::new();
        for name in self.names()? {
            let value = self.get(&name)?;
            out.insert(name, value);
        }
        Ok(out)
    }

    /// Stores secret `name` (creating or replacing it), encrypted to every recipient.
    pub fn set(&self, name: &str, value: &Secret) -> Result<()> {
        spec::check_name(name)?;
        let recipients = self.encryption_recipients(None)?;
        self.write_secret(&self.env, name, value, &recipients)
    }

    fn write_secret(
        &self,
        env: &str,
        name: &str,
        value: &Secret,
        recipients: &[Box<dyn age::Recipient + Send>],
    ) -> Result<()> {
        let armored = encrypt(recipients, value.expose().as_bytes()).map_err(|reason| {
            VaultError::Encrypt {
                name: name.to_owned(),
                reason,
            }
        })?;
        let dir = self.env_dir(env);
        atomic::create_private_dir(&dir).map_err(io_err(&dir))?;
        let path = dir.join(format!("{name}.age"));
        self.write_file(&path, armored.as_bytes())
    }

    /// `plain` encrypted (binary age format) to every recipient a secret of this vault is
    /// encrypted to (`recipients.txt`, the recovery keys among them, and the vault key):
    /// whoever can open the vault, or holds a recovery key, can decrypt it with the stock
    /// `age -d`. Returns the ciphertext and how many recipients it has.
    pub fn seal(&self, plain: &[u8]) -> Result<(Vec<u8>, usize)> {
        let recipients = self.encryption_recipients(None)?;
        let fail = |reason: String| VaultError::Encrypt {
            name: "(archive)".into(),
            reason,
        };
        let encryptor = age::Encryptor::with_recipients(
            recipients.iter().map(|r| r.as_ref() as &dyn age::Recipient),
        )
        .map_err(|e| fail(e.to_string()))?;
        let mut out = vec![];
        let mut w = encryptor
            .wrap_output(&mut out)
            .map_err(|e| fail(e.to_string()))?;
        w.write_all(plain).map_err(|e| fail(e.to_string()))?;
        w.finish().map_err(|e| fail(e.to_string()))?;
        Ok((out, recipients.len()))
    }

    /// The entries of `recipients.txt`.
    pub fn recipients(&self) -> Result<Vec<RecipientEntry>> {
        let path = self.recipients_path();
        let text = match fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(vec![]),
            Err(e) => return Err(VaultError::Io { path, source: e }),
        };
        parse_recipients(&text, &path)
    }

    /// Parsed recipients to encrypt to: `recipients.txt` (or `entries`), plus the vault
    /// key this vault was unlocked with (so a half-finished rekey never locks anyone out).
    fn encryption_recipients(
        &self,
        entries: Option<&[RecipientEntry]>,
    ) -> Result<Vec<Box<dyn age::Recipient + Send>>> {
        let owned;
        let entries = match entries {
            Some(e) => e,
            None => {
                owned = self.recipients()?;
                &owned
            }
        };
        let path = self.recipients_path();
        let mut seen = BTreeSet::new();
        let mut out: Vec<Box<dyn age::Recipient + Send>> = vec![];
        for (i, e) in entries.iter().enumerate() {
            if seen.insert(e.recipient.clone()) {
                out.push(parse_recipient(&e.recipient).map_err(|reason| {
                    VaultError::BadRecipient {
                        path: path.clone(),
                        line: i + 1,
                        reason,
                    }
                })?);
            }
        }
        if let Some(key) = &self.vault_key {
            let public = key.to_public().to_string();
            if seen.insert(public) {
                out.push(Box::new(key.to_public()));
            }
        }
        if out.is_empty() {
            return Err(VaultError::BadRecipient {
                path,
                line: 1,
                reason: "no recipients: nobody could decrypt the secret".into(),
            });
        }
        Ok(out)
    }

    fn write_recipients(&self, entries: &[RecipientEntry]) -> Result<()> {
        let mut text = String::from(
            "# kiln vault recipients: every secret under secrets/<env>/ is encrypted to each key below.\n\
             # Public keys only. Edit with `kiln secrets rekey --add-recipient/--remove-recipient`.\n\
             # Without kiln: `printf %s VALUE | age -a -R secrets/recipients.txt > secrets/ENV/NAME.age`\n\n",
        );
        for e in entries {
            for l in e.label.lines() {
                text.push_str("# ");
                text.push_str(l);
                text.push('\n');
            }
            text.push_str(&e.recipient);
            text.push_str("\n\n");
        }
        let path = self.recipients_path();
        self.write_file(&path, text.as_bytes())?;
        // Public data: readable like any file in the repository.
        set_mode(&path, 0o644)
    }

    fn write_identity(&self, key: &age::x25519::Identity) -> Result<()> {
        let passphrase = self
            .passphrase
            .as_ref()
            .ok_or(VaultError::PassphraseNeeded)?;
        let public = key.to_public().to_string();
        let body = zeroize::Zeroizing::new(format!(
            "# kiln vault key: decrypts every secret in secrets/*/.\n\
             # Stock age CLI: age -d -i secrets/identity.age secrets/ENV/NAME.age\n\
             # public key: {public}\n{}\n",
            key.to_string().expose_secret()
        ));
        let mut recipient =
            age::scrypt::Recipient::new(SecretString::from(passphrase.expose().to_owned()));
        recipient.set_work_factor(self.scrypt_log_n);
        let armored = encrypt(
            &[Box::new(recipient) as Box<dyn age::Recipient + Send>],
            body.as_bytes(),
        )
        .map_err(|reason| VaultError::Encrypt {
            name: IDENTITY_FILE.into(),
            reason,
        })?;
        let path = self.identity_path();
        self.write_file(&path, armored.as_bytes())
    }

    /// Every environment folder under `secrets/`.
    fn envs(&self) -> Result<Vec<String>> {
        let mut envs = vec![];
        let read = fs::read_dir(&self.root).map_err(io_err(&self.root))?;
        for entry in read {
            let entry = entry.map_err(io_err(&self.root))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if !name.starts_with('.') && entry.file_type().map_err(io_err(&entry.path()))?.is_dir()
            {
                envs.push(name);
            }
        }
        envs.sort();
        Ok(envs)
    }

    /// Every secret of every environment, decrypted (all or nothing).
    fn read_all(&self) -> Result<BTreeMap<(String, String), Secret>> {
        let mut all = BTreeMap::new();
        for env in self.envs()? {
            for name in self.names_in(&env)? {
                let path = self.env_dir(&env).join(format!("{name}.age"));
                let value = self.read_secret(&path, &name, &env)?;
                all.insert((env.clone(), name), value);
            }
        }
        Ok(all)
    }

    /// Changes the passphrase and/or recipients without changing any value: a new vault
    /// key, every secret of every environment re-encrypted.
    ///
    /// Crash-safe in two phases: secrets are first encrypted to both the old and the new
    /// vault key, then `identity.age` and `recipients.txt` are replaced, then the old key
    /// is dropped from every secret. An interruption leaves every secret readable with the
    /// `identity.age` on disk; running rekey again finishes the job.
    pub fn rekey(&mut self, change: Rekey) -> Result<RekeyReport> {
        let all = self.read_all()?;
        let mut entries = self.recipients()?;
        let path = self.recipients_path();
        for r in &change.remove {
            let before = entries.len();
            entries.retain(|e| !recipient_matches(&e.recipient, r));
            if entries.len() == before {
                return Err(VaultError::UnknownRecipient {
                    path: path.clone(),
                    recipient: r.clone(),
                });
            }
        }
        for (i, (r, label)) in change.add.iter().enumerate() {
            parse_recipient(r).map_err(|reason| VaultError::BadRecipient {
                path: PathBuf::from("--add-recipient"),
                line: i + 1,
                reason,
            })?;
            if !entries.iter().any(|e| recipient_matches(&e.recipient, r)) {
                entries.push(RecipientEntry {
                    label: label.clone(),
                    recipient: r.trim().to_owned(),
                });
            }
        }
        if let Some(p) = change.new_passphrase {
            self.passphrase = Some(p);
        }
        if self.passphrase.is_none() {
            return Err(VaultError::PassphraseNeeded);
        }
        let old_vault_entries: Vec<RecipientEntry> = entries
            .iter()
            .filter(|e| e.is_vault_key())
            .cloned()
            .collect();
        entries.retain(|e| !e.is_vault_key());
        let new_key = age::x25519::Identity::generate();
        entries.insert(0, vault_entry(&new_key));

        // Phase 1: readable by the old vault key and the new one.
        let mut both = entries.clone();
        both.extend(old_vault_entries);
        let phase1 = self.encryption_recipients(Some(&both))?;
        for ((env, name), value) in &all {
            self.write_secret(env, name, value, &phase1)?;
        }
        // Switch: the new vault key becomes the one on disk.
        self.write_identity(&new_key)?;
        self.write_recipients(&entries)?;
        self.identities = vec![Box::new(new_key.clone())];
        self.vault_key = Some(new_key);
        // Phase 2: only the new recipients.
        let phase2 = self.encryption_recipients(Some(&entries))?;
        for ((env, name), value) in &all {
            self.write_secret(env, name, value, &phase2)?;
        }
        Ok(RekeyReport {
            reencrypted: all.len(),
            recipients: entries,
        })
    }

    /// Creates a recovery key: an X25519 key whose public half joins `recipients.txt`;
    /// every secret is re-encrypted to include it. `today` labels it (`YYYY-MM-DD`).
    pub fn add_recovery_key(&mut self, today: &str) -> Result<RecoveryKey> {
        let all = self.read_all()?;
        let key = age::x25519::Identity::generate();
        let public = key.to_public().to_string();
        let mut entries = self.recipients()?;
        entries.push(RecipientEntry {
            label: format!("{RECOVERY_LABEL}, created {today} (kept offline, on paper)"),
            recipient: public.clone(),
        });
        let recipients = self.encryption_recipients(Some(&entries))?;
        for ((env, name), value) in &all {
            self.write_secret(env, name, value, &recipients)?;
        }
        // Listed only once every secret includes it: new secrets will too.
        self.write_recipients(&entries)?;
        Ok(RecoveryKey {
            secret_key: Secret::new(key.to_string().expose_secret()),
            public_key: public,
            reencrypted: all.len(),
        })
    }

    /// What `generate_missing` would do.
    pub fn plan_generation(&self, specs: &[SecretSpec]) -> Result<GenerationPlan> {
        for s in specs {
            spec::check_name(&s.name)?;
        }
        let existing: BTreeSet<String> = self.names()?.into_iter().collect();
        Ok(generate::plan(specs, &existing))
    }

    /// Generates every secret of `specs` that is missing; never changes an existing one.
    /// Conflicts are reported before anything is written.
    pub fn generate_missing<R: RngCore + CryptoRng>(
        &self,
        specs: &[SecretSpec],
        rng: &mut R,
    ) -> Result<GenerateReport> {
        let plan = self.plan_generation(specs)?;
        if let Some(c) = plan.conflicts.first() {
            return Err(VaultError::Conflict {
                present: c.present.clone(),
                missing: c.missing.clone(),
            });
        }
        // Compute everything first, then write.
        let mut values: Vec<(String, Secret)> = vec![];
        for spec in &plan.create {
            values.extend(generate::generate(spec, rng)?);
        }
        for d in &plan.derive {
            let input = self.get(d.input())?;
            values.push((d.output(), generate::derive(d, &input, rng)?));
        }
        let recipients = self.encryption_recipients(None)?;
        let mut report = GenerateReport::default();
        for (name, value) in &values {
            spec::check_name(name)?;
            self.write_secret(&self.env, name, value, &recipients)?;
            report.created.push(name.clone());
        }
        report.needs_value = plan
            .needs_value
            .iter()
            .map(|s| (s.name.clone(), s.description.clone()))
            .collect();
        Ok(report)
    }
}

/// Environment names become folder names: `[a-z0-9_-]+`, not starting with `-`.
fn check_env(env: &str) -> Result<()> {
    let ok = !env.is_empty()
        && !env.starts_with('-')
        && env
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(VaultError::InvalidEnv {
            env: env.to_owned(),
        })
    }
}

fn vault_entry(key: &age::x25519::Identity) -> RecipientEntry {
    RecipientEntry {
        label: format!(
            "{VAULT_LABEL} (its private half is secrets/identity.age, opened by the passphrase)"
        ),
        recipient: key.to_public().to_string(),
    }
}

fn recipient_matches(entry: &str, wanted: &str) -> bool {
    let key = |s: &str| s.split_whitespace().take(2).collect::<Vec<_>>().join(" ");
    let wanted = wanted.trim();
    entry == wanted || key(entry) == key(wanted)
}

fn set_mode(path: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).map_err(io_err(path))
}

/// Parses `recipients.txt`: `#` comments directly above a recipient become its label.
fn parse_recipients(text: &str, path: &Path) -> Result<Vec<RecipientEntry>> {
    let mut out = vec![];
    let mut label: Vec<String> = vec![];
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            label.clear();
        } else if let Some(c) = line.strip_prefix('#') {
            label.push(c.trim().to_owned());
        } else {
            parse_recipient(line).map_err(|reason| VaultError::BadRecipient {
                path: path.to_owned(),
                line: i + 1,
                reason,
            })?;
            out.push(RecipientEntry {
                label: label.join("\n"),
                recipient: line.to_owned(),
            });
            label.clear();
        }
    }
    Ok(out)
}

fn parse_recipient(s: &str) -> Result<Box<dyn age::Recipient + Send>, String> {
    let s = s.trim();
    if s.starts_with("age1") {
        age::x25519::Recipient::from_str(s)
            .map(|r| Box::new(r) as Box<dyn age::Recipient + Send>)
            .map_err(|e| format!("invalid age recipient: {e}"))
    } else if s.starts_with("ssh-") {
        age::ssh::Recipient::from_str(s)
            .map(|r| Box::new(r) as Box<dyn age::Recipient + Send>)
            .map_err(|e| {
                format!("invalid or unsupported SSH recipient ({e:?}); use ssh-ed25519 or ssh-rsa")
            })
    } else {
        Err("not a recipient: expected `age1…`, `ssh-ed25519 …` or `ssh-rsa …`".into())
    }
}

fn read_vault_key(path: &Path, passphrase: &Secret) -> Result<age::x25519::Identity> {
    let text = fs::read(path).map_err(io_err(path))?;
    let mut identity =
        age::scrypt::Identity::new(SecretString::from(passphrase.expose().to_owned()));
    // Accept up to what `age` itself accepts (N = 2^22), whatever this machine's speed.
    identity.set_max_work_factor(22);
    let plain = match decrypt(&text, std::iter::once(&identity as &dyn age::Identity)) {
        Ok(p) => zeroize::Zeroizing::new(p),
        Err(DecryptFailure::NoKey) => {
            return Err(VaultError::WrongPassphrase {
                path: path.to_owned(),
            });
        }
        Err(kind) => return Err(locate(kind, &text, IDENTITY_FILE, path)),
    };
    let text = std::str::from_utf8(&plain).map_err(|_| VaultError::BadIdentity {
        path: path.to_owned(),
        reason: "not UTF-8".into(),
    })?;
    text.lines()
        .map(str::trim)
        .find(|l| l.starts_with("AGE-SECRET-KEY-1"))
        .and_then(|l| age::x25519::Identity::from_str(l).ok())
        .ok_or_else(|| VaultError::BadIdentity {
            path: path.to_owned(),
            reason: "holds no AGE-SECRET-KEY-1 line".into(),
        })
}

/// Reads an identity file given with `--identity`.
fn read_identity_file(path: &Path) -> Result<Vec<Box<dyn age::Identity + Send + Sync>>> {
    let bad = |reason: String| VaultError::BadIdentity {
        path: path.to_owned(),
        reason,
    };
    let text = zeroize::Zeroizing::new(fs::read_to_string(path).map_err(io_err(path))?);
    if text.contains("-----BEGIN") {
        let id = age::ssh::Identity::from_buffer(
            io::Cursor::new(text.as_bytes()),
            Some(path.display().to_string()),
        )
        .map_err(|e| bad(format!("not a usable SSH private key: {e}")))?;
        return match id {
            age::ssh::Identity::Unencrypted(_) => Ok(vec![Box::new(id)]),
            age::ssh::Identity::Encrypted(_) => Err(bad(
                "passphrase-protected SSH keys are not supported: use an age key or the vault passphrase".into(),
            )),
            age::ssh::Identity::Unsupported(_) => Err(bad("unsupported SSH key type".into())),
        };
    }
    let mut out: Vec<Box<dyn age::Identity + Send + Sync>> = vec![];
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        // Recovery keys typed from paper may carry spaces between groups, be lowercase, and
        // lack the fixed `AGE-SECRET-KEY-1` prefix.
        let mut joined: String = line
            .split_whitespace()
            .collect::<Vec<_>>()
            .concat()
            .to_uppercase();
        if !joined.starts_with("AGE-SECRET-KEY-1") {
            joined.insert_str(0, "AGE-SECRET-KEY-1");
        }
        let id = age::x25519::Identity::from_str(&joined)
            .map_err(|_| bad(format!("line {}: not an AGE-SECRET-KEY-1… key", i + 1)))?;
        out.push(Box::new(id));
    }
    if out.is_empty() {
        return Err(bad("holds no key".into()));
    }
    Ok(out)
}

/// Why age refused a file, before locating it.
#[derive(Debug)]
enum DecryptFailure {
    /// No identity matched (wrong key, or a damaged stanza).
    NoKey,
    Armor(String),
    Header(String),
    Mac,
    Payload,
}

fn encrypt(recipients: &[Box<dyn age::Recipient + Send>], plain: &[u8]) -> Result<String, String> {
    let encryptor = age::Encryptor::with_recipients(
        recipients.iter().map(|r| r.as_ref() as &dyn age::Recipient),
    )
    .map_err(|e| e.to_string())?;
    let mut out = vec![];
    let armor = age::armor::ArmoredWriter::wrap_output(&mut out, age::armor::Format::AsciiArmor)
        .map_err(|e| e.to_string())?;
    let mut w = encryptor.wrap_output(armor).map_err(|e| e.to_string())?;
    w.write_all(plain).map_err(|e| e.to_string())?;
    w.finish()
        .and_then(|a| a.finish())
        .map_err(|e| e.to_string())?;
    String::from_utf8(out).map_err(|e| e.to_string())
}

fn decrypt<'a>(
    text: &[u8],
    identities: impl Iterator<Item = &'a dyn age::Identity>,
) -> Result<Vec<u8>, DecryptFailure> {
    let decryptor = age::Decryptor::new_buffered(age::armor::ArmoredReader::new(text)).map_err(
        |e| match e {
            age::DecryptError::Io(io) => DecryptFailure::Armor(io.to_string()),
            other => DecryptFailure::Header(other.to_string()),
        },
    )?;
    let mut reader = decryptor.decrypt(identities).map_err(|e| match e {
        age::DecryptError::NoMatchingKeys | age::DecryptError::DecryptionFailed => {
            DecryptFailure::NoKey
        }
        age::DecryptError::InvalidMac => DecryptFailure::Mac,
        other => DecryptFailure::Header(other.to_string()),
    })?;
    let mut plain = vec![];
    reader
        .read_to_end(&mut plain)
        .map_err(|_| DecryptFailure::Payload)?;
    Ok(plain)
}

/// Turns a decryption failure into an error naming the secret, file and line.
fn locate(kind: DecryptFailure, text: &[u8], name: &str, path: &Path) -> VaultError {
    let text = String::from_utf8_lossy(text);
    let corrupt = |line: usize, reason: String| VaultError::Corrupt {
        name: name.to_owned(),
        path: path.to_owned(),
        line,
        reason,
    };
    let layout = match armor_check::check(&text) {
        Ok(l) => l,
        Err(d) => return corrupt(d.line, d.reason),
    };
    match kind {
        DecryptFailure::NoKey => VaultError::NotARecipient {
            name: name.to_owned(),
            path: path.to_owned(),
            header_end: layout.mac_line,
        },
        DecryptFailure::Mac => corrupt(
            layout.mac_line,
            "the age header's MAC does not match (header altered)".into(),
        ),
        DecryptFailure::Header(r) => corrupt(2, format!("invalid age header: {r}")),
        DecryptFailure::Armor(r) => corrupt(1, format!("invalid armor: {r}")),
        DecryptFailure::Payload => corrupt(
            layout.payload_line,
            "the encrypted content fails authentication (altered or truncated)".into(),
        ),
    }
}
