//! `cluster.toml`: one file, shared by every machine of a cluster, that says which nodes there
//! are, where they listen, which one holds the board, where the cookie comes from and whether
//! node-to-node traffic uses TLS. `workshop node --config FILE --name NAME` resolves it for one
//! node into [`ResolvedNode`] (the [`ClusterOptions`] a node starts with, and its data dir).
//!
//! ```toml
//! board = "n1"                          # required when there is more than one node
//! cookie_file = "/etc/workshop/cookie"  # or cookie_env = "WORKSHOP_COOKIE" (not both)
//! peers = ["10.0.0.9:4221"]             # extra addresses to join, besides the nodes below
//! [tls]                                 # optional; cert/key may also be per node
//! cert = "certs/node.pem"
//! key = "certs/node.key"
//! ca = "certs/ca.pem"
//! [nodes.n1]
//! listen = "127.0.0.1:4221"
//! advertise = "127.0.0.1:4221"          # default: listen
//! data_dir = ".workshop/n1"             # relative paths: relative to the file's directory
//! mcp_port = 4222                       # 0: any free port
//! mcp_host = "127.0.0.1"                # off loopback, MCP requires a bearer token
//! web_port = 4223
//! ```
//!
//! Every setting can be overridden by a flag or an environment variable ([`NodeSettings`]:
//! clap merges flag over environment); the order is flag > environment > file > default.
//! Without a file the node is the board node of a cluster of one, named by `--name`,
//! `WORKSHOP_NODE_NAME` or the host name.
//!
//! Everything here is checked before a node starts: a bad file is refused naming the file, the
//! line and the key. The only side effects are reading the file and the cookie (and creating
//! `<data dir>/cookie` for a node that has none, as a node without a file always has).

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

use crate::cluster::{self, ClusterOptions, TlsOptions, COOKIE_ENV, DEFAULT_PORT};

/// The environment variable that names the cluster file (`--config`).
pub const CONFIG_ENV: &str = "WORKSHOP_CONFIG";
/// The environment variable that names a node started without a cluster file (after
/// `--name`/`WORKSHOP_NAME`; then the host name).
pub const NODE_NAME_ENV: &str = "WORKSHOP_NODE_NAME";
/// Where the cluster port listens when neither a flag nor the file says.
pub const DEFAULT_LISTEN: SocketAddr =
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, DEFAULT_PORT));
/// The data dir when neither a flag nor the file says (relative to the working directory).
pub const DEFAULT_DATA_DIR: &str = ".workshop";
/// How to make a cookie (told in errors).
const MAKE_COOKIE: &str = "head -c 24 /dev/urandom | xxd -p";

/// Why a node's settings cannot be resolved. The message names the problem and what to do.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ConfigError {
    /// The file, a flag or an environment variable is wrong.
    #[error("{0}")]
    Invalid(String),
    /// No cookie: no cookie file or variable is set and the node has no data dir to keep one
    /// in (an ephemeral node without `WORKSHOP_COOKIE`). Such a node can still run unreachable.
    #[error("{0}")]
    NoCookie(String),
}

fn invalid(msg: impl Into<String>) -> ConfigError {
    ConfigError::Invalid(msg.into())
}

/// What `workshop node`'s flags and environment say (None, empty: not given). Paths given here
/// are relative to the working directory; paths in the file to the file's directory.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NodeSettings {
    /// `--config` / `WORKSHOP_CONFIG`.
    pub config: Option<PathBuf>,
    /// `--name` / `WORKSHOP_NAME`: which node of the file this is.
    pub name: Option<String>,
    /// `--listen` / `WORKSHOP_LISTEN`.
    pub listen: Option<SocketAddr>,
    /// `--advertise` / `WORKSHOP_ADVERTISE`.
    pub advertise: Option<String>,
    /// `--board` / `WORKSHOP_BOARD`.
    pub board: Option<String>,
    /// `--peer` (repeated) / `WORKSHOP_PEERS`: replaces the file's `peers` (the file's nodes
    /// are peers all the same).
    pub peers: Vec<String>,
    /// `--cookie-file` / `WORKSHOP_COOKIE_FILE`.
    pub cookie_file: Option<PathBuf>,
    /// `--tls-cert`, `--tls-key`, `--tls-ca`.
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub tls_ca: Option<PathBuf>,
    /// `--mcp-port`, `--web-port`.
    pub mcp_port: Option<u16>,
    pub web_port: Option<u16>,
    /// `--mcp-host`.
    pub mcp_host: Option<std::net::IpAddr>,
    /// `--data-dir` / `WORKSHOP_DATA_DIR`, when given.
    pub data_dir: Option<PathBuf>,
    /// `--ephemeral`: no data dir at all.
    pub ephemeral: bool,
}

/// One node's settings, resolved: what it starts with.
#[derive(Clone, Debug, PartialEq)]
pub struct ResolvedNode {
    pub cluster: ClusterOptions,
    /// None: an ephemeral node (nothing persisted).
    pub data_dir: Option<PathBuf>,
    /// The cluster file it came from, if any.
    pub config: Option<PathBuf>,
}

/// Resolve a node's settings: from `settings.config` when given, else from the flags alone.
/// Reads the process environment for cookies (`WORKSHOP_COOKIE`, a file's `cookie_env`) and,
/// without a file, the node name (`WORKSHOP_NODE_NAME`).
pub fn resolve(settings: &NodeSettings) -> Result<ResolvedNode, ConfigError> {
    resolve_with(settings, &|k| std::env::var(k).ok())
}

/// [`resolve`] with the environment given (`env(name)`: the variable's value, if set).
pub fn resolve_with(
    settings: &NodeSettings,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<ResolvedNode, ConfigError> {
    match &settings.config {
        Some(path) => ClusterFile::load(path)?.resolve(settings, env),
        None => resolve_without_file(settings, env),
    }
}

// ---------------------------------------------------------------------------------------------
// The file as written.

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct RawFile {
    board: Option<Spanned<String>>,
    cookie_file: Option<Spanned<PathBuf>>,
    cookie_env: Option<Spanned<String>>,
    #[serde(default)]
    peers: Vec<Spanned<String>>,
    tls: Option<RawTls>,
    #[serde(default)]
    nodes: BTreeMap<String, Spanned<RawNode>>,
}

#[derive(Deserialize, Debug, Default, Clone)]
#[serde(deny_unknown_fields)]
struct RawTls {
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
    ca: Option<PathBuf>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct RawNode {
    listen: Spanned<String>,
    advertise: Option<Spanned<String>>,
    data_dir: Option<PathBuf>,
    mcp_port: Option<u16>,
    mcp_host: Option<std::net::IpAddr>,
    web_port: Option<u16>,
    tls: Option<RawTls>,
}

// ---------------------------------------------------------------------------------------------
// The file, checked.

/// A parsed and checked `cluster.toml` (every node's section is checked, not only the one a
/// node picks, so every machine refuses a bad shared file alike).
#[derive(Clone, Debug)]
pub struct ClusterFile {
    /// The file as named (in messages).
    path: PathBuf,
    board: Option<String>,
    cookie: CookieSource,
    peers: Vec<String>,
    tls: PartialTls,
    nodes: BTreeMap<String, FileNode>,
}

#[derive(Clone, Debug, PartialEq)]
enum CookieSource {
    /// `cookie_file` (where it was set, for messages).
    File { path: PathBuf, at: String },
    /// `cookie_env`, or the default `WORKSHOP_COOKIE` (`at` None), then `<data dir>/cookie`.
    Env { var: String, at: Option<String> },
}

#[derive(Clone, Debug, Default, PartialEq)]
struct PartialTls {
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
    ca: Option<PathBuf>,
}

impl PartialTls {
    fn from_raw(raw: Option<RawTls>, dir: &Path) -> Self {
        let raw = raw.unwrap_or_default();
        let rel = |p: Option<PathBuf>| p.map(|p| dir.join(p));
        Self {
            cert: rel(raw.cert),
            key: rel(raw.key),
            ca: rel(raw.ca),
        }
    }

    /// `self` where set, else `under`.
    fn over(self, under: &PartialTls) -> Self {
        Self {
            cert: self.cert.or_else(|| under.cert.clone()),
            key: self.key.or_else(|| under.key.clone()),
            ca: self.ca.or_else(|| under.ca.clone()),
        }
    }

    /// All three, none (no TLS), or an error naming what is missing.
    fn complete(self, node: &str, hint: &str) -> Result<Option<TlsOptions>, ConfigError> {
        match (self.cert, self.key, self.ca) {
            (None, None, None) => Ok(None),
            (Some(cert), Some(key), Some(ca)) => Ok(Some(TlsOptions { cert, key, ca })),
            (cert, key, ca) => {
                let missing: Vec<&str> = [
                    ("cert", cert.is_none()),
                    ("key", key.is_none()),
                    ("ca", ca.is_none()),
                ]
                .into_iter()
                .filter_map(|(k, m)| m.then_some(k))
                .collect();
                Err(invalid(format!(
                    "TLS for node {node} is only half set: no {}; TLS needs cert, key and ca ({hint})",
                    missing.join(", no ")
                )))
            }
        }
    }
}

#[derive(Clone, Debug)]
struct FileNode {
    listen: SocketAddr,
    advertise: Option<String>,
    data_dir: Option<PathBuf>,
    mcp_port: Option<u16>,
    web_port: Option<u16>,
    mcp_host: Option<std::net::IpAddr>,
    tls: PartialTls,
}

impl FileNode {
    /// The address other nodes reach it at.
    fn reach(&self) -> String {
        self.advertise
            .clone()
            .unwrap_or_else(|| self.listen.to_string())
    }
}

impl ClusterFile {
    /// Read and check the file at `path`.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            let why = if e.kind() == std::io::ErrorKind::NotFound {
                "no such file".to_string()
            } else {
                e.to_string()
            };
            invalid(format!(
                "cannot read the cluster file {} ({why}); check --config (or {CONFIG_ENV})",
                path.display()
            ))
        })?;
        Self::parse(&text, path)
    }

    /// Check `text`, the content of the file at `path` (relative paths in it are relative to
    /// `path`'s directory).
    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        let src = Source { text, path };
        let raw: RawFile = toml::from_str(text).map_err(|e| src.toml_error(&e))?;
        // `cluster.toml` has the parent "": its paths stay relative to the working directory.
        let dir = path.parent().unwrap_or(Path::new("")).to_path_buf();
        if raw.nodes.is_empty() {
            return Err(invalid(format!(
                "{}: no nodes; add a [nodes.NAME] section with listen = \"IP:PORT\" for each node",
                path.display()
            )));
        }
        let mut nodes = BTreeMap::new();
        for (name, node) in raw.nodes {
            let at = src.at(node.span());
            check_name(&name).map_err(|why| invalid(format!("{at}: [nodes.{name}]: {why}")))?;
            let node = node.into_inner();
            let listen: SocketAddr = node.listen.get_ref().trim().parse().map_err(|_| {
                invalid(format!(
                    "{}: nodes.{name}.listen = {:?} is not an IP:PORT address (e.g. 127.0.0.1:4221, 0.0.0.0:4221, [::1]:4221)",
                    src.at(node.listen.span()),
                    node.listen.get_ref()
                ))
            })?;
            let advertise = match &node.advertise {
                Some(a) => {
                    check_host_port(a.get_ref()).map_err(|why| {
                        invalid(format!(
                            "{}: nodes.{name}.advertise = {:?}: {why}",
                            src.at(a.span()),
                            a.get_ref()
                        ))
                    })?;
                    Some(a.get_ref().trim().to_string())
                }
                None => None,
            };
            nodes.insert(
                name,
                (
                    at,
                    FileNode {
                        listen,
                        advertise,
                        data_dir: node.data_dir.map(|d| dir.join(d)),
                        mcp_port: node.mcp_port,
                        web_port: node.web_port,
                        mcp_host: node.mcp_host,
                        tls: PartialTls::from_raw(node.tls, &dir),
                    },
                ),
            );
        }
        if nodes.len() > 1 {
            // Other nodes reach each one at its advertised (else listen) address: it must be one.
            for (name, (at, node)) in &nodes {
                if node.advertise.is_none()
                    && (node.listen.ip().is_unspecified() || node.listen.port() == 0)
                {
                    return Err(invalid(format!(
                        "{at}: [nodes.{name}] listens on {} but has no advertise: other nodes cannot reach it there; set advertise = \"HOST:PORT\" (the address the other nodes use)",
                        node.listen
                    )));
                }
            }
        }
        let names = || nodes.keys().cloned().collect::<Vec<_>>().join(", ");
        let board = match &raw.board {
            Some(b) => {
                if !nodes.contains_key(b.get_ref()) {
                    return Err(invalid(format!(
                        "{}: board = {:?} is not a node of this file; it must name one of its [nodes.NAME] sections: {}",
                        src.at(b.span()),
                        b.get_ref(),
                        names()
                    )));
                }
                Some(b.get_ref().clone())
            }
            None if nodes.len() == 1 => nodes.keys().next().cloned(),
            None => {
                return Err(invalid(format!(
                    "{}: no board: with {} nodes the file must say which one holds the cluster's board; add board = \"NAME\" at the top (one of: {})",
                    path.display(),
                    nodes.len(),
                    names()
                )))
            }
        };
        let cookie = match (raw.cookie_file, raw.cookie_env) {
            (Some(f), Some(e)) => {
                return Err(invalid(format!(
                    "{}: both cookie_file ({}) and cookie_env ({}) are set; keep one of them",
                    path.display(),
                    src.line_of(f.span()),
                    src.line_of(e.span())
                )))
            }
            (Some(f), None) => CookieSource::File {
                at: src.at(f.span()),
                path: dir.join(f.into_inner()),
            },
            (None, Some(e)) => {
                let at = src.at(e.span());
                let var = e.into_inner();
                if var.trim().is_empty() || var.contains('=') || var.contains('\0') {
                    return Err(invalid(format!(
                        "{at}: cookie_env = {var:?} is not an environment variable name"
                    )));
                }
                CookieSource::Env { var, at: Some(at) }
            }
            (None, None) => CookieSource::Env {
                var: COOKIE_ENV.to_string(),
                at: None,
            },
        };
        let mut peers = Vec::new();
        for p in raw.peers {
            check_host_port(p.get_ref()).map_err(|why| {
                invalid(format!(
                    "{}: peers entry {:?}: {why}",
                    src.at(p.span()),
                    p.get_ref()
                ))
            })?;
            peers.push(p.get_ref().trim().to_string());
        }
        Ok(Self {
            path: path.to_path_buf(),
            board,
            cookie,
            peers,
            tls: PartialTls::from_raw(raw.tls, &dir),
            nodes: nodes.into_iter().map(|(k, (_, n))| (k, n)).collect(),
        })
    }

    /// The names of the file's nodes, sorted.
    pub fn node_names(&self) -> Vec<String> {
        self.nodes.keys().cloned().collect()
    }

    /// The node that holds the board.
    pub fn board(&self) -> Option<&str> {
        self.board.as_deref()
    }

    /// Resolve the file for one node (`settings.name`, or the file's only node), with the
    /// flags and environment over it.
    pub fn resolve(
        &self,
        settings: &NodeSettings,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<ResolvedNode, ConfigError> {
        let file = self.path.display();
        let names = self.node_names().join(", ");
        let name = match &settings.name {
            Some(n) => n.trim().to_string(),
            None if self.nodes.len() == 1 => names.clone(),
            None => {
                return Err(invalid(format!(
                    "which node of {file} is this? pass --name (or set WORKSHOP_NAME) to one of: {names}"
                )))
            }
        };
        let Some(node) = self.nodes.get(&name) else {
            return Err(invalid(format!(
                "no node named {name:?} in {file}; its nodes are: {names}"
            )));
        };
        let board = match &settings.board {
            Some(b) if !self.nodes.contains_key(b.trim()) => {
                return Err(invalid(format!(
                "--board {b:?} (or WORKSHOP_BOARD) is not a node of {file}; its nodes are: {names}"
            )))
            }
            Some(b) => Some(b.trim().to_string()),
            None => self.board.clone(),
        };
        let advertise = match &settings.advertise {
            Some(a) => Some(flag_host_port(a, "--advertise", "WORKSHOP_ADVERTISE")?),
            None => node.advertise.clone(),
        };
        let listen = settings.listen.unwrap_or(node.listen);
        let own = advertise.clone().unwrap_or_else(|| listen.to_string());
        let extra = if settings.peers.is_empty() {
            self.peers.clone()
        } else {
            flag_peers(&settings.peers)?
        };
        let peers = dedup(
            self.nodes
                .iter()
                .filter(|(n, _)| **n != name)
                .map(|(_, n)| n.reach())
                .chain(extra),
            &own,
        );
        let flags = PartialTls {
            cert: settings.tls_cert.clone(),
            key: settings.tls_key.clone(),
            ca: settings.tls_ca.clone(),
        };
        let tls = flags.over(&node.tls.clone().over(&self.tls)).complete(
            &name,
            &format!("set them in [tls] or [nodes.{name}.tls] of {file}, or pass --tls-cert, --tls-key, --tls-ca"),
        )?;
        let data_dir = if settings.ephemeral {
            None
        } else {
            Some(
                settings
                    .data_dir
                    .clone()
                    .or_else(|| node.data_dir.clone())
                    .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR)),
            )
        };
        let cookie = match (&settings.cookie_file, &self.cookie) {
            (Some(path), _) => read_cookie_file(path, "--cookie-file (or WORKSHOP_COOKIE_FILE)")?,
            (None, CookieSource::File { path, at }) => {
                read_cookie_file(path, &format!("cookie_file at {at}"))?
            }
            (None, CookieSource::Env { var, at: Some(at) }) => match env_value(env, var) {
                Some(c) => c,
                None => {
                    return Err(invalid(format!(
                        "{at}: cookie_env = {var:?}, but {var} is not set (or empty); set it to the cluster's cookie (make one with `{MAKE_COOKIE}`) on every node"
                    )))
                }
            },
            (None, CookieSource::Env { var, at: None }) => match env_value(env, var) {
                Some(c) => c,
                None => data_dir_cookie(data_dir.as_deref(), self.nodes.len(), &file.to_string())?,
            },
        };
        let mut cluster = ClusterOptions::single(name, listen, cookie);
        cluster.advertise = advertise;
        cluster.board = board;
        cluster.peers = peers;
        cluster.tls = tls;
        cluster.mcp_port = settings.mcp_port.or(node.mcp_port);
        cluster.web_port = settings.web_port.or(node.web_port);
        cluster.mcp_host = settings.mcp_host.or(node.mcp_host);
        Ok(ResolvedNode {
            cluster,
            data_dir,
            config: Some(self.path.clone()),
        })
    }
}

/// Without a file: a cluster of one (unless the flags name a board and peers), as `workshop
/// node` always ran.
fn resolve_without_file(
    s: &NodeSettings,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<ResolvedNode, ConfigError> {
    let name = match &s.name {
        Some(n) => n.trim().to_string(),
        None => default_name(env),
    };
    check_name(&name).map_err(|why| {
        invalid(format!(
            "the node name {name:?} (from --name, WORKSHOP_NAME, {NODE_NAME_ENV} or the host name): {why}"
        ))
    })?;
    let listen = s.listen.unwrap_or(DEFAULT_LISTEN);
    let advertise = s
        .advertise
        .as_deref()
        .map(|a| flag_host_port(a, "--advertise", "WORKSHOP_ADVERTISE"))
        .transpose()?;
    let own = advertise.clone().unwrap_or_else(|| listen.to_string());
    let peers = dedup(flag_peers(&s.peers)?, &own);
    let board = s.board.as_ref().map(|b| b.trim().to_string());
    if let Some(b) = &board {
        check_name(b)
            .map_err(|why| invalid(format!("--board {b:?} (or WORKSHOP_BOARD): {why}")))?;
    }
    let tls = PartialTls {
        cert: s.tls_cert.clone(),
        key: s.tls_key.clone(),
        ca: s.tls_ca.clone(),
    }
    .complete(&name, "pass --tls-cert, --tls-key and --tls-ca")?;
    let data_dir = if s.ephemeral {
        None
    } else {
        Some(
            s.data_dir
                .clone()
                .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR)),
        )
    };
    let cookie = match &s.cookie_file {
        Some(path) => read_cookie_file(path, "--cookie-file (or WORKSHOP_COOKIE_FILE)")?,
        None => match env_value(env, COOKIE_ENV) {
            Some(c) => c,
            None => data_dir_cookie(data_dir.as_deref(), 1, "")?,
        },
    };
    let mut cluster = ClusterOptions::single(name, listen, cookie);
    cluster.advertise = advertise;
    cluster.board = board;
    cluster.peers = peers;
    cluster.tls = tls;
    cluster.mcp_port = s.mcp_port;
    cluster.web_port = s.web_port;
    cluster.mcp_host = s.mcp_host;
    Ok(ResolvedNode {
        cluster,
        data_dir,
        config: None,
    })
}

/// `--name`, else `WORKSHOP_NODE_NAME`, else the host name, else "node".
fn default_name(env: &dyn Fn(&str) -> Option<String>) -> String {
    env_value(env, NODE_NAME_ENV)
        .or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .ok()
                .map(|h| h.trim().to_string())
                .filter(|h| !h.is_empty())
        })
        .unwrap_or_else(|| "node".to_string())
}

fn env_value(env: &dyn Fn(&str) -> Option<String>, var: &str) -> Option<String> {
    env(var)
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

/// The cookie in `<data dir>/cookie`, made (0600, random) if missing — except in a cluster of
/// several nodes, where a cookie made here would differ from the other nodes' ones.
fn data_dir_cookie(
    data_dir: Option<&Path>,
    nodes: usize,
    file: &str,
) -> Result<String, ConfigError> {
    let Some(dir) = data_dir else {
        return Err(ConfigError::NoCookie(format!(
            "no cookie: set {COOKIE_ENV} or pass --cookie-file (an ephemeral node has no data dir to keep one in)"
        )));
    };
    let own = dir.join(cluster::COOKIE_FILE);
    if nodes > 1 && !own.exists() {
        return Err(invalid(format!(
            "no cookie for a cluster of {nodes} nodes: {file} sets neither cookie_file nor cookie_env, {COOKIE_ENV} is not set and there is no {}; every node needs the same cookie: make one (`{MAKE_COOKIE}`), then set cookie_file in {file} (the same file content on every node) or {COOKIE_ENV}",
            own.display()
        )));
    }
    cluster::cookie(Some(dir), true).map_err(|e| invalid(e.to_string()))
}

/// A cookie file's content: only its owner may read it, and it is not empty.
fn read_cookie_file(path: &Path, from: &str) -> Result<String, ConfigError> {
    use std::os::unix::fs::PermissionsExt;
    let shown = path.display();
    let meta = std::fs::metadata(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            invalid(format!(
                "no cookie file at {shown} (from {from}); put the cluster's cookie there on every node: `{MAKE_COOKIE} > {} && chmod 600 {}`",
                shell_quote(path),
                shell_quote(path)
            ))
        } else {
            invalid(format!("cannot read the cookie file {shown} (from {from}): {e}"))
        }
    })?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(invalid(format!(
            "the cookie file {shown} (from {from}) can be read by other users (mode {mode:03o}); the cookie lets anyone who has it into the cluster: run `chmod 600 {}`",
            shell_quote(path)
        )));
    }
    let text = std::fs::read_to_string(path).map_err(|e| {
        invalid(format!(
            "cannot read the cookie file {shown} (from {from}): {e}"
        ))
    })?;
    let cookie = text.trim();
    if cookie.is_empty() {
        return Err(invalid(format!(
            "the cookie file {shown} (from {from}) is empty; put the cluster's cookie in it (make one with `{MAKE_COOKIE}`)"
        )));
    }
    Ok(cookie.to_string())
}

fn shell_quote(p: &Path) -> String {
    let s = p.display().to_string();
    if s.chars()
        .all(|c| c.is_ascii_alphanumeric() || "/._-+:@%".contains(c))
    {
        s
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

/// A node name: it is also the ractor_cluster node name.
fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("a node name cannot be empty".into());
    }
    if name.len() > 64 {
        return Err("a node name has at most 64 characters".into());
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
    {
        return Err("a node name has only letters, digits, '-', '_' and '.'".into());
    }
    Ok(())
}

/// `HOST:PORT` (a host name, an IPv4 address or a bracketed IPv6 address; port 1-65535).
fn check_host_port(addr: &str) -> Result<(), String> {
    const EXPECTED: &str =
        "expected HOST:PORT (e.g. 10.0.0.5:4221, n2.internal:4221, [fd00::5]:4221)";
    let addr = addr.trim();
    if let Ok(a) = addr.parse::<SocketAddr>() {
        if a.port() == 0 {
            return Err(format!("port 0 cannot be reached; {EXPECTED}"));
        }
        if a.ip().is_unspecified() {
            return Err(format!(
                "{} means \"every interface\" and cannot be connected to; give an address other nodes reach this one at",
                a.ip()
            ));
        }
        return Ok(());
    }
    let Some((host, port)) = addr.rsplit_once(':') else {
        return Err(format!("no port; {EXPECTED}"));
    };
    match port.parse::<u16>() {
        Ok(0) | Err(_) => return Err(format!("{port:?} is not a port; {EXPECTED}")),
        Ok(_) => {}
    }
    let ok_host = !host.is_empty()
        && host.len() <= 253
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.' || c == '_');
    if !ok_host {
        return Err(format!("{host:?} is not a host name; {EXPECTED}"));
    }
    Ok(())
}

fn flag_host_port(addr: &str, flag: &str, var: &str) -> Result<String, ConfigError> {
    check_host_port(addr).map_err(|why| invalid(format!("{flag} {addr:?} (or {var}): {why}")))?;
    Ok(addr.trim().to_string())
}

fn flag_peers(peers: &[String]) -> Result<Vec<String>, ConfigError> {
    peers
        .iter()
        .filter(|p| !p.trim().is_empty())
        .map(|p| flag_host_port(p, "--peer", "WORKSHOP_PEERS"))
        .collect()
}

/// `addrs` in order, each once, without `own`.
fn dedup(addrs: impl IntoIterator<Item = String>, own: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for a in addrs {
        if a != own && !out.contains(&a) {
            out.push(a);
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Positions in the file.

struct Source<'a> {
    text: &'a str,
    path: &'a Path,
}

impl Source<'_> {
    /// `1`-based line and column of a byte offset.
    fn line_col(&self, offset: usize) -> (usize, usize) {
        let mut offset = offset.min(self.text.len());
        while !self.text.is_char_boundary(offset) {
            offset -= 1;
        }
        let before = &self.text[..offset];
        let line = before.matches('\n').count() + 1;
        let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        (line, col)
    }

    /// `path:line:column` of a span.
    fn at(&self, span: Range<usize>) -> String {
        let (line, col) = self.line_col(span.start);
        format!("{}:{line}:{col}", self.path.display())
    }

    /// `line N` of a span.
    fn line_of(&self, span: Range<usize>) -> String {
        format!("line {}", self.line_col(span.start).0)
    }

    /// The text of 1-based line `n`.
    fn line(&self, n: usize) -> &str {
        self.text.lines().nth(n.saturating_sub(1)).unwrap_or("")
    }

    /// The table the key on line `n` is in (`[nodes.n2]`), read from the headers above it:
    /// None for the top level.
    fn table_of(&self, n: usize, missing_key: bool) -> Option<String> {
        let here = self.line(n).trim_start();
        if let Some(h) = header(here) {
            // A header names the table itself: a missing key is missing in it; an unknown key
            // is its last part, in the table above.
            if missing_key {
                return Some(h);
            }
            return h.rsplit_once('.').map(|(t, _)| t.to_string());
        }
        let mut table = (1..n).rev().find_map(|i| header(self.line(i).trim_start()));
        // A dotted key (`nodes.n2.lisen = 1`) names its tables itself.
        if let Some((key, _)) = here.split_once('=') {
            if let Some((t, _)) = key.trim().rsplit_once('.') {
                let t = t.replace(' ', "");
                table = Some(match table {
                    Some(outer) => format!("{outer}.{t}"),
                    None => t,
                });
            }
        }
        table
    }

    /// A toml error as `path:line:column: what, in which table`.
    fn toml_error(&self, e: &toml::de::Error) -> ConfigError {
        let message = e.message().trim();
        let Some(span) = e.span() else {
            return invalid(format!("{}: {message}", self.path.display()));
        };
        let (line, _) = self.line_col(span.start);
        let at = self.at(span.clone());
        let key_text = self.text.get(span).unwrap_or("").trim().to_string();
        if let Some(rest) = message.strip_prefix("unknown field `") {
            let (key, expected) = rest.split_once('`').unwrap_or((rest, ""));
            let expected = expected
                .trim_start_matches(',')
                .trim()
                .trim_start_matches("expected")
                .trim()
                .trim_start_matches("one of")
                .trim()
                .replace('`', "")
                .replace(" or ", ", ");
            let table = self.table_of(line, false);
            let within = match &table {
                Some(t) => format!("[{t}]"),
                None => "the top level".to_string(),
            };
            let expected = if expected.is_empty() || expected.contains("no fields") {
                String::new()
            } else {
                format!(" (expected one of: {expected})")
            };
            return invalid(format!("{at}: unknown key {key:?} in {within}{expected}"));
        }
        if let Some(rest) = message.strip_prefix("missing field `") {
            let key = rest.split('`').next().unwrap_or(rest);
            let within = match self.table_of(line, true) {
                Some(t) => format!("[{t}]"),
                None => "the top level".to_string(),
            };
            return invalid(format!("{at}: missing key {key:?} in {within}"));
        }
        // A bad value: name the key it belongs to (the text before `=` on its line).
        let key = self
            .line(line)
            .split_once('=')
            .map(|(k, _)| k.trim().to_string())
            .filter(|k| !k.is_empty() && !k.starts_with('['));
        match key {
            Some(k) if !key_text.is_empty() => {
                let key = match self.table_of(line, false) {
                    Some(t) => format!("{t}.{k}"),
                    None => k,
                };
                invalid(format!("{at}: {key}: {message}"))
            }
            _ => invalid(format!("{at}: {message}")),
        }
    }
}

/// The table a header line names (`[nodes.n2]` → `nodes.n2`), if it is one.
fn header(line: &str) -> Option<String> {
    let inner = line.strip_prefix('[')?;
    let inner = inner.strip_prefix('[').unwrap_or(inner);
    let end = inner.find(']')?;
    Some(inner[..end].replace([' ', '"', '\''], ""))
}

#[cfg(test)]
mod tests;
