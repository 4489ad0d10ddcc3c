use serde::{Deserialize, Serialize};
use std::fmt;

use crate::{AgentName, TurnResult};

/// Where an agent is in its life. `Working` carries how many requests wait behind the turn.
/// Spelled as its `Display` everywhere, JSON included (`idle`, `working`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AgentStatus {
    Idle,
    Working,
    /// Frozen by `halt` (or a behaviour's halt): queued requests wait for `resume`.
    Halted,
    /// The actor died unexpectedly; it is never restarted silently. `agent(name, ..)` replaces it.
    Crashed,
}

impl fmt::Display for AgentStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AgentStatus::Idle => "idle",
            AgentStatus::Working => "working",
            AgentStatus::Halted => "halted",
            AgentStatus::Crashed => "crashed",
        })
    }
}

/// The handle `cast` returns: `<agent>#<n>`, unique per agent incarnation.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RequestRef {
    pub agent: AgentName,
    pub seq: u64,
}

impl fmt::Display for RequestRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}#{}", self.agent, self.seq)
    }
}

impl RequestRef {
    /// Parse `impl#3` back into a ref.
    pub fn parse(s: &str) -> Option<Self> {
        let (name, seq) = s.rsplit_once('#')?;
        Some(Self {
            agent: AgentName::new(name).ok()?,
            seq: seq.parse().ok()?,
        })
    }
}

/// One row of the `status()` table.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AgentRow {
    pub name: AgentName,
    pub status: AgentStatus,
    /// The prompt of the turn in flight (first line), if any.
    pub task: Option<String>,
    pub queued: u32,
    pub cost_usd: f64,
    pub turns: u32,
    /// The backend session to resume after a restart.
    pub session_id: Option<String>,
}

/// `info(name)`: everything a user wants to know about one agent.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AgentInfo {
    pub name: AgentName,
    pub status: AgentStatus,
    pub backend: String,
    pub model: Option<String>,
    pub session_id: Option<String>,
    pub role: Option<String>,
    pub system_prompt: Option<String>,
    pub permission_mode: String,
    pub max_turns: Option<u32>,
    pub allowed_tools: Vec<String>,
    pub cost_usd: f64,
    pub turns: u32,
    pub queue_depth: u32,
    pub queue_capacity: u32,
    pub task: Option<String>,
    pub last_result: Option<TurnResult>,
}

/// Everything needed to (re)start an agent: its name, role, effective system prompt and
/// options, and the backend session to resume, if any.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AgentSpec {
    pub name: AgentName,
    pub role: Option<String>,
    /// Effective system prompt: `context + "\n\n" + role` (empty parts dropped), unless
    /// `options.system_prompt` replaces it.
    pub system_prompt: Option<String>,
    pub options: crate::AgentOptions,
    pub resume_session: Option<String>,
}

impl AgentSpec {
    /// Compose the effective system prompt as AgentWorkshop does.
    pub fn compose_system_prompt(context: Option<&str>, role: Option<&str>) -> Option<String> {
        let parts: Vec<&str> = [context, role]
            .into_iter()
            .flatten()
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect();
        (!parts.is_empty()).then(|| parts.join("\n\n"))
    }
}
