//! One schedule actor per agent (`every(agent, prompt, interval)`): on every tick it casts the
//! prompt if the agent is idle with an empty queue, and skips the tick otherwise, as
//! AgentWorkshop's Scheduler does. Every tick is counted and published.

use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use ractor_cluster_derive::RactorMessage;

use tokio::task::JoinHandle;
use workshop_types::{AgentName, AgentStatus, Topic};

use crate::background::{spawn_schedule, Supervised};
use crate::state::StateMsg;
use crate::workshop::{call_actor, parse_name};
use crate::{ApiError, Workshop};

pub use workshop_proto::api::{ScheduleInfo, ScheduleSpec};

pub const MIN_INTERVAL_MS: u64 = 10;

#[derive(RactorMessage)]
pub enum ScheduleMsg {
    Tick,
    Info(RpcReplyPort<ScheduleInfo>),
    /// Test-only: fail the actor's handler (as a bug would), to exercise its supervision.
    #[cfg(any(test, feature = "test-hooks"))]
    CrashForTest(String),
}

pub struct ScheduleActor;

pub struct ScheduleState {
    workshop: Workshop,
    info: ScheduleInfo,
    timer: JoinHandle<()>,
}

impl Actor for ScheduleActor {
    type Msg = ScheduleMsg;
    type State = ScheduleState;
    type Arguments = (Workshop, ScheduleSpec);

    async fn pre_start(
        &self,
        me: ActorRef<ScheduleMsg>,
        (workshop, spec): (Workshop, ScheduleSpec),
    ) -> Result<ScheduleState, ActorProcessingErr> {
        let timer = me.send_interval(Duration::from_millis(spec.interval_ms), || {
            ScheduleMsg::Tick
        });
        Ok(ScheduleState {
            workshop,
            info: ScheduleInfo {
                spec,
                run_count: 0,
                skipped: 0,
                last_run_at_ms: None,
                restarts: 0,
                crashed: None,
            },
            timer,
        })
    }

    async fn post_stop(
        &self,
        _me: ActorRef<ScheduleMsg>,
        st: &mut ScheduleState,
    ) -> Result<(), ActorProcessingErr> {
        st.timer.abort();
        Ok(())
    }

    async fn handle(
        &self,
        _me: ActorRef<ScheduleMsg>,
        msg: ScheduleMsg,
        st: &mut ScheduleState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            ScheduleMsg::Tick => {
                let agent = st.info.spec.agent.clone();
                let idle = st
                    .workshop
                    .status()
                    .into_iter()
                    .find(|r| r.name == agent)
                    .is_some_and(|r| r.status == AgentStatus::Idle && r.queued == 0);
                st.info.run_count += 1;
                st.info.last_run_at_ms = Some(st.workshop.now_ms());
                if idle {
                    if let Err(e) = st
                        .workshop
                        .cast_from(agent.as_str(), &st.info.spec.prompt, "schedule")
                        .await
                    {
                        st.workshop.emit_about(
                            Topic::Schedule,
                            "error",
                            agent.as_str(),
                            format!("[error] schedule {agent}: {e}"),
                        );
                    }
                } else {
                    st.info.skipped += 1;
                }
                st.workshop.emit_about(
                    Topic::Schedule,
                    "tick",
                    agent.as_str(),
                    format!(
                        "[tick] {agent}{}",
                        if idle { "" } else { " (busy, skipped)" }
                    ),
                );
            }
            ScheduleMsg::Info(reply) => {
                let _ = reply.send(st.info.clone());
            }
            #[cfg(any(test, feature = "test-hooks"))]
            ScheduleMsg::CrashForTest(why) => return Err(why.into()),
        }
        Ok(())
    }
}

impl Workshop {
    // ---------------------------------------------------------------- schedules

    /// Run `prompt` on `agent` every `interval_ms` (replacing its previous schedule); ticks are
    /// skipped while the agent is busy.
    pub async fn every(&self, agent: &str, prompt: &str, interval_ms: u64) -> Result<(), ApiError> {
        let (name, _) = self.live(agent)?;
        if interval_ms < MIN_INTERVAL_MS {
            return Err(ApiError::Node(format!(
                "schedule interval_ms must be {}, got {interval_ms}",
                workshop_types::numbers::whole_range(MIN_INTERVAL_MS, None)
            )));
        }
        let spec = ScheduleSpec {
            agent: name.clone(),
            prompt: prompt.to_string(),
            interval_ms,
        };
        self.start_schedule(spec).await
    }

    pub(crate) async fn start_schedule(&self, spec: ScheduleSpec) -> Result<(), ApiError> {
        let name = spec.agent.clone();
        self.cancel_quiet(&name).await?;
        if let Some(db) = &self.inner.db {
            db.put_schedule(&spec)?;
            db.sync().await?;
        }
        let actor = spawn_schedule(self, self.background()?, spec.clone()).await?;
        let (n, entry) = (name.clone(), Supervised::new(spec.clone(), actor));
        self.write_state(|reply| StateMsg::InsertSchedule {
            name: n,
            entry,
            reply,
        })
        .await?;
        self.publish(
            Topic::Schedule,
            "created",
            Some(name.as_str()),
            format!("[schedule] {name} every {} ms", spec.interval_ms),
        );
        Ok(())
    }

    /// Remove the agent's schedule and stop it: true if it had one.
    pub(crate) async fn cancel_quiet(&self, name: &AgentName) -> Result<bool, ApiError> {
        let name = name.clone();
        self.write_state(|reply| StateMsg::RemoveSchedule { name, reply })
            .await
    }

    /// Cancel an agent's schedule. No-op if it has none.
    pub async fn cancel(&self, agent: &str) -> Result<(), ApiError> {
        let name = parse_name(agent)?;
        if self.cancel_quiet(&name).await? {
            if let Some(db) = &self.inner.db {
                db.delete_schedule(&name)?;
                db.sync().await?;
            }
            self.publish(
                Topic::Schedule,
                "cancelled",
                Some(name.as_str()),
                format!("[schedule] {name} cancelled"),
            );
        }
        Ok(())
    }

    /// Test-only: the running actor of an agent's schedule.
    #[cfg(any(test, feature = "test-hooks"))]
    pub fn schedule_actor(&self, agent: &str) -> Option<ActorRef<ScheduleMsg>> {
        let name = AgentName::new(agent).ok()?;
        self.snapshot().schedules.get(&name)?.actor.clone()
    }

    /// Every schedule, with its counters (each running one asked, within the actor-call
    /// bound); one that crashed past its restart budget is listed with `crashed` set.
    pub async fn schedules(&self) -> Result<Vec<ScheduleInfo>, ApiError> {
        type Row = (ScheduleInfo, Option<ActorRef<ScheduleMsg>>);
        let rows: Vec<Row> = self
            .snapshot()
            .schedules
            .values()
            .map(|s| {
                let info = ScheduleInfo {
                    spec: s.spec.clone(),
                    run_count: 0,
                    skipped: 0,
                    last_run_at_ms: None,
                    restarts: s.restarts,
                    crashed: s.crashed.clone(),
                };
                (info, s.actor.clone())
            })
            .collect();
        let mut out = Vec::new();
        for (info, actor) in rows {
            match actor {
                Some(a) => {
                    let what = format!("the schedule of {}", info.spec.agent);
                    let live = call_actor(&a, &what, ScheduleMsg::Info).await?;
                    out.push(ScheduleInfo {
                        restarts: info.restarts,
                        crashed: info.crashed,
                        ..live
                    });
                }
                None => out.push(info),
            }
        }
        out.sort_by(|a, b| a.spec.agent.cmp(&b.spec.agent));
        Ok(out)
    }
}
