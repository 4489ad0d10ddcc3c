use workshop_types::{AgentName, NameError, OptionError, TurnError};

/// Every error the Workshop API returns. Each message names the problem and what to do.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
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
}
