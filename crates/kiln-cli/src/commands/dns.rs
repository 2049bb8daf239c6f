//! `kiln dns`: print the DNS records each environment needs (hosts, services, CAA), as
//! an aligned table, a BIND zone-file fragment, or JSON; with `--check`, ask a resolver
//! for them and show what is missing or different (the asking and comparing live in
//! `kiln_ops::dns_check`; this file parses arguments and renders).

use std::net::SocketAddr;
use std::process::ExitCode;

use kiln_model::dns::{self, DnsRecord};
use kiln_ops::dns_check::{self, CheckReport, Resolver, Status};

use crate::context::Context;
use crate::error::{self, CliError, CmdResult};
use crate::printer::Printer;
use crate::render::table::align;

/// Print the DNS records each environment needs.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Hosts get A/AAAA records at <role>.<domain> (and the bare domain when \
apex_host is set); each web service gets a CNAME; CAA records allow only the environment's CA.

--check asks a resolver for each record (a CNAME as type CNAME) and prints one line per \
record: ok, MISSING, DIFFERENT (with what was found) or ERROR. A name is different when it \
has records of that type beyond the ones kiln wants there. Exit status with --check: 0 every \
record is there, 3 some are missing or different, 1 some could not be checked (a resolver \
failure, even when others differ), 2 bad input.

Examples:
  kiln dns                                   every environment, as tables
  kiln dns --env production                  the records to create at your registrar
  kiln dns --env staging --format zone       a BIND zone-file fragment
  kiln dns --format json | jq '.[] | select(.type == \"CNAME\")'
  kiln dns --check --env production          are they published? (the system's resolver)
  kiln dns --check --resolver 192.0.2.53     ask this resolver (IP or IP:PORT)
  kiln dns --check --json | jq '.[] | select(.status != \"ok\")'"
)]
pub struct Args {
    /// Only this environment (default: all).
    #[arg(long, short, env = "KILN_ENV", value_name = "ENV")]
    pub env: Option<String>,
    /// Output format (`zone` is not available with --check).
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    /// Same as --format json.
    #[arg(long, conflicts_with = "format")]
    pub json: bool,
    /// TTL written in zone format, in seconds.
    #[arg(long, default_value_t = 3600, value_name = "SECONDS")]
    pub ttl: u32,
    /// Ask a DNS resolver for every record and show what is missing or different.
    #[arg(long)]
    pub check: bool,
    /// With --check: the resolver to ask, IP or IP:PORT (default port 53; default: the
    /// nameservers of /etc/resolv.conf). Each query waits 2 s, twice.
    #[arg(long, requires = "check", value_name = "ADDR[:PORT]", value_parser = parse_resolver)]
    pub resolver: Option<SocketAddr>,
}

fn parse_resolver(s: &str) -> Result<SocketAddr, String> {
    dns_check::parse_resolver_addr(s).map_err(|e| e.to_string())
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Format {
    Table,
    Zone,
    Json,
}

pub fn run(ctx: &Context, args: Args) -> CmdResult {
    let format = if args.json { Format::Json } else { args.format };
    if args.check {
        return check(ctx, &args, format);
    }
    let model = ctx.model()?;
    let envs = ctx.environments(args.env.as_deref())?;
    let p = Printer::json_if(matches!(format, Format::Json));
    match format {
        Format::Json => {
            let records: Vec<DnsRecord> =
                envs.iter().flat_map(|e| dns::records(model, e)).collect();
            p.json(&records)?;
        }
        Format::Zone => {
            let parts: Vec<String> = envs
                .iter()
                .map(|e| dns::render_zone(e, &dns::records(model, e), args.ttl))
                .collect();
            p.out(parts.join("\n"));
        }
        Format::Table => {
            let parts: Vec<String> = envs
                .iter()
                .map(|e| table(e, &dns::records(model, e)))
                .collect();
            p.out(parts.join("\n"));
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// An aligned table under a heading line for the environment.
pub fn table(env: &kiln_model::Environment, records: &[DnsRecord]) -> String {
    let mut rows: Vec<[String; 4]> =
        vec![["NAME".into(), "TYPE".into(), "VALUE".into(), "FOR".into()]];
    rows.extend(records.iter().map(|r| {
        [
            r.name.clone(),
            r.rtype.as_str().to_string(),
            r.value.clone(),
            r.purpose.clone(),
        ]
    }));
    let mut out = format!(
        "{} ({}, certificates from {})\n",
        env.name, env.domain, env.acme_ca
    );
    out.push_str(&align(&rows, "  "));
    out
}

/// `--check`: ask, render, and map the outcome to an exit code.
fn check(ctx: &Context, args: &Args, format: Format) -> CmdResult {
    if matches!(format, Format::Zone) {
        return Err(CliError::invalid(miette::miette!(
            help = "use --format table or --format json with --check",
            "--check cannot print a zone file"
        )));
    }
    let model = ctx.model()?;
    let envs = ctx.environments(args.env.as_deref())?;
    let resolver = match args.resolver {
        Some(addr) => Resolver::at(addr),
        None => Resolver::system()?,
    };
    let records: Vec<DnsRecord> = envs.iter().flat_map(|e| dns::records(model, e)).collect();
    let report = dns_check::check(&records, &resolver);
    let p = Printer::json_if(matches!(format, Format::Json));
    if p.is_json() {
        p.json(&report)?;
    } else {
        let parts: Vec<String> = envs.iter().map(|e| check_table(e, &report)).collect();
        p.out(parts.join("\n"));
        p.outln(check_summary(&report, &resolver));
    }
    let errors = report.errors();
    if errors > 0 {
        let first = report.results.iter().find_map(|r| match &r.status {
            Status::Error { message } => Some(message.as_str()),
            _ => None,
        });
        let (what, hint) = if errors == report.results.len() {
            (
                format!("no record could be checked with {}", resolver.describe()),
                "check the resolver's address, or name another with --resolver IP[:PORT]",
            )
        } else {
            (
                format!(
                    "{errors} of {} records could not be checked with {}",
                    report.results.len(),
                    resolver.describe()
                ),
                "run it again, or ask another resolver with --resolver IP[:PORT]",
            )
        };
        return Err(CliError::failed(miette::miette!(
            help = hint,
            "{what}: {}",
            first.unwrap_or("no answer")
        )));
    }
    Ok(ExitCode::from(if report.all_ok() {
        error::SUCCESS
    } else {
        error::CHANGES_PENDING
    }))
}

/// One line per record of `env`: state, name, type, expected value, what was found.
pub fn check_table(env: &kiln_model::Environment, report: &CheckReport) -> String {
    let rows: Vec<[String; 5]> = report
        .results
        .iter()
        .filter(|r| r.record.environment == env.name)
        .map(|r| {
            let (state, note) = match &r.status {
                Status::Ok => ("ok", String::new()),
                Status::Missing => ("MISSING", String::new()),
                Status::Different { found } => {
                    ("DIFFERENT", format!("(found {})", found.join(", ")))
                }
                Status::Error { message } => ("ERROR", format!("({message})")),
            };
            [
                state.to_string(),
                r.record.name.clone(),
                r.record.rtype.as_str().to_string(),
                r.record.value.clone(),
                note,
            ]
        })
        .collect();
    let mut out = format!("{} ({})\n", env.name, env.domain);
    out.push_str(&align(&rows, "  "));
    out
}

/// `8 records: 6 ok, 1 missing, 1 different, 0 errors (asked 192.0.2.53:53)`.
pub fn check_summary(report: &CheckReport, resolver: &Resolver) -> String {
    let errors = report.errors();
    format!(
        "{} records: {} ok, {} missing, {} different, {errors} error{} (asked {})",
        report.results.len(),
        report.ok(),
        report.missing(),
        report.different(),
        if errors == 1 { "" } else { "s" },
        resolver.describe()
    )
}
