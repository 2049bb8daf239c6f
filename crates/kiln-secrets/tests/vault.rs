//! Vault behaviour through the public API: round trips, bad input, rekey, recovery keys,
//! generation, and decryption by the stock `age` CLI (the exit that does not need kiln).

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use kiln_secrets::vault::{self, Rekey};
use kiln_secrets::{
    Alphabet, HashScheme, Secret, SecretRule, SecretSpec, Unlock, Vault, VaultError,
};

/// Cheap scrypt for tests; the real work factor is exercised by the CLI tests.
const LOG_N: u8 = 10;
const PASS: &str = "correct horse battery staple";

fn pass(p: &str) -> Unlock {
    Unlock::Passphrase(Secret::new(p))
}

fn new_vault(dir: &Path) -> Vault {
    Vault::create_with(dir, "production", Secret::new(PASS), LOG_N).unwrap()
}

fn open(dir: &Path, p: &str) -> Result<Vault, VaultError> {
    Vault::open_with(dir, "production", pass(p), LOG_N)
}

fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    fn walk(p: &Path, out: &mut BTreeMap<PathBuf, Vec<u8>>) {
        for e in fs::read_dir(p).unwrap() {
            let e = e.unwrap();
            if e.file_type().unwrap().is_dir() {
                walk(&e.path(), out);
            } else {
                out.insert(e.path(), fs::read(e.path()).unwrap());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, &mut out);
    out
}

fn mode(p: &Path) -> u32 {
    fs::metadata(p).unwrap().permissions().mode() & 0o777
}

fn require_tool(tool: &str) -> bool {
    let found = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .output()
        .unwrap()
        .status
        .success();
    if !found {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "`{tool}` is required in CI (run .ci/install-secrets.sh)"
        );
        eprintln!("skipping: `{tool}` is not installed (run .ci/install-secrets.sh)");
    }
    found
}

#[test]
fn set_get_list_round_trip_with_private_modes_and_armored_files() {
    let dir = tempfile::tempdir().unwrap();
    let v = new_vault(dir.path());
    v.set("db_password", &Secret::new("s3cr3t value\nwith newline"))
        .unwrap();
    v.set("api_key", &Secret::new("k")).unwrap();
    assert_eq!(v.names().unwrap(), ["api_key", "db_password"]);
    assert_eq!(
        v.get("db_password").unwrap().expose(),
        "s3cr3t value\nwith newline"
    );

    let all = v.get_all().unwrap();
    assert_eq!(all.keys().collect::<Vec<_>>(), ["api_key", "db_password"]);
    assert_eq!(all["api_key"].expose(), "k");
    // A second open (another process) reads the same values.
    let v2 = open(dir.path(), PASS).unwrap();
    assert_eq!(v2.get("api_key").unwrap().expose(), "k");

    let file = dir.path().join("secrets/production/db_password.age");
    let text = fs::read_to_string(&file).unwrap();
    assert!(
        text.starts_with("-----BEGIN AGE ENCRYPTED FILE-----\n"),
        "armored for git diffs"
    );
    assert!(!text.contains("s3cr3t"));
    assert_eq!(mode(&file), 0o600);
    assert_eq!(mode(&dir.path().join("secrets/production")), 0o700);
    assert_eq!(mode(&dir.path().join("secrets/identity.age")), 0o600);
    let recipients = fs::read_to_string(dir.path().join("secrets/recipients.txt")).unwrap();
    assert!(
        recipients.lines().any(|l| l.starts_with("age1")),
        "{recipients}"
    );

    // Replacing a value changes only that file.
    let before = snapshot(dir.path());
    v.set("api_key", &Secret::new("k2")).unwrap();
    let after = snapshot(dir.path());
    let changed: Vec<_> = after
        .keys()
        .filter(|k| before.get(*k) != after.get(*k))
        .collect();
    assert_eq!(
        changed,
        [&dir.path().join("secrets/production/api_key.age")]
    );
    assert_eq!(v.get("api_key").unwrap().expose(), "k2");
}

#[test]
fn environments_are_separate() {
    let dir = tempfile::tempdir().unwrap();
    let prod = new_vault(dir.path());
    prod.set("x", &Secret::new("prod")).unwrap();
    let staging = Vault::open_with(dir.path(), "staging", pass(PASS), LOG_N).unwrap();
    assert!(staging.names().unwrap().is_empty());
    staging.set("x", &Secret::new("stag")).unwrap();
    assert_eq!(prod.get("x").unwrap().expose(), "prod");
    assert_eq!(staging.get("x").unwrap().expose(), "stag");
}

#[test]
fn wrong_passphrase_is_a_clear_error_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    new_vault(dir.path()).set("a", &Secret::new("1")).unwrap();
    let before = snapshot(dir.path());
    let err = open(dir.path(), "not the passphrase").unwrap_err();
    assert!(matches!(err, VaultError::WrongPassphrase { .. }), "{err:?}");
    assert!(err.is_bad_input());
    assert!(err.to_string().contains("wrong passphrase"), "{err}");
    assert!(err.to_string().contains("identity.age"), "{err}");
    assert_eq!(snapshot(dir.path()), before);
}

#[test]
fn opening_a_missing_vault_says_how_to_create_it() {
    let dir = tempfile::tempdir().unwrap();
    let err = open(dir.path(), PASS).unwrap_err();
    assert!(matches!(err, VaultError::NotInitialised { .. }));
    assert!(err.hint().unwrap().contains("kiln secrets"));
    assert!(Vault::create_with(dir.path(), "production", Secret::new(PASS), LOG_N).is_ok());
    assert!(matches!(
        Vault::create_with(dir.path(), "production", Secret::new(PASS), LOG_N),
        Err(VaultError::AlreadyExists { .. })
    ));
}

#[test]
fn names_outside_a_z_0_9_underscore_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let v = new_vault(dir.path());
    for bad in ["Bad", "../../etc/passwd", "a-b", "a.b", ""] {
        let err = v.set(bad, &Secret::new("x")).unwrap_err();
        assert!(matches!(err, VaultError::InvalidName(_)), "{bad}: {err:?}");
        assert!(matches!(v.get(bad), Err(VaultError::InvalidName(_))));
    }
    assert!(v.names().unwrap().is_empty());
    assert!(!dir.path().join("etc").exists());
}

#[test]
fn missing_secret_names_itself() {
    let dir = tempfile::tempdir().unwrap();
    let err = new_vault(dir.path()).get("nope").unwrap_err();
    assert!(matches!(err, VaultError::NotFound { .. }));
    assert!(
        err.to_string().contains("`nope`") && err.to_string().contains("production"),
        "{err}"
    );
}

fn corrupt_case(edit: impl Fn(&str) -> String) -> VaultError {
    let dir = tempfile::tempdir().unwrap();
    let v = new_vault(dir.path());
    v.set("db_password", &Secret::new("hunter2")).unwrap();
    let f = dir.path().join("secrets/production/db_password.age");
    let text = fs::read_to_string(&f).unwrap();
    fs::write(&f, edit(&text)).unwrap();
    v.get("db_password").unwrap_err()
}

#[test]
fn a_truncated_secret_names_the_secret_file_and_line() {
    let err = corrupt_case(|t| {
        let lines: Vec<&str> = t.lines().collect();
        lines[..lines.len() - 2].join("\n")
    });
    let VaultError::Corrupt {
        name,
        path,
        line,
        reason,
    } = &err
    else {
        panic!("{err:?}")
    };
    assert_eq!(name, "db_password");
    assert!(path.ends_with("secrets/production/db_password.age"));
    assert!(*line >= 2, "{err}");
    assert!(reason.contains("truncated"), "{err}");
    let shown = err.to_string();
    assert!(
        shown.contains(&format!("db_password.age:{line}")),
        "{shown}"
    );
}

#[test]
fn a_bad_character_names_its_line() {
    let err = corrupt_case(|t| {
        let mut lines: Vec<String> = t.lines().map(String::from).collect();
        lines[3].replace_range(0..1, "*");
        lines.join("\n") + "\n"
    });
    assert!(matches!(err, VaultError::Corrupt { line: 4, .. }), "{err}");
}

#[test]
fn an_altered_payload_is_reported_on_its_line() {
    let err = corrupt_case(|t| {
        let mut lines: Vec<String> = t.lines().map(String::from).collect();
        // Flip a character of the last base64 line (the payload), keeping it valid base64.
        let i = lines.len() - 2;
        let c = if lines[i].starts_with('A') { "B" } else { "A" };
        lines[i].replace_range(0..1, c);
        lines.join("\n") + "\n"
    });
    match &err {
        VaultError::Corrupt { line, reason, .. } => {
            assert!(*line >= 2, "{err}");
            assert!(
                reason.contains("authentication")
                    || reason.contains("MAC")
                    || reason.contains("header"),
                "{err}"
            );
        }
        VaultError::NotARecipient { .. } => {}
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_leftover_temp_file_from_a_crash_is_ignored_and_the_old_value_kept() {
    let dir = tempfile::tempdir().unwrap();
    let v = new_vault(dir.path());
    v.set("a", &Secret::new("old")).unwrap();
    // What a write killed after creating its temp file leaves behind.
    fs::write(
        dir.path().join("secrets/production/.a.age.123.00ff.tmp"),
        "partial",
    )
    .unwrap();
    assert_eq!(v.names().unwrap(), ["a"]);
    assert_eq!(v.get("a").unwrap().expose(), "old");
}

#[test]
fn rekey_keeps_every_value_and_retires_the_old_passphrase() {
    let dir = tempfile::tempdir().unwrap();
    let mut v = new_vault(dir.path());
    v.set("a", &Secret::new("alpha")).unwrap();
    v.set("b", &Secret::new("beta")).unwrap();
    let staging = Vault::open_with(dir.path(), "staging", pass(PASS), LOG_N).unwrap();
    staging.set("c", &Secret::new("gamma")).unwrap();
    let before_files = snapshot(dir.path());

    let report = v
        .rekey(Rekey {
            new_passphrase: Some(Secret::new("new passphrase")),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(report.reencrypted, 3);

    assert!(matches!(
        open(dir.path(), PASS),
        Err(VaultError::WrongPassphrase { .. })
    ));
    let v = open(dir.path(), "new passphrase").unwrap();
    assert_eq!(v.get("a").unwrap().expose(), "alpha");
    assert_eq!(v.get("b").unwrap().expose(), "beta");
    let s = Vault::open_with(dir.path(), "staging", pass("new passphrase"), LOG_N).unwrap();
    assert_eq!(s.get("c").unwrap().expose(), "gamma");
    // Every file was rewritten (new vault key), none left readable by the old key only.
    let after_files = snapshot(dir.path());
    for (path, content) in &before_files {
        assert_ne!(
            after_files.get(path),
            Some(content),
            "{} unchanged",
            path.display()
        );
    }
    // The old vault key (from git history) does not open the new files.
    let recips = v.recipients().unwrap();
    assert_eq!(recips.iter().filter(|e| e.is_vault_key()).count(), 1);
}

#[test]
fn rekey_adds_and_removes_recipients() {
    let dir = tempfile::tempdir().unwrap();
    let mut v = new_vault(dir.path());
    v.set("a", &Secret::new("alpha")).unwrap();
    let extra = age::x25519::Identity::generate();
    let extra_pub = extra.to_public().to_string();
    let key_file = dir.path().join("alice.txt");
    use age::secrecy::ExposeSecret;
    fs::write(
        &key_file,
        format!("{}\n", extra.to_string().expose_secret()),
    )
    .unwrap();

    v.rekey(Rekey {
        add: vec![(extra_pub.clone(), "alice".into())],
        ..Default::default()
    })
    .unwrap();
    let alice = Vault::open_with(
        dir.path(),
        "production",
        Unlock::Identities(vec![key_file.clone()]),
        LOG_N,
    )
    .unwrap();
    assert_eq!(alice.get("a").unwrap().expose(), "alpha");
    // The passphrase still works after a rekey that kept it.
    assert_eq!(
        open(dir.path(), PASS).unwrap().get("a").unwrap().expose(),
        "alpha"
    );

    v.rekey(Rekey {
        remove: vec![extra_pub.clone()],
        ..Default::default()
    })
    .unwrap();
    let alice = Vault::open_with(
        dir.path(),
        "production",
        Unlock::Identities(vec![key_file]),
        LOG_N,
    )
    .unwrap();
    assert!(matches!(
        alice.get("a"),
        Err(VaultError::NotARecipient { .. })
    ));

    let err = v
        .rekey(Rekey {
            remove: vec![extra_pub],
            ..Default::default()
        })
        .unwrap_err();
    assert!(matches!(err, VaultError::UnknownRecipient { .. }));
    let err = v
        .rekey(Rekey {
            add: vec![("age1notakey".into(), String::new())],
            ..Default::default()
        })
        .unwrap_err();
    assert!(matches!(err, VaultError::BadRecipient { .. }), "{err:?}");
}

#[test]
fn recovery_key_opens_every_secret_without_the_passphrase() {
    let dir = tempfile::tempdir().unwrap();
    let mut v = new_vault(dir.path());
    v.set("a", &Secret::new("alpha")).unwrap();
    let key = v.add_recovery_key("2026-11-28").unwrap();
    assert!(key.secret_key.expose().starts_with("AGE-SECRET-KEY-1"));
    assert_eq!(key.reencrypted, 1);
    assert_eq!(format!("{:?}", key.secret_key), "Secret(<redacted>)");
    // Secrets set later include it too.
    v.set("b", &Secret::new("beta")).unwrap();

    // Typed from paper: grouped with spaces, lowercase.
    let grouped: String = key
        .secret_key
        .expose()
        .to_lowercase()
        .as_bytes()
        .chunks(8)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect::<Vec<_>>()
        .join(" ");
    let paper = dir.path().join("recovery.txt");
    fs::write(&paper, format!("{grouped}\n")).unwrap();
    let r = Vault::open_with(
        dir.path(),
        "production",
        Unlock::Identities(vec![paper.clone()]),
        LOG_N,
    )
    .unwrap();
    assert_eq!(r.get("a").unwrap().expose(), "alpha");
    assert_eq!(r.get("b").unwrap().expose(), "beta");
    // Only the groups after the fixed prefix, in groups of four, as the printed sheet shows.
    let body = &key.secret_key.expose()["AGE-SECRET-KEY-1".len()..];
    let groups: Vec<&str> = body
        .as_bytes()
        .chunks(4)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    let groups_only = dir.path().join("groups.txt");
    fs::write(&groups_only, groups.join(" ")).unwrap();
    let g = Vault::open_with(
        dir.path(),
        "production",
        Unlock::Identities(vec![groups_only]),
        LOG_N,
    )
    .unwrap();
    assert_eq!(g.get("a").unwrap().expose(), "alpha");

    // Forgotten passphrase: the recovery key sets a new one.
    let mut r = r;
    r.rekey(Rekey {
        new_passphrase: Some(Secret::new("fresh")),
        ..Default::default()
    })
    .unwrap();
    assert_eq!(
        open(dir.path(), "fresh")
            .unwrap()
            .get("a")
            .unwrap()
            .expose(),
        "alpha"
    );
    let recips = fs::read_to_string(dir.path().join("secrets/recipients.txt")).unwrap();
    assert!(
        recips.contains(&key.public_key),
        "recovery key kept by rekey"
    );
    assert!(recips.contains("recovery key, created 2026-11-28"));

    // A rekey without a passphrase, unlocked by a key file only, is refused.
    let mut r = Vault::open_with(
        dir.path(),
        "production",
        Unlock::Identities(vec![paper]),
        LOG_N,
    )
    .unwrap();
    assert!(matches!(
        r.rekey(Rekey::default()),
        Err(VaultError::PassphraseNeeded)
    ));
}

#[test]
fn generate_creates_only_missing_secrets_following_their_rules() {
    let dir = tempfile::tempdir().unwrap();
    let v = new_vault(dir.path());
    let specs = vec![
        SecretSpec {
            name: "hedgedoc_session_secret".into(),
            rule: SecretRule::Random {
                length: 64,
                alphabet: Alphabet::Alphanumeric,
            },
            description: "HedgeDoc session".into(),
        },
        SecretSpec {
            name: "key_b64".into(),
            rule: SecretRule::Base64 { bytes: 32 },
            description: String::new(),
        },
        SecretSpec {
            name: "synapse_signing_key".into(),
            rule: SecretRule::Ed25519SigningKey,
            description: String::new(),
        },
        SecretSpec {
            name: "wireguard_services".into(),
            rule: SecretRule::WireguardKeyPair,
            description: String::new(),
        },
        SecretSpec {
            name: "grafana_admin".into(),
            rule: SecretRule::PasswordWithHash {
                length: 24,
                hash: HashScheme::Bcrypt,
            },
            description: String::new(),
        },
        SecretSpec {
            name: "s3_secret_key".into(),
            rule: SecretRule::Provided,
            description: "S3 secret".into(),
        },
    ];
    v.set("key_b64", &Secret::new("preexisting")).unwrap();
    let report = v.generate_missing(&specs, &mut rand::rngs::OsRng).unwrap();
    assert_eq!(
        report.created,
        [
            "hedgedoc_session_secret",
            "synapse_signing_key",
            "wireguard_services",
            "wireguard_services_public",
            "grafana_admin",
            "grafana_admin_hash"
        ]
    );
    assert_eq!(
        report.needs_value,
        [("s3_secret_key".to_string(), "S3 secret".to_string())]
    );
    assert_eq!(
        v.get("key_b64").unwrap().expose(),
        "preexisting",
        "existing value untouched"
    );
    assert_eq!(v.get("hedgedoc_session_secret").unwrap().expose().len(), 64);
    assert!(
        bcrypt::verify(
            v.get("grafana_admin").unwrap().expose(),
            v.get("grafana_admin_hash").unwrap().expose()
        )
        .unwrap()
    );

    // Second run: nothing created, nothing changed.
    let before = snapshot(dir.path());
    let again = v.generate_missing(&specs, &mut rand::rngs::OsRng).unwrap();
    assert!(again.created.is_empty());
    assert_eq!(snapshot(dir.path()), before);

    // A missing derived half is recomputed from the existing value, which stays.
    let private = v.get("wireguard_services").unwrap();
    let public = v.get("wireguard_services_public").unwrap();
    fs::remove_file(
        dir.path()
            .join("secrets/production/wireguard_services_public.age"),
    )
    .unwrap();
    let fixed = v.generate_missing(&specs, &mut rand::rngs::OsRng).unwrap();
    assert_eq!(fixed.created, ["wireguard_services_public"]);
    assert_eq!(v.get("wireguard_services").unwrap(), private);
    assert_eq!(v.get("wireguard_services_public").unwrap(), public);

    // The other way round would change an existing value: refused, nothing written.
    fs::remove_file(dir.path().join("secrets/production/grafana_admin.age")).unwrap();
    let before = snapshot(dir.path());
    let err = v
        .generate_missing(&specs, &mut rand::rngs::OsRng)
        .unwrap_err();
    assert!(matches!(err, VaultError::Conflict { .. }), "{err:?}");
    assert_eq!(snapshot(dir.path()), before);
}

/// Runs `argv` under a pseudo-terminal (age reads passphrases from the terminal only),
/// answering its passphrase prompt with the content of `passphrase_file`.
fn run_with_tty(argv: &[&str], passphrase_file: &Path) -> (bool, String) {
    const DRIVER: &str = r#"
import os, pty, sys
secret = open(sys.argv[1], 'rb').read().strip()
pid, fd = pty.fork()
if pid == 0:
    os.execvp(sys.argv[2], sys.argv[2:])
out, sent = b'', False
while True:
    try:
        data = os.read(fd, 4096)
    except OSError:
        break
    if not data:
        break
    out += data
    if not sent and b'passphrase' in out.lower():
        os.write(fd, secret + b'\n')
        sent = True
_, status = os.waitpid(pid, 0)
sys.stdout.buffer.write(out)
sys.exit(os.waitstatus_to_exitcode(status))
"#;
    let out = Command::new("python3")
        .arg("-c")
        .arg(DRIVER)
        .arg(passphrase_file)
        .args(argv)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn stock_age_cli_decrypts_with_the_passphrase_and_with_the_recovery_key() {
    if !require_tool("age") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path();
    // The default work factor, exactly as kiln writes it for users.
    let mut v = Vault::create(base, "production", Secret::new(PASS)).unwrap();
    v.set("db_password", &Secret::new("planted-db-value-7731"))
        .unwrap();
    let secret_file = base.join("secrets/production/db_password.age");
    let identity = base.join("secrets/identity.age");
    let pass_file = base.join("pass.txt");
    fs::write(&pass_file, PASS).unwrap();

    // 1. Passphrase: `age -d -i secrets/identity.age FILE`.
    let (ok, out) = run_with_tty(
        &[
            "age",
            "-d",
            "-i",
            identity.to_str().unwrap(),
            secret_file.to_str().unwrap(),
        ],
        &pass_file,
    );
    assert!(ok, "age failed: {out}");
    assert!(out.contains("planted-db-value-7731"), "{out}");

    // 2. The vault key itself: `age -d secrets/identity.age`.
    let (ok, out) = run_with_tty(&["age", "-d", identity.to_str().unwrap()], &pass_file);
    assert!(ok && out.contains("AGE-SECRET-KEY-1"), "{out}");

    // A wrong passphrase fails in age too.
    let wrong = base.join("wrong.txt");
    fs::write(&wrong, "nope").unwrap();
    let (ok, out) = run_with_tty(
        &[
            "age",
            "-d",
            "-i",
            identity.to_str().unwrap(),
            secret_file.to_str().unwrap(),
        ],
        &wrong,
    );
    assert!(!ok && !out.contains("planted-db-value-7731"), "{out}");

    // 3. Recovery key, no passphrase, no terminal: `age -d -i recovery.txt FILE`.
    let key = v.add_recovery_key("2026-11-28").unwrap();
    let paper = base.join("recovery.txt");
    fs::write(&paper, format!("{}\n", key.secret_key.expose())).unwrap();
    let out = Command::new("age")
        .arg("-d")
        .arg("-i")
        .arg(&paper)
        .arg(&secret_file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.stdout, b"planted-db-value-7731");

    // 4. A secret written by the stock CLI to recipients.txt is readable by kiln.
    let out = Command::new("sh")
        .arg("-c")
        .arg("printf %s from-age-cli | age -a -R secrets/recipients.txt > secrets/production/manual.age")
        .current_dir(base)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v = Vault::open(base, "production", pass(PASS)).unwrap();
    assert_eq!(v.get("manual").unwrap().expose(), "from-age-cli");
}

#[test]
fn secrets_dir_helpers() {
    let dir = tempfile::tempdir().unwrap();
    assert!(!vault::exists(dir.path()));
    new_vault(dir.path());
    assert!(vault::exists(dir.path()));
}

/// Reads every value with whichever passphrase opens the vault now.
fn read_all_values(dir: &Path, passes: &[&str]) -> (String, Vec<(String, String, String)>) {
    for p in passes {
        match Vault::open_with(dir, "production", pass(p), LOG_N) {
            Ok(_) => {
                let mut out = vec![];
                for env in ["production", "staging"] {
                    let v = Vault::open_with(dir, env, pass(p), LOG_N).unwrap();
                    for n in v.names().unwrap() {
                        let value = v
                            .get(&n)
                            .unwrap_or_else(|e| panic!("{env}/{n} unreadable: {e}"));
                        out.push((env.to_owned(), n, value.expose().to_owned()));
                    }
                }
                return (p.to_string(), out);
            }
            Err(VaultError::WrongPassphrase { .. }) => continue,
            Err(e) => panic!("{e}"),
        }
    }
    panic!("no passphrase opens the vault")
}

#[test]
fn an_interrupted_set_keeps_the_previous_value() {
    let dir = tempfile::tempdir().unwrap();
    let v = new_vault(dir.path());
    v.set("a", &Secret::new("old")).unwrap();
    let before = snapshot(dir.path());
    v.fail_after_writes(0);
    let err = v.set("a", &Secret::new("new")).unwrap_err();
    assert!(err.to_string().contains("injected fault"), "{err}");
    assert_eq!(
        snapshot(dir.path()),
        before,
        "no temp file left, old file intact"
    );
    assert_eq!(
        open(dir.path(), PASS).unwrap().get("a").unwrap().expose(),
        "old"
    );
}

#[test]
fn a_rekey_interrupted_at_any_write_leaves_every_secret_readable_and_can_be_finished() {
    let expected = vec![
        (
            "production".to_string(),
            "a".to_string(),
            "alpha".to_string(),
        ),
        (
            "production".to_string(),
            "b".to_string(),
            "beta".to_string(),
        ),
        ("staging".to_string(), "c".to_string(), "gamma".to_string()),
    ];
    // 3 secrets: phase 1 (3 writes), identity.age, recipients.txt, phase 2 (3 writes).
    for crash_after in 0..8 {
        let dir = tempfile::tempdir().unwrap();
        let mut v = new_vault(dir.path());
        v.set("a", &Secret::new("alpha")).unwrap();
        v.set("b", &Secret::new("beta")).unwrap();
        Vault::open_with(dir.path(), "staging", pass(PASS), LOG_N)
            .unwrap()
            .set("c", &Secret::new("gamma"))
            .unwrap();

        v.fail_after_writes(crash_after);
        let change = Rekey {
            new_passphrase: Some(Secret::new("next passphrase")),
            ..Default::default()
        };
        assert!(v.rekey(change).is_err(), "crash after {crash_after} writes");

        let (working, values) = read_all_values(dir.path(), &[PASS, "next passphrase"]);
        assert_eq!(
            values, expected,
            "crash after {crash_after} writes, unlocked with {working:?}"
        );
        // Rekeying again (with the passphrase that works now) finishes the job.
        let mut v = Vault::open_with(dir.path(), "production", pass(&working), LOG_N).unwrap();
        v.rekey(Rekey {
            new_passphrase: Some(Secret::new("final passphrase")),
            ..Default::default()
        })
        .unwrap();
        let (working, values) =
            read_all_values(dir.path(), &[PASS, "next passphrase", "final passphrase"]);
        assert_eq!(working, "final passphrase");
        assert_eq!(values, expected);
        assert_eq!(
            v.recipients()
                .unwrap()
                .iter()
                .filter(|e| e.is_vault_key())
                .count(),
            1
        );
    }
}

#[test]
fn an_interrupted_recovery_key_creation_changes_nothing_visible() {
    let dir = tempfile::tempdir().unwrap();
    let mut v = new_vault(dir.path());
    v.set("a", &Secret::new("alpha")).unwrap();
    v.set("b", &Secret::new("beta")).unwrap();
    let recipients_before = fs::read_to_string(dir.path().join("secrets/recipients.txt")).unwrap();
    v.fail_after_writes(1);
    assert!(v.add_recovery_key("2026-11-28").is_err());
    assert_eq!(
        fs::read_to_string(dir.path().join("secrets/recipients.txt")).unwrap(),
        recipients_before
    );
    let v = open(dir.path(), PASS).unwrap();
    assert_eq!(v.get("a").unwrap().expose(), "alpha");
    assert_eq!(v.get("b").unwrap().expose(), "beta");
}

#[test]
fn an_ssh_ed25519_recipient_decrypts_with_its_private_key() {
    if !require_tool("ssh-keygen") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("id_ed25519");
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "alice@laptop", "-f"])
        .arg(&key)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let public = fs::read_to_string(key.with_extension("pub")).unwrap();
    let mut v = new_vault(dir.path());
    v.set("a", &Secret::new("alpha")).unwrap();
    v.rekey(Rekey {
        add: vec![(public.trim().to_owned(), "alice".into())],
        ..Default::default()
    })
    .unwrap();
    let alice = Vault::open_with(
        dir.path(),
        "production",
        Unlock::Identities(vec![key.clone()]),
        LOG_N,
    )
    .unwrap();
    assert_eq!(alice.get("a").unwrap().expose(), "alpha");
    if require_tool("age") {
        let out = Command::new("age")
            .args(["-d", "-i"])
            .arg(&key)
            .arg(dir.path().join("secrets/production/a.age"))
            .output()
            .unwrap();
        assert_eq!(
            out.stdout,
            b"alpha",
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn a_bad_line_in_recipients_txt_is_named() {
    let dir = tempfile::tempdir().unwrap();
    new_vault(dir.path()).set("a", &Secret::new("1")).unwrap();
    let path = dir.path().join("secrets/recipients.txt");
    let mut text = fs::read_to_string(&path).unwrap();
    text.push_str("# added by hand\nage1thisisnotakey\n");
    fs::write(&path, &text).unwrap();
    let line = text.lines().count();
    let err = open(dir.path(), PASS).unwrap_err();
    assert!(
        matches!(&err, VaultError::BadRecipient { line: l, .. } if *l == line),
        "{err:?}"
    );
    assert!(
        err.to_string().contains(&format!("recipients.txt:{line}:")),
        "{err}"
    );
}

#[test]
fn a_damaged_identity_file_is_named() {
    let dir = tempfile::tempdir().unwrap();
    new_vault(dir.path());
    let path = dir.path().join("secrets/identity.age");
    let text = fs::read_to_string(&path).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    fs::write(&path, lines[..lines.len() - 1].join("\n")).unwrap();
    let err = open(dir.path(), PASS).unwrap_err();
    assert!(
        matches!(&err, VaultError::Corrupt { name, .. } if name == "identity.age"),
        "{err:?}"
    );
    assert!(err.to_string().contains("identity.age:"), "{err}");
}
