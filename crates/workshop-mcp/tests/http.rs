//! The HTTP layer as a client sees it (requests through the router, no socket): the token off
//! loopback, Host and Origin checks, sessions and their expiry, tool calls acting as the
//! token's owner.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;
use workshop_mcp::http::router;
use workshop_node::mcp_access::McpAccess;
use workshop_node::Node;

const LOOPBACK: &str = "127.0.0.1:4222";
/// Not loopback: only the address decides; nothing binds it.
const OFF_LOOPBACK: &str = "10.1.2.3:4222";
const IDLE: Duration = Duration::from_secs(60);

struct Server {
    node: Node,
    access: Arc<McpAccess>,
    app: axum::Router,
}

impl Server {
    async fn start(addr: &str) -> Self {
        let node = Node::start().await.expect("node");
        let access = Arc::new(McpAccess::new());
        let addr: SocketAddr = addr.parse().expect("addr");
        access.served(format!("http://{addr}/mcp"), Some("operator-secret".into()));
        let app = router(
            node.client(),
            access.clone(),
            addr,
            IDLE,
            CancellationToken::new(),
        );
        Self { node, access, app }
    }

    async fn send(&self, req: Request<Body>) -> (StatusCode, Option<String>, String) {
        let resp = self.app.clone().oneshot(req).await.expect("response");
        let status = resp.status();
        let session = resp
            .headers()
            .get("mcp-session-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let body = resp
            .into_body()
            .collect()
            .await
            .map(|b| String::from_utf8_lossy(&b.to_bytes()).to_string())
            .unwrap_or_default();
        (status, session, body)
    }

    async fn stop(self) {
        self.node.shutdown().await;
    }
}

fn post(body: Value) -> axum::http::request::Builder {
    Request::post("/mcp")
        .header("host", "localhost:4222")
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .extension(body)
}

fn build(b: axum::http::request::Builder) -> Request<Body> {
    let body = b
        .extensions_ref()
        .and_then(|e| e.get::<Value>().cloned())
        .unwrap_or(Value::Null);
    b.body(Body::from(body.to_string())).expect("request")
}

fn initialize() -> Value {
    json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {},
        "clientInfo": {"name": "test", "version": "1"}}})
}

fn initialized() -> Value {
    json!({"jsonrpc": "2.0", "method": "notifications/initialized"})
}

fn call(id: u64, tool: &str, args: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
           "params": {"name": tool, "arguments": args}})
}

/// The JSON-RPC message in an SSE or JSON body.
fn message(body: &str) -> Value {
    body.lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .chain(std::iter::once(body.trim()))
        .find_map(|d| serde_json::from_str::<Value>(d).ok())
        .unwrap_or(Value::Null)
}

/// Initialise a legacy session; its id.
async fn session(s: &Server, auth: Option<&str>) -> String {
    let mut b = post(initialize());
    if let Some(t) = auth {
        b = b.header("authorization", format!("Bearer {t}"));
    }
    let (status, session, body) = s.send(build(b)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let id = session.expect("a session id");
    let mut b = post(initialized()).header("mcp-session-id", &id);
    if let Some(t) = auth {
        b = b.header("authorization", format!("Bearer {t}"));
    }
    let (status, _, _) = s.send(build(b)).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    id
}

async fn tool(s: &Server, id: &str, auth: Option<&str>, tool: &str, args: Value) -> Value {
    let mut b = post(call(2, tool, args)).header("mcp-session-id", id);
    if let Some(t) = auth {
        b = b.header("authorization", format!("Bearer {t}"));
    }
    let (status, _, body) = s.send(build(b)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    message(&body)["result"].clone()
}

#[tokio::test]
async fn on_loopback_no_token_is_needed_and_the_server_says_who_it_is() {
    let s = Server::start(LOOPBACK).await;
    let (status, session, body) = s.send(build(post(initialize()))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(session.is_some());
    let m = message(&body);
    assert_eq!(m["result"]["serverInfo"]["name"], "workshop");
    assert!(m["result"]["capabilities"]["tools"].is_object());
    let id = session.expect("session");
    let mut b = post(initialized());
    b = b.header("mcp-session-id", &id);
    s.send(build(b)).await;
    let list = post(json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}))
        .header("mcp-session-id", &id);
    let (status, _, body) = s.send(build(list)).await;
    assert_eq!(status, StatusCode::OK);
    let tools = message(&body)["result"]["tools"].clone();
    assert!(tools.as_array().is_some_and(|t| t.len() > 40), "{tools}");
    let r = tool(&s, &id, None, "agents", json!({})).await;
    assert_eq!(r["content"][0]["text"], "No agents.");
    assert_eq!(r["structuredContent"], json!({ "agents": [] }));
    // Only tools are declared, so prompts, resources and completions are not answered.
    for method in ["prompts/list", "resources/list", "resources/templates/list"] {
        let req = post(json!({"jsonrpc": "2.0", "id": 9, "method": method}))
            .header("mcp-session-id", &id);
        let (_, _, body) = s.send(build(req)).await;
        assert_eq!(message(&body)["error"]["code"], -32601, "{method}: {body}");
    }
    let r = tool(&s, &id, None, "ask", json!({ "agent": "x", "prompt": "y" })).await;
    assert_eq!(r["isError"], true);
    assert_eq!(r["structuredContent"]["error"], "unknown_agent");
    s.stop().await;
}

#[tokio::test]
async fn off_loopback_a_request_without_the_token_is_refused() {
    let s = Server::start(OFF_LOOPBACK).await;
    let (status, _, body) = s.send(build(post(initialize()))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(
        body.contains("Authorization: Bearer") && body.contains("mcp.token"),
        "{body}"
    );
    let wrong = post(initialize()).header("authorization", "Bearer guess");
    let (status, _, body) = s.send(build(wrong)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(body.contains("not valid"), "{body}");
    // Any Host is fine with the token (a rebinding page cannot know it).
    let id = session(&s, Some("operator-secret")).await;
    let r = tool(&s, &id, Some("operator-secret"), "agents", json!({})).await;
    assert_eq!(r["content"][0]["text"], "No agents.");
    // The session id alone is not enough.
    let list = post(call(3, "agents", json!({}))).header("mcp-session-id", &id);
    let (status, _, _) = s.send(build(list)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    s.stop().await;
}

#[tokio::test]
async fn on_loopback_a_wrong_token_is_refused_too() {
    let s = Server::start(LOOPBACK).await;
    let wrong = post(initialize()).header("authorization", "Bearer guess");
    let (status, _, _) = s.send(build(wrong)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    s.stop().await;
}

#[tokio::test]
async fn an_agents_token_acts_as_that_agent() {
    let s = Server::start(OFF_LOOPBACK).await;
    let client = s.node.client();
    client
        .agent(
            "boss",
            None,
            workshop_types::AgentOptions {
                backend: Some("script".into()),
                ..Default::default()
            },
        )
        .await
        .expect("boss");
    let token = s.access.mint("boss").expect("token");
    let id = session(&s, Some(&token)).await;
    let r = tool(
        &s,
        &id,
        Some(&token),
        "create_agent",
        json!({ "name": "helper", "backend": "script" }),
    )
    .await;
    assert_eq!(r["content"][0]["text"], "Agent helper created.");
    let r = tool(
        &s,
        &id,
        Some(&token),
        "configure",
        json!({ "max_cost_usd": 1000.0 }),
    )
    .await;
    assert_eq!(r["isError"], true);
    assert_eq!(r["structuredContent"]["error"], "refused");
    let events = client.events(100, None).await.expect("events");
    assert!(
        events
            .iter()
            .any(|e| e.line == "boss (via MCP): created agent helper"),
        "{events:?}"
    );
    // A revoked token stops working.
    s.access.revoke("boss");
    let again = post(call(4, "agents", json!({})))
        .header("mcp-session-id", &id)
        .header("authorization", format!("Bearer {token}"));
    let (status, _, _) = s.send(build(again)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    s.stop().await;
}

#[tokio::test]
async fn foreign_hosts_and_origins_are_refused_on_loopback() {
    let s = Server::start(LOOPBACK).await;
    let evil_host = post(initialize()).header("host", "evil.example:4222");
    // `header` appends: build the request again with one Host.
    let mut req = build(evil_host);
    req.headers_mut().insert(
        "host",
        axum::http::HeaderValue::from_static("evil.example:4222"),
    );
    let (status, _, _) = s.send(req).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let evil_origin = post(initialize()).header("origin", "http://evil.example");
    let (status, _, _) = s.send(build(evil_origin)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let local_origin = post(initialize()).header("origin", "http://localhost:3000");
    let (status, _, _) = s.send(build(local_origin)).await;
    assert_eq!(status, StatusCode::OK);
    s.stop().await;
}

#[tokio::test]
async fn a_closed_session_is_answered_404_so_the_client_initialises_again() {
    let s = Server::start(LOOPBACK).await;
    let id = session(&s, None).await;
    let delete = Request::delete("/mcp")
        .header("host", "localhost:4222")
        .header("mcp-session-id", &id)
        .body(Body::empty())
        .expect("request");
    let (status, _, _) = s.send(delete).await;
    assert!(status.is_success(), "{status}");
    let list = post(call(2, "agents", json!({}))).header("mcp-session-id", &id);
    let (status, _, _) = s.send(build(list)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // A new session works.
    let id = session(&s, None).await;
    let r = tool(&s, &id, None, "agents", json!({})).await;
    assert_eq!(r["content"][0]["text"], "No agents.");
    s.stop().await;
}

#[tokio::test(start_paused = true)]
async fn an_idle_session_expires_and_is_answered_404() {
    let s = Server::start(LOOPBACK).await;
    let id = session(&s, None).await;
    let r = tool(&s, &id, None, "agents", json!({})).await;
    assert_eq!(r["content"][0]["text"], "No agents.");
    tokio::time::advance(IDLE + Duration::from_secs(1)).await;
    // Let the session's worker see its deadline.
    for _ in 0..100 {
        tokio::task::yield_now().await;
    }
    let list = post(call(3, "agents", json!({}))).header("mcp-session-id", &id);
    let (status, _, _) = s.send(build(list)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    s.stop().await;
}
