//! The client boundary over the wire, inside one test process: a node listening on a free
//! loopback port, a `Client` connected to it through ractor_cluster (its own NodeServer), and
//! what must hold there — same answers as in-process, typed errors, bad frames and bad cookies
//! refused without harming the node or the session.
#![allow(clippy::unwrap_used)]

mod common;

use common::{script, text, within};
use workshop_node::{ApiError, Client, Node};
use workshop_proto::api::{req, Request};
use workshop_proto::node::RequestFrame;

/// Tests here connect to nodes of this same process through ractor_cluster, and every session
/// of a process advertises all of the process's actors, so two such tests at once see each
/// other's stand-ins (remote ids are numbered per NodeServer and collide in pg). One at a time;
/// the e2e suites run the same scenarios against separate node processes, in parallel.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const COOKIE: &str = "test-cookie-0123456789";

/// A node listening on a free port, in a scope of its own (several nodes share this process).
async fn listening_node() -> (Node, String, String) {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let scope = format!(
        "test-{}",
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

async fn connect(addr: &str, cookie: &str, scope: &str) -> Result<Client, ApiError> {
    within(
        "connect",
        Client::connect_scoped(addr, cookie.into(), scope),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remote_client_gets_the_same_answers_as_an_in_process_one() {
    let _serial = SERIAL.lock().await;
    let (node, addr, scope) = listening_node().await;
    let local = node.client();
    let remote = connect(&addr, COOKIE, &scope).await.unwrap();
    let hello = remote.hello().await.unwrap();
    assert_eq!(hello.addr.as_deref(), Some(addr.as_str()));
    assert_eq!(hello.pid, std::process::id());

    remote
        .agent("a", None, script(vec![text("one"), text("two")]))
        .await
        .unwrap();
    let r = within("remote ask", remote.ask("a", "hi")).await.unwrap();
    assert_eq!(r.text, "one");
    let r = within("local ask", local.ask("a", "again")).await.unwrap();
    assert_eq!(r.text, "two");
    assert_eq!(
        remote.status().await.unwrap(),
        local.status().await.unwrap()
    );
    assert_eq!(
        remote.history("a", None).await.unwrap(),
        local.history("a", None).await.unwrap()
    );
    assert_eq!(remote.history("a", None).await.unwrap().len(), 2);

    // Typed errors cross the wire intact.
    let e = remote.ask("nobody", "hi").await.unwrap_err();
    assert_eq!(e, ApiError::UnknownAgent("nobody".into()));
    assert_eq!(e, local.ask("nobody", "hi").await.unwrap_err());
    let e = remote
        .agent("bad name!", None, Default::default())
        .await
        .unwrap_err();
    assert_eq!(e.code(), "invalid_name");

    // The store carries JSON both ways.
    remote
        .put("k", serde_json::json!({"n": 1, "l": [true, null]}))
        .await
        .unwrap();
    assert_eq!(
        local.get("k").await.unwrap(),
        Some(serde_json::json!({"n": 1, "l": [true, null]}))
    );
    drop(remote);
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_or_foreign_request_gets_an_error_and_the_session_lives_on() {
    let _serial = SERIAL.lock().await;
    let (node, addr, scope) = listening_node().await;
    let remote = connect(&addr, COOKIE, &scope).await.unwrap();
    for garbage in [vec![], vec![1, 0xff, 0xfe], vec![77, 1, 2, 3]] {
        let reply = within("garbage call", remote.call_raw(RequestFrame(garbage)))
            .await
            .unwrap();
        let back: Result<(), ApiError> = workshop_proto::decode(&reply.0).unwrap();
        assert_eq!(back.unwrap_err().code(), "bad_request");
    }
    // A request of another protocol version is refused naming both versions.
    let env = workshop_proto::node::CallEnvelope {
        protocol: 999,
        client_version: "9.9.9".into(),
        request: Request::from(req::Status {}),
    };
    let reply = remote
        .call_raw(RequestFrame(workshop_proto::encode(&env).unwrap()))
        .await
        .unwrap();
    let back: Result<(), ApiError> = workshop_proto::decode(&reply.0).unwrap();
    match back {
        Err(e @ ApiError::Version { .. }) => {
            let m = e.to_string();
            assert!(m.contains("9.9.9") && m.contains("999"), "{m}");
        }
        other => panic!("expected a version error, got {other:?}"),
    }
    // The session is still up: an ordinary call works.
    assert!(remote.status().await.unwrap().is_empty());
    // An oversized request never leaves the client.
    let big = "x".repeat(9 * 1024 * 1024);
    let e = remote.ask("a", &big).await.unwrap_err();
    assert_eq!(e.code(), "too_large");
    assert!(remote.status().await.is_ok());
    drop(remote);
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_cookie_is_refused_with_a_clear_error() {
    let _serial = SERIAL.lock().await;
    let (node, addr, scope) = listening_node().await;
    let e = connect(&addr, "wrong", &scope).await.unwrap_err();
    assert_eq!(e.code(), "disconnected");
    assert!(e.to_string().contains("cookie"), "{e}");
    assert!(!e.to_string().contains(COOKIE));
    // The node is unharmed: the right cookie still works.
    let ok = connect(&addr, COOKIE, &scope).await.unwrap();
    ok.hello().await.unwrap();
    drop(ok);
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_node_at_the_address_says_so() {
    let _serial = SERIAL.lock().await;
    let port = workshop_node::cluster::free_port("127.0.0.1".parse().unwrap()).unwrap();
    let addr = format!("127.0.0.1:{port}");
    let e = connect(&addr, COOKIE, "nowhere").await.unwrap_err();
    assert_eq!(e.code(), "no_node");
    assert!(e.to_string().contains(&addr), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_node_fails_calls_fast_with_a_clear_error() {
    let _serial = SERIAL.lock().await;
    let (node, addr, scope) = listening_node().await;
    let remote = connect(&addr, COOKIE, &scope).await.unwrap();
    remote.hello().await.unwrap();
    node.shutdown().await;
    let e = within("call to a stopped node", remote.status())
        .await
        .unwrap_err();
    assert!(
        matches!(e.code(), "disconnected" | "timeout"),
        "unexpected error {e}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remote_ask_in_flight_ends_when_its_node_stops() {
    let _serial = SERIAL.lock().await;
    let (node, addr, scope) = listening_node().await;
    let remote = connect(&addr, COOKIE, &scope).await.unwrap();
    let g = "client-boundary-stop-mid-ask";
    remote
        .agent("h", None, script(vec![common::gate(g)]))
        .await
        .unwrap();
    let ask = tokio::spawn({
        let remote = remote.clone();
        async move { remote.ask("h", "never ends").await }
    });
    // The turn is running on the node (it reached its gate, which is never opened).
    within("the turn at the gate", common::gates::arrived(g)).await;
    node.shutdown().await;
    let r = within("the remote ask to end", ask).await.unwrap();
    assert!(r.is_err(), "an ask on a stopped node cannot succeed: {r:?}");
}
