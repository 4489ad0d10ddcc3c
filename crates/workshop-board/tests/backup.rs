//! `DurableBoard::backup`: a copy of the running board, taken at one point between batches,
//! that `DurableBoard::open` opens as the same board.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use workshop_board::durable::{DurableError, DurableOptions};
use workshop_board::{
    BackupCounts, BackupError, DurableBoard, ListFilter, MemoryStore, NewItem, Status, WorkItem,
};

const N: usize = 200;
const LEASE: u64 = 60_000;

fn backup_err(e: DurableError) -> Arc<BackupError> {
    match e {
        DurableError::Backup(b) => b,
        other => panic!("expected a backup refusal, got {other:?}"),
    }
}

/// 200 items; one task claims and completes them in order while another takes a backup. The
/// backup is the board at one point: a prefix of the items done (exactly as the live board
/// has them), at most the next one claimed, the rest ready as they were added.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_backup_taken_while_items_complete_is_one_consistent_state() {
    let dir = tempfile::tempdir().unwrap();
    let board = DurableBoard::open(dir.path().join("board"), DurableOptions::default()).unwrap();
    let mut added: BTreeMap<String, WorkItem> = BTreeMap::new();
    for i in 0..N {
        let item = board
            .add(NewItem::new(format!("i{i:03}"), format!("item {i}")))
            .await
            .unwrap();
        added.insert(item.id.to_string(), item);
    }
    let completed = Arc::new(AtomicU64::new(0));
    let worker = {
        let board = board.clone();
        let completed = completed.clone();
        tokio::spawn(async move {
            let mut tokens = BTreeMap::new();
            for i in 0..N {
                let id = format!("i{i:03}");
                let token = board
                    .claim(&id, "w1", LEASE)
                    .await
                    .unwrap()
                    .token()
                    .unwrap();
                tokens.insert(id.clone(), token);
                board.complete(&id, token, format!("r{i}")).await.unwrap();
                completed.fetch_add(1, Ordering::SeqCst);
            }
            tokens
        })
    };
    while completed.load(Ordering::SeqCst) < 20 {
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    }
    let target = dir.path().join("backup");
    let counts = board.backup(&target).await.unwrap();
    assert_eq!(
        counts,
        BackupCounts {
            items: N as u64,
            parts: 0
        }
    );
    let tokens = worker.await.unwrap();
    let live: BTreeMap<String, WorkItem> = board
        .list_now(&ListFilter::default())
        .into_iter()
        .map(|i| (i.id.to_string(), i))
        .collect();
    board.shutdown().await.unwrap();

    let copy = DurableBoard::open(&target, DurableOptions::default()).unwrap();
    let items = copy.list_now(&ListFilter::default());
    assert_eq!(items.len(), N);
    let mut by_id: Vec<&WorkItem> = items.iter().collect();
    by_id.sort_by(|a, b| a.id.cmp(&b.id));
    let done = by_id
        .iter()
        .take_while(|i| i.status == Status::Done)
        .count();
    assert!(
        done >= 20,
        "the backup has {done} items done, 20 were before it"
    );
    for (n, item) in by_id.iter().enumerate() {
        let id = item.id.to_string();
        if n < done {
            assert_eq!(**item, live[&id], "{id} done in the backup as on the board");
        } else if n == done && item.status == Status::Claimed {
            assert_eq!(
                item.token(),
                Some(tokens[&id]),
                "{id} claimed by the worker"
            );
        } else {
            assert_eq!(
                **item, added[&id],
                "{id} ready in the backup as it was added"
            );
        }
    }
    // The copy is a working board: its counters go on from the live board's.
    let next = by_id[N - 1].id.to_string();
    if by_id[N - 1].status == Status::Ready {
        let token = copy
            .claim(&next, "w2", LEASE)
            .await
            .unwrap()
            .token()
            .unwrap();
        // Far ahead: no token the live board handed out after the copy can be handed out again.
        let live_max = *tokens.values().max().unwrap_or(&0);
        assert!(
            token > live_max + workshop_board::backup::TOKEN_GAP / 2,
            "{token} vs {live_max}"
        );
    }
    copy.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_holds_the_result_parts() {
    let dir = tempfile::tempdir().unwrap();
    let board = DurableBoard::with_store(MemoryStore::new(), DurableOptions::default()).unwrap();
    board.add(NewItem::new("big", "Big")).await.unwrap();
    board.add(NewItem::new("open", "Open")).await.unwrap();
    let token = board
        .claim("big", "w1", LEASE)
        .await
        .unwrap()
        .token()
        .unwrap();
    let pieces = ["alpha ".repeat(1000), "beta ".repeat(1000), "gamma".into()];
    for (i, p) in pieces.iter().enumerate() {
        board
            .put_result_part("big", token, i as u32, p.clone())
            .await
            .unwrap();
    }
    let bytes = pieces.iter().map(|p| p.len() as u64).sum();
    board
        .complete_in_parts("big", token, "alpha", 3, bytes)
        .await
        .unwrap();
    // A part stored by a lease still running is copied too.
    let open = board
        .claim("open", "w1", LEASE)
        .await
        .unwrap()
        .token()
        .unwrap();
    board
        .put_result_part("open", open, 0, "half")
        .await
        .unwrap();

    let target = dir.path().join("backup");
    let counts = board.backup(&target).await.unwrap();
    assert_eq!(counts, BackupCounts { items: 2, parts: 4 });
    board.shutdown().await.unwrap();

    let copy = DurableBoard::open(&target, DurableOptions::default()).unwrap();
    assert_eq!(
        copy.full_result("big").await.unwrap().unwrap(),
        pieces.concat()
    );
    // The running lease goes on in the copy: its part is there for its completion.
    let item = copy
        .complete_in_parts("open", open, "half", 1, 4)
        .await
        .unwrap();
    assert_eq!(item.status, Status::Done);
    assert_eq!(copy.full_result("open").await.unwrap().unwrap(), "half");
    copy.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_into_a_non_empty_or_relative_dir_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let board = DurableBoard::with_store(MemoryStore::new(), DurableOptions::default()).unwrap();
    board.add(NewItem::new("a", "A")).await.unwrap();

    let full = dir.path().join("full");
    std::fs::create_dir(&full).unwrap();
    std::fs::write(full.join("keep"), "mine").unwrap();
    let e = backup_err(board.backup(&full).await.unwrap_err());
    assert!(matches!(*e, BackupError::NotEmpty { .. }), "{e}");
    assert!(e.to_string().contains("not empty"), "{e}");
    assert_eq!(
        std::fs::read_dir(&full).unwrap().count(),
        1,
        "left as it was"
    );

    // A backup is itself a non-empty directory: a second one there is refused.
    let once = dir.path().join("once");
    board.backup(&once).await.unwrap();
    let e = backup_err(board.backup(&once).await.unwrap_err());
    assert!(matches!(*e, BackupError::NotEmpty { .. }), "{e}");

    let e = backup_err(board.backup("relative/backup").await.unwrap_err());
    assert!(matches!(*e, BackupError::Relative { .. }), "{e}");
    assert!(e.to_string().contains("absolute"), "{e}");

    // An existing empty directory is fine.
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    assert_eq!(
        board.backup(&empty).await.unwrap(),
        BackupCounts { items: 1, parts: 0 }
    );
    // The board goes on.
    board.add(NewItem::new("b", "B")).await.unwrap();
    board.shutdown().await.unwrap();
}
