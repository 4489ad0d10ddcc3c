//! The Workshop API on a real node (script backend) where the in-process API asserts more than
//! its port through `Client`. Every other API scenario of AgentWorkshop (research/seeds.md §1.1,
//! §1.8, §1.13) runs through `Client` against an in-process node and a `workshop node` process
//! in tests/e2e/client_api.rs.

mod common;

use common::*;

/// await_all, started while every agent is busy, waits for each of them and returns each one's
/// completed turn, in order. The Client port (e2e `await_all_covers_every_busy_agent`) sees the
/// busy names only through await_all's timeout path, and each result through await_agent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn await_all_covers_every_busy_agent() {
    let node = node().await;
    let w = &node.workshop;
    let names: Vec<String> = (1..=3).map(|i| format!("gated_{i}")).collect();
    for n in &names {
        w.agent(n, None, script(vec![gate(&format!("api-all-{n}"))]))
            .await
            .expect("agent");
    }
    w.fan("go", &names).await;
    for n in &names {
        within("a gated turn", gates::arrived(&format!("api-all-{n}"))).await;
    }
    // Poll await_all once while every turn is held at its gate, so it sees all three busy.
    let mut all = Box::pin(w.await_all(Some(LIMIT)));
    tokio::select! {
        biased;
        _ = &mut all => panic!("await_all returned while every agent was busy"),
        _ = tokio::task::yield_now() => {}
    }
    for n in &names {
        gates::release(&format!("api-all-{n}"));
    }
    let done = within("await_all", all).await;
    let agents: Vec<String> = done
        .iter()
        .map(|d| d.as_ref().expect("await").agent.to_string())
        .collect();
    assert_eq!(agents, names);
    for d in done {
        assert!(matches!(d.expect("await").last, Some(Ok(_))));
    }
    node.shutdown().await;
}

/// An agent whose backend cannot start says why in the backend's words (the file and the OS
/// error), not as a panic.
#[tokio::test]
async fn an_agent_that_cannot_start_says_why_without_a_panic() {
    let node = node().await;
    let w = &node.workshop;
    let opts = workshop_types::AgentOptions {
        script_file: Some("/nonexistent/turns.toml".into()),
        ..Default::default()
    };
    let e = w
        .agent("s", None, opts)
        .await
        .expect_err("no script file")
        .to_string();
    assert!(
        e.starts_with("agent s did not start: ")
            && e.contains("cannot read script file /nonexistent/turns.toml")
            && e.contains("No such file"),
        "{e}"
    );
    assert!(!e.contains("panicked"), "{e}");
    node.shutdown().await;
}

/// A damaged node database is named, with what to do, in plain words (no sled internals).
#[tokio::test]
async fn a_damaged_node_database_is_named_in_plain_words() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = workshop_node::Node::open(dir.path()).await.expect("node");
    node.shutdown().await;
    let conf = dir.path().join("node").join("conf");
    let mut bytes = std::fs::read(&conf).expect("conf");
    for b in bytes.iter_mut().skip(4).take(24) {
        *b = b'#';
    }
    std::fs::write(&conf, bytes).expect("damage conf");
    let e = match workshop_node::Node::open(dir.path()).await {
        Ok(_) => panic!("a damaged database opened"),
        Err(e) => e.to_string(),
    };
    assert!(
        e.contains("the node database at") && e.contains("is damaged; move it aside"),
        "{e}"
    );
    assert!(
        !e.contains("backtrace") && !e.contains("offset None"),
        "{e}"
    );
}
