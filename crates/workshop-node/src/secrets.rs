//! Files only the owner can read — the cluster cookie, the MCP token, the endpoint file, the
//! orchestrators' MCP configs — and the random values kept in them. One way to write them
//! (atomically, 0600, synced with their directory) and one way to read-or-make a secret.

use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use workshop_proto::ApiError;

/// `bytes` random bytes from the OS, as hex.
pub fn random_hex(bytes: usize) -> std::io::Result<String> {
    let mut buf = vec![0u8; bytes];
    let mut f = fs::File::open("/dev/urandom")?;
    std::io::Read::read_exact(&mut f, &mut buf)?;
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}

/// Write `bytes` to `path` atomically, readable by its owner only: a new temp file beside it
/// (0600, a name nobody else uses), synced, renamed over `path`, then the directory synced. A
/// failed write leaves neither the temp file nor a half-written `path`.
pub fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let tmp = dir.join(format!(".{name}.{}.tmp", random_hex(8)?));
    let written = (|| {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if written.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    written?;
    fs::File::open(dir).and_then(|d| d.sync_all())
}

/// The secret in `path`, trimmed (None: no such file). An empty or unreadable file is an error
/// naming it as `what` and saying to delete it or set `env`.
pub fn read_secret(path: &Path, what: &str, env: &str) -> Result<Option<String>, ApiError> {
    match fs::read_to_string(path) {
        Ok(s) if !s.trim().is_empty() => Ok(Some(s.trim().to_string())),
        Ok(_) => Err(ApiError::Node(format!(
            "the {what} {} is empty; delete it (a new one is made at the next start) or set {env}",
            path.display()
        ))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(ApiError::Node(format!(
            "cannot read the {what} {}: {e}",
            path.display()
        ))),
    }
}

/// A new secret of `bytes` random bytes (hex) in `path` (its directory made if missing).
pub fn make_secret(path: &Path, bytes: usize) -> Result<String, ApiError> {
    let value =
        random_hex(bytes).map_err(|e| ApiError::Node(format!("cannot read /dev/urandom: {e}")))?;
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir)
            .map_err(|e| ApiError::Node(format!("cannot create {}: {e}", dir.display())))?;
    }
    write_private(path, value.as_bytes())
        .map_err(|e| ApiError::Node(format!("cannot write {}: {e}", path.display())))?;
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_secret_is_made_once_private_and_then_read_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("sub").join("token");
        assert_eq!(read_secret(&path, "token file", "ENV").expect("read"), None);
        let made = make_secret(&path, 32).expect("make");
        assert_eq!(made.len(), 64);
        let mode = fs::metadata(&path).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(
            read_secret(&path, "token file", "ENV").expect("read"),
            Some(made)
        );
        // Nothing but the file itself is left in the directory.
        let names: Vec<_> = fs::read_dir(path.parent().expect("dir"))
            .expect("list")
            .filter_map(|e| e.ok().map(|e| e.file_name()))
            .collect();
        assert_eq!(names, [std::ffi::OsString::from("token")]);
        fs::write(&path, "  \n").expect("empty it");
        let e = read_secret(&path, "token file", "ENV")
            .expect_err("empty")
            .to_string();
        assert!(e.contains("the token file") && e.contains("is empty") && e.contains("ENV"));
    }
}
