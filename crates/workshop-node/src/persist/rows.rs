//! The background writer of the agents' status rows and of the event tail (one thread per node
//! database).
//!
//! An agent reports its row about three times per turn. A sled flush per report, on the agent's
//! own thread, cost ≈ 350 µs per ask (BENCHMARKS.md, issue 9). So the hooks only hand the row
//! over: the writer keeps the latest row per agent (a newer row replaces a queued one), and
//! writes whatever accumulated as one batch followed by one sled flush. While a flush runs, new
//! rows accumulate for the next batch (group commit, no timer). The event log hands its
//! persisted events over the same way (a sled insert and a trim per event were a fifth of a
//! durable node's CPU per ask); they are flushed with the batch, where before they waited for
//! sled's 500 ms background flush.
//!
//! Durability contract of a status row (session id, cost, turns, turn in flight):
//! - **Best-effort latest after a crash.** A killed process loses at most the rows queued since
//!   the writer's last flush began, i.e. the last batch: typically the last row change of the
//!   agents that changed within the last flush (≈ 0.3–1 ms of sled flush here). After a restart
//!   an agent's cost and turns may therefore lag by the turns that ended in that window (less
//!   spend counted: a budget may be overrun by that much), and a turn started by an `ask` in that
//!   window may not be reported as interrupted. Like the per-row flush before it, a batch
//!   survives a killed process, not a machine crash (sled's flush does not `fdatasync`).
//! - **A new session id is durable before the agent replies.** The row that carries it (the
//!   first turn of a session, a reset, a resumed session replaced) is written and flushed in
//!   `NodeHooks::row_changed`, before the caller hears back, because losing it loses the
//!   conversation on resume. This is the one flush left on an agent's thread: once per session,
//!   not per turn.
//! - **A cast is acknowledged once the row it changed is on disk** (the turn it started, if
//!   any): `Workshop::cast` waits for `NodeDb::flush_rows` (on the caller's task; sled flushes on
//!   its own thread pool), so a kill -9 after a cast returned still reports that turn
//!   interrupted after the restart.
//! - **Creation and dismissal** never go through the writer: `Workshop` writes them and
//!   `fdatasync`s before it answers. A dismissal also drops the agent's queued row, under the
//!   same lock the writer holds while it writes a batch, so a late row cannot bring a dismissed
//!   agent back. A **replacement** deletes nothing: the new record is written over the old one
//!   (one insert of the same key, dropping the old agent's queued row), then synced, so a kill
//!   at any point leaves the old agent (its turn in flight reported interrupted after the
//!   restart) or the new one, never neither.
//! - **A clean stop loses nothing**: `NodeDb::sync` (which `stop_agents`, and so
//!   `Node::shutdown`, calls after the agents stopped) first writes every queued row, and
//!   dropping the database drains the writer before its thread ends.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use parking_lot::{Condvar, Mutex, MutexGuard};
use workshop_proto::codec;
use workshop_types::{AgentName, AgentRow, AgentSpec};

use super::{AgentRecord, EVENT_TAIL};
use crate::secrets::{EnvSecrets, Owner};

/// A status row waiting for the writer (the spec is shared, not copied, on the agent's thread).
pub struct PendingRow {
    pub spec: Arc<AgentSpec>,
    pub session_id: Option<String>,
    pub cost_usd: f64,
    pub turns: u32,
    pub task: Option<String>,
}

impl PendingRow {
    pub fn new(spec: Arc<AgentSpec>, row: &AgentRow) -> Self {
        Self {
            spec,
            session_id: row.session_id.clone(),
            cost_usd: row.cost_usd,
            turns: row.turns,
            task: row.task.clone(),
        }
    }

    pub fn record(&self) -> AgentRecord {
        AgentRecord {
            spec: (*self.spec).clone(),
            session_id: self.session_id.clone(),
            cost_usd: self.cost_usd,
            turns: self.turns,
            task: self.task.clone(),
        }
    }
}

/// Counters of the row writer, for tests and benchmarks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RowWriterStats {
    /// Rows handed to the writer (`queue`).
    pub queued: u64,
    /// Rows written to sled by the writer or a drain (after coalescing).
    pub written: u64,
    /// Sled flushes the writer thread did (one per batch).
    pub flushes: u64,
    /// Rows written and flushed at once on the caller's thread (new session ids).
    pub immediate: u64,
    /// Rows that could not be written (logged).
    pub errors: u64,
}

#[derive(Default)]
struct Queue {
    rows: HashMap<AgentName, PendingRow>,
    /// Encoded events by sequence number, at most the last `EVENT_TAIL`.
    events: VecDeque<(u64, Vec<u8>)>,
    closed: bool,
}

impl Queue {
    fn is_empty(&self) -> bool {
        self.rows.is_empty() && self.events.is_empty()
    }
}

#[derive(Default)]
struct Counters {
    queued: AtomicU64,
    written: AtomicU64,
    flushes: AtomicU64,
    immediate: AtomicU64,
    errors: AtomicU64,
}

struct Shared {
    queue: Mutex<Queue>,
    wake: Condvar,
    /// Held while rows are applied to the agents tree (a batch is taken from the queue and
    /// written under it, as are direct writes and deletes), so a row the writer has taken can
    /// never land after a delete or a newer direct write of the same agent.
    apply: Mutex<()>,
    counters: Counters,
    db: sled::Db,
    agents: sled::Tree,
    events: sled::Tree,
    /// Where the agents' `env` values go instead of their records.
    secrets: Arc<EnvSecrets>,
    /// Every write to the agents tree, in order (`None`: a delete), for tests that check what
    /// a kill between two writes would leave.
    #[cfg(test)]
    journal: Mutex<Vec<(AgentName, Option<AgentRecord>)>>,
}

impl Shared {
    /// Take every queued row and event and write them (no flush); returns how many. The caller
    /// holds `apply`.
    fn write_queued(&self, _apply: &MutexGuard<'_, ()>) -> usize {
        let (rows, events) = {
            let mut q = self.queue.lock();
            (std::mem::take(&mut q.rows), std::mem::take(&mut q.events))
        };
        let n = rows.len() + events.len();
        self.write_events(events);
        let mut written = 0;
        for row in rows.into_values() {
            match self.insert(&row.record()) {
                Ok(()) => written += 1,
                Err(e) => {
                    self.counters.errors.fetch_add(1, Ordering::Relaxed);
                    tracing::error!(agent = %row.spec.name, error = %e, "cannot persist the agent's status row");
                }
            }
        }
        self.counters.written.fetch_add(written, Ordering::Relaxed);
        n
    }

    /// Append events to the persisted tail and trim it to the last `EVENT_TAIL`.
    fn write_events(&self, events: VecDeque<(u64, Vec<u8>)>) {
        let Some(last) = events.back().map(|(seq, _)| *seq) else {
            return;
        };
        let mut failed = 0;
        for (seq, bytes) in events {
            if self.events.insert(seq.to_be_bytes(), bytes).is_err() {
                failed += 1;
            }
        }
        if last > EVENT_TAIL as u64 {
            // Keep exactly the last EVENT_TAIL sequence numbers.
            let cut = (last - EVENT_TAIL as u64).to_be_bytes();
            for k in self.events.range(..=cut).keys().flatten() {
                let _ = self.events.remove(k);
            }
        }
        if failed > 0 {
            self.counters.errors.fetch_add(failed, Ordering::Relaxed);
            tracing::warn!(failed, "events not persisted");
        }
    }

    /// Write `rec`, its `env` values replaced by placeholders (the values go to the agent's
    /// secrets file first, when they are new).
    fn insert(&self, rec: &AgentRecord) -> Result<(), String> {
        let bytes = if rec.spec.options.has_env_values() {
            let options = self
                .secrets
                .seal(Owner::Agent(rec.spec.name.as_str()), &rec.spec.options)
                .map_err(|e| e.to_string())?;
            let sealed = AgentRecord {
                spec: AgentSpec {
                    options,
                    ..rec.spec.clone()
                },
                ..rec.clone()
            };
            codec::encode(&sealed)
        } else {
            codec::encode(rec)
        }
        .map_err(|e| e.to_string())?;
        self.agents
            .insert(rec.spec.name.as_str().as_bytes(), bytes)
            .map_err(|e| e.to_string())?;
        #[cfg(test)]
        self.journal
            .lock()
            .push((rec.spec.name.clone(), Some(rec.clone())));
        Ok(())
    }

    fn run(&self) {
        loop {
            {
                let mut q = self.queue.lock();
                while q.is_empty() && !q.closed {
                    self.wake.wait(&mut q);
                }
                if q.is_empty() && q.closed {
                    return;
                }
            }
            let apply = self.apply.lock();
            let n = self.write_queued(&apply);
            drop(apply);
            if n == 0 {
                continue; // a drain or a delete took them
            }
            self.counters.flushes.fetch_add(1, Ordering::Relaxed);
            if let Err(e) = self.db.flush() {
                self.counters.errors.fetch_add(1, Ordering::Relaxed);
                tracing::error!(error = %e, "cannot flush the agents' status rows");
            }
        }
    }
}

/// The writer thread and its queue; owned by `NodeDb`.
pub struct RowWriter {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl RowWriter {
    pub fn start(
        db: sled::Db,
        agents: sled::Tree,
        events: sled::Tree,
        secrets: Arc<EnvSecrets>,
    ) -> std::io::Result<Self> {
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue::default()),
            wake: Condvar::new(),
            apply: Mutex::new(()),
            counters: Counters::default(),
            db,
            agents,
            events,
            secrets,
            #[cfg(test)]
            journal: Mutex::new(Vec::new()),
        });
        let s = shared.clone();
        let thread = std::thread::Builder::new()
            .name("workshop-rows".into())
            .spawn(move || s.run())?;
        Ok(Self {
            shared,
            thread: Some(thread),
        })
    }

    /// Hand a row to the writer; replaces the agent's row still queued, if any.
    pub fn queue(&self, row: PendingRow) {
        self.shared.counters.queued.fetch_add(1, Ordering::Relaxed);
        let mut q = self.shared.queue.lock();
        let wake = q.is_empty();
        q.rows.insert(row.spec.name.clone(), row);
        drop(q);
        if wake {
            self.shared.wake.notify_one();
        }
    }

    /// Hand an encoded event to the writer (only the last `EVENT_TAIL` queued are kept).
    pub fn queue_event(&self, seq: u64, bytes: Vec<u8>) {
        let mut q = self.shared.queue.lock();
        let wake = q.is_empty();
        q.events.push_back((seq, bytes));
        if q.events.len() > EVENT_TAIL {
            q.events.pop_front();
        }
        drop(q);
        if wake {
            self.shared.wake.notify_one();
        }
    }

    /// Clear the persisted events, and those still queued.
    pub fn clear_events(&self) -> Result<(), String> {
        let _apply = self.shared.apply.lock();
        self.shared.queue.lock().events.clear();
        self.shared.events.clear().map_err(|e| e.to_string())
    }

    /// Write `rec` now (superseding the agent's queued row); the caller flushes.
    pub fn put_now(&self, rec: &AgentRecord) -> Result<(), String> {
        let _apply = self.shared.apply.lock();
        self.shared.queue.lock().rows.remove(&rec.spec.name);
        self.shared.insert(rec)
    }

    /// Count a row written and flushed on the caller's thread.
    pub fn count_immediate(&self) {
        self.shared
            .counters
            .immediate
            .fetch_add(1, Ordering::Relaxed);
    }

    /// Delete an agent's record and its queued row together.
    pub fn delete(&self, name: &AgentName) -> Result<(), String> {
        let _apply = self.shared.apply.lock();
        self.shared.queue.lock().rows.remove(name);
        self.shared
            .agents
            .remove(name.as_str().as_bytes())
            .map_err(|e| e.to_string())?;
        #[cfg(test)]
        self.shared.journal.lock().push((name.clone(), None));
        Ok(())
    }

    /// Write every queued row now, on the caller's thread (no flush: the caller flushes).
    pub fn drain(&self) {
        let apply = self.shared.apply.lock();
        self.shared.write_queued(&apply);
    }

    pub fn stats(&self) -> RowWriterStats {
        let c = &self.shared.counters;
        RowWriterStats {
            queued: c.queued.load(Ordering::Relaxed),
            written: c.written.load(Ordering::Relaxed),
            flushes: c.flushes.load(Ordering::Relaxed),
            immediate: c.immediate.load(Ordering::Relaxed),
            errors: c.errors.load(Ordering::Relaxed),
        }
    }

    /// The writes to the agents tree since the last call, in order (`None`: a delete).
    #[cfg(test)]
    pub fn take_journal(&self) -> Vec<(AgentName, Option<AgentRecord>)> {
        std::mem::take(&mut *self.shared.journal.lock())
    }

    /// Hold the writer back (tests): rows queued meanwhile form one batch when the guard drops.
    #[cfg(test)]
    pub fn hold(&self) -> MutexGuard<'_, ()> {
        self.shared.apply.lock()
    }
}

impl Drop for RowWriter {
    /// Write what is queued, flush, and end the thread (it holds a handle on the database, which
    /// must be released before the directory can be opened again).
    fn drop(&mut self) {
        self.shared.queue.lock().closed = true;
        self.shared.wake.notify_one();
        if let Some(t) = self.thread.take() {
            if t.join().is_err() {
                tracing::error!("the status row writer panicked");
            }
        }
        let apply = self.shared.apply.lock();
        if self.shared.write_queued(&apply) > 0 {
            let _ = self.shared.db.flush();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use workshop_types::{AgentOptions, AgentStatus};

    use super::*;
    use crate::persist::NodeDb;

    fn spec(i: usize) -> Arc<AgentSpec> {
        Arc::new(AgentSpec {
            name: AgentName::new(format!("agent-{i}")).expect("name"),
            role: None,
            system_prompt: None,
            options: AgentOptions::default(),
            resume_session: None,
        })
    }

    fn row(spec: &AgentSpec, turns: u32) -> AgentRow {
        AgentRow {
            name: spec.name.clone(),
            status: AgentStatus::Idle,
            task: None,
            queued: 0,
            cost_usd: f64::from(turns) * 0.5,
            turns,
            session_id: Some(format!("s-{}", spec.name)),
        }
    }

    /// Wait (bounded) until the writer thread reports `cond`; it runs on its own thread, so
    /// this polls its counters instead of sleeping for a guessed time.
    fn until(db: &NodeDb, what: &str, cond: impl Fn(&RowWriterStats) -> bool) -> RowWriterStats {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let s = db.row_writer_stats();
            if cond(&s) {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}: {s:?}"
            );
            std::thread::yield_now();
        }
    }

    #[test]
    fn a_burst_of_row_changes_is_one_batch_and_one_flush() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = NodeDb::open(dir.path()).expect("open");
        let specs: Vec<Arc<AgentSpec>> = (0..10).map(spec).collect();
        let before = db.row_writer_stats();
        // While the writer is held back, 1,000 changes of 10 agents arrive.
        let held = db.rows.hold();
        for turns in 1..=100 {
            for s in &specs {
                db.queue_row(PendingRow::new(s.clone(), &row(s, turns)));
            }
        }
        drop(held);
        let after = until(&db, "the writer's flush", |s| s.flushes > before.flushes);
        assert_eq!(after.queued - before.queued, 1000, "{after:?}");
        assert_eq!(
            after.written - before.written,
            10,
            "latest row per agent: {after:?}"
        );
        assert_eq!(after.flushes - before.flushes, 1, "{after:?}");
        assert_eq!(after.errors, 0);
        for s in &specs {
            let rec = db.agent(&s.name).expect("read").expect("written");
            assert_eq!(
                (rec.turns, rec.cost_usd),
                (100, 50.0),
                "the latest row wins"
            );
            assert_eq!(rec.session_id, Some(format!("s-{}", s.name)));
        }
    }

    #[test]
    fn a_deleted_agents_queued_row_never_brings_it_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = NodeDb::open(dir.path()).expect("open");
        let s = spec(1);
        db.put_agent(&PendingRow::new(s.clone(), &row(&s, 1)).record())
            .expect("created");
        // Whether the writer has taken the row or not when the delete comes, the delete wins.
        for turns in 2..200 {
            db.queue_row(PendingRow::new(s.clone(), &row(&s, turns)));
        }
        db.delete_agent(&s.name).expect("delete");
        db.rows.drain();
        drop(db);
        let db = NodeDb::open(dir.path()).expect("reopen");
        assert_eq!(db.agent(&s.name).expect("read"), None);
    }

    #[test]
    fn dropping_the_database_writes_the_queued_rows() {
        let dir = tempfile::tempdir().expect("tempdir");
        let specs: Vec<Arc<AgentSpec>> = (0..3).map(spec).collect();
        {
            let db = NodeDb::open(dir.path()).expect("open");
            for s in &specs {
                db.queue_row(PendingRow::new(s.clone(), &row(s, 7)));
            }
        }
        let db = NodeDb::open(dir.path()).expect("reopen (the writer released the database)");
        let (all, bad) = db.agents().expect("list");
        assert!(bad.is_empty(), "{bad:?}");
        assert_eq!(all.len(), 3);
        assert!(all.iter().all(|r| r.turns == 7), "{all:?}");
    }

    fn event(seq: u64) -> workshop_types::Event {
        workshop_types::Event {
            seq,
            at_ms: 0,
            topic: workshop_types::Topic::Agent,
            kind: "k".into(),
            subject: None,
            line: format!("event {seq}"),
        }
    }

    #[test]
    fn the_event_tail_is_written_in_the_background_and_trimmed() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let db = NodeDb::open(dir.path()).expect("open");
            for seq in 1..=300 {
                db.append_event(&event(seq)).expect("append");
            }
            // Cleared events, written or still queued, stay cleared.
            db.clear_events().expect("clear");
            for seq in 1..=1200 {
                db.append_event(&event(seq)).expect("append");
            }
        }
        let db = NodeDb::open(dir.path()).expect("reopen");
        let seqs: Vec<u64> = db.event_tail().iter().map(|e| e.seq).collect();
        assert_eq!(seqs, (701..=1200).collect::<Vec<u64>>());
    }

    #[tokio::test]
    async fn a_cast_is_acknowledged_once_the_turn_it_started_is_written() {
        let dir = tempfile::tempdir().expect("tempdir");
        let node = crate::Node::open(dir.path()).await.expect("open");
        let w = &node.workshop;
        let hang = workshop_types::ScriptStep {
            hang: true,
            ..Default::default()
        };
        let options = AgentOptions {
            script: Some(vec![hang]),
            ..Default::default()
        };
        w.agent("h", None, options).await.expect("agent");
        w.cast("h", "long job").await.expect("cast");
        // No wait: the row naming the turn is in sled (and flushed) when the cast returns.
        let db = w.db().expect("a durable node");
        let rec = db
            .agent(&AgentName::new("h").expect("name"))
            .expect("read")
            .expect("the agent's record");
        assert_eq!(rec.task.as_deref(), Some("long job"));
        node.shutdown().await;
    }
}
