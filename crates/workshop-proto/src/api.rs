//! The API as plain data: one request struct per operation, each naming its reply type, and
//! the data types replies carry. [`crate::node`] carries them to a node actor; `Client` (in
//! `workshop-node`) sends them; the node actor answers them. In-process and remote callers go
//! through exactly the same encoding, so they behave the same.
//!
//! Wire compatibility: request and reply types are encoded by field position (bincode), and the
//! [`Request`] enum by variant position; new operations go at the end of the `requests!` list,
//! and [`PROTOCOL_VERSION`] is bumped on any other change. The golden files in
//! `tests/golden/` make every change to the encoding show in review.

use std::collections::BTreeMap;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use workshop_types::board::{SettleBy, Status as ItemStatus, WorkItem};
use workshop_types::{
    AgentInfo, AgentName, AgentOptions, AgentRow, AgentStatus, Event, PollState, RequestRef, Topic,
    TurnError, TurnResult,
};
use workshop_workflow::{RunStatus, Workflow};

use crate::ApiError;

/// Bumped when a request, a reply or [`ApiError`] changes incompatibly.
pub const PROTOCOL_VERSION: u32 = 5;

/// A set of operations one actor answers (the node's [`Request`], the board's
/// [`crate::board::BoardRequest`]): an enum with one variant per request struct.
pub trait RequestSet:
    Serialize + DeserializeOwned + Clone + std::fmt::Debug + Send + 'static
{
    /// The operation's name (for logs and errors).
    fn name(&self) -> &'static str;
    /// Whether the operation waits for something open-ended.
    fn waits(&self) -> bool;
}

/// An operation: its request type names the reply type and the set it belongs to.
pub trait Call: Sized + Send + 'static {
    type Reply: Serialize + DeserializeOwned + Send + 'static;
    /// The enum that carries this request on the wire.
    type Set: RequestSet + From<Self>;
    /// This request as its set's variant.
    fn into_set(self) -> Self::Set {
        Self::Set::from(self)
    }
    /// Whether the call waits for something open-ended (a turn, an item, an agent): such calls
    /// get the client's long timeout instead of the short one.
    const WAITS: bool = false;
}

/// Declares a set of operations: `requests! { enum Name in mod module; Op { field: T } -> Reply; ... }`
/// makes one struct per operation in `module` (each a [`Call`] naming its reply), and the enum
/// `Name` with one variant per operation, in order (variants are encoded by position: new
/// operations go at the end).
macro_rules! requests {
    (
        $(#[$em:meta])*
        enum $set:ident in mod $module:ident;
        $(
            $(#[$m:meta])*
            $name:ident { $($(#[$fm:meta])* $field:ident : $ty:ty),* $(,)? } -> $reply:ty $(, waits = $waits:literal)?;
        )*
    ) => {
        /// One struct per operation (the request), in the order of the set's variants.
        pub mod $module {
            #[allow(unused_imports)]
            use super::*;
            $(
                $(#[$m])*
                #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
                pub struct $name { $($(#[$fm])* pub $field: $ty),* }
                impl $crate::api::Call for $name {
                    type Reply = $reply;
                    type Set = $set;
                    $(const WAITS: bool = $waits;)?
                }
                impl From<$name> for $set {
                    fn from(r: $name) -> $set { $set::$name(r) }
                }
            )*
        }

        $(#[$em])*
        #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
        pub enum $set { $($name($module::$name)),* }

        impl $set {
            /// The operation's name (for logs and errors).
            pub fn name(&self) -> &'static str {
                match self { $($set::$name(_) => stringify!($name)),* }
            }
            /// Whether the operation waits for something open-ended.
            pub fn waits(&self) -> bool {
                match self { $($set::$name(_) => <$module::$name as $crate::api::Call>::WAITS),* }
            }
        }

        impl $crate::api::RequestSet for $set {
            fn name(&self) -> &'static str {
                $set::name(self)
            }
            fn waits(&self) -> bool {
                $set::waits(self)
            }
        }
    };
}
pub(crate) use requests;

requests! {
    /// Every operation a node answers.
    enum Request in mod req;

    /// Say hello: versions are compared, and the node says who it is.
    Hello { client_version: String, protocol: u32 } -> NodeHello;

    // ------------------------------------------------------------ configuration
    Configure { context: Option<String>, options: AgentOptions, max_cost_usd: Option<f64> } -> ();
    Config {} -> GlobalConfig;
    DefineProfile { name: String, role: Option<String>, options: AgentOptions } -> ();
    Profiles {} -> Vec<Profile>;

    // ------------------------------------------------------------ agents
    /// Waits: creating (or replacing) an agent starts and stops backend processes, and
    /// creations of one name run one after another.
    CreateAgent { name: String, role: Option<String>, options: AgentOptions } -> AgentName, waits = true;
    FromProfile { profile: String, name: String, overrides: AgentOptions } -> AgentName, waits = true;
    Agents {} -> Vec<AgentName>;
    Ask { name: String, prompt: String, origin: String } -> TurnResult, waits = true;
    Cast { name: String, prompt: String, origin: String } -> RequestRef;
    Poll { reference: String } -> PollState;
    AwaitAgent { name: String, timeout_ms: Option<u64> } -> AwaitOutcome, waits = true;
    AwaitAll { timeout_ms: Option<u64> } -> Vec<Result<AwaitOutcome, ApiError>>, waits = true;
    Pipe { from: String, to: String, message: Option<String> } -> AgentName, waits = true;
    Fan { message: String, agents: Vec<String> } -> Vec<Result<RequestRef, ApiError>>;
    Interrupt { name: String } -> ();
    Halt { name: String } -> ();
    Resume { name: String } -> ();
    Notify { name: String, event: String } -> ();
    Reset { name: String } -> (), waits = true;
    Dismiss { name: String } -> (), waits = true;
    ResetAll {} -> (), waits = true;

    // ------------------------------------------------------------ inspection
    Status {} -> Vec<AgentRow>;
    Info { name: String } -> AgentInfo;
    LastResult { name: String } -> Option<TurnResult>;
    /// The last `last` turns (all when None), cut to fit one frame (`truncated` says so).
    History { name: String, last: Option<u64> } -> Page<TurnResult>;
    Cost { name: String } -> f64;
    Costs {} -> Vec<(AgentName, f64)>;
    TotalCost {} -> f64;

    // ------------------------------------------------------------ shared store (JSON text)
    Put { key: String, json: String } -> ();
    Get { key: String } -> Option<String>;
    StoreAll {} -> Page<(String, String)>;
    StoreDelete { key: String } -> ();

    // ------------------------------------------------------------ schedules and budgets
    Every { agent: String, prompt: String, interval_ms: u64 } -> ();
    CancelSchedule { agent: String } -> ();
    Schedules {} -> Vec<ScheduleInfo>;
    Budget {} -> BudgetView;
    AgentBudget { name: String } -> BudgetView;
    ResetBudget {} -> ();

    // ------------------------------------------------------------ events
    Events { last: u64, topic: Option<Topic> } -> Vec<Event>;
    /// Events after `after_seq`; waits up to `wait_ms` for the first one (a long poll, so a
    /// remote `watch` follows the log without a polling loop).
    EventsAfter { after_seq: u64, topic: Option<Topic>, wait_ms: u64 } -> Vec<Event>, waits = true;
    ClearEvents {} -> ();
    Emit { topic: Topic, line: String } -> ();

    // ------------------------------------------------------------ board
    AddWork { id: String, title: String, options: WorkOptions } -> WorkItem;
    /// Items (filtered), cut to fit one frame (`truncated` says so).
    Board { status: Option<ItemStatus>, work_type: Option<String> } -> Page<WorkItem>;
    GetWork { id: String } -> Option<WorkItem>;
    BoardCounts {} -> BTreeMap<ItemStatus, u64>;
    /// Claim by hand under a lease of `lease_ms` (None: 30 minutes; 1 s to 24 h).
    ClaimWork { id: String, agent: String, lease_ms: Option<u64> } -> WorkItem;
    StartWork { id: String } -> WorkItem;
    /// Settle by hand: `by` is the lease token the claim answered, or force (logged; a board
    /// worker holding the item loses it); neither is refused while the item is held.
    CompleteWork { id: String, result: Option<String>, by: Option<SettleBy> } -> WorkItem;
    FailWork { id: String, error: Option<String>, by: Option<SettleBy> } -> WorkItem;
    CancelWork { id: String } -> WorkItem;
    AwaitWork { id: String, timeout_ms: Option<u64> } -> WorkItem, waits = true;
    WorkFromResult { agent: String, id: String, options: WorkOptions } -> WorkItem;
    BoardWorker { name: String, work_type: String, options: WorkerOptions } -> AgentName, waits = true;
    Workers {} -> Vec<WorkerInfo>;

    // ------------------------------------------------------------ workflows
    DefineWorkflow { workflow: Workflow } -> ();
    Workflows {} -> Vec<Workflow>;
    RunWorkflow { name: String } -> Vec<WorkItem>;
    WorkflowStatus { name: String } -> WorkflowRun;
    AwaitWorkflow { name: String, timeout_ms: Option<u64> } -> RunStatus, waits = true;
    ResetWorkflow { name: String } -> ();

    // ------------------------------------------------------------ the node
    NodeInfo {} -> NodeHello;
    /// Stop the node gracefully (as SIGTERM does).
    StopNode {} -> ();

    // ------------------------------------------------------------ the cluster
    /// Answered by this node alone: no forwarding to the node that holds an agent, no fan-out
    /// to the other nodes. The reply is the inner request's reply (what nodes send each other).
    Local { request: Box<Request> } -> (), waits = true;
    /// Every node of the cluster this node knows of (itself first), up or down.
    Nodes {} -> Vec<NodeStatus>;
    /// Every agent of the cluster with the node it lives on (unreachable nodes are listed with
    /// their error).
    ClusterStatus {} -> Vec<NodeAgents>;
    /// The last `last` events of every node, oldest first, each with its node's name.
    ClusterEvents { last: u64, topic: Option<Topic> } -> Vec<NodeEvent>;
    /// Events of every node after the given per-node cursors (a node not named: from now);
    /// waits up to `wait_ms` for the first one. The cluster-wide form of `EventsAfter`.
    ClusterEventsAfter { after: BTreeMap<String, u64>, topic: Option<Topic>, wait_ms: u64 } -> Vec<NodeEvent>, waits = true;
    /// Create (or replace) an agent on the named node.
    PlaceAgent { node: String, name: String, role: Option<String>, options: AgentOptions } -> AgentName, waits = true;
    /// A node says it is leaving the cluster (a graceful stop): its peers stop expecting it.
    Leaving { node: String } -> ();
    /// On the board node: reserve an agent name for `node` (durably). Answers the node that
    /// held it before, if another one did.
    ClaimName { name: String, node: String } -> Option<String>;
    /// On the board node: give up `node`'s reservation of `name` (no-op if another holds it).
    ReleaseName { name: String, node: String } -> ();
    /// On the board node: who holds each agent name.
    NameTable {} -> Vec<(String, String)>;
    /// On the board node: record a turn's cost in the cluster's ledger; answers the total.
    Spend { node: String, usd: f64 } -> f64;
    /// From the board node: the cluster's total spend (after a node recorded its spend).
    LedgerTotal { total: f64 } -> ();

    // ------------------------------------------------------------ board (continued)
    /// Piece `index` of the result of a work item completed in parts (see `GetWork`'s
    /// `result_parts`); None past its last part. A client reads a large result one piece at a
    /// time, so every frame stays small.
    WorkResultPart { id: String, index: u32 } -> Option<String>;
    /// Back up the cluster's board into a NEW directory `dir` (see the board's `Backup`): an
    /// absolute path on the filesystem of the BOARD NODE (which may not be the node asked), that
    /// does not exist or is empty. Restore by putting it in place of the board node's
    /// `<data>/board` while that node is stopped.
    BoardBackup { dir: String } -> crate::board::BackupInfo, waits = true;
}

/// A node as `nodes()` shows it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NodeStatus {
    pub name: String,
    /// Where other nodes reach it (None: not known yet).
    pub addr: Option<String>,
    pub up: bool,
    /// This is the node that answered.
    pub this: bool,
    /// It holds the cluster's board.
    pub board: bool,
    pub started_at_ms: Option<u64>,
    pub agents: u64,
    pub workers: u64,
    /// When it last answered (ms since the epoch).
    pub last_seen_ms: Option<u64>,
    pub version: Option<String>,
}

/// One node's agents in `cluster_status()`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NodeAgents {
    pub node: String,
    pub rows: Vec<AgentRow>,
    /// Why the node's agents are missing (it is down, it did not answer).
    pub error: Option<String>,
}

/// An event with the node it happened on.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NodeEvent {
    pub node: String,
    pub event: Event,
}

/// Who a node is (the reply to `Hello` and `NodeInfo`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NodeHello {
    pub name: String,
    pub version: String,
    pub protocol: u32,
    pub pid: u32,
    /// Where the node keeps its state (None: ephemeral).
    pub data_dir: Option<String>,
    /// The address its cluster port listens on (None: not listening).
    pub addr: Option<String>,
    pub started_at_ms: u64,
    pub agents: u64,
    pub workers: u64,
}

/// A list cut to fit one frame: `truncated` items were left off (ask for fewer).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub truncated: u64,
}

impl<T: Serialize> Page<T> {
    /// Keep as many items as fit in `budget` encoded bytes: the first ones, or the last ones
    /// with `keep_last`; `truncated` counts the rest.
    pub fn fit(mut items: Vec<T>, keep_last: bool, budget: usize) -> Page<T> {
        let mut total = 0usize;
        let mut fit = 0usize;
        let size = |it: &T| crate::encode(it).map(|b| b.len()).unwrap_or(usize::MAX);
        let sizes: Box<dyn Iterator<Item = usize> + '_> = if keep_last {
            Box::new(items.iter().rev().map(size))
        } else {
            Box::new(items.iter().map(size))
        };
        for n in sizes {
            if total.saturating_add(n) > budget {
                break;
            }
            total += n;
            fit += 1;
        }
        let truncated = (items.len() - fit) as u64;
        if keep_last {
            items.drain(..items.len() - fit);
        } else {
            items.truncate(fit);
        }
        Page { items, truncated }
    }
}

/// Global defaults from `configure`: they apply to agents created afterwards only.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct GlobalConfig {
    pub context: Option<String>,
    pub defaults: AgentOptions,
    /// Global budget in USD, checked before every send.
    pub max_cost_usd: Option<f64>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Profile {
    pub name: String,
    pub role: Option<String>,
    pub options: AgentOptions,
}

/// What `await` found.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AwaitOutcome {
    pub agent: AgentName,
    pub was_idle: bool,
    pub status: AgentStatus,
    pub last: Option<Result<TurnResult, TurnError>>,
}

/// What `budget()` / `budget(name)` show.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BudgetView {
    pub limit: Option<f64>,
    pub spent: f64,
}

impl BudgetView {
    pub fn remaining(&self) -> Option<f64> {
        self.limit.map(|l| (l - self.spent).max(0.0))
    }
}

/// A schedule as defined (and persisted).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ScheduleSpec {
    pub agent: AgentName,
    pub prompt: String,
    pub interval_ms: u64,
}

/// A schedule as `schedules()` shows it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ScheduleInfo {
    pub spec: ScheduleSpec,
    pub run_count: u64,
    pub skipped: u64,
    pub last_run_at_ms: Option<u64>,
    /// Restarts after crashes (under the node's restart budget).
    pub restarts: u32,
    /// Set when it crashed more often than the restart budget allows: the last reason. It
    /// does not run until `every(..)` starts it again.
    pub crashed: Option<String>,
}

/// Options of `work(id, title, ...)`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WorkOptions {
    #[serde(rename = "type")]
    pub work_type: Option<String>,
    pub spec: Option<String>,
    pub priority: Option<u8>,
    pub depends_on: Vec<String>,
    pub max_attempts: Option<u32>,
    pub title: Option<String>,
    pub metadata: BTreeMap<String, String>,
}

/// Options of `board_worker(name, type, ...)`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct WorkerOptions {
    /// A profile the worker's agent is made from (`options` override it).
    pub profile: Option<String>,
    pub options: AgentOptions,
    pub interval_ms: Option<u64>,
    pub worktree: bool,
    /// The lease each claim is made under (renewed by heartbeat every third of it); a worker
    /// whose node dies loses its item when the lease runs out. Default 60 s.
    pub lease_ms: Option<u64>,
}

/// What `workers()` shows.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WorkerInfo {
    pub name: AgentName,
    pub work_type: String,
    pub interval_ms: u64,
    pub worktree: bool,
    pub completed: u64,
    pub failed: u64,
    pub current_item: Option<String>,
    /// Restarts after crashes (under the node's restart budget).
    pub restarts: u32,
    /// Set when it crashed more often than the restart budget allows: the last reason. It
    /// does not run until `board_worker(..)` starts it again.
    pub crashed: Option<String>,
}

/// A workflow run: its status and each stage's item (None before the first run).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WorkflowRun {
    pub status: RunStatus,
    pub stages: Vec<(String, Option<WorkItem>)>,
}
