//! `kiln lab`: throwaway Debian servers on this machine, to test and rehearse. Thin layer over
//! `kiln_lab`: argument parsing, progress lines, tables; the work happens in the library.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use kiln_lab::{Lab, LabOptions, Roots};

use crate::GlobalArgs;
use crate::error::{CliError, CmdResult};

/// Throwaway servers on this machine, to test and rehearse.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  kiln lab up --servers 2     two Debian 13 servers, reachable over SSH
  kiln lab up --vm vm1        one qemu VM server (Debian kernel, LVM works)
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
    /// environment, whose addresses and host keys are then recorded in kiln.toml.
    Up(UpArgs),
    /// Show running labs and their servers.
    Status(StatusArgs),
    /// Open SSH to a lab server as its admin user (or run a command there).
    Ssh(SshArgs),
    /// Load a lab container image (postgres, caddy, synapse), built locally from Debian
    /// packages without a registry, into a server's podman (also under the upstream name).
    Image(ImageArgs),
    /// Remove a lab: processes, namespaces, mounts, cgroups, files. Safe to repeat; also cleans
    /// up after a crashed run.
    Down(DownArgs),
    /// kiln end to end on an embedded example: lab servers, vault, plan, apply, a web page.
    Demo(super::demo::Args),
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
    /// Also start an S3 server with Object Lock (moto) with this bucket.
    #[arg(long, value_name = "BUCKET")]
    s3: Option<String>,
    /// Default COMPLIANCE retention of the S3 bucket, in days.
    #[arg(long, default_value_t = 7, value_name = "DAYS")]
    retention_days: u32,
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
    /// Image name: postgres, caddy or synapse.
    image: String,
    /// Server to load it into.
    #[arg(long)]
    server: String,
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

pub fn run(global: &GlobalArgs, args: Args) -> CmdResult {
    match args.command {
        LabCommand::Up(a) => up(global, a),
        LabCommand::Status(a) => status(a),
        LabCommand::Ssh(a) => ssh(a),
        LabCommand::Image(a) => image(a),
        LabCommand::Down(a) => down(a),
        LabCommand::Demo(a) => super::demo::run(global, a),
    }
}

fn config_path(global: &GlobalArgs) -> Option<PathBuf> {
    match &global.config {
        Some(p) => Some(p.clone()),
        None => {
            let cwd = std::env::current_dir().ok()?;
            cwd.ancestors()
                .map(|d| d.join("kiln.toml"))
                .find(|p| p.is_file())
        }
    }
}

fn up(global: &GlobalArgs, a: UpArgs) -> CmdResult {
    let config = config_path(global);
    let mut opts = LabOptions {
        name: a.lab.name.clone(),
        install_missing: a.yes,
        s3: a.s3.clone().map(|bucket| kiln_lab::S3Options {
            bucket,
            retention_days: a.retention_days,
            ..Default::default()
        }),
        ..Default::default()
    };
    match (a.servers, &config) {
        (Some(n), _) => opts.servers = n,
        (None, Some(path)) => {
            let roles = kiln_lab::config::lab_roles(path).map_err(failed)?;
            if roles.is_empty() {
                opts.servers = 1;
            } else {
                opts.server_names = roles;
            }
        }
        (None, None) => opts.servers = 1,
    }
    if !a.vms.is_empty() && a.servers.is_none() && opts.server_names.is_empty() {
        // `--vm NAME` alone: just the VM.
        opts.servers = 0;
    }
    opts.vms = a.vms.clone();
    if opts.servers == 0 && opts.server_names.is_empty() && opts.vms.is_empty() {
        return Err(CliError::invalid(miette::miette!(
            "--servers must be at least 1 (or give --vm NAME)"
        )));
    }
    if !a.yes && std::io::stdin().is_terminal() {
        let missing = kiln_lab::prereq::missing(kiln_lab::prereq::Needs {
            s3: a.s3.is_some(),
            vm: !a.vms.is_empty(),
        });
        if !missing.is_empty() && kiln_lab::prereq::is_root() && kiln_lab::prereq::is_debian_like()
        {
            eprintln!("The lab needs these packages:");
            for r in &missing {
                eprintln!("  {} ({}): {}", r.package, r.program, r.why);
            }
            eprint!("Install them with apt now? [y/N] ");
            let mut answer = String::new();
            let _ = std::io::stdin().read_line(&mut answer);
            opts.install_missing = matches!(answer.trim(), "y" | "Y" | "yes");
        }
    }
    let started = Instant::now();
    opts.progress = Some(Arc::new(move |m: &kiln_lab::LabEvent| {
        eprintln!("[{:5.1}s] {m}", started.elapsed().as_secs_f64())
    }));
    let lab = Lab::start(opts).map_err(failed)?;
    if let Some(path) = &config {
        kiln_lab::config::record_hosts(path, lab.servers()).map_err(failed)?;
        eprintln!(
            "recorded the lab hosts' addresses and host keys in {}",
            path.display()
        );
    }
    println!(
        "lab `{}` is up ({:.1} s):",
        lab.name(),
        started.elapsed().as_secs_f64()
    );
    for s in lab.servers() {
        println!(
            "  {:<12} {}  ssh {}@{}  (kiln lab ssh {})",
            s.name, s.address, s.admin_user, s.address, s.name
        );
    }
    println!("  operator key: {}", lab.identity_file().display());
    println!("  known_hosts:  {}", lab.known_hosts().display());
    println!("  apt proxy:    {}", lab.apt_proxy());
    if let Some(s3) = lab.s3() {
        println!(
            "  s3:           {} bucket {} (Object Lock COMPLIANCE {} days); credentials in {}",
            s3.endpoint,
            s3.bucket,
            s3.retention_days,
            lab.dir().join("state.json").display()
        );
    }
    lab.detach();
    Ok(ExitCode::SUCCESS)
}

fn status(a: StatusArgs) -> CmdResult {
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
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
        return Ok(ExitCode::SUCCESS);
    }
    if labs.is_empty() {
        println!("no lab is running");
    }
    for l in labs {
        println!("lab `{}` (host side {})", l.name, l.host_address);
        for (s, alive, mem) in &l.servers {
            println!(
                "  {:<12} {:<9} {:<14} {:<8} {:>6.1} MiB",
                s.name,
                s.kind.word(),
                s.address,
                if *alive { "running" } else { "stopped" },
                *mem as f64 / 1024.0
            );
        }
        if let Some(s3) = &l.s3 {
            println!(
                "  s3           {} bucket {} (Object Lock, {} days)",
                s3.endpoint, s3.bucket, s3.retention_days
            );
        }
    }
    Ok(ExitCode::SUCCESS)
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

fn image(a: ImageArgs) -> CmdResult {
    let mut lab = Lab::attach(&Roots::default(), &a.lab.name).map_err(failed)?;
    let started = Instant::now();
    lab.set_progress(Some(Arc::new(move |m: &kiln_lab::LabEvent| {
        eprintln!("[{:5.1}s] {m}", started.elapsed().as_secs_f64())
    })));
    let reference = lab.load_image(&a.server, &a.image).map_err(failed)?;
    println!(
        "{reference} loaded into {} ({:.1} s)",
        a.server,
        started.elapsed().as_secs_f64()
    );
    Ok(ExitCode::SUCCESS)
}

fn down(a: DownArgs) -> CmdResult {
    let roots = Roots::default();
    let cleaned = if a.all {
        kiln_lab::down_all(&roots)
    } else {
        kiln_lab::down(&roots, &a.lab.name)
    }
    .map_err(failed)?;
    if cleaned.is_empty() {
        println!("nothing to remove");
    } else {
        println!(
            "removed: {} processes, {} cgroups, {} mounts, {} loop devices, {} namespaces, {} links, {} folders",
            cleaned.processes,
            cleaned.cgroups,
            cleaned.mounts,
            cleaned.loop_devices,
            cleaned.namespaces,
            cleaned.links,
            cleaned.folders
        );
    }
    Ok(ExitCode::SUCCESS)
}
