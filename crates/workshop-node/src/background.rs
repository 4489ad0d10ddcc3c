//! The supervisor of the node's background actors: board workers and schedules. Neither ever
//! fails silently. When one fails (a panic or an error in its handler) it publishes
//! `[worker] <name> crashed: <reason>` (or `[schedule] ...`) and applies the policy:
//!
//! - restarted from its spec at once, under a restart budget of [`RESTARTS`] within
//!   [`RESTART_WINDOW`] per worker or schedule (by the node's clock);
//! - once that budget is spent it is not restarted: it stays listed, marked crashed (with the
//!   reason) in `workers()` / `schedules()`, until `board_worker(..)` / `every(..)` starts it
//!   again or `dismiss`/`cancel` removes it.
//!
//! An actor that stops normally (cancelled, replaced, dismissed, node shutdown) was removed from
//! its table first, so its exit is not a crash. The tables are keyed by name and matched by actor
//! id, so a crash report about an actor already replaced is ignored. The tables belong to the
//! node state actor (`state.rs`): this supervisor reports a crash to it, which applies the
//! restart budget and answers what to do; the restarted actor is entered by a message too.

use std::time::Duration;

use ractor::{Actor, ActorCell, ActorProcessingErr, ActorRef, SupervisionEvent};
use ractor_cluster_derive::RactorMessage;
use workshop_types::{AgentName, Topic};

use crate::schedule::{ScheduleActor, ScheduleMsg, ScheduleSpec};
use crate::state::StateMsg;
use crate::supervisor::RestartBudget;
use crate::worker::{BoardWorker, WorkerMsg, WorkerSpec};
use crate::{ApiError, Workshop};

/// Restarts allowed per worker or schedule within [`RESTART_WINDOW`].
pub const RESTARTS: u32 = 3;
pub const RESTART_WINDOW: Duration = Duration::from_secs(60);

/// One supervised background actor: its spec (to restart it), the running actor (none once it
/// is marked crashed), its restart budget and what it last crashed of.
pub(crate) struct Supervised<M: ractor::Message, S> {
    pub(crate) spec: S,
    pub(crate) actor: Option<ActorRef<M>>,
    pub(crate) budget: RestartBudget,
    pub(crate) restarts: u32,
    /// Set when the budget was spent: the reason of the last crash.
    pub(crate) crashed: Option<String>,
}

impl<M: ractor::Message, S: Clone> Clone for Supervised<M, S> {
    fn clone(&self) -> Self {
        Self {
            spec: self.spec.clone(),
            actor: self.actor.clone(),
            budget: self.budget.clone(),
            restarts: self.restarts,
            crashed: self.crashed.clone(),
        }
    }
}

impl<M: ractor::Message, S> Supervised<M, S> {
    pub(crate) fn new(spec: S, actor: ActorRef<M>) -> Self {
        Self {
            spec,
            actor: Some(actor),
            budget: RestartBudget::new(RESTARTS, RESTART_WINDOW),
            restarts: 0,
            crashed: None,
        }
    }

    pub(crate) fn is(&self, id: ractor::ActorId) -> bool {
        self.actor.as_ref().is_some_and(|a| a.get_id() == id)
    }

    /// Stop the running actor, if any (a normal stop: not reported as a crash).
    pub(crate) fn stop(&self, why: &str) {
        if let Some(a) = &self.actor {
            a.stop(Some(why.into()));
        }
    }
}

/// What the policy decided about a crash (pure; see [`decide`]).
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    Restart { restarts: u32 },
    GiveUp,
}

/// Record a crash at `now_ms` against `budget`: restart while the budget allows.
pub(crate) fn decide(budget: &mut RestartBudget, restarts: u32, now_ms: u64) -> Verdict {
    if budget.allow(now_ms) {
        Verdict::Restart {
            restarts: restarts + 1,
        }
    } else {
        Verdict::GiveUp
    }
}

#[derive(RactorMessage)]
pub enum BackgroundMsg {}

pub struct BackgroundSupervisor;

impl Actor for BackgroundSupervisor {
    type Msg = BackgroundMsg;
    type State = Workshop;
    type Arguments = Workshop;

    async fn pre_start(
        &self,
        _me: ActorRef<BackgroundMsg>,
        ws: Workshop,
    ) -> Result<Workshop, ActorProcessingErr> {
        Ok(ws)
    }

    async fn handle_supervisor_evt(
        &self,
        me: ActorRef<BackgroundMsg>,
        evt: SupervisionEvent,
        ws: &mut Workshop,
    ) -> Result<(), ActorProcessingErr> {
        if let SupervisionEvent::ActorFailed(cell, err) = evt {
            let why = err.to_string();
            if !worker_failed(ws, &me, &cell, &why).await {
                schedule_failed(ws, &me, &cell, &why).await;
            }
        }
        Ok(())
    }
}

fn give_up_line(kind: &str, name: &AgentName, how: &str) -> String {
    format!(
        "[{kind}] {name} crashed {} times within {} s; not restarted (marked crashed): {how}",
        RESTARTS + 1,
        RESTART_WINDOW.as_secs()
    )
}

async fn worker_failed(
    ws: &Workshop,
    me: &ActorRef<BackgroundMsg>,
    cell: &ActorCell,
    why: &str,
) -> bool {
    let (id, now_ms, reason) = (cell.get_id(), ws.now_ms(), why.to_string());
    let found = match ws
        .write_state(|reply| StateMsg::WorkerFailed {
            id,
            why: reason,
            now_ms,
            reply,
        })
        .await
    {
        Ok(found) => found,
        Err(e) => {
            tracing::error!(error = %e, crashed = %why, "a background actor's crash was not recorded");
            return false;
        }
    };
    let Some((name, spec, verdict)) = found else {
        return false;
    };
    tracing::warn!(worker = %name, error = %why, "board worker crashed");
    ws.emit_about(
        Topic::Work,
        "worker_crashed",
        name.as_str(),
        format!("[worker] {name} crashed: {why}"),
    );
    match verdict {
        Verdict::Restart { restarts } => match spawn_worker(ws, me.get_cell(), spec).await {
            Ok(actor) => {
                let n = name.clone();
                record(
                    ws.write_state(|reply| StateMsg::WorkerRestarted {
                        name: n,
                        old: id,
                        actor,
                        restarts,
                        reply,
                    })
                    .await,
                );
                ws.emit_about(
                    Topic::Work,
                    "worker_restarted",
                    name.as_str(),
                    format!("[worker] {name} restarted (restart {restarts})"),
                );
            }
            Err(e) => {
                let (n, why) = (name.clone(), e.to_string());
                record(
                    ws.write_state(|reply| StateMsg::WorkerNotRestarted {
                        name: n,
                        old: id,
                        why,
                        reply,
                    })
                    .await,
                );
                ws.emit_about(
                    Topic::Work,
                    "worker_crashed",
                    name.as_str(),
                    format!("[worker] {name} could not be restarted (marked crashed): {e}"),
                );
            }
        },
        Verdict::GiveUp => ws.emit_about(
            Topic::Work,
            "worker_crashed",
            name.as_str(),
            give_up_line("worker", &name, "board_worker(..) starts it again"),
        ),
    }
    true
}

/// A change to the tables that did not reach the state actor (the node is stopping).
fn record(r: Result<(), ApiError>) {
    if let Err(e) = r {
        tracing::error!(error = %e, "a background actor's restart was not recorded");
    }
}

async fn schedule_failed(ws: &Workshop, me: &ActorRef<BackgroundMsg>, cell: &ActorCell, why: &str) {
    let (id, now_ms, reason) = (cell.get_id(), ws.now_ms(), why.to_string());
    let found = match ws
        .write_state(|reply| StateMsg::ScheduleFailed {
            id,
            why: reason,
            now_ms,
            reply,
        })
        .await
    {
        Ok(found) => found,
        Err(e) => {
            tracing::error!(error = %e, crashed = %why, "a background actor's crash was not recorded");
            return;
        }
    };
    let Some((name, spec, verdict)) = found else {
        return;
    };
    tracing::warn!(schedule = %name, error = %why, "schedule crashed");
    ws.emit_about(
        Topic::Schedule,
        "crashed",
        name.as_str(),
        format!("[schedule] {name} crashed: {why}"),
    );
    match verdict {
        Verdict::Restart { restarts } => match spawn_schedule(ws, me.get_cell(), spec).await {
            Ok(actor) => {
                let n = name.clone();
                record(
                    ws.write_state(|reply| StateMsg::ScheduleRestarted {
                        name: n,
                        old: id,
                        actor,
                        restarts,
                        reply,
                    })
                    .await,
                );
                ws.emit_about(
                    Topic::Schedule,
                    "restarted",
                    name.as_str(),
                    format!("[schedule] {name} restarted (restart {restarts})"),
                );
            }
            Err(e) => {
                let (n, why) = (name.clone(), e.to_string());
                record(
                    ws.write_state(|reply| StateMsg::ScheduleNotRestarted {
                        name: n,
                        old: id,
                        why,
                        reply,
                    })
                    .await,
                );
                ws.emit_about(
                    Topic::Schedule,
                    "crashed",
                    name.as_str(),
                    format!("[schedule] {name} could not be restarted (marked crashed): {e}"),
                );
            }
        },
        Verdict::GiveUp => ws.emit_about(
            Topic::Schedule,
            "crashed",
            name.as_str(),
            give_up_line("schedule", &name, "every(..) starts it again"),
        ),
    }
}

pub(crate) async fn spawn_worker(
    ws: &Workshop,
    sup: ActorCell,
    spec: WorkerSpec,
) -> Result<ActorRef<WorkerMsg>, ApiError> {
    let name = spec.name.clone();
    Actor::spawn_linked(None, BoardWorker, (ws.clone(), spec), sup)
        .await
        .map(|(a, _)| a)
        .map_err(|e| {
            ApiError::Node(format!(
                "board worker {name} did not start: {}",
                crate::supervisor::why_not_started(&e)
            ))
        })
}

pub(crate) async fn spawn_schedule(
    ws: &Workshop,
    sup: ActorCell,
    spec: ScheduleSpec,
) -> Result<ActorRef<ScheduleMsg>, ApiError> {
    let name = spec.agent.clone();
    Actor::spawn_linked(None, ScheduleActor, (ws.clone(), spec), sup)
        .await
        .map(|(a, _)| a)
        .map_err(|e| {
            ApiError::Node(format!(
                "schedule for {name} did not start: {}",
                crate::supervisor::why_not_started(&e)
            ))
        })
}

impl Workshop {
    /// The background supervisor (started with the node, before anything is restored).
    pub(crate) fn background(&self) -> Result<ActorCell, ApiError> {
        self.inner
            .background
            .read()
            .clone()
            .ok_or_else(|| ApiError::Node("the node's background supervisor is not running".into()))
    }

    pub(crate) async fn start_background(&self) -> Result<(), ApiError> {
        let (sup, _) = Actor::spawn_linked(
            None,
            BackgroundSupervisor,
            self.clone(),
            self.inner.root.get_cell(),
        )
        .await
        .map_err(|e| ApiError::Node(format!("the background supervisor did not start: {e}")))?;
        *self.inner.background.write() = Some(sup.get_cell());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn three_restarts_within_the_window_then_give_up() {
        let mut b = RestartBudget::new(RESTARTS, RESTART_WINDOW);
        assert_eq!(decide(&mut b, 0, 0), Verdict::Restart { restarts: 1 });
        assert_eq!(decide(&mut b, 1, 10), Verdict::Restart { restarts: 2 });
        assert_eq!(decide(&mut b, 2, 20), Verdict::Restart { restarts: 3 });
        assert_eq!(decide(&mut b, 3, 30), Verdict::GiveUp);
        assert_eq!(
            decide(&mut b, 3, 60_001),
            Verdict::Restart { restarts: 4 },
            "a crash after the window is restarted again"
        );
    }
}
