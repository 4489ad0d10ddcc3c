//! gen_agent's server semantics (research/seeds.md §2.3, §2.4, §2.10), through the Workshop API
//! on a real node with the script backend. Every test runs on a two-worker runtime so that the
//! caller and the agent really run concurrently; synchronisation is by script gates, events and
//! the agent's own replies, never by sleeping.

mod common;

use common::*;
use workshop_agent::Behaviour;
use workshop_node::ApiError;
use workshop_types::{AgentOptions, AgentStatus, PollState, Topic, TurnError};

fn recorder_agent(b: impl Behaviour) -> Box<dyn Behaviour> {
    Box::new(b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_starts_idle() {
    let node = node().await;
    let w = &node.workshop;
    w.agent("impl", None, AgentOptions::default())
        .await
        .expect("agent");
    let rows = w.status();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].status, AgentStatus::Idle);
    assert_eq!((rows[0].queued, rows[0].turns), (0, 0));
    assert!(rows[0].task.is_none());
    let info = w.info("impl").await.expect("info");
    assert_eq!(info.status, AgentStatus::Idle);
    assert_eq!(info.queue_depth, 0);
    assert_eq!(info.queue_capacity, 5);
    assert!(info.last_result.is_none());
    assert_eq!(w.result("impl").await.expect("result"), None);
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ask_returns_the_turns_text() {
    let node = node().await;
    let w = &node.workshop;
    let chunks = workshop_types::ScriptStep {
        chunks: vec!["Hel".into(), "lo".into()],
        ..Default::default()
    };
    w.agent("impl", None, script(vec![text("echo: {prompt}"), chunks]))
        .await
        .expect("agent");
    let r = w.ask("impl", "hi there").await.expect("ask");
    assert_eq!(r.text, "echo: hi there");
    assert_eq!(r.prompt, "hi there");
    assert!(approx(r.cost_usd, 0.01));
    let r = w.ask("impl", "stream").await.expect("ask");
    assert_eq!(r.text, "Hello", "chunks concatenate into the text");
    // The script is spent: the default mock reply.
    let r = w.ask("impl", "third").await.expect("ask");
    assert_eq!(r.text, "Mock response to: third");
    assert_eq!(
        w.result("impl").await.expect("result").map(|r| r.text),
        Some("Mock response to: third".to_string())
    );
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_ask_queues_behind_the_first_fifo() {
    let g = "sem-fifo";
    let node = node().await;
    let w = node.workshop.clone();
    w.agent("impl", None, script(vec![gate(g)]))
        .await
        .expect("agent");
    let w1 = w.clone();
    let first = tokio::spawn(async move { w1.ask("impl", "first").await });
    within("the first turn at the gate", gates::arrived(g)).await;
    let w2 = w.clone();
    let second = tokio::spawn(async move { w2.ask("impl", "second").await });
    until_info(&w, "impl", "the second ask to queue", |i| {
        i.queue_depth == 1
    })
    .await;
    let third = w.cast("impl", "third").await.expect("cast");
    let info = w.info("impl").await.expect("info");
    assert_eq!(info.status, AgentStatus::Working);
    assert_eq!(info.task.as_deref(), Some("first"));
    assert_eq!(info.queue_depth, 2);
    gates::release(g);
    let r1 = within("first", first).await.expect("join").expect("ask");
    let r2 = within("second", second).await.expect("join").expect("ask");
    assert_eq!(r1.prompt, "first");
    assert_eq!(r2.prompt, "second");
    w.await_agent("impl", Some(LIMIT)).await.expect("await");
    assert!(matches!(
        w.poll(&third.to_string()).await.expect("poll"),
        PollState::Completed(r) if r.prompt == "third"
    ));
    assert_eq!(prompts(&w, "impl").await, ["first", "second", "third"]);
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cast_and_poll_pending_completed_failed_not_found() {
    let g = "sem-poll";
    let node = node().await;
    let w = &node.workshop;
    w.agent("impl", None, script(vec![gate(g), error("boom")]))
        .await
        .expect("agent");
    let ok = w.cast("impl", "one").await.expect("cast");
    assert_eq!(ok.agent.as_str(), "impl");
    let bad = w.cast("impl", "two").await.expect("cast");
    assert_ne!(ok, bad);
    assert_eq!(
        w.poll(&ok.to_string()).await.expect("poll"),
        PollState::Pending
    );
    assert_eq!(
        w.poll(&bad.to_string()).await.expect("poll"),
        PollState::Pending,
        "queued requests are pending too"
    );
    within("the turn at the gate", gates::arrived(g)).await;
    gates::release(g);
    w.await_agent("impl", Some(LIMIT)).await.expect("await");
    match w.poll(&ok.to_string()).await.expect("poll") {
        PollState::Completed(r) => assert_eq!(r.text, "Mock response to: one"),
        other => panic!("expected completed, got {other:?}"),
    }
    assert_eq!(
        w.poll(&bad.to_string()).await.expect("poll"),
        PollState::Failed(TurnError::Backend("boom".into()))
    );
    assert_eq!(w.poll("impl#999").await.expect("poll"), PollState::NotFound);
    assert!(matches!(w.poll("nonsense").await, Err(ApiError::BadRef(_))));
    assert!(matches!(
        w.poll("ghost#1").await,
        Err(ApiError::UnknownAgent(_))
    ));
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_self_chained_prompt_runs_ahead_of_the_mailbox() {
    let g = "sem-chain";
    let node = node().await;
    let w = &node.workshop;
    let log = Log::default();
    w.agent_with(
        "impl",
        None,
        script(vec![gate(g)]),
        recorder_agent(Recorder::chaining(&log, "a", "chained")),
    )
    .await
    .expect("agent");
    w.cast("impl", "a").await.expect("cast");
    within("turn a at the gate", gates::arrived(g)).await;
    w.cast("impl", "b").await.expect("cast");
    w.cast("impl", "c").await.expect("cast");
    gates::release(g);
    w.await_agent("impl", Some(LIMIT)).await.expect("await");
    assert_eq!(prompts(w, "impl").await, ["a", "chained", "b", "c"]);
    assert_eq!(
        log.entries(),
        ["response:a", "response:chained", "response:b", "response:c"]
    );
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn halt_freezes_the_mailbox_until_resume() {
    let node = node().await;
    let w = &node.workshop;
    w.agent("impl", None, AgentOptions::default())
        .await
        .expect("agent");
    w.halt("impl").expect("halt");
    let err = w
        .ask("impl", "now")
        .await
        .expect_err("ask on a halted agent");
    assert!(matches!(&err, ApiError::Halted(n) if n.as_str() == "impl"));
    assert!(err.to_string().contains("resume"), "{err}");
    let r = w.cast("impl", "later").await.expect("cast queues");
    let r2 = w.cast("impl", "later too").await.expect("cast queues");
    // A halted agent is settled: await returns at once and says so.
    let out = w.await_agent("impl", Some(LIMIT)).await.expect("await");
    assert_eq!(out.status, AgentStatus::Halted);
    assert_eq!(
        w.poll(&r.to_string()).await.expect("poll"),
        PollState::Pending
    );
    let info = w.info("impl").await.expect("info");
    assert_eq!(
        (info.status, info.queue_depth, info.turns),
        (AgentStatus::Halted, 2, 0)
    );
    assert_eq!(w.status()[0].status, AgentStatus::Halted);
    w.resume("impl").expect("resume");
    let out = w.await_agent("impl", Some(LIMIT)).await.expect("await");
    assert_eq!(out.status, AgentStatus::Idle);
    assert!(matches!(
        w.poll(&r.to_string()).await.expect("poll"),
        PollState::Completed(_)
    ));
    assert!(matches!(
        w.poll(&r2.to_string()).await.expect("poll"),
        PollState::Completed(_)
    ));
    assert_eq!(prompts(w, "impl").await, ["later", "later too"]);
    // Asks work again.
    w.ask("impl", "again").await.expect("ask after resume");
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn halt_during_a_turn_takes_effect_when_the_turn_ends() {
    let g = "sem-halt-mid";
    let node = node().await;
    let w = &node.workshop;
    w.agent("impl", None, script(vec![gate(g)]))
        .await
        .expect("agent");
    let a = w.cast("impl", "a").await.expect("cast");
    within("turn a at the gate", gates::arrived(g)).await;
    w.halt("impl").expect("halt");
    let b = w.cast("impl", "b").await.expect("cast");
    gates::release(g);
    let out = w.await_agent("impl", Some(LIMIT)).await.expect("await");
    assert_eq!(out.status, AgentStatus::Halted);
    assert!(matches!(
        w.poll(&a.to_string()).await.expect("poll"),
        PollState::Completed(_)
    ));
    assert_eq!(
        w.poll(&b.to_string()).await.expect("poll"),
        PollState::Pending
    );
    w.resume("impl").expect("resume");
    w.await_agent("impl", Some(LIMIT)).await.expect("await");
    assert!(matches!(
        w.poll(&b.to_string()).await.expect("poll"),
        PollState::Completed(_)
    ));
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notify_reaches_handle_event() {
    let node = node().await;
    let w = &node.workshop;
    let log = Log::default();
    w.agent_with(
        "impl",
        None,
        AgentOptions::default(),
        recorder_agent(Recorder::new(&log)),
    )
    .await
    .expect("agent");
    w.notify("impl", "ping").expect("notify");
    // Any call is answered after the notify (one mailbox, in order).
    w.info("impl").await.expect("info");
    assert_eq!(log.entries(), ["event:ping"]);
    // An event may ask for a turn.
    w.notify("impl", "prompt:from event").expect("notify");
    w.await_agent("impl", Some(LIMIT)).await.expect("await");
    assert_eq!(prompts(w, "impl").await, ["from event"]);
    // ... or halt the agent.
    w.notify("impl", "halt").expect("notify");
    assert_eq!(
        w.info("impl").await.expect("info").status,
        AgentStatus::Halted
    );
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notify_during_a_turn_is_deferred_to_the_turns_end() {
    let g = "sem-defer";
    let node = node().await;
    let w = &node.workshop;
    let log = Log::default();
    w.agent_with(
        "impl",
        None,
        script(vec![gate(g)]),
        recorder_agent(Recorder::new(&log)),
    )
    .await
    .expect("agent");
    w.cast("impl", "a").await.expect("cast");
    within("turn a at the gate", gates::arrived(g)).await;
    w.notify("impl", "e1").expect("notify");
    w.notify("impl", "e2").expect("notify");
    w.info("impl").await.expect("info");
    assert!(
        log.entries().is_empty(),
        "events must wait for the turn: {:?}",
        log.entries()
    );
    gates::release(g);
    w.await_agent("impl", Some(LIMIT)).await.expect("await");
    assert_eq!(log.entries(), ["response:a", "event:e1", "event:e2"]);
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deferred_events_prompt_joins_the_mailbox_and_keeps_the_self_chain() {
    // gen_agent design 004: a buffered event returning a prompt enqueues it; the turn's own
    // self-chain still runs first, and nothing is lost.
    let g = "sem-defer-chain";
    let node = node().await;
    let w = &node.workshop;
    let log = Log::default();
    w.agent_with(
        "impl",
        None,
        script(vec![gate(g)]),
        recorder_agent(Recorder::chaining(&log, "a", "chained")),
    )
    .await
    .expect("agent");
    w.cast("impl", "a").await.expect("cast");
    within("turn a at the gate", gates::arrived(g)).await;
    w.cast("impl", "b").await.expect("cast");
    w.notify("impl", "prompt:from event").expect("notify");
    w.info("impl").await.expect("info");
    gates::release(g);
    w.await_agent("impl", Some(LIMIT)).await.expect("await");
    assert_eq!(
        prompts(w, "impl").await,
        ["a", "chained", "b", "from event"]
    );
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interrupt_kills_the_turn_and_the_agent_keeps_draining() {
    let g = "sem-interrupt";
    let node = node().await;
    let w = node.workshop.clone();
    let log = Log::default();
    w.agent_with(
        "impl",
        None,
        script(vec![gate(g), text("after")]),
        recorder_agent(Recorder::new(&log)),
    )
    .await
    .expect("agent");
    // Interrupt on an idle agent is a no-op.
    w.interrupt("impl").expect("interrupt idle");
    let w1 = w.clone();
    let asked = tokio::spawn(async move { w1.ask("impl", "long").await });
    within("the turn at the gate", gates::arrived(g)).await;
    let next = w.cast("impl", "next").await.expect("cast");
    w.interrupt("impl").expect("interrupt");
    let err = within("the interrupted ask", asked)
        .await
        .expect("join")
        .expect_err("interrupted");
    assert_eq!(
        err,
        ApiError::Turn {
            agent: name("impl"),
            error: TurnError::Interrupted
        }
    );
    w.await_agent("impl", Some(LIMIT)).await.expect("await");
    match w.poll(&next.to_string()).await.expect("poll") {
        PollState::Completed(r) => assert_eq!(r.text, "after"),
        other => panic!("the queued request should have run: {other:?}"),
    }
    assert_eq!(log.entries(), ["error:interrupted", "response:next"]);
    let info = w.info("impl").await.expect("info");
    assert_eq!((info.status, info.turns), (AgentStatus::Idle, 1));
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interrupt_a_hanging_turn() {
    let node = node().await;
    let w = node.workshop.clone();
    w.agent("impl", None, script(vec![hang()]))
        .await
        .expect("agent");
    let w1 = w.clone();
    let asked = tokio::spawn(async move { w1.ask("impl", "forever").await });
    until_info(&w, "impl", "the hanging turn to start", |i| {
        i.status == AgentStatus::Working
    })
    .await;
    w.interrupt("impl").expect("interrupt");
    let err = within("the interrupted ask", asked)
        .await
        .expect("join")
        .expect_err("interrupted");
    assert!(matches!(
        err,
        ApiError::Turn {
            error: TurnError::Interrupted,
            ..
        }
    ));
    // The session is free again: the next turn runs.
    w.ask("impl", "next").await.expect("ask after interrupt");
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_watchdog_times_a_hanging_turn_out() {
    let node = node().await;
    let w = &node.workshop;
    let opts = AgentOptions {
        timeout_ms: Some(50),
        ..script(vec![hang()])
    };
    let log = Log::default();
    w.agent_with("impl", None, opts, recorder_agent(Recorder::new(&log)))
        .await
        .expect("agent");
    let err = within("the watchdog", w.ask("impl", "hang"))
        .await
        .expect_err("timeout");
    assert_eq!(
        err,
        ApiError::Turn {
            agent: name("impl"),
            error: TurnError::Timeout(50)
        }
    );
    assert!(err.to_string().contains("watchdog"), "{err}");
    // The caller hears first; the behaviour's callback has run by the next reply.
    w.info("impl").await.expect("info");
    assert_eq!(
        log.entries(),
        ["error:timeout: no result within 50 ms (watchdog)"]
    );
    let r = w.ask("impl", "next").await.expect("the agent goes on");
    assert_eq!(r.text, "Mock response to: next");
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_error_reaches_the_caller() {
    let node = node().await;
    let w = &node.workshop;
    w.agent("impl", None, script(vec![error("rate limited")]))
        .await
        .expect("agent");
    let err = w.ask("impl", "x").await.expect_err("backend error");
    assert_eq!(
        err,
        ApiError::Turn {
            agent: name("impl"),
            error: TurnError::Backend("rate limited".into())
        }
    );
    assert!(err.to_string().contains("rate limited"), "{err}");
    let info = w.info("impl").await.expect("info");
    assert_eq!((info.status, info.turns), (AgentStatus::Idle, 0));
    assert!(approx(info.cost_usd, 0.0));
    let events = w.events(20, Some(Topic::Agent)).await.expect("events");
    assert!(
        events
            .iter()
            .any(|e| e.line == "[error] impl: backend error: rate limited"),
        "{events:?}"
    );
    w.ask("impl", "y").await.expect("the agent goes on");
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_turn_is_reported_and_the_agent_still_works() {
    let node = node().await;
    let w = &node.workshop;
    let log = Log::default();
    w.agent_with(
        "impl",
        None,
        script(vec![text("one"), crash()]),
        recorder_agent(Recorder::new(&log)),
    )
    .await
    .expect("agent");
    assert_eq!(w.ask("impl", "x").await.expect("ask").text, "one");
    let err = w.ask("impl", "y").await.expect_err("crash");
    assert!(
        matches!(
            &err,
            ApiError::Turn {
                error: TurnError::Crashed(m),
                ..
            } if m.contains("crash")
        ),
        "{err:?}"
    );
    w.info("impl").await.expect("info");
    assert_eq!(
        log.entries(),
        [
            "response:x",
            "error:turn crashed: script step asked to crash the turn"
        ]
    );
    // The turn crashed, not the agent: it is idle and answers the next prompt.
    assert_eq!(w.status()[0].status, AgentStatus::Idle);
    w.ask("impl", "z").await.expect("the agent still works");
    assert_eq!(w.info("impl").await.expect("info").turns, 2);
    node.shutdown().await;
}

/// After a crashed turn a script session survives (`Session::survives_panic`), so the script
/// continues after the step that crashed instead of replaying from its first step.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_crash_the_script_continues_where_it_was() {
    let node = node().await;
    let w = &node.workshop;
    w.agent("impl", None, script(vec![crash(), text("recovered")]))
        .await
        .expect("agent");
    assert!(w.ask("impl", "x").await.is_err());
    let r = w.ask("impl", "y").await.expect("the agent still works");
    assert_eq!(r.text, "recovered");
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_behaviour_crashes_the_agent_until_reset() {
    let node = node().await;
    let w = &node.workshop;
    let log = Log::default();
    w.agent_with(
        "impl",
        None,
        AgentOptions::default(),
        recorder_agent(Recorder::new(&log)),
    )
    .await
    .expect("agent");
    w.ask("impl", "before").await.expect("ask");
    let mut rx = w.watch();
    w.notify("impl", "panic").expect("notify");
    let ev = next_event(&mut rx, "the crashed event", |e| e.kind == "crashed").await;
    assert_eq!(ev.subject.as_deref(), Some("impl"));
    assert!(ev.line.starts_with("[error] impl crashed"), "{}", ev.line);
    assert_eq!(w.status()[0].status, AgentStatus::Crashed);
    for err in [
        w.ask("impl", "x").await.expect_err("ask"),
        w.cast("impl", "x").await.expect_err("cast"),
        w.info("impl").await.expect_err("info"),
        w.interrupt("impl").expect_err("interrupt"),
    ] {
        assert_eq!(err, ApiError::Crashed(name("impl")));
        assert!(err.to_string().contains("reset"), "{err}");
    }
    // The cost spent before the crash is still on the books.
    assert!(approx(w.cost("impl").expect("cost"), 0.01));
    w.reset("impl").await.expect("reset restarts it");
    assert_eq!(w.status()[0].status, AgentStatus::Idle);
    let r = w.ask("impl", "after").await.expect("ask after reset");
    assert_eq!(r.text, "Mock response to: after");
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_answers_queue_full() {
    let g = "sem-full";
    let node = node().await;
    let w = node.workshop.clone();
    w.agent("impl", None, script(vec![gate(g)]))
        .await
        .expect("agent");
    w.cast("impl", "0").await.expect("cast");
    within("turn 0 at the gate", gates::arrived(g)).await;
    for i in 1..=5 {
        w.cast("impl", &i.to_string()).await.expect("cast fits");
    }
    let err = w.cast("impl", "6").await.expect_err("queue full");
    assert_eq!(
        err,
        ApiError::QueueFull {
            agent: name("impl"),
            depth: 5
        }
    );
    assert!(err.to_string().contains("queue is full (5)"), "{err}");
    let err = w.ask("impl", "7").await.expect_err("ask too");
    assert!(matches!(err, ApiError::QueueFull { depth: 5, .. }));
    assert_eq!(w.status()[0].queued, 5);
    gates::release(g);
    w.await_agent("impl", Some(LIMIT)).await.expect("await");
    assert_eq!(prompts(&w, "impl").await, ["0", "1", "2", "3", "4", "5"]);
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_depth_is_configurable() {
    let g = "sem-depth";
    let node = node().await;
    let w = &node.workshop;
    let opts = AgentOptions {
        queue_depth: Some(2),
        ..script(vec![gate(g)])
    };
    w.agent("impl", None, opts).await.expect("agent");
    assert_eq!(w.info("impl").await.expect("info").queue_capacity, 2);
    w.cast("impl", "0").await.expect("cast");
    within("turn 0 at the gate", gates::arrived(g)).await;
    w.cast("impl", "1").await.expect("cast");
    w.cast("impl", "2").await.expect("cast");
    assert!(matches!(
        w.cast("impl", "3").await,
        Err(ApiError::QueueFull { depth: 2, .. })
    ));
    gates::release(g);
    w.await_agent("impl", Some(LIMIT)).await.expect("await");
    let bad = AgentOptions {
        queue_depth: Some(0),
        ..Default::default()
    };
    assert!(matches!(
        w.agent("zero", None, bad).await,
        Err(ApiError::InvalidOption(_))
    ));
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn await_on_an_idle_agent_returns_at_once() {
    let node = node().await;
    let w = &node.workshop;
    w.agent("impl", None, AgentOptions::default())
        .await
        .expect("agent");
    let out = w.await_agent("impl", Some(LIMIT)).await.expect("await");
    assert!(out.was_idle);
    assert_eq!(out.status, AgentStatus::Idle);
    assert_eq!(out.last, None);
    w.ask("impl", "x").await.expect("ask");
    let out = w.await_agent("impl", None).await.expect("await");
    assert!(out.was_idle);
    assert!(matches!(out.last, Some(Ok(r)) if r.prompt == "x"));
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn await_with_a_timeout_on_a_busy_agent() {
    let g = "sem-await-timeout";
    let node = node().await;
    let w = &node.workshop;
    let opts = AgentOptions {
        ..script(vec![gate(g)])
    };
    w.agent("impl", None, opts).await.expect("agent");
    w.cast("impl", "a").await.expect("cast");
    within("turn a at the gate", gates::arrived(g)).await;
    let err = w
        .await_agent("impl", Some(std::time::Duration::from_millis(20)))
        .await
        .expect_err("still busy");
    assert!(matches!(err, ApiError::AwaitTimeout { ms: 20, .. }));
    // Awaiting does not kill the turn.
    gates::release(g);
    let out = w.await_agent("impl", Some(LIMIT)).await.expect("await");
    assert!(matches!(out.last, Some(Ok(_))));
    node.shutdown().await;
}
