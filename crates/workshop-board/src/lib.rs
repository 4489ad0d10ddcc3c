//! workshop-board
pub mod codec;
pub mod durable;
pub mod item;
pub mod state;
pub mod store;

pub use durable::{CommitEvent, DurableBoard, DurableError, DurableOptions, StatsSnapshot};
pub use item::{ItemId, Lease, NewItem, Status, WorkItem, WorkType};
pub use state::{Board, BoardConfig, BoardError, Change, ChangeKind, ListFilter, Meta, Outcome};
pub use store::{BoardStore, MemoryStore, SledStore, StoreError};
