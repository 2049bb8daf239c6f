//! A standalone agent: the same loop as `kiln agent` (`agent [--plan-only] [--root DIR]`,
//! desired state on stdin, JSON-line events on stdout), without the rest of the CLI. The
//! transport tests ship this binary to a loopback sshd.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use kiln_converge::system::{SystemRunner, Target};

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let mut plan_only = false;
    let mut root = PathBuf::from("/");
    if args.next().as_deref() != Some("agent") {
        eprintln!("usage: kiln-converge-agent agent [--plan-only] [--root DIR]");
        return ExitCode::from(2);
    }
    while let Some(a) = args.next() {
        match a.as_str() {
            "--plan-only" => plan_only = true,
            "--root" => match args.next() {
                Some(r) => root = r.into(),
                None => {
                    eprintln!("--root needs a folder");
                    return ExitCode::from(2);
                }
            },
            other => {
                eprintln!("unknown argument {other:?}");
                return ExitCode::from(2);
            }
        }
    }
    let mut input = Vec::new();
    if let Err(e) = std::io::stdin().read_to_end(&mut input) {
        eprintln!("cannot read stdin: {e}");
        return ExitCode::from(1);
    }
    let mut target = Target {
        root,
        runner: Box::new(SystemRunner),
    };
    let stdout = std::io::stdout();
    let mut sink = |e: kiln_converge::Event| {
        if let Ok(line) = serde_json::to_string(&e) {
            let mut out = stdout.lock();
            let _ = writeln!(out, "{line}");
            let _ = out.flush();
        }
    };
    if kiln_converge::agent::run(&mut target, &input, plan_only, &mut sink) {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
