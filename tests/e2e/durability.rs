//! A node with a data dir keeps its agents, their cost and session ids across restarts,
//! including a kill -9 in the middle of a turn.

use std::io::{BufRead, BufReader};
use std::process::Stdio;

use crate::support::{console_stdin, text, workshop};

/// Start `workshop node` in `dir` and wait until it says it runs (reads its stderr).
fn start_node(dir: &std::path::Path, args: &[&str]) -> (std::process::Child, bool) {
    let mut node = workshop()
        .arg("node")
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn node");
    let stderr = node.stderr.take().expect("stderr");
    let ready = BufReader::new(stderr)
        .lines()
        .map_while(Result::ok)
        .any(|l| l.contains("workshop node listening"));
    (node, ready)
}

#[test]
fn agents_come_back_after_a_restart_with_cost_turns_and_session() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = console_stdin(
        dir.path(),
        r#"agent("a", "You answer.", #{script: [#{text: "one", cost_usd: 0.25}]}); ask("a", "hi");"#,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = console_stdin(
        dir.path(),
        r#"let i = info("a"); print("turns=" + i.turns + " cost=" + i.cost_usd + " session=" + i.session_id + " role=" + i.role);"#,
    );
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        stdout.contains("turns=1 cost=0.25 session=script-a-0 role=You answer."),
        "{stdout}"
    );
}

#[test]
fn kill_9_mid_turn_marks_the_turn_interrupted_after_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join(".workshop.rhai"),
        r#"agent("h", #{script: [#{hang: true}]}); cast("h", "long job");"#,
    )
    .expect("setup file");
    let (mut node, ready) = start_node(dir.path(), &[]);
    node.kill().expect("kill -9");
    node.wait().expect("reap node");
    assert!(ready, "the node never reported running");

    let out = workshop()
        .args(["console", "--no-setup", "--script", "/dev/stdin"])
        .current_dir(dir.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin
                .take()
                .expect("stdin")
                .write_all(br#"status(); events(50);"#)?;
            c.wait_with_output()
        })
        .expect("restart");
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        stdout.contains("[error] h: turn interrupted by a node restart: long job"),
        "{stdout}"
    );
    assert!(stdout.contains("h     | idle"), "{stdout}");
}

#[test]
fn a_second_process_on_the_same_data_dir_is_refused_clearly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut node, ready) = start_node(dir.path(), &["--no-setup"]);
    let out = console_stdin(dir.path(), "status();");
    node.kill().expect("kill");
    node.wait().expect("reap");
    assert!(ready);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains("another process holds the node database at .workshop/node"),
        "{err}"
    );
}

#[test]
fn a_setup_file_run_again_keeps_restored_agents_with_the_same_configuration() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join(".workshop.rhai"),
        r#"agent("keep", "Same role."); agent("change", "Role v1");"#,
    )
    .expect("setup");
    let out = console_stdin(dir.path(), r#"ask("keep", "one"); ask("change", "one");"#);
    assert!(out.status.success(), "{}", text(&out.stderr));
    // Same declaration for `keep`; a changed role for `change`.
    std::fs::write(
        dir.path().join(".workshop.rhai"),
        r#"agent("keep", "Same role."); agent("change", "Role v2");"#,
    )
    .expect("setup");
    let out = console_stdin(
        dir.path(),
        r#"print("keep=" + info("keep").turns + " change=" + info("change").turns); events(20, "agent");"#,
    );
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(stdout.contains("keep=1 change=0"), "{stdout}");
    assert!(
        stdout.contains("[agent] keep kept (restored with the same configuration)"),
        "{stdout}"
    );
    assert!(stdout.contains("[agent] change replaced"), "{stdout}");
}
