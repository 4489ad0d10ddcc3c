//! The cluster's costs (issue 10), each beside a baseline measured in the same run:
//!
//! 1. `work()` sent to the board node A (a `workshop node` process, durable) → the turn of a
//!    board worker on node B (this process, durable, joined to A) started: p50/p99, against one
//!    fdatasync of this disk and one bare ractor_cluster remote call (loopback).
//! 2. Durable claim+complete pairs/s: on a single durable node (claimers in process, through its
//!    board actor) against the cluster (A's board; claimers on B and in a second session from
//!    this process, every call over loopback TCP).
//! 3. A's restart (SIGTERM, start again on the same address and data dir): time from A
//!    listening again to B's board link being back, and to B's worker claiming a new item.
//! 4. A new node C (a process with a board worker in its `.workshop.rhai`): time from its
//!    start to its worker having claimed and finished an item posted before.
//!
//! ```text
//! cargo build --release -p workshop-cli
//! cargo run --release -p workshop-node --example cluster_bench -- --bin target/release/workshop [--items 500] [--pairs 20000]
//! ```

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use ractor_cluster_derive::RactorClusterMessage;
use tokio::sync::mpsc;
use workshop_agent::backend::{script::ScriptBackend, Backend, BackendError, BoxFut, Session};
use workshop_agent::{Backends, TurnContext};
use workshop_board::BoardClient;
use workshop_node::cluster::ClusterOptions;
use workshop_node::{Client, Node, WorkOptions, WorkerOptions};
use workshop_types::board::NewItem;
use workshop_types::{AgentSpec, TurnError, TurnResult};

type AnyErr = Box<dyn std::error::Error + Send + Sync>;

const COOKIE: &str = "cluster-bench-cookie-0123456789abcdef";
const ECHO_GROUP: &str = "bench.echo";

// ------------------------------------------------------------------ probe backend

struct Probe(mpsc::UnboundedSender<Instant>);

impl Backend for Probe {
    fn name(&self) -> &'static str {
        "script"
    }
    fn start_session(&self, _spec: &AgentSpec) -> Result<Box<dyn Session>, BackendError> {
        Ok(Box::new(ProbeSession(self.0.clone())))
    }
}

struct ProbeSession(mpsc::UnboundedSender<Instant>);

impl Session for ProbeSession {
    fn turn<'a>(
        &'a mut self,
        _prompt: &'a str,
        _ctx: TurnContext,
    ) -> BoxFut<'a, Result<TurnResult, TurnError>> {
        let _ = self.0.send(Instant::now());
        Box::pin(async { Ok(TurnResult::default()) })
    }
    fn reset(&mut self) -> BoxFut<'_, Result<(), BackendError>> {
        Box::pin(async { Ok(()) })
    }
    fn shutdown(&mut self) -> BoxFut<'_, ()> {
        Box::pin(async {})
    }
    fn session_id(&self) -> Option<String> {
        None
    }
}

// ------------------------------------------------------------------ bare remote call

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

// ------------------------------------------------------------------ helpers

fn arg<T: std::str::FromStr>(args: &[String], name: &str, default: T) -> T {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn pct(v: &mut [Duration], p: f64) -> Duration {
    v.sort();
    if v.is_empty() {
        return Duration::ZERO;
    }
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn fdatasync_latency(dir: &Path, n: usize) -> (Duration, Duration) {
    use std::io::Write;
    let path = dir.join("fsync-probe");
    let mut f = std::fs::File::create(&path).expect("probe file");
    let buf = vec![7u8; 4096];
    let mut lat = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        f.write_all(&buf).expect("write");
        f.sync_data().expect("fdatasync");
        lat.push(t.elapsed());
    }
    let _ = std::fs::remove_file(path);
    (pct(&mut lat, 0.5), pct(&mut lat, 0.99))
}

/// A `workshop node` process; SIGTERM and reaped on drop.
struct Proc {
    child: Option<Child>,
    addr: String,
}

impl Proc {
    fn start(bin: &str, dir: &Path, args: &[&str]) -> Result<(Self, Instant), AnyErr> {
        std::fs::create_dir_all(dir)?;
        let _ = std::fs::remove_file(dir.join("node.endpoint"));
        let child = Command::new(bin)
            .arg("node")
            .arg("--data-dir")
            .arg(dir)
            .args(args)
            .current_dir(dir)
            .env("WORKSHOP_COOKIE", COOKIE)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        let pid = child.id();
        // The endpoint file (with this pid) is written once the node listens.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(e) = workshop_node::cluster::read_endpoint(dir) {
                if e.pid == pid {
                    return Ok((
                        Proc {
                            child: Some(child),
                            addr: e.addr,
                        },
                        Instant::now(),
                    ));
                }
            }
            if Instant::now() > deadline {
                return Err("a node process did not start within 30 s".into());
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(c.id().to_string())
                .status();
            let _ = c.wait();
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stop();
    }
}

fn typed(t: &str) -> WorkOptions {
    WorkOptions {
        work_type: Some(t.into()),
        ..Default::default()
    }
}

/// Post `n` items of `work_type` through `board` (16 at a time), then drain them with
/// `claimers` concurrent claim+complete loops spread over `boards`; pairs per second.
async fn pairs(
    post: &BoardClient,
    boards: &[BoardClient],
    claimers: usize,
    n: usize,
    work_type: &str,
) -> Result<f64, AnyErr> {
    let wt: workshop_types::board::WorkType = work_type.parse()?;
    let mut posting = tokio::task::JoinSet::new();
    for k in 0..16 {
        let post = post.clone();
        let wt = wt.clone();
        posting.spawn(async move {
            for i in (k..n).step_by(16) {
                post.add(NewItem::new(format!("p{i}"), "pair").work_type(wt.clone()))
                    .await?;
            }
            Ok::<(), workshop_node::ApiError>(())
        });
    }
    while let Some(r) = posting.join_next().await {
        r??;
    }
    let t = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for k in 0..claimers {
        let b = boards[k % boards.len()].clone();
        let wt = wt.clone();
        tasks.spawn(async move {
            let mut done = 0usize;
            while let Some(item) = b.claim_next(Some(wt.clone()), "bench", 60_000).await? {
                let token = item.token().ok_or("claimed item without a token")?;
                b.complete(item.id.as_str(), token, "ok").await?;
                done += 1;
            }
            Ok::<usize, AnyErr>(done)
        });
    }
    let mut total = 0;
    while let Some(r) = tasks.join_next().await {
        total += r??;
    }
    if total != n {
        return Err(format!("drained {total} of {n} items").into());
    }
    Ok(n as f64 / t.elapsed().as_secs_f64())
}

async fn wait_link(node: &Node, within: Duration) -> Result<Instant, AnyErr> {
    let deadline = Instant::now() + within;
    loop {
        if node.board_client().is_ok() {
            return Ok(Instant::now());
        }
        if Instant::now() > deadline {
            return Err("the board link did not come back".into());
        }
        tokio::time::sleep(Duration::from_micros(200)).await;
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), AnyErr> {
    let args: Vec<String> = std::env::args().collect();
    let bin: String = arg(&args, "--bin", "target/release/workshop".to_string());
    // Absolute: the node processes run in their own directories.
    let bin = std::path::absolute(&bin)?.display().to_string();
    let items: usize = arg(&args, "--items", 500);
    let n_pairs: usize = arg(&args, "--pairs", 20_000);
    let claimers: usize = arg(&args, "--claimers", 64);
    let tmp = tempfile::tempdir()?;
    let root = tmp.path().to_path_buf();

    println!(
        "machine: {} cores; durable nodes (sled flush + fdatasync before every acknowledgement); loopback",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0)
    );
    let (fs50, fs99) = fdatasync_latency(&root, 500);
    println!(
        "baseline: fdatasync (4 KiB append)               p50 {:>7.3} ms  p99 {:>7.3} ms",
        ms(fs50),
        ms(fs99)
    );

    // 2a. Single durable node: claimers in process.
    let single_rate = {
        let node = Node::open(&root.join("single")).await?;
        let b = node.board_client()?;
        let r = pairs(
            &b,
            std::slice::from_ref(&b),
            claimers,
            n_pairs,
            "custom:pairs",
        )
        .await?;
        node.shutdown().await;
        r
    };

    // The cluster: A (process, board node), B (this process, probe backend).
    let (mut a, _) = Proc::start(
        &bin,
        &root.join("a"),
        &["--no-setup", "--name", "a", "--listen", "127.0.0.1:0"],
    )?;
    let a_addr = a.addr.clone();
    let (tx, mut stamps) = mpsc::unbounded_channel();
    let backends = Backends::default()
        .with(Arc::new(ScriptBackend))
        .with(Arc::new(Probe(tx)));
    let b_opts = ClusterOptions {
        board: Some("a".into()),
        peers: vec![a_addr.clone()],
        ..ClusterOptions::single("b", "127.0.0.1:0".parse()?, COOKIE)
    };
    let node_b = Node::builder()
        .backends(backends)
        .data_dir(root.join("b"))
        .cluster(b_opts)
        .start()
        .await?;
    wait_link(&node_b, Duration::from_secs(30)).await?;
    let b_addr = node_b
        .identity()
        .addr
        .read()
        .clone()
        .ok_or("node b has no address")?;

    // Baseline: a bare remote call through a ractor_cluster session (to an echo actor in this
    // process, reached over loopback TCP like any peer).
    let (_echo, _) = Actor::spawn(None, Echo, ()).await?;
    let via_b = Client::connect(&b_addr, COOKIE.into()).await?;
    let echo: ActorRef<EchoMsg> = ractor::pg::get_scoped_members(
        &workshop_node::cluster::DEFAULT_SCOPE.to_string(),
        &ECHO_GROUP.to_string(),
    )
    .into_iter()
    .find(|c| !c.get_id().is_local())
    .map(ActorRef::from)
    .ok_or("the echo actor's remote stand-in did not appear")?;
    let mut t_echo = Vec::new();
    for i in 0..2000u64 {
        let t = Instant::now();
        ractor::call_t!(echo, EchoMsg::Echo, 5000, i)?;
        if i >= 200 {
            t_echo.push(t.elapsed());
        }
    }
    let (e50, e99) = (pct(&mut t_echo, 0.5), pct(&mut t_echo, 0.99));
    println!(
        "baseline: bare ractor_cluster remote call        p50 {:>7.3} ms  p99 {:>7.3} ms",
        ms(e50),
        ms(e99)
    );

    // 1. work() on A -> turn started on B.
    let ca = Client::connect(&a_addr, COOKIE.into()).await?;
    node_b
        .client()
        .board_worker(
            "wb",
            "code",
            WorkerOptions {
                interval_ms: Some(60_000),
                ..Default::default()
            },
        )
        .await?;
    let mut lat = Vec::with_capacity(items);
    let mut ack = Vec::with_capacity(items);
    for i in 0..items + 50 {
        let id = format!("lat-{i}");
        let t0 = Instant::now();
        ca.work(&id, "bench item", typed("code")).await?;
        let acked = t0.elapsed();
        let started = stamps.recv().await.ok_or("the probe stopped")?;
        if i >= 50 {
            lat.push(started.duration_since(t0));
            ack.push(acked);
        }
        ca.await_work(&id, None).await?;
    }
    let (fs50b, _) = fdatasync_latency(&root, 500);
    let fs50 = (fs50 + fs50b) / 2;
    println!(
        "baseline: fdatasync p50 again after the latency run {:>7.3} ms (the mean of both is used below)",
        ms(fs50b)
    );
    let (l50, l99) = (pct(&mut lat, 0.5), pct(&mut lat, 0.99));
    let (a50, a99) = (pct(&mut ack, 0.5), pct(&mut ack, 0.99));
    println!(
        "work() on A -> turn started on B ({items})        p50 {:>7.3} ms  p99 {:>7.3} ms",
        ms(l50),
        ms(l99)
    );
    println!(
        "  of which work() acknowledged by A             p50 {:>7.3} ms  p99 {:>7.3} ms",
        ms(a50),
        ms(a99)
    );
    println!(
        "  p50 minus one fdatasync: {:.3} ms (goal <= 0.2 ms); p99 goal <= 3 ms; p50 is {:.1}x one fdatasync, {:.1}x one bare remote call",
        ms(l50) - ms(fs50),
        ms(l50) / ms(fs50).max(1e-9),
        ms(l50) / ms(e50).max(1e-9)
    );

    // 2b. Cluster pairs/s: A's board, claimers on B's link and on a second session.
    let other = Client::connect(&a_addr, COOKIE.into()).await?;
    let boards = [node_b.board_client()?, other.board_client().await?];
    let cluster_rate = pairs(&boards[1], &boards, claimers, n_pairs, "custom:pairs").await?;
    println!(
        "durable claim+complete pairs/s, {claimers} claimers: single node (in process) {single_rate:>8.0}   cluster (board on A; claimers on B + a 2nd session, loopback TCP) {cluster_rate:>8.0}   ratio {:.2}",
        cluster_rate / single_rate
    );
    drop(boards);
    drop(other);

    // 3. A restarts on the same address and data dir.
    let mut t_link = Vec::new();
    let mut t_claim = Vec::new();
    for round in 0..5 {
        drop(ca.clone());
        a.stop();
        let (a2, up) = Proc::start(
            &bin,
            &root.join("a"),
            &["--no-setup", "--name", "a", "--listen", &a_addr],
        )?;
        a = a2;
        let linked = wait_link(&node_b, Duration::from_secs(30)).await?;
        let ca2 = Client::connect(&a_addr, COOKIE.into()).await?;
        let id = format!("after-restart-{round}");
        ca2.work(&id, "after a restart", typed("code")).await?;
        let claimed = stamps.recv().await.ok_or("the probe stopped")?;
        ca2.await_work(&id, None).await?;
        t_link.push(linked.saturating_duration_since(up));
        t_claim.push(claimed.saturating_duration_since(up));
    }
    println!(
        "board node restart (5 rounds): A listening -> B's board link back  p50 {:>7.1} ms  max {:>7.1} ms",
        ms(pct(&mut t_link.clone(), 0.5)),
        ms(*t_link.iter().max().unwrap_or(&Duration::ZERO))
    );
    println!(
        "                               A listening -> B claims a new item  p50 {:>7.1} ms  max {:>7.1} ms (goal <= 1 s)",
        ms(pct(&mut t_claim.clone(), 0.5)),
        ms(*t_claim.iter().max().unwrap_or(&Duration::ZERO))
    );

    // 4. A new node C joins with a board worker in its setup file.
    let ca = Client::connect(&a_addr, COOKIE.into()).await?;
    let c_dir: PathBuf = root.join("c");
    std::fs::create_dir_all(&c_dir)?;
    std::fs::write(
        c_dir.join(".workshop.rhai"),
        "board_worker(\"wc\", \"custom:cnode\", #{backend: \"script\", interval: 60000});\n",
    )?;
    ca.work("for-c", "waits for node c", typed("custom:cnode"))
        .await?;
    let t0 = Instant::now();
    let (_c, c_up) = Proc::start(
        &bin,
        &c_dir,
        &[
            "--name",
            "c",
            "--listen",
            "127.0.0.1:0",
            "--board",
            "a",
            "--peer",
            &a_addr,
        ],
    )?;
    let item = ca
        .await_work("for-c", Some(Duration::from_secs(60)))
        .await?;
    let done = t0.elapsed();
    println!(
        "new node C: process start -> listening {:>7.1} ms; -> its worker finished an item posted before {:>7.1} ms (status {:?})",
        ms(c_up.duration_since(t0)),
        ms(done),
        item.status
    );
    drop(via_b);
    node_b.shutdown().await;
    Ok(())
}
