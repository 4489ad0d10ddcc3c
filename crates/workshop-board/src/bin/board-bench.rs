//! Board benchmark: durable claim+complete pairs/s with 1, 8 and 64 workers, single-claim ack
//! latency, add -> pushed -> claimed latency, and the raw fdatasync rate of the same disk.
//!
//! `cargo run --release -p workshop-board --bin board-bench -- <scratch dir> [--quick]`

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use workshop_board::store::{BoardStore, SledStore, WriteEntry};
use workshop_board::{Board, BoardConfig, DurableBoard, DurableOptions, NewItem};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

fn pct(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)].as_secs_f64() * 1e6
}

/// Raw disk: append 4 KiB + fdatasync, `n` times.
fn fdatasync_rate(dir: &Path, n: usize) -> Result<(f64, f64, f64), BoxError> {
    let path = dir.join("fdatasync-probe.bin");
    let mut f = std::fs::File::create(&path)?;
    let buf = vec![0x42u8; 4096];
    let mut lat = Vec::with_capacity(n);
    let t0 = Instant::now();
    for _ in 0..n {
        let t = Instant::now();
        f.write_all(&buf)?;
        f.sync_data()?;
        lat.push(t.elapsed());
    }
    let rate = n as f64 / t0.elapsed().as_secs_f64();
    drop(f);
    std::fs::remove_file(&path)?;
    lat.sort_unstable();
    Ok((rate, pct(&lat, 0.5), pct(&lat, 0.99)))
}

/// Writes `n` ready items straight into a fresh store (setup, not measured).
fn preload(dir: &Path, n: usize) -> Result<(), BoxError> {
    let store = SledStore::open(dir)?;
    let mut board = Board::new();
    let mut chunk = Vec::new();
    for i in 0..n {
        let out = board.add(NewItem::new(format!("item-{i:08}"), "bench item"), 1)?;
        chunk.push(out.value);
        if chunk.len() == 20_000 || i + 1 == n {
            let entries: Vec<WriteEntry<'_>> = chunk.iter().map(|it| (&it.id, Some(it))).collect();
            store.write(&entries, board.meta())?;
            chunk.clear();
        }
    }
    store.sync()?;
    Ok(())
}

struct RunResult {
    pairs: usize,
    secs: f64,
    syncs: u64,
    ops: u64,
    batches: u64,
    sync_us: f64,
    apply_us: f64,
    claim_lat: Vec<Duration>,
}

async fn run_workers(dir: &Path, workers: usize, items: usize) -> Result<RunResult, BoxError> {
    preload(dir, items)?;
    let board = DurableBoard::open(dir, DurableOptions::default())?;
    drive(board, workers).await
}

/// Same loop on an in-memory store: the CPU ceiling of the pipeline, no disk.
async fn run_memory(workers: usize, items: usize) -> Result<RunResult, BoxError> {
    let store = workshop_board::MemoryStore::new();
    let mut board = Board::new();
    let mut all = Vec::new();
    for i in 0..items {
        all.push(
            board
                .add(NewItem::new(format!("item-{i:08}"), "bench item"), 1)?
                .value,
        );
    }
    let entries: Vec<WriteEntry<'_>> = all.iter().map(|it| (&it.id, Some(it))).collect();
    store.write(&entries, board.meta())?;
    let board = DurableBoard::with_store(store, DurableOptions::default())?;
    drive(board, workers).await
}

async fn drive(board: DurableBoard, workers: usize) -> Result<RunResult, BoxError> {
    let before = board.stats();
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..workers {
        let board = board.clone();
        tasks.push(tokio::spawn(async move {
            let name = format!("worker-{w}");
            let mut lat = Vec::new();
            let mut done = 0usize;
            loop {
                let t = Instant::now();
                let Some(item) = board.claim_next(None, &name, 60_000).await? else {
                    break;
                };
                lat.push(t.elapsed());
                let token = item.token().unwrap_or_default();
                board.complete(item.id.as_str(), token, "ok").await?;
                done += 1;
            }
            Ok::<_, BoxError>((done, lat))
        }));
    }
    let mut pairs = 0;
    let mut claim_lat = Vec::new();
    for t in tasks {
        let (done, lat) = t.await??;
        pairs += done;
        claim_lat.extend(lat);
    }
    let secs = t0.elapsed().as_secs_f64();
    let after = board.stats();
    board.shutdown().await?;
    claim_lat.sort_unstable();
    Ok(RunResult {
        pairs,
        secs,
        syncs: after.syncs - before.syncs,
        ops: after.ops - before.ops,
        batches: after.batches - before.batches,
        sync_us: (after.sync_nanos - before.sync_nanos) as f64
            / 1e3
            / (after.syncs - before.syncs).max(1) as f64,
        apply_us: (after.apply_write_nanos - before.apply_write_nanos) as f64
            / 1e3
            / (after.batches - before.batches).max(1) as f64,
        claim_lat,
    })
}

/// add() -> ready item pushed to a subscriber -> claim acknowledged, sequentially.
async fn push_latency(dir: &Path, n: usize) -> Result<Vec<Duration>, BoxError> {
    let board = DurableBoard::open(dir, DurableOptions::default())?;
    let mut ready = board.subscribe_ready();
    let mut lat = Vec::with_capacity(n);
    for i in 0..n {
        let t = Instant::now();
        board.add(NewItem::new(format!("p-{i}"), "push")).await?;
        let item = ready.recv().await?;
        let claimed = board.claim(item.id.as_str(), "pusher", 60_000).await?;
        lat.push(t.elapsed());
        board
            .complete(item.id.as_str(), claimed.token().unwrap_or_default(), "ok")
            .await?;
    }
    board.shutdown().await?;
    lat.sort_unstable();
    Ok(lat)
}

fn fresh(scratch: &Path, name: &str) -> Result<PathBuf, BoxError> {
    let dir = scratch.join(name);
    if dir.exists() {
        std::fs::remove_dir_all(&dir)?;
    }
    Ok(dir)
}

async fn bench(scratch: PathBuf, quick: bool) -> Result<(), BoxError> {
    std::fs::create_dir_all(&scratch)?;
    let _ = BoardConfig::default();
    println!("board-bench: scratch dir {}", scratch.display());
    let (rate, p50, p99) = fdatasync_rate(&scratch, if quick { 500 } else { 3000 })?;
    println!("raw disk: append 4 KiB + fdatasync: {rate:.0}/s  p50 {p50:.0} us  p99 {p99:.0} us");
    let runs: &[(usize, usize)] = if quick {
        &[(1, 1_000), (8, 5_000), (64, 20_000)]
    } else {
        &[(1, 10_000), (8, 60_000), (64, 300_000)]
    };
    for &(workers, items) in runs {
        let dir = fresh(&scratch, &format!("board-{workers}w"))?;
        let r = run_workers(&dir, workers, items).await?;
        println!(
            "durable claim+complete, {workers:>2} workers: {:>8.0} pairs/s  ({} pairs in {:.2} s; \
             {} syncs, {:.1} ops/sync, avg sync {:.0} us; {} batches, avg apply+write {:.0} us) \
             claim ack p50 {:.0} us  p99 {:.0} us",
            r.pairs as f64 / r.secs,
            r.pairs,
            r.secs,
            r.syncs,
            r.ops as f64 / r.syncs.max(1) as f64,
            r.sync_us,
            r.batches,
            r.apply_us,
            pct(&r.claim_lat, 0.5),
            pct(&r.claim_lat, 0.99),
        );
        std::fs::remove_dir_all(&dir)?;
    }
    let r = run_memory(64, if quick { 20_000 } else { 200_000 }).await?;
    println!(
        "CPU ceiling (memory store, no disk), 64 workers: {:.0} pairs/s ({:.1} ops/batch)",
        r.pairs as f64 / r.secs,
        r.ops as f64 / r.batches.max(1) as f64
    );
    let dir = fresh(&scratch, "board-push")?;
    let lat = push_latency(&dir, if quick { 300 } else { 3000 }).await?;
    println!(
        "add -> ready pushed -> claim acked (sequential, 3 durable ops): p50 {:.0} us  p99 {:.0} us",
        pct(&lat, 0.5),
        pct(&lat, 0.99)
    );
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let Some(scratch) = args.next() else {
        eprintln!("usage: board-bench <scratch dir> [--quick]");
        return ExitCode::from(2);
    };
    let quick = args.any(|a| a == "--quick");
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("board-bench: cannot start tokio: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(bench(PathBuf::from(scratch), quick)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("board-bench: {e}");
            ExitCode::FAILURE
        }
    }
}
