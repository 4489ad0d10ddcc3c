//! The board through the Workshop API: items, board workers (push wake-up, failure marking,
//! worktrees) and workflows. Waits follow events, never sleeps.

mod common;

use common::*;
use workshop_board::item::Status;
use workshop_board::item::WorkType;
use workshop_node::worker::WorkerSpec;
use workshop_node::{ApiError, Node, WorkOptions};
use workshop_types::{AgentName, AgentOptions, AgentStatus, Topic};
use workshop_workflow::{RunStatus, Source, Stage, Workflow};

fn typed(t: &str) -> WorkOptions {
    WorkOptions {
        work_type: Some(t.into()),
        ..Default::default()
    }
}

async fn until_line(rx: &mut tokio::sync::broadcast::Receiver<workshop_types::Event>, line: &str) {
    next_event(rx, line, |e| e.line == line).await;
}

#[tokio::test]
async fn worker_is_pushed_ready_items_and_completes_them_with_the_result() {
    let node = node().await;
    let w = &node.workshop;
    let mut ev = w.watch();
    // A one-minute fallback interval: only the push can make this test pass quickly.
    w.board_worker(
        "dev",
        "code",
        None,
        script(vec![text("done: {prompt}")]),
        Some(60_000),
        false,
    )
    .await
    .expect("worker");
    let mut o = typed("code");
    o.spec = Some("LRU with TTL".into());
    w.work("cache", "Implement LRU cache", o)
        .await
        .expect("work");
    until_line(&mut ev, "[work] cache completed").await;
    let item = w.work_item("cache").await.expect("item");
    assert_eq!(item.status, Status::Done);
    assert_eq!(
        item.result.as_deref(),
        Some("done: Implement LRU cache\n\nSpec:\nLRU with TTL")
    );
    assert_eq!(item.claimed_by.as_deref(), Some("dev"));
    let workers = w.workers().await.expect("workers");
    assert_eq!(workers.len(), 1);
    assert_eq!(workers[0].completed, 1);
    // The agent was reset between items: a fresh session, zero cost.
    until_line(&mut ev, "[agent] dev reset").await;
    assert_eq!(w.info("dev").await.expect("info").turns, 0);
    node.shutdown().await;
}

#[tokio::test]
async fn a_failed_turn_fails_the_item_and_blocks_its_dependents() {
    let node = node().await;
    let w = &node.workshop;
    let mut ev = w.watch();
    let mut o = typed("code");
    o.max_attempts = Some(1);
    w.work("a", "Do it", o).await.expect("work a");
    let mut dep = typed("review");
    dep.depends_on = vec!["a".into()];
    w.work("b", "Review it", dep).await.expect("work b");
    w.board_worker(
        "dev",
        "code",
        None,
        script(vec![error("API 529 overloaded")]),
        None,
        false,
    )
    .await
    .expect("worker");
    next_event(&mut ev, "item a failed", |e| {
        e.topic == Topic::Work && e.kind == "failed" && e.subject.as_deref() == Some("a")
    })
    .await;
    let a = w.work_item("a").await.expect("a");
    assert_eq!(
        a.status,
        Status::Failed,
        "a failed turn is never a done item"
    );
    assert!(
        a.error
            .as_deref()
            .unwrap_or("")
            .contains("API 529 overloaded"),
        "{a:?}"
    );
    assert_eq!(w.work_item("b").await.expect("b").status, Status::Blocked);
    assert_eq!(w.workers().await.expect("workers")[0].failed, 1);
    node.shutdown().await;
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
        None,
        script(vec![error("transient"), text("ok now")]),
        Some(60_000),
        false,
    )
    .await
    .expect("worker");
    next_event(&mut ev, "the first attempt to fail", |e| {
        e.line
            .starts_with("[work] flaky failed (attempt 1 of 2), will retry")
    })
    .await;
    let retrying = w.work_item("flaky").await.expect("item");
    assert_eq!(retrying.status, Status::Ready);
    let failed_at = w.now_ms();
    let backoff = retrying.not_before_ms - failed_at;
    assert!((500..=1000).contains(&backoff), "backoff {backoff} ms");
    // The backoff passes (virtual time); the board pushes the item, the worker claims it.
    time.advance(std::time::Duration::from_millis(1000)).await;
    until_line(&mut ev, "[work] flaky completed").await;
    let item = w.work_item("flaky").await.expect("item");
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

#[tokio::test]
async fn board_errors_are_precise() {
    let node = node().await;
    let w = &node.workshop;
    w.work("x", "X", WorkOptions::default()).await.expect("x");
    let dup = w
        .work("x", "again", WorkOptions::default())
        .await
        .expect_err("duplicate");
    assert!(matches!(dup, ApiError::Board(_)));
    let missing = WorkOptions {
        depends_on: vec!["nope".into()],
        ..Default::default()
    };
    let e = w.work("y", "Y", missing).await.expect_err("missing dep");
    assert!(e.to_string().contains("nope"), "{e}");
    let pri = WorkOptions {
        priority: Some(9),
        ..Default::default()
    };
    assert!(w.work("z", "Z", pri).await.is_err());
    let e = w
        .work("q", "Q", typed("feature"))
        .await
        .expect_err("bad type");
    assert!(e.to_string().contains("unknown work type"), "{e}");
    let e = w.start_work("x").await.expect_err("not claimed");
    assert!(e.to_string().contains("claim_work"), "{e}");
    w.claim_work("x", "me").await.expect("claim");
    let e = w.claim_work("x", "other").await.expect_err("claimed twice");
    assert!(e.to_string().to_lowercase().contains("claimed"), "{e}");
    w.start_work("x").await.expect("start");
    w.complete_work("x", Some("r".into()))
        .await
        .expect("complete");
    assert!(
        w.cancel_work("x").await.is_err(),
        "done items cannot be cancelled"
    );
    let e = w
        .board(Some("sideways"), None)
        .await
        .expect_err("bad status");
    assert!(e.to_string().contains("unknown status"), "{e}");
    node.shutdown().await;
}

#[tokio::test]
async fn work_from_result_uses_the_agents_last_result_as_spec() {
    let node = node().await;
    let w = &node.workshop;
    w.agent("arch", None, script(vec![text("split the module")]))
        .await
        .expect("agent");
    let e = w
        .work_from_result("arch", "refactor", WorkOptions::default())
        .await
        .expect_err("no result yet");
    assert!(matches!(e, ApiError::NoResult(_)));
    w.ask("arch", "review").await.expect("ask");
    let item = w
        .work_from_result("arch", "refactor", typed("code"))
        .await
        .expect("item");
    assert_eq!(item.spec, "split the module");
    assert_eq!(item.title, "From arch result");
    node.shutdown().await;
}

fn feature() -> Workflow {
    let plan = Stage::new("plan", "planner", "Plan it");
    let mut implement = Stage::new("implement", "coder", "Implement the plan");
    implement.from = Source::Stages(vec!["plan".into()]);
    implement.work_type = "code".into();
    let mut review = Stage::new("review", "reviewer", "Review everything");
    review.from = Source::Stages(vec!["plan".into(), "implement".into()]);
    review.work_type = "review".into();
    Workflow::new("feature", vec![plan, implement, review]).expect("valid")
}

#[tokio::test]
async fn workflow_runs_through_workers_and_feeds_results_forward() {
    let node = node().await;
    let w = &node.workshop;
    w.workflow(feature()).await.expect("define");
    w.board_worker(
        "gen",
        "custom",
        None,
        script(vec![text("the plan")]),
        None,
        false,
    )
    .await
    .expect("custom worker");
    w.board_worker(
        "dev",
        "code",
        None,
        script(vec![text("the code")]),
        None,
        false,
    )
    .await
    .expect("code worker");
    w.board_worker(
        "rev",
        "review",
        None,
        script(vec![text("{prompt}")]),
        None,
        false,
    )
    .await
    .expect("review worker");
    w.run_workflow("feature").await.expect("run");
    let e = w
        .run_workflow("feature")
        .await
        .expect_err("already running");
    assert!(e.to_string().contains("reset_workflow"), "{e}");
    let status = within("the workflow", w.await_workflow("feature", None))
        .await
        .expect("await");
    assert_eq!(status, RunStatus::Completed);
    let review = w.work_item("feature_review").await.expect("review item");
    assert_eq!(
        review.result.as_deref(),
        Some("Review everything\n\nPrevious stage results:\n\n## plan\nthe plan\n\n## implement\nthe code")
    );
    w.reset_workflow("feature").await.expect("reset");
    let (s, items) = w.workflow_status("feature").await.expect("status");
    assert_eq!(s, RunStatus::Defined);
    assert!(items.iter().all(|(_, i)| i.is_none()));
    node.shutdown().await;
}

#[tokio::test]
async fn a_failed_stage_fails_the_workflow() {
    let node = node().await;
    let w = &node.workshop;
    w.workflow(feature()).await.expect("define");
    w.board_worker(
        "gen",
        "custom",
        None,
        script(vec![text("plan")]),
        None,
        false,
    )
    .await
    .expect("worker");
    let mut ev = w.watch();
    w.run_workflow("feature").await.expect("run");
    until_line(&mut ev, "[work] feature_plan completed").await;
    // No code worker: take the implement stage by hand and fail it.
    w.claim_work("feature_implement", "someone")
        .await
        .expect("implement is ready once plan is done");
    w.fail_work("feature_implement", Some("could not build".into()))
        .await
        .expect("fail");
    let status = within("the workflow", w.await_workflow("feature", None))
        .await
        .expect("await");
    assert_eq!(status, RunStatus::Failed);
    let (_, items) = w.workflow_status("feature").await.expect("status");
    let review = items[2].1.as_ref().expect("review item");
    assert_eq!(review.status, Status::Blocked);
    node.shutdown().await;
}

#[tokio::test]
async fn board_and_workflow_definitions_survive_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let node = Node::open(dir.path()).await.expect("open");
        let w = &node.workshop;
        w.work("keep", "Keep me", typed("docs"))
            .await
            .expect("work");
        w.workflow(feature()).await.expect("define");
        node.shutdown().await;
    }
    let node = Node::open(dir.path()).await.expect("reopen");
    let w = &node.workshop;
    let item = w.work_item("keep").await.expect("item survived");
    assert_eq!(item.status, Status::Ready);
    assert_eq!(w.workflows().len(), 1);
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

#[tokio::test]
async fn worktree_workers_give_each_item_a_branch_removed_on_success_kept_on_failure() {
    let repo = repo().await;
    let node = node().await;
    let w = &node.workshop;
    let mut ev = w.watch();
    let dir = repo.path().to_string_lossy().into_owned();
    // Each item re-creates the agent inside its worktree (so its script starts over): one
    // worker that succeeds, one that fails.
    let mut o: AgentOptions = script(vec![text("in {prompt}")]);
    o.working_dir = Some(dir.clone());
    w.board_worker("dev", "code", None, o, None, true)
        .await
        .expect("worker");
    let mut o: AgentOptions = script(vec![error("broken")]);
    o.working_dir = Some(dir);
    w.board_worker("doc", "docs", None, o, None, true)
        .await
        .expect("worker");
    w.work("ok", "Good job", typed("code")).await.expect("work");
    until_line(&mut ev, "[work] ok completed").await;
    let mut bad = typed("docs");
    bad.max_attempts = Some(1);
    w.work("bad", "Bad job", bad).await.expect("work");
    next_event(&mut ev, "worktree kept", |e| e.kind == "worktree_kept").await;
    let branches = git(repo.path(), &["branch", "--list", "workshop/*"]).await;
    assert!(branches.contains("workshop/ok-a0"), "{branches}");
    assert!(branches.contains("workshop/bad-a0"), "{branches}");
    let wt = repo.path().join(".workshop/worktrees");
    assert!(!wt.join("ok-a0").exists(), "worktree removed after success");
    assert!(wt.join("bad-a0").exists(), "worktree kept after failure");
    node.shutdown().await;
}

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
    let item = w.work_item("x").await.expect("item");
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
