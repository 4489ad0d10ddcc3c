//! Agents' status rows on a durable node go through the background writer (persist/rows.rs):
//! what it writes survives a clean restart, a new session id is durable before the agent
//! replies, and a clean stop writes the rows still queued.

mod common;

use common::*;
use workshop_node::Node;

#[tokio::test]
async fn rows_written_in_the_background_survive_a_clean_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let asks = 40u32;
    let sessions;
    {
        let node = Node::open(dir.path()).await.expect("open");
        let w = &node.workshop;
        for name in ["a", "b"] {
            w.agent(name, None, script(vec![cost(0.25); asks as usize]))
                .await
                .expect("agent");
        }
        let before = node
            .row_writer_stats()
            .expect("a durable node has a writer");
        // The first turn gives each agent its session id: written and flushed before the reply.
        w.ask("a", "first").await.expect("ask");
        w.ask("b", "first").await.expect("ask");
        let first = node.row_writer_stats().expect("stats");
        assert_eq!(first.immediate - before.immediate, 2, "{first:?}");
        // Later turns keep the session id: their rows (cost, turns) only go to the writer.
        for i in 1..asks {
            w.ask("a", &format!("turn {i}")).await.expect("ask");
            w.ask("b", &format!("turn {i}")).await.expect("ask");
        }
        let after = node.row_writer_stats().expect("stats");
        assert_eq!(after.immediate, first.immediate, "{after:?}");
        assert!(
            after.queued - first.queued >= 2 * 2 * u64::from(asks - 1),
            "a turn start and a turn end per ask: {after:?}"
        );
        assert_eq!(after.errors, 0, "{after:?}");
        sessions = [
            w.info("a").await.expect("info").session_id,
            w.info("b").await.expect("info").session_id,
        ];
        assert!(sessions.iter().all(Option::is_some), "{sessions:?}");
        node.shutdown().await;
    }
    let node = Node::open(dir.path()).await.expect("reopen");
    let w = &node.workshop;
    for (name, session) in ["a", "b"].into_iter().zip(sessions) {
        let info = w.info(name).await.expect("info");
        assert_eq!(info.turns, asks, "{name}");
        assert!(
            approx(info.cost_usd, 0.25 * f64::from(asks)),
            "{name}: {}",
            info.cost_usd
        );
        assert_eq!(info.session_id, session, "{name}");
        assert_eq!(info.task, None, "{name}");
    }
    node.shutdown().await;
}

#[tokio::test]
async fn a_clean_stop_writes_the_queued_row_of_a_turn_in_flight() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let node = Node::open(dir.path()).await.expect("open");
        let w = node.workshop.clone();
        w.agent("h", None, script(vec![hang()]))
            .await
            .expect("agent");
        // An ask (unlike a cast) is not acknowledged until its turn ends, so the row naming
        // the turn is only handed to the writer; the stop must write it.
        let asker = w.clone();
        let ask = tokio::spawn(async move { asker.ask("h", "long job").await });
        until_info(&w, "h", "the turn started", |i| i.task.is_some()).await;
        node.shutdown().await;
        let interrupted = within("the ask's answer", ask).await.expect("the ask task");
        assert!(interrupted.is_err(), "{interrupted:?}");
    }
    let node = Node::open(dir.path()).await.expect("reopen");
    let w = &node.workshop;
    let lines: Vec<String> = w
        .events(50, None)
        .await
        .expect("events")
        .into_iter()
        .map(|e| e.line)
        .collect();
    assert!(
        lines
            .iter()
            .any(|l| l.contains("h: turn interrupted by a node restart: long job")),
        "{lines:#?}"
    );
    node.shutdown().await;
}
