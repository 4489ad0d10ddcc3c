//! The node's configuration state and its one writer.
//!
//! [`NodeStateActor`] owns the global configuration, the profiles, the budget limits and the
//! workflow definitions (and the set of agents restored from the registry and not declared
//! again since). Every change is a [`StateMsg`] to it: it applies the change, persists it to the
//! node database where the node persists it, publishes a new immutable [`NodeStateSnapshot`],
//! and only then replies. Readers (`Workshop::config`, `profiles`, `workflows`, the agents'
//! admission hook, ...) take the current snapshot from a [`StateView`] and never wait for the
//! actor, nor for one another.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use ractor::{Actor, ActorCell, ActorProcessingErr, ActorRef, RpcReplyPort};
use ractor_cluster_derive::RactorMessage;
use tokio::sync::watch;
use workshop_types::{AgentName, AgentOptions};
use workshop_workflow::Workflow;

use crate::budget::Budgets;
use crate::persist::NodeDb;
use crate::{ApiError, GlobalConfig, Profile};

/// What the node's configuration is at one moment. Never changed once published.
#[derive(Debug, Default, Clone)]
pub(crate) struct NodeStateSnapshot {
    pub(crate) config: GlobalConfig,
    pub(crate) profiles: BTreeMap<String, Profile>,
    pub(crate) budgets: Budgets,
    pub(crate) workflows: BTreeMap<String, Workflow>,
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
    /// Load the configuration, profiles and workflows from the node database (at start).
    Restore {
        reply: RpcReplyPort<Result<(), ApiError>>,
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

    fn restore(&mut self) -> Result<(), ApiError> {
        let Some(db) = self.db.clone() else {
            return Ok(());
        };
        if let Some(c) = db.config()? {
            self.now.budgets.set_global(c.max_cost_usd);
            self.now.config = c;
        }
        for p in db.profiles()? {
            self.now.profiles.insert(p.name.clone(), p);
        }
        for wf in db.workflows()? {
            self.now.workflows.insert(wf.name.clone(), wf);
        }
        Ok(())
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
