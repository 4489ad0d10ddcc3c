//! The composition root of one node: the supervision tree, the event log, the agent directory
//! and [`Workshop`], the one Rust API every way in (console, CLI, later MCP and dashboard) calls.
//!
//! ```text
//! workshop.node (root supervisor; restart budget for permanent children)
//! ├── event_log   ring buffer of 500 + live broadcast
//! └── agents      dynamic; agents are temporary: a crash marks the agent `crashed`
//! ```

mod admission;
pub mod agents;
pub mod background;
pub mod board_link;
pub mod budget;
pub mod client;
pub mod clock;
pub mod cluster;
pub mod config;
pub mod directory;
pub mod event_log;
pub mod mcp_access;
mod names;
pub mod node;
pub mod orchestrator;
pub mod persist;
pub mod proc_ledger;
pub mod schedule;
pub mod secrets;
pub mod server;
mod state;
pub mod store;
pub mod supervisor;
pub mod work;
pub mod worker;
pub mod workflows;
pub mod workshop;

pub use client::Client;
pub use node::{Node, NodeOptions};
pub use workshop::Workshop;
pub use workshop_proto::api::{
    AwaitOutcome, BudgetView, GlobalConfig, Profile, ScheduleInfo, ScheduleSpec, WorkOptions,
    WorkerInfo, WorkerOptions, WorkflowRun,
};
pub use workshop_proto::ApiError;
