//! Agents with `workshop_tools` on a whole node: their backend is started wired to the node's
//! MCP server (a private config file with the agent's token), what the node stores and shows
//! stays as the user set it, the token shows nowhere, and dismissal revokes it.

mod common;

use std::sync::Arc;

use common::*;
use parking_lot::Mutex;
use workshop_agent::backend::script::ScriptBackend;
use workshop_agent::backend::{Backend, BackendError, Backends, Session};
use workshop_node::mcp_access::{Caller, McpAccess};
use workshop_node::Node;
use workshop_types::{AgentOptions, AgentSpec};

/// Stands in for `claude`: speaks MCP, records the spec of each session and runs script turns.
#[derive(Default)]
struct FakeClaude {
    seen: Mutex<Vec<AgentSpec>>,
}

impl Backend for FakeClaude {
    fn name(&self) -> &'static str {
        "claude"
    }
    fn speaks_mcp(&self) -> bool {
        true
    }
    fn start_session(&self, spec: &AgentSpec) -> Result<Box<dyn Session>, BackendError> {
        self.seen.lock().push(spec.clone());
        ScriptBackend.start_session(spec)
    }
}

fn token_in(path: &std::path::Path) -> String {
    let text = std::fs::read_to_string(path).expect("config file");
    let v: serde_json::Value = serde_json::from_str(&text).expect("JSON");
    let auth = v["mcpServers"]["workshop"]["headers"]["Authorization"]
        .as_str()
        .expect("a bearer header")
        .to_string();
    auth.strip_prefix("Bearer ").expect("bearer").to_string()
}

fn orchestrator() -> AgentOptions {
    AgentOptions {
        backend: Some("claude".into()),
        workshop_tools: Some(true),
        allowed_tools: Some(vec!["Read".into()]),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_orchestrator_is_wired_privately_shows_no_token_and_its_dismissal_revokes_it() {
    let data = tempfile::tempdir().expect("data dir");
    let access = Arc::new(McpAccess::new());
    access.served("http://127.0.0.1:4999/mcp".into(), None);
    let fake = Arc::new(FakeClaude::default());
    let node = Node::builder()
        .backends(
            Backends::default()
                .with(Arc::new(ScriptBackend))
                .with(fake.clone()),
        )
        .data_dir(data.path())
        .mcp(access.clone())
        .start()
        .await
        .expect("node");
    let c = node.client();
    c.agent("boss", Some("You lead.".into()), orchestrator())
        .await
        .expect("an orchestrator starts on a node that serves MCP");
    let path = data.path().join("mcp/boss.json");
    let token = token_in(&path);
    assert_eq!(access.caller(&token), Some(Caller::Agent("boss".into())));
    let wired = fake.seen.lock()[0].clone();
    assert_eq!(
        wired.options.mcp_config,
        Some(vec![path.display().to_string()])
    );

    // What the node shows is what the user set.
    let info = c.info("boss").await.expect("info");
    assert_eq!(info.allowed_tools, vec!["Read".to_string()]);
    assert_eq!(info.system_prompt.as_deref(), Some("You lead."));
    let turn = within("a turn", c.ask("boss", "hello"))
        .await
        .expect("a turn");
    assert_eq!(turn.text, "Mock response to: hello");
    let shown = format!(
        "{info:?} {:?} {:?} {turn:?}",
        c.status().await.expect("status"),
        c.events(500, None).await.expect("events"),
    );
    assert!(!shown.contains(&token), "the token leaked: {shown}");
    assert!(
        !shown.contains("boss.json"),
        "the config path leaked: {shown}"
    );

    // A script agent may carry the option on any node: nothing to wire.
    let mut scripted = orchestrator();
    scripted.backend = Some("script".into());
    c.agent("helper", None, scripted)
        .await
        .expect("script agent");
    assert!(!data.path().join("mcp/helper.json").exists());

    c.dismiss("boss").await.expect("dismiss");
    assert_eq!(
        access.caller(&token),
        None,
        "a dismissed agent's token is dead"
    );
    assert!(!path.exists(), "and its config file is gone");
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_orchestrator_on_a_node_without_mcp_is_refused_with_what_to_do() {
    let fake = Arc::new(FakeClaude::default());
    let node = Node::builder()
        .backends(Backends::default().with(fake.clone()))
        .start()
        .await
        .expect("node");
    let e = node
        .client()
        .agent("boss", None, orchestrator())
        .await
        .expect_err("no MCP server on this node");
    let msg = e.to_string();
    assert!(msg.contains("serves no MCP server"), "{msg}");
    assert!(msg.contains("workshop node"), "{msg}");
    assert!(fake.seen.lock().is_empty());
    node.shutdown().await;
}
