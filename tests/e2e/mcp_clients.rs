//! MCP clients nobody here wrote, against a real `workshop node` process: the official Python
//! SDK (`mcp`, pinned; `.ci/install-python-mcp.sh`, run by `scripts/test.sh`) over Streamable
//! HTTP in both of its modes and over `workshop mcp --stdio`, and a plain HTTP/1.1 client for
//! the bearer token a non-loopback bind requires. What each client did is checked again on
//! the node through the Rust `Client`.

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::Path;
use std::process::Stdio;

use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;
use workshop_test_support::python_mcp;

use crate::support::{text, within, NodeProcess, LIMIT};

/// The AgentWorkshop tools every MCP host of workshop relies on.
const AGENTWORKSHOP_TOOLS: [&str; 21] = [
    "configure",
    "create_agent",
    "from_profile",
    "agents",
    "reset",
    "dismiss",
    "ask",
    "cast",
    "await",
    "await_all",
    "pipe",
    "fan",
    "add_work",
    "board",
    "claim_work",
    "complete_work",
    "fail_work",
    "status",
    "result",
    "info",
    "cost",
];

/// Run `tests/e2e/mcp/client.py` with `args` and `plan` on its standard input; its JSON lines.
pub(crate) async fn python_client(args: &[String], plan: &Value) -> Vec<Value> {
    let mut child = tokio::process::Command::new(python_mcp::python())
        .arg(python_mcp::script("client.py"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn the python MCP client");
    let mut stdin = child.stdin.take().expect("stdin");
    stdin
        .write_all(plan.to_string().as_bytes())
        .await
        .expect("write the plan");
    drop(stdin);
    let out = within("the python MCP client", child.wait_with_output())
        .await
        .expect("wait for the python MCP client");
    let stdout = text(&out.stdout);
    assert!(
        out.status.success(),
        "the python MCP client exited with {}\nstdout:\n{stdout}\nstderr:\n{}",
        out.status,
        text(&out.stderr)
    );
    stdout
        .lines()
        .map(|l| {
            serde_json::from_str(l).unwrap_or_else(|e| {
                panic!(
                    "not a JSON line from the client ({e}): {l}\nstderr:\n{}",
                    text(&out.stderr)
                )
            })
        })
        .collect()
}

/// The client's first line: the connection it made.
fn connected(lines: &[Value]) -> &Value {
    lines
        .first()
        .map(|l| &l["connected"])
        .filter(|c| c.is_object())
        .unwrap_or_else(|| panic!("the client printed no connection line: {lines:#?}"))
}

/// One tool call of a plan.
fn call(tool: &str, arguments: Value) -> Value {
    json!({ "tool": tool, "arguments": arguments })
}

/// The client's line for step `i` of the plan (line 0 is the connection).
fn step(lines: &[Value], i: usize) -> &Value {
    lines
        .get(i + 1)
        .unwrap_or_else(|| panic!("no output line for step {i}: {lines:#?}"))
}

/// A successful tool call's line: checks the tool and that it is not an error.
fn ok<'a>(lines: &'a [Value], i: usize, tool: &str) -> &'a Value {
    let l = step(lines, i);
    assert_eq!(l["tool"], tool, "step {i}: {l}");
    assert_eq!(l["is_error"], false, "step {i} ({tool}) failed: {l}");
    l
}

/// The Python SDK over Streamable HTTP in `mode`, expecting protocol `version`: the tool list,
/// a script agent's ask, cast + await, the board, and a tool error; then the node agrees.
async fn python_over_http(mode: &str, version: &str) {
    // Before anything starts: without the SDK the test fails saying how to install it.
    python_mcp::python();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut node = NodeProcess::start(dir.path());
    let url = node.mcp_url();
    let agent = format!("py_{mode}");
    let item = format!("py-item-{mode}");
    let plan = json!([
        { "list_tools": true },
        call("create_agent", json!({ "name": agent, "role": "You answer.", "backend": "script" })),
        call("ask", json!({ "agent": agent, "prompt": "hello from python" })),
        call("cast", json!({ "agent": agent, "prompt": "cast from python" })),
        call("await", json!({ "agent": agent })),
        call("add_work", json!({ "id": item, "title": "Written by Python", "type": "review", "spec": "check the SDK" })),
        call("board", json!({})),
        call("ask", json!({ "agent": "nobody_here", "prompt": "anyone?" })),
    ]);
    let args = ["--url", &url, "--mode", mode].map(String::from);
    let lines = python_client(&args, &plan).await;

    let connected = connected(&lines);
    assert_eq!(connected["protocol_version"], version, "{connected}");
    assert_eq!(connected["server_name"], "workshop", "{connected}");
    assert_eq!(connected["tools_capability"], true, "{connected}");

    let tools: Vec<&str> = step(&lines, 0)["tools"]
        .as_array()
        .unwrap_or_else(|| panic!("no tool list: {}", step(&lines, 0)))
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let missing: Vec<&str> = AGENTWORKSHOP_TOOLS
        .iter()
        .copied()
        .filter(|t| !tools.contains(t))
        .collect();
    assert!(
        missing.is_empty(),
        "tools missing: {missing:?} in {tools:?}"
    );

    let created = ok(&lines, 1, "create_agent");
    assert_eq!(created["structured"]["agent"], agent.as_str(), "{created}");

    let asked = ok(&lines, 2, "ask");
    assert_eq!(
        asked["text"], "Mock response to: hello from python",
        "{asked}"
    );
    assert_eq!(
        asked["structured"]["text"], "Mock response to: hello from python",
        "{asked}"
    );

    let cast = ok(&lines, 3, "cast");
    let reference = cast["structured"]["reference"].as_str().unwrap_or("");
    assert!(
        reference.starts_with(&format!("{agent}#")),
        "a cast reference names the agent: {cast}"
    );

    let awaited = ok(&lines, 4, "await");
    assert_eq!(
        awaited["structured"]["last"]["text"], "Mock response to: cast from python",
        "{awaited}"
    );
    assert!(
        awaited["text"]
            .as_str()
            .is_some_and(|t| t.contains("Mock response to: cast from python")),
        "{awaited}"
    );

    ok(&lines, 5, "add_work");
    let board = ok(&lines, 6, "board");
    let items = board["structured"]["items"]
        .as_array()
        .unwrap_or_else(|| panic!("no items: {board}"));
    let on_board = items
        .iter()
        .find(|i| i["id"] == item.as_str())
        .unwrap_or_else(|| panic!("{item} not on the board: {board}"));
    assert_eq!(on_board["title"], "Written by Python", "{board}");
    assert_eq!(on_board["type"], "review", "{board}");
    assert!(
        board["text"].as_str().is_some_and(|t| t.contains(&item)),
        "{board}"
    );

    let refused = step(&lines, 7);
    assert_eq!(refused["tool"], "ask", "{refused}");
    assert_eq!(refused["is_error"], true, "{refused}");
    assert!(
        refused["text"]
            .as_str()
            .is_some_and(|t| t.contains("nobody_here")),
        "the error names the agent: {refused}"
    );
    assert_eq!(refused["structured"]["error"], "unknown_agent", "{refused}");
    assert_eq!(lines.len(), plan.as_array().map_or(0, Vec::len) + 1);

    // The node saw all of it.
    let c = node.client().await;
    let info = c.info(&agent).await.expect("the agent exists on the node");
    assert_eq!(info.backend, "script");
    assert_eq!(info.turns, 2, "ask and cast each ran a turn");
    let items = c.board(None, None).await.expect("board");
    assert!(
        items.iter().any(|i| i.id.as_str() == item),
        "{item} on the node's board: {items:?}"
    );
    let status = node.terminate();
    let log = node.stderr();
    assert!(status.success(), "the node exited with {status}: {log}");
    assert!(!log.contains("panicked"), "the node panicked: {log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_sdk_auto_mode_speaks_2026_07_28_to_the_node() {
    python_over_http("auto", "2026-07-28").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_sdk_legacy_mode_speaks_2025_11_25_to_the_node() {
    python_over_http("legacy", "2025-11-25").await;
}

/// `workshop mcp --stdio --data-dir D`, launched by the Python SDK's stdio client in `mode`,
/// attaches to the node running on D: it lists that node's agents, and the agent it creates is
/// on that node.
async fn python_over_stdio(mode: &str, version: &str) {
    // Before anything starts: without the SDK the test fails saying how to install it.
    python_mcp::python();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut node = NodeProcess::start(dir.path());
    let c = node.client().await;
    c.agent("first", None, Default::default())
        .await
        .expect("an agent made in Rust");
    let agent = format!("via_stdio_{mode}");
    let plan = json!([
        call("agents", json!({})),
        call(
            "create_agent",
            json!({ "name": agent, "role": "You answer.", "backend": "script" })
        ),
        call("agents", json!({})),
        call("ask", json!({ "agent": agent, "prompt": "over stdio" })),
    ]);
    let args: Vec<String> = [
        "--stdio",
        "--mode",
        mode,
        "--",
        env!("CARGO_BIN_EXE_workshop"),
    ]
    .into_iter()
    .map(String::from)
    .chain(["mcp".into(), "--stdio".into(), "--data-dir".into()])
    .chain([dir.path().display().to_string()])
    .collect();
    let lines = python_client(&args, &plan).await;

    let connected = connected(&lines);
    assert_eq!(connected["protocol_version"], version, "{connected}");
    assert_eq!(connected["server_name"], "workshop", "{connected}");
    let before = ok(&lines, 0, "agents");
    assert_eq!(
        before["structured"]["agents"],
        json!(["first"]),
        "the stdio server lists the running node's agents: {before}"
    );
    let created = ok(&lines, 1, "create_agent");
    assert_eq!(created["structured"]["agent"], agent.as_str(), "{created}");
    let after = ok(&lines, 2, "agents");
    let listed: Vec<&str> = after["structured"]["agents"]
        .as_array()
        .unwrap_or_else(|| panic!("no agents list: {after}"))
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        listed.contains(&"first") && listed.contains(&agent.as_str()),
        "{after}"
    );
    let asked = ok(&lines, 3, "ask");
    assert_eq!(asked["text"], "Mock response to: over stdio", "{asked}");

    let names = c.agents().await.expect("agents");
    assert!(
        names.iter().any(|n| n.as_str() == agent),
        "the agent made over stdio is on the node: {names:?}"
    );
    let info = c.info(&agent).await.expect("info");
    assert_eq!(info.backend, "script");
    assert_eq!(info.turns, 1);
    let status = node.terminate();
    let log = node.stderr();
    assert!(status.success(), "the node exited with {status}: {log}");
    assert!(!log.contains("panicked"), "the node panicked: {log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_sdk_auto_over_workshop_mcp_stdio_acts_on_the_running_node() {
    python_over_stdio("auto", "2026-07-28").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_sdk_legacy_over_workshop_mcp_stdio_acts_on_the_running_node() {
    python_over_stdio("legacy", "2025-11-25").await;
}

// ---------------------------------------------------------------- the token off loopback

/// An address of this machine that is not loopback and can be bound, if there is one.
fn non_loopback_ip() -> Option<IpAddr> {
    let mut candidates = Vec::new();
    // The source address of a route out (a UDP connect sends nothing).
    for probe in ["203.0.113.1:9", "198.51.100.1:9", "10.255.255.1:9"] {
        if let Ok(s) = UdpSocket::bind("0.0.0.0:0") {
            if s.connect(probe).is_ok() {
                if let Ok(a) = s.local_addr() {
                    candidates.push(a.ip());
                }
            }
        }
    }
    // Else what `hostname -I` lists.
    if let Ok(out) = std::process::Command::new("hostname").arg("-I").output() {
        candidates.extend(
            text(&out.stdout)
                .split_whitespace()
                .filter_map(|w| w.parse::<IpAddr>().ok()),
        );
    }
    candidates.into_iter().find(|ip| {
        ip.is_ipv4()
            && !ip.is_loopback()
            && !ip.is_unspecified()
            && TcpListener::bind((*ip, 0)).is_ok()
    })
}

/// A response read whole (the request said `Connection: close`).
struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Response {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The JSON-RPC message of an SSE (`data: {...}`) or JSON body.
    fn message(&self) -> Value {
        let json = self
            .body
            .lines()
            .filter_map(|l| l.strip_prefix("data:"))
            .map(str::trim)
            .find(|d| d.starts_with('{'))
            .unwrap_or(self.body.trim());
        serde_json::from_str(json)
            .unwrap_or_else(|e| panic!("no JSON-RPC message in the body ({e}): {}", self.body))
    }
}

/// POST `body` to `/mcp` on `addr` over plain HTTP/1.1 with the MCP headers and `extra` ones.
fn post(addr: SocketAddr, extra: &[(&str, &str)], body: &str) -> Response {
    let mut s = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
    s.set_read_timeout(Some(LIMIT)).expect("read timeout");
    let mut req = format!(
        "POST /mcp HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nAccept: application/json, text/event-stream\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (k, v) in extra {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).expect("send the request");
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).expect("read the response");
    parse_response(&raw)
}

fn parse_response(raw: &[u8]) -> Response {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no end of headers: {}", text(raw)));
    let head = text(&raw[..split]);
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line: {status_line}"));
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let rest = &raw[split + 4..];
    let chunked = headers.iter().any(|(k, v)| {
        k.eq_ignore_ascii_case("transfer-encoding") && v.eq_ignore_ascii_case("chunked")
    });
    let body = if chunked {
        dechunk(rest)
    } else {
        rest.to_vec()
    };
    Response {
        status,
        headers,
        body: text(&body),
    }
}

/// The body of a `Transfer-Encoding: chunked` message.
fn dechunk(mut rest: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    loop {
        let Some(eol) = rest.windows(2).position(|w| w == b"\r\n") else {
            return body;
        };
        let size_text = text(&rest[..eol]);
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .unwrap_or_else(|_| panic!("bad chunk size: {size_text:?}"));
        rest = &rest[eol + 2..];
        if size == 0 || rest.len() < size {
            return body;
        }
        body.extend_from_slice(&rest[..size]);
        rest = rest.get(size + 2..).unwrap_or(&[]);
    }
}

fn initialize() -> String {
    json!({
        "jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {
            "protocolVersion": "2025-11-25",
            "capabilities": {},
            "clientInfo": { "name": "workshop-e2e", "version": "0" }
        }
    })
    .to_string()
}

async fn post_async(addr: SocketAddr, extra: Vec<(String, String)>, body: String) -> Response {
    within(
        "an HTTP exchange with the MCP server",
        tokio::task::spawn_blocking(move || {
            let extra: Vec<(&str, &str)> = extra
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            post(addr, &extra, &body)
        }),
    )
    .await
    .expect("the HTTP exchange")
}

fn bearer(token: &str) -> Vec<(String, String)> {
    vec![("Authorization".into(), format!("Bearer {token}"))]
}

/// A node whose MCP listens off loopback refuses requests without the token in
/// `<data dir>/mcp.token` (401, naming it) or with a wrong one, and serves one that has it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mcp_off_loopback_needs_the_data_dirs_token() {
    let Some(ip) = non_loopback_ip() else {
        eprintln!(
            "skipped mcp_off_loopback_needs_the_data_dirs_token: this machine has no non-loopback IPv4 address to bind"
        );
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let ip_arg = ip.to_string();
    let mut node = NodeProcess::start_with(dir.path(), &["--no-setup", "--mcp-host", &ip_arg], &[]);
    let url = node.mcp_url();
    let addr: SocketAddr = url
        .strip_prefix("http://")
        .and_then(|r| r.strip_suffix("/mcp"))
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("the endpoint's MCP URL is not http://IP:PORT/mcp: {url}"));
    assert_eq!(addr.ip(), ip, "{url}");
    let token = read_token(dir.path());

    // No Authorization: 401, and the message says where the token is.
    let r = post_async(addr, vec![], initialize()).await;
    assert_eq!(r.status, 401, "{}", r.body);
    assert_eq!(r.header("www-authenticate"), Some("Bearer"));
    assert!(
        r.body.contains("mcp.token") && r.body.contains("Authorization: Bearer"),
        "the refusal names the token: {}",
        r.body
    );

    // A wrong token: 401 too.
    let r = post_async(addr, bearer("not-the-token"), initialize()).await;
    assert_eq!(r.status, 401, "{}", r.body);
    assert!(r.body.contains("not valid"), "{}", r.body);

    // The token: a session, and tool calls that act on the node.
    let r = post_async(addr, bearer(&token), initialize()).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        r.message()["result"]["serverInfo"]["name"],
        "workshop",
        "{}",
        r.body
    );
    let session = r
        .header("mcp-session-id")
        .unwrap_or_else(|| panic!("no session id: {:?}", r.headers))
        .to_string();
    let mut with_session = bearer(&token);
    with_session.push(("Mcp-Session-Id".into(), session.clone()));
    with_session.push(("MCP-Protocol-Version".into(), "2025-11-25".into()));
    let r = post_async(
        addr,
        with_session.clone(),
        json!({ "jsonrpc": "2.0", "method": "notifications/initialized" }).to_string(),
    )
    .await;
    assert_eq!(r.status, 202, "{}", r.body);
    let r = post_async(
        addr,
        with_session.clone(),
        json!({
            "jsonrpc": "2.0", "id": 2, "method": "tools/call",
            "params": { "name": "create_agent", "arguments": { "name": "tokened", "backend": "script" } }
        })
        .to_string(),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let m = r.message();
    assert_eq!(m["result"]["isError"], false, "{m}");
    assert_eq!(m["result"]["structuredContent"]["agent"], "tokened", "{m}");

    // The session is the token's too: without it, the same session id is refused.
    let mut no_token = with_session.clone();
    no_token.retain(|(k, _)| k != "Authorization");
    let r = post_async(
        addr,
        no_token,
        json!({ "jsonrpc": "2.0", "id": 3, "method": "tools/list" }).to_string(),
    )
    .await;
    assert_eq!(r.status, 401, "{}", r.body);

    let c = node.client().await;
    let names = c.agents().await.expect("agents");
    assert!(
        names.iter().any(|n| n.as_str() == "tokened"),
        "the agent made with the token is on the node: {names:?}"
    );
    let status = node.terminate();
    assert!(status.success(), "the node exited with {status}");
}

fn read_token(dir: &Path) -> String {
    let t = std::fs::read_to_string(dir.join("mcp.token"))
        .unwrap_or_else(|e| panic!("the node wrote no {}/mcp.token: {e}", dir.display()));
    let t = t.trim().to_string();
    assert!(!t.is_empty(), "empty mcp.token");
    t
}

/// `workshop mcp --stdio` on a node of its own, stopped by its host with SIGTERM: the node
/// stops gracefully (exit 0, the data dir free again), as when the host closes stdin.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workshop_mcp_stdio_on_its_own_node_stops_gracefully_on_sigterm() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut child = crate::support::workshop()
        .args(["mcp", "--stdio", "--data-dir"])
        .arg(dir.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn workshop mcp --stdio");
    let mut stdin = child.stdin.take().expect("stdin");
    let stdout = child.stdout.take().expect("stdout");
    writeln!(
        stdin,
        "{}",
        json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {},
            "clientInfo": {"name": "test", "version": "1"}}})
    )
    .expect("write initialize");
    // Its answer means the node is open and serving.
    let mut first = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut first)
        .expect("read the answer");
    assert!(first.contains("\"serverInfo\""), "{first}");
    let sent = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(sent.success());
    let status = within("the stdio server to stop", async {
        loop {
            if let Some(s) = child.try_wait().expect("wait") {
                return s;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    })
    .await;
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut err);
    }
    assert!(status.success(), "exit {status}: {err}");
    drop(stdin);
    // The node let go of its data dir.
    let node = workshop_node::Node::open(dir.path())
        .await
        .expect("the data dir is free");
    node.shutdown().await;
}
