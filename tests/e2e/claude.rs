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
