//! Passive domain types shared by every workshop crate: agent names and options, turn results
//! and errors, agent status and events. No tokio, no ractor, no I/O (the restate-types rule):
//! anything here can be built in a unit test and encoded with the one codec in `workshop-proto`.

mod agent;
pub mod board;
pub mod compat;
mod event;
mod name;
pub mod numbers;
mod options;
mod turn;

pub use agent::{AgentInfo, AgentRow, AgentSpec, AgentStatus, RequestRef};
pub use event::{Event, Topic};
pub use name::{closest, AgentName, NameError};
pub use options::{AgentOptions, AgentOptionsV1, Effort, OptionError, PermissionMode, ScriptStep};
pub use turn::{PollState, TurnError, TurnResult, Usage};

/// The node's clock: milliseconds since the Unix epoch. One is chosen at node start (the system
/// clock, or in tests one that follows tokio's paused time) and passed to the board, schedules,
/// workers, the event log and the supervisors, so nothing reads the wall clock behind its back.
pub type Clock = std::sync::Arc<dyn Fn() -> u64 + Send + Sync>;

/// The wall clock as a [`Clock`].
pub fn system_clock() -> Clock {
    std::sync::Arc::new(now_ms)
}

/// Milliseconds since the Unix epoch: the system clock (what [`system_clock`] reads).
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
