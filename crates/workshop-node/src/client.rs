//! `Client`: every way in (console, CLI commands, benches, tests; later MCP and the dashboard)
//! holds one. It sends `workshop-proto` requests to a node actor — the one in this process, or
//! one on another node over ractor_cluster — and has the API's method names. Both paths encode
//! the request and the reply the same way, so they behave the same.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use ractor::rpc::CallResult;
use ractor::ActorRef;
use tokio::sync::mpsc;
use workshop_board::BoardClient;
use workshop_proto::api::{req, Call, NodeHello, Request, PROTOCOL_VERSION};
use workshop_proto::board::{BackupInfo, BoardMsg};
use workshop_proto::node::{decode_reply, encode_request, NodeMsg};
use workshop_proto::ApiError;
use workshop_types::board::{SettleBy, Status, WorkItem};
use workshop_types::{
    AgentInfo, AgentName, AgentOptions, AgentRow, Event, PollState, RequestRef, Topic, TurnResult,
};
use workshop_workflow::{RunStatus, Workflow};

use crate::cluster::{self, Connection};
use crate::{
    AwaitOutcome, BudgetView, GlobalConfig, Profile, ScheduleInfo, WorkOptions, WorkerInfo,
    WorkerOptions,
};

/// How long a call that does not wait for a turn or an item may take.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a call that waits (ask, await, pipe, await_work, creating or dismissing an
/// agent...) may take at most; a node that goes away ends such a call at once.
pub const WAIT_TIMEOUT: Duration = Duration::from_secs(24 * 3600);
/// Added to a caller's own timeout (await with timeout_ms) for the reply to come back.
const SLACK: Duration = Duration::from_secs(10);

const VERSION: &str = env!("CARGO_PKG_VERSION");

#[derive(Clone)]
pub struct Client {
    node: ActorRef<NodeMsg>,
    target: Arc<str>,
    call_timeout: Duration,
    wait_timeout: Duration,
    /// Keeps a remote connection open while any clone of the client lives.
    _conn: Option<Arc<Connection>>,
    /// The board actor beside an in-process node actor (a remote one is found through the
    /// connection).
    board: Option<ActorRef<BoardMsg>>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Client({})", self.target)
    }
}

impl Client {
    /// A client of the node actor in this process.
    pub fn local(node: ActorRef<NodeMsg>) -> Self {
        Self {
            node,
            target: Arc::from("this process"),
            call_timeout: CALL_TIMEOUT,
            wait_timeout: WAIT_TIMEOUT,
            _conn: None,
            board: None,
        }
    }

    /// This in-process client with the node's board actor, for [`Client::board_client`].
    pub fn with_board(mut self, board: ActorRef<BoardMsg>) -> Self {
        self.board = Some(board);
        self
    }

    /// A client of the node's board actor, for board workers: claim, heartbeat and settle
    /// items with fencing tokens. For a remote node it is the board actor's stand-in in the
    /// same ractor_cluster session as the node actor, and it keeps the connection open.
    pub async fn board_client(&self) -> Result<BoardClient, ApiError> {
        if let Some(board) = &self.board {
            return Ok(BoardClient::local(board.clone()).with_timeout(self.call_timeout));
        }
        match &self._conn {
            Some(conn) => {
                let board = conn.board()?;
                let keep: Arc<dyn std::any::Any + Send + Sync> = conn.clone();
                Ok(BoardClient::new(board, format!("the board at {}", conn.addr))
                    .with_timeout(self.call_timeout)
                    .keeping(keep))
            }
            None => Err(ApiError::Node(format!(
                "{} has no board actor (a local client made without `with_board`); use Node::board_client",
                self.target
            ))),
        }
    }

    /// Connect to the node at `addr` (host:port) with `cookie`, and check versions.
    pub async fn connect(addr: &str, cookie: String) -> Result<Self, ApiError> {
        Self::connect_scoped(addr, cookie, cluster::DEFAULT_SCOPE).await
    }

    pub async fn connect_scoped(addr: &str, cookie: String, scope: &str) -> Result<Self, ApiError> {
        Self::connect_with(addr, cookie, scope, None).await
    }

    /// Connect over TLS (the node's cluster port speaks TLS): `tls` is this client's
    /// certificate and key, and the CA that signed the node's.
    pub async fn connect_tls(
        addr: &str,
        cookie: String,
        tls: &cluster::TlsOptions,
    ) -> Result<Self, ApiError> {
        Self::connect_with(addr, cookie, cluster::DEFAULT_SCOPE, Some(tls)).await
    }

    async fn connect_with(
        addr: &str,
        cookie: String,
        scope: &str,
        tls: Option<&cluster::TlsOptions>,
    ) -> Result<Self, ApiError> {
        let conn = cluster::connect_with(addr, cookie, scope, tls).await?;
        let client = Self {
            node: conn.node.clone(),
            target: Arc::from(format!("the node at {addr}")),
            call_timeout: CALL_TIMEOUT,
            wait_timeout: WAIT_TIMEOUT,
            _conn: Some(Arc::new(conn)),
            board: None,
        };
        client.hello().await?;
        Ok(client)
    }

    /// Change the timeouts (short calls, and calls that wait for turns or items).
    pub fn with_timeouts(mut self, call: Duration, wait: Duration) -> Self {
        self.call_timeout = call;
        self.wait_timeout = wait;
        self
    }

    /// Send one request and decode its typed reply.
    pub async fn call<C: Call<Set = Request>>(&self, request: C) -> Result<C::Reply, ApiError> {
        self.call_within(request, None).await
    }

    async fn call_within<C: Call<Set = Request>>(
        &self,
        request: C,
        own_timeout_ms: Option<u64>,
    ) -> Result<C::Reply, ApiError> {
        let request: Request = request.into_set();
        let name = request.name();
        let timeout = match (request.waits(), own_timeout_ms) {
            (true, Some(ms)) => Duration::from_millis(ms) + SLACK,
            (true, None) => self.wait_timeout,
            (false, _) => self.call_timeout,
        };
        let frame = encode_request(request, VERSION)?;
        match self
            .node
            .call(|port| NodeMsg::Call(frame, port), Some(timeout))
            .await
        {
            Ok(CallResult::Success(reply)) => decode_reply::<C>(&reply),
            Ok(CallResult::Timeout) => Err(ApiError::Timeout {
                what: format!("{name} to {}", self.target),
                ms: timeout.as_millis() as u64,
            }),
            Ok(CallResult::SenderError) => Err(ApiError::Disconnected(format!(
                "{} dropped the {name} call (it stopped, or the connection broke); check `workshop status`",
                self.target
            ))),
            Err(e) => Err(ApiError::Disconnected(format!(
                "{} is not reachable ({e}); is it still running?",
                self.target
            ))),
        }
    }

    /// Send an already encoded frame (tests of malformed and foreign requests).
    #[doc(hidden)]
    pub async fn call_raw(
        &self,
        frame: workshop_proto::node::RequestFrame,
    ) -> Result<workshop_proto::node::ReplyFrame, ApiError> {
        match self
            .node
            .call(|port| NodeMsg::Call(frame, port), Some(self.call_timeout))
            .await
        {
            Ok(CallResult::Success(reply)) => Ok(reply),
            Ok(_) => Err(ApiError::Disconnected("no reply".into())),
            Err(e) => Err(ApiError::Disconnected(e.to_string())),
        }
    }

    /// Exchange versions; refuses a node of another protocol version with both named.
    pub async fn hello(&self) -> Result<NodeHello, ApiError> {
        let h = self
            .call(req::Hello {
                client_version: VERSION.into(),
                protocol: PROTOCOL_VERSION,
            })
            .await?;
        if h.protocol != PROTOCOL_VERSION {
            return Err(ApiError::Version {
                client: VERSION.into(),
                client_protocol: PROTOCOL_VERSION,
                node: h.version,
                node_protocol: h.protocol,
            });
        }
        Ok(h)
    }

    pub async fn node_info(&self) -> Result<NodeHello, ApiError> {
        self.call(req::NodeInfo {}).await
    }

    // ---------------------------------------------------------------- the cluster

    /// Every node of the cluster (the answering node first), up or down.
    pub async fn nodes(&self) -> Result<Vec<workshop_proto::api::NodeStatus>, ApiError> {
        self.call(req::Nodes {}).await
    }

    /// Every agent of the cluster with its node.
    pub async fn cluster_status(&self) -> Result<Vec<workshop_proto::api::NodeAgents>, ApiError> {
        self.call(req::ClusterStatus {}).await
    }

    /// The last `last` events of every node, each with its node.
    pub async fn cluster_events(
        &self,
        last: usize,
        topic: Option<Topic>,
    ) -> Result<Vec<workshop_proto::api::NodeEvent>, ApiError> {
        self.call(req::ClusterEvents {
            last: last as u64,
            topic,
        })
        .await
    }

    /// Every node's events after the per-node cursors, waiting up to `wait` for the first.
    pub async fn cluster_events_after(
        &self,
        after: BTreeMap<String, u64>,
        topic: Option<Topic>,
        wait: Duration,
    ) -> Result<Vec<workshop_proto::api::NodeEvent>, ApiError> {
        let wait_ms = wait.as_millis() as u64;
        self.call_within(
            req::ClusterEventsAfter {
                after,
                topic,
                wait_ms,
            },
            Some(wait_ms),
        )
        .await
    }

    /// Follow every node's events live (from now on), each with its node. The stream ends when
    /// the node goes away or the receiver is dropped.
    pub async fn watch_cluster(
        &self,
    ) -> Result<mpsc::Receiver<workshop_proto::api::NodeEvent>, ApiError> {
        let mut after: BTreeMap<String, u64> = BTreeMap::new();
        for e in self.cluster_events(50, None).await? {
            let c = after.entry(e.node).or_insert(0);
            *c = (*c).max(e.event.seq);
        }
        let (tx, rx) = mpsc::channel(1024);
        let me = self.clone();
        tokio::spawn(async move {
            loop {
                let batch = tokio::select! {
                    b = me.cluster_events_after(after.clone(), None, Duration::from_secs(30)) => b,
                    _ = tx.closed() => return,
                };
                let Ok(batch) = batch else { return };
                for e in batch {
                    let c = after.entry(e.node.clone()).or_insert(0);
                    *c = (*c).max(e.event.seq);
                    if tx.send(e).await.is_err() {
                        return;
                    }
                }
            }
        });
        Ok(rx)
    }

    /// Create (or replace) an agent on the named node of the cluster.
    pub async fn agent_on(
        &self,
        node: &str,
        name: &str,
        role: Option<String>,
        options: AgentOptions,
    ) -> Result<AgentName, ApiError> {
        self.call(req::PlaceAgent {
            node: node.into(),
            name: name.into(),
            role,
            options,
        })
        .await
    }

    /// Which node holds each agent name (the board node's registry).
    pub async fn name_table(&self) -> Result<Vec<(String, String)>, ApiError> {
        self.call(req::NameTable {}).await
    }

    /// Ask the node to stop gracefully (as SIGTERM does).
    pub async fn stop_node(&self) -> Result<(), ApiError> {
        self.call(req::StopNode {}).await
    }

    // ---------------------------------------------------------------- configuration

    pub async fn configure(
        &self,
        context: Option<String>,
        options: AgentOptions,
        max_cost_usd: Option<f64>,
    ) -> Result<(), ApiError> {
        self.call(req::Configure {
            context,
            options,
            max_cost_usd,
        })
        .await
    }

    pub async fn config(&self) -> Result<GlobalConfig, ApiError> {
        self.call(req::Config {}).await
    }

    pub async fn profile(
        &self,
        name: &str,
        role: Option<String>,
        options: AgentOptions,
    ) -> Result<(), ApiError> {
        self.call(req::DefineProfile {
            name: name.into(),
            role,
            options,
        })
        .await
    }

    pub async fn profiles(&self) -> Result<Vec<Profile>, ApiError> {
        self.call(req::Profiles {}).await
    }

    // ---------------------------------------------------------------- agents

    pub async fn agent(
        &self,
        name: &str,
        role: Option<String>,
        options: AgentOptions,
    ) -> Result<AgentName, ApiError> {
        self.call(req::CreateAgent {
            name: name.into(),
            role,
            options,
        })
        .await
    }

    pub async fn from_profile(
        &self,
        profile: &str,
        name: &str,
        overrides: AgentOptions,
    ) -> Result<AgentName, ApiError> {
        self.call(req::FromProfile {
            profile: profile.into(),
            name: name.into(),
            overrides,
        })
        .await
    }

    pub async fn agents(&self) -> Result<Vec<AgentName>, ApiError> {
        self.call(req::Agents {}).await
    }

    pub async fn ask(&self, name: &str, prompt: &str) -> Result<TurnResult, ApiError> {
        self.ask_from(name, prompt, "ask").await
    }

    pub async fn ask_from(
        &self,
        name: &str,
        prompt: &str,
        origin: &str,
    ) -> Result<TurnResult, ApiError> {
        self.call(req::Ask {
            name: name.into(),
            prompt: prompt.into(),
            origin: origin.into(),
        })
        .await
    }

    pub async fn cast(&self, name: &str, prompt: &str) -> Result<RequestRef, ApiError> {
        self.cast_from(name, prompt, "cast").await
    }

    pub async fn cast_from(
        &self,
        name: &str,
        prompt: &str,
        origin: &str,
    ) -> Result<RequestRef, ApiError> {
        self.call(req::Cast {
            name: name.into(),
            prompt: prompt.into(),
            origin: origin.into(),
        })
        .await
    }

    pub async fn poll(&self, reference: &str) -> Result<PollState, ApiError> {
        self.call(req::Poll {
            reference: reference.into(),
        })
        .await
    }

    pub async fn await_agent(
        &self,
        name: &str,
        timeout: Option<Duration>,
    ) -> Result<AwaitOutcome, ApiError> {
        let timeout_ms = timeout.map(|t| t.as_millis() as u64);
        self.call_within(
            req::AwaitAgent {
                name: name.into(),
                timeout_ms,
            },
            timeout_ms,
        )
        .await
    }

    pub async fn await_all(
        &self,
        timeout: Option<Duration>,
    ) -> Result<Vec<Result<AwaitOutcome, ApiError>>, ApiError> {
        let timeout_ms = timeout.map(|t| t.as_millis() as u64);
        self.call_within(req::AwaitAll { timeout_ms }, timeout_ms)
            .await
    }

    pub async fn pipe(
        &self,
        from: &str,
        to: &str,
        message: Option<&str>,
    ) -> Result<AgentName, ApiError> {
        self.call(req::Pipe {
            from: from.into(),
            to: to.into(),
            message: message.map(str::to_string),
        })
        .await
    }

    pub async fn fan(
        &self,
        message: &str,
        agents: &[String],
    ) -> Result<Vec<Result<RequestRef, ApiError>>, ApiError> {
        self.call(req::Fan {
            message: message.into(),
            agents: agents.to_vec(),
        })
        .await
    }

    pub async fn interrupt(&self, name: &str) -> Result<(), ApiError> {
        self.call(req::Interrupt { name: name.into() }).await
    }
    pub async fn halt(&self, name: &str) -> Result<(), ApiError> {
        self.call(req::Halt { name: name.into() }).await
    }
    pub async fn resume(&self, name: &str) -> Result<(), ApiError> {
        self.call(req::Resume { name: name.into() }).await
    }
    pub async fn notify(&self, name: &str, event: &str) -> Result<(), ApiError> {
        self.call(req::Notify {
            name: name.into(),
            event: event.into(),
        })
        .await
    }
    pub async fn reset(&self, name: &str) -> Result<(), ApiError> {
        self.call(req::Reset { name: name.into() }).await
    }
    pub async fn dismiss(&self, name: &str) -> Result<(), ApiError> {
        self.call(req::Dismiss { name: name.into() }).await
    }
    pub async fn reset_all(&self) -> Result<(), ApiError> {
        self.call(req::ResetAll {}).await
    }

    // ---------------------------------------------------------------- inspection

    pub async fn status(&self) -> Result<Vec<AgentRow>, ApiError> {
        self.call(req::Status {}).await
    }
    pub async fn info(&self, name: &str) -> Result<AgentInfo, ApiError> {
        self.call(req::Info { name: name.into() }).await
    }
    pub async fn result(&self, name: &str) -> Result<Option<TurnResult>, ApiError> {
        self.call(req::LastResult { name: name.into() }).await
    }
    /// The last `last` turns (all when None); a history too large for one frame is cut to its
    /// most recent turns.
    pub async fn history(
        &self,
        name: &str,
        last: Option<usize>,
    ) -> Result<Vec<TurnResult>, ApiError> {
        Ok(self
            .call(req::History {
                name: name.into(),
                last: last.map(|n| n as u64),
            })
            .await?
            .items)
    }
    pub async fn cost(&self, name: &str) -> Result<f64, ApiError> {
        self.call(req::Cost { name: name.into() }).await
    }
    pub async fn costs(&self) -> Result<Vec<(AgentName, f64)>, ApiError> {
        self.call(req::Costs {}).await
    }
    pub async fn total_cost(&self) -> Result<f64, ApiError> {
        self.call(req::TotalCost {}).await
    }

    // ---------------------------------------------------------------- shared store

    pub async fn put(&self, key: &str, value: serde_json::Value) -> Result<(), ApiError> {
        self.call(req::Put {
            key: key.into(),
            json: value.to_string(),
        })
        .await
    }
    pub async fn get(&self, key: &str) -> Result<Option<serde_json::Value>, ApiError> {
        match self.call(req::Get { key: key.into() }).await? {
            None => Ok(None),
            Some(text) => parse_json(key, &text).map(Some),
        }
    }
    pub async fn store_all(&self) -> Result<Vec<(String, serde_json::Value)>, ApiError> {
        let page = self.call(req::StoreAll {}).await?;
        page.items
            .into_iter()
            .map(|(k, t)| parse_json(&k, &t).map(|v| (k, v)))
            .collect()
    }
    pub async fn store_keys(&self) -> Result<Vec<String>, ApiError> {
        Ok(self
            .store_all()
            .await?
            .into_iter()
            .map(|(k, _)| k)
            .collect())
    }
    pub async fn store_delete(&self, key: &str) -> Result<(), ApiError> {
        self.call(req::StoreDelete { key: key.into() }).await
    }

    // ---------------------------------------------------------------- schedules, budgets

    pub async fn every(&self, agent: &str, prompt: &str, interval_ms: u64) -> Result<(), ApiError> {
        self.call(req::Every {
            agent: agent.into(),
            prompt: prompt.into(),
            interval_ms,
        })
        .await
    }
    pub async fn cancel(&self, agent: &str) -> Result<(), ApiError> {
        self.call(req::CancelSchedule {
            agent: agent.into(),
        })
        .await
    }
    pub async fn schedules(&self) -> Result<Vec<ScheduleInfo>, ApiError> {
        self.call(req::Schedules {}).await
    }
    pub async fn budget(&self) -> Result<BudgetView, ApiError> {
        self.call(req::Budget {}).await
    }
    pub async fn agent_budget(&self, name: &str) -> Result<BudgetView, ApiError> {
        self.call(req::AgentBudget { name: name.into() }).await
    }
    pub async fn reset_budget(&self) -> Result<(), ApiError> {
        self.call(req::ResetBudget {}).await
    }

    // ---------------------------------------------------------------- events

    pub async fn events(&self, last: usize, topic: Option<Topic>) -> Result<Vec<Event>, ApiError> {
        self.call(req::Events {
            last: last as u64,
            topic,
        })
        .await
    }

    /// Events after `after_seq`, waiting up to `wait` for the first.
    pub async fn events_after(
        &self,
        after_seq: u64,
        topic: Option<Topic>,
        wait: Duration,
    ) -> Result<Vec<Event>, ApiError> {
        let wait_ms = wait.as_millis() as u64;
        self.call_within(
            req::EventsAfter {
                after_seq,
                topic,
                wait_ms,
            },
            Some(wait_ms),
        )
        .await
    }

    /// Follow the event log live (from now on). The stream ends when the node goes away or the
    /// receiver is dropped.
    pub async fn watch(&self) -> Result<mpsc::Receiver<Event>, ApiError> {
        let start = self
            .events(1, None)
            .await?
            .last()
            .map(|e| e.seq)
            .unwrap_or(0);
        let (tx, rx) = mpsc::channel(1024);
        let me = self.clone();
        tokio::spawn(async move {
            let mut after = start;
            loop {
                let batch = tokio::select! {
                    b = me.events_after(after, None, Duration::from_secs(30)) => b,
                    _ = tx.closed() => return,
                };
                let Ok(batch) = batch else { return };
                for e in batch {
                    after = after.max(e.seq);
                    if tx.send(e).await.is_err() {
                        return;
                    }
                }
            }
        });
        Ok(rx)
    }

    pub async fn clear_events(&self) -> Result<(), ApiError> {
        self.call(req::ClearEvents {}).await
    }
    pub async fn emit(&self, topic: Topic, line: String) -> Result<(), ApiError> {
        self.call(req::Emit { topic, line }).await
    }

    // ---------------------------------------------------------------- board

    pub async fn work(
        &self,
        id: &str,
        title: &str,
        options: WorkOptions,
    ) -> Result<WorkItem, ApiError> {
        self.call(req::AddWork {
            id: id.into(),
            title: title.into(),
            options,
        })
        .await
    }

    pub async fn board(
        &self,
        status: Option<&str>,
        work_type: Option<&str>,
    ) -> Result<Vec<WorkItem>, ApiError> {
        let status = status.map(crate::work::parse_status).transpose()?;
        Ok(self
            .call(req::Board {
                status,
                work_type: work_type.map(str::to_string),
            })
            .await?
            .items)
    }

    pub async fn work_item(&self, id: &str) -> Result<Option<WorkItem>, ApiError> {
        self.call(req::GetWork { id: id.into() }).await
    }
    /// Piece `index` of the result of a work item completed in parts; None past its last
    /// part.
    pub async fn work_result_part(&self, id: &str, index: u32) -> Result<Option<String>, ApiError> {
        self.call(req::WorkResultPart {
            id: id.into(),
            index,
        })
        .await
    }
    /// The whole result of a work item: its `result`, or, when it was completed in parts, the
    /// item then its parts one request at a time (so every frame stays small however large
    /// the result), put together. None when it has no result; [`ApiError::NoSuchItem`] when
    /// there is no such item.
    pub async fn work_result(&self, id: &str) -> Result<Option<String>, ApiError> {
        let item = self
            .work_item(id)
            .await?
            .ok_or_else(|| ApiError::NoSuchItem(id.trim_start_matches(':').to_string()))?;
        workshop_board::parts::assemble(item, |index| self.work_result_part(id, index)).await
    }
    /// Back up the cluster's board into `dir`, a new (or empty) directory named by an
    /// absolute path on the BOARD NODE's filesystem; see [`req::BoardBackup`].
    pub async fn board_backup(&self, dir: &str) -> Result<BackupInfo, ApiError> {
        self.call(req::BoardBackup { dir: dir.into() }).await
    }
    pub async fn board_counts(&self) -> Result<BTreeMap<Status, u64>, ApiError> {
        self.call(req::BoardCounts {}).await
    }
    pub async fn claim_work(&self, id: &str, agent: &str) -> Result<WorkItem, ApiError> {
        self.claim_work_for(id, agent, None).await
    }
    /// Claim under a lease of `lease_ms` (None: 30 minutes; 1 s to 24 h).
    pub async fn claim_work_for(
        &self,
        id: &str,
        agent: &str,
        lease_ms: Option<u64>,
    ) -> Result<WorkItem, ApiError> {
        self.call(req::ClaimWork {
            id: id.into(),
            agent: agent.into(),
            lease_ms,
        })
        .await
    }
    pub async fn start_work(&self, id: &str) -> Result<WorkItem, ApiError> {
        self.call(req::StartWork { id: id.into() }).await
    }
    /// Settle by hand as done: `by` is the lease token the claim answered, or force (logged;
    /// a board worker holding the item loses it); neither is refused while the item is held.
    pub async fn complete_work(
        &self,
        id: &str,
        result: Option<String>,
        by: Option<SettleBy>,
    ) -> Result<WorkItem, ApiError> {
        self.call(req::CompleteWork {
            id: id.into(),
            result,
            by,
        })
        .await
    }
    /// Settle by hand as failed, no retry; `by` as in [`Client::complete_work`].
    pub async fn fail_work(
        &self,
        id: &str,
        error: Option<String>,
        by: Option<SettleBy>,
    ) -> Result<WorkItem, ApiError> {
        self.call(req::FailWork {
            id: id.into(),
            error,
            by,
        })
        .await
    }
    pub async fn cancel_work(&self, id: &str) -> Result<WorkItem, ApiError> {
        self.call(req::CancelWork { id: id.into() }).await
    }
    pub async fn await_work(
        &self,
        id: &str,
        timeout: Option<Duration>,
    ) -> Result<WorkItem, ApiError> {
        let timeout_ms = timeout.map(|t| t.as_millis() as u64);
        self.call_within(
            req::AwaitWork {
                id: id.into(),
                timeout_ms,
            },
            timeout_ms,
        )
        .await
    }
    pub async fn work_from_result(
        &self,
        agent: &str,
        id: &str,
        options: WorkOptions,
    ) -> Result<WorkItem, ApiError> {
        self.call(req::WorkFromResult {
            agent: agent.into(),
            id: id.into(),
            options,
        })
        .await
    }
    pub async fn board_worker(
        &self,
        name: &str,
        work_type: &str,
        options: WorkerOptions,
    ) -> Result<AgentName, ApiError> {
        self.call(req::BoardWorker {
            name: name.into(),
            work_type: work_type.into(),
            options,
        })
        .await
    }
    pub async fn workers(&self) -> Result<Vec<WorkerInfo>, ApiError> {
        self.call(req::Workers {}).await
    }

    // ---------------------------------------------------------------- workflows

    pub async fn workflow(&self, workflow: Workflow) -> Result<(), ApiError> {
        self.call(req::DefineWorkflow { workflow }).await
    }
    pub async fn workflows(&self) -> Result<Vec<Workflow>, ApiError> {
        self.call(req::Workflows {}).await
    }
    pub async fn run_workflow(&self, name: &str) -> Result<Vec<WorkItem>, ApiError> {
        self.call(req::RunWorkflow { name: name.into() }).await
    }
    pub async fn workflow_status(
        &self,
        name: &str,
    ) -> Result<(RunStatus, Vec<(String, Option<WorkItem>)>), ApiError> {
        let run = self.call(req::WorkflowStatus { name: name.into() }).await?;
        Ok((run.status, run.stages))
    }
    pub async fn await_workflow(
        &self,
        name: &str,
        timeout: Option<Duration>,
    ) -> Result<RunStatus, ApiError> {
        let timeout_ms = timeout.map(|t| t.as_millis() as u64);
        self.call_within(
            req::AwaitWorkflow {
                name: name.into(),
                timeout_ms,
            },
            timeout_ms,
        )
        .await
    }
    pub async fn reset_workflow(&self, name: &str) -> Result<(), ApiError> {
        self.call(req::ResetWorkflow { name: name.into() }).await
    }
}

fn parse_json(key: &str, text: &str) -> Result<serde_json::Value, ApiError> {
    serde_json::from_str(text)
        .map_err(|e| ApiError::Node(format!("the store value of {key:?} is not JSON: {e}")))
}
