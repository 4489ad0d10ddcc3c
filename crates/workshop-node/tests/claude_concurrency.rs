//! Issue 9: 100 concurrent `agent("x")` from several clients leave exactly one agent and no
//! orphan process, with the `claude` backend driving the REAL Claude Code CLI (pinned, installed
//! by `.ci/install-claude.sh`) against the fake Anthropic API of `workshop-test-support`.
//!
//! The claude backend starts its CLI process eagerly (`start_session` spawns it when a tokio
//! runtime is there), so every one of the 100 creations starts a process and every replacement
//! must stop and reap the one it replaces. Each CLI process leads its own process group and is a
//! direct child of this test process (nothing else in this test binary starts processes), so
//! the CLI processes are counted as the live group leaders among this process's children, and
//! "no orphan" is: no child of this process left (zombies included), no group seen left, nothing
//! running in the agents' working directory.
//!
//! Synchronisation is by the API's replies and by observable state, never by sleeping. Process
//! counts are read from `/proc`, which offers nothing to wait on: they are polled in short,
//! bounded loops (like `procs::wait_groups_gone`), and a sampler polls `/proc` during the
//! creations only to record which process groups existed (for the final orphan check).

use std::collections::BTreeSet;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use workshop_node::{Client, Node};
use workshop_test_support::claude::{claude_bin, claude_env};
use workshop_test_support::procs::{self, ProcInfo};
use workshop_test_support::{FakeAnthropic, Reply};
use workshop_types::AgentOptions;

const CREATIONS: usize = 100;
const CLIENTS: usize = 4;
/// Creations of one name serialise on the name, and each replacement stops (and reaps) a CLI
/// process that is still booting (~1 s each): the last of the 100 calls waits for all the others,
/// far beyond the client's default 30 s call timeout. The clients get this one instead, and the
/// whole phase is bounded by it.
const CREATE_LIMIT: Duration = Duration::from_secs(600);
/// Upper bound for every other wait: a hung test fails instead of hanging CI.
const LIMIT: Duration = Duration::from_secs(90);
/// How often the bounded `/proc` polls look again.
const POLL: Duration = Duration::from_millis(10);

async fn within<T>(limit: Duration, what: &str, fut: impl Future<Output = T>) -> T {
    match tokio::time::timeout(limit, fut).await {
        Ok(v) => v,
        Err(_) => panic!("timed out after {limit:?} waiting for {what}"),
    }
}

/// Every process (zombies included) whose parent is this test process.
fn children() -> Vec<ProcInfo> {
    let me = std::process::id();
    procs::all().into_iter().filter(|p| p.ppid == me).collect()
}

/// The live CLI processes of this test: children of this process leading their own process
/// group (the backend starts each CLI with `process_group(0)`), not zombies.
fn live_clis() -> Vec<ProcInfo> {
    children()
        .into_iter()
        .filter(|p| p.pid == p.pgid && p.state != 'Z')
        .collect()
}

/// Poll `/proc` (bounded by [`LIMIT`]) until `done` holds for what `probe` sees; panics with
/// the last observation otherwise.
async fn poll_until<T: std::fmt::Debug>(
    what: &str,
    probe: impl Fn() -> T,
    done: impl Fn(&T) -> bool,
) -> T {
    let deadline = Instant::now() + LIMIT;
    loop {
        let seen = probe();
        if done(&seen) {
            return seen;
        }
        assert!(
            Instant::now() < deadline,
            "after {LIMIT:?}, still not {what}: {seen:?}"
        );
        tokio::time::sleep(POLL).await;
    }
}

/// What the process sampler recorded while the creations ran.
#[derive(Default)]
struct Seen {
    /// Every process group of a CLI process seen.
    groups: BTreeSet<u32>,
    /// The most live CLI processes seen at once (reported, not asserted: a process killed at
    /// the dismiss grace is still "live" in `/proc` for a moment after its SIGKILL).
    max_live: usize,
    samples: usize,
}

/// Polls `/proc` until stopped, recording the CLI processes it sees.
fn sample_processes(stop: Arc<AtomicBool>) -> (Arc<Mutex<Seen>>, tokio::task::JoinHandle<()>) {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let record = seen.clone();
    let task = tokio::spawn(async move {
        while !stop.load(Ordering::Acquire) {
            let live = live_clis();
            {
                let mut s = record.lock();
                s.samples += 1;
                s.max_live = s.max_live.max(live.len());
                s.groups.extend(live.iter().map(|p| p.pgid));
            }
            tokio::time::sleep(POLL).await;
        }
    });
    (seen, task)
}

fn claude_options(bin: &Path, work: &Path, fake: &FakeAnthropic, home: &Path) -> AgentOptions {
    AgentOptions {
        backend: Some("claude".into()),
        claude_bin: Some(bin.display().to_string()),
        working_dir: Some(work.display().to_string()),
        env: Some(claude_env(&fake.base_url(), home, 0)),
        ..Default::default()
    }
}

/// Nothing of any CLI process is left: no child of this process (zombies included: reaped),
/// no member of any group seen, nothing running in the working directory.
async fn assert_no_cli_left(what: &str, groups: &BTreeSet<u32>, work: &Path) {
    poll_until(
        &format!("every CLI process reaped {what}"),
        children,
        Vec::is_empty,
    )
    .await;
    let groups: Vec<u32> = groups.iter().copied().collect();
    if let Err(left) = procs::wait_groups_gone(&groups, LIMIT).await {
        panic!("orphan processes left {what}: {left:?}");
    }
    let stray = procs::with_cwd_under(work);
    assert!(
        stray.is_empty(),
        "processes left in the working dir {what}: {stray:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_concurrent_creations_leave_one_claude_agent_and_no_orphan_process() {
    // Fails with how to install it when the pinned CLI is missing (CI installs it).
    let bin = claude_bin();
    let fake = FakeAnthropic::start().await;
    fake.set_default(Reply::text("pong from the fake API"));
    let home = tempfile::tempdir().expect("HOME");
    let work_dir = tempfile::tempdir().expect("agent working dir");
    let work: PathBuf = work_dir.path().canonicalize().expect("working dir");
    assert!(
        children().is_empty(),
        "this test process has children before the test: {:?}",
        children()
    );

    let node = Node::start().await.expect("the node starts");
    let clients: Vec<Client> = (0..CLIENTS)
        .map(|_| node.client().with_timeouts(CREATE_LIMIT, CREATE_LIMIT))
        .collect();
    let options = claude_options(&bin, &work, &fake, home.path());

    // 100 tasks over 4 clients, released together.
    let stop_sampling = Arc::new(AtomicBool::new(false));
    let (seen, sampler) = sample_processes(stop_sampling.clone());
    let start = Arc::new(tokio::sync::Barrier::new(CREATIONS));
    let tasks: Vec<_> = (0..CREATIONS)
        .map(|i| {
            let client = clients[i % CLIENTS].clone();
            let options = options.clone();
            let start = start.clone();
            tokio::spawn(async move {
                start.wait().await;
                client.agent("x", None, options).await
            })
        })
        .collect();
    let t0 = Instant::now();
    let results = within(
        CREATE_LIMIT,
        "the 100 concurrent agent(\"x\") calls",
        futures_join(tasks),
    )
    .await;
    let create_time = t0.elapsed();
    for (i, r) in results.into_iter().enumerate() {
        let name = r.unwrap_or_else(|e| panic!("agent(\"x\") #{i} failed: {e}"));
        assert_eq!(name.as_str(), "x", "agent(\"x\") #{i}");
    }

    // Exactly one agent.
    let rows = clients[0].status().await.expect("status");
    assert_eq!(rows.len(), 1, "exactly one agent: {rows:?}");
    assert_eq!(rows[0].name.as_str(), "x");
    assert_eq!(rows[0].turns, 0);

    // Before any ask: the survivor's process (started eagerly) and nothing else; every
    // replaced agent's process is gone and reaped.
    let clis = poll_until(
        "one CLI process and no other child after the creations",
        children,
        |c| c.len() == 1 && c[0].pid == c[0].pgid && c[0].state != 'Z',
    )
    .await;
    let survivor = clis[0].pid;
    stop_sampling.store(true, Ordering::Release);
    within(LIMIT, "the process sampler to stop", sampler)
        .await
        .expect("the sampler");
    let (mut groups, max_live, samples) = {
        let s = seen.lock();
        (s.groups.clone(), s.max_live, s.samples)
    };
    groups.insert(survivor);
    let replaced: Vec<u32> = groups.iter().copied().filter(|g| *g != survivor).collect();
    if let Err(left) = procs::wait_groups_gone(&replaced, LIMIT).await {
        panic!("replaced agents' processes left: {left:?}");
    }
    assert_eq!(
        procs::groups_under(&work),
        vec![survivor],
        "the only process group in the working dir is the survivor's"
    );

    // One prompt, answered by the fake API through the survivor's process.
    let t1 = Instant::now();
    let r = within(LIMIT, "the ask", clients[1].ask("x", "ping"))
        .await
        .expect("ask");
    let ask_time = t1.elapsed();
    assert_eq!(r.text, "pong from the fake API");
    assert!(
        fake.message_requests()
            .iter()
            .any(|q| q.messages_text().contains("ping")),
        "the fake API saw the prompt"
    );
    let clis = live_clis();
    assert_eq!(
        clis.iter().map(|p| p.pid).collect::<Vec<_>>(),
        vec![survivor],
        "exactly one live CLI process, the one started for the surviving agent: {clis:?}"
    );
    assert_eq!(children().len(), 1, "no other child: {:?}", children());
    assert_eq!(clients[2].status().await.expect("status").len(), 1);

    // Dismissed: no process left, all reaped.
    let t2 = Instant::now();
    within(LIMIT, "dismiss(\"x\")", clients[3].dismiss("x"))
        .await
        .expect("dismiss");
    assert_no_cli_left("after dismiss(\"x\")", &groups, &work).await;
    let dismiss_time = t2.elapsed();
    assert!(clients[0].status().await.expect("status").is_empty());

    drop(clients);
    within(LIMIT, "the node to shut down", node.shutdown()).await;
    assert_no_cli_left("after the node shut down", &groups, &work).await;
    eprintln!(
        "{CREATIONS} creations: {create_time:?}; CLI process groups seen: {} (in {samples} samples, at most {max_live} live at once); ask: {ask_time:?}; dismiss until reaped: {dismiss_time:?}",
        groups.len()
    );
}

/// Join every task (in order), propagating a task's panic.
async fn futures_join<T>(tasks: Vec<tokio::task::JoinHandle<T>>) -> Vec<T> {
    let mut out = Vec::with_capacity(tasks.len());
    for t in tasks {
        out.push(t.await.expect("a creation task panicked"));
    }
    out
}
