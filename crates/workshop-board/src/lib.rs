//! # workshop-board — the durable work board (single node)
//!
//! Three layers, each usable on its own:
//!
//! ## 1. State machine — [`state::Board`] (pure)
//! All items live in memory in a `BTreeMap<ItemId, WorkItem>` with derived indexes (ready queue
//! ordered by `(priority, created_at, insertion seq)`, per-type ready queues, lease expiries,
//! reverse dependencies). Every operation takes `now_ms` as an argument and does no I/O and no
//! clock reads, so it is deterministic and property-testable. AgentWorkshop's guarded
//! transitions:
//!
//! ```text
//! add ──> ready (all deps done) | new (deps pending) | blocked (a dep failed/cancelled/blocked)
//! new/blocked ──(last dep completes)──> ready
//! ready ──claim / claim_next──> claimed (lease: holder, expiry, fencing token)
//! claimed ──start──> in_progress
//! claimed|in_progress ──complete──> done            (dependents may become ready)
//! claimed|in_progress ──fail(retry, attempts left)──> ready after jittered exponential backoff
//! claimed|in_progress ──fail / dead-letter──> failed  (dependents blocked, transitively)
//! claimed|in_progress ──lease expired──> ready (attempts+1) | failed ("...dead-lettered")
//! any but done ──cancel──> cancelled                  (dependents blocked, transitively)
//! ```
//!
//! Fencing tokens come from one board-wide counter, so they strictly increase; `start`,
//! `heartbeat`, `complete` and `fail` must present the current lease's token or get
//! [`BoardError::StaleToken`]. `complete` and `fail` are idempotent: the item records the token
//! that settled it and how (`WorkItem::last_settle`, kept through a retry's re-queue), so the
//! same holder repeating the same call (a lost reply, a retried request) gets the current item
//! and changes nothing, while the opposite outcome with that token is
//! [`BoardError::AlreadySettled`] and any other token is still stale. Every mutation returns an [`Outcome`]: its value plus the exact
//! list of [`Change`]s (item snapshots), which is what gets persisted and published. Refused
//! operations change nothing.
//!
//! ## 2. Store — [`store::BoardStore`], [`store::SledStore`], [`store::MemoryStore`]
//! One sled tree `items`: key = the id's bytes, value = [`codec::encode`] (a version byte, then
//! bincode 2 in serde mode with a size limit); the board counters (last token, last sequence
//! number) live under the key `\0meta`, which no id can collide with. A batch of changes is
//! written with one atomic `apply_batch`; `sync` is `Db::flush()` plus an `fdatasync` of sled's
//! `db` file, because sled 0.34.7's flush only does `sync_file_range` (survives kill -9, not a
//! machine crash), and of the blob files sled wrote since the last sync (sled never syncs
//! them). Loading rebuilds the [`Board`] and checks its invariants. A directory held by
//! another process gives [`StoreError::Locked`]; unreadable data gives [`StoreError::Corrupt`]
//! naming the directory (and the key, for a bad value).
//!
//! A result too large for one frame is stored in [`parts`]: pieces of at most 64 KiB in a tree
//! of their own (`result_parts`, key = id + `\0` + index, value = the piece and the token
//! that stored it), written through the same group commit by `put_result_part`, checked and
//! settled by `complete_in_parts` (the item keeps a preview), read one at a time by
//! `result_part` on the committer (answered after the group's sync, so durable), deleted with
//! the item.
//!
//! ## 3. Durable committer — [`durable::DurableBoard`]
//! A `Clone + Send + Sync` handle with async methods for every operation. Mutations travel over
//! a bounded tokio mpsc channel to a two-stage pipeline on two dedicated threads:
//! the **committer** drains every queued request (up to 512), applies them to its `Board` with
//! one clock reading and writes the changed items (last state per item) to sled; the
//! **syncer** takes every batch written so far, makes them durable with ONE flush + fdatasync,
//! applies them to the read replica, pushes newly ready items to `subscribe_ready()`
//! receivers, and only then answers each request (oneshot). A retried item is pushed again when
//! its backoff passes: a tokio task (the backoff waker, started by the first `subscribe_ready`)
//! sleeps until [`Board::next_wake`] by the board's clock and is re-armed by every new backoff. While one sync runs the committer
//! already applies and writes the next batch, so one sync covers everything that arrived
//! during the previous one (group commit). Reads (`get`, `list`, `counts`) come from the read
//! replica, which only ever contains durable state. A failed write or sync poisons the board:
//! the batch gets the error and later writes are refused until restart.
//! Only one sync runs at a time; the module docs of [`durable`] record what limits throughput
//! (sled's `apply_batch` cannot run while a `flush` waits for the disk) and what was tried.
//!
//! ## 4. On the wire — [`actor::BoardActor`], [`client::BoardClient`]
//! The board actor owns a `DurableBoard` handle, joins the pg group `workshop.board` in its
//! cluster's scope and answers `workshop_proto::board` requests, each in its own task that
//! replies after the group commit; `wait_ready` is a long poll over `subscribe_ready`, and
//! `await_settled` one over `subscribe_settled`.
//! `BoardClient` is what a board worker on any node calls (typed, with timeouts); [`wire`]
//! holds the pure parts (typed errors, filters).
//!
//! Binaries: `board-bench` (throughput/latency, see its docs) and `board-crash-child` (used by
//! the kill -9 crash test in `tests/crash.rs`).

pub mod actor;
pub mod backup;
pub mod client;
pub mod codec;
pub mod durable;
/// The board's passive types live in `workshop-types` so the protocol can name them.
pub use workshop_types::board as item;
pub mod parts;
pub mod private;
pub mod state;
pub mod store;
pub mod wire;

pub use actor::{BoardActor, BoardActorArgs};
pub use backup::{BackupCounts, BackupError};
pub use client::BoardClient;
pub use durable::{CommitEvent, DurableBoard, DurableError, DurableOptions, StatsSnapshot};
pub use item::{ItemId, Lease, NewItem, Settle, SettleBy, SettleKind, Status, WorkItem, WorkType};
pub use state::{Board, BoardConfig, BoardError, Change, ChangeKind, ListFilter, Meta, Outcome};
pub use store::{BoardStore, MemoryStore, SledStore, StoreError};
