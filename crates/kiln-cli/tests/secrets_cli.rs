//! `kiln secrets` and `kiln import` as a user runs them: the built binary in a temporary
//! repository, passphrases from files/commands, and the poison test (a planted secret and
//! passphrase never show up in any output or non-vault file).

mod common;
use common::run_with_stdin;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

const KILN: &str = env!("CARGO_BIN_EXE_kiln");
const POISON_VALUE: &str = "POISON-value-5c1e9a7b";
const POISON_PASS: &str = "POISON-passphrase-93d0f2e4";
/// scrypt work factor of the vaults tests pre-create (the CLI writes 2^18, ~1 s of CPU
/// per unlock; that path is covered by the tests that start from an empty repository).
const FAST_LOG_N: u8 = 10;

/// A valid configuration with three environments and a service whose recipe needs
/// generated secrets.
const KILN_TOML: &str = r#"
[project]
name = "demo"
domain = "kiln-demo.net"
acme_email = "admin@kiln-demo.net"

[environments.production]
domain = "kiln-demo.net"
acme_ca = "letsencrypt"
apex_host = "web"

[environments.production.hosts.web]
address = "192.0.2.10"
admin_user = "admin"

[environments.staging]
domain = "staging.kiln-demo.net"
acme_ca = "letsencrypt-staging"

[environments.staging.hosts.web]
address = "192.0.2.20"
admin_user = "admin"

[services.blog]
kind = "container"
host = "web"
subdomain = "blog"
version = "1.27"
options = { image = "docker.io/library/nginx", port = 80 }
"#;

struct Repo {
    dir: tempfile::TempDir,
    tmp: PathBuf,
    pass_file: PathBuf,
}

impl Repo {
    /// A repository whose vault already exists (created with a cheap scrypt work factor).
    fn new() -> Repo {
        let r = Repo::empty();
        kiln_secrets::Vault::create_with(
            r.path(),
            "production",
            kiln_secrets::Secret::new(POISON_PASS),
            FAST_LOG_N,
        )
        .unwrap();
        r
    }

    /// A repository with only kiln.toml.
    fn empty() -> Repo {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("kiln.toml"), KILN_TOML).unwrap();
        let tmp = dir.path().join("tmp");
        fs::create_dir(&tmp).unwrap();
        let keys = dir.path().join("keys");
        fs::create_dir(&keys).unwrap();
        let pass_file = keys.join("pass");
        fs::write(&pass_file, format!("{POISON_PASS}\n")).unwrap();
        fs::set_permissions(&pass_file, fs::Permissions::from_mode(0o600)).unwrap();
        Repo {
            dir,
            tmp,
            pass_file,
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(KILN);
        c.args(args)
            .current_dir(self.path())
            .env_remove("KILN_CONFIG")
            .env_remove("KILN_PASSPHRASE_FILE")
            .env_remove("VISUAL")
            .env_remove("EDITOR")
            .env_remove("XDG_RUNTIME_DIR")
            .env("TMPDIR", &self.tmp)
            .env("NO_COLOR", "1")
            .stdin(Stdio::null());
        c
    }

    /// Runs kiln with the passphrase file in the environment.
    fn run(&self, args: &[&str], stdin: Option<&str>) -> Output {
        let mut c = self.cmd(args);
        c.env("KILN_PASSPHRASE_FILE", &self.pass_file);
        run_with_stdin(c, stdin)
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn code(o: &Output) -> i32 {
    o.status.code().unwrap_or(-1)
}

/// The vault's files and their contents.
fn vault_files(repo: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let dir = repo.join("secrets");
    if dir.exists() {
        snapshot(&dir)
    } else {
        BTreeMap::new()
    }
}

/// Fails with the list of changed paths (not the contents) when the vault changed.
fn assert_vault_unchanged(repo: &Path, before: &BTreeMap<PathBuf, Vec<u8>>) {
    let after = vault_files(repo);
    let changed: Vec<&PathBuf> = before
        .keys()
        .chain(after.keys())
        .filter(|k| before.get(*k) != after.get(*k))
        .collect();
    assert!(changed.is_empty(), "vault files changed: {changed:?}");
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

fn ansible_fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../kiln-secrets/tests/fixtures/ansible")
        .join(name)
}

#[test]
fn set_get_list_round_trip() {
    let r = Repo::empty();
    let o = r.run(&["secrets", "set", "smtp_password"], Some("v1\n"));
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(text(&o.stderr).contains("created a new vault"));
    let o = r.run(
        &["secrets", "set", "api_key", "--env", "staging"],
        Some("k"),
    );
    assert!(o.status.success(), "{}", text(&o.stderr));
    let o = r.run(&["secrets", "list"], None);
    assert_eq!(text(&o.stdout), "smtp_password\n");
    let o = r.run(&["secrets", "list", "--env", "staging"], None);
    assert_eq!(text(&o.stdout), "api_key\n");
    let o = r.run(&["secrets", "get", "smtp_password"], None);
    assert_eq!(
        o.stdout, b"v1",
        "stdout not a terminal: the exact value, final newline stripped from stdin"
    );
    // Setting the same value again leaves the file (and git) alone.
    let before = vault_files(r.path());
    let o = r.run(&["secrets", "set", "smtp_password"], Some("v1"));
    assert!(text(&o.stderr).contains("unchanged"), "{}", text(&o.stderr));
    assert_vault_unchanged(r.path(), &before);
    let o = r.run(
        &["secrets", "set", "multi", "--keep-newline"],
        Some("a\nb\n"),
    );
    assert!(o.status.success());
    assert_eq!(r.run(&["secrets", "get", "multi"], None).stdout, b"a\nb\n");
    // --config from elsewhere.
    let cfg = r.path().join("kiln.toml");
    let mut c = Command::new(KILN);
    c.args([
        "secrets",
        "get",
        "smtp_password",
        "--config",
        cfg.to_str().unwrap(),
    ])
    .env("KILN_PASSPHRASE_FILE", &r.pass_file)
    .current_dir("/");
    let o = c.output().unwrap();
    assert_eq!(o.stdout, b"v1", "{}", text(&o.stderr));
}

#[test]
fn the_value_is_never_taken_from_argv() {
    let r = Repo::empty();
    let o = r.run(&["secrets", "set", "name", "value-in-argv"], None);
    assert_eq!(code(&o), 2, "clap usage error");
    assert!(!r.path().join("secrets").exists());
}

#[test]
fn wrong_passphrase_exits_2_and_writes_nothing() {
    let r = Repo::new();
    assert!(r.run(&["secrets", "set", "a"], Some("1")).status.success());
    let wrong = r.path().join("keys/wrong");
    fs::write(&wrong, "not it\n").unwrap();
    let before = vault_files(r.path());
    for args in [
        vec!["secrets", "get", "a"],
        vec!["secrets", "list"],
        vec!["secrets", "set", "b"],
        vec!["secrets", "rekey"],
        vec!["secrets", "recovery-key"],
    ] {
        let mut c = r.cmd(&args);
        c.arg("--passphrase-file").arg(&wrong);
        let o = run_with_stdin(c, Some("2"));
        assert_eq!(code(&o), 2, "{args:?}: {}", text(&o.stderr));
        assert!(
            text(&o.stderr).contains("wrong passphrase"),
            "{args:?}: {}",
            text(&o.stderr)
        );
        assert!(o.stdout.is_empty());
    }
    assert_vault_unchanged(r.path(), &before);
}

#[test]
fn passphrase_command_and_its_failures() {
    let r = Repo::new();
    assert!(r.run(&["secrets", "set", "a"], Some("1")).status.success());
    let cmd = format!("cat '{}'", r.pass_file.display());
    let o = run_with_stdin(
        r.cmd(&["secrets", "get", "a", "--passphrase-command", &cmd]),
        None,
    );
    assert_eq!(o.stdout, b"1", "{}", text(&o.stderr));
    let o = run_with_stdin(
        r.cmd(&["secrets", "get", "a", "--passphrase-command", "exit 3"]),
        None,
    );
    assert_eq!(code(&o), 2);
    assert!(
        text(&o.stderr).contains("passphrase command failed"),
        "{}",
        text(&o.stderr)
    );
}

#[test]
fn without_a_passphrase_source_and_terminal_the_error_says_what_to_do() {
    if fs::OpenOptions::new().read(true).open("/dev/tty").is_ok() {
        eprintln!("skipping: a terminal is attached, kiln would prompt");
        return;
    }
    let r = Repo::new();
    assert!(r.run(&["secrets", "set", "a"], Some("1")).status.success());
    let o = run_with_stdin(r.cmd(&["secrets", "list"]), None);
    assert_eq!(code(&o), 2);
    assert!(
        text(&o.stderr).contains("--passphrase-file"),
        "{}",
        text(&o.stderr)
    );
}

#[test]
fn bad_names_and_corrupt_files_are_clear_errors() {
    let r = Repo::empty();
    let o = r.run(&["secrets", "set", "Bad-Name"], Some("x"));
    assert_eq!(code(&o), 2);
    assert!(
        text(&o.stderr).contains("invalid secret name `Bad-Name`"),
        "{}",
        text(&o.stderr)
    );
    assert!(
        !r.path().join("secrets").exists(),
        "refused before creating anything"
    );

    let r = Repo::new();
    assert!(
        r.run(&["secrets", "set", "db_password"], Some("x"))
            .status
            .success()
    );
    let f = r.path().join("secrets/production/db_password.age");
    let t = fs::read_to_string(&f).unwrap();
    let lines: Vec<&str> = t.lines().collect();
    fs::write(&f, lines[..lines.len() - 2].join("\n")).unwrap();
    let o = r.run(&["secrets", "get", "db_password"], None);
    assert_eq!(code(&o), 1);
    let err = text(&o.stderr);
    assert!(err.contains("`db_password`"), "{err}");
    assert!(
        err.contains(&format!("db_password.age:{}", lines.len() - 2)),
        "{err}"
    );
}

#[test]
fn edit_uses_a_private_temp_folder_and_removes_it() {
    let r = Repo::new();
    assert!(
        r.run(&["secrets", "set", "token"], Some("old-value"))
            .status
            .success()
    );
    let report = r.path().join("keys/editor-report");
    let editor = r.path().join("keys/editor.sh");
    fs::write(
        &editor,
        format!(
            "#!/bin/sh\nset -e\nf=\"$1\"\n{{ stat -c '%a' \"$f\"; stat -c '%a' \"$(dirname \"$f\")\"; cat \"$f\"; echo; echo \"$f\"; }} > '{}'\nprintf 'new-value\\n' > \"$f\"\n",
            report.display()
        ),
    )
    .unwrap();
    fs::set_permissions(&editor, fs::Permissions::from_mode(0o755)).unwrap();
    let mut c = r.cmd(&["secrets", "edit", "token"]);
    c.env("KILN_PASSPHRASE_FILE", &r.pass_file)
        .env("EDITOR", &editor);
    let o = run_with_stdin(c, None);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let rep = fs::read_to_string(&report).unwrap();
    let rep: Vec<&str> = rep.lines().collect();
    assert_eq!(rep[0], "600", "file mode");
    assert_eq!(rep[1], "700", "folder mode");
    assert_eq!(rep[2], "old-value", "the editor sees the current value");
    let edited = PathBuf::from(rep[3]);
    assert!(edited.starts_with(&r.tmp), "{edited:?} in TMPDIR");
    assert!(
        !edited.exists() && !edited.parent().unwrap().exists(),
        "temp file and folder removed"
    );
    assert_eq!(fs::read_dir(&r.tmp).unwrap().count(), 0);
    assert_eq!(
        r.run(&["secrets", "get", "token"], None).stdout,
        b"new-value"
    );
}

#[test]
fn rekey_keeps_values_and_retires_the_old_passphrase() {
    let r = Repo::new();
    assert!(
        r.run(&["secrets", "set", "a"], Some("alpha"))
            .status
            .success()
    );
    assert!(
        r.run(&["secrets", "set", "b", "--env", "staging"], Some("beta"))
            .status
            .success()
    );
    let new_pass = r.path().join("keys/new");
    fs::write(&new_pass, "another long passphrase\n").unwrap();
    let o = r.run(
        &[
            "secrets",
            "rekey",
            "--new-passphrase-file",
            new_pass.to_str().unwrap(),
        ],
        None,
    );
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(
        text(&o.stderr).contains("re-encrypted 2 secret(s)"),
        "{}",
        text(&o.stderr)
    );
    assert_eq!(
        code(&r.run(&["secrets", "get", "a"], None)),
        2,
        "old passphrase refused"
    );
    let get = |args: &[&str]| {
        let mut c = r.cmd(args);
        c.arg("--passphrase-file").arg(&new_pass);
        run_with_stdin(c, None).stdout
    };
    assert_eq!(get(&["secrets", "get", "a"]), b"alpha");
    assert_eq!(get(&["secrets", "get", "b", "--env", "staging"]), b"beta");
}

#[test]
fn recovery_key_unlocks_without_the_passphrase() {
    let r = Repo::new();
    assert!(
        r.run(&["secrets", "set", "a"], Some("alpha"))
            .status
            .success()
    );
    let o = r.run(&["secrets", "recovery-key"], None);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let sheet = text(&o.stdout);
    let key = sheet
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("AGE-SECRET-KEY-1"))
        .expect("the sheet shows the key")
        .to_owned();
    assert!(
        sheet.contains("age -d -i recovery.txt secrets/production/NAME.age"),
        "{sheet}"
    );
    let paper = r.path().join("keys/recovery.txt");
    fs::write(&paper, format!("{key}\n")).unwrap();
    let o = run_with_stdin(
        r.cmd(&["secrets", "get", "a", "--identity", paper.to_str().unwrap()]),
        None,
    );
    assert_eq!(o.stdout, b"alpha", "{}", text(&o.stderr));
    // The no-kiln path.
    if Command::new("age").arg("--version").output().is_ok() {
        let o = Command::new("age")
            .args(["-d", "-i"])
            .arg(&paper)
            .arg(r.path().join("secrets/production/a.age"))
            .output()
            .unwrap();
        assert_eq!(o.stdout, b"alpha", "{}", text(&o.stderr));
    } else {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "age is required in CI"
        );
    }
}

#[test]
fn import_ansible_vault_prints_the_mapping_and_stores_values() {
    let r = Repo::new();
    let pw = ansible_fixture("password.txt");
    let o = r.run(
        &[
            "import",
            "ansible-vault",
            ansible_fixture("inline_1_1.yml").to_str().unwrap(),
            ansible_fixture("inline_1_2.yml").to_str().unwrap(),
            ansible_fixture("whole_file.yml").to_str().unwrap(),
            "--vault-password-file",
            pw.to_str().unwrap(),
            "--env",
            "staging",
        ],
        None,
    );
    assert!(o.status.success(), "{}", text(&o.stderr));
    let out = text(&o.stdout);
    for (loc, name) in [
        ("inline_1_1.yml:3", "db_password"),
        ("inline_1_1.yml:10", "api_token"),
        ("inline_1_2.yml:2", "grafana_admin_password"),
        ("whole_file.yml (vault file, line 1)", "smtp_password"),
    ] {
        assert!(
            out.lines()
                .any(|l| l.contains(loc) && l.contains(&format!("secrets/staging/{name}.age"))),
            "{loc} -> {name} in:\n{out}"
        );
    }
    assert!(
        !out.contains("hunter2-db-password") && !out.contains("prod-secret-42"),
        "{out}"
    );
    let get = |n: &str| {
        r.run(&["secrets", "get", n, "--env", "staging"], None)
            .stdout
    };
    assert_eq!(get("db_password"), b"hunter2-db-password");
    assert_eq!(get("grafana_admin_password"), b"prod-secret-42");
    assert_eq!(get("smtp_password"), b"mail pass: 9");

    // Again: unchanged. A wrong password: exit 2, nothing written.
    let again = r.run(
        &[
            "import",
            "ansible-vault",
            ansible_fixture("inline_1_2.yml").to_str().unwrap(),
            "--vault-password-file",
            pw.to_str().unwrap(),
            "--env",
            "staging",
        ],
        None,
    );
    assert!(
        text(&again.stdout).contains("(unchanged)"),
        "{}",
        text(&again.stdout)
    );
    let wrong = r.path().join("keys/wrong-ansible");
    fs::write(&wrong, "nope\n").unwrap();
    let before = vault_files(r.path());
    let o = r.run(
        &[
            "import",
            "ansible-vault",
            ansible_fixture("inline_1_2.yml").to_str().unwrap(),
            "--vault-password-file",
            wrong.to_str().unwrap(),
        ],
        None,
    );
    assert_eq!(code(&o), 2);
    assert!(
        text(&o.stderr).contains("inline_1_2.yml:3: wrong vault password"),
        "{}",
        text(&o.stderr)
    );
    assert_vault_unchanged(r.path(), &before);

    // A variable name kiln cannot use: refused, file:line named.
    let bad = r.path().join("keys/bad.yml");
    fs::write(
        &bad,
        fs::read_to_string(ansible_fixture("inline_1_2.yml"))
            .unwrap()
            .replace("grafana_admin_password:", "GrafanaPass:"),
    )
    .unwrap();
    let o = r.run(
        &[
            "import",
            "ansible-vault",
            bad.to_str().unwrap(),
            "--vault-password-file",
            pw.to_str().unwrap(),
        ],
        None,
    );
    assert_eq!(code(&o), 2);
    assert!(
        text(&o.stderr).contains("bad.yml:2: variable `GrafanaPass`"),
        "{}",
        text(&o.stderr)
    );
}

/// A planted secret value and passphrase go through every secrets/import command; they
/// must appear nowhere except `secrets get`'s stdout (and inside the encrypted vault).
#[test]
fn poison_secret_never_leaks() {
    let r = Repo::new();
    let mut outputs: Vec<(String, Output)> = vec![];
    let mut run = |label: &str, args: &[&str], stdin: Option<&str>| {
        let o = r.run(args, stdin);
        outputs.push((label.to_owned(), o));
    };
    // An ansible file whose value is the poison, when the real ansible-vault is here.
    let ansible_file = r.path().join("keys/poison_vars.yml");
    let made = Command::new("ansible-vault")
        .args([
            "encrypt_string",
            "--name",
            "poisoned_var",
            POISON_VALUE,
            "--vault-password-file",
        ])
        .arg(ansible_fixture("password.txt"))
        .output()
        .ok()
        .filter(|o| o.status.success());
    match made {
        Some(o) => fs::write(&ansible_file, o.stdout).unwrap(),
        None => assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "ansible-vault is required in CI"
        ),
    }
    let editor = r.path().join("keys/editor.sh");
    fs::write(
        &editor,
        "#!/bin/sh\nprintf 'edited-%s' \"$(cat \"$1\")\" > \"$1\"\n",
    )
    .unwrap();
    fs::set_permissions(&editor, fs::Permissions::from_mode(0o755)).unwrap();
    let new_pass = r.path().join("keys/new");
    fs::write(&new_pass, format!("{POISON_PASS}-2\n")).unwrap();

    run("set", &["secrets", "set", "planted"], Some(POISON_VALUE));
    run(
        "set again",
        &["secrets", "set", "planted"],
        Some(POISON_VALUE),
    );
    run("list", &["secrets", "list"], None);
    run(
        "get other env",
        &["secrets", "get", "planted", "--env", "staging"],
        None,
    );
    run("get bad name", &["secrets", "get", "Planted"], None);
    run("generate", &["secrets", "generate"], None);
    run("recovery-key", &["secrets", "recovery-key"], None);
    {
        let mut c = r.cmd(&["secrets", "edit", "planted"]);
        c.env("KILN_PASSPHRASE_FILE", &r.pass_file)
            .env("EDITOR", &editor);
        outputs.push(("edit".into(), run_with_stdin(c, None)));
    }
    {
        let mut c = r.cmd(&["secrets", "set", "planted", "--passphrase-file"]);
        c.arg(&new_pass);
        outputs.push((
            "set wrong passphrase".into(),
            run_with_stdin(c, Some(POISON_VALUE)),
        ));
    }
    if ansible_file.exists() {
        let pw = ansible_fixture("password.txt");
        let mut c = r.cmd(&[
            "import",
            "ansible-vault",
            ansible_file.to_str().unwrap(),
            "--vault-password-file",
        ]);
        c.arg(&pw).env("KILN_PASSPHRASE_FILE", &r.pass_file);
        outputs.push(("import".into(), run_with_stdin(c, None)));
        let mut c = r.cmd(&[
            "import",
            "ansible-vault",
            ansible_file.to_str().unwrap(),
            "--vault-password-file",
        ]);
        c.arg(&pw).env("KILN_PASSPHRASE_FILE", &r.pass_file);
        outputs.push(("import again".into(), run_with_stdin(c, None)));
    }
    {
        let mut c = r.cmd(&["secrets", "rekey", "--new-passphrase-file"]);
        c.arg(&new_pass).env("KILN_PASSPHRASE_FILE", &r.pass_file);
        outputs.push(("rekey".into(), run_with_stdin(c, None)));
    }
    // Corrupt the vault copy of the value and read it: the error must not leak either.
    let get_new = |name: &str| {
        let mut c = r.cmd(&["secrets", "get", name, "--passphrase-file"]);
        c.arg(&new_pass);
        run_with_stdin(c, None)
    };
    let get = get_new("planted");
    assert_eq!(
        text(&get.stdout),
        format!("edited-{POISON_VALUE}"),
        "{}",
        text(&get.stderr)
    );
    assert!(!text(&get.stderr).contains(POISON_VALUE));
    if ansible_file.exists() {
        assert_eq!(text(&get_new("poisoned_var").stdout), POISON_VALUE);
    }
    outputs.push((
        "get stderr only".into(),
        Output {
            stdout: vec![],
            ..get
        },
    ));

    for (label, o) in &outputs {
        for (stream, bytes) in [("stdout", &o.stdout), ("stderr", &o.stderr)] {
            let t = text(bytes);
            assert!(
                !t.contains(POISON_VALUE),
                "{label}: value leaked on {stream}:\n{t}"
            );
            assert!(
                !t.contains(POISON_PASS),
                "{label}: passphrase leaked on {stream}:\n{t}"
            );
        }
    }
    // Every command above that should have worked did.
    for (label, o) in &outputs {
        let expect_ok = !matches!(
            label.as_str(),
            "get other env" | "get bad name" | "set wrong passphrase"
        );
        assert_eq!(
            o.status.success(),
            expect_ok,
            "{label}: {}",
            text(&o.stderr)
        );
    }
    // No file outside the vault's .age files holds it; no temp file is left anywhere.
    for (path, content) in snapshot(r.path()) {
        let rel = path.strip_prefix(r.path()).unwrap();
        if rel.starts_with("keys") {
            continue; // the test's own inputs
        }
        let t = String::from_utf8_lossy(&content);
        assert!(
            !t.contains(POISON_VALUE),
            "{} holds the value",
            rel.display()
        );
        assert!(
            !t.contains(POISON_PASS),
            "{} holds the passphrase",
            rel.display()
        );
        let in_vault = rel.starts_with("secrets")
            && (rel.extension().is_some_and(|e| e == "age") || rel.ends_with("recipients.txt"));
        assert!(
            in_vault || rel == Path::new("kiln.toml"),
            "unexpected file {}",
            rel.display()
        );
    }
    assert_eq!(
        fs::read_dir(&r.tmp).unwrap().count(),
        0,
        "nothing left in TMPDIR"
    );
}

#[test]
fn an_environment_missing_from_kiln_toml_is_refused() {
    let r = Repo::new();
    let o = r.run(&["secrets", "set", "a", "--env", "prod"], Some("x"));
    assert_eq!(code(&o), 2);
    let err = text(&o.stderr);
    assert!(err.contains("environment `prod` is not declared"), "{err}");
    assert!(err.contains("production, staging"), "{err}");
    assert!(!r.path().join("secrets/prod").exists());
    let o = r.run(&["secrets", "set", "a", "--env", "staging"], Some("x"));
    assert!(o.status.success(), "{}", text(&o.stderr));
}

#[test]
fn an_executable_vault_password_file_is_run_like_ansible_does() {
    let r = Repo::new();
    let script = r.path().join("keys/vault-pass.sh");
    fs::write(&script, "#!/bin/sh\necho kiln-test-password\n").unwrap();
    fs::set_permissions(&script, fs::Permissions::from_mode(0o700)).unwrap();
    let o = r.run(
        &[
            "import",
            "ansible-vault",
            ansible_fixture("inline_1_2.yml").to_str().unwrap(),
            "--vault-password-file",
            script.to_str().unwrap(),
        ],
        None,
    );
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert_eq!(
        r.run(&["secrets", "get", "grafana_admin_password"], None)
            .stdout,
        b"prod-secret-42"
    );
}

#[test]
fn identity_takes_precedence_over_a_passphrase_file_in_the_environment() {
    let r = Repo::new();
    assert!(
        r.run(&["secrets", "set", "a"], Some("alpha"))
            .status
            .success()
    );
    let o = r.run(&["secrets", "recovery-key"], None);
    let key = text(&o.stdout)
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("AGE-SECRET-KEY-1"))
        .unwrap()
        .to_owned();
    let paper = r.path().join("keys/recovery.txt");
    fs::write(&paper, key).unwrap();
    // KILN_PASSPHRASE_FILE points at a wrong passphrase: --identity wins.
    let wrong = r.path().join("keys/wrong");
    fs::write(&wrong, "wrong wrong\n").unwrap();
    let mut c = r.cmd(&["secrets", "get", "a", "--identity", paper.to_str().unwrap()]);
    c.env("KILN_PASSPHRASE_FILE", &wrong);
    let o = run_with_stdin(c, None);
    assert_eq!(o.stdout, b"alpha", "{}", text(&o.stderr));
}

#[test]
fn generate_creates_what_the_configuration_needs_once() {
    let r = Repo::new();
    let o = r.run(&["secrets", "generate"], None);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let created: Vec<String> = text(&o.stdout)
        .lines()
        .map(|l| l.trim_start_matches("created ").to_owned())
        .collect();
    assert!(created.contains(&"wireguard_web".to_owned()), "{created:?}");
    assert!(
        created.contains(&"wireguard_web_public".to_owned()),
        "{created:?}"
    );
    let list = text(&r.run(&["secrets", "list"], None).stdout);
    assert_eq!(list.lines().collect::<Vec<_>>(), {
        let mut c = created.clone();
        c.sort();
        c
    });
    let before = vault_files(r.path());
    let again = r.run(&["secrets", "generate"], None);
    assert!(again.status.success());
    assert!(again.stdout.is_empty(), "{}", text(&again.stdout));
    assert!(
        text(&again.stderr).contains("nothing to generate"),
        "{}",
        text(&again.stderr)
    );
    assert_vault_unchanged(r.path(), &before);
    // A WireGuard private key: base64 of 32 clamped bytes.
    let private = r.run(&["secrets", "get", "wireguard_web"], None).stdout;
    assert_eq!(private.len(), 44, "{}", text(&private));
}

/// How the common mistakes render: reviewed once, then frozen. Paths are relative to the
/// repository so the text (and miette's wrapping) is the same wherever the test runs.
#[test]
#[allow(clippy::vec_init_then_push)] // one case per push reads best
fn error_messages_render_stably() {
    let r = Repo::new();
    assert!(
        r.run(&["secrets", "set", "db_password"], Some("x"))
            .status
            .success()
    );
    fs::write(r.path().join("keys/wrong"), "not the passphrase\n").unwrap();
    // Group/world-readable whatever the umask: the warning is part of the snapshot.
    fs::set_permissions(
        r.path().join("keys/wrong"),
        fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    let vars = fs::read_to_string(ansible_fixture("inline_1_2.yml")).unwrap();
    fs::write(r.path().join("keys/vars.yml"), &vars).unwrap();
    fs::write(
        r.path().join("keys/bad.yml"),
        vars.replace("grafana_admin_password:", "GrafanaPass:"),
    )
    .unwrap();
    fs::copy(
        ansible_fixture("password.txt"),
        r.path().join("keys/ansible-pass"),
    )
    .unwrap();
    let mut cases: Vec<(&str, Output)> = vec![];
    cases.push((
        "wrong passphrase",
        run_with_stdin(
            r.cmd(&[
                "secrets",
                "get",
                "db_password",
                "--passphrase-file",
                "keys/wrong",
            ]),
            None,
        ),
    ));
    cases.push(("missing secret", r.run(&["secrets", "get", "nope"], None)));
    cases.push((
        "invalid name",
        r.run(&["secrets", "set", "Bad.Name"], Some("x")),
    ));
    cases.push((
        "unknown environment",
        r.run(&["secrets", "list", "--env", "prod"], None),
    ));
    cases.push((
        "ansible wrong password",
        r.run(
            &[
                "import",
                "ansible-vault",
                "keys/vars.yml",
                "--vault-password-file",
                "keys/wrong",
            ],
            None,
        ),
    ));
    cases.push((
        "ansible bad variable name",
        r.run(
            &[
                "import",
                "ansible-vault",
                "keys/bad.yml",
                "--vault-password-file",
                "keys/ansible-pass",
            ],
            None,
        ),
    ));
    let f = r.path().join("secrets/production/db_password.age");
    let t = fs::read_to_string(&f).unwrap();
    let lines: Vec<&str> = t.lines().collect();
    fs::write(&f, lines[..lines.len() - 2].join("\n")).unwrap();
    cases.push((
        "truncated secret",
        r.run(&["secrets", "get", "db_password"], None),
    ));

    let mut all = String::new();
    for (label, o) in &cases {
        all.push_str(&format!(
            "--- {label} (exit {})\n{}\n",
            code(o),
            text(&o.stderr)
        ));
    }
    assert!(!all.contains(r.path().to_str().unwrap()), "{all}");
    // age adds a random-length "grease" stanza, so the file's length (and the line where a
    // truncated copy ends) varies: check it, then freeze the rest.
    let cut_line = format!("db_password.age:{}:", lines.len() - 2);
    assert!(all.contains(&cut_line), "{all}");
    let all = all.replace(&cut_line, "db_password.age:[LINE]:");
    insta::assert_snapshot!(all);
}

/// A real crash: `kiln secrets rekey` killed (SIGKILL) at various moments. Whatever the
/// moment, one of the two passphrases opens the vault and every value is intact.
#[test]
fn a_killed_rekey_leaves_every_secret_readable() {
    let values: Vec<(String, String)> = (0..6)
        .map(|i| (format!("s{i}"), format!("value-{i}")))
        .collect();
    let new_pass = "the next passphrase";
    for delay_ms in [0u64, 20, 80, 250, 600, 1200] {
        let r = Repo::new();
        {
            let v = kiln_secrets::Vault::open_with(
                r.path(),
                "production",
                kiln_secrets::Unlock::Passphrase(kiln_secrets::Secret::new(POISON_PASS)),
                FAST_LOG_N,
            )
            .unwrap();
            for (n, val) in &values {
                v.set(n, &kiln_secrets::Secret::new(val.as_str())).unwrap();
            }
        }
        let new_file = r.path().join("keys/new");
        fs::write(&new_file, format!("{new_pass}\n")).unwrap();
        let mut c = r.cmd(&["secrets", "rekey", "--new-passphrase-file", "keys/new"]);
        c.env("KILN_PASSPHRASE_FILE", &r.pass_file)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let mut child = c.spawn().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(delay_ms));
        let _ = child.kill();
        let _ = child.wait();

        let mut opened = None;
        for p in [POISON_PASS, new_pass] {
            let v = kiln_secrets::Vault::open_with(
                r.path(),
                "production",
                kiln_secrets::Unlock::Passphrase(kiln_secrets::Secret::new(p)),
                FAST_LOG_N,
            );
            if let Ok(v) = v {
                opened = Some(v);
                break;
            }
        }
        let v = opened
            .unwrap_or_else(|| panic!("killed after {delay_ms} ms: no passphrase opens the vault"));
        for (n, val) in &values {
            let got = v
                .get(n)
                .unwrap_or_else(|e| panic!("killed after {delay_ms} ms: {n}: {e}"));
            assert_eq!(got.expose(), val, "killed after {delay_ms} ms");
        }
    }
}
