//! Issue 9 ("what reading the code found"): agent creation is serialized per name, budgets are
//! checked where the agent admits a turn, calls to actors are bounded, crashed board workers and
//! schedules are never silent. Waits follow events or the agents' own replies, never sleeps.

mod common;

use common::*;
use workshop_types::AgentStatus;

/// Many concurrent `agent("x")` (through clients, as the console and CLI send them) end with
/// exactly one agent in the directory and one live agent actor: every replaced actor stopped.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_creation_of_one_name_leaves_exactly_one_live_actor() {
    let node = node().await;
    let mut tasks = tokio::task::JoinSet::new();
    for c in 0..4 {
        let client = node.client();
        for i in 0..25 {
            let client = client.clone();
            tasks.spawn(async move {
                let role = format!("role {c}/{i}");
                client
                    .agent("x", Some(role), script(vec![text("hi")]))
                    .await
            });
        }
    }
    within("100 concurrent agent(\"x\") calls", async {
        while let Some(r) = tasks.join_next().await {
            r.expect("task").expect("agent(\"x\")");
        }
    })
    .await;
    let w = &node.workshop;
    let rows = w.status();
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0].status, AgentStatus::Idle);
    assert_eq!(
        w.agent_actors(),
        1,
        "exactly one live agent actor; the 99 replaced ones stopped"
    );
    // The one left is the one the directory knows: it answers.
    assert_eq!(w.ask("x", "ping").await.expect("ask").text, "hi");
    w.dismiss("x").await.expect("dismiss");
    assert_eq!(w.agent_actors(), 0, "dismiss stops it");
    node.shutdown().await;
}

/// The budget is checked where the agent admits a prompt: a message sent straight to the
/// agent's actor (no `Workshop::ask` in between) over budget is refused with the same reason,
/// and the `[budget]` event is published.
#[tokio::test]
async fn over_budget_prompts_sent_straight_to_the_agent_actor_are_refused() {
    use workshop_proto::agent::{AgentMsg, AskReply, CastReply, Prompt, Refusal};
    let node = node().await;
    let w = &node.workshop;
    let mut o = script(vec![cost(0.01), cost(0.01)]);
    o.max_cost_usd = Some(0.005);
    w.agent("a", None, o).await.expect("agent");
    let actor = w.agent_actor("a").expect("actor");
    let prompt = |t: &str| Prompt {
        text: t.into(),
        origin: "direct".into(),
    };
    let first = actor
        .call(|r| AgentMsg::Ask(prompt("one"), r), Some(LIMIT))
        .await
        .expect("call")
        .expect("reply");
    assert!(
        matches!(first, AskReply::Done(_)),
        "under budget: {first:?}"
    );
    let mut events = w.watch();
    let second = actor
        .call(|r| AgentMsg::Ask(prompt("two"), r), Some(LIMIT))
        .await
        .expect("call")
        .expect("reply");
    let AskReply::Refused(Refusal::Budget(why)) = second else {
        panic!("over budget, an Ask straight to the actor is refused: {second:?}");
    };
    assert!(
        why.contains("a budget exceeded ($0.0100 of $0.0050)"),
        "{why}"
    );
    let ev = next_event(&mut events, "the [budget] event", |e| {
        e.topic == workshop_types::Topic::Budget
    })
    .await;
    assert_eq!(ev.line, format!("[budget] {why}"));
    let cast = actor
        .call(|r| AgentMsg::Cast(prompt("three"), r), Some(LIMIT))
        .await
        .expect("call")
        .expect("reply");
    assert!(
        matches!(cast, CastReply::Refused(Refusal::Budget(_))),
        "{cast:?}"
    );
    // Through the API the text is unchanged.
    let e = w.ask("a", "four").await.expect_err("refused");
    assert!(
        e.to_string()
            .starts_with("budget_exceeded: a budget exceeded"),
        "{e}"
    );
    assert_eq!(
        w.info("a").await.expect("info").turns,
        1,
        "nothing else ran"
    );
    node.shutdown().await;
}

/// Schedules go through the same admission: a tick on a spent agent is refused and reported.
#[tokio::test]
async fn a_schedule_on_a_spent_agent_is_refused_by_the_agent() {
    let node = node().await;
    let w = &node.workshop;
    w.configure(None, Default::default(), Some(0.0))
        .await
        .expect("a zero global budget");
    w.agent("mon", None, script(vec![])).await.expect("agent");
    let mut events = w.watch();
    w.every("mon", "check", 10).await.expect("every");
    let ev = next_event(&mut events, "the refused tick", |e| {
        e.topic == workshop_types::Topic::Schedule && e.kind == "error"
    })
    .await;
    assert!(
        ev.line.contains("budget_exceeded: global budget exceeded"),
        "{}",
        ev.line
    );
    assert_eq!(w.info("mon").await.expect("info").turns, 0);
    node.shutdown().await;
}

/// A backend whose `reset` never finishes: the agent actor is stuck in its `Reset` handler.
/// (Options only name known backends, so it stands in for `script`.)
struct StuckOnReset;

struct StuckSession;

impl workshop_agent::Backend for StuckOnReset {
    fn name(&self) -> &'static str {
        "script"
    }
    fn start_session(
        &self,
        _: &workshop_types::AgentSpec,
    ) -> Result<Box<dyn workshop_agent::Session>, workshop_agent::BackendError> {
        Ok(Box::new(StuckSession))
    }
}

impl workshop_agent::Session for StuckSession {
    fn turn<'a>(
        &'a mut self,
        prompt: &'a str,
        _: workshop_agent::TurnContext,
    ) -> workshop_agent::BoxFut<'a, Result<workshop_types::TurnResult, workshop_types::TurnError>>
    {
        Box::pin(async move {
            Ok(workshop_types::TurnResult {
                text: prompt.to_string(),
                ..Default::default()
            })
        })
    }
    fn reset(&mut self) -> workshop_agent::BoxFut<'_, Result<(), workshop_agent::BackendError>> {
        Box::pin(std::future::pending())
    }
    fn shutdown(&mut self) -> workshop_agent::BoxFut<'_, ()> {
        Box::pin(async {})
    }
    fn session_id(&self) -> Option<String> {
        None
    }
}

/// Calls to an actor that answers from its state are bounded: an agent stuck in a handler
/// makes `reset`, then `info`, fail with `ApiError::Timeout` naming the operation and the
/// agent, after `ACTOR_CALL_TIMEOUT` (virtual time: the test does not wait 20 real seconds).
#[tokio::test(start_paused = true)]
async fn a_call_to_a_stuck_agent_times_out_with_a_clear_error() {
    use workshop_node::workshop::ACTOR_CALL_TIMEOUT;
    use workshop_node::ApiError;
    let real = std::time::Instant::now();
    let backends = workshop_node::Node::default_backends().with(std::sync::Arc::new(StuckOnReset));
    let node = workshop_node::Node::start_with(backends, None)
        .await
        .expect("node");
    let w = &node.workshop;
    w.agent("s", None, Default::default()).await.expect("agent");
    assert_eq!(w.ask("s", "hello").await.expect("ask").text, "hello");
    let ms = ACTOR_CALL_TIMEOUT.as_millis() as u64;
    let e = within_virtual("reset to time out", w.reset("s"))
        .await
        .expect_err("reset cannot finish");
    assert_eq!(
        e,
        ApiError::Timeout {
            what: "reset of agent s".into(),
            ms
        }
    );
    let e = within_virtual("info to time out", w.info("s"))
        .await
        .expect_err("the agent is stuck");
    assert_eq!(
        e,
        ApiError::Timeout {
            what: "info of agent s".into(),
            ms
        }
    );
    assert!(
        e.to_string().contains("got no answer within 10000 ms"),
        "{e}"
    );
    node.shutdown().await;
    assert!(
        real.elapsed() < std::time::Duration::from_secs(5),
        "virtual time, not real waiting: {:?}",
        real.elapsed()
    );
}

fn typed(t: &str) -> workshop_node::WorkOptions {
    workshop_node::WorkOptions {
        work_type: Some(t.into()),
        ..Default::default()
    }
}

/// A board worker whose actor fails is never silent: `[worker] x crashed: ..` is published and
/// it is restarted (and keeps working) while its restart budget (3 in 60 s) lasts; past it, it
/// stays listed as crashed in `workers()` until `board_worker` starts it again.
#[tokio::test]
async fn a_crashed_board_worker_is_reported_restarted_then_marked_crashed() {
    use workshop_node::background::{RESTARTS, RESTART_WINDOW};
    use workshop_node::worker::WorkerMsg;
    let node = node().await;
    let w = &node.workshop;
    let mut ev = w.watch();
    w.board_worker("dev", "code", worker_opts(script(vec![])))
        .await
        .expect("worker");
    let crash = |why: &str| {
        w.worker_actor("dev")
            .expect("a running worker")
            .cast(WorkerMsg::CrashForTest(why.into()))
            .expect("cast");
    };
    crash("boom 1");
    let crashed = next_event(&mut ev, "the crash event", |e| e.kind == "worker_crashed").await;
    assert!(
        crashed.line.starts_with("[worker] dev crashed: ") && crashed.line.contains("boom 1"),
        "{}",
        crashed.line
    );
    next_event(&mut ev, "the restart", |e| {
        e.line == "[worker] dev restarted (restart 1)"
    })
    .await;
    // The restarted worker is pushed ready items as before.
    w.work("job", "Do it", typed("code")).await.expect("work");
    next_event(&mut ev, "the item to complete", |e| {
        e.line == "[work] job completed"
    })
    .await;
    let info = &w.workers().await.expect("workers")[0];
    assert_eq!((info.restarts, info.crashed.as_deref()), (1, None));
    assert_eq!(info.completed, 1);

    // Two more restarts are allowed within the window; the next crash spends the budget.
    for n in 2..=RESTARTS {
        crash(&format!("boom {n}"));
        let line = format!("[worker] dev restarted (restart {n})");
        next_event(&mut ev, &line, |e| e.line == line).await;
    }
    crash("boom last");
    let gave_up = next_event(&mut ev, "the give-up event", |e| {
        e.kind == "worker_crashed" && e.line.contains("not restarted")
    })
    .await;
    assert_eq!(
        gave_up.line,
        format!(
            "[worker] dev crashed {} times within {} s; not restarted (marked crashed): board_worker(..) starts it again",
            RESTARTS + 1,
            RESTART_WINDOW.as_secs()
        )
    );
    let workers = w.workers().await.expect("workers");
    assert_eq!(workers.len(), 1, "a crashed worker stays listed");
    assert_eq!(workers[0].restarts, RESTARTS);
    assert!(
        workers[0]
            .crashed
            .as_deref()
            .is_some_and(|c| c.contains("boom last")),
        "{workers:?}"
    );
    assert!(w.worker_actor("dev").is_none(), "nothing runs for it");

    // Starting it again clears the mark.
    w.board_worker("dev", "code", worker_opts(script(vec![])))
        .await
        .expect("worker again");
    let workers = w.workers().await.expect("workers");
    assert_eq!(
        (workers[0].restarts, workers[0].crashed.as_deref()),
        (0, None)
    );
    node.shutdown().await;
}

/// The same for schedules: reported, restarted (ticking again), then marked crashed.
#[tokio::test]
async fn a_crashed_schedule_is_reported_restarted_then_marked_crashed() {
    use workshop_node::background::RESTARTS;
    use workshop_node::schedule::ScheduleMsg;
    let node = node().await;
    let w = &node.workshop;
    w.agent("mon", None, script(vec![])).await.expect("agent");
    let mut ev = w.watch();
    w.every("mon", "check", 60_000).await.expect("every");
    let crash = |why: &str| {
        w.schedule_actor("mon")
            .expect("a running schedule")
            .cast(ScheduleMsg::CrashForTest(why.into()))
            .expect("cast");
    };
    for n in 1..=RESTARTS {
        crash(&format!("tick bug {n}"));
        let crashed = next_event(&mut ev, "the crash event", |e| {
            e.topic == workshop_types::Topic::Schedule && e.kind == "crashed"
        })
        .await;
        assert!(
            crashed.line.starts_with("[schedule] mon crashed: ")
                && crashed.line.contains(&format!("tick bug {n}")),
            "{}",
            crashed.line
        );
        let line = format!("[schedule] mon restarted (restart {n})");
        next_event(&mut ev, &line, |e| e.line == line).await;
    }
    let s = w.schedules().await.expect("schedules");
    assert_eq!((s[0].restarts, s[0].crashed.as_deref()), (RESTARTS, None));
    assert_eq!(s[0].spec.interval_ms, 60_000, "restarted from its spec");
    crash("tick bug last");
    next_event(&mut ev, "the give-up event", |e| {
        e.kind == "crashed" && e.line.contains("not restarted")
    })
    .await;
    let s = w.schedules().await.expect("schedules");
    assert_eq!(s.len(), 1, "a crashed schedule stays listed");
    assert!(
        s[0].crashed
            .as_deref()
            .is_some_and(|c| c.contains("tick bug last")),
        "{s:?}"
    );
    w.cancel("mon").await.expect("cancel removes it");
    assert!(w.schedules().await.expect("schedules").is_empty());
    node.shutdown().await;
}
