//! Where a request is answered in a cluster. The node actor hands every request here:
//! - a request about one agent goes to the node that holds the agent (asked of every peer
//!   when it is not here), as a `Local` request, and its reply comes back unchanged;
//! - creating an agent reserves its name on the board node first (a node that held it before
//!   dismisses its copy), and `PlaceAgent` creates it on the named node;
//! - lists (`agents`, `costs`, `total_cost`, `workers`, `await_all`, `nodes`,
//!   `cluster_status`, `cluster_events`) gather every node's answer;
//! - the registry and the ledger (`ClaimName`, `ReleaseName`, `NameTable`, `Spend`) are
//!   answered by the board node;
//! - everything else, and every `Local` request, is answered by this node.
//!
//! A node with no peers answers everything itself, as before.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use ractor::ActorRef;
use workshop_proto::api::{req, Call, NodeAgents, NodeEvent, NodeStatus, Request};
use workshop_proto::node::{decode_reply, encode_reply, encode_request, NodeMsg, ReplyFrame};
use workshop_proto::ApiError;
use workshop_types::{AgentName, Topic};

use super::peers::{ClusterHandle, PeersMsg};
use super::registry::Registry;
use crate::server::{dispatch, hello, Identity};
use crate::Workshop;

/// How long a short call to another node may take.
const PEER_CALL: Duration = Duration::from_secs(30);
/// How long a call that waits (ask, await) may take on another node.
const PEER_WAIT: Duration = Duration::from_secs(24 * 3600);
/// How long creating an agent waits for a board node that is not up yet.
const BOARD_WAIT: Duration = Duration::from_secs(10);
/// How long `nodes()` waits for each node's figures.
const NODE_INFO_WAIT: Duration = Duration::from_secs(2);

/// What the router needs: this node and its view of the cluster.
pub struct Ctx {
    pub ws: Workshop,
    pub id: Arc<Identity>,
    /// Set once the node has joined its cluster (None before, and on a node of its own).
    pub cluster: std::sync::OnceLock<ClusterHandle>,
    /// The name registry and ledger (the board node only).
    pub registry: Option<Arc<Registry>>,
}

/// Run the futures concurrently and collect their outputs in order.
async fn join_all<F>(fs: Vec<F>) -> Vec<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let handles: Vec<_> = fs.into_iter().map(tokio::spawn).collect();
    let mut out = Vec::with_capacity(handles.len());
    for h in handles {
        match h.await {
            Ok(v) => out.push(v),
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        }
    }
    out
}

fn local(request: Request) -> Request {
    Request::Local(req::Local {
        request: Box::new(request),
    })
}

/// The agent a request is about, if it is about one.
fn agent_of(r: &Request) -> Option<&str> {
    use Request as R;
    Some(match r {
        R::Ask(r) => &r.name,
        R::Cast(r) => &r.name,
        R::Poll(r) => r.reference.split('#').next().unwrap_or(&r.reference),
        R::AwaitAgent(r) => &r.name,
        R::Interrupt(r) => &r.name,
        R::Halt(r) => &r.name,
        R::Resume(r) => &r.name,
        R::Notify(r) => &r.name,
        R::Reset(r) => &r.name,
        R::Dismiss(r) => &r.name,
        R::Info(r) => &r.name,
        R::LastResult(r) => &r.name,
        R::History(r) => &r.name,
        R::Cost(r) => &r.name,
        R::AgentBudget(r) => &r.name,
        R::Every(r) => &r.agent,
        R::CancelSchedule(r) => &r.agent,
        R::WorkFromResult(r) => &r.agent,
        _ => return None,
    })
}

impl Ctx {
    fn view(&self) -> Option<Arc<super::ClusterView>> {
        self.cluster.get().map(|c| c.view())
    }

    /// Up peers' node actors (name, actor).
    fn peers(&self) -> Vec<(String, ActorRef<NodeMsg>)> {
        self.view()
            .map(|v| v.up().map(|(n, a)| (n.clone(), a.clone())).collect())
            .unwrap_or_default()
    }

    fn me(&self) -> String {
        self.id.name.clone()
    }

    fn has_agent(&self, name: &str) -> bool {
        let name = name.trim_start_matches(':');
        self.ws.agents().iter().any(|a| a.as_str() == name)
    }

    /// Answer `request` wherever it belongs (see the module doc).
    pub async fn route(self: Arc<Self>, request: Request) -> ReplyFrame {
        use Request as R;
        let what = request.name();
        let request = match request {
            R::Local(r) => return self.answer_here(*r.request).await,
            other => other,
        };
        if let Some(name) = agent_of(&request) {
            if !self.has_agent(name) {
                if let Some((_, owner)) = self.find_agent(name).await {
                    let waits = request.waits();
                    return forward(&owner, request, waits).await;
                }
            }
            return self.answer_here(request).await;
        }
        match request {
            R::CreateAgent(r) => {
                let name = r.name.clone();
                let run = R::CreateAgent(r);
                self.create_here(&name, run).await
            }
            R::FromProfile(r) => {
                let name = r.name.clone();
                let run = R::FromProfile(r);
                self.create_here(&name, run).await
            }
            R::BoardWorker(r) => {
                let name = r.name.clone();
                self.create_here(&name, R::BoardWorker(r)).await
            }
            R::PlaceAgent(r) => {
                if r.node == self.me() {
                    return self.answer_here(R::PlaceAgent(r)).await;
                }
                match self.peer(&r.node) {
                    Ok(peer) => forward_as_is(&peer, R::PlaceAgent(r), true).await,
                    Err(e) => encode_reply::<()>(what, &Err(e)),
                }
            }
            R::Agents(_) => {
                let mut all = self.ws.agents();
                for (_, reply) in self.gather(req::Agents {}).await {
                    all.extend(reply.unwrap_or_default());
                }
                all.sort();
                all.dedup();
                encode_reply(what, &Ok::<_, ApiError>(all))
            }
            R::Costs(_) => {
                let mut all = self.ws.costs();
                for (_, reply) in self.gather(req::Costs {}).await {
                    all.extend(reply.unwrap_or_default());
                }
                encode_reply(what, &Ok::<_, ApiError>(all))
            }
            R::TotalCost(_) => {
                let mut total = self.ws.total_cost();
                for (_, reply) in self.gather(req::TotalCost {}).await {
                    total += reply.unwrap_or(0.0);
                }
                encode_reply(what, &Ok::<_, ApiError>(total))
            }
            R::Workers(_) => {
                let mut all = match self.ws.workers().await {
                    Ok(all) => all,
                    Err(e) => return encode_reply::<()>(what, &Err(e)),
                };
                for (_, reply) in self.gather(req::Workers {}).await {
                    all.extend(reply.unwrap_or_default());
                }
                encode_reply(what, &Ok::<_, ApiError>(all))
            }
            R::AwaitAll(r) => {
                let peers = self.gather_waiting(req::AwaitAll {
                    timeout_ms: r.timeout_ms,
                });
                let here = self.ws.await_all(r.timeout_ms.map(Duration::from_millis));
                let (mut all, peers) = tokio::join!(here, peers);
                for (node, reply) in peers {
                    match reply {
                        Ok(list) => all.extend(list),
                        Err(e) => all.push(Err(ApiError::Node(format!(
                            "the agents of node {node} could not be awaited: {e}"
                        )))),
                    }
                }
                encode_reply(what, &Ok::<_, ApiError>(all))
            }
            R::Fan(r) => {
                let mut out = Vec::with_capacity(r.agents.len());
                for a in &r.agents {
                    let cast = R::Cast(req::Cast {
                        name: a.clone(),
                        prompt: r.message.clone(),
                        origin: "fan".into(),
                    });
                    let frame = Box::pin(self.clone().route(cast)).await;
                    out.push(decode_reply::<req::Cast>(&frame));
                }
                encode_reply(what, &Ok::<_, ApiError>(out))
            }
            R::Pipe(r) if !(self.has_agent(&r.from) && self.has_agent(&r.to)) => {
                encode_reply(what, &self.pipe_across(r).await)
            }
            // The cluster's configuration: applied here, then on every node that is up.
            R::Configure(_) | R::DefineProfile(_) | R::DefineWorkflow(_) | R::ResetBudget(_) => {
                let frame = self.answer_here(request.clone()).await;
                if decode_reply::<req::Local>(&frame).is_ok() {
                    self.broadcast(request).await;
                }
                frame
            }
            R::Nodes(_) => encode_reply(what, &Ok::<_, ApiError>(self.nodes(true).await)),
            R::ClusterStatus(_) => {
                let mut all = vec![NodeAgents {
                    node: self.me(),
                    rows: self.ws.status(),
                    error: None,
                }];
                for (node, reply) in self.gather(req::Status {}).await {
                    let (rows, error) = match reply {
                        Ok(rows) => (rows, None),
                        Err(e) => (Vec::new(), Some(e.to_string())),
                    };
                    all.push(NodeAgents { node, rows, error });
                }
                for down in self.down_nodes() {
                    all.push(NodeAgents {
                        node: down,
                        rows: Vec::new(),
                        error: Some("the node is down".into()),
                    });
                }
                encode_reply(what, &Ok::<_, ApiError>(all))
            }
            R::ClusterEvents(r) => {
                let mut all = tag(&self.me(), self.local_events(r.last, r.topic).await);
                for (node, reply) in self
                    .gather(req::Events {
                        last: r.last,
                        topic: r.topic,
                    })
                    .await
                {
                    all.extend(tag(&node, reply.unwrap_or_default()));
                }
                all.sort_by_key(|e| e.event.at_ms);
                let keep = usize::try_from(r.last).unwrap_or(usize::MAX);
                let cut = all.len().saturating_sub(keep);
                all.drain(..cut);
                encode_reply(what, &Ok::<_, ApiError>(all))
            }
            R::ClusterEventsAfter(r) => {
                encode_reply(what, &Ok::<_, ApiError>(self.events_after(r).await))
            }
            R::ClaimName(_) | R::ReleaseName(_) | R::NameTable(_) | R::Spend(_)
                if self.registry.is_none() =>
            {
                match self.board_peer() {
                    Ok(board) => forward(&board, request, false).await,
                    Err(e) => encode_reply::<()>(what, &Err(e)),
                }
            }
            other => self.answer_here(other).await,
        }
    }

    /// Answer on this node only.
    async fn answer_here(&self, request: Request) -> ReplyFrame {
        use Request as R;
        let what = request.name();
        match request {
            R::Local(r) => Box::pin(self.answer_here(*r.request)).await,
            R::Nodes(_) => encode_reply(what, &Ok::<_, ApiError>(self.nodes(false).await)),
            R::ClusterStatus(_) => encode_reply(
                what,
                &Ok::<_, ApiError>(vec![NodeAgents {
                    node: self.me(),
                    rows: self.ws.status(),
                    error: None,
                }]),
            ),
            R::ClusterEvents(r) => encode_reply(
                what,
                &Ok::<_, ApiError>(tag(&self.me(), self.local_events(r.last, r.topic).await)),
            ),
            // Nodes send each other `PlaceAgent` as it is (see `route`); a `Local` one is
            // answered the same way.
            R::PlaceAgent(r) if r.node == self.me() => {
                let name = r.name.clone();
                let create = R::CreateAgent(req::CreateAgent {
                    name: r.name,
                    role: r.role,
                    options: r.options,
                });
                self.create_here(&name, create).await
            }
            R::PlaceAgent(r) => encode_reply::<()>(
                what,
                &Err(ApiError::BadRequest(format!(
                    "this node is {}, not {}",
                    self.me(),
                    r.node
                ))),
            ),
            R::Leaving(r) => {
                if let Some(c) = self.cluster.get() {
                    let _ = c.actor.cast(PeersMsg::Left(r.node));
                }
                encode_reply(what, &Ok::<_, ApiError>(()))
            }
            R::ClaimName(r) => match &self.registry {
                Some(reg) => encode_reply(what, &reg.claim(&r.name, &r.node).await),
                None => encode_reply::<()>(what, &Err(self.not_board())),
            },
            R::ReleaseName(r) => match &self.registry {
                Some(reg) => encode_reply(what, &reg.release(&r.name, &r.node).await),
                None => encode_reply::<()>(what, &Err(self.not_board())),
            },
            R::NameTable(_) => match &self.registry {
                Some(reg) => encode_reply(what, &Ok::<_, ApiError>(reg.table().await)),
                None => encode_reply::<()>(what, &Err(self.not_board())),
            },
            R::Spend(r) => match &self.registry {
                Some(reg) => {
                    let total = reg.spend(&r.node, r.usd).await;
                    if let Ok(total) = total {
                        self.ws.cluster_spend().set_total(total);
                        self.push_ledger(total);
                    }
                    encode_reply(what, &total)
                }
                None => encode_reply::<()>(what, &Err(self.not_board())),
            },
            R::LedgerTotal(r) => {
                self.ws.cluster_spend().set_total(r.total);
                encode_reply(what, &Ok::<_, ApiError>(()))
            }
            R::Dismiss(r) => {
                let name = r.name.clone();
                let frame = dispatch(&self.ws, &self.id, R::Dismiss(r)).await;
                if decode_reply::<req::Dismiss>(&frame).is_ok() {
                    if let Err(e) = self.release_name(&name).await {
                        tracing::warn!(agent = %name, error = %e, "the agent's name was not released on the board node");
                    }
                }
                frame
            }
            other => dispatch(&self.ws, &self.id, other).await,
        }
    }

    fn not_board(&self) -> ApiError {
        let board = self
            .view()
            .map(|v| v.board_node.clone())
            .unwrap_or_default();
        ApiError::Node(format!(
            "{} is not the board node ({board} is): ask that node",
            self.me()
        ))
    }

    /// The board node's node actor (when this is not the board node).
    fn board_peer(&self) -> Result<ActorRef<NodeMsg>, ApiError> {
        let view = self.view().ok_or_else(|| self.not_board())?;
        view.board_peer()
            .and_then(|p| p.node.clone())
            .ok_or_else(|| ApiError::NoNode {
                addr: view
                    .peers
                    .get(&view.board_node)
                    .and_then(|p| p.addr.clone())
                    .unwrap_or_else(|| view.board_node.clone()),
                hint: format!(
                    "the board node {} is not reachable; this node reconnects by itself: try again when `workshop nodes` shows it up",
                    view.board_node
                ),
            })
    }

    fn peer(&self, name: &str) -> Result<ActorRef<NodeMsg>, ApiError> {
        let view = self.view();
        let known: Vec<String> = view
            .as_ref()
            .map(|v| {
                std::iter::once(v.me.clone())
                    .chain(v.peers.keys().cloned())
                    .collect()
            })
            .unwrap_or_else(|| vec![self.me()]);
        match view.as_ref().and_then(|v| v.peers.get(name)) {
            Some(p) if p.up => p
                .node
                .clone()
                .ok_or_else(|| ApiError::Node(format!("node {name} has no node actor"))),
            Some(_) => Err(ApiError::NoNode {
                addr: name.to_string(),
                hint: format!("node {name} is down; `workshop nodes` shows the cluster"),
            }),
            None => Err(ApiError::BadRequest(format!(
                "no node named {name:?} in this cluster (known: {})",
                known.join(", ")
            ))),
        }
    }

    fn down_nodes(&self) -> Vec<String> {
        self.view()
            .map(|v| {
                v.peers
                    .iter()
                    .filter(|(_, p)| !p.up)
                    .map(|(n, _)| n.clone())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The up peer that holds `name`, asked of every up peer at once.
    async fn find_agent(&self, name: &str) -> Option<(String, ActorRef<NodeMsg>)> {
        let name = name.trim_start_matches(':').to_string();
        let peers = self.peers();
        let answers = join_all(
            peers
                .iter()
                .map(|(n, a)| {
                    let (n, a) = (n.clone(), a.clone());
                    async move {
                        let r = call_local(&a, req::Agents {}, PEER_CALL).await;
                        (n, a, r)
                    }
                })
                .collect(),
        )
        .await;
        answers.into_iter().find_map(|(n, a, r)| {
            r.ok()
                .filter(|names| names.iter().any(|x| x.as_str() == name))
                .map(|_| (n, a))
        })
    }

    /// Ask every up peer the same request (as `Local`), at once.
    async fn gather<C>(&self, request: C) -> Vec<(String, Result<C::Reply, ApiError>)>
    where
        C: Call<Set = Request> + Clone + Send + 'static,
    {
        self.gather_within(request, PEER_CALL).await
    }

    async fn gather_waiting<C>(&self, request: C) -> Vec<(String, Result<C::Reply, ApiError>)>
    where
        C: Call<Set = Request> + Clone + Send + 'static,
    {
        self.gather_within(request, PEER_WAIT).await
    }

    async fn gather_within<C>(
        &self,
        request: C,
        within: Duration,
    ) -> Vec<(String, Result<C::Reply, ApiError>)>
    where
        C: Call<Set = Request> + Clone + Send + 'static,
    {
        let peers = self.peers();
        let cluster = self.cluster.get().cloned();
        join_all(
            peers
                .into_iter()
                .map(|(n, a)| {
                    let r = request.clone();
                    let cluster = cluster.clone();
                    async move {
                        let reply = call_local(&a, r, within).await;
                        if reply.is_ok() {
                            if let Some(c) = cluster {
                                let _ = c.actor.cast(PeersMsg::Seen(n.clone()));
                            }
                        }
                        (n, reply)
                    }
                })
                .collect(),
        )
        .await
    }

    /// Create here, after reserving the name on the board node (the node that held it before
    /// dismisses its copy first).
    async fn create_here(&self, name: &str, create: Request) -> ReplyFrame {
        let what = create.name();
        let clean = name.trim_start_matches(':');
        if let Err(e) = AgentName::new(clean) {
            return encode_reply::<()>(what, &Err(e.into()));
        }
        match self.claim_name(clean).await {
            Ok(Some(before)) if before != self.me() => {
                if let Ok(peer) = self.peer(&before) {
                    let dismissed = call_local(
                        &peer,
                        req::Dismiss {
                            name: clean.to_string(),
                        },
                        PEER_WAIT,
                    )
                    .await;
                    if let Err(e) = dismissed {
                        tracing::debug!(agent = clean, node = %before, error = %e, "the agent's old copy was not dismissed");
                    }
                }
                self.ws.emit_about(
                    Topic::Agent,
                    "moved",
                    clean,
                    format!("[agent] {clean} moves from node {before} to {}", self.me()),
                );
            }
            Ok(_) => {}
            Err(e) => {
                return encode_reply::<()>(
                    what,
                    &Err(ApiError::Node(format!(
                        "cannot reserve the agent name {clean:?} on the board node: {e}"
                    ))),
                )
            }
        }
        dispatch(&self.ws, &self.id, create).await
    }

    /// After (re)joining the board node: agents this node restored whose names another node
    /// now holds are dismissed here (the other node's is the agent); the others are reserved
    /// for this node.
    pub async fn reconcile_names(&self) -> Result<(), ApiError> {
        let table: BTreeMap<String, String> = match &self.registry {
            Some(reg) => reg.table().await.into_iter().collect(),
            None => call_local(&self.board_peer()?, req::NameTable {}, PEER_CALL)
                .await?
                .into_iter()
                .collect(),
        };
        let me = self.me();
        for name in self.ws.agents() {
            match table.get(name.as_str()) {
                Some(owner) if *owner == me => {}
                Some(owner) => {
                    tracing::warn!(agent = %name, node = %owner, "this node's agent was re-created on another node while this node was away: dismissing this copy");
                    self.ws.emit_about(
                        Topic::Agent,
                        "moved",
                        name.as_str(),
                        format!("[agent] {name} lives on node {owner} now; this node's copy is dismissed"),
                    );
                    if let Err(e) = self.ws.dismiss(name.as_str()).await {
                        tracing::warn!(agent = %name, error = %e, "dismissing a moved agent failed");
                    }
                }
                None => {
                    if let Some(owner) = self.claim_name(name.as_str()).await? {
                        tracing::debug!(agent = %name, before = %owner, "reserved a restored agent's name");
                    }
                }
            }
        }
        Ok(())
    }

    /// The board node's node actor; while it is not up, wait for it a little (a node that has
    /// just started has not met it yet).
    async fn board_peer_soon(&self) -> Result<ActorRef<NodeMsg>, ApiError> {
        if let Ok(p) = self.board_peer() {
            return Ok(p);
        }
        let Some(mut view) = self.cluster.get().map(|c| c.view.clone()) else {
            return self.board_peer();
        };
        let wait = async {
            loop {
                if view.changed().await.is_err() {
                    return;
                }
                if self.board_peer().is_ok() {
                    return;
                }
            }
        };
        let _ = tokio::time::timeout(BOARD_WAIT, wait).await;
        self.board_peer()
    }

    async fn claim_name(&self, name: &str) -> Result<Option<String>, ApiError> {
        let me = self.me();
        match &self.registry {
            Some(reg) => reg.claim(name, &me).await,
            None => {
                call_local(
                    &self.board_peer_soon().await?,
                    req::ClaimName {
                        name: name.to_string(),
                        node: me,
                    },
                    PEER_CALL,
                )
                .await
            }
        }
    }

    async fn release_name(&self, name: &str) -> Result<(), ApiError> {
        let name = name.trim_start_matches(':').to_string();
        let me = self.me();
        match &self.registry {
            Some(reg) => reg.release(&name, &me).await,
            None => {
                call_local(
                    &self.board_peer()?,
                    req::ReleaseName { name, node: me },
                    PEER_CALL,
                )
                .await
            }
        }
    }

    /// Apply a configuration change on every up peer too (a node that is down keeps its own
    /// until the change is made again).
    async fn broadcast(&self, request: Request) {
        let what = request.name();
        let peers = self.peers();
        let sent = join_all(
            peers
                .into_iter()
                .map(|(n, a)| {
                    let r = local(request.clone());
                    async move {
                        let frame = match encode_request(r, env!("CARGO_PKG_VERSION")) {
                            Ok(f) => super::call_frame(&a, f, what, PEER_CALL).await,
                            Err(e) => Err(e),
                        };
                        (n, frame.and_then(|f| decode_reply::<req::Local>(&f)))
                    }
                })
                .collect(),
        )
        .await;
        for (node, r) in sent {
            if let Err(e) = r {
                tracing::warn!(%node, error = %e, "{what} was not applied on node {node}");
                self.ws.emit(
                    Topic::Node,
                    format!("[node] {what} not applied on node {node}: {e}"),
                );
            }
        }
    }

    /// Tell every up peer the cluster's spend (the board node, after recording a spend).
    fn push_ledger(&self, total: f64) {
        for (_, peer) in self.peers() {
            tokio::spawn(async move {
                let _ = call_local(&peer, req::LedgerTotal { total }, PEER_CALL).await;
            });
        }
    }

    /// `pipe` between agents on different nodes: await the first wherever it is, then ask the
    /// second wherever it is, with the same prompt as a local pipe.
    async fn pipe_across(self: &Arc<Self>, r: req::Pipe) -> Result<AgentName, ApiError> {
        let done = decode_reply::<req::AwaitAgent>(
            &Box::pin(self.clone().route(Request::AwaitAgent(req::AwaitAgent {
                name: r.from.clone(),
                timeout_ms: None,
            })))
            .await,
        )?;
        let text = match done.last {
            Some(Ok(t)) => t.text,
            Some(Err(error)) => {
                return Err(ApiError::Turn {
                    agent: done.agent,
                    error,
                })
            }
            None => return Err(ApiError::NoResult(done.agent)),
        };
        let prompt = match r.message {
            Some(m) => format!("{m}\n\n{text}"),
            None => format!("Here is the output from the previous step:\n\n{text}"),
        };
        decode_reply::<req::Ask>(
            &Box::pin(self.clone().route(Request::Ask(req::Ask {
                name: r.to.clone(),
                prompt,
                origin: "pipe".into(),
            })))
            .await,
        )?;
        Ok(AgentName::new(r.to.trim_start_matches(':'))?)
    }

    async fn local_events(&self, last: u64, topic: Option<Topic>) -> Vec<workshop_types::Event> {
        self.ws
            .events(usize::try_from(last).unwrap_or(usize::MAX), topic)
            .await
            .unwrap_or_default()
    }

    /// Every node's events after its cursor; waits up to `wait_ms` for the first.
    async fn events_after(&self, r: req::ClusterEventsAfter) -> Vec<NodeEvent> {
        let wait = Duration::from_millis(r.wait_ms);
        let me = self.me();
        let mut tasks: tokio::task::JoinSet<(
            String,
            Result<Vec<workshop_types::Event>, ApiError>,
        )> = tokio::task::JoinSet::new();
        let cursor = |n: &str| r.after.get(n).copied();
        {
            let ws = self.ws.clone();
            let topic = r.topic;
            let after = cursor(&me);
            let me = me.clone();
            tasks.spawn(async move {
                let after = match after {
                    Some(a) => a,
                    None => ws
                        .events(1, None)
                        .await
                        .ok()
                        .and_then(|e| e.last().map(|e| e.seq))
                        .unwrap_or(0),
                };
                (me, ws.events_after(after, topic, wait).await)
            });
        }
        for (node, peer) in self.peers() {
            let after = cursor(&node);
            let topic = r.topic;
            tasks.spawn(async move {
                let after = match after {
                    Some(a) => a,
                    None => match call_local(
                        &peer,
                        req::Events {
                            last: 1,
                            topic: None,
                        },
                        PEER_CALL,
                    )
                    .await
                    {
                        Ok(evs) => evs.last().map(|e| e.seq).unwrap_or(0),
                        Err(e) => return (node, Err(e)),
                    },
                };
                let got = call_local(
                    &peer,
                    req::EventsAfter {
                        after_seq: after,
                        topic,
                        wait_ms: u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
                    },
                    wait + PEER_CALL,
                )
                .await;
                (node, got)
            });
        }
        // The first node with something answers; the others are asked again by the next call.
        let mut out = Vec::new();
        while let Some(done) = tasks.join_next().await {
            if let Ok((node, Ok(events))) = done {
                if !events.is_empty() {
                    out.extend(tag(&node, events));
                    break;
                }
            }
        }
        tasks.abort_all();
        out.sort_by_key(|e| e.event.at_ms);
        out
    }

    /// The cluster as this node sees it; with `live`, each up node is asked for its figures.
    async fn nodes(&self, live: bool) -> Vec<NodeStatus> {
        let me = hello(&self.ws, &self.id).await;
        let view = self.view();
        let board_node = view
            .as_ref()
            .map(|v| v.board_node.clone())
            .unwrap_or_else(|| me.name.clone());
        let now = workshop_types::now_ms();
        let mut out = vec![NodeStatus {
            name: me.name.clone(),
            addr: me.addr.clone(),
            up: true,
            this: true,
            board: board_node == me.name,
            started_at_ms: Some(me.started_at_ms),
            agents: me.agents,
            workers: me.workers,
            last_seen_ms: Some(now),
            version: Some(me.version.clone()),
        }];
        let Some(view) = view else {
            return out;
        };
        let live_info: BTreeMap<String, workshop_proto::api::NodeHello> = if live {
            self.gather_within(req::NodeInfo {}, NODE_INFO_WAIT)
                .await
                .into_iter()
                .filter_map(|(n, r)| r.ok().map(|h| (n, h)))
                .collect()
        } else {
            BTreeMap::new()
        };
        for (name, p) in &view.peers {
            let h = live_info.get(name).or(p.hello.as_ref());
            out.push(NodeStatus {
                name: name.clone(),
                addr: p.addr.clone(),
                up: p.up,
                this: false,
                board: *name == board_node,
                started_at_ms: h.map(|h| h.started_at_ms),
                agents: h.map(|h| h.agents).unwrap_or(0),
                workers: h.map(|h| h.workers).unwrap_or(0),
                last_seen_ms: if live_info.contains_key(name) {
                    Some(now)
                } else {
                    p.last_seen_ms
                },
                version: h.map(|h| h.version.clone()),
            });
        }
        out
    }
}

fn tag(node: &str, events: Vec<workshop_types::Event>) -> Vec<NodeEvent> {
    events
        .into_iter()
        .map(|event| NodeEvent {
            node: node.to_string(),
            event,
        })
        .collect()
}

/// Send `request` to another node as `Local` and decode its reply.
pub async fn call_local<C: Call<Set = Request>>(
    node: &ActorRef<NodeMsg>,
    request: C,
    within: Duration,
) -> Result<C::Reply, ApiError> {
    let frame = super::call_node(node, local(request.into_set()), within).await?;
    decode_reply::<C>(&frame)
}

/// Forward a request to another node as `Local`; its reply frame comes back unchanged.
async fn forward(node: &ActorRef<NodeMsg>, request: Request, waits: bool) -> ReplyFrame {
    forward_as_is(node, local(request), waits).await
}

async fn forward_as_is(node: &ActorRef<NodeMsg>, request: Request, waits: bool) -> ReplyFrame {
    let what = request.name();
    let within = if waits { PEER_WAIT } else { PEER_CALL };
    match super::call_node(node, request, within).await {
        Ok(reply) => reply,
        Err(e) => encode_reply::<()>(what, &Err(e)),
    }
}
