//! Passive board types: ids, work types, statuses, work items, leases and the `NewItem` builder.
//!
//! Everything here is serde-derivable as plain structs and externally tagged enums, so it goes
//! through bincode 2 (see `codec`) without `flatten`/`tag`/`untagged`/`skip`.

use std::borrow::Borrow;
use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Longest allowed item id, in bytes (ids are ASCII, so also in characters).
pub const MAX_ID_LEN: usize = 128;
/// Highest priority (most urgent).
pub const PRIORITY_HIGHEST: u8 = 1;
/// Lowest priority.
pub const PRIORITY_LOWEST: u8 = 5;
/// Priority of an item that does not say.
pub const DEFAULT_PRIORITY: u8 = 3;
/// Attempts (claims that ended in a failure or an expired lease) before an item is dead-lettered.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 3;

/// The largest piece of a result stored as one part (`PutResultPart`): well below sled's
/// blob threshold and a frame's size.
pub const RESULT_PART_BYTES: usize = 64 * 1024;
/// How much of a result completed in parts the item itself keeps as its `result` (a preview).
pub const RESULT_PREVIEW_BYTES: usize = 4 * 1024;
/// Results up to this size are completed in one `Complete`; longer ones are stored in parts.
pub const RESULT_INLINE_MAX_BYTES: usize = 1024 * 1024;
/// Metadata key of an item completed in parts: how many parts hold its result.
pub const META_RESULT_PARTS: &str = "result_parts";
/// Metadata key of an item completed in parts: the full result's length in bytes.
pub const META_RESULT_BYTES: &str = "result_bytes";

/// The longest prefix of `s` of at most `max` bytes that ends on a char boundary.
pub fn cut_at_char_boundary(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// `text` cut into pieces of at most `max` bytes (`max` at least 4, the longest UTF-8 char),
/// each ending on a char boundary; concatenated they are `text`. Empty text has no pieces.
pub fn split_at_char_boundaries(text: &str, max: usize) -> Vec<&str> {
    let max = max.max(4);
    let mut pieces = Vec::with_capacity(text.len() / max + 1);
    let mut rest = text;
    while !rest.is_empty() {
        let piece = cut_at_char_boundary(rest, max);
        pieces.push(piece);
        rest = &rest[piece.len()..];
    }
    pieces
}

/// The preview an item completed in parts keeps as its `result`: the first
/// [`RESULT_PREVIEW_BYTES`] of `text`, cut at a char boundary.
pub fn result_preview(text: &str) -> String {
    cut_at_char_boundary(text, RESULT_PREVIEW_BYTES).to_string()
}

/// Why a string is not a valid [`ItemId`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidIdReason {
    #[error("it is empty")]
    Empty,
    #[error("it is {len} characters long; the limit is {MAX_ID_LEN}")]
    TooLong { len: usize },
    #[error("it contains {ch:?}; only A-Z a-z 0-9 _ . : - are allowed")]
    BadChar { ch: char },
}

/// A validated work item id: 1–128 characters of `[A-Za-z0-9_.:-]`.
///
/// Because `\0` can never occur in an id, the store can keep its own metadata under keys that
/// start with `\0` in the same sled tree.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ItemId(String);

impl ItemId {
    /// Validates `s` as an item id.
    pub fn new(s: impl Into<String>) -> Result<Self, InvalidIdReason> {
        let s = s.into();
        Self::check(&s)?;
        Ok(ItemId(s))
    }

    /// Checks `s` without allocating.
    pub fn check(s: &str) -> Result<(), InvalidIdReason> {
        if s.is_empty() {
            return Err(InvalidIdReason::Empty);
        }
        if let Some(ch) = s
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | ':' | '-')))
        {
            return Err(InvalidIdReason::BadChar { ch });
        }
        if s.len() > MAX_ID_LEN {
            return Err(InvalidIdReason::TooLong { len: s.len() });
        }
        Ok(())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for ItemId {
    type Error = InvalidIdReason;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        ItemId::new(s)
    }
}

impl From<ItemId> for String {
    fn from(id: ItemId) -> String {
        id.0
    }
}

impl FromStr for ItemId {
    type Err = InvalidIdReason;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ItemId::new(s)
    }
}

impl Borrow<str> for ItemId {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for ItemId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ItemId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The kind of work; board workers subscribe by type.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum WorkType {
    Code,
    Review,
    Test,
    Docs,
    Deploy,
    Triage,
    /// A user-named type; `Custom("")` is AgentWorkshop's default `:custom`.
    Custom(String),
}

impl WorkType {
    /// AgentWorkshop's default type (`:custom`).
    pub fn custom() -> Self {
        WorkType::Custom(String::new())
    }
}

impl Default for WorkType {
    fn default() -> Self {
        WorkType::custom()
    }
}

impl fmt::Display for WorkType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WorkType::Code => f.write_str("code"),
            WorkType::Review => f.write_str("review"),
            WorkType::Test => f.write_str("test"),
            WorkType::Docs => f.write_str("docs"),
            WorkType::Deploy => f.write_str("deploy"),
            WorkType::Triage => f.write_str("triage"),
            WorkType::Custom(name) if name.is_empty() => f.write_str("custom"),
            WorkType::Custom(name) => write!(f, "custom:{name}"),
        }
    }
}

impl FromStr for WorkType {
    type Err = String;
    /// Parses `code`, `review`, `test`, `docs`, `deploy`, `triage`, `custom` or `custom:<name>`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "code" => WorkType::Code,
            "review" => WorkType::Review,
            "test" => WorkType::Test,
            "docs" => WorkType::Docs,
            "deploy" => WorkType::Deploy,
            "triage" => WorkType::Triage,
            "custom" => WorkType::custom(),
            other => match other.strip_prefix("custom:") {
                Some(name) if !name.is_empty() => WorkType::Custom(name.to_string()),
                _ => {
                    return Err(format!(
                        "unknown work type {other:?}; use code, review, test, docs, deploy, \
                         triage, custom or custom:<name>"
                    ))
                }
            },
        })
    }
}

/// Lifecycle state of a work item. Spelled as [`Status::as_str`] everywhere, JSON included
/// (`in_progress`, `done`); the binary codec stores the variant's index, not its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Has unmet dependencies, waiting.
    New,
    /// All dependencies done (or none); can be claimed.
    Ready,
    /// Claimed under a lease, not started yet.
    Claimed,
    /// Started by the lease holder.
    InProgress,
    Done,
    Failed,
    /// A dependency (or one of its dependencies) failed or was cancelled.
    Blocked,
    Cancelled,
}

impl Status {
    pub const ALL: [Status; 8] = [
        Status::New,
        Status::Ready,
        Status::Claimed,
        Status::InProgress,
        Status::Done,
        Status::Failed,
        Status::Blocked,
        Status::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::New => "new",
            Status::Ready => "ready",
            Status::Claimed => "claimed",
            Status::InProgress => "in_progress",
            Status::Done => "done",
            Status::Failed => "failed",
            Status::Blocked => "blocked",
            Status::Cancelled => "cancelled",
        }
    }

    /// True for the states that hold a lease.
    pub fn is_leased(self) -> bool {
        matches!(self, Status::Claimed | Status::InProgress)
    }

    /// True for the states `await_work` waits for: done, failed, blocked or cancelled (a
    /// blocked item waits for a dependency that will not complete).
    pub fn is_settled(self) -> bool {
        matches!(
            self,
            Status::Done | Status::Failed | Status::Blocked | Status::Cancelled
        )
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Status {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Status::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| {
                format!(
                    "unknown status {s:?}; use new, ready, claimed, in_progress, done, failed, \
                     blocked or cancelled"
                )
            })
    }
}

/// How a caller other than a board worker settles an item (`complete_work`, `fail_work`): as
/// the lease holder, with the token its claim answered, or by `Force`, which takes the item from
/// whoever holds it (logged; a board worker holding it loses it at its next heartbeat and its
/// turn is interrupted). Neither is refused while the item is claimed or in progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SettleBy {
    Token(u64),
    Force,
}

/// A time-limited claim. `token` is the fencing token: globally monotonic over the board, so a
/// holder whose lease expired and whose item was re-claimed can never complete it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    pub holder: String,
    pub expires_at_ms: u64,
    pub token: u64,
}

/// One item on the board.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkItem {
    pub id: ItemId,
    pub title: String,
    pub spec: String,
    pub work_type: WorkType,
    /// 1 (highest) ..= 5 (lowest).
    pub priority: u8,
    pub depends_on: Vec<ItemId>,
    pub status: Status,
    pub claimed_by: Option<String>,
    /// Present exactly when `status` is claimed or in_progress.
    pub lease: Option<Lease>,
    pub result: Option<String>,
    /// The last error (kept while a retry is pending; the reason when failed).
    pub error: Option<String>,
    /// Claims that ended in a failure or an expired lease.
    pub attempts: u32,
    pub max_attempts: u32,
    /// How many of those attempts ended because the lease expired.
    pub lease_expiries: u32,
    /// Retry backoff: `claim_next` skips the item until this time.
    pub not_before_ms: u64,
    pub created_at_ms: u64,
    pub claimed_at_ms: Option<u64>,
    pub started_at_ms: Option<u64>,
    pub completed_at_ms: Option<u64>,
    /// Insertion order on this board; breaks `created_at_ms` ties ("oldest first").
    pub seq: u64,
    pub metadata: BTreeMap<String, String>,
    /// The last settle by a lease holder (`complete`/`fail` with a token), so that a repeat of
    /// that same call is recognised and answered without a change. Kept when the item goes
    /// back to ready for a retry; replaced by the next settle; cleared by a tokenless settle.
    /// Last field on purpose: records written before it existed decode through
    /// [`crate::codec::decode_item`].
    pub last_settle: Option<Settle>,
}

/// How a lease holder settled an item.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SettleKind {
    /// `complete`: the item is done.
    Completed,
    /// `fail`: the item failed, or went back to ready for a retry.
    Failed,
}

impl SettleKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SettleKind::Completed => "completed",
            SettleKind::Failed => "failed",
        }
    }
}

impl fmt::Display for SettleKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The fencing token that settled an item and how.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Settle {
    pub token: u64,
    pub kind: SettleKind,
}

impl WorkItem {
    /// `[status] id - title [type] (claimed_by) deps:[...] pN error: ...`, as AgentWorkshop's
    /// board prints an item (the console, the CLI and the MCP tools all show it so).
    pub fn line(&self) -> String {
        let mut s = format!(
            "[{}] {} - {} [{}]",
            self.status, self.id, self.title, self.work_type
        );
        if let Some(c) = &self.claimed_by {
            s.push_str(&format!(" ({c})"));
        }
        if !self.depends_on.is_empty() {
            let deps: Vec<&str> = self.depends_on.iter().map(|d| d.as_str()).collect();
            s.push_str(&format!(" deps:[{}]", deps.join(", ")));
        }
        if self.priority != 3 {
            s.push_str(&format!(" p{}", self.priority));
        }
        if let Some(e) = &self.error {
            s.push_str(&format!(" error: {e}"));
        }
        s
    }

    /// The fencing token of the current lease, if any.
    pub fn token(&self) -> Option<u64> {
        self.lease.as_ref().map(|l| l.token)
    }

    /// How many parts hold the result of an item completed in parts (its `result` is then a
    /// preview); None when the result, if any, is all in `result`.
    pub fn result_parts(&self) -> Option<u32> {
        if self.status != Status::Done {
            return None;
        }
        self.metadata.get(META_RESULT_PARTS)?.parse().ok()
    }

    /// The full result's length in bytes of an item completed in parts.
    pub fn result_bytes(&self) -> Option<u64> {
        self.result_parts()?;
        self.metadata.get(META_RESULT_BYTES)?.parse().ok()
    }
}

/// What `Board::add` takes: AgentWorkshop's `work(id, title, type:, spec:, priority:,
/// depends_on:)`. Fields are unvalidated; `add` checks them and names the problem.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewItem {
    pub id: String,
    pub title: String,
    pub spec: String,
    pub work_type: WorkType,
    pub priority: u8,
    pub depends_on: Vec<String>,
    pub max_attempts: u32,
    pub metadata: BTreeMap<String, String>,
}

impl NewItem {
    /// An item with defaults: type custom, empty spec, priority 3, no dependencies, 3 attempts.
    pub fn new(id: impl Into<String>, title: impl Into<String>) -> Self {
        NewItem {
            id: id.into(),
            title: title.into(),
            spec: String::new(),
            work_type: WorkType::default(),
            priority: DEFAULT_PRIORITY,
            depends_on: Vec::new(),
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            metadata: BTreeMap::new(),
        }
    }

    /// AgentWorkshop's `work(id, title, type:, spec:, priority:, depends_on:)` in one call.
    pub fn work<D, S>(
        id: impl Into<String>,
        title: impl Into<String>,
        work_type: WorkType,
        spec: impl Into<String>,
        priority: u8,
        depends_on: D,
    ) -> Self
    where
        D: IntoIterator<Item = S>,
        S: Into<String>,
    {
        NewItem::new(id, title)
            .work_type(work_type)
            .spec(spec)
            .priority(priority)
            .depends_on(depends_on)
    }

    pub fn work_type(mut self, work_type: WorkType) -> Self {
        self.work_type = work_type;
        self
    }

    pub fn spec(mut self, spec: impl Into<String>) -> Self {
        self.spec = spec.into();
        self
    }

    pub fn priority(mut self, priority: u8) -> Self {
        self.priority = priority;
        self
    }

    pub fn depends_on<D, S>(mut self, deps: D) -> Self
    where
        D: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.depends_on = deps.into_iter().map(Into::into).collect();
        self
    }

    pub fn max_attempts(mut self, max_attempts: u32) -> Self {
        self.max_attempts = max_attempts;
        self
    }

    pub fn meta(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.metadata.insert(key.into(), value.into());
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn item_id_validation() {
        assert!(ItemId::new("a").is_ok());
        assert!(ItemId::new("wf_stage-1.v2:x").is_ok());
        assert!(ItemId::new("x".repeat(128)).is_ok());
        assert_eq!(ItemId::new(""), Err(InvalidIdReason::Empty));
        assert_eq!(
            ItemId::new("x".repeat(129)),
            Err(InvalidIdReason::TooLong { len: 129 })
        );
        assert_eq!(
            ItemId::new("a b"),
            Err(InvalidIdReason::BadChar { ch: ' ' })
        );
        assert_eq!(ItemId::new("é"), Err(InvalidIdReason::BadChar { ch: 'é' }));
        assert_eq!(
            ItemId::new("a\0"),
            Err(InvalidIdReason::BadChar { ch: '\0' })
        );
    }

    #[test]
    fn work_type_and_status_round_trip_text() {
        for t in [
            WorkType::Code,
            WorkType::Review,
            WorkType::Test,
            WorkType::Docs,
            WorkType::Deploy,
            WorkType::Triage,
            WorkType::custom(),
            WorkType::Custom("lint".into()),
        ] {
            assert_eq!(t.to_string().parse::<WorkType>(), Ok(t));
        }
        assert!("nope".parse::<WorkType>().is_err());
        for s in Status::ALL {
            assert_eq!(s.to_string().parse::<Status>(), Ok(s));
        }
    }

    #[test]
    fn cuts_fall_on_char_boundaries() {
        assert_eq!(cut_at_char_boundary("hello", 10), "hello");
        assert_eq!(cut_at_char_boundary("hello", 3), "hel");
        assert_eq!(cut_at_char_boundary("", 0), "");
        // "é" is 2 bytes, "€" 3, "𝄞" 4: a cut inside one backs off to its start.
        assert_eq!(cut_at_char_boundary("aé", 2), "a");
        assert_eq!(cut_at_char_boundary("aé", 3), "aé");
        assert_eq!(cut_at_char_boundary("a€b", 2), "a");
        assert_eq!(cut_at_char_boundary("a€b", 3), "a");
        assert_eq!(cut_at_char_boundary("a€b", 4), "a€");
        assert_eq!(cut_at_char_boundary("𝄞", 3), "");
        // The preview: at most RESULT_PREVIEW_BYTES, at a boundary, a prefix.
        let text = format!("{}€€€", "x".repeat(RESULT_PREVIEW_BYTES - 1));
        let p = result_preview(&text);
        assert_eq!(p.len(), RESULT_PREVIEW_BYTES - 1);
        assert!(text.starts_with(&p));
        let short = "short €";
        assert_eq!(result_preview(short), short);
    }

    #[test]
    fn pieces_rejoin_to_the_text() {
        assert!(split_at_char_boundaries("", 8).is_empty());
        let text = "ab€cd𝄞e€€f";
        for max in 4..=text.len() + 1 {
            let pieces = split_at_char_boundaries(text, max);
            assert_eq!(pieces.concat(), text, "max {max}");
            assert!(pieces.iter().all(|p| !p.is_empty() && p.len() <= max));
        }
        let big = "é".repeat(100_000);
        let pieces = split_at_char_boundaries(&big, RESULT_PART_BYTES);
        assert_eq!(pieces.len(), 4);
        assert_eq!(pieces[0].len(), RESULT_PART_BYTES);
        assert_eq!(pieces.concat(), big);
        // An odd limit cuts before the char that would cross it.
        let pieces = split_at_char_boundaries(&big, 5);
        assert!(pieces.iter().all(|p| p.len() == 4));
    }

    #[test]
    fn result_parts_are_read_from_a_done_items_metadata() {
        let mut item = WorkItem {
            id: ItemId::new("a").expect("a valid id"),
            title: String::new(),
            spec: String::new(),
            work_type: WorkType::Code,
            priority: 3,
            depends_on: Vec::new(),
            status: Status::Done,
            claimed_by: None,
            lease: None,
            result: Some("pre".into()),
            error: None,
            attempts: 0,
            max_attempts: 3,
            lease_expiries: 0,
            not_before_ms: 0,
            created_at_ms: 0,
            claimed_at_ms: None,
            started_at_ms: None,
            completed_at_ms: None,
            seq: 1,
            metadata: BTreeMap::new(),
            last_settle: None,
        };
        assert_eq!(item.result_parts(), None);
        item.metadata.insert(META_RESULT_PARTS.into(), "3".into());
        item.metadata
            .insert(META_RESULT_BYTES.into(), "150000".into());
        assert_eq!(item.result_parts(), Some(3));
        assert_eq!(item.result_bytes(), Some(150_000));
        item.status = Status::Ready;
        assert_eq!(item.result_parts(), None);
    }

    #[test]
    fn new_item_builder() {
        let n = NewItem::work("a", "A", WorkType::Code, "do it", 1, ["b", "c"]);
        assert_eq!(n.priority, 1);
        assert_eq!(n.depends_on, vec!["b".to_string(), "c".to_string()]);
        assert_eq!(n.max_attempts, DEFAULT_MAX_ATTEMPTS);
        let d = NewItem::new("x", "X");
        assert_eq!(d.priority, DEFAULT_PRIORITY);
        assert_eq!(d.work_type, WorkType::custom());
    }
}
