//! The reverse proxy's certificates, as the host holds them: read from the proxy's own
//! storage (Caddy's `certificates/<issuer>/<name>/<name>.crt` folders, Traefik's
//! `acme.json`), never requested or changed by kiln. The proxy obtains them by ACME; kiln
//! observes which names are covered, by whom and until when, and, for a name that is not,
//! the proxy's last error line about it (from the container's log), so that `kiln apply`
//! reports a certificate as pending with the reason and `kiln status` shows it.
//!
//! After an apply that changed something, [`settle`] waits a little for the certificates
//! still missing: until each is issued or the proxy has logged an error naming it.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use serde::{Deserialize, Serialize};

use crate::resource::{CaKind, CertificateStore, Certificates};
use crate::system::Target;

/// How long an apply waits for missing certificates (and for the proxy's word on them).
pub const SETTLE_WAIT: Duration = Duration::from_secs(30);
/// An apply waits at least this long before it takes an error line as the answer.
const SETTLE_MIN: Duration = Duration::from_secs(3);
/// Between two looks at the storage.
const POLL: Duration = Duration::from_millis(500);
/// Lines of the proxy's log searched for an error about a name.
const LOG_LINES: &str = "400";
/// An error line longer than this is cut (an ACME problem document can be long).
const MAX_ERROR: usize = 400;

/// A certificate the proxy holds for a name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Issued {
    /// The issuer's common name (`Pebble Intermediate CA 1f2e3d`, `R11`, `(STAGING) …`).
    pub issuer: String,
    /// Expiry, Unix seconds.
    pub not_after: i64,
    /// Issued by Let's Encrypt's staging CA (its issuers' names start with `(STAGING)`).
    pub staging: bool,
}

/// One name of the route table, as observed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertificateState {
    pub name: String,
    /// The latest-expiring certificate that covers the name, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issued: Option<Issued>,
    /// Some certificate for the name came from Let's Encrypt's staging CA (kept by the
    /// proxy beside the production one, or the only one).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub staging_seen: bool,
    /// Not issued (or expired): the proxy's last log line about the name, when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl CertificateState {
    /// Issued and not expired at `now` (Unix seconds).
    pub fn valid_at(&self, now: i64) -> bool {
        self.issued.as_ref().is_some_and(|i| i.not_after > now)
    }
}

/// Now, in Unix seconds: the clock certificates are valid against.
pub use crate::system::unix_now as now;

/// Every watched name's certificate as the storage holds it, with the proxy's last error
/// line for those not validly covered.
pub fn observe(target: &mut Target, watch: &Certificates) -> Vec<CertificateState> {
    let mut states = read_store(target, watch);
    let t = now();
    if states.iter().any(|s| !s.valid_at(t)) {
        let log = proxy_log(target, &watch.container, None);
        attach_errors(&mut states, &log, t);
    }
    states
}

/// After an apply: waits up to `wait` for the names not yet validly covered, until each is
/// issued or the proxy has logged an error about it since `since`.
pub fn settle(
    target: &mut Target,
    watch: &Certificates,
    since: SystemTime,
    wait: Duration,
) -> (Vec<CertificateState>, Duration) {
    let start = Instant::now();
    loop {
        let mut states = read_store(target, watch);
        let t = now();
        if states.iter().all(|s| s.valid_at(t)) {
            return (states, start.elapsed());
        }
        let log = proxy_log(target, &watch.container, Some(since));
        attach_errors(&mut states, &log, t);
        let undecided = states.iter().any(|s| !s.valid_at(t) && s.error.is_none());
        // A reload cancels the old configuration's orders, and those say so at once:
        // the new configuration's word on a name comes a moment later.
        let decided = !undecided && start.elapsed() >= SETTLE_MIN.min(wait);
        if decided || start.elapsed() >= wait {
            if undecided {
                // Nothing new said since the apply: the last word of the proxy about it.
                let log = proxy_log(target, &watch.container, None);
                attach_errors(&mut states, &log, t);
            }
            return (states, start.elapsed());
        }
        std::thread::sleep(POLL);
    }
}

/// The warning `kiln plan` gives before an environment's proxy asks Let's Encrypt's
/// production CA for names its staging CA never issued (a failing production order counts
/// against strict rate limits; the staging CA is where a setup is proven first).
pub fn staging_warning(watch: &Certificates, states: &[CertificateState]) -> Option<String> {
    if watch.ca != CaKind::Letsencrypt {
        return None;
    }
    let t = now();
    let unproven: Vec<&str> = states
        .iter()
        .filter(|s| !s.staging_seen && !production_valid(s, t))
        .map(|s| s.name.as_str())
        .collect();
    if unproven.is_empty() {
        return None;
    }
    Some(format!(
        "the proxy asks Let's Encrypt's production CA for {} name(s) that its staging CA never issued: {}\n  a failing order there counts against production's rate limits (5 failed validations per name per hour, then a wait)\n  hint: apply with acme_ca = \"letsencrypt-staging\" first, check `kiln status` shows the names issued, then switch to \"letsencrypt\"",
        unproven.len(),
        unproven.join(", ")
    ))
}

/// Covered by a valid certificate of a production CA.
fn production_valid(s: &CertificateState, now: i64) -> bool {
    s.valid_at(now) && s.issued.as_ref().is_some_and(|i| !i.staging)
}

fn read_store(target: &Target, watch: &Certificates) -> Vec<CertificateState> {
    let found: Vec<(Vec<String>, Issued)> = match &watch.store {
        CertificateStore::Caddy { dir } => caddy_certificates(&target.path(Path::new(dir))),
        CertificateStore::Traefik { acme_json } => {
            traefik_certificates(&target.path(Path::new(acme_json)))
        }
    };
    watch
        .names
        .iter()
        .map(|name| {
            let covering = found
                .iter()
                .filter(|(names, _)| names.iter().any(|n| n.eq_ignore_ascii_case(name)))
                .map(|(_, i)| i);
            let staging_seen = covering.clone().any(|i| i.staging);
            // Production before staging, then the latest expiry.
            let issued = covering.max_by_key(|i| (!i.staging, i.not_after)).cloned();
            CertificateState {
                name: name.clone(),
                issued,
                staging_seen,
                error: None,
            }
        })
        .collect()
}

/// `<dir>/<issuer>/<name>/<name>.crt`: every certificate Caddy keeps, with its names.
fn caddy_certificates(dir: &Path) -> Vec<(Vec<String>, Issued)> {
    let mut out = vec![];
    let Ok(issuers) = std::fs::read_dir(dir) else {
        return out;
    };
    for issuer in issuers.flatten() {
        let Ok(names) = std::fs::read_dir(issuer.path()) else {
            continue;
        };
        for name in names.flatten() {
            let file: PathBuf = name
                .path()
                .join(format!("{}.crt", name.file_name().to_string_lossy()));
            if let Ok(pem) = std::fs::read(&file)
                && let Some(c) = parse_pem(&pem)
            {
                out.push(c);
            }
        }
    }
    out
}

/// Traefik's `acme.json`: `{resolver: {Certificates: [{domain, certificate: base64 PEM}]}}`.
fn traefik_certificates(file: &Path) -> Vec<(Vec<String>, Issued)> {
    use base64::Engine as _;
    let Ok(bytes) = std::fs::read(file) else {
        return vec![];
    };
    let Ok(json) = serde_json::from_slice::<serde_json::Value>(&bytes) else {
        return vec![];
    };
    let mut out = vec![];
    for resolver in json.as_object().into_iter().flat_map(|o| o.values()) {
        let certificates = resolver
            .get("Certificates")
            .and_then(|c| c.as_array())
            .into_iter()
            .flatten();
        for c in certificates {
            if let Some(pem) = c
                .get("certificate")
                .and_then(|p| p.as_str())
                .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
                && let Some(found) = parse_pem(&pem)
            {
                out.push(found);
            }
        }
    }
    out
}

/// The first certificate of a PEM chain: its DNS names and issuer.
fn parse_pem(pem: &[u8]) -> Option<(Vec<String>, Issued)> {
    let (_, pem) = x509_parser::pem::parse_x509_pem(pem).ok()?;
    let cert = pem.parse_x509().ok()?;
    let issuer = cert
        .issuer()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .unwrap_or("")
        .to_owned();
    let mut names: Vec<String> = vec![];
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for n in &san.value.general_names {
            if let x509_parser::extensions::GeneralName::DNSName(d) = n {
                names.push((*d).to_owned());
            }
        }
    }
    if names.is_empty()
        && let Some(cn) = cert
            .subject()
            .iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok())
    {
        names.push(cn.to_owned());
    }
    Some((
        names,
        Issued {
            staging: issuer.starts_with("(STAGING)"),
            issuer,
            not_after: cert.validity().not_after.timestamp(),
        },
    ))
}

/// The proxy container's log (both streams), the last [`LOG_LINES`] lines, or those since
/// `since`. Empty when there is no such container (not started yet, or outside a real root).
fn proxy_log(target: &mut Target, container: &str, since: Option<SystemTime>) -> String {
    if !target.is_real_root() {
        return String::new();
    }
    // As a duration (`12s`): podman reads those everywhere, whatever its time formats.
    let since = since.map(|s| {
        let ago = SystemTime::now().duration_since(s).unwrap_or_default();
        format!("{}s", ago.as_secs() + 1)
    });
    let mut args = vec!["podman", "logs", "--tail", LOG_LINES];
    if let Some(s) = &since {
        args.extend(["--since", s]);
    }
    args.push(container);
    match target.run(&args) {
        Ok(out) => format!("{}\n{}", out.stdout, out.stderr),
        Err(_) => String::new(),
    }
}

/// For every name not validly covered, the last error-like line of `log` naming it.
fn attach_errors(states: &mut [CertificateState], log: &str, now: i64) {
    for s in states.iter_mut().filter(|s| !s.valid_at(now)) {
        if let Some(line) = log.lines().rev().find(|l| is_error_about(l, &s.name)) {
            s.error = Some(error_text(line));
        }
    }
}

fn is_error_about(line: &str, name: &str) -> bool {
    // An order stopped by a reload (Caddy: `context canceled`) says nothing of the name.
    if !line.contains(name) || line.contains("context canceled") {
        return false;
    }
    let lower = line.to_ascii_lowercase();
    // Caddy: JSON with "level":"error"/"warn"; Traefik: `… ERR …` / `level=error`.
    lower.contains("\"level\":\"error\"")
        || lower.contains("\"level\":\"warn\"")
        || line.contains(" ERR ")
        || line.contains(" WRN ")
        || lower.contains("level=error")
}

/// What a log line says, in one line: Caddy's JSON as `msg: error`, others as they are.
fn error_text(line: &str) -> String {
    let line = line.trim();
    let text = match line
        .find('{')
        .and_then(|i| serde_json::from_str::<serde_json::Value>(&line[i..]).ok())
    {
        Some(v) => {
            let field = |k: &str| v.get(k).and_then(|x| x.as_str()).unwrap_or("");
            match (field("msg"), field("error")) {
                ("", "") => line.to_owned(),
                (m, "") => m.to_owned(),
                ("", e) => e.to_owned(),
                (m, e) => format!("{m}: {e}"),
            }
        }
        None => line.to_owned(),
    };
    if text.chars().count() > MAX_ERROR {
        let cut: String = text.chars().take(MAX_ERROR).collect();
        format!("{cut}…")
    } else {
        text
    }
}

#[cfg(test)]
mod tests;
