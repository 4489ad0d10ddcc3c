//! Starting and stopping one node: the supervision tree plus the [`Workshop`] API over it.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use ractor::{Actor, ActorRef};
use workshop_agent::backend::{claude::ClaudeBackend, script::ScriptBackend, Backends};

use crate::directory::Directory;
use crate::event_log::EventLogHandle;
use crate::persist::NodeDb;
use crate::supervisor::{NodeSupervisor, RestartBudget, RootArgs, RootMsg};
use crate::{ApiError, Workshop};

pub struct Node {
    pub workshop: Workshop,
    root: ActorRef<RootMsg>,
    handle: tokio::task::JoinHandle<()>,
}

impl Node {
    /// The built-in backends (`script`, `claude`).
    pub fn default_backends() -> Backends {
        Backends::default()
            .with(Arc::new(ScriptBackend))
            .with(Arc::new(ClaudeBackend::from_env()))
    }

    /// Start an ephemeral node (nothing persisted) with the built-in backends.
    pub async fn start() -> Result<Node, ApiError> {
        Self::start_with(Self::default_backends(), None).await
    }

    /// Start a durable node over `data_dir`: agents, store and event tail come back after a
    /// restart (even after kill -9).
    pub async fn open(data_dir: &Path) -> Result<Node, ApiError> {
        let db = NodeDb::open(&data_dir.join("node"))?;
        Self::start_with(Self::default_backends(), Some(Arc::new(db))).await
    }

    pub async fn start_with(backends: Backends, db: Option<Arc<NodeDb>>) -> Result<Node, ApiError> {
        let events = EventLogHandle::new(db.clone());
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
        let workshop = Workshop::new(root.clone(), directory, events, backends, db);
        workshop.restore().await?;
        Ok(Node {
            workshop,
            root,
            handle,
        })
    }

    /// Stop every agent (the registry keeps them for the next start), then stop the tree.
    pub async fn shutdown(self) {
        self.workshop.stop_agents().await;
        self.root.stop(Some("node shutdown".into()));
        let _ = self.handle.await;
    }
}
