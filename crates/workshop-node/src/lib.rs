//! The composition root of one node: the supervision tree, the event log, the agent directory
//! and [`Workshop`], the one Rust API every way in (console, CLI, later MCP and dashboard) calls.
//!
//! ```text
//! workshop.node (root supervisor; restart budget for permanent children)
//! ├── event_log   ring buffer of 500 + live broadcast
//! └── agents      dynamic; agents are temporary: a crash marks the agent `crashed`
//! ```

pub mod agents;
pub mod budget;
pub mod directory;
pub mod error;
pub mod event_log;
pub mod node;
pub mod persist;
pub mod schedule;
pub mod store;
pub mod supervisor;
pub mod work;
pub mod worker;
pub mod workflows;
pub mod workshop;

pub use budget::BudgetView;
pub use error::ApiError;
pub use node::Node;
pub use work::WorkOptions;
pub use worker::WorkerInfo;
pub use workshop::{AwaitOutcome, GlobalConfig, Profile, Workshop};
