//! The board actor's API as plain data: one request struct per board operation, each naming
//! its reply type, the [`BoardRequest`] set that carries them, and [`BoardMsg`], the board
//! actor's mailbox. Board workers on any node claim, heartbeat and settle items with fencing
//! tokens through these; `BoardClient` (in `workshop-board`) sends them.
//!
//! Requests travel in the same frames as the node's ([`crate::node::RequestFrame`], a
//! [`crate::node::CallEnvelope`] of a [`BoardRequest`]) and replies as an encoded
//! `Result<Reply, ApiError>`, decoded by the actor itself, so bad input is an error reply.
//! Board refusals a worker must act on come back typed: [`ApiError::StaleToken`] (the lease is
//! lost), [`ApiError::NoSuchItem`], [`ApiError::AlreadySettled`]; the rest as
//! [`ApiError::Board`] with the board's message.
//!
//! Wire compatibility: as for [`crate::api`], by field and variant position; new operations go
//! at the end of the list, and the golden files in `tests/golden/` show every change.

use std::collections::BTreeMap;

use ractor::RpcReplyPort;
use ractor_cluster_derive::RactorClusterMessage;
use serde::{Deserialize, Serialize};
use workshop_types::board::{NewItem, SettleBy, Status, WorkItem, WorkType};

use crate::api::{requests, Page};
use crate::node::{ReplyFrame, RequestFrame};

/// The pg group every board actor joins (within the cluster's scope).
pub const BOARD_GROUP: &str = "workshop.board";

requests! {
    /// Every operation the board actor answers.
    enum BoardRequest in mod req;

    /// Add an item: ready when it has no unmet dependencies, else new (or blocked).
    Add { item: NewItem } -> WorkItem;
    /// Claim the highest-priority, oldest claimable item (of `work_type`, if given); None when
    /// there is none.
    ClaimNext { work_type: Option<WorkType>, holder: String, lease_ms: u64 } -> Option<WorkItem>;
    /// Claim one ready item by id.
    Claim { id: String, holder: String, lease_ms: u64 } -> WorkItem;
    /// claimed -> in_progress, by the lease holder.
    Start { id: String, token: u64 } -> WorkItem;
    /// Renew the lease to now + `lease_ms`.
    Heartbeat { id: String, token: u64, lease_ms: u64 } -> WorkItem;
    /// Settle as done. Idempotent for the settling token.
    Complete { id: String, token: u64, result: String } -> WorkItem;
    /// Settle as failed; with `retry` and attempts left it is retried after a backoff.
    /// Idempotent for the settling token.
    Fail { id: String, token: u64, error: String, retry: bool } -> WorkItem;
    /// Hand a leased item back unfinished: ready again at once, no attempt counted.
    Release { id: String, token: u64, reason: String } -> WorkItem;
    /// Cancel an item (its dependents are blocked).
    Cancel { id: String } -> WorkItem;
    /// One item (durable state).
    Get { id: String } -> Option<WorkItem>;
    /// Items (filtered), sorted by priority then age, cut to fit one frame.
    List { status: Option<Status>, work_type: Option<WorkType>, claimed_by: Option<String> } -> Page<WorkItem>;
    /// Items per status (every status present).
    Counts {} -> BTreeMap<Status, u64>;
    /// A long poll: the claimable ready items (of `work_type`, if given) as soon as there is
    /// one, or an empty list after `wait_ms`. The remote form of `subscribe_ready`.
    WaitReady { work_type: Option<WorkType>, wait_ms: u64 } -> Vec<WorkItem>, waits = true;
    /// Settle a claimed or in-progress item as done by hand (the console's `complete_work`):
    /// with its lease token, as the holder would, or by force; neither is refused while the item
    /// is held.
    CompleteWork { id: String, result: String, by: Option<SettleBy> } -> WorkItem;
    /// Settle a claimed or in-progress item as failed by hand, without a retry (the console's
    /// `fail_work`): with its lease token or by force, as `CompleteWork`.
    FailWork { id: String, error: String, by: Option<SettleBy> } -> WorkItem;
    /// A long poll: the item as soon as it is settled (done, failed, blocked or cancelled), or
    /// as it stands after `wait_ms`; None when there is no such item.
    AwaitSettled { id: String, wait_ms: u64 } -> Option<WorkItem>, waits = true;
    /// Remove an item nothing depends on (a workflow's reset).
    Remove { id: String } -> WorkItem;
    /// Store piece `index` (at most `RESULT_PART_BYTES` of text) of the lease holder's result,
    /// for a result too large for one frame; durable when answered. Only the current lease's
    /// token may; the same index again replaces the piece.
    PutResultPart { id: String, token: u64, index: u32, text: String } -> ();
    /// Settle as done (like `Complete`) with a result stored as parts `0..parts` by this token
    /// (all must be there, holding `bytes` bytes): the item keeps `preview` (the result's first
    /// few KiB) as its `result` and `result_parts`/`result_bytes` in its metadata. Idempotent
    /// for the settling token.
    CompleteInParts { id: String, token: u64, preview: String, parts: u32, bytes: u64 } -> WorkItem;
    /// Piece `index` of the result of an item completed in parts; None past its last part (or
    /// when its result is not in parts).
    ResultPart { id: String, index: u32 } -> Option<String>;
    /// Copy the whole board (items, counters, result parts), as it stands at one point, into
    /// a NEW board database at `dir`: an absolute path on the BOARD NODE's filesystem that
    /// does not exist or is an empty directory. Answered once the copy is flushed and
    /// fdatasynced; other board writes wait while it runs. A node opens the copy as its
    /// `<data>/board`.
    Backup { dir: String } -> BackupInfo, waits = true;
}

/// What a board backup holds (the reply to `Backup`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupInfo {
    /// Work items copied.
    pub items: u64,
    /// Result parts copied.
    pub parts: u64,
}

/// The board actor's mailbox: one remotable RPC, like the node actor's.
#[derive(RactorClusterMessage)]
pub enum BoardMsg {
    #[rpc]
    Call(RequestFrame, RpcReplyPort<ReplyFrame>),
}
