//! Store round trip, locked and corrupt directories.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;

use workshop_board::store::{BoardStore, SledStore, StoreError, META_KEY};
use workshop_board::{
    BoardConfig, DurableBoard, DurableOptions, ListFilter, NewItem, Status, WorkItem, WorkType,
};

fn items_of(board: &DurableBoard) -> BTreeMap<String, WorkItem> {
    board
        .list_now(&ListFilter::default())
        .into_iter()
        .map(|i| (i.id.to_string(), i))
        .collect()
}

#[tokio::test]
async fn reopen_gives_the_same_board() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("board");
    let board = DurableBoard::open(&path, DurableOptions::default()).unwrap();
    board
        .add(NewItem::new("a", "A").spec("spec a").meta("k", "v"))
        .await
        .unwrap();
    board
        .add(
            NewItem::new("b", "B")
                .depends_on(["a"])
                .work_type(WorkType::Code),
        )
        .await
        .unwrap();
    board.add(NewItem::new("c", "C").priority(1)).await.unwrap();
    board.add(NewItem::new("d", "D")).await.unwrap();
    board
        .add(NewItem::new("e", "E").depends_on(["d"]))
        .await
        .unwrap();
    board.add(NewItem::new("gone", "G")).await.unwrap();
    let a = board.claim("a", "w1", 60_000).await.unwrap();
    let ta = a.token().unwrap();
    board.start("a", ta).await.unwrap();
    board.complete("a", ta, "result a").await.unwrap();
    let c = board.claim("c", "w2", 60_000).await.unwrap();
    board
        .heartbeat("c", c.token().unwrap(), 90_000)
        .await
        .unwrap();
    let d = board.claim("d", "w3", 60_000).await.unwrap();
    board
        .fail("d", d.token().unwrap(), "broke", false)
        .await
        .unwrap();
    board.remove("gone").await.unwrap();
    let before = items_of(&board);
    let last_token = d.token().unwrap();
    assert!(last_token > c.token().unwrap());
    assert_eq!(before["b"].status, Status::Ready);
    assert_eq!(before["e"].status, Status::Blocked);
    board.shutdown().await.unwrap();

    // reopen the raw store: same items, same counters
    {
        let store = SledStore::open(&path).unwrap();
        let loaded = store.load(BoardConfig::default()).unwrap();
        let after: BTreeMap<String, WorkItem> = loaded
            .items()
            .map(|i| (i.id.to_string(), i.clone()))
            .collect();
        assert_eq!(after, before);
        assert_eq!(loaded.last_token(), last_token);
        loaded.check_invariants().unwrap();
    }
    // and a reopened durable board continues the token sequence
    let board = DurableBoard::open(&path, DurableOptions::default()).unwrap();
    assert_eq!(items_of(&board), before);
    let b = board.claim("b", "w4", 1_000).await.unwrap();
    assert!(b.token().unwrap() > last_token);
    board.shutdown().await.unwrap();
}

#[test]
fn a_second_open_is_locked() {
    let dir = tempfile::tempdir().unwrap();
    let _first = SledStore::open(dir.path()).unwrap();
    let err = SledStore::open(dir.path()).unwrap_err();
    assert!(matches!(err, StoreError::Locked { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains("another process holds the board database at")
            && msg.contains(&dir.path().display().to_string())
            && msg.contains("--data-dir"),
        "{msg}"
    );
    let err = DurableBoard::open(dir.path(), DurableOptions::default()).unwrap_err();
    assert!(matches!(err, StoreError::Locked { .. }));
}

#[test]
fn a_corrupt_value_is_reported_with_its_key() {
    let dir = tempfile::tempdir().unwrap();
    {
        let db = sled::open(dir.path()).unwrap();
        let tree = db.open_tree("items").unwrap();
        tree.insert("ok-looking", &b"\x01garbage"[..]).unwrap();
        db.flush().unwrap();
    }
    let store = SledStore::open(dir.path()).unwrap();
    let err = store.load(BoardConfig::default()).unwrap_err();
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains("`ok-looking`") && msg.contains("corrupt"),
        "{msg}"
    );
    drop(store);
    let err = DurableBoard::open(dir.path(), DurableOptions::default()).unwrap_err();
    assert!(matches!(err, StoreError::Corrupt { .. }));
}

#[test]
fn corrupt_counters_and_version_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    {
        let db = sled::open(dir.path()).unwrap();
        let tree = db.open_tree("items").unwrap();
        tree.insert(META_KEY, &b"\x07"[..]).unwrap();
        db.flush().unwrap();
    }
    let err = SledStore::open(dir.path())
        .unwrap()
        .load(BoardConfig::default())
        .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("board counters") && msg.contains("version 7"),
        "{msg}"
    );
}

#[test]
fn a_corrupt_directory_is_an_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    {
        let _db = SledStore::open(dir.path()).unwrap();
    }
    // overwrite sled's files with garbage
    for name in ["db", "conf"] {
        std::fs::write(dir.path().join(name), vec![0xa5u8; 4096]).unwrap();
    }
    let err = SledStore::open(dir.path()).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains(&dir.path().display().to_string()), "{msg}");
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err:?}");
    assert!(msg.contains("is corrupt"), "{msg}");
}

#[test]
fn a_corrupt_log_is_an_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = SledStore::open(dir.path()).unwrap();
        let mut b = workshop_board::Board::new();
        let out = b.add(NewItem::new("a", "A"), 1).unwrap();
        let item = out.value;
        store.write(&[(&item.id, Some(&item))], b.meta()).unwrap();
        store.sync().unwrap();
    }
    // keep `conf`, garble the log
    let db = dir.path().join("db");
    let len = std::fs::metadata(&db).unwrap().len() as usize;
    std::fs::write(&db, vec![0x5au8; len.max(4096)]).unwrap();
    let res = SledStore::open(dir.path()).and_then(|s| s.load(BoardConfig::default()));
    match res {
        Err(err) => {
            eprintln!("corrupt log error: {err}");
            assert!(err.to_string().contains(&dir.path().display().to_string()));
        }
        // sled may also treat a garbled tail as torn writes and recover an older state
        Ok(board) => eprintln!("corrupt log recovered {} items", board.len()),
    }
}

#[test]
fn a_file_instead_of_a_directory_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("f");
    std::fs::write(&file, b"x").unwrap();
    let err = SledStore::open(&file).unwrap_err();
    assert!(matches!(err, StoreError::Io { .. }), "{err:?}");
    assert!(err.to_string().contains("not a directory"));
}
