//! [`DurableBoard`]: the async, durable, group-committing board handle.
//!
//! Every mutating call becomes a request on a bounded tokio mpsc channel, answered over a
//! oneshot. Two dedicated std threads form a pipeline:
//!
//! 1. the **committer** blocks for the first queued request, drains whatever else is queued (up
//!    to `max_batch`), applies the batch to its in-memory [`Board`] with one clock reading and
//!    writes the changed items (last state per item) plus the counters to the store in one
//!    atomic batch — not yet durable — then hands the batch to the syncer;
//! 2. the **syncer** takes every batch handed over so far, calls the store's `sync` ONCE (sled
//!    `flush()` + `fdatasync` of sled's `db` file), emits [`CommitEvent::Synced`], applies the
//!    changes to the read replica, pushes newly ready items to `subscribe_ready()`, emits
//!    [`CommitEvent::Replying`] and only then answers every request of those batches.
//!
//! A sync covers every write made before it started, so while one sync runs the committer can
//! already apply and write the next requests; they are covered by the next sync. Refusals
//! (e.g. `InvalidTransition`) are answered after the sync too, because they may depend on state
//! written by an earlier, not yet durable request.
//!
//! Reads (`get`, `list`, `counts`) are served from the read replica, which only ever holds
//! durable state, without going through the committer.
//!
//! If a write or sync fails, the affected requests get [`DurableError::Store`] and the board
//! refuses every later write ([`DurableError::Poisoned`]): its memory may be ahead of the disk,
//! so restart it from the store.
//!
//! ## Where the time goes (measured with `board-bench`, 2-core VM, ext4 on virtio)
//!
//! sled 0.34.7's `Tree::apply_batch` takes sled's global concurrency-control *write* lock, and
//! `Db::flush()` holds the *read* side of it while it waits for its `pwrite` +
//! `sync_file_range(WAIT_AFTER)`. So the committer cannot write a batch while a flush runs; it
//! only writes during the `fdatasync` half of a sync (apply+write ≈ 400 µs per batch at 64
//! workers, against ≈ 75 µs with per-key inserts, which take only the read side). Two
//! experiments did not raise 64-worker throughput and were not kept: a pool of syncer threads
//! that starts a new sync while an earlier one runs (the disk serializes overlapping
//! flush+fdatasync pairs — average sync time rose from ≈ 500 to 650–980 µs — and each sync
//! covered fewer requests), and handing the answering to a second syncer thread so the next
//! sync starts at once. Replacing `apply_batch` with per-key inserts raised it by about 40 %
//! but gives up the batch's crash atomicity; doing that safely needs a redo record (the whole
//! batch under one key, written first and replayed by `load`).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use parking_lot::RwLock;
use tokio::sync::{broadcast, mpsc, oneshot, Notify};

use crate::backup::{BackupCounts, BackupError};
use crate::item::{
    ItemId, NewItem, SettleBy, SettleKind, Status, WorkItem, WorkType, RESULT_PART_BYTES,
};
use crate::parts::{PartKey, PartTable, PartWrite, StoredPart};
use crate::state::{check_parts_request, Board, BoardConfig, BoardError, Change, ListFilter};
use crate::store::{BoardStore, SledStore, StoreError, WriteEntry};

/// Errors of [`DurableBoard`] calls.
#[derive(Debug, Clone, thiserror::Error)]
pub enum DurableError {
    #[error(transparent)]
    Board(#[from] BoardError),
    #[error(
        "the board could not make this operation durable: {0}; the board now refuses writes \
         until it is restarted"
    )]
    Store(Arc<StoreError>),
    #[error("the board refuses writes after an earlier storage failure ({0}); restart the node")]
    Poisoned(String),
    #[error("the board could not read its database: {0}; check the disk, then try again")]
    Read(Arc<StoreError>),
    #[error("the board is shut down; reopen its data directory")]
    Closed,
    #[error(transparent)]
    Backup(Arc<BackupError>),
}

/// What the committer reports to an observer (tests use it to check ordering).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommitEvent {
    /// A batch of `ops` requests was applied in memory, changing `changes` items.
    Applied { ops: usize, changes: usize },
    /// The store's sync (sled flush + fdatasync) returned; the batch is durable.
    Synced { ops: usize },
    /// Replies to the `ops` requests of the batch are about to be sent.
    Replying { ops: usize },
}

/// A callback run on the committer thread for every [`CommitEvent`].
pub type Observer = Arc<dyn Fn(CommitEvent) + Send + Sync>;
/// Milliseconds since the Unix epoch (injectable for tests): the node's one clock type.
pub use workshop_types::Clock;

/// Counters kept by the committer.
#[derive(Debug, Default)]
pub struct CommitStats {
    /// Batches that were applied.
    pub batches: AtomicU64,
    /// Requests processed (mutations, including refused ones).
    pub ops: AtomicU64,
    /// Store syncs (= fdatasync calls on the sled store).
    pub syncs: AtomicU64,
    /// Item states written to the store.
    pub items_written: AtomicU64,
    /// Time spent applying batches and writing them to the store.
    pub apply_write_nanos: AtomicU64,
    /// Time spent in store syncs (sled flush + fdatasync).
    pub sync_nanos: AtomicU64,
}

/// A copy of [`CommitStats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    pub batches: u64,
    pub ops: u64,
    pub syncs: u64,
    pub items_written: u64,
    pub apply_write_nanos: u64,
    pub sync_nanos: u64,
}

impl CommitStats {
    pub fn snapshot(&self) -> StatsSnapshot {
        StatsSnapshot {
            batches: self.batches.load(Ordering::Relaxed),
            ops: self.ops.load(Ordering::Relaxed),
            syncs: self.syncs.load(Ordering::Relaxed),
            items_written: self.items_written.load(Ordering::Relaxed),
            apply_write_nanos: self.apply_write_nanos.load(Ordering::Relaxed),
            sync_nanos: self.sync_nanos.load(Ordering::Relaxed),
        }
    }
}

/// Options of [`DurableBoard`].
#[derive(Clone)]
pub struct DurableOptions {
    pub board: BoardConfig,
    /// Most requests applied per sync.
    pub max_batch: usize,
    /// Capacity of the request channel (callers wait when it is full).
    pub queue_depth: usize,
    /// Capacity of the `subscribe_ready` broadcast channel.
    pub ready_capacity: usize,
    pub clock: Clock,
    pub observer: Option<Observer>,
}

impl Default for DurableOptions {
    fn default() -> Self {
        DurableOptions {
            board: BoardConfig::default(),
            max_batch: 512,
            queue_depth: 16 * 1024,
            ready_capacity: 4096,
            clock: Arc::new(system_clock_ms),
            observer: None,
        }
    }
}

impl std::fmt::Debug for DurableOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DurableOptions")
            .field("board", &self.board)
            .field("max_batch", &self.max_batch)
            .field("queue_depth", &self.queue_depth)
            .field("ready_capacity", &self.ready_capacity)
            .finish_non_exhaustive()
    }
}

/// Wall-clock milliseconds since the Unix epoch (0 if the clock is before 1970).
pub fn system_clock_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

enum Op {
    Add(NewItem),
    Claim {
        id: String,
        holder: String,
        lease_ms: u64,
    },
    ClaimNext {
        work_type: Option<WorkType>,
        holder: String,
        lease_ms: u64,
    },
    Start {
        id: String,
        token: u64,
    },
    Heartbeat {
        id: String,
        token: u64,
        lease_ms: u64,
    },
    Release {
        id: String,
        token: u64,
        reason: String,
    },
    Complete {
        id: String,
        token: u64,
        result: String,
    },
    Fail {
        id: String,
        token: u64,
        error: String,
        retry: bool,
    },
    CompleteWork {
        id: String,
        result: String,
        by: Option<SettleBy>,
    },
    FailWork {
        id: String,
        error: String,
        by: Option<SettleBy>,
    },
    Cancel {
        id: String,
    },
    Remove {
        id: String,
    },
    PutPart {
        id: String,
        token: u64,
        index: u32,
        text: String,
    },
    CompleteInParts {
        id: String,
        token: u64,
        preview: String,
        parts: u32,
        bytes: u64,
    },
    ReadPart {
        id: String,
        index: u32,
    },
    ExpireLeases,
    /// Handled by the committer between batches (see [`DurableBoard::backup`]).
    Backup {
        dir: PathBuf,
    },
    Shutdown,
}

enum Reply {
    Item(WorkItem),
    MaybeItem(Option<WorkItem>),
    Ids(Vec<ItemId>),
    Part(Option<String>),
    Backup(BackupCounts),
    Done,
}

type ReplyTx = oneshot::Sender<Result<Reply, DurableError>>;

struct Request {
    op: Op,
    reply: ReplyTx,
}

struct Shared {
    tx: mpsc::Sender<Request>,
    view: Arc<RwLock<Board>>,
    stats: Arc<CommitStats>,
    ready_tx: broadcast::Sender<WorkItem>,
    settled_tx: broadcast::Sender<WorkItem>,
    clock: Clock,
    /// Rings the backoff waker: a new retry backoff was made durable, or the board shut down.
    wake: Arc<Notify>,
    waker_started: AtomicBool,
}

/// The durable board handle: cheap to clone, `Send + Sync`. See the module docs.
#[derive(Clone)]
pub struct DurableBoard {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for DurableBoard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DurableBoard")
            .field("stats", &self.shared.stats.snapshot())
            .finish_non_exhaustive()
    }
}

impl DurableBoard {
    /// Opens (or creates) the sled board database in `dir` and starts the committer.
    pub fn open(dir: impl AsRef<Path>, options: DurableOptions) -> Result<Self, StoreError> {
        let store = SledStore::open(dir)?;
        Self::with_store(store, options)
    }

    /// Loads the board from `store` and starts the committer thread.
    pub fn with_store<S: BoardStore>(
        store: S,
        options: DurableOptions,
    ) -> Result<Self, StoreError> {
        let board = store.load(options.board)?;
        let view = Arc::new(RwLock::new(board.clone()));
        let stats = Arc::new(CommitStats::default());
        let (tx, rx) = mpsc::channel(options.queue_depth.max(1));
        let (ready_tx, _) = broadcast::channel(options.ready_capacity.max(1));
        let (settled_tx, _) = broadcast::channel(options.ready_capacity.max(1));
        let store = Arc::new(store);
        let poisoned: Poison = Arc::default();
        let (to_syncer, from_committer) = std::sync::mpsc::channel();
        let wake = Arc::new(Notify::new());
        let parts = PartTable::new(store.clone())?;
        let committer = Committer {
            store: store.clone(),
            parts,
            board,
            rx,
            to_syncer,
            stats: stats.clone(),
            max_batch: options.max_batch.max(1),
            clock: options.clock.clone(),
            observer: options.observer.clone(),
            poisoned: poisoned.clone(),
        };
        let syncer = Syncer {
            store: store.clone(),
            rx: from_committer,
            view: view.clone(),
            stats: stats.clone(),
            ready_tx: ready_tx.clone(),
            settled_tx: settled_tx.clone(),
            observer: options.observer,
            poisoned,
            wake: wake.clone(),
        };
        let location = store.location();
        drop(store);
        let spawn_err = |e: std::io::Error| StoreError::Backend {
            dir: location.clone().into(),
            action: "starting the committer threads",
            detail: e.to_string(),
        };
        std::thread::Builder::new()
            .name("board-syncer".into())
            .spawn(move || syncer.run())
            .map_err(spawn_err)?;
        std::thread::Builder::new()
            .name("board-committer".into())
            .spawn(move || committer.run())
            .map_err(spawn_err)?;
        Ok(DurableBoard {
            shared: Arc::new(Shared {
                tx,
                view,
                stats,
                ready_tx,
                settled_tx,
                clock: options.clock,
                wake,
                waker_started: AtomicBool::new(false),
            }),
        })
    }

    async fn call(&self, op: Op) -> Result<Reply, DurableError> {
        let (reply, rx) = oneshot::channel();
        self.shared
            .tx
            .send(Request { op, reply })
            .await
            .map_err(|_| DurableError::Closed)?;
        rx.await.map_err(|_| DurableError::Closed)?
    }

    async fn call_item(&self, op: Op) -> Result<WorkItem, DurableError> {
        match self.call(op).await? {
            Reply::Item(item) => Ok(item),
            _ => Err(DurableError::Closed),
        }
    }

    /// `work(...)`: adds an item (durable when this returns).
    pub async fn add(&self, item: NewItem) -> Result<WorkItem, DurableError> {
        self.call_item(Op::Add(item)).await
    }

    /// `claim_work`: claims a ready item under a lease; the returned item carries the token.
    pub async fn claim(
        &self,
        id: &str,
        holder: &str,
        lease_ms: u64,
    ) -> Result<WorkItem, DurableError> {
        self.call_item(Op::Claim {
            id: id.into(),
            holder: holder.into(),
            lease_ms,
        })
        .await
    }

    /// Claims the highest-priority, oldest ready item (of `work_type`, if given).
    pub async fn claim_next(
        &self,
        work_type: Option<WorkType>,
        holder: &str,
        lease_ms: u64,
    ) -> Result<Option<WorkItem>, DurableError> {
        match self
            .call(Op::ClaimNext {
                work_type,
                holder: holder.into(),
                lease_ms,
            })
            .await?
        {
            Reply::MaybeItem(item) => Ok(item),
            _ => Err(DurableError::Closed),
        }
    }

    /// `start_work`: claimed -> in_progress.
    pub async fn start(&self, id: &str, token: u64) -> Result<WorkItem, DurableError> {
        self.call_item(Op::Start {
            id: id.into(),
            token,
        })
        .await
    }

    /// Renews the lease to now + `lease_ms`.
    pub async fn heartbeat(
        &self,
        id: &str,
        token: u64,
        lease_ms: u64,
    ) -> Result<WorkItem, DurableError> {
        self.call_item(Op::Heartbeat {
            id: id.into(),
            token,
            lease_ms,
        })
        .await
    }

    /// Hands a leased item back unfinished: ready again at once, no attempt counted.
    pub async fn release(
        &self,
        id: &str,
        token: u64,
        reason: &str,
    ) -> Result<WorkItem, DurableError> {
        self.call_item(Op::Release {
            id: id.into(),
            token,
            reason: reason.into(),
        })
        .await
    }

    /// Completes a leased item with its result.
    pub async fn complete(
        &self,
        id: &str,
        token: u64,
        result: impl Into<String>,
    ) -> Result<WorkItem, DurableError> {
        self.call_item(Op::Complete {
            id: id.into(),
            token,
            result: result.into(),
        })
        .await
    }

    /// Fails a leased item; with `retry` and attempts left it is retried after a backoff.
    pub async fn fail(
        &self,
        id: &str,
        token: u64,
        error: impl Into<String>,
        retry: bool,
    ) -> Result<WorkItem, DurableError> {
        self.call_item(Op::Fail {
            id: id.into(),
            token,
            error: error.into(),
            retry,
        })
        .await
    }

    /// `complete_work(id, result)` by hand: with the lease's token or by force
    /// ([`Board::complete_work`]).
    pub async fn complete_work(
        &self,
        id: &str,
        result: impl Into<String>,
        by: Option<SettleBy>,
    ) -> Result<WorkItem, DurableError> {
        self.call_item(Op::CompleteWork {
            id: id.into(),
            result: result.into(),
            by,
        })
        .await
    }

    /// `fail_work(id, error)` by hand, no retry: with the lease's token or by force
    /// ([`Board::fail_work`]).
    pub async fn fail_work(
        &self,
        id: &str,
        error: impl Into<String>,
        by: Option<SettleBy>,
    ) -> Result<WorkItem, DurableError> {
        self.call_item(Op::FailWork {
            id: id.into(),
            error: error.into(),
            by,
        })
        .await
    }

    /// `cancel_work`.
    pub async fn cancel(&self, id: &str) -> Result<WorkItem, DurableError> {
        self.call_item(Op::Cancel { id: id.into() }).await
    }

    /// Removes an item nothing depends on.
    pub async fn remove(&self, id: &str) -> Result<WorkItem, DurableError> {
        self.call_item(Op::Remove { id: id.into() }).await
    }

    /// Stores piece `index` of the lease holder's result (at most [`RESULT_PART_BYTES`] of
    /// text; the same index again replaces it). Durable when this returns.
    pub async fn put_result_part(
        &self,
        id: &str,
        token: u64,
        index: u32,
        text: impl Into<String>,
    ) -> Result<(), DurableError> {
        match self
            .call(Op::PutPart {
                id: id.into(),
                token,
                index,
                text: text.into(),
            })
            .await?
        {
            Reply::Done => Ok(()),
            _ => Err(DurableError::Closed),
        }
    }

    /// Completes a leased item whose result was stored as parts `0..parts` (`bytes` in all) by
    /// this token: the item keeps `preview` as its `result`. See `Board::complete_in_parts`.
    pub async fn complete_in_parts(
        &self,
        id: &str,
        token: u64,
        preview: impl Into<String>,
        parts: u32,
        bytes: u64,
    ) -> Result<WorkItem, DurableError> {
        self.call_item(Op::CompleteInParts {
            id: id.into(),
            token,
            preview: preview.into(),
            parts,
            bytes,
        })
        .await
    }

    /// Piece `index` of the result of an item completed in parts; None past its last part or
    /// when its result is not in parts. Read by the committer and answered after the group's
    /// sync, so it is durable.
    pub async fn result_part(&self, id: &str, index: u32) -> Result<Option<String>, DurableError> {
        match self
            .call(Op::ReadPart {
                id: id.into(),
                index,
            })
            .await?
        {
            Reply::Part(text) => Ok(text),
            _ => Err(DurableError::Closed),
        }
    }

    /// The item's whole result: its `result`, or its parts put together when it was completed
    /// in parts. None when the item has no result.
    pub async fn full_result(&self, id: &str) -> Result<Option<String>, DurableError> {
        let item = self
            .get_now(id)
            .ok_or_else(|| BoardError::NotFound { id: id.into() })?;
        crate::parts::assemble(item, |index| self.result_part(id, index)).await
    }

    /// Copies the board into a new sled board database at `dir` (absolute; it must not exist
    /// or be empty), which [`DurableBoard::open`] then opens as the same board: every item, the
    /// board counters and every result part, as they stood at one point between two batches
    /// of the committer (see [`crate::backup`]). The copy is flushed and fdatasynced before
    /// the answer, which comes after the sync of everything the copy holds. Other mutations
    /// wait while the copy runs (reads do not); returns what was copied.
    pub async fn backup(&self, dir: impl AsRef<Path>) -> Result<BackupCounts, DurableError> {
        let dir = dir.as_ref().to_path_buf();
        crate::backup::check_target(&dir).map_err(|e| DurableError::Backup(Arc::new(e)))?;
        match self.call(Op::Backup { dir }).await? {
            Reply::Backup(counts) => Ok(counts),
            _ => Err(DurableError::Closed),
        }
    }

    /// Ends every lease that has run out (by the committer's clock); returns their ids.
    pub async fn expire_leases(&self) -> Result<Vec<ItemId>, DurableError> {
        match self.call(Op::ExpireLeases).await? {
            Reply::Ids(ids) => Ok(ids),
            _ => Err(DurableError::Closed),
        }
    }

    /// `work_item(id)`, from the durable read replica.
    pub async fn get(&self, id: &str) -> Option<WorkItem> {
        self.get_now(id)
    }

    /// `board(status:, type:, claimed_by:)`, sorted by (priority, created_at).
    pub async fn list(&self, filter: ListFilter) -> Vec<WorkItem> {
        self.list_now(&filter)
    }

    /// Items per status (every status present).
    pub async fn counts(&self) -> BTreeMap<Status, usize> {
        self.counts_now()
    }

    /// Non-async `get`.
    pub fn get_now(&self, id: &str) -> Option<WorkItem> {
        self.shared.view.read().get(id).cloned()
    }

    /// Non-async `list`.
    pub fn list_now(&self, filter: &ListFilter) -> Vec<WorkItem> {
        self.shared
            .view
            .read()
            .list(filter)
            .into_iter()
            .cloned()
            .collect()
    }

    /// Is any item of this type ready (durable state; backoff not considered)? Lets an idle
    /// worker skip a durable `claim_next` that would find nothing.
    pub fn has_ready(&self, work_type: Option<&WorkType>) -> bool {
        self.shared.view.read().has_ready(work_type)
    }

    /// Non-async `counts`.
    pub fn counts_now(&self) -> BTreeMap<Status, usize> {
        self.shared.view.read().counts()
    }

    /// A receiver of every item that became ready (added ready, unblocked, retried, lease
    /// expired), sent once the change is durable. An item retried with a backoff is sent when
    /// the retry is durable (carrying `not_before_ms`) and again when its backoff has passed
    /// by the board's clock, so a worker can claim it then instead of on its next poll. A slow
    /// receiver may see `Lagged`; then re-read `list(status: ready)`.
    ///
    /// The first call from inside a tokio runtime starts the backoff waker on that runtime (see
    /// [`DurableBoard::start_backoff_waker`]).
    pub fn subscribe_ready(&self) -> broadcast::Receiver<WorkItem> {
        let rx = self.shared.ready_tx.subscribe();
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            self.start_backoff_waker(&rt);
        }
        rx
    }

    /// Starts (once per board) the task that pushes ready items to `subscribe_ready` when
    /// their retry backoff passes: it sleeps (`tokio::time::sleep`, so a paused test clock
    /// drives it) until the earliest pending `not_before_ms` ([`Board::next_wake`] on the
    /// durable replica, by the board's clock), publishes the items whose backoff passed
    /// ([`Board::backoffs_passed`]) and sleeps again; a newly durable backoff re-arms it. It
    /// holds no strong handle, and ends when the board shuts down or every handle is dropped.
    pub fn start_backoff_waker(&self, rt: &tokio::runtime::Handle) {
        if self.shared.waker_started.swap(true, Ordering::SeqCst) {
            return;
        }
        let shared = Arc::downgrade(&self.shared);
        let wake = self.shared.wake.clone();
        let checked = (self.shared.clock)();
        rt.spawn(backoff_waker(shared, wake, checked));
    }

    /// A receiver of every item that became settled (done, failed, blocked or cancelled; see
    /// [`Status::is_settled`]), sent once the change is durable and in the read replica, so a
    /// reader that subscribes first and then reads the replica misses no settlement. A slow
    /// receiver may see `Lagged`; then re-read the items it waits for.
    pub fn subscribe_settled(&self) -> broadcast::Receiver<WorkItem> {
        self.shared.settled_tx.subscribe()
    }

    /// How many `subscribe_settled` receivers are live (tests wait on it to know an
    /// `await_settled` is waiting).
    pub fn settled_subscribers(&self) -> usize {
        self.shared.settled_tx.receiver_count()
    }

    /// How many `subscribe_ready` receivers are live (tests wait on it to know a long poll is
    /// waiting).
    pub fn ready_subscribers(&self) -> usize {
        self.shared.ready_tx.receiver_count()
    }

    /// The board's clock now (milliseconds since the epoch; injectable for tests).
    pub fn now_ms(&self) -> u64 {
        (self.shared.clock)()
    }

    /// Committer counters (batches, ops, syncs, items written).
    pub fn stats(&self) -> StatsSnapshot {
        self.shared.stats.snapshot()
    }

    /// Runs `expire_leases` every `every` until the board shuts down. Needs a tokio runtime.
    pub fn spawn_lease_sweeper(&self, every: Duration) -> tokio::task::JoinHandle<()> {
        self.spawn_lease_sweeper_with(every, |_: &DurableBoard, _: &[ItemId]| {})
    }

    /// [`Self::spawn_lease_sweeper`] that calls `expired` with the items whose leases it
    /// expired (after their new state is durable), so the node can say so.
    pub fn spawn_lease_sweeper_with(
        &self,
        every: Duration,
        expired: impl Fn(&DurableBoard, &[ItemId]) + Send + 'static,
    ) -> tokio::task::JoinHandle<()> {
        let board = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let due = board
                    .shared
                    .view
                    .read()
                    .next_lease_expiry()
                    .is_some_and(|t| t <= (board.shared.clock)());
                if due {
                    match board.expire_leases().await {
                        Err(DurableError::Closed) => return,
                        Ok(ids) if !ids.is_empty() => expired(&board, &ids),
                        _ => {}
                    }
                } else if board.shared.tx.is_closed() {
                    return;
                }
            }
        })
    }

    /// Commits everything queued before this call, closes the store (releasing the database
    /// lock) and stops the committer. Later calls fail with `Closed`.
    pub async fn shutdown(&self) -> Result<(), DurableError> {
        let r = match self.call(Op::Shutdown).await {
            Ok(_) | Err(DurableError::Closed) => Ok(()),
            Err(e) => Err(e),
        };
        self.shared.wake.notify_one();
        r
    }
}

/// The backoff waker's loop (see [`DurableBoard::start_backoff_waker`]). `checked` is the
/// clock reading up to which passed backoffs have been handled: items whose backoff passed
/// before the waker started, or before the retry became durable, were already announced as
/// ready items and are claimable at once.
async fn backoff_waker(shared: Weak<Shared>, wake: Arc<Notify>, mut checked: u64) {
    loop {
        let next = {
            let Some(shared) = shared.upgrade() else {
                return;
            };
            if shared.tx.is_closed() {
                return;
            }
            let now = (shared.clock)();
            let (passed, next) = {
                let view = shared.view.read();
                let passed: Vec<WorkItem> = view
                    .backoffs_passed(checked, now)
                    .into_iter()
                    .cloned()
                    .collect();
                (passed, view.next_wake(now))
            };
            for item in passed {
                let _ = shared.ready_tx.send(item);
            }
            checked = checked.max(now);
            next.map(|t| Duration::from_millis(t.saturating_sub(now).max(1)))
        };
        match next {
            Some(delay) => {
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = wake.notified() => {}
                }
            }
            None => wake.notified().await,
        }
    }
}

/// Sync work handed from the committer to the syncer: one applied and written batch.
struct Pending {
    ops: usize,
    changes: Vec<Change>,
    /// Result parts written (or deleted) by the batch: they need the sync too.
    parts: usize,
    replies: Vec<(ReplyTx, Result<Reply, DurableError>)>,
    /// Set on the last message: the committer has dropped its store handle.
    shutdown: Option<ReplyTx>,
}

type Poison = Arc<parking_lot::Mutex<Option<String>>>;

struct Committer<S: BoardStore> {
    store: Arc<S>,
    parts: PartTable<S>,
    board: Board,
    rx: mpsc::Receiver<Request>,
    to_syncer: std::sync::mpsc::Sender<Pending>,
    stats: Arc<CommitStats>,
    max_batch: usize,
    clock: Clock,
    observer: Option<Observer>,
    poisoned: Poison,
}

fn emit(observer: &Option<Observer>, ev: CommitEvent) {
    if let Some(obs) = observer {
        obs(ev);
    }
}

impl<S: BoardStore> Committer<S> {
    /// Stage 1: take every queued request, apply it in memory, write the changed items to the
    /// store (not yet durable) and hand the batch to the syncer. While the syncer syncs, this
    /// thread already applies and writes the next batch, so one sync covers everything that
    /// arrived during the previous one.
    fn run(mut self) {
        let mut batch: Vec<Request> = Vec::with_capacity(self.max_batch);
        while let Some(first) = self.rx.blocking_recv() {
            batch.push(first);
            while batch.len() < self.max_batch {
                match self.rx.try_recv() {
                    Ok(r) => batch.push(r),
                    Err(_) => break,
                }
            }
            let (pending, shutdown) = self.apply_batch(&mut batch);
            let _ = self.to_syncer.send(pending);
            if let Some(reply) = shutdown {
                self.rx.close();
                let Committer {
                    store,
                    parts,
                    to_syncer,
                    ..
                } = self;
                // Drop our store handles first: the syncer holds the last one and closes the
                // store (releasing sled's lock) before confirming the shutdown.
                drop(store);
                drop(parts);
                let _ = to_syncer.send(Pending {
                    ops: 0,
                    changes: Vec::new(),
                    parts: 0,
                    replies: Vec::new(),
                    shutdown: Some(reply),
                });
                return;
            }
        }
    }

    fn apply_batch(&mut self, batch: &mut Vec<Request>) -> (Pending, Option<ReplyTx>) {
        let ops = batch.len();
        let mut shutdown = None;
        let mut replies: Vec<(ReplyTx, Result<Reply, DurableError>)> = Vec::with_capacity(ops);
        let mut changes: Vec<Change> = Vec::new();
        let poisoned = self.poisoned.lock().clone();
        let t0 = std::time::Instant::now();
        let now = (self.clock)();
        let mut backups: Vec<(ReplyTx, PathBuf)> = Vec::new();
        for req in batch.drain(..) {
            if let Op::Shutdown = req.op {
                shutdown = Some(req.reply);
                continue;
            }
            if let Op::Backup { dir } = req.op {
                backups.push((req.reply, dir));
                continue;
            }
            if let Some(reason) = &poisoned {
                replies.push((req.reply, Err(DurableError::Poisoned(reason.clone()))));
                continue;
            }
            let result = apply(&mut self.board, &mut self.parts, req.op, now, &mut changes);
            replies.push((req.reply, result));
        }
        let part_writes = self.parts.take();
        self.stats.batches.fetch_add(1, Ordering::Relaxed);
        self.stats.ops.fetch_add(ops as u64, Ordering::Relaxed);
        emit(
            &self.observer,
            CommitEvent::Applied {
                ops,
                changes: changes.len(),
            },
        );
        let mut parts = part_writes.len();
        if !changes.is_empty() || parts > 0 {
            if let Err(e) = self.write(&changes, &part_writes) {
                let e = Arc::new(e);
                *self.poisoned.lock() = Some(e.to_string());
                for (_, r) in replies.iter_mut() {
                    *r = Err(DurableError::Store(e.clone()));
                }
                changes.clear();
                parts = 0;
            }
        }
        // After the batch's write, the store holds every change applied so far: the copy is
        // the board at this point. The answer goes with the batch's, after its sync.
        for (reply, dir) in backups {
            let result = match self.poisoned.lock().clone() {
                Some(reason) => Err(DurableError::Poisoned(reason)),
                None => crate::backup::write_backup(&*self.store, &dir)
                    .map(Reply::Backup)
                    .map_err(|e| DurableError::Backup(Arc::new(e))),
            };
            replies.push((reply, result));
        }
        self.stats
            .apply_write_nanos
            .fetch_add(t0.elapsed().as_nanos() as u64, Ordering::Relaxed);
        (
            Pending {
                ops,
                changes,
                parts,
                replies,
                shutdown: None,
            },
            shutdown,
        )
    }

    /// Items first, then result parts: should a crash keep only the first of the two writes,
    /// what is left over is parts nothing reads (of a removed item, or past a completed
    /// item's count), never an item whose parts are gone.
    fn write(&mut self, changes: &[Change], parts: &[PartWrite]) -> Result<(), StoreError> {
        // Last state per item wins; order of first appearance is kept.
        let mut index: HashMap<&ItemId, usize> = HashMap::with_capacity(changes.len());
        let mut entries: Vec<WriteEntry<'_>> = Vec::with_capacity(changes.len());
        for c in changes {
            match index.get(&c.id) {
                Some(&i) => entries[i] = (&c.id, c.item.as_ref()),
                None => {
                    index.insert(&c.id, entries.len());
                    entries.push((&c.id, c.item.as_ref()));
                }
            }
        }
        if !entries.is_empty() {
            self.store.write(&entries, self.board.meta())?;
            self.stats
                .items_written
                .fetch_add(entries.len() as u64, Ordering::Relaxed);
        }
        if !parts.is_empty() {
            self.store.write_parts(parts)?;
        }
        Ok(())
    }
}

struct Syncer<S: BoardStore> {
    store: Arc<S>,
    rx: std::sync::mpsc::Receiver<Pending>,
    view: Arc<RwLock<Board>>,
    stats: Arc<CommitStats>,
    ready_tx: broadcast::Sender<WorkItem>,
    settled_tx: broadcast::Sender<WorkItem>,
    observer: Option<Observer>,
    poisoned: Poison,
    wake: Arc<Notify>,
}

impl<S: BoardStore> Syncer<S> {
    /// Stage 2: take every written batch, make them durable with ONE sync (sled flush +
    /// fdatasync), publish them to the read replica and subscribers, then reply.
    fn run(self) {
        let mut group: Vec<Pending> = Vec::new();
        while let Ok(first) = self.rx.recv() {
            group.push(first);
            while let Ok(more) = self.rx.try_recv() {
                group.push(more);
            }
            let shutdown = self.sync_group(&mut group);
            if let Some(reply) = shutdown {
                let Syncer { store, .. } = self;
                drop(store);
                let _ = reply.send(Ok(Reply::Done));
                return;
            }
        }
    }

    fn sync_group(&self, group: &mut Vec<Pending>) -> Option<ReplyTx> {
        let ops: usize = group.iter().map(|p| p.ops).sum();
        let needs_sync = group.iter().any(|p| !p.changes.is_empty() || p.parts > 0);
        let mut failure: Option<DurableError> =
            self.poisoned.lock().clone().map(DurableError::Poisoned);
        if needs_sync && failure.is_none() {
            let t0 = std::time::Instant::now();
            match self.store.sync() {
                Ok(()) => {
                    self.stats.syncs.fetch_add(1, Ordering::Relaxed);
                    self.stats
                        .sync_nanos
                        .fetch_add(t0.elapsed().as_nanos() as u64, Ordering::Relaxed);
                    emit(&self.observer, CommitEvent::Synced { ops });
                }
                Err(e) => {
                    let e = Arc::new(e);
                    *self.poisoned.lock() = Some(e.to_string());
                    failure = Some(DurableError::Store(e));
                }
            }
        }
        if failure.is_none() {
            let mut view = self.view.write();
            for p in group.iter() {
                view.apply_changes(&p.changes);
            }
            drop(view);
            let new_backoff = group.iter().flat_map(|p| &p.changes).any(|c| {
                c.kind == crate::state::ChangeKind::Retrying
                    && c.ready_item().is_some_and(|i| i.not_before_ms > 0)
            });
            if new_backoff {
                self.wake.notify_one();
            }
        }
        emit(&self.observer, CommitEvent::Replying { ops });
        let mut shutdown = None;
        for p in group.drain(..) {
            if failure.is_none() && self.ready_tx.receiver_count() > 0 {
                for c in &p.changes {
                    if let Some(item) = c.ready_item() {
                        let _ = self.ready_tx.send(item.clone());
                    }
                }
            }
            if failure.is_none() && self.settled_tx.receiver_count() > 0 {
                for c in &p.changes {
                    if let Some(item) = c.item.as_ref().filter(|i| i.status.is_settled()) {
                        let _ = self.settled_tx.send(item.clone());
                    }
                }
            }
            for (tx, r) in p.replies {
                let r = match (&failure, r) {
                    (Some(f), Ok(_)) => Err(f.clone()),
                    (_, r) => r,
                };
                let _ = tx.send(r);
            }
            if p.shutdown.is_some() {
                shutdown = p.shutdown;
            }
        }
        shutdown
    }
}

fn read_err(e: StoreError) -> DurableError {
    DurableError::Read(Arc::new(e))
}

fn item_id(id: &str) -> Result<ItemId, DurableError> {
    ItemId::new(id).map_err(|_| DurableError::Board(BoardError::NotFound { id: id.into() }))
}

/// The parts of `id` to delete if an operation that settles it without parts (or removes it)
/// succeeds; read before the operation, so a failed read changes nothing.
fn stray_parts<S: BoardStore>(
    board: &Board,
    parts: &PartTable<S>,
    id: &str,
    from: u32,
) -> Result<Option<(ItemId, Vec<u32>)>, DurableError> {
    let Some(item) = board.get(id) else {
        return Ok(None);
    };
    let found = parts.indices_from(&item.id, from).map_err(read_err)?;
    Ok((!found.is_empty()).then(|| (item.id.clone(), found)))
}

/// Piece `index` of `id`'s result (see [`DurableBoard::result_part`]).
fn read_part<S: BoardStore>(
    board: &Board,
    parts: &PartTable<S>,
    id: &str,
    index: u32,
) -> Result<Option<String>, DurableError> {
    let item = board
        .get(id)
        .ok_or_else(|| BoardError::NotFound { id: id.into() })?;
    let Some(count) = item.result_parts() else {
        return Ok(None);
    };
    if index >= count {
        return Ok(None);
    }
    let lost = |why: String| BoardError::PartLost {
        id: id.into(),
        index,
        why,
    };
    let token = match item.last_settle {
        Some(s) if s.kind == SettleKind::Completed => s.token,
        _ => return Err(lost("the item records no settling token".into()).into()),
    };
    match parts
        .get(&PartKey::new(item.id.clone(), index))
        .map_err(read_err)?
    {
        Some(p) if p.token == token => Ok(Some(p.text)),
        Some(p) => Err(lost(format!(
            "the stored piece is of token {}, the item was completed with token {token}",
            p.token
        ))
        .into()),
        None => Err(lost("it is missing".into()).into()),
    }
}

/// Checks that parts `0..count` of `id` were stored by `token` and hold `bytes` bytes.
fn check_parts<S: BoardStore>(
    parts: &PartTable<S>,
    id: &ItemId,
    token: u64,
    count: u32,
    bytes: u64,
) -> Result<(), DurableError> {
    let mut found: u64 = 0;
    for index in 0..count {
        let missing = |other_attempt| BoardError::PartMissing {
            id: id.to_string(),
            index,
            parts: count,
            other_attempt,
        };
        match parts
            .get(&PartKey::new(id.clone(), index))
            .map_err(read_err)?
        {
            Some(p) if p.token == token => found += p.text.len() as u64,
            Some(_) => return Err(missing(true).into()),
            None => return Err(missing(false).into()),
        }
    }
    if found != bytes {
        return Err(BoardError::PartsSize {
            id: id.to_string(),
            parts: count,
            found,
            announced: bytes,
        }
        .into());
    }
    Ok(())
}

fn apply<S: BoardStore>(
    board: &mut Board,
    parts: &mut PartTable<S>,
    op: Op,
    now: u64,
    changes: &mut Vec<Change>,
) -> Result<Reply, DurableError> {
    fn item(
        r: Result<crate::state::Outcome<WorkItem>, BoardError>,
        changes: &mut Vec<Change>,
    ) -> Result<Reply, DurableError> {
        let out = r?;
        changes.extend(out.changes);
        Ok(Reply::Item(out.value))
    }
    match op {
        Op::Add(new) => item(board.add(new, now), changes),
        Op::Claim {
            id,
            holder,
            lease_ms,
        } => item(board.claim(&id, &holder, lease_ms, now), changes),
        Op::ClaimNext {
            work_type,
            holder,
            lease_ms,
        } => {
            let out = board.claim_next(work_type.as_ref(), &holder, lease_ms, now)?;
            changes.extend(out.changes);
            Ok(Reply::MaybeItem(out.value))
        }
        Op::Start { id, token } => item(board.start(&id, token, now), changes),
        Op::Release { id, token, reason } => item(board.release(&id, token, reason), changes),
        Op::Heartbeat {
            id,
            token,
            lease_ms,
        } => item(board.heartbeat(&id, token, lease_ms, now), changes),
        Op::Complete { id, token, result } => {
            let stray = stray_parts(board, parts, &id, 0)?;
            let before = changes.len();
            let r = item(board.complete(&id, token, result, now), changes)?;
            // A repeat (no change) leaves the item, and whatever parts it has, as they are.
            if let Some((id, indices)) = stray.filter(|_| changes.len() > before) {
                parts.delete(&id, &indices);
            }
            Ok(r)
        }
        Op::Fail {
            id,
            token,
            error,
            retry,
        } => item(board.fail(&id, token, error, retry, now), changes),
        Op::CompleteWork { id, result, by } => {
            let stray = stray_parts(board, parts, &id, 0)?;
            let r = item(board.complete_work(&id, result, by, now), changes)?;
            if let Some((id, indices)) = stray {
                parts.delete(&id, &indices);
            }
            Ok(r)
        }
        Op::FailWork { id, error, by } => item(board.fail_work(&id, error, by, now), changes),
        Op::Cancel { id } => item(board.cancel(&id, now), changes),
        Op::Remove { id } => {
            let stray = stray_parts(board, parts, &id, 0)?;
            let r = item(board.remove(&id), changes)?;
            if let Some((id, indices)) = stray {
                parts.delete(&id, &indices);
            }
            Ok(r)
        }
        Op::PutPart {
            id,
            token,
            index,
            text,
        } => {
            board.check_token(&id, token)?;
            if text.len() > RESULT_PART_BYTES {
                return Err(BoardError::PartTooLarge {
                    id,
                    index,
                    bytes: text.len(),
                    limit: RESULT_PART_BYTES,
                }
                .into());
            }
            parts.put(
                PartKey::new(item_id(&id)?, index),
                StoredPart { token, text },
            );
            Ok(Reply::Done)
        }
        Op::CompleteInParts {
            id,
            token,
            preview,
            parts: count,
            bytes,
        } => {
            // A repeat answers with the item; a stale token is refused before the parts are
            // looked at.
            if let Some(done) = board.repeated_settle(&id, token, SettleKind::Completed)? {
                return Ok(Reply::Item(done));
            }
            board.check_token(&id, token)?;
            check_parts_request(&id, &preview, count)?;
            let key = item_id(&id)?;
            check_parts(parts, &key, token, count, bytes)?;
            let stray = stray_parts(board, parts, &id, count)?;
            let r = item(
                board.complete_in_parts(&id, token, preview, count, bytes, now),
                changes,
            )?;
            if let Some((id, indices)) = stray {
                parts.delete(&id, &indices);
            }
            Ok(r)
        }
        Op::ReadPart { id, index } => read_part(board, parts, &id, index).map(Reply::Part),
        // The committer takes backups out of the batch before `apply`.
        Op::Backup { .. } => Err(DurableError::Closed),
        Op::ExpireLeases => {
            let out = board.expire_leases(now);
            changes.extend(out.changes);
            Ok(Reply::Ids(out.value))
        }
        Op::Shutdown => Ok(Reply::Done),
    }
}
