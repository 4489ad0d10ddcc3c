//! The sled 0.34.7 [`BoardStore`].
//!
//! One tree, `items`: key = the item id's bytes, value = `codec::encode(WorkItem)`; the counters
//! live under [`META_KEY`](super::META_KEY). A batch goes in with one `apply_batch` (atomic in
//! sled's log). [`SledStore::sync`] calls `Db::flush()` — which in 0.34.7 only does
//! `pwrite` + `sync_file_range` and so survives a killed process but not a machine crash — and
//! then `fdatasync`s sled's `db` file, which makes the batch survive a machine crash too.

use std::fs::File;
use std::path::{Path, PathBuf};

use super::{board_from_pairs, encode_entries, BoardStore, StoreError, WriteEntry};
use crate::state::{Board, BoardConfig, Meta};

const TREE: &[u8] = b"items";

/// A board database directory opened by this process (sled holds an exclusive file lock).
pub struct SledStore {
    dir: PathBuf,
    db: sled::Db,
    tree: sled::Tree,
    db_file: File,
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
            detail: format!("sled found corrupt data at {at:?} while {action}"),
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
        std::fs::create_dir_all(&dir).map_err(io("creating the data directory"))?;
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
        let db_file = File::open(dir.join("db")).map_err(io("opening sled's db file"))?;
        // Make the directory entries of freshly created files durable once.
        File::open(&dir)
            .and_then(|d| d.sync_all())
            .map_err(io("syncing the data directory"))?;
        Ok(SledStore {
            dir,
            db,
            tree,
            db_file,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
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

    fn sync(&self) -> Result<(), StoreError> {
        self.db
            .flush()
            .map_err(|e| map_sled(&self.dir, "flushing", e))?;
        self.db_file.sync_data().map_err(|source| StoreError::Io {
            dir: self.dir.clone(),
            action: "fdatasync of sled's db file",
            source,
        })
    }

    fn location(&self) -> String {
        self.dir.display().to_string()
    }
}
