//! The node's own durable state in sled (`<data_dir>/node`): the agent registry (spec, session
//! id, cumulative cost and turns, the turn in flight), the shared store, profiles and the
//! persisted tail of the event log. The `env` values of agents, profiles, the configuration and
//! board workers are not in it: they go to owner-only files in `<data_dir>/secrets` (see
//! `secrets::EnvSecrets`), and the records keep the keys with a placeholder naming the file;
//! reading a record puts the values back. Values are encoded by `workshop-proto::codec` (store values
//! are JSON text, since they are arbitrary user data). Acknowledged operations (agent created or
//! dismissed, store writes) are flushed and then `fdatasync`ed before they return: sled 0.34.7's
//! `flush()` only issues `sync_file_range`, which survives a killed process but not a machine
//! crash. Agents' status rows and the event tail go through a background writer that coalesces
//! and batches them (`rows.rs`, which states their durability contract).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use workshop_proto::codec;
use workshop_types::{AgentName, AgentOptions, AgentSpec, Event};

use crate::schedule::ScheduleSpec;
use crate::secrets::{EnvSecrets, Owner};
use crate::worker::WorkerSpec;
use crate::ApiError;
use crate::{GlobalConfig, Profile};
use workshop_workflow::Workflow;

mod rows;
use rows::RowWriter;
pub use rows::{PendingRow, RowWriterStats};

/// One agent as the registry keeps it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AgentRecord {
    pub spec: AgentSpec,
    pub session_id: Option<String>,
    pub cost_usd: f64,
    pub turns: u32,
    /// The prompt of the turn in flight, if any (marked interrupted after a restart).
    pub task: Option<String>,
}

/// How many events the persisted tail keeps.
pub const EVENT_TAIL: usize = 500;

/// How long opening waits for a database this process has just closed to be released.
const REOPEN_WAIT: std::time::Duration = std::time::Duration::from_secs(3);

/// Databases this process has closed (see `NodeDb::open`).
static CLOSED_HERE: parking_lot::Mutex<Vec<PathBuf>> = parking_lot::Mutex::new(Vec::new());

fn closed_here(dir: &Path) -> bool {
    let dir = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
    CLOSED_HERE.lock().contains(&dir)
}

impl Drop for NodeDb {
    fn drop(&mut self) {
        let dir = std::path::absolute(&self.dir).unwrap_or_else(|_| self.dir.clone());
        let mut closed = CLOSED_HERE.lock();
        if !closed.contains(&dir) {
            closed.push(dir);
        }
    }
}

pub struct NodeDb {
    dir: PathBuf,
    db: sled::Db,
    agents: sled::Tree,
    store: sled::Tree,
    events: sled::Tree,
    schedules: sled::Tree,
    workflows: sled::Tree,
    workers: sled::Tree,
    profiles: sled::Tree,
    meta: sled::Tree,
    /// On the board node: agent name -> the node that holds it (the cluster's registry).
    names: sled::Tree,
    rows: RowWriter,
    /// Where the `env` values of the records are kept.
    secrets: Arc<EnvSecrets>,
}

fn db_err(dir: &Path, e: impl std::fmt::Display) -> ApiError {
    ApiError::Node(format!("node database at {}: {e}", dir.display()))
}

impl NodeDb {
    /// Open (or create) the node database in `dir` (`<data_dir>/node`; the `env` values of its
    /// records are kept in `secrets` beside it). A directory held by another process and a
    /// corrupt directory give errors that name the directory and what to do.
    pub fn open(dir: &Path) -> Result<Self, ApiError> {
        let secrets = match dir.parent() {
            Some(parent) => parent.join("secrets"),
            None => PathBuf::from("secrets"),
        };
        Self::open_with_secrets(dir, secrets)
    }

    /// `open`, with the `env` values kept in `secrets_dir` (created 0700 when first needed).
    pub fn open_with_secrets(dir: &Path, secrets_dir: PathBuf) -> Result<Self, ApiError> {
        workshop_board::private::create_private_dir(dir)
            .map_err(|e| db_err(dir, format!("cannot create it: {e}")))?;
        let open = || {
            sled::Config::new()
                .path(dir)
                .flush_every_ms(Some(500))
                .open()
        };
        let locked = |e: &sled::Error| {
            matches!(e, sled::Error::Io(io) if io.kind() == std::io::ErrorKind::WouldBlock
                || io.to_string().contains("could not acquire lock"))
        };
        let mut opened = open();
        // A database this process closed a moment ago stays locked until sled's own threads
        // (its periodic flusher) have let go of it: wait for that, briefly. A lock held by
        // another process is reported at once.
        if opened.as_ref().is_err_and(&locked) && closed_here(dir) {
            let deadline = std::time::Instant::now() + REOPEN_WAIT;
            while opened.as_ref().is_err_and(&locked) && std::time::Instant::now() < deadline {
                std::thread::sleep(std::time::Duration::from_millis(10));
                opened = open();
            }
        }
        let db = opened.map_err(|e| match e {
                sled::Error::Io(io) if io.kind() == std::io::ErrorKind::WouldBlock
                    || io.to_string().contains("could not acquire lock") =>
                {
                    ApiError::Node(format!(
                        "another process holds the node database at {}; stop that node or pass another --data-dir",
                        dir.display()
                    ))
                }
                sled::Error::Corruption { at, .. } => ApiError::Node(format!(
                    "the node database at {} is damaged{}; move it aside (the node then starts with no agents, configuration or store) or put back a copy of it",
                    dir.display(),
                    at.map(|p| format!(" (at {p:?})")).unwrap_or_default()
                )),
                other => db_err(dir, other),
            })?;
        let tree = |name: &str| db.open_tree(name).map_err(|e| db_err(dir, e));
        let agents = tree("agents")?;
        let events = tree("events")?;
        let secrets = Arc::new(EnvSecrets::new(secrets_dir));
        let rows = RowWriter::start(db.clone(), agents.clone(), events.clone(), secrets.clone())
            .map_err(|e| db_err(dir, format!("cannot start the status row writer: {e}")))?;
        Ok(Self {
            agents,
            rows,
            store: tree("store")?,
            events,
            schedules: tree("schedules")?,
            workflows: tree("workflows")?,
            workers: tree("workers")?,
            profiles: tree("profiles")?,
            meta: tree("meta")?,
            names: tree("names")?,
            dir: dir.to_path_buf(),
            db,
            secrets,
        })
    }

    /// Where the `env` values of this database's records are kept.
    pub fn secrets(&self) -> &EnvSecrets {
        &self.secrets
    }

    /// Put back the `env` values of `options` (of `owner`) from its secrets file. A record an
    /// older build wrote, with its values in clear, is reported by `Ok(true)`: the caller writes
    /// it again (now without them). The error names the file and the owner.
    fn unseal(&self, owner: Owner<'_>, options: &mut AgentOptions) -> Result<bool, String> {
        let clear = self.secrets.unseal(owner, options)?;
        if clear {
            tracing::warn!(
                "the env values of {owner} were in the node database in clear (written by an older build); they move to {} now. Old copies may stay in {} until sled reuses that space: change those keys if others could read it",
                self.secrets.path(owner).display(),
                self.dir.display()
            );
        }
        Ok(clear)
    }

    /// Make everything written so far durable: the status rows still queued are written, then
    /// sled flush, then fdatasync of its log file.
    pub async fn sync(&self) -> Result<(), ApiError> {
        self.rows.drain();
        self.db
            .flush_async()
            .await
            .map_err(|e| db_err(&self.dir, e))?;
        let file = self.dir.join("db");
        tokio::task::spawn_blocking(move || std::fs::File::open(&file)?.sync_data())
            .await
            .map_err(|e| db_err(&self.dir, e))?
            .map_err(|e| db_err(&self.dir, format!("fdatasync failed: {e}")))
    }

    /// sled flush only: survives a killed process (not a machine crash).
    pub fn flush_for_process_crash(&self) -> Result<(), ApiError> {
        self.db
            .flush()
            .map(|_| ())
            .map_err(|e| db_err(&self.dir, e))
    }

    /// Write an agent's record now (it supersedes the agent's queued status row; the caller
    /// syncs).
    pub fn put_agent(&self, rec: &AgentRecord) -> Result<(), ApiError> {
        self.rows.put_now(rec).map_err(|e| db_err(&self.dir, e))
    }

    /// Hand a status row to the background writer (no disk work on the caller's thread).
    pub fn queue_row(&self, row: PendingRow) {
        self.rows.queue(row);
    }

    /// Write a status row now, bypassing the writer (a row with a new session id); the caller
    /// then flushes with `flush_for_process_crash`.
    pub fn put_row_now(&self, row: &PendingRow) -> Result<(), ApiError> {
        self.put_agent(&row.record())?;
        self.rows.count_immediate();
        Ok(())
    }

    /// Write the status rows still queued and flush them (sled flush, on sled's thread pool,
    /// not the caller's). A cast is acknowledged after this, so the turn it started is on disk.
    pub async fn flush_rows(&self) -> Result<(), ApiError> {
        self.rows.drain();
        self.db
            .flush_async()
            .await
            .map(|_| ())
            .map_err(|e| db_err(&self.dir, e))
    }

    /// Every write to the agents tree since the last call, in order (`None`: a delete).
    #[cfg(test)]
    pub(crate) fn take_agent_writes(&self) -> Vec<(AgentName, Option<AgentRecord>)> {
        self.rows.take_journal()
    }

    /// Counters of the status row writer.
    pub fn row_writer_stats(&self) -> RowWriterStats {
        self.rows.stats()
    }

    pub fn agent(&self, name: &AgentName) -> Result<Option<AgentRecord>, ApiError> {
        match self
            .agents
            .get(name.as_str().as_bytes())
            .map_err(|e| db_err(&self.dir, e))?
        {
            None => Ok(None),
            Some(v) => {
                let mut rec: AgentRecord = codec::decode(&v).map_err(|e| db_err(&self.dir, e))?;
                self.unseal(Owner::Agent(name.as_str()), &mut rec.spec.options)
                    .map_err(ApiError::Node)?;
                Ok(Some(rec))
            }
        }
    }

    /// Delete an agent's record, and its status row still queued for the writer; then its
    /// secrets file.
    pub fn delete_agent(&self, name: &AgentName) -> Result<(), ApiError> {
        self.rows.delete(name).map_err(|e| db_err(&self.dir, e))?;
        self.secrets.remove(Owner::Agent(name.as_str()));
        Ok(())
    }

    /// Every agent record, its `env` values back from its secrets file; undecodable records,
    /// and records whose secrets file is missing or unreadable, are reported (naming the agent
    /// and the file), not dropped silently. A record of an older build with its `env` values in
    /// clear is written again without them (the agent's restore writes it).
    pub fn agents(&self) -> Result<(Vec<AgentRecord>, Vec<String>), ApiError> {
        let mut ok = Vec::new();
        let mut bad = Vec::new();
        for kv in self.agents.iter() {
            let (k, v) = kv.map_err(|e| db_err(&self.dir, e))?;
            let name = String::from_utf8_lossy(&k);
            match codec::decode::<AgentRecord>(&v) {
                Ok(mut r) => match self.unseal(Owner::Agent(&name), &mut r.spec.options) {
                    Ok(_) => ok.push(r),
                    Err(e) => bad.push(format!("{name}: {e}")),
                },
                Err(e) => bad.push(format!("{name}: {e}")),
            }
        }
        Ok((ok, bad))
    }

    // ------------------------------------------------------------ schedules

    pub fn put_schedule(&self, spec: &ScheduleSpec) -> Result<(), ApiError> {
        let bytes = codec::encode(spec).map_err(|e| db_err(&self.dir, e))?;
        self.schedules
            .insert(spec.agent.as_str().as_bytes(), bytes)
            .map_err(|e| db_err(&self.dir, e))?;
        Ok(())
    }

    pub fn delete_schedule(&self, agent: &AgentName) -> Result<(), ApiError> {
        self.schedules
            .remove(agent.as_str().as_bytes())
            .map_err(|e| db_err(&self.dir, e))?;
        Ok(())
    }

    pub fn schedules(&self) -> Result<Vec<ScheduleSpec>, ApiError> {
        self.decode_all(&self.schedules)
    }

    /// Every value of a tree, decoded; the first bad one is an error naming the database.
    fn decode_all<T: serde::de::DeserializeOwned>(
        &self,
        tree: &sled::Tree,
    ) -> Result<Vec<T>, ApiError> {
        tree.iter()
            .values()
            .map(|v| {
                let v = v.map_err(|e| db_err(&self.dir, e))?;
                codec::decode(&v).map_err(|e| db_err(&self.dir, e))
            })
            .collect()
    }

    // ------------------------------------------------------------ configuration, profiles

    pub fn put_config(&self, c: &GlobalConfig) -> Result<(), ApiError> {
        let sealed = GlobalConfig {
            defaults: self.secrets.seal(Owner::Config, &c.defaults)?,
            ..c.clone()
        };
        let bytes = codec::encode(&sealed).map_err(|e| db_err(&self.dir, e))?;
        self.meta
            .insert("config", bytes)
            .map_err(|e| db_err(&self.dir, e))?;
        self.flush_for_process_crash()
    }

    /// The global configuration, its `env` values back from their secrets file (`Some(Err)`:
    /// that file is missing or unreadable, the message names it: never half an environment).
    #[allow(clippy::type_complexity)]
    pub fn config(&self) -> Result<Option<Result<GlobalConfig, String>>, ApiError> {
        match self.meta.get("config").map_err(|e| db_err(&self.dir, e))? {
            None => Ok(None),
            Some(v) => {
                let mut c: GlobalConfig = codec::decode(&v).map_err(|e| db_err(&self.dir, e))?;
                match self.unseal(Owner::Config, &mut c.defaults) {
                    Ok(true) => self.put_config(&c)?,
                    Ok(false) => {}
                    Err(e) => return Ok(Some(Err(e))),
                }
                Ok(Some(Ok(c)))
            }
        }
    }

    pub fn put_profile(&self, p: &Profile) -> Result<(), ApiError> {
        let sealed = Profile {
            options: self.secrets.seal(Owner::Profile(&p.name), &p.options)?,
            ..p.clone()
        };
        let bytes = codec::encode(&sealed).map_err(|e| db_err(&self.dir, e))?;
        self.profiles
            .insert(p.name.as_bytes(), bytes)
            .map_err(|e| db_err(&self.dir, e))?;
        self.flush_for_process_crash()
    }

    /// Every profile, its `env` values back from its secrets file; a profile whose file is
    /// missing or unreadable is reported (naming the profile and the file) instead.
    pub fn profiles(&self) -> Result<(Vec<Profile>, Vec<String>), ApiError> {
        let mut ok = Vec::new();
        let mut bad = Vec::new();
        for mut p in self.decode_all::<Profile>(&self.profiles)? {
            match self.unseal(Owner::Profile(&p.name), &mut p.options) {
                Ok(clear) => {
                    if clear {
                        self.put_profile(&p)?;
                    }
                    ok.push(p);
                }
                Err(e) => bad.push(format!("{}: {e}", p.name)),
            }
        }
        Ok((ok, bad))
    }

    pub fn clear_config_and_profiles(&self) -> Result<(), ApiError> {
        self.meta.clear().map_err(|e| db_err(&self.dir, e))?;
        self.profiles.clear().map_err(|e| db_err(&self.dir, e))?;
        self.flush_for_process_crash()?;
        self.secrets.remove_all(&["config", "profile-"]);
        Ok(())
    }

    // ------------------------------------------------------------ board workers

    pub fn put_worker(&self, spec: &WorkerSpec) -> Result<(), ApiError> {
        let sealed = WorkerSpec {
            options: self
                .secrets
                .seal(Owner::Worker(spec.name.as_str()), &spec.options)?,
            ..spec.clone()
        };
        let bytes = codec::encode(&sealed).map_err(|e| db_err(&self.dir, e))?;
        self.workers
            .insert(spec.name.as_str().as_bytes(), bytes)
            .map_err(|e| db_err(&self.dir, e))?;
        Ok(())
    }

    pub fn delete_worker(&self, name: &AgentName) -> Result<(), ApiError> {
        self.workers
            .remove(name.as_str().as_bytes())
            .map_err(|e| db_err(&self.dir, e))?;
        self.secrets.remove(Owner::Worker(name.as_str()));
        Ok(())
    }

    /// Delete every board worker's spec and secrets file (`reset_all`).
    pub fn clear_workers(&self) -> Result<(), ApiError> {
        self.workers.clear().map_err(|e| db_err(&self.dir, e))?;
        self.secrets.remove_all(&["worker-"]);
        Ok(())
    }

    /// Every board worker's spec, its `env` values back from its secrets file; a worker whose
    /// file is missing or unreadable is reported (naming the worker and the file) instead.
    pub fn workers(&self) -> Result<(Vec<WorkerSpec>, Vec<String>), ApiError> {
        let mut ok = Vec::new();
        let mut bad = Vec::new();
        for mut spec in self.decode_all::<WorkerSpec>(&self.workers)? {
            match self.unseal(Owner::Worker(spec.name.as_str()), &mut spec.options) {
                Ok(clear) => {
                    if clear {
                        self.put_worker(&spec)?;
                    }
                    ok.push(spec)
                }
                Err(e) => bad.push(format!("{}: {e}", spec.name)),
            }
        }
        Ok((ok, bad))
    }

    // ------------------------------------------------------------ workflows

    pub fn put_workflow(&self, wf: &Workflow) -> Result<(), ApiError> {
        let bytes = codec::encode(wf).map_err(|e| db_err(&self.dir, e))?;
        self.workflows
            .insert(wf.name.as_bytes(), bytes)
            .map_err(|e| db_err(&self.dir, e))?;
        Ok(())
    }

    pub fn workflows(&self) -> Result<Vec<Workflow>, ApiError> {
        self.decode_all(&self.workflows)
    }

    // ------------------------------------------------------------ the cluster's registry

    /// Reserve `name` for `node` (the caller syncs).
    pub fn put_name(&self, name: &str, node: &str) -> Result<(), ApiError> {
        self.names
            .insert(name.as_bytes(), node.as_bytes())
            .map_err(|e| db_err(&self.dir, e))?;
        Ok(())
    }

    pub fn delete_name(&self, name: &str) -> Result<(), ApiError> {
        self.names
            .remove(name.as_bytes())
            .map_err(|e| db_err(&self.dir, e))?;
        Ok(())
    }

    /// Every reserved agent name with its node.
    pub fn names(&self) -> Result<Vec<(String, String)>, ApiError> {
        self.names
            .iter()
            .map(|kv| {
                let (k, v) = kv.map_err(|e| db_err(&self.dir, e))?;
                Ok((
                    String::from_utf8_lossy(&k).into_owned(),
                    String::from_utf8_lossy(&v).into_owned(),
                ))
            })
            .collect()
    }

    /// The cluster's spend per node (the board node's ledger; the caller syncs).
    pub fn put_ledger(
        &self,
        ledger: &std::collections::BTreeMap<String, f64>,
    ) -> Result<(), ApiError> {
        let bytes = codec::encode(ledger).map_err(|e| db_err(&self.dir, e))?;
        self.meta
            .insert("ledger", bytes)
            .map_err(|e| db_err(&self.dir, e))?;
        Ok(())
    }

    pub fn ledger(&self) -> Result<std::collections::BTreeMap<String, f64>, ApiError> {
        match self.meta.get("ledger").map_err(|e| db_err(&self.dir, e))? {
            Some(v) => codec::decode(&v).map_err(|e| db_err(&self.dir, e)),
            None => Ok(Default::default()),
        }
    }

    // ------------------------------------------------------------ store

    pub fn store_put(&self, key: &str, json: &str) -> Result<(), ApiError> {
        self.store
            .insert(key.as_bytes(), json.as_bytes())
            .map_err(|e| db_err(&self.dir, e))?;
        Ok(())
    }

    pub fn store_get(&self, key: &str) -> Result<Option<String>, ApiError> {
        Ok(self
            .store
            .get(key.as_bytes())
            .map_err(|e| db_err(&self.dir, e))?
            .map(|v| String::from_utf8_lossy(&v).into_owned()))
    }

    pub fn store_delete(&self, key: &str) -> Result<(), ApiError> {
        self.store
            .remove(key.as_bytes())
            .map_err(|e| db_err(&self.dir, e))?;
        Ok(())
    }

    pub fn store_all(&self) -> Result<Vec<(String, String)>, ApiError> {
        self.store
            .iter()
            .map(|kv| {
                kv.map(|(k, v)| {
                    (
                        String::from_utf8_lossy(&k).into_owned(),
                        String::from_utf8_lossy(&v).into_owned(),
                    )
                })
                .map_err(|e| db_err(&self.dir, e))
            })
            .collect()
    }

    // ------------------------------------------------------------ events

    /// Append to the persisted tail (key: big-endian sequence number), trimmed to EVENT_TAIL.
    /// Encoded here, written and flushed by the background writer (`rows.rs`).
    pub fn append_event(&self, ev: &Event) -> Result<(), ApiError> {
        let bytes = codec::encode(ev).map_err(|e| db_err(&self.dir, e))?;
        self.rows.queue_event(ev.seq, bytes);
        Ok(())
    }

    pub fn event_tail(&self) -> Vec<Event> {
        self.events
            .iter()
            .values()
            .flatten()
            .filter_map(|v| codec::decode(&v).ok())
            .collect()
    }

    pub fn clear_events(&self) -> Result<(), ApiError> {
        self.rows.clear_events().map_err(|e| db_err(&self.dir, e))
    }
}

impl crate::Workshop {
    /// On a durable node, the status rows reported so far are on disk (survive a killed
    /// process) when this returns; see `persist/rows.rs`.
    pub(crate) async fn rows_durable(&self) -> Result<(), ApiError> {
        match self.db() {
            Some(db) => db.flush_rows().await,
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agents_round_trip_and_second_open_is_refused_clearly() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = NodeDb::open(dir.path()).expect("open");
        let rec = AgentRecord {
            spec: AgentSpec {
                name: AgentName::new("impl").expect("name"),
                role: Some("r".into()),
                system_prompt: None,
                options: AgentOptions::default(),
                resume_session: None,
            },
            session_id: Some("s-1".into()),
            cost_usd: 0.5,
            turns: 3,
            task: None,
        };
        db.put_agent(&rec).expect("put");
        let (all, bad) = db.agents().expect("list");
        assert_eq!(all, vec![rec]);
        assert!(bad.is_empty());
        let second = NodeDb::open(dir.path()).err().expect("locked");
        assert!(
            second
                .to_string()
                .contains("another process holds the node database"),
            "{second}"
        );
    }
}
