//! Configuration and agents: configure, profiles, create, ask/cast/await, pipe, fan, control.

use std::time::Duration;

use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use workshop_proto::ApiError;
use workshop_types::{AgentOptions, PollState};

use super::render::{self, cut};
use super::{Reply, ToolCtx, ToolError};

/// Default wait of await/await_all/await_work/await_workflow, as AgentWorkshop's.
pub const DEFAULT_WAIT_MS: u64 = 120_000;

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Empty {}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AgentArg {
    /// The agent's name.
    pub agent: String,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Configure {
    /// Default model for agents created afterwards (e.g. "sonnet", "opus", "haiku").
    pub model: Option<String>,
    /// Shared context prepended to every agent's system prompt.
    pub context: Option<String>,
    /// Default permission mode: default, accept_edits, bypass_permissions, dont_ask, plan, auto.
    pub permission_mode: Option<String>,
    /// The fleet's spending limit in USD (operators only).
    pub max_cost_usd: Option<f64>,
    /// Any other default agent option by name (backend, max_turns, allowed_tools, working_dir,
    /// timeout_ms, ...).
    pub options: Option<Map<String, Value>>,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DefineProfile {
    /// The profile's name.
    pub name: String,
    /// The role: the system prompt of agents started from it.
    pub role: Option<String>,
    pub model: Option<String>,
    /// "claude" (Claude Code) or "script" (a scripted test backend).
    pub backend: Option<String>,
    /// Any other agent option by name.
    pub options: Option<Map<String, Value>>,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateAgent {
    /// A name of letters, digits, '_' or '-', unique in the cluster.
    pub name: String,
    /// What the agent is for: its system prompt (e.g. "You review Rust code for bugs").
    pub role: Option<String>,
    /// Model (e.g. "sonnet", "opus", "haiku"); default: the fleet's.
    pub model: Option<String>,
    /// "claude" (Claude Code) or "script" (a scripted test backend); default: the fleet's.
    pub backend: Option<String>,
    /// At most this many model turns per prompt.
    pub max_turns: Option<u32>,
    /// default, accept_edits, bypass_permissions, dont_ask, plan or auto.
    pub permission_mode: Option<String>,
    /// Tools the agent may use without asking (e.g. ["Read", "Edit", "Bash(git:*)"]).
    pub allowed_tools: Option<Vec<String>>,
    /// The directory the agent works in (absolute).
    pub working_dir: Option<String>,
    /// This agent's own spending limit in USD.
    pub max_cost_usd: Option<f64>,
    /// The node to run it on (the nodes tool lists them); default: the node this server runs
    /// on.
    pub node: Option<String>,
    /// Any other agent option by name (disallowed_tools, timeout_ms, queue_depth, env,
    /// workshop_tools, ...).
    pub options: Option<Map<String, Value>>,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FromProfile {
    /// A profile defined with define_profile.
    pub profile: String,
    /// The new agent's name.
    pub name: String,
    /// Options that override the profile's, by name.
    pub options: Option<Map<String, Value>>,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct History {
    pub agent: String,
    /// How many of the latest turns (default 10).
    pub last: Option<u32>,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Ask {
    /// The agent to send the prompt to.
    pub agent: String,
    /// The prompt.
    pub prompt: String,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Poll {
    /// The reference cast returned (agent#n).
    pub reference: String,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Await {
    pub agent: String,
    /// How long to wait in milliseconds (default 120000; 0 only checks).
    pub timeout_ms: Option<u64>,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AwaitAll {
    /// How long to wait in milliseconds (default 120000; 0 only checks).
    pub timeout_ms: Option<u64>,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Pipe {
    /// The agent whose last result is sent.
    pub from: String,
    /// The agent that receives it.
    pub to: String,
    /// Text put before the result (e.g. "Review this:").
    pub message: Option<String>,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Fan {
    /// The prompt every agent gets.
    pub message: String,
    /// The agents to send it to.
    pub agents: Vec<String>,
}

/// Agent options from the named fields and the free-form `options` object (named fields win).
pub fn options(
    tool: &str,
    named: Vec<(&str, Option<Value>)>,
    extra: Option<Map<String, Value>>,
) -> Result<AgentOptions, ToolError> {
    let mut map = extra.unwrap_or_default();
    for (k, v) in named {
        if let Some(v) = v {
            map.insert(k.to_string(), v);
        }
    }
    check_numbers(tool, &map)?;
    let o: AgentOptions = serde_json::from_value(Value::Object(map))
        .map_err(|e| ToolError::invalid(format!("{tool}: invalid agent options: {e}")))?;
    o.validate()
        .map_err(|e| ToolError::from(ApiError::from(e)))?;
    Ok(o)
}

/// The numbers rule (`workshop_types::numbers`) on an options object before decoding, so a
/// negative or fractional count is refused naming its option (decoding names only the type).
fn check_numbers(tool: &str, map: &Map<String, Value>) -> Result<(), ToolError> {
    use workshop_types::numbers;
    let bad =
        |e: workshop_types::OptionError| ToolError::new("invalid_option", format!("{tool}: {e}"));
    for (name, min, max) in AgentOptions::WHOLE {
        match map.get(*name) {
            None | Some(Value::Null) => {}
            Some(Value::Number(n)) if n.as_u64().is_some() || n.as_i64().is_some() => {
                let v = n.as_i64().unwrap_or(i64::MAX);
                numbers::whole(name, v, *min, *max).map_err(bad)?;
            }
            Some(v) => {
                return Err(ToolError::new(
                    "invalid_option",
                    format!(
                        "{tool}: {name} must be {}, got {v}",
                        numbers::whole_range(*min, *max)
                    ),
                ))
            }
        }
    }
    for name in AgentOptions::AMOUNTS {
        match map.get(*name) {
            None | Some(Value::Null) => {}
            Some(Value::Number(n)) => {
                numbers::amount(name, n.as_f64().unwrap_or(f64::NAN)).map_err(bad)?;
            }
            Some(v) => {
                return Err(ToolError::new(
                    "invalid_option",
                    format!("{tool}: {name} must be a finite number, 0 or more, got {v}"),
                ))
            }
        }
    }
    Ok(())
}

fn opt<T: serde::Serialize>(v: &Option<T>) -> Option<Value> {
    v.as_ref().and_then(|v| serde_json::to_value(v).ok())
}

fn wait(ms: Option<u64>) -> Duration {
    Duration::from_millis(ms.unwrap_or(DEFAULT_WAIT_MS))
}

pub async fn configure(ctx: &ToolCtx, p: Configure) -> Result<Reply, ToolError> {
    let o = options(
        "configure",
        vec![
            ("model", opt(&p.model)),
            ("permission_mode", opt(&p.permission_mode)),
        ],
        p.options,
    )?;
    if ctx.caller.agent().is_some()
        && (p.max_cost_usd.is_some() || o.max_cost_usd.is_some() || o.max_budget_usd.is_some())
    {
        return Err(ToolError::refused(
            "an agent cannot change budgets (max_cost_usd, max_budget_usd): ask the operator"
                .to_string(),
        ));
    }
    ctx.client
        .configure(p.context.clone(), o, p.max_cost_usd)
        .await?;
    ctx.record("configured the fleet's defaults".to_string())
        .await;
    Ok(Reply::done("Configured."))
}

pub async fn define_profile(ctx: &ToolCtx, p: DefineProfile) -> Result<Reply, ToolError> {
    let o = options(
        "define_profile",
        vec![("model", opt(&p.model)), ("backend", opt(&p.backend))],
        p.options,
    )?;
    ctx.client.profile(&p.name, p.role, o).await?;
    ctx.record(format!("defined profile {}", p.name)).await;
    Ok(Reply::done(format!("Profile {} defined.", p.name)))
}

pub async fn profiles(ctx: &ToolCtx, _: Empty) -> Result<Reply, ToolError> {
    let ps = ctx.client.profiles().await?;
    let text = if ps.is_empty() {
        "No profiles.".to_string()
    } else {
        ps.iter()
            .map(|p| {
                format!(
                    "{}: {} | {}",
                    p.name,
                    p.role.as_deref().map(|r| cut(r, 80)).unwrap_or_default(),
                    serde_json::to_string(&p.options).unwrap_or_default()
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    };
    Ok(Reply::new(text, json!({ "profiles": ps })))
}

pub async fn create_agent(ctx: &ToolCtx, p: CreateAgent) -> Result<Reply, ToolError> {
    ctx.not_self(&p.name, "replace")?;
    let o = options(
        "create_agent",
        vec![
            ("model", opt(&p.model)),
            ("backend", opt(&p.backend)),
            ("max_turns", opt(&p.max_turns)),
            ("permission_mode", opt(&p.permission_mode)),
            ("allowed_tools", opt(&p.allowed_tools)),
            ("working_dir", opt(&p.working_dir)),
            ("max_cost_usd", opt(&p.max_cost_usd)),
        ],
        p.options,
    )?;
    let (name, on) = match &p.node {
        None => (ctx.client.agent(&p.name, p.role, o).await?, String::new()),
        Some(node) => (
            ctx.client.agent_on(node, &p.name, p.role, o).await?,
            format!(" on {node}"),
        ),
    };
    ctx.record(format!("created agent {name}{on}")).await;
    Ok(Reply::new(
        format!("Agent {name} created{on}."),
        json!({ "agent": name.as_str(), "node": p.node }),
    ))
}

pub async fn from_profile(ctx: &ToolCtx, p: FromProfile) -> Result<Reply, ToolError> {
    ctx.not_self(&p.name, "replace")?;
    let o = options("from_profile", vec![], p.options)?;
    let name = ctx.client.from_profile(&p.profile, &p.name, o).await?;
    ctx.record(format!("created agent {name} from profile {}", p.profile))
        .await;
    Ok(Reply::new(
        format!("Agent {name} created from profile {}.", p.profile),
        json!({ "agent": name.as_str(), "profile": p.profile }),
    ))
}

pub async fn agents(ctx: &ToolCtx, _: Empty) -> Result<Reply, ToolError> {
    let names = ctx.client.agents().await?;
    let list: Vec<&str> = names.iter().map(|n| n.as_str()).collect();
    let text = if list.is_empty() {
        "No agents.".to_string()
    } else {
        list.join(", ")
    };
    Ok(Reply::new(text, json!({ "agents": list })))
}

pub async fn status(ctx: &ToolCtx, _: Empty) -> Result<Reply, ToolError> {
    let nodes = ctx.client.cluster_status().await?;
    let (text, structured) = render::status(&nodes);
    Ok(Reply::new(text, structured))
}

pub async fn info(ctx: &ToolCtx, p: AgentArg) -> Result<Reply, ToolError> {
    let i = ctx.client.info(&p.agent).await?;
    let mut v = serde_json::to_value(&i).unwrap_or(Value::Null);
    if let Some(o) = v.as_object_mut() {
        o.insert("status".into(), json!(i.status.to_string()));
    }
    let text = serde_json::to_string_pretty(&v).unwrap_or_default();
    Ok(Reply::new(text, v))
}

pub async fn result(ctx: &ToolCtx, p: AgentArg) -> Result<Reply, ToolError> {
    match ctx.client.result(&p.agent).await? {
        Some(t) => Ok(Reply::new(render::turn_text(&t), render::turn_json(&t))),
        None => Ok(Reply::new("(no result)", json!({ "text": null }))),
    }
}

pub async fn history(ctx: &ToolCtx, p: History) -> Result<Reply, ToolError> {
    let last = p.last.unwrap_or(10) as usize;
    let turns = ctx.client.history(&p.agent, Some(last)).await?;
    let text = if turns.is_empty() {
        format!("{} has no turns yet.", p.agent)
    } else {
        turns
            .iter()
            .map(|t| format!("> {}\n{}", cut(&t.prompt, 500), render::turn_text(t)))
            .collect::<Vec<_>>()
            .join("\n\n")
    };
    Ok(Reply::new(
        text,
        json!({ "turns": turns.iter().map(render::turn_json).collect::<Vec<_>>() }),
    ))
}

pub async fn cost(ctx: &ToolCtx, _: Empty) -> Result<Reply, ToolError> {
    let costs = ctx.client.costs().await?;
    let total = ctx.client.total_cost().await?;
    let mut lines: Vec<String> = costs.iter().map(|(n, c)| format!("{n}: ${c:.4}")).collect();
    lines.push(format!("Total: ${total:.4}"));
    Ok(Reply::new(
        lines.join("\n"),
        json!({
            "agents": costs.iter().map(|(n, c)| json!({"agent": n.as_str(), "cost_usd": c})).collect::<Vec<_>>(),
            "total_usd": total,
        }),
    ))
}

pub async fn ask(ctx: &ToolCtx, p: Ask) -> Result<Reply, ToolError> {
    ctx.not_self(&p.agent, "ask")?;
    ctx.record(format!("asked {}", p.agent)).await;
    let t = ctx
        .long(
            &format!("ask {}", p.agent),
            ctx.client.ask_from(&p.agent, &p.prompt, &ctx.origin()),
        )
        .await?;
    Ok(Reply::new(render::turn_text(&t), render::turn_json(&t)))
}

pub async fn cast(ctx: &ToolCtx, p: Ask) -> Result<Reply, ToolError> {
    ctx.not_self(&p.agent, "cast to")?;
    let r = ctx
        .client
        .cast_from(&p.agent, &p.prompt, &ctx.origin())
        .await?;
    ctx.record(format!("cast to {} ({r})", p.agent)).await;
    Ok(Reply::new(
        format!(
            "Cast to {}. Use await to get the result (reference {r}).",
            p.agent
        ),
        json!({ "agent": p.agent, "reference": r.to_string() }),
    ))
}

pub async fn poll(ctx: &ToolCtx, p: Poll) -> Result<Reply, ToolError> {
    Ok(match ctx.client.poll(&p.reference).await? {
        PollState::Pending => Reply::new(
            format!("{} is still pending.", p.reference),
            json!({ "state": "pending" }),
        ),
        PollState::Completed(t) => Reply::new(
            render::turn_text(&t),
            json!({ "state": "completed", "result": render::turn_json(&t) }),
        ),
        PollState::Failed(e) => Reply::new(
            format!("{} failed: {e}", p.reference),
            json!({ "state": "failed", "error": e.to_string() }),
        ),
        PollState::NotFound => {
            return Err(ToolError::new(
                "not_found",
                format!(
                    "no cast {} is known (the agent was replaced, or the reference is from another incarnation)",
                    p.reference
                ),
            ))
        }
    })
}

pub async fn await_agent(ctx: &ToolCtx, p: Await) -> Result<Reply, ToolError> {
    ctx.not_self(&p.agent, "await")?;
    let ms = p.timeout_ms.unwrap_or(DEFAULT_WAIT_MS);
    let r = ctx
        .long(
            &format!("await {}", p.agent),
            ctx.client.await_agent(&p.agent, Some(wait(p.timeout_ms))),
        )
        .await;
    match r {
        Ok(o) => {
            let (text, v) = render::outcome(&o);
            Ok(Reply::new(text, v))
        }
        Err(e) if e.code == "await_timeout" => Ok(Reply::new(
            format!(
                "{} timed out after {ms} ms (still working): await again later",
                p.agent
            ),
            json!({ "agent": p.agent, "status": "working", "timed_out": true }),
        )),
        Err(e) => Err(e),
    }
}

/// Every agent but the caller, awaited at once under one timeout.
pub async fn await_all(ctx: &ToolCtx, p: AwaitAll) -> Result<Reply, ToolError> {
    let names = ctx.client.agents().await?;
    let me = ctx.caller.agent().map(str::to_string);
    let mut set = tokio::task::JoinSet::new();
    let timeout = wait(p.timeout_ms);
    for (i, n) in names.into_iter().enumerate() {
        if me.as_deref() == Some(n.as_str()) {
            continue;
        }
        let client = ctx.client.clone();
        set.spawn(async move {
            let r = client.await_agent(n.as_str(), Some(timeout)).await;
            (i, n, r)
        });
    }
    let gather = async {
        let mut out = Vec::new();
        while let Some(j) = set.join_next().await {
            match j {
                Ok(r) => out.push(r),
                Err(e) => return Err(ApiError::Node(format!("await_all failed: {e}"))),
            }
        }
        Ok(out)
    };
    let mut out = ctx.long("await_all", gather).await?;
    out.sort_by_key(|(i, _, _)| *i);
    let mut blocks = Vec::new();
    let mut values = Vec::new();
    for (_, n, r) in out {
        match r {
            Ok(o) => {
                let (t, v) = render::outcome(&o);
                blocks.push(t);
                values.push(v);
            }
            Err(ApiError::AwaitTimeout { .. }) => {
                blocks.push(format!("## {n} (still working)\n(timed out; await again)"));
                values.push(json!({ "agent": n.as_str(), "status": "working", "timed_out": true }));
            }
            Err(e) => {
                let e = ToolError::from(e);
                blocks.push(format!("## {n} (error)\n{}", e.message));
                values.push(json!({ "agent": n.as_str(), "error": e.message }));
            }
        }
    }
    let text = if blocks.is_empty() {
        "No agents.".to_string()
    } else {
        blocks.join("\n\n")
    };
    Ok(Reply::new(text, json!({ "agents": values })))
}

pub async fn pipe(ctx: &ToolCtx, p: Pipe) -> Result<Reply, ToolError> {
    ctx.not_self(&p.to, "pipe to")?;
    ctx.record(format!("piped {} to {}", p.from, p.to)).await;
    let to = ctx
        .long(
            &format!("pipe {} to {}", p.from, p.to),
            ctx.client.pipe(&p.from, &p.to, p.message.as_deref()),
        )
        .await?;
    match ctx.client.result(to.as_str()).await? {
        Some(t) => Ok(Reply::new(render::turn_text(&t), render::turn_json(&t))),
        None => Ok(Reply::new("(no response)", json!({ "text": null }))),
    }
}

pub async fn fan(ctx: &ToolCtx, p: Fan) -> Result<Reply, ToolError> {
    if p.agents.is_empty() {
        return Err(ToolError::invalid(
            "fan: agents is empty; name at least one agent".to_string(),
        ));
    }
    for a in &p.agents {
        ctx.not_self(a, "fan to")?;
    }
    let refs = ctx.client.fan(&p.message, &p.agents).await?;
    let mut sent = Vec::new();
    let mut failed = Vec::new();
    let mut values = Vec::new();
    for (a, r) in p.agents.iter().zip(refs) {
        match r {
            Ok(r) => {
                sent.push(a.clone());
                values.push(json!({ "agent": a, "reference": r.to_string() }));
            }
            Err(e) => {
                let e = ToolError::from(e);
                failed.push(format!("{a}: {}", e.message));
                values.push(json!({ "agent": a, "error": e.message }));
            }
        }
    }
    ctx.record(format!("fanned out to {}", sent.join(", ")))
        .await;
    let mut text = if sent.is_empty() {
        "Sent to nobody.".to_string()
    } else {
        format!("Sent to {}. Use await_all to collect.", sent.join(", "))
    };
    if !failed.is_empty() {
        text.push_str(&format!("\nNot sent: {}", failed.join("; ")));
    }
    Ok(Reply::new(text, json!({ "sent": values })))
}

macro_rules! control {
    ($name:ident, $call:ident, $verb:literal, $done:literal) => {
        pub async fn $name(ctx: &ToolCtx, p: AgentArg) -> Result<Reply, ToolError> {
            ctx.not_self(&p.agent, $verb)?;
            ctx.client.$call(&p.agent).await?;
            ctx.record(format!(concat!($done, " {}"), p.agent)).await;
            Ok(Reply::new(
                format!(concat!("Agent {} ", $done, "."), p.agent),
                json!({ "agent": p.agent }),
            ))
        }
    };
}

control!(interrupt, interrupt, "interrupt", "interrupted");
control!(halt, halt, "halt", "halted");
control!(resume, resume, "resume", "resumed");
control!(reset, reset, "reset", "reset");
control!(dismiss, dismiss, "dismiss", "dismissed");
