//! Persistence of the board: the [`BoardStore`] trait and its two implementations,
//! [`SledStore`] (the real one) and [`MemoryStore`] (tests).
//!
//! A store keeps one value per item (key: the id's bytes) plus the board counters ([`Meta`])
//! under [`META_KEY`], all encoded with [`crate::codec`]. `write` applies one batch atomically;
//! `sync` makes everything written so far survive a killed process *and* a machine crash.
//! Result parts ([`crate::parts`]) live apart from the items (their own sled tree): they are
//! not loaded with the board, but read one at a time.

use std::path::PathBuf;

use crate::codec::CodecError;
use crate::item::{ItemId, WorkItem};
use crate::parts::{PartKey, PartWrite, StoredPart};
use crate::state::{Board, BoardConfig, Meta};

pub mod memory;
pub mod sled;

pub use self::memory::MemoryStore;
pub use self::sled::SledStore;

/// Key of the board counters. `\0` never occurs in an item id, so it cannot collide.
pub const META_KEY: &[u8] = b"\0meta";

/// One entry of a write batch: the item's new state, or `None` to delete it.
pub type WriteEntry<'a> = (&'a ItemId, Option<&'a WorkItem>);

/// Which table of a store a raw entry belongs to (see [`BoardStore::export`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Table {
    /// The items and the board counters (under [`META_KEY`]).
    Items,
    /// The result parts.
    Parts,
}

/// What receives the raw entries of [`BoardStore::export`].
pub type ExportSink<'a> = dyn FnMut(Table, &[u8], &[u8]) -> Result<(), StoreError> + 'a;

/// Storage failures, each naming the directory and what to do.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "another process holds the board database at {dir}; stop it or use another --data-dir"
    )]
    Locked { dir: PathBuf },
    #[error(
        "the board database at {dir} is corrupt ({detail}); move it aside and restore a backup, \
         or start with an empty --data-dir"
    )]
    Corrupt { dir: PathBuf, detail: String },
    #[error("I/O error on the board database at {dir} while {action}: {source}")]
    Io {
        dir: PathBuf,
        action: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("the board database at {dir} failed while {action}: {detail}")]
    Backend {
        dir: PathBuf,
        action: &'static str,
        detail: String,
    },
    #[error("cannot encode {what} for the board database: {source}")]
    Encode {
        what: String,
        #[source]
        source: CodecError,
    },
    #[error("injected failure: {0}")]
    Injected(String),
}

/// Where a board lives. The committer writes from one thread while the syncer syncs from
/// another, so both take `&self`.
pub trait BoardStore: Send + Sync + 'static {
    /// Reads every item and the counters and rebuilds the board.
    fn load(&self, config: BoardConfig) -> Result<Board, StoreError>;
    /// Writes one batch of item changes plus the counters, atomically (all or nothing after a
    /// crash). Not yet durable: call [`BoardStore::sync`].
    fn write(&self, entries: &[WriteEntry<'_>], meta: Meta) -> Result<(), StoreError>;
    /// Writes one batch of result part changes, atomically. Not yet durable: call
    /// [`BoardStore::sync`]. The committer writes a batch's parts after its items.
    fn write_parts(&self, parts: &[PartWrite]) -> Result<(), StoreError>;
    /// One result part as written so far (durable or not), or None.
    fn read_part(&self, key: &PartKey) -> Result<Option<StoredPart>, StoreError>;
    /// The indices of `id`'s stored result parts, ascending.
    fn part_indices(&self, id: &ItemId) -> Result<Vec<u32>, StoreError>;
    /// Whether any result part is stored.
    fn has_parts(&self) -> Result<bool, StoreError>;
    /// Makes every write so far durable against process and machine crashes.
    fn sync(&self) -> Result<(), StoreError>;
    /// Human-readable location, for messages.
    fn location(&self) -> String;
    /// Hands every stored entry as written so far (items with the counters, then result parts)
    /// to `sink`, raw (encoded as stored), for a backup. The caller keeps writes out while it
    /// runs (the committer calls it between batches).
    fn export(&self, sink: &mut ExportSink<'_>) -> Result<(), StoreError>;
}

/// Decodes stored `(key, value)` pairs into a board; shared by the stores.
pub(crate) fn board_from_pairs<I>(
    dir: &std::path::Path,
    config: BoardConfig,
    pairs: I,
) -> Result<Board, StoreError>
where
    I: IntoIterator<Item = Result<(Vec<u8>, Vec<u8>), StoreError>>,
{
    let corrupt = |detail: String| StoreError::Corrupt {
        dir: dir.to_path_buf(),
        detail,
    };
    let mut meta = Meta::default();
    let mut items = Vec::new();
    for pair in pairs {
        let (key, value) = pair?;
        if key == META_KEY {
            meta = crate::codec::decode(&value)
                .map_err(|e| corrupt(format!("board counters: {e}")))?;
            continue;
        }
        let shown = String::from_utf8_lossy(&key).into_owned();
        let item: WorkItem = crate::codec::decode_item(&value)
            .map_err(|e| corrupt(format!("work item `{shown}`: {e}")))?;
        if item.id.as_str().as_bytes() != key.as_slice() {
            return Err(corrupt(format!(
                "key `{shown}` holds work item `{}`",
                item.id
            )));
        }
        items.push(item);
    }
    let board = Board::from_parts(config, items, meta);
    board
        .check_invariants()
        .map_err(|e| corrupt(format!("inconsistent board: {e}")))?;
    Ok(board)
}

/// An encoded key and its value (`None`: delete).
pub(crate) type EncodedEntry = (Vec<u8>, Option<Vec<u8>>);

pub(crate) fn encode_entries(
    entries: &[WriteEntry<'_>],
    meta: Meta,
) -> Result<Vec<EncodedEntry>, StoreError> {
    let mut out = Vec::with_capacity(entries.len() + 1);
    for (id, item) in entries {
        let value = match item {
            Some(item) => {
                Some(
                    crate::codec::encode(item).map_err(|source| StoreError::Encode {
                        what: format!("work item `{id}`"),
                        source,
                    })?,
                )
            }
            None => None,
        };
        out.push((id.as_str().as_bytes().to_vec(), value));
    }
    let meta = crate::codec::encode(&meta).map_err(|source| StoreError::Encode {
        what: "board counters".into(),
        source,
    })?;
    out.push((META_KEY.to_vec(), Some(meta)));
    Ok(out)
}

/// Encoded keys and values of a part write batch (`None`: delete).
pub(crate) fn encode_parts(parts: &[PartWrite]) -> Result<Vec<EncodedEntry>, StoreError> {
    parts
        .iter()
        .map(|(key, part)| {
            let value = match part {
                Some(p) => Some(
                    crate::codec::encode(p).map_err(|source| StoreError::Encode {
                        what: key.to_string(),
                        source,
                    })?,
                ),
                None => None,
            };
            Ok((key.encode(), value))
        })
        .collect()
}

/// A stored part's value; a value that does not decode is corrupt data, named.
pub(crate) fn decode_part(
    dir: &std::path::Path,
    key: &PartKey,
    value: &[u8],
) -> Result<StoredPart, StoreError> {
    crate::codec::decode(value).map_err(|e| StoreError::Corrupt {
        dir: dir.to_path_buf(),
        detail: format!("{key}: {e}"),
    })
}

/// The indices of the part keys among `keys` that belong to `id` (others are skipped).
pub(crate) fn part_indices_of<I>(id: &ItemId, keys: I) -> Vec<u32>
where
    I: IntoIterator<Item = Vec<u8>>,
{
    keys.into_iter()
        .filter_map(|k| PartKey::decode(&k))
        .filter(|k| &k.id == id)
        .map(|k| k.index)
        .collect()
}
