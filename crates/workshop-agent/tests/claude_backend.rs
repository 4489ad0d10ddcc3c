//! The `claude` backend against the REAL Claude Code CLI (pinned 2.1.328, installed by
//! `.ci/install-claude.sh`) talking to the fake Anthropic API of `workshop-test-support`.
//! Every test uses a fresh HOME and working directory and ends by proving that no process of
//! its sessions is left (process groups gone, zombies included).
//!
//! Synchronisation is by events, never by sleeping: the fake signals requests
//! (`wait_for_requests`), turns end at the CLI's `result` line.

#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tempfile::TempDir;
use tokio_util::sync::CancellationToken;
use workshop_agent::backend::claude::ClaudeBackend;
use workshop_agent::{AgentHooks, Backend, Session, TurnContext, TurnEvents};
use workshop_test_support::claude::{claude_bin, claude_env};
use workshop_test_support::{procs, FakeAnthropic, Reply};
use workshop_types::{
    AgentName, AgentOptions, AgentRow, AgentSpec, PermissionMode, Topic, TurnError, TurnResult,
};

const TURN_LIMIT: Duration = Duration::from_secs(90);
/// Opus 5.5 list price the CLI applies (from the fixtures: 12535 in + 9 out = $0.05032).
const IN_PRICE: f64 = 4.0 / 1e6;
const OUT_PRICE: f64 = 20.0 / 1e6;

#[derive(Default)]
struct Recorder(Mutex<Vec<(String, String)>>);

impl AgentHooks for Recorder {
    fn publish(&self, _: Topic, kind: &str, _: &str, line: String) {
        self.0.lock().push((kind.to_string(), line));
    }
    fn row_changed(&self, _: AgentRow) {}
}

impl Recorder {
    fn kinds(&self, kind: &str) -> Vec<String> {
        self.0
            .lock()
            .iter()
            .filter(|(k, _)| k == kind)
            .map(|(_, l)| l.clone())
            .collect()
    }
}

struct Env {
    fake: FakeAnthropic,
    home: TempDir,
    work: TempDir,
    hooks: Arc<Recorder>,
    groups: Vec<u32>,
}

impl Env {
    async fn new() -> Self {
        Self::with_usage(1000, 10).await
    }

    async fn with_usage(input: u64, output: u64) -> Self {
        Env {
            fake: FakeAnthropic::start_with_usage(input, output).await,
            home: TempDir::new().unwrap(),
            work: TempDir::new().unwrap(),
            hooks: Arc::new(Recorder::default()),
            groups: Vec::new(),
        }
    }

    fn work(&self) -> PathBuf {
        self.work.path().canonicalize().unwrap()
    }

    fn options(&self, max_retries: u32) -> AgentOptions {
        AgentOptions {
            backend: Some("claude".into()),
            claude_bin: Some(claude_bin().display().to_string()),
            working_dir: Some(self.work().display().to_string()),
            env: Some(claude_env(
                &self.fake.base_url(),
                self.home.path(),
                max_retries,
            )),
            permission_mode: Some(PermissionMode::AcceptEdits),
            ..Default::default()
        }
    }

    fn spec(&self, options: AgentOptions) -> AgentSpec {
        AgentSpec {
            name: AgentName::new("coder").unwrap(),
            role: None,
            system_prompt: None,
            options,
            resume_session: None,
        }
    }

    fn session(&self, spec: &AgentSpec) -> Box<dyn Session> {
        ClaudeBackend::from_env().start_session(spec).unwrap()
    }

    fn ctx(&self) -> (TurnContext, CancellationToken) {
        let cancel = CancellationToken::new();
        (
            TurnContext {
                cancel: cancel.clone(),
                events: TurnEvents::new(self.hooks.clone(), AgentName::new("coder").unwrap()),
            },
            cancel,
        )
    }

    async fn turn(&self, s: &mut Box<dyn Session>, prompt: &str) -> Result<TurnResult, TurnError> {
        let (ctx, _) = self.ctx();
        tokio::time::timeout(TURN_LIMIT, s.turn(prompt, ctx))
            .await
            .expect("the turn must end")
    }

    /// The process group(s) of the CLI running in this test's working dir, remembered for
    /// the final orphan check.
    fn live_groups(&mut self) -> Vec<u32> {
        let g = procs::groups_under(&self.work());
        for pg in &g {
            if !self.groups.contains(pg) {
                self.groups.push(*pg);
            }
        }
        g
    }

    /// No process of any group seen, nor anything running in the working dir, is left.
    async fn assert_no_orphans(mut self) {
        self.live_groups();
        if let Err(left) = procs::wait_groups_gone(&self.groups, Duration::from_secs(10)).await {
            panic!("orphan processes left: {left:?}");
        }
        let stray = procs::with_cwd_under(&self.work());
        assert!(
            stray.is_empty(),
            "processes left in the working dir: {stray:?}"
        );
    }
}

fn approx(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

fn kill_group(pgid: u32) {
    let st = std::process::Command::new("kill")
        .args(["-KILL", "--", &format!("-{pgid}")])
        .status()
        .unwrap();
    assert!(st.success(), "kill -KILL -{pgid}");
}

/// Wait (bounded) until `pid` has exited (gone or a zombie not yet reaped).
async fn wait_dead(pid: u32) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while procs::stat(pid).is_some_and(|p| p.state != 'Z') {
        assert!(Instant::now() < deadline, "{pid} did not die");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claude_plain_turn() {
    let mut env = Env::new().await;
    env.fake
        .push(Reply::text("Hello from the fake API, streamed in pieces."));
    let spec = env.spec(env.options(0));
    let mut s = env.session(&spec);
    let r = env.turn(&mut s, "hello").await.unwrap();
    assert_eq!(r.text, "Hello from the fake API, streamed in pieces.");
    assert_eq!(r.subtype.as_deref(), Some("success"));
    assert_eq!(r.terminal_reason.as_deref(), Some("completed"));
    assert!(!r.is_error);
    assert_eq!(r.num_turns, 1);
    assert_eq!(r.prompt, "hello");
    let sid = r.session_id.clone().expect("session id");
    assert_eq!(s.session_id().as_deref(), Some(sid.as_str()));
    // live text deltas reached the events, in pieces, before the result
    let deltas = env.hooks.kinds("text_delta");
    assert!(deltas.len() >= 2, "{deltas:?}");
    // the fake saw the prompt in the request, streaming
    let reqs = env.fake.message_requests();
    assert_eq!(reqs.len(), 1);
    assert!(reqs[0].messages_text().contains("hello"));
    assert_eq!(reqs[0].body["stream"], true);
    assert_eq!(env.live_groups().len(), 1, "one long-lived process");
    s.shutdown().await;
    assert!(procs::groups_under(&env.work()).is_empty());
    env.assert_no_orphans().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claude_tool_turn_writes_file_in_working_dir() {
    let mut env = Env::new().await;
    let target = env.work().join("hello.txt");
    env.fake.push(Reply::write(
        &target.display().to_string(),
        "hello from fake model\n",
    ));
    env.fake.push(Reply::text("Created hello.txt."));
    let spec = env.spec(env.options(0));
    let mut s = env.session(&spec);
    let r = env.turn(&mut s, "create hello.txt").await.unwrap();
    assert_eq!(r.text, "Created hello.txt.");
    assert_eq!(r.num_turns, 2);
    assert!(r.permission_denials.is_empty());
    assert_eq!(
        std::fs::read_to_string(&target).unwrap(),
        "hello from fake model\n"
    );
    let tools = env.hooks.kinds("tool_use");
    assert_eq!(tools.len(), 1, "{tools:?}");
    assert!(
        tools[0].contains("Write") && tools[0].contains("hello.txt"),
        "{tools:?}"
    );
    // request 2 carries the tool result back to the model
    let reqs = env.fake.message_requests();
    assert_eq!(reqs.len(), 2);
    assert!(reqs[1].body.to_string().contains("tool_result"));
    env.live_groups();
    s.shutdown().await;
    env.assert_no_orphans().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claude_bash_tool_and_permission_denials() {
    let mut env = Env::new().await;
    // dontAsk with Bash allowed: the command runs; Write is not allowed: denied and listed.
    env.fake.push(Reply::bash("echo from-bash > bash.txt"));
    env.fake.push(Reply::write(
        &env.work().join("denied.txt").display().to_string(),
        "nope",
    ));
    env.fake.push(Reply::text("done"));
    let mut o = env.options(0);
    o.permission_mode = Some(PermissionMode::DontAsk);
    o.allowed_tools = Some(vec!["Bash".into()]);
    let spec = env.spec(o);
    let mut s = env.session(&spec);
    let r = env.turn(&mut s, "run echo then write").await.unwrap();
    assert_eq!(r.text, "done");
    assert_eq!(
        std::fs::read_to_string(env.work().join("bash.txt"))
            .unwrap()
            .trim(),
        "from-bash"
    );
    assert!(!env.work().join("denied.txt").exists());
    assert_eq!(r.permission_denials.len(), 1, "{:?}", r.permission_denials);
    assert!(
        r.permission_denials[0].starts_with("Write "),
        "{:?}",
        r.permission_denials
    );
    assert_eq!(env.hooks.kinds("permission_denied").len(), 1);
    env.live_groups();
    s.shutdown().await;
    env.assert_no_orphans().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claude_two_turns_one_process_keep_context() {
    let mut env = Env::new().await;
    env.fake.push(Reply::text("Noted: PELICAN."));
    env.fake.push(Reply::text("The codeword was PELICAN."));
    let spec = env.spec(env.options(0));
    let mut s = env.session(&spec);
    let r1 = env
        .turn(&mut s, "remember the codeword PELICAN")
        .await
        .unwrap();
    let g1 = env.live_groups();
    let r2 = env.turn(&mut s, "what was the codeword?").await.unwrap();
    let g2 = env.live_groups();
    assert_eq!(g1, g2, "the same process answered both turns");
    assert_eq!(g1.len(), 1);
    assert_eq!(r1.session_id, r2.session_id);
    let reqs = env.fake.message_requests();
    assert_eq!(reqs.len(), 2);
    let seen = reqs[1].messages_text();
    assert!(seen.contains("remember the codeword PELICAN"), "{seen}");
    assert!(seen.contains("Noted: PELICAN."), "{seen}");
    assert!(seen.contains("what was the codeword?"), "{seen}");
    s.shutdown().await;
    env.assert_no_orphans().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claude_resume_after_kill_and_after_node_restart_with_cost_deltas() {
    let mut env = Env::new().await;
    let per_turn = 1000.0 * IN_PRICE + 10.0 * OUT_PRICE;
    env.fake.push(Reply::text("Noted: PELICAN."));
    env.fake.push(Reply::text("It was PELICAN."));
    env.fake.push(Reply::text("Still PELICAN."));
    let spec = env.spec(env.options(0));
    let mut s = env.session(&spec);
    let r1 = env
        .turn(&mut s, "remember the codeword PELICAN")
        .await
        .unwrap();
    let sid = r1.session_id.clone().unwrap();
    let g1 = env.live_groups();
    assert_eq!(g1.len(), 1);
    assert!(
        approx(r1.cost_usd, per_turn),
        "{} vs {per_turn}",
        r1.cost_usd
    );

    // the process dies between turns: the next turn resumes it in a new process
    kill_group(g1[0]);
    wait_dead(g1[0]).await;
    let r2 = env.turn(&mut s, "what was the codeword?").await.unwrap();
    let g2 = env.live_groups();
    assert_ne!(g1, g2, "a new process");
    assert_eq!(
        r2.session_id.as_deref(),
        Some(sid.as_str()),
        "same conversation"
    );
    assert!(env.fake.message_requests()[1]
        .messages_text()
        .contains("remember the codeword PELICAN"));
    // the CLI's total is cumulative across --resume; the turn's cost is the delta
    assert!(
        approx(r2.cost_usd, per_turn),
        "{} vs {per_turn}",
        r2.cost_usd
    );

    // the node restarts: a new session object resumes by id
    s.shutdown().await;
    let mut spec2 = spec.clone();
    spec2.resume_session = Some(sid.clone());
    let mut s2 = env.session(&spec2);
    let r3 = env.turn(&mut s2, "and now?").await.unwrap();
    env.live_groups();
    assert_eq!(r3.session_id.as_deref(), Some(sid.as_str()));
    let seen = env.fake.message_requests()[2].messages_text();
    assert!(
        seen.contains("PELICAN") && seen.contains("It was PELICAN."),
        "{seen}"
    );
    assert!(
        approx(r3.cost_usd, per_turn),
        "{} vs {per_turn}",
        r3.cost_usd
    );
    s2.shutdown().await;
    env.assert_no_orphans().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claude_reset_starts_a_fresh_conversation() {
    let mut env = Env::new().await;
    env.fake.push(Reply::text("Noted: PELICAN."));
    env.fake.push(Reply::text("What codeword?"));
    let spec = env.spec(env.options(0));
    let mut s = env.session(&spec);
    let r1 = env
        .turn(&mut s, "remember the codeword PELICAN")
        .await
        .unwrap();
    let g1 = env.live_groups();
    s.reset().await.unwrap();
    assert_eq!(s.session_id(), None);
    let r2 = env.turn(&mut s, "what was the codeword?").await.unwrap();
    let g2 = env.live_groups();
    assert_ne!(g1, g2);
    assert_ne!(r1.session_id, r2.session_id);
    assert!(!env.fake.message_requests()[1]
        .messages_text()
        .contains("PELICAN"));
    s.shutdown().await;
    env.assert_no_orphans().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claude_interrupt_mid_turn_then_continue_in_same_process() {
    let mut env = Env::new().await;
    env.fake.push(Reply::text("warm"));
    env.fake.push(Reply::stall("I am thinking very slo"));
    env.fake.push(Reply::text("after the interrupt"));
    let spec = env.spec(env.options(0));
    let mut s = env.session(&spec);
    env.turn(&mut s, "warm up").await.unwrap();
    let g1 = env.live_groups();

    let (ctx, cancel) = env.ctx();
    let fake = &env.fake;
    let turn = s.turn("take your time", ctx);
    let interrupt = async {
        fake.wait_for_requests(2, TURN_LIMIT).await; // the stalled request is in flight
        let at = Instant::now();
        cancel.cancel();
        at
    };
    let (r, at) = tokio::time::timeout(TURN_LIMIT, async { tokio::join!(turn, interrupt) })
        .await
        .unwrap();
    assert_eq!(r, Err(TurnError::Interrupted));
    assert!(
        at.elapsed() < Duration::from_secs(2),
        "ended promptly: {:?}",
        at.elapsed()
    );
    assert_eq!(
        env.live_groups(),
        g1,
        "the CLI handled the interrupt; same process"
    );

    let r = env.turn(&mut s, "go on").await.unwrap();
    assert_eq!(r.text, "after the interrupt");
    let seen = env.fake.message_requests()[2].messages_text();
    assert!(seen.contains("[Request interrupted by user]"), "{seen}");
    s.shutdown().await;
    env.assert_no_orphans().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claude_api_errors_fail_the_turn_with_a_clear_message() {
    let mut env = Env::new().await;
    let spec = env.spec(env.options(0));
    let mut s = env.session(&spec);
    for (status, needle) in [
        (429, "rate_limit_error"),
        (500, "fake api_error"),
        (529, "529"),
        (401, "authentication_error"),
    ] {
        env.fake.set_default(Reply::error(status));
        let err = env.turn(&mut s, "hello").await.unwrap_err();
        let TurnError::Backend(msg) = &err else {
            panic!("{status}: {err:?}")
        };
        assert!(msg.contains(&format!("HTTP {status}")), "{status}: {msg}");
        assert!(msg.contains(needle), "{status}: {msg}");
        assert!(msg.contains("terminal_reason=api_error"), "{status}: {msg}");
    }
    // the same process recovers once the API does
    env.fake.set_default(Reply::text("fine again"));
    let r = env.turn(&mut s, "hello").await.unwrap();
    assert_eq!(r.text, "fine again");
    assert_eq!(env.live_groups().len(), 1);
    s.shutdown().await;
    env.assert_no_orphans().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claude_stalled_api_trips_inactivity_watchdog_then_resumes() {
    let mut env = Env::new().await;
    env.fake.push(Reply::text("warm"));
    env.fake.push(Reply::stall("partial answ"));
    env.fake.push(Reply::text("back"));
    let mut o = env.options(0);
    o.inactivity_timeout_ms = Some(6000);
    let spec = env.spec(o);
    let mut s = env.session(&spec);
    let r1 = env.turn(&mut s, "warm up").await.unwrap();
    let g1 = env.live_groups();
    let started = Instant::now();
    let err = env.turn(&mut s, "this will hang").await.unwrap_err();
    assert_eq!(err, TurnError::Timeout(6000));
    assert!(started.elapsed() >= Duration::from_millis(6000));
    // the hung process is gone (killed and reaped), and the conversation continues
    if let Err(left) = procs::wait_groups_gone(&g1, Duration::from_secs(5)).await {
        panic!("watchdog left {left:?}");
    }
    let r3 = env.turn(&mut s, "again").await.unwrap();
    assert_eq!(r3.text, "back");
    assert_eq!(r3.session_id, r1.session_id, "resumed");
    assert_ne!(env.live_groups(), g1);
    s.shutdown().await;
    env.assert_no_orphans().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claude_crash_mid_turn_fails_with_exit_status() {
    let mut env = Env::new().await;
    env.fake.push(Reply::text("warm"));
    env.fake.push(Reply::stall("never finishes"));
    env.fake.push(Reply::text("recovered"));
    let spec = env.spec(env.options(0));
    let mut s = env.session(&spec);
    let r1 = env.turn(&mut s, "warm up").await.unwrap();
    let g1 = env.live_groups();
    let (ctx, _cancel) = env.ctx();
    let fake = &env.fake;
    let turn = s.turn("crash now", ctx);
    let killer = async {
        fake.wait_for_requests(2, TURN_LIMIT).await;
        kill_group(g1[0]);
    };
    let (r, ()) = tokio::time::timeout(TURN_LIMIT, async { tokio::join!(turn, killer) })
        .await
        .unwrap();
    let Err(TurnError::Backend(msg)) = r else {
        panic!("{r:?}")
    };
    assert!(
        msg.contains("exited mid-turn") && msg.contains("signal: 9"),
        "{msg}"
    );
    let r3 = env.turn(&mut s, "still there?").await.unwrap();
    assert_eq!(r3.text, "recovered");
    assert_eq!(r3.session_id, r1.session_id);
    s.shutdown().await;
    env.assert_no_orphans().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claude_max_turns_exceeded_fails_the_turn() {
    let mut env = Env::new().await;
    let target = env.work().join("hello.txt");
    env.fake
        .push(Reply::write(&target.display().to_string(), "x\n"));
    env.fake.push(Reply::text("next turn"));
    let mut o = env.options(0);
    o.max_turns = Some(1);
    let spec = env.spec(o);
    let mut s = env.session(&spec);
    let err = env.turn(&mut s, "create hello.txt").await.unwrap_err();
    let TurnError::Backend(msg) = &err else {
        panic!("{err:?}")
    };
    assert!(msg.contains("max_turns"), "{msg}");
    assert!(msg.contains("Reached maximum number of turns (1)"), "{msg}");
    assert!(target.exists(), "the CLI still ran the first tool call");
    // the failed turn's cost is carried into the next successful one
    let r = env.turn(&mut s, "and then?").await.unwrap();
    assert_eq!(r.text, "next turn");
    let one = 1000.0 * IN_PRICE + 10.0 * OUT_PRICE;
    assert!(
        approx(r.cost_usd, 2.0 * one),
        "{} vs {}",
        r.cost_usd,
        2.0 * one
    );
    env.live_groups();
    s.shutdown().await;
    env.assert_no_orphans().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claude_cost_and_usage_accounting() {
    let mut env = Env::with_usage(2000, 50).await;
    let per_turn = 2000.0 * IN_PRICE + 50.0 * OUT_PRICE;
    let spec = env.spec(env.options(0));
    let mut s = env.session(&spec);
    let mut sum = 0.0;
    for i in 0..3 {
        env.fake.push(Reply::text(format!("answer {i}")));
        let r = env.turn(&mut s, &format!("question {i}")).await.unwrap();
        assert!(
            approx(r.cost_usd, per_turn),
            "turn {i}: {} vs {per_turn}",
            r.cost_usd
        );
        assert_eq!(r.usage.input_tokens, 2000);
        assert_eq!(r.usage.output_tokens, 50);
        assert_eq!(r.usage.cache_read_input_tokens, 0);
        let m = r
            .model_usage
            .get("claude-opus-5-5")
            .expect("per-model usage");
        assert_eq!(m.input_tokens, 2000, "per turn, not cumulative");
        assert!(r.duration_ms > 0);
        sum += r.cost_usd;
    }
    assert!(approx(sum, 3.0 * per_turn));
    env.live_groups();
    s.shutdown().await;
    env.assert_no_orphans().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claude_dropped_session_kills_its_process_group() {
    let mut env = Env::new().await;
    let spec = env.spec(env.options(0));
    let mut s = env.session(&spec);
    env.turn(&mut s, "hello").await.unwrap();
    let g = env.live_groups();
    assert_eq!(g.len(), 1);
    drop(s); // no shutdown: the actor may just be stopped
    env.assert_no_orphans().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claude_missing_binary_is_a_clear_start_error() {
    let env = Env::new().await;
    let mut o = env.options(0);
    o.claude_bin = Some("/nonexistent/claude".into());
    let err = ClaudeBackend::from_env()
        .start_session(&env.spec(o))
        .err()
        .expect("must fail");
    assert!(
        err.0.contains("/nonexistent/claude") && err.0.contains("install-claude.sh"),
        "{err}"
    );
}

/// Through the agent actor, as the node runs it: ask, then dismiss.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claude_through_the_agent_actor() {
    use workshop_agent::{AgentActor, AgentArgs, NoHooks, SessionBehaviour};
    use workshop_proto::agent::{AgentMsg, AskReply, Prompt};

    let mut env = Env::new().await;
    env.fake.push(Reply::text("actor says hi"));
    env.fake.push(Reply::text("second"));
    let spec = env.spec(env.options(0));
    let (actor, handle) = ractor::Actor::spawn(
        None,
        AgentActor,
        AgentArgs {
            spec: Arc::new(spec),
            backend: Arc::new(ClaudeBackend::from_env()),
            behaviour: Box::new(SessionBehaviour),
            hooks: Arc::new(NoHooks),
            restored: None,
        },
    )
    .await
    .unwrap();
    let ask = |text: &str| {
        let actor = actor.clone();
        let text = text.to_string();
        async move {
            ractor::call!(
                actor,
                AgentMsg::Ask,
                Prompt {
                    text,
                    origin: "ask".into()
                }
            )
            .unwrap()
        }
    };
    let AskReply::Done(r) = tokio::time::timeout(TURN_LIMIT, ask("hello"))
        .await
        .unwrap()
    else {
        panic!("first ask failed")
    };
    assert_eq!(r.text, "actor says hi");
    let AskReply::Done(r2) = tokio::time::timeout(TURN_LIMIT, ask("again"))
        .await
        .unwrap()
    else {
        panic!("second ask failed")
    };
    assert_eq!(r2.session_id, r.session_id);
    assert_eq!(env.live_groups().len(), 1);
    let ack = ractor::call!(
        actor,
        AgentMsg::Shutdown,
        "the agent was dismissed".to_string()
    )
    .unwrap();
    assert!(ack.0);
    handle.await.unwrap();
    env.assert_no_orphans().await;
}
