//! Private data directories: what a node (or `workshop board`) creates under its data dir is for
//! its owner only. Directories are created 0700; an existing directory or file that lets its
//! group or others in is tightened (group and other bits cleared: 0755 → 0700, 0644 → 0600;
//! never loosened). The process umask is left alone (the node's children, e.g. `claude` writing
//! into a user's repository, keep the user's umask), so files sled creates later (blob files,
//! snapshots) get the umask's mode: the 0700 directory around them is what keeps them private,
//! and the next open (or a clean stop) tightens them too. A chmod that fails (a directory owned
//! by another user that we may still use) is a warning, never an error.

use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Create `dir` and any missing parent with mode 0700 (an existing one is left as it is).
pub fn create_private_dir(dir: &Path) -> io::Result<()> {
    match fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
    {
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && dir.is_dir() => Ok(()),
        other => other,
    }
}

/// What [`tighten`] changed, and what it could not.
#[derive(Debug, Default)]
pub struct Tightened {
    /// Directories set to owner-only (0700 for a 0755 one).
    pub dirs: Vec<PathBuf>,
    /// Files set to owner-only (0600 for a 0644 one).
    pub files: Vec<PathBuf>,
    /// Paths whose mode could not be changed or read, with why.
    pub failed: Vec<(PathBuf, io::Error)>,
}

impl Tightened {
    pub fn is_empty(&self) -> bool {
        self.dirs.is_empty() && self.files.is_empty() && self.failed.is_empty()
    }

    /// One line saying what was tightened under `root` (and one warning for what was not);
    /// nothing when nothing changed. `quiet`: what changed is logged at debug level only (files
    /// sled created since the last open), failures still as a warning.
    pub fn log(&self, root: &Path, quiet: bool) {
        if !self.dirs.is_empty() || !self.files.is_empty() {
            let list = |v: &[PathBuf]| {
                let mut names: Vec<String> = v
                    .iter()
                    .take(5)
                    .map(|p| p.strip_prefix(root).unwrap_or(p).display().to_string())
                    .map(|s| if s.is_empty() { ".".to_string() } else { s })
                    .collect();
                if v.len() > 5 {
                    names.push(format!("and {} more", v.len() - 5));
                }
                names.join(", ")
            };
            if quiet {
                tracing::debug!(
                    dir = %root.display(),
                    dirs = self.dirs.len(),
                    files = self.files.len(),
                    "made new files of the data dir owner-only"
                );
            } else {
                tracing::warn!(
                    "{} was readable by other users: tightened {} director{} to owner-only (0700: {}) and {} file{} (0600: {})",
                    root.display(),
                    self.dirs.len(),
                    if self.dirs.len() == 1 { "y" } else { "ies" },
                    list(&self.dirs),
                    self.files.len(),
                    if self.files.len() == 1 { "" } else { "s" },
                    list(&self.files),
                );
            }
        }
        if !self.failed.is_empty() {
            let what: Vec<String> = self
                .failed
                .iter()
                .take(5)
                .map(|(p, e)| format!("{}: {e}", p.display()))
                .collect();
            tracing::warn!(
                "could not make {} path{} under {} owner-only (they stay as they are): {}",
                self.failed.len(),
                if self.failed.len() == 1 { "" } else { "s" },
                root.display(),
                what.join("; ")
            );
        }
    }
}

/// Tighten `path` alone: a directory or file whose mode lets group or others in loses those
/// bits. Symbolic links are not followed.
pub fn tighten_one(path: &Path, out: &mut Tightened) {
    let meta = match fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return,
        Err(e) => {
            out.failed.push((path.to_path_buf(), e));
            return;
        }
    };
    let ft = meta.file_type();
    if !(ft.is_dir() || ft.is_file()) {
        return;
    }
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o077 == 0 {
        return;
    }
    match fs::set_permissions(path, fs::Permissions::from_mode(mode & !0o077)) {
        Ok(()) if ft.is_dir() => out.dirs.push(path.to_path_buf()),
        Ok(()) => out.files.push(path.to_path_buf()),
        // Removed meanwhile (sled replaces snapshot files): nothing left to protect.
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => out.failed.push((path.to_path_buf(), e)),
    }
}

/// Tighten `dir`, and everything under it (directories and files, links not followed).
pub fn tighten_tree(dir: &Path, out: &mut Tightened) {
    tighten_one(dir, out);
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return,
        Err(e) => {
            out.failed.push((dir.to_path_buf(), e));
            return;
        }
    };
    for entry in entries.flatten() {
        let path = entry.path();
        match entry.file_type() {
            Ok(t) if t.is_dir() => tighten_tree(&path, out),
            Ok(t) if t.is_file() => tighten_one(&path, out),
            _ => {}
        }
    }
}

/// Tighten a sled database directory in place (before and after opening it): the board's
/// store calls it; `quiet` as in [`Tightened::log`].
pub fn tighten_sled_dir(dir: &Path, quiet: bool) {
    let mut out = Tightened::default();
    tighten_tree(dir, &mut out);
    out.log(dir, quiet);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(p: &Path) -> u32 {
        fs::metadata(p).expect("meta").permissions().mode() & 0o777
    }

    #[test]
    fn new_dirs_are_private_and_loose_ones_are_tightened_never_loosened() {
        let root = tempfile::tempdir().expect("tempdir");
        let made = root.path().join("a").join("b");
        create_private_dir(&made).expect("create");
        create_private_dir(&made).expect("again");
        assert_eq!(mode(&root.path().join("a")), 0o700);
        assert_eq!(mode(&made), 0o700);

        let loose = root.path().join("loose");
        fs::create_dir_all(loose.join("sub")).expect("dirs");
        fs::write(loose.join("sub").join("f"), "x").expect("file");
        fs::write(loose.join("exec"), "x").expect("file");
        fs::write(loose.join("tight"), "x").expect("file");
        for (p, m) in [
            (loose.clone(), 0o755),
            (loose.join("sub"), 0o775),
            (loose.join("sub").join("f"), 0o644),
            (loose.join("exec"), 0o755),
            (loose.join("tight"), 0o400),
        ] {
            fs::set_permissions(&p, fs::Permissions::from_mode(m)).expect("chmod");
        }
        let mut out = Tightened::default();
        tighten_tree(&loose, &mut out);
        assert_eq!(out.dirs.len(), 2, "{out:?}");
        assert_eq!(out.files.len(), 2, "{out:?}");
        assert!(out.failed.is_empty());
        assert_eq!(mode(&loose), 0o700);
        assert_eq!(mode(&loose.join("sub")), 0o700);
        assert_eq!(mode(&loose.join("sub").join("f")), 0o600);
        assert_eq!(mode(&loose.join("exec")), 0o700);
        assert_eq!(mode(&loose.join("tight")), 0o400);
        let mut again = Tightened::default();
        tighten_tree(&loose, &mut again);
        assert!(again.is_empty(), "{again:?}");
    }
}
