//! `kiln lab`: throwaway Debian servers on this machine, to test and rehearse. Thin layer over
//! `kiln_lab`: argument parsing, progress lines, tables; the work happens in the library.

mod demo;

use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use kiln_lab::{Lab, Roots};

use crate::context::Context;
use crate::error::{CliError, CmdResult};
use crate::printer::Printer;

/// Throwaway servers on this machine, to test and rehearse.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  kiln lab up --servers 2     two Debian 13 servers, reachable over SSH
  kiln lab up --vm vm1        one qemu VM server (Debian kernel, LVM works)
  kiln lab up --acme          also an ACME server (Pebble) and the lab DNS
  kiln lab status             running labs, servers and addresses
  kiln lab ssh server1        a shell on a server (pinned host key)
  kiln lab down               remove everything the lab created
  kiln lab demo --yes         kiln end to end on an example, then removed")]
pub struct Args {
    #[command(subcommand)]
    command: LabCommand,
}

#[derive(Debug, clap::Subcommand)]
enum LabCommand {
    /// Start servers (as root). With a kiln.toml, one server per host role of its `lab`
    /// environment, whose addresses and host keys are then recorded in kiln.toml; when that
    /// environment's `acme_ca` is an ACME directory, also the lab's ACME server, recorded as
    /// its `acme_ca`, with the environment's DNS records in the lab DNS.
    Up(UpArgs),
    /// Show running labs and their servers.
    Status(StatusArgs),
    /// Open SSH to a lab server as its admin user (or run a command there).
    Ssh(SshArgs),
    /// Load a container image into a server's podman, built locally without a registry: a
    /// lab image by name, or what serves an upstream reference (after changing a service's
    /// version; `kiln lab up` loads the images of kiln.toml's lab services itself).
    Image(ImageArgs),
    /// Load the DNS records of kiln.toml's `lab` environment into the running lab's DNS
    /// (after adding a service with a subdomain: its name must resolve for the ACME server
    /// to validate it). `kiln lab up` does this when it starts the lab.
    Dns(DnsArgs),
    /// Remove a lab: processes, namespaces, mounts, cgroups, files. Safe to repeat; also cleans
    /// up after a crashed run.
    Down(DownArgs),
    /// kiln end to end on an embedded example: lab servers, vault, plan, apply, a web page.
    Demo(demo::Args),
}

#[derive(Debug, clap::Args)]
struct LabName {
    /// Which lab (several can run side by side).
    #[arg(long = "lab", default_value = "default", value_name = "NAME")]
    name: String,
}

#[derive(Debug, clap::Args)]
struct UpArgs {
    #[command(flatten)]
    lab: LabName,
    /// Number of servers (named server1..N); default: the lab hosts of kiln.toml, else 1.
    #[arg(long, value_name = "N")]
    servers: Option<usize>,
    /// Also start a server that is a qemu VM under software emulation (Debian kernel,
    /// device-mapper for LVM scenarios; about a minute to SSH). Repeatable.
    #[arg(long = "vm", value_name = "NAME")]
    vms: Vec<String>,
    /// Install missing host prerequisites with apt without asking.
    #[arg(long)]
    yes: bool,
    /// Also start an S3 server with Object Lock (moto) with this bucket and three
    /// credentials (server, admin, read-only). With a kiln.toml that has `[backups]`, they
    /// are stored in the `lab` environment's vault under the `[backups.credentials]` names
    /// and the server is recorded as that environment's `backup_repository`.
    #[arg(long, value_name = "BUCKET")]
    s3: Option<String>,
    /// The lab vault's passphrase file (with `--s3` and a kiln.toml with `[backups]`).
    #[arg(long, env = "KILN_PASSPHRASE_FILE", value_name = "FILE")]
    passphrase_file: Option<std::path::PathBuf>,
    /// Run this command (with sh) and use its output as the lab vault's passphrase.
    #[arg(long, value_name = "COMMAND", conflicts_with = "passphrase_file")]
    passphrase_command: Option<String>,
    /// Default COMPLIANCE retention of the S3 bucket, in days.
    #[arg(long, default_value_t = 7, value_name = "DAYS")]
    retention_days: u32,
    /// Also start an ACME server (Pebble, certificates valid 7 days) and the lab DNS it
    /// validates names with; implied when kiln.toml's `lab` environment has an ACME
    /// directory as `acme_ca`.
    #[arg(long)]
    acme: bool,
}

#[derive(Debug, clap::Args)]
struct StatusArgs {
    /// Machine-readable output.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, clap::Args)]
struct SshArgs {
    #[command(flatten)]
    lab: LabName,
    /// Server name.
    server: String,
    /// Command to run instead of a shell, after `--`; each argument arrives as one word
    /// (`-- echo 'a b'` prints `a b`, no shell syntax is re-read on the server).
    #[arg(last = true, value_name = "ARGS")]
    command: Vec<String>,
}

#[derive(Debug, clap::Args)]
struct ImageArgs {
    #[command(flatten)]
    lab: LabName,
    /// A lab image by name (postgres, caddy, synapse), or an upstream reference a service
    /// pulls (`docker.io/matrixdotorg/synapse:v1.163.2`, `quay.io/hedgedoc/hedgedoc:1.10.3`):
    /// the lab builds what serves it (for HedgeDoc and Nextcloud a contract image, a test
    /// double) and imports it under that reference.
    image: String,
    /// Server to load it into.
    #[arg(long)]
    server: String,
}

#[derive(Debug, clap::Args)]
struct DnsArgs {
    #[command(flatten)]
    lab: LabName,
}

#[derive(Debug, clap::Args)]
struct DownArgs {
    #[command(flatten)]
    lab: LabName,
    /// Remove every lab and every kiln-lab leftover on this machine.
    #[arg(long)]
    all: bool,
}

fn failed(e: kiln_lab::LabError) -> CliError {
    match e {
        kiln_lab::LabError::InvalidName { .. } | kiln_lab::LabError::UnknownServer { .. } => {
            CliError::invalid(miette::miette!("{e}"))
        }
        _ => CliError::failed(miette::miette!("{e}")),
    }
}

pub fn run(ctx: &Context, args: Args) -> CmdResult {
    let p = &ctx.printer;
    match args.command {
        LabCommand::Up(a) => up(ctx, a),
        LabCommand::Status(a) => status(p, a),
        LabCommand::Ssh(a) => ssh(a),
        LabCommand::Image(a) => image(p, a),
        LabCommand::Dns(a) => dns(ctx, a),
        LabCommand::Down(a) => down(p, a),
        LabCommand::Demo(a) => demo::run(ctx, a),
    }
}

fn up(ctx: &Context, a: UpArgs) -> CmdResult {
    let p = ctx.printer;
    // With a kiln.toml (the one rule of `kiln_ops::config::locate`), one server per host
    // role of its `lab` environment, recorded there; without one, numbered servers.
    let config = match ctx.config_path() {
        Ok(path) => Some((path.to_owned(), ctx.model()?)),
        Err(_) => None,
    };
    let mut opts = kiln_ops::lab::UpOptions {
        name: a.lab.name.clone(),
        servers: a.servers,
        vms: a.vms.clone(),
        install_missing: a.yes,
        s3: a.s3.clone().map(|bucket| kiln_lab::S3Options {
            bucket,
            retention_days: a.retention_days,
            ..Default::default()
        }),
        acme: a.acme,
        ..Default::default()
    };
    // Refused before asking anything.
    let lab_opts = kiln_ops::lab::lab_options(&opts, config.as_ref().map(|(_, m)| *m))?;
    if !a.yes && std::io::stdin().is_terminal() {
        let missing = kiln_lab::prereq::missing(kiln_lab::prereq::Needs {
            s3: a.s3.is_some(),
            vm: !a.vms.is_empty(),
            acme: lab_opts.acme,
        });
        if !missing.is_empty() && kiln_lab::prereq::is_root() && kiln_lab::prereq::is_debian_like()
        {
            p.note("The lab needs these packages:");
            for r in &missing {
                p.note(format_args!("  {} ({}): {}", r.package, r.program, r.why));
            }
            p.prompt("Install them with apt now? [y/N] ");
            let mut answer = String::new();
            let _ = std::io::stdin().read_line(&mut answer);
            opts.install_missing = matches!(answer.trim(), "y" | "Y" | "yes");
        }
    }
    // The lab's S3 credentials go into the lab vault: opened (or created) before the lab
    // starts, so that a wrong passphrase costs nothing.
    let vault = match &config {
        Some((_, model))
            if a.s3.is_some()
                && model.backups.is_some()
                && model
                    .environment(kiln_model::edit::LAB_ENVIRONMENT)
                    .is_some_and(|e| e.backups_enabled) =>
        {
            Some(ctx.open_or_create_vault(
                kiln_model::edit::LAB_ENVIRONMENT,
                &kiln_ops::vault::UnlockOptions {
                    passphrase_file: a.passphrase_file.clone(),
                    passphrase_command: a.passphrase_command.clone(),
                    identities: vec![],
                },
            )?)
        }
        _ => None,
    };
    let started = Instant::now();
    opts.progress = Some(Arc::new(move |m: &kiln_lab::LabEvent| {
        p.note(format_args!(
            "[{:5.1}s] {m}",
            started.elapsed().as_secs_f64()
        ))
    }));
    let (lab, recorded) =
        kiln_ops::lab::up(&opts, config.as_ref().map(|(path, m)| (path.as_path(), *m)))?;
    if let Some((path, _)) = &config {
        if !recorded.hosts.is_empty() {
            p.note(format_args!(
                "recorded the lab hosts' addresses and host keys in {}",
                path.display()
            ));
        }
        if let Some(url) = &recorded.backup_repository {
            p.note(format_args!(
                "recorded the lab's S3 as the lab environment's backup_repository in {} ({url})",
                path.display()
            ));
        }
        if let (Some(vault), Some(s3), Some((_, model))) = (&vault, lab.s3(), &config) {
            // The names are kiln.toml's, unchanged by what `up` recorded.
            let written = kiln_ops::lab::store_backup_credentials(vault, model, s3)?;
            p.note(format_args!(
                "stored the lab S3's server, admin and read-only credentials in the lab vault ({})",
                written.join(", ")
            ));
        }
        if let Some((directory, _)) = &recorded.acme_ca {
            p.note(format_args!(
                "recorded the lab environment's acme_ca ({directory}) in {}, and its {} DNS records in the lab DNS",
                path.display(),
                recorded.dns_records.len()
            ));
        }
    }
    p.outln(format_args!(
        "lab `{}` is up ({:.1} s):",
        lab.name(),
        started.elapsed().as_secs_f64()
    ));
    for s in lab.servers() {
        p.outln(format_args!(
            "  {:<12} {}  ssh {}@{}  (kiln lab ssh {})",
            s.name, s.address, s.admin_user, s.address, s.name
        ));
    }
    p.outln(format_args!(
        "  operator key: {}",
        lab.identity_file().display()
    ));
    p.outln(format_args!(
        "  known_hosts:  {}",
        lab.known_hosts().display()
    ));
    p.outln(format_args!("  apt proxy:    {}", lab.apt_proxy()));
    if let Some(s3) = lab.s3() {
        p.outln(format_args!(
            "  s3:           {} bucket {} (Object Lock COMPLIANCE {} days); credentials in {}",
            s3.endpoint,
            s3.bucket,
            s3.retention_days,
            lab.dir().join("state.json").display()
        ));
    }
    if let Some(acme) = lab.acme() {
        acme_lines(&p, acme, "  ", ":");
    }
    lab.detach();
    Ok(ExitCode::SUCCESS)
}

fn status(p: &Printer, a: StatusArgs) -> CmdResult {
    let labs = kiln_lab::status(&Roots::default()).map_err(failed)?;
    if a.json {
        let v: Vec<serde_json::Value> = labs
            .iter()
            .map(|l| {
                serde_json::json!({
                    "name": l.name,
                    "host_address": l.host_address.to_string(),
                    "servers": l.servers.iter().map(|(s, alive, mem)| serde_json::json!({
                        "name": s.name, "kind": s.kind.word(), "address": s.address.to_string(), "running": alive, "host_keys": s.host_keys,
                        "memory_kib": mem,
                    })).collect::<Vec<_>>(),
                    "acme": l.acme.as_ref().map(|a| serde_json::json!({
                        "directory": a.directory,
                        "ca_root": a.ca_root,
                        "dns": a.dns.to_string(),
                        "issuing_root": a.issuing_root,
                    })),
                })
            })
            .collect();
        p.json(&v)?;
        return Ok(ExitCode::SUCCESS);
    }
    if labs.is_empty() {
        p.outln("no lab is running");
    }
    for l in labs {
        p.outln(format_args!(
            "lab `{}` (host side {})",
            l.name, l.host_address
        ));
        for (s, alive, mem) in &l.servers {
            p.outln(format_args!(
                "  {:<12} {:<9} {:<14} {:<8} {:>6.1} MiB",
                s.name,
                s.kind.word(),
                s.address,
                if *alive { "running" } else { "stopped" },
                *mem as f64 / 1024.0
            ));
        }
        if let Some(s3) = &l.s3 {
            p.outln(format_args!(
                "  s3           {} bucket {} (Object Lock, {} days)",
                s3.endpoint, s3.bucket, s3.retention_days
            ));
        }
        if let Some(acme) = &l.acme {
            acme_lines(p, acme, "  ", "");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The lab's ACME server as `lab up` and `lab status` show it: directory (and the CA its
/// TLS certificate chains to), DNS, and the issuing root of this run.
fn acme_lines(p: &Printer, acme: &kiln_lab::AcmeState, indent: &str, colon: &str) {
    let label = |l: &str| format!("{indent}{:<14}", format!("{l}{colon}"));
    p.outln(format_args!(
        "{}{} (TLS from the CA in {})",
        label("acme"),
        acme.directory,
        acme.ca_root.display()
    ));
    p.outln(format_args!("{}{} (UDP and TCP)", label("dns"), acme.dns));
    p.outln(format_args!(
        "{}{} (Pebble's root of this run: `curl --cacert` it)",
        label("issuing root"),
        acme.issuing_root.display()
    ));
}

fn ssh(a: SshArgs) -> CmdResult {
    let lab = Lab::attach(&Roots::default(), &a.lab.name).map_err(failed)?;
    let server = lab.server(&a.server).map_err(failed)?;
    // Each word arrives intact (quoted once by the lab), as with `podman exec`.
    let mut c = server.ssh_argv_command(&a.command);
    let status = c
        .status()
        .map_err(|e| CliError::failed(miette::miette!("cannot run ssh: {e}")))?;
    Ok(ExitCode::from(status.code().map(|c| c as u8).unwrap_or(1)))
}

fn image(p: &Printer, a: ImageArgs) -> CmdResult {
    let mut lab = Lab::attach(&Roots::default(), &a.lab.name).map_err(failed)?;
    let started = Instant::now();
    let progress = *p;
    lab.set_progress(Some(Arc::new(move |m: &kiln_lab::LabEvent| {
        progress.note(format_args!(
            "[{:5.1}s] {m}",
            started.elapsed().as_secs_f64()
        ))
    })));
    // An upstream reference names its registry (`docker.io/…`); a lab image is one word.
    if a.image.contains('/') {
        let provided = lab.provide_image(&a.server, &a.image).map_err(failed)?;
        let what = if provided.contract {
            "contract image (test double, not the application)"
        } else {
            "lab image"
        };
        p.outln(format_args!(
            "{} served by {what} {} on {} ({:.1} s)",
            provided.upstream,
            provided.local,
            a.server,
            started.elapsed().as_secs_f64()
        ));
        return Ok(ExitCode::SUCCESS);
    }
    let reference = lab.load_image(&a.server, &a.image).map_err(failed)?;
    p.outln(format_args!(
        "{reference} loaded into {} ({:.1} s)",
        a.server,
        started.elapsed().as_secs_f64()
    ));
    Ok(ExitCode::SUCCESS)
}

fn dns(ctx: &Context, a: DnsArgs) -> CmdResult {
    let model = ctx.model()?;
    let lab = Lab::attach(&Roots::default(), &a.lab.name).map_err(failed)?;
    let acme = lab.acme().ok_or_else(|| {
        CliError::invalid(miette::miette!(
            help = "start a lab with its ACME server and DNS: `kiln lab up --acme` (or an `acme_ca = {{ directory = … }}` in the lab environment)",
            "lab `{}` has no DNS server of its own",
            a.lab.name
        ))
    })?;
    let records = kiln_ops::lab::lab_dns_records(model);
    kiln_lab::acme::set_records(acme, &records).map_err(failed)?;
    for r in &records {
        ctx.printer
            .outln(format_args!("{:<32} {:<5} {}", r.name, r.rtype, r.value));
    }
    ctx.printer.outln(format_args!(
        "{} record(s) of the lab environment loaded into lab `{}`'s DNS at {}",
        records.len(),
        a.lab.name,
        acme.dns
    ));
    Ok(ExitCode::SUCCESS)
}

fn down(p: &Printer, a: DownArgs) -> CmdResult {
    let roots = Roots::default();
    let cleaned = if a.all {
        kiln_lab::down_all(&roots)
    } else {
        kiln_lab::down(&roots, &a.lab.name)
    }
    .map_err(failed)?;
    if cleaned.is_empty() {
        p.outln("nothing to remove");
    } else {
        p.outln(format_args!(
            "removed: {} processes, {} cgroups, {} mounts, {} loop devices, {} namespaces, {} links, {} folders",
            cleaned.processes,
            cleaned.cgroups,
            cleaned.mounts,
            cleaned.loop_devices,
            cleaned.namespaces,
            cleaned.links,
            cleaned.folders
        ));
    }
    Ok(ExitCode::SUCCESS)
}
