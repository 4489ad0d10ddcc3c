use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// Token usage of a turn (all models together, or one model in `model_usage`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Usage {
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cache_creation_input_tokens: u64,
    pub cache_read_input_tokens: u64,
}

/// One prompt in, one result out.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TurnResult {
    pub text: String,
    pub session_id: Option<String>,
    /// Cost of this turn alone (for `claude`: the delta of the cumulative `total_cost_usd`).
    pub cost_usd: f64,
    pub duration_ms: u64,
    pub num_turns: u32,
    pub usage: Usage,
    pub model_usage: BTreeMap<String, Usage>,
    pub permission_denials: Vec<String>,
    pub is_error: bool,
    pub subtype: Option<String>,
    pub terminal_reason: Option<String>,
    /// The prompt that produced this result (kept for `history`).
    pub prompt: String,
}

/// Why a turn did not produce a result. Every variant names the problem and what to do.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum TurnError {
    /// `interrupt` killed the turn; the agent keeps draining its queue.
    Interrupted,
    /// The per-turn watchdog fired after this many milliseconds.
    Timeout(u64),
    /// The backend reported an error (CLI crash, API error, `is_error: true`, ...).
    Backend(String),
    /// The turn's task crashed; the session was restarted.
    Crashed(String),
    /// The agent or the global budget is spent.
    BudgetExceeded(String),
    /// The behaviour's `pre_turn` skipped this prompt.
    Skipped,
    /// The agent was dismissed, reset or replaced while the request waited.
    Cancelled(String),
}

impl fmt::Display for TurnError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TurnError::Interrupted => f.write_str("interrupted"),
            TurnError::Timeout(ms) => write!(f, "timeout: no result within {ms} ms (watchdog)"),
            TurnError::Backend(m) => write!(f, "backend error: {m}"),
            TurnError::Crashed(m) => write!(f, "turn crashed: {m}"),
            TurnError::BudgetExceeded(m) => write!(f, "budget_exceeded: {m}"),
            TurnError::Skipped => f.write_str("skipped by the agent's pre_turn hook"),
            TurnError::Cancelled(m) => write!(f, "cancelled: {m}"),
        }
    }
}

/// What `poll(ref)` finds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum PollState {
    Pending,
    Completed(TurnResult),
    Failed(TurnError),
    NotFound,
}
