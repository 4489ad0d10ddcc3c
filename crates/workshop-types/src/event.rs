use serde::{Deserialize, Serialize};
use std::fmt;

/// Event topics, as AgentWorkshop's PubSub topics.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Topic {
    Agent,
    Turn,
    Work,
    Workflow,
    Schedule,
    Store,
    Budget,
    Node,
    Custom,
}

impl Topic {
    pub fn as_str(self) -> &'static str {
        match self {
            Topic::Agent => "agent",
            Topic::Turn => "turn",
            Topic::Work => "work",
            Topic::Workflow => "workflow",
            Topic::Schedule => "schedule",
            Topic::Store => "store",
            Topic::Budget => "budget",
            Topic::Node => "node",
            Topic::Custom => "custom",
        }
    }
    pub fn parse(s: &str) -> Option<Topic> {
        Some(match s.trim_start_matches(':') {
            "agent" => Topic::Agent,
            "turn" => Topic::Turn,
            "work" => Topic::Work,
            "workflow" => Topic::Workflow,
            "schedule" => Topic::Schedule,
            "store" => Topic::Store,
            "budget" => Topic::Budget,
            "node" => Topic::Node,
            "custom" => Topic::Custom,
            _ => return None,
        })
    }
}

/// A typed record of something that happened. `line` is the formatted text AgentWorkshop prints
/// (`[agent] impl created`, `[ask] impl complete ($0.04) — ...`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub seq: u64,
    pub at_ms: u64,
    pub topic: Topic,
    /// Short machine name: `created`, `ask_complete`, `text_delta`, `crashed`, ...
    pub kind: String,
    /// The agent or item the event is about, if any.
    pub subject: Option<String>,
    pub line: String,
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.line)
    }
}
