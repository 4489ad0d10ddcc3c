//! Crash test: a child process runs thousands of add/claim/complete operations on a durable
//! board and prints each acknowledged one; we SIGKILL it part-way (after reading N
//! acknowledgements, no sleeps), reopen the directory and check that every acknowledged
//! operation survived. Two rounds on the same directory, so the second round also exercises
//! opening a board that was killed.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use workshop_board::store::{BoardStore, SledStore};
use workshop_board::{BoardConfig, Status};

/// Kills and reaps the child whatever happens to the test.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[derive(Debug, Default, Clone)]
struct Acked {
    added: bool,
    claimed: Option<u64>,
    completed: Option<u64>,
}

/// Runs one child round; returns how many acknowledgements were read.
fn round(
    dir: &Path,
    prefix: &str,
    kill_after: usize,
    acked: &mut BTreeMap<String, Acked>,
) -> usize {
    let child = Command::new(env!("CARGO_BIN_EXE_board-crash-child"))
        .arg(dir)
        .arg(prefix)
        .arg("8")
        .arg("100000")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut child = Reaped(child);
    let stdout = child.0.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let mut seen = 0usize;
    let mut killed = false;
    let mut record = |line: &str, seen: &mut usize| {
        let parts: Vec<&str> = line.split_whitespace().collect();
        match parts.as_slice() {
            ["open"] | ["finished"] => {}
            ["added", id] => {
                acked.entry(id.to_string()).or_default().added = true;
                *seen += 1;
            }
            ["claimed", id, t] => {
                acked.entry(id.to_string()).or_default().claimed = Some(t.parse().unwrap());
                *seen += 1;
            }
            ["completed", id, t] => {
                acked.entry(id.to_string()).or_default().completed = Some(t.parse().unwrap());
                *seen += 1;
            }
            other => panic!("unexpected line from child: {other:?}"),
        }
    };
    // Read until N acknowledgements, then SIGKILL; keep reading what was already printed
    // (every printed line was acknowledged before it was written) until EOF.
    for line in lines.by_ref() {
        let line = line.unwrap();
        record(&line, &mut seen);
        if !killed && seen >= kill_after {
            child.0.kill().unwrap(); // SIGKILL on Unix
            killed = true;
        }
    }
    assert!(
        killed,
        "the child finished before {kill_after} acknowledgements"
    );
    let status = child.0.wait().unwrap();
    assert!(
        !status.success(),
        "the child was killed, not finished: {status:?}"
    );
    seen
}

fn verify(dir: &Path, acked: &BTreeMap<String, Acked>) {
    let store = SledStore::open(dir).unwrap();
    let board = store.load(BoardConfig::default()).unwrap();
    board.check_invariants().unwrap();
    let mut max_token = 0;
    for (id, a) in acked {
        let item = board
            .get(id)
            .unwrap_or_else(|| panic!("acknowledged add of `{id}` was lost"));
        assert!(a.added, "`{id}`: claim/complete printed without add");
        if let Some(t) = a.completed {
            assert_eq!(
                item.status,
                Status::Done,
                "acknowledged complete of `{id}` lost"
            );
            assert_eq!(
                item.result.as_deref(),
                Some(format!("result of {id}").as_str())
            );
            max_token = max_token.max(t);
        } else if let Some(t) = a.claimed {
            // the complete may have become durable without its ack being printed
            match item.status {
                Status::Claimed => assert_eq!(item.token(), Some(t), "`{id}`"),
                Status::Done => {}
                other => panic!("acknowledged claim of `{id}` lost: it is {other}"),
            }
            max_token = max_token.max(t);
        } else {
            assert!(
                matches!(item.status, Status::Ready | Status::Claimed | Status::Done),
                "`{id}` is {}",
                item.status
            );
        }
    }
    assert!(board.last_token() >= max_token, "token counter went back");
}

#[test]
fn every_acknowledged_operation_survives_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("board");
    let mut acked = BTreeMap::new();
    let n1 = round(&path, "r1", 3_000, &mut acked);
    verify(&path, &acked);
    let n2 = round(&path, "r2", 3_000, &mut acked);
    verify(&path, &acked);
    let completed = acked.values().filter(|a| a.completed.is_some()).count();
    eprintln!(
        "crash test: {} acknowledgements over 2 kill -9 rounds, {} items, {completed} completed",
        n1 + n2,
        acked.len()
    );
    assert!(completed > 500);
}
