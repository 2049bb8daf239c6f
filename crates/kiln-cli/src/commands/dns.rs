//! `kiln dns`: print the DNS records each environment needs (hosts, services, CAA), as
//! an aligned table, a BIND zone-file fragment, or JSON.

use std::process::ExitCode;

use kiln_model::dns::{self, DnsRecord};

use crate::context::Context;
use crate::error::CmdResult;
use crate::printer::Printer;
use crate::render::table::align;

/// Print the DNS records each environment needs.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Hosts get A/AAAA records at <role>.<domain> (and the bare domain when \
apex_host is set); each web service gets a CNAME; CAA records allow only the environment's CA.

Examples:
  kiln dns                                   every environment, as tables
  kiln dns --env production                  the records to create at your registrar
  kiln dns --env staging --format zone       a BIND zone-file fragment
  kiln dns --format json | jq '.[] | select(.type == \"CNAME\")'"
)]
pub struct Args {
    /// Only this environment (default: all).
    #[arg(long, short, env = "KILN_ENV", value_name = "ENV")]
    pub env: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    /// TTL written in zone format, in seconds.
    #[arg(long, default_value_t = 3600, value_name = "SECONDS")]
    pub ttl: u32,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Format {
    Table,
    Zone,
    Json,
}

pub fn run(ctx: &Context, args: Args) -> CmdResult {
    let model = ctx.model()?;
    let envs = ctx.environments(args.env.as_deref())?;
    let p = Printer::json_if(matches!(args.format, Format::Json));
    match args.format {
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
