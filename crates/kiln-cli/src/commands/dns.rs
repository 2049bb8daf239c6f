//! `kiln dns`: print the DNS records each environment needs (hosts, services, CAA), as
//! an aligned table, a BIND zone-file fragment, or JSON.

use std::process::ExitCode;

use kiln_model::dns::{self, DnsRecord};

use crate::GlobalArgs;
use crate::commands::check::load_model;
use crate::exit::{CliError, CmdResult};

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

pub fn run(global: &GlobalArgs, args: Args) -> CmdResult {
    let model = load_model(global)?;
    let envs = select_environments(&model, args.env.as_deref())?;
    match args.format {
        Format::Json => {
            let records: Vec<DnsRecord> =
                envs.iter().flat_map(|e| dns::records(&model, e)).collect();
            let text = serde_json::to_string_pretty(&records)
                .map_err(|e| CliError::failed(miette::miette!("cannot write JSON: {e}")))?;
            println!("{text}");
        }
        Format::Zone => {
            let parts: Vec<String> = envs
                .iter()
                .map(|e| dns::render_zone(e, &dns::records(&model, e), args.ttl))
                .collect();
            print!("{}", parts.join("\n"));
        }
        Format::Table => {
            let parts: Vec<String> = envs
                .iter()
                .map(|e| table(e, &dns::records(&model, e)))
                .collect();
            print!("{}", parts.join("\n"));
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The environments named by `--env`, or all of them.
pub fn select_environments<'a>(
    model: &'a kiln_model::Model,
    name: Option<&str>,
) -> Result<Vec<&'a kiln_model::Environment>, CliError> {
    match name {
        None => Ok(model.environments.iter().collect()),
        Some(n) => match model.environment(n) {
            Some(e) => Ok(vec![e]),
            None => {
                let known: Vec<&str> = model.environments.iter().map(|e| e.name.as_str()).collect();
                Err(CliError::invalid(miette::miette!(
                    help = format!(
                        "environments in {}: {}",
                        model.config_path().display(),
                        known.join(", ")
                    ),
                    "no environment `{n}`"
                )))
            }
        },
    }
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
    out.push_str(&crate::commands::show::align(&rows, "  "));
    out
}
