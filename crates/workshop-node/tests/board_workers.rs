//! Board workers through the Workshop API where only the in-process node can run the
//! scenario: a paused clock moved by the test (`ManualTime`), and a worker with a custom lease
//! (`board_worker_with`). Items, board workers, worktrees and workflows otherwise run through
//! `Client` against an in-process node and a `workshop node` process in
//! tests/e2e/client_board_workers.rs. Waits follow events, never sleeps.

mod common;

use common::*;
use workshop_board::item::WorkType;
use workshop_board::item::{SettleBy, Status};
use workshop_node::worker::WorkerSpec;
use workshop_node::WorkOptions;
use workshop_types::{AgentName, AgentStatus, Topic};

fn typed(t: &str) -> WorkOptions {
    WorkOptions {
        work_type: Some(t.into()),
        ..Default::default()
    }
}

async fn until_line(rx: &mut tokio::sync::broadcast::Receiver<workshop_types::Event>, line: &str) {
    next_event(rx, line, |e| e.line == line).await;
}

/// On virtual time (the node's clock follows tokio's paused clock, moved by the test): the retry
/// waits out the board's backoff, and is pushed to the worker the moment it has passed, without
/// the test waiting real time.
#[tokio::test(start_paused = true)]
async fn failed_turns_are_retried_until_max_attempts() {
    let real = std::time::Instant::now();
    let time = ManualTime::hold();
    let node = paused_node().await;
    let w = &node.workshop;
    let mut ev = w.watch();
    let mut o = typed("code");
    o.max_attempts = Some(2);
    w.work("flaky", "Flaky job", o).await.expect("work");
    // First attempt errors, the retry (after the board's backoff, at most 1 s) succeeds. The
    // fallback poll is a minute: the board itself pushes the item again when its backoff passes.
    w.board_worker(
        "dev",
        "code",
        worker_opts(script(vec![error("transient"), text("ok now")])),
    )
    .await
    .expect("worker");
    next_event(&mut ev, "the first attempt to fail", |e| {
        e.line
            .starts_with("[work] flaky failed (attempt 1 of 2), will retry")
    })
    .await;
    let retrying = w.work_item("flaky").await.expect("get").expect("item");
    assert_eq!(retrying.status, Status::Ready);
    let failed_at = w.now_ms();
    let backoff = retrying.not_before_ms - failed_at;
    assert!((500..=1000).contains(&backoff), "backoff {backoff} ms");
    // The backoff passes (virtual time); the board pushes the item, the worker claims it.
    time.advance(std::time::Duration::from_millis(1000)).await;
    until_line(&mut ev, "[work] flaky completed").await;
    let item = w.work_item("flaky").await.expect("get").expect("item");
    assert_eq!(item.status, Status::Done);
    assert_eq!(item.attempts, 1);
    // Claimed once its backoff had passed by the board's clock, by the push (the worker's
    // fallback poll is a minute away).
    let claimed = item.claimed_at_ms.expect("claimed");
    assert!(
        claimed >= retrying.not_before_ms,
        "{claimed} < {}",
        retrying.not_before_ms
    );
    assert_eq!(
        claimed - failed_at,
        1000,
        "claimed as soon as the clock moved past it"
    );
    assert!(
        real.elapsed() < std::time::Duration::from_secs(10),
        "virtual time, not real waiting: {:?}",
        real.elapsed()
    );
    node.shutdown().await;
}

async fn git(dir: &std::path::Path, args: &[&str]) -> String {
    let out = tokio::process::Command::new("git")
        .args(args)
        .current_dir(dir)
        .output()
        .await
        .expect("git");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A git repository with one empty commit on `main`.
async fn repo() -> tempfile::TempDir {
    let repo = tempfile::tempdir().expect("repo");
    git(repo.path(), &["init", "-q", "-b", "main"]).await;
    git(
        repo.path(),
        &[
            "-c",
            "user.email=t@t",
            "-c",
            "user.name=t",
            "commit",
            "-q",
            "--allow-empty",
            "-m",
            "init",
        ],
    )
    .await;
    repo
}

/// A worker with a short lease (`board_worker_with`): the Client port has no lease option.
#[tokio::test]
async fn a_refused_heartbeat_interrupts_the_turn_and_releases_the_worktree() {
    let repo = repo().await;
    let node = node().await;
    let w = &node.workshop;
    let mut ev = w.watch();
    // A short lease (heartbeat every 100 ms) and a turn that only ends when interrupted.
    let mut options = script(vec![hang()]);
    options.working_dir = Some(repo.path().to_string_lossy().into_owned());
    w.board_worker_with(WorkerSpec {
        name: AgentName::new("dev").expect("name"),
        work_type: WorkType::Code,
        role: None,
        options,
        interval_ms: 60_000,
        lease_ms: 300,
        worktree: true,
    })
    .await
    .expect("worker");
    w.work("x", "Never ends", typed("code"))
        .await
        .expect("work");
    until_line(&mut ev, "[board_worker] dev started x").await;
    until_info(w, "dev", "the turn to run", |i| {
        i.status == AgentStatus::Working
    })
    .await;
    let worktree = repo.path().join(".workshop/worktrees/x-a0");
    assert!(worktree.exists(), "the item runs in its worktree");

    // The lease is taken away: the worker's next heartbeat is refused.
    w.cancel_work("x").await.expect("cancel");
    let interrupted = std::cell::Cell::new(false);
    let lost = next_event(&mut ev, "the lease_lost event", |e| {
        if e.line == "[error] dev: interrupted" {
            interrupted.set(true);
        }
        e.kind == "lease_lost" && e.subject.as_deref() == Some("x")
    })
    .await;
    assert!(
        interrupted.get(),
        "the turn in flight was interrupted first"
    );
    assert!(lost.line.contains("dev lost its lease"), "{}", lost.line);
    assert!(lost.line.contains("turn interrupted"), "{}", lost.line);
    assert!(lost.line.contains("stale fencing token"), "{}", lost.line);
    assert!(!worktree.exists(), "the worktree was removed");
    let branches = git(repo.path(), &["branch", "--list", "workshop/*"]).await;
    assert!(
        branches.contains("workshop/x-a0"),
        "the branch stays: {branches}"
    );
    assert_eq!(w.info("dev").await.expect("info").status, AgentStatus::Idle);

    // Nothing was recorded with the stale token: the item is as the cancel left it, and the
    // worker neither completed nor failed anything.
    let item = w.work_item("x").await.expect("get").expect("item");
    assert_eq!(item.status, Status::Cancelled);
    assert_eq!((item.result, item.last_settle), (None, None));
    within("the worker to be free", async {
        loop {
            let info = w.workers().await.expect("workers").pop().expect("worker");
            if info.current_item.is_none() {
                assert_eq!((info.completed, info.failed), (0, 0));
                return;
            }
            tokio::task::yield_now().await;
        }
    })
    .await;
    let events = w.events(500, Some(Topic::Work)).await.expect("events");
    assert!(
        !events
            .iter()
            .any(|e| e.kind == "error" || e.kind == "failed"),
        "{events:?}"
    );
    node.shutdown().await;
}

/// Issue 8 item 5: settling by hand an item a board worker holds needs its token or force; a
/// forced settle is logged naming the worker, which loses the item at its next heartbeat and
/// interrupts its turn, and whose own result is then never recorded.
#[tokio::test]
async fn a_forced_settle_takes_the_item_from_a_worker_and_interrupts_its_turn() {
    let node = node().await;
    let w = &node.workshop;
    let mut ev = w.watch();
    w.board_worker_with(WorkerSpec {
        name: AgentName::new("dev").expect("name"),
        work_type: WorkType::Code,
        role: None,
        options: script(vec![hang()]),
        interval_ms: 60_000,
        lease_ms: 300,
        worktree: false,
    })
    .await
    .expect("worker");
    w.work("x", "Never ends", typed("code"))
        .await
        .expect("work");
    until_line(&mut ev, "[board_worker] dev started x").await;
    until_info(w, "dev", "the turn to run", |i| {
        i.status == AgentStatus::Working
    })
    .await;

    // Neither token nor force: refused, naming the holder; the worker keeps the item.
    let e = w
        .complete_work("x", Some("by hand".into()), None)
        .await
        .expect_err("held by the worker");
    assert_eq!(e.code(), "held", "{e}");
    assert!(e.to_string().contains("held by dev"), "{e}");
    let e = w
        .fail_work("x", None, None)
        .await
        .expect_err("held by the worker");
    assert_eq!(e.code(), "held", "{e}");
    assert_eq!(
        w.work_item("x").await.expect("get").expect("item").status,
        Status::InProgress
    );

    // By force: done at once, logged with the holder it was taken from.
    let done = w
        .complete_work("x", Some("by hand".into()), Some(SettleBy::Force))
        .await
        .expect("forced");
    assert_eq!(done.status, Status::Done);
    let interrupted = std::cell::Cell::new(false);
    let forced = std::cell::RefCell::new(None);
    let lost = next_event(&mut ev, "the lease_lost event", |e| {
        if e.line == "[error] dev: interrupted" {
            interrupted.set(true);
        }
        if e.kind == "forced" {
            *forced.borrow_mut() = Some(e.line.clone());
        }
        e.kind == "lease_lost" && e.subject.as_deref() == Some("x")
    })
    .await;
    let forced = forced
        .into_inner()
        .expect("a forced event before the worker noticed");
    assert!(
        forced.contains("x completed by force, taken from dev"),
        "{forced}"
    );
    assert!(interrupted.get(), "the worker's turn was interrupted");
    assert!(lost.line.contains("dev lost its lease"), "{}", lost.line);
    let item = w.work_item("x").await.expect("get").expect("item");
    assert_eq!(item.status, Status::Done);
    assert_eq!(item.result.as_deref(), Some("by hand"));
    within("the worker to be free", async {
        loop {
            let info = w.workers().await.expect("workers").pop().expect("worker");
            if info.current_item.is_none() {
                assert_eq!((info.completed, info.failed), (0, 0));
                return;
            }
            tokio::task::yield_now().await;
        }
    })
    .await;
    node.shutdown().await;
}

/// A lease that runs out publishes an event naming the item and what became of it (the
/// worker that held it may be gone and say nothing).
#[tokio::test(start_paused = true)]
async fn an_expired_lease_is_an_event() {
    let time = ManualTime::hold();
    let node = paused_node().await;
    let w = &node.workshop;
    let mut ev = w.watch();
    w.work("held", "Held by hand", typed("code"))
        .await
        .expect("work");
    let claimed = w.claim_work("held", "someone").await.expect("claim");
    let lease = claimed.lease.expect("a lease");
    let left = lease.expires_at_ms - w.now_ms();
    time.advance(std::time::Duration::from_millis(left + 2_000))
        .await;
    let e = next_event(&mut ev, "the lease_expired event", |e| {
        e.kind == "lease_expired"
    })
    .await;
    assert_eq!(e.topic, Topic::Work);
    assert_eq!(e.subject.as_deref(), Some("held"));
    assert!(
        e.line
            .starts_with("[work] held: its lease expired before it was settled; now ready"),
        "{}",
        e.line
    );
    let item = w.work_item("held").await.expect("get").expect("item");
    assert_eq!(item.status, Status::Ready);
    node.shutdown().await;
}
