//! Terminal rendering shared by several commands: plans, per-host progress, and the
//! broken-pipe-safe output macros.

pub mod plan;
pub mod progress;

/// `print!`/`println!` that do not panic when stdout is closed (e.g. piped into `head`):
/// kiln's work is done by then, and losing the rest of the text is the reader's choice.
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = write!(std::io::stdout(), $($arg)*);
    }};
}
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}
pub(crate) use {out, outln};
