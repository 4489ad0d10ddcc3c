//! Passive domain types shared by every workshop crate: agent names and options, turn results
//! and errors, agent status and events. No tokio, no ractor, no I/O (the restate-types rule):
//! anything here can be built in a unit test and encoded with the one codec in `workshop-proto`.

mod agent;
pub mod board;
mod event;
mod name;
mod options;
mod turn;

pub use agent::{AgentInfo, AgentRow, AgentSpec, AgentStatus, RequestRef};
pub use event::{Event, Topic};
pub use name::{AgentName, NameError};
pub use options::{AgentOptions, Effort, OptionError, PermissionMode, ScriptStep};
pub use turn::{PollState, TurnError, TurnResult, Usage};

/// Milliseconds since the Unix epoch; the one clock read outside pure code.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
