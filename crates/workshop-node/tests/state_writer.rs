//! The node's configuration state has one writer (`state.rs`): concurrent `configure` and
//! `profile` calls from many clients are applied one at a time, and what is persisted is what
//! the node holds in memory.

use workshop_node::Node;
use workshop_types::AgentOptions;

const WRITERS: u32 = 100;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_configure_and_profile_calls_are_serialized_and_persisted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = Node::open(dir.path()).await.expect("open");
    let client = node.client();
    let mut set = tokio::task::JoinSet::new();
    for i in 1..=WRITERS {
        let c = client.clone();
        set.spawn(async move {
            if i % 2 == 0 {
                // One writer's context, model, max_turns and budget go together.
                let options = AgentOptions {
                    model: Some(format!("m-{i}")),
                    max_turns: Some(i),
                    ..AgentOptions::default()
                };
                c.configure(Some(format!("ctx-{i}")), options, Some(f64::from(i)))
                    .await
            } else {
                let options = AgentOptions {
                    model: Some(format!("p-{i}")),
                    ..AgentOptions::default()
                };
                c.profile(&format!("p{i}"), Some(format!("role {i}")), options)
                    .await
            }
        });
    }
    while let Some(joined) = set.join_next().await {
        joined.expect("writer task").expect("write accepted");
    }

    let config = client.config().await.expect("config");
    let context = config.context.clone().expect("a context");
    let i: u32 = context
        .strip_prefix("ctx-")
        .and_then(|n| n.parse().ok())
        .expect("a writer's context");
    assert_eq!(config.defaults.model, Some(format!("m-{i}")), "{config:?}");
    assert_eq!(config.defaults.max_turns, Some(i), "{config:?}");
    assert_eq!(config.max_cost_usd, Some(f64::from(i)), "{config:?}");
    assert_eq!(
        client.budget().await.expect("budget").limit,
        Some(f64::from(i)),
        "the budget limit is the last configure's"
    );
    let profiles = client.profiles().await.expect("profiles");
    assert_eq!(profiles.len() as u32, WRITERS / 2, "every profile is there");
    for p in &profiles {
        let n: u32 = p.name[1..].parse().expect("a writer's profile");
        assert_eq!(p.role, Some(format!("role {n}")));
        assert_eq!(p.options.model, Some(format!("p-{n}")));
    }
    drop(client);
    node.shutdown().await;

    let node = Node::open(dir.path()).await.expect("reopen");
    let client = node.client();
    assert_eq!(client.config().await.expect("config"), config);
    assert_eq!(client.profiles().await.expect("profiles"), profiles);
    assert_eq!(
        client.budget().await.expect("budget").limit,
        config.max_cost_usd
    );
    drop(client);
    node.shutdown().await;
}
