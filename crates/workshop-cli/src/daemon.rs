//! `workshop node --detach`: start the node as a background process (its own process group,
//! output to `<data dir>/node.log`, pid in `<data dir>/node.pid`) and return once it listens.

use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use workshop_node::cluster;

pub const LOG_FILE: &str = "node.log";
pub const PID_FILE: &str = "node.pid";

/// How long the background node may take to open its data dir and listen.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

pub fn detach(dir: Option<&Path>) -> anyhow::Result<()> {
    let Some(dir) = dir else {
        anyhow::bail!("--detach needs a data dir (for its log and pid files); drop --ephemeral");
    };
    workshop_board::private::create_private_dir(dir)
        .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", dir.display()))?;
    if let Some(e) = cluster::read_endpoint(dir) {
        if cluster::pid_alive(e.pid) {
            anyhow::bail!(
                "a node (pid {}) already runs on {} at {}; `workshop stop` stops it",
                e.pid,
                dir.display(),
                e.addr
            );
        }
    }
    let log_path = dir.join(LOG_FILE);
    let log = std::fs::OpenOptions::new()
        .create(true)
        .mode(0o600)
        .append(true)
        .open(&log_path)
        .map_err(|e| anyhow::anyhow!("cannot open {}: {e}", log_path.display()))?;
    let exe = std::env::current_exe()?;
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--detach")
        .collect();
    let mut child = {
        use std::os::unix::process::CommandExt;
        Command::new(exe)
            .args(&args)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .process_group(0)
            .spawn()?
    };
    let pid = child.id();
    workshop_node::secrets::write_private(&dir.join(PID_FILE), format!("{pid}\n").as_bytes())?;
    let start = Instant::now();
    loop {
        if let Some(e) = cluster::read_endpoint(dir) {
            if e.pid == pid {
                println!(
                    "workshop node started in the background: pid {pid}, listening on {}, log {}",
                    e.addr,
                    log_path.display()
                );
                return Ok(());
            }
        }
        if let Some(status) = child.try_wait()? {
            let _ = std::fs::remove_file(dir.join(PID_FILE));
            let log_text = std::fs::read_to_string(&log_path).unwrap_or_default();
            let tail: Vec<&str> = log_text.lines().rev().take(5).collect();
            anyhow::bail!(
                "the node exited at once ({status}); the end of {}:\n{}",
                log_path.display(),
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
        if start.elapsed() > READY_TIMEOUT {
            anyhow::bail!(
                "the node (pid {pid}) did not start listening within {} s; see {}",
                READY_TIMEOUT.as_secs(),
                log_path.display()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Remove the pid file if it names this process (on a detached node's way out).
pub fn remove_own_pid_file(dir: &Path) {
    let path = dir.join(PID_FILE);
    if std::fs::read_to_string(&path).is_ok_and(|s| s.trim() == std::process::id().to_string()) {
        let _ = std::fs::remove_file(path);
    }
}
