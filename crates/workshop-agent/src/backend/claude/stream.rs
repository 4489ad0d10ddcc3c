//! The Claude Code stream-json protocol, as pure functions: one stdout line in, one [`Line`] out,
//! and the stdin lines workshop writes. No I/O here, so every shape is unit-tested against the
//! transcripts of the real CLI 2.1.328 (`shared/fixtures/claude-cli-2.1.328/*.stdout`).
//!
//! The parser is tolerant: unknown `type`s and `subtype`s, missing fields and non-JSON lines are
//! reported as such and never fail. Key order is not assumed (`result` lines do not start with
//! `type`).

use std::collections::BTreeMap;

use serde_json::{json, Value};
use workshop_types::Usage;

/// One stdout line of `claude -p --output-format stream-json --verbose`.
#[derive(Debug, Clone, PartialEq)]
pub enum Line {
    /// `system`/`init`: the first line of every turn in long-lived mode.
    Init {
        session_id: Option<String>,
        model: Option<String>,
        cwd: Option<String>,
    },
    /// `system`/`permission_denied`: a tool call was refused (the turn goes on).
    PermissionDenied { tool_name: String, message: String },
    /// Any other `system` subtype (`status`, `hook_*`, `compact_boundary`, `task_*`, ...).
    System { subtype: String },
    /// One content block of an assistant message (each block is its own line).
    Assistant(Assistant),
    /// Tool results (or an echo / interruption marker).
    User(UserLine),
    /// `stream_event` (with `--include-partial-messages`): a raw Messages-API SSE event.
    StreamEvent(StreamEvent),
    /// `rate_limit_event`.
    RateLimit { status: Option<String> },
    /// The turn terminator.
    Result(Box<ResultLine>),
    /// The CLI asks the host something (`can_use_tool`, `hook_callback`, `mcp_message`, ...).
    ControlRequest { request_id: String, subtype: String },
    /// The CLI answers one of our control requests (e.g. `interrupt`).
    ControlResponse {
        request_id: Option<String>,
        subtype: Option<String>,
    },
    /// `control_cancel_request`, `keep_alive` and anything else with a `type`.
    Other { kind: String },
    /// A line that is not a JSON object (build banners, debug output, blank lines).
    NotJson,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Assistant {
    pub message_id: Option<String>,
    pub blocks: Vec<Block>,
    /// `error` on the line (`authentication_failed`, `rate_limit`, ...), when present.
    pub error: Option<String>,
    pub parent_tool_use_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Block {
    Text(String),
    Thinking,
    ToolUse {
        id: String,
        name: String,
        input: Value,
    },
    Other(String),
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct UserLine {
    pub tool_results: Vec<ToolResult>,
    /// Plain text blocks (`[Request interrupted by user]`, replays).
    pub texts: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ToolResult {
    pub tool_use_id: String,
    pub is_error: bool,
    pub content: String,
}

#[derive(Debug, Clone, PartialEq)]
pub enum StreamEvent {
    MessageStart {
        message_id: Option<String>,
    },
    TextDelta(String),
    /// Any other SSE event type (`content_block_start`, `input_json_delta`, `message_delta`, ...).
    Other(String),
}

/// Per-model usage and cost of a `result` line.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ModelUsage {
    pub usage: Usage,
    pub cost_usd: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Denial {
    pub tool_name: String,
    pub tool_use_id: Option<String>,
    pub tool_input: Value,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct ResultLine {
    pub subtype: Option<String>,
    pub is_error: bool,
    pub result: Option<String>,
    pub session_id: Option<String>,
    /// Cumulative for the session: within a process and across `--resume` (FINDINGS 2).
    pub total_cost_usd: Option<f64>,
    pub duration_ms: u64,
    pub duration_api_ms: u64,
    pub num_turns: u32,
    /// Per turn.
    pub usage: Usage,
    /// `modelUsage`: cumulative per process.
    pub model_usage: BTreeMap<String, ModelUsage>,
    /// `model_usage_since_last_result`: per turn (long-lived stream-json only).
    pub model_usage_since_last_result: Option<BTreeMap<String, ModelUsage>>,
    pub permission_denials: Vec<Denial>,
    pub terminal_reason: Option<String>,
    pub stop_reason: Option<String>,
    pub api_error_status: Option<i64>,
    pub errors: Vec<String>,
    pub result_index: Option<u64>,
}

impl ResultLine {
    /// Why this result is a failed turn, or `None` for a success. `is_error: true` fails whatever
    /// the subtype says (API errors come with `subtype: "success"`), and so does any `error*`
    /// subtype.
    pub fn failure(&self) -> Option<String> {
        let subtype = self.subtype.as_deref().unwrap_or("");
        if !self.is_error && !subtype.starts_with("error") {
            return None;
        }
        let detail = {
            let mut parts: Vec<String> = Vec::new();
            if let Some(r) = self.result.as_deref().filter(|r| !r.trim().is_empty()) {
                parts.push(r.trim().to_string());
            }
            parts.extend(
                self.errors
                    .iter()
                    .filter(|e| !e.trim().is_empty())
                    .map(|e| e.trim().to_string()),
            );
            if parts.is_empty() {
                "no error text".to_string()
            } else {
                parts.join("; ")
            }
        };
        let reason = self.terminal_reason.as_deref().unwrap_or("unknown");
        let what = match (self.api_error_status, reason, subtype) {
            (Some(status), _, _) => format!("claude API error (HTTP {status})"),
            (None, "api_error", _) => "claude API error".to_string(),
            (_, _, "error_max_turns") => {
                format!("claude hit max_turns after {} turns", self.num_turns)
            }
            (_, _, "error_max_budget_usd") => "claude hit its max_budget_usd".to_string(),
            (_, _, "error_during_execution") => "claude failed during execution".to_string(),
            _ => "claude reported an error".to_string(),
        };
        Some(format!(
            "{what}: {detail} [subtype={}, terminal_reason={reason}, is_error={}]",
            if subtype.is_empty() { "none" } else { subtype },
            self.is_error
        ))
    }

    /// This turn's per-model usage: `model_usage_since_last_result` where the CLI gives it,
    /// else `modelUsage` (one result per process, so the same thing).
    pub fn turn_model_usage(&self) -> &BTreeMap<String, ModelUsage> {
        self.model_usage_since_last_result
            .as_ref()
            .unwrap_or(&self.model_usage)
    }

    /// The CLI's own cost of this turn (sum over `model_usage_since_last_result`), when given.
    pub fn turn_cost_hint(&self) -> Option<f64> {
        self.model_usage_since_last_result
            .as_ref()
            .map(|m| m.values().map(|u| u.cost_usd).sum())
    }
}

fn s(v: &Value, key: &str) -> Option<String> {
    v.get(key).and_then(Value::as_str).map(str::to_string)
}

fn u(v: &Value, key: &str) -> u64 {
    v.get(key).and_then(Value::as_u64).unwrap_or(0)
}

fn usage_snake(v: &Value) -> Usage {
    Usage {
        input_tokens: u(v, "input_tokens"),
        output_tokens: u(v, "output_tokens"),
        cache_creation_input_tokens: u(v, "cache_creation_input_tokens"),
        cache_read_input_tokens: u(v, "cache_read_input_tokens"),
    }
}

fn model_usage_map(v: Option<&Value>) -> Option<BTreeMap<String, ModelUsage>> {
    let obj = v?.as_object()?;
    Some(
        obj.iter()
            .map(|(model, m)| {
                (
                    model.clone(),
                    ModelUsage {
                        usage: Usage {
                            input_tokens: u(m, "inputTokens"),
                            output_tokens: u(m, "outputTokens"),
                            cache_creation_input_tokens: u(m, "cacheCreationInputTokens"),
                            cache_read_input_tokens: u(m, "cacheReadInputTokens"),
                        },
                        cost_usd: m.get("costUSD").and_then(Value::as_f64).unwrap_or(0.0),
                    },
                )
            })
            .collect(),
    )
}

fn text_of(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(items) => items
            .iter()
            .filter_map(|b| b.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join("\n"),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// Parse one stdout line (without or with its trailing newline).
pub fn parse_line(line: &[u8]) -> Line {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let Ok(v) = serde_json::from_slice::<Value>(line) else {
        return Line::NotJson;
    };
    let Some(kind) = v.get("type").and_then(Value::as_str) else {
        return Line::NotJson;
    };
    match kind {
        "system" => parse_system(&v),
        "assistant" => Line::Assistant(parse_assistant(&v)),
        "user" => Line::User(parse_user(&v)),
        "stream_event" => {
            Line::StreamEvent(parse_stream_event(v.get("event").unwrap_or(&Value::Null)))
        }
        "rate_limit_event" => Line::RateLimit {
            status: v.get("rate_limit_info").and_then(|i| s(i, "status")),
        },
        "result" => Line::Result(Box::new(parse_result(&v))),
        "control_request" => Line::ControlRequest {
            request_id: s(&v, "request_id").unwrap_or_default(),
            subtype: v
                .get("request")
                .and_then(|r| s(r, "subtype"))
                .unwrap_or_default(),
        },
        "control_response" => {
            let r = v.get("response").unwrap_or(&Value::Null);
            Line::ControlResponse {
                request_id: s(r, "request_id"),
                subtype: s(r, "subtype"),
            }
        }
        other => Line::Other {
            kind: other.to_string(),
        },
    }
}

fn parse_system(v: &Value) -> Line {
    let subtype = s(v, "subtype").unwrap_or_default();
    match subtype.as_str() {
        "init" => Line::Init {
            session_id: s(v, "session_id"),
            model: s(v, "model"),
            cwd: s(v, "cwd"),
        },
        "permission_denied" => Line::PermissionDenied {
            tool_name: s(v, "tool_name").unwrap_or_default(),
            message: s(v, "message").unwrap_or_default(),
        },
        _ => Line::System { subtype },
    }
}

fn parse_assistant(v: &Value) -> Assistant {
    let msg = v.get("message").unwrap_or(&Value::Null);
    let blocks = msg
        .get("content")
        .and_then(Value::as_array)
        .map(|items| {
            items
                .iter()
                .map(
                    |b| match b.get("type").and_then(Value::as_str).unwrap_or("") {
                        "text" => Block::Text(s(b, "text").unwrap_or_default()),
                        "thinking" | "redacted_thinking" => Block::Thinking,
                        "tool_use" | "server_tool_use" => Block::ToolUse {
                            id: s(b, "id").unwrap_or_default(),
                            name: s(b, "name").unwrap_or_default(),
                            input: b.get("input").cloned().unwrap_or(Value::Null),
                        },
                        other => Block::Other(other.to_string()),
                    },
                )
                .collect()
        })
        .unwrap_or_default();
    Assistant {
        message_id: s(msg, "id"),
        blocks,
        error: s(v, "error"),
        parent_tool_use_id: s(v, "parent_tool_use_id"),
    }
}

fn parse_user(v: &Value) -> UserLine {
    let mut out = UserLine::default();
    let content = v.get("message").and_then(|m| m.get("content"));
    match content {
        Some(Value::String(t)) => out.texts.push(t.clone()),
        Some(Value::Array(items)) => {
            for b in items {
                match b.get("type").and_then(Value::as_str) {
                    Some("tool_result") => out.tool_results.push(ToolResult {
                        tool_use_id: s(b, "tool_use_id").unwrap_or_default(),
                        is_error: b.get("is_error").and_then(Value::as_bool).unwrap_or(false),
                        content: text_of(b.get("content").unwrap_or(&Value::Null)),
                    }),
                    Some("text") => out.texts.push(s(b, "text").unwrap_or_default()),
                    _ => {}
                }
            }
        }
        _ => {}
    }
    out
}

fn parse_stream_event(ev: &Value) -> StreamEvent {
    match ev.get("type").and_then(Value::as_str).unwrap_or("") {
        "message_start" => StreamEvent::MessageStart {
            message_id: ev.get("message").and_then(|m| s(m, "id")),
        },
        "content_block_delta" => {
            let d = ev.get("delta").unwrap_or(&Value::Null);
            match d.get("type").and_then(Value::as_str) {
                Some("text_delta") => StreamEvent::TextDelta(s(d, "text").unwrap_or_default()),
                Some(other) => StreamEvent::Other(other.to_string()),
                None => StreamEvent::Other("content_block_delta".into()),
            }
        }
        other => StreamEvent::Other(other.to_string()),
    }
}

fn parse_result(v: &Value) -> ResultLine {
    ResultLine {
        subtype: s(v, "subtype"),
        is_error: v.get("is_error").and_then(Value::as_bool).unwrap_or(false),
        result: s(v, "result"),
        session_id: s(v, "session_id"),
        total_cost_usd: v
            .get("total_cost_usd")
            .or_else(|| v.get("cost_usd"))
            .and_then(Value::as_f64),
        duration_ms: u(v, "duration_ms"),
        duration_api_ms: u(v, "duration_api_ms"),
        num_turns: u(v, "num_turns") as u32,
        usage: v.get("usage").map(usage_snake).unwrap_or_default(),
        model_usage: model_usage_map(v.get("modelUsage")).unwrap_or_default(),
        model_usage_since_last_result: model_usage_map(v.get("model_usage_since_last_result")),
        permission_denials: v
            .get("permission_denials")
            .and_then(Value::as_array)
            .map(|ds| {
                ds.iter()
                    .map(|d| Denial {
                        tool_name: s(d, "tool_name").unwrap_or_default(),
                        tool_use_id: s(d, "tool_use_id"),
                        tool_input: d.get("tool_input").cloned().unwrap_or(Value::Null),
                    })
                    .collect()
            })
            .unwrap_or_default(),
        terminal_reason: s(v, "terminal_reason"),
        stop_reason: s(v, "stop_reason"),
        api_error_status: v.get("api_error_status").and_then(Value::as_i64),
        errors: v
            .get("errors")
            .and_then(Value::as_array)
            .map(|es| {
                es.iter()
                    .map(|e| {
                        e.as_str()
                            .map(str::to_string)
                            .unwrap_or_else(|| e.to_string())
                    })
                    .collect()
            })
            .unwrap_or_default(),
        result_index: v.get("result_index").and_then(Value::as_u64),
    }
}

/// A short human summary of a tool call's input (`Write /x/y.txt`, `Bash echo hi`).
pub fn tool_detail(name: &str, input: &Value) -> String {
    let key = match name {
        "Write" | "Edit" | "Read" | "NotebookEdit" => "file_path",
        "Bash" => "command",
        "Glob" | "Grep" => "pattern",
        "WebFetch" => "url",
        "WebSearch" => "query",
        "Task" | "Agent" => "description",
        _ => "",
    };
    let text = input
        .get(key)
        .and_then(Value::as_str)
        .map(str::to_string)
        .unwrap_or_else(|| match input {
            Value::Null => String::new(),
            other => other.to_string(),
        });
    truncate(&text, 200)
}

/// How a denial is listed on a turn's result: `Write /abs/hello.txt`.
pub fn denial_text(d: &Denial) -> String {
    let detail = tool_detail(&d.tool_name, &d.tool_input);
    if detail.is_empty() {
        d.tool_name.clone()
    } else {
        format!("{} {detail}", d.tool_name)
    }
}

pub fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let mut out: String = s.chars().take(n).collect();
        out.push('…');
        out
    }
}

/// The stdin line that sends a user turn.
pub fn user_message(prompt: &str) -> String {
    let mut line = json!({
        "type": "user",
        "message": {"role": "user", "content": prompt},
        "parent_tool_use_id": null,
    })
    .to_string();
    line.push('\n');
    line
}

/// The stdin line that interrupts the running turn.
pub fn interrupt_request(request_id: &str) -> String {
    let mut line = json!({
        "type": "control_request",
        "request_id": request_id,
        "request": {"subtype": "interrupt"},
    })
    .to_string();
    line.push('\n');
    line
}

/// The answer to a control request from the CLI that workshop does not serve: permission
/// prompts are denied (with `-p` nothing may wait for a human), anything else is an error.
pub fn control_refusal(request_id: &str, subtype: &str) -> String {
    let response = if subtype == "can_use_tool" {
        json!({"subtype": "success", "request_id": request_id,
               "response": {"behavior": "deny", "message": "workshop agents run unattended: no permission prompts; configure allowed_tools or permission_mode"}})
    } else {
        json!({"subtype": "error", "request_id": request_id,
               "error": format!("workshop does not handle control request {subtype:?}")})
    };
    let mut line = json!({"type": "control_response", "response": response}).to_string();
    line.push('\n');
    line
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn fixtures() -> PathBuf {
        if let Ok(dir) = std::env::var("WORKSHOP_CLAUDE_FIXTURES") {
            return PathBuf::from(dir);
        }
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../../../shared/fixtures/claude-cli-2.1.328");
        assert!(
            dir.is_dir(),
            "the claude CLI transcripts are missing at {} (set WORKSHOP_CLAUDE_FIXTURES)",
            dir.display()
        );
        dir
    }

    fn lines(name: &str) -> Vec<Line> {
        let bytes = std::fs::read(fixtures().join(format!("{name}.stdout")))
            .unwrap_or_else(|e| panic!("{name}.stdout: {e}"));
        bytes
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .map(parse_line)
            .collect()
    }

    fn results(ls: &[Line]) -> Vec<&ResultLine> {
        ls.iter()
            .filter_map(|l| match l {
                Line::Result(r) => Some(r.as_ref()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn every_fixture_line_parses_and_no_json_line_is_lost() {
        let mut seen = 0;
        for entry in std::fs::read_dir(fixtures()).expect("fixtures dir") {
            let path = entry.expect("entry").path();
            if path.extension().and_then(|e| e.to_str()) != Some("stdout") {
                continue;
            }
            let bytes = std::fs::read(&path).expect("read");
            for raw in bytes.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
                let is_object = serde_json::from_slice::<Value>(raw)
                    .map(|v| v.get("type").is_some())
                    .unwrap_or(false);
                let parsed = parse_line(raw);
                assert_eq!(
                    is_object,
                    parsed != Line::NotJson,
                    "{}: {}",
                    path.display(),
                    String::from_utf8_lossy(raw)
                );
                seen += 1;
            }
        }
        assert!(seen > 100, "only {seen} lines in the fixtures");
    }

    #[test]
    fn plain_stream_json_turn() {
        let ls = lines("b-stream-json");
        assert!(
            matches!(&ls[0], Line::Init { session_id: Some(_), model: Some(m), .. } if m == "claude-opus-5-5")
        );
        let Line::Assistant(a) = &ls[1] else {
            panic!("{:?}", ls[1])
        };
        assert!(matches!(&a.blocks[..], [Block::Text(t)] if !t.is_empty()));
        let r = results(&ls);
        assert_eq!(r.len(), 1);
        let r = r[0];
        assert_eq!(r.subtype.as_deref(), Some("success"));
        assert!(!r.is_error);
        assert_eq!(r.failure(), None);
        assert_eq!(r.terminal_reason.as_deref(), Some("completed"));
        assert!(r.total_cost_usd.unwrap_or(0.0) > 0.0);
        assert!(r.usage.input_tokens > 0 && r.usage.output_tokens > 0);
        assert_eq!(r.num_turns, 1);
        assert!(r.model_usage.contains_key("claude-opus-5-5"));
    }

    #[test]
    fn partial_messages_give_text_deltas() {
        let ls = lines("b-stream-json-partial");
        let deltas: String = ls
            .iter()
            .filter_map(|l| match l {
                Line::StreamEvent(StreamEvent::TextDelta(t)) => Some(t.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(deltas, "Hello from the fake API, streamed in pieces.");
        assert!(ls.iter().any(|l| matches!(
            l,
            Line::StreamEvent(StreamEvent::MessageStart {
                message_id: Some(_)
            })
        )));
        assert!(ls
            .iter()
            .any(|l| matches!(l, Line::System { subtype } if subtype == "status")));
    }

    #[test]
    fn tool_turn_blocks_and_results() {
        let ls = lines("c-tool-write-acceptEdits");
        let tools: Vec<_> = ls
            .iter()
            .filter_map(|l| match l {
                Line::Assistant(a) => Some(a.blocks.clone()),
                _ => None,
            })
            .flatten()
            .filter_map(|b| match b {
                Block::ToolUse { name, input, .. } => Some(tool_detail(&name, &input)),
                _ => None,
            })
            .collect();
        assert_eq!(tools, vec!["<CWD>/hello.txt".to_string()]);
        let user = ls
            .iter()
            .find_map(|l| match l {
                Line::User(u) => Some(u.clone()),
                _ => None,
            })
            .expect("a user line");
        assert_eq!(user.tool_results.len(), 1);
        assert!(!user.tool_results[0].is_error);
        assert!(user.tool_results[0].content.contains("File created"));
        assert_eq!(results(&ls)[0].num_turns, 2);
    }

    #[test]
    fn permission_denials_are_listed_and_not_an_error() {
        let ls = lines("c-tool-write-dontAsk-noallow");
        assert!(ls.iter().any(
            |l| matches!(l, Line::PermissionDenied { tool_name, .. } if tool_name == "Write")
        ));
        let r = results(&ls)[0];
        assert_eq!(r.failure(), None);
        assert_eq!(r.permission_denials.len(), 1);
        assert_eq!(
            denial_text(&r.permission_denials[0]),
            "Write <CWD>/hello.txt"
        );
    }

    #[test]
    fn api_errors_are_failures_despite_subtype_success() {
        for (name, status, needle) in [
            ("f-err-500-maxretries2", 500, "500 fake api_error"),
            ("f-err-529", 529, "529"),
            ("f-err-429-retry-after", 429, "429"),
            ("f-err-401", 401, "authenticate"),
        ] {
            // one-shot json is a single result object: same parser.
            let r = results(&lines(name))[0].clone();
            assert_eq!(r.subtype.as_deref(), Some("success"), "{name}");
            let msg = r.failure().unwrap_or_else(|| panic!("{name} must fail"));
            assert!(msg.contains(&format!("HTTP {status}")), "{name}: {msg}");
            assert!(msg.contains(needle), "{name}: {msg}");
            assert!(msg.contains("terminal_reason=api_error"), "{name}: {msg}");
        }
        let r = results(&lines("x-conn-refused-maxretries2"))[0].clone();
        let msg = r.failure().expect("conn refused fails");
        assert!(msg.contains("ECONNREFUSED"), "{msg}");
    }

    #[test]
    fn max_turns_is_a_failure() {
        let r = results(&lines("f-max-turns-1"))[0].clone();
        let msg = r.failure().expect("max turns fails");
        assert!(msg.contains("max_turns"), "{msg}");
        assert!(msg.contains("Reached maximum number of turns (1)"), "{msg}");
        assert!(r.total_cost_usd.unwrap_or(0.0) > 0.0);
    }

    #[test]
    fn long_lived_interrupt_and_cumulative_cost() {
        let ls = lines("e-longlived");
        let inits = ls.iter().filter(|l| matches!(l, Line::Init { .. })).count();
        assert_eq!(inits, 4, "init repeats every turn");
        assert!(ls.iter().any(|l| matches!(l,
            Line::ControlResponse { request_id: Some(id), subtype: Some(st) } if id == "r1" && st == "success")));
        let rs = results(&ls);
        assert_eq!(rs.len(), 4);
        let totals: Vec<f64> = rs.iter().map(|r| r.total_cost_usd.unwrap_or(0.0)).collect();
        assert!(
            totals.windows(2).all(|w| w[1] > w[0]),
            "cumulative: {totals:?}"
        );
        // the per-turn hint equals the delta of the cumulative total
        for (i, r) in rs.iter().enumerate().skip(1) {
            let delta = totals[i] - totals[i - 1];
            let hint = r
                .turn_cost_hint()
                .expect("since-last-result in long-lived mode");
            assert!((delta - hint).abs() < 1e-9, "turn {i}: {delta} vs {hint}");
            assert_eq!(r.result_index, Some(i as u64));
        }
        let interrupted = rs[2];
        assert_eq!(
            interrupted.subtype.as_deref(),
            Some("error_during_execution")
        );
        assert_eq!(
            interrupted.terminal_reason.as_deref(),
            Some("aborted_streaming")
        );
        assert!(interrupted.failure().is_some());
        assert_eq!(rs[3].failure(), None);
        // per-turn usage, per-model usage of the turn alone
        assert_eq!(
            rs[1].turn_model_usage()["claude-opus-5-5"]
                .usage
                .input_tokens,
            rs[1].usage.input_tokens
        );
    }

    #[test]
    fn resume_total_is_cumulative_across_processes() {
        let t1 = results(&lines("d-resume-turn1"))[0].clone();
        let t2 = results(&lines("d-resume-turn2"))[0].clone();
        assert_eq!(t1.session_id, t2.session_id);
        assert!(t2.total_cost_usd > t1.total_cost_usd);
    }

    #[test]
    fn tolerant_of_garbage_and_unknown_types() {
        assert_eq!(parse_line(b"[SandboxDebug] hello"), Line::NotJson);
        assert_eq!(parse_line(b""), Line::NotJson);
        assert_eq!(parse_line(b"{\"no_type\":1}"), Line::NotJson);
        assert_eq!(parse_line(b"42"), Line::NotJson);
        assert_eq!(
            parse_line(b"{\"type\":\"brand_new\",\"x\":1}\r\n"),
            Line::Other {
                kind: "brand_new".into()
            }
        );
        assert_eq!(
            parse_line(br#"{"type":"system","subtype":"task_started"}"#),
            Line::System {
                subtype: "task_started".into()
            }
        );
        assert!(matches!(
            parse_line(br#"{"type":"control_request","request_id":"x","request":{"subtype":"can_use_tool"}}"#),
            Line::ControlRequest { subtype, .. } if subtype == "can_use_tool"
        ));
        // a 3 MB line is just a line
        let big = format!(
            r#"{{"type":"assistant","message":{{"id":"m","content":[{{"type":"text","text":"{}"}}]}}}}"#,
            "x".repeat(3 << 20)
        );
        assert!(
            matches!(parse_line(big.as_bytes()), Line::Assistant(a) if matches!(&a.blocks[0], Block::Text(t) if t.len() == 3 << 20))
        );
    }

    #[test]
    fn stdin_lines_are_single_json_lines() {
        let m = user_message("two\nlines \"quoted\"");
        assert!(m.ends_with('\n') && m.matches('\n').count() == 1);
        let v: Value = serde_json::from_str(m.trim_end()).expect("json");
        assert_eq!(v["message"]["content"], "two\nlines \"quoted\"");
        let i: Value = serde_json::from_str(interrupt_request("r7").trim_end()).expect("json");
        assert_eq!(i["request"]["subtype"], "interrupt");
        let d: Value =
            serde_json::from_str(control_refusal("q", "can_use_tool").trim_end()).expect("json");
        assert_eq!(d["response"]["response"]["behavior"], "deny");
    }
}
