//! The process ledger at node start: a process group recorded by a node that died is killed
//! before agents are restored (with the members it started), an entry whose pid belongs to
//! another process now is left alone, and the ledger is cleared. Waits are on the children
//! themselves (reaped by this test), never on time.

#![allow(clippy::unwrap_used)]

use std::os::unix::process::ExitStatusExt;
use std::process::Stdio;
use std::time::Duration;

use workshop_agent::ProcessLedger;
use workshop_node::proc_ledger::{self, Entry, ProcLedger};
use workshop_node::Node;
use workshop_types::Topic;

const LIMIT: Duration = Duration::from_secs(20);

fn sleeper(group: u32) -> tokio::process::Child {
    tokio::process::Command::new("sleep")
        .arg("1000")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(group as i32)
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}

async fn exit_signal(child: &mut tokio::process::Child) -> Option<i32> {
    tokio::time::timeout(LIMIT, child.wait())
        .await
        .expect("the process ended")
        .unwrap()
        .signal()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_node_kills_the_groups_its_ledger_recorded_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    // What a killed node left: a backend process leading its group, and a tool subprocess of it.
    let mut leader = sleeper(0);
    let leader_pid = leader.id().unwrap();
    let mut member = sleeper(leader_pid);
    // A process that now has the pid of a recorded process that is long gone.
    let mut stranger = sleeper(0);
    let stranger_pid = stranger.id().unwrap();
    let stranger_start = proc_ledger::stat(stranger_pid).unwrap().start;
    {
        let ledger = ProcLedger::new(dir.path());
        ledger.started("old", leader_pid);
        ledger.record(Entry {
            agent: "reused".into(),
            pid: stranger_pid,
            start: stranger_start - 1,
        });
        assert_eq!(ledger.entries().len(), 2);
    }

    let node = Node::open(dir.path()).await.unwrap();

    assert_eq!(exit_signal(&mut leader).await, Some(libc_sigkill()));
    assert_eq!(exit_signal(&mut member).await, Some(libc_sigkill()));
    assert!(
        stranger.try_wait().unwrap().is_none(),
        "a process that only reuses a recorded pid was killed"
    );
    let events = node.workshop.events(100, Some(Topic::Node)).await.unwrap();
    let killed: Vec<&str> = events
        .iter()
        .filter(|e| e.kind == "leftover_killed")
        .map(|e| e.line.as_str())
        .collect();
    assert_eq!(killed.len(), 1, "{killed:?}");
    assert!(
        killed[0].contains("old: killed 2 processes")
            && killed[0].contains(&leader_pid.to_string()),
        "{killed:?}"
    );
    // The ledger is cleared: nothing is killed again at the next start.
    assert!(!dir.path().join(proc_ledger::FILE).exists());
    node.shutdown().await;
    assert!(proc_ledger::kill_leftovers(dir.path()).await.is_empty());

    stranger.start_kill().unwrap();
    assert_eq!(exit_signal(&mut stranger).await, Some(libc_sigkill()));
}

/// SIGKILL's number on Linux.
fn libc_sigkill() -> i32 {
    9
}
