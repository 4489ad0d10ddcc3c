//! The node crate's API suite (crates/workshop-node/tests/workshop_api.rs) through `Client`:
//! each scenario runs against a node in this process and against a `workshop node` process
//! over ractor_cluster, and must behave the same. The script backend's default reply is
//! "Mock response to: <prompt>" at $0.01.

use std::time::Duration;
use workshop_node::{ApiError, Client, GlobalConfig};
use workshop_types::{AgentOptions, AgentStatus, PermissionMode, PollState, Topic, TurnError};

use crate::support::{
    approx, both, cost, error, name, next_event, script, within, Gates, NodeProcess, LIMIT,
};

both!(
    cost_accumulates_per_agent_and_in_total,
    cost_and_status_are_current_as_soon_as_ask_returns,
    pipe_sends_the_previous_result_with_the_default_framing,
    pipe_without_a_result_is_an_error,
    fan_casts_to_each_and_await_all_waits_for_them,
    reset_clears_result_cost_and_turns,
    dismiss_removes_the_agent,
    agent_with_an_existing_name_replaces_it,
    configure_applies_to_new_agents_only,
    profiles_and_from_profile_with_overrides,
    invalid_options_and_names_give_clear_errors,
    unknown_agents_give_a_clear_error_everywhere,
    a_per_agent_budget_refuses_the_next_send,
    a_global_budget_refuses_every_agent,
    the_event_log_has_agentworkshops_lines,
    reset_all_dismisses_everything_and_clears_configuration,
    ;
    gated:
    pipe_waits_for_a_busy_source,
    await_all_covers_every_busy_agent,
    reset_cancels_queued_and_in_flight_requests,
    dismiss_a_busy_agent_cancels_its_callers,
    the_status_table_shows_task_and_queue,
);

async fn cost_accumulates_per_agent_and_in_total(c: &Client) {
    c.agent("a", None, AgentOptions::default())
        .await
        .expect("agent");
    c.agent("b", None, script(vec![cost(0.25)]))
        .await
        .expect("agent");
    c.ask("a", "one").await.expect("ask");
    assert!(approx(c.cost("a").await.expect("cost"), 0.01));
    c.ask("a", "two").await.expect("ask");
    assert!(approx(c.cost("a").await.expect("cost"), 0.02));
    c.ask("b", "one").await.expect("ask");
    assert!(approx(c.cost("b").await.expect("cost"), 0.25));
    assert!(approx(c.total_cost().await.expect("total"), 0.27));
    let costs = c.costs().await.expect("costs");
    assert_eq!(costs.len(), 2);
    assert_eq!(costs[0].0.as_str(), "a");
    let rows = c.status().await.expect("status");
    assert_eq!((rows[0].turns, rows[1].turns), (2, 1));
    assert!(matches!(
        c.cost("ghost").await,
        Err(ApiError::UnknownAgent(_))
    ));
}

async fn cost_and_status_are_current_as_soon_as_ask_returns(c: &Client) {
    c.agent("a", None, AgentOptions::default())
        .await
        .expect("agent");
    for i in 1..=200u32 {
        c.ask("a", "x").await.expect("ask");
        let row = &c.status().await.expect("status")[0];
        assert_eq!((row.status, row.turns), (AgentStatus::Idle, i));
        assert!(approx(row.cost_usd, 0.01 * f64::from(i)), "{row:?}");
    }
}

async fn pipe_sends_the_previous_result_with_the_default_framing(c: &Client) {
    for n in ["planner", "coder", "reviewer"] {
        c.agent(n, None, AgentOptions::default())
            .await
            .expect("agent");
    }
    c.ask("planner", "plan it").await.expect("ask");
    let next = c.pipe("planner", "coder", None).await.expect("pipe");
    assert_eq!(next.as_str(), "coder");
    let coder = c.result("coder").await.expect("result").expect("a result");
    assert_eq!(
        coder.prompt,
        "Here is the output from the previous step:\n\nMock response to: plan it"
    );
    let last = c
        .pipe(next.as_str(), "reviewer", Some("Review this:"))
        .await
        .expect("pipe");
    assert_eq!(last.as_str(), "reviewer");
    let reviewer = c.result("reviewer").await.expect("result").expect("result");
    assert_eq!(reviewer.prompt, format!("Review this:\n\n{}", coder.text));
}

async fn pipe_waits_for_a_busy_source(c: &Client, g: Gates) {
    let gate = "e2e-pipe-wait";
    c.agent("a", None, script(vec![g.step(gate)]))
        .await
        .expect("agent");
    c.agent("b", None, AgentOptions::default())
        .await
        .expect("agent");
    c.cast("a", "slow").await.expect("cast");
    g.arrived(c, "a", gate).await;
    let c2 = c.clone();
    let piped = tokio::spawn(async move { c2.pipe("a", "b", Some("then")).await });
    g.release(gate);
    within("pipe", piped).await.expect("join").expect("pipe");
    let r = c.result("b").await.expect("result").expect("result");
    assert_eq!(r.prompt, "then\n\nMock response to: slow");
}

async fn pipe_without_a_result_is_an_error(c: &Client) {
    c.agent("a", None, script(vec![error("nope")]))
        .await
        .expect("agent");
    c.agent("b", None, AgentOptions::default())
        .await
        .expect("agent");
    let err = c.pipe("a", "b", None).await.expect_err("no result");
    assert_eq!(err, ApiError::NoResult(name("a")));
    assert!(err.to_string().contains("no result"), "{err}");
    let _ = c.ask("a", "x").await;
    assert_eq!(
        c.pipe("a", "b", None).await,
        Err(ApiError::Turn {
            agent: name("a"),
            error: TurnError::Backend("nope".into())
        })
    );
    assert!(matches!(
        c.pipe("ghost", "b", None).await,
        Err(ApiError::UnknownAgent(_))
    ));
    assert_eq!(c.info("b").await.expect("info").turns, 0, "b got nothing");
}

async fn fan_casts_to_each_and_await_all_waits_for_them(c: &Client) {
    let names: Vec<String> = (1..=4).map(|i| format!("worker_{i}")).collect();
    for n in &names {
        c.agent(n, None, AgentOptions::default())
            .await
            .expect("agent");
    }
    c.agent("bystander", None, AgentOptions::default())
        .await
        .expect("agent");
    let refs = c.fan("review the plan", &names).await.expect("fan");
    assert_eq!(refs.len(), 4);
    let refs: Vec<_> = refs.into_iter().map(|r| r.expect("cast")).collect();
    let done = within("await_all", c.await_all(Some(LIMIT)))
        .await
        .expect("await_all");
    for d in &done {
        d.as_ref().expect("await");
    }
    for (n, r) in names.iter().zip(&refs) {
        assert_eq!(r.agent.as_str(), n);
        let res = c.result(n).await.expect("result").expect("a result");
        assert_eq!(res.text, "Mock response to: review the plan");
        assert!(matches!(
            c.poll(&r.to_string()).await.expect("poll"),
            PollState::Completed(_)
        ));
    }
    assert!(c.result("bystander").await.expect("result").is_none());
    let mixed = c
        .fan("x", &["worker_1".to_string(), "ghost".to_string()])
        .await
        .expect("fan");
    assert!(mixed[0].is_ok());
    assert!(matches!(mixed[1], Err(ApiError::UnknownAgent(_))));
}

async fn await_all_covers_every_busy_agent(c: &Client, g: Gates) {
    let names: Vec<String> = (1..=3).map(|i| format!("gated_{i}")).collect();
    let gate = |n: &str| format!("e2e-all-{n}");
    for n in &names {
        c.agent(n, None, script(vec![g.step(&gate(n))]))
            .await
            .expect("agent");
    }
    c.fan("go", &names).await.expect("fan");
    for n in &names {
        g.arrived(c, n, &gate(n)).await;
    }
    // While every turn is held, await_all covers all three: with a short timeout it names each
    // one still working (through a Client the node reads the busy set when the request
    // arrives, so the gates stay shut until it has answered).
    let held = within(
        "await_all (held)",
        c.await_all(Some(Duration::from_millis(200))),
    )
    .await
    .expect("await_all");
    let timed_out: Vec<String> = held
        .iter()
        .map(|d| match d {
            Err(ApiError::AwaitTimeout { agent, .. }) => agent.to_string(),
            other => panic!("expected a timeout while the turn is held, got {other:?}"),
        })
        .collect();
    assert_eq!(timed_out, names);
    for n in &names {
        g.release(&gate(n));
    }
    for n in &names {
        let done = within("await", c.await_agent(n, Some(LIMIT)))
            .await
            .expect("await");
        assert!(matches!(done.last, Some(Ok(_))), "{done:?}");
    }
}

async fn reset_clears_result_cost_and_turns(c: &Client) {
    c.agent("a", Some("a role".into()), AgentOptions::default())
        .await
        .expect("agent");
    let r = c.cast("a", "one").await.expect("cast");
    c.await_agent("a", Some(LIMIT)).await.expect("await");
    c.ask("a", "two").await.expect("ask");
    let before = c.info("a").await.expect("info");
    assert_eq!(before.turns, 2);
    assert!(before.session_id.is_some());
    c.reset("a").await.expect("reset");
    let info = c.info("a").await.expect("info");
    assert_eq!(info.turns, 0);
    assert!(approx(info.cost_usd, 0.0));
    assert!(info.last_result.is_none());
    assert_eq!(info.session_id, None);
    assert_eq!(info.role.as_deref(), Some("a role"), "same config");
    assert_eq!(c.result("a").await.expect("result"), None);
    assert!(c.history("a", None).await.expect("history").is_empty());
    assert!(approx(c.cost("a").await.expect("cost"), 0.0));
    assert!(approx(c.total_cost().await.expect("total"), 0.0));
    assert_eq!(
        c.poll(&r.to_string()).await.expect("poll"),
        PollState::NotFound
    );
    c.ask("a", "three").await.expect("works after reset");
    assert_eq!(c.info("a").await.expect("info").turns, 1);
}

fn is_cancelled(err: &ApiError) -> bool {
    matches!(
        err,
        ApiError::Turn {
            error: TurnError::Cancelled(_),
            ..
        }
    )
}

async fn reset_cancels_queued_and_in_flight_requests(c: &Client, g: Gates) {
    let gate = "e2e-reset-busy";
    c.agent("a", None, script(vec![g.held(gate)]))
        .await
        .expect("agent");
    let c1 = c.clone();
    let asked = tokio::spawn(async move { c1.ask("a", "long").await });
    g.arrived(c, "a", gate).await;
    c.cast("a", "queued").await.expect("cast");
    c.reset("a").await.expect("reset");
    let err = within("the cancelled ask", asked)
        .await
        .expect("join")
        .expect_err("cancelled");
    assert!(is_cancelled(&err), "{err:?}");
    let info = c.info("a").await.expect("info");
    assert_eq!((info.status, info.queue_depth), (AgentStatus::Idle, 0));
    // A fresh conversation, but the script goes on: the next turn answers at once.
    let r = within("ask after reset", c.ask("a", "again"))
        .await
        .expect("ask");
    assert_eq!(r.text, "Mock response to: again");
}

async fn dismiss_removes_the_agent(c: &Client) {
    c.agent("a", None, AgentOptions::default())
        .await
        .expect("agent");
    c.agent("b", None, AgentOptions::default())
        .await
        .expect("agent");
    c.ask("a", "x").await.expect("ask");
    c.ask("b", "x").await.expect("ask");
    assert!(approx(c.total_cost().await.expect("total"), 0.02));
    c.dismiss("a").await.expect("dismiss");
    assert_eq!(c.agents().await.expect("agents"), [name("b")]);
    assert!(matches!(
        c.ask("a", "x").await,
        Err(ApiError::UnknownAgent(_))
    ));
    assert!(matches!(c.cost("a").await, Err(ApiError::UnknownAgent(_))));
    assert!(matches!(c.info("a").await, Err(ApiError::UnknownAgent(_))));
    assert!(
        approx(c.total_cost().await.expect("total"), 0.01),
        "dismissed spend drops out"
    );
    c.dismiss("a").await.expect("no-op");
    c.dismiss("never_was").await.expect("no-op");
    let events = c.events(50, Some(Topic::Agent)).await.expect("events");
    assert!(
        events.iter().any(|e| e.line == "[agent] a dismissed"),
        "{events:?}"
    );
    c.agent("a", None, AgentOptions::default())
        .await
        .expect("agent");
    assert_eq!(c.info("a").await.expect("info").turns, 0);
}

async fn dismiss_a_busy_agent_cancels_its_callers(c: &Client, g: Gates) {
    let gate = "e2e-dismiss-busy";
    c.agent("a", None, script(vec![g.held(gate)]))
        .await
        .expect("agent");
    let c1 = c.clone();
    let asked = tokio::spawn(async move { c1.ask("a", "long").await });
    g.arrived(c, "a", gate).await;
    within("dismiss", c.dismiss("a")).await.expect("dismiss");
    let err = within("the cancelled ask", asked)
        .await
        .expect("join")
        .expect_err("cancelled");
    assert!(is_cancelled(&err), "{err:?}");
    assert!(c.agents().await.expect("agents").is_empty());
}

async fn agent_with_an_existing_name_replaces_it(c: &Client) {
    c.agent("a", Some("first role".into()), AgentOptions::default())
        .await
        .expect("agent");
    c.ask("a", "x").await.expect("ask");
    let mut rx = c.watch().await.expect("watch");
    c.agent("a", Some("second role".into()), AgentOptions::default())
        .await
        .expect("replace");
    let ev = next_event(&mut rx, "the replaced event", |e| e.kind == "replaced").await;
    assert_eq!(ev.line, "[agent] a replaced");
    assert_eq!(c.agents().await.expect("agents"), [name("a")]);
    let info = c.info("a").await.expect("info");
    assert_eq!(info.role.as_deref(), Some("second role"));
    assert_eq!(info.turns, 0);
    assert!(approx(c.cost("a").await.expect("cost"), 0.0));
    c.ask("a", "y").await.expect("the new agent answers");
}

async fn configure_applies_to_new_agents_only(c: &Client) {
    c.agent("old", Some("Old role.".into()), AgentOptions::default())
        .await
        .expect("agent");
    c.configure(
        Some("Global context.".into()),
        AgentOptions {
            model: Some("sonnet".into()),
            max_turns: Some(7),
            ..Default::default()
        },
        None,
    )
    .await
    .expect("configure");
    c.configure(
        None,
        AgentOptions {
            effort: Some(workshop_types::Effort::High),
            ..Default::default()
        },
        None,
    )
    .await
    .expect("configure");
    let cfg = c.config().await.expect("config");
    assert_eq!(cfg.context.as_deref(), Some("Global context."));
    assert_eq!(cfg.defaults.model.as_deref(), Some("sonnet"));
    c.agent(
        "new",
        Some("Write code.".into()),
        AgentOptions {
            max_turns: Some(3),
            ..Default::default()
        },
    )
    .await
    .expect("agent");
    let old = c.info("old").await.expect("info");
    assert_eq!(old.model, None);
    assert_eq!(old.system_prompt.as_deref(), Some("Old role."));
    let new = c.info("new").await.expect("info");
    assert_eq!(new.model.as_deref(), Some("sonnet"));
    assert_eq!(new.max_turns, Some(3), "the agent's own option wins");
    assert_eq!(
        new.system_prompt.as_deref(),
        Some("Global context.\n\nWrite code.")
    );
    assert_eq!(new.permission_mode, PermissionMode::AcceptEdits.as_str());
}

async fn profiles_and_from_profile_with_overrides(c: &Client) {
    c.profile(
        "coder",
        Some("You write Rust.".into()),
        AgentOptions {
            model: Some("sonnet".into()),
            max_turns: Some(5),
            permission_mode: Some(PermissionMode::Plan),
            ..Default::default()
        },
    )
    .await
    .expect("profile");
    c.profile(
        "reviewer",
        Some("You review.".into()),
        AgentOptions::default(),
    )
    .await
    .expect("profile");
    let names: Vec<String> = c
        .profiles()
        .await
        .expect("profiles")
        .into_iter()
        .map(|p| p.name)
        .collect();
    assert_eq!(names, ["coder", "reviewer"]);
    let n = c
        .from_profile(
            "coder",
            "impl",
            AgentOptions {
                model: Some("opus".into()),
                ..Default::default()
            },
        )
        .await
        .expect("from_profile");
    assert_eq!(n.as_str(), "impl");
    let info = c.info("impl").await.expect("info");
    assert_eq!(info.model.as_deref(), Some("opus"), "the override wins");
    assert_eq!(info.max_turns, Some(5), "the profile's option stays");
    assert_eq!(info.permission_mode, "plan");
    assert_eq!(info.role.as_deref(), Some("You write Rust."));
    c.from_profile(":reviewer", "rev", AgentOptions::default())
        .await
        .expect("from_profile");
    let err = c
        .from_profile("designer", "d", AgentOptions::default())
        .await
        .expect_err("unknown profile");
    assert_eq!(err, ApiError::UnknownProfile("designer".into()));
    assert!(err.to_string().contains("profiles()"), "{err}");
    assert!(c
        .agents()
        .await
        .expect("agents")
        .iter()
        .all(|a| a.as_str() != "d"));
}

async fn invalid_options_and_names_give_clear_errors(c: &Client) {
    // Parsing (no node involved) says what is valid.
    let err: ApiError = "yolo"
        .parse::<PermissionMode>()
        .expect_err("invalid mode")
        .into();
    assert!(matches!(err, ApiError::InvalidOption(_)));
    let msg = err.to_string();
    assert!(
        msg.contains("yolo") && msg.contains("accept_edits"),
        "{msg}"
    );
    let parsed: Result<AgentOptions, _> =
        serde_json::from_value(serde_json::json!({"permission_mode": "yolo"}));
    let msg = parsed.expect_err("invalid mode").to_string();
    assert!(msg.contains("invalid permission_mode"), "{msg}");
    let parsed: Result<AgentOptions, _> =
        serde_json::from_value(serde_json::json!({"no_such_option": 1}));
    assert!(parsed.is_err());
    // Options the type system cannot catch, refused by the node.
    let bad_backend = AgentOptions {
        backend: Some("gpt".into()),
        ..Default::default()
    };
    let err = c.agent("a", None, bad_backend).await.expect_err("backend");
    assert!(err.to_string().contains("unknown backend"), "{err}");
    let negative = AgentOptions {
        max_cost_usd: Some(-1.0),
        ..Default::default()
    };
    assert!(matches!(
        c.agent("a", None, negative).await,
        Err(ApiError::InvalidOption(_))
    ));
    assert!(c
        .configure(
            None,
            AgentOptions {
                max_turns: Some(0),
                ..Default::default()
            },
            None
        )
        .await
        .is_err());
    for bad in ["", "1abc", "a b", "x/y", &"n".repeat(65)] {
        let err = c
            .agent(bad, None, AgentOptions::default())
            .await
            .expect_err(bad);
        assert!(matches!(err, ApiError::InvalidName(_)), "{bad:?}: {err:?}");
        assert!(err.to_string().contains("name"), "{err}");
    }
    assert!(matches!(
        c.ask("a b", "x").await,
        Err(ApiError::InvalidName(_))
    ));
    assert!(matches!(
        c.profile("bad name", None, AgentOptions::default()).await,
        Err(ApiError::InvalidName(_))
    ));
    assert!(c.agents().await.expect("agents").is_empty());
    c.agent(":impl", None, AgentOptions::default())
        .await
        .expect("atom spelling");
    assert_eq!(c.agents().await.expect("agents"), [name("impl")]);
}

async fn unknown_agents_give_a_clear_error_everywhere(c: &Client) {
    let want = ApiError::UnknownAgent("ghost".into());
    assert_eq!(c.ask("ghost", "x").await.expect_err("ask"), want);
    assert_eq!(c.cast("ghost", "x").await.expect_err("cast"), want);
    assert_eq!(c.info("ghost").await.expect_err("info"), want);
    assert_eq!(c.result("ghost").await.expect_err("result"), want);
    assert_eq!(c.history("ghost", None).await.expect_err("history"), want);
    assert_eq!(c.await_agent("ghost", None).await.expect_err("await"), want);
    assert_eq!(c.interrupt("ghost").await.expect_err("interrupt"), want);
    assert_eq!(c.halt("ghost").await.expect_err("halt"), want);
    assert_eq!(c.resume("ghost").await.expect_err("resume"), want);
    assert_eq!(c.notify("ghost", "e").await.expect_err("notify"), want);
    assert_eq!(c.reset("ghost").await.expect_err("reset"), want);
    assert_eq!(c.cost("ghost").await.expect_err("cost"), want);
    let msg = want.to_string();
    assert!(msg.contains("ghost") && msg.contains("agents()"), "{msg}");
}

async fn a_per_agent_budget_refuses_the_next_send(c: &Client) {
    let opts = AgentOptions {
        max_cost_usd: Some(0.005),
        ..Default::default()
    };
    c.agent("a", None, opts).await.expect("agent");
    c.ask("a", "one").await.expect("first ask");
    let err = c.ask("a", "two").await.expect_err("budget");
    assert!(matches!(&err, ApiError::BudgetExceeded(m) if m.contains("a budget exceeded")));
    assert!(err.to_string().starts_with("budget_exceeded"), "{err}");
    assert!(matches!(
        c.cast("a", "two").await,
        Err(ApiError::BudgetExceeded(_))
    ));
    assert_eq!(c.info("a").await.expect("info").turns, 1);
    let events = c.events(20, Some(Topic::Budget)).await.expect("events");
    assert!(
        events
            .iter()
            .any(|e| e.line.starts_with("[budget] a budget exceeded")),
        "{events:?}"
    );
    c.reset("a").await.expect("reset");
    c.ask("a", "three").await.expect("ask after reset");
}

async fn a_global_budget_refuses_every_agent(c: &Client) {
    c.configure(None, AgentOptions::default(), Some(0.015))
        .await
        .expect("configure");
    c.agent("a", None, AgentOptions::default())
        .await
        .expect("agent");
    c.agent("b", None, AgentOptions::default())
        .await
        .expect("agent");
    c.ask("a", "x").await.expect("0.01 of 0.015");
    c.ask("b", "x").await.expect("0.01 spent: still under");
    for n in ["a", "b"] {
        let err = c.ask(n, "y").await.expect_err("global budget");
        assert!(
            matches!(&err, ApiError::BudgetExceeded(m) if m.contains("global budget exceeded")),
            "{err:?}"
        );
    }
    assert!(approx(c.total_cost().await.expect("total"), 0.02));
    c.dismiss("b").await.expect("dismiss");
    c.ask("a", "z").await.expect("0.01 of 0.015 again");
}

async fn the_event_log_has_agentworkshops_lines(c: &Client) {
    c.agent("impl", None, AgentOptions::default())
        .await
        .expect("agent");
    c.ask("impl", "hello").await.expect("ask");
    c.cast("impl", "later").await.expect("cast");
    c.await_agent("impl", Some(LIMIT)).await.expect("await");
    let lines: Vec<String> = c
        .events(20, None)
        .await
        .expect("events")
        .into_iter()
        .map(|e| e.line)
        .collect();
    let want = [
        "[agent] impl created",
        "[ask] impl complete ($0.01) — Mock response to: hello",
        "[cast] impl complete ($0.01) — Mock response to: later",
    ];
    let mut it = lines.iter();
    for w in want {
        assert!(it.any(|l| l == w), "missing (in order) {w:?} in {lines:?}");
    }
    let last_two = c.events(2, None).await.expect("events");
    assert_eq!(last_two.len(), 2);
    assert!(last_two[0].seq < last_two[1].seq);
    c.clear_events().await.expect("clear");
    assert!(c.events(20, None).await.expect("events").is_empty());
}

async fn the_status_table_shows_task_and_queue(c: &Client, g: Gates) {
    let gate = "e2e-status";
    c.agent("b_idle", None, AgentOptions::default())
        .await
        .expect("agent");
    c.agent("a_busy", None, script(vec![g.step(gate)]))
        .await
        .expect("agent");
    c.cast("a_busy", "first line\nsecond line")
        .await
        .expect("cast");
    g.arrived(c, "a_busy", gate).await;
    c.cast("a_busy", "queued").await.expect("cast");
    let rows = c.status().await.expect("status");
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0].name.as_str(), "a_busy");
    assert_eq!(rows[0].status, AgentStatus::Working);
    assert_eq!(rows[0].task.as_deref(), Some("first line"));
    assert_eq!(rows[0].queued, 1);
    assert_eq!(rows[1].status, AgentStatus::Idle);
    g.release(gate);
    c.await_agent("a_busy", Some(LIMIT)).await.expect("await");
    let row = &c.status().await.expect("status")[0];
    assert_eq!(
        (row.status, row.queued, row.turns),
        (AgentStatus::Idle, 0, 2)
    );
    assert!(row.task.is_none());
    let hist = c.history("a_busy", Some(1)).await.expect("history");
    assert_eq!(hist.len(), 1);
    assert_eq!(hist[0].prompt, "queued");
}

async fn reset_all_dismisses_everything_and_clears_configuration(c: &Client) {
    c.configure(Some("ctx".into()), AgentOptions::default(), Some(1.0))
        .await
        .expect("configure");
    c.profile("p", None, AgentOptions::default())
        .await
        .expect("profile");
    c.agent("a", None, AgentOptions::default())
        .await
        .expect("agent");
    c.agent("b", None, AgentOptions::default())
        .await
        .expect("agent");
    c.reset_all().await.expect("reset_all");
    assert!(c.agents().await.expect("agents").is_empty());
    assert!(c.profiles().await.expect("profiles").is_empty());
    assert_eq!(c.config().await.expect("config"), GlobalConfig::default());
    assert!(approx(c.total_cost().await.expect("total"), 0.0));
}

/// Two nodes, one client of each in this process: the same agent name on both, and the
/// calls reach the node they were made on.
async fn two_nodes(one: &Client, two: &Client) {
    one.agent("a", None, AgentOptions::default())
        .await
        .expect("agent");
    two.agent("a", None, AgentOptions::default())
        .await
        .expect("same name, other node");
    one.ask("a", "x").await.expect("ask");
    assert!(approx(two.total_cost().await.expect("total"), 0.0));
    assert!(approx(one.total_cost().await.expect("total"), 0.01));
    let (h1, h2) = (
        one.node_info().await.expect("info"),
        two.node_info().await.expect("info"),
    );
    assert_ne!(h1.data_dir, h2.data_dir, "two different nodes answered");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_in_this_process() {
    let (d1, d2) = (
        tempfile::tempdir().expect("dir"),
        tempfile::tempdir().expect("dir"),
    );
    let one = workshop_node::Node::open(d1.path()).await.expect("node");
    let two = workshop_node::Node::open(d2.path()).await.expect("node");
    two_nodes(&one.client(), &two.client()).await;
    one.shutdown().await;
    two.client().ask("a", "y").await.expect("still up");
    two.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_node_processes_from_one_client_process() {
    let (d1, d2) = (
        tempfile::tempdir().expect("dir"),
        tempfile::tempdir().expect("dir"),
    );
    let mut n1 = NodeProcess::start(d1.path());
    let n2 = NodeProcess::start(d2.path());
    let (one, two) = (n1.client().await, n2.client().await);
    two_nodes(&one, &two).await;
    drop(one);
    assert!(n1.terminate().success(), "{}", n1.stderr());
    two.ask("a", "y").await.expect("still up");
}
