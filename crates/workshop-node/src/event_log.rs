//! The event log actor: a ring of the last 500 events, plus a live broadcast for `watch`.
//! Text deltas of running turns are broadcast live and kept in a separate small ring, so a
//! chatty stream cannot push the node's history out.

use std::collections::VecDeque;
use std::sync::Arc;

use parking_lot::RwLock;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use ractor_cluster_derive::RactorMessage;
use tokio::sync::broadcast;
use workshop_types::{Clock, Event, Topic};

use crate::persist::NodeDb;

pub const RING: usize = 500;
pub const DELTA_RING: usize = 200;

#[derive(RactorMessage)]
pub enum EventLogMsg {
    Publish {
        topic: Topic,
        kind: String,
        subject: Option<String>,
        line: String,
    },
    Recent {
        last: usize,
        topic: Option<Topic>,
        reply: RpcReplyPort<Vec<Event>>,
    },
    Clear,
}

pub struct EventLog;

pub struct EventLogState {
    db: Option<Arc<NodeDb>>,
    clock: Clock,
    seq: u64,
    ring: VecDeque<Event>,
    deltas: VecDeque<Event>,
    bus: broadcast::Sender<Event>,
}

impl Actor for EventLog {
    type Msg = EventLogMsg;
    type State = EventLogState;
    type Arguments = (broadcast::Sender<Event>, Option<Arc<NodeDb>>, Clock);

    async fn pre_start(
        &self,
        _me: ActorRef<EventLogMsg>,
        (bus, db, clock): (broadcast::Sender<Event>, Option<Arc<NodeDb>>, Clock),
    ) -> Result<EventLogState, ActorProcessingErr> {
        // A restarted node (or a restarted event log) continues from the persisted tail.
        let ring: VecDeque<Event> = db
            .as_ref()
            .map(|d| d.event_tail())
            .unwrap_or_default()
            .into();
        Ok(EventLogState {
            seq: ring.back().map(|e| e.seq).unwrap_or(0),
            ring,
            deltas: VecDeque::new(),
            bus,
            db,
            clock,
        })
    }

    async fn handle(
        &self,
        _me: ActorRef<EventLogMsg>,
        msg: EventLogMsg,
        st: &mut EventLogState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            EventLogMsg::Publish {
                topic,
                kind,
                subject,
                line,
            } => {
                st.seq += 1;
                let ev = Event {
                    seq: st.seq,
                    at_ms: (st.clock)(),
                    topic,
                    kind,
                    subject,
                    line,
                };
                let ring = if ev.topic == Topic::Turn {
                    (&mut st.deltas, DELTA_RING)
                } else {
                    (&mut st.ring, RING)
                };
                if let (Some(db), true) = (&st.db, ev.topic != Topic::Turn) {
                    if let Err(e) = db.append_event(&ev) {
                        tracing::warn!(error = %e, "event not persisted");
                    }
                }
                ring.0.push_back(ev.clone());
                while ring.0.len() > ring.1 {
                    ring.0.pop_front();
                }
                // No watcher is fine.
                let _ = st.bus.send(ev);
            }
            EventLogMsg::Recent { last, topic, reply } => {
                let src = if topic == Some(Topic::Turn) {
                    &st.deltas
                } else {
                    &st.ring
                };
                let mut out: Vec<Event> = src
                    .iter()
                    .rev()
                    .filter(|e| topic.is_none_or(|t| e.topic == t))
                    .take(last)
                    .cloned()
                    .collect();
                out.reverse();
                let _ = reply.send(out);
            }
            EventLogMsg::Clear => {
                if let Some(db) = &st.db {
                    let _ = db.clear_events();
                }
                st.ring.clear();
                st.deltas.clear();
            }
        }
        Ok(())
    }
}

/// A stable handle to the event log that survives the actor's restarts.
pub struct EventLogHandle {
    actor: RwLock<Option<ActorRef<EventLogMsg>>>,
    bus: broadcast::Sender<Event>,
    db: Option<Arc<NodeDb>>,
    clock: Clock,
}

impl EventLogHandle {
    pub fn new(db: Option<Arc<NodeDb>>, clock: Clock) -> Arc<Self> {
        let (bus, _) = broadcast::channel(4096);
        Arc::new(Self {
            actor: RwLock::new(None),
            bus,
            db,
            clock,
        })
    }
    /// The node's clock (events are stamped with it).
    pub fn clock(&self) -> Clock {
        self.clock.clone()
    }
    pub fn db(&self) -> Option<Arc<NodeDb>> {
        self.db.clone()
    }
    pub fn bus(&self) -> broadcast::Sender<Event> {
        self.bus.clone()
    }
    pub fn set_actor(&self, a: Option<ActorRef<EventLogMsg>>) {
        *self.actor.write() = a;
    }
    pub fn actor(&self) -> Option<ActorRef<EventLogMsg>> {
        self.actor.read().clone()
    }
    pub fn publish(&self, topic: Topic, kind: &str, subject: Option<&str>, line: String) {
        if let Some(a) = self.actor.read().as_ref() {
            let _ = a.cast(EventLogMsg::Publish {
                topic,
                kind: kind.to_string(),
                subject: subject.map(str::to_string),
                line,
            });
        }
    }
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.bus.subscribe()
    }
}
