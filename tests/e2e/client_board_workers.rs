//! The node crate's board suite (crates/workshop-node/tests/board_workers.rs) through
//! `Client`: items, board workers, worktrees and workflows, against a node in this process and
//! against a `workshop node` process. Waits follow the node's events (`Client::watch`).
//!
//! Not ported: the refused-heartbeat scenario, which needs a worker with a short lease
//! (`board_worker_with(WorkerSpec { lease_ms, .. })`); `WorkerOptions` has no lease.

use tokio::sync::mpsc::Receiver;
use workshop_node::{ApiError, Client, WorkOptions, WorkerOptions};
use workshop_types::board::{SettleBy, Status};
use workshop_types::{AgentOptions, Event, Topic};
use workshop_workflow::{RunStatus, Source, Stage, Workflow};

use crate::support::{both, error, next_event, say, script, within, NodeProcess};

both!(
    worker_is_pushed_ready_items_and_completes_them_with_the_result,
    a_failed_turn_fails_the_item_and_blocks_its_dependents,
    failed_turns_are_retried_until_max_attempts,
    board_errors_are_precise,
    work_from_result_uses_the_agents_last_result_as_spec,
    workflow_runs_through_workers_and_feeds_results_forward,
    a_failed_stage_fails_the_workflow,
    workflow_definitions_are_checked_where_the_node_accepts_them,
    numbers_are_checked_where_the_node_accepts_them,
    worktree_workers_give_each_item_a_branch_removed_on_success_kept_on_failure,
    ;
    gated:
);

fn typed(t: &str) -> WorkOptions {
    WorkOptions {
        work_type: Some(t.into()),
        ..Default::default()
    }
}

fn worker(options: AgentOptions, interval_ms: Option<u64>, worktree: bool) -> WorkerOptions {
    WorkerOptions {
        profile: None,
        options,
        interval_ms,
        worktree,
        lease_ms: None,
    }
}

async fn until_line(rx: &mut Receiver<Event>, line: &str) {
    next_event(rx, line, |e| e.line == line).await;
}

async fn worker_is_pushed_ready_items_and_completes_them_with_the_result(c: &Client) {
    let mut ev = c.watch().await.expect("watch");
    // A one-minute fallback interval: only the push can make this test pass quickly.
    c.board_worker(
        "dev",
        "code",
        worker(script(vec![say("done: {prompt}")]), Some(60_000), false),
    )
    .await
    .expect("worker");
    let mut o = typed("code");
    o.spec = Some("LRU with TTL".into());
    c.work("cache", "Implement LRU cache", o)
        .await
        .expect("work");
    until_line(&mut ev, "[work] cache completed").await;
    let item = c.work_item("cache").await.expect("get").expect("item");
    assert_eq!(item.status, Status::Done);
    assert_eq!(
        item.result.as_deref(),
        Some("done: Implement LRU cache\n\nSpec:\nLRU with TTL")
    );
    assert_eq!(item.claimed_by.as_deref(), Some("dev"));
    let workers = c.workers().await.expect("workers");
    assert_eq!(workers.len(), 1);
    assert_eq!(workers[0].completed, 1);
    // The agent was reset between items: a fresh session, zero cost.
    until_line(&mut ev, "[agent] dev reset").await;
    assert_eq!(c.info("dev").await.expect("info").turns, 0);
}

async fn a_failed_turn_fails_the_item_and_blocks_its_dependents(c: &Client) {
    let mut ev = c.watch().await.expect("watch");
    let mut o = typed("code");
    o.max_attempts = Some(1);
    c.work("a", "Do it", o).await.expect("work a");
    let mut dep = typed("review");
    dep.depends_on = vec!["a".into()];
    c.work("b", "Review it", dep).await.expect("work b");
    c.board_worker(
        "dev",
        "code",
        worker(script(vec![error("API 529 overloaded")]), None, false),
    )
    .await
    .expect("worker");
    next_event(&mut ev, "item a failed", |e| {
        e.topic == Topic::Work && e.kind == "failed" && e.subject.as_deref() == Some("a")
    })
    .await;
    let a = c.work_item("a").await.expect("get").expect("a");
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
    assert_eq!(
        c.work_item("b").await.expect("get").expect("b").status,
        Status::Blocked
    );
    assert_eq!(c.workers().await.expect("workers")[0].failed, 1);
}

async fn failed_turns_are_retried_until_max_attempts(c: &Client) {
    let mut ev = c.watch().await.expect("watch");
    let mut o = typed("code");
    o.max_attempts = Some(2);
    c.work("flaky", "Flaky job", o).await.expect("work");
    // The fallback poll is a minute: the board itself pushes the item again after its backoff.
    c.board_worker(
        "dev",
        "code",
        worker(
            script(vec![error("transient"), say("ok now")]),
            Some(60_000),
            false,
        ),
    )
    .await
    .expect("worker");
    until_line(&mut ev, "[work] flaky completed").await;
    let item = c.work_item("flaky").await.expect("get").expect("item");
    assert_eq!(item.status, Status::Done);
    assert_eq!(item.attempts, 1);
}

async fn board_errors_are_precise(c: &Client) {
    c.work("x", "X", WorkOptions::default()).await.expect("x");
    let dup = c
        .work("x", "again", WorkOptions::default())
        .await
        .expect_err("duplicate");
    assert!(matches!(dup, ApiError::Board(_)), "{dup:?}");
    let missing = WorkOptions {
        depends_on: vec!["nope".into()],
        ..Default::default()
    };
    let e = c.work("y", "Y", missing).await.expect_err("missing dep");
    assert!(e.to_string().contains("nope"), "{e}");
    let pri = WorkOptions {
        priority: Some(9),
        ..Default::default()
    };
    assert!(c.work("z", "Z", pri).await.is_err());
    let e = c
        .work("q", "Q", typed("feature"))
        .await
        .expect_err("bad type");
    assert!(e.to_string().contains("unknown work type"), "{e}");
    let e = c.start_work("x").await.expect_err("not claimed");
    assert!(e.to_string().contains("claim_work"), "{e}");
    let claim = c.claim_work("x", "me").await.expect("claim");
    let e = c.claim_work("x", "other").await.expect_err("claimed twice");
    assert!(e.to_string().to_lowercase().contains("claimed"), "{e}");
    c.start_work("x").await.expect("start");
    let e = c
        .complete_work("x", Some("r".into()), None)
        .await
        .expect_err("held, no token");
    assert_eq!(e.code(), "held", "{e}");
    assert!(e.to_string().contains("held by me"), "{e}");
    c.complete_work("x", Some("r".into()), claim.token().map(SettleBy::Token))
        .await
        .expect("complete");
    assert!(
        c.cancel_work("x").await.is_err(),
        "done items cannot be cancelled"
    );
    let e = c
        .board(Some("sideways"), None)
        .await
        .expect_err("bad status");
    assert!(e.to_string().contains("unknown status"), "{e}");
}

async fn work_from_result_uses_the_agents_last_result_as_spec(c: &Client) {
    c.agent("arch", None, script(vec![say("split the module")]))
        .await
        .expect("agent");
    let e = c
        .work_from_result("arch", "refactor", WorkOptions::default())
        .await
        .expect_err("no result yet");
    assert!(matches!(e, ApiError::NoResult(_)), "{e:?}");
    c.ask("arch", "review").await.expect("ask");
    let item = c
        .work_from_result("arch", "refactor", typed("code"))
        .await
        .expect("item");
    assert_eq!(item.spec, "split the module");
    assert_eq!(item.title, "From arch result");
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

/// The feature workflow, defined once each of its stages' agents exists (as a profile here:
/// the workers that run the stages come and go per test).
async fn define_feature(c: &Client) {
    for name in ["planner", "coder", "reviewer"] {
        c.profile(name, None, AgentOptions::default())
            .await
            .expect("profile");
    }
    c.workflow(feature()).await.expect("define");
}

async fn workflow_runs_through_workers_and_feeds_results_forward(c: &Client) {
    define_feature(c).await;
    for (name, work_type, answer) in [
        ("gen", "custom", "the plan"),
        ("dev", "code", "the code"),
        ("rev", "review", "{prompt}"),
    ] {
        c.board_worker(
            name,
            work_type,
            worker(script(vec![say(answer)]), None, false),
        )
        .await
        .expect("worker");
    }
    c.run_workflow("feature").await.expect("run");
    let e = c
        .run_workflow("feature")
        .await
        .expect_err("already running");
    assert!(e.to_string().contains("reset_workflow"), "{e}");
    let status = within("the workflow", c.await_workflow("feature", None))
        .await
        .expect("await");
    assert_eq!(status, RunStatus::Completed);
    let review = c
        .work_item("feature_review")
        .await
        .expect("get")
        .expect("review item");
    assert_eq!(
        review.result.as_deref(),
        Some("Review everything\n\nPrevious stage results:\n\n## plan\nthe plan\n\n## implement\nthe code")
    );
    c.reset_workflow("feature").await.expect("reset");
    let (s, items) = c.workflow_status("feature").await.expect("status");
    assert_eq!(s, RunStatus::Defined);
    assert!(items.iter().all(|(_, i)| i.is_none()));
}

async fn a_failed_stage_fails_the_workflow(c: &Client) {
    define_feature(c).await;
    c.board_worker(
        "gen",
        "custom",
        worker(script(vec![say("plan")]), None, false),
    )
    .await
    .expect("worker");
    let mut ev = c.watch().await.expect("watch");
    c.run_workflow("feature").await.expect("run");
    until_line(&mut ev, "[work] feature_plan completed").await;
    // No code worker: take the implement stage by hand and fail it.
    let claim = c
        .claim_work("feature_implement", "someone")
        .await
        .expect("implement is ready once plan is done");
    c.fail_work(
        "feature_implement",
        Some("could not build".into()),
        claim.token().map(SettleBy::Token),
    )
    .await
    .expect("fail");
    let status = within("the workflow", c.await_workflow("feature", None))
        .await
        .expect("await");
    assert_eq!(status, RunStatus::Failed);
    let (_, items) = c.workflow_status("feature").await.expect("status");
    let review = items[2].1.as_ref().expect("review item");
    assert_eq!(review.status, Status::Blocked);
}

/// Issue 8, item 7: whatever a client sends (here a definition built without
/// `Workflow::new`), the node refuses a stage nobody could run, a work type no worker could
/// have, an unknown source stage and an unreadable file, naming the stage.
async fn workflow_definitions_are_checked_where_the_node_accepts_them(c: &Client) {
    let refusal =
        |wf: Workflow| async move { c.workflow(wf).await.expect_err("refused").to_string() };
    let mut plan = Stage::new("plan", "ghost", "Plan it");
    plan.work_type = "code".into();
    let e = refusal(Workflow {
        name: "wf".into(),
        stages: vec![plan.clone()],
    })
    .await;
    assert!(
        e.contains("workflow wf: stage plan is for \"ghost\", but no agent, profile or board worker is named \"ghost\" and no board worker takes code items"),
        "{e}"
    );
    c.board_worker("dev", "code", worker(script(vec![]), None, false))
        .await
        .expect("worker");
    // Now a worker takes code items: the same stage is accepted.
    c.workflow(Workflow {
        name: "wf".into(),
        stages: vec![plan.clone()],
    })
    .await
    .expect("a code worker runs it");
    let mut typo = plan.clone();
    typo.work_type = "cod".into();
    let e = refusal(Workflow {
        name: "wf".into(),
        stages: vec![typo],
    })
    .await;
    assert!(
        e.contains("workflow wf: stage plan: unknown work type \"cod\""),
        "{e}"
    );
    let mut implement = Stage::new("implement", "dev", "Implement");
    implement.from = Source::Stages(vec!["plann".into()]);
    let e = refusal(Workflow {
        name: "wf".into(),
        stages: vec![plan.clone(), implement],
    })
    .await;
    assert!(
        e.contains("workflow wf: stage implement takes input from plann, which is not a stage of this workflow"),
        "{e}"
    );
    let mut read = Stage::new("read", "dev", "Read");
    read.from = Source::File("/nonexistent/workshop/spec.md".into());
    let e = refusal(Workflow {
        name: "wf".into(),
        stages: vec![read],
    })
    .await;
    assert!(
        e.contains("workflow wf: stage read takes input from \"/nonexistent/workshop/spec.md\", which is neither a stage of this workflow (read) nor a readable file"),
        "{e}"
    );
}

/// Issue 8, item 8: the node refuses numbers outside their range, naming the option, whoever
/// sends them.
async fn numbers_are_checked_where_the_node_accepts_them(c: &Client) {
    let e = c
        .configure(None, AgentOptions::default(), Some(-1.0))
        .await
        .expect_err("negative budget");
    assert!(
        e.to_string()
            .contains("max_cost_usd must be a finite number, 0 or more, got -1"),
        "{e}"
    );
    let e = c
        .configure(
            None,
            AgentOptions {
                timeout_ms: Some(0),
                ..Default::default()
            },
            None,
        )
        .await
        .expect_err("zero timeout");
    assert!(
        e.to_string()
            .contains("timeout_ms must be a whole number, 1 or more, got 0"),
        "{e}"
    );
    for (interval_ms, lease_ms, want) in [
        (
            Some(0),
            None,
            "board worker interval (milliseconds) must be a whole number, 10 or more, got 0",
        ),
        (
            None,
            Some(5),
            "lease 5 is out of bounds: a lease lasts from 1000 ms (1 s) to 86400000 ms (24 h)",
        ),
    ] {
        let mut o = worker(script(vec![]), interval_ms, false);
        o.lease_ms = lease_ms;
        let e = c.board_worker("w", "code", o).await.expect_err(want);
        assert!(e.to_string().contains(want), "{e}");
    }
    assert!(c.workers().await.expect("workers").is_empty());
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

async fn worktree_workers_give_each_item_a_branch_removed_on_success_kept_on_failure(c: &Client) {
    let repo = repo().await;
    let mut ev = c.watch().await.expect("watch");
    let dir = repo.path().to_string_lossy().into_owned();
    let mut o: AgentOptions = script(vec![say("in {prompt}")]);
    o.working_dir = Some(dir.clone());
    c.board_worker("dev", "code", worker(o, None, true))
        .await
        .expect("worker");
    let mut o: AgentOptions = script(vec![error("broken")]);
    o.working_dir = Some(dir);
    c.board_worker("doc", "docs", worker(o, None, true))
        .await
        .expect("worker");
    c.work("ok", "Good job", typed("code")).await.expect("work");
    until_line(&mut ev, "[work] ok completed").await;
    let mut bad = typed("docs");
    bad.max_attempts = Some(1);
    c.work("bad", "Bad job", bad).await.expect("work");
    next_event(&mut ev, "worktree kept", |e| e.kind == "worktree_kept").await;
    let branches = git(repo.path(), &["branch", "--list", "workshop/*"]).await;
    assert!(branches.contains("workshop/ok-a0"), "{branches}");
    assert!(branches.contains("workshop/bad-a0"), "{branches}");
    let wt = repo.path().join(".workshop/worktrees");
    assert!(!wt.join("ok-a0").exists(), "worktree removed after success");
    assert!(wt.join("bad-a0").exists(), "worktree kept after failure");
}

/// Items and workflow definitions written through one run of the node...
async fn define_before_restart(c: &Client) {
    c.work("keep", "Keep me", typed("docs"))
        .await
        .expect("work");
    define_feature(c).await;
}

/// ... are there in the next.
async fn find_after_restart(c: &Client) {
    let item = c
        .work_item("keep")
        .await
        .expect("get")
        .expect("item survived");
    assert_eq!(item.status, Status::Ready);
    assert_eq!(c.workflows().await.expect("workflows").len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn board_and_workflow_definitions_survive_a_restart_in_process() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = workshop_node::Node::open(dir.path()).await.expect("open");
    define_before_restart(&node.client()).await;
    node.shutdown().await;
    let node = workshop_node::Node::open(dir.path()).await.expect("reopen");
    find_after_restart(&node.client()).await;
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn board_and_workflow_definitions_survive_a_node_process_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut node = NodeProcess::start(dir.path());
    define_before_restart(&node.client().await).await;
    let status = node.terminate();
    assert!(status.success(), "{status}: {}", node.stderr());
    let mut node = NodeProcess::start(dir.path());
    find_after_restart(&node.client().await).await;
    let status = node.terminate();
    assert!(status.success(), "{status}: {}", node.stderr());
}
