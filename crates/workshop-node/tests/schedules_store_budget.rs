//! Schedules, the shared store and budgets through the Workshop API, on ephemeral and durable
//! nodes. Waits follow events, never sleeps.

mod common;

use common::*;
use serde_json::json;
use workshop_node::{ApiError, Node};
use workshop_types::AgentOptions;

#[tokio::test(start_paused = true)]
async fn schedule_casts_when_idle_and_skips_while_busy() {
    let node = paused_node().await;
    let w = &node.workshop;
    let g = "sched-busy";
    w.agent("mon", None, script(vec![plain(), gate(g)]))
        .await
        .expect("agent");
    let mut events = w.watch();
    w.every("mon", "check the build", 10).await.expect("every");
    // First tick runs the plain step; the second run blocks on the gate; later ticks skip.
    within_virtual("a tick while the agent is busy", async {
        gates::arrived(g).await;
        loop {
            let e = events.recv().await.expect("event");
            if e.line == "[tick] mon (busy, skipped)" {
                break;
            }
        }
    })
    .await;
    gates::release(g);
    let s = w.schedules().await.expect("schedules");
    assert_eq!(s.len(), 1);
    assert!(s[0].run_count >= 3 && s[0].skipped >= 1, "{s:?}");
    assert_eq!(s[0].spec.prompt, "check the build");
    w.cancel("mon").await.expect("cancel");
    assert!(w.schedules().await.expect("schedules").is_empty());
    assert!(matches!(
        w.every("mon", "x", 1).await,
        Err(ApiError::Node(m)) if m.contains("interval_ms must be a whole number, 10 or more, got 1")
    ));
    assert!(matches!(
        w.every("ghost", "x", 100).await,
        Err(ApiError::UnknownAgent(_))
    ));
    node.shutdown().await;
}

/// On virtual time: an hourly-ish schedule (every 60 s) runs three times in three virtual
/// minutes, stamped by the node's clock, without the test waiting three real minutes.
#[tokio::test(start_paused = true)]
async fn schedule_ticks_follow_the_nodes_clock() {
    let real = std::time::Instant::now();
    let node = paused_node().await;
    let w = &node.workshop;
    w.agent("mon", None, script(vec![])).await.expect("agent");
    let mut events = w.watch();
    let every_at = w.now_ms();
    w.every("mon", "check", 60_000).await.expect("every");
    for _ in 0..3 {
        next_event_virtual(&mut events, "a tick", |e| e.line == "[tick] mon").await;
    }
    let s = w.schedules().await.expect("schedules");
    assert_eq!((s[0].run_count, s[0].skipped), (3, 0), "{s:?}");
    let last = s[0].last_run_at_ms.expect("ran");
    let after = last - every_at;
    assert!(
        (180_000..180_100).contains(&after),
        "the third tick is stamped 3 virtual minutes after every(): {after} ms"
    );
    until_info(w, "mon", "three turns", |i| i.turns == 3).await;
    assert!(
        real.elapsed() < std::time::Duration::from_secs(10),
        "virtual time, not real waiting: {:?}",
        real.elapsed()
    );
    node.shutdown().await;
}

#[tokio::test]
async fn store_put_get_delete_and_limits() {
    let node = node().await;
    let w = &node.workshop;
    w.put("spec", json!("LRU cache")).await.expect("put");
    w.put("[\"impl\",\"notes\"]", json!({"choice": "GenServer"}))
        .await
        .expect("put tuple-ish key");
    assert_eq!(w.get("spec").expect("get"), Some(json!("LRU cache")));
    assert_eq!(w.store_keys().expect("keys").len(), 2);
    w.store_delete("spec").await.expect("delete");
    assert_eq!(w.get("spec").expect("get"), None);
    let big = json!("x".repeat(2 * 1024 * 1024));
    let e = w.put("big", big).await.expect_err("too big");
    assert!(e.to_string().contains("the store takes at most"), "{e}");
    node.shutdown().await;
}

#[tokio::test]
async fn durable_node_keeps_store_schedules_and_agents_across_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let node = Node::open(dir.path()).await.expect("open");
        let w = &node.workshop;
        w.agent("a", Some("role".into()), script(vec![cost(0.5)]))
            .await
            .expect("agent");
        w.ask("a", "hi").await.expect("ask");
        w.put("k", json!([1, 2, 3])).await.expect("put");
        w.every("a", "tick", 60_000).await.expect("every");
        w.configure(
            Some("Rust project.".into()),
            AgentOptions::default(),
            Some(5.0),
        )
        .await
        .expect("configure");
        w.profile(
            "coder",
            Some("You write code.".into()),
            AgentOptions::default(),
        )
        .await
        .expect("profile");
        node.shutdown().await;
    }
    let node = Node::open(dir.path()).await.expect("reopen");
    let w = &node.workshop;
    assert_eq!(w.get("k").expect("get"), Some(json!([1, 2, 3])));
    assert!(approx(w.cost("a").expect("cost"), 0.5));
    let s = w.schedules().await.expect("schedules");
    assert_eq!(s.len(), 1, "schedule restored");
    assert_eq!(s[0].spec.interval_ms, 60_000);
    let info = w.info("a").await.expect("info");
    assert_eq!(info.turns, 1);
    assert_eq!(info.role.as_deref(), Some("role"));
    assert_eq!(w.config().context.as_deref(), Some("Rust project."));
    assert_eq!(w.budget().limit, Some(5.0));
    assert_eq!(w.profiles().len(), 1);
    w.from_profile("coder", "c1", AgentOptions::default())
        .await
        .expect("profile restored");
    node.shutdown().await;
}

#[tokio::test]
async fn reset_budget_clears_limits_and_restarts_spending() {
    let node = node().await;
    let w = &node.workshop;
    let mut o = script(vec![cost(0.01), cost(0.01), cost(0.01)]);
    o.max_cost_usd = Some(0.005);
    w.agent("a", None, o).await.expect("agent");
    w.ask("a", "1").await.expect("first send allowed");
    let e = w.ask("a", "2").await.expect_err("refused");
    assert!(matches!(e, ApiError::BudgetExceeded(_)), "{e}");
    let b = w.agent_budget("a").expect("budget");
    assert_eq!(b.limit, Some(0.005));
    w.reset_budget().await.expect("reset_budget");
    w.ask("a", "3").await.expect("allowed after reset_budget");
    let b = w.agent_budget("a").expect("budget");
    assert_eq!(b.limit, None);
    assert!(approx(b.spent, 0.01), "{b:?}");
    node.shutdown().await;
}

#[tokio::test]
async fn oversized_prompts_are_refused_with_what_to_do() {
    let node = node().await;
    let w = &node.workshop;
    w.agent("a", None, script(vec![])).await.expect("agent");
    let big = "x".repeat(workshop_node::workshop::MAX_PROMPT_BYTES + 1);
    for e in [
        w.ask("a", &big).await.expect_err("ask refused"),
        w.cast("a", &big)
            .await
            .map(|_| ())
            .expect_err("cast refused"),
    ] {
        assert!(
            e.to_string().contains("write large inputs to a file"),
            "{e}"
        );
    }
    // Nothing was queued or run.
    assert_eq!(w.info("a").await.expect("info").turns, 0);
    node.shutdown().await;
}
