//! The CLI against a running `workshop node`: the client commands give what the same operations
//! give on a node in this process, `console --attach` runs a script as a console on its own
//! node does, and the failure modes (wrong cookie, no node, a stale endpoint) say what is
//! wrong. Also `node --detach` + `stop`, and SIGTERM with a board worker mid-item.

use std::path::Path;
use std::process::{Output, Stdio};

use serde_json::{json, Value};
use workshop_node::{ApiError, Client, WorkOptions, WorkerOptions};
use workshop_types::board::{SettleBy, Status};
use workshop_types::{AgentOptions, ScriptStep};

use crate::support::{next_event, script, text, workshop, NodeProcess, LIMIT};

/// `workshop <args>` in `cwd` (stdin closed), waited for.
fn cli(cwd: &Path, args: &[&str]) -> Output {
    cli_env(cwd, args, &[])
}

fn cli_env(cwd: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = workshop();
    cmd.args(args)
        .current_dir(cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run workshop")
}

fn ok(out: &Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what}: {}\nstdout: {}\nstderr: {}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

/// A successful command's stdout as one JSON value.
fn json_of(out: &Output, what: &str) -> Value {
    let s = ok(out, what);
    serde_json::from_str(&s).unwrap_or_else(|e| panic!("{what}: not JSON ({e}): {s}"))
}

/// A successful command's stdout as JSON lines.
fn json_lines(out: &Output, what: &str) -> Vec<Value> {
    ok(out, what)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{what}: {e}: {l}")))
        .collect()
}

/// A failed `--json` command: exit 1, and `{"error": {"code", "message"}}` on stdout.
fn json_error(out: &Output, what: &str) -> Value {
    assert_eq!(
        out.status.code(),
        Some(1),
        "{what}: {}\nstdout: {}\nstderr: {}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
    let v: Value = serde_json::from_str(text(&out.stdout).trim())
        .unwrap_or_else(|e| panic!("{what}: the error is not JSON ({e}): {:?}", out));
    assert!(v["error"]["code"].is_string(), "{what}: {v}");
    assert!(v["error"]["message"].is_string(), "{what}: {v}");
    assert_eq!(v.as_object().map(|o| o.len()), Some(1), "{what}: {v}");
    v
}

/// An API error as `--json` prints it.
fn api_error(e: &ApiError) -> Value {
    json!({ "error": { "code": e.code(), "message": e.to_string() } })
}

fn to_json<T: serde::Serialize>(t: &T) -> Value {
    serde_json::to_value(t).expect("serialize")
}

/// Fields that differ between two runs of the same operations (times, the process).
const VOLATILE: &[&str] = &[
    "duration_ms",
    "at_ms",
    "created_at_ms",
    "claimed_at_ms",
    "started_at_ms",
    "completed_at_ms",
    "pid",
    "addr",
    "data_dir",
    "was_idle",
];

fn mask(mut v: Value) -> Value {
    fn walk(v: &mut Value) {
        match v {
            Value::Object(m) => {
                for (k, x) in m.iter_mut() {
                    if VOLATILE.contains(&k.as_str()) {
                        *x = Value::Null;
                    } else {
                        walk(x);
                    }
                }
            }
            Value::Array(a) => a.iter_mut().for_each(walk),
            _ => {}
        }
    }
    walk(&mut v);
    v
}

#[track_caller]
fn same(remote: Value, local: Value, what: &str) {
    let (r, l) = (mask(remote), mask(local));
    assert_eq!(
        r,
        l,
        "{what}: the node process (left) and the in-process node (right) differ:\n{}\n{}",
        serde_json::to_string_pretty(&r).unwrap_or_default(),
        serde_json::to_string_pretty(&l).unwrap_or_default()
    );
}

/// Run a console script on the running node of `dir` (`console --attach --script`).
fn attach(cwd: &Path, dir: &Path, rhai: &str) -> Output {
    let path = cwd.join(format!("attach-{}.rhai", rhai.len()));
    std::fs::write(&path, rhai).expect("write script");
    let d = dir.to_str().expect("utf-8 path");
    let p = path.to_str().expect("utf-8 path");
    cli(
        cwd,
        &["console", "--attach", "--data-dir", d, "--script", p],
    )
}

const SETUP: &str = r#"
agent("a", #{script: [#{text: "one", cost_usd: 0.25}]});
agent("b");
board_worker("dev", "code", #{script: [#{text: "built {prompt}"}]});
"#;

async fn setup_in_process(c: &Client) {
    c.agent(
        "a",
        None,
        script(vec![ScriptStep {
            text: Some("one".into()),
            cost_usd: Some(0.25),
            ..Default::default()
        }]),
    )
    .await
    .expect("agent a");
    c.agent("b", None, AgentOptions::default())
        .await
        .expect("agent b");
    c.board_worker(
        "dev",
        "code",
        WorkerOptions {
            options: script(vec![ScriptStep {
                text: Some("built {prompt}".into()),
                ..Default::default()
            }]),
            ..Default::default()
        },
    )
    .await
    .expect("worker");
}

fn work_options(work_type: &str) -> WorkOptions {
    // What `workshop work add` sends.
    WorkOptions {
        work_type: Some(work_type.into()),
        spec: Some(String::new()),
        priority: Some(3),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_commands_on_a_node_give_what_the_same_operations_give_in_process() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (a_dir, b_dir) = (tmp.path().join("a"), tmp.path().join("b"));
    std::fs::create_dir_all(&a_dir).expect("mkdir");
    let mut node = NodeProcess::start(&a_dir);
    let local = workshop_node::Node::open(&b_dir).await.expect("local node");
    let c = local.client();
    let cwd = tmp.path();
    let d = a_dir.to_str().expect("utf-8");
    let run = |args: &[&str]| {
        let mut all: Vec<&str> = args.to_vec();
        all.extend(["--data-dir", d]);
        cli(cwd, &all)
    };
    let work = |args: &[&str]| {
        let mut all = vec!["work", "--data-dir", d, "--json"];
        all.extend(args);
        cli(cwd, &all)
    };

    ok(
        &attach(cwd, &a_dir, SETUP),
        "setup through console --attach",
    );
    setup_in_process(&c).await;

    same(
        json_of(&run(&["ask", "a", "hi", "--json"]), "ask"),
        to_json(&c.ask("a", "hi").await.expect("ask")),
        "ask",
    );
    same(
        json_of(&run(&["cast", "b", "later", "--json"]), "cast"),
        json!(c.cast("b", "later").await.expect("cast").to_string()),
        "cast",
    );
    same(
        json_of(&run(&["await", "b", "--json"]), "await"),
        to_json(&c.await_agent("b", None).await.expect("await")),
        "await",
    );
    same(
        json_of(&run(&["status", "--json"]), "status"),
        to_json(&c.status().await.expect("status")),
        "status",
    );
    same(
        json_of(&run(&["agents", "--json"]), "agents"),
        to_json(&c.agents().await.expect("agents")),
        "agents",
    );
    assert_eq!(ok(&run(&["agents"]), "agents"), "a\nb\ndev\n");

    // work add / complete (refused on a ready item, then done once claimed) / show.
    same(
        json_of(&work(&["add", "dd", "Write docs", "--type", "docs"]), "add"),
        to_json(
            &c.work("dd", "Write docs", work_options("docs"))
                .await
                .expect("work"),
        ),
        "work add",
    );
    same(
        json_error(&work(&["complete", "dd", "early"]), "complete a ready item"),
        api_error(
            &c.complete_work("dd", Some("early".into()), None)
                .await
                .expect_err("ready"),
        ),
        "work complete of a ready item",
    );
    ok(
        &attach(cwd, &a_dir, r#"claim_work("dd", "me");"#),
        "claim_work",
    );
    c.claim_work("dd", "me").await.expect("claim");
    // Held by "me" on both nodes: settled by force on both.
    same(
        json_of(&work(&["complete", "dd", "written", "--force"]), "complete"),
        to_json(
            &c.complete_work("dd", Some("written".into()), Some(SettleBy::Force))
                .await
                .expect("complete"),
        ),
        "work complete",
    );
    // An item for the board worker.
    same(
        json_of(&work(&["add", "x", "Build X", "--type", "code"]), "add"),
        to_json(
            &c.work("x", "Build X", work_options("code"))
                .await
                .expect("work"),
        ),
        "work add (for the worker)",
    );
    ok(&attach(cwd, &a_dir, r#"await_work("x");"#), "await_work");
    c.await_work("x", Some(LIMIT)).await.expect("await_work");
    let shown = json_of(&work(&["show", "x"]), "show");
    assert_eq!(shown["result"], "built Build X", "{shown}");
    same(
        shown,
        to_json(&c.work_item("x").await.expect("get")),
        "work show",
    );
    same(
        Value::Array(json_lines(&run(&["board", "--json"]), "board")),
        to_json(&c.board(None, None).await.expect("board")),
        "board",
    );
    same(
        json_of(&run(&["workers", "--json"]), "workers"),
        to_json(&c.workers().await.expect("workers")),
        "workers",
    );
    // Each event line also names the node it happened on.
    let node_name = c.node_info().await.expect("node info").name;
    let events: Vec<Value> = json_lines(&run(&["events", "--json", "--last", "100"]), "events")
        .into_iter()
        .map(|mut e| {
            let node = e.as_object_mut().and_then(|o| o.remove("node"));
            assert_eq!(node, Some(json!(node_name)), "{e}");
            e
        })
        .collect();
    same(
        Value::Array(events),
        to_json(&c.events(100, None).await.expect("events")),
        "events",
    );
    let costs: serde_json::Map<String, Value> = c
        .costs()
        .await
        .expect("costs")
        .into_iter()
        .map(|(n, v)| (n.to_string(), json!(v)))
        .collect();
    same(
        json_of(&run(&["cost", "--json"]), "cost"),
        json!({ "agents": costs, "total": c.total_cost().await.expect("total") }),
        "cost",
    );
    // A node of its own: itself, up, holding the board, with the figures the node gives.
    let nodes = json_of(&run(&["nodes", "--json"]), "nodes");
    let info = c.node_info().await.expect("node info");
    assert_eq!(nodes.as_array().map(Vec::len), Some(1), "{nodes}");
    assert_eq!(nodes[0]["addr"], node.addr.as_str(), "{nodes}");
    assert_eq!(nodes[0]["name"], info.name.as_str(), "{nodes}");
    for flag in ["up", "this", "board"] {
        assert_eq!(nodes[0][flag], true, "{flag}: {nodes}");
    }
    assert_eq!(nodes[0]["agents"], info.agents, "{nodes}");
    assert_eq!(nodes[0]["workers"], info.workers, "{nodes}");

    local.shutdown().await;
    let status = node.terminate();
    assert!(status.success(), "{status}: {}", node.stderr());
}

/// Mask what legitimately varies in console output: turn durations.
fn mask_ms(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find(" ms") {
        let head = &rest[..i];
        let digits = head.len() - head.trim_end_matches(|c: char| c.is_ascii_digit()).len();
        out.push_str(&head[..head.len() - digits]);
        out.push_str(if digits > 0 { "N ms" } else { " ms" });
        rest = &rest[i + 3..];
    }
    out.push_str(rest);
    out
}

#[test]
fn console_attach_runs_a_script_as_a_console_on_its_own_node_does() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (a_dir, b_dir) = (tmp.path().join("a"), tmp.path().join("b"));
    std::fs::create_dir_all(&a_dir).expect("mkdir");
    let mut node = NodeProcess::start(&a_dir);
    let script_text = r#"
        agent("a", "You answer.", #{script: [#{text: "one", cost_usd: 0.25}]});
        agent("b");
        ask("a", "hi");
        ask("a", "hi").pipe("b", "Review");
        print(result("b"));
        status();
        info("a");
        work("w", "Write it", #{type: "docs"});
        claim_work("w", "me");
        complete_work("w", "written");
        board();
        print("total=" + total_cost());
        events(50);
    "#;
    let path = tmp.path().join("s.rhai");
    std::fs::write(&path, script_text).expect("write script");
    let p = path.to_str().expect("utf-8");
    let attached = cli(
        tmp.path(),
        &[
            "console",
            "--attach",
            "--data-dir",
            a_dir.to_str().expect("utf-8"),
            "--script",
            p,
        ],
    );
    let own = cli(
        tmp.path(),
        &[
            "console",
            "--no-setup",
            "--data-dir",
            b_dir.to_str().expect("utf-8"),
            "--script",
            p,
        ],
    );
    let (attached, own) = (ok(&attached, "attached"), ok(&own, "own node"));
    assert!(
        attached.contains("Mock response to: Review\n\nMock response to: hi"),
        "{attached}"
    );
    assert!(attached.contains("total="), "{attached}");
    assert_eq!(
        mask_ms(&attached),
        mask_ms(&own),
        "console --attach (left) and a console on its own node (right) differ"
    );
    let status = node.terminate();
    assert!(status.success(), "{status}: {}", node.stderr());
}

#[test]
fn work_and_board_on_the_data_dir_when_no_node_runs_match_the_node() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (on_node, no_node) = (tmp.path().join("node"), tmp.path().join("dir"));
    std::fs::create_dir_all(&on_node).expect("mkdir");
    let mut node = NodeProcess::start(&on_node);
    // `workshop <command> --data-dir D --json [<subcommand> ...]`
    let run = |dir: &Path, args: &[&str]| {
        let mut all = vec![
            args[0],
            "--data-dir",
            dir.to_str().expect("utf-8"),
            "--json",
        ];
        all.extend(&args[1..]);
        cli(tmp.path(), &all)
    };
    for dir in [&on_node, &no_node] {
        ok(
            &run(
                dir,
                &[
                    "work",
                    "add",
                    "cache",
                    "Implement LRU cache",
                    "--type",
                    "code",
                    "--priority",
                    "1",
                ],
            ),
            "add cache",
        );
        ok(
            &run(
                dir,
                &[
                    "work",
                    "add",
                    "review",
                    "Review cache",
                    "--type",
                    "review",
                    "--depends-on",
                    "cache",
                ],
            ),
            "add review",
        );
    }
    let both = |args: &[&str], what: &str| {
        (
            json_of(&run(&on_node, args), what),
            json_of(&run(&no_node, args), what),
        )
    };
    let (n, d) = both(&["work", "show", "cache"], "show");
    assert_eq!(n["status"], "ready", "{n}");
    same(n, d, "work show");
    // No result yet: null either way.
    let (n, d) = both(&["work", "result", "cache"], "result");
    assert_eq!(n, Value::Null);
    same(n, d, "work result");
    let (n, d) = (
        json_lines(&run(&on_node, &["board"]), "board"),
        json_lines(&run(&no_node, &["board"]), "board"),
    );
    assert_eq!(n.len(), 2);
    same(Value::Array(n), Value::Array(d), "board");
    let (n, d) = (
        json_lines(
            &run(&on_node, &["board", "--status", "new"]),
            "board --status",
        ),
        json_lines(
            &run(&no_node, &["board", "--status", "new"]),
            "board --status",
        ),
    );
    assert_eq!(n.len(), 1);
    same(Value::Array(n), Value::Array(d), "board --status new");
    // No node was started for the data dir.
    assert!(!no_node.join("node.endpoint").exists());
    let status = node.terminate();
    assert!(status.success(), "{status}: {}", node.stderr());
}

#[test]
fn work_refusals_on_the_data_dir_match_the_node() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (on_node, no_node) = (tmp.path().join("node"), tmp.path().join("dir"));
    std::fs::create_dir_all(&on_node).expect("mkdir");
    let mut node = NodeProcess::start(&on_node);
    let run = |dir: &Path, args: &[&str]| {
        let mut all = vec![
            args[0],
            "--data-dir",
            dir.to_str().expect("utf-8"),
            "--json",
        ];
        all.extend(&args[1..]);
        cli(tmp.path(), &all)
    };
    for dir in [&on_node, &no_node] {
        ok(
            &run(dir, &["work", "add", "cache", "Cache", "--type", "code"]),
            "add",
        );
    }
    // The same refusals.
    let mut differ = Vec::new();
    for args in [
        &["work", "complete", "cache", "r"][..],
        &["work", "add", "x", "X", "--depends-on", "nope"],
        &["work", "show", "ghost"],
        &["work", "result", "ghost"],
    ] {
        let n = json_error(&run(&on_node, args), "on the node");
        let d = json_error(&run(&no_node, args), "on the data dir");
        if n != d {
            differ.push(format!("{args:?}:\n  node:     {n}\n  data dir: {d}"));
        }
    }
    assert!(
        differ.is_empty(),
        "the node and the data dir refuse differently:\n{}",
        differ.join("\n")
    );
    // Issue 8 item 5: a claimed item is settled with the token its claim printed (or by
    // force); without either the refusal names the holder and both flags, alike on both.
    for dir in [&on_node, &no_node] {
        let claimed = json_of(&run(dir, &["work", "claim", "cache", "me"]), "claim");
        let token = claimed["lease"]["token"].as_u64().expect("a lease token");
        let e = json_error(&run(dir, &["work", "complete", "cache", "r"]), "held");
        assert_eq!(e["error"]["code"], "held", "{e}");
        let message = e["error"]["message"].as_str().expect("message");
        assert!(message.contains("held by me"), "{message}");
        assert!(
            message.contains("--token N") && message.contains("--force"),
            "{message}"
        );
        let both = run(
            dir,
            &["work", "complete", "cache", "r", "--token", "1", "--force"],
        );
        assert_eq!(both.status.code(), Some(2), "a usage error: {both:?}");
        assert!(
            text(&both.stderr).contains("cannot be used with"),
            "{}",
            text(&both.stderr)
        );
        let token = token.to_string();
        let done = json_of(
            &run(dir, &["work", "complete", "cache", "r", "--token", &token]),
            "complete with the token",
        );
        assert_eq!(done["status"], "done", "{done}");
    }
    // The text form prints the token and how to use it.
    let out = cli(
        tmp.path(),
        &[
            "work",
            "--data-dir",
            no_node.to_str().expect("utf-8"),
            "add",
            "t2",
            "T",
        ],
    );
    ok(&out, "add t2");
    let text = ok(
        &cli(
            tmp.path(),
            &[
                "work",
                "--data-dir",
                no_node.to_str().expect("utf-8"),
                "claim",
                "t2",
                "me",
            ],
        ),
        "claim t2",
    );
    assert!(text.contains("lease token: "), "{text}");
    assert!(text.contains("--token"), "{text}");
    let status = node.terminate();
    assert!(status.success(), "{status}: {}", node.stderr());
}

#[test]
fn stop_answers_before_the_node_goes_away() {
    // Several at once, as a loaded machine makes the race between the reply to `stop` and the
    // node closing its port likely.
    let dirs: Vec<_> = (0..4)
        .map(|_| tempfile::tempdir().expect("tempdir"))
        .collect();
    let mut nodes: Vec<_> = dirs.iter().map(|d| NodeProcess::start(d.path())).collect();
    let outs: Vec<Output> = std::thread::scope(|s| {
        let hs: Vec<_> = dirs
            .iter()
            .map(|d| {
                s.spawn(move || {
                    cli(
                        d.path(),
                        &["stop", "--data-dir", d.path().to_str().expect("utf-8")],
                    )
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().expect("join")).collect()
    });
    for n in &mut nodes {
        let status = n.wait();
        assert!(status.success(), "{status}: {}", n.stderr());
    }
    for o in &outs {
        ok(o, "workshop stop");
    }
}

#[test]
fn a_wrong_cookie_is_refused_and_logged_without_the_cookie() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut node = NodeProcess::start(tmp.path());
    let d = tmp.path().to_str().expect("utf-8");
    let out = cli_env(
        tmp.path(),
        &["status", "--data-dir", d],
        &[("WORKSHOP_COOKIE", "wrong")],
    );
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = text(&out.stderr);
    assert!(err.contains("cookie"), "{err}");
    assert!(err.contains(&node.addr), "names the node: {err}");
    assert!(text(&out.stdout).is_empty(), "{}", text(&out.stdout));
    // --json: the error on stdout.
    let secret = "not-the-cookie-5150";
    let out = cli_env(
        tmp.path(),
        &["status", "--data-dir", d, "--json"],
        &[("WORKSHOP_COOKIE", secret)],
    );
    let v = json_error(&out, "status --json with a wrong cookie");
    assert!(
        v["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("cookie")),
        "{v}"
    );
    assert!(
        node.wait_for_line(|l| l.contains("refused a connection from 127.0.0.1:")),
        "no log line naming the peer: {}",
        node.stderr()
    );
    // The right cookie still works.
    let rows = json_of(
        &cli(tmp.path(), &["status", "--data-dir", d, "--json"]),
        "status",
    );
    assert_eq!(rows, json!([]));
    let status = node.terminate();
    let log = node.stderr();
    assert!(status.success(), "{status}: {log}");
    assert!(!log.contains(secret), "the node logged the cookie: {log}");
    assert!(
        !log.contains(&node.cookie),
        "the node logged its cookie: {log}"
    );
}

#[test]
fn no_node_at_an_address_says_so() {
    let tmp = tempfile::tempdir().expect("tempdir");
    // A data dir with a cookie (a node ran there) but no node at the address given.
    let node_dir = tmp.path().join("d");
    std::fs::create_dir_all(&node_dir).expect("mkdir");
    let mut node = NodeProcess::start(&node_dir);
    // A round trip first: the node then handles SIGTERM (see the ignored test at the end).
    let d = node_dir.to_str().expect("utf-8");
    ok(&cli(tmp.path(), &["status", "--data-dir", d]), "status");
    let status = node.terminate();
    assert!(status.success(), "{status}: {}", node.stderr());
    let out = cli(
        tmp.path(),
        &["status", "--node", "127.0.0.1:1", "--data-dir", d],
    );
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        text(&out.stderr).contains("no node at 127.0.0.1:1"),
        "{}",
        text(&out.stderr)
    );
    let v = json_error(
        &cli(
            tmp.path(),
            &["agents", "--node", "127.0.0.1:1", "--data-dir", d, "--json"],
        ),
        "agents --json",
    );
    assert_eq!(v["error"]["code"], "no_node", "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("no node at 127.0.0.1:1")),
        "{v}"
    );
    // The node stopped cleanly: no endpoint left, so the data dir has no node either.
    let v = json_error(
        &cli(tmp.path(), &["status", "--data-dir", d, "--json"]),
        "status --json",
    );
    assert_eq!(v["error"]["code"], "no_node", "{v}");
    // `board --node` does not fall back to a data dir.
    let out = cli(
        tmp.path(),
        &["board", "--node", "127.0.0.1:1", "--data-dir", d],
    );
    assert_eq!(out.status.code(), Some(1), "{out:?}");
}

#[test]
fn no_node_at_an_address_says_so_even_without_a_cookie() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = cli(tmp.path(), &["status", "--node", "127.0.0.1:1"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        text(&out.stderr).contains("no node at 127.0.0.1:1"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn a_stale_endpoint_after_kill_9_means_no_node_and_board_reads_the_data_dir() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut node = NodeProcess::start(tmp.path());
    let d = tmp.path().to_str().expect("utf-8");
    ok(
        &cli(
            tmp.path(),
            &[
                "work",
                "--data-dir",
                d,
                "add",
                "k",
                "Keep me",
                "--type",
                "docs",
            ],
        ),
        "work add on the node",
    );
    node.kill9();
    assert!(
        tmp.path().join("node.endpoint").exists(),
        "kill -9 leaves the endpoint file"
    );
    let out = cli(tmp.path(), &["status", "--data-dir", d]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        text(&out.stderr).contains(&format!("no node at {}", node.addr)),
        "{}",
        text(&out.stderr)
    );
    let v = json_error(
        &cli(tmp.path(), &["agents", "--data-dir", d, "--json"]),
        "agents --json",
    );
    assert_eq!(v["error"]["code"], "no_node", "{v}");
    let items = json_lines(
        &cli(tmp.path(), &["board", "--data-dir", d, "--json"]),
        "board on the data dir",
    );
    assert_eq!(items.len(), 1, "{items:?}");
    assert_eq!(items[0]["id"], "k");
    assert_eq!(items[0]["status"], "ready");
    let out = cli(tmp.path(), &["board", "--data-dir", d]);
    assert!(
        ok(&out, "board").contains("[ready] k - Keep me [docs]"),
        "{}",
        text(&out.stdout)
    );
}

/// Whether `pid` runs (a zombie does not count).
fn alive(pid: u32) -> bool {
    workshop_node::cluster::pid_alive(pid)
}

/// Stops a detached node if the test fails before `workshop stop` did.
struct Detached(u32);

impl Drop for Detached {
    fn drop(&mut self) {
        if alive(self.0) {
            let _ = std::process::Command::new("kill")
                .arg(self.0.to_string())
                .status();
            let deadline = std::time::Instant::now() + LIMIT;
            while alive(self.0) && std::time::Instant::now() < deadline {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
        }
    }
}

#[test]
fn node_detach_then_stop() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let d = tmp.path().to_str().expect("utf-8");
    let out = cli(
        tmp.path(),
        &["node", "--detach", "--no-setup", "--data-dir", d],
    );
    let said = ok(&out, "node --detach");
    let endpoint = std::fs::read_to_string(tmp.path().join("node.endpoint")).expect("endpoint");
    let pid: u32 = endpoint
        .lines()
        .find_map(|l| l.strip_prefix("pid="))
        .and_then(|p| p.parse().ok())
        .expect("pid in the endpoint file");
    let guard = Detached(pid);
    assert!(said.contains(&format!("pid {pid}")), "{said}");
    assert!(alive(pid));
    let rows = json_of(
        &cli(tmp.path(), &["status", "--data-dir", d, "--json"]),
        "status",
    );
    assert_eq!(rows, json!([]));
    let out = cli(tmp.path(), &["stop", "--data-dir", d]);
    let said = ok(&out, "stop");
    assert!(said.contains(&format!("(pid {pid})")), "{said}");
    // `stop` returns once the process is gone.
    assert!(!alive(pid), "pid {pid} still runs after `workshop stop`");
    assert!(!tmp.path().join("node.endpoint").exists(), "endpoint left");
    assert!(!tmp.path().join("node.pid").exists(), "pid file left");
    let log = std::fs::read_to_string(tmp.path().join("node.log")).expect("node.log");
    assert!(log.contains("workshop node stopped."), "{log}");
    drop(guard);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_with_a_board_worker_mid_item_exits_0_and_loses_no_item() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut node = NodeProcess::start(tmp.path());
    {
        let c = node.client().await;
        let mut ev = c.watch().await.expect("watch");
        c.board_worker(
            "dev",
            "code",
            WorkerOptions {
                options: script(vec![ScriptStep {
                    hang: true,
                    ..Default::default()
                }]),
                ..Default::default()
            },
        )
        .await
        .expect("worker");
        c.work("x", "Never ends", work_options("code"))
            .await
            .expect("work x");
        next_event(&mut ev, "the worker to start x", |e| {
            e.line == "[board_worker] dev started x"
        })
        .await;
        c.work("y", "Waits its turn", work_options("code"))
            .await
            .expect("work y");
        c.work("z", "Done by hand", work_options("docs"))
            .await
            .expect("work z");
        let claim = c.claim_work("z", "me").await.expect("claim");
        c.complete_work("z", Some("ok".into()), claim.token().map(SettleBy::Token))
            .await
            .expect("complete");
    }
    let status = node.terminate();
    let log = node.stderr();
    assert!(status.success(), "SIGTERM: {status}\n{log}");
    assert!(log.contains("workshop node stopped."), "{log}");
    assert!(!log.contains("panicked"), "{log}");
    // The board as the node left it (no node runs: `board` reads the data dir).
    let d = tmp.path().to_str().expect("utf-8");
    let items = json_lines(
        &cli(tmp.path(), &["board", "--data-dir", d, "--json"]),
        "board",
    );
    let status_of = |id: &str| {
        items
            .iter()
            .find(|i| i["id"] == id)
            .unwrap_or_else(|| panic!("item {id} lost: {items:?}"))["status"]
            .clone()
    };
    assert_eq!(status_of("x"), "ready", "the item in flight: {items:?}");
    assert_eq!(status_of("y"), "ready", "{items:?}");
    assert_eq!(status_of("z"), "done", "{items:?}");
    // After a restart, the node has them all.
    let mut node = NodeProcess::start(tmp.path());
    let c = node.client().await;
    for id in ["x", "y", "z"] {
        let item = c.work_item(id).await.expect("get").expect("item");
        assert!(
            matches!(
                item.status,
                Status::Ready | Status::Done | Status::Claimed | Status::InProgress
            ),
            "{id}: {item:?}"
        );
    }
    drop(c);
    let status = node.terminate();
    assert!(status.success(), "{status}: {}", node.stderr());
}

#[test]
fn sigterm_right_after_listening_stops_gracefully() {
    // Several at once: the window is short, a loaded machine widens it.
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                for _ in 0..3 {
                    let tmp = tempfile::tempdir().expect("tempdir");
                    let mut node = NodeProcess::start(tmp.path());
                    let status = node.terminate();
                    let log = node.stderr();
                    assert!(status.success(), "{status}: {log}");
                    assert!(log.contains("workshop node stopped."), "{log}");
                }
            });
        }
    });
}

/// A damaged endpoint file is named as such (not "no endpoint file"), and an address that is
/// not one says why; both in `--json` as `no_node`.
#[test]
fn a_damaged_endpoint_file_or_a_bad_address_is_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join(".workshop");
    std::fs::create_dir_all(&data).expect("data dir");
    std::fs::write(data.join("node.endpoint"), "not an endpoint\n").expect("endpoint");
    let v = json_error(&cli(dir.path(), &["status", "--json"]), "damaged endpoint");
    assert_eq!(v["error"]["code"], "no_node", "{v}");
    let m = v["error"]["message"].as_str().unwrap_or_default();
    assert!(m.contains("node.endpoint is damaged"), "{m}");
    let v = json_error(
        &cli(
            dir.path(),
            &["status", "--json", "--node", "not-an-address"],
        ),
        "bad address",
    );
    assert_eq!(v["error"]["code"], "no_node", "{v}");
    let m = v["error"]["message"].as_str().unwrap_or_default();
    assert!(
        m.contains("not-an-address") && m.contains("invalid socket address"),
        "{m}"
    );
}

/// `workshop board backup DIR` on a running node writes a board that a node started on a data
/// dir whose `board` is the backup opens with the same items; a relative or non-empty DIR is
/// refused with the reason.
#[test]
fn board_backup_of_a_running_node_restores_on_a_new_node() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let live = tmp.path().join("live");
    std::fs::create_dir_all(&live).expect("mkdir");
    let mut node = NodeProcess::start(&live);
    let d = live.to_str().expect("utf-8");
    for (id, title) in [("a", "First"), ("b", "Second"), ("c", "Third")] {
        ok(
            &cli(
                tmp.path(),
                &["work", "--data-dir", d, "add", id, title, "--type", "docs"],
            ),
            "work add",
        );
    }
    ok(
        &cli(tmp.path(), &["work", "--data-dir", d, "cancel", "b"]),
        "work cancel",
    );
    let board_before = json_lines(
        &cli(tmp.path(), &["board", "--data-dir", d, "--json"]),
        "board",
    );
    let backup = tmp.path().join("backup");
    let b = backup.to_str().expect("utf-8");
    let out = ok(
        &cli(tmp.path(), &["board", "backup", b, "--data-dir", d]),
        "board backup",
    );
    assert!(
        out.contains("board backed up on node ")
            && out.contains(&format!("3 items, 0 result parts, at {b}")),
        "{out}"
    );
    // Again into the same (now non-empty) directory, and a relative one: refused.
    let v = json_error(
        &cli(
            tmp.path(),
            &["board", "backup", b, "--data-dir", d, "--json"],
        ),
        "backup into a non-empty dir",
    );
    let message = v["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("not empty"), "{v}");
    let out = cli(tmp.path(), &["board", "backup", "rel", "--data-dir", d]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(text(&out.stderr).contains("absolute"), "{out:?}");
    // --json names the node and the counts.
    let second = tmp.path().join("second");
    let v = json_of(
        &cli(
            tmp.path(),
            &[
                "board",
                "backup",
                second.to_str().expect("utf-8"),
                "--data-dir",
                d,
                "--json",
            ],
        ),
        "board backup --json",
    );
    assert_eq!(v["items"], json!(3), "{v}");
    assert_eq!(v["parts"], json!(0), "{v}");
    assert!(v["node"].is_string(), "{v}");
    node.terminate();

    // Restore: a new data dir whose `board` is the backup.
    let restored = tmp.path().join("restored");
    std::fs::create_dir_all(&restored).expect("mkdir");
    std::fs::rename(&backup, restored.join("board")).expect("move the backup in place");
    let mut node = NodeProcess::start(&restored);
    let r = restored.to_str().expect("utf-8");
    let board_after = json_lines(
        &cli(tmp.path(), &["board", "--data-dir", r, "--json"]),
        "board on the restored node",
    );
    assert_eq!(board_after, board_before);
    node.terminate();
}

/// Logs written to a pipe or a file (a daemon's node.log, journald, docker logs) carry no
/// terminal colour codes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_to_a_pipe_carry_no_colour_codes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut node =
        NodeProcess::start_with(dir.path(), &["--no-setup"], &[("WORKSHOP_LOG", "info")]);
    let c = node.client().await;
    c.agent("a", None, Default::default()).await.expect("agent");
    let status = node.terminate();
    let log = node.stderr();
    assert!(status.success(), "{log}");
    assert!(log.contains("INFO"), "the node logged at info: {log}");
    assert!(
        !log.contains('\u{1b}'),
        "colour codes in a piped log: {log:?}"
    );
}

/// `workshop board` on a data dir it cannot open says what is wrong there, and gives advice
/// only where it helps: a board held by a node (whose endpoint file is gone) is reached with
/// --node; a damaged path gets no advice about consoles.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn board_on_a_data_dir_it_cannot_open_gives_only_advice_that_helps() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let broken = tmp.path().join("broken");
    std::fs::create_dir_all(&broken).expect("dir");
    std::fs::write(broken.join("board"), "not a directory").expect("file");
    let out = workshop()
        .args(["board", "--data-dir"])
        .arg(&broken)
        .output()
        .expect("run");
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(err.contains("is not a directory"), "{err}");
    assert!(!err.contains("console"), "{err}");

    let held = tmp.path().join("held");
    std::fs::create_dir_all(&held).expect("dir");
    let mut node = NodeProcess::start(&held);
    std::fs::remove_file(held.join("node.endpoint")).expect("endpoint");
    let out = workshop()
        .args(["board", "--data-dir"])
        .arg(&held)
        .output()
        .expect("run");
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains("another process holds the board database")
            && err.contains("--node HOST:PORT"),
        "{err}"
    );
    assert!(!err.contains("console"), "{err}");
    assert!(node.terminate().success());
}
