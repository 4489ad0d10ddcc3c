//! How results look on a terminal, as AgentWorkshop prints them. Pure string formatting.

use workshop_node::ApiError;
use workshop_types::{AgentInfo, AgentName, AgentRow, AgentStatus, PollState, TurnResult};

const TASK_WIDTH: usize = 36;

fn clip(s: &str, n: usize) -> String {
    let line = s.lines().next().unwrap_or("");
    if line.chars().count() > n {
        let cut: String = line.chars().take(n.saturating_sub(4)).collect();
        format!("{cut} ...")
    } else {
        line.to_string()
    }
}

/// `agent | status | task | cost | turns`, with `working +N` when requests are queued.
pub fn status_table(rows: &[AgentRow]) -> String {
    if rows.is_empty() {
        return "No agents.\n".to_string();
    }
    let name_w = rows
        .iter()
        .map(|r| r.name.as_str().len())
        .max()
        .unwrap_or(5)
        .max(5);
    let status = |r: &AgentRow| match (r.status, r.queued) {
        (AgentStatus::Working, q) if q > 0 => format!("working +{q}"),
        (AgentStatus::Halted, q) if q > 0 => format!("halted +{q}"),
        (s, _) => s.to_string(),
    };
    let status_w = rows
        .iter()
        .map(|r| status(r).len())
        .max()
        .unwrap_or(6)
        .max(7);
    let cost_w = rows
        .iter()
        .map(|r| format!("${:.2}", r.cost_usd).len())
        .max()
        .unwrap_or(5)
        .max(5);
    let mut out = format!(
        "{:<name_w$} | {:<status_w$} | {:<TASK_WIDTH$} | {:<cost_w$} | turns\n",
        "agent", "status", "task", "cost"
    );
    out.push_str(&format!(
        "{}-+-{}-+-{}-+-{}-+------\n",
        "-".repeat(name_w),
        "-".repeat(status_w),
        "-".repeat(TASK_WIDTH),
        "-".repeat(cost_w)
    ));
    for r in rows {
        out.push_str(&format!(
            "{:<name_w$} | {:<status_w$} | {:<TASK_WIDTH$} | {:<cost_w$} | {}\n",
            r.name.as_str(),
            status(r),
            clip(r.task.as_deref().unwrap_or(""), TASK_WIDTH),
            format!("${:.2}", r.cost_usd),
            r.turns
        ));
    }
    out
}

/// The result of a turn, as `ask` and `await` print it.
pub fn turn(agent: &AgentName, r: &TurnResult) -> String {
    format!(
        "── {agent} (${:.4}, {} ms) ──\n{}\n",
        r.cost_usd, r.duration_ms, r.text
    )
}

pub fn costs(items: &[(AgentName, f64)], total: f64) -> String {
    let mut out = String::new();
    for (n, c) in items {
        out.push_str(&format!("{n}: ${c:.4}\n"));
    }
    out.push_str(&format!("Total: ${total:.4}\n"));
    out
}

pub fn info(i: &AgentInfo) -> String {
    let mut out = format!(
        "name: {}\nstatus: {}\nbackend: {}\n",
        i.name, i.status, i.backend
    );
    let opt = |k: &str, v: &Option<String>| {
        v.as_ref()
            .map(|v| format!("{k}: {v}\n"))
            .unwrap_or_default()
    };
    out.push_str(&opt("model", &i.model));
    out.push_str(&opt("session_id", &i.session_id));
    out.push_str(&opt("role", &i.role));
    out.push_str(&format!(
        "permission_mode: {}\ncost: ${:.4}\nturns: {}\nqueue: {}/{}\n",
        i.permission_mode, i.cost_usd, i.turns, i.queue_depth, i.queue_capacity
    ));
    if let Some(m) = i.max_turns {
        out.push_str(&format!("max_turns: {m}\n"));
    }
    if !i.allowed_tools.is_empty() {
        out.push_str(&format!("allowed_tools: {}\n", i.allowed_tools.join(", ")));
    }
    out.push_str(&opt("task", &i.task));
    out
}

pub fn poll(state: &PollState) -> String {
    match state {
        PollState::Pending => "pending".into(),
        PollState::Completed(r) => format!("completed: {}", clip(&r.text, 60)),
        PollState::Failed(e) => format!("failed: {e}"),
        PollState::NotFound => "not found".into(),
    }
}

pub fn error(e: &ApiError) -> String {
    format!("error: {e}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(
        name: &str,
        status: AgentStatus,
        task: Option<&str>,
        queued: u32,
        cost: f64,
        turns: u32,
    ) -> AgentRow {
        AgentRow {
            name: AgentName::new(name).expect("name"),
            status,
            task: task.map(str::to_string),
            queued,
            cost_usd: cost,
            turns,
            session_id: None,
        }
    }

    #[test]
    fn status_table_matches_agentworkshop_layout() {
        let t = status_table(&[
            row(
                "impl",
                AgentStatus::Working,
                Some("Implement the caching layer from the spec in docs"),
                2,
                0.08,
                3,
            ),
            row("reviewer", AgentStatus::Idle, None, 0, 0.0, 0),
        ]);
        let lines: Vec<&str> = t.lines().collect();
        assert!(lines[0].starts_with("agent    | status     | task"));
        assert!(lines[1].starts_with("---------+-"));
        assert!(lines[2].contains("working +2"));
        assert!(lines[2].contains("Implement the caching layer from ..."));
        assert!(lines[2].ends_with("| $0.08 | 3"));
        assert!(lines[3].starts_with("reviewer | idle"));
        assert_eq!(status_table(&[]), "No agents.\n");
    }

    #[test]
    fn costs_itemised_then_total() {
        let a = AgentName::new("a").expect("name");
        assert_eq!(costs(&[(a, 0.02)], 0.02), "a: $0.0200\nTotal: $0.0200\n");
    }
}
