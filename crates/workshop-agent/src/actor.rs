//! The agent actor: gen_agent's turn state machine with AgentWorkshop's API on top.
//!
//! One turn in flight; requests wait in a bounded FIFO mailbox; a behaviour's self-chained
//! prompt runs ahead of the mailbox; `notify` is deferred while a turn runs and delivered at the
//! turn's end; `interrupt` and the watchdog cancel the turn (the caller gets `interrupted` or
//! `timeout`) and the agent keeps draining; `halt` freezes the mailbox until `resume`.
//! The turn itself runs in a task that holds the session; the actor stays responsive.

use std::collections::VecDeque;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;
use workshop_proto::agent::{
    Ack, AgentMsg, AskReply, AwaitReply, CastReply, HistoryReply, InfoReply, PollReply, Prompt,
    Refusal, TurnDone,
};
use workshop_types::{
    AgentInfo, AgentRow, AgentSpec, AgentStatus, PollState, Topic, TurnError, TurnResult,
};

use crate::backend::{Backend, Session, TurnContext};
use crate::behaviour::{Behaviour, Next, PreTurn};
use crate::hooks::{AgentHooks, TurnEvents};

/// How many cast results `poll` can still find, and how many turns `history` keeps.
pub const MAX_RESULTS: usize = 100;
pub const MAX_HISTORY: usize = 200;

pub struct AgentActor;

pub struct AgentArgs {
    /// Shared with the node's directory (one copy per agent).
    pub spec: Arc<AgentSpec>,
    pub backend: Arc<dyn Backend>,
    pub behaviour: Box<dyn Behaviour>,
    pub hooks: Arc<dyn AgentHooks>,
    /// Set when the agent is restored after a node restart.
    pub restored: Option<Restored>,
}

/// What a restarted node knows about an agent it restores.
#[derive(Clone, Debug, Default)]
pub struct Restored {
    pub cost_usd: f64,
    pub turns: u32,
    /// The prompt of the turn that was in flight when the node stopped: it is reported as
    /// interrupted, never silently retried.
    pub interrupted_task: Option<String>,
}

type Outcome = Result<TurnResult, TurnError>;

struct Pending {
    seq: u64,
    prompt: String,
    origin: String,
    reply: Option<RpcReplyPort<AskReply>>,
}

struct InFlight {
    turn: u64,
    seq: u64,
    prompt: String,
    origin: String,
    reply: Option<RpcReplyPort<AskReply>>,
    cancel: CancellationToken,
}

pub struct AgentState {
    spec: Arc<AgentSpec>,
    backend: Arc<dyn Backend>,
    behaviour: Box<dyn Behaviour>,
    hooks: Arc<dyn AgentHooks>,
    session: Arc<Mutex<Box<dyn Session>>>,
    queue: VecDeque<Pending>,
    self_chain: Option<String>,
    deferred: Vec<String>,
    in_flight: Option<InFlight>,
    halted: bool,
    halt_pending: bool,
    next_seq: u64,
    next_turn: u64,
    results: VecDeque<(u64, Outcome)>,
    history: Vec<TurnResult>,
    last: Option<Outcome>,
    cost_usd: f64,
    turns: u32,
    session_id: Option<String>,
    waiters: Vec<RpcReplyPort<AwaitReply>>,
}

impl AgentState {
    fn status(&self) -> AgentStatus {
        if self.in_flight.is_some() {
            AgentStatus::Working
        } else if self.halted {
            AgentStatus::Halted
        } else {
            AgentStatus::Idle
        }
    }

    fn row(&self) -> AgentRow {
        AgentRow {
            name: self.spec.name.clone(),
            status: self.status(),
            task: self.in_flight.as_ref().map(|f| first_line(&f.prompt)),
            queued: self.queue.len() as u32,
            cost_usd: self.cost_usd,
            turns: self.turns,
            session_id: self.session_id.clone(),
        }
    }

    fn report(&self) {
        self.hooks.row_changed(self.row());
    }

    fn publish(&self, topic: Topic, kind: &str, line: String) {
        self.hooks
            .publish(topic, kind, self.spec.name.as_str(), line);
    }

    fn is_settled(&self) -> bool {
        self.in_flight.is_none()
            && (self.halted || (self.queue.is_empty() && self.self_chain.is_none()))
    }

    fn capacity(&self) -> u32 {
        self.spec.options.queue_depth()
    }

    /// Whether a prompt from outside (`Ask`, or `Cast` when `ask` is false) is admitted: the
    /// node's admission (budgets) first, then a halted agent refuses `ask`, then the queue's
    /// capacity. Every sender goes through here, whichever path it took to the agent.
    fn admit(&self, ask: bool) -> Result<(), Refusal> {
        self.hooks.admit(&self.spec.name).map_err(Refusal::Budget)?;
        if ask && self.halted {
            return Err(Refusal::Halted);
        }
        if self.queue.len() as u32 >= self.capacity() {
            return Err(Refusal::QueueFull(self.capacity()));
        }
        Ok(())
    }

    fn record(&mut self, seq: u64, outcome: &Outcome) {
        self.results.push_back((seq, outcome.clone()));
        while self.results.len() > MAX_RESULTS {
            self.results.pop_front();
        }
    }

    fn wake_waiters(&mut self) {
        if !self.is_settled() || self.waiters.is_empty() {
            return;
        }
        let reply = AwaitReply {
            was_idle: false,
            status: self.status(),
            last: self.last.clone(),
        };
        for w in self.waiters.drain(..) {
            let _ = w.send(reply.clone());
        }
    }

    /// Cancel everything in flight and queued; callers get `Cancelled(why)`.
    fn cancel_all(&mut self, why: &str) {
        if let Some(f) = self.in_flight.take() {
            f.cancel.cancel();
            if let Some(r) = f.reply {
                let _ = r.send(AskReply::Failed(TurnError::Cancelled(why.to_string())));
            }
        }
        for p in self.queue.drain(..) {
            if let Some(r) = p.reply {
                let _ = r.send(AskReply::Failed(TurnError::Cancelled(why.to_string())));
            }
        }
        self.self_chain = None;
        self.deferred.clear();
    }

    /// Apply a behaviour's verdict.
    fn apply(&mut self, next: Next, from_event: bool) {
        match next {
            Next::NoReply => {}
            Next::Prompt(p) if from_event => {
                // gen_agent: a prompt from a deferred event joins the mailbox (behind what is
                // queued; the turn's own self-chain, if any, still runs first).
                let seq = self.bump_seq();
                self.queue.push_back(Pending {
                    seq,
                    prompt: p,
                    origin: "event".into(),
                    reply: None,
                });
            }
            Next::Prompt(p) => self.self_chain = Some(p),
            Next::Halt => {
                self.halted = true;
                self.publish(
                    Topic::Agent,
                    "halted",
                    format!("[agent] {} halted", self.spec.name),
                );
            }
        }
    }

    fn bump_seq(&mut self) -> u64 {
        self.next_seq += 1;
        self.next_seq
    }

    /// Start the next turn if the agent is free: self-chain first, then the mailbox.
    fn try_start(&mut self, myself: &ActorRef<AgentMsg>) {
        while self.in_flight.is_none() && !self.halted {
            let next = match self.self_chain.take() {
                Some(p) => {
                    let seq = self.bump_seq();
                    Pending {
                        seq,
                        prompt: p,
                        origin: "self".into(),
                        reply: None,
                    }
                }
                None => match self.queue.pop_front() {
                    Some(p) => p,
                    None => break,
                },
            };
            match self.behaviour.pre_turn(next.prompt.clone()) {
                PreTurn::Run(prompt) => self.start_turn(myself, next, prompt),
                PreTurn::Skip => self.refuse_turn(next, TurnError::Skipped),
                PreTurn::Halt => {
                    self.refuse_turn(
                        next,
                        TurnError::Cancelled("the agent's pre_turn hook halted it".into()),
                    );
                    self.apply(Next::Halt, false);
                }
            }
        }
        self.report();
        self.wake_waiters();
    }

    fn refuse_turn(&mut self, p: Pending, err: TurnError) {
        let outcome: Outcome = Err(err.clone());
        self.record(p.seq, &outcome);
        if let Some(r) = p.reply {
            let _ = r.send(AskReply::Failed(err));
        }
    }

    fn start_turn(&mut self, myself: &ActorRef<AgentMsg>, p: Pending, prompt: String) {
        self.next_turn += 1;
        let turn = self.next_turn;
        let cancel = CancellationToken::new();
        let ctx = TurnContext {
            cancel: cancel.clone(),
            events: TurnEvents::new(self.hooks.clone(), self.spec.name.clone()),
        };
        let session = self.session.clone();
        let me = myself.clone();
        let run_prompt = prompt.clone();
        let timeout = self.spec.options.timeout_ms();
        let mut run: std::pin::Pin<Box<dyn Future<Output = Outcome> + Send>> =
            Box::pin(async move {
                // A panic in the backend is caught around each poll, so a crashing backend
                // fails its turn instead of the agent.
                let run = CatchUnwind(Box::pin(async move {
                    let mut s = session.lock_owned().await;
                    s.turn(&run_prompt, ctx).await
                }));
                // The watchdog lives in the turn's future (a timer entry, not a task per turn,
                // which cost a spawn plus an abort wake-up every turn). It covers waiting for the
                // session too. A backend must be cooperative (the Backend contract), which
                // `interrupt` relies on as well.
                match tokio::time::timeout(Duration::from_millis(timeout), run).await {
                    Ok(Ok(r)) => r,
                    Ok(Err(p)) => Err(TurnError::Crashed(panic_text(p))),
                    Err(_) => Err(TurnError::Timeout(timeout)),
                }
            });
        // Poll once here: a backend that answers at once (the script backend) finishes without
        // a task spawn and two cross-thread wake-ups. The outcome still goes through the
        // mailbox (no recursion into the next turn). Otherwise the turn gets its own task; a
        // future may be polled under a new waker, the task's.
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        match run.as_mut().poll(&mut cx) {
            std::task::Poll::Ready(outcome) => {
                let _ = myself.cast(AgentMsg::TurnDone(TurnDone { turn, outcome }));
            }
            std::task::Poll::Pending => {
                tokio::spawn(async move {
                    let outcome = run.await;
                    // The agent may be gone (dismissed); then nobody waits for this turn.
                    let _ = me.cast(AgentMsg::TurnDone(TurnDone { turn, outcome }));
                });
            }
        }
        self.in_flight = Some(InFlight {
            turn,
            seq: p.seq,
            prompt,
            origin: p.origin,
            reply: p.reply,
            cancel,
        });
    }

    /// The turn in flight ended (result, error, interrupt or watchdog).
    fn finish_turn(&mut self, myself: &ActorRef<AgentMsg>, outcome: Outcome) {
        let Some(f) = self.in_flight.take() else {
            return;
        };
        if matches!(outcome, Err(TurnError::Interrupted | TurnError::Timeout(_))) {
            f.cancel.cancel();
        }
        let name = self.spec.name.clone();
        match &outcome {
            Ok(r) => {
                self.cost_usd += r.cost_usd;
                self.turns += 1;
                if r.session_id.is_some() {
                    self.session_id = r.session_id.clone();
                }
                self.history.push(r.clone());
                if self.history.len() > MAX_HISTORY {
                    self.history.remove(0);
                }
                let kind = format!("{}_complete", f.origin);
                self.publish(
                    Topic::Agent,
                    &kind,
                    format!(
                        "[{}] {name} complete (${:.2}) — {}",
                        f.origin,
                        r.cost_usd,
                        preview(&r.text, 60)
                    ),
                );
            }
            Err(e) => {
                self.publish(Topic::Agent, "error", format!("[error] {name}: {e}"));
            }
        }
        self.record(f.seq, &outcome);
        self.last = Some(outcome.clone());
        // The status row (cost, turns) must be current before the caller hears back: it reads
        // cost() and checks budgets against the row as soon as its ask returns.
        self.report();
        if let Some(r) = f.reply {
            let _ = r.send(match &outcome {
                Ok(res) => AskReply::Done(res.clone()),
                Err(e) => AskReply::Failed(e.clone()),
            });
        }
        let next = match &outcome {
            Ok(r) => self.behaviour.handle_response(r),
            Err(e) => self.behaviour.handle_error(e),
        };
        self.apply(next, false);
        self.behaviour.post_turn(&outcome);
        // Deferred notifications, in arrival order, before going idle (gen_agent design 004).
        for ev in std::mem::take(&mut self.deferred) {
            let next = self.behaviour.handle_event(&ev);
            self.apply(next, true);
        }
        if self.halt_pending {
            self.halt_pending = false;
            self.apply(Next::Halt, false);
        }
        if let Err(TurnError::Crashed(why)) = &outcome {
            self.restart_session(why);
        }
        self.try_start(myself);
    }

    /// The turn task crashed: the session may be inconsistent, so start a new one that resumes
    /// the same conversation where the backend can.
    fn restart_session(&mut self, why: &str) {
        // A backend whose session state cannot be corrupted by a panic (e.g. `script`) keeps it.
        if self.session.try_lock().is_ok_and(|s| s.survives_panic()) {
            return;
        }
        let mut spec = (*self.spec).clone();
        spec.resume_session = self.session_id.clone();
        match self.backend.start_session(&spec) {
            Ok(s) => self.session = Arc::new(Mutex::new(s)),
            Err(e) => self.publish(
                Topic::Agent,
                "error",
                format!(
                    "[error] {}: session restart after crash ({why}) failed: {e}",
                    self.spec.name
                ),
            ),
        }
    }

    fn info(&self) -> AgentInfo {
        let o = &self.spec.options;
        AgentInfo {
            name: self.spec.name.clone(),
            status: self.status(),
            backend: o.backend_name().to_string(),
            model: o.model.clone(),
            session_id: self.session_id.clone(),
            role: self.spec.role.clone(),
            system_prompt: self.spec.system_prompt.clone(),
            permission_mode: o.permission_mode().to_string(),
            max_turns: o.max_turns,
            allowed_tools: o.allowed_tools.clone().unwrap_or_default(),
            cost_usd: self.cost_usd,
            turns: self.turns,
            queue_depth: self.queue.len() as u32,
            queue_capacity: self.capacity(),
            task: self.in_flight.as_ref().map(|f| first_line(&f.prompt)),
            last_result: self.history.last().cloned(),
        }
    }

    fn poll(&self, seq: u64) -> PollState {
        if self.in_flight.as_ref().is_some_and(|f| f.seq == seq)
            || self.queue.iter().any(|p| p.seq == seq)
        {
            return PollState::Pending;
        }
        match self.results.iter().rev().find(|(s, _)| *s == seq) {
            Some((_, Ok(r))) => PollState::Completed(r.clone()),
            Some((_, Err(e))) => PollState::Failed(e.clone()),
            None => PollState::NotFound,
        }
    }
}

impl Actor for AgentActor {
    type Msg = AgentMsg;
    type State = AgentState;
    type Arguments = AgentArgs;

    async fn pre_start(
        &self,
        _myself: ActorRef<AgentMsg>,
        args: AgentArgs,
    ) -> Result<AgentState, ActorProcessingErr> {
        let AgentArgs {
            spec,
            backend,
            mut behaviour,
            hooks,
            restored,
        } = args;
        behaviour.init(&spec);
        let session = backend
            .start_session(&spec)
            .map_err(|e| format!("backend {} could not start: {e}", backend.name()))?;
        let restored = restored.unwrap_or_default();
        let mut state = AgentState {
            session_id: spec.resume_session.clone(),
            spec,
            backend,
            behaviour,
            hooks,
            session: Arc::new(Mutex::new(session)),
            queue: VecDeque::new(),
            self_chain: None,
            deferred: Vec::new(),
            in_flight: None,
            halted: false,
            halt_pending: false,
            next_seq: 0,
            next_turn: 0,
            results: VecDeque::new(),
            history: Vec::new(),
            last: None,
            cost_usd: restored.cost_usd,
            turns: restored.turns,
            waiters: Vec::new(),
        };
        if let Some(task) = restored.interrupted_task {
            state.last = Some(Err(TurnError::Interrupted));
            state.publish(
                Topic::Agent,
                "interrupted",
                format!(
                    "[error] {}: turn interrupted by a node restart: {}",
                    state.spec.name,
                    preview(&task, 60)
                ),
            );
        }
        state.report();
        Ok(state)
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<AgentMsg>,
        state: &mut AgentState,
    ) -> Result<(), ActorProcessingErr> {
        state.cancel_all("the agent stopped");
        // Release the backend (e.g. a `claude` process) even when stopped without `Shutdown`.
        if let Ok(mut s) = state.session.clone().try_lock_owned() {
            s.shutdown().await;
        }
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<AgentMsg>,
        msg: AgentMsg,
        st: &mut AgentState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            AgentMsg::Ask(Prompt { text, origin }, reply) => {
                if let Err(r) = st.admit(true) {
                    let _ = reply.send(AskReply::Refused(r));
                } else {
                    let seq = st.bump_seq();
                    st.queue.push_back(Pending {
                        seq,
                        prompt: text,
                        origin,
                        reply: Some(reply),
                    });
                    st.try_start(&myself);
                }
            }
            AgentMsg::Cast(Prompt { text, origin }, reply) => match st.admit(false) {
                Err(r) => {
                    let _ = reply.send(CastReply::Refused(r));
                }
                Ok(()) => {
                    let seq = st.bump_seq();
                    st.queue.push_back(Pending {
                        seq,
                        prompt: text,
                        origin,
                        reply: None,
                    });
                    // Start (and report the row) before replying, so a caller that reads
                    // status() or await_all() right after cast sees the agent busy.
                    st.try_start(&myself);
                    let _ = reply.send(CastReply::Queued(seq));
                }
            },
            AgentMsg::Poll(seq, reply) => {
                let _ = reply.send(PollReply(st.poll(seq)));
            }
            AgentMsg::Await(reply) => {
                if st.is_settled() {
                    let _ = reply.send(AwaitReply {
                        was_idle: true,
                        status: st.status(),
                        last: st.last.clone(),
                    });
                } else {
                    st.waiters.push(reply);
                }
            }
            AgentMsg::Info(reply) => {
                let _ = reply.send(InfoReply(st.info()));
            }
            AgentMsg::History(reply) => {
                let _ = reply.send(HistoryReply(st.history.clone()));
            }
            AgentMsg::Interrupt => {
                if st.in_flight.is_some() {
                    st.finish_turn(&myself, Err(TurnError::Interrupted));
                }
            }
            AgentMsg::Halt => {
                if st.in_flight.is_some() {
                    st.halt_pending = true;
                } else if !st.halted {
                    st.apply(Next::Halt, false);
                    st.report();
                    st.wake_waiters();
                }
            }
            AgentMsg::Resume => {
                st.halt_pending = false;
                if st.halted {
                    st.halted = false;
                    st.publish(
                        Topic::Agent,
                        "resumed",
                        format!("[agent] {} resumed", st.spec.name),
                    );
                }
                st.try_start(&myself);
            }
            AgentMsg::Notify(event) => {
                if st.in_flight.is_some() {
                    st.deferred.push(event);
                } else {
                    let next = st.behaviour.handle_event(&event);
                    st.apply(next, false);
                    st.try_start(&myself);
                }
            }
            AgentMsg::Reset(reply) => {
                st.cancel_all("the agent was reset");
                let session = st.session.clone();
                let reset = session.lock().await.reset().await;
                if let Err(e) = &reset {
                    st.publish(
                        Topic::Agent,
                        "error",
                        format!("[error] {}: reset failed: {e}", st.spec.name),
                    );
                }
                st.halted = false;
                st.halt_pending = false;
                st.cost_usd = 0.0;
                st.turns = 0;
                st.history.clear();
                st.results.clear();
                st.last = None;
                st.session_id = None;
                st.publish(
                    Topic::Agent,
                    "reset",
                    format!("[agent] {} reset", st.spec.name),
                );
                st.report();
                st.wake_waiters();
                let _ = reply.send(Ack(reset.is_ok()));
            }
            AgentMsg::Shutdown(why, reply) => {
                st.cancel_all(&why);
                let session = st.session.clone();
                session.lock().await.shutdown().await;
                st.wake_waiters();
                let _ = reply.send(Ack(true));
                myself.stop(Some("dismissed".into()));
            }
            AgentMsg::TurnDone(TurnDone { turn, outcome }) => {
                if st.in_flight.as_ref().is_some_and(|f| f.turn == turn) {
                    st.finish_turn(&myself, outcome);
                }
            }
        }
        Ok(())
    }
}

fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or("").to_string()
}

/// The first `n` characters of the first line, with an ellipsis when cut.
pub fn preview(s: &str, n: usize) -> String {
    let line = s.lines().next().unwrap_or("");
    if line.chars().count() > n {
        let cut: String = line.chars().take(n).collect();
        format!("{cut}...")
    } else {
        line.to_string()
    }
}

/// Runs `F`, turning a panic while polling it into `Err(payload)` (as a `JoinHandle` would).
/// `F` is dropped after a panic and never polled again.
struct CatchUnwind<F>(std::pin::Pin<Box<F>>);

impl<F: std::future::Future> std::future::Future for CatchUnwind<F> {
    type Output = Result<F::Output, Box<dyn std::any::Any + Send>>;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        use std::panic::{catch_unwind, AssertUnwindSafe};
        use std::task::Poll;
        let fut = self.0.as_mut();
        match catch_unwind(AssertUnwindSafe(|| fut.poll(cx))) {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(v)) => Poll::Ready(Ok(v)),
            Err(payload) => Poll::Ready(Err(payload)),
        }
    }
}

fn panic_text(p: Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "the turn task panicked".to_string()
    }
}
