//! The node's root supervisor and the restart budget it applies to permanent children.
//!
//! ractor has no restart strategies built in (and ractor-supervisor does not build with the
//! `cluster` feature), so this is a small one: a permanent child that fails is restarted under
//! its name unless it has failed `max_restarts` times within `window`; then the node stops
//! (OTP's "meltdown"), because running without its event log or agent supervisor would be lying.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use ractor::{Actor, ActorCell, ActorId, ActorProcessingErr, ActorRef, SupervisionEvent};
use ractor_cluster_derive::RactorMessage;

use crate::agents::{AgentSupervisor, AgentSupervisorArgs};
use crate::directory::Directory;
use crate::event_log::{EventLog, EventLogHandle};

/// Pure restart-budget bookkeeping: at most `max` restarts within `window`.
#[derive(Debug, Clone)]
pub struct RestartBudget {
    pub max: u32,
    pub window: Duration,
    recent: VecDeque<u64>,
}

impl RestartBudget {
    pub fn new(max: u32, window: Duration) -> Self {
        Self {
            max,
            window,
            recent: VecDeque::new(),
        }
    }

    /// Record a failure at `now_ms`; true if a restart is still allowed.
    pub fn allow(&mut self, now_ms: u64) -> bool {
        let window = self.window.as_millis() as u64;
        while self
            .recent
            .front()
            .is_some_and(|&t| now_ms.saturating_sub(t) >= window)
        {
            self.recent.pop_front();
        }
        if self.recent.len() as u32 >= self.max {
            return false;
        }
        self.recent.push_back(now_ms);
        true
    }
}

pub const EVENT_LOG: &str = "workshop.event_log";
pub const AGENTS: &str = "workshop.agents";

#[derive(RactorMessage)]
pub enum RootMsg {}

/// Where the current agent supervisor is published for `Workshop::agent` (no round trip to
/// the root per spawn); the root updates it when it restarts the agent supervisor.
pub type AgentsSlot = Arc<parking_lot::RwLock<Option<ActorCell>>>;

pub struct RootArgs {
    pub agents_slot: AgentsSlot,
    pub events: Arc<EventLogHandle>,
    pub directory: Arc<Directory>,
    pub budget: RestartBudget,
}

pub struct RootState {
    events: Arc<EventLogHandle>,
    directory: Arc<Directory>,
    budget: RestartBudget,
    event_log: ActorId,
    agents: Option<ActorCell>,
    agents_slot: AgentsSlot,
}

pub struct NodeSupervisor;

impl NodeSupervisor {
    async fn start_event_log(
        me: &ActorRef<RootMsg>,
        events: &Arc<EventLogHandle>,
    ) -> Result<ActorId, ActorProcessingErr> {
        // Children are unnamed: ractor's registry is process-wide, and a process may run more
        // than one node (tests, benchmarks). The root knows them by id.
        let (log, _) = Actor::spawn_linked(
            None,
            EventLog,
            (events.bus(), events.db(), events.clock()),
            me.get_cell(),
        )
        .await?;
        let id = log.get_id();
        events.set_actor(Some(log));
        Ok(id)
    }

    async fn start_agents(
        me: &ActorRef<RootMsg>,
        st_events: &Arc<EventLogHandle>,
        directory: &Arc<Directory>,
    ) -> Result<ActorCell, ActorProcessingErr> {
        let (sup, _) = Actor::spawn_linked(
            None,
            AgentSupervisor,
            AgentSupervisorArgs {
                directory: directory.clone(),
                events: st_events.clone(),
            },
            me.get_cell(),
        )
        .await?;
        Ok(sup.get_cell())
    }
}

impl Actor for NodeSupervisor {
    type Msg = RootMsg;
    type State = RootState;
    type Arguments = RootArgs;

    async fn pre_start(
        &self,
        me: ActorRef<RootMsg>,
        args: RootArgs,
    ) -> Result<RootState, ActorProcessingErr> {
        let event_log = Self::start_event_log(&me, &args.events).await?;
        let agents = Self::start_agents(&me, &args.events, &args.directory).await?;
        Ok(RootState {
            events: args.events,
            directory: args.directory,
            budget: args.budget,
            event_log,
            agents: Some(agents.clone()),
            agents_slot: {
                *args.agents_slot.write() = Some(agents);
                args.agents_slot
            },
        })
    }

    async fn handle_supervisor_evt(
        &self,
        me: ActorRef<RootMsg>,
        evt: SupervisionEvent,
        st: &mut RootState,
    ) -> Result<(), ActorProcessingErr> {
        let (cell, why) = match evt {
            SupervisionEvent::ActorFailed(cell, err) => (cell, err.to_string()),
            SupervisionEvent::ActorTerminated(cell, _, reason) => {
                (cell, reason.unwrap_or_else(|| "stopped".into()))
            }
            _ => return Ok(()),
        };
        let id = cell.get_id();
        let name = if id == st.event_log {
            EVENT_LOG
        } else if st.agents.as_ref().is_some_and(|a| a.get_id() == id) {
            AGENTS
        } else {
            return Ok(());
        };
        tracing::error!(child = %name, %why, "permanent child of the node exited");
        if !st.budget.allow((st.events.clock())()) {
            me.stop(Some(format!(
                "restart budget exhausted ({} restarts in {:?}); last failure of {name}: {why}",
                st.budget.max, st.budget.window
            )));
            return Ok(());
        }
        match name {
            EVENT_LOG => {
                st.events.set_actor(None);
                st.event_log = Self::start_event_log(&me, &st.events).await?;
                st.events.publish(
                    workshop_types::Topic::Node,
                    "restarted",
                    Some(EVENT_LOG),
                    format!("[node] event log restarted after: {why}"),
                );
            }
            AGENTS => {
                // The agents died with their supervisor: mark them crashed, start a new one.
                for row in st.directory.rows() {
                    if let Some((a, _)) = st.directory.actor(&row.name) {
                        st.directory.mark_crashed(a.get_id());
                    }
                }
                *st.agents_slot.write() = None;
                let agents = Self::start_agents(&me, &st.events, &st.directory).await?;
                *st.agents_slot.write() = Some(agents.clone());
                st.agents = Some(agents);
            }
            _ => {}
        }
        Ok(())
    }
}

/// Why an actor did not start, in its own words: ractor calls every startup failure "Actor
/// panicked during startup", also a plain error its `pre_start` returned (a missing script
/// file, a backend that cannot start).
pub fn why_not_started(e: &ractor::SpawnErr) -> String {
    match e {
        ractor::SpawnErr::StartupFailed(inner) => inner.to_string(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restart_budget_allows_max_within_window() {
        let mut b = RestartBudget::new(3, Duration::from_secs(5));
        assert!(b.allow(0));
        assert!(b.allow(1000));
        assert!(b.allow(2000));
        assert!(!b.allow(3000), "fourth failure within 5 s is a meltdown");
        assert!(b.allow(6000), "the first failures left the window");
    }
}
