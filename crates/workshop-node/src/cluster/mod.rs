//! Reaching a node over the network: its ractor_cluster `NodeServer` (loopback by default), the
//! cookie (a 0600 file in the data dir, or `WORKSHOP_COOKIE`; never an argument, never logged),
//! the endpoint file a running node writes in its data dir, and connecting to a node from
//! another process.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use ractor::{Actor, ActorRef};
use ractor_cluster::{NodeEventSubscription, NodeServer, NodeServerMessage};
use tokio::sync::mpsc;
use workshop_proto::board::{BoardMsg, BOARD_GROUP};
use workshop_proto::node::{NodeMsg, NODE_GROUP};
use workshop_proto::ApiError;

pub mod ledger;
pub mod options;
pub mod peers;
pub mod registry;
pub mod route;
pub mod tls;
pub use options::{ClusterOptions, TlsOptions};
pub use peers::{ClusterHandle, ClusterView, Peer};

/// The node's cluster port when none is given.
pub const DEFAULT_PORT: u16 = 4221;
/// The pg scope of a cluster when none is given.
pub const DEFAULT_SCOPE: &str = "workshop";
/// The environment variable that carries the cookie (instead of the data dir's file).
pub const COOKIE_ENV: &str = "WORKSHOP_COOKIE";
/// Files a node keeps in its data dir.
pub const COOKIE_FILE: &str = "cookie";
pub const ENDPOINT_FILE: &str = "node.endpoint";
/// How long connecting (TCP, authentication, the node's actors) may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The cookie: `WORKSHOP_COOKIE` if set, else the data dir's cookie file (created 0600 with a
/// random value on first use when `create` is set).
pub fn cookie(data_dir: Option<&Path>, create: bool) -> Result<String, ApiError> {
    if let Ok(c) = std::env::var(COOKIE_ENV) {
        if !c.trim().is_empty() {
            return Ok(c.trim().to_string());
        }
    }
    let Some(dir) = data_dir else {
        return Err(ApiError::Node(format!(
            "no cookie: set {COOKIE_ENV} (an ephemeral node has no data dir to keep one in)"
        )));
    };
    let path = dir.join(COOKIE_FILE);
    match crate::secrets::read_secret(&path, "cookie file", COOKIE_ENV)? {
        Some(c) => Ok(c),
        None if create => crate::secrets::make_secret(&path, 24),
        None => Err(ApiError::Node(format!(
            "no cookie at {} (has a node ever run on this data dir?); set {COOKIE_ENV} or pass the node's --data-dir",
            path.display()
        ))),
    }
}

/// What a running node writes in its data dir so clients find it.
#[derive(Clone, Debug, PartialEq)]
pub struct Endpoint {
    pub addr: String,
    pub pid: u32,
    /// The node's TLS files, when its port speaks TLS (a client on the same machine uses them).
    pub tls: Option<TlsOptions>,
    /// The node's MCP URL, when it serves MCP.
    pub mcp: Option<String>,
}

pub fn endpoint_path(data_dir: &Path) -> PathBuf {
    data_dir.join(ENDPOINT_FILE)
}

pub fn write_endpoint(data_dir: &Path, e: &Endpoint) -> Result<(), ApiError> {
    let mut text = format!("addr={}\npid={}\n", e.addr, e.pid);
    if let Some(t) = &e.tls {
        let abs = |p: &Path| std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
        text.push_str(&format!(
            "tls_cert={}\ntls_key={}\ntls_ca={}\n",
            abs(&t.cert).display(),
            abs(&t.key).display(),
            abs(&t.ca).display()
        ));
    }
    if let Some(url) = &e.mcp {
        text.push_str(&format!("mcp={url}\n"));
    }
    let path = endpoint_path(data_dir);
    crate::secrets::write_private(&path, text.as_bytes())
        .map_err(|e| ApiError::Node(format!("cannot write {}: {e}", path.display())))
}

pub fn remove_endpoint(data_dir: &Path) {
    let _ = std::fs::remove_file(endpoint_path(data_dir));
}

/// The endpoint of the node that holds `data_dir`, if one wrote it.
pub fn read_endpoint(data_dir: &Path) -> Option<Endpoint> {
    let text = std::fs::read_to_string(endpoint_path(data_dir)).ok()?;
    let mut addr = None;
    let mut pid = None;
    let (mut cert, mut key, mut ca) = (None, None, None);
    let mut mcp = None;
    for line in text.lines() {
        match line.split_once('=') {
            Some(("addr", v)) => addr = Some(v.trim().to_string()),
            Some(("pid", v)) => pid = v.trim().parse().ok(),
            Some(("tls_cert", v)) => cert = Some(PathBuf::from(v.trim())),
            Some(("tls_key", v)) => key = Some(PathBuf::from(v.trim())),
            Some(("tls_ca", v)) => ca = Some(PathBuf::from(v.trim())),
            Some(("mcp", v)) => mcp = Some(v.trim().to_string()),
            _ => {}
        }
    }
    let tls = match (cert, key, ca) {
        (Some(cert), Some(key), Some(ca)) => Some(TlsOptions { cert, key, ca }),
        _ => None,
    };
    Some(Endpoint {
        addr: addr?,
        pid: pid?,
        tls,
        mcp,
    })
}

/// A free TCP port on `ip` (for tests and `--port 0`).
pub fn free_port(ip: std::net::IpAddr) -> Result<u16, ApiError> {
    std::net::TcpListener::bind((ip, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| ApiError::Node(format!("no free port on {ip}: {e}")))
}

/// Session events, turned into messages (the subscription's methods must not block).
#[derive(Debug)]
enum SessionEvent {
    Authenticated { node_id: u64 },
    Ready { session: ractor::ActorCell },
    Closed { node_id: u64, peer: String },
}

struct Watcher {
    tx: mpsc::UnboundedSender<SessionEvent>,
    /// Log peers whose connection closed before authentication (a wrong cookie, most often).
    log_refusals: bool,
    authenticated: parking_lot::Mutex<std::collections::HashSet<u64>>,
    /// Peer names with when they last authenticated, and when a refusal was last logged.
    names: Arc<parking_lot::Mutex<Names>>,
}

#[derive(Default)]
struct Names {
    authenticated: std::collections::HashMap<String, std::time::Instant>,
    warned: std::collections::HashMap<String, std::time::Instant>,
}

/// Two nodes that dial each other at once open two sessions and ractor_cluster closes one
/// (sometimes before it authenticated): a refusal from a peer that authenticated on another
/// session within this window is that, not a wrong cookie.
const DUPLICATE_WINDOW: Duration = Duration::from_secs(3);
/// A refusal from one peer is logged at most this often.
const REFUSAL_LOG_EVERY: Duration = Duration::from_secs(60);

impl Watcher {
    fn new(tx: mpsc::UnboundedSender<SessionEvent>, log_refusals: bool) -> Self {
        Self {
            tx,
            log_refusals,
            authenticated: Default::default(),
            names: Default::default(),
        }
    }
}

/// Log a refused connection, unless it was the loser of two simultaneous connections between
/// the same nodes (its peer authenticates on the other one) or was logged a moment ago.
fn log_refusal(names: Arc<parking_lot::Mutex<Names>>, name: Option<String>, addr: String) {
    let Some(name) = name else {
        tracing::warn!(peer = %addr, "refused a connection from {addr} (unnamed): it did not authenticate (wrong cookie, or not a workshop client)");
        return;
    };
    let addr_now = addr.clone();
    let check = async move {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let mut n = names.lock();
        let now = std::time::Instant::now();
        if n.authenticated
            .get(&name)
            .is_some_and(|t| now.duration_since(*t) < DUPLICATE_WINDOW)
        {
            tracing::debug!(peer = %addr, "a duplicate connection from {name} closed");
            return;
        }
        if n.warned
            .get(&name)
            .is_some_and(|t| now.duration_since(*t) < REFUSAL_LOG_EVERY)
        {
            return;
        }
        n.warned.insert(name.clone(), now);
        tracing::warn!(peer = %addr, "refused a connection from {addr} ({name}): it did not authenticate (wrong cookie, or not a workshop client)");
    };
    match tokio::runtime::Handle::try_current() {
        Ok(h) => {
            h.spawn(check);
        }
        Err(_) => {
            tracing::warn!(peer = %addr_now, "refused a connection from {addr_now}: it did not authenticate (wrong cookie, or not a workshop client)")
        }
    }
}

impl NodeEventSubscription for Watcher {
    fn node_session_opened(&self, _: ractor_cluster::node::NodeServerSessionInformation) {}
    fn node_session_authenticated(&self, ses: ractor_cluster::node::NodeServerSessionInformation) {
        self.authenticated.lock().insert(ses.node_id);
        if let Some(n) = &ses.peer_name {
            self.names
                .lock()
                .authenticated
                .insert(n.name.clone(), std::time::Instant::now());
        }
        let _ = self.tx.send(SessionEvent::Authenticated {
            node_id: ses.node_id,
        });
    }
    fn node_session_ready(&self, ses: ractor_cluster::node::NodeServerSessionInformation) {
        let _ = self.tx.send(SessionEvent::Ready {
            session: ses.actor.get_cell(),
        });
    }
    fn node_session_disconnected(&self, ses: ractor_cluster::node::NodeServerSessionInformation) {
        let authenticated = self.authenticated.lock().remove(&ses.node_id);
        // Only connections made to this node: one this node made is the peers actor's to report.
        if self.log_refusals && !authenticated && ses.is_server {
            log_refusal(
                self.names.clone(),
                ses.peer_name.as_ref().map(|n| n.name.clone()),
                ses.peer_addr.clone(),
            );
        }
        let _ = self.tx.send(SessionEvent::Closed {
            node_id: ses.node_id,
            peer: ses.peer_addr,
        });
    }
}

/// A node's cluster port: the NodeServer actor; stopped on drop.
pub struct Listener {
    server: ActorRef<NodeServerMessage>,
    pub addr: SocketAddr,
}

impl Listener {
    /// The NodeServer (peers are dialled from it, so they share its sessions).
    pub fn server(&self) -> ActorRef<NodeServerMessage> {
        self.server.clone()
    }

    /// Stop the NodeServer and wait until it has (its port is closed afterwards).
    pub async fn stop(self) {
        let _ = self
            .server
            .stop_and_wait(Some("node stopping".into()), Some(Duration::from_secs(5)))
            .await;
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.server.stop(Some("node stopping".into()));
    }
}

/// Start a NodeServer on `addr` (port 0 picks a free port).
pub async fn listen(addr: SocketAddr, cookie: String, name: &str) -> Result<Listener, ApiError> {
    listen_with(addr, cookie, name, None).await
}

/// Start a NodeServer on `addr` (port 0 picks a free port), with TLS when `tls` is given.
pub async fn listen_with(
    addr: SocketAddr,
    cookie: String,
    name: &str,
    tls: Option<&TlsOptions>,
) -> Result<Listener, ApiError> {
    let encryption = match tls {
        Some(t) => Some(tls::server_mode(t)?),
        None => None,
    };
    let port = match addr.port() {
        0 => free_port(addr.ip())?,
        p => p,
    };
    let server = NodeServer::new(
        port,
        cookie,
        name.to_string(),
        addr.ip().to_string(),
        encryption,
        None,
    )
    .with_listen_addr(addr.ip());
    let (server, _) = Actor::spawn(None, server, ()).await.map_err(|e| {
        let why = e.to_string();
        let why = if why.contains("Address already in use") {
            "the address is in use".to_string()
        } else {
            why
        };
        ApiError::Node(format!(
            "cannot listen on {}:{port} ({why}); is another node running there? `--listen 127.0.0.1:0` picks a free port (clients find it through the data dir)",
            addr.ip()
        ))
    })?;
    let (tx, mut rx) = mpsc::unbounded_channel();
    // Drain the events: the node itself only logs refusals.
    tokio::spawn(async move { while rx.recv().await.is_some() {} });
    let _ = server.cast(NodeServerMessage::SubscribeToEvents {
        id: "workshop.listener".into(),
        subscription: Box::new(Watcher::new(tx, true)),
    });
    Ok(Listener {
        server,
        addr: SocketAddr::new(addr.ip(), port),
    })
}

/// A connection from this process to one node: our own NodeServer (the client side of
/// ractor_cluster needs one) and the remote node actor.
pub struct Connection {
    server: ActorRef<NodeServerMessage>,
    pub node: ActorRef<NodeMsg>,
    pub addr: String,
    /// The ractor_cluster session with the node: the stand-ins of its actors are its children.
    session: ractor::ActorCell,
    scope: String,
}

impl Connection {
    /// The stand-in of the node's board actor (pg group `workshop.board` in this connection's
    /// scope, among this session's children, so another node's board in the same scope is
    /// never taken for it).
    pub fn board(&self) -> Result<ActorRef<BoardMsg>, ApiError> {
        session_member(&self.session, &self.scope, BOARD_GROUP)
            .map(ActorRef::from)
            .ok_or_else(|| {
                ApiError::Node(format!(
                    "the node at {} has no board actor in cluster scope {:?} (is it a workshop node of this version?)",
                    self.addr, self.scope
                ))
            })
    }
}

/// What a client's own NodeServer is named (never a peer).
pub const CLIENT_NAME_PREFIX: &str = "client-";

/// Name prefixes of the node and board actors (each node numbers its own within the process).
pub const NODE_ACTOR_PREFIX: &str = "workshop.node.";
pub const BOARD_ACTOR_PREFIX: &str = "workshop.board.";

/// The stand-in held by `session` for the member of pg `group` in `scope`.
///
/// Stand-ins are taken from the session's own children, never from pg: remote actor ids are
/// (node id, pid) and node ids are numbered per NodeServer, so two connections in one process
/// (a client of two nodes) can hold stand-ins with equal ids, and pg keeps only one of them —
/// and drops it when the other connection closes. The actor's name (advertised with it) says
/// what it is; a peer process normally runs one node, so one child matches. Only when the peer
/// runs several (tests: nodes in this very process) does the pg scope decide between them.
pub(crate) fn session_member(
    session: &ractor::ActorCell,
    scope: &str,
    group: &str,
) -> Option<ractor::ActorCell> {
    let prefix = if group == BOARD_GROUP {
        BOARD_ACTOR_PREFIX
    } else {
        NODE_ACTOR_PREFIX
    };
    let mut named: Vec<ractor::ActorCell> = session
        .get_children()
        .into_iter()
        .filter(|c| c.get_name().is_some_and(|n| n.starts_with(prefix)))
        .collect();
    if named.len() <= 1 {
        return named.pop();
    }
    let members: std::collections::HashSet<ractor::ActorId> =
        ractor::pg::get_scoped_members(&scope.to_string(), &group.to_string())
            .iter()
            .map(|c| c.get_id())
            .collect();
    named.into_iter().find(|c| members.contains(&c.get_id()))
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.server.stop(Some("client done".into()));
    }
}

/// Connect to the node at `addr`, authenticate with `cookie` and find its node actor.
pub async fn connect(addr: &str, cookie: String, scope: &str) -> Result<Connection, ApiError> {
    connect_with(addr, cookie, scope, None).await
}

/// Connect to the node at `addr` (over TLS when `tls` is given), authenticate with `cookie` and
/// find its node actor.
pub async fn connect_with(
    addr: &str,
    cookie: String,
    scope: &str,
    tls: Option<&TlsOptions>,
) -> Result<Connection, ApiError> {
    let no_node = |hint: String| ApiError::NoNode {
        addr: addr.to_string(),
        hint,
    };
    let name = format!(
        "{CLIENT_NAME_PREFIX}{}-{}",
        std::process::id(),
        next_client_id()
    );
    let server = NodeServer::new(0, cookie, name, "127.0.0.1".into(), None, None)
        .with_listen_addr(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST));
    let (server, _) = Actor::spawn(None, server, ())
        .await
        .map_err(|e| ApiError::Node(format!("cannot start this client's cluster endpoint: {e}")))?;
    let guard = ServerGuard(Some(server.clone()));
    let (tx, mut rx) = mpsc::unbounded_channel();
    server
        .cast(NodeServerMessage::SubscribeToEvents {
            id: "workshop.client".into(),
            subscription: Box::new(Watcher::new(tx, false)),
        })
        .map_err(|e| ApiError::Node(format!("cannot watch the connection: {e}")))?;
    if let Some(tls) = tls {
        tls::connect(&server, addr, tls).await?;
    } else {
        ractor_cluster::client_connect(&server, addr)
            .await
            .map_err(|e| match e {
            ractor_cluster::ClientConnectErr::Socket(e) => no_node(format!(
                "{e}; is `workshop node` running? `workshop node` writes its address to <data dir>/{ENDPOINT_FILE}"
            )),
            other => ApiError::Node(format!("cannot connect to {addr}: {other}")),
        })?;
    }
    let wait = async {
        let mut authenticated = std::collections::HashSet::new();
        loop {
            match rx.recv().await {
                Some(SessionEvent::Authenticated { node_id }) => {
                    authenticated.insert(node_id);
                }
                Some(SessionEvent::Ready { session }) => return Ok(session),
                Some(SessionEvent::Closed { node_id, peer })
                    if !authenticated.contains(&node_id) =>
                {
                    tracing::debug!(%peer, "the node at {peer} refused this client during authentication");
                    return Err(ApiError::Disconnected(format!(
                        "the node at {addr} refused the connection during authentication: wrong cookie? (the cookie comes from {COOKIE_ENV}, else the node's <data dir>/{COOKIE_FILE})"
                    )));
                }
                Some(SessionEvent::Closed { .. }) | None => {
                    return Err(ApiError::Disconnected(format!(
                        "the connection to {addr} closed before it was ready"
                    )))
                }
            }
        }
    };
    let session = tokio::time::timeout(CONNECT_TIMEOUT, wait)
        .await
        .map_err(|_| {
            no_node(format!(
                "no answer within {} s; is it a workshop node?",
                CONNECT_TIMEOUT.as_secs()
            ))
        })??;
    // The peer's pg groups are synchronised before its Ready, so the node actor is there now.
    // Its local stand-in is a child of this session (node ids are per NodeServer, so several
    // connections in one process could share one). A process advertises every node actor it
    // runs, so a process with several nodes gives each its own scope (`Node::set_scope`).
    let member = session_member(&session, scope, NODE_GROUP).ok_or_else(|| {
        no_node(format!(
            "something answers there but has no workshop node actor in cluster scope {scope:?}"
        ))
    })?;
    let mut guard = guard;
    guard.0 = None;
    Ok(Connection {
        server,
        node: ActorRef::from(member),
        addr: addr.to_string(),
        session,
        scope: scope.to_string(),
    })
}

/// Stops a half-made connection's server when connecting fails.
struct ServerGuard(Option<ActorRef<NodeServerMessage>>);

impl Drop for ServerGuard {
    fn drop(&mut self) {
        if let Some(s) = self.0.take() {
            s.stop(None);
        }
    }
}

fn next_client_id() -> u64 {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

/// Whether a process runs (a zombie does not count).
pub fn pid_alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            // The state follows the command name in parentheses.
            s.rsplit_once(") ")
                .map(|(_, rest)| !rest.starts_with('Z') && !rest.starts_with('X'))
                .unwrap_or(false)
        })
        .unwrap_or(false)
}

/// Send one encoded request to a node actor (here or a peer's stand-in) and wait for its
/// encoded reply, within `timeout`.
pub async fn call_node(
    node: &ActorRef<NodeMsg>,
    request: workshop_proto::api::Request,
    timeout: Duration,
) -> Result<workshop_proto::node::ReplyFrame, ApiError> {
    let name = request.name();
    let frame = workshop_proto::node::encode_request(request, env!("CARGO_PKG_VERSION"))?;
    call_frame(node, frame, name, timeout).await
}

/// Send an encoded request frame to a node actor and wait for the encoded reply.
pub async fn call_frame(
    node: &ActorRef<NodeMsg>,
    frame: workshop_proto::node::RequestFrame,
    name: &str,
    timeout: Duration,
) -> Result<workshop_proto::node::ReplyFrame, ApiError> {
    match node
        .call(|port| NodeMsg::Call(frame, port), Some(timeout))
        .await
    {
        Ok(ractor::rpc::CallResult::Success(reply)) => Ok(reply),
        Ok(ractor::rpc::CallResult::Timeout) => Err(ApiError::Timeout {
            what: format!("{name} to another node"),
            ms: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
        }),
        Ok(ractor::rpc::CallResult::SenderError) => Err(ApiError::Disconnected(format!(
            "the node dropped the {name} call (it stopped, or the connection broke)"
        ))),
        Err(e) => Err(ApiError::Disconnected(format!(
            "the node is not reachable ({e})"
        ))),
    }
}
