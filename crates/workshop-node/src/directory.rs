//! The agent directory: name -> actor, and each agent's status row, kept current by the agents
//! themselves (through `NodeHooks`) so `status()` reads a table instead of calling every agent.
//! On a durable node a changed row is handed to the node database's background writer
//! (`persist/rows.rs`); the agent's thread does no disk work for it.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::RwLock;
use ractor::ActorRef;
use workshop_agent::AgentHooks;
use workshop_proto::agent::AgentMsg;
use workshop_types::{AgentName, AgentRow, AgentSpec, AgentStatus, Topic};

use crate::event_log::EventLogHandle;
use crate::persist::{NodeDb, PendingRow};

pub struct Entry {
    pub actor: ActorRef<AgentMsg>,
    /// Distinguishes this incarnation from an older one with the same name.
    pub incarnation: u64,
    pub spec: Arc<AgentSpec>,
    pub row: AgentRow,
}

#[derive(Default)]
pub struct Directory {
    entries: RwLock<HashMap<AgentName, Entry>>,
    /// Sum of the rows' costs, kept as rows change (budgets read it before every send, so it
    /// must not cost a walk over every agent). Only changed under the `entries` write lock.
    total_cost: parking_lot::Mutex<f64>,
    by_actor: RwLock<HashMap<ractor::ActorId, (AgentName, u64)>>,
}

impl Directory {
    pub fn insert(&self, entry: Entry) -> Option<Entry> {
        let name = entry.row.name.clone();
        self.by_actor
            .write()
            .insert(entry.actor.get_id(), (name.clone(), entry.incarnation));
        let mut entries = self.entries.write();
        let added = entry.row.cost_usd;
        let old = entries.insert(name, entry);
        let mut total = self.total_cost.lock();
        *total += added - old.as_ref().map(|o| o.row.cost_usd).unwrap_or(0.0);
        drop(total);
        drop(entries);
        if let Some(o) = &old {
            self.by_actor.write().remove(&o.actor.get_id());
        }
        old
    }

    pub fn remove(&self, name: &AgentName) -> Option<Entry> {
        let mut entries = self.entries.write();
        let old = entries.remove(name);
        if let Some(o) = &old {
            *self.total_cost.lock() -= o.row.cost_usd;
        }
        drop(entries);
        if let Some(o) = &old {
            self.by_actor.write().remove(&o.actor.get_id());
        }
        old
    }

    pub fn actor(&self, name: &AgentName) -> Option<(ActorRef<AgentMsg>, AgentStatus)> {
        self.entries
            .read()
            .get(name)
            .map(|e| (e.actor.clone(), e.row.status))
    }

    pub fn spec(&self, name: &AgentName) -> Option<Arc<AgentSpec>> {
        self.entries.read().get(name).map(|e| e.spec.clone())
    }

    pub fn row(&self, name: &AgentName) -> Option<AgentRow> {
        self.entries.read().get(name).map(|e| e.row.clone())
    }

    pub fn rows(&self) -> Vec<AgentRow> {
        let mut rows: Vec<AgentRow> = self
            .entries
            .read()
            .values()
            .map(|e| e.row.clone())
            .collect();
        rows.sort_by(|a, b| a.name.cmp(&b.name));
        rows
    }

    pub fn names(&self) -> Vec<AgentName> {
        let mut names: Vec<AgentName> = self.entries.read().keys().cloned().collect();
        names.sort();
        names
    }

    pub fn len(&self) -> usize {
        self.entries.read().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Replace the row of the current incarnation. `persist` runs under the directory's write
    /// lock, with the spec, the old row and the new one: a dismissal removes the entry under the
    /// same lock before it deletes the record, so a row persisted here cannot outlive it.
    /// Returns `persist`'s result when the row was current.
    fn update_with<R>(
        &self,
        incarnation: u64,
        row: AgentRow,
        persist: impl FnOnce(&Arc<AgentSpec>, &AgentRow, &AgentRow) -> R,
    ) -> Option<R> {
        let mut entries = self.entries.write();
        let e = entries.get_mut(&row.name)?;
        if e.incarnation == incarnation && e.row.status != AgentStatus::Crashed {
            let out = persist(&e.spec, &e.row, &row);
            *self.total_cost.lock() += row.cost_usd - e.row.cost_usd;
            e.row = row;
            return Some(out);
        }
        None
    }

    /// The agent actor died unexpectedly: mark it crashed. Returns its name if it was current.
    pub fn mark_crashed(&self, id: ractor::ActorId) -> Option<AgentName> {
        let (name, inc) = self.by_actor.read().get(&id).cloned()?;
        let mut entries = self.entries.write();
        let e = entries.get_mut(&name)?;
        if e.incarnation != inc {
            return None;
        }
        e.row.status = AgentStatus::Crashed;
        e.row.task = None;
        Some(name)
    }

    /// Total spend of the agents present.
    pub fn total_cost(&self) -> f64 {
        let total = *self.total_cost.lock();
        // Float sums drift by an ulp or two; never show a negative total.
        if total.abs() < 1e-12 {
            0.0
        } else {
            total
        }
    }
}

/// The hooks one agent incarnation reports through.
pub struct NodeHooks {
    pub directory: Arc<Directory>,
    pub events: Arc<EventLogHandle>,
    pub incarnation: u64,
    pub db: Option<Arc<NodeDb>>,
}

impl AgentHooks for NodeHooks {
    fn publish(&self, topic: Topic, kind: &str, subject: &str, line: String) {
        self.events.publish(topic, kind, Some(subject), line);
    }
    /// Updates the directory and hands the row to the node database's background writer: no
    /// disk work on the agent's thread, except for a row that carries a new session id (or a
    /// reset, which clears it), which is written and flushed before the agent replies (see
    /// `persist/rows.rs` for the durability contract).
    fn row_changed(&self, row: AgentRow) {
        let Some(db) = &self.db else {
            self.directory
                .update_with(self.incarnation, row, |_, _, _| ());
            return;
        };
        let flush = self
            .directory
            .update_with(self.incarnation, row, |spec, old, new| {
                let pending = PendingRow::new(spec.clone(), new);
                if new.session_id == old.session_id && new.turns >= old.turns {
                    db.queue_row(pending);
                    return None;
                }
                match db.put_row_now(&pending) {
                    Ok(()) => Some(new.name.clone()),
                    Err(e) => {
                        tracing::error!(agent = %new.name, error = %e, "cannot persist the agent's status row");
                        None
                    }
                }
            })
            .flatten();
        // Flushed outside the directory's lock, still before the agent replies.
        if let Some(name) = flush {
            if let Err(e) = db.flush_for_process_crash() {
                tracing::error!(agent = %name, error = %e, "cannot persist the agent's status row");
            }
        }
    }
}
