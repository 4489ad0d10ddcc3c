//! Starting and stopping one node: the supervision tree plus the [`Workshop`] API over it.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use ractor::{Actor, ActorRef};
use workshop_agent::backend::{claude::ClaudeBackend, script::ScriptBackend, Backends};

use crate::directory::Directory;
use crate::event_log::EventLogHandle;
use crate::persist::{NodeDb, RowWriterStats};
use crate::supervisor::{AgentsSlot, NodeSupervisor, RestartBudget, RootArgs, RootMsg};
use crate::{ApiError, Workshop};
use workshop_board::durable::{DurableBoard, DurableOptions};
use workshop_board::store::MemoryStore;

pub struct Node {
    pub workshop: Workshop,
    root: ActorRef<RootMsg>,
    handle: tokio::task::JoinHandle<()>,
    sweeper: tokio::task::JoinHandle<()>,
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

    /// Start a durable node over `data_dir`: agents, board, store, workflows, schedules and the
    /// event tail come back after a restart (even after kill -9).
    pub async fn open(data_dir: &Path) -> Result<Node, ApiError> {
        Self::start_with(Self::default_backends(), Some(data_dir)).await
    }

    pub async fn start_with(backends: Backends, data_dir: Option<&Path>) -> Result<Node, ApiError> {
        let (db, board) = match data_dir {
            None => (
                None,
                DurableBoard::with_store(MemoryStore::new(), DurableOptions::default())
                    .map_err(|e| ApiError::Board(e.to_string()))?,
            ),
            Some(dir) => {
                let db = NodeDb::open(&dir.join("node"))?;
                let board = DurableBoard::open(dir.join("board"), DurableOptions::default())
                    .map_err(|e| ApiError::Board(e.to_string()))?;
                (Some(Arc::new(db)), board)
            }
        };
        let sweeper = board.spawn_lease_sweeper(Duration::from_secs(1));
        let events = EventLogHandle::new(db.clone());
        let directory = Arc::new(Directory::default());
        let agents_slot = AgentsSlot::default();
        let (root, handle) = Actor::spawn(
            None,
            NodeSupervisor,
            RootArgs {
                agents_slot: agents_slot.clone(),
                events: events.clone(),
                directory: directory.clone(),
                budget: RestartBudget::new(3, Duration::from_secs(5)),
            },
        )
        .await
        .map_err(|e| ApiError::Node(format!("the node's supervision tree did not start: {e}")))?;
        let workshop = Workshop::new(
            root.clone(),
            directory,
            events,
            backends,
            db,
            board,
            agents_slot,
        );
        workshop.restore().await?;
        Ok(Node {
            workshop,
            root,
            handle,
            sweeper,
        })
    }

    /// Counters of the agents' status row writer (a durable node only), for tests and benches.
    pub fn row_writer_stats(&self) -> Option<RowWriterStats> {
        self.workshop.db().map(|db| db.row_writer_stats())
    }

    /// Stop every agent (the registry keeps them for the next start), then stop the tree.
    pub async fn shutdown(self) {
        // Once the agents are stopped, `stop_agents` syncs the node database, which first
        // writes the status rows still queued for the background writer: a clean stop loses
        // none (persist/rows.rs).
        self.workshop.stop_agents().await;
        self.sweeper.abort();
        if let Err(e) = self.workshop.board_handle().shutdown().await {
            tracing::error!(error = %e, "board did not shut down cleanly");
        }
        self.root.stop(Some("node shutdown".into()));
        let _ = self.handle.await;
    }
}
