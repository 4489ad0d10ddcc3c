//! The tool catalogue: every tool's name, description and input schema, and `call`, which
//! parses a tool's arguments and runs it over a [`Client`]. No transport here: the rmcp handler
//! (`handler.rs`) and the unit tests call [`call`] alike. Tools hold no logic of their own
//! beyond turning arguments into `Client` calls and replies into text a model reads well (with
//! the reply as structured content beside it).

mod agents;
mod board;
mod fleet;
pub mod render;

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use rmcp::model::{JsonObject, Tool, ToolAnnotations};
use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio_util::sync::CancellationToken;
use workshop_node::mcp_access::Caller;
use workshop_node::Client;
use workshop_proto::ApiError;
use workshop_types::Topic;

/// What a tool call runs with.
pub struct ToolCtx {
    pub client: Client,
    pub caller: Caller,
    /// Fires when the client cancels the call (long calls stop waiting).
    pub cancel: CancellationToken,
    /// Reports progress of a long call (when the host asked for it).
    pub progress: Option<Arc<dyn Fn(String) + Send + Sync>>,
}

impl ToolCtx {
    pub fn new(client: Client, caller: Caller) -> Self {
        Self {
            client,
            caller,
            cancel: CancellationToken::new(),
            progress: None,
        }
    }

    /// The origin that turns and events carry: `mcp` or `mcp:<agent>`.
    pub fn origin(&self) -> String {
        self.caller.origin()
    }

    /// Refuse what an agent may not do to itself (ask itself: its own turn is the one running;
    /// dismiss, reset or replace itself; raise its own budget).
    pub fn not_self(&self, agent: &str, what: &str) -> Result<(), ToolError> {
        match self.caller.agent() {
            Some(me) if me == agent => Err(ToolError::refused(format!(
                "you are agent {me}: an agent cannot {what} itself. Use another agent's name."
            ))),
            _ => Ok(()),
        }
    }

    /// Say in the event log that an agent did something through MCP (the operator's own calls
    /// are not logged twice: their effects publish their own events).
    pub async fn record(&self, what: String) {
        if let Caller::Agent(me) = &self.caller {
            let line = format!("{me} (via MCP): {what}");
            if let Err(e) = self.client.emit(Topic::Agent, line).await {
                tracing::warn!("could not record an MCP call in the event log: {e}");
            }
        }
    }

    /// Run `fut` unless the client cancels first; while it runs, report progress every
    /// `PROGRESS_EVERY` if the host asked for it.
    pub async fn long<T>(
        &self,
        what: &str,
        fut: impl std::future::Future<Output = Result<T, ApiError>>,
    ) -> Result<T, ToolError> {
        let mut fut = std::pin::pin!(fut);
        let started = tokio::time::Instant::now();
        let mut tick = tokio::time::interval_at(started + PROGRESS_EVERY, PROGRESS_EVERY);
        loop {
            tokio::select! {
                r = &mut fut => return r.map_err(ToolError::from),
                _ = self.cancel.cancelled() => return Err(ToolError::refused(format!(
                    "{what}: cancelled by the client; nothing was undone (a turn that started goes on: use await or result later, or interrupt it)"
                ))),
                _ = tick.tick() => {
                    if let Some(p) = &self.progress {
                        p(format!(
                            "{what}: still waiting after {} s",
                            started.elapsed().as_secs()
                        ));
                    }
                }
            }
        }
    }
}

/// How often a long call reports progress.
pub const PROGRESS_EVERY: Duration = Duration::from_secs(5);

/// A tool's answer: text for the model, and the same reply as JSON.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    pub text: String,
    pub structured: Value,
}

impl Reply {
    pub fn new(text: impl Into<String>, structured: Value) -> Self {
        Self {
            text: text.into(),
            structured,
        }
    }
    /// A reply whose structured form is `{"ok": true, ...extra}`.
    pub fn done(text: impl Into<String>) -> Self {
        Self::new(text, serde_json::json!({ "ok": true }))
    }
}

/// A tool error: what went wrong and what to do, with a stable code.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolError {
    pub code: String,
    pub message: String,
}

impl ToolError {
    pub fn new(code: &str, message: impl Into<String>) -> Self {
        Self {
            code: code.to_string(),
            message: message.into(),
        }
    }
    pub fn refused(message: String) -> Self {
        Self::new("refused", message)
    }
    pub fn invalid(message: String) -> Self {
        Self::new("invalid_arguments", message)
    }
    pub fn structured(&self) -> Value {
        serde_json::json!({ "error": self.code, "message": self.message })
    }
}

impl std::fmt::Display for ToolError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl From<ApiError> for ToolError {
    fn from(e: ApiError) -> Self {
        // The node's messages name console functions; say it with the tools' names.
        let message = match &e {
            ApiError::UnknownAgent(a) => {
                format!("no agent named {a}: the agents tool lists them, create_agent creates one")
            }
            ApiError::UnknownAgentLike { name, like } => format!(
                "no agent named {name} (did you mean {like}?): the agents tool lists them, create_agent creates one"
            ),
            ApiError::UnknownProfile(p) => format!(
                "no profile named {p}: the profiles tool lists them, define_profile defines one"
            ),
            ApiError::QueueFull { agent, depth } => format!(
                "{agent}'s queue is full ({depth} waiting): await {agent} first, then cast again"
            ),
            ApiError::Halted(a) => {
                format!("{a} is halted: ask would never return; resume {a} first, or cast to queue")
            }
            ApiError::NoResult(a) => {
                format!("{a} has no result yet: ask or cast to it first")
            }
            ApiError::AwaitTimeout { agent, ms } => {
                format!("{agent} is still working after {ms} ms: await again, or interrupt {agent}")
            }
            ApiError::Crashed(a) => {
                format!("{a} crashed: reset {a}, or create_agent {a} again, starts it again")
            }
            ApiError::Held { id, status, holder } => format!(
                "work item {id} is {status}, held by {holder}: pass the lease token its claim \
                 answered (token), or force: true to take it (logged; a board worker holding it \
                 loses it and its turn is interrupted)"
            ),
            _ => e.to_string(),
        };
        ToolError::new(e.code(), message)
    }
}

/// Parse a tool's arguments; a mistake names the tool and the field.
fn parse<P: DeserializeOwned>(tool: &str, args: Value) -> Result<P, ToolError> {
    let args = if args.is_null() {
        Value::Object(Default::default())
    } else {
        args
    };
    serde_json::from_value(args)
        .map_err(|e| ToolError::invalid(format!("{tool}: invalid arguments: {e}")))
}

fn schema<P: JsonSchema + 'static>() -> Arc<JsonObject> {
    rmcp::handler::server::common::schema_for_type::<P>()
}

/// Whether a tool only reads.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Read,
    Write,
}

/// One tool of the catalogue.
struct Def {
    name: &'static str,
    description: &'static str,
    kind: Kind,
    schema: fn() -> Arc<JsonObject>,
}

macro_rules! tools {
    ($( $name:literal, $kind:ident, $params:ty => $handler:path, $desc:expr; )*) => {
        const DEFS: &[Def] = &[$(
            Def { name: $name, description: $desc, kind: Kind::$kind, schema: schema::<$params> },
        )*];

        /// Run the tool `name` with `args` (a JSON object).
        pub async fn call(ctx: &ToolCtx, name: &str, args: Value) -> Result<Reply, ToolError> {
            match name {
                $( $name => {
                    let p: $params = parse($name, args)?;
                    $handler(ctx, p).await
                } )*
                other => Err(ToolError::new(
                    "unknown_tool",
                    format!("no tool named {other:?}; tools/list lists them"),
                )),
            }
        }
    };
}

tools! {
    // ---------------------------------------------------------------- configuration
    "configure", Write, agents::Configure => agents::configure,
        "Set fleet-wide defaults for agents created afterwards: model, shared context (prepended to every agent's system prompt), permission mode, and other agent options. An agent calling this cannot change budgets.";
    "define_profile", Write, agents::DefineProfile => agents::define_profile,
        "Define (or replace) a named profile: a role and agent options that from_profile starts agents from.";
    "profiles", Read, agents::Empty => agents::profiles,
        "List the defined profiles with their roles and options.";
    // ---------------------------------------------------------------- agents
    "create_agent", Write, agents::CreateAgent => agents::create_agent,
        "Create (or replace) a named agent: a long-lived coding agent with its own conversation. Give it a role (its system prompt) and, optionally, a model, backend and options. Replacing an existing name stops the old agent.";
    "from_profile", Write, agents::FromProfile => agents::from_profile,
        "Create (or replace) an agent from a profile defined with define_profile, with optional option overrides.";
    "agents", Read, agents::Empty => agents::agents,
        "List the names of every agent in the cluster.";
    "status", Read, agents::Empty => agents::status,
        "Every agent's status (idle, working, halted, crashed), current task, queue, model, cost and turns, with the node it runs on.";
    "info", Read, agents::AgentArg => agents::info,
        "Everything about one agent: status, backend, model, role, options, cost, turns, queue and its last result.";
    "result", Read, agents::AgentArg => agents::result,
        "The text of an agent's last completed turn.";
    "history", Read, agents::History => agents::history,
        "An agent's last turns (prompt and answer), oldest first.";
    "cost", Read, agents::Empty => agents::cost,
        "What each agent has cost so far, and the total.";
    "ask", Write, agents::Ask => agents::ask,
        "Send a prompt to an agent and wait for its answer (blocks until the turn ends). For parallel work prefer cast to several agents, then await_all.";
    "cast", Write, agents::Ask => agents::cast,
        "Queue a prompt for an agent and return at once with a reference; collect the answer later with await (or poll).";
    "poll", Read, agents::Poll => agents::poll,
        "The state of one cast by its reference (agent#n): pending, completed with its text, or failed.";
    "await", Read, agents::Await => agents::await_agent,
        "Wait until an agent is idle and return its last result. timeout_ms defaults to 120000; 0 just checks.";
    "await_all", Read, agents::AwaitAll => agents::await_all,
        "Wait until every agent is idle and return each one's last result. timeout_ms defaults to 120000; 0 just checks.";
    "pipe", Write, agents::Pipe => agents::pipe,
        "Send one agent's last result to another agent (optionally with a message before it) and wait for the second agent's answer.";
    "fan", Write, agents::Fan => agents::fan,
        "Cast the same message to several agents at once; collect the answers with await_all.";
    "interrupt", Write, agents::AgentArg => agents::interrupt,
        "Stop an agent's current turn (the turn ends as interrupted; queued prompts go on).";
    "halt", Write, agents::AgentArg => agents::halt,
        "Halt an agent: it finishes nothing new until resume; casts queue up meanwhile.";
    "resume", Write, agents::AgentArg => agents::resume,
        "Resume a halted agent.";
    "reset", Write, agents::AgentArg => agents::reset,
        "Start an agent's conversation afresh (same options); its history of turns is kept.";
    "dismiss", Write, agents::AgentArg => agents::dismiss,
        "Stop an agent and forget it. Dismiss agents you no longer need.";
    // ---------------------------------------------------------------- board
    "add_work", Write, board::AddWork => board::add_work,
        "Add a work item to the shared board. Board workers of its type (on any node) claim it; depends_on holds it until those items are done.";
    "board", Read, board::BoardArgs => board::board,
        "List work items, optionally filtered by status (new, ready, claimed, in_progress, done, failed, blocked, cancelled) and type.";
    "work_item", Read, board::IdArg => board::work_item,
        "One work item in full: spec, status, result or error, attempts, lease holder, dependencies.";
    "claim_work", Write, board::Claim => board::claim_work,
        "Claim a ready work item for an agent (by hand; board workers claim by themselves).";
    "start_work", Write, board::IdArg => board::start_work,
        "Mark a claimed work item as in progress.";
    "complete_work", Write, board::Complete => board::complete_work,
        "Complete a claimed or in-progress work item with its result.";
    "fail_work", Write, board::Fail => board::fail_work,
        "Mark a claimed or in-progress work item as failed, with the reason (it is retried while attempts remain).";
    "cancel_work", Write, board::IdArg => board::cancel_work,
        "Cancel a work item that is not done yet.";
    "await_work", Read, board::AwaitWork => board::await_work,
        "Wait until a work item is done, failed or cancelled, and return it. timeout_ms defaults to 120000.";
    "work_from_result", Write, board::FromResult => board::work_from_result,
        "Add a work item whose spec is an agent's last result.";
    "board_worker", Write, board::Worker => board::board_worker,
        "Start a board worker: an agent that claims work items of one type from the shared board, one at a time, and settles each with its answer.";
    "workers", Read, agents::Empty => board::workers,
        "Every board worker: type, items completed and failed, current item.";
    // ---------------------------------------------------------------- workflows
    "define_workflow", Write, fleet::DefineWorkflow => fleet::define_workflow,
        "Define (or replace) a workflow: named stages, each run as a work item of its type, fed by a file or the results of earlier stages.";
    "workflows", Read, agents::Empty => fleet::workflows,
        "List the defined workflows and their stages.";
    "run_workflow", Write, fleet::WorkflowArg => fleet::run_workflow,
        "Start a run of a defined workflow: its stages become work items on the board.";
    "workflow_status", Read, fleet::WorkflowArg => fleet::workflow_status,
        "A workflow run's status and each stage's work item.";
    "await_workflow", Read, fleet::AwaitWorkflow => fleet::await_workflow,
        "Wait until a workflow run completes or fails. timeout_ms defaults to 120000.";
    "reset_workflow", Write, fleet::WorkflowArg => fleet::reset_workflow,
        "Forget a workflow's run so it can run again (its items stay on the board).";
    // ---------------------------------------------------------------- store, schedules, events
    "store_put", Write, fleet::Put => fleet::store_put,
        "Store a JSON value under a key in the cluster's shared store.";
    "store_get", Read, fleet::Key => fleet::store_get,
        "Read the JSON value stored under a key.";
    "store_list", Read, agents::Empty => fleet::store_list,
        "List every key of the shared store with its value.";
    "store_delete", Write, fleet::Key => fleet::store_delete,
        "Delete a key from the shared store.";
    "schedule", Write, fleet::Every => fleet::schedule,
        "Send an agent the same prompt every interval_ms (a recurring turn; skipped while the agent is busy).";
    "cancel_schedule", Write, fleet::ScheduleArg => fleet::cancel_schedule,
        "Stop an agent's recurring schedule.";
    "schedules", Read, agents::Empty => fleet::schedules,
        "Every schedule: agent, prompt, interval, runs.";
    "events", Read, fleet::Events => fleet::events,
        "The latest events of the whole cluster (agents, turns, work, workflows, nodes), oldest first, optionally of one topic.";
    "budget", Read, fleet::BudgetArgs => fleet::budget,
        "The spending limit and what has been spent: the cluster's, or one agent's.";
    "nodes", Read, agents::Empty => fleet::nodes,
        "Every node of the cluster: address, up or down, uptime, agents, workers, which one holds the board.";
}

/// The catalogue as MCP tools.
pub fn catalogue() -> Vec<Tool> {
    DEFS.iter()
        .map(|d| {
            let mut t = Tool::new(
                Cow::Borrowed(d.name),
                Cow::Borrowed(d.description),
                (d.schema)(),
            );
            let mut a = ToolAnnotations::default();
            a.read_only_hint = Some(d.kind == Kind::Read);
            a.open_world_hint = Some(false);
            t.annotations = Some(a);
            t
        })
        .collect()
}

/// The names of every tool.
pub fn names() -> Vec<&'static str> {
    DEFS.iter().map(|d| d.name).collect()
}
