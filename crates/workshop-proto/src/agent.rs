//! Messages of the agent actor. Requests and replies are plain data encoded by the codec, so an
//! agent answers the same way whether its caller is on this node or another.

use ractor::RpcReplyPort;
use ractor_cluster_derive::RactorClusterMessage;
use serde::{Deserialize, Serialize};
use workshop_types::{AgentInfo, AgentStatus, PollState, TurnError, TurnResult};

/// A prompt sent with `ask` or `cast`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Prompt {
    pub text: String,
    /// `ask`, `cast`, `pipe`, `board`, `schedule`... shown in events.
    pub origin: String,
}

/// Why the agent refused a request before running it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Refusal {
    /// The bounded mailbox is full (depth given).
    QueueFull(u32),
    /// `ask` on a halted agent would never return: `resume` it first (or `cast`, which queues).
    Halted,
    /// The node refused to admit the turn: a budget is spent (the reason says which).
    Budget(String),
}

/// The reply to `ask`: the turn's result, a turn error, or a refusal.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum AskReply {
    Done(TurnResult),
    Failed(TurnError),
    Refused(Refusal),
}

/// The reply to `cast`: the request's sequence number, or a refusal.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum CastReply {
    Queued(u64),
    Refused(Refusal),
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PollReply(pub PollState);

/// The reply to `await`: whether the agent was already idle, and its last outcome.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AwaitReply {
    pub was_idle: bool,
    pub status: AgentStatus,
    pub last: Option<Result<TurnResult, TurnError>>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InfoReply(pub AgentInfo);

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HistoryReply(pub Vec<TurnResult>);

/// A turn's outcome, sent by the agent's own turn task back to the agent (internal).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TurnDone {
    pub turn: u64,
    pub outcome: Result<TurnResult, TurnError>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Ack(pub bool);

crate::bytes_convertable!(
    Prompt,
    AskReply,
    CastReply,
    PollReply,
    AwaitReply,
    InfoReply,
    HistoryReply,
    TurnDone,
    Ack
);

/// The agent actor's mailbox.
#[derive(RactorClusterMessage)]
pub enum AgentMsg {
    /// Run a prompt and reply when its turn ends (queued behind the turn in flight).
    #[rpc]
    Ask(Prompt, RpcReplyPort<AskReply>),
    /// Queue a prompt and reply at once with its request ref.
    #[rpc]
    Cast(Prompt, RpcReplyPort<CastReply>),
    /// The state of a cast request by sequence number.
    #[rpc]
    Poll(u64, RpcReplyPort<PollReply>),
    /// Reply once no turn is in flight and the queue is empty (or the agent is halted).
    #[rpc]
    Await(RpcReplyPort<AwaitReply>),
    #[rpc]
    Info(RpcReplyPort<InfoReply>),
    #[rpc]
    History(RpcReplyPort<HistoryReply>),
    /// Kill the turn in flight (its caller gets `interrupted`); the queue keeps draining.
    Interrupt,
    /// Freeze the queue (after the turn in flight, if any).
    Halt,
    /// Thaw the queue.
    Resume,
    /// An event for the behaviour's `handle_event`, deferred while a turn runs.
    Notify(String),
    /// Fresh session, same config, zero cost; queued requests are cancelled.
    #[rpc]
    Reset(RpcReplyPort<Ack>),
    /// Stop the session gracefully (used by `dismiss` before the actor stops).
    #[rpc]
    Shutdown(String, RpcReplyPort<Ack>),
    /// Internal: the turn finished (result, error, crash or the watchdog's timeout).
    TurnDone(TurnDone),
}
