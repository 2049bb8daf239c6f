//! Which kiln.toml a command works on: the one resolution rule every command uses.
//!
//! `--config PATH` (or `KILN_CONFIG`) names the file, or a folder holding `kiln.toml`;
//! without it, the nearest `kiln.toml` from the current folder upward. Loading and
//! validating the file is kiln-model's job; rendering its diagnostics is the CLI's.

use std::path::{Path, PathBuf};

/// kiln.toml could not be found.
#[derive(Debug, thiserror::Error)]
pub enum LocateError {
    #[error("no kiln.toml in {} or any parent folder", .start.display())]
    NotFound { start: PathBuf },
}

impl LocateError {
    pub fn hint(&self) -> &'static str {
        match self {
            LocateError::NotFound { .. } => "run `kiln init` to create one, or pass --config PATH",
        }
    }
}

/// The kiln.toml to use. `explicit` is `--config`/`KILN_CONFIG`: a file, or a folder
/// holding `kiln.toml`. Without it, the nearest `kiln.toml` from `cwd` upward, shown
/// relative to `cwd` when it is below it.
pub fn locate(explicit: Option<&Path>, cwd: &Path) -> Result<PathBuf, LocateError> {
    if let Some(p) = explicit {
        // `--config my-infra` means the kiln.toml in that folder.
        if p.is_dir() {
            return Ok(p.join(kiln_model::CONFIG_FILE));
        }
        return Ok(p.to_owned());
    }
    let found = kiln_model::find_config(cwd).ok_or_else(|| LocateError::NotFound {
        start: cwd.to_owned(),
    })?;
    let abs_cwd = std::path::absolute(cwd).unwrap_or_else(|_| cwd.to_owned());
    Ok(found
        .strip_prefix(&abs_cwd)
        .map(PathBuf::from)
        .unwrap_or(found))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_folder_means_its_kiln_toml_and_a_file_is_taken_as_is() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            locate(Some(dir.path()), Path::new("/")).unwrap(),
            dir.path().join("kiln.toml")
        );
        let file = dir.path().join("other.toml");
        assert_eq!(locate(Some(&file), Path::new("/")).unwrap(), file);
    }

    #[test]
    fn without_config_the_nearest_kiln_toml_upward() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("kiln.toml"), "").unwrap();
        let sub = dir.path().join("a/b");
        std::fs::create_dir_all(&sub).unwrap();
        let found = locate(None, &sub).unwrap();
        assert_eq!(
            std::fs::canonicalize(found).unwrap(),
            std::fs::canonicalize(dir.path().join("kiln.toml")).unwrap()
        );
        let empty = tempfile::tempdir().unwrap();
        assert!(matches!(
            locate(None, empty.path()),
            Err(LocateError::NotFound { .. })
        ));
    }
}
