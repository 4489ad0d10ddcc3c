//! The sled 0.34.7 [`BoardStore`].
//!
//! Tree `items`: key = the item id's bytes, value = `codec::encode(WorkItem)`; the counters
//! live under [`META_KEY`](super::META_KEY). Tree `result_parts`: the result parts
//! ([`crate::parts`]). A batch goes in with one `apply_batch` (atomic in sled's log).
//! [`SledStore::sync`] calls `Db::flush()` — which in 0.34.7 only does `pwrite` +
//! `sync_file_range` and so survives a killed process but not a machine crash — then
//! `fdatasync`s the blob files written since the last sync and sled's `db` file, which makes
//! the batch survive a machine crash too.
//!
//! Blob files: sled writes a log record over a quarter of a segment (128 KiB) to a file of its
//! own under `blobs/` and never syncs it. Values are kept below that (a result part is at most
//! 64 KiB), but sled also rewrites a whole leaf page (up to 17 entries) as one record when it
//! consolidates or splits it, so a leaf of several parts (or of items with long results) goes
//! to a blob file too: measured, 40 parts of 64 KiB left five blob files of about 512 KiB.
//! Hence the sync of new blob files (and of the `blobs` directory) before the `db` file's.

use std::collections::HashMap;
use std::ffi::OsString;
use std::fs::File;
use std::path::{Path, PathBuf};

use parking_lot::Mutex;

use super::{
    board_from_pairs, decode_part, encode_entries, encode_parts, part_indices_of, BoardStore,
    ExportSink, StoreError, Table, WriteEntry,
};
use crate::item::ItemId;
use crate::parts::{PartKey, PartWrite, StoredPart};
use crate::state::{Board, BoardConfig, Meta};

const TREE: &[u8] = b"items";
/// Result parts (see [`crate::parts`]): kept out of `items`, so loading the board does not
/// read them.
const PARTS_TREE: &[u8] = b"result_parts";

/// A board database directory opened by this process (sled holds an exclusive file lock).
pub struct SledStore {
    dir: PathBuf,
    db: sled::Db,
    tree: sled::Tree,
    parts: sled::Tree,
    db_file: File,
    /// Blob files already synced, with the size they had then (the files listed at the last
    /// sync).
    synced_blobs: Mutex<HashMap<OsString, u64>>,
}

impl std::fmt::Debug for SledStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SledStore").field("dir", &self.dir).finish()
    }
}

fn map_sled(dir: &Path, action: &'static str, e: sled::Error) -> StoreError {
    match e {
        sled::Error::Io(io) => {
            let text = io.to_string();
            if io.kind() == std::io::ErrorKind::WouldBlock
                || text.contains("could not acquire lock")
                || text.contains("WouldBlock")
            {
                StoreError::Locked {
                    dir: dir.to_path_buf(),
                }
            } else {
                StoreError::Io {
                    dir: dir.to_path_buf(),
                    action,
                    source: io,
                }
            }
        }
        sled::Error::Corruption { at, .. } => StoreError::Corrupt {
            dir: dir.to_path_buf(),
            detail: format!(
                "damaged data found while {action}{}",
                at.map(|p| format!(", at {p:?}")).unwrap_or_default()
            ),
        },
        sled::Error::Unsupported(detail) | sled::Error::ReportableBug(detail)
            if action == "opening" =>
        {
            StoreError::Corrupt {
                dir: dir.to_path_buf(),
                detail: format!("sled cannot read it: {detail}"),
            }
        }
        other => StoreError::Backend {
            dir: dir.to_path_buf(),
            action,
            detail: other.to_string(),
        },
    }
}

impl SledStore {
    /// Opens (creating if needed) the board database in `dir`.
    ///
    /// Errors: [`StoreError::Locked`] when another process (or another handle in this process)
    /// has it open, [`StoreError::Corrupt`] when sled cannot read it.
    pub fn open(dir: impl AsRef<Path>) -> Result<Self, StoreError> {
        let dir = dir.as_ref().to_path_buf();
        let io = |action: &'static str| {
            let dir = dir.clone();
            move |source| StoreError::Io {
                dir,
                action,
                source,
            }
        };
        if dir.exists() && !dir.is_dir() {
            return Err(StoreError::Io {
                dir: dir.clone(),
                action: "opening the data directory",
                source: std::io::Error::other("the path exists and is not a directory"),
            });
        }
        // Owner-only: created 0700, an existing looser one tightened (a warning says so).
        crate::private::create_private_dir(&dir).map_err(io("creating the data directory"))?;
        crate::private::tighten_sled_dir(&dir, false);
        let config = sled::Config::new().path(&dir);
        // sled 0.34 panics on some corrupt files instead of returning an error.
        let opened = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| config.open()));
        let db = match opened {
            Ok(r) => r.map_err(|e| map_sled(&dir, "opening", e))?,
            Err(panic) => {
                let detail = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_else(|| "sled panicked while opening".into());
                return Err(StoreError::Corrupt { dir, detail });
            }
        };
        let tree = db
            .open_tree(TREE)
            .map_err(|e| map_sled(&dir, "opening the items tree", e))?;
        let parts = db
            .open_tree(PARTS_TREE)
            .map_err(|e| map_sled(&dir, "opening the result parts tree", e))?;
        // The files sled has just created (a new board) get the umask's mode: tighten them.
        crate::private::tighten_sled_dir(&dir, true);
        let db_file = File::open(dir.join("db")).map_err(io("opening sled's db file"))?;
        // Make the directory entries of freshly created files durable once.
        File::open(&dir)
            .and_then(|d| d.sync_all())
            .map_err(io("syncing the data directory"))?;
        Ok(SledStore {
            dir,
            db,
            tree,
            parts,
            db_file,
            synced_blobs: Mutex::new(HashMap::new()),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Applies raw entries (as [`BoardStore::export`] gives them) to `table` in one batch:
    /// how a backup is written. Not yet durable: call [`BoardStore::sync`].
    pub(crate) fn insert_raw(
        &self,
        table: Table,
        entries: Vec<(Vec<u8>, Vec<u8>)>,
    ) -> Result<(), StoreError> {
        let mut batch = sled::Batch::default();
        for (k, v) in entries {
            batch.insert(k, v);
        }
        let tree = match table {
            Table::Items => &self.tree,
            Table::Parts => &self.parts,
        };
        tree.apply_batch(batch)
            .map_err(|e| map_sled(&self.dir, "writing a backup", e))
    }

    /// `fdatasync`s every blob file not synced yet, then the `blobs` directory (for their
    /// entries). A blob sled has removed meanwhile is skipped. See the module docs.
    ///
    /// sled writes a blob file whole (create, write, never changed again) in the thread that
    /// reserves its log record, before that record can be flushed; so every blob of the batches
    /// this sync covers is complete. One of a later batch may be half written while it is
    /// listed: it is synced again once its size has changed, hence the sizes kept.
    fn sync_blobs(&self) -> Result<(), StoreError> {
        let blobs = self.dir.join("blobs");
        let io = |action: &'static str| {
            let dir = self.dir.clone();
            move |source| StoreError::Io {
                dir,
                action,
                source,
            }
        };
        let listing = match std::fs::read_dir(&blobs) {
            Ok(l) => l,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(io("listing sled's blob files")(e)),
        };
        let mut synced = self.synced_blobs.lock();
        let mut now = HashMap::with_capacity(synced.len());
        let mut new = false;
        for entry in listing {
            let entry = entry.map_err(io("listing sled's blob files"))?;
            let len = match entry.metadata() {
                Ok(m) => m.len(),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io("reading a sled blob file's size")(e)),
            };
            let name = entry.file_name();
            if synced.get(&name) != Some(&len) {
                match File::open(entry.path()) {
                    Ok(f) => f.sync_data().map_err(io("fdatasync of a sled blob file"))?,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(io("opening a sled blob file")(e)),
                }
                new = true;
            }
            now.insert(name, len);
        }
        if new {
            File::open(&blobs)
                .and_then(|d| d.sync_all())
                .map_err(io("syncing sled's blob directory"))?;
        }
        *synced = now;
        Ok(())
    }
}

impl BoardStore for SledStore {
    fn load(&self, config: BoardConfig) -> Result<Board, StoreError> {
        let dir = self.dir.clone();
        let pairs = self.tree.iter().map(move |r| {
            r.map(|(k, v)| (k.to_vec(), v.to_vec()))
                .map_err(|e| map_sled(&dir, "reading items", e))
        });
        board_from_pairs(&self.dir, config, pairs)
    }

    fn write(&self, entries: &[WriteEntry<'_>], meta: Meta) -> Result<(), StoreError> {
        let mut batch = sled::Batch::default();
        for (k, v) in encode_entries(entries, meta)? {
            match v {
                Some(v) => batch.insert(k, v),
                None => batch.remove(k),
            }
        }
        self.tree
            .apply_batch(batch)
            .map_err(|e| map_sled(&self.dir, "writing a batch", e))
    }

    fn write_parts(&self, parts: &[PartWrite]) -> Result<(), StoreError> {
        let mut batch = sled::Batch::default();
        for (k, v) in encode_parts(parts)? {
            match v {
                Some(v) => batch.insert(k, v),
                None => batch.remove(k),
            }
        }
        self.parts
            .apply_batch(batch)
            .map_err(|e| map_sled(&self.dir, "writing result parts", e))
    }

    fn read_part(&self, key: &PartKey) -> Result<Option<StoredPart>, StoreError> {
        let value = self
            .parts
            .get(key.encode())
            .map_err(|e| map_sled(&self.dir, "reading a result part", e))?;
        value.map(|v| decode_part(&self.dir, key, &v)).transpose()
    }

    fn part_indices(&self, id: &ItemId) -> Result<Vec<u32>, StoreError> {
        let keys = self
            .parts
            .scan_prefix(PartKey::prefix(id))
            .keys()
            .map(|k| k.map(|k| k.to_vec()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| map_sled(&self.dir, "listing result parts", e))?;
        Ok(part_indices_of(id, keys))
    }

    fn has_parts(&self) -> Result<bool, StoreError> {
        self.parts
            .first()
            .map(|first| first.is_some())
            .map_err(|e| map_sled(&self.dir, "reading result parts", e))
    }

    fn sync(&self) -> Result<(), StoreError> {
        self.db
            .flush()
            .map_err(|e| map_sled(&self.dir, "flushing", e))?;
        self.sync_blobs()?;
        self.db_file.sync_data().map_err(|source| StoreError::Io {
            dir: self.dir.clone(),
            action: "fdatasync of sled's db file",
            source,
        })
    }

    fn location(&self) -> String {
        self.dir.display().to_string()
    }

    fn export(&self, sink: &mut ExportSink<'_>) -> Result<(), StoreError> {
        for (table, tree) in [(Table::Items, &self.tree), (Table::Parts, &self.parts)] {
            for pair in tree.iter() {
                let (k, v) = pair.map_err(|e| map_sled(&self.dir, "reading for a backup", e))?;
                sink(table, &k, &v)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::parts::StoredPart;

    /// Parts are kept under the blob threshold, yet a consolidated leaf of them goes to a blob
    /// file; every one present after a sync has been synced.
    #[test]
    fn blob_files_are_synced() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path()).unwrap();
        let id = ItemId::new("big").unwrap();
        for batch in 0..4u32 {
            let writes: Vec<PartWrite> = (0..10u32)
                .map(|i| {
                    let part = StoredPart {
                        token: 1,
                        text: "x".repeat(crate::parts::RESULT_PART_BYTES),
                    };
                    (PartKey::new(id.clone(), batch * 10 + i), Some(part))
                })
                .collect();
            store.write_parts(&writes).unwrap();
            store.sync().unwrap();
        }
        let listed: HashMap<OsString, u64> = std::fs::read_dir(dir.path().join("blobs"))
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (e.file_name(), e.metadata().unwrap().len())
            })
            .collect();
        assert!(!listed.is_empty(), "sled wrote no blob file");
        assert_eq!(*store.synced_blobs.lock(), listed);
        assert_eq!(
            store.part_indices(&id).unwrap(),
            (0..40).collect::<Vec<_>>()
        );
    }
}
