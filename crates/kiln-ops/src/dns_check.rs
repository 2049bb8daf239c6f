//! `kiln dns --check`: ask a DNS resolver for every record the model needs
//! ([`kiln_model::dns::records`]) and say, per record, whether it is there as kiln wants it.
//!
//! Owns: the resolver to ask (one given address, or the system's from /etc/resolv.conf),
//! the queries (plain DNS over UDP, over TCP when an answer is truncated; no cache, no
//! search domains: every name is asked fully qualified), and the comparison of answers
//! with the model. Nothing here prints; the CLI renders [`RecordCheck`]s.
//!
//! Comparison rules:
//! - A/AAAA are compared as parsed addresses, CNAME targets case-insensitively without the
//!   trailing dot, CAA as flags, tag (case-insensitive) and value (the issuer domain of
//!   `issue`/`issuewild` case-insensitively, anything else exactly).
//! - A record is [`Status::Ok`] only when the name's records of that type are exactly the
//!   ones the environment wants there: an extra A next to the expected one would send part
//!   of the traffic elsewhere, an extra CAA would let another CA issue. Such a name is
//!   [`Status::Different`] and `found` lists everything that is there.
//! - A CNAME is asked as type CNAME (not A): a name that answers with addresses instead
//!   (a provider's "CNAME flattening", or a plain A record) is [`Status::Different`] and
//!   `found` says `A 192.0.2.1`. The other way round, an A/AAAA/CAA asked for at a name
//!   that is a CNAME is different, found `CNAME target`.
//! - NXDOMAIN and "no data" are both [`Status::Missing`]; SERVFAIL, REFUSED, a malformed
//!   answer or no answer at all are [`Status::Error`], naming the resolver. After a
//!   resolver did not answer (every attempt timed out or was refused), the remaining
//!   records are not asked: they are errors saying so, and a dead resolver costs one
//!   query's timeout, not one per record.
//! - Only the types the model wants are asked: an AAAA record the model does not know
//!   about, next to its A record, is not reported.

use std::collections::HashMap;
use std::fmt;
use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, MessageType, Query, ResponseCode};
use hickory_proto::rr::{DNSClass, Name, RData, RecordType as WireType};
use kiln_model::dns::{DnsRecord, RecordType};
use serde::Serialize;

/// The port DNS servers listen on.
pub const DNS_PORT: u16 = 53;
/// How long one attempt waits for an answer.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);
/// Attempts per server and query.
pub const DEFAULT_ATTEMPTS: u32 = 2;
/// Where the system's resolver is configured.
pub const RESOLV_CONF: &str = "/etc/resolv.conf";

/// Why the check could not start.
#[derive(Debug, thiserror::Error)]
pub enum DnsCheckError {
    #[error(
        "`{input}` is not a resolver address: expected IP or IP:PORT (e.g. 192.0.2.53, 192.0.2.53:5353, [2001:db8::53]:53)"
    )]
    InvalidResolver { input: String },
    #[error("cannot read the system's resolver configuration {}: {reason}", .path.display())]
    ResolvConf { path: PathBuf, reason: String },
}

impl DnsCheckError {
    /// Whether the user gave something unusable (rather than the system failing).
    pub fn is_bad_input(&self) -> bool {
        matches!(self, DnsCheckError::InvalidResolver { .. })
    }

    /// What the user can do about it.
    pub fn hint(&self) -> Option<&'static str> {
        match self {
            DnsCheckError::InvalidResolver { .. } => None,
            DnsCheckError::ResolvConf { .. } => {
                Some("name a resolver with --resolver IP[:PORT], e.g. --resolver 192.0.2.53")
            }
        }
    }
}

/// `IP` or `IP:PORT` (`[v6]:PORT` for IPv6 with a port); the port defaults to 53.
pub fn parse_resolver_addr(input: &str) -> Result<SocketAddr, DnsCheckError> {
    let s = input.trim();
    if let Ok(addr) = SocketAddr::from_str(s) {
        return Ok(addr);
    }
    let bare = s
        .strip_prefix('[')
        .and_then(|r| r.strip_suffix(']'))
        .unwrap_or(s);
    IpAddr::from_str(bare)
        .map(|ip| SocketAddr::new(ip, DNS_PORT))
        .map_err(|_| DnsCheckError::InvalidResolver {
            input: input.to_owned(),
        })
}

/// The DNS server(s) to ask, and how patiently.
#[derive(Debug, Clone)]
pub struct Resolver {
    servers: Vec<SocketAddr>,
    from: Option<PathBuf>,
    /// How long one attempt waits for an answer.
    pub timeout: Duration,
    /// Rounds over the servers before giving up on a query.
    pub attempts: u32,
}

impl Resolver {
    /// One server, e.g. from `--resolver`.
    pub fn at(server: SocketAddr) -> Resolver {
        Resolver {
            servers: vec![server],
            from: None,
            timeout: DEFAULT_TIMEOUT,
            attempts: DEFAULT_ATTEMPTS,
        }
    }

    /// The system's resolver: the nameservers of /etc/resolv.conf, asked in order.
    pub fn system() -> Result<Resolver, DnsCheckError> {
        Resolver::from_resolv_conf(Path::new(RESOLV_CONF))
    }

    /// The nameservers of a resolv.conf file, asked in order (localhost when it lists
    /// none, as the C library does). Its timeouts are not used: kiln's short ones are.
    pub fn from_resolv_conf(path: &Path) -> Result<Resolver, DnsCheckError> {
        let err = |reason: String| DnsCheckError::ResolvConf {
            path: path.to_owned(),
            reason,
        };
        let text = std::fs::read(path).map_err(|e| err(e.to_string()))?;
        let conf = resolv_conf::Config::parse(&text).map_err(|e| err(e.to_string()))?;
        let servers = conf
            .get_nameservers_or_local()
            .into_iter()
            .map(|ip| match ip {
                resolv_conf::ScopedIp::V4(v4) => SocketAddr::new(IpAddr::V4(v4), DNS_PORT),
                resolv_conf::ScopedIp::V6(v6, scope) => {
                    let scope = scope.and_then(|s| s.parse().ok()).unwrap_or(0);
                    SocketAddr::V6(std::net::SocketAddrV6::new(v6, DNS_PORT, 0, scope))
                }
            })
            .collect();
        Ok(Resolver {
            servers,
            from: Some(path.to_owned()),
            timeout: DEFAULT_TIMEOUT,
            attempts: DEFAULT_ATTEMPTS,
        })
    }

    /// The servers asked, in order.
    pub fn servers(&self) -> &[SocketAddr] {
        &self.servers
    }

    /// `192.0.2.53:53`, or `10.0.0.1:53, 10.0.0.2:53 (from /etc/resolv.conf)`.
    pub fn describe(&self) -> String {
        let list: Vec<String> = self.servers.iter().map(ToString::to_string).collect();
        match &self.from {
            Some(path) => format!("{} (from {})", list.join(", "), path.display()),
            None => list.join(", "),
        }
    }
}

/// A record's value, normalised for comparison.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Value {
    /// An A or AAAA address.
    Addr(IpAddr),
    /// A CNAME target: lower case, no trailing dot.
    Name(String),
    /// A CAA record; tag in lower case, an issuer domain in lower case.
    Caa {
        flags: u8,
        tag: String,
        value: String,
    },
    /// A value kiln could not parse as its type; compared as text.
    Text(String),
}

impl Value {
    /// The expected value of a model record (`0 issue "letsencrypt.org"` for CAA).
    pub fn expected(rtype: RecordType, text: &str) -> Value {
        let parsed = match rtype {
            RecordType::A | RecordType::AAAA => IpAddr::from_str(text).ok().map(Value::Addr),
            RecordType::CNAME => Some(Value::name(text)),
            RecordType::CAA => parse_caa(text),
        };
        parsed.unwrap_or_else(|| Value::Text(text.to_owned()))
    }

    fn name(text: &str) -> Value {
        Value::Name(text.trim_end_matches('.').to_ascii_lowercase())
    }

    fn caa(flags: u8, tag: &str, value: &str) -> Value {
        let tag = tag.to_ascii_lowercase();
        let value = if tag == "issue" || tag == "issuewild" {
            // `ca.example; account=123`: the domain is case-insensitive, parameters not.
            match value.split_once(';') {
                Some((domain, params)) => format!(
                    "{};{}",
                    domain.trim().trim_end_matches('.').to_ascii_lowercase(),
                    params
                ),
                None => value.trim().trim_end_matches('.').to_ascii_lowercase(),
            }
        } else {
            value.to_owned()
        };
        Value::Caa { flags, tag, value }
    }
}

/// `flags tag "value"` as kiln-model writes CAA records.
fn parse_caa(text: &str) -> Option<Value> {
    let mut parts = text.trim().splitn(3, ' ');
    let flags = parts.next()?.parse::<u8>().ok()?;
    let tag = parts.next()?;
    let value = parts.next()?.trim();
    let value = value
        .strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .unwrap_or(value);
    Some(Value::caa(flags, tag, value))
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Addr(ip) => write!(f, "{ip}"),
            Value::Name(n) => write!(f, "{n}"),
            Value::Caa { flags, tag, value } => write!(f, "{flags} {tag} \"{value}\""),
            Value::Text(t) => write!(f, "{t}"),
        }
    }
}

/// One record found at a name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observed {
    pub rtype: RecordType,
    pub value: Value,
}

/// What the resolver said about one name and type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// NOERROR: the records at the name (of the type asked, and any CNAME there); empty
    /// for "no data".
    Records(Vec<Observed>),
    /// NXDOMAIN: no such name.
    NoSuchName,
    /// No usable answer: SERVFAIL, REFUSED, garbage, or no answer at all.
    Failed {
        message: String,
        /// The resolver did not answer at all (timed out or refused every attempt).
        unreachable: bool,
    },
}

/// A record's state in DNS.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "status", rename_all = "lowercase")]
pub enum Status {
    /// The name has exactly what the model wants for this type.
    Ok,
    /// No such name, or no record of this type there.
    Missing,
    /// Something else is there: the records of this type at the name (just the values),
    /// or of another type (`CNAME target`, `A 192.0.2.1`).
    Different { found: Vec<String> },
    /// The resolver gave no usable answer.
    Error { message: String },
}

/// A model record and its state in DNS.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RecordCheck {
    #[serde(flatten)]
    pub record: DnsRecord,
    #[serde(flatten)]
    pub status: Status,
}

/// The outcome of a check, in the order of the records given.
#[derive(Debug, Clone, Serialize)]
#[serde(transparent)]
pub struct CheckReport {
    pub results: Vec<RecordCheck>,
}

impl CheckReport {
    pub fn count(&self, pred: impl Fn(&Status) -> bool) -> usize {
        self.results.iter().filter(|r| pred(&r.status)).count()
    }
    pub fn ok(&self) -> usize {
        self.count(|s| matches!(s, Status::Ok))
    }
    pub fn missing(&self) -> usize {
        self.count(|s| matches!(s, Status::Missing))
    }
    pub fn different(&self) -> usize {
        self.count(|s| matches!(s, Status::Different { .. }))
    }
    pub fn errors(&self) -> usize {
        self.count(|s| matches!(s, Status::Error { .. }))
    }
    /// Every record is there as the model wants it.
    pub fn all_ok(&self) -> bool {
        self.ok() == self.results.len()
    }
}

/// Compare one expected record with the answer for its name and type. `wanted_here` are
/// all the values the environment wants for this name and type (this record's included):
/// records beyond them make the name different. Pure.
pub fn compare(record: &DnsRecord, wanted_here: &[Value], answer: &Answer) -> Status {
    let expected = Value::expected(record.rtype, &record.value);
    let observed = match answer {
        Answer::NoSuchName => return Status::Missing,
        Answer::Failed { message, .. } => {
            return Status::Error {
                message: message.clone(),
            };
        }
        Answer::Records(r) => r,
    };
    let mut same: Vec<&Value> = Vec::new();
    for o in observed.iter().filter(|o| o.rtype == record.rtype) {
        if !same.contains(&&o.value) {
            same.push(&o.value);
        }
    }
    if same.is_empty() {
        let other: Vec<String> = observed
            .iter()
            .filter(|o| o.rtype != record.rtype)
            .map(|o| format!("{} {}", o.rtype.as_str(), o.value))
            .collect();
        return if other.is_empty() {
            Status::Missing
        } else {
            Status::Different { found: other }
        };
    }
    let has_it = same.contains(&&expected);
    let only_wanted = same
        .iter()
        .all(|v| **v == expected || wanted_here.contains(v));
    if has_it && only_wanted {
        Status::Ok
    } else {
        Status::Different {
            found: same.iter().map(ToString::to_string).collect(),
        }
    }
}

/// Ask `resolver` for every record and compare. Each name and type is asked once.
/// Blocking; takes at most one query's timeouts when the resolver is dead (see the
/// module doc).
pub fn check(records: &[DnsRecord], resolver: &Resolver) -> CheckReport {
    // What each environment wants per name and type.
    let mut wanted: HashMap<(String, String, &'static str), Vec<Value>> = HashMap::new();
    for r in records {
        wanted
            .entry(key(r))
            .or_default()
            .push(Value::expected(r.rtype, &r.value));
    }
    let mut asker = Asker {
        resolver,
        cache: HashMap::new(),
        dead: false,
    };
    let results = records
        .iter()
        .map(|r| {
            let mut answer = asker.ask(&r.name, r.rtype);
            if r.rtype == RecordType::CNAME
                && matches!(&answer, Answer::Records(found) if found.is_empty())
            {
                // No CNAME: addresses there instead (flattened, or a plain A)?
                let mut found = Vec::new();
                for t in [RecordType::A, RecordType::AAAA] {
                    if let Answer::Records(rs) = asker.ask(&r.name, t) {
                        found.extend(rs.into_iter().filter(|o| o.rtype == t));
                    }
                }
                answer = Answer::Records(found);
            }
            let status = compare(r, &wanted[&key(r)], &answer);
            RecordCheck {
                record: r.clone(),
                status,
            }
        })
        .collect();
    CheckReport { results }
}

fn key(r: &DnsRecord) -> (String, String, &'static str) {
    (
        r.environment.clone(),
        r.name.to_ascii_lowercase(),
        r.rtype.as_str(),
    )
}

/// Queries with a cache for one check, and the memory of a resolver that did not answer.
struct Asker<'r> {
    resolver: &'r Resolver,
    cache: HashMap<(String, &'static str), Answer>,
    dead: bool,
}

impl Asker<'_> {
    fn ask(&mut self, name: &str, rtype: RecordType) -> Answer {
        let k = (name.to_ascii_lowercase(), rtype.as_str());
        if let Some(a) = self.cache.get(&k) {
            return a.clone();
        }
        let answer = if self.dead {
            Answer::Failed {
                message: "not asked: the resolver did not answer an earlier query".into(),
                unreachable: true,
            }
        } else {
            query(self.resolver, name, rtype)
        };
        if let Answer::Failed {
            unreachable: true, ..
        } = &answer
        {
            self.dead = true;
        }
        self.cache.insert(k, answer.clone());
        answer
    }
}

fn wire_type(t: RecordType) -> WireType {
    match t {
        RecordType::A => WireType::A,
        RecordType::AAAA => WireType::AAAA,
        RecordType::CNAME => WireType::CNAME,
        RecordType::CAA => WireType::CAA,
    }
}

/// One question to the resolver: `name` (fully qualified, with or without the final dot).
pub fn query(resolver: &Resolver, name: &str, rtype: RecordType) -> Answer {
    let fqdn = if name.ends_with('.') {
        name.to_owned()
    } else {
        format!("{name}.")
    };
    let qname = match Name::from_utf8(&fqdn) {
        Ok(n) => n,
        Err(e) => {
            return Answer::Failed {
                message: format!("`{name}` is not a valid DNS name: {e}"),
                unreachable: false,
            };
        }
    };
    let mut msg = Message::query();
    msg.metadata.recursion_desired = true;
    msg.add_query(Query::query(qname.clone(), wire_type(rtype)));
    let bytes = match msg.to_vec() {
        Ok(b) => b,
        Err(e) => {
            return Answer::Failed {
                message: format!("cannot encode the query for {name}: {e}"),
                unreachable: false,
            };
        }
    };
    let response = match exchange(resolver, &bytes, msg.metadata.id, &qname, rtype) {
        Ok(r) => r,
        Err(failed) => return failed,
    };
    let (server, resp) = response;
    match resp.metadata.response_code {
        ResponseCode::NoError => {}
        ResponseCode::NXDomain => return Answer::NoSuchName,
        code => {
            return Answer::Failed {
                message: format!("{server} answered {}", rcode_name(code)),
                unreachable: false,
            };
        }
    }
    let observed = resp
        .answers
        .iter()
        .filter(|r| r.dns_class == DNSClass::IN && r.name.eq_ignore_root(&qname))
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(Observed {
                rtype: RecordType::A,
                value: Value::Addr(IpAddr::V4(a.0)),
            }),
            RData::AAAA(a) => Some(Observed {
                rtype: RecordType::AAAA,
                value: Value::Addr(IpAddr::V6(a.0)),
            }),
            RData::CNAME(c) => Some(Observed {
                rtype: RecordType::CNAME,
                value: Value::name(&c.0.to_utf8()),
            }),
            RData::CAA(c) => Some(Observed {
                rtype: RecordType::CAA,
                value: Value::caa(c.flags(), &c.tag, &String::from_utf8_lossy(&c.value)),
            }),
            _ => None,
        })
        // The type asked for, and a CNAME standing where it was expected.
        .filter(|o| o.rtype == rtype || o.rtype == RecordType::CNAME)
        .collect();
    Answer::Records(observed)
}

fn rcode_name(code: ResponseCode) -> String {
    match code {
        ResponseCode::ServFail => "SERVFAIL".into(),
        ResponseCode::Refused => "REFUSED".into(),
        ResponseCode::FormErr => "FORMERR".into(),
        ResponseCode::NotImp => "NOTIMP".into(),
        other => format!("{other:?}").to_uppercase(),
    }
}

/// Why one attempt at one server got no answer.
enum Silence {
    TimedOut,
    Refused,
    Other(String),
}

/// Send the query to the servers in order, `attempts` rounds; an answer with SERVFAIL or
/// REFUSED moves on to the next server of the round, as the C library's resolver does.
fn exchange(
    resolver: &Resolver,
    bytes: &[u8],
    id: u16,
    qname: &Name,
    rtype: RecordType,
) -> Result<(SocketAddr, Message), Answer> {
    let mut last_answer: Option<(SocketAddr, Message)> = None;
    let mut silences: Vec<(SocketAddr, Silence)> = Vec::new();
    for _ in 0..resolver.attempts.max(1) {
        for &server in &resolver.servers {
            let got = udp_once(server, bytes, id, qname, rtype, resolver.timeout).and_then(|m| {
                if m.metadata.truncation {
                    tcp_once(server, bytes, id, qname, rtype, resolver.timeout)
                } else {
                    Ok(m)
                }
            });
            match got {
                Ok(m) => match m.metadata.response_code {
                    ResponseCode::ServFail | ResponseCode::Refused
                        if resolver.servers.len() > 1 =>
                    {
                        last_answer = Some((server, m));
                    }
                    _ => return Ok((server, m)),
                },
                Err(s) => silences.push((server, s)),
            }
        }
        if last_answer.is_some() {
            break;
        }
    }
    if let Some(a) = last_answer {
        return Ok(a);
    }
    let timeout = resolver.timeout.as_secs_f64();
    let attempts = resolver.attempts.max(1);
    let all_refused = silences.iter().all(|(_, s)| matches!(s, Silence::Refused));
    let servers: Vec<String> = resolver.servers.iter().map(ToString::to_string).collect();
    let message = if all_refused {
        format!(
            "no answer from {}: connection refused (no DNS server listening there?)",
            servers.join(", ")
        )
    } else {
        let other = silences.iter().find_map(|(a, s)| match s {
            Silence::Other(e) => Some(format!("; {a}: {e}")),
            _ => None,
        });
        format!(
            "no answer from {} ({attempts} attempt{} of {timeout} s{})",
            servers.join(", "),
            if attempts == 1 { "" } else { "s" },
            other.unwrap_or_default()
        )
    };
    Err(Answer::Failed {
        message,
        unreachable: true,
    })
}

/// Whether `m` answers our query (id, response, same question).
fn is_reply(m: &Message, id: u16, qname: &Name, rtype: RecordType) -> bool {
    m.metadata.id == id
        && m.metadata.message_type == MessageType::Response
        && m.queries.len() == 1
        && m.queries[0].name().eq_ignore_root(qname)
        && m.queries[0].query_type() == wire_type(rtype)
}

fn classify(e: std::io::Error) -> Silence {
    match e.kind() {
        ErrorKind::WouldBlock | ErrorKind::TimedOut => Silence::TimedOut,
        ErrorKind::ConnectionRefused => Silence::Refused,
        _ => Silence::Other(e.to_string()),
    }
}

fn udp_once(
    server: SocketAddr,
    bytes: &[u8],
    id: u16,
    qname: &Name,
    rtype: RecordType,
    timeout: Duration,
) -> Result<Message, Silence> {
    let local: SocketAddr = match server {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let sock = UdpSocket::bind(local).map_err(classify)?;
    // Connected: only the server's datagrams arrive, and an ICMP "port unreachable"
    // surfaces as a refused connection instead of a timeout.
    sock.connect(server).map_err(classify)?;
    sock.send(bytes).map_err(classify)?;
    let deadline = Instant::now() + timeout;
    let mut buf = vec![0u8; 65535];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(Silence::TimedOut);
        }
        sock.set_read_timeout(Some(left)).map_err(classify)?;
        let n = sock.recv(&mut buf).map_err(classify)?;
        // A datagram that is not our answer (late, spoofed, garbage) is ignored.
        if let Ok(m) = Message::from_vec(&buf[..n])
            && is_reply(&m, id, qname, rtype)
        {
            return Ok(m);
        }
    }
}

fn tcp_once(
    server: SocketAddr,
    bytes: &[u8],
    id: u16,
    qname: &Name,
    rtype: RecordType,
    timeout: Duration,
) -> Result<Message, Silence> {
    let mut s = TcpStream::connect_timeout(&server, timeout).map_err(classify)?;
    s.set_read_timeout(Some(timeout)).map_err(classify)?;
    s.set_write_timeout(Some(timeout)).map_err(classify)?;
    let len = u16::try_from(bytes.len()).map_err(|_| Silence::Other("query too long".into()))?;
    let mut framed = len.to_be_bytes().to_vec();
    framed.extend_from_slice(bytes);
    s.write_all(&framed).map_err(classify)?;
    let mut len = [0u8; 2];
    s.read_exact(&mut len).map_err(classify)?;
    let mut buf = vec![0u8; usize::from(u16::from_be_bytes(len))];
    s.read_exact(&mut buf).map_err(classify)?;
    match Message::from_vec(&buf) {
        Ok(m) if is_reply(&m, id, qname, rtype) => Ok(m),
        Ok(_) => Err(Silence::Other(
            "answer over TCP does not match the query".into(),
        )),
        Err(e) => Err(Silence::Other(format!("malformed answer over TCP: {e}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(rtype: RecordType, value: &str) -> DnsRecord {
        DnsRecord {
            environment: "lab".into(),
            name: "x.test".into(),
            rtype,
            value: value.into(),
            purpose: "test".into(),
        }
    }

    fn obs(rtype: RecordType, value: &str) -> Observed {
        let value = match rtype {
            RecordType::A | RecordType::AAAA => Value::Addr(value.parse().unwrap()),
            _ => Value::expected(rtype, value),
        };
        Observed { rtype, value }
    }

    fn check_one(r: &DnsRecord, answer: Answer) -> Status {
        compare(r, &[Value::expected(r.rtype, &r.value)], &answer)
    }

    fn different(found: &[&str]) -> Status {
        Status::Different {
            found: found.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn addresses_compare_parsed() {
        let r = rec(RecordType::AAAA, "2001:db8::1");
        let a = Answer::Records(vec![obs(RecordType::AAAA, "2001:0db8:0:0::1")]);
        assert_eq!(check_one(&r, a), Status::Ok);
        let r = rec(RecordType::A, "10.77.0.11");
        let a = Answer::Records(vec![obs(RecordType::A, "10.77.0.12")]);
        assert_eq!(check_one(&r, a), different(&["10.77.0.12"]));
    }

    #[test]
    fn an_extra_address_makes_the_name_different() {
        let r = rec(RecordType::A, "10.77.0.11");
        let a = Answer::Records(vec![
            obs(RecordType::A, "10.77.0.11"),
            obs(RecordType::A, "10.77.0.99"),
        ]);
        assert_eq!(check_one(&r, a), different(&["10.77.0.11", "10.77.0.99"]));
    }

    #[test]
    fn cnames_ignore_case_and_the_final_dot() {
        let r = rec(RecordType::CNAME, "ergaster.test");
        let a = Answer::Records(vec![Observed {
            rtype: RecordType::CNAME,
            value: Value::name("Ergaster.TEST."),
        }]);
        assert_eq!(check_one(&r, a), Status::Ok);
    }

    #[test]
    fn another_type_where_one_was_expected_is_named() {
        // A flattened CNAME: addresses where the CNAME should be.
        let r = rec(RecordType::CNAME, "ergaster.test");
        let a = Answer::Records(vec![obs(RecordType::A, "10.77.0.11")]);
        assert_eq!(check_one(&r, a), different(&["A 10.77.0.11"]));
        // A CNAME where an address should be.
        let r = rec(RecordType::A, "10.77.0.11");
        let a = Answer::Records(vec![obs(RecordType::CNAME, "elsewhere.test")]);
        assert_eq!(check_one(&r, a), different(&["CNAME elsewhere.test"]));
    }

    #[test]
    fn nxdomain_and_no_data_are_missing_failures_are_errors() {
        let r = rec(RecordType::A, "10.77.0.11");
        assert_eq!(check_one(&r, Answer::NoSuchName), Status::Missing);
        assert_eq!(check_one(&r, Answer::Records(vec![])), Status::Missing);
        let failed = Answer::Failed {
            message: "127.0.0.1:53 answered SERVFAIL".into(),
            unreachable: false,
        };
        assert_eq!(
            check_one(&r, failed),
            Status::Error {
                message: "127.0.0.1:53 answered SERVFAIL".into()
            }
        );
    }

    #[test]
    fn caa_compares_flags_tag_and_value() {
        let r = rec(RecordType::CAA, "0 issue \"letsencrypt.org\"");
        let ok = Answer::Records(vec![Observed {
            rtype: RecordType::CAA,
            value: Value::caa(0, "ISSUE", "LetsEncrypt.org"),
        }]);
        assert_eq!(check_one(&r, ok), Status::Ok);
        let critical = Answer::Records(vec![Observed {
            rtype: RecordType::CAA,
            value: Value::caa(128, "issue", "letsencrypt.org"),
        }]);
        assert_eq!(
            check_one(&r, critical),
            different(&["128 issue \"letsencrypt.org\""])
        );
        // iodef URLs are compared exactly.
        let r = rec(RecordType::CAA, "0 iodef \"mailto:Ops@example.org\"");
        let a = Answer::Records(vec![Observed {
            rtype: RecordType::CAA,
            value: Value::caa(0, "iodef", "mailto:ops@example.org"),
        }]);
        assert_eq!(
            check_one(&r, a),
            different(&["0 iodef \"mailto:ops@example.org\""])
        );
    }

    #[test]
    fn records_the_environment_wants_at_the_same_name_are_not_extra() {
        let issue = rec(RecordType::CAA, "0 issue \"letsencrypt.org\"");
        let wild = rec(RecordType::CAA, "0 issuewild \";\"");
        let wanted = [
            Value::expected(RecordType::CAA, &issue.value),
            Value::expected(RecordType::CAA, &wild.value),
        ];
        let both = Answer::Records(vec![
            obs(RecordType::CAA, "0 issue \"letsencrypt.org\""),
            obs(RecordType::CAA, "0 issuewild \";\""),
        ]);
        assert_eq!(compare(&issue, &wanted, &both), Status::Ok);
        assert_eq!(compare(&wild, &wanted, &both), Status::Ok);
        // Another CA allowed as well: every CAA line of the name is different.
        let more = Answer::Records(vec![
            obs(RecordType::CAA, "0 issue \"letsencrypt.org\""),
            obs(RecordType::CAA, "0 issuewild \";\""),
            obs(RecordType::CAA, "0 issue \"other-ca.example\""),
        ]);
        let found = different(&[
            "0 issue \"letsencrypt.org\"",
            "0 issuewild \";\"",
            "0 issue \"other-ca.example\"",
        ]);
        assert_eq!(compare(&issue, &wanted, &more), found);
        assert_eq!(compare(&wild, &wanted, &more), found);
    }

    #[test]
    fn resolver_addresses_parse_with_a_default_port() {
        assert_eq!(
            parse_resolver_addr("192.0.2.53").unwrap(),
            "192.0.2.53:53".parse().unwrap()
        );
        assert_eq!(
            parse_resolver_addr("127.0.0.1:5353").unwrap(),
            "127.0.0.1:5353".parse().unwrap()
        );
        assert_eq!(
            parse_resolver_addr("2001:db8::53").unwrap(),
            "[2001:db8::53]:53".parse().unwrap()
        );
        assert_eq!(
            parse_resolver_addr("[2001:db8::53]:5353").unwrap(),
            "[2001:db8::53]:5353".parse().unwrap()
        );
        for bad in ["", "dns.example", "1.2.3.4:99999", "1.2.3:53", "1.2.3.4:"] {
            let e = parse_resolver_addr(bad).unwrap_err();
            assert!(e.is_bad_input(), "{bad}");
            assert!(e.to_string().contains("expected IP or IP:PORT"), "{e}");
        }
    }

    #[test]
    fn resolv_conf_nameservers_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("resolv.conf");
        std::fs::write(
            &path,
            "search example.org\nnameserver 192.0.2.1\nnameserver 2001:db8::1\noptions timeout:30\n",
        )
        .unwrap();
        let r = Resolver::from_resolv_conf(&path).unwrap();
        assert_eq!(
            r.servers(),
            &[
                "192.0.2.1:53".parse::<SocketAddr>().unwrap(),
                "[2001:db8::1]:53".parse().unwrap()
            ]
        );
        assert_eq!(r.timeout, DEFAULT_TIMEOUT);
        assert_eq!(
            r.describe(),
            format!("192.0.2.1:53, [2001:db8::1]:53 (from {})", path.display())
        );
        let missing = Resolver::from_resolv_conf(&dir.path().join("nope")).unwrap_err();
        assert!(!missing.is_bad_input());
        assert!(missing.to_string().contains("cannot read"), "{missing}");
    }

    /// An answer truncated over UDP is asked again over TCP (the lab's DNS server never
    /// truncates, so a fake one on loopback: UDP says "truncated", TCP has the answer).
    #[test]
    fn a_truncated_answer_is_asked_again_over_tcp() {
        use hickory_proto::rr::{Record, rdata::A};
        let (udp, tcp) = loop {
            let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
            let port = udp.local_addr().unwrap().port();
            if let Ok(tcp) = std::net::TcpListener::bind(("127.0.0.1", port)) {
                break (udp, tcp);
            }
        };
        let server = udp.local_addr().unwrap();
        let fake = std::thread::spawn(move || {
            let reply = |query: &Message, truncated: bool| {
                let mut m = Message::response(query.metadata.id, query.metadata.op_code);
                m.add_queries(query.queries.clone());
                m.metadata.truncation = truncated;
                if !truncated {
                    let name = query.queries[0].name().clone();
                    let ip = Ipv4Addr::new(192, 0, 2, 7);
                    m.add_answer(Record::from_rdata(name, 60, RData::A(A(ip))));
                }
                m.to_vec().unwrap()
            };
            let mut buf = [0u8; 512];
            let (n, from) = udp.recv_from(&mut buf).unwrap();
            let q = Message::from_vec(&buf[..n]).unwrap();
            udp.send_to(&reply(&q, true), from).unwrap();
            let (mut conn, _) = tcp.accept().unwrap();
            let mut len = [0u8; 2];
            conn.read_exact(&mut len).unwrap();
            let mut msg = vec![0u8; usize::from(u16::from_be_bytes(len))];
            conn.read_exact(&mut msg).unwrap();
            let q = Message::from_vec(&msg).unwrap();
            let r = reply(&q, false);
            let mut framed = u16::try_from(r.len()).unwrap().to_be_bytes().to_vec();
            framed.extend_from_slice(&r);
            conn.write_all(&framed).unwrap();
        });
        let answer = query(&Resolver::at(server), "big.test", RecordType::A);
        fake.join().unwrap();
        assert_eq!(
            answer,
            Answer::Records(vec![Observed {
                rtype: RecordType::A,
                value: Value::Addr("192.0.2.7".parse().unwrap()),
            }])
        );
    }

    #[test]
    fn results_serialize_flat_with_a_status() {
        let r = RecordCheck {
            record: rec(RecordType::A, "10.77.0.11"),
            status: different(&["10.77.0.12"]),
        };
        assert_eq!(
            serde_json::to_string(&r).unwrap(),
            r#"{"environment":"lab","name":"x.test","type":"A","value":"10.77.0.11","purpose":"test","status":"different","found":["10.77.0.12"]}"#
        );
    }
}
