//! An orchestrator: the real Claude Code CLI as agent `boss` with `workshop_tools` on a
//! `workshop node` process (MCP on a free port), driven by the fake Anthropic API through
//! `mcp__workshop__*` tool calls. What it does through MCP really happens on the node, the
//! events say `boss` did it, and its token shows on no command line, environment, event or log.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;

use serde_json::{json, Value};
use workshop_test_support::claude::{claude_bin, claude_env};
use workshop_test_support::{procs, FakeAnthropic, Reply};
use workshop_types::board::Status;
use workshop_types::AgentOptions;

use crate::support::{within, NodeProcess};

/// The `tool_result` blocks of a request's messages: tool_use id → (is_error, text).
fn tool_results(body: &Value) -> BTreeMap<String, (bool, String)> {
    let mut out = BTreeMap::new();
    for m in body["messages"].as_array().into_iter().flatten() {
        for block in m["content"].as_array().into_iter().flatten() {
            if block["type"] != "tool_result" {
                continue;
            }
            let text = match &block["content"] {
                Value::String(s) => s.clone(),
                Value::Array(parts) => parts
                    .iter()
                    .filter_map(|p| p["text"].as_str())
                    .collect::<Vec<_>>()
                    .join("\n"),
                _ => String::new(),
            };
            let id = block["tool_use_id"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            out.insert(id, (block["is_error"] == true, text));
        }
    }
    out
}

/// The HTTP status of an MCP `initialize` sent to `url` with `token` (a raw HTTP/1.1 request:
/// the test needs only the status line).
async fn mcp_status(url: &str, token: &str) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rest = url.strip_prefix("http://").expect("an http URL");
    let (host, path) = rest.split_once('/').expect("a path");
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {},
        "clientInfo": {"name": "e2e", "version": "0"}}})
    .to_string();
    let request = format!(
        "POST /{path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nAccept: application/json, text/event-stream\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let mut stream = tokio::net::TcpStream::connect(host)
        .await
        .expect("connect to the MCP server");
    stream
        .write_all(request.as_bytes())
        .await
        .expect("send the request");
    let mut head = [0u8; 12];
    stream
        .read_exact(&mut head)
        .await
        .expect("read the status line");
    let line = String::from_utf8_lossy(&head).into_owned();
    line.get(9..12)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP status line: {line:?}"))
}

fn tool_id(reply: &Reply) -> String {
    match reply {
        Reply::Tool { id, .. } => id.clone(),
        other => panic!("not a tool call: {other:?}"),
    }
}

/// Every tool the orchestrator guidance names is one the node's MCP server serves.
#[test]
fn the_guidance_names_only_tools_the_server_has() {
    let guidance = workshop_node::orchestrator::guidance("boss");
    let (_, listed) = guidance.split_once("MCP tools (").expect("a list of tools");
    let (listed, _) = listed.split_once(" and more)").expect("the list's end");
    let served = workshop_mcp::tools::names();
    let named: Vec<&str> = listed.split(", ").collect();
    assert!(named.len() >= 8, "{named:?}");
    for tool in named {
        assert!(served.contains(&tool), "{tool} is not served: {served:?}");
    }
    for tool in ["await_all", "add_work", "board", "dismiss"] {
        assert!(guidance.contains(tool), "{guidance}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claude_orchestrator_runs_the_fleet_through_the_nodes_mcp_tools() {
    let fake = FakeAnthropic::start().await;
    let create = Reply::tool_use(
        "mcp__workshop__create_agent",
        json!({"name": "helper", "backend": "script", "role": "You help."}),
    );
    let add = Reply::tool_use(
        "mcp__workshop__add_work",
        json!({"id": "task-1", "title": "Write the docs", "type": "docs",
               "spec": "Document the cache.", "priority": 2}),
    );
    let board = Reply::tool_use("mcp__workshop__board", json!({}));
    let ids = [tool_id(&create), tool_id(&add), tool_id(&board)];
    fake.push(create);
    fake.push(add);
    fake.push(board);
    fake.push(Reply::text("helper is up and task-1 is on the board."));

    let dir = tempfile::tempdir().expect("node dir");
    let work = tempfile::tempdir().expect("agent working dir");
    let home = tempfile::tempdir().expect("HOME");
    let mut node = NodeProcess::start(dir.path());
    let c = node.client().await;
    let options = AgentOptions {
        backend: Some("claude".into()),
        workshop_tools: Some(true),
        working_dir: Some(work.path().display().to_string()),
        claude_bin: Some(claude_bin().display().to_string()),
        env: Some(claude_env(&fake.base_url(), home.path(), 0)),
        max_turns: Some(8),
        ..Default::default()
    };
    within(
        "creating the orchestrator",
        c.agent("boss", Some("You lead a small team.".into()), options),
    )
    .await
    .expect("an orchestrator starts on a node that serves MCP");

    // Its MCP config: owner-only, under the data dir, holding the node's URL and its token.
    let config = dir.path().join("mcp/boss.json");
    assert_eq!(
        std::fs::metadata(&config)
            .expect("config file")
            .permissions()
            .mode()
            & 0o777,
        0o600
    );
    let v: Value =
        serde_json::from_str(&std::fs::read_to_string(&config).expect("config")).expect("JSON");
    let server = &v["mcpServers"]["workshop"];
    assert_eq!(server["type"], "http", "{v}");
    let url = server["url"].as_str().expect("url");
    let endpoint = std::fs::read_to_string(dir.path().join("node.endpoint")).expect("endpoint");
    assert!(
        endpoint.contains(&format!("mcp={url}")),
        "the node's own MCP URL: {url} vs {endpoint}"
    );
    let token = server["headers"]["Authorization"]
        .as_str()
        .and_then(|a| a.strip_prefix("Bearer "))
        .expect("a bearer token")
        .to_string();

    assert_eq!(
        within("an MCP request", mcp_status(url, &token)).await,
        200,
        "the node takes the orchestrator's token"
    );

    let turn = within(
        "the orchestrator's turn",
        c.ask(
            "boss",
            "Set up a helper and put the docs task on the board.",
        ),
    )
    .await
    .expect("the turn completes");
    assert_eq!(turn.text, "helper is up and task-1 is on the board.");

    // What the model asked for happened on the node.
    let helper = c.info("helper").await.expect("helper exists");
    assert_eq!(helper.backend, "script");
    assert_eq!(helper.role.as_deref(), Some("You help."));
    let answer = within("a turn of the helper", c.ask("helper", "hi"))
        .await
        .expect("helper answers");
    assert_eq!(answer.text, "Mock response to: hi");
    let item = c
        .work_item("task-1")
        .await
        .expect("work_item")
        .expect("task-1 is on the board");
    assert_eq!(item.title, "Write the docs");
    assert_eq!(item.spec, "Document the cache.");
    assert_eq!(item.priority, 2);
    assert_eq!(item.status, Status::Ready);

    // Each tool call was answered without error, and the answers went back to the model.
    let requests = fake.message_requests();
    let system = requests.first().expect("a request").body["system"].to_string();
    assert!(
        system.contains("You lead a small team.") && system.contains("You are an orchestrator"),
        "the role and the guidance reach the model: {system}"
    );
    assert!(!system.contains(&token));
    let last = requests.last().expect("requests").body.clone();
    let results = tool_results(&last);
    for id in &ids {
        let (is_error, text) = results
            .get(id)
            .unwrap_or_else(|| panic!("no tool_result for {id}: {results:?}"));
        assert!(!is_error, "{id} failed: {text}");
    }
    assert!(results[&ids[0]].1.contains("helper"), "{results:?}");
    assert!(results[&ids[1]].1.contains("task-1"), "{results:?}");
    assert!(results[&ids[2]].1.contains("task-1"), "{results:?}");

    // The events say boss did it.
    let lines: Vec<String> = c
        .events(500, None)
        .await
        .expect("events")
        .into_iter()
        .map(|e| e.line)
        .collect();
    for want in [
        "boss (via MCP): created agent helper",
        "boss (via MCP): added work item task-1",
    ] {
        assert!(
            lines.iter().any(|l| l.contains(want)),
            "no {want:?} in {lines:#?}"
        );
    }

    // The token is nowhere but in the file: not in the CLI's command line or environment, an
    // event, the node's log, or what info shows.
    let claudes = procs::with_cwd_under(work.path());
    assert!(!claudes.is_empty(), "the orchestrator's claude runs");
    for p in &claudes {
        let cmdline = std::fs::read(format!("/proc/{}/cmdline", p.pid)).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        assert!(
            !cmdline.contains(&token),
            "token on a command line: {cmdline}"
        );
        assert!(
            cmdline.contains(&format!("--mcp-config={}", config.display())),
            "{cmdline}"
        );
        let environ = std::fs::read(format!("/proc/{}/environ", p.pid)).unwrap_or_default();
        assert!(!String::from_utf8_lossy(&environ).contains(&token));
    }
    assert!(lines.iter().all(|l| !l.contains(&token)));
    let info = c.info("boss").await.expect("info");
    assert!(info.allowed_tools.is_empty(), "{:?}", info.allowed_tools);
    assert_eq!(
        info.system_prompt.as_deref(),
        Some("You lead a small team.")
    );

    // Dismissing the orchestrator ends its claude and removes its config (its token is dead).
    within("dismiss", c.dismiss("boss")).await.expect("dismiss");
    assert!(!config.exists(), "the config file is removed");
    assert_eq!(
        within("an MCP request", mcp_status(url, &token)).await,
        401,
        "a dismissed orchestrator's token is refused"
    );
    assert!(
        procs::with_cwd_under(work.path()).is_empty(),
        "no claude left: {:?}",
        procs::with_cwd_under(work.path())
    );
    let status = node.terminate();
    let log = node.stderr();
    assert!(status.success(), "the node exited with {status}: {log}");
    assert!(!log.contains(&token), "the token is in the node's log");
    assert!(!log.contains("panicked"), "{log}");
}

/// A node started with `--no-mcp` refuses an orchestrator, saying why and what to do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_without_mcp_refuses_an_orchestrator() {
    let dir = tempfile::tempdir().expect("node dir");
    let mut node = NodeProcess::start_with(dir.path(), &["--no-setup", "--no-mcp"], &[]);
    let c = node.client().await;
    let options = AgentOptions {
        backend: Some("claude".into()),
        workshop_tools: Some(true),
        claude_bin: Some("/nonexistent/claude".into()),
        ..Default::default()
    };
    let e = within("creating the orchestrator", c.agent("boss", None, options))
        .await
        .expect_err("no MCP server on this node");
    let msg = e.to_string();
    assert!(msg.contains("serves no MCP server"), "{msg}");
    assert!(msg.contains("--no-mcp"), "{msg}");
    assert!(!dir.path().join("mcp").exists(), "nothing written");
    let status = node.terminate();
    assert!(status.success(), "{}", node.stderr());
}
