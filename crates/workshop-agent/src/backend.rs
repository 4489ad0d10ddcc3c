//! The backend contract: a `Backend` starts `Session`s; a session runs one turn at a time.
//! A turn ends with a result or a `TurnError`; live events go through `TurnContext::events`.
//! Cancellation (interrupt, watchdog, reset) is signalled through `TurnContext::cancel`; a
//! backend must end the turn promptly with `TurnError::Interrupted` when it fires.

pub mod claude;
pub mod script;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use workshop_types::{AgentSpec, TurnError, TurnResult};

use crate::hooks::TurnEvents;

pub type BoxFut<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct BackendError(pub String);

pub struct TurnContext {
    pub cancel: CancellationToken,
    pub events: TurnEvents,
}

pub trait Backend: Send + Sync + 'static {
    fn name(&self) -> &'static str;
    /// Start a session for this agent (resuming `spec.resume_session` where the backend can).
    fn start_session(&self, spec: &AgentSpec) -> Result<Box<dyn Session>, BackendError>;
    /// True if this backend's sessions connect to the MCP servers in `options.mcp_config` and
    /// take `allowed_tools`, so an agent with `workshop_tools` can be wired to the node's server.
    fn speaks_mcp(&self) -> bool {
        false
    }
    /// A copy of this backend whose sessions report the processes they start and end to
    /// `ledger`; None: its sessions start no processes (the backend is kept as it is).
    fn reporting_to(&self, _ledger: Arc<dyn ProcessLedger>) -> Option<Arc<dyn Backend>> {
        None
    }
}

/// Where a backend reports the process groups its sessions start, so that a node killed before
/// it could stop them finds and kills what is left when it starts again (the node's process
/// ledger). The backend knows nothing of the node: the node supplies this through
/// [`Backends::reporting_to`].
pub trait ProcessLedger: Send + Sync + 'static {
    /// `pid` (the leader of its own process group) was just started for `agent`: it exists
    /// until its parent reaps it, so `/proc/<pid>` is still this process.
    fn started(&self, agent: &str, pid: u32);
    /// The group led by `pid` was stopped (its leader exited or the group was sent SIGKILL).
    fn ended(&self, agent: &str, pid: u32);
}

pub trait Session: Send + 'static {
    /// Run one turn.
    fn turn<'a>(
        &'a mut self,
        prompt: &'a str,
        ctx: TurnContext,
    ) -> BoxFut<'a, Result<TurnResult, TurnError>>;
    /// Start a fresh conversation (same configuration).
    fn reset(&mut self) -> BoxFut<'_, Result<(), BackendError>>;
    /// Release everything the session holds (processes, connections).
    fn shutdown(&mut self) -> BoxFut<'_, ()>;
    /// The current backend session id, if one exists yet.
    fn session_id(&self) -> Option<String>;
    /// True if a panic inside `turn` leaves the session usable, so the agent keeps it instead
    /// of starting a new one (which for a process-backed session means a resume).
    fn survives_panic(&self) -> bool {
        false
    }
}

/// Backends by name; the node fills this at start-up.
#[derive(Clone, Default)]
pub struct Backends {
    by_name: Vec<(&'static str, Arc<dyn Backend>)>,
}

impl Backends {
    pub fn with(mut self, backend: Arc<dyn Backend>) -> Self {
        self.by_name.retain(|(n, _)| *n != backend.name());
        self.by_name.push((backend.name(), backend));
        self
    }
    pub fn get(&self, name: &str) -> Option<Arc<dyn Backend>> {
        self.by_name
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, b)| b.clone())
    }
    /// Every backend that starts processes made to report them to `ledger`; the rest as they are.
    pub fn reporting_to(&self, ledger: Arc<dyn ProcessLedger>) -> Backends {
        Backends {
            by_name: self
                .by_name
                .iter()
                .map(|(n, b)| {
                    (
                        *n,
                        b.reporting_to(ledger.clone()).unwrap_or_else(|| b.clone()),
                    )
                })
                .collect(),
        }
    }
    pub fn names(&self) -> Vec<&'static str> {
        self.by_name.iter().map(|(n, _)| *n).collect()
    }
}
