//! Shared helpers for the node's integration tests: a node per test, script steps, a recording
//! behaviour, and waits that synchronise on observable state (gates, events, the agent's own
//! replies), never on sleeps.
#![allow(dead_code)]

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use workshop_agent::{Behaviour, Next};
use workshop_node::{Node, Workshop};
use workshop_types::{AgentOptions, Event, ScriptStep, TurnError, TurnResult};

#[allow(unused_imports)]
pub use workshop_agent::backend::script::gates;

/// Upper bound for any single wait in a test: a hung test fails instead of hanging CI.
pub const LIMIT: Duration = Duration::from_secs(20);

pub async fn node() -> Node {
    Node::start().await.expect("the node starts")
}

/// Where a paused test's clock starts (ms since the epoch; any fixed value will do).
pub const PAUSED_BASE_MS: u64 = 1_700_000_000_000;

/// A node whose clock follows tokio's time: under `#[tokio::test(start_paused = true)]` its
/// board, schedules, workers and event stamps see virtual time, so nothing waits real seconds.
pub async fn paused_node() -> Node {
    Node::builder()
        .clock(workshop_node::clock::tokio_clock(PAUSED_BASE_MS))
        .start()
        .await
        .expect("the node starts")
}

/// Run `fut` but fail the test (with `what`) if it takes longer than [`LIMIT`].
pub async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
    match tokio::time::timeout(LIMIT, fut).await {
        Ok(v) => v,
        Err(_) => panic!("timed out waiting for {what}"),
    }
}

/// The bound for waits in tests on a paused clock (`start_paused = true`): virtual time jumps
/// to the next timer whenever the runtime idles (e.g. while the board's threads commit), so a
/// bound in virtual time must be far above every timer the test involves.
pub const VIRTUAL_LIMIT: Duration = Duration::from_secs(3600);

/// Holds tokio's paused clock still: while it lives, virtual time moves only by
/// [`ManualTime::advance`]. Paused-clock tests that involve the board need it: the board
/// commits on its own threads, and a runtime that idles while it waits for them would jump to
/// the next timer (lease sweeps, heartbeats, fallback polls) again and again. tokio does not
/// auto-advance while a blocking task runs, so this parks one until dropped. Should the test
/// hang, the parked task ends the test process after a real-time limit instead of hanging CI.
pub struct ManualTime {
    release: Option<std::sync::mpsc::Sender<()>>,
}

impl ManualTime {
    pub fn hold() -> Self {
        let (release, held) = std::sync::mpsc::channel::<()>();
        tokio::task::spawn_blocking(move || {
            if let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = held.recv_timeout(LIMIT * 3) {
                eprintln!(
                    "a paused-clock test held its clock for {:?}: it hangs",
                    LIMIT * 3
                );
                std::process::exit(101);
            }
        });
        Self {
            release: Some(release),
        }
    }

    /// Move virtual time forward by `d`, firing every timer due meanwhile.
    pub async fn advance(&self, d: Duration) {
        tokio::time::advance(d).await;
    }
}

impl Drop for ManualTime {
    fn drop(&mut self) {
        drop(self.release.take());
    }
}

/// [`within`] for paused-clock tests: fails (with `what`) after [`VIRTUAL_LIMIT`] of virtual
/// time.
pub async fn within_virtual<T>(what: &str, fut: impl Future<Output = T>) -> T {
    match tokio::time::timeout(VIRTUAL_LIMIT, fut).await {
        Ok(v) => v,
        Err(_) => panic!("timed out (virtual time) waiting for {what}"),
    }
}

pub fn script(steps: Vec<ScriptStep>) -> AgentOptions {
    AgentOptions {
        script: Some(steps),
        ..Default::default()
    }
}

pub fn gate(name: &str) -> ScriptStep {
    ScriptStep {
        gate: Some(name.to_string()),
        ..Default::default()
    }
}

pub fn text(t: &str) -> ScriptStep {
    ScriptStep {
        text: Some(t.to_string()),
        ..Default::default()
    }
}

pub fn plain() -> ScriptStep {
    ScriptStep::default()
}

pub fn hang() -> ScriptStep {
    ScriptStep {
        hang: true,
        ..Default::default()
    }
}

pub fn error(msg: &str) -> ScriptStep {
    ScriptStep {
        error: Some(msg.to_string()),
        ..Default::default()
    }
}

pub fn crash() -> ScriptStep {
    ScriptStep {
        crash: true,
        ..Default::default()
    }
}

pub fn cost(usd: f64) -> ScriptStep {
    ScriptStep {
        cost_usd: Some(usd),
        ..Default::default()
    }
}

/// Poll the agent (through its own mailbox, so each check is an up-to-date answer) until `cond`
/// holds. Used only to know that a request sent from another task has reached the agent.
pub async fn until_info(
    w: &Workshop,
    name: &str,
    what: &str,
    cond: impl Fn(&workshop_types::AgentInfo) -> bool,
) {
    within(what, async {
        loop {
            let info = w.info(name).await.expect("info");
            if cond(&info) {
                return;
            }
            tokio::task::yield_now().await;
        }
    })
    .await
}

/// Wait for the next live event matching `pred` on a receiver opened before the cause.
pub async fn next_event(
    rx: &mut tokio::sync::broadcast::Receiver<Event>,
    what: &str,
    pred: impl Fn(&Event) -> bool,
) -> Event {
    within(what, async {
        loop {
            match rx.recv().await {
                Ok(ev) if pred(&ev) => return ev,
                Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(e) => panic!("event bus closed while waiting for {what}: {e}"),
            }
        }
    })
    .await
}

/// [`next_event`] for paused-clock tests (bounded by [`VIRTUAL_LIMIT`]).
pub async fn next_event_virtual(
    rx: &mut tokio::sync::broadcast::Receiver<Event>,
    what: &str,
    pred: impl Fn(&Event) -> bool,
) -> Event {
    within_virtual(what, async {
        loop {
            match rx.recv().await {
                Ok(ev) if pred(&ev) => return ev,
                Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(e) => panic!("event bus closed while waiting for {what}: {e}"),
            }
        }
    })
    .await
}

/// The prompts of an agent's completed turns, oldest first.
pub async fn prompts(w: &Workshop, name: &str) -> Vec<String> {
    w.history(name, None)
        .await
        .expect("history")
        .into_iter()
        .map(|r| r.prompt)
        .collect()
}

pub fn approx(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

/// What a [`Recorder`] saw, in order.
#[derive(Clone, Default)]
pub struct Log(pub Arc<Mutex<Vec<String>>>);

impl Log {
    pub fn entries(&self) -> Vec<String> {
        self.0.lock().clone()
    }
    fn push(&self, s: String) {
        self.0.lock().push(s);
    }
}

/// A behaviour that records every callback and can be told to self-chain, halt or panic.
///
/// - `handle_response`: self-chains `chain_to` after a turn whose prompt is `chain_after`.
/// - `handle_event`: `prompt:<text>` asks for a turn, `halt` halts, `panic` panics,
///   anything else is only recorded.
#[derive(Default)]
pub struct Recorder {
    pub log: Log,
    pub chain_after: Option<String>,
    pub chain_to: String,
}

impl Recorder {
    pub fn new(log: &Log) -> Self {
        Self {
            log: log.clone(),
            ..Default::default()
        }
    }
    pub fn chaining(log: &Log, after: &str, to: &str) -> Self {
        Self {
            log: log.clone(),
            chain_after: Some(after.to_string()),
            chain_to: to.to_string(),
        }
    }
}

impl Behaviour for Recorder {
    fn handle_response(&mut self, result: &TurnResult) -> Next {
        self.log.push(format!("response:{}", result.prompt));
        if self.chain_after.as_deref() == Some(result.prompt.as_str()) {
            Next::Prompt(self.chain_to.clone())
        } else {
            Next::NoReply
        }
    }

    fn handle_error(&mut self, error: &TurnError) -> Next {
        self.log.push(format!("error:{error}"));
        Next::NoReply
    }

    fn handle_event(&mut self, event: &str) -> Next {
        self.log.push(format!("event:{event}"));
        if let Some(p) = event.strip_prefix("prompt:") {
            return Next::Prompt(p.to_string());
        }
        match event {
            "halt" => Next::Halt,
            "panic" => panic!("the behaviour was told to panic"),
            _ => Next::NoReply,
        }
    }
}

/// An `AgentName` for assertions.
pub fn name(s: &str) -> workshop_types::AgentName {
    workshop_types::AgentName::new(s).expect("valid name")
}

/// A board worker with `options`, a one-minute fallback interval (the board's push wakes it).
pub fn worker_opts(options: AgentOptions) -> workshop_node::WorkerOptions {
    workshop_node::WorkerOptions {
        options,
        interval_ms: Some(60_000),
        ..Default::default()
    }
}
