//! An in-memory [`BoardStore`] for tests: encoded bytes in a shared map, so a test can "reopen"
//! a board from the same map, count syncs and inject failures.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

use super::{board_from_pairs, encode_entries, BoardStore, StoreError, WriteEntry};
use crate::state::{Board, BoardConfig, Meta};

#[derive(Debug, Default)]
struct Shared {
    data: Mutex<BTreeMap<Vec<u8>, Vec<u8>>>,
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

    fn sync(&self) -> Result<(), StoreError> {
        self.shared.syncs.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    fn location(&self) -> String {
        "<memory>".into()
    }
}
