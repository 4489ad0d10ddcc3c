//! The spawner thread (`workshop_agent::spawner`): a child it starts dies with its parent
//! process even on SIGKILL, and does not die when the tokio thread that asked for it exits.
//! Synchronisation is by what `/proc` shows (polled, bounded) and by pipes, never by sleeping.

#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt};

use workshop_agent::spawner;
use workshop_test_support::procs;

const LIMIT: Duration = Duration::from_secs(10);
const HELPER_ENV: &str = "WORKSHOP_SPAWNER_TEST_HELPER";

fn sleeper() -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new("sleep");
    cmd.arg("1000")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    cmd
}

/// Alive: in /proc and not a zombie.
fn alive(pid: u32) -> bool {
    procs::stat(pid).is_some_and(|p| p.state != 'Z')
}

fn kill9(pid: u32) {
    let _ = std::process::Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status();
}

/// Poll /proc until `pid` is no longer alive, or `limit` passes (false).
fn gone_within(pid: u32, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while alive(pid) {
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::yield_now();
    }
    true
}

/// Not a test of its own: run (re-executed by `a_child_dies_with_its_parent_even_on_sigkill`)
/// as the parent process. Starts `sleep` through the spawner, prints its pid, waits for stdin
/// to close (it is SIGKILLed first).
#[test]
#[ignore = "a helper process for a_child_dies_with_its_parent_even_on_sigkill"]
fn spawner_helper_process() {
    if std::env::var_os(HELPER_ENV).is_none() {
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let child = rt.block_on(async { spawner::spawn(sleeper()).unwrap() });
    println!("pid={}", child.id().unwrap());
    let mut line = String::new();
    let _ = std::io::stdin().read_line(&mut line);
}

#[test]
fn a_child_dies_with_its_parent_even_on_sigkill() {
    let mut helper = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "spawner_helper_process",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(HELPER_ENV, "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // The harness prints the pid after the test's name, on the same line.
    let out = BufReader::new(helper.stdout.take().unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let pid = out.lines().map_while(Result::ok).find_map(|l| {
            l.split("pid=")
                .nth(1)
                .and_then(|p| p.trim().parse::<u32>().ok())
        });
        let _ = tx.send(pid);
    });
    let Ok(Some(pid)) = rx.recv_timeout(LIMIT) else {
        helper.kill().unwrap();
        helper.wait().unwrap();
        panic!("the helper printed no pid");
    };
    assert!(alive(pid));
    helper.kill().unwrap(); // SIGKILL: no destructor, no shutdown path runs
    helper.wait().unwrap();
    reader.join().unwrap();
    let died = gone_within(pid, LIMIT);
    if !died {
        kill9(pid);
    }
    assert!(
        died,
        "the child {pid} outlived its SIGKILLed parent by {LIMIT:?}"
    );
}

#[test]
fn a_child_outlives_the_tokio_thread_that_asked_for_it() {
    // Blocking-pool threads retire after 1 ms idle: the one that asks for the child exits.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_keep_alive(Duration::from_millis(1))
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let (mut child, tid) = tokio::task::spawn_blocking(|| {
            let tid = std::fs::read_link("/proc/thread-self").unwrap();
            let mut cat = tokio::process::Command::new("cat");
            cat.stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .kill_on_drop(true);
            (spawner::spawn(cat).unwrap(), tid)
        })
        .await
        .unwrap();
        // The blocking thread that asked is gone ...
        let deadline = Instant::now() + LIMIT;
        while std::path::Path::new("/proc").join(&tid).exists() {
            assert!(
                Instant::now() < deadline,
                "the blocking thread {tid:?} did not exit"
            );
            tokio::task::yield_now().await;
        }
        // ... and the child still answers: a SIGKILL sent when that thread exited would have
        // ended it before it could echo a line back.
        let mut stdin = child.stdin.take().unwrap();
        let mut stdout = tokio::io::BufReader::new(child.stdout.take().unwrap());
        let echoed = tokio::time::timeout(LIMIT, async {
            let _ = stdin.write_all(b"ping\n").await;
            drop(stdin);
            let mut line = String::new();
            let _ = stdout.read_line(&mut line).await;
            line
        })
        .await
        .unwrap();
        let status = tokio::time::timeout(LIMIT, child.wait())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            echoed, "ping\n",
            "the child died with the tokio thread that asked for it ({status})"
        );
        assert!(status.success(), "{status}");
    });
}
