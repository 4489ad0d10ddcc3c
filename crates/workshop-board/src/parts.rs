//! Result parts: a result too large for one frame is stored as pieces of at most
//! [`RESULT_PART_BYTES`] beside the items (a sled tree of its own, `result_parts`), each written
//! through the group commit like any other board write, so an acknowledged part is on disk.
//!
//! - Key: the item id's bytes, a `\0` (never in an id), the part index as 4 big-endian bytes.
//!   An item's parts are one contiguous key range (`id\0` is their prefix, and no other id's
//!   parts share it), in index order.
//! - Value: [`StoredPart`], the piece and the fencing token of the lease holder that stored it
//!   (encoded with [`crate::codec`]). A retried item stores its parts under the same keys; the
//!   token tells a piece of an earlier attempt from one of the settling attempt, so parts of
//!   two attempts never mix: `CompleteInParts` accepts only pieces of its own token and deletes
//!   any beyond its count, reads return only pieces of the token that settled the item.
//! - An item's parts are deleted when it is removed and when it is completed without parts.
//!
//! The committer reads parts from the store (they are not kept in memory) through
//! [`PartTable`], which also holds the part writes of the batch being applied, so a later
//! request of the same batch sees them.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

pub use crate::item::RESULT_PART_BYTES;
use crate::item::{ItemId, WorkItem};
use crate::state::BoardError;
use crate::store::{BoardStore, StoreError};

/// Where one part lives: its item and its index.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PartKey {
    pub id: ItemId,
    pub index: u32,
}

impl PartKey {
    pub fn new(id: ItemId, index: u32) -> Self {
        Self { id, index }
    }

    /// `id ‖ 0x00 ‖ index (big-endian)`: an item's parts sort together, in index order.
    pub fn encode(&self) -> Vec<u8> {
        let mut key = Self::prefix(&self.id);
        key.extend_from_slice(&self.index.to_be_bytes());
        key
    }

    /// The prefix every key of `id`'s parts starts with (and no other item's part key does).
    pub fn prefix(id: &ItemId) -> Vec<u8> {
        let mut key = Vec::with_capacity(id.as_str().len() + 5);
        key.extend_from_slice(id.as_str().as_bytes());
        key.push(0);
        key
    }

    /// The key encoded by [`PartKey::encode`]; None for bytes that are not one.
    pub fn decode(bytes: &[u8]) -> Option<PartKey> {
        let split = bytes.len().checked_sub(5)?;
        let (id, rest) = bytes.split_at(split);
        let (&sep, index) = rest.split_first()?;
        if sep != 0 {
            return None;
        }
        let id = ItemId::new(std::str::from_utf8(id).ok()?).ok()?;
        let index = u32::from_be_bytes(index.try_into().ok()?);
        Some(PartKey { id, index })
    }
}

impl std::fmt::Display for PartKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "part {} of work item `{}`", self.index, self.id)
    }
}

/// One stored piece of a result and the fencing token of the lease holder that stored it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredPart {
    pub token: u64,
    pub text: String,
}

/// One entry of a part write batch: the part's new value, or `None` to delete it.
pub type PartWrite = (PartKey, Option<StoredPart>);

/// The committer's access to the parts: the store, plus the part writes of the batch being
/// applied (not in the store yet), which later requests of the batch must see.
pub(crate) struct PartTable<S: BoardStore> {
    store: Arc<S>,
    /// This batch's part writes, last one per key.
    pending: BTreeMap<PartKey, Option<StoredPart>>,
    /// Whether the store may hold any part (false: no lookups needed). Set by the first write.
    any: bool,
}

impl<S: BoardStore> PartTable<S> {
    pub(crate) fn new(store: Arc<S>) -> Result<Self, StoreError> {
        let any = store.has_parts()?;
        Ok(Self {
            store,
            pending: BTreeMap::new(),
            any,
        })
    }

    /// The part at `key` as the batch leaves it.
    pub(crate) fn get(&self, key: &PartKey) -> Result<Option<StoredPart>, StoreError> {
        if let Some(p) = self.pending.get(key) {
            return Ok(p.clone());
        }
        if !self.any {
            return Ok(None);
        }
        self.store.read_part(key)
    }

    pub(crate) fn put(&mut self, key: PartKey, part: StoredPart) {
        self.any = true;
        self.pending.insert(key, Some(part));
    }

    /// The indices of `id`'s parts from `from` on, as the batch leaves them (read only).
    pub(crate) fn indices_from(&self, id: &ItemId, from: u32) -> Result<Vec<u32>, StoreError> {
        if !self.any {
            return Ok(Vec::new());
        }
        let mut found: std::collections::BTreeSet<u32> = self
            .store
            .part_indices(id)?
            .into_iter()
            .filter(|i| *i >= from)
            .collect();
        let lo = PartKey::new(id.clone(), from);
        let hi = PartKey::new(id.clone(), u32::MAX);
        for (k, v) in self.pending.range(lo..=hi) {
            if v.is_some() {
                found.insert(k.index);
            } else {
                found.remove(&k.index);
            }
        }
        Ok(found.into_iter().collect())
    }

    /// Delete `id`'s parts at `indices`.
    pub(crate) fn delete(&mut self, id: &ItemId, indices: &[u32]) {
        for &i in indices {
            self.pending.insert(PartKey::new(id.clone(), i), None);
        }
    }

    /// The batch's part writes, in key order; the table starts the next batch empty.
    pub(crate) fn take(&mut self) -> Vec<PartWrite> {
        std::mem::take(&mut self.pending).into_iter().collect()
    }
}

/// The whole result of `item`: its `result`, or, for an item completed in parts, its pieces
/// fetched one at a time by `fetch(index)` and put together (their length checked against
/// the item's `result_bytes`). None when the item has no result.
pub async fn assemble<F, Fut, E>(item: WorkItem, mut fetch: F) -> Result<Option<String>, E>
where
    F: FnMut(u32) -> Fut,
    Fut: Future<Output = Result<Option<String>, E>>,
    E: From<BoardError>,
{
    let Some(parts) = item.result_parts() else {
        return Ok(item.result);
    };
    let bytes = item.result_bytes().unwrap_or(0);
    let id = item.id.to_string();
    let lost = |index: u32, why: String| BoardError::PartLost {
        id: id.clone(),
        index,
        why,
    };
    let mut out = String::with_capacity(usize::try_from(bytes).unwrap_or(0));
    for index in 0..parts {
        match fetch(index).await? {
            Some(piece) => out.push_str(&piece),
            None => {
                return Err(lost(
                    index,
                    "the board has no such part: was the item removed or run again meanwhile?"
                        .into(),
                )
                .into())
            }
        }
    }
    if out.len() as u64 != bytes {
        return Err(lost(
            parts.saturating_sub(1),
            format!("the parts hold {} bytes, the item says {bytes}", out.len()),
        )
        .into());
    }
    Ok(Some(out))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn id(s: &str) -> ItemId {
        ItemId::new(s).unwrap()
    }

    #[test]
    fn keys_round_trip_and_sort_by_item_then_index() {
        for (i, n) in [
            ("a", 0u32),
            ("wf:stage-1.v2", 7),
            (&"x".repeat(128), u32::MAX),
        ] {
            let key = PartKey::new(id(i), n);
            let bytes = key.encode();
            assert_eq!(bytes.len(), i.len() + 5);
            assert!(bytes.starts_with(&PartKey::prefix(&id(i))));
            assert_eq!(PartKey::decode(&bytes), Some(key));
        }
        assert_eq!(PartKey::new(id("a"), 1).encode(), b"a\0\0\0\0\x01".to_vec());
        // Big-endian: byte order is index order, past 255 too.
        let k = |s: &str, n: u32| PartKey::new(id(s), n).encode();
        assert!(k("a", 1) < k("a", 2));
        assert!(k("a", 255) < k("a", 256));
        assert!(k("a", 256) < k("a", u32::MAX));
        // An id that extends another does not fall in its range: `a`'s prefix is `a\0`.
        for other in [k("ab", 0), k("a-", 0), k("a0", 3)] {
            assert!(!other.starts_with(&PartKey::prefix(&id("a"))));
            assert!(other > k("a", u32::MAX));
        }
        // Not part keys: too short, no separator, a bad id.
        assert_eq!(PartKey::decode(b""), None);
        assert_eq!(PartKey::decode(b"\0\0\0\0\0"), None, "empty id");
        assert_eq!(PartKey::decode(b"ab\x01\0\0\0\x01"), None, "no separator");
        assert_eq!(PartKey::decode(b"a b\0\0\0\0\x01"), None, "bad id");
        assert_eq!(PartKey::decode(b"\0meta"), None);
    }

    #[test]
    fn pending_writes_are_seen_before_the_store() {
        let store = Arc::new(crate::store::MemoryStore::new());
        let part = |token: u64, text: &str| StoredPart {
            token,
            text: text.into(),
        };
        store
            .write_parts(&[
                (PartKey::new(id("a"), 0), Some(part(1, "s0"))),
                (PartKey::new(id("a"), 1), Some(part(1, "s1"))),
                (PartKey::new(id("a"), 5), Some(part(1, "s5"))),
                (PartKey::new(id("b"), 0), Some(part(2, "b0"))),
            ])
            .unwrap();
        let mut t = PartTable::new(store.clone()).unwrap();
        assert_eq!(t.indices_from(&id("a"), 0).unwrap(), vec![0, 1, 5]);
        assert_eq!(t.indices_from(&id("a"), 1).unwrap(), vec![1, 5]);
        t.put(PartKey::new(id("a"), 2), part(3, "p2"));
        t.delete(&id("a"), &[5]);
        assert_eq!(t.indices_from(&id("a"), 0).unwrap(), vec![0, 1, 2]);
        assert_eq!(
            t.get(&PartKey::new(id("a"), 2)).unwrap(),
            Some(part(3, "p2"))
        );
        assert_eq!(t.get(&PartKey::new(id("a"), 5)).unwrap(), None);
        assert_eq!(
            t.get(&PartKey::new(id("a"), 0)).unwrap(),
            Some(part(1, "s0"))
        );
        assert_eq!(t.indices_from(&id("b"), 0).unwrap(), vec![0]);
        let writes = t.take();
        assert_eq!(writes.len(), 2);
        store.write_parts(&writes).unwrap();
        assert_eq!(t.indices_from(&id("a"), 0).unwrap(), vec![0, 1, 2]);
        assert!(t.take().is_empty());
    }
}
