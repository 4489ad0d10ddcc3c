//! Every tool called directly (no transport) on an in-process node with the script backend:
//! the happy path and the error paths, as the operator and as an orchestrator agent.

use serde_json::{json, Value};
use workshop_mcp::tools::{self, Reply, ToolCtx, ToolError};
use workshop_node::mcp_access::Caller;
use workshop_node::{Client, Node};

struct Fleet {
    node: Node,
}

impl Fleet {
    async fn start() -> Self {
        Self {
            node: Node::start().await.expect("node"),
        }
    }
    fn client(&self) -> Client {
        self.node.client()
    }
    fn op(&self) -> ToolCtx {
        ToolCtx::new(self.client(), Caller::Operator)
    }
    fn agent(&self, name: &str) -> ToolCtx {
        ToolCtx::new(self.client(), Caller::Agent(name.into()))
    }
    async fn stop(self) {
        self.node.shutdown().await;
    }
}

async fn ok(ctx: &ToolCtx, tool: &str, args: Value) -> Reply {
    match tools::call(ctx, tool, args.clone()).await {
        Ok(r) => r,
        Err(e) => panic!("{tool} {args} failed: {e:?}"),
    }
}

async fn err(ctx: &ToolCtx, tool: &str, args: Value) -> ToolError {
    match tools::call(ctx, tool, args.clone()).await {
        Ok(r) => panic!("{tool} {args} should fail, got {r:?}"),
        Err(e) => e,
    }
}

fn script_agent(name: &str) -> Value {
    json!({ "name": name, "backend": "script" })
}

/// A script agent whose first turn never ends (until interrupted).
fn hanging_agent(name: &str) -> Value {
    json!({ "name": name, "backend": "script", "options": { "script": [{ "hang": true }] } })
}

#[test]
fn the_catalogue_has_agentworkshops_21_tools_and_the_rest_with_schemas() {
    let names = tools::names();
    for t in [
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
        // What AgentWorkshop left out.
        "start_work",
        "cancel_work",
        "work_from_result",
        "define_workflow",
        "run_workflow",
        "workflow_status",
        "reset_workflow",
        "store_put",
        "store_get",
        "schedule",
        "schedules",
        "events",
        "budget",
        "interrupt",
        "halt",
        "resume",
        "nodes",
    ] {
        assert!(names.contains(&t), "missing tool {t}");
    }
    let mut unique = names.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), names.len(), "duplicate tool names");
    for tool in tools::catalogue() {
        let d = tool.description.as_deref().unwrap_or("");
        assert!(d.len() > 20, "{} has no useful description", tool.name);
        assert_eq!(
            tool.input_schema.get("type"),
            Some(&json!("object")),
            "{}",
            tool.name
        );
    }
    // Parameters carry their descriptions into the schema.
    let create = tools::catalogue()
        .into_iter()
        .find(|t| t.name == "create_agent")
        .expect("create_agent");
    let props = create.input_schema.get("properties").expect("properties");
    assert!(props["role"]["description"]
        .as_str()
        .is_some_and(|d| d.contains("system prompt")));
    assert_eq!(create.input_schema["required"], json!(["name"]));
}

#[tokio::test]
async fn unknown_tools_and_bad_arguments_are_named() {
    let f = Fleet::start().await;
    let e = err(&f.op(), "launch_missiles", json!({})).await;
    assert_eq!(e.code, "unknown_tool");
    assert!(e.message.contains("launch_missiles"), "{e:?}");
    let e = err(&f.op(), "ask", json!({ "agent": "a", "prompt": 5 })).await;
    assert_eq!(e.code, "invalid_arguments");
    assert!(
        e.message.starts_with("ask: invalid arguments") && e.message.contains("string"),
        "{e:?}"
    );
    let e = err(&f.op(), "ask", json!({ "agent": "a" })).await;
    assert!(e.message.contains("prompt"), "{e:?}");
    let e = err(&f.op(), "agents", json!({ "surprise": true })).await;
    assert!(e.message.contains("surprise"), "{e:?}");
    // No arguments at all is an empty object.
    ok(&f.op(), "agents", Value::Null).await;
    f.stop().await;
}

#[tokio::test]
async fn agents_are_created_asked_cast_awaited_and_listed() {
    let f = Fleet::start().await;
    let op = f.op();
    let r = ok(&op, "agents", json!({})).await;
    assert_eq!(r.text, "No agents.");
    let r = ok(&op, "create_agent", script_agent("a1")).await;
    assert_eq!(r.text, "Agent a1 created.");
    assert_eq!(r.structured, json!({ "agent": "a1", "node": null }));
    let r = ok(&op, "result", json!({ "agent": "a1" })).await;
    assert_eq!(r.text, "(no result)");
    let r = ok(&op, "ask", json!({ "agent": "a1", "prompt": "hello" })).await;
    assert_eq!(r.text, "Mock response to: hello");
    assert_eq!(r.structured["prompt"], "hello");
    let r = ok(&op, "cast", json!({ "agent": "a1", "prompt": "again" })).await;
    let reference = r.structured["reference"].as_str().expect("ref").to_string();
    assert!(r.text.contains("Use await"), "{}", r.text);
    let r = ok(&op, "await", json!({ "agent": "a1" })).await;
    assert_eq!(r.text, "## a1\nMock response to: again");
    assert_eq!(r.structured["status"], "idle");
    let r = ok(&op, "poll", json!({ "reference": reference })).await;
    assert_eq!(r.structured["state"], "completed");
    let e = err(&op, "poll", json!({ "reference": "nonsense" })).await;
    assert_eq!(e.code, "bad_ref");
    let r = ok(&op, "result", json!({ "agent": "a1" })).await;
    assert_eq!(r.text, "Mock response to: again");
    let r = ok(&op, "history", json!({ "agent": "a1" })).await;
    assert!(
        r.text.contains("> hello") && r.text.contains("> again"),
        "{}",
        r.text
    );
    assert_eq!(r.structured["turns"].as_array().map(Vec::len), Some(2));
    let r = ok(&op, "status", json!({})).await;
    assert!(r.text.starts_with("a1: idle | $"), "{}", r.text);
    assert_eq!(r.structured["agents"][0]["turns"], 2);
    let r = ok(&op, "info", json!({ "agent": "a1" })).await;
    assert_eq!(r.structured["status"], "idle");
    assert_eq!(r.structured["backend"], "script");
    let r = ok(&op, "cost", json!({})).await;
    assert!(
        r.text.contains("a1: $") && r.text.contains("Total: $"),
        "{}",
        r.text
    );
    let r = ok(&op, "agents", json!({})).await;
    assert_eq!(r.text, "a1");
    f.stop().await;
}

#[tokio::test]
async fn agent_mistakes_are_tool_errors_that_say_what_to_do() {
    let f = Fleet::start().await;
    let op = f.op();
    let e = err(&op, "ask", json!({ "agent": "ghost", "prompt": "x" })).await;
    assert_eq!(e.code, "unknown_agent");
    assert!(
        e.message.contains("ghost") && e.message.contains("create_agent"),
        "{e:?}"
    );
    ok(&op, "create_agent", script_agent("planner")).await;
    let e = err(&op, "ask", json!({ "agent": "planer", "prompt": "x" })).await;
    assert_eq!(e.code, "unknown_agent");
    assert!(e.message.contains("did you mean planner?"), "{e:?}");
    let e = err(&op, "create_agent", json!({ "name": "bad name!" })).await;
    assert_eq!(e.code, "invalid_name");
    let e = err(
        &op,
        "create_agent",
        json!({ "name": "x", "options": { "colour": "red" } }),
    )
    .await;
    assert_eq!(e.code, "invalid_arguments");
    assert!(e.message.contains("colour"), "{e:?}");
    let e = err(
        &op,
        "create_agent",
        json!({ "name": "x", "backend": "gpt-9000" }),
    )
    .await;
    assert_eq!(e.code, "invalid_option");
    let e = err(
        &op,
        "create_agent",
        json!({ "name": "x", "permission_mode": "yolo" }),
    )
    .await;
    assert!(e.message.contains("yolo"), "{e:?}");
    let e = err(
        &op,
        "from_profile",
        json!({ "profile": "nope", "name": "x" }),
    )
    .await;
    assert_eq!(e.code, "unknown_profile");
    assert!(e.message.contains("define_profile"), "{e:?}");
    // Numbers are checked naming the option, as in the console.
    for (options, named) in [
        (
            json!({ "timeout_ms": -1 }),
            "timeout_ms must be a whole number, 1 or more, got -1",
        ),
        (
            json!({ "queue_depth": 0 }),
            "queue_depth must be a whole number",
        ),
        (
            json!({ "timeout_ms": 1.5 }),
            "timeout_ms must be a whole number, 1 or more, got 1.5",
        ),
        (
            json!({ "max_cost_usd": -2 }),
            "max_cost_usd must be a finite number, 0 or more",
        ),
    ] {
        let e = err(
            &op,
            "create_agent",
            json!({ "name": "n", "options": options }),
        )
        .await;
        assert_eq!(e.code, "invalid_option", "{e:?}");
        assert!(e.message.contains(named), "{e:?}");
    }
    let e = err(&op, "fan", json!({ "message": "m", "agents": [] })).await;
    assert_eq!(e.code, "invalid_arguments");
    // A halted agent refuses ask, and says how to go on.
    ok(&op, "create_agent", script_agent("h")).await;
    ok(&op, "halt", json!({ "agent": "h" })).await;
    let e = err(&op, "ask", json!({ "agent": "h", "prompt": "x" })).await;
    assert_eq!(e.code, "halted");
    assert!(e.message.contains("resume h"), "{e:?}");
    ok(&op, "resume", json!({ "agent": "h" })).await;
    ok(&op, "ask", json!({ "agent": "h", "prompt": "x" })).await;
    f.stop().await;
}

#[tokio::test]
async fn profiles_configure_pipe_fan_and_control() {
    let f = Fleet::start().await;
    let op = f.op();
    let r = ok(
        &op,
        "configure",
        json!({ "context": "We build workshop.", "options": { "backend": "script" } }),
    )
    .await;
    assert_eq!(r.text, "Configured.");
    ok(
        &op,
        "define_profile",
        json!({ "name": "reviewer", "role": "You review code.", "backend": "script" }),
    )
    .await;
    let r = ok(&op, "profiles", json!({})).await;
    assert!(
        r.text.starts_with("reviewer: You review code."),
        "{}",
        r.text
    );
    ok(
        &op,
        "from_profile",
        json!({ "profile": "reviewer", "name": "rev" }),
    )
    .await;
    let r = ok(&op, "info", json!({ "agent": "rev" })).await;
    assert!(r.structured["system_prompt"]
        .as_str()
        .is_some_and(|s| s.contains("We build workshop.") && s.contains("You review code.")));
    // Defaults apply: no backend given, the configured one is used.
    ok(&op, "create_agent", json!({ "name": "coder" })).await;
    ok(
        &op,
        "ask",
        json!({ "agent": "coder", "prompt": "write it" }),
    )
    .await;
    let r = ok(
        &op,
        "pipe",
        json!({ "from": "coder", "to": "rev", "message": "Review:" }),
    )
    .await;
    assert!(
        r.text.starts_with("Mock response to: Review:")
            && r.text.contains("Mock response to: write it"),
        "{}",
        r.text
    );
    let r = ok(
        &op,
        "fan",
        json!({ "message": "status?", "agents": ["coder", "rev", "ghost"] }),
    )
    .await;
    assert!(
        r.text.starts_with("Sent to coder, rev. Use await_all"),
        "{}",
        r.text
    );
    assert!(r.text.contains("Not sent: ghost: no agent named ghost"));
    let r = ok(&op, "await_all", json!({})).await;
    assert!(
        r.text.contains("## coder\nMock response to: status?")
            && r.text.contains("## rev\nMock response to: status?"),
        "{}",
        r.text
    );
    ok(&op, "reset", json!({ "agent": "coder" })).await;
    let r = ok(&op, "dismiss", json!({ "agent": "coder" })).await;
    assert_eq!(r.text, "Agent coder dismissed.");
    let e = err(&op, "info", json!({ "agent": "coder" })).await;
    assert_eq!(e.code, "unknown_agent");
    f.stop().await;
}

#[tokio::test]
async fn a_busy_agent_times_out_in_await_and_interrupt_ends_its_turn() {
    let f = Fleet::start().await;
    let op = f.op();
    ok(&op, "create_agent", hanging_agent("slow")).await;
    ok(&op, "cast", json!({ "agent": "slow", "prompt": "think" })).await;
    let r = ok(&op, "await", json!({ "agent": "slow", "timeout_ms": 0 })).await;
    assert!(r.text.contains("still working"), "{}", r.text);
    assert_eq!(r.structured["timed_out"], true);
    let r = ok(&op, "await_all", json!({ "timeout_ms": 0 })).await;
    assert!(r.text.contains("## slow (still working)"), "{}", r.text);
    ok(&op, "interrupt", json!({ "agent": "slow" })).await;
    let r = ok(&op, "await", json!({ "agent": "slow" })).await;
    assert!(r.text.contains("(failed: interrupted)"), "{}", r.text);
    f.stop().await;
}

#[tokio::test]
async fn a_cancelled_ask_stops_waiting_and_leaves_the_turn_running() {
    let f = Fleet::start().await;
    let op = f.op();
    ok(&op, "create_agent", hanging_agent("slow")).await;
    let ctx = f.op();
    let cancel = ctx.cancel.clone();
    let asking = tokio::spawn(async move {
        tools::call(&ctx, "ask", json!({ "agent": "slow", "prompt": "think" })).await
    });
    // The turn has started once the agent is working.
    let mut events = f.client().watch().await.expect("watch");
    loop {
        let r = ok(&op, "status", json!({})).await;
        if r.structured["agents"][0]["status"] == "working" {
            break;
        }
        events.recv().await.expect("an event");
    }
    cancel.cancel();
    let e = asking.await.expect("join").expect_err("cancelled");
    assert!(e.message.contains("cancelled by the client"), "{e:?}");
    let r = ok(&op, "status", json!({})).await;
    assert_eq!(r.structured["agents"][0]["status"], "working");
    ok(&op, "interrupt", json!({ "agent": "slow" })).await;
    f.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_long_ask_reports_progress() {
    let f = Fleet::start().await;
    let op = f.op();
    ok(&op, "create_agent", hanging_agent("slow")).await;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let mut ctx = f.op();
    ctx.progress = Some(std::sync::Arc::new(move |m: String| {
        let _ = tx.send(m);
    }));
    let cancel = ctx.cancel.clone();
    let asking = tokio::spawn(async move {
        tools::call(&ctx, "ask", json!({ "agent": "slow", "prompt": "think" })).await
    });
    let first = rx.recv().await.expect("progress");
    assert_eq!(first, "ask slow: still waiting after 5 s");
    let second = rx.recv().await.expect("progress");
    assert_eq!(second, "ask slow: still waiting after 10 s");
    cancel.cancel();
    assert!(asking.await.expect("join").is_err());
    ok(&op, "interrupt", json!({ "agent": "slow" })).await;
    f.stop().await;
}

#[tokio::test]
async fn an_orchestrator_acts_as_itself_and_cannot_raise_its_budget() {
    let f = Fleet::start().await;
    let op = f.op();
    ok(&op, "create_agent", script_agent("boss")).await;
    let boss = f.agent("boss");
    ok(&boss, "create_agent", script_agent("helper")).await;
    let r = ok(&boss, "ask", json!({ "agent": "helper", "prompt": "hi" })).await;
    assert_eq!(r.text, "Mock response to: hi");
    ok(&boss, "add_work", json!({ "id": "w1", "title": "Do it" })).await;
    // The event log says who did what.
    let r = ok(&op, "events", json!({ "last": 100 })).await;
    assert!(
        r.text.contains("boss (via MCP): created agent helper"),
        "{}",
        r.text
    );
    assert!(
        r.text.contains("boss (via MCP): added work item w1"),
        "{}",
        r.text
    );
    // Budgets are the operator's.
    for args in [
        json!({ "max_cost_usd": 100.0 }),
        json!({ "options": { "max_cost_usd": 100.0 } }),
        json!({ "options": { "max_budget_usd": 5.0 } }),
    ] {
        let e = err(&boss, "configure", args).await;
        assert_eq!(e.code, "refused");
        assert!(e.message.contains("cannot change budgets"), "{e:?}");
    }
    ok(&boss, "configure", json!({ "model": "sonnet" })).await;
    // Nor can it replace, ask, await, dismiss or reset itself.
    for (tool, args) in [
        (
            "create_agent",
            json!({ "name": "boss", "max_cost_usd": 1000.0 }),
        ),
        ("from_profile", json!({ "profile": "any", "name": "boss" })),
        ("ask", json!({ "agent": "boss", "prompt": "x" })),
        ("cast", json!({ "agent": "boss", "prompt": "x" })),
        ("await", json!({ "agent": "boss" })),
        ("dismiss", json!({ "agent": "boss" })),
        ("reset", json!({ "agent": "boss" })),
        (
            "fan",
            json!({ "message": "m", "agents": ["helper", "boss"] }),
        ),
    ] {
        let e = err(&boss, tool, args).await;
        assert_eq!(e.code, "refused", "{tool}");
        assert!(e.message.contains("you are agent boss"), "{tool}: {e:?}");
    }
    // The operator can.
    ok(&op, "configure", json!({ "max_cost_usd": 100.0 })).await;
    let r = ok(&op, "budget", json!({})).await;
    assert!(r.text.contains("of $100.0000"), "{}", r.text);
    f.stop().await;
}

#[tokio::test]
async fn await_all_from_an_orchestrator_leaves_out_its_own_running_turn() {
    let f = Fleet::start().await;
    let op = f.op();
    // The orchestrator's own turn never ends while it waits for the others.
    ok(&op, "create_agent", hanging_agent("boss")).await;
    ok(
        &op,
        "cast",
        json!({ "agent": "boss", "prompt": "run the fleet" }),
    )
    .await;
    ok(&op, "create_agent", script_agent("w1")).await;
    let boss = f.agent("boss");
    ok(&boss, "cast", json!({ "agent": "w1", "prompt": "job" })).await;
    let r = ok(&boss, "await_all", json!({ "timeout_ms": 60000 })).await;
    assert_eq!(r.text, "## w1\nMock response to: job");
    ok(&op, "interrupt", json!({ "agent": "boss" })).await;
    f.stop().await;
}

#[tokio::test]
async fn the_board_end_to_end() {
    let f = Fleet::start().await;
    let op = f.op();
    let r = ok(&op, "board", json!({})).await;
    assert_eq!(r.text, "Board is empty.");
    let r = ok(
        &op,
        "add_work",
        json!({ "id": "w1", "title": "Write docs", "type": "docs", "spec": "All of them", "priority": 2 }),
    )
    .await;
    assert_eq!(r.text, "Work item w1 added.");
    assert_eq!(r.structured["status"], "ready");
    ok(
        &op,
        "add_work",
        json!({ "id": "w2", "title": "Ship", "depends_on": ["w1"] }),
    )
    .await;
    let r = ok(&op, "board", json!({})).await;
    assert!(
        r.text.contains("[ready] w1 - Write docs [docs]"),
        "{}",
        r.text
    );
    assert!(
        r.text.contains("w2 - Ship [custom] deps:[w1]"),
        "{}",
        r.text
    );
    let r = ok(&op, "board", json!({ "status": "ready", "type": "docs" })).await;
    assert_eq!(r.structured["items"].as_array().map(Vec::len), Some(1));
    let e = err(&op, "board", json!({ "status": "finished" })).await;
    assert!(e.message.contains("finished"), "{e:?}");
    let e = err(&op, "add_work", json!({ "id": "w1", "title": "again" })).await;
    assert!(e.message.contains("w1"), "{e:?}");
    let r = ok(&op, "claim_work", json!({ "id": "w1", "agent": "me" })).await;
    let w1_token = r.structured["lease_token"].as_u64().expect("a lease token");
    assert_eq!(
        r.text,
        format!(
            "me claimed w1. Lease token {w1_token}: pass it as token to complete_work or fail_work."
        )
    );
    assert_eq!(r.structured["claimed_by"], "me");
    let e = err(&op, "claim_work", json!({ "id": "w1", "agent": "you" })).await;
    assert!(e.message.contains("w1"), "{e:?}");
    // A claim's lease is the caller's to choose, within bounds.
    ok(&op, "add_work", json!({ "id": "l1", "title": "Leased" })).await;
    let e = err(
        &op,
        "claim_work",
        json!({ "id": "l1", "agent": "me", "lease_ms": 10 }),
    )
    .await;
    assert!(
        e.message.contains("lease_ms 10 is out of bounds") && e.message.contains("24 h"),
        "{e:?}"
    );
    let r = ok(
        &op,
        "claim_work",
        json!({ "id": "l1", "agent": "me", "lease_ms": 5000 }),
    )
    .await;
    let expires = r.structured["lease_expires_at_ms"].as_u64().expect("lease");
    let now = workshop_types::now_ms();
    assert!(
        expires > now && expires <= now + 5000,
        "expires {expires}, now {now}"
    );
    let e = err(
        &op,
        "board_worker",
        json!({ "name": "quick", "type": "code", "lease_ms": 5 }),
    )
    .await;
    assert!(e.message.contains("lease 5 is out of bounds"), "{e:?}");
    ok(&op, "start_work", json!({ "id": "w1" })).await;
    // Held: settled with the claim's token or by force; neither is refused naming the holder.
    let e = err(
        &op,
        "complete_work",
        json!({ "id": "w1", "result": "not mine" }),
    )
    .await;
    assert_eq!(e.code, "held", "{e:?}");
    assert!(
        e.message.contains("held by me") && e.message.contains("force: true"),
        "{e:?}"
    );
    let r = ok(
        &op,
        "complete_work",
        json!({ "id": "w1", "result": "docs written", "token": w1_token }),
    )
    .await;
    assert_eq!(r.text, "w1 completed.");
    let r = ok(&op, "await_work", json!({ "id": "w1" })).await;
    assert!(r.text.contains("result:\ndocs written"), "{}", r.text);
    let r = ok(&op, "work_item", json!({ "id": "w1" })).await;
    assert!(r.text.contains("spec:\nAll of them"), "{}", r.text);
    let e = err(&op, "work_item", json!({ "id": "nope" })).await;
    assert_eq!(e.code, "no_such_item");
    // Failing: retried while attempts remain, then failed.
    ok(
        &op,
        "add_work",
        json!({ "id": "f1", "title": "Flaky", "max_attempts": 1 }),
    )
    .await;
    ok(&op, "claim_work", json!({ "id": "f1", "agent": "me" })).await;
    let r = ok(
        &op,
        "fail_work",
        json!({ "id": "f1", "error": "broke", "force": true }),
    )
    .await;
    assert_eq!(r.text, "f1 marked as failed.");
    let r = ok(&op, "cancel_work", json!({ "id": "w2" })).await;
    assert_eq!(r.structured["status"], "cancelled");
    let e = err(&op, "complete_work", json!({ "id": "w2" })).await;
    assert!(e.message.contains("w2"), "{e:?}");
    // From an agent's result.
    ok(&op, "create_agent", script_agent("planner")).await;
    ok(&op, "ask", json!({ "agent": "planner", "prompt": "plan" })).await;
    let r = ok(
        &op,
        "work_from_result",
        json!({ "agent": "planner", "id": "p1", "type": "code" }),
    )
    .await;
    assert_eq!(r.structured["spec"], "Mock response to: plan");
    f.stop().await;
}

#[tokio::test]
async fn board_workers_work_items_added_through_mcp() {
    let f = Fleet::start().await;
    let op = f.op();
    let r = ok(
        &op,
        "board_worker",
        json!({ "name": "coder", "type": "code", "options": { "backend": "script" } }),
    )
    .await;
    assert_eq!(r.text, "Board worker coder started for code items.");
    ok(
        &op,
        "add_work",
        json!({ "id": "c1", "title": "Implement", "type": "code", "spec": "the thing" }),
    )
    .await;
    let r = ok(&op, "await_work", json!({ "id": "c1" })).await;
    assert_eq!(r.structured["status"], "done");
    assert!(
        r.structured["result"]
            .as_str()
            .is_some_and(|s| s.starts_with("Mock response to:")),
        "{}",
        r.structured
    );
    let r = ok(&op, "workers", json!({})).await;
    assert!(r.text.starts_with("coder [code]: "), "{}", r.text);
    f.stop().await;
}

#[tokio::test]
async fn workflows_are_defined_run_and_watched() {
    let f = Fleet::start().await;
    let op = f.op();
    let e = err(
        &op,
        "define_workflow",
        json!({ "name": "wf", "stages": [
            { "name": "plan", "agent": "planner", "title": "Plan" },
            { "name": "code", "agent": "coder", "title": "Code", "from": ["plann"] }
        ]}),
    )
    .await;
    assert!(e.message.contains("plann"), "{e:?}");
    let e = err(
        &op,
        "define_workflow",
        json!({ "name": "wf", "stages": [
            { "name": "plan", "agent": "p", "title": "Plan", "file": "a.md", "from": ["x"] }
        ]}),
    )
    .await;
    assert!(e.message.contains("both"), "{e:?}");
    ok(
        &op,
        "board_worker",
        json!({ "name": "planner", "type": "review", "options": { "backend": "script" } }),
    )
    .await;
    ok(
        &op,
        "board_worker",
        json!({ "name": "coder", "type": "code", "options": { "backend": "script" } }),
    )
    .await;
    let r = ok(
        &op,
        "define_workflow",
        json!({ "name": "wf", "stages": [
            { "name": "plan", "agent": "planner", "title": "Plan", "type": "review" },
            { "name": "code", "agent": "coder", "title": "Code", "type": "code", "from": ["plan"] }
        ]}),
    )
    .await;
    assert!(r.text.starts_with("Workflow wf defined (2 stages)"));
    let r = ok(&op, "workflows", json!({})).await;
    assert!(
        r.text.contains("code [code] by coder: Code <- plan"),
        "{}",
        r.text
    );
    let r = ok(&op, "run_workflow", json!({ "name": "wf" })).await;
    assert!(r.text.starts_with("Workflow wf started: 2 items."));
    let r = ok(&op, "await_workflow", json!({ "name": "wf" })).await;
    assert_eq!(r.text, "Workflow wf completed.");
    let r = ok(&op, "workflow_status", json!({ "name": "wf" })).await;
    assert!(r.text.starts_with("wf: completed"), "{}", r.text);
    assert_eq!(r.structured["stages"][1]["item"]["status"], "done");
    ok(&op, "reset_workflow", json!({ "name": "wf" })).await;
    let e = err(&op, "run_workflow", json!({ "name": "nope" })).await;
    assert!(e.message.contains("nope"), "{e:?}");
    f.stop().await;
}

#[tokio::test]
async fn store_schedules_events_budget_and_nodes() {
    let f = Fleet::start().await;
    let op = f.op();
    ok(
        &op,
        "store_put",
        json!({ "key": "plan", "value": { "steps": [1, 2] } }),
    )
    .await;
    let r = ok(&op, "store_get", json!({ "key": "plan" })).await;
    assert_eq!(r.structured["value"], json!({ "steps": [1, 2] }));
    let r = ok(&op, "store_list", json!({})).await;
    assert!(r.text.contains("plan = {\"steps\":[1,2]}"), "{}", r.text);
    ok(&op, "store_delete", json!({ "key": "plan" })).await;
    let r = ok(&op, "store_get", json!({ "key": "plan" })).await;
    assert_eq!(r.structured["value"], Value::Null);
    ok(&op, "create_agent", script_agent("tick")).await;
    let e = err(
        &op,
        "schedule",
        json!({ "agent": "tick", "prompt": "p", "interval_ms": 0 }),
    )
    .await;
    assert!(e.message.contains("interval_ms"), "{e:?}");
    ok(
        &op,
        "schedule",
        json!({ "agent": "tick", "prompt": "check", "interval_ms": 3600000 }),
    )
    .await;
    let r = ok(&op, "schedules", json!({})).await;
    assert!(
        r.text.starts_with("tick every 3600000 ms: check"),
        "{}",
        r.text
    );
    ok(&op, "cancel_schedule", json!({ "agent": "tick" })).await;
    let r = ok(&op, "schedules", json!({})).await;
    assert_eq!(r.text, "No schedules.");
    let r = ok(&op, "events", json!({ "topic": "agent" })).await;
    assert!(r.text.contains("tick"), "{}", r.text);
    assert!(r.structured["events"]
        .as_array()
        .is_some_and(|e| e.iter().all(|e| e["topic"] == "agent")));
    let e = err(&op, "events", json!({ "topic": "gossip" })).await;
    assert!(e.message.contains("gossip"), "{e:?}");
    let r = ok(&op, "budget", json!({ "agent": "tick" })).await;
    assert!(r.text.starts_with("tick: spent $"), "{}", r.text);
    let r = ok(&op, "nodes", json!({})).await;
    assert!(r.text.contains("(this node): up"), "{}", r.text);
    // An agent placed on a named node: this one, or an unknown one (refused, named).
    let me = r.structured["nodes"][0]["name"]
        .as_str()
        .expect("node name")
        .to_string();
    let r = ok(
        &op,
        "create_agent",
        json!({ "name": "placed", "backend": "script", "node": me }),
    )
    .await;
    assert_eq!(r.text, format!("Agent placed created on {me}."));
    let e = err(
        &op,
        "create_agent",
        json!({ "name": "lost", "backend": "script", "node": "atlantis" }),
    )
    .await;
    assert!(e.message.contains("atlantis"), "{e:?}");
    f.stop().await;
}
