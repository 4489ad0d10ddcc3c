//! Starting and stopping one node: the supervision tree plus the [`Workshop`] API over it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use ractor::{Actor, ActorRef};
use workshop_agent::backend::{claude::ClaudeBackend, script::ScriptBackend, Backends};

use crate::board_link::BoardLink;
use crate::client::Client;
use crate::cluster::registry::Registry;
use crate::cluster::route::Ctx as RouteCtx;
use crate::cluster::{self, ClusterHandle, ClusterOptions, Listener};
use crate::directory::Directory;
use crate::event_log::EventLogHandle;
use crate::mcp_access::McpAccess;
use crate::persist::{NodeDb, RowWriterStats};
use crate::proc_ledger;
use crate::server::{Identity, NodeActor, NodeActorArgs};
use crate::supervisor::{AgentsSlot, NodeSupervisor, RestartBudget, RootArgs, RootMsg};
use crate::{ApiError, Workshop};
use workshop_board::durable::{DurableBoard, DurableOptions};
use workshop_board::store::MemoryStore;
use workshop_board::BoardConfig;
use workshop_board::{BoardActor, BoardActorArgs, BoardClient};
use workshop_proto::board::BoardMsg;
use workshop_proto::node::NodeMsg;
use workshop_types::{Clock, Topic};

/// How to start a node: `Node::builder().data_dir(dir).clock(c).start().await`. The defaults
/// are what `Node::start` uses: the built-in backends, nothing persisted, the system clock.
#[derive(Clone)]
pub struct NodeOptions {
    pub backends: Backends,
    /// Persist everything under this directory (`Node::open`); `None`: an ephemeral node.
    pub data_dir: Option<PathBuf>,
    /// The node's one clock: the board (leases, backoff), schedules, workers, event stamps and
    /// restart budgets read it. Tests pass [`crate::clock::tokio_clock`] under a paused runtime.
    pub clock: Clock,
    /// The board's retry backoff.
    pub board: BoardConfig,
    /// How often expired leases are looked for.
    pub lease_sweep: Duration,
    /// This node's place in a cluster (name, listen address, board node, peers, cookie, TLS).
    /// None: a node of its own, which listens only when [`Node::listen`] is called.
    pub cluster: Option<crate::cluster::ClusterOptions>,
    /// The node's MCP access table: where its MCP server is served (set by whoever serves it,
    /// before the node starts, so restored agents with `workshop_tools` find it) and the tokens
    /// it accepts.
    pub mcp: Arc<McpAccess>,
}

impl Default for NodeOptions {
    fn default() -> Self {
        Self {
            backends: Node::default_backends(),
            data_dir: None,
            clock: workshop_types::system_clock(),
            board: BoardConfig::default(),
            lease_sweep: Duration::from_secs(1),
            cluster: None,
            mcp: Arc::new(McpAccess::new()),
        }
    }
}

impl NodeOptions {
    pub fn backends(mut self, backends: Backends) -> Self {
        self.backends = backends;
        self
    }
    pub fn data_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.data_dir = Some(dir.into());
        self
    }
    pub fn clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }
    pub fn board(mut self, board: BoardConfig) -> Self {
        self.board = board;
        self
    }
    pub fn lease_sweep(mut self, every: Duration) -> Self {
        self.lease_sweep = every;
        self
    }
    pub fn cluster(mut self, cluster: crate::cluster::ClusterOptions) -> Self {
        self.cluster = Some(cluster);
        self
    }
    /// Start the node.
    pub fn mcp(mut self, access: Arc<McpAccess>) -> Self {
        self.mcp = access;
        self
    }

    pub async fn start(self) -> Result<Node, ApiError> {
        Node::start_opts(self).await
    }
}

/// Numbers the node and board actors' names within this process.
static NODE_SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// How long a stopping node lets board workers finish their items by default.
pub const DEFAULT_STOP_GRACE: Duration = Duration::from_secs(5);

pub struct Node {
    pub workshop: Workshop,
    identity: Arc<Identity>,
    node_actor: ActorRef<NodeMsg>,
    /// Answers board workers (in this process or on other nodes): claim, heartbeat, settle.
    /// Only on the board node.
    board_actor: Option<ActorRef<BoardMsg>>,
    data_dir: Option<PathBuf>,
    listener: Option<Listener>,
    stop_grace: Duration,
    scope: String,
    root: ActorRef<RootMsg>,
    handle: tokio::task::JoinHandle<()>,
    sweeper: Option<tokio::task::JoinHandle<()>>,
    /// Where requests are answered in the cluster (the node actor's router).
    router: Arc<RouteCtx>,
    /// The peers actor (once the node listens).
    peers: Option<ClusterHandle>,
    /// Reports this node's spend to the board node's ledger.
    ledger_sync: Option<tokio::task::JoinHandle<()>>,
    /// Points the board link at the board node's board actor while it is up (not on the board
    /// node itself).
    board_follower: Option<tokio::task::JoinHandle<()>>,
    /// Where this node's MCP server is and the tokens it accepts.
    mcp: Arc<McpAccess>,
}

impl Node {
    /// The built-in backends (`script`, `claude`).
    pub fn default_backends() -> Backends {
        Backends::default()
            .with(Arc::new(ScriptBackend))
            .with(Arc::new(ClaudeBackend::from_env()))
    }

    /// Start an ephemeral node (nothing persisted) with the built-in backends.
    pub async fn start() -> Result<Node, ApiError> {
        Self::start_with(Self::default_backends(), None).await
    }

    /// Start a durable node over `data_dir`: agents, board, store, workflows, schedules and the
    /// event tail come back after a restart (even after kill -9).
    pub async fn open(data_dir: &Path) -> Result<Node, ApiError> {
        Self::start_with(Self::default_backends(), Some(data_dir)).await
    }

    pub async fn start_with(backends: Backends, data_dir: Option<&Path>) -> Result<Node, ApiError> {
        let mut options = NodeOptions::default().backends(backends);
        options.data_dir = data_dir.map(Path::to_path_buf);
        Self::start_opts(options).await
    }

    /// Options to start a node with (see [`NodeOptions`]).
    pub fn builder() -> NodeOptions {
        NodeOptions::default()
    }

    /// Start a node with `options`.
    pub async fn start_opts(options: NodeOptions) -> Result<Node, ApiError> {
        let NodeOptions {
            backends,
            data_dir,
            clock,
            board: board_config,
            lease_sweep,
            cluster: cluster_options,
            mcp,
        } = options;
        let data_dir = data_dir.as_deref();
        let board_options = DurableOptions {
            board: board_config,
            clock: clock.clone(),
            ..DurableOptions::default()
        };
        // Only the board node holds a board; every other node works it through its link.
        let holds_board = cluster_options.as_ref().is_none_or(|c| c.is_board_node());
        let board_node = match &cluster_options {
            Some(c) => c.board.clone().unwrap_or_else(|| c.name.clone()),
            None => node_name(),
        };
        // The data dir is its owner's alone: 0700, anything looser in it tightened (once, said
        // in the log) before the databases open, then again for the files they just made.
        if let Some(dir) = data_dir {
            crate::secrets::secure_data_dir(dir, false)?;
        }
        let db = match data_dir {
            None => None,
            Some(dir) => Some(Arc::new(NodeDb::open(&dir.join("node"))?)),
        };
        // Holding the data dir now (its database is ours alone): kill what a node that died
        // without stopping its agents left running, before any agent resumes its session; then
        // record every backend process this node starts.
        let (leftovers, backends) = match data_dir {
            None => (Vec::new(), backends),
            Some(dir) => (
                proc_ledger::kill_leftovers(dir).await,
                backends.reporting_to(Arc::new(proc_ledger::ProcLedger::new(dir))),
            ),
        };
        // Agents with `workshop_tools` reach this node's MCP server through their backend.
        let backends = crate::orchestrator::wrap(&backends, mcp.clone(), data_dir);
        let board = match (holds_board, data_dir) {
            (false, _) => None,
            (true, None) => Some(
                DurableBoard::with_store(MemoryStore::new(), board_options)
                    .map_err(|e| ApiError::Board(e.to_string()))?,
            ),
            (true, Some(dir)) => Some(
                DurableBoard::open(dir.join("board"), board_options)
                    .map_err(|e| ApiError::Board(e.to_string()))?,
            ),
        };
        // Named (uniquely in this process), so a client tells this node's stand-ins from the
        // others a session may carry (see `cluster::session_member`).
        let n = NODE_SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        // The board actor before anything that may run a board worker (restored ones), so
        // the link is set when they start.
        let board_link = BoardLink::new(board_node);
        let board_actor = match &board {
            None => None,
            Some(board) => {
                let (board_actor, _) = Actor::spawn(
                    Some(format!("{}{n}", cluster::BOARD_ACTOR_PREFIX)),
                    BoardActor,
                    BoardActorArgs {
                        board: board.clone(),
                        scope: cluster::DEFAULT_SCOPE.to_string(),
                    },
                )
                .await
                .map_err(|e| ApiError::Node(format!("the board actor did not start: {e}")))?;
                board_link.set(Some(BoardClient::local(board_actor.clone())));
                Some(board_actor)
            }
        };
        let events = EventLogHandle::new(db.clone(), clock);
        // Expired leases are events: the item is another worker's (or failed) from now on.
        let sweeper = board.as_ref().map(|b| {
            let events = events.clone();
            b.spawn_lease_sweeper_with(lease_sweep, move |board, ids| {
                for id in ids {
                    let line = match board.get_now(id.as_str()) {
                        Some(i) => format!(
                            "[work] {id}: its lease expired before it was settled; now {} (attempt {} of {})",
                            i.status, i.attempts, i.max_attempts
                        ),
                        None => format!("[work] {id}: its lease expired before it was settled"),
                    };
                    events.publish(Topic::Work, "lease_expired", Some(id.as_str()), line);
                }
            })
        });
        let directory = Arc::new(Directory::default());
        let agents_slot = AgentsSlot::default();
        let (root, handle) = Actor::spawn(
            None,
            NodeSupervisor,
            RootArgs {
                agents_slot: agents_slot.clone(),
                events: events.clone(),
                directory: directory.clone(),
                budget: RestartBudget::new(3, Duration::from_secs(5)),
            },
        )
        .await
        .map_err(|e| ApiError::Node(format!("the node's supervision tree did not start: {e}")))?;
        let (state, view) = crate::state::spawn(db.clone(), root.get_cell()).await?;
        let workshop = Workshop::new(
            root.clone(),
            state,
            view,
            directory,
            events,
            backends,
            db,
            board,
            board_link,
            agents_slot,
        );
        for k in &leftovers {
            let line = proc_ledger::describe(k);
            tracing::warn!("{line}");
            workshop.publish(Topic::Node, "leftover_killed", Some(&k.entry.agent), line);
        }
        workshop.start_background().await?;
        workshop.restore().await?;
        if let Some(dir) = data_dir {
            crate::secrets::secure_data_dir(dir, true)?;
        }
        let identity = Identity::new(
            cluster_options
                .as_ref()
                .map(|c| c.name.clone())
                .unwrap_or_else(node_name),
            data_dir.map(|d| absolute(d).display().to_string()),
        );
        // The board node keeps the cluster's name registry and budget ledger.
        let registry = match &cluster_options {
            Some(c) if !c.is_board_node() => None,
            _ => Some(Arc::new(Registry::open(workshop.db())?)),
        };
        let router = Arc::new(RouteCtx {
            ws: workshop.clone(),
            id: identity.clone(),
            cluster: std::sync::OnceLock::new(),
            registry,
        });
        let (node_actor, _) = Actor::spawn(
            Some(format!("{}{n}", cluster::NODE_ACTOR_PREFIX)),
            NodeActor,
            NodeActorArgs {
                identity: identity.clone(),
                router: router.clone(),
                scope: cluster::DEFAULT_SCOPE.to_string(),
            },
        )
        .await
        .map_err(|e| ApiError::Node(format!("the node actor did not start: {e}")))?;
        let mut node = Node {
            workshop,
            identity,
            node_actor,
            board_actor,
            data_dir: data_dir.map(Path::to_path_buf),
            listener: None,
            stop_grace: DEFAULT_STOP_GRACE,
            scope: cluster::DEFAULT_SCOPE.to_string(),
            root,
            handle,
            sweeper,
            router,
            peers: None,
            ledger_sync: None,
            board_follower: None,
            mcp,
        };
        if let Some(c) = cluster_options {
            // Actors first, then the port: a peer that connects finds the node actor.
            node.join(c).await?;
        }
        Ok(node)
    }

    /// The node's MCP access table (see [`NodeOptions::mcp`]).
    pub fn mcp_access(&self) -> &Arc<McpAccess> {
        &self.mcp
    }

    /// A client of this node (in-process: no network, the same requests and replies).
    pub fn client(&self) -> Client {
        let client = Client::local(self.node_actor.clone());
        match &self.board_actor {
            Some(board) => client.with_board(board.clone()),
            None => client,
        }
    }

    /// The client this node's board workers use: its own board actor on the board node, else
    /// whatever its [`crate::board_link::BoardLink`] is set to (an error while it is unset).
    pub fn board_client(&self) -> Result<BoardClient, ApiError> {
        self.workshop.board_client()
    }

    /// How long a stop lets board workers finish their items before handing them back.
    pub fn set_stop_grace(&mut self, grace: Duration) {
        self.stop_grace = grace;
    }

    /// Move the node to another cluster scope (pg groups are per process: tests that run
    /// several nodes in one process give each its own scope, and clients connect with it).
    pub fn set_scope(&mut self, scope: &str) {
        let mut members = vec![(self.node_actor.get_cell(), workshop_proto::node::NODE_GROUP)];
        if let Some(board) = &self.board_actor {
            members.push((board.get_cell(), workshop_proto::board::BOARD_GROUP));
        }
        for (cell, group) in members {
            let group = group.to_string();
            ractor::pg::leave_scoped(self.scope.clone(), group.clone(), vec![cell.clone()]);
            ractor::pg::join_scoped(scope.to_string(), group, vec![cell]);
        }
        self.scope = scope.to_string();
    }

    /// Who this node is.
    pub fn identity(&self) -> &Arc<Identity> {
        &self.identity
    }

    /// Resolves when a client asked this node to stop (`workshop stop`).
    pub async fn stop_requested(&self) {
        self.identity.stop.notified().await
    }

    /// Open the node's cluster port on `addr` (port 0: a free one) with `cookie`, so other
    /// processes reach it with `Client::connect` and other nodes can join it. On a durable
    /// node the address is written to `<data dir>/node.endpoint` for clients to find.
    pub async fn listen(
        &mut self,
        addr: SocketAddr,
        cookie: String,
    ) -> Result<SocketAddr, ApiError> {
        self.join(ClusterOptions::single(
            self.identity.name.clone(),
            addr,
            cookie,
        ))
        .await
    }

    /// Take this node's place in a cluster: open its cluster port, then join its peers (the
    /// peers actor dials them and keeps redialling lost ones) and report its spend to the
    /// board node's ledger.
    pub async fn join(&mut self, c: ClusterOptions) -> Result<SocketAddr, ApiError> {
        if self.listener.is_some() {
            return Err(ApiError::Node("this node already listens".into()));
        }
        if c.name.is_empty()
            || c.name.starts_with(cluster::CLIENT_NAME_PREFIX)
            || !c
                .name
                .chars()
                .all(|ch| ch.is_ascii_alphanumeric() || matches!(ch, '-' | '_' | '.'))
        {
            return Err(ApiError::BadRequest(format!(
                "{:?} is not a usable node name: use letters, digits, '-', '_' or '.', not starting with {:?}",
                c.name,
                cluster::CLIENT_NAME_PREFIX
            )));
        }
        let listener =
            cluster::listen_with(c.listen, c.cookie.clone(), &c.name, c.tls.as_ref()).await?;
        let bound = listener.addr;
        let advertised = c.advertise.clone().unwrap_or_else(|| bound.to_string());
        *self.identity.addr.write() = Some(advertised.clone());
        if let Some(dir) = &self.data_dir {
            cluster::write_endpoint(
                dir,
                &cluster::Endpoint {
                    addr: bound.to_string(),
                    pid: std::process::id(),
                    tls: c.tls.clone(),
                    mcp: self.mcp.url(),
                },
            )?;
        }
        let server = listener.server();
        self.listener = Some(listener);
        let board_node = c.board.clone().unwrap_or_else(|| c.name.clone());
        let events = self.workshop.event_log();
        let clock = events.clock();
        let scope = self.scope.clone();
        let handle = cluster::peers::spawn(|view| cluster::peers::PeersArgs {
            server,
            me: c.name.clone(),
            my_addr: Some(advertised),
            board_node,
            seeds: c.peers.clone(),
            tls: c.tls.clone(),
            events,
            clock,
            scope,
            view,
        })
        .await?;
        let _ = self.router.cluster.set(handle.clone());
        if self.board_actor.is_none() {
            self.board_follower = Some(tokio::spawn(follow_board(
                handle.clone(),
                self.workshop.board_link().clone(),
            )));
        }
        self.ledger_sync = Some(tokio::spawn(cluster::ledger::sync(
            self.router.clone(),
            handle.clone(),
        )));
        self.peers = Some(handle);
        Ok(bound)
    }

    /// This node's view of its cluster (None before it listens).
    pub fn cluster_view(&self) -> Option<Arc<cluster::ClusterView>> {
        self.peers.as_ref().map(|p| p.view())
    }

    /// Counters of the agents' status row writer (a durable node only), for tests and benches.
    pub fn row_writer_stats(&self) -> Option<RowWriterStats> {
        self.workshop.db().map(|db| db.row_writer_stats())
    }

    /// Stop every agent (the registry keeps them for the next start), then stop the tree.
    ///
    /// Once the agents are stopped, `stop_agents` syncs the node database, which first writes
    /// the status rows still queued for the background writer: a clean stop loses none
    /// (persist/rows.rs).
    pub async fn shutdown(mut self) {
        let db = self.workshop.db().map(|d| Arc::downgrade(&d));
        // Tell the peers this node is leaving (they stop expecting it), then stop following them.
        for task in [self.ledger_sync.take(), self.board_follower.take()]
            .into_iter()
            .flatten()
        {
            task.abort();
            let _ = task.await;
        }
        if let Some(peers) = self.peers.take() {
            cluster::ledger::say_leaving(&self.router, &peers).await;
            let _ = peers
                .actor
                .stop_and_wait(Some("node shutdown".into()), Some(Duration::from_secs(5)))
                .await;
        }
        // No new requests; those in flight are ended (their callers get a clear error).
        let _ = self
            .node_actor
            .stop_and_wait(Some("node shutdown".into()), Some(Duration::from_secs(10)))
            .await;
        // Workers first: no new claims; items in flight finish within the grace period or go
        // back to the board, so none is left claimed by a node that is gone.
        let released = self.workshop.drain_workers(self.stop_grace).await;
        if released > 0 {
            tracing::warn!(released, "items handed back to the board at shutdown");
        }
        // Then the board actor: remote workers' last settles were answered; its pending
        // wait_ready calls end with `Disconnected`.
        if let Some(board_actor) = &self.board_actor {
            let _ = board_actor
                .stop_and_wait(Some("node shutdown".into()), Some(Duration::from_secs(5)))
                .await;
        }
        self.workshop.stop_agents().await;
        if let Some(sweeper) = &self.sweeper {
            sweeper.abort();
        }
        if let Some(board) = self.workshop.local_board() {
            if let Err(e) = board.shutdown().await {
                tracing::error!(error = %e, "board did not shut down cleanly");
            }
        }
        self.root.stop(Some("node shutdown".into()));
        let _ = self.handle.await;
        // The cluster port last, so replies sent while stopping (`workshop stop`) reach their
        // callers; the endpoint file goes with it.
        if let (Some(dir), Some(_)) = (&self.data_dir, &self.listener) {
            cluster::remove_endpoint(dir);
        }
        if let Some(listener) = self.listener.take() {
            listener.stop().await;
        }
        // The data dir is free only once the last holder of the node database (an actor still
        // stopping, a task ending) has let go: a node reopened on it right away must not find
        // it locked.
        drop(self.workshop);
        drop(self.router);
        if let Some(db) = db {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
            while db.strong_count() > 0 {
                if tokio::time::Instant::now() > deadline {
                    tracing::warn!(
                        holders = db.strong_count(),
                        "the node database is still held 10 s after shutdown"
                    );
                    break;
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }
        // Files sled made while the node ran (blobs, snapshots) got the umask's mode inside the
        // 0700 data dir: make them owner-only too.
        if let Some(dir) = &self.data_dir {
            if let Err(e) = crate::secrets::secure_data_dir(dir, true) {
                tracing::warn!(error = %e, "the data dir was not made owner-only after the stop");
            }
        }
    }
}

/// Keep `link` pointed at the board node's board actor: set while the board node is up (its
/// stand-in in the session with it), cleared while it is not, so board workers wait and carry
/// on by themselves when it is back.
async fn follow_board(cluster: ClusterHandle, link: crate::board_link::BoardLink) {
    let mut view = cluster.view.clone();
    let mut current: Option<ractor::ActorId> = None;
    loop {
        let board = {
            let v = view.borrow_and_update();
            v.board_peer().and_then(|p| p.board.clone())
        };
        let id = board.as_ref().map(|b| b.get_id());
        if id != current {
            current = id;
            let board_node = link.board_node().to_string();
            link.set(board.map(|b| BoardClient::new(b, format!("the board on node {board_node}"))));
        }
        if view.changed().await.is_err() {
            return;
        }
    }
}

fn node_name() -> String {
    std::env::var("WORKSHOP_NODE_NAME").unwrap_or_else(|_| {
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .ok()
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "node".into())
    })
}

fn absolute(p: &Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
}
