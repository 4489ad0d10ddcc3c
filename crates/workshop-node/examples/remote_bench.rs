//! The client boundary's costs (issue 9), each next to a baseline measured in the same run:
//!
//! - `ask` through a remote `Client` (ractor_cluster over loopback TCP to a durable node in this
//!   process) against a bare ractor_cluster remote call (an echo actor reached through the same
//!   kind of session): target p50 ≤ 2× the bare call. Also printed: `ask` through the
//!   in-process `Client`, and `agents()` through the remote one (a request no agent sees).
//!   `--ephemeral` runs the node without a data dir (it writes no endpoint file, so not with
//!   `--bin`).
//! - with `--bin PATH` (the `workshop` binary): `workshop status` against the running node as a
//!   whole process, wall time (process start + connect + authenticate + call + exit): target
//!   p50 ≤ 50 ms. Its baseline is the same binary's `--version` (process start alone).
//!
//! ```text
//! cargo build --release -p workshop-cli
//! cargo run --release -p workshop-node --example remote_bench -- [--asks 5000] [--ephemeral] [--bin target/release/workshop] [--runs 100]
//! ```

use std::time::{Duration, Instant};

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use ractor_cluster_derive::RactorClusterMessage;
use workshop_node::{Client, Node};
use workshop_types::{AgentOptions, ScriptStep};

type AnyErr = Box<dyn std::error::Error + Send + Sync>;

const ECHO_GROUP: &str = "bench.echo";

struct Echo;

#[derive(RactorClusterMessage)]
enum EchoMsg {
    #[rpc]
    Echo(u64, RpcReplyPort<u64>),
}

impl Actor for Echo {
    type Msg = EchoMsg;
    type State = ();
    type Arguments = ();

    async fn pre_start(&self, me: ActorRef<EchoMsg>, _: ()) -> Result<(), ActorProcessingErr> {
        ractor::pg::join_scoped(
            workshop_node::cluster::DEFAULT_SCOPE.to_string(),
            ECHO_GROUP.to_string(),
            vec![me.get_cell()],
        );
        Ok(())
    }

    async fn handle(
        &self,
        _: ActorRef<EchoMsg>,
        msg: EchoMsg,
        _: &mut (),
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            EchoMsg::Echo(n, reply) => {
                let _ = reply.send(n);
            }
        }
        Ok(())
    }
}

fn arg<T: std::str::FromStr>(args: &[String], name: &str, default: T) -> T {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

struct Stats {
    p50: f64,
    p90: f64,
    mean: f64,
}

fn stats(mut v: Vec<Duration>) -> Stats {
    v.sort();
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    let n = v.len().max(1);
    Stats {
        p50: v.get(n / 2).map(|d| us(*d)).unwrap_or(0.0),
        p90: v.get(n * 9 / 10).map(|d| us(*d)).unwrap_or(0.0),
        mean: v.iter().map(|d| us(*d)).sum::<f64>() / n as f64,
    }
}

fn row(label: &str, s: &Stats, base: &Stats, unit: &str) {
    let div = if unit == "ms" { 1000.0 } else { 1.0 };
    println!(
        "{label:<44} p50 {:>9.1} {unit}  p90 {:>9.1} {unit}  mean {:>9.1} {unit}  p50 ratio {:>5.2}",
        s.p50 / div,
        s.p90 / div,
        s.mean / div,
        s.p50 / base.p50
    );
}

#[tokio::main]
async fn main() -> Result<(), AnyErr> {
    let args: Vec<String> = std::env::args().collect();
    let asks: usize = arg(&args, "--asks", 5000);
    let runs: usize = arg(&args, "--runs", 100);
    let bin: Option<String> = arg(&args, "--bin", String::new()).into();
    let bin = bin.filter(|b| !b.is_empty());

    let dir = tempfile::tempdir()?;
    let ephemeral = args.iter().any(|a| a == "--ephemeral");
    let mut node = if ephemeral {
        Node::start().await?
    } else {
        Node::open(dir.path()).await?
    };
    let cookie = workshop_node::cluster::cookie(Some(dir.path()), true)?;
    let addr = node.listen("127.0.0.1:0".parse()?, cookie.clone()).await?;
    let (_echo, _) = Actor::spawn(None, Echo, ()).await?;

    let remote = Client::connect(&addr.to_string(), cookie).await?;
    let local = node.client();
    let echo: ActorRef<EchoMsg> = ractor::pg::get_scoped_members(
        &workshop_node::cluster::DEFAULT_SCOPE.to_string(),
        &ECHO_GROUP.to_string(),
    )
    .into_iter()
    .find(|c| !c.get_id().is_local())
    .map(ActorRef::from)
    .ok_or("the echo actor's remote stand-in did not appear")?;

    let opts = AgentOptions {
        backend: Some("script".into()),
        script: Some(vec![ScriptStep::default()]),
        ..Default::default()
    };
    remote.agent("bench", None, opts).await?;

    // Warm up every path.
    for i in 0..200u64 {
        remote.ask("bench", "warm").await?;
        local.ask("bench", "warm").await?;
        ractor::call_t!(echo, EchoMsg::Echo, 5000, i)?;
    }

    let (mut t_remote, mut t_local, mut t_echo) = (Vec::new(), Vec::new(), Vec::new());
    let mut t_agents = Vec::new();
    let block = 500;
    let mut done = 0;
    while done < asks {
        let n = block.min(asks - done);
        for i in 0..n as u64 {
            let t = Instant::now();
            ractor::call_t!(echo, EchoMsg::Echo, 5000, i)?;
            t_echo.push(t.elapsed());
        }
        for _ in 0..n {
            let t = Instant::now();
            remote.ask("bench", "go").await?;
            t_remote.push(t.elapsed());
        }
        for _ in 0..n {
            let t = Instant::now();
            local.ask("bench", "go").await?;
            t_local.push(t.elapsed());
        }
        for _ in 0..n {
            let t = Instant::now();
            remote.agents().await?;
            t_agents.push(t.elapsed());
        }
        done += n;
    }
    let echo_s = stats(t_echo);
    let kind = if ephemeral { "ephemeral" } else { "durable" };
    println!(
        "ask over the client boundary: {asks} sequential asks per path, script backend answering at once, {kind} node, loopback, interleaved blocks of {block}"
    );
    row(
        "bare ractor_cluster remote call (baseline)",
        &echo_s,
        &echo_s,
        "us",
    );
    row(
        &format!("ask, remote Client ({kind} node)"),
        &stats(t_remote),
        &echo_s,
        "us",
    );
    row(
        &format!("ask, in-process Client ({kind} node)"),
        &stats(t_local),
        &echo_s,
        "us",
    );
    row(
        "agents(), remote Client (no agent involved)",
        &stats(t_agents),
        &echo_s,
        "us",
    );

    if let Some(bin) = bin {
        let mut t_status = Vec::new();
        let mut t_version = Vec::new();
        for _ in 0..runs {
            let t = Instant::now();
            let out = std::process::Command::new(&bin).arg("--version").output()?;
            t_version.push(t.elapsed());
            if !out.status.success() {
                return Err("workshop --version failed".into());
            }
            let t = Instant::now();
            let out = std::process::Command::new(&bin)
                .args(["status", "--data-dir"])
                .arg(dir.path())
                .env_remove("WORKSHOP_COOKIE")
                .env_remove("WORKSHOP_NODE")
                .output()?;
            t_status.push(t.elapsed());
            if !out.status.success() {
                return Err(format!(
                    "workshop status failed: {}",
                    String::from_utf8_lossy(&out.stderr)
                )
                .into());
            }
        }
        let base = stats(t_version);
        println!("\n`workshop status` against the running node, whole process, {runs} runs");
        row(
            "`workshop --version` (process start, baseline)",
            &base,
            &base,
            "ms",
        );
        row(
            "`workshop status` (start+connect+auth+call)",
            &stats(t_status),
            &base,
            "ms",
        );
    }
    drop(remote);
    node.shutdown().await;
    Ok(())
}
