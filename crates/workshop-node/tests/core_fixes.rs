//! Issue 9 ("what reading the code found"): agent creation is serialized per name, budgets are
//! checked where the agent admits a turn, calls to actors are bounded, crashed board workers and
//! schedules are never silent. Waits follow events or the agents' own replies, never sleeps.

mod common;

use common::*;
use workshop_types::AgentStatus;

/// Many concurrent `agent("x")` (through clients, as the console and CLI send them) end with
/// exactly one agent in the directory and one live agent actor: every replaced actor stopped.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_creation_of_one_name_leaves_exactly_one_live_actor() {
    let node = node().await;
    let mut tasks = tokio::task::JoinSet::new();
    for c in 0..4 {
        let client = node.client();
        for i in 0..25 {
            let client = client.clone();
            tasks.spawn(async move {
                let role = format!("role {c}/{i}");
                client
                    .agent("x", Some(role), script(vec![text("hi")]))
                    .await
            });
        }
    }
    within("100 concurrent agent(\"x\") calls", async {
        while let Some(r) = tasks.join_next().await {
            r.expect("task").expect("agent(\"x\")");
        }
    })
    .await;
    let w = &node.workshop;
    let rows = w.status();
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0].status, AgentStatus::Idle);
    assert_eq!(
        w.agent_actors(),
        1,
        "exactly one live agent actor; the 99 replaced ones stopped"
    );
    // The one left is the one the directory knows: it answers.
    assert_eq!(w.ask("x", "ping").await.expect("ask").text, "hi");
    w.dismiss("x").await.expect("dismiss");
    assert_eq!(w.agent_actors(), 0, "dismiss stops it");
    node.shutdown().await;
}
