//! The DNS records an environment needs, derived from the model: A/AAAA for each host at
//! `<role>.<domain>` (and for the bare domain when `apex_host` is set), a CNAME per web
//! service, and CAA records allowing only the environment's certificate authority.
//! Also renders them as a BIND zone-file fragment. Pure: no lookups, no I/O.

use std::fmt::Write as _;

use serde::Serialize;

use crate::model::{AcmeCa, Environment, HostAddress, Model};

/// A DNS record type kiln emits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum RecordType {
    /// IPv4 address.
    A,
    /// IPv6 address.
    AAAA,
    /// Alias to another name.
    CNAME,
    /// Which certificate authorities may issue certificates.
    CAA,
}

impl RecordType {
    /// The record type as written in zone files.
    pub fn as_str(self) -> &'static str {
        match self {
            RecordType::A => "A",
            RecordType::AAAA => "AAAA",
            RecordType::CNAME => "CNAME",
            RecordType::CAA => "CAA",
        }
    }
}

/// One record. Names are fully qualified, without the trailing dot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DnsRecord {
    /// The environment the record belongs to.
    pub environment: String,
    /// Owner name, fully qualified, no trailing dot.
    pub name: String,
    /// Record type.
    #[serde(rename = "type")]
    pub rtype: RecordType,
    /// Address, target name, or CAA `flags tag "value"`.
    pub value: String,
    /// What the record is for, e.g. `service nextcloud`.
    pub purpose: String,
}

/// The records of every environment, in file order.
pub fn all_records(model: &Model) -> Vec<DnsRecord> {
    model
        .environments
        .iter()
        .flat_map(|e| records(model, e))
        .collect()
}

/// The records environment `env` needs.
pub fn records(model: &Model, env: &Environment) -> Vec<DnsRecord> {
    let mut out = Vec::new();
    let rec = |name: String, rtype: RecordType, value: String, purpose: String| DnsRecord {
        environment: env.name.clone(),
        name,
        rtype,
        value,
        purpose,
    };

    // The bare domain points to the apex host.
    if let Some(host) = env.apex_host.as_deref().and_then(|r| env.host(r)) {
        let purpose = format!("apex → host {}", host.role);
        if let HostAddress::Ip(ip) = &host.address {
            let t = if ip.is_ipv4() {
                RecordType::A
            } else {
                RecordType::AAAA
            };
            out.push(rec(env.domain.clone(), t, ip.to_string(), purpose.clone()));
        }
        if let Some(v6) = host.address6 {
            out.push(rec(
                env.domain.clone(),
                RecordType::AAAA,
                v6.to_string(),
                purpose,
            ));
        }
    }

    // Each host at <role>.<domain>.
    for host in env.hosts.values() {
        let name = env.host_fqdn(&host.role);
        let purpose = format!("host {}", host.role);
        match &host.address {
            HostAddress::Ip(ip) => {
                let t = if ip.is_ipv4() {
                    RecordType::A
                } else {
                    RecordType::AAAA
                };
                out.push(rec(name.clone(), t, ip.to_string(), purpose.clone()));
            }
            HostAddress::Name(target) => {
                out.push(rec(
                    name.clone(),
                    RecordType::CNAME,
                    target.clone(),
                    purpose.clone(),
                ));
            }
        }
        // A CNAME owns its name alone: no AAAA next to it.
        if let (Some(v6), HostAddress::Ip(_)) = (host.address6, &host.address) {
            out.push(rec(name, RecordType::AAAA, v6.to_string(), purpose));
        }
    }

    // Each web service: CNAME to the apex when it runs on the apex host (as in the
    // reference docs: moving servers then means changing only the apex A/AAAA), else to
    // its host's name.
    for svc in &model.services {
        // A deprecated kind deploys nothing, so it gets no name.
        if svc.recipe().is_some_and(|r| r.deprecated.is_some()) {
            continue;
        }
        let Some(fqdn) = env.service_fqdn(svc) else {
            continue;
        };
        let target = if env.apex_host.as_deref() == Some(svc.host.as_str()) {
            env.domain.clone()
        } else {
            env.host_fqdn(&svc.host)
        };
        out.push(rec(
            fqdn,
            RecordType::CNAME,
            target,
            format!("service {}", svc.name),
        ));
    }

    // Only the environment's CA may issue certificates for its names.
    let caa = |value: String| {
        rec(
            env.domain.clone(),
            RecordType::CAA,
            value,
            format!("CA {}", env.acme_ca),
        )
    };
    match &env.acme_ca {
        AcmeCa::Letsencrypt | AcmeCa::LetsencryptStaging => {
            out.push(caa("0 issue \"letsencrypt.org\"".to_string()));
            out.push(caa("0 issuewild \";\"".to_string()));
            out.push(caa(format!(
                "0 iodef \"mailto:{}\"",
                model.project.acme_email
            )));
        }
        AcmeCa::Internal => out.push(caa("0 issue \";\"".to_string())),
        // kiln cannot know which CAA identity another CA checks: no CAA record (any CA
        // may issue), the owner adds theirs by hand.
        AcmeCa::Custom(_) => {}
    }
    out
}

/// A BIND zone-file fragment for `env`: `$ORIGIN` the environment's domain, names
/// relative to it, targets absolute. Paste it into the zone of the domain (or load it
/// as a zone of its own, adding SOA and NS records).
pub fn render_zone(env: &Environment, records: &[DnsRecord], ttl: u32) -> String {
    let origin = &env.domain;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "; environment {} — certificates from {}",
        env.name, env.acme_ca
    );
    let _ = writeln!(out, "$ORIGIN {origin}.");
    let _ = writeln!(out, "$TTL {ttl}");
    let rel = |name: &str| -> String {
        if name == origin {
            "@".to_string()
        } else if let Some(sub) = name.strip_suffix(&format!(".{origin}")) {
            sub.to_string()
        } else {
            format!("{name}.")
        }
    };
    let lines: Vec<(String, &str, String, &str)> = records
        .iter()
        .filter(|r| r.environment == env.name)
        .map(|r| {
            let value = match r.rtype {
                RecordType::CNAME => format!("{}.", r.value),
                _ => r.value.clone(),
            };
            (rel(&r.name), r.rtype.as_str(), value, r.purpose.as_str())
        })
        .collect();
    // Columns are padded for reading; a width is capped because std's
    // formatter refuses widths beyond u16::MAX (a fuzzed 70 000-character
    // value panicked here) and no real column needs more than a DNS name's 253.
    const MAX_COLUMN: usize = 253;
    let name_w = lines
        .iter()
        .map(|l| l.0.len())
        .max()
        .unwrap_or(1)
        .min(MAX_COLUMN);
    let value_w = lines
        .iter()
        .map(|l| l.2.len())
        .max()
        .unwrap_or(1)
        .min(MAX_COLUMN);
    for (name, rtype, value, purpose) in lines {
        let _ = writeln!(
            out,
            "{name:<name_w$}  IN  {rtype:<5}  {value:<value_w$}  ; {purpose}"
        );
    }
    out
}
