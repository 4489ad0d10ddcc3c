//! `/proc` probes (Linux): which processes run in a directory or a process group.

use std::path::Path;
use std::time::{Duration, Instant};

/// One process as `/proc/<pid>/stat` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProcInfo {
    pub pid: u32,
    pub ppid: u32,
    pub pgid: u32,
    /// `R`, `S`, `Z` (zombie: exited, not reaped), ...
    pub state: char,
    pub comm: String,
}

pub fn stat(pid: u32) -> Option<ProcInfo> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // comm is in parentheses and may contain spaces: split at the last ')'
    let open = s.find('(')?;
    let close = s.rfind(')')?;
    let comm = s[open + 1..close].to_string();
    let rest: Vec<&str> = s[close + 2..].split_whitespace().collect();
    Some(ProcInfo {
        pid,
        state: rest.first()?.chars().next()?,
        ppid: rest.get(1)?.parse().ok()?,
        pgid: rest.get(2)?.parse().ok()?,
        comm,
    })
}

pub fn all() -> Vec<ProcInfo> {
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    rd.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(stat)
        .collect()
}

/// Every process (zombies included) whose process group is `pgid`.
pub fn group_members(pgid: u32) -> Vec<ProcInfo> {
    all().into_iter().filter(|p| p.pgid == pgid).collect()
}

/// Live processes whose working directory is `dir` or below it.
pub fn with_cwd_under(dir: &Path) -> Vec<ProcInfo> {
    let Ok(dir) = dir.canonicalize() else {
        return Vec::new();
    };
    all()
        .into_iter()
        .filter(|p| {
            std::fs::read_link(format!("/proc/{}/cwd", p.pid))
                .map(|cwd| cwd.starts_with(&dir))
                .unwrap_or(false)
        })
        .collect()
}

/// Process groups led by a process running in `dir` (a backend's CLI process).
pub fn groups_under(dir: &Path) -> Vec<u32> {
    let mut g: Vec<u32> = with_cwd_under(dir)
        .into_iter()
        .filter(|p| p.pid == p.pgid)
        .map(|p| p.pgid)
        .collect();
    g.sort_unstable();
    g.dedup();
    g
}

/// Wait (polling /proc, bounded) until no member of any of `pgids` exists, zombies included.
/// Returns the survivors when `timeout` passes first.
pub async fn wait_groups_gone(pgids: &[u32], timeout: Duration) -> Result<(), Vec<ProcInfo>> {
    let deadline = Instant::now() + timeout;
    loop {
        let left: Vec<ProcInfo> = all()
            .into_iter()
            .filter(|p| pgids.contains(&p.pgid))
            .collect();
        if left.is_empty() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(left);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
