//! The process ledger: which backend process groups this node has running, so that after a
//! node died without stopping them (SIGKILL, OOM, a crash) the next node on the data dir kills
//! what is left before it resumes the agents' sessions. Two processes on one conversation
//! would fork it (the model loses a turn the user saw answered) and a leftover could still
//! write files after its node was gone.
//!
//! - **What is recorded**: per backend process (the leader of its own process group) the agent,
//!   the pid and the process's start time (`/proc/<pid>/stat` field 22, clock ticks since
//!   boot), plus the boot id: a pid is reused, a (pid, start time) pair within one boot is not.
//!   Backends report starts and ends through [`ProcessLedger`]; the ledger is rewritten
//!   atomically (`secrets::write_private`, 0600) at `<data dir>/backend-processes.json` on
//!   each change. It only has to outlive the node process, not the machine: a reboot kills the
//!   recorded processes too (and changes the boot id, which voids the ledger).
//! - **At start** ([`kill_leftovers`], before any agent is restored, after the node holds its
//!   data dir): for each entry, if a process with that pid runs with another start time the
//!   pid was reused and nothing is touched; otherwise every live member of the group whose
//!   start time is not earlier than the leader's recorded one gets SIGKILL (the whole group
//!   when the leader is still there), until none is left (bounded); then the ledger is cleared.
//!
//! The leader itself normally died with the node already (its parent-death signal, see
//! `workshop_agent::spawner`); what is left is its tool subprocesses.

use std::path::{Path, PathBuf};
use std::time::Duration;

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use workshop_agent::ProcessLedger;

/// The ledger's file name in the data dir.
pub const FILE: &str = "backend-processes.json";
/// How long [`kill_leftovers`] waits for killed processes to be gone.
pub const KILL_WAIT: Duration = Duration::from_secs(5);

/// One recorded process group.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub agent: String,
    /// The leader's pid (= the group id).
    pub pid: u32,
    /// The leader's start time, clock ticks after boot (`/proc/<pid>/stat` field 22).
    pub start: u64,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Stored {
    boot_id: String,
    entries: Vec<Entry>,
}

/// This node's ledger (see the module doc).
pub struct ProcLedger {
    path: PathBuf,
    boot_id: String,
    entries: Mutex<Vec<Entry>>,
}

impl ProcLedger {
    /// A ledger at `<data_dir>/backend-processes.json`, empty (written on the first start).
    pub fn new(data_dir: &Path) -> Self {
        ProcLedger {
            path: data_dir.join(FILE),
            boot_id: boot_id(),
            entries: Mutex::new(Vec::new()),
        }
    }

    /// Record `entry` (for callers that know the start time already).
    pub fn record(&self, entry: Entry) {
        let mut entries = self.entries.lock();
        entries.retain(|e| e.pid != entry.pid);
        entries.push(entry);
        self.write(&entries);
    }

    /// The entries recorded now.
    pub fn entries(&self) -> Vec<Entry> {
        self.entries.lock().clone()
    }

    /// Rewrite the file (under the entries' lock, so writes land in order).
    fn write(&self, entries: &[Entry]) {
        let stored = Stored {
            boot_id: self.boot_id.clone(),
            entries: entries.to_vec(),
        };
        let written = serde_json::to_vec(&stored)
            .map_err(std::io::Error::other)
            .and_then(|bytes| crate::secrets::write_private(&self.path, &bytes));
        if let Err(e) = written {
            tracing::warn!(path = %self.path.display(), error = %e,
                "the process ledger was not written: a process left by a killed node may not be found at the next start");
        }
    }
}

impl ProcessLedger for ProcLedger {
    fn started(&self, agent: &str, pid: u32) {
        match stat(pid) {
            Some(s) => self.record(Entry {
                agent: agent.to_string(),
                pid,
                start: s.start,
            }),
            None => tracing::warn!(
                agent,
                pid,
                "a new backend process has no /proc entry; not recorded"
            ),
        }
    }

    fn ended(&self, _agent: &str, pid: u32) {
        let mut entries = self.entries.lock();
        let before = entries.len();
        entries.retain(|e| e.pid != pid);
        if entries.len() != before {
            self.write(&entries);
        }
    }
}

/// What [`kill_leftovers`] found of one entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Killed {
    pub entry: Entry,
    /// The pids that were sent SIGKILL.
    pub pids: Vec<u32>,
    /// Pids still alive when the wait ended (empty: all gone).
    pub survivors: Vec<u32>,
}

/// The event line for `k`.
pub fn describe(k: &Killed) -> String {
    let pids: Vec<String> = k.pids.iter().map(u32::to_string).collect();
    let mut line = format!(
        "[node] {}: killed {} process{} left running by the previous node (group {}: {})",
        k.entry.agent,
        k.pids.len(),
        if k.pids.len() == 1 { "" } else { "es" },
        k.entry.pid,
        pids.join(", ")
    );
    if !k.survivors.is_empty() {
        let s: Vec<String> = k.survivors.iter().map(u32::to_string).collect();
        line.push_str(&format!(
            "; still alive after {} s: {}",
            KILL_WAIT.as_secs(),
            s.join(", ")
        ));
    }
    line
}

/// Kill what the ledger in `data_dir` records as still running (see the module doc), wait up
/// to [`KILL_WAIT`] for it to be gone, and clear the ledger. Only entries where something was
/// killed are returned. Call it only while holding the data dir (no other node may run on it).
pub async fn kill_leftovers(data_dir: &Path) -> Vec<Killed> {
    let path = data_dir.join(FILE);
    let stored = match std::fs::read(&path) {
        Ok(bytes) => match serde_json::from_slice::<Stored>(&bytes) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "unreadable process ledger ignored");
                Stored::default()
            }
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Vec::new(),
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "process ledger not read");
            return Vec::new();
        }
    };
    let mut out = Vec::new();
    if stored.boot_id == boot_id() {
        for entry in stored.entries {
            if let Some(k) = kill_group(entry).await {
                out.push(k);
            }
        }
    }
    if let Err(e) = std::fs::remove_file(&path) {
        if e.kind() != std::io::ErrorKind::NotFound {
            tracing::warn!(path = %path.display(), error = %e, "process ledger not cleared");
        }
    }
    out
}

/// Kill the live members of `entry`'s group that are its (see the module doc).
async fn kill_group(entry: Entry) -> Option<Killed> {
    let leader_here = match stat(entry.pid) {
        Some(s) if s.start != entry.start => return None, // the pid is someone else's now
        Some(_) => true,
        None => false,
    };
    let ours = |p: &Stat| p.pgid == entry.pid && p.start >= entry.start && p.state != 'Z';
    // Who is there (to report it), then the whole group at once while its leader is ours.
    let mut pids: Vec<u32> = all().into_iter().filter(ours).map(|p| p.pid).collect();
    if leader_here {
        signal(-i64::from(entry.pid), libc::SIGKILL);
    }
    // Real time: a node on a paused test clock must not skip the wait.
    let deadline = std::time::Instant::now() + KILL_WAIT;
    loop {
        let left: Vec<u32> = all().into_iter().filter(ours).map(|p| p.pid).collect();
        if left.is_empty() {
            break;
        }
        for pid in &left {
            signal(i64::from(*pid), libc::SIGKILL);
            if !pids.contains(pid) {
                pids.push(*pid);
            }
        }
        if std::time::Instant::now() >= deadline {
            return Some(Killed {
                entry,
                pids,
                survivors: left,
            });
        }
        // Nothing tells us when a process that is not our child is gone: look again shortly.
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    (!pids.is_empty()).then_some(Killed {
        entry,
        pids,
        survivors: Vec::new(),
    })
}

/// `kill(target, sig)`; never 0, -1 or 1 (everyone, or init).
#[allow(unsafe_code)]
fn signal(target: i64, sig: i32) {
    let Ok(t) = i32::try_from(target) else {
        return;
    };
    if matches!(t, -1..=1) {
        return;
    }
    // SAFETY: kill(2) takes plain integers and touches no memory of ours.
    unsafe {
        libc::kill(t, sig);
    }
}

/// The fields of `/proc/<pid>/stat` the ledger needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stat {
    pub pid: u32,
    pub state: char,
    pub pgid: u32,
    /// Field 22: start time in clock ticks after boot.
    pub start: u64,
}

/// `/proc/<pid>/stat`, None if there is no such process.
pub fn stat(pid: u32) -> Option<Stat> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(pid, &s)
}

fn parse_stat(pid: u32, s: &str) -> Option<Stat> {
    // comm is in parentheses and may hold spaces and ')': the fields start after the last ')'.
    let close = s.rfind(')')?;
    let rest: Vec<&str> = s.get(close + 1..)?.split_whitespace().collect();
    // rest[0] is field 3 (state): field n is rest[n - 3].
    Some(Stat {
        pid,
        state: rest.first()?.chars().next()?,
        pgid: rest.get(2)?.parse().ok()?,
        start: rest.get(19)?.parse().ok()?,
    })
}

fn all() -> Vec<Stat> {
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    rd.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(stat)
        .collect()
}

/// This boot's id (empty if the kernel does not say).
fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines_parse_with_odd_command_names() {
        let line =
            "4242 (a) b (c)) S 1 4240 4240 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 50";
        let s = parse_stat(4242, line).expect("parses");
        assert_eq!(
            s,
            Stat {
                pid: 4242,
                state: 'S',
                pgid: 4240,
                start: 987654
            }
        );
        assert_eq!(parse_stat(1, "1 (x) S 0"), None);
    }

    #[test]
    fn this_process_has_a_start_time() {
        let me = stat(std::process::id()).expect("own stat");
        assert!(me.start > 0);
    }
}
