//! The pure board state machine.
//!
//! [`Board`] holds every item in memory, takes the current time as an argument and does no I/O.
//! Every mutating operation returns an [`Outcome`]: its value plus the exact list of [`Change`]s
//! (item snapshots after the operation), so a caller can persist and publish exactly those.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use serde::{Deserialize, Serialize};

use crate::item::{
    InvalidIdReason, ItemId, Lease, NewItem, Settle, SettleBy, SettleKind, Status, WorkItem,
    WorkType, META_RESULT_BYTES, META_RESULT_PARTS, PRIORITY_HIGHEST, PRIORITY_LOWEST,
    RESULT_PREVIEW_BYTES,
};

/// Every refusal of the board, with the item and what to do about it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BoardError {
    #[error("no work item `{id}` on the board; check the id with board()")]
    NotFound { id: String },
    #[error("invalid work item id {id:?}: {reason}; use 1-128 characters of A-Z a-z 0-9 _ . : -")]
    InvalidId { id: String, reason: InvalidIdReason },
    #[error("work item `{id}` already exists; pick another id or remove the old item first")]
    DuplicateId { id: String },
    #[error("work item `{id}` depends on `{dep}`, which is not on the board; add `{dep}` first")]
    MissingDependency { id: String, dep: String },
    #[error(
        "work item `{id}` would close a dependency cycle ({}); drop one of these dependencies",
        cycle.join(" -> ")
    )]
    DependencyCycle { id: String, cycle: Vec<String> },
    #[error(
        "work item `{id}` has priority {priority}; priority must be 1 (highest) to 5 (lowest)"
    )]
    PriorityOutOfRange { id: String, priority: u8 },
    #[error("work item `{id}` has max_attempts 0; it must be at least 1")]
    InvalidMaxAttempts { id: String },
    #[error("invalid lease request for work item `{id}`: {reason}")]
    InvalidLease { id: String, reason: String },
    #[error("invalid transition for work item `{id}`: {from} -> {to}; {}", transition_hint(*from, *to))]
    InvalidTransition {
        id: String,
        from: Status,
        to: Status,
    },
    #[error("work item `{id}` is already done and cannot be cancelled")]
    AlreadyDone { id: String },
    #[error(
        "stale fencing token {presented} for work item `{id}` (it is {status}, {}); the lease \
         expired or the item was re-claimed, so stop working on it",
        match current { Some(t) => format!("current token {t}"), None => "no lease".to_string() }
    )]
    StaleToken {
        id: String,
        presented: u64,
        current: Option<u64>,
        status: Status,
    },
    #[error(
        "work item `{id}` was already {settled} with fencing token {token}, so it cannot also be \
         {attempted}; check its status with work_item(id)"
    )]
    AlreadySettled {
        id: String,
        token: u64,
        settled: SettleKind,
        attempted: SettleKind,
    },
    #[error(
        "work item `{id}` is {status}, held by {holder}: settle it with the lease token its \
         claim answered, or force it (logged; a board worker holding it loses it and its turn \
         is interrupted)"
    )]
    Held {
        id: String,
        status: Status,
        holder: String,
    },
    #[error(
        "cannot remove work item `{id}`: {} depend on it; remove them first",
        dependents.join(", ")
    )]
    HasDependents { id: String, dependents: Vec<String> },
    #[error(
        "result part {index} of work item `{id}` is {bytes} bytes; a part holds at most {limit} \
         bytes: cut the result into smaller parts"
    )]
    PartTooLarge {
        id: String,
        index: u32,
        bytes: usize,
        limit: usize,
    },
    #[error("cannot complete work item `{id}` in parts: {reason}")]
    InvalidParts { id: String, reason: String },
    #[error(
        "cannot complete work item `{id}` in {parts} parts: part {index} is missing{}; send it \
         with PutResultPart (with this lease's token) first",
        if *other_attempt { " (the stored one is from an earlier attempt)" } else { "" }
    )]
    PartMissing {
        id: String,
        index: u32,
        parts: u32,
        other_attempt: bool,
    },
    #[error(
        "cannot complete work item `{id}` in parts: its {parts} parts hold {found} bytes, not the \
         {announced} announced; send the parts again"
    )]
    PartsSize {
        id: String,
        parts: u32,
        found: u64,
        announced: u64,
    },
    #[error(
        "result part {index} of work item `{id}` is not on the board ({why}): the stored result \
         is incomplete; its preview is in work_item(\"{id}\"), run the item again to get it all"
    )]
    PartLost { id: String, index: u32, why: String },
}

/// A done item's result is in parts exactly when `complete_in_parts` settled it: a plain
/// completion drops these keys (set by hand, or left by nothing else).
fn strip_parts_metadata(item: &mut WorkItem) {
    item.metadata.remove(META_RESULT_PARTS);
    item.metadata.remove(META_RESULT_BYTES);
}

/// What `complete_in_parts` refuses before looking at the parts: no parts, or a preview that
/// would make the item large.
pub fn check_parts_request(id: &str, preview: &str, parts: u32) -> Result<(), BoardError> {
    if parts == 0 {
        return Err(BoardError::InvalidParts {
            id: id.to_string(),
            reason: "0 parts; complete a result without parts with Complete".into(),
        });
    }
    if preview.len() > RESULT_PREVIEW_BYTES {
        return Err(BoardError::InvalidParts {
            id: id.to_string(),
            reason: format!(
                "the preview is {} bytes; send at most the result's first {RESULT_PREVIEW_BYTES}",
                preview.len()
            ),
        });
    }
    Ok(())
}

fn transition_hint(from: Status, to: Status) -> &'static str {
    match (from, to) {
        (_, Status::Claimed) => "only a ready item can be claimed",
        (_, Status::InProgress) => "only a claimed item can be started",
        (_, Status::Done) => "only a claimed or in_progress item can be completed",
        (_, Status::Failed) => "only a claimed or in_progress item can be failed",
        (Status::Cancelled, Status::Cancelled) => "it is already cancelled",
        _ => "check its status with work_item(id)",
    }
}

/// What happened to an item in one operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ChangeKind {
    Added,
    Claimed,
    Started,
    Heartbeat,
    Completed,
    /// Failed with a retry left: back to ready after a backoff.
    Retrying,
    Failed,
    Cancelled,
    /// Lease expired with attempts left: back to ready.
    LeaseExpired,
    /// Lease expired and no attempts left: failed.
    DeadLettered,
    /// A dependent whose dependencies are now all done.
    Ready,
    /// A dependent (transitively) of a failed or cancelled item.
    Blocked,
    Removed,
    /// Handed back by its lease holder (a node stopping): ready again, no attempt counted.
    Released,
}

/// One changed item: its state after the operation (`None` when removed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub kind: ChangeKind,
    pub id: ItemId,
    pub item: Option<WorkItem>,
}

impl Change {
    /// The item if it is now ready (what workers get pushed).
    pub fn ready_item(&self) -> Option<&WorkItem> {
        self.item.as_ref().filter(|i| i.status == Status::Ready)
    }
}

/// The result of a mutating operation and the items it changed, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome<T> {
    pub value: T,
    pub changes: Vec<Change>,
}

/// Board-wide counters that must survive a restart.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Meta {
    /// The last fencing token handed out (tokens are globally monotonic).
    pub last_token: u64,
    /// The last insertion sequence number.
    pub last_seq: u64,
}

/// Retry backoff: `base * 2^(attempt-1)` capped at `max`, with "equal jitter" (the delay is
/// uniformly spread over `[d/2, d]`) derived deterministically from `(seed, id, attempt)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BoardConfig {
    pub backoff_base_ms: u64,
    pub backoff_max_ms: u64,
    pub jitter_seed: u64,
}

impl Default for BoardConfig {
    fn default() -> Self {
        BoardConfig {
            backoff_base_ms: 1_000,
            backoff_max_ms: 300_000,
            jitter_seed: 0x5eed,
        }
    }
}

impl BoardConfig {
    /// Backoff before retry number `attempt` (1-based) of item `id`.
    pub fn backoff_ms(&self, id: &str, attempt: u32) -> u64 {
        let shift = attempt.saturating_sub(1).min(40);
        let d = self
            .backoff_base_ms
            .saturating_mul(1u64 << shift)
            .min(self.backoff_max_ms);
        let half = d / 2;
        let span = d - half + 1;
        let mut h = self.jitter_seed ^ 0xcbf2_9ce4_8422_2325;
        for b in id.bytes() {
            h = (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
        }
        half + splitmix64(h ^ u64::from(attempt)) % span
    }
}

fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// `list()` filters; `None` matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListFilter {
    pub status: Option<Status>,
    pub work_type: Option<WorkType>,
    pub claimed_by: Option<String>,
}

impl ListFilter {
    pub fn status(mut self, s: Status) -> Self {
        self.status = Some(s);
        self
    }
    pub fn work_type(mut self, t: WorkType) -> Self {
        self.work_type = Some(t);
        self
    }
    pub fn claimed_by(mut self, holder: impl Into<String>) -> Self {
        self.claimed_by = Some(holder.into());
        self
    }
    fn matches(&self, item: &WorkItem) -> bool {
        self.status.is_none_or(|s| item.status == s)
            && self.work_type.as_ref().is_none_or(|t| &item.work_type == t)
            && self
                .claimed_by
                .as_deref()
                .is_none_or(|h| item.claimed_by.as_deref() == Some(h))
    }
}

/// Is a lease holder's `complete`/`fail` with `token` a repeat of the settle recorded on
/// `item`? See [`settle_repeat`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SettleRepeat {
    /// Not a repeat: the usual token check decides.
    No,
    /// `token` already settled the item the same way: answer with the item, change nothing.
    Same,
    /// `token` already settled the item the other way (the kind it was settled with).
    Opposite(SettleKind),
}

/// The idempotency rule of `complete`/`fail`: a call is a repeat when its token is the one
/// recorded in `item.last_settle` (tokens are unique per claim, so only that holder's settle
/// can match), and the current lease's token is a different one. Same outcome: success;
/// opposite outcome: refused. Result and error texts are not compared (the first one stands).
pub fn settle_repeat(item: &WorkItem, token: u64, kind: SettleKind) -> SettleRepeat {
    if item.token() == Some(token) {
        return SettleRepeat::No;
    }
    match item.last_settle {
        Some(Settle { token: t, kind: k }) if t == token && k == kind => SettleRepeat::Same,
        Some(Settle { token: t, kind: k }) if t == token => SettleRepeat::Opposite(k),
        _ => SettleRepeat::No,
    }
}

/// Ready-queue order: priority, then oldest, then insertion order.
type ReadyKey = (u8, u64, u64, ItemId);

fn ready_key(item: &WorkItem) -> ReadyKey {
    (item.priority, item.created_at_ms, item.seq, item.id.clone())
}

/// The in-memory board. See the module docs.
#[derive(Debug, Clone, Default)]
pub struct Board {
    config: BoardConfig,
    items: BTreeMap<ItemId, WorkItem>,
    /// dependency -> items that depend on it.
    dependents: BTreeMap<ItemId, BTreeSet<ItemId>>,
    ready: BTreeSet<ReadyKey>,
    ready_by_type: BTreeMap<WorkType, BTreeSet<ReadyKey>>,
    /// (lease expiry, id) of every leased item.
    leases: BTreeSet<(u64, ItemId)>,
    /// not_before_ms -> ready items with a retry backoff (`not_before_ms > 0`), passed or not.
    backoffs: BTreeMap<u64, BTreeSet<ItemId>>,
    meta: Meta,
}

impl Board {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn with_config(config: BoardConfig) -> Self {
        Board {
            config,
            ..Self::default()
        }
    }

    /// Rebuilds a board from stored items and counters (indexes are derived). The counters are
    /// raised to at least the highest token and sequence number found in the items.
    pub fn from_parts(
        config: BoardConfig,
        items: impl IntoIterator<Item = WorkItem>,
        meta: Meta,
    ) -> Self {
        let mut board = Board::with_config(config);
        board.meta = meta;
        for item in items {
            board.link_deps(&item);
            board.put(item);
        }
        board
    }

    pub fn config(&self) -> &BoardConfig {
        &self.config
    }

    pub fn meta(&self) -> Meta {
        self.meta
    }

    /// The last fencing token handed out.
    pub fn last_token(&self) -> u64 {
        self.meta.last_token
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    pub fn get(&self, id: &str) -> Option<&WorkItem> {
        self.items.get(id)
    }

    /// All items in id order.
    pub fn items(&self) -> impl Iterator<Item = &WorkItem> {
        self.items.values()
    }

    /// Items matching `filter`, sorted by (priority, created_at, insertion order).
    pub fn list(&self, filter: &ListFilter) -> Vec<&WorkItem> {
        let mut out: Vec<&WorkItem> = self.items.values().filter(|i| filter.matches(i)).collect();
        out.sort_by_key(|i| (i.priority, i.created_at_ms, i.seq));
        out
    }

    /// Count of items per status; every status is present, zero included.
    /// Is any item of this type (or any type) ready? Ignores retry backoff, so `claim_next` may
    /// still find nothing; a cheap check before a durable claim.
    pub fn has_ready(&self, work_type: Option<&WorkType>) -> bool {
        match work_type {
            None => !self.ready.is_empty(),
            Some(t) => self.ready_by_type.get(t).is_some_and(|s| !s.is_empty()),
        }
    }

    pub fn counts(&self) -> BTreeMap<Status, usize> {
        let mut out: BTreeMap<Status, usize> = Status::ALL.iter().map(|s| (*s, 0)).collect();
        for item in self.items.values() {
            *out.entry(item.status).or_default() += 1;
        }
        out
    }

    /// The earliest lease expiry, if any item is leased.
    pub fn next_lease_expiry(&self) -> Option<u64> {
        self.leases.first().map(|(t, _)| *t)
    }

    /// When the next retry backoff passes: the earliest `not_before_ms` after `now_ms` of a
    /// ready item. `None` when no ready item is waiting out a backoff.
    pub fn next_wake(&self, now_ms: u64) -> Option<u64> {
        let from = now_ms.checked_add(1)?;
        self.backoffs.range(from..).next().map(|(t, _)| *t)
    }

    /// Ready items whose backoff passed in `(after_ms, upto_ms]`, earliest first: what to push
    /// to workers when the clock moves from `after_ms` to `upto_ms`.
    pub fn backoffs_passed(&self, after_ms: u64, upto_ms: u64) -> Vec<&WorkItem> {
        let Some(from) = after_ms.checked_add(1) else {
            return Vec::new();
        };
        if from > upto_ms {
            return Vec::new();
        }
        self.backoffs
            .range(from..=upto_ms)
            .flat_map(|(_, ids)| ids.iter())
            .filter_map(|id| self.items.get(id))
            .collect()
    }

    // ---------------------------------------------------------------- index maintenance

    fn link_deps(&mut self, item: &WorkItem) {
        for dep in &item.depends_on {
            self.dependents
                .entry(dep.clone())
                .or_default()
                .insert(item.id.clone());
        }
    }

    fn unlink_deps(&mut self, item: &WorkItem) {
        for dep in &item.depends_on {
            if let Some(set) = self.dependents.get_mut(dep) {
                set.remove(&item.id);
                if set.is_empty() {
                    self.dependents.remove(dep);
                }
            }
        }
    }

    fn unindex(&mut self, item: &WorkItem) {
        if item.status == Status::Ready {
            if item.not_before_ms > 0 {
                if let Some(set) = self.backoffs.get_mut(&item.not_before_ms) {
                    set.remove(&item.id);
                    if set.is_empty() {
                        self.backoffs.remove(&item.not_before_ms);
                    }
                }
            }
            let key = ready_key(item);
            self.ready.remove(&key);
            if let Some(set) = self.ready_by_type.get_mut(&item.work_type) {
                set.remove(&key);
                if set.is_empty() {
                    self.ready_by_type.remove(&item.work_type);
                }
            }
        }
        if let Some(lease) = &item.lease {
            self.leases.remove(&(lease.expires_at_ms, item.id.clone()));
        }
    }

    fn index(&mut self, item: &WorkItem) {
        if item.status == Status::Ready {
            if item.not_before_ms > 0 {
                self.backoffs
                    .entry(item.not_before_ms)
                    .or_default()
                    .insert(item.id.clone());
            }
            let key = ready_key(item);
            self.ready.insert(key.clone());
            self.ready_by_type
                .entry(item.work_type.clone())
                .or_default()
                .insert(key);
        }
        if let Some(lease) = &item.lease {
            self.leases.insert((lease.expires_at_ms, item.id.clone()));
            self.meta.last_token = self.meta.last_token.max(lease.token);
        }
        self.meta.last_seq = self.meta.last_seq.max(item.seq);
    }

    /// Stores `item`, keeping every index right. The one way items change.
    fn put(&mut self, item: WorkItem) {
        if let Some(old) = self.items.remove(&item.id) {
            self.unindex(&old);
        }
        self.index(&item);
        self.items.insert(item.id.clone(), item);
    }

    fn put_change(&mut self, kind: ChangeKind, item: WorkItem, changes: &mut Vec<Change>) {
        changes.push(Change {
            kind,
            id: item.id.clone(),
            item: Some(item.clone()),
        });
        self.put(item);
    }

    /// Applies changes committed elsewhere (a read replica of the committer's board).
    pub fn apply_changes<'a>(&mut self, changes: impl IntoIterator<Item = &'a Change>) {
        for change in changes {
            match &change.item {
                Some(item) => {
                    if !self.items.contains_key(&item.id) {
                        self.link_deps(item);
                    }
                    self.put(item.clone());
                }
                None => {
                    if let Some(old) = self.items.remove(&change.id) {
                        self.unindex(&old);
                        self.unlink_deps(&old);
                    }
                }
            }
        }
    }

    fn item(&self, id: &str) -> Result<&WorkItem, BoardError> {
        self.items
            .get(id)
            .ok_or_else(|| BoardError::NotFound { id: id.to_string() })
    }

    /// The console's tokenless complete/fail: only a claimed or in_progress item can move `to`.
    /// An item settled by hand: claimed or in progress, and settled with the lease's token (a
    /// repeat of a settle with a token is the holder's business: [`Board::repeated_settle`]) or
    /// by force; without either, [`BoardError::Held`] names the holder.
    fn leased_by_hand(
        &self,
        id: &str,
        to: Status,
        by: Option<SettleBy>,
    ) -> Result<&WorkItem, BoardError> {
        let item = self.item(id)?;
        if matches!(by, Some(SettleBy::Token(_))) {
            return Ok(item);
        }
        if !item.status.is_leased() {
            return Err(BoardError::InvalidTransition {
                id: id.to_string(),
                from: item.status,
                to,
            });
        }
        match (by, &item.lease) {
            (None, Some(lease)) => Err(BoardError::Held {
                id: id.to_string(),
                status: item.status,
                holder: lease.holder.clone(),
            }),
            _ => Ok(item),
        }
    }

    /// A lease holder's `complete`/`fail` repeated: `Ok(Some(item))` when `token` already
    /// settled the item the same way (answer with the item, change nothing), `Err` when it
    /// settled it the other way, `Ok(None)` when this is not a repeat (go on as usual).
    pub fn repeated_settle(
        &self,
        id: &str,
        token: u64,
        kind: SettleKind,
    ) -> Result<Option<WorkItem>, BoardError> {
        let item = self.item(id)?;
        match settle_repeat(item, token, kind) {
            SettleRepeat::No => Ok(None),
            SettleRepeat::Same => Ok(Some(item.clone())),
            SettleRepeat::Opposite(settled) => Err(BoardError::AlreadySettled {
                id: id.to_string(),
                token,
                settled,
                attempted: kind,
            }),
        }
    }

    /// Refuses `token` unless it is the current lease's of item `id` (what a result part
    /// needs: only the lease holder stores pieces of its result).
    pub fn check_token(&self, id: &str, token: u64) -> Result<(), BoardError> {
        let item = self.item(id)?;
        match &item.lease {
            Some(lease) if lease.token == token => Ok(()),
            _ => Err(BoardError::StaleToken {
                id: id.to_string(),
                presented: token,
                current: item.token(),
                status: item.status,
            }),
        }
    }

    fn leased_item(&self, id: &str, token: u64) -> Result<WorkItem, BoardError> {
        let item = self.item(id)?;
        match &item.lease {
            Some(lease) if lease.token == token => Ok(item.clone()),
            _ => Err(BoardError::StaleToken {
                id: id.to_string(),
                presented: token,
                current: item.token(),
                status: item.status,
            }),
        }
    }

    // ---------------------------------------------------------------- operations

    /// `work(...)`: adds an item; it is ready when all its dependencies are done, blocked when
    /// one is failed, cancelled or blocked, and new otherwise.
    pub fn add(&mut self, new: NewItem, now_ms: u64) -> Result<Outcome<WorkItem>, BoardError> {
        let id = ItemId::new(new.id.clone()).map_err(|reason| BoardError::InvalidId {
            id: new.id.clone(),
            reason,
        })?;
        if self.items.contains_key(&id) {
            return Err(BoardError::DuplicateId { id: new.id });
        }
        if !(PRIORITY_HIGHEST..=PRIORITY_LOWEST).contains(&new.priority) {
            return Err(BoardError::PriorityOutOfRange {
                id: new.id,
                priority: new.priority,
            });
        }
        if new.max_attempts == 0 {
            return Err(BoardError::InvalidMaxAttempts { id: new.id });
        }
        let mut deps: Vec<ItemId> = Vec::with_capacity(new.depends_on.len());
        for dep in &new.depends_on {
            if dep == &new.id {
                return Err(BoardError::DependencyCycle {
                    id: new.id.clone(),
                    cycle: vec![new.id.clone(), new.id.clone()],
                });
            }
            match self.items.get_key_value(dep.as_str()) {
                Some((dep_id, _)) => {
                    if !deps.contains(dep_id) {
                        deps.push(dep_id.clone());
                    }
                }
                None => {
                    return Err(BoardError::MissingDependency {
                        id: new.id.clone(),
                        dep: dep.clone(),
                    })
                }
            }
        }
        // Items only depend on items that exist and `remove` refuses items with dependents, so
        // nothing can already point at a new id; check anyway in case a store held such a link.
        if self.dependents.contains_key(&id) {
            if let Some(cycle) = self.find_path_to(&deps, &id) {
                let mut names = vec![new.id.clone()];
                names.extend(cycle.into_iter().map(String::from));
                return Err(BoardError::DependencyCycle {
                    id: new.id,
                    cycle: names,
                });
            }
        }
        let statuses: Vec<Status> = deps
            .iter()
            .filter_map(|d| self.items.get(d).map(|i| i.status))
            .collect();
        let status = if statuses
            .iter()
            .any(|s| matches!(s, Status::Failed | Status::Cancelled | Status::Blocked))
        {
            Status::Blocked
        } else if statuses.iter().all(|s| *s == Status::Done) {
            Status::Ready
        } else {
            Status::New
        };
        self.meta.last_seq += 1;
        let item = WorkItem {
            id,
            title: new.title,
            spec: new.spec,
            work_type: new.work_type,
            priority: new.priority,
            depends_on: deps,
            status,
            claimed_by: None,
            lease: None,
            result: None,
            error: None,
            attempts: 0,
            max_attempts: new.max_attempts,
            lease_expiries: 0,
            not_before_ms: 0,
            created_at_ms: now_ms,
            claimed_at_ms: None,
            started_at_ms: None,
            completed_at_ms: None,
            seq: self.meta.last_seq,
            metadata: new.metadata,
            last_settle: None,
        };
        self.link_deps(&item);
        let mut changes = Vec::with_capacity(1);
        self.put_change(ChangeKind::Added, item.clone(), &mut changes);
        Ok(Outcome {
            value: item,
            changes,
        })
    }

    /// Depth-first search along `depends_on` from `from` for `target`; returns the path.
    fn find_path_to(&self, from: &[ItemId], target: &ItemId) -> Option<Vec<ItemId>> {
        let mut seen = BTreeSet::new();
        let mut stack: Vec<(ItemId, Vec<ItemId>)> =
            from.iter().map(|d| (d.clone(), vec![d.clone()])).collect();
        while let Some((cur, path)) = stack.pop() {
            if &cur == target {
                return Some(path);
            }
            if !seen.insert(cur.clone()) {
                continue;
            }
            if let Some(item) = self.items.get(&cur) {
                for d in &item.depends_on {
                    let mut p = path.clone();
                    p.push(d.clone());
                    stack.push((d.clone(), p));
                }
            }
        }
        None
    }

    fn check_lease_args(id: &str, holder: &str, lease_ms: u64) -> Result<(), BoardError> {
        if holder.is_empty() {
            return Err(BoardError::InvalidLease {
                id: id.to_string(),
                reason: "the holder name is empty; pass the worker's name".into(),
            });
        }
        if lease_ms == 0 {
            return Err(BoardError::InvalidLease {
                id: id.to_string(),
                reason: "lease_ms is 0; pass a lease longer than the heartbeat interval".into(),
            });
        }
        Ok(())
    }

    fn do_claim(
        &mut self,
        mut item: WorkItem,
        holder: &str,
        lease_ms: u64,
        now_ms: u64,
    ) -> Outcome<WorkItem> {
        self.meta.last_token += 1;
        item.status = Status::Claimed;
        item.claimed_by = Some(holder.to_string());
        item.claimed_at_ms = Some(now_ms);
        item.started_at_ms = None;
        item.lease = Some(Lease {
            holder: holder.to_string(),
            expires_at_ms: now_ms.saturating_add(lease_ms),
            token: self.meta.last_token,
        });
        let mut changes = Vec::with_capacity(1);
        self.put_change(ChangeKind::Claimed, item.clone(), &mut changes);
        Outcome {
            value: item,
            changes,
        }
    }

    /// `claim_work`: ready -> claimed under a lease with a fresh fencing token. An explicit
    /// claim ignores a pending retry backoff (`claim_next` honours it).
    pub fn claim(
        &mut self,
        id: &str,
        holder: &str,
        lease_ms: u64,
        now_ms: u64,
    ) -> Result<Outcome<WorkItem>, BoardError> {
        let item = self.item(id)?;
        if item.status != Status::Ready {
            return Err(BoardError::InvalidTransition {
                id: id.to_string(),
                from: item.status,
                to: Status::Claimed,
            });
        }
        Self::check_lease_args(id, holder, lease_ms)?;
        let item = item.clone();
        Ok(self.do_claim(item, holder, lease_ms, now_ms))
    }

    /// Claims the highest-priority, oldest ready item (of `work_type`, if given) whose retry
    /// backoff has passed. `None` when there is nothing to claim.
    pub fn claim_next(
        &mut self,
        work_type: Option<&WorkType>,
        holder: &str,
        lease_ms: u64,
        now_ms: u64,
    ) -> Result<Outcome<Option<WorkItem>>, BoardError> {
        Self::check_lease_args("<next>", holder, lease_ms)?;
        let queue = match work_type {
            Some(t) => self.ready_by_type.get(t),
            None => Some(&self.ready),
        };
        let found = queue.and_then(|q| {
            q.iter()
                .map(|k| &k.3)
                .find(|id| {
                    self.items
                        .get(*id)
                        .is_some_and(|i| i.not_before_ms <= now_ms)
                })
                .cloned()
        });
        let Some(id) = found else {
            return Ok(Outcome {
                value: None,
                changes: Vec::new(),
            });
        };
        let item = self.item(id.as_str())?.clone();
        let out = self.do_claim(item, holder, lease_ms, now_ms);
        Ok(Outcome {
            value: Some(out.value),
            changes: out.changes,
        })
    }

    /// `start_work`: claimed -> in_progress, by the lease holder.
    pub fn start(
        &mut self,
        id: &str,
        token: u64,
        now_ms: u64,
    ) -> Result<Outcome<WorkItem>, BoardError> {
        let mut item = self.leased_item(id, token)?;
        if item.status != Status::Claimed {
            return Err(BoardError::InvalidTransition {
                id: id.to_string(),
                from: item.status,
                to: Status::InProgress,
            });
        }
        item.status = Status::InProgress;
        item.started_at_ms = Some(now_ms);
        let mut changes = Vec::with_capacity(1);
        self.put_change(ChangeKind::Started, item.clone(), &mut changes);
        Ok(Outcome {
            value: item,
            changes,
        })
    }

    /// Extends the lease to `now + lease_ms`. A lease that has run out but has not been swept
    /// by `expire_leases` yet can still be renewed (nobody else can hold it meanwhile).
    pub fn heartbeat(
        &mut self,
        id: &str,
        token: u64,
        lease_ms: u64,
        now_ms: u64,
    ) -> Result<Outcome<WorkItem>, BoardError> {
        let mut item = self.leased_item(id, token)?;
        if lease_ms == 0 {
            return Err(BoardError::InvalidLease {
                id: id.to_string(),
                reason: "lease_ms is 0; pass a lease longer than the heartbeat interval".into(),
            });
        }
        if let Some(lease) = item.lease.as_mut() {
            lease.expires_at_ms = now_ms.saturating_add(lease_ms);
        }
        let mut changes = Vec::with_capacity(1);
        self.put_change(ChangeKind::Heartbeat, item.clone(), &mut changes);
        Ok(Outcome {
            value: item,
            changes,
        })
    }

    /// The lease holder gives the item back unfinished (its node is stopping): claimed or
    /// in_progress -> ready, with no attempt counted and the token retired.
    pub fn release(
        &mut self,
        id: &str,
        token: u64,
        reason: impl Into<String>,
    ) -> Result<Outcome<WorkItem>, BoardError> {
        let mut item = self.leased_item(id, token)?;
        let holder = item.lease.take().map(|l| l.holder).unwrap_or_default();
        item.status = Status::Ready;
        item.claimed_by = None;
        item.claimed_at_ms = None;
        item.started_at_ms = None;
        item.error = Some(format!("released by {holder}: {}", reason.into()));
        let mut changes = Vec::with_capacity(1);
        self.put_change(ChangeKind::Released, item.clone(), &mut changes);
        Ok(Outcome {
            value: item,
            changes,
        })
    }

    /// `complete_work` by the lease holder: -> done; dependents whose dependencies are now all
    /// done become ready.
    pub fn complete(
        &mut self,
        id: &str,
        token: u64,
        result: impl Into<String>,
        now_ms: u64,
    ) -> Result<Outcome<WorkItem>, BoardError> {
        if let Some(item) = self.repeated_settle(id, token, SettleKind::Completed)? {
            return Ok(Outcome {
                value: item,
                changes: Vec::new(),
            });
        }
        let mut item = self.leased_item(id, token)?;
        item.last_settle = Some(Settle {
            token,
            kind: SettleKind::Completed,
        });
        strip_parts_metadata(&mut item);
        Ok(self.do_complete(item, result.into(), now_ms))
    }

    /// `complete` with a result stored as `parts` result parts of `bytes` bytes (checked by the
    /// caller, which holds the parts): the item keeps `preview` as its `result` and records
    /// the parts in its metadata ([`META_RESULT_PARTS`], [`META_RESULT_BYTES`]). Idempotent
    /// for the settling token, like `complete`.
    pub fn complete_in_parts(
        &mut self,
        id: &str,
        token: u64,
        preview: String,
        parts: u32,
        bytes: u64,
        now_ms: u64,
    ) -> Result<Outcome<WorkItem>, BoardError> {
        if let Some(item) = self.repeated_settle(id, token, SettleKind::Completed)? {
            return Ok(Outcome {
                value: item,
                changes: Vec::new(),
            });
        }
        let mut item = self.leased_item(id, token)?;
        check_parts_request(id, &preview, parts)?;
        item.last_settle = Some(Settle {
            token,
            kind: SettleKind::Completed,
        });
        item.metadata
            .insert(META_RESULT_PARTS.to_string(), parts.to_string());
        item.metadata
            .insert(META_RESULT_BYTES.to_string(), bytes.to_string());
        Ok(self.do_complete(item, preview, now_ms))
    }

    /// `complete_work(id, result)` by hand: with the lease's token as its holder would
    /// ([`Board::complete`]), or by force (any holder); claimed or in_progress -> done.
    pub fn complete_work(
        &mut self,
        id: &str,
        result: impl Into<String>,
        by: Option<SettleBy>,
        now_ms: u64,
    ) -> Result<Outcome<WorkItem>, BoardError> {
        let item = self.leased_by_hand(id, Status::Done, by)?;
        if let Some(SettleBy::Token(token)) = by {
            return self.complete(id, token, result, now_ms);
        }
        let mut item = item.clone();
        item.last_settle = None;
        strip_parts_metadata(&mut item);
        Ok(self.do_complete(item, result.into(), now_ms))
    }

    fn do_complete(
        &mut self,
        mut item: WorkItem,
        result: String,
        now_ms: u64,
    ) -> Outcome<WorkItem> {
        item.status = Status::Done;
        item.lease = None;
        item.result = Some(result);
        item.completed_at_ms = Some(now_ms);
        let mut changes = Vec::new();
        self.put_change(ChangeKind::Completed, item.clone(), &mut changes);
        let dependents: Vec<ItemId> = self
            .dependents
            .get(&item.id)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default();
        for dep_id in dependents {
            let Some(d) = self.items.get(&dep_id) else {
                continue;
            };
            if matches!(d.status, Status::New | Status::Blocked)
                && d.depends_on
                    .iter()
                    .all(|x| self.items.get(x).is_some_and(|i| i.status == Status::Done))
            {
                let mut d = d.clone();
                d.status = Status::Ready;
                self.put_change(ChangeKind::Ready, d, &mut changes);
            }
        }
        Outcome {
            value: item,
            changes,
        }
    }

    /// `fail_work` by the lease holder. attempts + 1; with `retry` and attempts left the item
    /// goes back to ready after a jittered exponential backoff, otherwise it fails with the
    /// reason and its dependents are blocked, transitively.
    pub fn fail(
        &mut self,
        id: &str,
        token: u64,
        error: impl Into<String>,
        retry: bool,
        now_ms: u64,
    ) -> Result<Outcome<WorkItem>, BoardError> {
        if let Some(item) = self.repeated_settle(id, token, SettleKind::Failed)? {
            return Ok(Outcome {
                value: item,
                changes: Vec::new(),
            });
        }
        let mut item = self.leased_item(id, token)?;
        item.last_settle = Some(Settle {
            token,
            kind: SettleKind::Failed,
        });
        let error = error.into();
        item.attempts = item.attempts.saturating_add(1);
        item.lease = None;
        if retry && item.attempts < item.max_attempts {
            item.status = Status::Ready;
            item.claimed_by = None;
            item.claimed_at_ms = None;
            item.started_at_ms = None;
            item.not_before_ms =
                now_ms.saturating_add(self.config.backoff_ms(item.id.as_str(), item.attempts));
            item.error = Some(error);
            let mut changes = Vec::with_capacity(1);
            self.put_change(ChangeKind::Retrying, item.clone(), &mut changes);
            return Ok(Outcome {
                value: item,
                changes,
            });
        }
        let reason = if retry {
            format!(
                "{error} (attempt {} of {}; no retries left; dead-lettered)",
                item.attempts, item.max_attempts
            )
        } else {
            error
        };
        Ok(self.do_fail(item, reason, ChangeKind::Failed, now_ms))
    }

    /// `fail_work(id, error)` by hand, no retry: with the lease's token as its holder would
    /// ([`Board::fail`]), or by force (any holder); claimed or in_progress -> failed.
    pub fn fail_work(
        &mut self,
        id: &str,
        error: impl Into<String>,
        by: Option<SettleBy>,
        now_ms: u64,
    ) -> Result<Outcome<WorkItem>, BoardError> {
        let item = self.leased_by_hand(id, Status::Failed, by)?;
        if let Some(SettleBy::Token(token)) = by {
            return self.fail(id, token, error, false, now_ms);
        }
        let mut item = item.clone();
        item.attempts = item.attempts.saturating_add(1);
        item.lease = None;
        item.last_settle = None;
        Ok(self.do_fail(item, error.into(), ChangeKind::Failed, now_ms))
    }

    fn do_fail(
        &mut self,
        mut item: WorkItem,
        reason: String,
        kind: ChangeKind,
        now_ms: u64,
    ) -> Outcome<WorkItem> {
        item.status = Status::Failed;
        item.error = Some(reason);
        item.completed_at_ms = Some(now_ms);
        let mut changes = Vec::new();
        self.put_change(kind, item.clone(), &mut changes);
        self.block_dependents(&item.id, &mut changes);
        Outcome {
            value: item,
            changes,
        }
    }

    /// new/ready dependents of `root`, and theirs, become blocked.
    fn block_dependents(&mut self, root: &ItemId, changes: &mut Vec<Change>) {
        let mut seen: BTreeSet<ItemId> = BTreeSet::new();
        let mut queue: VecDeque<ItemId> = VecDeque::from([root.clone()]);
        while let Some(cur) = queue.pop_front() {
            let next: Vec<ItemId> = self
                .dependents
                .get(&cur)
                .map(|s| s.iter().cloned().collect())
                .unwrap_or_default();
            for dep_id in next {
                if !seen.insert(dep_id.clone()) {
                    continue;
                }
                if let Some(d) = self.items.get(&dep_id) {
                    if matches!(d.status, Status::New | Status::Ready) {
                        let mut d = d.clone();
                        d.status = Status::Blocked;
                        self.put_change(ChangeKind::Blocked, d, changes);
                    }
                }
                queue.push_back(dep_id);
            }
        }
    }

    /// `cancel_work`: any state but done -> cancelled; dependents blocked, transitively.
    pub fn cancel(&mut self, id: &str, now_ms: u64) -> Result<Outcome<WorkItem>, BoardError> {
        let item = self.item(id)?;
        match item.status {
            Status::Done => return Err(BoardError::AlreadyDone { id: id.to_string() }),
            Status::Cancelled => {
                return Err(BoardError::InvalidTransition {
                    id: id.to_string(),
                    from: Status::Cancelled,
                    to: Status::Cancelled,
                })
            }
            _ => {}
        }
        let mut item = item.clone();
        item.status = Status::Cancelled;
        item.lease = None;
        item.completed_at_ms = Some(now_ms);
        let mut changes = Vec::new();
        self.put_change(ChangeKind::Cancelled, item.clone(), &mut changes);
        self.block_dependents(&item.id, &mut changes);
        Ok(Outcome {
            value: item,
            changes,
        })
    }

    /// Every lease with `expires_at_ms <= now_ms` ends: attempts + 1, back to ready, or failed
    /// ("lease expired N times; dead-lettered") once attempts reach max_attempts.
    pub fn expire_leases(&mut self, now_ms: u64) -> Outcome<Vec<ItemId>> {
        let expired: Vec<ItemId> = self
            .leases
            .iter()
            .take_while(|(t, _)| *t <= now_ms)
            .map(|(_, id)| id.clone())
            .collect();
        let mut changes = Vec::new();
        for id in &expired {
            let Some(item) = self.items.get(id) else {
                continue;
            };
            let mut item = item.clone();
            let holder = item.lease.take().map(|l| l.holder).unwrap_or_default();
            item.attempts = item.attempts.saturating_add(1);
            item.lease_expiries = item.lease_expiries.saturating_add(1);
            if item.attempts >= item.max_attempts {
                let reason = format!(
                    "lease expired {} times (last holder {holder}); {} of {} attempts used; \
                     dead-lettered",
                    item.lease_expiries, item.attempts, item.max_attempts
                );
                let out = self.do_fail(item, reason, ChangeKind::DeadLettered, now_ms);
                changes.extend(out.changes);
            } else {
                item.status = Status::Ready;
                item.claimed_by = None;
                item.claimed_at_ms = None;
                item.started_at_ms = None;
                item.error = Some(format!("lease held by {holder} expired"));
                self.put_change(ChangeKind::LeaseExpired, item, &mut changes);
            }
        }
        Outcome {
            value: expired,
            changes,
        }
    }

    /// Removes an item that nothing depends on.
    pub fn remove(&mut self, id: &str) -> Result<Outcome<WorkItem>, BoardError> {
        let item = self.item(id)?;
        if let Some(deps) = self.dependents.get(id).filter(|s| !s.is_empty()) {
            return Err(BoardError::HasDependents {
                id: id.to_string(),
                dependents: deps.iter().map(|d| d.to_string()).collect(),
            });
        }
        let item = item.clone();
        self.unindex(&item);
        self.unlink_deps(&item);
        self.items.remove(id);
        Ok(Outcome {
            changes: vec![Change {
                kind: ChangeKind::Removed,
                id: item.id.clone(),
                item: None,
            }],
            value: item,
        })
    }

    /// Checks every structural invariant; `Err` names the first violation. Used by tests and
    /// after loading a store.
    pub fn check_invariants(&self) -> Result<(), String> {
        let mut ready = 0usize;
        let mut leased = 0usize;
        let mut backing_off = 0usize;
        for (id, item) in &self.items {
            if id != &item.id {
                return Err(format!("item stored under `{id}` has id `{}`", item.id));
            }
            if item.status.is_leased() != item.lease.is_some() {
                return Err(format!(
                    "`{id}` is {} but lease is {:?}",
                    item.status, item.lease
                ));
            }
            if let Some(l) = &item.lease {
                leased += 1;
                if l.token > self.meta.last_token {
                    return Err(format!("`{id}` has token {} > last_token", l.token));
                }
                if !self.leases.contains(&(l.expires_at_ms, id.clone())) {
                    return Err(format!("`{id}` lease missing from the lease index"));
                }
            }
            let dep_status: Vec<Option<Status>> = item
                .depends_on
                .iter()
                .map(|d| self.items.get(d).map(|i| i.status))
                .collect();
            let all_done = dep_status.iter().all(|s| *s == Some(Status::Done));
            let any_bad = dep_status.iter().any(|s| {
                matches!(
                    s,
                    Some(Status::Failed | Status::Cancelled | Status::Blocked)
                )
            });
            match item.status {
                Status::Ready | Status::Claimed | Status::InProgress | Status::Done
                    if !all_done =>
                {
                    return Err(format!(
                        "`{id}` is {} while a dependency is not done",
                        item.status
                    ));
                }
                Status::New if all_done => {
                    return Err(format!("`{id}` is new but all its dependencies are done"))
                }
                Status::New if any_bad => {
                    return Err(format!(
                        "`{id}` is new but a dependency failed, was cancelled or is blocked"
                    ))
                }
                Status::Blocked if all_done => {
                    return Err(format!(
                        "`{id}` is blocked but all its dependencies are done"
                    ))
                }
                _ => {}
            }
            if item.status == Status::Ready {
                ready += 1;
                if !self.ready.contains(&ready_key(item)) {
                    return Err(format!("`{id}` missing from the ready index"));
                }
                if item.not_before_ms > 0 {
                    backing_off += 1;
                    if !self
                        .backoffs
                        .get(&item.not_before_ms)
                        .is_some_and(|s| s.contains(id))
                    {
                        return Err(format!("`{id}` missing from the backoff index"));
                    }
                }
            }
            for d in &item.depends_on {
                if !self.dependents.get(d).is_some_and(|s| s.contains(id)) {
                    return Err(format!("`{id}` missing from dependents of `{d}`"));
                }
            }
            if item.seq > self.meta.last_seq {
                return Err(format!("`{id}` has seq {} > last_seq", item.seq));
            }
        }
        if ready != self.ready.len() {
            return Err(format!(
                "ready index has {} entries, {ready} items are ready",
                self.ready.len()
            ));
        }
        let by_type: usize = self.ready_by_type.values().map(BTreeSet::len).sum();
        if by_type != ready {
            return Err(format!(
                "ready-by-type index has {by_type} entries, {ready} ready"
            ));
        }
        let backoffs: usize = self.backoffs.values().map(BTreeSet::len).sum();
        if backoffs != backing_off {
            return Err(format!(
                "backoff index has {backoffs} entries, {backing_off} ready items have a backoff"
            ));
        }
        if leased != self.leases.len() {
            return Err(format!(
                "lease index has {} entries, {leased} items are leased",
                self.leases.len()
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
#[path = "state_tests.rs"]
mod tests;
