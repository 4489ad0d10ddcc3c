//! Starting and stopping one node: the supervision tree plus the [`Workshop`] API over it.

use std::sync::Arc;
use std::time::Duration;

use ractor::{Actor, ActorRef};
use workshop_agent::backend::{claude::ClaudeBackend, script::ScriptBackend, Backends};

use crate::directory::Directory;
use crate::event_log::EventLogHandle;
use crate::supervisor::{NodeSupervisor, RestartBudget, RootArgs, RootMsg};
use crate::{ApiError, Workshop};

pub struct Node {
    pub workshop: Workshop,
    root: ActorRef<RootMsg>,
    handle: tokio::task::JoinHandle<()>,
}

impl Node {
    /// Start a node with the built-in backends (`script`, `claude`).
    pub async fn start() -> Result<Node, ApiError> {
        let backends = Backends::default()
            .with(Arc::new(ScriptBackend))
            .with(Arc::new(ClaudeBackend::from_env()));
        Self::start_with(backends).await
    }

    pub async fn start_with(backends: Backends) -> Result<Node, ApiError> {
        let events = EventLogHandle::new();
        let directory = Arc::new(Directory::default());
        let (root, handle) = Actor::spawn(
            None,
            NodeSupervisor,
            RootArgs {
                events: events.clone(),
                directory: directory.clone(),
                budget: RestartBudget::new(3, Duration::from_secs(5)),
            },
        )
        .await
        .map_err(|e| ApiError::Node(format!("the node's supervision tree did not start: {e}")))?;
        let workshop = Workshop::new(root.clone(), directory, events, backends);
        Ok(Node {
            workshop,
            root,
            handle,
        })
    }

    /// Dismiss every agent, then stop the tree.
    pub async fn shutdown(self) {
        self.workshop.reset_all().await;
        self.root.stop(Some("node shutdown".into()));
        let _ = self.handle.await;
    }
}
