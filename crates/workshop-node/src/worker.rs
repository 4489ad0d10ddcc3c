//! Board workers: one actor per worker binds an agent (made from a profile) to a work type.
//! Every board call goes through the node's board client (`board_link.rs`), so a worker works
//! the cluster's board from any node. While idle, the worker has one waiter task: a long poll
//! (`wait_ready` of its type, answered as soon as an item is claimable, else empty after the
//! worker's interval, and asked again). When it returns items the worker claims the
//! highest-priority oldest ready item with a lease (no claim, hence no durable write, while
//! nothing is ready); while an item is in flight there is no waiter. While the board is out of
//! reach the waiter waits for the node's link to change (or a bounded backoff) and carries on
//! by itself; the worker says once that it lost the board and once that it has it back. It runs
//! `title + "\n\nSpec:\n" + spec` (plus earlier stage results for workflow items), renews the
//! lease by heartbeat while the turn runs, then completes the item with the result (one over
//! 1 MiB is stored in parts first, the item keeping a preview) or fails it with the error (a failed turn is a failed item, retried with backoff by the board up to its
//! max attempts). The agent gets a fresh session between items; with `worktree: true` each item
//! runs in its own git worktree and branch (removed after success, kept after failure).
//!
//! If the board refuses a heartbeat (the lease expired, the item was cancelled or re-claimed),
//! the worker has lost the item: it interrupts the agent's turn, records nothing with its stale
//! token, removes the item's worktree (the branch stays) and publishes a `lease_lost` event.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use ractor_cluster_derive::RactorMessage;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use workshop_board::item::{
    result_preview, split_at_char_boundaries, WorkItem, WorkType, RESULT_INLINE_MAX_BYTES,
    RESULT_PART_BYTES,
};
use workshop_board::BoardClient;
use workshop_types::{AgentName, AgentOptions, OptionError, Topic};

use crate::background::{spawn_worker, Supervised};
use crate::board_link::is_unreachable;
use crate::state::StateMsg;
use crate::workshop::call_actor;
use crate::{ApiError, Workshop};

pub const DEFAULT_INTERVAL_MS: u64 = 60_000;
pub const DEFAULT_LEASE_MS: u64 = 60_000;
/// The shortest interval a board worker takes (as a schedule's).
pub const MIN_WORKER_INTERVAL_MS: u64 = crate::schedule::MIN_INTERVAL_MS;
/// The shortest lease a board worker claims under.
pub const MIN_WORKER_LEASE_MS: u64 = 30;
/// How long a stopping node waits for an interrupted item to be handed back.
pub const RELEASE_WAIT: Duration = Duration::from_secs(10);
/// First and longest wait before a worker asks an unreachable board again (it also asks as
/// soon as the node's board link changes), and after a failed claim.
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// How a worker was defined (persisted, so workers come back after a restart).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct WorkerSpec {
    pub name: AgentName,
    pub work_type: WorkType,
    pub role: Option<String>,
    pub options: AgentOptions,
    pub interval_ms: u64,
    pub lease_ms: u64,
    pub worktree: bool,
}

pub use workshop_proto::api::WorkerInfo;

#[derive(RactorMessage)]
pub enum WorkerMsg {
    /// The waiter saw claimable items of the worker's type: claim one.
    Wake,
    /// The item in flight ended.
    Done {
        id: String,
        end: ItemEnd,
    },
    Info(RpcReplyPort<WorkerInfo>),
    /// The node is stopping: claim nothing more; reply once the item in flight has ended.
    Drain(RpcReplyPort<()>),
    /// The node is stopping and the grace period is over: interrupt the turn in flight and
    /// hand its item back to the board (ready again, no attempt counted).
    Release,
    /// Test-only: fail the actor's handler (as a bug would), to exercise its supervision.
    #[cfg(any(test, feature = "test-hooks"))]
    CrashForTest(String),
}

/// How a worker's item ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ItemEnd {
    Completed,
    /// Failed (or handed back for a retry), or the result could not be recorded.
    Failed,
    /// The board refused a heartbeat: the turn was interrupted and nothing was recorded.
    LeaseLost,
    /// The node is stopping: the turn was interrupted and the item handed back.
    Released,
}

pub struct BoardWorker;

pub struct WorkerState {
    ws: Workshop,
    spec: WorkerSpec,
    current: Option<String>,
    /// Tells the item in flight to stop and hand its item back.
    release: Option<oneshot::Sender<()>>,
    /// Set by `Drain`: no more claims; the waiters are answered when the item in flight ends.
    draining: bool,
    drained: Vec<RpcReplyPort<()>>,
    /// Counted when the board has recorded the outcome, before its event is published, so
    /// whoever sees the event sees the count.
    counts: Arc<Counts>,
    /// The long poll for ready items, while idle (at most one; none while an item is in
    /// flight or the worker drains).
    waiter: Option<JoinHandle<()>>,
    /// Claims refused in a row (not for an unreachable board): the next waiter starts after a
    /// backoff, so a board that refuses every claim is not asked in a tight loop.
    claim_failures: u32,
    /// Whether the worker has said it lost the board (and not yet that it is back).
    lost: Arc<std::sync::atomic::AtomicBool>,
}

/// Items settled by one worker.
#[derive(Default)]
pub struct Counts {
    completed: AtomicU64,
    failed: AtomicU64,
}

impl Actor for BoardWorker {
    type Msg = WorkerMsg;
    type State = WorkerState;
    type Arguments = (Workshop, WorkerSpec);

    async fn pre_start(
        &self,
        me: ActorRef<WorkerMsg>,
        (ws, spec): (Workshop, WorkerSpec),
    ) -> Result<WorkerState, ActorProcessingErr> {
        let mut st = WorkerState {
            ws,
            spec,
            current: None,
            release: None,
            draining: false,
            drained: Vec::new(),
            counts: Arc::default(),
            waiter: None,
            claim_failures: 0,
            lost: Arc::default(),
        };
        st.wait_for_work(&me, Duration::ZERO);
        Ok(st)
    }

    async fn post_stop(
        &self,
        _me: ActorRef<WorkerMsg>,
        st: &mut WorkerState,
    ) -> Result<(), ActorProcessingErr> {
        st.stop_waiting();
        Ok(())
    }

    async fn handle(
        &self,
        me: ActorRef<WorkerMsg>,
        msg: WorkerMsg,
        st: &mut WorkerState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            WorkerMsg::Wake => {
                // The waiter saw a claimable item and has ended. Only then is a durable claim
                // made (each costs an fdatasync on the board node).
                st.waiter = None;
                if st.draining || st.current.is_some() {
                    return Ok(());
                }
                let claimed = match st.ws.board_client() {
                    Ok(board) => {
                        board
                            .claim_next(
                                Some(st.spec.work_type.clone()),
                                st.spec.name.as_str(),
                                st.spec.lease_ms,
                            )
                            .await
                    }
                    Err(e) => Err(e),
                };
                match claimed {
                    Ok(Some(item)) => {
                        st.claim_failures = 0;
                        st.current = Some(item.id.to_string());
                        st.ws.emit_about(
                            Topic::Work,
                            "claimed",
                            item.id.as_str(),
                            format!("[work] {} claimed by {}", item.id, st.spec.name),
                        );
                        let ws = st.ws.clone();
                        let spec = st.spec.clone();
                        let me = me.clone();
                        let (release_tx, release_rx) = oneshot::channel();
                        st.release = Some(release_tx);
                        let counts = st.counts.clone();
                        tokio::spawn(async move {
                            let id = item.id.to_string();
                            let end = run_item(&ws, &spec, item, release_rx, &counts).await;
                            let _ = me.cast(WorkerMsg::Done { id, end });
                        });
                    }
                    // Another worker was first: wait again.
                    Ok(None) => {
                        st.claim_failures = 0;
                        st.wait_for_work(&me, Duration::ZERO);
                    }
                    // The waiter waits for the board to come back.
                    Err(e) if is_unreachable(&e) => {
                        board_lost(&st.ws, &st.spec.name, &st.lost, &e);
                        st.wait_for_work(&me, BACKOFF_MIN);
                    }
                    Err(e) => {
                        st.ws.emit_about(
                            Topic::Work,
                            "error",
                            st.spec.name.as_str(),
                            format!("[error] worker {}: claim failed: {e}", st.spec.name),
                        );
                        st.claim_failures = st.claim_failures.saturating_add(1);
                        st.wait_for_work(&me, backoff(st.claim_failures));
                    }
                }
            }
            WorkerMsg::Done { id, end } => {
                if st.current.as_deref() == Some(id.as_str()) {
                    st.current = None;
                    st.release = None;
                }
                match end {
                    // Counted by `settle` when the board recorded the outcome.
                    ItemEnd::Completed
                    | ItemEnd::Failed
                    | ItemEnd::LeaseLost
                    | ItemEnd::Released => {}
                }
                if st.draining {
                    for w in st.drained.drain(..) {
                        let _ = w.send(());
                    }
                } else {
                    st.wait_for_work(&me, Duration::ZERO);
                }
            }
            WorkerMsg::Drain(reply) => {
                st.draining = true;
                st.stop_waiting();
                if st.current.is_none() {
                    let _ = reply.send(());
                } else {
                    st.drained.push(reply);
                }
            }
            WorkerMsg::Release => {
                if let Some(tx) = st.release.take() {
                    let _ = tx.send(());
                }
            }
            WorkerMsg::Info(reply) => {
                let mut info = info_of(&st.spec);
                info.completed = st.counts.completed.load(Ordering::Relaxed);
                info.failed = st.counts.failed.load(Ordering::Relaxed);
                info.current_item = st.current.clone();
                let _ = reply.send(info);
            }
            #[cfg(any(test, feature = "test-hooks"))]
            WorkerMsg::CrashForTest(why) => return Err(why.into()),
        }
        Ok(())
    }
}

impl WorkerState {
    /// Start the waiter (after `delay`), unless one runs: it long-polls the board for ready
    /// items of the worker's type and wakes the worker when there are some.
    fn wait_for_work(&mut self, me: &ActorRef<WorkerMsg>, delay: Duration) {
        if self.waiter.as_ref().is_some_and(|w| !w.is_finished()) {
            return;
        }
        let ws = self.ws.clone();
        let name = self.spec.name.clone();
        let work_type = self.spec.work_type.clone();
        let interval = Duration::from_millis(self.spec.interval_ms);
        let lost = self.lost.clone();
        let me = me.clone();
        self.waiter = Some(tokio::spawn(async move {
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            wait_ready(&ws, &name, work_type, interval, &lost).await;
            let _ = me.cast(WorkerMsg::Wake);
        }));
    }

    fn stop_waiting(&mut self) {
        if let Some(w) = self.waiter.take() {
            w.abort();
        }
    }
}

/// The waiter's loop: returns once the board has claimable items of `work_type`. Each long
/// poll lasts up to `interval` (the fallback: an empty answer, and it asks again). While the
/// board is out of reach it waits for the node's board link to change, or a bounded backoff,
/// and asks again; a change of the link also ends a poll in flight (the board moved).
async fn wait_ready(
    ws: &Workshop,
    name: &AgentName,
    work_type: WorkType,
    interval: Duration,
    lost: &std::sync::atomic::AtomicBool,
) {
    let mut link = ws.board_link().subscribe();
    let mut failures = 0;
    loop {
        let client = link.borrow_and_update().clone();
        let answer = match client {
            None => Err(ws.board_link().unreachable()),
            Some(board) => tokio::select! {
                r = board.wait_ready(Some(work_type.clone()), interval) => r,
                _ = link.changed() => continue,
            },
        };
        match answer {
            Ok(items) => {
                board_back(ws, name, lost);
                failures = 0;
                if !items.is_empty() {
                    return;
                }
            }
            Err(e) => {
                board_lost(ws, name, lost, &e);
                failures += 1;
                tokio::select! {
                    _ = link.changed() => {}
                    _ = tokio::time::sleep(backoff(failures)) => {}
                }
            }
        }
    }
}

/// The wait before the `failures`-th retry: doubling from [`BACKOFF_MIN`] up to
/// [`BACKOFF_MAX`].
fn backoff(failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(16);
    BACKOFF_MIN.saturating_mul(1 << doublings).min(BACKOFF_MAX)
}

/// Say (once) that the worker cannot reach the board.
fn board_lost(ws: &Workshop, name: &AgentName, lost: &std::sync::atomic::AtomicBool, e: &ApiError) {
    if !lost.swap(true, Ordering::SeqCst) {
        ws.emit_about(
            Topic::Work,
            "board_lost",
            name.as_str(),
            format!(
                "[work] worker {name} cannot reach the board: {e}; it waits for the board and \
                 carries on by itself"
            ),
        );
    }
}

/// Say (once) that the worker reaches the board again.
fn board_back(ws: &Workshop, name: &AgentName, lost: &std::sync::atomic::AtomicBool) {
    if lost.swap(false, Ordering::SeqCst) {
        ws.emit_about(
            Topic::Work,
            "board_back",
            name.as_str(),
            format!("[work] worker {name} reaches the board again"),
        );
    }
}

/// One board call with the node's current board client. While the board is out of reach it
/// waits for the node's board link to change (or a bounded backoff) and calls again, for up to
/// `within`; then the last error is the answer. For calls that may be repeated safely: `start`
/// and `release` (a repeat is refused as stale, changing nothing), `complete`, `fail` and
/// `complete_in_parts` (idempotent for the settling token), `put_result_part` (the same piece
/// again replaces it).
async fn with_board<T, F, Fut>(ws: &Workshop, within: Duration, call: F) -> Result<T, ApiError>
where
    F: Fn(BoardClient) -> Fut,
    Fut: std::future::Future<Output = Result<T, ApiError>>,
{
    let deadline = tokio::time::Instant::now() + within;
    let mut link = ws.board_link().subscribe();
    let mut failures = 0;
    loop {
        let client = link.borrow_and_update().clone();
        let r = match client {
            Some(board) => call(board).await,
            None => Err(ws.board_link().unreachable()),
        };
        let now = tokio::time::Instant::now();
        match r {
            Err(e) if is_unreachable(&e) && now < deadline => {
                failures += 1;
                tokio::select! {
                    _ = link.changed() => {}
                    _ = tokio::time::sleep(backoff(failures).min(deadline - now)) => {}
                }
            }
            r => return r,
        }
    }
}

/// What `workers()` shows of a worker before asking it (counters zero).
fn info_of(spec: &WorkerSpec) -> WorkerInfo {
    WorkerInfo {
        name: spec.name.clone(),
        work_type: spec.work_type.to_string(),
        interval_ms: spec.interval_ms,
        worktree: spec.worktree,
        completed: 0,
        failed: 0,
        current_item: None,
        restarts: 0,
        crashed: None,
    }
}

/// Run one claimed item to the end.
async fn run_item(
    ws: &Workshop,
    spec: &WorkerSpec,
    item: WorkItem,
    mut release: oneshot::Receiver<()>,
    counts: &Counts,
) -> ItemEnd {
    let id = item.id.to_string();
    let Some(token) = item.token() else {
        return ItemEnd::Failed;
    };
    let name = spec.name.as_str();
    let lease = Duration::from_millis(spec.lease_ms);
    // Mark it in progress while the turn starts; ordering is kept by awaiting it before the end.
    let start = {
        let ws = ws.clone();
        let id = id.clone();
        tokio::spawn(async move {
            with_board(&ws, lease, |board| {
                let id = id.clone();
                async move { board.start(&id, token).await }
            })
            .await
        })
    };
    // Renews the lease; a refusal by the board (stale token: the lease expired, the item was
    // cancelled or re-claimed) means the item is no longer ours, and is reported on `lost`.
    let (lost_tx, mut lost) = oneshot::channel::<String>();
    let heartbeat = {
        let ws = ws.clone();
        let id = id.clone();
        let lease = spec.lease_ms;
        tokio::spawn(async move {
            let every = Duration::from_millis((lease / 3).max(10));
            loop {
                tokio::time::sleep(every).await;
                let beat = match ws.board_client() {
                    Ok(board) => board.heartbeat(&id, token, lease).await,
                    Err(e) => Err(e),
                };
                match beat {
                    Ok(_) => {}
                    Err(refused @ (ApiError::StaleToken { .. } | ApiError::NoSuchItem(_))) => {
                        let _ = lost_tx.send(refused.to_string());
                        break;
                    }
                    // The board is out of reach: renew at the next beat (if the outage
                    // outlasts the lease, the board refuses the token then).
                    Err(e) if is_unreachable(&e) => {
                        tracing::warn!(item = %id, error = %e, "heartbeat not delivered");
                    }
                    // Storage trouble or shutdown: stop renewing; settling reports the error.
                    Err(e) => {
                        tracing::warn!(item = %id, error = %e, "heartbeat failed");
                        break;
                    }
                }
            }
        })
    };
    // The prompt reads earlier stages' results from the board: without them it would be wrong.
    let prompt = match ws.stage_prompt_for(&item).await {
        Ok(p) => p,
        Err(e) => {
            heartbeat.abort();
            let _ = start.await;
            let why = format!("could not read the results of earlier stages: {e}");
            settle(ws, spec, &id, token, Err(why), counts).await;
            return ItemEnd::Failed;
        }
    };
    let worktree = if spec.worktree {
        match prepare_worktree(ws, spec, &item).await {
            Ok(p) => Some(p),
            Err(e) => {
                heartbeat.abort();
                let _ = start.await;
                settle(ws, spec, &id, token, Err(format!("worktree: {e}")), counts).await;
                return ItemEnd::Failed;
            }
        }
    } else {
        None
    };
    ws.emit_about(
        Topic::Work,
        "started",
        &id,
        format!("[board_worker] {name} started {id}"),
    );
    let ask = ws.ask_from(name, &prompt, "board");
    tokio::pin!(ask);
    let (outcome, lease_lost) = tokio::select! {
        biased;
        outcome = &mut ask => (outcome, None),
        Ok(()) = &mut release => {
            // The node is stopping and the grace period is over: stop the turn and give the
            // item back unfinished, so another worker (or this node after its restart) runs it.
            if let Err(e) = ws.interrupt(name) {
                tracing::debug!(worker = name, error = %e, "interrupt for a release failed");
            }
            let _ = ask.await;
            heartbeat.abort();
            let _ = start.await;
            let released = with_board(ws, RELEASE_WAIT / 2, |board| {
                let id = id.clone();
                async move {
                    board
                        .release(&id, token, "its node stopped before the turn ended")
                        .await
                }
            })
            .await;
            match released {
                Ok(_) => ws.emit_about(
                    Topic::Work,
                    "released",
                    &id,
                    format!("[work] {id} released by {name}: the node is stopping; ready again"),
                ),
                Err(e) => ws.emit_about(
                    Topic::Work,
                    "error",
                    &id,
                    format!("[error] {id} not released by {name}: {e} (its lease expires instead)"),
                ),
            }
            if let Some(path) = worktree {
                remove_worktree(&path).await;
            }
            return ItemEnd::Released;
        }
        Ok(reason) = &mut lost => {
            // The item is not ours any more: stop the turn instead of finishing work nobody
            // will record, and wait for it to end before touching its worktree.
            if let Err(e) = ws.interrupt(name) {
                tracing::debug!(worker = name, error = %e, "interrupt after a lost lease failed");
            }
            (ask.await, Some(reason))
        }
    };
    heartbeat.abort();
    let _ = start.await;
    // A refusal that raced with the end of the turn still means the token is stale.
    let lease_lost = lease_lost.or_else(|| lost.try_recv().ok());
    if let Some(reason) = lease_lost {
        release_lost_item(ws, spec, &id, &reason, outcome.is_ok(), worktree).await;
        return ItemEnd::LeaseLost;
    }
    let ok = outcome.is_ok();
    settle(
        ws,
        spec,
        &id,
        token,
        outcome.map(|r| r.text).map_err(|e| e.to_string()),
        counts,
    )
    .await;
    if let Some(path) = worktree {
        if ok {
            remove_worktree(&path).await;
        } else {
            ws.emit_about(
                Topic::Work,
                "worktree_kept",
                &id,
                format!(
                    "[work] {id}: worktree kept for inspection at {}",
                    path.display()
                ),
            );
        }
    } else {
        reset_agent(ws, name).await;
    }
    if ok {
        ItemEnd::Completed
    } else {
        ItemEnd::Failed
    }
}

async fn reset_agent(ws: &Workshop, name: &str) {
    if let Err(e) = ws.reset(name).await {
        // During shutdown the agent may already be gone; that is not worth a warning.
        tracing::debug!(worker = name, error = %e, "agent reset between items failed");
    }
}

/// The board refused a heartbeat: nothing is recorded with the stale token; the item's
/// worktree is removed (its branch stays), the agent starts afresh, and the loss is published.
async fn release_lost_item(
    ws: &Workshop,
    spec: &WorkerSpec,
    id: &str,
    reason: &str,
    turn_finished: bool,
    worktree: Option<PathBuf>,
) {
    let name = spec.name.as_str();
    let turn = if turn_finished {
        "its result is discarded"
    } else {
        "turn interrupted"
    };
    let released = match worktree {
        Some(path) if remove_worktree(&path).await => {
            format!("; worktree {} removed", path.display())
        }
        Some(path) => format!("; worktree {} could not be removed", path.display()),
        None => {
            reset_agent(ws, name).await;
            String::new()
        }
    };
    ws.emit_about(
        Topic::Work,
        "lease_lost",
        id,
        format!(
            "[work] {id}: {name} lost its lease, {turn}, nothing recorded{released} ({reason})"
        ),
    );
}

/// Record the item's outcome with the worker's token. While the board is out of reach it is
/// tried again for up to the lease (past it the board would refuse the token anyway). A result
/// over [`RESULT_INLINE_MAX_BYTES`] (its `Complete` could not cross in one frame) is stored in
/// parts first ([`complete_in_parts`]). If the board does not record the outcome, that is
/// reported; the lease then runs out and the item runs again.
async fn settle(
    ws: &Workshop,
    spec: &WorkerSpec,
    id: &str,
    token: u64,
    outcome: Result<String, String>,
    counts: &Counts,
) {
    // The last renewal was at most a third of the lease before this.
    let began = tokio::time::Instant::now();
    let lease = Duration::from_millis(spec.lease_ms);
    // The error, and whether the board refused the token (the lease was lost meanwhile).
    let res: Result<WorkItem, (String, bool)> = match &outcome {
        Ok(text) if text.len() > RESULT_INLINE_MAX_BYTES => {
            complete_in_parts(ws, spec, id, token, text)
                .await
                .map_err(|e| (e, false))
        }
        _ => with_board(ws, Duration::from_millis(spec.lease_ms), |board| {
            let outcome = outcome.clone();
            async move {
                match outcome {
                    Ok(text) => board.complete(id, token, text).await,
                    Err(e) => board.fail(id, token, e, true).await,
                }
            }
        })
        .await
        .map_err(|e| {
            let stale = matches!(e, ApiError::StaleToken { .. });
            (e.to_string(), stale)
        }),
    };
    // Out of the board's reach for longer than the lease: whatever the error, the lease has
    // run out by now and the item is (or will be) another worker's.
    let res = res.map_err(|(e, stale)| (e, stale || began.elapsed() >= lease));
    match res {
        Ok(item) => {
            let line = match (&outcome, item.status) {
                (Ok(_), _) => match (item.result_parts(), item.result_bytes()) {
                    (Some(parts), Some(bytes)) => {
                        format!("[work] {id} completed ({bytes} bytes of result in {parts} parts)")
                    }
                    _ => format!("[work] {id} completed"),
                },
                (Err(e), workshop_board::item::Status::Ready) => format!(
                    "[work] {id} failed (attempt {} of {}), will retry: {e}",
                    item.attempts, item.max_attempts
                ),
                (Err(_), _) => format!(
                    "[work] {id} failed: {}",
                    item.error.clone().unwrap_or_default()
                ),
            };
            let kind = if outcome.is_ok() {
                counts.completed.fetch_add(1, Ordering::Relaxed);
                "completed"
            } else {
                counts.failed.fetch_add(1, Ordering::Relaxed);
                "failed"
            };
            ws.emit_about(Topic::Work, kind, id, line);
            ws.after_item_settled(&item).await;
        }
        Err((e, true)) => ws.emit_about(
            Topic::Work,
            "lease_lost",
            id,
            format!(
                "[work] {id}: {} lost its lease, nothing recorded ({e})",
                spec.name
            ),
        ),
        Err((e, false)) => ws.emit_about(
            Topic::Work,
            "error",
            id,
            format!(
                "[error] {id}: result not recorded: {e} (the lease runs out and the item runs \
                 again)"
            ),
        ),
    }
}

/// Complete with a result too large for one frame: its pieces (at most [`RESULT_PART_BYTES`]
/// each, cut at char boundaries) go to the board one request at a time, then
/// `CompleteInParts` with a preview. Each piece is a durable write, so the lease is renewed
/// meanwhile. Err: what failed, for the worker's error event.
async fn complete_in_parts(
    ws: &Workshop,
    spec: &WorkerSpec,
    id: &str,
    token: u64,
    text: &str,
) -> Result<WorkItem, String> {
    let within = Duration::from_millis(spec.lease_ms);
    let pieces = split_at_char_boundaries(text, RESULT_PART_BYTES);
    let count = u32::try_from(pieces.len()).map_err(|_| {
        format!(
            "the result is {} bytes, more than the board stores in parts",
            text.len()
        )
    })?;
    let renew = keep_lease(ws, id, token, spec.lease_ms);
    let upload = async {
        for (index, piece) in (0..count).zip(pieces.iter().copied()) {
            with_board(ws, within, |board| async move {
                board.put_result_part(id, token, index, piece).await
            })
            .await
            .map_err(|e| format!("storing part {} of {count} failed: {e}", index + 1))?;
        }
        let preview = result_preview(text);
        let bytes = text.len() as u64;
        with_board(ws, within, |board| {
            let preview = preview.clone();
            async move {
                board
                    .complete_in_parts(id, token, preview, count, bytes)
                    .await
            }
        })
        .await
        .map_err(|e| format!("completing with {count} stored parts failed: {e}"))
    };
    let r = upload.await;
    renew.abort();
    r
}

/// Renews the lease every third of it until aborted (or refused: then the next board call is
/// refused as stale too, and says so).
fn keep_lease(ws: &Workshop, id: &str, token: u64, lease_ms: u64) -> JoinHandle<()> {
    let ws = ws.clone();
    let id = id.to_string();
    tokio::spawn(async move {
        let every = Duration::from_millis((lease_ms / 3).max(10));
        loop {
            tokio::time::sleep(every).await;
            let beat = match ws.board_client() {
                Ok(board) => board.heartbeat(&id, token, lease_ms).await,
                Err(e) => Err(e),
            };
            match beat {
                Ok(_) => {}
                Err(e) if is_unreachable(&e) => {
                    tracing::warn!(item = %id, error = %e, "heartbeat not delivered");
                }
                Err(e) => {
                    tracing::warn!(item = %id, error = %e, "heartbeat refused while storing parts");
                    return;
                }
            }
        }
    })
}

/// A fresh worktree and branch for this item; the agent is re-created to run inside it.
async fn prepare_worktree(
    ws: &Workshop,
    spec: &WorkerSpec,
    item: &WorkItem,
) -> Result<PathBuf, ApiError> {
    let repo = match &spec.options.working_dir {
        Some(d) => PathBuf::from(d),
        None => std::env::current_dir().map_err(|e| ApiError::Node(e.to_string()))?,
    };
    let slug = format!(
        "{}-a{}",
        item.id.as_str().replace([':', '.'], "-"),
        item.attempts
    );
    let path = repo.join(".workshop").join("worktrees").join(&slug);
    let branch = format!("workshop/{slug}");
    git(
        &repo,
        &[
            "worktree",
            "add",
            "-b",
            &branch,
            &path.to_string_lossy(),
            "HEAD",
        ],
    )
    .await?;
    let mut options = spec.options.clone();
    options.working_dir = Some(path.to_string_lossy().into_owned());
    ws.agent(spec.name.as_str(), spec.role.clone(), options)
        .await?;
    Ok(path)
}

/// Removes an item's worktree (its branch stays); false (and a warning) if that failed.
async fn remove_worktree(path: &Path) -> bool {
    let Some(repo) = path.ancestors().nth(3) else {
        return false;
    };
    match git(
        repo,
        &["worktree", "remove", "--force", &path.to_string_lossy()],
    )
    .await
    {
        Ok(()) => true,
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "worktree not removed");
            false
        }
    }
}

async fn git(dir: &Path, args: &[&str]) -> Result<(), ApiError> {
    let mut cmd = tokio::process::Command::new("git");
    cmd.args(args)
        .current_dir(dir)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    // From the spawner thread: a checkout that outlives a killed node dies with it.
    let out = workshop_agent::spawner::spawn(cmd)
        .map_err(|e| ApiError::Node(format!("cannot run git in {}: {e}", dir.display())))?
        .wait_with_output()
        .await
        .map_err(|e| ApiError::Node(format!("cannot run git in {}: {e}", dir.display())))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(ApiError::Node(format!(
            "git {} failed in {}: {}",
            args.join(" "),
            dir.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

impl Workshop {
    // ---------------------------------------------------------------- board workers

    /// Start a board worker: an agent made from `o.profile` (or plain) with `o.options` over
    /// it, bound to `work_type`.
    pub async fn board_worker(
        &self,
        name: &str,
        work_type: &str,
        o: crate::WorkerOptions,
    ) -> Result<AgentName, ApiError> {
        let crate::WorkerOptions {
            profile,
            options: overrides,
            interval_ms,
            worktree,
            lease_ms,
        } = o;
        // The numbers rule (`workshop_types::numbers`): refused, not clamped. A lease has its
        // bounds (`check_lease`), as a hand claim's.
        for (what, v, min) in [("interval", interval_ms, MIN_WORKER_INTERVAL_MS)] {
            if let Some(v) = v {
                if v < min {
                    return Err(OptionError::Invalid(format!(
                        "board worker {what} (milliseconds) must be {}, got {v}",
                        workshop_types::numbers::whole_range(min, None)
                    ))
                    .into());
                }
            }
        }
        if let Some(ms) = lease_ms {
            crate::work::check_lease("lease", ms)?;
        }
        let profile = profile.as_deref();
        let work_type = crate::work::parse_type(work_type)?;
        let name = AgentName::new(name)?;
        let (role, options) = match profile {
            Some(p) => {
                let p = self.profile_named(p)?;
                (p.role, p.options.overlay(&overrides))
            }
            None => (None, overrides),
        };
        self.board_worker_with(WorkerSpec {
            name,
            work_type,
            role,
            options,
            interval_ms: interval_ms.unwrap_or(DEFAULT_INTERVAL_MS),
            lease_ms: lease_ms.unwrap_or(DEFAULT_LEASE_MS),
            worktree,
        })
        .await
    }

    /// Start a board worker from a full spec: its agent is made from `role` and `options`
    /// (no profile lookup), and `lease_ms` is the lease it claims under, renewed by heartbeat
    /// every third of it (at least 10 ms each). The interval is at least 10 ms.
    pub async fn board_worker_with(&self, spec: WorkerSpec) -> Result<AgentName, ApiError> {
        let mut spec = spec;
        spec.name = self
            .agent(spec.name.as_str(), spec.role.clone(), spec.options.clone())
            .await?;
        // The worker's repository (where item worktrees go) is the directory its agent was
        // created in, recorded absolute, not whatever directory restores the worker later.
        if let Some(agent) = self.inner.directory.spec(&spec.name) {
            spec.options.working_dir = agent.options.working_dir.clone();
        }
        spec.interval_ms = spec.interval_ms.max(MIN_WORKER_INTERVAL_MS);
        spec.lease_ms = spec.lease_ms.max(MIN_WORKER_LEASE_MS);
        if let Some(db) = &self.inner.db {
            db.put_worker(&spec)?;
            db.sync().await?;
        }
        self.start_worker(spec).await
    }

    pub(crate) async fn start_worker(&self, spec: WorkerSpec) -> Result<AgentName, ApiError> {
        let name = spec.name.clone();
        let work_type = spec.work_type.clone();
        let n = name.clone();
        self.write_state(|reply| StateMsg::RemoveWorker {
            name: n,
            why: "replaced",
            reply,
        })
        .await?;
        let actor = spawn_worker(self, self.background()?, spec.clone()).await?;
        let (n, entry) = (name.clone(), Supervised::new(spec, actor));
        self.write_state(|reply| StateMsg::InsertWorker {
            name: n,
            entry,
            reply,
        })
        .await?;
        self.publish(
            Topic::Work,
            "worker_started",
            Some(name.as_str()),
            format!("[board_worker] {name} started for {work_type} items"),
        );
        Ok(name)
    }

    /// Every board worker, with its counters (each running one asked, within the actor-call
    /// bound); one that crashed past its restart budget is listed with `crashed` set.
    pub async fn workers(&self) -> Result<Vec<WorkerInfo>, ApiError> {
        type Row = (WorkerInfo, Option<ActorRef<WorkerMsg>>);
        let rows: Vec<Row> = self
            .snapshot()
            .workers
            .values()
            .map(|s| {
                let mut info = info_of(&s.spec);
                info.restarts = s.restarts;
                info.crashed = s.crashed.clone();
                (info, s.actor.clone())
            })
            .collect();
        let mut out = Vec::new();
        for (info, actor) in rows {
            match actor {
                Some(a) => {
                    let what = format!("board worker {}", info.name);
                    let live = call_actor(&a, &what, WorkerMsg::Info).await?;
                    out.push(WorkerInfo {
                        restarts: info.restarts,
                        crashed: info.crashed,
                        ..live
                    });
                }
                None => out.push(info),
            }
        }
        Ok(out)
    }

    /// Test-only: the running actor of a board worker.
    #[cfg(any(test, feature = "test-hooks"))]
    pub fn worker_actor(&self, name: &str) -> Option<ActorRef<WorkerMsg>> {
        let name = AgentName::new(name).ok()?;
        self.snapshot().workers.get(&name)?.actor.clone()
    }

    /// How many board workers the node runs.
    pub fn worker_count(&self) -> usize {
        self.snapshot().workers.len()
    }

    /// For a graceful stop: every worker stops claiming; items in flight get `grace` to finish,
    /// then their turns are interrupted and the items handed back (ready again, no attempt
    /// counted). Returns how many items were handed back.
    pub async fn drain_workers(&self, grace: Duration) -> usize {
        let workers: Vec<(AgentName, ActorRef<WorkerMsg>)> = self
            .snapshot()
            .workers
            .iter()
            .filter_map(|(n, w)| w.actor.clone().map(|a| (n.clone(), a)))
            .collect();
        let mut set = tokio::task::JoinSet::new();
        for (name, w) in workers {
            set.spawn(async move {
                let drained = w.call(WorkerMsg::Drain, Some(grace)).await;
                if matches!(drained, Ok(ractor::rpc::CallResult::Success(()))) {
                    return 0;
                }
                tracing::info!(worker = %name, "grace period over: handing its item back");
                if w.cast(WorkerMsg::Release).is_err() {
                    return 0;
                }
                let _ = w.call(WorkerMsg::Drain, Some(RELEASE_WAIT)).await;
                1
            });
        }
        let mut released = 0;
        while let Some(n) = set.join_next().await {
            released += n.unwrap_or(0);
        }
        released
    }

    /// Remove and stop every board worker (node stopping or reset).
    pub(crate) async fn stop_workers(&self) {
        if let Err(e) = self
            .write_state(|reply| StateMsg::StopWorkers { reply })
            .await
        {
            tracing::error!(error = %e, "board workers not stopped");
        }
    }
}
