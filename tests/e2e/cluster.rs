//! A cluster of real node processes on loopback: a board node and two worker nodes that join
//! it. Items posted on one node run on the others; an agent on one node is asked from another;
//! a killed worker node's item runs elsewhere after its lease; a wrong cookie is refused; a
//! restarted board node loses no acknowledged item and the workers carry on by themselves.

use std::time::Duration;

use workshop_node::{Client, WorkOptions, WorkerOptions};
use workshop_types::board::Status;
use workshop_types::{AgentOptions, ScriptStep, Topic};

use crate::support::{cost, say, script, within, NodeProcess};

const COOKIE: &str = "cluster-test-cookie-0123456789abcdef";

/// Start node `name` in its own data dir; `board` is the board node's address (None: this is
/// the board node).
fn start(root: &std::path::Path, name: &str, board: Option<(&str, &str)>) -> NodeProcess {
    start_at(root, name, board, None)
}

fn start_at(
    root: &std::path::Path,
    name: &str,
    board: Option<(&str, &str)>,
    listen: Option<&str>,
) -> NodeProcess {
    let dir = root.join(name);
    std::fs::create_dir_all(&dir).expect("node dir");
    let mut args = vec!["--no-setup", "--name", name];
    if let Some(l) = listen {
        args.extend(["--listen", l]);
    }
    if let Some((board_name, addr)) = board {
        args.extend(["--board", board_name, "--peer", addr]);
    }
    NodeProcess::start_with(&dir, &args, &[("WORKSHOP_COOKIE", COOKIE)])
}

/// Wait until `client`'s node sees every node in `names` up (following its `node` events).
async fn until_up(client: &Client, names: &[&str]) {
    within("the cluster to form", async {
        loop {
            let nodes = client.nodes().await.expect("nodes");
            let up = |n: &str| nodes.iter().any(|s| s.name == n && s.up);
            if names.iter().all(|n| up(n)) {
                return;
            }
            let after = client
                .events(1, None)
                .await
                .expect("events")
                .last()
                .map(|e| e.seq)
                .unwrap_or(0);
            // Wakes on the next node event (or after a second, to look again).
            let _ = client
                .events_after(after, Some(Topic::Node), Duration::from_secs(1))
                .await;
        }
    })
    .await
}

fn worker(steps: Vec<ScriptStep>, lease_ms: Option<u64>) -> WorkerOptions {
    WorkerOptions {
        profile: None,
        options: script(steps),
        interval_ms: Some(60_000),
        worktree: false,
        lease_ms,
    }
}

fn typed(t: &str) -> WorkOptions {
    WorkOptions {
        work_type: Some(t.into()),
        ..Default::default()
    }
}

async fn done(client: &Client, id: &str) -> workshop_types::board::WorkItem {
    let item = within(&format!("{id} to settle"), client.await_work(id, None))
        .await
        .unwrap_or_else(|e| panic!("await {id}: {e}"));
    assert_eq!(item.status, Status::Done, "{item:?}");
    item
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn items_posted_on_one_node_run_on_the_others_and_agents_are_reached_by_name() {
    let root = tempfile::tempdir().expect("tempdir");
    let n1 = start(root.path(), "n1", None);
    let n2 = start(root.path(), "n2", Some(("n1", &n1.addr)));
    let n3 = start(root.path(), "n3", Some(("n1", &n1.addr)));
    let (c1, c2, c3) = (n1.client().await, n2.client().await, n3.client().await);
    until_up(&c1, &["n2", "n3"]).await;
    // n2 and n3 met through n1.
    until_up(&c2, &["n1", "n3"]).await;
    until_up(&c3, &["n1", "n2"]).await;

    let nodes = c3.nodes().await.expect("nodes");
    assert_eq!(nodes[0].name, "n3");
    assert!(nodes[0].this);
    assert!(nodes.iter().any(|n| n.name == "n1" && n.board), "{nodes:?}");

    // Workers on n2 and n3 only; the items are posted on n1 and awaited from n3.
    c2.board_worker("w2", "code", worker(vec![say("w2 did {prompt}")], None))
        .await
        .expect("worker on n2");
    c3.board_worker("w3", "code", worker(vec![say("w3 did {prompt}")], None))
        .await
        .expect("worker on n3");
    for i in 0..6 {
        c1.work(&format!("t{i}"), &format!("task {i}"), typed("code"))
            .await
            .expect("post");
    }
    for i in 0..6 {
        let item = done(&c3, &format!("t{i}")).await;
        assert!(
            matches!(item.claimed_by.as_deref(), Some("w2" | "w3")),
            "{item:?}"
        );
    }
    let counts = c2.board_counts().await.expect("counts from n2");
    assert_eq!(counts.get(&Status::Done).copied().unwrap_or(0), 6);

    // An agent placed on n2 is asked from n3 and listed with its node.
    c1.agent_on(
        "n2",
        "alpha",
        None,
        script(vec![say("alpha here: {prompt}")]),
    )
    .await
    .expect("place alpha on n2");
    let r = c3.ask("alpha", "hello").await.expect("ask alpha from n3");
    assert_eq!(r.text, "alpha here: hello");
    let status = c3.cluster_status().await.expect("cluster status");
    let on = |node: &str| {
        status
            .iter()
            .find(|n| n.node == node)
            .map(|n| n.rows.iter().any(|r| r.name.as_str() == "alpha"))
            .unwrap_or(false)
    };
    assert!(on("n2") && !on("n1") && !on("n3"), "{status:?}");
    assert!(c1
        .agents()
        .await
        .expect("agents")
        .iter()
        .any(|a| a.as_str() == "alpha"));

    // Creating `alpha` on n3 replaces the one on n2: one name, one agent in the cluster.
    c3.agent("alpha", None, script(vec![say("new alpha")]))
        .await
        .expect("re-create alpha on n3");
    let names = c2.name_table().await.expect("names");
    assert!(
        names.contains(&("alpha".to_string(), "n3".to_string())),
        "{names:?}"
    );
    let status = c1.cluster_status().await.expect("cluster status");
    let holders: Vec<&str> = status
        .iter()
        .filter(|n| n.rows.iter().any(|r| r.name.as_str() == "alpha"))
        .map(|n| n.node.as_str())
        .collect();
    assert_eq!(holders, vec!["n3"], "{status:?}");
    assert_eq!(c2.ask("alpha", "x").await.expect("ask").text, "new alpha");

    // Events of every node, tagged with their node.
    let evs = c1.cluster_events(500, None).await.expect("events");
    assert!(
        evs.iter()
            .any(|e| e.node == "n2" && e.event.line.contains("w2")),
        "no n2 events"
    );
    drop((n1, n2, n3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_worker_nodes_item_runs_elsewhere_after_its_lease() {
    let root = tempfile::tempdir().expect("tempdir");
    let n1 = start(root.path(), "n1", None);
    let mut n2 = start(root.path(), "n2", Some(("n1", &n1.addr)));
    let c1 = n1.client().await;
    let c2 = n2.client().await;
    until_up(&c1, &["n2"]).await;
    // n2's worker never finishes its turn; its lease is 1 s.
    let hang = ScriptStep {
        hang: true,
        ..Default::default()
    };
    c2.board_worker("stuck", "code", worker(vec![hang], Some(1000)))
        .await
        .expect("worker on n2");
    c1.work("job", "the job", typed("code"))
        .await
        .expect("post");
    // Wait until n2 holds it, then kill n2 outright.
    within("n2 to claim the job", async {
        loop {
            let item = c1.work_item("job").await.expect("get").expect("exists");
            if matches!(item.status, Status::Claimed | Status::InProgress) {
                return;
            }
            let _ = c1
                .events_after(0, Some(Topic::Work), Duration::from_millis(200))
                .await;
        }
    })
    .await;
    drop(c2);
    n2.kill9();
    // A worker on n3 (started after the kill) gets the item once the lease has run out.
    let n3 = start(root.path(), "n3", Some(("n1", &n1.addr)));
    let c3 = n3.client().await;
    until_up(&c3, &["n1"]).await;
    c3.board_worker("fresh", "code", worker(vec![say("finished")], None))
        .await
        .expect("worker on n3");
    let item = done(&c1, "job").await;
    assert_eq!(item.result.as_deref(), Some("finished"));
    assert_eq!(item.lease_expiries, 1, "{item:?}");
    assert_eq!(item.claimed_by.as_deref(), Some("fresh"), "{item:?}");
    drop((n1, n3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_with_the_wrong_cookie_is_refused_with_a_clear_log_line() {
    let root = tempfile::tempdir().expect("tempdir");
    let n1 = start(root.path(), "n1", None);
    let dir = root.path().join("bad");
    std::fs::create_dir_all(&dir).expect("dir");
    let bad = NodeProcess::start_with(
        &dir,
        &[
            "--no-setup",
            "--name",
            "bad",
            "--board",
            "n1",
            "--peer",
            &n1.addr,
        ],
        &[("WORKSHOP_COOKIE", "not-the-cluster-cookie")],
    );
    assert!(
        bad.wait_for_line(|l| l.contains("wrong cookie")),
        "the joining node did not say why: {}",
        bad.stderr()
    );
    assert!(
        n1.wait_for_line(|l| l.contains("refused a connection")),
        "the board node did not log the refusal: {}",
        n1.stderr()
    );
    let nodes = n1.client().await.nodes().await.expect("nodes");
    assert_eq!(nodes.len(), 1, "{nodes:?}");
    drop((n1, bad));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_board_node_loses_no_item_and_workers_carry_on() {
    let root = tempfile::tempdir().expect("tempdir");
    let mut n1 = start(root.path(), "n1", None);
    let addr = n1.addr.clone();
    let n2 = start(root.path(), "n2", Some(("n1", &addr)));
    let c2 = n2.client().await;
    until_up(&c2, &["n1"]).await;
    c2.board_worker("w", "code", worker(vec![say("ok {prompt}")], None))
        .await
        .expect("worker");
    for i in 0..5 {
        c2.work(&format!("a{i}"), "before", typed("custom:later"))
            .await
            .expect("post before the restart");
    }
    n1.terminate();
    // While the board node is away, n2 says so instead of hanging.
    let err = c2
        .work("x", "while away", typed("code"))
        .await
        .expect_err("no board");
    assert!(err.to_string().contains("n1"), "{err}");
    let n1 = start_at(root.path(), "n1", None, Some(&addr));
    let c1 = n1.client().await;
    until_up(&c2, &["n1"]).await;
    // Nothing acknowledged before the restart is lost...
    for i in 0..5 {
        let item = c1
            .work_item(&format!("a{i}"))
            .await
            .expect("get")
            .expect("kept");
        assert_eq!(item.status, Status::Ready);
    }
    // ...and n2's worker claims new items without being told.
    for i in 0..3 {
        c1.work(&format!("b{i}"), "after", typed("code"))
            .await
            .expect("post after the restart");
    }
    for i in 0..3 {
        done(&c2, &format!("b{i}")).await;
    }
    drop((n1, n2));
}

/// Wait (bounded) until `client`'s node counts at least `usd` spent in the cluster. The ledger
/// has no event of its own, so this looks again every few milliseconds.
async fn until_spent(client: &Client, usd: f64) {
    within(&format!("the ledger to reach {usd}"), async {
        loop {
            let b = client.budget().await.expect("budget");
            if b.spent >= usd - 1e-9 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_global_budget_is_one_ledger_for_the_cluster() {
    let root = tempfile::tempdir().expect("tempdir");
    let n1 = start(root.path(), "n1", None);
    let n2 = start(root.path(), "n2", Some(("n1", &n1.addr)));
    let n3 = start(root.path(), "n3", Some(("n1", &n1.addr)));
    let (c1, c2, c3) = (n1.client().await, n2.client().await, n3.client().await);
    until_up(&c1, &["n2", "n3"]).await;
    until_up(&c2, &["n3"]).await;
    // Set on n1, it applies on every node.
    c1.configure(None, AgentOptions::default(), Some(1.0))
        .await
        .expect("configure");
    assert_eq!(c3.budget().await.expect("budget").limit, Some(1.0));
    c1.agent_on(
        "n2",
        "a2",
        None,
        script(vec![cost(0.6), cost(0.6), cost(0.6)]),
    )
    .await
    .expect("a2 on n2");
    c1.agent_on("n3", "a3", None, script(vec![cost(0.6), cost(0.6)]))
        .await
        .expect("a3 on n3");
    c1.ask("a2", "one").await.expect("first turn");
    until_spent(&c3, 0.6).await;
    // n3 has spent nothing itself, but the cluster has spent 0.6 of 1.0: one more turn.
    c1.ask("a3", "two").await.expect("second turn");
    until_spent(&c2, 1.2).await;
    // n2 has spent 0.6 itself; with n3's 0.6 the cluster is over its budget.
    let refused = c1.ask("a2", "three").await.expect_err("over budget");
    assert!(refused.to_string().contains("budget"), "{refused}");
    let b = c1.budget().await.expect("budget");
    assert!((b.spent - 1.2).abs() < 1e-9, "{b:?}");
    drop((n1, n2, n3));
}

/// A CA and a certificate for `names` (each valid for 127.0.0.1), made with openssl in `dir`.
fn make_certs(dir: &std::path::Path, names: &[&str]) {
    let run = |args: &[&str]| {
        let out = std::process::Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("run openssl");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(&[
        "req",
        "-x509",
        "-new",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=test CA",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
    ]);
    for n in names {
        std::fs::write(
            dir.join(format!("{n}.ext")),
            "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth,clientAuth\nsubjectAltName=IP:127.0.0.1\n",
        )
        .expect("ext file");
        run(&[
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-subj",
            &format!("/CN={n}"),
            "-keyout",
            &format!("{n}.key"),
            "-out",
            &format!("{n}.csr"),
        ]);
        run(&[
            "x509",
            "-req",
            "-in",
            &format!("{n}.csr"),
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-sha256",
            "-extfile",
            &format!("{n}.ext"),
            "-out",
            &format!("{n}.pem"),
        ]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_and_clients_speak_tls_and_a_plain_client_is_refused() {
    let root = tempfile::tempdir().expect("tempdir");
    let certs = root.path().join("certs");
    std::fs::create_dir_all(&certs).expect("certs dir");
    make_certs(&certs, &["n1", "n2", "cli"]);
    let tls_args = |n: &str| -> Vec<String> {
        vec![
            "--tls-cert".into(),
            certs.join(format!("{n}.pem")).display().to_string(),
            "--tls-key".into(),
            certs.join(format!("{n}.key")).display().to_string(),
            "--tls-ca".into(),
            certs.join("ca.pem").display().to_string(),
        ]
    };
    let start_tls = |name: &str, board: Option<&str>| {
        let dir = root.path().join(name);
        std::fs::create_dir_all(&dir).expect("node dir");
        let mut args: Vec<String> = vec!["--no-setup".into(), "--name".into(), name.into()];
        args.extend(tls_args(name));
        if let Some(addr) = board {
            args.extend(["--board".into(), "n1".into(), "--peer".into(), addr.into()]);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        NodeProcess::start_with(&dir, &args, &[("WORKSHOP_COOKIE", COOKIE)])
    };
    let n1 = start_tls("n1", None);
    let n2 = start_tls("n2", Some(&n1.addr));
    let tls = workshop_node::cluster::TlsOptions {
        cert: certs.join("cli.pem"),
        key: certs.join("cli.key"),
        ca: certs.join("ca.pem"),
    };
    let c1 = within(
        "a TLS client",
        Client::connect_tls(&n1.addr, COOKIE.into(), &tls),
    )
    .await
    .expect("connect over TLS");
    until_up(&c1, &["n2"]).await;
    c1.agent_on("n2", "sec", None, script(vec![say("over tls")]))
        .await
        .expect("agent on n2");
    assert_eq!(
        c1.ask("sec", "hi").await.expect("ask over TLS").text,
        "over tls"
    );
    // The CLI finds the TLS files in the node's endpoint file.
    let out = crate::support::workshop()
        .args(["nodes", "--json", "--data-dir"])
        .arg(&n1.dir)
        .env("WORKSHOP_COOKIE", COOKIE)
        .output()
        .expect("workshop nodes");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let nodes: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(nodes.as_array().map(Vec::len), Some(2), "{nodes}");
    // A client without TLS never gets in.
    let plain = tokio::time::timeout(
        Duration::from_secs(15),
        Client::connect(&n2.addr, COOKIE.into()),
    )
    .await;
    assert!(
        !matches!(plain, Ok(Ok(_))),
        "a plain client was let in to a TLS node"
    );
    drop((c1, n1, n2));
}

/// An MCP host on one node runs the fleet of the whole cluster: through n2's MCP server (the
/// Python SDK), an agent is placed on n1 and asked, an item posted, and every node's agents
/// listed; n1 holds the agent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_mcp_host_on_one_node_runs_agents_on_another() {
    workshop_test_support::python_mcp::python();
    let root = tempfile::tempdir().expect("tempdir");
    let n1 = start(root.path(), "n1", None);
    let n2 = start(root.path(), "n2", Some(("n1", &n1.addr)));
    let (c1, c2) = (n1.client().await, n2.client().await);
    until_up(&c1, &["n2"]).await;
    until_up(&c2, &["n1"]).await;
    let plan = serde_json::json!([
        { "tool": "create_agent", "arguments": { "name": "far", "backend": "script", "node": "n1" } },
        { "tool": "ask", "arguments": { "agent": "far", "prompt": "from n2's MCP" } },
        { "tool": "add_work", "arguments": { "id": "m1", "title": "Posted over MCP on n2" } },
        { "tool": "status", "arguments": {} },
        { "tool": "nodes", "arguments": {} },
    ]);
    let args = ["--url", &n2.mcp_url(), "--mode", "auto"].map(String::from);
    let lines = crate::mcp_clients::python_client(&args, &plan).await;
    let step = |i: usize| {
        let l = &lines[i + 1];
        assert_eq!(l["is_error"], false, "step {i}: {l}");
        l
    };
    assert_eq!(step(0)["text"], "Agent far created on n1.");
    assert_eq!(step(1)["text"], "Mock response to: from n2's MCP");
    let rows = step(3)["structured"]["agents"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(
        rows.iter().any(|r| r["name"] == "far" && r["node"] == "n1"),
        "{rows:?}"
    );
    let nodes = step(4)["text"].as_str().unwrap_or("");
    assert!(
        nodes.contains("n2 (this node): up") && nodes.contains("n1: up"),
        "{nodes}"
    );
    // n1 holds the agent and the item is on the cluster's board.
    let status = c1.cluster_status().await.expect("status");
    let n1_rows = status
        .iter()
        .find(|n| n.node == "n1")
        .map(|n| n.rows.clone())
        .unwrap_or_default();
    assert!(
        n1_rows
            .iter()
            .any(|r| r.name.as_str() == "far" && r.turns == 1),
        "{status:?}"
    );
    let item = c1
        .work_item("m1")
        .await
        .expect("get")
        .expect("m1 on the board");
    assert_eq!(item.title, "Posted over MCP on n2");
}
