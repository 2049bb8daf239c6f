//! kiln's infrastructure model: reads `kiln.toml`, validates it (every error carries the
//! file and span it concerns), and resolves it per environment into what runs where.
//!
//! No terminal code here: errors are values (rendered by the CLI with miette), and
//! nothing is printed.
