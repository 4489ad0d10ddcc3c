//! Per-turn latency of the `claude` backend, side by side in one run, the fake API answering at
//! once (`cargo bench -p workshop-agent --bench claude_latency`; `BENCH_TURNS=N`, default 30;
//! under `cargo test --all-targets` it is a 2-turn smoke run):
//!
//! - `workshop session`: the long-lived process through `Session::turn` (this backend).
//! - `workshop actor`:   the same through the agent actor (`AgentMsg::Ask`).
//! - `cli long-lived`:   the same CLI driven by a bare pipe loop (the CLI's own long-lived time).
//! - `process per turn`: `claude -p <prompt> --output-format json [--resume <id>]` fresh each turn
//!   (AgentWorkshop's way).
//!
//! Rounds interleave the modes so that machine noise hits them alike. Also printed: the CLI's
//! own `duration_ms` per mode, and the resident memory of each live `claude` process.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Instant;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio_util::sync::CancellationToken;
use workshop_agent::backend::claude::ClaudeBackend;
use workshop_agent::{
    AgentActor, AgentArgs, Backend, NoHooks, SessionBehaviour, TurnContext, TurnEvents,
};
use workshop_proto::agent::{AgentMsg, AskReply, Prompt};
use workshop_test_support::claude::{claude_bin, claude_env};
use workshop_test_support::{procs, FakeAnthropic, Reply};
use workshop_types::{AgentName, AgentOptions, AgentSpec};

struct Series {
    name: &'static str,
    wall: Vec<f64>,
    cli: Vec<f64>,
}

impl Series {
    fn new(name: &'static str) -> Self {
        Series {
            name,
            wall: Vec::new(),
            cli: Vec::new(),
        }
    }
}

fn pct(v: &[f64], p: f64) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    if s.is_empty() {
        return f64::NAN;
    }
    let idx = ((p / 100.0) * (s.len() as f64 - 1.0)).round() as usize;
    s[idx.min(s.len() - 1)]
}

fn rss_kb(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// A bare long-lived CLI: write a user line, read until the result line.
struct Raw {
    _child: tokio::process::Child,
    stdin: tokio::process::ChildStdin,
    out: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
}

impl Raw {
    fn start(env: &BTreeMap<String, String>, dir: &Path) -> Raw {
        let mut child = tokio::process::Command::new(claude_bin())
            .args([
                "-p",
                "--input-format",
                "stream-json",
                "--output-format",
                "stream-json",
                "--verbose",
                "--include-partial-messages",
                "--permission-mode=acceptEdits",
            ])
            .envs(env)
            .current_dir(dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let out = BufReader::new(child.stdout.take().unwrap()).lines();
        Raw {
            _child: child,
            stdin,
            out,
        }
    }

    async fn turn(&mut self, prompt: &str) -> f64 {
        let line = serde_json::json!({"type":"user","message":{"role":"user","content":prompt}});
        self.stdin
            .write_all(format!("{line}\n").as_bytes())
            .await
            .unwrap();
        self.stdin.flush().await.unwrap();
        while let Some(l) = self.out.next_line().await.unwrap() {
            if l.contains("\"type\":\"result\"") {
                let v: serde_json::Value = serde_json::from_str(&l).unwrap();
                return v["duration_ms"].as_f64().unwrap_or(f64::NAN);
            }
        }
        panic!("the raw CLI exited");
    }
}

async fn fresh_turn(
    env: &BTreeMap<String, String>,
    dir: &Path,
    prompt: &str,
    resume: Option<&str>,
) -> (f64, String) {
    let mut cmd = tokio::process::Command::new(claude_bin());
    cmd.args([
        "-p",
        prompt,
        "--output-format",
        "json",
        "--permission-mode=acceptEdits",
    ]);
    if let Some(id) = resume {
        cmd.arg(format!("--resume={id}"));
    }
    let out = cmd
        .envs(env)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .await
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    (
        v["duration_ms"].as_f64().unwrap_or(f64::NAN),
        v["session_id"].as_str().unwrap_or("").to_string(),
    )
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--list") {
        return; // test-harness probes: nothing to list
    }
    // `cargo bench` passes --bench; `cargo test --all-targets` runs this as a 2-turn smoke test
    let default_turns = if args.iter().any(|a| a == "--bench") {
        30
    } else {
        2
    };
    let turns: usize = std::env::var("BENCH_TURNS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default_turns);
    let fake = FakeAnthropic::start_with_usage(1000, 10).await;
    fake.set_default(Reply::text("ok"));
    let home = tempfile::TempDir::new().unwrap();
    let env = claude_env(&fake.base_url(), home.path(), 0);
    let dirs: Vec<tempfile::TempDir> = (0..4).map(|_| tempfile::TempDir::new().unwrap()).collect();
    let dir = |i: usize| dirs[i].path().canonicalize().unwrap();

    let options = |d: &Path| AgentOptions {
        backend: Some("claude".into()),
        claude_bin: Some(claude_bin().display().to_string()),
        working_dir: Some(d.display().to_string()),
        env: Some(env.clone()),
        ..Default::default()
    };
    let spec = |d: &Path| AgentSpec {
        name: AgentName::new("bench").unwrap(),
        role: None,
        system_prompt: None,
        options: options(d),
        resume_session: None,
    };
    let backend = ClaudeBackend::from_env();
    let mut session = backend.start_session(&spec(&dir(0))).unwrap();
    let (actor, actor_handle) = ractor::Actor::spawn(
        None,
        AgentActor,
        AgentArgs {
            spec: std::sync::Arc::new(spec(&dir(1))),
            backend: Arc::new(ClaudeBackend::from_env()),
            behaviour: Box::new(SessionBehaviour),
            hooks: Arc::new(NoHooks),
            restored: None,
        },
    )
    .await
    .unwrap();
    let mut raw = Raw::start(&env, &dir(2));
    let events = TurnEvents::new(Arc::new(NoHooks), AgentName::new("bench").unwrap());
    let ctx = || TurnContext {
        cancel: CancellationToken::new(),
        events: events.clone(),
    };

    // warm up: first turn of each (process boot, fresh HOME), not measured
    let t = Instant::now();
    session.turn("warm up", ctx()).await.unwrap();
    let first_session = t.elapsed();
    let _ = ractor::call!(
        actor,
        AgentMsg::Ask,
        Prompt {
            text: "warm up".into(),
            origin: "bench".into()
        }
    )
    .unwrap();
    raw.turn("warm up").await;
    let (_, mut sid) = fresh_turn(&env, &dir(3), "warm up", None).await;

    let mut s_session = Series::new("workshop session (long-lived)");
    let mut s_actor = Series::new("workshop actor (long-lived)");
    let mut s_raw = Series::new("cli alone (long-lived)");
    let mut s_fresh = Series::new("process per turn (--resume)");
    for i in 0..turns {
        let prompt = format!("turn {i}");

        let t = Instant::now();
        let r = session.turn(&prompt, ctx()).await.unwrap();
        s_session.wall.push(t.elapsed().as_secs_f64() * 1e3);
        s_session.cli.push(r.duration_ms as f64);

        let t = Instant::now();
        let reply = ractor::call!(
            actor,
            AgentMsg::Ask,
            Prompt {
                text: prompt.clone(),
                origin: "bench".into()
            }
        )
        .unwrap();
        s_actor.wall.push(t.elapsed().as_secs_f64() * 1e3);
        if let AskReply::Done(r) = reply {
            s_actor.cli.push(r.duration_ms as f64);
        }

        let t = Instant::now();
        let d = raw.turn(&prompt).await;
        s_raw.wall.push(t.elapsed().as_secs_f64() * 1e3);
        s_raw.cli.push(d);

        let t = Instant::now();
        let (d, id) = fresh_turn(&env, &dir(3), &prompt, Some(&sid)).await;
        s_fresh.wall.push(t.elapsed().as_secs_f64() * 1e3);
        s_fresh.cli.push(d);
        if !id.is_empty() {
            sid = id;
        }
    }

    let mut rss = Vec::new();
    for (name, i) in [("session", 0), ("actor", 1), ("cli alone", 2)] {
        for pg in procs::groups_under(&dir(i)) {
            let members = procs::group_members(pg);
            let total: u64 = members.iter().filter_map(|p| rss_kb(p.pid)).sum();
            rss.push(format!(
                "  {name:<10} pid {pg}: {:.0} MB RSS ({} process(es) in its group)",
                total as f64 / 1024.0,
                members.len()
            ));
        }
    }

    println!(
        "claude CLI {} against the fake API (instant replies), {turns} measured turns per mode, interleaved",
        workshop_test_support::claude::CLAUDE_VERSION
    );
    println!(
        "{:<32} {:>9} {:>9} {:>9} {:>9} | {:>13} {:>13}",
        "mode", "p50 ms", "p99 ms", "min ms", "max ms", "cli p50 ms", "wall-cli p50"
    );
    for s in [&s_session, &s_actor, &s_raw, &s_fresh] {
        let over: Vec<f64> = s.wall.iter().zip(&s.cli).map(|(w, c)| w - c).collect();
        println!(
            "{:<32} {:>9.1} {:>9.1} {:>9.1} {:>9.1} | {:>13.1} {:>13.1}",
            s.name,
            pct(&s.wall, 50.0),
            pct(&s.wall, 99.0),
            pct(&s.wall, 0.0),
            pct(&s.wall, 100.0),
            pct(&s.cli, 50.0),
            pct(&over, 50.0),
        );
    }
    let added: Vec<f64> = s_session
        .wall
        .iter()
        .zip(&s_raw.wall)
        .map(|(a, b)| a - b)
        .collect();
    println!(
        "workshop session minus cli alone, per round: p50 {:.2} ms, p99 {:.2} ms",
        pct(&added, 50.0),
        pct(&added, 99.0)
    );
    println!(
        "speed-up of the long-lived session over a process per turn (p50): {:.1}x",
        pct(&s_fresh.wall, 50.0) / pct(&s_session.wall, 50.0)
    );
    println!(
        "first turn of a new session (process boot, cold HOME): {:.0} ms",
        first_session.as_secs_f64() * 1e3
    );
    println!("resident memory per live claude process after the run:");
    for l in rss {
        println!("{l}");
    }

    session.shutdown().await;
    let _ = ractor::call!(actor, AgentMsg::Shutdown, "the bench is over".to_string());
    let _ = actor_handle.await;
    drop(raw);
}
