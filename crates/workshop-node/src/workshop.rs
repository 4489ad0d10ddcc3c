//! `Workshop`: the node's public API, with AgentWorkshop's names. The console, the CLI and the
//! tests call only this. It reads the node's configuration (config, profiles, budgets,
//! workflows, the workers' and schedules' tables) from the state actor's snapshot and changes
//! it by messages to that actor (`state.rs`), and talks to agents through the directory; it
//! owns no infrastructure (the supervision tree does).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::RwLock;
use ractor::{Actor, ActorRef, MessagingErr, RpcReplyPort};
use tokio::sync::broadcast;
use workshop_agent::backend::Backends;
use workshop_agent::{AgentActor, AgentArgs, Behaviour, Restored, SessionBehaviour};
use workshop_proto::agent::{
    AgentMsg, AskReply, AwaitReply, CastReply, HistoryReply, InfoReply, PollReply, Prompt, Refusal,
};
use workshop_types::{
    AgentInfo, AgentName, AgentOptions, AgentRow, AgentSpec, AgentStatus, Event, PollState,
    RequestRef, Topic, TurnResult,
};

use crate::board_link::BoardLink;
use crate::directory::{Directory, Entry, NodeHooks};
use crate::event_log::{EventLogHandle, EventLogMsg};
use crate::names::{NameGuard, NameLocks};
use crate::persist::{AgentRecord, NodeDb};
use crate::state::{NodeStateSnapshot, StateMsg, StateView};
use crate::store::Store;
use crate::supervisor::{AgentsSlot, RootMsg};
use crate::ApiError;
use crate::{AwaitOutcome, BudgetView, GlobalConfig, Profile};
use workshop_board::durable::DurableBoard;
use workshop_board::BoardClient;

/// The largest prompt `ask`/`cast` take. Agent messages may cross nodes, and one ractor_cluster
/// frame over 16 MiB closes the whole node session, so prompts stay well under it.
pub const MAX_PROMPT_BYTES: usize = 4 * 1024 * 1024;

fn check_prompt(name: &AgentName, prompt: &str) -> Result<(), ApiError> {
    if prompt.len() > MAX_PROMPT_BYTES {
        return Err(ApiError::Node(format!(
            "prompt for {name} is {} bytes; the limit is {MAX_PROMPT_BYTES} bytes: write large inputs to a file in the agent's working directory and refer to it",
            prompt.len()
        )));
    }
    Ok(())
}

/// How long `dismiss` waits for a graceful stop before killing the agent.
pub const DISMISS_GRACE: Duration = Duration::from_secs(3);

/// The bound on every call to an actor of the node that it answers from its own state (agent
/// `info`/`history`/`poll`/`cast`/`reset`, the event log, workers' and schedules' info). Past
/// it the caller gets `ApiError::Timeout`. Shorter than a client's call timeout, so a remote
/// caller hears which actor did not answer. Calls that wait for turns are not bounded by it.
pub const ACTOR_CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a call to an agent may take.
#[derive(Clone, Copy)]
enum Wait {
    /// The agent answers from its state at once: bounded by [`ACTOR_CALL_TIMEOUT`]; past it,
    /// `ApiError::Timeout` naming the operation.
    Short(&'static str),
    /// Waits for turns: the caller's own timeout (`AwaitTimeout` past it), or none.
    Turn(Option<Duration>),
}

/// Call a node actor that answers from its own state, bounded by [`ACTOR_CALL_TIMEOUT`].
pub(crate) async fn call_actor<M: ractor::Message, R: Send + 'static>(
    actor: &ActorRef<M>,
    what: &str,
    msg: impl FnOnce(RpcReplyPort<R>) -> M,
) -> Result<R, ApiError> {
    match actor.call(msg, Some(ACTOR_CALL_TIMEOUT)).await {
        Ok(ractor::rpc::CallResult::Success(r)) => Ok(r),
        Ok(ractor::rpc::CallResult::Timeout) => Err(ApiError::Timeout {
            what: what.to_string(),
            ms: ACTOR_CALL_TIMEOUT.as_millis() as u64,
        }),
        Ok(ractor::rpc::CallResult::SenderError) | Err(_) => Err(ApiError::Node(format!(
            "{what} stopped before replying; try again"
        ))),
    }
}

#[derive(Clone)]
pub struct Workshop {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) root: ActorRef<RootMsg>,
    pub(crate) directory: Arc<Directory>,
    pub(crate) events: Arc<EventLogHandle>,
    pub(crate) backends: Backends,
    /// The single writer of the configuration, profiles, budget limits and workflows
    /// (`state.rs`); every change to them is a message to it.
    pub(crate) state: ActorRef<StateMsg>,
    /// The state actor's latest snapshot, which every reader takes (no locks held).
    pub(crate) view: StateView,
    pub(crate) incarnations: AtomicU64,
    pub(crate) db: Option<Arc<NodeDb>>,
    /// Budgets, checked by each agent as it admits a prompt (shared with their hooks).
    pub(crate) admission: Arc<crate::admission::Admission>,
    pub(crate) store: Store,
    /// The board itself: only on the board node (its board actor, lease sweeper and shutdown
    /// use it). Every board operation goes through `board_link`.
    pub(crate) board: Option<DurableBoard>,
    /// Where the cluster's board is reached (see `board_link.rs`).
    pub(crate) board_link: BoardLink,
    pub(crate) agents_slot: AgentsSlot,
    /// Supervises workers and schedules (see `background.rs`).
    pub(crate) background: RwLock<Option<ractor::ActorCell>>,
    /// Creation, replacement and dismissal of one name are serialized (see `names.rs`).
    pub(crate) names: NameLocks,
}

/// Record where an agent runs as absolute paths, resolved against this process's current
/// directory now, at creation: its `working_dir` (none given: the current directory itself) and
/// its `script_file` (read by this process). A restored agent then runs where it was created,
/// whatever the directory of the process that restores it. The spec is built on the node, so
/// an agent created through a remote `Client` gets the node process's directory, not the
/// client's: a client that means its own directory passes `working_dir`.
pub(crate) fn record_paths(options: &mut AgentOptions) -> Result<(), ApiError> {
    let absolute = |what: &str, path: Option<&str>| -> Result<String, ApiError> {
        let resolved = match path {
            Some(p) => std::path::absolute(p),
            None => std::env::current_dir(),
        }
        .map_err(|e| {
            ApiError::Node(format!(
                "cannot resolve the agent's {what} {}: {e}; pass an absolute path",
                path.unwrap_or("(the node's current directory)")
            ))
        })?;
        resolved.into_os_string().into_string().map_err(|p| {
            ApiError::Node(format!(
                "the agent's {what} {} is not valid UTF-8; pass a working_dir that is",
                std::path::Path::new(&p).display()
            ))
        })
    };
    options.working_dir = Some(absolute("working_dir", options.working_dir.as_deref())?);
    if let Some(file) = options.script_file.as_deref() {
        options.script_file = Some(absolute("script_file", Some(file))?);
    }
    Ok(())
}

pub(crate) fn parse_name(name: &str) -> Result<AgentName, ApiError> {
    Ok(AgentName::new(name)?)
}

fn unreachable_err<T>(agent: &AgentName, e: MessagingErr<T>) -> ApiError {
    ApiError::Unreachable {
        agent: agent.clone(),
        why: e.to_string(),
    }
}

impl Workshop {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        root: ActorRef<RootMsg>,
        state: ActorRef<StateMsg>,
        view: StateView,
        directory: Arc<Directory>,
        events: Arc<EventLogHandle>,
        backends: Backends,
        db: Option<Arc<NodeDb>>,
        board: Option<DurableBoard>,
        board_link: BoardLink,
        agents_slot: AgentsSlot,
    ) -> Self {
        let admission = Arc::new(crate::admission::Admission {
            state: view.clone(),
            directory: directory.clone(),
            events: events.clone(),
            cluster: Arc::default(),
        });
        Self {
            inner: Arc::new(Inner {
                root,
                directory,
                events,
                backends,
                state,
                view,
                incarnations: AtomicU64::new(0),
                store: Store::new(db.clone()),
                db,
                admission,
                board,
                board_link,
                agents_slot,
                background: RwLock::new(None),
                names: NameLocks::default(),
            }),
        }
    }

    /// The board this node holds (the board node only): for its board actor, lease sweeper
    /// and shutdown. Board operations go through [`Workshop::board_client`].
    pub fn local_board(&self) -> Option<&DurableBoard> {
        self.inner.board.as_ref()
    }

    /// Where this node reaches the cluster's board: set it when the board becomes reachable,
    /// clear it when it is lost.
    pub fn board_link(&self) -> &BoardLink {
        &self.inner.board_link
    }

    /// The client every board operation of this node goes through, or
    /// [`ApiError::NoNode`] naming the board node while it is out of reach.
    pub fn board_client(&self) -> Result<BoardClient, ApiError> {
        self.inner.board_link.client()
    }

    /// The node's clock, read now (ms since the Unix epoch).
    pub fn now_ms(&self) -> u64 {
        (self.inner.events.clock())()
    }

    pub(crate) fn event_log(&self) -> Arc<EventLogHandle> {
        self.inner.events.clone()
    }

    pub(crate) fn db(&self) -> Option<Arc<NodeDb>> {
        self.inner.db.clone()
    }

    /// The node's configuration state as last published by its writer (`state.rs`).
    pub(crate) fn snapshot(&self) -> Arc<NodeStateSnapshot> {
        self.inner.view.current()
    }

    /// Change the node's configuration state: a message to its single writer, answered once
    /// the change is persisted and published.
    pub(crate) async fn write_state<R: Send + 'static>(
        &self,
        msg: impl FnOnce(RpcReplyPort<R>) -> StateMsg,
    ) -> Result<R, ApiError> {
        call_actor(&self.inner.state, "the node state", msg).await
    }

    pub(crate) fn publish(&self, topic: Topic, kind: &str, subject: Option<&str>, line: String) {
        self.inner.events.publish(topic, kind, subject, line);
    }

    // ---------------------------------------------------------------- configuration

    /// Merge new global defaults (incrementally, as AgentWorkshop's `configure`).
    /// Configuration and profiles survive a killed process (sled flush; not fdatasync'ed).
    pub async fn configure(
        &self,
        context: Option<String>,
        options: AgentOptions,
        max_cost_usd: Option<f64>,
    ) -> Result<(), ApiError> {
        options.validate()?;
        if let Some(v) = max_cost_usd {
            workshop_types::numbers::amount("max_cost_usd", v)?;
        }
        self.write_state(|reply| StateMsg::Configure {
            context,
            options,
            max_cost_usd,
            reply,
        })
        .await?
    }

    /// The global configuration as shown: `env` keys without their values.
    pub fn config(&self) -> GlobalConfig {
        let mut c = self.snapshot().config.clone();
        c.defaults = c.defaults.env_hidden();
        c
    }

    pub async fn profile(
        &self,
        name: &str,
        role: Option<String>,
        options: AgentOptions,
    ) -> Result<(), ApiError> {
        let name = parse_name(name)?.to_string();
        options.validate()?;
        let profile = Profile {
            name,
            role,
            options,
        };
        self.write_state(|reply| StateMsg::Profile { profile, reply })
            .await?
    }

    /// The profiles as shown: `env` keys without their values.
    pub fn profiles(&self) -> Vec<Profile> {
        self.snapshot()
            .profiles
            .values()
            .map(|p| Profile {
                options: p.options.env_hidden(),
                ..p.clone()
            })
            .collect()
    }

    /// A profile by name (a leading `:` is allowed).
    pub(crate) fn profile_named(&self, profile: &str) -> Result<Profile, ApiError> {
        self.snapshot()
            .profiles
            .get(profile.trim_start_matches(':'))
            .cloned()
            .ok_or_else(|| ApiError::UnknownProfile(profile.to_string()))
    }

    // ---------------------------------------------------------------- agents

    /// Start (or replace) a named agent with the default session behaviour.
    ///
    /// A setup file declares its agents on every start; on a durable node an agent restored from
    /// the registry with exactly the same configuration is kept (with its session), so re-running
    /// the setup does not throw conversations away. Any difference replaces it, as always.
    pub async fn agent(
        &self,
        name: &str,
        role: Option<String>,
        options: AgentOptions,
    ) -> Result<AgentName, ApiError> {
        let spec = self.build_spec(name, role.clone(), &options)?;
        let held = self.inner.names.lock(&spec.name).await;
        let name = spec.name.clone();
        let restored = self
            .write_state(|reply| StateMsg::TakeRestored { name, reply })
            .await?;
        if restored {
            if let Some(existing) = self.inner.directory.spec(&spec.name) {
                let same = existing.role == spec.role
                    && existing.system_prompt == spec.system_prompt
                    && existing.options == spec.options;
                let live = matches!(
                    self.inner.directory.actor(&spec.name),
                    Some((_, s)) if s != AgentStatus::Crashed
                );
                if same && live {
                    self.publish(
                        Topic::Agent,
                        "kept",
                        Some(spec.name.as_str()),
                        format!(
                            "[agent] {} kept (restored with the same configuration)",
                            spec.name
                        ),
                    );
                    return Ok(spec.name);
                }
            }
        }
        self.spawn(&held, spec, Box::new(SessionBehaviour), None)
            .await
    }

    fn build_spec(
        &self,
        name: &str,
        role: Option<String>,
        options: &AgentOptions,
    ) -> Result<AgentSpec, ApiError> {
        let name = parse_name(name)?;
        options.validate()?;
        let snapshot = self.snapshot();
        let config = &snapshot.config;
        let mut effective = config.defaults.overlay(options);
        record_paths(&mut effective)?;
        let system_prompt = effective.system_prompt.clone().or_else(|| {
            AgentSpec::compose_system_prompt(config.context.as_deref(), role.as_deref())
        });
        Ok(AgentSpec {
            name,
            role,
            system_prompt,
            options: effective,
            resume_session: None,
        })
    }

    /// Start (or replace) a named agent with a custom behaviour.
    pub async fn agent_with(
        &self,
        name: &str,
        role: Option<String>,
        options: AgentOptions,
        behaviour: Box<dyn Behaviour>,
    ) -> Result<AgentName, ApiError> {
        let spec = self.build_spec(name, role, &options)?;
        let held = self.inner.names.lock(&spec.name).await;
        let name = spec.name.clone();
        self.write_state(|reply| StateMsg::TakeRestored { name, reply })
            .await?;
        self.spawn(&held, spec, behaviour, None).await
    }

    /// Start the agent of `spec`, replacing (and stopping) the one of that name. The caller
    /// holds the name's lock, so no other creation or dismissal of it interleaves.
    async fn spawn(
        &self,
        held: &NameGuard<'_>,
        spec: AgentSpec,
        behaviour: Box<dyn Behaviour>,
        restored: Option<Restored>,
    ) -> Result<AgentName, ApiError> {
        debug_assert_eq!(held.name(), &spec.name);
        let name = spec.name.clone();
        let backend_name = spec.options.backend_name().to_string();
        let backend = self.inner.backends.get(&backend_name).ok_or_else(|| {
            ApiError::Node(format!(
                "backend {backend_name:?} is not available on this node (have: {})",
                self.inner.backends.names().join(", ")
            ))
        })?;
        let replaced = self.inner.directory.actor(&name).is_some();
        if replaced {
            // The old record stays until the new one is written over it (one write, below):
            // a kill before that write restores the old agent (its turn in flight reported
            // interrupted), a kill after it the new one; never neither.
            self.retire(held, false).await;
        }
        let started = self
            .start_agent(spec, backend, behaviour, restored, replaced)
            .await;
        if started.is_err() && replaced {
            // The old agent is gone and no new one took its place: as a dismissal.
            self.delete_record(&name).await;
        }
        started
    }

    /// The second half of `spawn`: the agent's actor, its record written (over the record of
    /// the agent it replaces, if any) and synced, its row in the directory, the event.
    async fn start_agent(
        &self,
        spec: AgentSpec,
        backend: Arc<dyn workshop_agent::backend::Backend>,
        behaviour: Box<dyn Behaviour>,
        restored: Option<Restored>,
        replaced: bool,
    ) -> Result<AgentName, ApiError> {
        let name = spec.name.clone();
        let sup = self
            .inner
            .agents_slot
            .read()
            .clone()
            .ok_or_else(|| ApiError::Node("the agent supervisor is not running".into()))?;
        let incarnation = self.inner.incarnations.fetch_add(1, Ordering::Relaxed) + 1;
        let hooks = Arc::new(crate::admission::AdmittingHooks {
            node: NodeHooks {
                directory: self.inner.directory.clone(),
                events: self.inner.events.clone(),
                incarnation,
                db: self.inner.db.clone(),
            },
            admission: self.inner.admission.clone(),
        });
        let spec = Arc::new(spec);
        let (actor, _) = Actor::spawn_linked(
            None,
            AgentActor,
            AgentArgs {
                spec: spec.clone(),
                backend,
                behaviour,
                hooks,
                restored: restored.clone(),
            },
            sup,
        )
        .await
        .map_err(|e| {
            ApiError::Node(format!(
                "agent {name} did not start: {}",
                crate::supervisor::why_not_started(&e)
            ))
        })?;
        let restored = restored.unwrap_or_default();
        let row = AgentRow {
            name: name.clone(),
            status: AgentStatus::Idle,
            task: None,
            queued: 0,
            cost_usd: restored.cost_usd,
            turns: restored.turns,
            session_id: spec.resume_session.clone(),
        };
        if let Some(db) = &self.inner.db {
            db.put_agent(&AgentRecord {
                spec: (*spec).clone(),
                session_id: row.session_id.clone(),
                cost_usd: row.cost_usd,
                turns: row.turns,
                task: None,
            })?;
            db.sync().await?;
        }
        let limit = spec.options.max_cost_usd;
        let agent = name.clone();
        if let Err(e) = self
            .write_state(|reply| StateMsg::SetAgentBudget {
                name: agent,
                limit,
                reply,
            })
            .await
        {
            tracing::error!(agent = %name, error = %e, "the agent's budget limit was not set");
        }
        let displaced = self.inner.directory.insert(Entry {
            actor,
            incarnation,
            spec,
            row,
        });
        // Under the name's lock nothing else inserts this name; should anything ever do, its
        // actor is stopped here instead of living on outside the directory.
        if let Some(old) = displaced {
            tracing::error!(agent = %name, "an agent actor was displaced without being dismissed");
            Self::stop_actor(old.actor, "the agent was replaced").await;
        }
        let verb = if replaced { "replaced" } else { "created" };
        self.publish(
            Topic::Agent,
            verb,
            Some(name.as_str()),
            format!("[agent] {name} {verb}"),
        );
        Ok(name)
    }

    /// Bring back every agent of the registry after a restart: same spec, the backend session
    /// resumed, cost and turns kept; a turn that was in flight is reported interrupted.
    pub(crate) async fn restore(&self) -> Result<usize, ApiError> {
        let Some(db) = self.inner.db.clone() else {
            return Ok(0);
        };
        let (records, bad) = db.agents()?;
        for b in bad {
            self.publish(
                Topic::Node,
                "restore_failed",
                None,
                format!("[error] agent record not restored: {b}"),
            );
        }
        let n = records.len();
        let problems = self
            .write_state(|reply| StateMsg::Restore { reply })
            .await??;
        for p in problems {
            self.publish(Topic::Node, "restore_failed", None, format!("[error] {p}"));
        }
        let schedules = db.schedules()?;
        for rec in records {
            let mut spec = rec.spec;
            spec.resume_session = rec.session_id;
            if spec.options.working_dir.is_none() {
                // Recorded before agents kept their directory: this process's directory is
                // where it ran until now; record it (spawn writes the record).
                if let Err(e) = record_paths(&mut spec.options) {
                    tracing::warn!(agent = %spec.name, error = %e, "working directory not recorded");
                }
            }
            let name = spec.name.clone();
            let restored = Restored {
                cost_usd: rec.cost_usd,
                turns: rec.turns,
                interrupted_task: rec.task,
            };
            let held = self.inner.names.lock(&name).await;
            let spawned = self
                .spawn(&held, spec, Box::new(SessionBehaviour), Some(restored))
                .await;
            drop(held);
            if spawned.is_ok() {
                let n = name.clone();
                self.write_state(|reply| StateMsg::MarkRestored { name: n, reply })
                    .await?;
            }
            if let Err(e) = spawned {
                self.publish(
                    Topic::Node,
                    "restore_failed",
                    Some(name.as_str()),
                    format!("[error] {name} not restored: {e}"),
                );
            }
        }
        let (workers, bad) = db.workers()?;
        for b in bad {
            self.publish(
                Topic::Node,
                "restore_failed",
                None,
                format!("[error] board worker not restored: {b}"),
            );
        }
        for spec in workers {
            let name = spec.name.clone();
            if let Err(e) = self.start_worker(spec).await {
                self.publish(
                    Topic::Node,
                    "restore_failed",
                    Some(name.as_str()),
                    format!("[error] board worker {name} not restored: {e}"),
                );
            }
        }
        for spec in schedules {
            let name = spec.agent.clone();
            if let Err(e) = self.start_schedule(spec).await {
                self.publish(
                    Topic::Node,
                    "restore_failed",
                    Some(name.as_str()),
                    format!("[error] schedule of {name} not restored: {e}"),
                );
            }
        }
        Ok(n)
    }

    /// Create an agent from a profile; `overrides` win over the profile's options.
    pub async fn from_profile(
        &self,
        profile: &str,
        name: &str,
        overrides: AgentOptions,
    ) -> Result<AgentName, ApiError> {
        let p = self.profile_named(profile)?;
        self.agent(name, p.role, p.options.overlay(&overrides))
            .await
    }

    pub fn agents(&self) -> Vec<AgentName> {
        self.inner.directory.names()
    }

    /// How many agent actors the agent supervisor holds right now (stopped ones are unlinked
    /// as they exit). Equal to the directory's size unless something leaked an actor.
    pub fn agent_actors(&self) -> usize {
        self.inner
            .agents_slot
            .read()
            .as_ref()
            .map(|sup| sup.get_children().len())
            .unwrap_or(0)
    }

    /// No agent `name`: say so, with the closest name this node has, if one is close.
    pub(crate) fn unknown_agent(&self, name: &str) -> ApiError {
        let names: Vec<AgentName> = self
            .inner
            .directory
            .rows()
            .into_iter()
            .map(|r| r.name)
            .collect();
        match workshop_types::closest(name, names.iter().map(|n| n.as_str())) {
            Some(like) => ApiError::UnknownAgentLike {
                name: name.to_string(),
                like: like.to_string(),
            },
            None => ApiError::UnknownAgent(name.to_string()),
        }
    }

    pub(crate) fn live(&self, name: &str) -> Result<(AgentName, ActorRef<AgentMsg>), ApiError> {
        let name = parse_name(name)?;
        match self.inner.directory.actor(&name) {
            None => Err(self.unknown_agent(name.as_str())),
            Some((_, AgentStatus::Crashed)) => Err(ApiError::Crashed(name)),
            Some((a, _)) => Ok((name, a)),
        }
    }

    async fn call<R: Send + 'static>(
        &self,
        name: &AgentName,
        actor: &ActorRef<AgentMsg>,
        msg: impl FnOnce(RpcReplyPort<R>) -> AgentMsg,
        wait: Wait,
    ) -> Result<R, ApiError> {
        let timeout = match wait {
            Wait::Short(_) => Some(ACTOR_CALL_TIMEOUT),
            Wait::Turn(t) => t,
        };
        match actor.call(msg, timeout).await {
            Ok(ractor::rpc::CallResult::Success(r)) => Ok(r),
            Ok(ractor::rpc::CallResult::Timeout) => Err(match wait {
                Wait::Short(what) => ApiError::Timeout {
                    what: format!("{what} of agent {name}"),
                    ms: ACTOR_CALL_TIMEOUT.as_millis() as u64,
                },
                Wait::Turn(_) => ApiError::AwaitTimeout {
                    agent: name.clone(),
                    ms: timeout.map(|t| t.as_millis() as u64).unwrap_or(0),
                },
            }),
            Ok(ractor::rpc::CallResult::SenderError) => Err(self.gone(name)),
            Err(e) => Err(unreachable_err(name, e)),
        }
    }

    /// The agent stopped answering: tell whether it crashed or was dismissed meanwhile.
    fn gone(&self, name: &AgentName) -> ApiError {
        match self.inner.directory.actor(name) {
            Some((_, AgentStatus::Crashed)) => ApiError::Crashed(name.clone()),
            Some(_) => ApiError::Unreachable {
                agent: name.clone(),
                why: "the agent stopped before replying".into(),
            },
            None => self.unknown_agent(name.as_str()),
        }
    }

    /// The global budget: limit and spent (the whole cluster's spend).
    pub fn budget(&self) -> BudgetView {
        self.snapshot()
            .budgets
            .global(self.inner.directory.total_cost() + self.inner.admission.cluster.others())
    }

    /// The cluster's spend as this node knows it (see `admission.rs`).
    pub(crate) fn cluster_spend(&self) -> &Arc<crate::admission::ClusterSpend> {
        &self.inner.admission.cluster
    }

    /// One agent's budget: limit and spent.
    pub fn agent_budget(&self, name: &str) -> Result<BudgetView, ApiError> {
        let name = parse_name(name)?;
        let cost = self.cost(name.as_str())?;
        Ok(self.snapshot().budgets.agent(&name, cost))
    }

    /// Clear every limit; spending counts from zero again.
    pub async fn reset_budget(&self) -> Result<(), ApiError> {
        let costs = self.costs();
        let total_cost = self.total_cost();
        self.write_state(|reply| StateMsg::ResetBudget {
            costs,
            total_cost,
            reply,
        })
        .await?;
        self.publish(Topic::Budget, "reset", None, "[budget] reset".into());
        Ok(())
    }

    /// For in-process callers that talk to an agent directly (tests, benchmarks): its actor.
    /// Whatever is sent to it still goes through the agent's own admission (budgets, queue).
    pub fn agent_actor(&self, name: &str) -> Result<ActorRef<AgentMsg>, ApiError> {
        Ok(self.live(name)?.1)
    }

    /// What every send does first: the agent must be live and the prompt within limits. The
    /// budgets are checked by the agent itself as it admits the prompt (see `admission.rs`).
    fn prepare(
        &self,
        name: &str,
        prompt: &str,
        origin: &str,
    ) -> Result<(AgentName, ActorRef<AgentMsg>, Prompt), ApiError> {
        let (name, actor) = self.live(name)?;
        check_prompt(&name, prompt)?;
        let p = Prompt {
            text: prompt.to_string(),
            origin: origin.to_string(),
        };
        Ok((name, actor, p))
    }

    /// Send a prompt and wait for the turn's result.
    pub async fn ask(&self, name: &str, prompt: &str) -> Result<TurnResult, ApiError> {
        self.ask_from(name, prompt, "ask").await
    }

    pub async fn ask_from(
        &self,
        name: &str,
        prompt: &str,
        origin: &str,
    ) -> Result<TurnResult, ApiError> {
        let (name, actor, p) = self.prepare(name, prompt, origin)?;
        // Unbounded here on purpose: the reply comes when the turn ends, and the turn may be
        // queued behind others. Each turn is bounded by the agent's watchdog (`timeout_ms`),
        // the queue by its depth, and a client's call by its own wait timeout.
        match self
            .call(&name, &actor, |r| AgentMsg::Ask(p, r), Wait::Turn(None))
            .await?
        {
            AskReply::Done(r) => Ok(r),
            AskReply::Failed(error) => Err(ApiError::Turn { agent: name, error }),
            AskReply::Refused(r) => Err(refusal(name, r)),
        }
    }

    /// Queue a prompt; returns a request ref at once.
    pub async fn cast(&self, name: &str, prompt: &str) -> Result<RequestRef, ApiError> {
        self.cast_from(name, prompt, "cast").await
    }

    pub async fn cast_from(
        &self,
        name: &str,
        prompt: &str,
        origin: &str,
    ) -> Result<RequestRef, ApiError> {
        let (name, actor, p) = self.prepare(name, prompt, origin)?;
        match self
            .call(&name, &actor, |r| AgentMsg::Cast(p, r), Wait::Short("cast"))
            .await?
        {
            CastReply::Queued(seq) => self
                .rows_durable()
                .await
                .map(|()| RequestRef { agent: name, seq }),
            CastReply::Refused(r) => Err(refusal(name, r)),
        }
    }

    pub async fn poll(&self, reference: &str) -> Result<PollState, ApiError> {
        let r = RequestRef::parse(reference).ok_or_else(|| ApiError::BadRef(reference.into()))?;
        let (name, actor) = self.live(r.agent.as_str())?;
        let PollReply(state) = self
            .call(
                &name,
                &actor,
                |p| AgentMsg::Poll(r.seq, p),
                Wait::Short("poll"),
            )
            .await?;
        Ok(state)
    }

    /// Wait until the agent has nothing in flight or queued (or is halted).
    pub async fn await_agent(
        &self,
        name: &str,
        timeout: Option<Duration>,
    ) -> Result<AwaitOutcome, ApiError> {
        let (name, actor) = self.live(name)?;
        let AwaitReply {
            was_idle,
            status,
            last,
        } = self
            // The caller's own timeout (`AwaitTimeout` past it), or none: awaiting an agent
            // waits for its turns, which the agent's watchdog bounds one by one.
            .call(&name, &actor, AgentMsg::Await, Wait::Turn(timeout))
            .await?;
        Ok(AwaitOutcome {
            agent: name,
            was_idle,
            status,
            last,
        })
    }

    /// Wait for every busy agent; results in name order.
    pub async fn await_all(
        &self,
        timeout: Option<Duration>,
    ) -> Vec<Result<AwaitOutcome, ApiError>> {
        let busy: Vec<AgentName> = self
            .inner
            .directory
            .rows()
            .into_iter()
            .filter(|r| r.status == AgentStatus::Working || r.queued > 0)
            .map(|r| r.name)
            .collect();
        // Every wait runs at once under its own timeout, so `await_all(t)` returns within `t`.
        let mut set = tokio::task::JoinSet::new();
        for (i, name) in busy.into_iter().enumerate() {
            let w = self.clone();
            set.spawn(async move { (i, w.await_agent(name.as_str(), timeout).await) });
        }
        let mut out: Vec<(usize, Result<AwaitOutcome, ApiError>)> = Vec::new();
        while let Some(joined) = set.join_next().await {
            match joined {
                Ok(r) => out.push(r),
                Err(e) => out.push((
                    usize::MAX,
                    Err(ApiError::Node(format!("await failed: {e}"))),
                )),
            }
        }
        out.sort_by_key(|(i, _)| *i);
        out.into_iter().map(|(_, r)| r).collect()
    }

    /// Wait for `from`, then send its last result to `to` (framed by `message`).
    pub async fn pipe(
        &self,
        from: &str,
        to: &str,
        message: Option<&str>,
    ) -> Result<AgentName, ApiError> {
        let done = self.await_agent(from, None).await?;
        let text = match done.last {
            Some(Ok(r)) => r.text,
            Some(Err(error)) => {
                return Err(ApiError::Turn {
                    agent: done.agent,
                    error,
                })
            }
            None => return Err(ApiError::NoResult(done.agent)),
        };
        let prompt = match message {
            Some(m) => format!("{m}\n\n{text}"),
            None => format!("Here is the output from the previous step:\n\n{text}"),
        };
        self.ask_from(to, &prompt, "pipe").await?;
        parse_name(to)
    }

    /// Cast the same message to each agent.
    pub async fn fan(&self, message: &str, agents: &[String]) -> Vec<Result<RequestRef, ApiError>> {
        let mut out = Vec::with_capacity(agents.len());
        for a in agents {
            out.push(self.cast(a, message).await);
        }
        out
    }

    pub fn interrupt(&self, name: &str) -> Result<(), ApiError> {
        self.tell(name, AgentMsg::Interrupt)
    }
    pub fn halt(&self, name: &str) -> Result<(), ApiError> {
        self.tell(name, AgentMsg::Halt)
    }
    pub fn resume(&self, name: &str) -> Result<(), ApiError> {
        self.tell(name, AgentMsg::Resume)
    }
    pub fn notify(&self, name: &str, event: &str) -> Result<(), ApiError> {
        self.tell(name, AgentMsg::Notify(event.to_string()))
    }

    fn tell(&self, name: &str, msg: AgentMsg) -> Result<(), ApiError> {
        let (name, actor) = self.live(name)?;
        actor.cast(msg).map_err(|e| unreachable_err(&name, e))
    }

    /// Fresh session, same config, zero cost. A crashed agent is started again.
    pub async fn reset(&self, name: &str) -> Result<(), ApiError> {
        let parsed = parse_name(name)?;
        if let Some((_, AgentStatus::Crashed)) = self.inner.directory.actor(&parsed) {
            let held = self.inner.names.lock(&parsed).await;
            // Checked again under the lock: a concurrent reset or agent() may have started it.
            if let Some((_, AgentStatus::Crashed)) = self.inner.directory.actor(&parsed) {
                let spec = self
                    .inner
                    .directory
                    .spec(&parsed)
                    .ok_or_else(|| self.unknown_agent(name))?;
                let mut spec = (*spec).clone();
                spec.resume_session = None;
                self.spawn(&held, spec, Box::new(SessionBehaviour), None)
                    .await?;
                return Ok(());
            }
        }
        let (name, actor) = self.live(name)?;
        self.call(&name, &actor, AgentMsg::Reset, Wait::Short("reset"))
            .await?;
        Ok(())
    }

    /// Remove an agent: graceful stop, then kill after 3 s. No-op if absent.
    pub async fn dismiss(&self, name: &str) -> Result<(), ApiError> {
        let name = parse_name(name)?;
        self.cancel(name.as_str()).await?;
        let n = name.clone();
        self.write_state(|reply| StateMsg::RemoveWorker {
            name: n,
            why: "dismissed",
            reply,
        })
        .await?;
        if let Some(db) = &self.inner.db {
            db.delete_worker(&name)?;
        }
        let held = self.inner.names.lock(&name).await;
        if self.dismiss_quiet(&held).await {
            self.publish(
                Topic::Agent,
                "dismissed",
                Some(name.as_str()),
                format!("[agent] {name} dismissed"),
            );
        }
        Ok(())
    }

    /// Stop every agent's session for a node shutdown; the registry keeps them for the next
    /// start (turns in flight are then reported interrupted).
    pub async fn stop_agents(&self) {
        self.stop_workers().await;
        let scheduled: Vec<AgentName> = self.snapshot().schedules.keys().cloned().collect();
        for name in scheduled {
            if let Err(e) = self.cancel_quiet(&name).await {
                tracing::error!(agent = %name, error = %e, "schedule not stopped");
            }
        }
        for name in self.inner.directory.names() {
            let _held = self.inner.names.lock(&name).await;
            if let Some(entry) = self.inner.directory.remove(&name) {
                Self::stop_actor(entry.actor, "the node is stopping").await;
            }
        }
        if let Some(db) = &self.inner.db {
            if let Err(e) = db.sync().await {
                tracing::error!(error = %e, "node database not synced at shutdown");
            }
        }
    }

    /// Stop an agent actor and wait until it has exited (so a replaced agent's backend is gone
    /// when its replacement is announced): graceful `Shutdown`, then kill after the grace.
    /// `why` is what a caller still waiting on one of its requests is told.
    async fn stop_actor(actor: ActorRef<AgentMsg>, why: &str) {
        let why = why.to_string();
        let graceful = actor
            .call(|reply| AgentMsg::Shutdown(why, reply), Some(DISMISS_GRACE))
            .await;
        let exited = matches!(graceful, Ok(ractor::rpc::CallResult::Success(_)))
            && actor.wait(Some(DISMISS_GRACE)).await.is_ok();
        if !exited && actor.get_status() != ractor::ActorStatus::Stopped {
            if let Err(e) = actor.kill_and_wait(Some(DISMISS_GRACE)).await {
                // Already gone (its mailbox closed) is fine; a timeout is not.
                if actor.get_status() != ractor::ActorStatus::Stopped {
                    tracing::error!(actor = %actor.get_id(), error = %e, "agent actor did not stop");
                }
            }
        }
    }

    /// Remove the agent of the held name from the directory and the registry, and stop it.
    async fn dismiss_quiet(&self, held: &NameGuard<'_>) -> bool {
        self.retire(held, true).await
    }

    /// Delete an agent's record and sync (errors are logged: the agent is gone either way).
    async fn delete_record(&self, name: &AgentName) {
        if let Some(db) = &self.inner.db {
            let synced = match db.delete_agent(name) {
                Ok(()) => db.sync().await,
                Err(e) => Err(e),
            };
            if let Err(e) = synced {
                tracing::error!(agent = %name, error = %e, "cannot remove agent from the registry");
            }
        }
    }

    /// Remove the agent of the held name from the directory (its late status rows are then
    /// ignored) and stop it; with `delete`, its record too. A replacement keeps the record for
    /// the new agent's record to overwrite.
    async fn retire(&self, held: &NameGuard<'_>, delete: bool) -> bool {
        let name = held.name();
        let Some(entry) = self.inner.directory.remove(name) else {
            return false;
        };
        if delete {
            self.delete_record(name).await;
        }
        let agent = name.clone();
        if let Err(e) = self
            .write_state(|reply| StateMsg::ForgetAgentBudget { name: agent, reply })
            .await
        {
            tracing::error!(agent = %name, error = %e, "the agent's budget limit was not removed");
        }
        let why = if delete {
            "the agent was dismissed"
        } else {
            "the agent was replaced"
        };
        Self::stop_actor(entry.actor, why).await;
        true
    }

    /// Dismiss every agent and clear the global configuration and profiles.
    pub async fn reset_all(&self) {
        if let Some(db) = &self.inner.db {
            if let Err(e) = db.clear_workers() {
                tracing::error!(error = %e, "the board workers' specs were not deleted");
            }
        }
        self.stop_workers().await;
        let scheduled: Vec<AgentName> = self.snapshot().schedules.keys().cloned().collect();
        for name in scheduled {
            let _ = self.cancel(name.as_str()).await;
        }
        for name in self.inner.directory.names() {
            let held = self.inner.names.lock(&name).await;
            self.dismiss_quiet(&held).await;
        }
        if let Err(e) = self.write_state(|reply| StateMsg::ResetAll { reply }).await {
            tracing::error!(error = %e, "configuration not cleared");
        }
        self.publish(Topic::Agent, "reset_all", None, "[agent] reset_all".into());
    }

    // ---------------------------------------------------------------- inspection

    pub fn status(&self) -> Vec<AgentRow> {
        self.inner.directory.rows()
    }

    pub async fn info(&self, name: &str) -> Result<AgentInfo, ApiError> {
        let (name, actor) = self.live(name)?;
        let InfoReply(info) = self
            .call(&name, &actor, AgentMsg::Info, Wait::Short("info"))
            .await?;
        Ok(info)
    }

    /// The last successful result, if any.
    pub async fn result(&self, name: &str) -> Result<Option<TurnResult>, ApiError> {
        Ok(self.info(name).await?.last_result)
    }

    pub async fn history(
        &self,
        name: &str,
        last: Option<usize>,
    ) -> Result<Vec<TurnResult>, ApiError> {
        let (name, actor) = self.live(name)?;
        let HistoryReply(mut turns) = self
            .call(&name, &actor, AgentMsg::History, Wait::Short("history"))
            .await?;
        if let Some(n) = last {
            let skip = turns.len().saturating_sub(n);
            turns.drain(..skip);
        }
        Ok(turns)
    }

    pub fn cost(&self, name: &str) -> Result<f64, ApiError> {
        let name = parse_name(name)?;
        self.inner
            .directory
            .row(&name)
            .map(|r| r.cost_usd)
            .ok_or_else(|| self.unknown_agent(name.as_str()))
    }

    pub fn costs(&self) -> Vec<(AgentName, f64)> {
        self.status()
            .into_iter()
            .map(|r| (r.name, r.cost_usd))
            .collect()
    }

    pub fn total_cost(&self) -> f64 {
        self.inner.directory.total_cost()
    }

    // ---------------------------------------------------------------- shared store

    /// Put a JSON value under `key` (durable on a node with a data dir).
    pub async fn put(&self, key: &str, value: serde_json::Value) -> Result<(), ApiError> {
        self.inner.store.put(key, &value).await?;
        self.publish(Topic::Store, "put", Some(key), format!("[store] put {key}"));
        Ok(())
    }

    pub fn get(&self, key: &str) -> Result<Option<serde_json::Value>, ApiError> {
        self.inner.store.get(key)
    }

    pub fn store_all(&self) -> Result<Vec<(String, serde_json::Value)>, ApiError> {
        self.inner.store.all()
    }

    pub fn store_keys(&self) -> Result<Vec<String>, ApiError> {
        Ok(self.store_all()?.into_iter().map(|(k, _)| k).collect())
    }

    pub async fn store_delete(&self, key: &str) -> Result<(), ApiError> {
        self.inner.store.delete(key).await?;
        self.publish(
            Topic::Store,
            "delete",
            Some(key),
            format!("[store] delete {key}"),
        );
        Ok(())
    }

    // ---------------------------------------------------------------- events

    /// The last `last` events (of `topic`, if given), oldest first.
    pub async fn events(&self, last: usize, topic: Option<Topic>) -> Result<Vec<Event>, ApiError> {
        let Some(log) = self.inner.events.actor() else {
            return Err(ApiError::Node(
                "the event log is restarting; try again".into(),
            ));
        };
        call_actor(&log, "the event log", |reply| EventLogMsg::Recent {
            last,
            topic,
            reply,
        })
        .await
    }

    /// Events after `after` (of `topic`, if given); waits up to `wait` for the first one.
    pub async fn events_after(
        &self,
        after: u64,
        topic: Option<Topic>,
        wait: Duration,
    ) -> Result<Vec<Event>, ApiError> {
        let wanted = |e: &Event| e.seq > after && topic.is_none_or(|t| t == e.topic);
        // Subscribe first, so nothing published between the read and the wait is missed.
        let mut rx = self.watch();
        let have = self.ring_after(after, topic).await?;
        if !have.is_empty() || wait.is_zero() {
            return Ok(have);
        }
        let first = tokio::time::timeout(wait, async {
            loop {
                match rx.recv().await {
                    Ok(e) if wanted(&e) => return Some(e),
                    Ok(_) => {}
                    // Missed some (or the log is gone): the ring says what there is.
                    Err(_) => return None,
                }
            }
        })
        .await;
        match first {
            Ok(Some(e)) => {
                let mut out = vec![e];
                out.extend(std::iter::from_fn(|| rx.try_recv().ok()).filter(|e| wanted(e)));
                Ok(out)
            }
            Ok(None) => self.ring_after(after, topic).await,
            Err(_) => Ok(Vec::new()),
        }
    }

    /// The ring's events after `after` (of `topic`, if given).
    async fn ring_after(&self, after: u64, topic: Option<Topic>) -> Result<Vec<Event>, ApiError> {
        let mut events = self.events(crate::event_log::RING, topic).await?;
        events.retain(|e| e.seq > after);
        Ok(events)
    }

    pub fn watch(&self) -> broadcast::Receiver<Event> {
        self.inner.events.subscribe()
    }

    pub fn clear_events(&self) {
        if let Some(log) = self.inner.events.actor() {
            let _ = log.cast(EventLogMsg::Clear);
        }
    }

    /// Publish an event about a subject (used by schedules and workers).
    pub fn emit_about(&self, topic: Topic, kind: &str, subject: &str, line: String) {
        self.publish(topic, kind, Some(subject), line);
    }

    /// Publish a custom event (console `emit`).
    pub fn emit(&self, topic: Topic, line: String) {
        self.publish(topic, "custom", None, line);
    }
}

fn refusal(agent: AgentName, r: Refusal) -> ApiError {
    match r {
        Refusal::QueueFull(depth) => ApiError::QueueFull { agent, depth },
        Refusal::Halted => ApiError::Halted(agent),
        Refusal::Budget(why) => ApiError::BudgetExceeded(why),
    }
}

#[cfg(test)]
mod replace_tests {
    use super::*;
    use workshop_types::{ScriptStep, TurnError};

    fn script(step: ScriptStep) -> AgentOptions {
        AgentOptions {
            script: Some(vec![step]),
            ..Default::default()
        }
    }

    /// Replacing an agent on a durable node: a kill between any two of the replacement's
    /// writes to the registry (replayed from the journal of the agents tree) leaves the old
    /// agent, with its turn in flight (reported interrupted on restore), or the new one; the
    /// caller waiting on the old agent's turn hears it was cancelled.
    #[tokio::test]
    async fn a_replacement_is_one_write_over_the_old_record() {
        let data = tempfile::tempdir().expect("data dir");
        let node = crate::Node::open(data.path()).await.expect("node");
        let w = node.workshop.clone();
        let name = AgentName::new("x").expect("name");
        let hang = ScriptStep {
            hang: true,
            ..Default::default()
        };
        w.agent("x", None, script(hang)).await.expect("agent");
        let asker = w.clone();
        let ask = tokio::spawn(async move { asker.ask("x", "long job").await });
        let db = w.db().expect("a durable node");
        tokio::time::timeout(Duration::from_secs(20), async {
            while db
                .agent(&name)
                .ok()
                .flatten()
                .and_then(|r| r.task)
                .is_none()
            {
                // Each pass asks the agent (a message round trip), not a timer.
                let _ = w.info("x").await;
            }
        })
        .await
        .expect("the turn started and its row was written");
        let old = db.agent(&name).expect("read").expect("old record");
        assert_eq!(old.task.as_deref(), Some("long job"));
        let _ = db.take_agent_writes();

        let new_step = ScriptStep {
            text: Some("new".into()),
            ..Default::default()
        };
        w.agent("x", Some("replacement".into()), script(new_step))
            .await
            .expect("replace");

        let asked = tokio::time::timeout(Duration::from_secs(20), ask)
            .await
            .expect("the old turn's caller was answered")
            .expect("the ask task");
        // Told what happened: replaced, not dismissed.
        match &asked {
            Err(ApiError::Turn {
                error: TurnError::Cancelled(why),
                ..
            }) => assert_eq!(why, "the agent was replaced"),
            other => panic!("{other:?}"),
        }

        let writes: Vec<Option<AgentRecord>> = db
            .take_agent_writes()
            .into_iter()
            .filter(|(n, _)| *n == name)
            .map(|(_, r)| r)
            .collect();
        assert!(!writes.is_empty(), "the replacement wrote nothing");
        let mut on_disk = Some(old.clone());
        for (i, write) in writes.iter().enumerate() {
            on_disk = write.clone();
            let rec = on_disk.as_ref().unwrap_or_else(|| {
                panic!("a kill after write {i} of {writes:?} leaves no agent x")
            });
            assert!(
                *rec == old || rec.spec.role.as_deref() == Some("replacement"),
                "write {i} is neither the old nor the new agent: {rec:?}"
            );
        }
        let last = on_disk.expect("the new record");
        assert_eq!(last.spec.role.as_deref(), Some("replacement"));
        assert_eq!(last.task, None);
        assert_eq!(
            db.agent(&name).expect("read").expect("record").spec.role,
            Some("replacement".into())
        );

        // A replacement that cannot start leaves no agent, live or recorded (as before: the
        // old one is gone), rather than a record that a restart would bring back.
        let broken = AgentOptions {
            script_file: Some(data.path().join("missing.toml").display().to_string()),
            ..Default::default()
        };
        w.agent("x", None, broken)
            .await
            .expect_err("a missing script file");
        assert!(w.agents().is_empty(), "{:?}", w.agents());
        assert_eq!(db.agent(&name).expect("read"), None);

        // The node's database must be free for the shutdown to finish.
        drop((db, w));
        node.shutdown().await;
    }
}
