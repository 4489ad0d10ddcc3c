//! The board actor through `BoardClient`, as a board worker uses it: in-process
//! (`Node::board_client`) and from another ractor_cluster node (`Client::board_client` over a
//! connection to a node listening on a free loopback port, in a scope of its own). The same
//! flow runs on both paths; waits synchronise on observable state (the board's subscriber
//! count, replies), never on sleeps.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::within;
use workshop_board::durable::DurableBoard;
use workshop_board::item::{NewItem, SettleBy, Status, WorkType};
use workshop_board::state::ListFilter;
use workshop_board::BoardClient;
use workshop_node::{ApiError, Client, Node};
use workshop_proto::board::{req, BoardRequest};
use workshop_proto::node::{encode_frame, CallEnvelope, RequestFrame};

/// Tests here connect to nodes of this same process through ractor_cluster, and every session
/// of a process advertises all of the process's actors, so two such tests at once see each
/// other's stand-ins (remote ids are numbered per NodeServer and collide in pg). One at a time;
/// the e2e suites run the same scenarios against separate node processes, in parallel.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const COOKIE: &str = "test-cookie-board-0123456789";
const LEASE_MS: u64 = 30_000;
/// Longer than `common::LIMIT`: a long poll that is not woken fails the test by timing out.
const LONG_WAIT: Duration = Duration::from_secs(120);

/// A node listening on a free port, in a scope of its own (several nodes share this process).
async fn listening_node() -> (Node, String, String) {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let scope = format!(
        "board-test-{}",
        N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    );
    let mut node = Node::start().await.unwrap();
    node.set_scope(&scope);
    let addr = node
        .listen("127.0.0.1:0".parse().unwrap(), COOKIE.into())
        .await
        .unwrap();
    (node, addr.to_string(), scope)
}

/// Wait until the board has more ready-subscribers than `before`: a `wait_ready` is waiting.
async fn until_waiting(board: &DurableBoard, before: usize) {
    within("a wait_ready to subscribe", async {
        while board.ready_subscribers() <= before {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    })
    .await
}

/// Start a long poll for ready items of `work_type` and return once it is waiting.
async fn waiting(
    client: &BoardClient,
    board: &DurableBoard,
    work_type: WorkType,
) -> tokio::task::JoinHandle<Result<Vec<workshop_board::WorkItem>, ApiError>> {
    let before = board.ready_subscribers();
    let c = client.clone();
    let waiter = tokio::spawn(async move { c.wait_ready(Some(work_type), LONG_WAIT).await });
    until_waiting(board, before).await;
    waiter
}

/// A board worker's life, entirely through `client`; `board` is the node's own handle, used
/// only to observe that a long poll is waiting.
async fn worker_flow(client: &BoardClient, board: &DurableBoard) {
    // Nothing ready: a short long poll ends empty.
    let none = client
        .wait_ready(Some(WorkType::Code), Duration::from_millis(50))
        .await
        .unwrap();
    assert!(none.is_empty());

    // A waiting long poll is woken by the add (not by its timeout, which is far away), and an
    // item of another type does not wake it with a wrong answer.
    let waiter = waiting(client, board, WorkType::Code).await;
    client
        .add(NewItem::new("d1", "Docs").work_type(WorkType::Docs))
        .await
        .unwrap();
    let added = client
        .add(NewItem::new("c1", "Parser").work_type(WorkType::Code))
        .await
        .unwrap();
    assert_eq!(added.status, Status::Ready);
    let ready = within("wait_ready woken by the add", waiter)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        ready.iter().map(|i| i.id.as_str()).collect::<Vec<_>>(),
        ["c1"]
    );

    // claim_next -> start -> heartbeat -> complete, with the fencing token.
    let item = client
        .claim_next(Some(WorkType::Code), "w1", LEASE_MS)
        .await
        .unwrap()
        .expect("a claimable code item");
    assert_eq!(item.id.as_str(), "c1");
    assert_eq!(item.status, Status::Claimed);
    let token = item.token().unwrap();
    let started = client.start("c1", token).await.unwrap();
    assert_eq!(started.status, Status::InProgress);
    let before = started.lease.clone().unwrap().expires_at_ms;
    let beat = client.heartbeat("c1", token, 2 * LEASE_MS).await.unwrap();
    assert!(beat.lease.unwrap().expires_at_ms > before);
    let done = client.complete("c1", token, "parsed").await.unwrap();
    assert_eq!(done.status, Status::Done);
    assert_eq!(done.result.as_deref(), Some("parsed"));
    // The same settle again (a lost reply, retried) is answered with the item: idempotent.
    let again = client.complete("c1", token, "parsed").await.unwrap();
    assert_eq!(again, done);
    // The opposite outcome with that token is typed.
    let e = client.fail("c1", token, "no", false).await.unwrap_err();
    assert_eq!(e.code(), "already_settled", "{e}");
    assert_eq!(client.get("c1").await.unwrap(), Some(done.clone()));
    // Nothing left of that type: claim_next says so.
    assert_eq!(
        client
            .claim_next(Some(WorkType::Code), "w1", LEASE_MS)
            .await
            .unwrap(),
        None
    );

    // A stale token: the lease holder lost the item. Typed, with its stable code.
    client
        .add(NewItem::new("c2", "Lexer").work_type(WorkType::Code))
        .await
        .unwrap();
    let c2 = client.claim("c2", "w1", LEASE_MS).await.unwrap();
    let t2 = c2.token().unwrap();
    let e = client.complete("c2", t2 + 100, "x").await.unwrap_err();
    assert_eq!(e.code(), "stale_token");
    match &e {
        ApiError::StaleToken {
            id,
            presented,
            current,
            status,
        } => {
            assert_eq!(id, "c2");
            assert_eq!(*presented, t2 + 100);
            assert_eq!(*current, Some(t2));
            assert_eq!(*status, Status::Claimed);
        }
        other => panic!("expected StaleToken, got {other:?}"),
    }
    assert!(e.to_string().contains("stop working on it"), "{e}");

    // release hands it back: ready again at once, and the old token is dead.
    let released = client.release("c2", t2, "node stopping").await.unwrap();
    assert_eq!(released.status, Status::Ready);
    let ready = within(
        "wait_ready after a release",
        client.wait_ready(Some(WorkType::Code), LONG_WAIT),
    )
    .await
    .unwrap();
    assert_eq!(ready.len(), 1);
    assert_eq!(ready[0].id.as_str(), "c2");
    let reclaimed = client
        .claim_next(Some(WorkType::Code), "w2", LEASE_MS)
        .await
        .unwrap()
        .unwrap();
    let t3 = reclaimed.token().unwrap();
    assert!(t3 > t2);
    let e = client.heartbeat("c2", t2, LEASE_MS).await.unwrap_err();
    assert_eq!(e.code(), "stale_token");

    // A failure with a retry goes back to ready behind a backoff: not claimable yet, so a
    // long poll does not answer with it (a worker would spin), and claim_next finds nothing.
    let retrying = client.fail("c2", t3, "flaky", true).await.unwrap();
    assert_eq!(retrying.status, Status::Ready);
    assert!(retrying.not_before_ms > 0);
    let none = client
        .wait_ready(Some(WorkType::Code), Duration::from_millis(50))
        .await
        .unwrap();
    assert!(none.is_empty(), "{none:?}");

    // Unknown ids are typed; other refusals keep the board's message.
    assert_eq!(client.get("nope").await.unwrap(), None);
    let e = client.start("nope", 1).await.unwrap_err();
    assert_eq!(e, ApiError::NoSuchItem("nope".into()));
    assert_eq!(e.code(), "no_such_item");
    let e = client.add(NewItem::new("c1", "dup")).await.unwrap_err();
    assert_eq!(e.code(), "board");
    assert!(e.to_string().contains("already exists"), "{e}");

    // Reads: list and counts.
    let page = client
        .list(ListFilter::default().status(Status::Done))
        .await
        .unwrap();
    assert_eq!(page.truncated, 0);
    assert_eq!(page.items, vec![done]);
    let counts = client.counts().await.unwrap();
    assert_eq!(counts[&Status::Done], 1);
    assert_eq!(counts[&Status::Ready], 2);
    let cancelled = client.cancel("d1").await.unwrap();
    assert_eq!(cancelled.status, Status::Cancelled);
}

/// What the console does by hand, through `client`: complete or fail an item (with its
/// claim's token, or by force),
/// wait for an item to settle (a long poll woken by the settlement), remove an item.
async fn console_flow(client: &BoardClient, board: &DurableBoard) {
    client
        .add(NewItem::new("h1", "By hand").work_type(WorkType::Code))
        .await
        .unwrap();
    // Only a claimed item can be settled by hand; the board's refusal names the transition.
    let e = client
        .complete_work("h1", "too early", None)
        .await
        .unwrap_err();
    assert_eq!(e.code(), "board", "{e}");
    assert!(e.to_string().contains("h1"), "{e}");
    let claim = client.claim("h1", "console", LEASE_MS).await.unwrap();
    // Held: neither token nor force is refused, naming the holder.
    let e = client
        .complete_work("h1", "not mine", None)
        .await
        .unwrap_err();
    assert_eq!(e.code(), "held", "{e}");
    assert!(e.to_string().contains("held by console"), "{e}");

    // A waiting await_settled is woken by the settlement (its wait is far away).
    let before = board.settled_subscribers();
    let waiter = {
        let c = client.clone();
        tokio::spawn(async move { c.await_settled("h1", LONG_WAIT).await })
    };
    within("await_settled to subscribe", async {
        while board.settled_subscribers() <= before {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    })
    .await;
    let done = client
        .complete_work("h1", "done by hand", claim.token().map(SettleBy::Token))
        .await
        .unwrap();
    assert_eq!(done.status, Status::Done);
    assert_eq!(done.result.as_deref(), Some("done by hand"));
    let settled = within("await_settled woken by the settlement", waiter)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(settled, Some(done.clone()));
    // Settled already, or no such item: answered at once.
    assert_eq!(
        within(
            "await_settled on a done item",
            client.await_settled("h1", LONG_WAIT)
        )
        .await
        .unwrap(),
        Some(done)
    );
    assert_eq!(
        within(
            "await_settled on no item",
            client.await_settled("nope", LONG_WAIT)
        )
        .await
        .unwrap(),
        None
    );

    // Failed by hand: no retry, whatever attempts are left.
    client
        .add(NewItem::new("h2", "Broken").work_type(WorkType::Docs))
        .await
        .unwrap();
    // Still open after its wait: answered with the item as it stands.
    let open = client
        .await_settled("h2", Duration::from_millis(20))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(open.status, Status::Ready);
    client.claim("h2", "console", LEASE_MS).await.unwrap();
    let failed = client
        .fail_work("h2", "failed by hand", Some(SettleBy::Force))
        .await
        .unwrap();
    assert_eq!(failed.status, Status::Failed);
    assert_eq!(failed.error.as_deref(), Some("failed by hand"));
    let e = client.fail_work("nope", "x", None).await.unwrap_err();
    assert_eq!(e, ApiError::NoSuchItem("nope".into()));

    // Remove: refused while something depends on the item, then dependents first.
    client.add(NewItem::new("h3", "Base")).await.unwrap();
    client
        .add(NewItem::new("h4", "On top").depends_on(["h3"]))
        .await
        .unwrap();
    let e = client.remove("h3").await.unwrap_err();
    assert_eq!(e.code(), "board", "{e}");
    assert_eq!(client.remove("h4").await.unwrap().id.as_str(), "h4");
    assert_eq!(client.remove("h3").await.unwrap().id.as_str(), "h3");
    assert_eq!(client.get("h3").await.unwrap(), None);
}

/// Garbage and foreign frames get error replies; the actor answers the next call.
async fn bad_frames_are_refused(client: &BoardClient) {
    for garbage in [vec![], vec![1, 0xff, 0xfe], vec![77, 1, 2, 3]] {
        let reply = within("garbage call", client.call_raw(RequestFrame(garbage)))
            .await
            .unwrap();
        let back: Result<(), ApiError> = workshop_proto::decode(&reply.0).unwrap();
        assert_eq!(back.unwrap_err().code(), "bad_request");
    }
    let env = CallEnvelope {
        protocol: 999,
        client_version: "9.9.9".into(),
        request: BoardRequest::from(req::Counts {}),
    };
    let reply = client
        .call_raw(RequestFrame(workshop_proto::encode(&env).unwrap()))
        .await
        .unwrap();
    let back: Result<(), ApiError> = workshop_proto::decode(&reply.0).unwrap();
    assert_eq!(back.unwrap_err().code(), "version_mismatch");
    // A well-formed frame still works, and so does a typed call.
    let reply = client
        .call_raw(encode_frame(BoardRequest::from(req::Counts {}), "x").unwrap())
        .await
        .unwrap();
    let counts: Result<std::collections::BTreeMap<Status, u64>, ApiError> =
        workshop_proto::decode(&reply.0).unwrap();
    assert!(counts.is_ok());
    assert!(client.counts().await.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_board_worker_in_process() {
    let _serial = SERIAL.lock().await;
    let node = Node::start().await.unwrap();
    let client = node.board_client().unwrap();
    assert!(client.actor().get_id().is_local());
    worker_flow(&client, node.workshop.local_board().unwrap()).await;
    console_flow(&client, node.workshop.local_board().unwrap()).await;
    bad_frames_are_refused(&client).await;
    // The node's Client hands out the same board.
    let via_client = node.client().board_client().await.unwrap();
    assert_eq!(
        via_client.counts().await.unwrap(),
        client.counts().await.unwrap()
    );
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_board_worker_on_another_node() {
    let _serial = SERIAL.lock().await;
    let (node, addr, scope) = listening_node().await;
    let remote = within(
        "connect",
        Client::connect_scoped(&addr, COOKIE.into(), &scope),
    )
    .await
    .unwrap();
    let client = remote.board_client().await.unwrap();
    assert!(!client.actor().get_id().is_local(), "a remote stand-in");
    // The board client keeps the connection open on its own.
    drop(remote);
    worker_flow(&client, node.workshop.local_board().unwrap()).await;
    console_flow(&client, node.workshop.local_board().unwrap()).await;
    bad_frames_are_refused(&client).await;
    // What the remote worker did is what the node's own board shows.
    assert_eq!(
        client.counts().await.unwrap(),
        node.board_client().unwrap().counts().await.unwrap()
    );
    drop(client);
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_long_poll_ends_when_the_node_stops() {
    let _serial = SERIAL.lock().await;
    let node = Node::start().await.unwrap();
    let client = node.board_client().unwrap();
    let board = node.workshop.local_board().unwrap().clone();
    let waiter = waiting(&client, &board, WorkType::Review).await;
    within("the node to stop", node.shutdown()).await;
    let e = within("the long poll to end", waiter)
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(e.code(), "disconnected", "{e}");
    // The board actor is gone: a call fails fast with a clear error, it does not hang.
    let e = within("a call to a stopped board", client.counts())
        .await
        .unwrap_err();
    assert_eq!(e.code(), "disconnected", "{e}");
}
