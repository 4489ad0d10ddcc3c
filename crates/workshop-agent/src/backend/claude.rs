//! The `claude` backend: Claude Code CLI, one long-lived stream-json process per agent.
//!
//! `claude -p --input-format stream-json --output-format stream-json --verbose
//! --include-partial-messages` plus the agent's options ([`args::build_args`]) runs in its own
//! process group in the agent's working directory. A turn is one user line on stdin and ends at
//! the `result` line (not at process exit); every stdout line goes through the pure parser in
//! [`stream`], text deltas and tool calls go to the turn's events as they arrive.
//!
//! Sessions survive: the session id comes from `init`/`result`; when the process is gone (crash,
//! watchdog, node restart via `AgentSpec::resume_session`) the next turn starts a new process with
//! `--resume=<id>` in the same working directory. `reset` starts a fresh conversation.
//!
//! Cost: the CLI's `total_cost_usd` is cumulative within a process and across `--resume`, so a
//! turn's cost is the delta against the last total this session saw. Where no baseline is known
//! (a session resumed by a new node) the CLI's own `model_usage_since_last_result` is used. The
//! cost of a failed or interrupted turn is carried into the next successful turn's `cost_usd`, so
//! the agent's sum of turn costs always equals what the CLI spent.
//!
//! Stop: close stdin, wait up to 5 s, SIGTERM, wait, SIGKILL, always to the whole process group,
//! and always reap. Dropping a session SIGKILLs its process group (tokio reaps the leader).
//!
//! Death of the node: the process is forked by the [`crate::spawner`] thread with a
//! parent-death signal (SIGKILL), so it dies with the node even on SIGKILL; its group is
//! reported to the node's [`ProcessLedger`] (started, ended), so a restarted node kills what is
//! left of it (tool subprocesses) before it resumes the session.

pub mod args;
pub mod stream;

use std::collections::{HashSet, VecDeque};
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::mpsc;
use tokio::time::Instant;
use workshop_types::{AgentOptions, AgentSpec, TurnError, TurnResult};

use self::stream::{Block, Line, ResultLine, StreamEvent};
use super::{Backend, BackendError, BoxFut, ProcessLedger, Session, TurnContext};
use crate::hooks::TurnEvents;

/// How long `shutdown` waits after closing stdin before SIGTERM.
pub const STOP_GRACE: Duration = Duration::from_secs(5);
/// How long after SIGTERM before SIGKILL.
pub const TERM_GRACE: Duration = Duration::from_secs(2);
/// How long an interrupted turn waits for the CLI's `result` line before killing the process.
pub const INTERRUPT_GRACE: Duration = Duration::from_secs(2);
/// Text deltas published per turn at most (the event log's retention); the result is complete.
pub const MAX_DELTAS_PER_TURN: usize = 4096;
const STDERR_TAIL_LINES: usize = 40;
const STDOUT_CHANNEL: usize = 1024;

#[derive(Default, Clone)]
pub struct ClaudeBackend {
    /// `$CLAUDE_CLI` when the backend was made.
    env_cli: Option<String>,
    /// Where the sessions' processes are reported (the node's process ledger).
    ledger: Option<Arc<dyn ProcessLedger>>,
}

impl ClaudeBackend {
    pub fn from_env() -> Self {
        ClaudeBackend {
            env_cli: std::env::var("CLAUDE_CLI").ok(),
            ledger: None,
        }
    }

    /// The same backend, its sessions reporting their processes to `ledger`.
    pub fn with_ledger(mut self, ledger: Arc<dyn ProcessLedger>) -> Self {
        self.ledger = Some(ledger);
        self
    }
}

impl Backend for ClaudeBackend {
    fn name(&self) -> &'static str {
        "claude"
    }

    fn speaks_mcp(&self) -> bool {
        true
    }

    fn reporting_to(&self, ledger: Arc<dyn ProcessLedger>) -> Option<Arc<dyn Backend>> {
        Some(Arc::new(self.clone().with_ledger(ledger)))
    }

    fn start_session(&self, spec: &AgentSpec) -> Result<Box<dyn Session>, BackendError> {
        let options = spec.options.clone();
        let bin = args::claude_bin(&options, self.env_cli.clone());
        let cwd = options.working_dir.as_ref().map(PathBuf::from);
        if let Some(dir) = &cwd {
            if !dir.is_dir() {
                return Err(BackendError(format!(
                    "working_dir {} is not a directory",
                    dir.display()
                )));
            }
        }
        let fresh = spec.resume_session.is_none();
        let mut session = ClaudeSession {
            agent: spec.name.to_string(),
            options,
            system_prompt: spec.system_prompt.clone(),
            bin,
            cwd,
            proc: None,
            ledger: self.ledger.clone(),
            session_id: spec.resume_session.clone(),
            cost_seen: fresh.then_some(0.0),
            unreported_cost: 0.0,
            turn_open: false,
            next_request: 0,
        };
        // Start the process now (it needs ~0.5 s to boot) when there is a runtime to own it;
        // otherwise the first turn starts it.
        if tokio::runtime::Handle::try_current().is_ok() {
            session.ensure_proc()?;
        }
        Ok(Box::new(session))
    }
}

/// The last lines of the CLI's stderr.
#[derive(Default)]
struct Tail(VecDeque<String>);

impl Tail {
    fn push(&mut self, line: String) {
        if self.0.len() == STDERR_TAIL_LINES {
            self.0.pop_front();
        }
        self.0.push_back(stream::truncate(&line, 2000));
    }
    fn text(&self) -> String {
        self.0.iter().cloned().collect::<Vec<_>>().join("\n")
    }
}

/// One running `claude` process (leader of its own process group).
struct Proc {
    child: Child,
    pid: u32,
    /// The agent it runs for and where its start was reported (its end is reported on drop).
    agent: String,
    ledger: Option<Arc<dyn ProcessLedger>>,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<Vec<u8>>,
    stderr: Arc<Mutex<Tail>>,
    resumed: Option<String>,
    saw_stdout: bool,
    /// The last cumulative `total_cost_usd` this process reported.
    last_total: Option<f64>,
}

impl Proc {
    fn stderr_tail(&self) -> String {
        let t = self.stderr.lock().text();
        if t.trim().is_empty() {
            "(stderr empty)".to_string()
        } else {
            t
        }
    }

    async fn write(&mut self, line: &str) -> std::io::Result<()> {
        let stdin = self
            .stdin
            .as_mut()
            .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "stdin closed"))?;
        let io = async {
            stdin.write_all(line.as_bytes()).await?;
            stdin.flush().await
        };
        match tokio::time::timeout(Duration::from_secs(30), io).await {
            Ok(r) => r,
            Err(_) => Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "claude did not read its stdin for 30 s",
            )),
        }
    }

    /// SIGKILL the group and reap the leader.
    async fn kill(mut self) -> Option<ExitStatus> {
        signal_group(self.pid, libc::SIGKILL);
        let status = tokio::time::timeout(Duration::from_secs(5), self.child.wait())
            .await
            .ok()
            .and_then(Result::ok);
        // stragglers of the group (tool subprocesses) go too; Drop signals once more.
        status
    }

    /// Close stdin, wait, SIGTERM, wait, SIGKILL: always to the group, always reaped.
    async fn stop(mut self) -> Option<ExitStatus> {
        drop(self.stdin.take());
        if let Ok(Ok(st)) = tokio::time::timeout(STOP_GRACE, self.child.wait()).await {
            return Some(st);
        }
        signal_group(self.pid, libc::SIGTERM);
        if let Ok(Ok(st)) = tokio::time::timeout(TERM_GRACE, self.child.wait()).await {
            return Some(st);
        }
        self.kill().await
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        // Whatever state we are in, nothing of this process group may outlive the session. The
        // group id cannot be reused while any member lives; with no member left this is ESRCH.
        signal_group(self.pid, libc::SIGKILL);
        // A leader not yet reaped is handed to tokio's orphan reaper when `child` drops.
        if let Some(ledger) = &self.ledger {
            ledger.ended(&self.agent, self.pid);
        }
    }
}

/// Send `sig` to the process group `pgid` (never to 0 or 1, which would mean "everyone").
#[allow(unsafe_code)]
fn signal_group(pgid: u32, sig: i32) -> bool {
    let Ok(pg) = i32::try_from(pgid) else {
        return false;
    };
    if pg <= 1 {
        return false;
    }
    // SAFETY: kill(2) takes plain integers and touches no memory of ours.
    unsafe { libc::kill(-pg, sig) == 0 }
}

struct ClaudeSession {
    agent: String,
    options: AgentOptions,
    system_prompt: Option<String>,
    bin: PathBuf,
    cwd: Option<PathBuf>,
    proc: Option<Proc>,
    ledger: Option<Arc<dyn ProcessLedger>>,
    session_id: Option<String>,
    /// The last cumulative `total_cost_usd` seen for `session_id` (None: unknown baseline).
    cost_seen: Option<f64>,
    /// Cost of failed/interrupted turns not yet reported on a successful result.
    unreported_cost: f64,
    /// A turn was started and never finished (its future was dropped): the process is suspect.
    turn_open: bool,
    next_request: u64,
}

/// What happened while waiting in a turn.
enum Ev {
    Cancel,
    InterruptExpired,
    Idle,
    Line(Vec<u8>),
    Eof,
}

#[allow(clippy::large_enum_variant)] // one value per turn, never stored
enum TurnEnd {
    Done(Result<TurnResult, TurnError>),
    /// stdout closed before any line of this turn: the process was already gone.
    DiedBeforeOutput,
}

/// Per-turn accumulation.
#[derive(Default)]
struct TurnAcc {
    lines: usize,
    streamed: HashSet<String>,
    deltas: usize,
    truncated_noted: bool,
    last_message: Option<String>,
    last_text: String,
}

impl TurnAcc {
    fn delta(&mut self, events: &TurnEvents, agent: &str, text: &str) {
        if text.is_empty() {
            return;
        }
        if self.deltas < MAX_DELTAS_PER_TURN {
            self.deltas += 1;
            events.text_delta(text);
        } else if !self.truncated_noted {
            self.truncated_noted = true;
            events.note(
                "text_delta_truncated",
                format!("[stream] {agent}: more than {MAX_DELTAS_PER_TURN} deltas this turn; the rest is in the result"),
            );
        }
    }
}

impl ClaudeSession {
    fn spawn(&self, resume: Option<&str>) -> Result<Proc, BackendError> {
        let argv = args::build_args(&self.options, self.system_prompt.as_deref(), resume);
        let mut cmd = Command::new(&self.bin);
        cmd.args(&argv)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(false);
        for (k, _) in std::env::vars_os() {
            if k.to_str().is_some_and(args::is_stripped) {
                cmd.env_remove(&k);
            }
        }
        if let Some(env) = &self.options.env {
            cmd.envs(env);
        }
        if let Some(dir) = &self.cwd {
            cmd.current_dir(dir);
        }
        // Forked by the spawner thread: the process dies with the node, even on SIGKILL.
        let mut child = crate::spawner::spawn(cmd).map_err(|e| {
            BackendError(format!(
                "cannot start claude ({}): {e}; install it (.ci/install-claude.sh), or set the agent's claude_bin or $CLAUDE_CLI",
                self.bin.display()
            ))
        })?;
        let pid = child.id().unwrap_or(0);
        if let (Some(ledger), true) = (&self.ledger, pid > 0) {
            ledger.started(&self.agent, pid);
        }
        let stdin = child.stdin.take();
        let stdout = child.stdout.take();
        let stderr = child.stderr.take();
        let (tx, rx) = mpsc::channel(STDOUT_CHANNEL);
        if let Some(out) = stdout {
            tokio::spawn(async move {
                // no line-length limit: read_until grows the buffer as needed
                let mut r = BufReader::with_capacity(1 << 16, out);
                loop {
                    let mut buf = Vec::new();
                    match r.read_until(b'\n', &mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(_) => {
                            if tx.send(buf).await.is_err() {
                                break;
                            }
                        }
                    }
                }
            });
        }
        let tail = Arc::new(Mutex::new(Tail::default()));
        if let Some(err) = stderr {
            let tail = tail.clone();
            let agent = self.agent.clone();
            tokio::spawn(async move {
                let mut r = BufReader::new(err);
                let mut buf = Vec::new();
                loop {
                    buf.clear();
                    match r.read_until(b'\n', &mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(_) => {
                            let line = String::from_utf8_lossy(&buf).trim_end().to_string();
                            tracing::debug!(agent = %agent, "claude stderr: {line}");
                            tail.lock().push(line);
                        }
                    }
                }
            });
        }
        tracing::debug!(agent = %self.agent, pid, ?resume, "claude started");
        Ok(Proc {
            child,
            pid,
            agent: self.agent.clone(),
            ledger: self.ledger.clone(),
            stdin,
            lines: rx,
            stderr: tail,
            resumed: resume.map(str::to_string),
            saw_stdout: false,
            last_total: None,
        })
    }

    /// A live process, starting one (resuming the session) if there is none or it died.
    fn ensure_proc(&mut self) -> Result<(), BackendError> {
        if let Some(p) = self.proc.as_mut() {
            match p.child.try_wait() {
                Ok(None) => return Ok(()),
                _ => {
                    // exited between turns (reaped now); its group is signalled on drop
                    self.proc = None;
                }
            }
        }
        let resume = if self.options.no_session_persistence == Some(true) {
            None
        } else {
            self.session_id.clone()
        };
        self.proc = Some(self.spawn(resume.as_deref())?);
        Ok(())
    }

    /// Start the replacement process now, so it boots while the agent is idle; a failure here
    /// shows again (with its message) on the next turn.
    fn respawn_quietly(&mut self) {
        if let Err(e) = self.ensure_proc() {
            tracing::warn!(agent = %self.agent, "claude restart failed: {e}");
        }
    }

    async fn kill_proc(&mut self) -> (Option<ExitStatus>, String) {
        match self.proc.take() {
            Some(p) => {
                let tail = p.stderr_tail();
                (p.kill().await, tail)
            }
            None => (None, String::new()),
        }
    }

    async fn run_turn(&mut self, prompt: &str, ctx: TurnContext) -> Result<TurnResult, TurnError> {
        if self.turn_open {
            // The previous turn was abandoned mid-way: its process is in an unknown state.
            self.kill_proc().await;
            self.turn_open = false;
        }
        let mut attempt = 0;
        loop {
            if ctx.cancel.is_cancelled() {
                return Err(TurnError::Interrupted);
            }
            self.ensure_proc().map_err(|e| TurnError::Backend(e.0))?;
            let line = stream::user_message(prompt);
            if let Err(e) = self.write_line(&line).await {
                let (_, tail) = self.kill_proc().await;
                if attempt == 0 {
                    // died between turns (the pipe closed before try_wait noticed): once more
                    attempt += 1;
                    continue;
                }
                return Err(TurnError::Backend(format!(
                    "cannot send the prompt to claude: {e}; stderr: {tail}"
                )));
            }
            self.turn_open = true;
            let r = self.read_turn(prompt, &ctx, attempt == 0).await;
            self.turn_open = false;
            match r {
                TurnEnd::Done(r) => return r,
                TurnEnd::DiedBeforeOutput => {
                    // The process was already dying when the prompt went in (it exited without
                    // a single line for this turn): start it again and resend, once.
                    attempt += 1;
                }
            }
        }
    }

    async fn write_line(&mut self, line: &str) -> std::io::Result<()> {
        match self.proc.as_mut() {
            Some(p) => p.write(line).await,
            None => Err(std::io::Error::new(
                std::io::ErrorKind::NotConnected,
                "no claude process",
            )),
        }
    }

    async fn read_turn(&mut self, prompt: &str, ctx: &TurnContext, may_retry: bool) -> TurnEnd {
        let idle_ms = self.options.inactivity_timeout_ms.filter(|ms| *ms > 0);
        let idle = idle_ms.map(Duration::from_millis);
        let mut idle_deadline = idle.map(|d| Instant::now() + d);
        let mut interrupt_deadline: Option<Instant> = None;
        let mut acc = TurnAcc::default();
        loop {
            let ev = {
                let Some(p) = self.proc.as_mut() else {
                    return TurnEnd::Done(Err(TurnError::Backend(
                        "claude process vanished".into(),
                    )));
                };
                let interrupting = interrupt_deadline.is_some();
                tokio::select! {
                    biased;
                    _ = ctx.cancel.cancelled(), if !interrupting => Ev::Cancel,
                    line = p.lines.recv() => match line {
                        Some(l) => Ev::Line(l),
                        None => Ev::Eof,
                    },
                    _ = sleep_until_opt(interrupt_deadline) => Ev::InterruptExpired,
                    _ = sleep_until_opt(idle_deadline), if !interrupting => Ev::Idle,
                }
            };
            match ev {
                Ev::Cancel => {
                    self.next_request += 1;
                    let id = format!("workshop-interrupt-{}", self.next_request);
                    if self
                        .write_line(&stream::interrupt_request(&id))
                        .await
                        .is_err()
                    {
                        self.kill_proc().await;
                        return TurnEnd::Done(Err(TurnError::Interrupted));
                    }
                    interrupt_deadline = Some(Instant::now() + INTERRUPT_GRACE);
                }
                Ev::InterruptExpired => {
                    tracing::warn!(agent = %self.agent, "claude ignored the interrupt; killing it");
                    self.kill_proc().await;
                    self.respawn_quietly();
                    return TurnEnd::Done(Err(TurnError::Interrupted));
                }
                Ev::Idle => {
                    let ms = idle_ms.unwrap_or(0);
                    tracing::warn!(agent = %self.agent, ms, "claude silent too long; killing it");
                    self.kill_proc().await;
                    self.respawn_quietly();
                    return TurnEnd::Done(Err(TurnError::Timeout(ms)));
                }
                Ev::Eof => {
                    let interrupting = interrupt_deadline.is_some();
                    if may_retry && acc.lines == 0 && !interrupting {
                        if let Some(p) = self.proc.as_ref() {
                            if !p.stderr_tail().contains("No conversation found") {
                                self.kill_proc().await;
                                return TurnEnd::DiedBeforeOutput;
                            }
                        }
                    }
                    return TurnEnd::Done(Err(self.exited_mid_turn(interrupting).await));
                }
                Ev::Line(bytes) => {
                    acc.lines += 1;
                    tracing::trace!(agent = %self.agent, "claude stdout: {}", String::from_utf8_lossy(&bytes).trim_end());
                    if let Some(d) = idle {
                        idle_deadline = Some(Instant::now() + d);
                    }
                    if let Some(p) = self.proc.as_mut() {
                        p.saw_stdout = true;
                    }
                    let line = stream::parse_line(&bytes);
                    if let Line::Result(r) = line {
                        return TurnEnd::Done(self.finish(
                            *r,
                            acc,
                            prompt,
                            interrupt_deadline.is_some(),
                        ));
                    }
                    self.on_line(line, &mut acc, &ctx.events).await;
                }
            }
        }
    }

    async fn on_line(&mut self, line: Line, acc: &mut TurnAcc, events: &TurnEvents) {
        let agent = self.agent.clone();
        match line {
            Line::Init { session_id, .. } => {
                if let Some(id) = session_id {
                    self.session_id = Some(id);
                }
            }
            Line::StreamEvent(StreamEvent::MessageStart {
                message_id: Some(id),
            }) => {
                acc.streamed.insert(id);
            }
            Line::StreamEvent(StreamEvent::TextDelta(t)) => acc.delta(events, &agent, &t),
            Line::StreamEvent(_) => {}
            Line::Assistant(a) => {
                let id = a.message_id.clone().unwrap_or_default();
                if acc.last_message.as_deref() != Some(id.as_str()) {
                    acc.last_message = Some(id.clone());
                    acc.last_text.clear();
                }
                let streamed = acc.streamed.contains(&id);
                for b in &a.blocks {
                    match b {
                        Block::Text(t) => {
                            if !acc.last_text.is_empty() {
                                acc.last_text.push('\n');
                            }
                            acc.last_text.push_str(t);
                            if !streamed {
                                acc.delta(events, &agent, t);
                            }
                        }
                        Block::ToolUse { name, input, .. } => {
                            events.tool_use(name, &stream::tool_detail(name, input));
                        }
                        Block::Thinking | Block::Other(_) => {}
                    }
                }
                if let Some(err) = a.error {
                    events.note(
                        "api_error",
                        format!("[error] {agent}: claude reports {err}"),
                    );
                }
            }
            Line::User(u) => {
                for r in u.tool_results.iter().filter(|r| r.is_error) {
                    events.note(
                        "tool_error",
                        format!(
                            "[tool] {agent} <- error: {}",
                            stream::truncate(&r.content, 200)
                        ),
                    );
                }
            }
            Line::PermissionDenied { tool_name, message } => events.note(
                "permission_denied",
                format!(
                    "[denied] {agent}: {tool_name} — {}",
                    stream::truncate(&message, 200)
                ),
            ),
            Line::RateLimit { status } => events.note(
                "rate_limit",
                format!("[rate_limit] {agent}: {}", status.unwrap_or_default()),
            ),
            Line::ControlRequest {
                request_id,
                subtype,
            } => {
                // never leave the CLI waiting for an answer nobody will give
                let _ = self
                    .write_line(&stream::control_refusal(&request_id, &subtype))
                    .await;
            }
            Line::ControlResponse { .. }
            | Line::System { .. }
            | Line::Other { .. }
            | Line::NotJson
            | Line::Result(_) => {}
        }
    }

    /// The CLI closed stdout while a turn was open.
    async fn exited_mid_turn(&mut self, interrupting: bool) -> TurnError {
        let Some(mut p) = self.proc.take() else {
            return TurnError::Backend("claude process vanished".into());
        };
        let status = tokio::time::timeout(Duration::from_secs(2), p.child.wait())
            .await
            .ok()
            .and_then(Result::ok);
        let resumed = p.resumed.clone();
        let saw_stdout = p.saw_stdout;
        let tail = p.stderr_tail();
        let status = match status {
            Some(s) => s.to_string(),
            None => {
                p.kill().await;
                "still running after closing stdout; killed".to_string()
            }
        };
        if interrupting {
            return TurnError::Interrupted;
        }
        if let (Some(id), false) = (resumed, saw_stdout) {
            if tail.contains("No conversation found") {
                self.session_id = None;
                self.cost_seen = Some(0.0);
                return TurnError::Backend(format!(
                    "claude could not resume session {id} ({status}): {tail}; the next turn starts a new conversation"
                ));
            }
        }
        TurnError::Backend(format!("claude exited mid-turn ({status}): {tail}"))
    }

    fn finish(
        &mut self,
        r: ResultLine,
        acc: TurnAcc,
        prompt: &str,
        interrupted: bool,
    ) -> Result<TurnResult, TurnError> {
        if let Some(id) = &r.session_id {
            self.session_id = Some(id.clone());
        }
        // Within one process the cumulative total is reliable: take its delta. For the first
        // result of a process (new, or resumed: 2.1.328 restarts the total at 0 in a resumed
        // stream-json process, but one-shot `--resume` continues it) the CLI's own per-turn
        // figure decides; without one, the delta against the session's last total.
        let hint = r.turn_cost_hint();
        let proc_total = self.proc.as_ref().and_then(|p| p.last_total);
        let turn_cost = match (r.total_cost_usd, proc_total, hint, self.cost_seen) {
            (Some(total), Some(prev), _, _) if total + 1e-12 >= prev => total - prev,
            (_, _, Some(h), _) => h,
            (Some(total), _, None, Some(prev)) if total + 1e-12 >= prev => total - prev,
            (Some(total), _, None, _) => total,
            (None, _, None, _) => 0.0,
        };
        if let Some(total) = r.total_cost_usd {
            self.cost_seen = Some(total);
            if let Some(p) = self.proc.as_mut() {
                p.last_total = Some(total);
            }
        }
        if interrupted {
            self.unreported_cost += turn_cost;
            return Err(TurnError::Interrupted);
        }
        if let Some(msg) = r.failure() {
            self.unreported_cost += turn_cost;
            return Err(TurnError::Backend(msg));
        }
        let cost_usd = turn_cost + std::mem::take(&mut self.unreported_cost);
        Ok(TurnResult {
            text: r.result.clone().unwrap_or(acc.last_text),
            session_id: r.session_id.clone().or_else(|| self.session_id.clone()),
            cost_usd,
            duration_ms: r.duration_ms,
            num_turns: r.num_turns,
            usage: r.usage.clone(),
            model_usage: r
                .turn_model_usage()
                .iter()
                .map(|(m, u)| (m.clone(), u.usage.clone()))
                .collect(),
            permission_denials: r
                .permission_denials
                .iter()
                .map(stream::denial_text)
                .collect(),
            is_error: false,
            subtype: r.subtype.clone(),
            terminal_reason: r.terminal_reason.clone(),
            prompt: prompt.to_string(),
        })
    }
}

async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

impl Session for ClaudeSession {
    fn turn<'a>(
        &'a mut self,
        prompt: &'a str,
        ctx: TurnContext,
    ) -> BoxFut<'a, Result<TurnResult, TurnError>> {
        Box::pin(self.run_turn(prompt, ctx))
    }

    fn reset(&mut self) -> BoxFut<'_, Result<(), BackendError>> {
        Box::pin(async move {
            self.kill_proc().await;
            self.turn_open = false;
            self.session_id = None;
            self.cost_seen = Some(0.0);
            self.unreported_cost = 0.0;
            self.ensure_proc()
        })
    }

    fn shutdown(&mut self) -> BoxFut<'_, ()> {
        Box::pin(async move {
            if let Some(p) = self.proc.take() {
                let st = p.stop().await;
                tracing::debug!(agent = %self.agent, ?st, "claude stopped");
            }
        })
    }

    fn session_id(&self) -> Option<String> {
        self.session_id.clone()
    }
}
