//! The shared work board: add, list, claim, settle, await, board workers.

use std::collections::BTreeMap;
use std::time::Duration;

use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use workshop_node::{WorkOptions, WorkerOptions};
use workshop_types::board::SettleBy;

use super::agents::{options, Empty, DEFAULT_WAIT_MS};
use super::render;
use super::{Reply, ToolCtx, ToolError};

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AddWork {
    /// A unique id (letters, digits, '_', '-', '.', '/').
    pub id: String,
    /// A short title.
    pub title: String,
    /// The work type board workers claim by (default "custom").
    #[serde(rename = "type")]
    pub work_type: Option<String>,
    /// What to do, in full: the prompt the worker gets.
    pub spec: Option<String>,
    /// 1 (highest) to 5 (lowest); default 3.
    pub priority: Option<u8>,
    /// Ids of items that must be done first.
    #[serde(default)]
    pub depends_on: Vec<String>,
    /// How many failed attempts before the item fails for good.
    pub max_attempts: Option<u32>,
    /// Free-form string labels kept with the item.
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BoardArgs {
    /// Only items of this status: new, ready, claimed, in_progress, done, failed, blocked,
    /// cancelled.
    pub status: Option<String>,
    /// Only items of this work type.
    #[serde(rename = "type")]
    pub work_type: Option<String>,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct IdArg {
    /// The work item's id.
    pub id: String,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Claim {
    pub id: String,
    /// Who claims it (an agent's name).
    pub agent: String,
    /// How long the claim lasts unless the item is settled, in milliseconds (default 30
    /// minutes; 1 s to 24 h).
    pub lease_ms: Option<u64>,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Complete {
    pub id: String,
    /// The item's result.
    pub result: Option<String>,
    /// The lease token claim_work answered: settles the item as its holder.
    pub token: Option<u64>,
    /// Take the item from whoever holds it, without its token (logged; a board worker holding
    /// it loses it and its turn is interrupted).
    pub force: Option<bool>,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Fail {
    pub id: String,
    /// Why it failed.
    pub error: Option<String>,
    /// The lease token claim_work answered: settles the item as its holder.
    pub token: Option<u64>,
    /// Take the item from whoever holds it, without its token (logged; a board worker holding
    /// it loses it and its turn is interrupted).
    pub force: Option<bool>,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AwaitWork {
    pub id: String,
    /// How long to wait in milliseconds (default 120000).
    pub timeout_ms: Option<u64>,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FromResult {
    /// The agent whose last result becomes the spec.
    pub agent: String,
    /// The new item's id.
    pub id: String,
    pub title: Option<String>,
    #[serde(rename = "type")]
    pub work_type: Option<String>,
    pub priority: Option<u8>,
    #[serde(default)]
    pub depends_on: Vec<String>,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Worker {
    /// The worker agent's name.
    pub name: String,
    /// The work type it claims.
    #[serde(rename = "type")]
    pub work_type: String,
    /// Start its agent from this profile.
    pub profile: Option<String>,
    /// How long to wait between empty looks at the board, in milliseconds.
    pub interval_ms: Option<u64>,
    /// Run each item in its own git worktree and branch.
    #[serde(default)]
    pub worktree: bool,
    /// How long a claim lasts without a heartbeat, in milliseconds.
    pub lease_ms: Option<u64>,
    /// Agent options of the worker's agent, by name.
    pub options: Option<Map<String, Value>>,
}

fn item_reply(text: String, i: &workshop_types::board::WorkItem) -> Reply {
    Reply::new(text, render::item_json(i))
}

pub async fn add_work(ctx: &ToolCtx, p: AddWork) -> Result<Reply, ToolError> {
    let o = WorkOptions {
        work_type: p.work_type,
        spec: p.spec,
        priority: p.priority,
        depends_on: p.depends_on,
        max_attempts: p.max_attempts,
        title: None,
        metadata: p.metadata,
    };
    let item = ctx.client.work(&p.id, &p.title, o).await?;
    ctx.record(format!("added work item {}", item.id)).await;
    Ok(item_reply(format!("Work item {} added.", item.id), &item))
}

pub async fn board(ctx: &ToolCtx, p: BoardArgs) -> Result<Reply, ToolError> {
    let items = ctx
        .client
        .board(p.status.as_deref(), p.work_type.as_deref())
        .await?;
    let (text, v) = render::items(&items);
    Ok(Reply::new(text, v))
}

pub async fn work_item(ctx: &ToolCtx, p: IdArg) -> Result<Reply, ToolError> {
    match ctx.client.work_item(&p.id).await? {
        Some(mut i) => {
            // A result stored in parts is read whole.
            if i.result_parts().is_some() {
                if let Some(full) = ctx.client.work_result(&p.id).await? {
                    i.result = Some(full);
                }
            }
            Ok(item_reply(render::item_text(&i), &i))
        }
        None => Err(ToolError::new(
            "no_such_item",
            format!("no work item {}: the board tool lists them", p.id),
        )),
    }
}

pub async fn claim_work(ctx: &ToolCtx, p: Claim) -> Result<Reply, ToolError> {
    let i = ctx
        .client
        .claim_work_for(&p.id, &p.agent, p.lease_ms)
        .await?;
    ctx.record(format!("claimed {} for {}", p.id, p.agent))
        .await;
    let token = i
        .token()
        .map(|t| format!(" Lease token {t}: pass it as token to complete_work or fail_work."))
        .unwrap_or_default();
    Ok(item_reply(
        format!("{} claimed {}.{token}", p.agent, p.id),
        &i,
    ))
}

pub async fn start_work(ctx: &ToolCtx, p: IdArg) -> Result<Reply, ToolError> {
    let i = ctx.client.start_work(&p.id).await?;
    ctx.record(format!("started {}", p.id)).await;
    Ok(item_reply(format!("{} in progress.", p.id), &i))
}

pub async fn complete_work(ctx: &ToolCtx, p: Complete) -> Result<Reply, ToolError> {
    let by = settle_by(p.token, p.force);
    let i = ctx.client.complete_work(&p.id, p.result, by).await?;
    ctx.record(format!("completed {}{}", p.id, forced(by)))
        .await;
    Ok(item_reply(format!("{} completed.", p.id), &i))
}

pub async fn fail_work(ctx: &ToolCtx, p: Fail) -> Result<Reply, ToolError> {
    let by = settle_by(p.token, p.force);
    let i = ctx.client.fail_work(&p.id, p.error, by).await?;
    ctx.record(format!("failed {}{}", p.id, forced(by))).await;
    let text = if i.status.as_str() == "failed" {
        format!("{} marked as failed.", p.id)
    } else {
        format!(
            "{} failed attempt {}/{}; it will be retried ({}).",
            p.id, i.attempts, i.max_attempts, i.status
        )
    };
    Ok(item_reply(text, &i))
}

/// A token settles as the holder; force only without one.
fn settle_by(token: Option<u64>, force: Option<bool>) -> Option<SettleBy> {
    match (token, force) {
        (Some(t), _) => Some(SettleBy::Token(t)),
        (None, Some(true)) => Some(SettleBy::Force),
        _ => None,
    }
}

fn forced(by: Option<SettleBy>) -> &'static str {
    if by == Some(SettleBy::Force) {
        " by force"
    } else {
        ""
    }
}

pub async fn cancel_work(ctx: &ToolCtx, p: IdArg) -> Result<Reply, ToolError> {
    let i = ctx.client.cancel_work(&p.id).await?;
    ctx.record(format!("cancelled {}", p.id)).await;
    Ok(item_reply(format!("{} cancelled.", p.id), &i))
}

pub async fn await_work(ctx: &ToolCtx, p: AwaitWork) -> Result<Reply, ToolError> {
    let ms = p.timeout_ms.unwrap_or(DEFAULT_WAIT_MS);
    let i = ctx
        .long(
            &format!("await_work {}", p.id),
            ctx.client
                .await_work(&p.id, Some(Duration::from_millis(ms))),
        )
        .await?;
    Ok(item_reply(render::item_text(&i), &i))
}

pub async fn work_from_result(ctx: &ToolCtx, p: FromResult) -> Result<Reply, ToolError> {
    let o = WorkOptions {
        work_type: p.work_type,
        priority: p.priority,
        depends_on: p.depends_on,
        title: p.title,
        ..WorkOptions::default()
    };
    let i = ctx.client.work_from_result(&p.agent, &p.id, o).await?;
    ctx.record(format!(
        "added work item {} from {}'s result",
        i.id, p.agent
    ))
    .await;
    Ok(item_reply(
        format!("Work item {} added from {}'s result.", i.id, p.agent),
        &i,
    ))
}

pub async fn board_worker(ctx: &ToolCtx, p: Worker) -> Result<Reply, ToolError> {
    ctx.not_self(&p.name, "replace")?;
    let o = WorkerOptions {
        profile: p.profile,
        options: options("board_worker", vec![], p.options)?,
        interval_ms: p.interval_ms,
        worktree: p.worktree,
        lease_ms: p.lease_ms,
    };
    let name = ctx.client.board_worker(&p.name, &p.work_type, o).await?;
    ctx.record(format!("started board worker {name} ({})", p.work_type))
        .await;
    Ok(Reply::new(
        format!("Board worker {name} started for {} items.", p.work_type),
        json!({ "worker": name.as_str(), "type": p.work_type }),
    ))
}

pub async fn workers(ctx: &ToolCtx, _: Empty) -> Result<Reply, ToolError> {
    let ws = ctx.client.workers().await?;
    let text = if ws.is_empty() {
        "No board workers.".to_string()
    } else {
        ws.iter()
            .map(|w| {
                let mut s = format!(
                    "{} [{}]: {} completed, {} failed",
                    w.name, w.work_type, w.completed, w.failed
                );
                if let Some(c) = &w.current_item {
                    s.push_str(&format!(", working on {c}"));
                }
                if let Some(c) = &w.crashed {
                    s.push_str(&format!(", CRASHED: {c}"));
                }
                s
            })
            .collect::<Vec<_>>()
            .join("\n")
    };
    Ok(Reply::new(text, json!({ "workers": ws })))
}
