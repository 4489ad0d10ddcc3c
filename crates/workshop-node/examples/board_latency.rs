//! Latency from `work(...)` to a board worker's turn starting, on a durable node (sled with
//! flush + fdatasync before every acknowledgement), measured with a probe backend that stamps
//! the moment its turn begins. Items are posted one at a time, so this is latency, not
//! throughput. The disk's own fdatasync latency is measured in the same run for scale.
//!
//! `cargo run --release -p workshop-node --example board_latency -- [items] [scratch dir]`

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use workshop_agent::backend::{script::ScriptBackend, Backend, BackendError, BoxFut, Session};
use workshop_agent::{Backends, TurnContext};
use workshop_node::{Node, WorkOptions};
use workshop_types::{AgentSpec, TurnError, TurnResult};

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

fn pct(v: &mut [Duration], p: f64) -> Duration {
    v.sort();
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

fn fdatasync_latency(dir: &std::path::Path, n: usize) -> (Duration, Duration) {
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

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let n: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(2000);
    let scratch = match args.get(2) {
        Some(p) => std::path::PathBuf::from(p),
        None => std::env::temp_dir().join(format!("workshop-board-latency-{}", std::process::id())),
    };
    let _ = std::fs::remove_dir_all(&scratch);
    std::fs::create_dir_all(&scratch).expect("scratch dir");

    let (fs50, fs99) = fdatasync_latency(&scratch, 500);
    let (tx, mut rx) = mpsc::unbounded_channel();
    let backends = Backends::default()
        .with(Arc::new(ScriptBackend))
        .with(Arc::new(Probe(tx)));
    let node = Node::start_with(backends, Some(&scratch))
        .await
        .expect("node");
    let w = node.client();
    w.board_worker(
        "dev",
        "code",
        workshop_node::WorkerOptions {
            interval_ms: Some(60_000),
            ..Default::default()
        },
    )
    .await
    .expect("worker");
    let mut lat = Vec::with_capacity(n);
    let mut add = Vec::with_capacity(n);
    for i in 0..n + 100 {
        let o = WorkOptions {
            work_type: Some("code".into()),
            ..Default::default()
        };
        let t0 = Instant::now();
        w.work(&format!("item-{i}"), "bench item", o)
            .await
            .expect("work");
        let added = t0.elapsed();
        let started = rx.recv().await.expect("turn started");
        if i >= 100 {
            lat.push(started.duration_since(t0));
            add.push(added);
        }
        // Let the worker settle the item before the next one, so each sample is one item alone.
        w.await_work(&format!("item-{i}"), None)
            .await
            .expect("settled");
    }
    let (p50, p99) = (pct(&mut lat, 0.5), pct(&mut lat, 0.99));
    let (a50, a99) = (pct(&mut add, 0.5), pct(&mut add, 0.99));
    println!(
        "machine: {} cores",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0)
    );
    println!(
        "disk fdatasync (4 KiB append)      p50 {:>8.3} ms  p99 {:>8.3} ms",
        fs50.as_secs_f64() * 1e3,
        fs99.as_secs_f64() * 1e3
    );
    println!(
        "work() -> worker turn started ({n}) p50 {:>8.3} ms  p99 {:>8.3} ms",
        p50.as_secs_f64() * 1e3,
        p99.as_secs_f64() * 1e3
    );
    println!(
        "  of which work() acknowledged      p50 {:>8.3} ms  p99 {:>8.3} ms",
        a50.as_secs_f64() * 1e3,
        a99.as_secs_f64() * 1e3
    );
    println!(
        "ratio to one fdatasync (p50)        {:.1}x",
        p50.as_secs_f64() / fs50.as_secs_f64()
    );
    node.shutdown().await;
    let _ = std::fs::remove_dir_all(&scratch);
}
