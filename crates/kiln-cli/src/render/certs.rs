//! The reverse proxy's certificates, in words: one line per name (`kiln apply`), or a
//! table (`kiln status`).

use kiln_converge::certs::CertificateState;

use super::duration;
use super::table::align;

/// What the proxy holds for one name: `issued by X, expires in 6d 23h`, `expired …`, or
/// `pending: <the proxy's last error line>`.
pub fn state(c: &CertificateState, now: i64) -> String {
    match &c.issued {
        Some(i) if i.not_after > now => format!(
            "issued by {}, expires in {}",
            i.issuer,
            duration(i.not_after - now)
        ),
        Some(i) => format!(
            "EXPIRED {} ago (issued by {}){}",
            duration(now - i.not_after),
            i.issuer,
            pending_reason(c)
        ),
        None => format!("pending{}", pending_reason(c)),
    }
}

fn pending_reason(c: &CertificateState) -> String {
    match &c.error {
        Some(e) => format!(": {e}"),
        None => ": no word from the proxy yet".to_owned(),
    }
}

/// `matrix.example.org: issued by …`.
pub fn line(c: &CertificateState, now: i64) -> String {
    format!("{}: {}", c.name, state(c, now))
}

/// The CERTIFICATE/STATE table of one host's names, indented by two spaces.
pub fn table(certs: &[CertificateState], now: i64) -> String {
    let mut rows = vec![["CERTIFICATE".to_owned(), "STATE".to_owned()]];
    for c in certs {
        rows.push([c.name.clone(), state(c, now)]);
    }
    align(&rows, "  ")
        .lines()
        .map(|l| format!("  {l}\n"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiln_converge::certs::Issued;

    fn issued(name: &str, issuer: &str, not_after: i64) -> CertificateState {
        CertificateState {
            name: name.into(),
            issued: Some(Issued {
                issuer: issuer.into(),
                not_after,
                staging: false,
            }),
            staging_seen: false,
            error: None,
        }
    }

    #[test]
    fn issued_pending_and_expired_names_read_as_such() {
        let now = 1_000_000;
        let pending = CertificateState {
            name: "pad.example.org".into(),
            issued: None,
            staging_seen: false,
            error: Some("could not get certificate from issuer: connection refused".into()),
        };
        let silent = CertificateState {
            error: None,
            name: "new.example.org".into(),
            ..pending.clone()
        };
        let mut expired = issued("old.example.org", "R11", now - 7200);
        expired.error = Some("rate limited".into());
        assert_eq!(
            table(
                &[
                    issued(
                        "matrix.example.org",
                        "Pebble Intermediate CA 1a",
                        now + 6 * 86_400 + 3600
                    ),
                    pending,
                    silent,
                    expired,
                ],
                now
            ),
            "  CERTIFICATE         STATE\n  \
             matrix.example.org  issued by Pebble Intermediate CA 1a, expires in 6d 1h\n  \
             pad.example.org     pending: could not get certificate from issuer: connection refused\n  \
             new.example.org     pending: no word from the proxy yet\n  \
             old.example.org     EXPIRED 2h 0m ago (issued by R11): rate limited\n"
        );
    }
}
