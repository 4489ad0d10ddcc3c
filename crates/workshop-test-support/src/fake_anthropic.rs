//! A fake Anthropic Messages API on loopback, enough for the real Claude Code CLI 2.1.328
//! (modelled on `shared/fixtures/claude-cli-2.1.328/*.requests.jsonl`).
//!
//! - `POST /v1/messages` with `stream: true` answers SSE (`message_start`, per block
//!   `content_block_start/delta/stop`, `message_delta`, `message_stop`); with `stream: false` a
//!   plain Message JSON (the CLI's fallback after repeated stream failures).
//! - Replies come from a script queue ([`FakeAnthropic::push`]); when it is empty the default
//!   reply is served ([`FakeAnthropic::set_default`], initially `Text("ok")`).
//! - Every request is recorded; [`FakeAnthropic::wait_for_requests`] lets a test wait for the
//!   n-th request without sleeping.
//! - `count_tokens`, `/v1/models` and `HEAD /api/hello` answer for safety.

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use parking_lot::Mutex;
use serde_json::{json, Value};
use tokio::sync::{mpsc, watch, Notify};
use tokio_stream::wrappers::ReceiverStream;

/// One scripted answer to one `POST /v1/messages`.
#[derive(Clone, Debug, PartialEq)]
pub enum Reply {
    /// A text reply (`stop_reason: end_turn`), streamed in a few deltas.
    Text(String),
    /// Optional text, then a `tool_use` block (`stop_reason: tool_use`).
    Tool {
        text: Option<String>,
        id: String,
        name: String,
        input: Value,
    },
    /// An HTTP error with the API's error body.
    Error {
        status: u16,
        kind: String,
        message: String,
        retry_after: Option<u32>,
    },
    /// `message_start`, a text block start and one delta of `text`, then nothing until
    /// [`FakeAnthropic::release_stalls`] (which finishes the message) or the client goes away.
    Stall { text: String },
    /// Any other reply held like [`Reply::Stall`]: its first three SSE events (`message_start`,
    /// the first block's start and first delta), then nothing until
    /// [`FakeAnthropic::release_stalls`] sends the rest (e.g. a `tool_use` the test holds).
    Held(Box<Reply>),
    /// Send the first `after_events` SSE events of a text reply, then drop the connection.
    Cut { text: String, after_events: usize },
    /// A complete stream without `message_stop` (the CLI accepts it).
    NoMessageStop(String),
}

impl Reply {
    pub fn text(t: impl Into<String>) -> Self {
        Reply::Text(t.into())
    }
    fn tool(name: &str, text: Option<&str>, input: Value) -> Self {
        static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Reply::Tool {
            text: text.map(str::to_string),
            id: format!("toolu_fake_{}_{n}", name.to_lowercase()),
            name: name.to_string(),
            input,
        }
    }
    /// A `tool_use` of any tool by its full name (an MCP tool: `mcp__<server>__<tool>`).
    pub fn tool_use(name: &str, input: Value) -> Self {
        Self::tool(name, None, input)
    }
    /// `Write` (the path must be absolute: the tool's schema says so).
    pub fn write(path: &str, content: &str) -> Self {
        Self::tool(
            "Write",
            Some("I'll create the file."),
            json!({"file_path": path, "content": content}),
        )
    }
    pub fn bash(command: &str) -> Self {
        Self::tool(
            "Bash",
            Some("Running it."),
            json!({"command": command, "description": "run a command"}),
        )
    }
    pub fn read(path: &str) -> Self {
        Self::tool("Read", None, json!({"file_path": path}))
    }
    pub fn error(status: u16) -> Self {
        let (kind, message) = match status {
            400 => ("invalid_request_error", "fake invalid request"),
            401 => ("authentication_error", "fake authentication_error"),
            403 => ("permission_error", "fake permission_error"),
            404 => ("not_found_error", "fake not_found_error"),
            429 => ("rate_limit_error", "fake rate_limit_error"),
            529 => ("overloaded_error", "fake overloaded_error"),
            _ => ("api_error", "fake api_error"),
        };
        Reply::Error {
            status,
            kind: kind.into(),
            message: message.into(),
            retry_after: None,
        }
    }
    pub fn stall(text: impl Into<String>) -> Self {
        Reply::Stall { text: text.into() }
    }
    /// `reply`, held after its first events until [`FakeAnthropic::release_stalls`].
    pub fn held(reply: Reply) -> Self {
        Reply::Held(Box::new(reply))
    }
    fn label(&self) -> String {
        match self {
            Reply::Text(_) => "text".into(),
            Reply::Tool { name, .. } => format!("tool_use:{name}"),
            Reply::Error { status, .. } => format!("error {status}"),
            Reply::Stall { .. } => "stall".into(),
            Reply::Held(r) => format!("held {}", r.label()),
            Reply::Cut { after_events, .. } => format!("cut after {after_events}"),
            Reply::NoMessageStop(_) => "text without message_stop".into(),
        }
    }
}

/// One request the fake received.
#[derive(Clone, Debug)]
pub struct Recorded {
    pub seq: usize,
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    pub headers: BTreeMap<String, String>,
    pub body: Value,
    /// What the fake answered (`text stream`, `tool_use:Write stream`, `error 429`, ...).
    pub served: String,
    pub at: Instant,
}

impl Recorded {
    pub fn is_messages(&self) -> bool {
        self.method == "POST" && self.path == "/v1/messages"
    }
    /// All text of all `messages` (any role), joined by newlines: for "the model saw X" checks.
    pub fn messages_text(&self) -> String {
        let mut out = Vec::new();
        for m in self.body["messages"].as_array().into_iter().flatten() {
            collect_text(&m["content"], &mut out);
        }
        out.join("\n")
    }
    /// Roles of `messages`, in order.
    pub fn roles(&self) -> Vec<String> {
        self.body["messages"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|m| m["role"].as_str().unwrap_or("").to_string())
            .collect()
    }
    pub fn model(&self) -> Option<&str> {
        self.body["model"].as_str()
    }
}

fn collect_text(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::String(s) => out.push(s.clone()),
        Value::Array(items) => items.iter().for_each(|i| collect_text(i, out)),
        Value::Object(o) => {
            if let Some(Value::String(t)) = o.get("text") {
                out.push(t.clone());
            }
            if let Some(c) = o.get("content") {
                collect_text(c, out);
            }
        }
        _ => {}
    }
}

struct Shared {
    script: Mutex<VecDeque<Reply>>,
    default: Mutex<Reply>,
    requests: Mutex<Vec<Recorded>>,
    count: watch::Sender<usize>,
    release: Notify,
    released: Mutex<bool>,
    input_tokens: u64,
    output_tokens: u64,
    next_id: std::sync::atomic::AtomicU64,
}

/// The running fake. Dropping it stops the server (open streams are cut).
pub struct FakeAnthropic {
    addr: SocketAddr,
    shared: Arc<Shared>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for FakeAnthropic {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl FakeAnthropic {
    /// Start on 127.0.0.1 with an ephemeral port.
    pub async fn start() -> Self {
        Self::start_with_usage(1000, 10).await
    }

    /// Start with the token counts every reply reports (they drive the CLI's cost).
    pub async fn start_with_usage(input_tokens: u64, output_tokens: u64) -> Self {
        let (count, _) = watch::channel(0usize);
        let shared = Arc::new(Shared {
            script: Mutex::new(VecDeque::new()),
            default: Mutex::new(Reply::Text("ok".into())),
            requests: Mutex::new(Vec::new()),
            count,
            release: Notify::new(),
            released: Mutex::new(false),
            input_tokens,
            output_tokens,
            next_id: std::sync::atomic::AtomicU64::new(1),
        });
        let app = Router::new()
            .route("/v1/messages", post(messages))
            .route("/v1/messages/count_tokens", post(count_tokens))
            .fallback(other)
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local addr");
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakeAnthropic {
            addr,
            shared,
            server,
        }
    }

    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn push(&self, reply: Reply) {
        self.shared.script.lock().push_back(reply);
    }

    pub fn push_n(&self, reply: Reply, n: usize) {
        let mut s = self.shared.script.lock();
        for _ in 0..n {
            s.push_back(reply.clone());
        }
    }

    /// The reply served when the script is empty (e.g. an error "forever").
    pub fn set_default(&self, reply: Reply) {
        *self.shared.default.lock() = reply;
    }

    /// Finish every stalled stream (now and later).
    pub fn release_stalls(&self) {
        *self.shared.released.lock() = true;
        self.shared.release.notify_waiters();
    }

    /// Stall again the streams that start from now on (after [`Self::release_stalls`]).
    pub fn rearm_stalls(&self) {
        *self.shared.released.lock() = false;
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.shared.requests.lock().clone()
    }

    /// Only the `POST /v1/messages` requests.
    pub fn message_requests(&self) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(Recorded::is_messages)
            .collect()
    }

    pub fn request_count(&self) -> usize {
        *self.shared.count.borrow()
    }

    /// Wait until at least `n` requests arrived (panics after `timeout`).
    pub async fn wait_for_requests(&self, n: usize, timeout: Duration) {
        let mut rx = self.shared.count.subscribe();
        let r = tokio::time::timeout(timeout, rx.wait_for(|c| *c >= n)).await;
        if r.is_err() {
            panic!(
                "the fake API got {} requests, expected {n} within {timeout:?}",
                self.request_count()
            );
        }
    }
}

impl Shared {
    fn record(&self, method: &Method, uri: &Uri, headers: &HeaderMap, body: Value, served: String) {
        let mut reqs = self.requests.lock();
        let seq = reqs.len() + 1;
        reqs.push(Recorded {
            seq,
            method: method.to_string(),
            path: uri.path().to_string(),
            query: uri.query().map(str::to_string),
            headers: headers
                .iter()
                .map(|(k, v)| {
                    let v = if k.as_str() == "x-api-key" || k.as_str() == "authorization" {
                        format!("<redacted len={}>", v.len())
                    } else {
                        v.to_str().unwrap_or("<binary>").to_string()
                    };
                    (k.to_string(), v)
                })
                .collect(),
            body,
            served,
            at: Instant::now(),
        });
        drop(reqs);
        self.count.send_modify(|c| *c += 1);
    }

    fn next(&self) -> Reply {
        self.script
            .lock()
            .pop_front()
            .unwrap_or_else(|| self.default.lock().clone())
    }

    fn id(&self, prefix: &str) -> String {
        let n = self
            .next_id
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        format!("{prefix}_fake_{n:020}")
    }
}

async fn count_tokens(
    State(s): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let body = serde_json::from_slice(&body).unwrap_or(Value::Null);
    s.record(&method, &uri, &headers, body, "count_tokens".into());
    axum::Json(json!({"input_tokens": s.input_tokens})).into_response()
}

async fn other(
    State(s): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let parsed = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let path = uri.path().to_string();
    let (served, resp) = if path == "/api/hello" {
        ("hello", StatusCode::OK.into_response())
    } else if path == "/v1/models" {
        (
            "models",
            axum::Json(json!({"data": [{"type": "model", "id": "claude-opus-5-5", "display_name": "Fake"}], "has_more": false})).into_response(),
        )
    } else {
        ("404", StatusCode::NOT_FOUND.into_response())
    };
    s.record(&method, &uri, &headers, parsed, served.into());
    resp
}

fn sse(event: &Value) -> Bytes {
    let kind = event["type"].as_str().unwrap_or("unknown");
    Bytes::from(format!("event: {kind}\ndata: {event}\n\n"))
}

/// Split text into a few deltas, as a real stream would.
fn pieces(text: &str) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    if chars.is_empty() {
        return vec![String::new()];
    }
    chars.chunks(12).map(|c| c.iter().collect()).collect()
}

/// The content blocks of a reply, as (start block, deltas, final block for non-streaming).
fn blocks(reply: &Reply) -> (Vec<Value>, &'static str) {
    match reply {
        Reply::Text(t)
        | Reply::NoMessageStop(t)
        | Reply::Stall { text: t }
        | Reply::Cut { text: t, .. } => (vec![json!({"type": "text", "text": t})], "end_turn"),
        Reply::Tool {
            text,
            id,
            name,
            input,
        } => {
            let mut b = Vec::new();
            if let Some(t) = text {
                b.push(json!({"type": "text", "text": t}));
            }
            b.push(json!({"type": "tool_use", "id": id, "name": name, "input": input}));
            (b, "tool_use")
        }
        Reply::Error { .. } => (vec![], "end_turn"),
        Reply::Held(inner) => blocks(inner),
    }
}

fn events_for(s: &Shared, model: &str, reply: &Reply) -> Vec<Value> {
    let (blocks, stop) = blocks(reply);
    let mut ev = vec![json!({"type": "message_start", "message": {
        "id": s.id("msg"), "type": "message", "role": "assistant", "model": model,
        "content": [], "stop_reason": null, "stop_sequence": null,
        "usage": {"input_tokens": s.input_tokens, "output_tokens": 1,
                  "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}}})];
    for (i, b) in blocks.iter().enumerate() {
        match b["type"].as_str() {
            Some("text") => {
                ev.push(json!({"type": "content_block_start", "index": i, "content_block": {"type": "text", "text": ""}}));
                for p in pieces(b["text"].as_str().unwrap_or("")) {
                    ev.push(json!({"type": "content_block_delta", "index": i, "delta": {"type": "text_delta", "text": p}}));
                }
            }
            _ => {
                ev.push(
                    json!({"type": "content_block_start", "index": i, "content_block": {
                    "type": "tool_use", "id": b["id"], "name": b["name"], "input": {}}}),
                );
                let js = b["input"].to_string();
                let chars: Vec<char> = js.chars().collect();
                for c in chars.chunks(20) {
                    let p: String = c.iter().collect();
                    ev.push(json!({"type": "content_block_delta", "index": i, "delta": {"type": "input_json_delta", "partial_json": p}}));
                }
            }
        }
        ev.push(json!({"type": "content_block_stop", "index": i}));
    }
    ev.push(
        json!({"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": null},
        "usage": {"output_tokens": s.output_tokens, "input_tokens": s.input_tokens,
                  "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}}),
    );
    if !matches!(reply, Reply::NoMessageStop(_)) {
        ev.push(json!({"type": "message_stop"}));
    }
    ev
}

async fn messages(
    State(s): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let streaming = body["stream"].as_bool().unwrap_or(false);
    let model = body["model"]
        .as_str()
        .unwrap_or("claude-opus-5-5")
        .to_string();
    let next = s.next();
    let served = format!(
        "{} {}",
        next.label(),
        if streaming { "stream" } else { "json" }
    );
    // A held reply is its inner reply, stalled like `Stall` after its first events.
    let (reply, held) = match next {
        Reply::Held(inner) => (*inner, true),
        other => {
            let stall = matches!(other, Reply::Stall { .. });
            (other, stall)
        }
    };
    s.record(&method, &uri, &headers, body, served);
    let request_id = s.id("req");

    if let Reply::Error {
        status,
        kind,
        message,
        retry_after,
    } = &reply
    {
        let code = StatusCode::from_u16(*status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut resp = (
            code,
            axum::Json(json!({"type": "error", "error": {"type": kind, "message": message}})),
        )
            .into_response();
        let h = resp.headers_mut();
        h.insert("request-id", request_id.parse().expect("header"));
        if let Some(ra) = retry_after {
            h.insert("retry-after", ra.to_string().parse().expect("header"));
        }
        return resp;
    }

    if !streaming {
        let (content, stop) = blocks(&reply);
        let msg = json!({"id": s.id("msg"), "type": "message", "role": "assistant", "model": model,
            "content": content, "stop_reason": stop, "stop_sequence": null,
            "usage": {"input_tokens": s.input_tokens, "output_tokens": s.output_tokens,
                      "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}});
        let mut resp = axum::Json(msg).into_response();
        resp.headers_mut()
            .insert("request-id", request_id.parse().expect("header"));
        return resp;
    }

    let events = events_for(&s, &model, &reply);
    let (tx, rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(64);
    let shared = s.clone();
    tokio::spawn(async move {
        let cut_after = match &reply {
            Reply::Cut { after_events, .. } => Some(*after_events),
            _ => None,
        };
        // a stall stops after message_start, the block start and its first delta
        let stall_after = held.then_some(3usize);
        for (i, ev) in events.iter().enumerate() {
            if cut_after == Some(i) {
                let _ = tx
                    .send(Err(std::io::Error::new(
                        std::io::ErrorKind::ConnectionReset,
                        "fake cut",
                    )))
                    .await;
                return;
            }
            if stall_after == Some(i) {
                let released = shared.release.notified();
                if !*shared.released.lock() {
                    tokio::select! {
                        _ = released => {}
                        _ = tx.closed() => return,
                    }
                }
            }
            if tx.send(Ok(sse(ev))).await.is_err() {
                return;
            }
        }
    });
    Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "text/event-stream")
        .header("cache-control", "no-cache")
        .header("request-id", request_id)
        .body(Body::from_stream(ReceiverStream::new(rx)))
        .expect("response")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_are_well_formed() {
        let (count, _) = watch::channel(0usize);
        let s = Shared {
            script: Mutex::new(VecDeque::new()),
            default: Mutex::new(Reply::Text("ok".into())),
            requests: Mutex::new(Vec::new()),
            count,
            release: Notify::new(),
            released: Mutex::new(false),
            input_tokens: 5,
            output_tokens: 7,
            next_id: std::sync::atomic::AtomicU64::new(1),
        };
        let ev = events_for(&s, "m", &Reply::write("/tmp/x", "hi"));
        let kinds: Vec<&str> = ev
            .iter()
            .map(|e| e["type"].as_str().unwrap_or(""))
            .collect();
        assert_eq!(kinds.first(), Some(&"message_start"));
        assert_eq!(kinds.last(), Some(&"message_stop"));
        let json: String = ev
            .iter()
            .filter_map(|e| e["delta"]["partial_json"].as_str())
            .collect();
        let input: Value = serde_json::from_str(&json).expect("tool input reassembles");
        assert_eq!(input["file_path"], "/tmp/x");
        let text: String = ev
            .iter()
            .filter_map(|e| e["delta"]["text"].as_str())
            .collect();
        assert_eq!(text, "I'll create the file.");
        let no_stop = events_for(&s, "m", &Reply::NoMessageStop("x".into()));
        assert_eq!(
            no_stop.last().map(|e| e["type"].clone()),
            Some(json!("message_delta"))
        );
    }
}
