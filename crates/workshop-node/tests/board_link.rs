//! A node without a board of its own works the cluster's board through its `BoardLink`: two
//! nodes in this process, the board node and one started with another node named as the board
//! node (so it opens no board). The second node's link is set by hand to the board node's board
//! actor, as the cluster will once it finds it. On virtual time held still (`ManualTime`): the
//! worker's backoffs fire only when the test moves the clock, so what resumes the worker is the
//! link being set. Waits follow events and the board's own subscriber counts, never sleeps.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::*;
use workshop_board::item::{Status, WorkType};
use workshop_node::cluster::ClusterOptions;
use workshop_node::worker::WorkerSpec;
use workshop_node::{ApiError, Node, WorkOptions};
use workshop_types::{AgentName, Topic};

const BOARD_NODE: &str = "board-node";

fn typed(t: &str) -> WorkOptions {
    WorkOptions {
        work_type: Some(t.into()),
        ..Default::default()
    }
}

/// A node on virtual time whose cluster's board is on the node named [`BOARD_NODE`].
async fn boardless_node() -> Node {
    let mut cluster = ClusterOptions::single(
        "n2",
        "127.0.0.1:0".parse().unwrap(),
        "test-cookie-0123456789",
    );
    cluster.board = Some(BOARD_NODE.into());
    Node::builder()
        .clock(workshop_node::clock::tokio_clock(PAUSED_BASE_MS))
        .cluster(cluster)
        .start()
        .await
        .unwrap()
}

fn assert_no_board(e: &ApiError) {
    assert_eq!(e.code(), "no_node", "{e}");
    let text = e.to_string();
    assert!(text.contains(BOARD_NODE), "names the board node: {text}");
    assert!(
        text.contains("the board node is not reachable"),
        "says what is wrong: {text}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_node_without_its_board_says_so() {
    let _time = ManualTime::hold();
    let node = boardless_node().await;
    let w = &node.workshop;
    assert!(w.local_board().is_none(), "only the board node holds one");
    assert_no_board(&w.work("x", "Parser", typed("code")).await.unwrap_err());
    assert_no_board(&w.board(None, None).await.unwrap_err());
    assert_no_board(&w.work_item("x").await.unwrap_err());
    assert_no_board(&w.complete_work("x", None, None).await.unwrap_err());
    assert_no_board(&w.await_work("x", None).await.unwrap_err());
    assert_no_board(&node.board_client().unwrap_err());
    node.shutdown().await;
}

/// The worker starts before the board is reachable, says so once however often it looks
/// again, and claims as soon as the link is set: no restart.
#[tokio::test(start_paused = true)]
async fn a_waiting_worker_claims_once_the_link_is_set() {
    let time = ManualTime::hold();
    let board_node = paused_node().await;
    let node = boardless_node().await;
    let w = &node.workshop;
    let mut ev = w.watch();
    w.board_worker(
        "dev",
        "code",
        workshop_node::WorkerOptions {
            options: script(vec![text("parsed")]),
            ..Default::default()
        },
    )
    .await
    .expect("worker");
    next_event_virtual(&mut ev, "the worker to miss the board", |e| {
        e.kind == "board_lost"
    })
    .await;
    // The worker looks again on its backoff (and would forever): still one event.
    for _ in 0..20 {
        time.advance(Duration::from_secs(5)).await;
    }
    board_node
        .workshop
        .work("x", "Parser", typed("code"))
        .await
        .unwrap();

    w.board_link().set(Some(board_node.board_client().unwrap()));
    let done = within_virtual("the item to be done", w.await_work("x", None))
        .await
        .unwrap();
    assert_eq!(done.status, Status::Done);
    assert_eq!(done.result.as_deref(), Some("parsed"));
    next_event_virtual(&mut ev, "the completion on the worker's node", |e| {
        e.line == "[work] x completed"
    })
    .await;
    let events = w.events(500, Some(Topic::Work)).await.unwrap();
    let kinds = |k: &str| events.iter().filter(|e| e.kind == k).count();
    assert_eq!(kinds("board_lost"), 1, "{events:?}");
    assert_eq!(kinds("board_back"), 1, "{events:?}");
    assert!(
        events.iter().any(|e| e.line == "[work] x claimed by dev"),
        "claimed on the worker's node: {events:?}"
    );
    // The board node saw nothing of the worker's events: they are the worker node's.
    let on_board = board_node
        .workshop
        .events(500, Some(Topic::Work))
        .await
        .unwrap();
    assert!(!on_board.iter().any(|e| e.line.contains("claimed by dev")));
    node.shutdown().await;
    board_node.shutdown().await;
}

/// `await_work` on a node that runs nothing of the item: the board tells it when the item
/// settles (no event of its own announces it).
#[tokio::test(start_paused = true)]
async fn await_work_follows_an_item_settled_elsewhere() {
    let _time = ManualTime::hold();
    let board_node = paused_node().await;
    let node = boardless_node().await;
    node.workshop
        .board_link()
        .set(Some(board_node.board_client().unwrap()));
    node.workshop
        .work("x", "Parser", typed("code"))
        .await
        .unwrap();
    let board = board_node.workshop.local_board().unwrap().clone();
    let before = board.settled_subscribers();
    let waiting = tokio::spawn({
        let w = node.workshop.clone();
        async move { w.await_work("x", None).await }
    });
    within_virtual("await_work to wait on the board", async {
        while board.settled_subscribers() <= before {
            tokio::task::yield_now().await;
        }
    })
    .await;
    // A worker of the board node runs it.
    board_node
        .workshop
        .board_worker_with(WorkerSpec {
            name: AgentName::new("dev").unwrap(),
            work_type: WorkType::Code,
            role: None,
            options: script(vec![text("parsed")]),
            interval_ms: 60_000,
            lease_ms: 60_000,
            worktree: false,
        })
        .await
        .unwrap();
    let done = within_virtual("await_work", waiting)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(done.status, Status::Done);
    assert_eq!(done.result.as_deref(), Some("parsed"));
    let here = node.workshop.events(500, Some(Topic::Work)).await.unwrap();
    assert!(
        !here.iter().any(|e| e.line == "[work] x completed"),
        "this node heard of it from the board only: {here:?}"
    );
    node.shutdown().await;
    board_node.shutdown().await;
}
