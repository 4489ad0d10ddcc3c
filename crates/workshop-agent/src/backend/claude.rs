//! The `claude` backend (Claude Code CLI, stream-json, one long-lived process per agent).
//! Being written; see issue 4.

use workshop_types::AgentSpec;

use super::{Backend, BackendError, Session};

#[derive(Default)]
pub struct ClaudeBackend;

impl ClaudeBackend {
    pub fn from_env() -> Self {
        ClaudeBackend
    }
}

impl Backend for ClaudeBackend {
    fn name(&self) -> &'static str {
        "claude"
    }
    fn start_session(&self, _spec: &AgentSpec) -> Result<Box<dyn Session>, BackendError> {
        Err(BackendError("the claude backend is not built yet".into()))
    }
}
