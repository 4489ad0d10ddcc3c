//! Files only the owner can read — the cluster cookie, the MCP token, the endpoint file, the
//! orchestrators' MCP configs, the `env` values of agents ([`EnvSecrets`]) — and the random
//! values kept in them. One way to write them (atomically, 0600, synced with their directory),
//! one way to read-or-make a secret, and the data dir kept private ([`secure_data_dir`]).

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use workshop_board::private::{create_private_dir, tighten_one, tighten_tree, Tightened};
use workshop_proto::ApiError;
use workshop_types::AgentOptions;

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
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        create_private_dir(dir)
            .map_err(|e| ApiError::Node(format!("cannot create {}: {e}", dir.display())))?;
    }
    write_private(path, value.as_bytes())
        .map_err(|e| ApiError::Node(format!("cannot write {}: {e}", path.display())))?;
    Ok(value)
}

// ------------------------------------------------------------------ the data dir

/// The directories of a data dir whose whole content is the node's own (sled databases, secrets,
/// MCP configs): tightened recursively. Anything else in the data dir (e.g. the worktrees of
/// `.workshop/worktrees`, a user's files) is left as it is: the 0700 data dir covers it.
const OWN_DIRS: &[&str] = &["node", "board", "secrets", crate::orchestrator::CONFIG_DIR];

/// The node's own files at the top of a data dir (the cookie, the MCP token, the endpoint file,
/// `--detach`'s log and pid files).
const OWN_FILES: &[&str] = &[
    crate::cluster::COOKIE_FILE,
    crate::mcp_access::TOKEN_FILE,
    crate::cluster::ENDPOINT_FILE,
    crate::proc_ledger::FILE,
    "node.log",
    "node.pid",
];

/// Make the data dir owner-only: created 0700 if missing; an existing one that lets group or
/// others in is tightened (the dir to 0700, the node's files in it to 0600, the node's
/// directories in it recursively; nothing else it holds is touched). `quiet`: what changed is logged at debug level only (the files sled created
/// since the last pass); otherwise one warning says what was tightened. A chmod that fails
/// (a dir owned by another user that we may still use) is a warning, never an error; failing
/// to create the dir is one. The process umask is not changed (the node's children keep the
/// user's), so files sled creates later get the umask's mode inside the 0700 directory: the
/// directory is what protects them until the next pass (a clean stop, the next start).
pub fn secure_data_dir(dir: &Path, quiet: bool) -> Result<(), ApiError> {
    create_private_dir(dir).map_err(|e| {
        ApiError::Node(format!("cannot create the data dir {}: {e}", dir.display()))
    })?;
    let mut out = Tightened::default();
    tighten_one(dir, &mut out);
    if let Ok(entries) = fs::read_dir(dir) {
        for entry in entries.flatten() {
            let path = entry.path();
            let Ok(t) = entry.file_type() else { continue };
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if t.is_file() && OWN_FILES.contains(&name) {
                tighten_one(&path, &mut out);
            } else if t.is_dir() && OWN_DIRS.contains(&name) {
                tighten_tree(&path, &mut out);
            }
        }
    }
    out.log(dir, quiet);
    Ok(())
}

// ------------------------------------------------------------------ env values

/// Whose `env` values a secrets file holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Owner<'a> {
    Agent(&'a str),
    Profile(&'a str),
    Worker(&'a str),
    /// The global defaults of `configure`.
    Config,
}

impl Owner<'_> {
    /// The file's name in the secrets dir: `agent-<name>.json`, ..., `config.json`. Names are
    /// agent names (letters, digits, `_`, `-`); anything else is hex-encoded.
    fn file_name(&self) -> String {
        let (kind, name) = match self {
            Owner::Agent(n) => ("agent", *n),
            Owner::Profile(n) => ("profile", *n),
            Owner::Worker(n) => ("worker", *n),
            Owner::Config => return "config.json".to_string(),
        };
        let safe = !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if safe {
            format!("{kind}-{name}.json")
        } else {
            let hex: String = name.bytes().map(|b| format!("{b:02x}")).collect();
            format!("{kind}-x{hex}.json")
        }
    }
}

impl std::fmt::Display for Owner<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Owner::Agent(n) => write!(f, "agent {n}"),
            Owner::Profile(n) => write!(f, "profile {n}"),
            Owner::Worker(n) => write!(f, "board worker {n}"),
            Owner::Config => f.write_str("the global configuration"),
        }
    }
}

/// What the node database keeps in place of an `env` value starts with this; the rest names
/// the secrets file and the version of the values in it: `<hidden: kept in
/// secrets/agent-x.json, version 3f2a9c1b>`.
pub const KEPT_PREFIX: &str = "<hidden: kept in ";
const VERSION_SEP: &str = ", version ";

/// One version of an owner's values in its file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Version {
    version: String,
    env: BTreeMap<String, String>,
}

/// The `env` values of agents, profiles, the global configuration and board workers, kept out
/// of the node database: one owner-only file per owner (`<secrets dir>/<owner>.json`, written
/// with [`write_private`] in a 0700 dir), while the database record keeps the keys, each with a
/// placeholder naming the file and the version of the values ([`KEPT_PREFIX`]).
///
/// A changed `env` is a new version, written to the file (beside the one last used, which the
/// durable record names: an owner's records are written one at a time) before the record that
/// names it, so a kill between the two leaves the old record and its own values, never a mix;
/// a file keeps those two versions.
pub struct EnvSecrets {
    dir: PathBuf,
    /// What each file holds (as this process wrote or read it), by file name.
    files: Mutex<HashMap<String, Vec<Version>>>,
}

impl EnvSecrets {
    pub fn new(dir: PathBuf) -> Self {
        Self {
            dir,
            files: Mutex::new(HashMap::new()),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where `owner`'s values are kept.
    pub fn path(&self, owner: Owner<'_>) -> PathBuf {
        self.dir.join(owner.file_name())
    }

    fn display_path(&self, owner: Owner<'_>) -> String {
        match self.dir.file_name() {
            Some(d) => format!("{}/{}", d.to_string_lossy(), owner.file_name()),
            None => owner.file_name(),
        }
    }

    /// The versions in `file` (read once, then remembered).
    fn load<'m>(
        &self,
        files: &'m mut HashMap<String, Vec<Version>>,
        owner: Owner<'_>,
    ) -> Result<&'m mut Vec<Version>, String> {
        let name = owner.file_name();
        if !files.contains_key(&name) {
            let path = self.dir.join(&name);
            let versions = match fs::read(&path) {
                Ok(bytes) => serde_json::from_slice::<Vec<Version>>(&bytes).map_err(|e| {
                    format!(
                        "the secrets file {} of {owner} is not valid ({e}); put back a good copy, or give its env again",
                        path.display()
                    )
                })?,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
                Err(e) => {
                    return Err(format!(
                        "cannot read the secrets file {} of {owner}: {e}",
                        path.display()
                    ))
                }
            };
            files.insert(name.clone(), versions);
        }
        files
            .get_mut(&name)
            .ok_or_else(|| "the secrets table lost an entry".to_string())
    }

    /// `options` as the database keeps them: every `env` value replaced by the placeholder of
    /// the version of `owner`'s values it is; a new version is first written (and synced) to
    /// the owner's file. Options without `env` values are returned as they are.
    pub fn seal(&self, owner: Owner<'_>, options: &AgentOptions) -> Result<AgentOptions, ApiError> {
        let Some(env) = options.env.as_ref().filter(|e| !e.is_empty()) else {
            return Ok(options.clone());
        };
        let mut files = self.files.lock();
        let versions = self.load(&mut files, owner).map_err(ApiError::Node)?;
        let version = match versions.iter().position(|v| &v.env == env) {
            Some(i) => {
                // The most recently used version goes last (in memory: the file's order does
                // not matter), so a new version is written beside it.
                let v = versions.remove(i);
                let version = v.version.clone();
                versions.push(v);
                version
            }
            None => {
                let version = random_hex(4)
                    .map_err(|e| ApiError::Node(format!("cannot read /dev/urandom: {e}")))?;
                let mut next: Vec<Version> = versions.last().cloned().into_iter().collect();
                next.push(Version {
                    version: version.clone(),
                    env: env.clone(),
                });
                let path = self.path(owner);
                let bytes = serde_json::to_vec_pretty(&next).map_err(|e| {
                    ApiError::Node(format!("cannot encode {}: {e}", path.display()))
                })?;
                create_private_dir(&self.dir).map_err(|e| {
                    ApiError::Node(format!("cannot create {}: {e}", self.dir.display()))
                })?;
                write_private(&path, &bytes)
                    .map_err(|e| ApiError::Node(format!("cannot write {}: {e}", path.display())))?;
                *versions = next;
                version
            }
        };
        let placeholder = format!(
            "{KEPT_PREFIX}{}{VERSION_SEP}{version}>",
            self.display_path(owner)
        );
        Ok(options.env_values_replaced(&placeholder))
    }

    /// Put back the values of `options`' placeholders from `owner`'s file. `Ok(true)`: the
    /// options had `env` values in clear (a record of an older build), to be written again.
    /// An error names the file and the owner and says what to do.
    pub fn unseal(&self, owner: Owner<'_>, options: &mut AgentOptions) -> Result<bool, String> {
        let Some(env) = options.env.as_mut().filter(|e| !e.is_empty()) else {
            return Ok(false);
        };
        let mut wanted: Option<String> = None;
        let mut clear = false;
        for v in env.values() {
            match v.strip_prefix(KEPT_PREFIX).and_then(|rest| {
                let rest = rest.strip_suffix('>')?;
                rest.rsplit_once(VERSION_SEP).map(|(_, version)| version)
            }) {
                Some(version) => match &wanted {
                    Some(w) if w != version => {
                        return Err(format!(
                            "the env of {owner} names two versions of its secrets ({w}, {version})"
                        ))
                    }
                    _ => wanted = Some(version.to_string()),
                },
                None => clear = true,
            }
        }
        let Some(wanted) = wanted else {
            return Ok(clear);
        };
        let path = self.path(owner);
        let mut files = self.files.lock();
        let versions = self.load(&mut files, owner)?;
        if versions.is_empty() {
            return Err(format!(
                "the env values of {owner} are kept in {}, which is missing; put it back, or give {owner} its env again",
                path.display()
            ));
        }
        let Some(i) = versions.iter().position(|v| v.version == wanted) else {
            return Err(format!(
                "the secrets file {} does not hold the env values of {owner} (version {wanted}); put back the file that does, or give {owner} its env again",
                path.display()
            ));
        };
        // The version the durable record names is the one a new version is written beside.
        let found = versions.remove(i);
        versions.push(found);
        let found = versions.last().ok_or("the secrets table lost an entry")?;
        for (k, v) in env.iter_mut() {
            if v.starts_with(KEPT_PREFIX) {
                match found.env.get(k) {
                    Some(real) => *v = real.clone(),
                    None => {
                        return Err(format!(
                            "the secrets file {} has no value for {k} of {owner}; put back the file that does, or give {owner} its env again",
                            path.display()
                        ))
                    }
                }
            }
        }
        Ok(clear)
    }

    /// Forget `owner`'s values (its record is gone): the file is removed.
    pub fn remove(&self, owner: Owner<'_>) {
        let path = self.path(owner);
        self.files.lock().remove(&owner.file_name());
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::warn!(file = %path.display(), error = %e, "secrets file not removed")
            }
        }
    }

    /// Forget the values of every owner whose file name starts with `prefix` (`profile-`, or
    /// `config` for the configuration).
    pub fn remove_all(&self, prefixes: &[&str]) {
        let mut files = self.files.lock();
        files.retain(|name, _| !prefixes.iter().any(|p| name.starts_with(p)));
        let Ok(entries) = fs::read_dir(&self.dir) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if name.ends_with(".json") && prefixes.iter().any(|p| name.starts_with(p)) {
                if let Err(e) = fs::remove_file(entry.path()) {
                    tracing::warn!(file = %entry.path().display(), error = %e, "secrets file not removed");
                }
            }
        }
    }
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

    fn with_env(pairs: &[(&str, &str)]) -> AgentOptions {
        AgentOptions {
            env: Some(
                pairs
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            ),
            ..Default::default()
        }
    }

    #[test]
    fn env_values_go_to_a_private_file_and_come_back_by_version() {
        let data = tempfile::tempdir().expect("tempdir");
        let secrets = EnvSecrets::new(data.path().join("secrets"));
        let owner = Owner::Agent("impl");
        let real = with_env(&[("ANTHROPIC_API_KEY", "sk-secret-xyz"), ("B", "2")]);
        let sealed = secrets.seal(owner, &real).expect("seal");
        let shown = sealed.env.clone().expect("env");
        assert_eq!(shown.len(), 2);
        for v in shown.values() {
            assert!(
                v.starts_with("<hidden: kept in secrets/agent-impl.json, version "),
                "{v}"
            );
        }
        let path = data.path().join("secrets").join("agent-impl.json");
        let mode = |p: &Path| fs::metadata(p).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(&data.path().join("secrets")), 0o700);
        // The same values again: the same version, no new write.
        assert_eq!(secrets.seal(owner, &real).expect("again"), sealed);

        // A fresh reader (a restarted node) gets the values back.
        let again = EnvSecrets::new(data.path().join("secrets"));
        let mut back = sealed.clone();
        assert_eq!(again.unseal(owner, &mut back), Ok(false));
        assert_eq!(back, real);

        // New values: a new version beside the old one, so the old record still reads whole.
        let newer = with_env(&[("ANTHROPIC_API_KEY", "sk-other")]);
        let sealed2 = secrets.seal(owner, &newer).expect("seal newer");
        assert_ne!(sealed2.env, sealed.env);
        let reread = EnvSecrets::new(data.path().join("secrets"));
        let (mut old, mut new) = (sealed.clone(), sealed2.clone());
        reread.unseal(owner, &mut old).expect("old version");
        reread.unseal(owner, &mut new).expect("new version");
        assert_eq!((old, new), (real.clone(), newer));

        // Back to the first values, then new ones: the file keeps the first (the one in use)
        // beside the newest.
        secrets.seal(owner, &real).expect("the first values again");
        let third = with_env(&[("ANTHROPIC_API_KEY", "sk-third")]);
        secrets.seal(owner, &third).expect("third");
        let mut old = sealed.clone();
        EnvSecrets::new(data.path().join("secrets"))
            .unseal(owner, &mut old)
            .expect("the version in use is kept");
        assert_eq!(old, real);

        // Clear values (an older build's record): reported, left as they are.
        let mut clear = real.clone();
        assert_eq!(reread.unseal(owner, &mut clear), Ok(true));
        assert_eq!(clear, real);

        // Missing file: the error names it and the agent.
        secrets.remove(owner);
        let e = EnvSecrets::new(data.path().join("secrets"))
            .unseal(owner, &mut sealed.clone())
            .expect_err("missing");
        assert!(
            e.contains(&path.display().to_string())
                && e.contains("agent impl")
                && e.contains("missing"),
            "{e}"
        );
    }
}
