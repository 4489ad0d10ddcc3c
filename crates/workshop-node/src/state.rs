//! The node's configuration state and its one writer.
//!
//! [`NodeStateActor`] owns the global configuration, the profiles, the budget limits, the
//! workflow definitions, the tables of board workers and schedules (their specs, running actors
//! and restart bookkeeping) and the set of agents restored from the registry and not declared
//! again since. Every change is a [`StateMsg`] to it: it applies the change, persists it to the
//! node database where the node persists it, publishes a new immutable [`NodeStateSnapshot`],
//! and only then replies. Readers (`Workshop::config`, `profiles`, `workflows`, the agents'
//! admission hook, ...) take the current snapshot from a [`StateView`] and never wait for the
//! actor, nor for one another.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use ractor::{Actor, ActorCell, ActorId, ActorProcessingErr, ActorRef, RpcReplyPort};
use ractor_cluster_derive::RactorMessage;
use tokio::sync::watch;
use workshop_types::{AgentName, AgentOptions};
use workshop_workflow::Workflow;

use crate::background::{decide, Supervised, Verdict};
use crate::budget::Budgets;
use crate::persist::NodeDb;
use crate::schedule::{ScheduleMsg, ScheduleSpec};
use crate::worker::{WorkerMsg, WorkerSpec};
use crate::{ApiError, GlobalConfig, Profile};

/// The node's board workers by name (see `background.rs` for the restart policy).
pub(crate) type Workers = BTreeMap<AgentName, Supervised<WorkerMsg, WorkerSpec>>;
/// The node's schedules by agent.
pub(crate) type Schedules = BTreeMap<AgentName, Supervised<ScheduleMsg, ScheduleSpec>>;

/// What a crash report found: the crashed actor's name, its spec, and the policy's verdict.
pub(crate) type Crash<S> = Option<(AgentName, S, Verdict)>;

/// What the node's configuration is at one moment. Never changed once published.
#[derive(Default, Clone)]
pub(crate) struct NodeStateSnapshot {
    pub(crate) config: GlobalConfig,
    pub(crate) profiles: BTreeMap<String, Profile>,
    pub(crate) budgets: Budgets,
    pub(crate) workflows: BTreeMap<String, Workflow>,
    pub(crate) workers: Workers,
    pub(crate) schedules: Schedules,
}

/// A reader's handle on the latest snapshot (cheap to clone; reading is a pointer copy).
#[derive(Clone)]
pub(crate) struct StateView(watch::Receiver<Arc<NodeStateSnapshot>>);

impl StateView {
    pub(crate) fn current(&self) -> Arc<NodeStateSnapshot> {
        self.0.borrow().clone()
    }
}

/// The changes the state actor makes. Each replies once the change is persisted and published.
#[derive(RactorMessage)]
pub(crate) enum StateMsg {
    /// Merge new global defaults (validated by the caller).
    Configure {
        context: Option<String>,
        options: AgentOptions,
        max_cost_usd: Option<f64>,
        reply: RpcReplyPort<Result<(), ApiError>>,
    },
    /// Define (or replace) a profile (validated by the caller).
    Profile {
        profile: Profile,
        reply: RpcReplyPort<Result<(), ApiError>>,
    },
    /// Define (or replace) a workflow; durable (synced) before the reply.
    Workflow {
        workflow: Workflow,
        reply: RpcReplyPort<Result<(), ApiError>>,
    },
    /// Clear every limit; spending counts from these costs on.
    ResetBudget {
        costs: Vec<(AgentName, f64)>,
        total_cost: f64,
        reply: RpcReplyPort<()>,
    },
    /// An agent was started with this limit.
    SetAgentBudget {
        name: AgentName,
        limit: Option<f64>,
        reply: RpcReplyPort<()>,
    },
    /// An agent was dismissed: its limit goes.
    ForgetAgentBudget {
        name: AgentName,
        reply: RpcReplyPort<()>,
    },
    /// Load the configuration, profiles and workflows from the node database (at start). The
    /// reply lists what could not be loaded (a missing secrets file), for the caller to report.
    Restore {
        reply: RpcReplyPort<Result<Vec<String>, ApiError>>,
    },
    /// An agent came back from the registry.
    MarkRestored {
        name: AgentName,
        reply: RpcReplyPort<()>,
    },
    /// The agent is declared again: true if it was restored and not declared since.
    TakeRestored {
        name: AgentName,
        reply: RpcReplyPort<bool>,
    },
    /// `reset_all`: default configuration, no profiles, no limits (on disk too).
    ResetAll { reply: RpcReplyPort<()> },
    /// A board worker was started: enter it (a worker it displaces is stopped).
    InsertWorker {
        name: AgentName,
        entry: Supervised<WorkerMsg, WorkerSpec>,
        reply: RpcReplyPort<()>,
    },
    /// Remove a board worker and stop it (a normal stop): true if there was one.
    RemoveWorker {
        name: AgentName,
        why: &'static str,
        reply: RpcReplyPort<bool>,
    },
    /// Node stopping or reset: remove and stop every board worker.
    StopWorkers { reply: RpcReplyPort<()> },
    /// The actor `id` failed at `now_ms`: if it is a board worker's, apply the restart policy.
    WorkerFailed {
        id: ActorId,
        why: String,
        now_ms: u64,
        reply: RpcReplyPort<Crash<WorkerSpec>>,
    },
    /// The worker whose actor was `old` runs again as `actor` (unless replaced meanwhile).
    WorkerRestarted {
        name: AgentName,
        old: ActorId,
        actor: ActorRef<WorkerMsg>,
        restarts: u32,
        reply: RpcReplyPort<()>,
    },
    /// The worker whose actor was `old` could not be restarted: mark it crashed.
    WorkerNotRestarted {
        name: AgentName,
        old: ActorId,
        why: String,
        reply: RpcReplyPort<()>,
    },
    /// A schedule was started: enter it (a schedule it displaces is stopped).
    InsertSchedule {
        name: AgentName,
        entry: Supervised<ScheduleMsg, ScheduleSpec>,
        reply: RpcReplyPort<()>,
    },
    /// Remove an agent's schedule and stop it (a normal stop): true if there was one.
    RemoveSchedule {
        name: AgentName,
        reply: RpcReplyPort<bool>,
    },
    /// The actor `id` failed at `now_ms`: if it is a schedule's, apply the restart policy.
    ScheduleFailed {
        id: ActorId,
        why: String,
        now_ms: u64,
        reply: RpcReplyPort<Crash<ScheduleSpec>>,
    },
    /// The schedule whose actor was `old` runs again as `actor` (unless replaced meanwhile).
    ScheduleRestarted {
        name: AgentName,
        old: ActorId,
        actor: ActorRef<ScheduleMsg>,
        restarts: u32,
        reply: RpcReplyPort<()>,
    },
    /// The schedule whose actor was `old` could not be restarted: mark it crashed.
    ScheduleNotRestarted {
        name: AgentName,
        old: ActorId,
        why: String,
        reply: RpcReplyPort<()>,
    },
}

// The table operations, the same for workers and schedules.

fn insert<M: ractor::Message, S>(
    table: &mut BTreeMap<AgentName, Supervised<M, S>>,
    name: AgentName,
    entry: Supervised<M, S>,
) {
    if let Some(old) = table.insert(name, entry) {
        // Started concurrently under the same name: the later one wins.
        old.stop("replaced");
    }
}

fn remove<M: ractor::Message, S>(
    table: &mut BTreeMap<AgentName, Supervised<M, S>>,
    name: &AgentName,
    why: &str,
) -> bool {
    match table.remove(name) {
        Some(old) => {
            old.stop(why);
            true
        }
        None => false,
    }
}

fn failed<M: ractor::Message, S: Clone>(
    table: &mut BTreeMap<AgentName, Supervised<M, S>>,
    id: ActorId,
    why: String,
    now_ms: u64,
) -> Crash<S> {
    let (name, s) = table.iter_mut().find(|(_, s)| s.is(id))?;
    let verdict = decide(&mut s.budget, s.restarts, now_ms);
    if verdict == Verdict::GiveUp {
        s.actor = None;
        s.crashed = Some(why);
    }
    Some((name.clone(), s.spec.clone(), verdict))
}

fn restarted<M: ractor::Message, S>(
    table: &mut BTreeMap<AgentName, Supervised<M, S>>,
    name: &AgentName,
    old: ActorId,
    actor: ActorRef<M>,
    restarts: u32,
) {
    match table.get_mut(name) {
        Some(s) if s.is(old) => {
            s.actor = Some(actor);
            s.restarts = restarts;
        }
        // Replaced or removed meanwhile: the new actor is not wanted.
        _ => actor.stop(Some("replaced".into())),
    }
}

fn not_restarted<M: ractor::Message, S>(
    table: &mut BTreeMap<AgentName, Supervised<M, S>>,
    name: &AgentName,
    old: ActorId,
    why: String,
) {
    if let Some(s) = table.get_mut(name) {
        if s.is(old) {
            s.actor = None;
            s.crashed = Some(why);
        }
    }
}

pub(crate) struct NodeStateArgs {
    pub(crate) db: Option<Arc<NodeDb>>,
    pub(crate) publish: watch::Sender<Arc<NodeStateSnapshot>>,
}

pub(crate) struct NodeState {
    db: Option<Arc<NodeDb>>,
    publish: watch::Sender<Arc<NodeStateSnapshot>>,
    /// The state being written; a copy of it is published after every change.
    now: NodeStateSnapshot,
    /// Agents restored from the registry and not declared again since.
    restored: HashSet<AgentName>,
}

impl NodeState {
    fn publish(&self) {
        self.publish.send_replace(Arc::new(self.now.clone()));
    }

    fn save_config(&self) -> Result<(), ApiError> {
        match &self.db {
            Some(db) => db.put_config(&self.now.config),
            None => Ok(()),
        }
    }

    /// Load what the database holds; a configuration or profile whose `env` values cannot be
    /// read back (a missing secrets file) is not loaded but reported: never half an environment.
    fn restore(&mut self) -> Result<Vec<String>, ApiError> {
        let Some(db) = self.db.clone() else {
            return Ok(Vec::new());
        };
        let mut problems = Vec::new();
        match db.config()? {
            Some(Ok(c)) => {
                self.now.budgets.set_global(c.max_cost_usd);
                self.now.config = c;
            }
            Some(Err(e)) => problems.push(format!(
                "the global configuration (context, defaults, budget) was not restored: {e}; configure(..) sets it again"
            )),
            None => {}
        }
        let (profiles, bad) = db.profiles()?;
        for p in profiles {
            self.now.profiles.insert(p.name.clone(), p);
        }
        problems.extend(
            bad.into_iter()
                .map(|b| format!("profile not restored: {b}")),
        );
        for wf in db.workflows()? {
            self.now.workflows.insert(wf.name.clone(), wf);
        }
        Ok(problems)
    }
}

/// The single writer of the node's configuration state.
pub(crate) struct NodeStateActor;

/// Start the state actor, linked to `supervisor`, and the view its readers share.
pub(crate) async fn spawn(
    db: Option<Arc<NodeDb>>,
    supervisor: ActorCell,
) -> Result<(ActorRef<StateMsg>, StateView), ApiError> {
    let (tx, rx) = watch::channel(Arc::new(NodeStateSnapshot::default()));
    let (actor, _) = Actor::spawn_linked(
        None,
        NodeStateActor,
        NodeStateArgs { db, publish: tx },
        supervisor,
    )
    .await
    .map_err(|e| ApiError::Node(format!("the node state actor did not start: {e}")))?;
    Ok((actor, StateView(rx)))
}

impl Actor for NodeStateActor {
    type Msg = StateMsg;
    type State = NodeState;
    type Arguments = NodeStateArgs;

    async fn pre_start(
        &self,
        _me: ActorRef<StateMsg>,
        args: NodeStateArgs,
    ) -> Result<NodeState, ActorProcessingErr> {
        Ok(NodeState {
            db: args.db,
            publish: args.publish,
            now: NodeStateSnapshot::default(),
            restored: HashSet::new(),
        })
    }

    async fn handle(
        &self,
        _me: ActorRef<StateMsg>,
        msg: StateMsg,
        st: &mut NodeState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            StateMsg::Configure {
                context,
                options,
                max_cost_usd,
                reply,
            } => {
                let c = &mut st.now.config;
                if context.is_some() {
                    c.context = context;
                }
                c.defaults = c.defaults.overlay(&options);
                if max_cost_usd.is_some() {
                    c.max_cost_usd = max_cost_usd;
                    st.now.budgets.set_global(max_cost_usd);
                }
                st.publish();
                let _ = reply.send(st.save_config());
            }
            StateMsg::Profile { profile, reply } => {
                let saved = match &st.db {
                    Some(db) => db.put_profile(&profile),
                    None => Ok(()),
                };
                if saved.is_ok() {
                    st.now.profiles.insert(profile.name.clone(), profile);
                    st.publish();
                }
                let _ = reply.send(saved);
            }
            StateMsg::Workflow { workflow, reply } => {
                let saved = match &st.db {
                    Some(db) => match db.put_workflow(&workflow) {
                        Ok(()) => db.sync().await,
                        Err(e) => Err(e),
                    },
                    None => Ok(()),
                };
                if saved.is_ok() {
                    st.now.workflows.insert(workflow.name.clone(), workflow);
                    st.publish();
                }
                let _ = reply.send(saved);
            }
            StateMsg::ResetBudget {
                costs,
                total_cost,
                reply,
            } => {
                st.now.budgets.reset(&costs, total_cost);
                st.now.config.max_cost_usd = None;
                st.publish();
                if let Err(e) = st.save_config() {
                    tracing::error!(error = %e, "configuration not saved");
                }
                let _ = reply.send(());
            }
            StateMsg::SetAgentBudget { name, limit, reply } => {
                st.now.budgets.set_agent(&name, limit);
                st.publish();
                let _ = reply.send(());
            }
            StateMsg::ForgetAgentBudget { name, reply } => {
                st.now.budgets.forget(&name);
                st.publish();
                let _ = reply.send(());
            }
            StateMsg::Restore { reply } => {
                let loaded = st.restore();
                st.publish();
                let _ = reply.send(loaded);
            }
            StateMsg::MarkRestored { name, reply } => {
                st.restored.insert(name);
                let _ = reply.send(());
            }
            StateMsg::TakeRestored { name, reply } => {
                let _ = reply.send(st.restored.remove(&name));
            }
            StateMsg::InsertWorker { name, entry, reply } => {
                insert(&mut st.now.workers, name, entry);
                st.publish();
                let _ = reply.send(());
            }
            StateMsg::RemoveWorker { name, why, reply } => {
                let removed = remove(&mut st.now.workers, &name, why);
                st.publish();
                let _ = reply.send(removed);
            }
            StateMsg::StopWorkers { reply } => {
                for (_, w) in std::mem::take(&mut st.now.workers) {
                    w.stop("node stopping");
                }
                st.publish();
                let _ = reply.send(());
            }
            StateMsg::WorkerFailed {
                id,
                why,
                now_ms,
                reply,
            } => {
                let crash = failed(&mut st.now.workers, id, why, now_ms);
                st.publish();
                let _ = reply.send(crash);
            }
            StateMsg::WorkerRestarted {
                name,
                old,
                actor,
                restarts,
                reply,
            } => {
                restarted(&mut st.now.workers, &name, old, actor, restarts);
                st.publish();
                let _ = reply.send(());
            }
            StateMsg::WorkerNotRestarted {
                name,
                old,
                why,
                reply,
            } => {
                not_restarted(&mut st.now.workers, &name, old, why);
                st.publish();
                let _ = reply.send(());
            }
            StateMsg::InsertSchedule { name, entry, reply } => {
                insert(&mut st.now.schedules, name, entry);
                st.publish();
                let _ = reply.send(());
            }
            StateMsg::RemoveSchedule { name, reply } => {
                let removed = remove(&mut st.now.schedules, &name, "cancelled");
                st.publish();
                let _ = reply.send(removed);
            }
            StateMsg::ScheduleFailed {
                id,
                why,
                now_ms,
                reply,
            } => {
                let crash = failed(&mut st.now.schedules, id, why, now_ms);
                st.publish();
                let _ = reply.send(crash);
            }
            StateMsg::ScheduleRestarted {
                name,
                old,
                actor,
                restarts,
                reply,
            } => {
                restarted(&mut st.now.schedules, &name, old, actor, restarts);
                st.publish();
                let _ = reply.send(());
            }
            StateMsg::ScheduleNotRestarted {
                name,
                old,
                why,
                reply,
            } => {
                not_restarted(&mut st.now.schedules, &name, old, why);
                st.publish();
                let _ = reply.send(());
            }
            StateMsg::ResetAll { reply } => {
                st.now.config = GlobalConfig::default();
                st.now.budgets = Budgets::default();
                st.now.profiles.clear();
                st.publish();
                if let Some(db) = &st.db {
                    if let Err(e) = db.clear_config_and_profiles() {
                        tracing::error!(error = %e, "configuration not cleared on disk");
                    }
                }
                let _ = reply.send(());
            }
        }
        Ok(())
    }
}
