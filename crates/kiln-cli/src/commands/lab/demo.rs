//! `kiln lab demo`: arguments and rendering of `kiln_ops::workflows::demo` (kiln's main
//! job end to end on an embedded example, on throwaway lab servers): narration with
//! timings on stderr, plans and the summary on stdout, live apply progress, and the
//! Ctrl-C handler (which asks the workflow to remove the lab, then exits 130).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Mutex, Once};
use std::time::Instant;

use kiln_ops::session::SessionSink;
use kiln_ops::workflows::demo::{
    self, DemoEvent, DemoOptions, DemoSink, DemoSummary, ENV, PASSPHRASE_FILE, STEPS, WEB_ROLE,
};

use crate::context::Context;
use crate::error::CmdResult;
use crate::printer::Printer;
use crate::progress::Renderer;
use crate::render::plan::render_plan;

/// Run kiln's main job end to end on an embedded example, on throwaway lab servers.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Needs root (the lab's servers are systemd-nspawn machines).

Examples:
  kiln lab demo --yes                 everything, then the lab is removed
  kiln lab demo --yes --keep          keep the servers to look around (kiln lab ssh, kiln plan)
  kiln lab demo --dir ./my-demo       write the demo repository there (an empty or new folder)"
)]
pub struct Args {
    /// Install missing host prerequisites with apt without asking.
    #[arg(long, short = 'y')]
    yes: bool,
    /// Folder for the demo repository (new or empty); default: a new folder under the
    /// temporary directory, kept afterwards.
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
    /// Leave the lab running at the end (and after a failure), to look around.
    #[arg(long)]
    keep: bool,
    /// Name of the demo's lab (distinct from your other labs).
    #[arg(long = "lab", default_value = "demo", value_name = "NAME")]
    lab: String,
}

/// Renders the workflow's events.
struct Narrator {
    printer: Printer,
    start: Instant,
    tty: bool,
    lab: String,
    keep: bool,
    roots: kiln_lab::Roots,
    progress: Mutex<Renderer>,
    handler: Once,
}

impl Narrator {
    fn at(&self) -> String {
        format!("[{:6.1}s]", self.start.elapsed().as_secs_f64())
    }

    fn say(&self, m: impl std::fmt::Display) {
        self.printer.note(format_args!("{}   {m}", self.at()));
    }

    /// Interrupted (Ctrl-C, SIGTERM) once the lab may exist: remove it, unless --keep, and
    /// stop.
    fn install_interrupt_handler(&self) {
        let (lab, keep, roots, p) = (
            self.lab.clone(),
            self.keep,
            self.roots.clone(),
            self.printer,
        );
        self.handler.call_once(|| {
            let _ = ctrlc::set_handler(move || {
                if keep {
                    p.note(format_args!(
                        "\ninterrupted: the lab `{lab}` is left as it is (--keep)"
                    ));
                } else {
                    p.note(format_args!("\ninterrupted: removing the lab `{lab}`"));
                }
                if let Err(e) = demo::interrupted(&roots, &lab, keep) {
                    p.note(format_args!(
                        "removing it failed: {e}\n  hint: kiln lab down --lab {lab}"
                    ));
                }
                std::process::exit(130);
            });
        });
    }
}

impl DemoSink for Narrator {
    fn event(&self, e: &DemoEvent<'_>) {
        let p = &self.printer;
        match e {
            DemoEvent::StepStarted { number, title } => {
                if *number == 2 {
                    self.install_interrupt_handler();
                }
                if self.tty {
                    p.note(format_args!(
                        "\n{} \x1b[1mStep {number}/{STEPS}: {title}\x1b[0m",
                        self.at()
                    ));
                } else {
                    p.note(format_args!("\n{} Step {number}/{STEPS}: {title}", self.at()));
                }
            }
            DemoEvent::RepositoryWritten { dir, files } => self.say(format_args!(
                "wrote {files} files to {} (kept afterwards: look at kiln.toml and templates/)",
                dir.display()
            )),
            DemoEvent::LabStarting { lab, roles } => self.say(format_args!(
                "lab `{lab}`: one Debian 13 server per host role of the `{ENV}` environment ({})",
                roles.join(", ")
            )),
            DemoEvent::Lab(message) => p.note(format_args!(
                "[{:6.1}s]     lab: {message}",
                self.start.elapsed().as_secs_f64()
            )),
            DemoEvent::ServerUp { server: s } => self.say(format_args!(
                "{:<11} {}  (ssh {}@{}, {} host keys)",
                s.name,
                s.address,
                s.admin_user,
                s.address,
                s.host_keys.len()
            )),
            DemoEvent::HostsRecorded { config } => self.say(format_args!(
                "recorded their addresses and pinned SSH host keys in {}",
                config.display()
            )),
            DemoEvent::ConfigValid {
                config,
                hosts,
                roles,
            } => self.say(format_args!(
                "{}: valid — environment `{ENV}`, hosts {}, roles {}",
                config.display(),
                hosts.join(", "),
                roles.join(", ")
            )),
            DemoEvent::PassphraseWritten { path } => self.say(format_args!(
                "random demo passphrase written to {} (mode 0600; a real repository keeps its passphrase out of git, e.g. in a password manager)",
                path.display()
            )),
            DemoEvent::Vault(notice) => p.note(notice),
            DemoEvent::SecretsGenerated {
                created,
                needs_value,
                dir,
            } => {
                for n in *created {
                    p.outln(format_args!("created {n}"));
                }
                if created.is_empty() {
                    p.note(format_args!(
                        "nothing to generate: every generated secret of `{ENV}` exists"
                    ));
                }
                for (n, description) in *needs_value {
                    p.note(format_args!(
                        "needs a value: {n} ({description}): kiln secrets set {n} --env {ENV}"
                    ));
                }
                self.say(format_args!(
                    "secrets are in {}, one age file per secret",
                    dir.display()
                ));
            }
            DemoEvent::Plans { plans } => {
                for (name, plan) in *plans {
                    p.out(render_plan(name, plan));
                }
            }
            DemoEvent::Planned {
                total,
                hosts,
                elapsed,
            } => self.say(format_args!(
                "plan: {} to create, {} to change, {} to remove on {hosts} host(s), in {:.1} s",
                total.create,
                total.change,
                total.remove,
                elapsed.as_secs_f64()
            )),
            DemoEvent::ApplyStarted => self.say(
                "applying exactly this plan (Caddy comes from Debian through the lab's apt proxy)",
            ),
            DemoEvent::Host { host, update } => {
                if let Ok(mut r) = self.progress.lock() {
                    r.update(host, update);
                }
            }
            DemoEvent::Applied {
                changed,
                hosts,
                elapsed,
            } => self.say(format_args!(
                "applied {changed} change(s) on {hosts} host(s) in {:.1} s",
                elapsed.as_secs_f64()
            )),
            DemoEvent::PageVerified {
                address,
                server,
                title,
                bytes,
                elapsed,
            } => self.say(format_args!(
                "page verified: http://{address}/ on {server} answered 200 \"{title}\" ({bytes} bytes, {:.0} ms)",
                elapsed.as_secs_f64() * 1000.0
            )),
            DemoEvent::Probe { role, seen, last } => {
                if *seen {
                    self.say(format_args!("{role}'s prober sees it too: {last}"));
                } else {
                    self.say(format_args!(
                        "warning: {role}'s prober has not seen the page yet ({})",
                        if last.is_empty() {
                            "no result written"
                        } else {
                            last
                        }
                    ));
                }
            }
            DemoEvent::NoChange { hosts, elapsed } => self.say(format_args!(
                "zero changes on {hosts} host(s); the plan took {:.1} s (connect, ship the agent if needed, observe, compare)",
                elapsed.as_secs_f64()
            )),
            DemoEvent::RemovingLab { lab } => self.say(format_args!("removing lab `{lab}`")),
            DemoEvent::LabRemoved { elapsed, dir } => self.say(format_args!(
                "lab removed in {:.1} s (the demo repository stays in {})",
                elapsed.as_secs_f64(),
                dir.display()
            )),
            DemoEvent::TeardownFailed { error } => {
                p.note(format_args!("{:?}", crate::error::demo_report(error).report))
            }
            DemoEvent::Kept { lab, dir, .. } => keep_hints(p, lab, dir),
        }
    }
}

pub fn run(ctx: &Context, args: Args) -> CmdResult {
    let printer = ctx.printer;
    let n = Narrator {
        printer,
        start: Instant::now(),
        tty: printer.stderr_is_terminal(),
        lab: args.lab.clone(),
        keep: args.keep,
        roots: kiln_lab::Roots::default(),
        progress: Mutex::new(Renderer::new(printer, false)),
        handler: Once::new(),
    };
    let opts = DemoOptions {
        dir: args.dir,
        lab: args.lab,
        keep: args.keep,
        install_missing: args.yes,
        roots: n.roots.clone(),
    };
    let summary = demo::run(&opts, &n)?;
    printer.out(render_summary(&summary));
    Ok(ExitCode::SUCCESS)
}

fn keep_hints(p: &Printer, lab: &str, dir: &Path) {
    let config = dir.join("kiln.toml");
    p.note(format_args!(
        "\nThe lab `{lab}` keeps running. To look around:\n\
         \x20 kiln lab ssh --lab {lab} {WEB_ROLE}\n\
         \x20 KILN_PASSPHRASE_FILE={pass} kiln plan --config {config} --env {ENV}\n\
         \x20 kiln lab down --lab {lab}",
        pass = dir.join(PASSPHRASE_FILE).display(),
        config = config.display(),
    ));
}

fn render_summary(t: &DemoSummary) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\nkiln lab demo: done in {:.1} s",
        t.total.as_secs_f64()
    );
    for (name, addr) in &t.servers {
        let _ = writeln!(out, "  server {name:<11} {addr}");
    }
    let _ = writeln!(out, "  resources applied:       {} change(s)", t.applied);
    match t.first_server {
        Some(d) => {
            let _ = writeln!(
                out,
                "  time to first server:    {:.1} s (all servers ready at {:.1} s)",
                d.as_secs_f64(),
                t.lab_ready.as_secs_f64()
            );
        }
        None => {
            let _ = writeln!(
                out,
                "  time to servers ready:   {:.1} s",
                t.lab_ready.as_secs_f64()
            );
        }
    }
    let _ = writeln!(
        out,
        "  first apply (plan+apply): {:.1} s",
        t.apply.as_secs_f64()
    );
    let _ = writeln!(
        out,
        "  no-change plan:          {:.1} s",
        t.noop_plan.as_secs_f64()
    );
    let _ = writeln!(out, "  steps:");
    for (i, (title, d)) in t.steps.iter().enumerate() {
        let _ = writeln!(out, "    {}. {title:<40} {:6.1} s", i + 1, d.as_secs_f64());
    }
    let _ = writeln!(out, "  the demo repository: {}", t.dir.display());
    out
}
