//! Agent benchmarks (issue 3): spawn rate and resident memory per idle agent, and the
//! orchestration overhead of one `ask` turn, each next to a bare ractor baseline.
//!
//! ```text
//! cargo run --release -p workshop-node --example agent_bench -- [--agents 10000,100000] [--asks 20000] [--only-ask] [--only-durable] [--current-thread]
//! ```
//!
//! Every memory case runs in a fresh child process (this binary re-executed with `--case`), so
//! that memory freed by one case (glibc keeps it) cannot flatter the next one. The ask case runs
//! the agent and the bare ractor `call` baseline in the same process, interleaved.
//!
//! Cases:
//! - `ractor`: a trivial ractor actor (`State = u64`), as research/perf.md §4a.
//! - `actor`: the agent actor alone (`AgentActor` + script session + `NoHooks`), no node.
//! - `node`: `workshop.agent(name, ..)` on a real node: actor + directory entry + events.
//!
//! The durable case (issue 9; `--only-durable` runs it alone) measures `Client::ask` on an
//! ephemeral node and on a durable node (a temporary data dir) in the same process,
//! interleaved in blocks, and prints the ratio: what persisting the agent's status row costs
//! an ask.

use std::sync::Arc;
use std::time::{Duration, Instant};

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use ractor_cluster_derive::RactorMessage;
use workshop_agent::backend::script::ScriptBackend;
use workshop_agent::backend::Backend;
use workshop_agent::{AgentActor, AgentArgs, NoHooks, SessionBehaviour};
use workshop_node::Node;
use workshop_proto::agent::AgentMsg;
use workshop_types::{AgentName, AgentOptions, AgentSpec};

type AnyErr = Box<dyn std::error::Error + Send + Sync>;

// ------------------------------------------------------------------ the bare ractor baseline

struct Trivial;

#[derive(RactorMessage)]
enum TrivialMsg {
    Ping(u64, RpcReplyPort<u64>),
}

impl Actor for Trivial {
    type Msg = TrivialMsg;
    type State = u64;
    type Arguments = ();

    async fn pre_start(&self, _: ActorRef<TrivialMsg>, _: ()) -> Result<u64, ActorProcessingErr> {
        Ok(0)
    }

    async fn handle(
        &self,
        _: ActorRef<TrivialMsg>,
        msg: TrivialMsg,
        st: &mut u64,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            TrivialMsg::Ping(x, reply) => {
                *st += 1;
                let _ = reply.send(x + 1);
            }
        }
        Ok(())
    }
}

// ------------------------------------------------------------------ measuring

fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kb| kb * 1024)
        .unwrap_or(0)
}

/// Let spawned tasks, timers and the event log go quiet before reading RSS.
async fn settle() {
    tokio::time::sleep(Duration::from_millis(300)).await;
}

struct SpawnFigures {
    secs: f64,
    rss_delta: u64,
}

async fn case_ractor(n: usize) -> Result<SpawnFigures, AnyErr> {
    settle().await;
    let before = rss_bytes();
    let t = Instant::now();
    let mut actors = Vec::with_capacity(n);
    for _ in 0..n {
        actors.push(Actor::spawn(None, Trivial, ()).await?);
    }
    let secs = t.elapsed().as_secs_f64();
    settle().await;
    let rss_delta = rss_bytes().saturating_sub(before);
    // Every actor answers (they are real, not just allocated).
    for (a, _) in actors.iter().take(1000) {
        ractor::call!(a, TrivialMsg::Ping, 1)?;
    }
    for (a, _) in &actors {
        a.stop(None);
    }
    for (_, h) in actors {
        let _ = h.await;
    }
    Ok(SpawnFigures { secs, rss_delta })
}

fn spec(i: usize) -> Result<AgentSpec, AnyErr> {
    Ok(AgentSpec {
        name: AgentName::new(format!("agent-{i}"))?,
        role: None,
        system_prompt: None,
        options: AgentOptions::default(),
        resume_session: None,
    })
}

async fn case_actor(n: usize) -> Result<SpawnFigures, AnyErr> {
    let backend: Arc<dyn Backend> = Arc::new(ScriptBackend);
    let hooks = Arc::new(NoHooks);
    settle().await;
    let before = rss_bytes();
    let t = Instant::now();
    let mut actors = Vec::with_capacity(n);
    for i in 0..n {
        let args = AgentArgs {
            spec: std::sync::Arc::new(spec(i)?),
            backend: backend.clone(),
            behaviour: Box::new(SessionBehaviour),
            hooks: hooks.clone(),
            restored: None,
        };
        actors.push(Actor::spawn(None, AgentActor, args).await?);
    }
    let secs = t.elapsed().as_secs_f64();
    settle().await;
    let rss_delta = rss_bytes().saturating_sub(before);
    for (a, _) in &actors {
        a.stop(None);
    }
    for (_, h) in actors {
        let _ = h.await;
    }
    Ok(SpawnFigures { secs, rss_delta })
}

async fn case_node(n: usize) -> Result<SpawnFigures, AnyErr> {
    let node = Node::start().await?;
    let w = node.workshop.clone();
    settle().await;
    let before = rss_bytes();
    let t = Instant::now();
    for i in 0..n {
        w.agent(&format!("agent-{i}"), None, AgentOptions::default())
            .await?;
    }
    let secs = t.elapsed().as_secs_f64();
    // The event log has taken every `[agent] .. created` (a call queues behind the casts).
    w.events(1, None).await.expect("events");
    settle().await;
    let rss_delta = rss_bytes().saturating_sub(before);
    assert_eq!(w.status().len(), n);
    // Spot check: agents answer.
    for i in (0..n).step_by((n / 100).max(1)) {
        w.info(&format!("agent-{i}")).await?;
    }
    node.shutdown().await;
    Ok(SpawnFigures { secs, rss_delta })
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1e6
}

struct Latency {
    p50: f64,
    p99: f64,
    p999: f64,
    per_sec: f64,
}

fn summarise(mut v: Vec<Duration>, total: Duration) -> Latency {
    let n = v.len() as f64;
    v.sort();
    Latency {
        p50: percentile(&v, 0.50),
        p99: percentile(&v, 0.99),
        p999: percentile(&v, 0.999),
        per_sec: n / total.as_secs_f64(),
    }
}

async fn case_ask(asks: usize) -> Result<Vec<(&'static str, Latency)>, AnyErr> {
    let node = Node::start().await?;
    let w = node.workshop.clone();
    w.agent("bench", None, AgentOptions::default()).await?;
    let (trivial, trivial_h) = Actor::spawn(None, Trivial, ()).await?;
    let (agent, _) = {
        // The same agent, called directly (no Workshop layer: no name parse, directory
        // lookup or budget check), to split the overhead.
        let (a, _) = Actor::spawn(
            None,
            AgentActor,
            AgentArgs {
                spec: std::sync::Arc::new(spec(0)?),
                backend: Arc::new(ScriptBackend),
                behaviour: Box::new(SessionBehaviour),
                hooks: Arc::new(NoHooks),
                restored: None,
            },
        )
        .await?;
        (a, ())
    };
    let raw_ask = |a: &ActorRef<AgentMsg>| {
        let a = a.clone();
        async move {
            let p = workshop_proto::agent::Prompt {
                text: "x".into(),
                origin: "ask".into(),
            };
            a.call(|r| AgentMsg::Ask(p, r), None).await
        }
    };
    // Warm up all three.
    for _ in 0..2000 {
        w.ask("bench", "x").await?;
        ractor::call!(trivial, TrivialMsg::Ping, 1)?;
        raw_ask(&agent).await?;
    }
    // Reset so history/results stay bounded the same way in every run.
    w.reset("bench").await?;
    let mut ask = Vec::with_capacity(asks);
    let mut raw = Vec::with_capacity(asks);
    let mut call = Vec::with_capacity(asks);
    let (mut t_ask, mut t_raw, mut t_call) = (Duration::ZERO, Duration::ZERO, Duration::ZERO);
    // Interleave in blocks so that machine noise hits all three alike.
    let block = 1000;
    for _ in 0..asks.div_ceil(block) {
        let t = Instant::now();
        for _ in 0..block {
            let s = Instant::now();
            w.ask("bench", "x").await?;
            ask.push(s.elapsed());
        }
        t_ask += t.elapsed();
        let t = Instant::now();
        for _ in 0..block {
            let s = Instant::now();
            raw_ask(&agent).await?;
            raw.push(s.elapsed());
        }
        t_raw += t.elapsed();
        let t = Instant::now();
        for i in 0..block {
            let s = Instant::now();
            ractor::call!(trivial, TrivialMsg::Ping, i as u64)?;
            call.push(s.elapsed());
        }
        t_call += t.elapsed();
    }
    agent.stop(None);
    trivial.stop(None);
    let _ = trivial_h.await;
    node.shutdown().await;
    Ok(vec![
        (
            "workshop.ask (script, answers at once)",
            summarise(ask, t_ask),
        ),
        (
            "AgentMsg::Ask call, no Workshop layer",
            summarise(raw, t_raw),
        ),
        ("bare ractor call (task -> actor)", summarise(call, t_call)),
    ])
}

/// Figures of one series: p50, p90, p99 and mean (µs).
struct Spread {
    p50: f64,
    p90: f64,
    p99: f64,
    mean: f64,
}

fn spread(mut v: Vec<Duration>) -> Spread {
    let n = v.len().max(1) as f64;
    let mean = v.iter().map(Duration::as_secs_f64).sum::<f64>() / n * 1e6;
    v.sort();
    Spread {
        p50: percentile(&v, 0.50),
        p90: percentile(&v, 0.90),
        p99: percentile(&v, 0.99),
        mean,
    }
}

struct DurableFigures {
    ephemeral: Spread,
    durable: Spread,
    rows: workshop_node::persist::RowWriterStats,
}

/// `Client::ask` (script backend, answers at once) on an ephemeral node and on a durable node
/// (temporary data dir), same process, alternating blocks of 1000 so machine noise hits both.
async fn case_durable(asks: usize) -> Result<DurableFigures, AnyErr> {
    let dir = tempfile::tempdir()?;
    let eph = Node::start().await?;
    let dur = Node::open(dir.path()).await?;
    // Through the `Client`, as every way in calls a node.
    let (ce, cd) = (eph.client(), dur.client());
    for c in [&ce, &cd] {
        c.agent("bench", None, AgentOptions::default()).await?;
    }
    for _ in 0..2000 {
        ce.ask("bench", "x").await?;
        cd.ask("bench", "x").await?;
    }
    for c in [&ce, &cd] {
        c.reset("bench").await?;
    }
    let before = dur
        .row_writer_stats()
        .ok_or("the durable node has no row writer")?;
    let (mut e, mut d) = (Vec::with_capacity(asks), Vec::with_capacity(asks));
    let block = 1000;
    for _ in 0..asks.div_ceil(block) {
        for (client, out) in [(&ce, &mut e), (&cd, &mut d)] {
            for _ in 0..block {
                let s = Instant::now();
                client.ask("bench", "x").await?;
                out.push(s.elapsed());
            }
        }
    }
    let after = dur
        .row_writer_stats()
        .ok_or("the durable node has no row writer")?;
    eph.shutdown().await;
    dur.shutdown().await;
    let rows = workshop_node::persist::RowWriterStats {
        queued: after.queued - before.queued,
        written: after.written - before.written,
        flushes: after.flushes - before.flushes,
        immediate: after.immediate - before.immediate,
        errors: after.errors - before.errors,
    };
    Ok(DurableFigures {
        ephemeral: spread(e),
        durable: spread(d),
        rows,
    })
}

fn print_durable(asks: usize, flavor: &str, f: &DurableFigures) {
    println!(
        "\nask overhead, ephemeral vs durable node, {asks} sequential asks each (µs, {flavor}), \
         alternating blocks of 1000"
    );
    println!(
        "{:<44} {:>8} {:>8} {:>8} {:>8}",
        "what", "p50", "p90", "p99", "mean"
    );
    for (what, s) in [
        ("Client::ask, ephemeral node", &f.ephemeral),
        ("Client::ask, durable node (temp data dir)", &f.durable),
    ] {
        println!(
            "{what:<44} {:>8.1} {:>8.1} {:>8.1} {:>8.1}",
            s.p50, s.p90, s.p99, s.mean
        );
    }
    println!(
        "{:<44} {:>8.2} {:>8.2} {:>8.2} {:>8.2}",
        "ratio durable / ephemeral",
        f.durable.p50 / f.ephemeral.p50,
        f.durable.p90 / f.ephemeral.p90,
        f.durable.p99 / f.ephemeral.p99,
        f.durable.mean / f.ephemeral.mean
    );
    let r = &f.rows;
    println!(
        "durable node's status rows while measured: {} changes queued, {} written, {} flushes \
         ({:.1} changes per flush), {} flushed at once (new session id), {} errors",
        r.queued,
        r.written,
        r.flushes,
        r.queued as f64 / r.flushes.max(1) as f64,
        r.immediate,
        r.errors
    );
}

// ------------------------------------------------------------------ driver

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpu
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|m| m.trim_start_matches([' ', '\t', ':']).to_string())
        .unwrap_or_else(|| "unknown".into());
    let n = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    format!("{n} CPU(s), {model}")
}

fn child(case: &str, n: usize) -> Result<(f64, u64), AnyErr> {
    let exe = std::env::current_exe()?;
    let out = std::process::Command::new(exe)
        .args(["--case", case, "--n", &n.to_string()])
        .output()?;
    if !out.status.success() {
        return Err(format!(
            "case {case} {n} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        )
        .into());
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix("RESULT "))
        .ok_or("the child printed no RESULT line")?;
    let mut it = line.split_whitespace();
    let secs: f64 = it.next().ok_or("secs")?.parse()?;
    let rss: u64 = it.next().ok_or("rss")?.parse()?;
    Ok((secs, rss))
}

fn print_sizes() {
    use std::mem::size_of;
    println!("\nsizes of the idle agent's pieces (inline bytes; heap parts noted):");
    let rows: [(&str, usize); 7] = [
        (
            "AgentState (ractor actor state)",
            size_of::<workshop_agent::actor::AgentState>(),
        ),
        ("AgentSpec (boxed in the state)", size_of::<AgentSpec>()),
        ("  of which AgentOptions", size_of::<AgentOptions>()),
        (
            "directory Entry (actor ref, Arc<AgentSpec>, row)",
            size_of::<workshop_node::directory::Entry>(),
        ),
        ("AgentRow", size_of::<workshop_types::AgentRow>()),
        ("ActorRef<AgentMsg>", size_of::<ActorRef<AgentMsg>>()),
        ("AgentMsg", size_of::<AgentMsg>()),
    ];
    for (what, n) in rows {
        println!("  {what:<52} {n:>6}");
    }
}

fn main() -> Result<(), AnyErr> {
    let args: Vec<String> = std::env::args().collect();
    let get = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    // `--current-thread` runs everything on one thread: no cross-thread wake-ups, so the ask
    // figures show the CPU cost of the orchestration alone.
    let current = args.iter().any(|a| a == "--current-thread");
    let rt = if current {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?
    };
    if let Some(case) = get("--case") {
        let n: usize = get("--n").ok_or("--n")?.parse()?;
        let f = rt.block_on(async move {
            match case.as_str() {
                "ractor" => case_ractor(n).await,
                "actor" => case_actor(n).await,
                "node" => case_node(n).await,
                other => Err(format!("unknown case {other}").into()),
            }
        })?;
        println!("RESULT {} {}", f.secs, f.rss_delta);
        return Ok(());
    }
    let counts: Vec<usize> = get("--agents")
        .unwrap_or_else(|| "10000,100000".into())
        .split(',')
        .map(|s| s.trim().parse())
        .collect::<Result<_, _>>()?;
    let asks: usize = get("--asks").unwrap_or_else(|| "20000".into()).parse()?;

    println!("workshop agent_bench — {}", machine());
    println!("\nspawn and idle memory (each row a fresh process; RSS = VmRSS delta / count)");
    println!(
        "{:<44} {:>8} {:>10} {:>12} {:>12} {:>8}",
        "case", "count", "spawn s", "spawns/s", "B/agent", "ratio"
    );
    let only_durable = args.iter().any(|a| a == "--only-durable");
    let only_ask = only_durable || args.iter().any(|a| a == "--only-ask");
    for &n in counts.iter().filter(|_| !only_ask) {
        let mut base = 0.0;
        for (case, label) in [
            ("ractor", "bare ractor actor (baseline)"),
            ("actor", "agent actor alone (no node)"),
            ("node", "workshop.agent on a node"),
        ] {
            let (secs, rss) = child(case, n)?;
            let per = rss as f64 / n as f64;
            if case == "ractor" {
                base = per;
            }
            println!(
                "{label:<44} {n:>8} {secs:>10.3} {:>12.0} {per:>12.0} {:>8.2}",
                n as f64 / secs,
                per / base
            );
        }
    }
    if !only_ask {
        print_sizes();
    }

    let flavor = if current {
        "current-thread runtime"
    } else {
        "multi-thread runtime"
    };
    if only_durable {
        let f = rt.block_on(case_durable(asks))?;
        print_durable(asks, flavor, &f);
        return Ok(());
    }
    println!(
        "\nask overhead over {asks} sequential asks (µs, {flavor}), interleaved in blocks of 1000"
    );
    println!(
        "{:<44} {:>8} {:>8} {:>8} {:>10}",
        "what", "p50", "p99", "p99.9", "ops/s"
    );
    for (what, l) in rt.block_on(case_ask(asks))? {
        println!(
            "{what:<44} {:>8.1} {:>8.1} {:>8.1} {:>10.0}",
            l.p50, l.p99, l.p999, l.per_sec
        );
    }
    let f = rt.block_on(case_durable(asks))?;
    print_durable(asks, flavor, &f);
    Ok(())
}
