//! An in-memory [`BoardStore`] for tests: encoded bytes in a shared map, so a test can "reopen"
//! a board from the same map, count syncs and inject failures.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

use super::{
    board_from_pairs, decode_part, encode_entries, encode_parts, part_indices_of, BoardStore,
    ExportSink, StoreError, Table, WriteEntry,
};
use crate::item::ItemId;
use crate::parts::{PartKey, PartWrite, StoredPart};
use crate::state::{Board, BoardConfig, Meta};

#[derive(Debug, Default)]
struct Shared {
    data: Mutex<BTreeMap<Vec<u8>, Vec<u8>>>,
    /// Result parts, apart from the items (as in the sled store's own tree).
    parts: Mutex<BTreeMap<Vec<u8>, Vec<u8>>>,
    syncs: AtomicU64,
    fail_writes: AtomicBool,
}

/// Cloning gives another handle to the same data.
#[derive(Debug, Clone, Default)]
pub struct MemoryStore {
    shared: Arc<Shared>,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// How many times `sync` ran.
    pub fn syncs(&self) -> u64 {
        self.shared.syncs.load(Ordering::SeqCst)
    }

    /// Makes every following `write` fail (to test the committer's failure path).
    pub fn fail_writes(&self, fail: bool) {
        self.shared.fail_writes.store(fail, Ordering::SeqCst);
    }

    /// How many result parts are stored.
    pub fn part_count(&self) -> usize {
        self.shared.parts.lock().len()
    }

    /// Overwrites a raw value (to test corrupt data).
    pub fn put_raw(&self, key: &[u8], value: &[u8]) {
        self.shared.data.lock().insert(key.to_vec(), value.to_vec());
    }
}

impl BoardStore for MemoryStore {
    fn load(&self, config: BoardConfig) -> Result<Board, StoreError> {
        let pairs: Vec<_> = self
            .shared
            .data
            .lock()
            .iter()
            .map(|(k, v)| Ok((k.clone(), v.clone())))
            .collect();
        board_from_pairs(Path::new("<memory>"), config, pairs)
    }

    fn write(&self, entries: &[WriteEntry<'_>], meta: Meta) -> Result<(), StoreError> {
        if self.shared.fail_writes.load(Ordering::SeqCst) {
            return Err(StoreError::Injected("memory store write failure".into()));
        }
        let encoded = encode_entries(entries, meta)?;
        let mut data = self.shared.data.lock();
        for (k, v) in encoded {
            match v {
                Some(v) => data.insert(k, v),
                None => data.remove(&k),
            };
        }
        Ok(())
    }

    fn write_parts(&self, parts: &[PartWrite]) -> Result<(), StoreError> {
        if self.shared.fail_writes.load(Ordering::SeqCst) {
            return Err(StoreError::Injected("memory store write failure".into()));
        }
        let encoded = encode_parts(parts)?;
        let mut data = self.shared.parts.lock();
        for (k, v) in encoded {
            match v {
                Some(v) => data.insert(k, v),
                None => data.remove(&k),
            };
        }
        Ok(())
    }

    fn read_part(&self, key: &PartKey) -> Result<Option<StoredPart>, StoreError> {
        let value = self.shared.parts.lock().get(&key.encode()).cloned();
        value
            .map(|v| decode_part(Path::new("<memory>"), key, &v))
            .transpose()
    }

    fn part_indices(&self, id: &ItemId) -> Result<Vec<u32>, StoreError> {
        let prefix = PartKey::prefix(id);
        let keys: Vec<Vec<u8>> = self
            .shared
            .parts
            .lock()
            .range(prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&prefix))
            .map(|(k, _)| k.clone())
            .collect();
        Ok(part_indices_of(id, keys))
    }

    fn has_parts(&self) -> Result<bool, StoreError> {
        Ok(!self.shared.parts.lock().is_empty())
    }

    fn sync(&self) -> Result<(), StoreError> {
        self.shared.syncs.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    fn location(&self) -> String {
        "<memory>".into()
    }

    fn export(&self, sink: &mut ExportSink<'_>) -> Result<(), StoreError> {
        let items = self.shared.data.lock().clone();
        for (k, v) in &items {
            sink(Table::Items, k, v)?;
        }
        let parts = self.shared.parts.lock().clone();
        for (k, v) in &parts {
            sink(Table::Parts, k, v)?;
        }
        Ok(())
    }
}
