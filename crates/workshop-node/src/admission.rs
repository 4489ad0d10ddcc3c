//! What an agent asks its node before it admits a prompt: the budgets. The check runs in the
//! agent actor (through [`AgentHooks::admit`]), so every path that sends `Ask`/`Cast` — ask,
//! cast, pipe, fan, schedules, board workers, a caller holding the actor ref — is checked, not
//! only the ones that went through `Workshop`. The turn that crosses a limit completes; the next
//! prompt is refused.

use std::sync::Arc;

use workshop_agent::AgentHooks;
use workshop_types::{AgentName, AgentRow, Topic};

use crate::directory::{Directory, NodeHooks};
use crate::event_log::EventLogHandle;
use crate::state::StateView;

/// The node's admission rules, shared by every agent of the node.
pub(crate) struct Admission {
    /// The budget limits, as the node's state actor last published them.
    pub(crate) state: StateView,
    pub(crate) directory: Arc<Directory>,
    pub(crate) events: Arc<EventLogHandle>,
    /// What the other nodes of the cluster have spent (the board node's ledger).
    pub(crate) cluster: Arc<ClusterSpend>,
}

/// The cluster's spend as this node knows it: the ledger's total (pushed by the board node)
/// and this node's own part of it (what it last reported), so the other nodes' spend is the
/// difference. Zero on a node of its own.
#[derive(Default)]
pub struct ClusterSpend {
    figures: parking_lot::Mutex<(f64, f64)>,
}

impl ClusterSpend {
    /// The ledger's total, as the board node last told it.
    pub fn set_total(&self, total: f64) {
        self.figures.lock().1 = total;
    }
    /// This node reported `own` and the board answered the total.
    pub fn reported(&self, own: f64, total: f64) {
        *self.figures.lock() = (own, total);
    }
    /// What this node last reported.
    pub fn own_reported(&self) -> f64 {
        self.figures.lock().0
    }
    /// What the other nodes have spent.
    pub fn others(&self) -> f64 {
        let (own, total) = *self.figures.lock();
        (total - own).max(0.0)
    }
}

impl Admission {
    /// `Err(reason)` (and a `[budget]` event) when a budget of `name` or the node is spent.
    pub(crate) fn check(&self, name: &AgentName) -> Result<(), String> {
        let cost = self.directory.row(name).map(|r| r.cost_usd).unwrap_or(0.0);
        let total = self.directory.total_cost() + self.cluster.others();
        let verdict = self.state.current().budgets.check(name, cost, total);
        verdict.inspect_err(|why| {
            self.events.publish(
                Topic::Budget,
                "exceeded",
                Some(name.as_str()),
                format!("[budget] {why}"),
            );
        })
    }
}

/// An agent incarnation's hooks: its node's reporting hooks plus the node's admission.
pub(crate) struct AdmittingHooks {
    pub(crate) node: NodeHooks,
    pub(crate) admission: Arc<Admission>,
}

impl AgentHooks for AdmittingHooks {
    fn publish(&self, topic: Topic, kind: &str, subject: &str, line: String) {
        self.node.publish(topic, kind, subject, line);
    }
    fn row_changed(&self, row: AgentRow) {
        self.node.row_changed(row);
    }
    fn admit(&self, agent: &AgentName) -> Result<(), String> {
        self.admission.check(agent)
    }
}
