//! The peers actor: this node's view of the cluster, and the reconnect loop ractor_cluster
//! does not have. It dials the configured peers (and every node it learns of), follows the
//! NodeServer's session events, greets each new peer (`Hello`) to learn its workshop name and
//! address and find its node and board actors' stand-ins, and redials lost peers with a
//! bounded backoff. Readers take the published [`ClusterView`] (a `watch`), never call it.
//!
//! A peer is keyed by its workshop node name. A session that carries no workshop node actor
//! (a CLI client, a bench) is not a peer. Node up/down are `node` events.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use ractor::{Actor, ActorCell, ActorProcessingErr, ActorRef};
use ractor_cluster::{NodeEventSubscription, NodeServerMessage};
use ractor_cluster_derive::RactorMessage;
use tokio::sync::watch;
use workshop_proto::api::{req, NodeHello};
use workshop_proto::board::{BoardMsg, BOARD_GROUP};
use workshop_proto::node::{NodeMsg, NODE_GROUP};
use workshop_proto::ApiError;
use workshop_types::{Clock, Topic};

use super::{session_member, TlsOptions, CONNECT_TIMEOUT};
use crate::event_log::EventLogHandle;

/// The first redial waits this long; each failure doubles it up to [`MAX_BACKOFF`].
pub const MIN_BACKOFF: Duration = Duration::from_millis(50);
pub const MAX_BACKOFF: Duration = Duration::from_millis(1000);
/// How long a greeting (`Hello` to a new peer) may take.
const HELLO_TIMEOUT: Duration = Duration::from_secs(5);
/// Every up peer is asked who it is this often; one that has not answered [`MISSES`] times in
/// a row (each within [`HEARTBEAT_TIMEOUT`]) is taken for gone: its session is closed, so it is
/// reported down and redialled at once (a cut link stalls TCP for a long time otherwise).
pub const HEARTBEAT: Duration = Duration::from_secs(1);
pub const HEARTBEAT_TIMEOUT: Duration = Duration::from_secs(2);
pub const MISSES: u32 = 3;

/// One node of the cluster as this node sees it.
#[derive(Clone, Debug)]
pub struct Peer {
    /// Where it is reached (what it advertises).
    pub addr: Option<String>,
    pub up: bool,
    /// Its node actor's stand-in (while up).
    pub node: Option<ActorRef<NodeMsg>>,
    /// Its board actor's stand-in (while up).
    pub board: Option<ActorRef<BoardMsg>>,
    pub hello: Option<NodeHello>,
    /// When it last answered or was last known up (ms, this node's clock).
    pub last_seen_ms: Option<u64>,
    /// The ractor_cluster session it is up on.
    session: Option<u64>,
    session_cell: Option<ActorCell>,
    /// Heartbeats missed in a row.
    misses: u32,
}

/// This node's view of the cluster (published after every change).
#[derive(Clone, Debug, Default)]
pub struct ClusterView {
    pub me: String,
    pub my_addr: Option<String>,
    /// The node that holds the cluster's board.
    pub board_node: String,
    pub peers: BTreeMap<String, Peer>,
}

impl ClusterView {
    pub fn is_board_node(&self) -> bool {
        self.board_node == self.me
    }
    /// The peers that are up, with their node actors.
    pub fn up(&self) -> impl Iterator<Item = (&String, &ActorRef<NodeMsg>)> {
        self.peers
            .iter()
            .filter(|(_, p)| p.up)
            .filter_map(|(n, p)| p.node.as_ref().map(|a| (n, a)))
    }
    /// The board node's node actor, when it is another node and up.
    pub fn board_peer(&self) -> Option<&Peer> {
        self.peers.get(&self.board_node).filter(|p| p.up)
    }
}

/// Who reads the view and tells the actor what it learned.
#[derive(Clone)]
pub struct ClusterHandle {
    pub view: watch::Receiver<Arc<ClusterView>>,
    pub actor: ActorRef<PeersMsg>,
}

impl ClusterHandle {
    pub fn view(&self) -> Arc<ClusterView> {
        self.view.borrow().clone()
    }
}

#[derive(RactorMessage)]
pub enum PeersMsg {
    /// Connect to this address (now, or again after a failure).
    Dial(String),
    DialFailed {
        addr: String,
        why: String,
    },
    /// A dial that connected has had time to become a peer; dial again if it has not.
    DialCheck(String),
    SessionReady {
        node_id: u64,
        peer: String,
        session: ActorCell,
    },
    SessionClosed {
        node_id: u64,
        peer: String,
        authenticated: bool,
        outgoing: bool,
    },
    /// A new peer answered its greeting.
    Greeted {
        node_id: u64,
        hello: NodeHello,
        node: ActorRef<NodeMsg>,
        board: Option<ActorRef<BoardMsg>>,
        /// The addresses of the nodes it knows (so every node meets every other).
        knows: Vec<String>,
    },
    /// A peer said it is leaving the cluster (a graceful stop).
    Left(String),
    /// A peer answered a call (for "last seen").
    Seen(String),
    /// Time to ask every up peer who it is.
    Heartbeat,
    /// A peer did not answer its heartbeat on session `node_id`.
    Missed {
        name: String,
        node_id: u64,
    },
    /// A dial's session closed before authentication a moment ago: a wrong cookie, unless the
    /// address is up by now (two simultaneous connections, one closed).
    CheckRefusal(String),
}

pub struct PeersArgs {
    pub server: ActorRef<NodeServerMessage>,
    pub me: String,
    pub my_addr: Option<String>,
    pub board_node: String,
    /// Configured peer addresses: dialled for as long as the node runs.
    pub seeds: Vec<String>,
    pub tls: Option<TlsOptions>,
    pub events: Arc<EventLogHandle>,
    pub clock: Clock,
    pub scope: String,
    pub view: watch::Sender<Arc<ClusterView>>,
}

pub struct PeersActor;

struct Dial {
    delay: Duration,
    /// Configured (never forgotten) or learned (forgotten when its node leaves).
    configured: bool,
    pending: bool,
    /// A refusal during authentication was logged (once per address).
    refusal_logged: bool,
}

pub struct PeersState {
    args: PeersArgs,
    view: ClusterView,
    dials: HashMap<String, Dial>,
    /// Sessions whose greeting is in flight or done: node id -> peer name once greeted.
    sessions: HashMap<u64, Option<String>>,
    /// The session actors of those sessions (closed when their peer stops answering).
    cells: HashMap<u64, ActorCell>,
    /// The node and board stand-ins of each greeted session (two nodes that dial each other
    /// at once have two sessions for a moment; when one closes the peer moves to the other).
    refs: HashMap<u64, (ActorRef<NodeMsg>, Option<ActorRef<BoardMsg>>)>,
}

impl PeersState {
    fn publish(&self) {
        self.args.view.send_replace(Arc::new(self.view.clone()));
    }
    fn now(&self) -> u64 {
        (self.args.clock)()
    }
    fn is_up_at(&self, addr: &str) -> bool {
        self.view
            .peers
            .values()
            .any(|p| p.up && p.addr.as_deref() == Some(addr))
    }
    fn want(&mut self, addr: &str, configured: bool) -> bool {
        if self.view.my_addr.as_deref() == Some(addr) || addr.is_empty() {
            return false;
        }
        let d = self.dials.entry(addr.to_string()).or_insert(Dial {
            delay: MIN_BACKOFF,
            configured,
            pending: false,
            refusal_logged: false,
        });
        d.configured |= configured;
        true
    }
}

/// Turns session events into messages (the subscription's methods must not block).
struct Sub {
    to: ActorRef<PeersMsg>,
    authenticated: parking_lot::Mutex<HashSet<u64>>,
}

impl NodeEventSubscription for Sub {
    fn node_session_opened(&self, _: ractor_cluster::node::NodeServerSessionInformation) {}
    fn node_session_authenticated(&self, ses: ractor_cluster::node::NodeServerSessionInformation) {
        self.authenticated.lock().insert(ses.node_id);
    }
    fn node_session_ready(&self, ses: ractor_cluster::node::NodeServerSessionInformation) {
        let _ = self.to.cast(PeersMsg::SessionReady {
            node_id: ses.node_id,
            peer: peer_name(&ses),
            session: ses.actor.get_cell(),
        });
    }
    fn node_session_disconnected(&self, ses: ractor_cluster::node::NodeServerSessionInformation) {
        let authenticated = self.authenticated.lock().remove(&ses.node_id);
        let _ = self.to.cast(PeersMsg::SessionClosed {
            node_id: ses.node_id,
            peer: ses.peer_addr.clone(),
            authenticated,
            outgoing: !ses.is_server,
        });
    }
}

fn peer_name(ses: &ractor_cluster::node::NodeServerSessionInformation) -> String {
    ses.peer_name
        .as_ref()
        .map(|n| n.name.clone())
        .unwrap_or_default()
}

impl Actor for PeersActor {
    type Msg = PeersMsg;
    type State = PeersState;
    type Arguments = PeersArgs;

    async fn pre_start(
        &self,
        me: ActorRef<PeersMsg>,
        args: PeersArgs,
    ) -> Result<PeersState, ActorProcessingErr> {
        args.server.cast(NodeServerMessage::SubscribeToEvents {
            id: "workshop.peers".into(),
            subscription: Box::new(Sub {
                to: me.clone(),
                authenticated: Default::default(),
            }),
        })?;
        let view = ClusterView {
            me: args.me.clone(),
            my_addr: args.my_addr.clone(),
            board_node: args.board_node.clone(),
            peers: BTreeMap::new(),
        };
        let mut st = PeersState {
            args,
            view,
            dials: HashMap::new(),
            sessions: HashMap::new(),
            cells: HashMap::new(),
            refs: HashMap::new(),
        };
        // Sessions that became ready before this actor subscribed (a peer that dialled in
        // while the node was starting) are greeted now.
        if let Ok(sessions) = ractor::call_t!(st.args.server, NodeServerMessage::GetSessions, 5000)
        {
            for (node_id, ses) in sessions {
                me.cast(PeersMsg::SessionReady {
                    node_id,
                    peer: peer_name(&ses),
                    session: ses.actor.get_cell(),
                })?;
            }
        }
        for addr in st.args.seeds.clone() {
            if st.want(&addr, true) {
                me.cast(PeersMsg::Dial(addr))?;
            }
        }
        st.publish();
        me.send_interval(HEARTBEAT, || PeersMsg::Heartbeat);
        Ok(st)
    }

    async fn post_stop(
        &self,
        _me: ActorRef<PeersMsg>,
        st: &mut PeersState,
    ) -> Result<(), ActorProcessingErr> {
        let _ = st.args.server.cast(NodeServerMessage::UnsubscribeToEvents(
            "workshop.peers".into(),
        ));
        Ok(())
    }

    async fn handle(
        &self,
        me: ActorRef<PeersMsg>,
        msg: PeersMsg,
        st: &mut PeersState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            PeersMsg::Dial(addr) => {
                if st.is_up_at(&addr) {
                    return Ok(());
                }
                let Some(d) = st.dials.get_mut(&addr) else {
                    return Ok(());
                };
                if d.pending {
                    return Ok(());
                }
                d.pending = true;
                let server = st.args.server.clone();
                let tls = st.args.tls.clone();
                let to = me.clone();
                tokio::spawn(async move {
                    let res = dial(&server, &addr, tls.as_ref()).await;
                    let msg = match res {
                        Ok(()) => {
                            // Connected: it becomes a peer once authenticated and greeted.
                            to.send_after(CONNECT_TIMEOUT, move || PeersMsg::DialCheck(addr));
                            return;
                        }
                        Err(why) => PeersMsg::DialFailed { addr, why },
                    };
                    let _ = to.cast(msg);
                });
            }
            PeersMsg::DialFailed { addr, why } => {
                tracing::debug!(%addr, %why, "dial failed");
                retry(&me, st, &addr);
            }
            PeersMsg::DialCheck(addr) => {
                if !st.is_up_at(&addr) {
                    retry(&me, st, &addr);
                }
            }
            PeersMsg::SessionReady {
                node_id,
                peer,
                session,
            } => {
                // Clients (CLI commands, benches, tests) have sessions too, and a client in a
                // process that also runs a node advertises that node's actors: only a node's
                // own NodeServer makes a peer.
                if peer.starts_with(super::CLIENT_NAME_PREFIX) {
                    return Ok(());
                }
                let Some(node) = session_member(&session, &st.args.scope, NODE_GROUP) else {
                    tracing::trace!(%peer, "a session without a node actor (a client)");
                    return Ok(());
                };
                let node: ActorRef<NodeMsg> = ActorRef::from(node);
                let board =
                    session_member(&session, &st.args.scope, BOARD_GROUP).map(ActorRef::from);
                st.sessions.insert(node_id, None);
                st.cells.insert(node_id, session.clone());
                let to = me.clone();
                tokio::spawn(async move {
                    match greet(&node).await {
                        Ok((hello, knows)) => {
                            let _ = to.cast(PeersMsg::Greeted {
                                node_id,
                                hello,
                                node,
                                board,
                                knows,
                            });
                        }
                        Err(e) => {
                            tracing::warn!(%peer, error = %e, "a peer did not answer its greeting")
                        }
                    }
                });
            }
            PeersMsg::Greeted {
                node_id,
                hello,
                node,
                board,
                knows,
            } => {
                if !st.sessions.contains_key(&node_id) {
                    // The session closed while we greeted it.
                    return Ok(());
                }
                if hello.name == st.view.me {
                    tracing::error!(
                        addr = ?hello.addr,
                        "another node is also named {:?}: node names must be unique in a cluster (set --name or [nodes.<name>] in cluster.toml); ignoring it",
                        hello.name
                    );
                    return Ok(());
                }
                st.sessions.insert(node_id, Some(hello.name.clone()));
                st.refs.insert(node_id, (node.clone(), board.clone()));
                let now = st.now();
                let name = hello.name.clone();
                let addr = hello.addr.clone();
                let was_up = st.view.peers.get(&name).is_some_and(|p| p.up);
                st.view.peers.insert(
                    name.clone(),
                    Peer {
                        addr: addr.clone(),
                        up: true,
                        node: Some(node),
                        board,
                        hello: Some(hello),
                        last_seen_ms: Some(now),
                        session: Some(node_id),
                        session_cell: st.cells.get(&node_id).cloned(),
                        misses: 0,
                    },
                );
                if let Some(a) = &addr {
                    st.want(a, false);
                    if let Some(d) = st.dials.get_mut(a) {
                        d.delay = MIN_BACKOFF;
                        d.pending = false;
                    }
                }
                for a in knows {
                    if st.want(&a, false) && !st.is_up_at(&a) {
                        me.cast(PeersMsg::Dial(a))?;
                    }
                }
                st.publish();
                if !was_up {
                    let at = addr.unwrap_or_else(|| "?".into());
                    tracing::info!(node = %name, %at, "node up");
                    st.args.events.publish(
                        Topic::Node,
                        "node_up",
                        Some(&name),
                        format!("[node] {name} up ({at})"),
                    );
                }
            }
            PeersMsg::SessionClosed {
                node_id,
                peer,
                authenticated,
                outgoing,
            } => {
                let greeted = st.sessions.remove(&node_id).flatten();
                st.cells.remove(&node_id);
                st.refs.remove(&node_id);
                if !authenticated && outgoing {
                    // Maybe a wrong cookie, maybe the loser of two simultaneous connections
                    // (the other one then carries the peer): look again in a moment.
                    for (addr, d) in st.dials.iter() {
                        if d.pending && !d.refusal_logged && peer.ends_with(port_of(addr)) {
                            let addr = addr.clone();
                            me.send_after(Duration::from_secs(1), move || {
                                PeersMsg::CheckRefusal(addr)
                            });
                        }
                    }
                }
                // The same peer on another greeted session (simultaneous dials): move to it.
                if let Some(name) = &greeted {
                    let other = st
                        .sessions
                        .iter()
                        .find(|(id, n)| **id != node_id && n.as_deref() == Some(name.as_str()))
                        .map(|(id, _)| *id);
                    let moved = match (other, st.view.peers.get_mut(name)) {
                        (Some(other), Some(p)) if p.session == Some(node_id) => {
                            match st.refs.get(&other) {
                                Some((node, board)) => {
                                    p.session = Some(other);
                                    p.session_cell = st.cells.get(&other).cloned();
                                    p.node = Some(node.clone());
                                    p.board = board.clone();
                                    p.misses = 0;
                                    true
                                }
                                None => false,
                            }
                        }
                        _ => false,
                    };
                    if moved {
                        tracing::debug!(node = %name, "a duplicate session closed; the other one carries the peer");
                        st.publish();
                        return Ok(());
                    }
                }
                if let Some(name) = greeted {
                    let now = st.now();
                    let mut addr = None;
                    if let Some(p) = st.view.peers.get_mut(&name) {
                        if p.session == Some(node_id) {
                            p.up = false;
                            p.node = None;
                            p.board = None;
                            p.session = None;
                            p.session_cell = None;
                            p.last_seen_ms = Some(now);
                            addr = p.addr.clone();
                        }
                    }
                    if let Some(addr) = addr {
                        st.publish();
                        tracing::warn!(node = %name, %addr, "node down");
                        st.args.events.publish(
                            Topic::Node,
                            "node_down",
                            Some(&name),
                            format!("[node] {name} down ({addr}); reconnecting"),
                        );
                        if let Some(d) = st.dials.get_mut(&addr) {
                            d.pending = false;
                            d.delay = MIN_BACKOFF;
                        }
                        me.cast(PeersMsg::Dial(addr))?;
                    }
                }
                // Any dial still waiting on a session that just closed may try again.
                let waiting: Vec<String> = st
                    .dials
                    .iter()
                    .filter(|(a, d)| d.pending && peer.ends_with(port_of(a)))
                    .map(|(a, _)| a.clone())
                    .collect();
                for a in waiting {
                    retry(&me, st, &a);
                }
            }
            PeersMsg::Left(name) => {
                if let Some(p) = st.view.peers.remove(&name) {
                    if let Some(addr) = p.addr {
                        if st.dials.get(&addr).is_some_and(|d| !d.configured) {
                            st.dials.remove(&addr);
                        } else if st.dials.contains_key(&addr) {
                            retry(&me, st, &addr);
                        }
                    }
                    st.publish();
                    st.args.events.publish(
                        Topic::Node,
                        "node_left",
                        Some(&name),
                        format!("[node] {name} left the cluster"),
                    );
                }
            }
            PeersMsg::Seen(name) => {
                let now = st.now();
                if let Some(p) = st.view.peers.get_mut(&name) {
                    p.last_seen_ms = Some(now);
                    p.misses = 0;
                    st.publish();
                }
            }
            PeersMsg::Heartbeat => {
                for (name, p) in &st.view.peers {
                    let (Some(node), Some(node_id), true) = (p.node.clone(), p.session, p.up)
                    else {
                        continue;
                    };
                    let name = name.clone();
                    let to = me.clone();
                    tokio::spawn(async move {
                        let asked =
                            super::route::call_local(&node, req::NodeInfo {}, HEARTBEAT_TIMEOUT)
                                .await;
                        let _ = to.cast(match asked {
                            Ok(_) => PeersMsg::Seen(name),
                            Err(_) => PeersMsg::Missed { name, node_id },
                        });
                    });
                }
            }
            PeersMsg::CheckRefusal(addr) => {
                let up = st.is_up_at(&addr);
                if let Some(d) = st.dials.get_mut(&addr) {
                    if !up && !d.refusal_logged {
                        d.refusal_logged = true;
                        tracing::warn!(%addr, "the node at {addr} refused this node during authentication: wrong cookie? (every node of a cluster needs the same cookie)");
                    }
                }
            }
            PeersMsg::Missed { name, node_id } => {
                let Some(p) = st.view.peers.get_mut(&name) else {
                    return Ok(());
                };
                if p.session != Some(node_id) || !p.up {
                    return Ok(());
                }
                p.misses += 1;
                if p.misses >= MISSES {
                    tracing::warn!(node = %name, "node {name} has not answered {MISSES} heartbeats in a row: closing its session (it is redialled)");
                    if let Some(cell) = p.session_cell.take() {
                        // The session's end reports the node down and redials it.
                        cell.stop(Some("the peer stopped answering".into()));
                    }
                }
            }
        }
        Ok(())
    }
}

/// The last `:port` of an address (to match a session's peer address with a dial).
fn port_of(addr: &str) -> &str {
    addr.rfind(':').map(|i| &addr[i..]).unwrap_or(addr)
}

/// Dial `addr` again after its backoff (doubling, bounded).
fn retry(me: &ActorRef<PeersMsg>, st: &mut PeersState, addr: &str) {
    let Some(d) = st.dials.get_mut(addr) else {
        return;
    };
    d.pending = false;
    let delay = d.delay;
    d.delay = (d.delay * 2).min(MAX_BACKOFF);
    let addr = addr.to_string();
    me.send_after(delay, move || PeersMsg::Dial(addr));
}

/// Open a connection from this node's NodeServer to `addr` (TLS when configured).
async fn dial(
    server: &ActorRef<NodeServerMessage>,
    addr: &str,
    tls: Option<&TlsOptions>,
) -> Result<(), String> {
    if let Some(tls) = tls {
        return super::tls::connect(server, addr, tls)
            .await
            .map_err(|e| e.to_string());
    }
    ractor_cluster::client_connect(server, addr)
        .await
        .map_err(|e| format!("{e:?}"))
}

/// Ask a new peer who it is and whom it knows.
async fn greet(node: &ActorRef<NodeMsg>) -> Result<(NodeHello, Vec<String>), ApiError> {
    let hello = super::route::call_local(node, req::NodeInfo {}, HELLO_TIMEOUT).await?;
    let nodes = super::route::call_local(node, req::Nodes {}, HELLO_TIMEOUT).await?;
    let knows = nodes
        .into_iter()
        .filter(|n| n.up && !n.this)
        .filter_map(|n| n.addr)
        .collect();
    Ok((hello, knows))
}

/// Start the peers actor (linked to nothing: the node stops it) and its view.
pub async fn spawn(
    args: impl FnOnce(watch::Sender<Arc<ClusterView>>) -> PeersArgs,
) -> Result<ClusterHandle, ApiError> {
    let (tx, rx) = watch::channel(Arc::new(ClusterView::default()));
    let (actor, _) = Actor::spawn(None, PeersActor, args(tx))
        .await
        .map_err(|e| ApiError::Node(format!("the cluster's peers actor did not start: {e}")))?;
    Ok(ClusterHandle { view: rx, actor })
}
