//! `kiln init`: the commented starter repository (kiln.toml with the `#:schema` line,
//! .gitignore, secrets/README.md, the JSON Schema editors use) and writing it without ever
//! overwriting a file: every path is checked first, so a refusal writes nothing.

use std::io::Write;
use std::path::{Path, PathBuf};

use kiln_model::reference;

/// Why the starter repository was not written.
#[derive(Debug, thiserror::Error)]
pub enum InitError {
    #[error("{} already exist{}; nothing was written", list(.existing), if .existing.len() == 1 { "s" } else { "" })]
    Exists { existing: Vec<PathBuf> },
    #[error("cannot write {}: {source}", .path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl InitError {
    pub fn is_bad_input(&self) -> bool {
        matches!(self, InitError::Exists { .. })
    }
    pub fn hint(&self) -> Option<&'static str> {
        match self {
            InitError::Exists { .. } => {
                Some("kiln init never overwrites files: pick an empty folder, or move these away")
            }
            InitError::Write { .. } => None,
        }
    }
}

fn list(paths: &[PathBuf]) -> String {
    paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The starter repository for `dir`: (path relative to `dir`, content). `domain: None`
/// writes a placeholder domain with a note to replace it.
pub fn starter(
    dir: &Path,
    domain: Option<&str>,
    email: Option<&str>,
) -> Vec<(&'static str, String)> {
    let name = project_name(dir);
    let d = domain.unwrap_or("example.org");
    let email = email
        .map(str::to_owned)
        .unwrap_or_else(|| format!("admin@{d}"));
    starter_files(&name, d, &email, domain.is_none())
}

/// Writes `files` under `dir`, refusing (and writing nothing) when any of them exists.
pub fn write(dir: &Path, files: &[(&'static str, String)]) -> Result<(), InitError> {
    let existing: Vec<PathBuf> = files
        .iter()
        .map(|(rel, _)| dir.join(rel))
        .filter(|p| p.exists())
        .collect();
    if !existing.is_empty() {
        return Err(InitError::Exists { existing });
    }
    for (rel, content) in files {
        let path = dir.join(rel);
        write_new(&path, content).map_err(|source| InitError::Write { path, source })?;
    }
    Ok(())
}

/// Creates `path` (and its parents) with `content`; fails if it exists.
fn write_new(path: &Path, content: &str) -> std::io::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)?;
    f.write_all(content.as_bytes())?;
    f.sync_all()
}

/// A valid project name from the folder name (`My Infra` → `my-infra`).
fn project_name(dir: &Path) -> String {
    let base = std::path::absolute(dir)
        .ok()
        .and_then(|p| {
            p.components()
                .rfind(|c| matches!(c, std::path::Component::Normal(_)))
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
        })
        .unwrap_or_default();
    let mut name: String = base
        .to_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_lowercase() || c.is_ascii_digit() {
                c
            } else {
                '-'
            }
        })
        .collect();
    name = name
        .split('-')
        .filter(|p| !p.is_empty())
        .collect::<Vec<_>>()
        .join("-");
    if !name.starts_with(|c: char| c.is_ascii_lowercase()) {
        name = format!("infra-{name}").trim_end_matches('-').to_string();
    }
    name.truncate(40);
    name.trim_end_matches('-').to_string()
}

fn starter_files(
    name: &str,
    domain: &str,
    email: &str,
    placeholder: bool,
) -> Vec<(&'static str, String)> {
    let domain_note = if placeholder {
        "# REPLACE: the domain you own (or run `kiln init --domain your-domain.org`)"
    } else {
        "# the domain you own: services live on its subdomains"
    };
    // An editor resolves the `#:schema` path relative to kiln.toml.
    let kiln_toml = format!("{}\n{STARTER}", reference::schema_directive())
        .replace("{name}", name)
        .replace("{domain}", domain)
        .replace("{email}", email)
        .replace("{domain_note}", domain_note);
    vec![
        ("kiln.toml", kiln_toml),
        (".gitignore", GITIGNORE.to_string()),
        ("secrets/README.md", SECRETS_README.to_string()),
        (
            reference::REPOSITORY_SCHEMA_PATH,
            reference::config_schema_json(),
        ),
    ]
}

const STARTER: &str = r#"# kiln.toml: your whole infrastructure, described once.
#   kiln check   validates this file (every error with its line and a hint)
#   kiln dns     the DNS records to create at your registrar
#   kiln show    what runs where, and at which URL
# Secrets are never written here: they live encrypted in secrets/ (see secrets/README.md).

[project]
name = "{name}"
domain = "{domain}"   {domain_note}
acme_email = "{email}"   # Let's Encrypt warns here before a certificate expires: read it

# ── Environments: the same roles on different servers ──────────────────────────────────
# A host's role (here "services") is shared by every environment, so staging and the lab
# mirror production. Hosts get DNS names <role>.<domain>.

[environments.production]
domain = "{domain}"
# Start with Let's Encrypt's staging CA (untrusted certificates, no rate limits); switch to
# "letsencrypt" once everything works. The lab uses kiln's "internal" CA.
acme_ca = "letsencrypt-staging"   # letsencrypt | letsencrypt-staging | internal
apex_host = "services"            # {domain} itself points to this host

[environments.production.hosts.services]
address = "192.0.2.10"            # REPLACE: the server's public IPv4 (192.0.2.x is a placeholder)
# address6 = "2001:db8::10"       # its IPv6, if it has one
admin_user = "admin"              # the account you SSH in with; it needs sudo (never root)
# ssh_port = 22
# os = "debian13"                 # rhel9 | rhel10 | debian12 | debian13
# Pinned SSH host keys: `kiln trust services` fetches them and shows their fingerprints so
# you can compare with your provider's console. Until then kiln refuses to connect.
# host_keys = ["ssh-ed25519 AAAA..."]

# Throwaway servers on this machine, to rehearse before touching production.
[environments.lab]
domain = "{name}.test"
acme_ca = "internal"
apex_host = "services"

[environments.lab.hosts.services]
address = "10.77.0.11"
admin_user = "kiln"
os = "debian13"

# ── Services: a catalog kind, the role of the host it runs on, a pinned version ─────────
# Kinds: postgres, synapse, nextcloud, hedgedoc, monitoring, container.
# Each is served at https://<subdomain>.<environment domain>.

[services.postgres]               # one database server for the services of its host
kind = "postgres"
host = "services"
version = "17"

[services.hedgedoc]
kind = "hedgedoc"
host = "services"
subdomain = "hdoc"
version = "1.10.3"
options = { database = "postgres" }

# [services.synapse]              # Matrix, as @you:<environment domain>, with sliding sync
# kind = "synapse"
# host = "services"
# subdomain = "matrix"
# version = "v1.162.0"
# options = { database = "postgres" }
#
# [services.blog]                 # any container serving HTTP on one port
# kind = "container"
# host = "services"
# subdomain = "blog"
# version = "1.27"
# options = { image = "docker.io/library/nginx", port = 80 }

# ── Backups: off-site, to an S3 bucket with Object Lock ─────────────────────────────────
# [backups]
# schedule = "*-*-* 03:00:00"     # systemd OnCalendar
# object_lock_days = 30           # a compromised server cannot delete locked backups
# retention = { daily = 7, weekly = 4, monthly = 12 }
#
# [backups.repository]
# endpoint = "https://s3.your-provider.example"
# bucket = "{name}-backups"
# prefix = "{env}"                # one repository per environment
#
# [backups.credentials]           # names of secrets in the vault, never values
# server = "backup_server"         # write and read, no delete: the only one sent to servers
# admin = "backup_admin"           # init, forget, lifecycle: stays on the laptop
# readonly = "backup_readonly"     # drills and the runbook's paper page
# repository_password = "backup_repository_password"

# ── Monitoring: where alerts go ───────────────────────────────────────────────────────
# [services.monitoring]
# kind = "monitoring"
# host = "services"
# subdomain = "grafana"
# version = "10.2.2"
#
# [monitoring]
# host = "services"
# alert_email = "{email}"
# alert_webhook = "https://ntfy.sh/<your-topic>"
"#;

const GITIGNORE: &str = "# kiln: local state and anything decrypted never goes to git.
# secrets/ holds only encrypted files: commit it, and .kiln/kiln.schema.json (editors read it).
/.kiln/*
!/.kiln/kiln.schema.json
*.decrypted
*.plain
*.tmp
";

const SECRETS_README: &str = "# secrets/

Encrypted secrets, one age file per secret: `secrets/<environment>/<name>.age`, plus
`recipients.txt` (public keys only). Everything here is safe to commit: git then keeps the
history of which secret changed when, and a new laptop needs only this repository and your
passphrase or recovery key.

Never put a decrypted secret in this folder.

    kiln secrets generate --env production   create every secret the configuration needs
    kiln secrets set NAME --env production   store one you were given (e.g. S3 keys)
";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_is_written_when_one_file_exists() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(".gitignore"), "mine").unwrap();
        let files = starter(dir.path(), None, None);
        let err = write(dir.path(), &files).unwrap_err();
        assert!(err.is_bad_input(), "{err}");
        assert!(
            err.to_string()
                .ends_with(".gitignore already exists; nothing was written"),
            "{err}"
        );
        assert!(!dir.path().join("kiln.toml").exists());
        assert_eq!(
            std::fs::read_to_string(dir.path().join(".gitignore")).unwrap(),
            "mine"
        );
    }

    #[test]
    fn project_names_are_valid_names() {
        assert_eq!(project_name(Path::new("/tmp/My Infra")), "my-infra");
        assert_eq!(
            project_name(Path::new("/tmp/2024_servers")),
            "infra-2024-servers"
        );
        assert_eq!(project_name(Path::new("/tmp/ergaster")), "ergaster");
    }

    #[test]
    fn the_starter_points_editors_at_the_schema_it_writes() {
        let files = starter_files("a", "example.org", "admin@example.org", true);
        let toml = &files[0].1;
        let first = toml.lines().next().unwrap_or_default();
        let path = first.strip_prefix("#:schema ./").unwrap_or_default();
        assert_eq!(path, reference::REPOSITORY_SCHEMA_PATH, "{first}");
        assert!(
            files
                .iter()
                .any(|(rel, content)| *rel == path && *content == reference::config_schema_json())
        );
        let gitignore = &files[1].1;
        assert!(gitignore.contains(&format!("!/{path}")), "{gitignore}");
    }
}
