//! Workflows, the shared store, schedules, events, budgets and nodes.

use std::time::Duration;

use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{json, Value};
use workshop_types::Topic;
use workshop_workflow::{Source, Stage, Workflow};

use super::agents::{Empty, DEFAULT_WAIT_MS};
use super::render::{self, cut};
use super::{Reply, ToolCtx, ToolError};

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StageArg {
    /// The stage's name, unique in the workflow.
    pub name: String,
    /// The agent (or profile) meant to run it; board workers of its type claim its item.
    pub agent: String,
    /// What the stage does (its item's title and the head of its prompt).
    pub title: String,
    /// Earlier stages whose results feed this one (one name, or several for a fan-in).
    #[serde(default)]
    pub from: Vec<String>,
    /// A file whose content becomes the stage's spec (read when the workflow runs).
    pub file: Option<String>,
    /// The work type of its item (default "custom").
    #[serde(rename = "type")]
    pub work_type: Option<String>,
    /// 1 (highest) to 5 (lowest); default 3.
    pub priority: Option<u8>,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DefineWorkflow {
    /// The workflow's name.
    pub name: String,
    /// Its stages, in any order (the graph comes from `from`).
    pub stages: Vec<StageArg>,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WorkflowArg {
    /// The workflow's name.
    pub name: String,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AwaitWorkflow {
    pub name: String,
    /// How long to wait in milliseconds (default 120000).
    pub timeout_ms: Option<u64>,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Put {
    pub key: String,
    /// Any JSON value.
    pub value: Value,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Key {
    pub key: String,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Every {
    /// The agent that gets the prompt.
    pub agent: String,
    pub prompt: String,
    /// Milliseconds between runs (at least 1).
    pub interval_ms: u64,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ScheduleArg {
    /// The agent whose schedule stops.
    pub agent: String,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Events {
    /// How many of the latest events (default 50, at most 500).
    pub last: Option<u32>,
    /// Only this topic: agent, turn, work, workflow, schedule, store, budget, node, custom.
    pub topic: Option<String>,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BudgetArgs {
    /// One agent's budget instead of the cluster's.
    pub agent: Option<String>,
}

pub async fn define_workflow(ctx: &ToolCtx, p: DefineWorkflow) -> Result<Reply, ToolError> {
    let mut stages = Vec::new();
    for s in p.stages {
        let mut stage = Stage::new(&s.name, &s.agent, &s.title);
        stage.from = match (s.file, s.from.is_empty()) {
            (Some(_), false) => {
                return Err(ToolError::invalid(format!(
                    "define_workflow: stage {} has both `file` and `from`; give one",
                    s.name
                )))
            }
            (Some(f), true) => Source::File(f),
            (None, false) => Source::Stages(s.from),
            (None, true) => Source::None,
        };
        if let Some(t) = s.work_type {
            stage.work_type = t;
        }
        if let Some(pr) = s.priority {
            stage.priority = pr;
        }
        stages.push(stage);
    }
    let wf = Workflow::new(&p.name, stages)
        .map_err(|e| ToolError::invalid(format!("define_workflow: {e}")))?;
    let n = wf.stages.len();
    ctx.client.workflow(wf).await?;
    ctx.record(format!("defined workflow {}", p.name)).await;
    Ok(Reply::new(
        format!(
            "Workflow {} defined ({n} stages). run_workflow starts it.",
            p.name
        ),
        json!({ "workflow": p.name, "stages": n }),
    ))
}

fn stage_line(s: &Stage) -> String {
    let from = match &s.from {
        Source::None => String::new(),
        Source::File(f) => format!(" <- file {f}"),
        Source::Stages(st) => format!(" <- {}", st.join(", ")),
    };
    format!(
        "  {} [{}] by {}: {}{from}",
        s.name,
        s.work_type,
        s.agent,
        cut(&s.title, 80)
    )
}

pub async fn workflows(ctx: &ToolCtx, _: Empty) -> Result<Reply, ToolError> {
    let wfs = ctx.client.workflows().await?;
    let text = if wfs.is_empty() {
        "No workflows.".to_string()
    } else {
        wfs.iter()
            .map(|w| {
                let mut s = format!("{}:", w.name);
                for st in &w.stages {
                    s.push('\n');
                    s.push_str(&stage_line(st));
                }
                s
            })
            .collect::<Vec<_>>()
            .join("\n")
    };
    Ok(Reply::new(text, json!({ "workflows": wfs })))
}

pub async fn run_workflow(ctx: &ToolCtx, p: WorkflowArg) -> Result<Reply, ToolError> {
    let items = ctx.client.run_workflow(&p.name).await?;
    ctx.record(format!("ran workflow {}", p.name)).await;
    let (list, v) = render::items(&items);
    Ok(Reply::new(
        format!(
            "Workflow {} started: {} items.\n{list}",
            p.name,
            items.len()
        ),
        v,
    ))
}

fn run_status(s: workshop_workflow::RunStatus) -> &'static str {
    use workshop_workflow::RunStatus::*;
    match s {
        Defined => "defined",
        Running => "running",
        Completed => "completed",
        Failed => "failed",
    }
}

pub async fn workflow_status(ctx: &ToolCtx, p: WorkflowArg) -> Result<Reply, ToolError> {
    let (status, stages) = ctx.client.workflow_status(&p.name).await?;
    let mut lines = vec![format!("{}: {}", p.name, run_status(status))];
    let mut values = Vec::new();
    for (stage, item) in &stages {
        match item {
            Some(i) => {
                lines.push(format!("  {stage}: {}", i.line()));
                values.push(json!({ "stage": stage, "item": render::item_json(i) }));
            }
            None => {
                lines.push(format!("  {stage}: (no item)"));
                values.push(json!({ "stage": stage, "item": null }));
            }
        }
    }
    Ok(Reply::new(
        lines.join("\n"),
        json!({ "workflow": p.name, "status": run_status(status), "stages": values }),
    ))
}

pub async fn await_workflow(ctx: &ToolCtx, p: AwaitWorkflow) -> Result<Reply, ToolError> {
    let ms = p.timeout_ms.unwrap_or(DEFAULT_WAIT_MS);
    let s = ctx
        .long(
            &format!("await_workflow {}", p.name),
            ctx.client
                .await_workflow(&p.name, Some(Duration::from_millis(ms))),
        )
        .await?;
    Ok(Reply::new(
        format!("Workflow {} {}.", p.name, run_status(s)),
        json!({ "workflow": p.name, "status": run_status(s) }),
    ))
}

pub async fn reset_workflow(ctx: &ToolCtx, p: WorkflowArg) -> Result<Reply, ToolError> {
    ctx.client.reset_workflow(&p.name).await?;
    ctx.record(format!("reset workflow {}", p.name)).await;
    Ok(Reply::done(format!("Workflow {} reset.", p.name)))
}

pub async fn store_put(ctx: &ToolCtx, p: Put) -> Result<Reply, ToolError> {
    ctx.client.put(&p.key, p.value).await?;
    ctx.record(format!("stored {}", p.key)).await;
    Ok(Reply::done(format!("Stored {}.", p.key)))
}

pub async fn store_get(ctx: &ToolCtx, p: Key) -> Result<Reply, ToolError> {
    match ctx.client.get(&p.key).await? {
        Some(v) => Ok(Reply::new(
            v.to_string(),
            json!({ "key": p.key, "value": v }),
        )),
        None => Ok(Reply::new(
            format!("No value stored under {}.", p.key),
            json!({ "key": p.key, "value": null }),
        )),
    }
}

pub async fn store_list(ctx: &ToolCtx, _: Empty) -> Result<Reply, ToolError> {
    let all = ctx.client.store_all().await?;
    let text = if all.is_empty() {
        "The store is empty.".to_string()
    } else {
        all.iter()
            .map(|(k, v)| format!("{k} = {}", cut(&v.to_string(), 200)))
            .collect::<Vec<_>>()
            .join("\n")
    };
    let map: serde_json::Map<String, Value> = all.into_iter().collect();
    Ok(Reply::new(text, json!({ "store": map })))
}

pub async fn store_delete(ctx: &ToolCtx, p: Key) -> Result<Reply, ToolError> {
    ctx.client.store_delete(&p.key).await?;
    ctx.record(format!("deleted {} from the store", p.key))
        .await;
    Ok(Reply::done(format!("Deleted {}.", p.key)))
}

pub async fn schedule(ctx: &ToolCtx, p: Every) -> Result<Reply, ToolError> {
    if p.interval_ms == 0 {
        return Err(ToolError::invalid(
            "schedule: interval_ms must be at least 1".to_string(),
        ));
    }
    ctx.client.every(&p.agent, &p.prompt, p.interval_ms).await?;
    ctx.record(format!("scheduled {} every {} ms", p.agent, p.interval_ms))
        .await;
    Ok(Reply::done(format!(
        "{} gets the prompt every {} ms.",
        p.agent, p.interval_ms
    )))
}

pub async fn cancel_schedule(ctx: &ToolCtx, p: ScheduleArg) -> Result<Reply, ToolError> {
    ctx.client.cancel(&p.agent).await?;
    ctx.record(format!("cancelled {}'s schedule", p.agent))
        .await;
    Ok(Reply::done(format!("{}'s schedule cancelled.", p.agent)))
}

pub async fn schedules(ctx: &ToolCtx, _: Empty) -> Result<Reply, ToolError> {
    let ss = ctx.client.schedules().await?;
    let text = if ss.is_empty() {
        "No schedules.".to_string()
    } else {
        ss.iter()
            .map(|s| {
                format!(
                    "{} every {} ms: {} ({} runs, {} skipped){}",
                    s.spec.agent,
                    s.spec.interval_ms,
                    cut(&s.spec.prompt, 80),
                    s.run_count,
                    s.skipped,
                    s.crashed
                        .as_deref()
                        .map(|c| format!(", CRASHED: {c}"))
                        .unwrap_or_default()
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    };
    Ok(Reply::new(text, json!({ "schedules": ss })))
}

pub async fn events(ctx: &ToolCtx, p: Events) -> Result<Reply, ToolError> {
    let topic = match p.topic.as_deref() {
        None => None,
        Some(t) => Some(Topic::parse(t).ok_or_else(|| {
            ToolError::invalid(format!(
                "events: unknown topic {t:?}; use agent, turn, work, workflow, schedule, store, budget, node or custom"
            ))
        })?),
    };
    let last = p.last.unwrap_or(50).min(500) as usize;
    let evs = ctx.client.cluster_events(last, topic).await?;
    let text = if evs.is_empty() {
        "No events.".to_string()
    } else {
        evs.iter()
            .map(|e| {
                format!(
                    "[{}] {} {}: {}",
                    e.node,
                    e.event.topic.as_str(),
                    e.event.kind,
                    e.event.line
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    };
    let values: Vec<Value> = evs
        .iter()
        .map(|e| {
            json!({
                "node": e.node,
                "seq": e.event.seq,
                "at_ms": e.event.at_ms,
                "topic": e.event.topic.as_str(),
                "kind": e.event.kind,
                "subject": e.event.subject,
                "line": e.event.line,
            })
        })
        .collect();
    Ok(Reply::new(text, json!({ "events": values })))
}

pub async fn budget(ctx: &ToolCtx, p: BudgetArgs) -> Result<Reply, ToolError> {
    let (who, b) = match &p.agent {
        Some(a) => (a.clone(), ctx.client.agent_budget(a).await?),
        None => ("the cluster".to_string(), ctx.client.budget().await?),
    };
    let text = match (b.limit, b.remaining()) {
        (Some(l), Some(r)) => format!("{who}: spent ${:.4} of ${l:.4} (${r:.4} left).", b.spent),
        _ => format!("{who}: spent ${:.4}, no limit.", b.spent),
    };
    Ok(Reply::new(
        text,
        json!({ "who": who, "limit_usd": b.limit, "spent_usd": b.spent, "remaining_usd": b.remaining() }),
    ))
}

pub async fn nodes(ctx: &ToolCtx, _: Empty) -> Result<Reply, ToolError> {
    let ns = ctx.client.nodes().await?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    let text = ns
        .iter()
        .map(|n| {
            let mut s = format!(
                "{}{}: {} at {} | {} agents, {} workers",
                n.name,
                if n.this { " (this node)" } else { "" },
                if n.up { "up" } else { "DOWN" },
                n.addr.as_deref().unwrap_or("?"),
                n.agents,
                n.workers
            );
            if let Some(t) = n.started_at_ms {
                s.push_str(&format!(" | up {} s", now.saturating_sub(t) / 1000));
            }
            if n.board {
                s.push_str(" | holds the board");
            }
            s
        })
        .collect::<Vec<_>>()
        .join("\n");
    Ok(Reply::new(text, json!({ "nodes": ns })))
}
