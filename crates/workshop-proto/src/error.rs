//! `ApiError`: every error the API returns, in-process and over the wire alike. It is plain data
//! (serde), so a remote caller gets the same typed error a local one does; `code()` is the
//! stable name scripts and `--json` output match on.

use serde::{Deserialize, Serialize};
use workshop_types::board::{SettleKind, Status as ItemStatus};
use workshop_types::{AgentName, NameError, OptionError, TurnError};

/// Every error the Workshop API returns. Each message names the problem and what to do.
///
/// Wire compatibility: variants are encoded by position, so new variants go at the end.
#[derive(Debug, Clone, PartialEq, thiserror::Error, Serialize, Deserialize)]
pub enum ApiError {
    #[error("no agent named {0}; agents() lists them, agent(\"{0}\", ...) creates one")]
    UnknownAgent(String),
    #[error(transparent)]
    InvalidName(#[from] NameError),
    #[error(transparent)]
    InvalidOption(#[from] OptionError),
    #[error(
        "no profile named {0}; profiles() lists them, profile(\"{0}\", role, opts) defines one"
    )]
    UnknownProfile(String),
    #[error("{agent}'s queue is full ({depth}). Use await(\"{agent}\") first")]
    QueueFull { agent: AgentName, depth: u32 },
    #[error("{0} is halted: ask would never return; resume(\"{0}\") first, or cast to queue")]
    Halted(AgentName),
    #[error("{agent}: {error}")]
    Turn { agent: AgentName, error: TurnError },
    #[error("{0} has no result yet; ask or cast to it first")]
    NoResult(AgentName),
    #[error("{agent} is still working after {ms} ms; await again or interrupt(\"{agent}\")")]
    AwaitTimeout { agent: AgentName, ms: u64 },
    #[error("budget_exceeded: {0}")]
    BudgetExceeded(String),
    #[error("{0} crashed; reset(\"{0}\") or agent(\"{0}\", ...) starts it again")]
    Crashed(AgentName),
    #[error("{agent} is not reachable: {why}")]
    Unreachable { agent: AgentName, why: String },
    #[error("invalid request ref {0:?}: expected <agent>#<n>, as cast returns")]
    BadRef(String),
    #[error("{0}")]
    Node(String),
    /// A board or workflow error (the board's own message names the item and what to do).
    #[error("{0}")]
    Board(String),
    /// A call got no answer in time (the node may still be working on it).
    #[error("{what} got no answer within {ms} ms; the node may be overloaded or stopping")]
    Timeout { what: String, ms: u64 },
    /// Nothing answers at the address (or it is not a workshop node).
    #[error("no node at {addr} ({hint})")]
    NoNode { addr: String, hint: String },
    /// The node refused or lost the connection (wrong cookie, node stopped).
    #[error("{0}")]
    Disconnected(String),
    /// Client and node speak different protocol versions.
    #[error("this workshop is {client} (protocol {client_protocol}) but the node is {node} (protocol {node_protocol}); run the same version on both")]
    Version {
        client: String,
        client_protocol: u32,
        node: String,
        node_protocol: u32,
    },
    /// A request or reply would not fit in one frame.
    #[error("{what} is {bytes} bytes; the limit is {limit} bytes: {hint}")]
    TooLarge {
        what: String,
        bytes: usize,
        limit: usize,
        hint: String,
    },
    /// The node could not decode or does not know the request.
    #[error("bad request: {0}")]
    BadRequest(String),
    /// A lease holder presented a fencing token that is not the item's current one: the lease
    /// expired or the item was re-claimed, so the holder has lost the item.
    #[error(
        "stale fencing token {presented} for work item `{id}` (it is {status}, {}); the lease \
         expired or the item was re-claimed, so stop working on it",
        match current { Some(t) => format!("current token {t}"), None => "no lease".to_string() }
    )]
    StaleToken {
        id: String,
        presented: u64,
        current: Option<u64>,
        status: ItemStatus,
    },
    /// No work item with this id on the board.
    #[error("no work item `{0}` on the board; check the id with board()")]
    NoSuchItem(String),
    /// The lease holder already settled the item the other way with this token.
    #[error(
        "work item `{id}` was already {settled} with fencing token {token}, so it cannot also be \
         {attempted}; check its status with work_item(id)"
    )]
    AlreadySettled {
        id: String,
        token: u64,
        settled: SettleKind,
        attempted: SettleKind,
    },
    /// No agent of that name, but one whose name is close (code `unknown_agent` too).
    #[error("no agent named {name}; did you mean {like}? agents() lists them")]
    UnknownAgentLike { name: String, like: String },
    /// Settling by hand an item someone holds, with neither its lease token nor force.
    #[error(
        "work item `{id}` is {status}, held by {holder}: settle it with the lease token its claim \
         answered (a console that claimed it uses its own; else #{{token: N}}), or take it with \
         #{{force: true}} (logged; a board worker holding it loses it and its turn is interrupted)"
    )]
    Held {
        id: String,
        status: ItemStatus,
        holder: String,
    },
}

impl ApiError {
    /// A stable, machine-readable code (used by `--json` output and scripts).
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::UnknownAgent(_) | ApiError::UnknownAgentLike { .. } => "unknown_agent",
            ApiError::InvalidName(_) => "invalid_name",
            ApiError::InvalidOption(_) => "invalid_option",
            ApiError::UnknownProfile(_) => "unknown_profile",
            ApiError::QueueFull { .. } => "queue_full",
            ApiError::Halted(_) => "halted",
            ApiError::Turn { .. } => "turn_failed",
            ApiError::NoResult(_) => "no_result",
            ApiError::AwaitTimeout { .. } => "await_timeout",
            ApiError::BudgetExceeded(_) => "budget_exceeded",
            ApiError::Crashed(_) => "crashed",
            ApiError::Unreachable { .. } => "unreachable",
            ApiError::BadRef(_) => "bad_ref",
            ApiError::Node(_) => "node",
            ApiError::Board(_) => "board",
            ApiError::Timeout { .. } => "timeout",
            ApiError::NoNode { .. } => "no_node",
            ApiError::Disconnected(_) => "disconnected",
            ApiError::Version { .. } => "version_mismatch",
            ApiError::TooLarge { .. } => "too_large",
            ApiError::BadRequest(_) => "bad_request",
            ApiError::StaleToken { .. } => "stale_token",
            ApiError::NoSuchItem(_) => "no_such_item",
            ApiError::AlreadySettled { .. } => "already_settled",
            ApiError::Held { .. } => "held",
        }
    }
}
