//! Result parts: a result too large for one frame stored as pieces beside the items, written
//! through the group commit, read one at a time, never mixed between attempts, deleted with
//! their item.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use parking_lot::Mutex;
use workshop_board::durable::{CommitEvent, DurableError, DurableOptions};
use workshop_board::item::{
    result_preview, split_at_char_boundaries, ItemId, META_RESULT_BYTES, META_RESULT_PARTS,
    RESULT_PART_BYTES,
};
use workshop_board::store::{BoardStore, SledStore};
use workshop_board::{BoardError, DurableBoard, MemoryStore, NewItem, Status};

const LEASE: u64 = 60_000;

/// A deterministic text of `n` bytes or a little less, with multi-byte chars so that piece
/// boundaries fall inside them.
fn big_text(n: usize) -> String {
    let unit = "part€text-𝄞-é|";
    let mut s = String::with_capacity(n);
    let mut i = 0u64;
    while s.len() + unit.len() + 20 <= n {
        s.push_str(unit);
        s.push_str(&i.to_string());
        i += 1;
    }
    s
}

/// Upload `text` as parts with `token`, return (preview, parts, bytes).
async fn upload(board: &DurableBoard, id: &str, token: u64, text: &str) -> (String, u32, u64) {
    let pieces = split_at_char_boundaries(text, RESULT_PART_BYTES);
    for (i, piece) in pieces.iter().enumerate() {
        board
            .put_result_part(id, token, i as u32, *piece)
            .await
            .unwrap();
    }
    (result_preview(text), pieces.len() as u32, text.len() as u64)
}

async fn claimed(board: &DurableBoard, id: &str) -> u64 {
    board.claim(id, "w1", LEASE).await.unwrap().token().unwrap()
}

fn board_err(e: DurableError) -> BoardError {
    match e {
        DurableError::Board(b) => b,
        other => panic!("expected a board refusal, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_result_in_parts_is_durable_read_back_whole_and_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(Mutex::new(Vec::new()));
    let seen = log.clone();
    let options = DurableOptions {
        observer: Some(Arc::new(move |ev| match ev {
            CommitEvent::Synced { ops } => seen.lock().push(format!("fdatasync ops={ops}")),
            CommitEvent::Replying { ops } => seen.lock().push(format!("replying ops={ops}")),
            CommitEvent::Applied { .. } => {}
        })),
        ..DurableOptions::default()
    };
    let board = DurableBoard::open(dir.path(), options).unwrap();
    board.add(NewItem::new("big", "Big")).await.unwrap();
    let token = claimed(&board, "big").await;
    let text = big_text(3 * RESULT_PART_BYTES + 1000);

    // A part is acknowledged only after its sync, like any board write.
    log.lock().clear();
    board.put_result_part("big", token, 0, "x").await.unwrap();
    log.lock().push("reply".into());
    assert_eq!(*log.lock(), ["fdatasync ops=1", "replying ops=1", "reply"]);

    let (preview, parts, bytes) = upload(&board, "big", token, &text).await;
    assert_eq!(parts, 4);
    let done = board
        .complete_in_parts("big", token, preview.clone(), parts, bytes)
        .await
        .unwrap();
    assert_eq!(done.status, Status::Done);
    assert_eq!(done.result.as_deref(), Some(preview.as_str()));
    assert!(preview.len() <= 4096 && text.starts_with(&preview));
    assert_eq!(done.metadata[META_RESULT_PARTS], "4");
    assert_eq!(done.metadata[META_RESULT_BYTES], text.len().to_string());
    assert_eq!(done.result_parts(), Some(4));
    // The same call again (a lost reply) is answered with the item.
    let again = board
        .complete_in_parts("big", token, preview.clone(), parts, bytes)
        .await
        .unwrap();
    assert_eq!(again, done);
    // A plain complete with that token is a repeat too: it changes nothing, parts included.
    board.complete("big", token, "other").await.unwrap();
    assert_eq!(
        board.full_result("big").await.unwrap().as_deref(),
        Some(&*text)
    );

    assert_eq!(board.result_part("big", 4).await.unwrap(), None);
    assert_eq!(
        board.result_part("big", 0).await.unwrap().unwrap(),
        split_at_char_boundaries(&text, RESULT_PART_BYTES)[0]
    );
    let e = board_err(board.result_part("nope", 0).await.unwrap_err());
    assert_eq!(e, BoardError::NotFound { id: "nope".into() });
    board.shutdown().await.unwrap();

    // Reopened: the item and every part are there.
    let board = DurableBoard::open(dir.path(), DurableOptions::default()).unwrap();
    assert_eq!(board.get_now("big").unwrap(), done);
    assert_eq!(
        board.full_result("big").await.unwrap().as_deref(),
        Some(&*text)
    );

    // Removed: no part is left.
    board.remove("big").await.unwrap();
    board.shutdown().await.unwrap();
    let store = SledStore::open(dir.path()).unwrap();
    assert!(!store.has_parts().unwrap());
    assert!(store
        .part_indices(&ItemId::new("big").unwrap())
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn only_the_lease_holder_stores_parts_and_all_of_them_must_be_there() {
    let store = MemoryStore::new();
    let board = DurableBoard::with_store(store.clone(), DurableOptions::default()).unwrap();
    board.add(NewItem::new("a", "A")).await.unwrap();
    // Not claimed: no token is current.
    let e = board_err(board.put_result_part("a", 1, 0, "x").await.unwrap_err());
    assert!(matches!(e, BoardError::StaleToken { .. }), "{e}");
    let token = claimed(&board, "a").await;
    let e = board_err(
        board
            .put_result_part("a", token + 1, 0, "x")
            .await
            .unwrap_err(),
    );
    assert!(matches!(e, BoardError::StaleToken { presented, .. } if presented == token + 1));
    let e = board_err(
        board
            .put_result_part("zz", token, 0, "x")
            .await
            .unwrap_err(),
    );
    assert_eq!(e, BoardError::NotFound { id: "zz".into() });
    // Too large a piece.
    let e = board_err(
        board
            .put_result_part("a", token, 0, "x".repeat(RESULT_PART_BYTES + 1))
            .await
            .unwrap_err(),
    );
    assert!(e.to_string().contains("at most 65536 bytes"), "{e}");
    assert_eq!(store.part_count(), 0);

    board.put_result_part("a", token, 0, "zero ").await.unwrap();
    board.put_result_part("a", token, 2, "two").await.unwrap();
    // The same index again replaces the piece.
    board.put_result_part("a", token, 0, "zero!").await.unwrap();
    let e = board_err(
        board
            .complete_in_parts("a", token, "zero", 3, 13)
            .await
            .unwrap_err(),
    );
    assert_eq!(
        e,
        BoardError::PartMissing {
            id: "a".into(),
            index: 1,
            parts: 3,
            other_attempt: false
        }
    );
    assert!(e.to_string().contains("part 1 is missing"), "{e}");
    board.put_result_part("a", token, 1, "one ").await.unwrap();
    let e = board_err(
        board
            .complete_in_parts("a", token, "zero", 3, 99)
            .await
            .unwrap_err(),
    );
    assert!(e.to_string().contains("hold 12 bytes, not the 99"), "{e}");
    let e = board_err(
        board
            .complete_in_parts("a", token, "zero", 0, 0)
            .await
            .unwrap_err(),
    );
    assert!(e.to_string().contains("0 parts"), "{e}");
    let e = board_err(
        board
            .complete_in_parts("a", token, "p".repeat(5000), 3, 12)
            .await
            .unwrap_err(),
    );
    assert!(e.to_string().contains("preview is 5000 bytes"), "{e}");
    // A stale token is refused as such, before the parts are looked at.
    let e = board_err(
        board
            .complete_in_parts("a", token + 1, "zero", 3, 12)
            .await
            .unwrap_err(),
    );
    assert!(matches!(e, BoardError::StaleToken { .. }), "{e}");
    // Refusals changed nothing: the item is still leased.
    assert_eq!(board.get_now("a").unwrap().status, Status::Claimed);
    let done = board
        .complete_in_parts("a", token, "zero", 3, 12)
        .await
        .unwrap();
    assert_eq!(done.result.as_deref(), Some("zero"));
    assert_eq!(
        board.full_result("a").await.unwrap().as_deref(),
        Some("zero!one two")
    );
    // After the settle the token is no longer current: no more pieces.
    let e = board_err(board.put_result_part("a", token, 3, "x").await.unwrap_err());
    assert!(matches!(e, BoardError::StaleToken { .. }), "{e}");
    board.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_retry_does_not_mix_its_parts_with_the_earlier_attempts() {
    let store = MemoryStore::new();
    let board = DurableBoard::with_store(store.clone(), DurableOptions::default()).unwrap();
    board
        .add(NewItem::new("r", "Retried").max_attempts(3))
        .await
        .unwrap();
    // Attempt 1 stores five pieces, then fails (with a retry).
    let t1 = claimed(&board, "r").await;
    for i in 0..5 {
        board
            .put_result_part("r", t1, i, format!("first-{i};"))
            .await
            .unwrap();
    }
    let retrying = board.fail("r", t1, "crashed", true).await.unwrap();
    assert_eq!(retrying.status, Status::Ready);
    // Attempt 2 (an explicit claim ignores the backoff) stores two, but skips piece 1 at
    // first: attempt 1's piece 1 does not stand in for it.
    let t2 = claimed(&board, "r").await;
    assert!(t2 > t1);
    board
        .put_result_part("r", t2, 0, "second-0;")
        .await
        .unwrap();
    let e = board_err(
        board
            .complete_in_parts("r", t2, "second", 2, 18)
            .await
            .unwrap_err(),
    );
    assert!(
        matches!(
            e,
            BoardError::PartMissing {
                index: 1,
                other_attempt: true,
                ..
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("earlier attempt"), "{e}");
    board
        .put_result_part("r", t2, 1, "second-1;")
        .await
        .unwrap();
    board
        .complete_in_parts("r", t2, "second", 2, 18)
        .await
        .unwrap();
    assert_eq!(
        board.full_result("r").await.unwrap().as_deref(),
        Some("second-0;second-1;")
    );
    // Attempt 1's pieces past the count are gone.
    assert_eq!(store.part_count(), 2);
    assert_eq!(board.result_part("r", 2).await.unwrap(), None);

    // An item retried after parts and completed without them keeps no parts.
    board.add(NewItem::new("s", "Small")).await.unwrap();
    let t = claimed(&board, "s").await;
    board.put_result_part("s", t, 0, "stray").await.unwrap();
    board.fail("s", t, "again", true).await.unwrap();
    let t = claimed(&board, "s").await;
    let done = board.complete("s", t, "small result").await.unwrap();
    assert_eq!(done.result_parts(), None);
    assert_eq!(store.part_count(), 2);
    assert_eq!(
        board.full_result("s").await.unwrap().as_deref(),
        Some("small result")
    );
    assert_eq!(board.result_part("s", 0).await.unwrap(), None);
    board.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_removed_item_leaves_no_parts_and_reopening_keeps_the_rest() {
    let store = MemoryStore::new();
    let board = DurableBoard::with_store(store.clone(), DurableOptions::default()).unwrap();
    for id in ["a", "ab", "b"] {
        board.add(NewItem::new(id, id)).await.unwrap();
        let t = claimed(&board, id).await;
        board.put_result_part(id, t, 0, id).await.unwrap();
        board.put_result_part(id, t, 1, "!").await.unwrap();
        board
            .complete_in_parts(id, t, id, 2, id.len() as u64 + 1)
            .await
            .unwrap();
    }
    assert_eq!(store.part_count(), 6);
    board.remove("a").await.unwrap();
    assert_eq!(store.part_count(), 4, "only `a`'s parts (not `ab`'s)");
    // Parts of an item in flight are deleted with it too.
    board.add(NewItem::new("c", "C")).await.unwrap();
    let t = claimed(&board, "c").await;
    board.put_result_part("c", t, 0, "c").await.unwrap();
    board.cancel("c").await.unwrap();
    board.remove("c").await.unwrap();
    assert_eq!(store.part_count(), 4);
    board.shutdown().await.unwrap();
    let board = DurableBoard::with_store(store.clone(), DurableOptions::default()).unwrap();
    assert_eq!(
        board.full_result("ab").await.unwrap().as_deref(),
        Some("ab!")
    );
    assert_eq!(board.full_result("b").await.unwrap().as_deref(), Some("b!"));
    let e = board_err(board.full_result("a").await.unwrap_err());
    assert_eq!(e, BoardError::NotFound { id: "a".into() });
    board.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_failed_part_write_poisons_the_board_like_any_write() {
    let store = MemoryStore::new();
    let board = DurableBoard::with_store(store.clone(), DurableOptions::default()).unwrap();
    board.add(NewItem::new("a", "A")).await.unwrap();
    let t = claimed(&board, "a").await;
    store.fail_writes(true);
    let e = board.put_result_part("a", t, 0, "x").await.unwrap_err();
    assert!(matches!(e, DurableError::Store(_)), "{e}");
    let e = board.put_result_part("a", t, 0, "x").await.unwrap_err();
    assert!(matches!(e, DurableError::Poisoned(_)), "{e}");
    board.shutdown().await.unwrap();
}
