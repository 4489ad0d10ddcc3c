//! The real Claude Code CLI (pinned, installed by `.ci/install-claude.sh`) driven through the
//! `workshop` binary against the fake Anthropic API: a durable node is stopped and started
//! again, and the agent's conversation continues (`--resume`), with no process left behind.

use std::path::Path;
use std::time::Duration;

use workshop_test_support::claude::{claude_bin, claude_env};
use workshop_test_support::{procs, FakeAnthropic, Reply};

use crate::support::text;

fn rhai_str(s: &str) -> String {
    format!("{s:?}")
}

async fn console(dir: &Path, script: String) -> std::process::Output {
    let path = dir.join("script.rhai");
    std::fs::write(&path, script).expect("write script");
    tokio::process::Command::new(env!("CARGO_BIN_EXE_workshop"))
        .args(["console", "--script"])
        .arg(&path)
        .current_dir(dir)
        .kill_on_drop(true)
        .output()
        .await
        .expect("run workshop console")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claude_agent_resumes_its_conversation_after_the_node_restarts() {
    let fake = FakeAnthropic::start().await;
    fake.push(Reply::text("Noted: apple."));
    fake.push(Reply::text("The word was apple."));
    let node_dir = tempfile::tempdir().expect("node dir");
    let work = tempfile::tempdir().expect("agent working dir");
    let home = tempfile::tempdir().expect("HOME");
    let env: Vec<String> = claude_env(&fake.base_url(), home.path(), 0)
        .into_iter()
        .map(|(k, v)| format!("{k}: {}", rhai_str(&v)))
        .collect();
    let setup = format!(
        r#"agent("c", "You answer briefly.", #{{backend: "claude", working_dir: {}, claude_bin: {}, env: #{{{}}}}});"#,
        rhai_str(&work.path().to_string_lossy()),
        rhai_str(&claude_bin().to_string_lossy()),
        env.join(", ")
    );
    let out = console(
        node_dir.path(),
        format!("{setup}\nask(\"c\", \"Remember the word apple.\");"),
    )
    .await;
    assert!(out.status.success(), "first run: {}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("Noted: apple."),
        "{}",
        text(&out.stdout)
    );
    assert!(
        procs::with_cwd_under(work.path()).is_empty(),
        "the node's exit left a claude process: {:?}",
        procs::with_cwd_under(work.path())
    );

    // A new node process on the same data dir: the agent is restored and resumes its session.
    let out = console(
        node_dir.path(),
        r#"ask("c", "Which word?"); let i = info("c"); print("turns=" + i.turns);"#.into(),
    )
    .await;
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "second run: {}", text(&out.stderr));
    assert!(stdout.contains("The word was apple."), "{stdout}");
    assert!(stdout.contains("turns=2"), "{stdout}");
    fake.wait_for_requests(2, Duration::from_secs(5)).await;
    let asked = fake.message_requests();
    let last = asked.last().expect("a request");
    assert!(
        last.messages_text().contains("Remember the word apple."),
        "the resumed conversation carries the first turn: {}",
        last.messages_text()
    );
    assert!(procs::with_cwd_under(work.path()).is_empty());
}

/// Live (not zombie) processes of a node's claude sessions: those running in `work` and every
/// member of `groups` (the sessions' process groups seen before).
fn live_claude(work: &Path, groups: &[u32]) -> Vec<procs::ProcInfo> {
    let mut found = procs::with_cwd_under(work);
    found.extend(
        procs::all()
            .into_iter()
            .filter(|p| groups.contains(&p.pgid) && p.state != 'Z'),
    );
    found.sort_by_key(|p| p.pid);
    found.dedup_by_key(|p| p.pid);
    found
}

/// Poll /proc until nothing of [`live_claude`] is left, for at most `limit`.
async fn none_alive_within(
    work: &Path,
    groups: &[u32],
    limit: Duration,
) -> Result<Duration, Vec<procs::ProcInfo>> {
    let start = std::time::Instant::now();
    loop {
        let left = live_claude(work, groups);
        if left.is_empty() {
            return Ok(start.elapsed());
        }
        if start.elapsed() >= limit {
            return Err(left);
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Kills (SIGKILL) whatever a failed test left of the sessions in `work`.
struct Leftovers<'a> {
    work: &'a Path,
    groups: Vec<u32>,
}

impl Drop for Leftovers<'_> {
    fn drop(&mut self) {
        for p in live_claude(self.work, &self.groups) {
            let _ = std::process::Command::new("kill")
                .args(["-KILL", &p.pid.to_string()])
                .status();
        }
    }
}

/// The process groups recorded in the node's process ledger.
fn ledger_pids(node_dir: &Path) -> Vec<u32> {
    let path = node_dir.join(workshop_node::proc_ledger::FILE);
    let Ok(bytes) = std::fs::read(&path) else {
        return Vec::new();
    };
    let v: serde_json::Value = serde_json::from_slice(&bytes).expect("the ledger is JSON");
    v["entries"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["pid"].as_u64().and_then(|p| u32::try_from(p).ok()))
        .collect()
}

/// Wait until the fake API got a messages request whose conversation holds `prompt`.
async fn until_asked(fake: &FakeAnthropic, prompt: &str) {
    loop {
        let seen = fake.request_count();
        if fake
            .message_requests()
            .iter()
            .any(|r| r.messages_text().contains(prompt))
        {
            return;
        }
        fake.wait_for_requests(seen + 1, crate::support::LIMIT)
            .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_killed_or_terminated_mid_turn_leaves_no_claude_running_and_keeps_every_answered_turn(
) {
    use crate::support::NodeProcess;
    use workshop_types::{AgentOptions, PermissionMode};

    let fake = FakeAnthropic::start().await;
    let node_dir = tempfile::tempdir().expect("node dir");
    let work = tempfile::tempdir().expect("agent working dir");
    let work_path = work.path().canonicalize().expect("work dir");
    let home = tempfile::tempdir().expect("HOME");
    let mut leftovers = Leftovers {
        work: &work_path,
        groups: Vec::new(),
    };
    let options = AgentOptions {
        backend: Some("claude".into()),
        claude_bin: Some(claude_bin().display().to_string()),
        working_dir: Some(work_path.display().to_string()),
        env: Some(claude_env(&fake.base_url(), home.path(), 0)),
        permission_mode: Some(PermissionMode::AcceptEdits),
        ..Default::default()
    };

    let mut node = NodeProcess::start(node_dir.path());
    let c = node.client().await;
    c.agent("c", None, options).await.expect("create the agent");
    fake.push(Reply::text("Noted: apple."));
    let r = c
        .ask("c", "Remember the word apple.")
        .await
        .expect("turn 1");
    assert_eq!(r.text, "Noted: apple.");

    // SIGKILL while the model's reply (a Write) is held by the API.
    let after_kill = work_path.join("after-kill.txt");
    fake.push(Reply::held(Reply::write(
        &after_kill.display().to_string(),
        "written after the node was killed",
    )));
    c.cast("c", "Write after-kill.txt now.")
        .await
        .expect("cast");
    until_asked(&fake, "Write after-kill.txt now.").await;
    leftovers.groups = procs::groups_under(&work_path);
    assert_eq!(leftovers.groups.len(), 1, "one claude process group");
    node.kill9();
    if let Err(left) =
        none_alive_within(&work_path, &leftovers.groups, Duration::from_secs(1)).await
    {
        panic!("1 s after the node's SIGKILL its claude processes still run: {left:?}");
    }
    // The node had recorded the group in its process ledger (the next node kills what is left).
    assert_eq!(ledger_pids(node_dir.path()), leftovers.groups);
    // The held Write is answered now: nobody is left to carry it out.
    fake.release_stalls();

    // A new node on the data dir resumes the session; a turn is answered there.
    fake.rearm_stalls();
    let mut node = NodeProcess::start(node_dir.path());
    let c = node.client().await;
    fake.push(Reply::text("Noted: banana."));
    let r = c
        .ask("c", "Remember the word banana too.")
        .await
        .expect("turn after the restart");
    assert_eq!(r.text, "Noted: banana.");

    // SIGTERM (what systemd and docker send) while a held Write is in flight.
    let after_term = work_path.join("after-term.txt");
    fake.push(Reply::held(Reply::write(
        &after_term.display().to_string(),
        "written after the node was stopped",
    )));
    c.cast("c", "Write after-term.txt now.")
        .await
        .expect("cast");
    until_asked(&fake, "Write after-term.txt now.").await;
    leftovers.groups = procs::groups_under(&work_path);
    assert_eq!(leftovers.groups.len(), 1, "one claude process group");
    let status = node.terminate();
    assert!(status.success(), "SIGTERM: {status}: {}", node.stderr());
    if let Err(left) =
        none_alive_within(&work_path, &leftovers.groups, Duration::from_secs(1)).await
    {
        panic!("1 s after the node's SIGTERM its claude processes still run: {left:?}");
    }
    fake.release_stalls();
    // A clean stop leaves nothing recorded.
    assert_eq!(ledger_pids(node_dir.path()), Vec::<u32>::new());

    // Again: every turn the user saw answered is in the resumed conversation.
    let mut node = NodeProcess::start(node_dir.path());
    let c = node.client().await;
    fake.push(Reply::text("apple, banana"));
    let r = c.ask("c", "Which words?").await.expect("last turn");
    assert_eq!(r.text, "apple, banana");
    let asked = fake.message_requests();
    let last = asked.last().expect("a request").messages_text();
    for said in [
        "Remember the word apple.",
        "Noted: apple.",
        "Remember the word banana too.",
        "Noted: banana.",
    ] {
        assert!(
            last.contains(said),
            "the resumed conversation lacks {said:?}: {last}"
        );
    }
    assert!(
        !after_kill.exists() && !after_term.exists(),
        "a held Write ran"
    );
    let status = node.terminate();
    assert!(status.success(), "{status}: {}", node.stderr());
    leftovers.groups = procs::groups_under(&work_path);
    assert!(live_claude(&work_path, &[]).is_empty());
}
