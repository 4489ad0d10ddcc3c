//! AgentWorkshop's API tests (research/seeds.md §1.1, §1.8, §1.13) through the Workshop API on a
//! real node with the script backend (its default reply is AgentWorkshop's mock: "Mock response
//! to: <prompt>" at $0.01).

mod common;

use common::*;
use workshop_node::ApiError;
use workshop_types::{AgentOptions, AgentStatus, PermissionMode, PollState, Topic, TurnError};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cost_accumulates_per_agent_and_in_total() {
    let node = node().await;
    let w = &node.workshop;
    w.agent("a", None, AgentOptions::default())
        .await
        .expect("agent");
    w.agent("b", None, script(vec![cost(0.25)]))
        .await
        .expect("agent");
    w.ask("a", "one").await.expect("ask");
    assert!(approx(w.cost("a").expect("cost"), 0.01));
    w.ask("a", "two").await.expect("ask");
    assert!(approx(w.cost("a").expect("cost"), 0.02));
    w.ask("b", "one").await.expect("ask");
    assert!(approx(w.cost("b").expect("cost"), 0.25));
    assert!(approx(w.total_cost(), 0.27));
    let costs = w.costs();
    assert_eq!(costs.len(), 2);
    assert_eq!(costs[0].0.as_str(), "a");
    let rows = w.status();
    assert_eq!((rows[0].turns, rows[1].turns), (2, 1));
    assert!(matches!(w.cost("ghost"), Err(ApiError::UnknownAgent(_))));
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cost_and_status_are_current_as_soon_as_ask_returns() {
    // Regression: the status row used to be reported after the reply went out.
    let node = node().await;
    let w = &node.workshop;
    w.agent("a", None, AgentOptions::default())
        .await
        .expect("agent");
    for i in 1..=200u32 {
        w.ask("a", "x").await.expect("ask");
        let row = &w.status()[0];
        assert_eq!((row.status, row.turns), (AgentStatus::Idle, i));
        assert!(approx(row.cost_usd, 0.01 * f64::from(i)), "{row:?}");
    }
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipe_sends_the_previous_result_with_the_default_framing() {
    let node = node().await;
    let w = &node.workshop;
    for n in ["planner", "coder", "reviewer"] {
        w.agent(n, None, AgentOptions::default())
            .await
            .expect("agent");
    }
    w.ask("planner", "plan it").await.expect("ask");
    let next = w.pipe("planner", "coder", None).await.expect("pipe");
    assert_eq!(next.as_str(), "coder");
    let coder = w.result("coder").await.expect("result").expect("a result");
    assert_eq!(
        coder.prompt,
        "Here is the output from the previous step:\n\nMock response to: plan it"
    );
    // pipe returns the receiving agent's name, so pipes chain.
    let last = w
        .pipe(next.as_str(), "reviewer", Some("Review this:"))
        .await
        .expect("pipe");
    assert_eq!(last.as_str(), "reviewer");
    let reviewer = w.result("reviewer").await.expect("result").expect("result");
    assert_eq!(reviewer.prompt, format!("Review this:\n\n{}", coder.text));
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipe_waits_for_a_busy_source() {
    let g = "api-pipe-wait";
    let node = node().await;
    let w = &node.workshop;
    w.agent("a", None, script(vec![gate(g)]))
        .await
        .expect("agent");
    w.agent("b", None, AgentOptions::default())
        .await
        .expect("agent");
    w.cast("a", "slow").await.expect("cast");
    within("the turn at the gate", gates::arrived(g)).await;
    let w2 = w.clone();
    let piped = tokio::spawn(async move { w2.pipe("a", "b", Some("then")).await });
    gates::release(g);
    within("pipe", piped).await.expect("join").expect("pipe");
    let r = w.result("b").await.expect("result").expect("result");
    assert_eq!(r.prompt, "then\n\nMock response to: slow");
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipe_without_a_result_is_an_error() {
    let node = node().await;
    let w = &node.workshop;
    w.agent("a", None, script(vec![error("nope")]))
        .await
        .expect("agent");
    w.agent("b", None, AgentOptions::default())
        .await
        .expect("agent");
    let err = w.pipe("a", "b", None).await.expect_err("no result");
    assert_eq!(err, ApiError::NoResult(name("a")));
    assert!(err.to_string().contains("no result"), "{err}");
    // A failed last turn is passed through.
    let _ = w.ask("a", "x").await;
    assert_eq!(
        w.pipe("a", "b", None).await,
        Err(ApiError::Turn {
            agent: name("a"),
            error: TurnError::Backend("nope".into())
        })
    );
    assert!(matches!(
        w.pipe("ghost", "b", None).await,
        Err(ApiError::UnknownAgent(_))
    ));
    assert_eq!(w.info("b").await.expect("info").turns, 0, "b got nothing");
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fan_casts_to_each_and_await_all_waits_for_them() {
    let node = node().await;
    let w = &node.workshop;
    let names: Vec<String> = (1..=4).map(|i| format!("worker_{i}")).collect();
    for n in &names {
        w.agent(n, None, AgentOptions::default())
            .await
            .expect("agent");
    }
    w.agent("bystander", None, AgentOptions::default())
        .await
        .expect("agent");
    let refs = w.fan("review the plan", &names).await;
    assert_eq!(refs.len(), 4);
    let refs: Vec<_> = refs.into_iter().map(|r| r.expect("cast")).collect();
    let done = within("await_all", w.await_all(Some(LIMIT))).await;
    // Whatever await_all covered, each fanned-out request is complete once it returns.
    for d in &done {
        d.as_ref().expect("await");
    }
    for (n, r) in names.iter().zip(&refs) {
        assert_eq!(r.agent.as_str(), n);
        let res = w.result(n).await.expect("result").expect("a result");
        assert_eq!(res.text, "Mock response to: review the plan");
        assert!(matches!(
            w.poll(&r.to_string()).await.expect("poll"),
            PollState::Completed(_)
        ));
    }
    assert!(w.result("bystander").await.expect("result").is_none());
    // fan reports per-agent errors without stopping.
    let mixed = w
        .fan("x", &["worker_1".to_string(), "ghost".to_string()])
        .await;
    assert!(mixed[0].is_ok());
    assert!(matches!(mixed[1], Err(ApiError::UnknownAgent(_))));
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn await_all_covers_every_busy_agent() {
    let node = node().await;
    let w = &node.workshop;
    let names: Vec<String> = (1..=3).map(|i| format!("gated_{i}")).collect();
    for n in &names {
        w.agent(n, None, script(vec![gate(&format!("api-all-{n}"))]))
            .await
            .expect("agent");
    }
    w.fan("go", &names).await;
    for n in &names {
        within("a gated turn", gates::arrived(&format!("api-all-{n}"))).await;
    }
    // Poll await_all once while every turn is held at its gate, so it sees all three busy.
    let mut all = Box::pin(w.await_all(Some(LIMIT)));
    tokio::select! {
        biased;
        _ = &mut all => panic!("await_all returned while every agent was busy"),
        _ = tokio::task::yield_now() => {}
    }
    for n in &names {
        gates::release(&format!("api-all-{n}"));
    }
    let done = within("await_all", all).await;
    let agents: Vec<String> = done
        .iter()
        .map(|d| d.as_ref().expect("await").agent.to_string())
        .collect();
    assert_eq!(agents, names);
    for d in done {
        assert!(matches!(d.expect("await").last, Some(Ok(_))));
    }
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_clears_result_cost_and_turns() {
    let node = node().await;
    let w = &node.workshop;
    w.agent("a", Some("a role".into()), AgentOptions::default())
        .await
        .expect("agent");
    let c = w.cast("a", "one").await.expect("cast");
    w.await_agent("a", Some(LIMIT)).await.expect("await");
    w.ask("a", "two").await.expect("ask");
    let before = w.info("a").await.expect("info");
    assert_eq!(before.turns, 2);
    assert!(before.session_id.is_some());
    w.reset("a").await.expect("reset");
    let info = w.info("a").await.expect("info");
    assert_eq!(info.turns, 0);
    assert!(approx(info.cost_usd, 0.0));
    assert!(info.last_result.is_none());
    assert_eq!(info.session_id, None);
    assert_eq!(info.role.as_deref(), Some("a role"), "same config");
    assert_eq!(w.result("a").await.expect("result"), None);
    assert!(w.history("a", None).await.expect("history").is_empty());
    assert!(approx(w.cost("a").expect("cost"), 0.0));
    assert!(approx(w.total_cost(), 0.0));
    assert_eq!(
        w.poll(&c.to_string()).await.expect("poll"),
        PollState::NotFound
    );
    w.ask("a", "three").await.expect("works after reset");
    assert_eq!(w.info("a").await.expect("info").turns, 1);
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_cancels_queued_and_in_flight_requests() {
    let g = "api-reset-busy";
    let node = node().await;
    let w = node.workshop.clone();
    w.agent("a", None, script(vec![gate(g)]))
        .await
        .expect("agent");
    let w1 = w.clone();
    let asked = tokio::spawn(async move { w1.ask("a", "long").await });
    within("the turn at the gate", gates::arrived(g)).await;
    w.cast("a", "queued").await.expect("cast");
    w.reset("a").await.expect("reset");
    let err = within("the cancelled ask", asked)
        .await
        .expect("join")
        .expect_err("cancelled");
    assert!(
        matches!(
            &err,
            ApiError::Turn {
                error: TurnError::Cancelled(_),
                ..
            }
        ),
        "{err:?}"
    );
    let info = w.info("a").await.expect("info");
    assert_eq!((info.status, info.queue_depth), (AgentStatus::Idle, 0));
    // A fresh conversation, but the script goes on (its gate step was used by the cancelled
    // turn): the next turn answers at once with the default reply.
    let r = within("ask after reset", w.ask("a", "again"))
        .await
        .expect("ask");
    assert_eq!(r.text, "Mock response to: again");
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dismiss_removes_the_agent() {
    let node = node().await;
    let w = &node.workshop;
    w.agent("a", None, AgentOptions::default())
        .await
        .expect("agent");
    w.agent("b", None, AgentOptions::default())
        .await
        .expect("agent");
    w.ask("a", "x").await.expect("ask");
    w.ask("b", "x").await.expect("ask");
    assert!(approx(w.total_cost(), 0.02));
    w.dismiss("a").await.expect("dismiss");
    assert_eq!(w.agents(), [name("b")]);
    assert!(matches!(
        w.ask("a", "x").await,
        Err(ApiError::UnknownAgent(_))
    ));
    assert!(matches!(w.cost("a"), Err(ApiError::UnknownAgent(_))));
    assert!(matches!(w.info("a").await, Err(ApiError::UnknownAgent(_))));
    assert!(approx(w.total_cost(), 0.01), "dismissed spend drops out");
    // Dismissing an absent agent is a no-op.
    w.dismiss("a").await.expect("no-op");
    w.dismiss("never_was").await.expect("no-op");
    let events = w.events(50, Some(Topic::Agent)).await.expect("events");
    assert!(
        events.iter().any(|e| e.line == "[agent] a dismissed"),
        "{events:?}"
    );
    // The name is free again.
    w.agent("a", None, AgentOptions::default())
        .await
        .expect("agent");
    assert_eq!(w.info("a").await.expect("info").turns, 0);
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dismiss_a_busy_agent_cancels_its_callers() {
    let g = "api-dismiss-busy";
    let node = node().await;
    let w = node.workshop.clone();
    w.agent("a", None, script(vec![gate(g)]))
        .await
        .expect("agent");
    let w1 = w.clone();
    let asked = tokio::spawn(async move { w1.ask("a", "long").await });
    within("the turn at the gate", gates::arrived(g)).await;
    within("dismiss", w.dismiss("a")).await.expect("dismiss");
    let err = within("the cancelled ask", asked)
        .await
        .expect("join")
        .expect_err("cancelled");
    assert!(
        matches!(
            &err,
            ApiError::Turn {
                error: TurnError::Cancelled(_),
                ..
            }
        ),
        "{err:?}"
    );
    assert!(w.agents().is_empty());
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_with_an_existing_name_replaces_it() {
    let node = node().await;
    let w = &node.workshop;
    w.agent("a", Some("first role".into()), AgentOptions::default())
        .await
        .expect("agent");
    w.ask("a", "x").await.expect("ask");
    let mut rx = w.watch();
    w.agent("a", Some("second role".into()), AgentOptions::default())
        .await
        .expect("replace");
    let ev = next_event(&mut rx, "the replaced event", |e| e.kind == "replaced").await;
    assert_eq!(ev.line, "[agent] a replaced");
    assert_eq!(w.agents(), [name("a")]);
    let info = w.info("a").await.expect("info");
    assert_eq!(info.role.as_deref(), Some("second role"));
    assert_eq!(info.turns, 0);
    assert!(approx(w.cost("a").expect("cost"), 0.0));
    w.ask("a", "y").await.expect("the new agent answers");
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configure_applies_to_new_agents_only() {
    let node = node().await;
    let w = &node.workshop;
    w.agent("old", Some("Old role.".into()), AgentOptions::default())
        .await
        .expect("agent");
    w.configure(
        Some("Global context.".into()),
        AgentOptions {
            model: Some("sonnet".into()),
            max_turns: Some(7),
            ..Default::default()
        },
        None,
    )
    .expect("configure");
    // Incremental: a later configure keeps what it does not set.
    w.configure(
        None,
        AgentOptions {
            effort: Some(workshop_types::Effort::High),
            ..Default::default()
        },
        None,
    )
    .expect("configure");
    let cfg = w.config();
    assert_eq!(cfg.context.as_deref(), Some("Global context."));
    assert_eq!(cfg.defaults.model.as_deref(), Some("sonnet"));
    w.agent(
        "new",
        Some("Write code.".into()),
        AgentOptions {
            max_turns: Some(3),
            ..Default::default()
        },
    )
    .await
    .expect("agent");
    let old = w.info("old").await.expect("info");
    assert_eq!(old.model, None);
    assert_eq!(old.system_prompt.as_deref(), Some("Old role."));
    let new = w.info("new").await.expect("info");
    assert_eq!(new.model.as_deref(), Some("sonnet"));
    assert_eq!(new.max_turns, Some(3), "the agent's own option wins");
    assert_eq!(
        new.system_prompt.as_deref(),
        Some("Global context.\n\nWrite code.")
    );
    // The non-interactive default permission mode.
    assert_eq!(new.permission_mode, PermissionMode::AcceptEdits.as_str());
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn profiles_and_from_profile_with_overrides() {
    let node = node().await;
    let w = &node.workshop;
    w.profile(
        "coder",
        Some("You write Rust.".into()),
        AgentOptions {
            model: Some("sonnet".into()),
            max_turns: Some(5),
            permission_mode: Some(PermissionMode::Plan),
            ..Default::default()
        },
    )
    .expect("profile");
    w.profile(
        "reviewer",
        Some("You review.".into()),
        AgentOptions::default(),
    )
    .expect("profile");
    let names: Vec<String> = w.profiles().into_iter().map(|p| p.name).collect();
    assert_eq!(names, ["coder", "reviewer"]);
    let n = w
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
    let info = w.info("impl").await.expect("info");
    assert_eq!(info.model.as_deref(), Some("opus"), "the override wins");
    assert_eq!(info.max_turns, Some(5), "the profile's option stays");
    assert_eq!(info.permission_mode, "plan");
    assert_eq!(info.role.as_deref(), Some("You write Rust."));
    // AgentWorkshop's atom spelling works too.
    w.from_profile(":reviewer", "rev", AgentOptions::default())
        .await
        .expect("from_profile");
    let err = w
        .from_profile("designer", "d", AgentOptions::default())
        .await
        .expect_err("unknown profile");
    assert_eq!(err, ApiError::UnknownProfile("designer".into()));
    assert!(err.to_string().contains("profiles()"), "{err}");
    assert!(w.agents().iter().all(|a| a.as_str() != "d"));
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_options_and_names_give_clear_errors() {
    let node = node().await;
    let w = &node.workshop;
    // An unknown permission mode cannot even be built; parsing says what is valid.
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
    // The same from options given as data (console, config files).
    let parsed: Result<AgentOptions, _> =
        serde_json::from_value(serde_json::json!({"permission_mode": "yolo"}));
    let msg = parsed.expect_err("invalid mode").to_string();
    assert!(msg.contains("invalid permission_mode"), "{msg}");
    let parsed: Result<AgentOptions, _> =
        serde_json::from_value(serde_json::json!({"no_such_option": 1}));
    assert!(parsed.is_err());
    // Options the type system cannot catch.
    let bad_backend = AgentOptions {
        backend: Some("gpt".into()),
        ..Default::default()
    };
    let err = w.agent("a", None, bad_backend).await.expect_err("backend");
    assert!(err.to_string().contains("unknown backend"), "{err}");
    let negative = AgentOptions {
        max_cost_usd: Some(-1.0),
        ..Default::default()
    };
    assert!(matches!(
        w.agent("a", None, negative).await,
        Err(ApiError::InvalidOption(_))
    ));
    assert!(w
        .configure(
            None,
            AgentOptions {
                max_turns: Some(0),
                ..Default::default()
            },
            None
        )
        .is_err());
    // Names.
    for bad in ["", "1abc", "a b", "x/y", &"n".repeat(65)] {
        let err = w
            .agent(bad, None, AgentOptions::default())
            .await
            .expect_err(bad);
        assert!(matches!(err, ApiError::InvalidName(_)), "{bad:?}: {err:?}");
        assert!(err.to_string().contains("name"), "{err}");
    }
    assert!(matches!(
        w.ask("a b", "x").await,
        Err(ApiError::InvalidName(_))
    ));
    assert!(matches!(
        w.profile("bad name", None, AgentOptions::default()),
        Err(ApiError::InvalidName(_))
    ));
    // Nothing was created by the failures, and the node still works.
    assert!(w.agents().is_empty());
    w.agent(":impl", None, AgentOptions::default())
        .await
        .expect("atom spelling");
    assert_eq!(w.agents(), [name("impl")]);
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_agents_give_a_clear_error_everywhere() {
    let node = node().await;
    let w = &node.workshop;
    let want = ApiError::UnknownAgent("ghost".into());
    assert_eq!(w.ask("ghost", "x").await.expect_err("ask"), want);
    assert_eq!(w.cast("ghost", "x").await.expect_err("cast"), want);
    assert_eq!(w.info("ghost").await.expect_err("info"), want);
    assert_eq!(w.result("ghost").await.expect_err("result"), want);
    assert_eq!(w.history("ghost", None).await.expect_err("history"), want);
    assert_eq!(w.await_agent("ghost", None).await.expect_err("await"), want);
    assert_eq!(w.interrupt("ghost").expect_err("interrupt"), want);
    assert_eq!(w.halt("ghost").expect_err("halt"), want);
    assert_eq!(w.resume("ghost").expect_err("resume"), want);
    assert_eq!(w.notify("ghost", "e").expect_err("notify"), want);
    assert_eq!(w.reset("ghost").await.expect_err("reset"), want);
    assert_eq!(w.cost("ghost").expect_err("cost"), want);
    let msg = want.to_string();
    assert!(msg.contains("ghost") && msg.contains("agents()"), "{msg}");
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_per_agent_budget_refuses_the_next_send() {
    let node = node().await;
    let w = &node.workshop;
    let opts = AgentOptions {
        max_cost_usd: Some(0.005),
        ..Default::default()
    };
    w.agent("a", None, opts).await.expect("agent");
    // The turn that crosses the limit completes ...
    w.ask("a", "one").await.expect("first ask");
    // ... the next send is refused, ask and cast alike.
    let err = w.ask("a", "two").await.expect_err("budget");
    assert!(matches!(&err, ApiError::BudgetExceeded(m) if m.contains("a budget exceeded")));
    assert!(err.to_string().starts_with("budget_exceeded"), "{err}");
    assert!(matches!(
        w.cast("a", "two").await,
        Err(ApiError::BudgetExceeded(_))
    ));
    assert_eq!(w.info("a").await.expect("info").turns, 1);
    let events = w.events(20, Some(Topic::Budget)).await.expect("events");
    assert!(
        events
            .iter()
            .any(|e| e.line.starts_with("[budget] a budget exceeded")),
        "{events:?}"
    );
    // reset zeroes the agent's spend, and with it the budget.
    w.reset("a").await.expect("reset");
    w.ask("a", "three").await.expect("ask after reset");
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_global_budget_refuses_every_agent() {
    let node = node().await;
    let w = &node.workshop;
    w.configure(None, AgentOptions::default(), Some(0.015))
        .expect("configure");
    w.agent("a", None, AgentOptions::default())
        .await
        .expect("agent");
    w.agent("b", None, AgentOptions::default())
        .await
        .expect("agent");
    w.ask("a", "x").await.expect("0.01 of 0.015");
    w.ask("b", "x").await.expect("0.01 spent: still under");
    for n in ["a", "b"] {
        let err = w.ask(n, "y").await.expect_err("global budget");
        assert!(
            matches!(&err, ApiError::BudgetExceeded(m) if m.contains("global budget exceeded")),
            "{err:?}"
        );
    }
    assert!(approx(w.total_cost(), 0.02));
    // Dismissed agents' spend drops out of the total (AgentWorkshop's behaviour).
    w.dismiss("b").await.expect("dismiss");
    w.ask("a", "z").await.expect("0.01 of 0.015 again");
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_event_log_has_agentworkshops_lines() {
    let node = node().await;
    let w = &node.workshop;
    w.agent("impl", None, AgentOptions::default())
        .await
        .expect("agent");
    w.ask("impl", "hello").await.expect("ask");
    w.cast("impl", "later").await.expect("cast");
    w.await_agent("impl", Some(LIMIT)).await.expect("await");
    let lines: Vec<String> = w
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
    let last_two = w.events(2, None).await.expect("events");
    assert_eq!(last_two.len(), 2);
    assert!(last_two[0].seq < last_two[1].seq);
    w.clear_events();
    assert!(w.events(20, None).await.expect("events").is_empty());
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_table_shows_task_and_queue() {
    let g = "api-status";
    let node = node().await;
    let w = &node.workshop;
    w.agent("b_idle", None, AgentOptions::default())
        .await
        .expect("agent");
    w.agent("a_busy", None, script(vec![gate(g)]))
        .await
        .expect("agent");
    w.cast("a_busy", "first line\nsecond line")
        .await
        .expect("cast");
    within("the turn at the gate", gates::arrived(g)).await;
    w.cast("a_busy", "queued").await.expect("cast");
    let rows = w.status();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0].name.as_str(), "a_busy");
    assert_eq!(rows[0].status, AgentStatus::Working);
    assert_eq!(rows[0].task.as_deref(), Some("first line"));
    assert_eq!(rows[0].queued, 1);
    assert_eq!(rows[1].status, AgentStatus::Idle);
    gates::release(g);
    w.await_agent("a_busy", Some(LIMIT)).await.expect("await");
    let row = &w.status()[0];
    assert_eq!(
        (row.status, row.queued, row.turns),
        (AgentStatus::Idle, 0, 2)
    );
    assert!(row.task.is_none());
    let hist = w.history("a_busy", Some(1)).await.expect("history");
    assert_eq!(hist.len(), 1);
    assert_eq!(hist[0].prompt, "queued");
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_all_dismisses_everything_and_clears_configuration() {
    let node = node().await;
    let w = &node.workshop;
    w.configure(Some("ctx".into()), AgentOptions::default(), Some(1.0))
        .expect("configure");
    w.profile("p", None, AgentOptions::default())
        .expect("profile");
    w.agent("a", None, AgentOptions::default())
        .await
        .expect("agent");
    w.agent("b", None, AgentOptions::default())
        .await
        .expect("agent");
    w.reset_all().await;
    assert!(w.agents().is_empty());
    assert!(w.profiles().is_empty());
    assert_eq!(w.config(), workshop_node::GlobalConfig::default());
    assert!(approx(w.total_cost(), 0.0));
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_run_in_one_process() {
    // Regression: the node's children were registered under fixed global names.
    let one = node().await;
    let two = node().await;
    one.workshop
        .agent("a", None, AgentOptions::default())
        .await
        .expect("agent");
    two.workshop
        .agent("a", None, AgentOptions::default())
        .await
        .expect("same name, other node");
    one.workshop.ask("a", "x").await.expect("ask");
    assert!(approx(two.workshop.total_cost(), 0.0));
    one.shutdown().await;
    two.workshop.ask("a", "y").await.expect("still up");
    two.shutdown().await;
}
