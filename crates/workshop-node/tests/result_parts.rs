//! Results too large for one frame: a board worker stores them in parts, the item keeps a
//! preview (so every reply that carries it stays small), and a client reads the whole result
//! one piece at a time, through a real ractor_cluster connection (`Node::listen` +
//! `Client::connect`). Waits follow replies and long polls (`await_work`), never sleeps.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use workshop_board::item::{
    result_preview, split_at_char_boundaries, Status, RESULT_PART_BYTES, RESULT_PREVIEW_BYTES,
};
use workshop_board::store::{BoardStore, SledStore};
use workshop_board::BoardClient;
use workshop_node::{ApiError, Client, Node, WorkOptions};
use workshop_types::{ScriptStep, Topic};

/// Tests here connect to nodes of this same process through ractor_cluster, and every session
/// of a process advertises all of the process's actors: one at a time (see board_actor.rs).
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const COOKIE: &str = "test-cookie-parts-0123456789";
const MIB: usize = 1024 * 1024;

/// Let `node` listen on a free loopback port in a scope of its own; a client connected to it.
async fn connect(node: &mut Node) -> Client {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let scope = format!(
        "parts-test-{}",
        N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    );
    node.set_scope(&scope);
    let addr = node
        .listen("127.0.0.1:0".parse().unwrap(), COOKIE.into())
        .await
        .unwrap();
    within(
        "connect",
        Client::connect_scoped(&addr.to_string(), COOKIE.into(), &scope),
    )
    .await
    .unwrap()
}

/// About `n` bytes of deterministic text with 2-, 3- and 4-byte chars, so that piece and
/// preview boundaries fall inside them. No `{prompt}` (the script backend replaces it).
fn big_text(n: usize) -> String {
    let mut s = String::with_capacity(n);
    let mut i = 0u64;
    while s.len() + 64 <= n {
        s.push_str("line ");
        s.push_str(&i.to_string());
        s.push_str(": é€𝄞 ");
        i += 1;
    }
    s
}

fn typed(t: &str) -> WorkOptions {
    WorkOptions {
        work_type: Some(t.into()),
        ..Default::default()
    }
}

fn answering(text: &str) -> workshop_types::AgentOptions {
    script(vec![ScriptStep {
        text: Some(text.to_string()),
        ..Default::default()
    }])
}

/// `a == b` without printing megabytes when they differ.
fn same(what: &str, got: &str, want: &str) {
    if got != want {
        let at = got
            .bytes()
            .zip(want.bytes())
            .position(|(a, b)| a != b)
            .unwrap_or(got.len().min(want.len()));
        panic!(
            "{what}: {} bytes, expected {}; first difference at byte {at}",
            got.len(),
            want.len()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_twenty_mib_result_is_stored_in_parts_and_read_whole_over_the_cluster() {
    let _serial = SERIAL.lock().await;
    let mut node = node().await;
    let remote = connect(&mut node).await;
    let big = big_text(20 * MIB);
    let pieces = split_at_char_boundaries(&big, RESULT_PART_BYTES).len();
    assert!(pieces > 300, "{pieces}");

    // The worker runs on the node (its 20 MiB script is not sent anywhere); the item is
    // added, awaited and read through the remote client.
    let ws = &node.workshop;
    let mut ev = ws.watch();
    ws.board_worker("bigw", "code", worker_opts(answering(&big)))
        .await
        .unwrap();
    remote.work("big", "Big", typed("code")).await.unwrap();
    let line = next_event(&mut ev, "the item completed", |e| {
        e.topic == Topic::Work && e.line.starts_with("[work] big completed")
    })
    .await
    .line;
    assert_eq!(
        line,
        format!(
            "[work] big completed ({} bytes of result in {pieces} parts)",
            big.len()
        )
    );
    let item = within(
        "await_work",
        remote.await_work("big", Some(std::time::Duration::from_secs(20))),
    )
    .await
    .unwrap();
    assert_eq!(item.status, Status::Done);
    assert_eq!(item.result_parts(), Some(pieces as u32));
    assert_eq!(item.result_bytes(), Some(big.len() as u64));
    let preview = item.result.clone().unwrap();
    assert_eq!(preview, result_preview(&big));
    assert!(preview.len() <= RESULT_PREVIEW_BYTES && big.starts_with(&preview));

    // The item stays small: every reply that carries it fits easily.
    let encoded = workshop_proto::encode(&item).unwrap().len();
    assert!(encoded < 2 * RESULT_PREVIEW_BYTES, "{encoded} bytes");
    assert_eq!(remote.work_item("big").await.unwrap(), Some(item.clone()));
    let board = remote.board(None, None).await.unwrap();
    assert_eq!(board, vec![item.clone()]);

    // The whole result, byte for byte, one piece per request.
    let whole = within("work_result", remote.work_result("big"))
        .await
        .unwrap()
        .unwrap();
    same("work_result", &whole, &big);
    let first = remote.work_result_part("big", 0).await.unwrap().unwrap();
    assert!(first.len() <= RESULT_PART_BYTES && big.starts_with(&first));
    assert_eq!(
        remote.work_result_part("big", pieces as u32).await.unwrap(),
        None
    );
    // The same through the board actor's stand-in (what a worker on another node holds).
    let board_client = remote.board_client().await.unwrap();
    let whole = board_client.full_result("big").await.unwrap().unwrap();
    same("full_result", &whole, &big);
    // And on the node itself (what the workflow runner's stage prompts use).
    same(
        "Workshop::work_result",
        &ws.work_result("big").await.unwrap().unwrap(),
        &big,
    );

    let e = remote.work_result("nope").await.unwrap_err();
    assert_eq!(e, ApiError::NoSuchItem("nope".into()));
    drop((remote, board_client));
    node.shutdown().await;
}

/// Attempt 1 stores pieces, then fails; attempt 2 stores fewer, different ones and completes:
/// the result is attempt 2's alone. A piece from the stale token is refused, typed.
async fn retry_flow(board: &BoardClient, remote: &Client) {
    board
        .add(
            workshop_board::NewItem::new("r", "Retried")
                .work_type(workshop_board::WorkType::Code)
                .max_attempts(3),
        )
        .await
        .unwrap();
    let t1 = board
        .claim("r", "w1", 60_000)
        .await
        .unwrap()
        .token()
        .unwrap();
    for i in 0..4 {
        board
            .put_result_part("r", t1, i, format!("first attempt, piece {i}; "))
            .await
            .unwrap();
    }
    let retrying = board.fail("r", t1, "crashed", true).await.unwrap();
    assert_eq!(retrying.status, Status::Ready);
    let t2 = board
        .claim("r", "w2", 60_000)
        .await
        .unwrap()
        .token()
        .unwrap();
    let second = ["second attempt, piece 0; ", "second attempt, piece 1 €"];
    board.put_result_part("r", t2, 0, second[0]).await.unwrap();
    // The lease holder of attempt 1 has lost the item: its pieces are refused.
    let e = board
        .put_result_part("r", t1, 1, "late piece")
        .await
        .unwrap_err();
    match &e {
        ApiError::StaleToken {
            id,
            presented,
            current,
            ..
        } => {
            assert_eq!(id, "r");
            assert_eq!(*presented, t1);
            assert_eq!(*current, Some(t2));
        }
        other => panic!("expected StaleToken, got {other:?}"),
    }
    // Attempt 1's piece 1 does not count for attempt 2.
    let e = board
        .complete_in_parts("r", t2, "second", 2, 50)
        .await
        .unwrap_err();
    assert_eq!(e.code(), "board", "{e}");
    assert!(e.to_string().contains("part 1 is missing"), "{e}");
    board.put_result_part("r", t2, 1, second[1]).await.unwrap();
    let text = second.concat();
    let done = board
        .complete_in_parts("r", t2, "second", 2, text.len() as u64)
        .await
        .unwrap();
    assert_eq!(done.result_parts(), Some(2));
    assert_eq!(remote.work_result("r").await.unwrap(), Some(text));
    assert_eq!(remote.work_result_part("r", 2).await.unwrap(), None);
    // A completion with the stale token is refused too.
    let e = board
        .complete_in_parts("r", t1, "first", 4, 1)
        .await
        .unwrap_err();
    assert_eq!(e.code(), "stale_token", "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_does_not_mix_parts_and_a_stale_token_is_refused() {
    let _serial = SERIAL.lock().await;
    let mut node = node().await;
    let remote = connect(&mut node).await;
    let board = remote.board_client().await.unwrap();
    assert!(!board.actor().get_id().is_local(), "a remote stand-in");
    retry_flow(&board, &remote).await;
    drop((remote, board));
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parts_survive_a_restart_and_leave_with_their_item() {
    let _serial = SERIAL.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let text = big_text(3 * MIB);
    let pieces = split_at_char_boundaries(&text, RESULT_PART_BYTES).len() as u32;
    {
        let node = Node::open(dir.path()).await.unwrap();
        let ws = &node.workshop;
        ws.board_worker("durw", "code", worker_opts(answering(&text)))
            .await
            .unwrap();
        ws.work("d", "Durable", typed("code")).await.unwrap();
        let item = within("await_work", ws.await_work("d", None))
            .await
            .unwrap();
        assert_eq!(item.result_parts(), Some(pieces));
        node.shutdown().await;
    }
    {
        let mut node = Node::open(dir.path()).await.unwrap();
        let remote = connect(&mut node).await;
        let whole = within("work_result after a restart", remote.work_result("d"))
            .await
            .unwrap()
            .unwrap();
        same("work_result after a restart", &whole, &text);
        let removed = node.board_client().unwrap().remove("d").await.unwrap();
        assert_eq!(removed.result_parts(), Some(pieces));
        assert_eq!(
            remote.work_result("d").await.unwrap_err(),
            ApiError::NoSuchItem("d".into())
        );
        drop(remote);
        node.shutdown().await;
    }
    let store = SledStore::open(dir.path().join("board")).unwrap();
    assert!(!store.has_parts().unwrap(), "parts left behind");
}

/// A stage's prompt carries the whole result of the stage before it, not its preview: here
/// both stages' results are over the inline limit (the second answers with its prompt).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_workflow_stage_gets_the_whole_result_of_the_one_before() {
    use workshop_workflow::{stage_prompt, RunStatus, Source, Stage, Workflow};
    let _serial = SERIAL.lock().await;
    let node = node().await;
    let ws = &node.workshop;
    let plan_text = big_text(3 * MIB / 2);
    let plan = Stage::new("plan", "planner", "Plan it");
    let mut implement = Stage::new("implement", "coder", "Implement the plan");
    implement.from = Source::Stages(vec!["plan".into()]);
    implement.work_type = "code".into();
    ws.board_worker("gen", "custom", worker_opts(answering(&plan_text)))
        .await
        .unwrap();
    ws.board_worker("dev", "code", worker_opts(answering("{prompt}")))
        .await
        .unwrap();
    ws.workflow(Workflow::new("feature", vec![plan, implement]).unwrap())
        .await
        .unwrap();
    ws.run_workflow("feature").await.unwrap();
    let status = within("the workflow", ws.await_workflow("feature", None))
        .await
        .unwrap();
    assert_eq!(status, RunStatus::Completed);
    let want = stage_prompt(
        "Implement the plan",
        "",
        &[("plan".to_string(), plan_text.clone())],
    );
    let item = ws.work_item("feature_implement").await.unwrap().unwrap();
    assert!(item.result_parts().is_some(), "{:?}", item.metadata);
    same(
        "the second stage's result (its prompt)",
        &ws.work_result("feature_implement").await.unwrap().unwrap(),
        &want,
    );
    ws.reset_workflow("feature").await.unwrap();
    assert_eq!(ws.work_item("feature_plan").await.unwrap(), None);
    node.shutdown().await;
}
