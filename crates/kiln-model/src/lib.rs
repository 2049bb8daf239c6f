//! kiln's infrastructure model: reads `kiln.toml`, validates it (every error carries the
//! file and span it concerns), and resolves it per environment into what runs where.
//!
//! No terminal code here: errors are values (rendered by the CLI with miette), and
//! nothing is printed. The only I/O is reading kiln.toml and checking that the files it
//! references exist.
//!
//! ```no_run
//! let path = kiln_model::find_config(std::path::Path::new(".")).expect("no kiln.toml");
//! match kiln_model::load(&path) {
//!     Ok(model) => println!("{} environments", model.environments.len()),
//!     Err(diagnostics) => eprintln!("{diagnostics}"),
//! }
//! ```

#![warn(missing_docs)]

mod checks;
mod diagnostic;
pub mod dns;
pub mod edit;
mod model;
mod raw;
pub mod reference;
mod secrets;
pub mod ssh_key;
mod validate;

use std::path::{Path, PathBuf};

pub use checks::ssh_key_fingerprint;
pub use diagnostic::{ConfigError, Diagnostics, Source};
pub use ipnet;
pub use model::*;
pub use secrets::wireguard_secret;
pub use ssh_key::{BadKey, HostKey};
pub use toml;

/// The configuration file name kiln looks for.
pub const CONFIG_FILE: &str = "kiln.toml";

/// Reads, parses and validates the kiln.toml at `path`. The error holds every problem
/// found, each a miette diagnostic pointing into the file.
pub fn load(path: &Path) -> Result<Model, Diagnostics> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        Diagnostics::new(vec![
            ConfigError::file(
                "kiln::config::unreadable",
                format!("cannot read {}: {e}", path.display()),
            )
            .help(
                "give the path of your kiln.toml with --config, or run `kiln init` to create one",
            ),
        ])
    })?;
    let base_dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    parse_str(&path.display().to_string(), &text, &base_dir)
}

/// Parses and validates kiln.toml content. `name` is how errors name the file;
/// `base_dir` is where relative template/source paths are looked up.
pub fn parse_str(name: &str, text: &str, base_dir: &Path) -> Result<Model, Diagnostics> {
    let source = Source::new(name, text);
    let (doc, mut errors) = raw::decode_document(&source);
    let syntax_failed = errors.iter().any(|e| e.code == "kiln::config::syntax");
    if syntax_failed {
        return Err(Diagnostics::new(errors));
    }
    let (model, more) = validate::validate(&source, doc, base_dir, &base_dir.join(name_file(name)));
    errors.extend(more);
    if errors.is_empty() {
        Ok(model)
    } else {
        Err(Diagnostics::new(errors))
    }
}

fn name_file(name: &str) -> &str {
    Path::new(name)
        .file_name()
        .and_then(|f| f.to_str())
        .unwrap_or(CONFIG_FILE)
}

/// The nearest `kiln.toml` in `start` or one of its parent folders.
pub fn find_config(start: &Path) -> Option<PathBuf> {
    let start = if start.is_absolute() {
        start.to_path_buf()
    } else {
        std::env::current_dir().ok()?.join(start)
    };
    // `components` drops interior `.` (so `/a/.` becomes `/a`).
    let start: PathBuf = start.components().collect();
    start
        .ancestors()
        .map(|d| d.join(CONFIG_FILE))
        .find(|p| p.is_file())
}
