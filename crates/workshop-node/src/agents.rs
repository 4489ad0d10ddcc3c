//! The dynamic agent supervisor. Agents are temporary children: when one fails (a panic in its
//! behaviour, an error from a handler) it is marked `crashed` and an event is published; it is
//! never restarted silently (gen_agent: "an auto-restart would silently lose everything").

use std::sync::Arc;

use ractor::{Actor, ActorProcessingErr, ActorRef, SupervisionEvent};
use ractor_cluster_derive::RactorMessage;
use workshop_types::Topic;

use crate::directory::Directory;
use crate::event_log::EventLogHandle;

#[derive(RactorMessage)]
pub enum AgentSupervisorMsg {}

pub struct AgentSupervisorArgs {
    pub directory: Arc<Directory>,
    pub events: Arc<EventLogHandle>,
}

pub struct AgentSupervisor;

impl Actor for AgentSupervisor {
    type Msg = AgentSupervisorMsg;
    type State = AgentSupervisorArgs;
    type Arguments = AgentSupervisorArgs;

    async fn pre_start(
        &self,
        _me: ActorRef<AgentSupervisorMsg>,
        args: AgentSupervisorArgs,
    ) -> Result<AgentSupervisorArgs, ActorProcessingErr> {
        Ok(args)
    }

    async fn handle_supervisor_evt(
        &self,
        _me: ActorRef<AgentSupervisorMsg>,
        evt: SupervisionEvent,
        st: &mut AgentSupervisorArgs,
    ) -> Result<(), ActorProcessingErr> {
        if let SupervisionEvent::ActorFailed(cell, err) = evt {
            if let Some(name) = st.directory.mark_crashed(cell.get_id()) {
                tracing::warn!(agent = %name, error = %err, "agent crashed");
                st.events.publish(
                    Topic::Agent,
                    "crashed",
                    Some(name.as_str()),
                    format!("[error] {name} crashed: {err}"),
                );
            }
        }
        Ok(())
    }
}
