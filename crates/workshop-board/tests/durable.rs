//! DurableBoard: group commit, sync-before-reply, push of ready items, failure handling.
#![allow(clippy::unwrap_used)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use workshop_board::durable::{CommitEvent, DurableError, DurableOptions};
use workshop_board::{
    BoardError, DurableBoard, ListFilter, MemoryStore, NewItem, SettleBy, Status, WorkType,
};

fn logging_options(log: Arc<Mutex<Vec<String>>>) -> DurableOptions {
    DurableOptions {
        observer: Some(Arc::new(move |ev| match ev {
            CommitEvent::Synced { ops } => log.lock().push(format!("fdatasync ops={ops}")),
            CommitEvent::Replying { ops } => log.lock().push(format!("replying ops={ops}")),
            CommitEvent::Applied { .. } => {}
        })),
        ..DurableOptions::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fdatasync_precedes_the_reply_of_a_claim() {
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(Mutex::new(Vec::new()));
    let board = DurableBoard::open(dir.path(), logging_options(log.clone())).unwrap();
    board.add(NewItem::new("a", "A")).await.unwrap();
    let syncs_before = board.stats().syncs;
    log.lock().clear();
    let claimed = board.claim("a", "w1", 10_000).await.unwrap();
    log.lock().push("claim reply received".into());
    assert_eq!(claimed.status, Status::Claimed);
    assert_eq!(
        *log.lock(),
        vec![
            "fdatasync ops=1".to_string(),
            "replying ops=1".to_string(),
            "claim reply received".to_string()
        ]
    );
    assert_eq!(board.stats().syncs, syncs_before + 1);
    // the durable read replica shows the claim once it is acknowledged
    assert_eq!(board.get("a").await.unwrap().status, Status::Claimed);
    board.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_claims_share_syncs() {
    const N: usize = 64;
    let dir = tempfile::tempdir().unwrap();
    let board = DurableBoard::open(dir.path(), DurableOptions::default()).unwrap();
    let adds: Vec<_> = (0..N)
        .map(|i| {
            let b = board.clone();
            tokio::spawn(async move { b.add(NewItem::new(format!("i{i}"), "x")).await })
        })
        .collect();
    for a in adds {
        a.await.unwrap().unwrap();
    }
    let before = board.stats();
    let claims: Vec<_> = (0..N)
        .map(|i| {
            let b = board.clone();
            tokio::spawn(async move { b.claim_next(None, &format!("w{i}"), 10_000).await })
        })
        .collect();
    let mut tokens = Vec::new();
    for c in claims {
        tokens.push(c.await.unwrap().unwrap().unwrap().token().unwrap());
    }
    let after = board.stats();
    let syncs = after.syncs - before.syncs;
    eprintln!("{N} concurrent claims used {syncs} fdatasyncs");
    assert!(syncs < N as u64, "{N} claims used {syncs} syncs");
    tokens.sort_unstable();
    tokens.dedup();
    assert_eq!(tokens.len(), N, "every claim got its own token");
    assert_eq!(board.counts().await[&Status::Claimed], N);
    board.shutdown().await.unwrap();
}

#[tokio::test]
async fn every_operation_and_error_passes_through() {
    let store = MemoryStore::new();
    let board = DurableBoard::with_store(store.clone(), DurableOptions::default()).unwrap();
    let a = board
        .add(NewItem::work(
            "a",
            "A",
            WorkType::Code,
            "spec",
            2,
            Vec::<String>::new(),
        ))
        .await
        .unwrap();
    assert_eq!(a.status, Status::Ready);
    board
        .add(NewItem::new("b", "B").depends_on(["a"]))
        .await
        .unwrap();
    board.add(NewItem::new("c", "C")).await.unwrap();
    board.add(NewItem::new("d", "D")).await.unwrap();
    assert!(matches!(
        board.add(NewItem::new("a", "again")).await,
        Err(DurableError::Board(BoardError::DuplicateId { .. }))
    ));
    assert!(matches!(
        board.claim("b", "w", 1_000).await,
        Err(DurableError::Board(BoardError::InvalidTransition { .. }))
    ));
    let got = board
        .claim_next(Some(WorkType::Code), "w", 1_000)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.id.as_str(), "a");
    let t = got.token().unwrap();
    assert!(board
        .claim_next(Some(WorkType::Code), "w", 1_000)
        .await
        .unwrap()
        .is_none());
    board.start("a", t).await.unwrap();
    board.heartbeat("a", t, 5_000).await.unwrap();
    assert!(matches!(
        board.complete("a", t + 100, "x").await,
        Err(DurableError::Board(BoardError::StaleToken { .. }))
    ));
    board.complete("a", t, "done!").await.unwrap();
    assert_eq!(board.get("b").await.unwrap().status, Status::Ready);
    let c = board.claim("c", "w", 1_000).await.unwrap();
    let c = board
        .fail("c", c.token().unwrap(), "flaky", true)
        .await
        .unwrap();
    assert_eq!(c.status, Status::Ready);
    assert_eq!(c.attempts, 1);
    board.claim("d", "w", 1_000).await.unwrap();
    // Held: by hand needs the lease's token or force.
    assert!(matches!(
        board.fail_work("d", "by hand", None).await,
        Err(DurableError::Board(BoardError::Held { .. }))
    ));
    board
        .fail_work("d", "by hand", Some(SettleBy::Force))
        .await
        .unwrap();
    let b = board.claim("b", "w", 1_000).await.unwrap();
    board
        .complete_work("b", "by hand", b.token().map(SettleBy::Token))
        .await
        .unwrap();
    board.cancel("c").await.unwrap();
    assert!(matches!(
        board.cancel("a").await,
        Err(DurableError::Board(BoardError::AlreadyDone { .. }))
    ));
    board.add(NewItem::new("e", "E")).await.unwrap();
    board.remove("e").await.unwrap();
    assert!(board.get("e").await.is_none());
    assert!(board.expire_leases().await.unwrap().is_empty());
    let counts = board.counts().await;
    assert_eq!(counts[&Status::Done], 2);
    assert_eq!(counts[&Status::Failed], 1);
    assert_eq!(counts[&Status::Cancelled], 1);
    assert_eq!(
        board
            .list(ListFilter::default().status(Status::Done))
            .await
            .iter()
            .map(|i| i.id.to_string())
            .collect::<Vec<_>>(),
        ["a", "b"]
    );
    // a refused request still answers; refused ops write nothing
    let stats = board.stats();
    assert!(stats.syncs >= 1 && stats.ops >= stats.syncs);
    // everything is in the store
    board.shutdown().await.unwrap();
    assert!(
        board.get_now("a").is_some(),
        "reads still work after shutdown"
    );
    assert!(matches!(board.cancel("d").await, Err(DurableError::Closed)));
    let again = DurableBoard::with_store(store, DurableOptions::default()).unwrap();
    assert_eq!(again.counts().await, counts);
}

#[tokio::test]
async fn ready_items_are_pushed_once_durable() {
    let board = DurableBoard::with_store(MemoryStore::new(), DurableOptions::default()).unwrap();
    let mut ready = board.subscribe_ready();
    board.add(NewItem::new("a", "A")).await.unwrap();
    board
        .add(NewItem::new("b", "B").depends_on(["a"]))
        .await
        .unwrap();
    let first = ready.recv().await.unwrap();
    assert_eq!(first.id.as_str(), "a");
    let a = board.claim("a", "w", 1_000).await.unwrap();
    board.complete("a", a.token().unwrap(), "r").await.unwrap();
    let second = ready.recv().await.unwrap();
    assert_eq!(second.id.as_str(), "b");
    assert_eq!(second.status, Status::Ready);
    assert!(ready.try_recv().is_err());
}

#[tokio::test]
async fn lease_expiry_uses_the_board_clock() {
    let now = Arc::new(AtomicU64::new(1_000));
    let clock_now = now.clone();
    let options = DurableOptions {
        clock: Arc::new(move || clock_now.load(Ordering::SeqCst)),
        ..DurableOptions::default()
    };
    let board = DurableBoard::with_store(MemoryStore::new(), options).unwrap();
    let mut ready = board.subscribe_ready();
    board
        .add(NewItem::new("a", "A").max_attempts(2))
        .await
        .unwrap();
    ready.recv().await.unwrap();
    let t1 = board.claim("a", "w1", 100).await.unwrap().token().unwrap();
    assert!(board.expire_leases().await.unwrap().is_empty());
    now.store(1_100, Ordering::SeqCst);
    assert_eq!(board.expire_leases().await.unwrap().len(), 1);
    // pushed as ready again
    assert_eq!(ready.recv().await.unwrap().id.as_str(), "a");
    assert!(matches!(
        board.complete("a", t1, "late").await,
        Err(DurableError::Board(BoardError::StaleToken { .. }))
    ));
    board.claim("a", "w2", 100).await.unwrap();
    now.store(5_000, Ordering::SeqCst);
    // the sweeper expires it (attempt 2 of 2: dead-lettered)
    let sweeper = board.spawn_lease_sweeper(std::time::Duration::from_millis(1));
    loop {
        if let Some(item) = board.get("a").await {
            if item.status == Status::Failed {
                assert!(item.error.unwrap().contains("dead-lettered"));
                break;
            }
        }
        tokio::task::yield_now().await;
    }
    sweeper.abort();
}

#[tokio::test]
async fn a_storage_failure_poisons_the_board() {
    let store = MemoryStore::new();
    let board = DurableBoard::with_store(store.clone(), DurableOptions::default()).unwrap();
    board.add(NewItem::new("a", "A")).await.unwrap();
    store.fail_writes(true);
    let err = board.claim("a", "w", 1_000).await.unwrap_err();
    assert!(matches!(err, DurableError::Store(_)), "{err:?}");
    // the read replica only shows durable state
    assert_eq!(board.get("a").await.unwrap().status, Status::Ready);
    store.fail_writes(false);
    let err = board.add(NewItem::new("b", "B")).await.unwrap_err();
    assert!(matches!(err, DurableError::Poisoned(_)), "{err:?}");
    assert!(err.to_string().contains("restart"));
    // a restart from the store recovers the last durable state
    board.shutdown().await.unwrap();
    let board = DurableBoard::with_store(store, DurableOptions::default()).unwrap();
    assert_eq!(board.get("a").await.unwrap().status, Status::Ready);
    board.claim("a", "w", 1_000).await.unwrap();
}

#[tokio::test]
async fn a_repeated_settle_is_answered_without_a_write() {
    let store = MemoryStore::new();
    let board = DurableBoard::with_store(store.clone(), DurableOptions::default()).unwrap();
    board.add(NewItem::new("a", "A")).await.unwrap();
    board.add(NewItem::new("r", "R")).await.unwrap();
    let ta = board.claim("a", "w", 1_000).await.unwrap().token().unwrap();
    let tr = board.claim("r", "w", 1_000).await.unwrap().token().unwrap();
    let done = board.complete("a", ta, "first").await.unwrap();
    let retrying = board.fail("r", tr, "flaky", true).await.unwrap();
    assert_eq!(retrying.status, Status::Ready);
    assert!(retrying.not_before_ms > 0);

    let (stats, syncs) = (board.stats(), store.syncs());
    // the same holder, the same outcome: the item, nothing written, nothing synced
    assert_eq!(board.complete("a", ta, "second").await.unwrap(), done);
    assert_eq!(board.fail("r", tr, "flaky", true).await.unwrap(), retrying);
    let after = board.stats();
    assert_eq!(after.items_written, stats.items_written, "no write");
    assert_eq!(after.syncs, stats.syncs, "no sync");
    assert_eq!(store.syncs(), syncs);
    assert_eq!(after.ops, stats.ops + 2, "both went through the committer");
    // the opposite outcome and other tokens are refused
    assert!(matches!(
        board.fail("a", ta, "late", false).await,
        Err(DurableError::Board(BoardError::AlreadySettled { .. }))
    ));
    assert!(matches!(
        board.complete("r", tr, "late").await,
        Err(DurableError::Board(BoardError::AlreadySettled { .. }))
    ));
    assert!(matches!(
        board.complete("a", ta + 100, "x").await,
        Err(DurableError::Board(BoardError::StaleToken { .. }))
    ));
    // the settle record survives a restart
    board.shutdown().await.unwrap();
    let board = DurableBoard::with_store(store, DurableOptions::default()).unwrap();
    assert_eq!(board.complete("a", ta, "again").await.unwrap(), done);
}

/// The board's clock follows tokio's clock, so a paused test runtime drives both the board's
/// idea of "now" and the backoff waker's sleep. The committer calls it from its own thread,
/// hence the runtime handle.
fn paused_clock(base_ms: u64) -> workshop_board::durable::Clock {
    let rt = tokio::runtime::Handle::current();
    let start = tokio::time::Instant::now();
    Arc::new(move || {
        let _in_runtime = rt.enter();
        let elapsed = tokio::time::Instant::now().duration_since(start);
        base_ms + u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX)
    })
}

#[tokio::test(start_paused = true)]
async fn a_retry_is_pushed_to_subscribers_when_its_backoff_passes() {
    let real_start = std::time::Instant::now();
    let options = DurableOptions {
        clock: paused_clock(1_000_000),
        board: workshop_board::BoardConfig {
            backoff_base_ms: 1_000,
            backoff_max_ms: 1_000,
            jitter_seed: 1,
        },
        ..DurableOptions::default()
    };
    let board = DurableBoard::with_store(MemoryStore::new(), options).unwrap();
    let mut ready = board.subscribe_ready();
    board.add(NewItem::new("a", "A")).await.unwrap();
    assert_eq!(ready.recv().await.unwrap().id.as_str(), "a");
    let t = board
        .claim("a", "w", 60_000)
        .await
        .unwrap()
        .token()
        .unwrap();
    let failed_at = tokio::time::Instant::now();
    let retrying = board.fail("a", t, "flaky", true).await.unwrap();
    assert_eq!(retrying.status, Status::Ready);
    let backoff_ms = retrying.not_before_ms - 1_000_000;
    assert!((500..=1_000).contains(&backoff_ms), "backoff {backoff_ms}");

    // A worker: woken by each push, it claims what it can. Its fallback poll is 60 s, so only
    // the board's own wake-up can get the item claimed within the backoff. (Only the wait for
    // a push is bounded: a pending timer while the board's threads work would let the paused
    // clock jump to it.)
    let poll = failed_at + std::time::Duration::from_secs(60);
    let claimed = loop {
        let item = tokio::time::timeout_at(poll, ready.recv())
            .await
            .expect("the retry is pushed once its backoff passes, before the 60 s poll")
            .unwrap();
        assert_eq!(item.id.as_str(), "a");
        if let Some(got) = board.claim_next(None, "w", 60_000).await.unwrap() {
            break got;
        }
    };
    let waited = tokio::time::Instant::now().duration_since(failed_at);
    assert_eq!(claimed.id.as_str(), "a");
    assert!(claimed.claimed_at_ms.unwrap() >= retrying.not_before_ms);
    assert!(
        waited.as_millis() <= u128::from(backoff_ms) + 50,
        "claimed {waited:?} after the failure; the backoff was {backoff_ms} ms"
    );
    assert!(
        real_start.elapsed() < std::time::Duration::from_millis(900),
        "virtual time, not real waiting: {:?}",
        real_start.elapsed()
    );
    board.shutdown().await.unwrap();
}
