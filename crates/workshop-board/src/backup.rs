//! A copy of a running board: [`write_backup`] reads every entry of a store (items with the
//! board counters, then result parts) and writes them, raw, into a NEW sled board database,
//! then makes it durable. The committer runs it between two batches
//! ([`crate::DurableBoard::backup`]), so the copy is the board at one point: everything
//! applied before, nothing after. The result is a directory that [`crate::DurableBoard::open`]
//! opens as the same board (a node's `<data>/board`).

use std::fs::File;
use std::path::{Path, PathBuf};

use crate::store::{BoardStore, SledStore, StoreError, Table, META_KEY};

/// How far a backup's fencing-token counter is ahead of the board it copies: more tokens than
/// the live board can hand out between the backup and a restore.
pub const TOKEN_GAP: u64 = 1 << 40;

/// What a backup holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BackupCounts {
    /// Work items (the board counters are copied too, not counted).
    pub items: u64,
    /// Result parts.
    pub parts: u64,
}

/// Why a backup was not taken (or not finished).
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error(
        "the backup directory `{dir}` is not an absolute path; name it absolutely (it is on \
         the board node's filesystem)"
    )]
    Relative { dir: PathBuf },
    #[error(
        "the backup directory {dir} already exists and is not empty; name a new directory (it \
         is created) or an empty one"
    )]
    NotEmpty { dir: PathBuf },
    #[error("cannot back up the board to {dir} while {action}: {source}")]
    Io {
        dir: PathBuf,
        action: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot back up the board: {0}")]
    Store(#[from] StoreError),
}

/// Entries written to the backup per sled batch (a part is at most 64 KiB).
const BATCH_ENTRIES: usize = 256;

/// Refuses a relative `dir`, or one that exists and is not an empty directory.
pub fn check_target(dir: &Path) -> Result<(), BackupError> {
    if !dir.is_absolute() {
        return Err(BackupError::Relative {
            dir: dir.to_path_buf(),
        });
    }
    let not_empty = || BackupError::NotEmpty {
        dir: dir.to_path_buf(),
    };
    match std::fs::read_dir(dir) {
        Ok(mut listing) => match listing.next() {
            None => Ok(()),
            Some(_) => Err(not_empty()),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(_) if dir.exists() => Err(not_empty()),
        Err(source) => Err(BackupError::Io {
            dir: dir.to_path_buf(),
            action: "looking at it",
            source,
        }),
    }
}

/// Copies every entry of `store` into a new sled database at `dir` (see the module docs) and
/// makes it durable: sled's flush + fdatasync, then every file and directory of it, and the
/// parent directory (for its entry). The caller keeps writes to `store` out meanwhile.
pub fn write_backup<S: BoardStore>(store: &S, dir: &Path) -> Result<BackupCounts, BackupError> {
    check_target(dir)?;
    let io = |action: &'static str| {
        move |source| BackupError::Io {
            dir: dir.to_path_buf(),
            action,
            source,
        }
    };
    let target = SledStore::open(dir)?;
    let mut counts = BackupCounts::default();
    let mut pending: Vec<(Vec<u8>, Vec<u8>)> = Vec::with_capacity(BATCH_ENTRIES);
    let mut pending_table = Table::Items;
    store.export(&mut |table, key, value| {
        if table != pending_table || pending.len() >= BATCH_ENTRIES {
            target.insert_raw(pending_table, std::mem::take(&mut pending))?;
            pending_table = table;
        }
        match table {
            Table::Items if key != META_KEY => counts.items += 1,
            Table::Items => {
                // Fencing tokens handed out after this copy must never be handed out again by
                // the restored board (a worker still holding one could settle someone else's
                // claim): the copy's token counter jumps ahead by TOKEN_GAP.
                let codec_err = |source| StoreError::Encode {
                    what: "the board counters of the backup".into(),
                    source,
                };
                let mut meta: crate::state::Meta =
                    crate::codec::decode(value).map_err(codec_err)?;
                meta.last_token = meta.last_token.saturating_add(TOKEN_GAP);
                let bumped = crate::codec::encode(&meta).map_err(codec_err)?;
                pending.push((key.to_vec(), bumped));
                return Ok(());
            }
            Table::Parts => counts.parts += 1,
        }
        pending.push((key.to_vec(), value.to_vec()));
        Ok(())
    })?;
    target.insert_raw(pending_table, pending)?;
    target.sync()?;
    drop(target);
    sync_tree(dir).map_err(io("syncing its files"))?;
    if let Some(parent) = dir.parent() {
        File::open(parent)
            .and_then(|d| d.sync_all())
            .map_err(io("syncing its parent directory"))?;
    }
    Ok(counts)
}

/// `fsync`s every file under `dir`, then `dir` itself.
fn sync_tree(dir: &Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            sync_tree(&entry.path())?;
        } else {
            File::open(entry.path())?.sync_all()?;
        }
    }
    File::open(dir)?.sync_all()
}
