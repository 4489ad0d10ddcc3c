//! The narrow interface an agent uses to report to its node: events and its status row.

use std::sync::Arc;
use workshop_types::{AgentName, AgentRow, Topic};

pub trait AgentHooks: Send + Sync + 'static {
    /// Publish an event (`line` is the formatted text, AgentWorkshop style).
    fn publish(&self, topic: Topic, kind: &str, subject: &str, line: String);
    /// The agent's status row changed (status, task, queue, cost, turns). Called on the agent's
    /// thread, before it replies to the request that changed the row, about three times per
    /// turn: keep it cheap (the node only updates its directory and queues the row for a
    /// background writer; it flushes here only for a new session id).
    fn row_changed(&self, row: AgentRow);
    /// Asked by the agent before it admits a prompt (`Ask`/`Cast`, whoever sent it): `Err`
    /// with the reason refuses it (the node checks its budgets here). Admits by default.
    fn admit(&self, _agent: &AgentName) -> Result<(), String> {
        Ok(())
    }
}

/// Hooks that drop everything (benchmarks and unit tests of the actor alone).
pub struct NoHooks;

impl AgentHooks for NoHooks {
    fn publish(&self, _: Topic, _: &str, _: &str, _: String) {}
    fn row_changed(&self, _: AgentRow) {}
}

/// Live events of one turn: text deltas and tool calls, as they happen.
#[derive(Clone)]
pub struct TurnEvents {
    hooks: Arc<dyn AgentHooks>,
    agent: AgentName,
}

impl TurnEvents {
    pub fn new(hooks: Arc<dyn AgentHooks>, agent: AgentName) -> Self {
        Self { hooks, agent }
    }
    pub fn text_delta(&self, text: &str) {
        self.hooks.publish(
            Topic::Turn,
            "text_delta",
            self.agent.as_str(),
            format!("[stream] {}: {}", self.agent, text),
        );
    }
    pub fn tool_use(&self, tool: &str, detail: &str) {
        self.hooks.publish(
            Topic::Turn,
            "tool_use",
            self.agent.as_str(),
            format!("[tool] {} -> {tool} {detail}", self.agent),
        );
    }
    pub fn note(&self, kind: &str, line: String) {
        self.hooks
            .publish(Topic::Turn, kind, self.agent.as_str(), line);
    }
}
