//! The event log actor: a ring of the last 500 events, plus a live broadcast for `watch`.
//! Text deltas of running turns are broadcast live and kept in a separate small ring, so a
//! chatty stream cannot push the node's history out.

use std::collections::VecDeque;
use std::sync::Arc;

use parking_lot::RwLock;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use ractor_cluster_derive::RactorMessage;
use tokio::sync::broadcast;
use workshop_types::{now_ms, Event, Topic};

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
    seq: u64,
    ring: VecDeque<Event>,
    deltas: VecDeque<Event>,
    bus: broadcast::Sender<Event>,
}

impl Actor for EventLog {
    type Msg = EventLogMsg;
    type State = EventLogState;
    type Arguments = broadcast::Sender<Event>;

    async fn pre_start(
        &self,
        _me: ActorRef<EventLogMsg>,
        bus: broadcast::Sender<Event>,
    ) -> Result<EventLogState, ActorProcessingErr> {
        Ok(EventLogState {
            seq: 0,
            ring: VecDeque::with_capacity(RING),
            deltas: VecDeque::new(),
            bus,
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
                    at_ms: now_ms(),
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
}

impl EventLogHandle {
    pub fn new() -> Arc<Self> {
        let (bus, _) = broadcast::channel(4096);
        Arc::new(Self {
            actor: RwLock::new(None),
            bus,
        })
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
