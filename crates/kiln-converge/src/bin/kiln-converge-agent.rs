//! A standalone agent: the same [`kiln_converge::agent::main`] as `kiln agent`
//! (`agent [--plan-only] [--root DIR]`, desired state on stdin, JSON-line events on
//! stdout), without the rest of the CLI. The transport tests ship this binary to a
//! loopback sshd and to lab servers.

use std::process::ExitCode;

use kiln_converge::agent;

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    if args.next().as_deref() != Some("agent") {
        eprintln!("kiln-converge-agent: {}", agent::USAGE);
        return ExitCode::from(agent::EXIT_USAGE);
    }
    let opts = match agent::parse_args(args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("kiln-converge-agent: {e}\n{}", agent::USAGE);
            return ExitCode::from(agent::EXIT_USAGE);
        }
    };
    let code = agent::main(
        &opts,
        &mut std::io::stdin().lock(),
        &mut std::io::stdout().lock(),
    );
    ExitCode::from(code)
}
