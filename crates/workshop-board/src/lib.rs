//! workshop-board
pub mod codec;
pub mod item;
pub mod state;

pub use item::{ItemId, Lease, NewItem, Status, WorkItem, WorkType};
pub use state::{Board, BoardConfig, BoardError, Change, ChangeKind, ListFilter, Meta, Outcome};
