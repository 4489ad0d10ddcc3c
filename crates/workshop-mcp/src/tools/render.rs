//! Replies as text a model reads well, and as JSON with one spelling of every status (the
//! lowercase one the README documents).

use serde_json::{json, Value};
use workshop_proto::api::{AwaitOutcome, NodeAgents};
use workshop_types::board::WorkItem;
use workshop_types::{AgentRow, TurnError, TurnResult};

pub fn cut(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let head: String = s.chars().take(n).collect();
        format!("{head}… ({} chars)", s.chars().count())
    }
}

pub fn turn_json(t: &TurnResult) -> Value {
    json!({
        "text": t.text,
        "cost_usd": t.cost_usd,
        "duration_ms": t.duration_ms,
        "num_turns": t.num_turns,
        "is_error": t.is_error,
        "session_id": t.session_id,
        "prompt": t.prompt,
        "input_tokens": t.usage.input_tokens,
        "output_tokens": t.usage.output_tokens,
    })
}

pub fn turn_text(t: &TurnResult) -> String {
    if t.text.trim().is_empty() {
        "(no response)".to_string()
    } else {
        t.text.clone()
    }
}

pub fn error_json(e: &TurnError) -> Value {
    json!({ "error": e.to_string() })
}

pub fn row_json(node: Option<&str>, r: &AgentRow) -> Value {
    json!({
        "name": r.name.as_str(),
        "status": r.status.to_string(),
        "task": r.task,
        "queued": r.queued,
        "cost_usd": r.cost_usd,
        "turns": r.turns,
        "session_id": r.session_id,
        "node": node,
    })
}

pub fn row_text(node: Option<&str>, r: &AgentRow) -> String {
    let mut s = format!(
        "{}: {} | ${:.4} | {} turns",
        r.name, r.status, r.cost_usd, r.turns
    );
    if let Some(t) = &r.task {
        s.push_str(&format!(" | task: {}", cut(t, 80)));
    }
    if r.queued > 0 {
        s.push_str(&format!(" | {} queued", r.queued));
    }
    if let Some(n) = node {
        s.push_str(&format!(" | node {n}"));
    }
    s
}

pub fn status(nodes: &[NodeAgents]) -> (String, Value) {
    let mut lines = Vec::new();
    let mut rows = Vec::new();
    let several = nodes.len() > 1;
    for n in nodes {
        let node = several.then_some(n.node.as_str());
        for r in &n.rows {
            lines.push(row_text(node, r));
            rows.push(row_json(Some(&n.node), r));
        }
        if let Some(e) = &n.error {
            lines.push(format!("(node {}: agents unknown: {e})", n.node));
        }
    }
    if lines.is_empty() {
        lines.push("No agents.".to_string());
    }
    (lines.join("\n"), json!({ "agents": rows }))
}

pub fn item_json(i: &WorkItem) -> Value {
    json!({
        "id": i.id.as_str(),
        "title": i.title,
        "type": i.work_type.to_string(),
        "status": i.status.as_str(),
        "priority": i.priority,
        "depends_on": i.depends_on.iter().map(|d| d.as_str()).collect::<Vec<_>>(),
        "claimed_by": i.claimed_by,
        "lease_expires_at_ms": i.lease.as_ref().map(|l| l.expires_at_ms),
        "lease_token": i.token(),
        "spec": i.spec,
        "result": i.result,
        "error": i.error,
        "attempts": i.attempts,
        "max_attempts": i.max_attempts,
        "metadata": i.metadata,
    })
}

/// An item in full.
pub fn item_text(i: &WorkItem) -> String {
    let mut s = i.line();
    s.push_str(&format!(
        "\npriority {} | attempts {}/{}",
        i.priority, i.attempts, i.max_attempts
    ));
    if let Some(l) = &i.lease {
        s.push_str(&format!(
            " | lease held by {} until {} ms",
            l.holder, l.expires_at_ms
        ));
    }
    if !i.spec.is_empty() {
        s.push_str(&format!("\nspec:\n{}", i.spec));
    }
    if let Some(r) = &i.result {
        s.push_str(&format!("\nresult:\n{r}"));
    }
    s
}

pub fn items(items: &[WorkItem]) -> (String, Value) {
    let text = if items.is_empty() {
        "Board is empty.".to_string()
    } else {
        items
            .iter()
            .map(WorkItem::line)
            .collect::<Vec<_>>()
            .join("\n")
    };
    (
        text,
        json!({ "items": items.iter().map(item_json).collect::<Vec<_>>() }),
    )
}

/// One agent's await outcome: `## name` and its last result.
pub fn outcome(o: &AwaitOutcome) -> (String, Value) {
    let (body, last) = match &o.last {
        None => ("(no result)".to_string(), Value::Null),
        Some(Ok(t)) => (turn_text(t), turn_json(t)),
        Some(Err(e)) => (format!("(failed: {e})"), error_json(e)),
    };
    let state = if o.status.to_string() == "working" {
        " (still working)"
    } else {
        ""
    };
    (
        format!("## {}{state}\n{body}", o.agent),
        json!({
            "agent": o.agent.as_str(),
            "status": o.status.to_string(),
            "was_idle": o.was_idle,
            "last": last,
        }),
    )
}
