//! Scenario B: a rolling restart under continuous work. Five hosts, a worker on each node, an
//! agent on each of h2..h5; while items are posted continuously (through whichever nodes are
//! up), every node is stopped (SIGTERM) and started again on its address and data dir, one
//! after another, h2..h5 and then h1 (the board node), 12 s apart; the next goes once the
//! restarted node is up again everywhere. No item is lost or done twice, and no agent is lost.

use std::time::{Duration, Instant};

use workshop_types::{AgentOptions, ScriptStep};

use crate::net::{enabled, Net};
use crate::scenario::{
    all_done, all_hosts, exactly_once, figure, now_ms, start_node, until_up, worker, Clients,
    Collector, Poster, HOSTS, TYPE,
};

/// How long the cluster works between two restarts, as in a rolling restart in operation.
/// Longer than the 10 s after which a node checks a dial it made (`peers.rs`, DialCheck), so
/// a node found again only by such a leftover check does not pass for a reconnected one.
const WORK: Duration = Duration::from_secs(12);

fn agent(n: usize) -> AgentOptions {
    AgentOptions {
        script: Some(vec![ScriptStep {
            text: Some(format!("a{n} on h{n}: {{prompt}}")),
            ..Default::default()
        }]),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_node_restarts_in_turn_and_no_item_or_agent_is_lost() {
    if !enabled("every_node_restarts_in_turn_and_no_item_or_agent_is_lost") {
        return;
    }
    let begun = Instant::now();
    let mut net = Net::new(HOSTS);
    for n in 1..=HOSTS {
        start_node(&mut net, n);
    }
    let clients = Clients::new(&net);
    for n in 1..=HOSTS {
        clients.connect(n).await;
    }
    for n in 1..=HOSTS {
        until_up(&clients, n, &all_hosts()).await;
    }
    let c1 = clients.get(1).expect("client");
    for n in 1..=HOSTS {
        let c = clients.get(n).expect("client");
        c.board_worker(&format!("w{n}"), TYPE, worker(n))
            .await
            .unwrap_or_else(|e| panic!("worker on h{n}: {e}"));
    }
    for n in 2..=HOSTS {
        c1.agent_on(&format!("h{n}"), &format!("a{n}"), None, agent(n))
            .await
            .unwrap_or_else(|e| panic!("a{n} on h{n}: {e}"));
    }
    drop(c1);
    let collector = Collector::start(&clients);
    let poster = Poster::start(&clients, (1..=HOSTS).collect(), &collector);
    collector.until_done(10).await;

    // The board node last: by then every other node has been restarted around it.
    for n in (2..=HOSTS).chain([1]) {
        let name = format!("h{n}");
        // The cluster works a while before each restart (the scenario's pace, not a wait for
        // something to happen).
        tokio::time::sleep(WORK).await;
        clients.forget(n);
        let stopping = Instant::now();
        let (status, log) = net.host(n).terminate();
        assert!(status.success(), "{name} exited with {status}: {log}");
        assert!(!log.contains("panicked"), "{name} panicked: {log}");
        let stopped = stopping.elapsed();
        start_node(&mut net, n);
        let node = net.host(n).node();
        let (spawned, listening) = (node.spawned, node.listening);
        let spawned_ms = now_ms() - spawned.elapsed().as_millis() as u64;
        clients.connect(n).await;
        // Up again: it sees every node, and every node sees it.
        until_up(&clients, n, &all_hosts()).await;
        for m in (1..=HOSTS).filter(|m| *m != n) {
            until_up(&clients, m, std::slice::from_ref(&name)).await;
        }
        let up = spawned.elapsed();
        // Its worker claims again (and, for the board node, the cluster's workers do).
        let claim = collector
            .first(&format!("w{n} to claim after {name}'s restart"), |s| {
                s.node == name && s.event.kind == "claimed" && s.event.at_ms >= spawned_ms
            })
            .await;
        let any = collector
            .first(&format!("a claim after {name}'s restart"), |s| {
                s.event.kind == "claimed" && s.event.at_ms >= spawned_ms
            })
            .await;
        let secs = |ms: u64| ms.saturating_sub(spawned_ms) as f64 / 1000.0;
        figure(&format!("rolling.{name}.stop"), stopped.as_secs_f64(), "s");
        figure(
            &format!("rolling.{name}.listening"),
            (listening - spawned).as_secs_f64(),
            "s",
        );
        figure(&format!("rolling.{name}.up"), up.as_secs_f64(), "s");
        figure(
            &format!("rolling.{name}.own_worker_claims"),
            secs(claim.event.at_ms),
            "s",
        );
        figure(
            &format!("rolling.{name}.first_claim"),
            secs(any.event.at_ms),
            "s",
        );
    }

    let posted = poster.stop().await;
    let c1 = clients.get(1).expect("h1's client");
    let items = all_done(&c1, &posted.ids).await;
    let seen = collector.finish().await;
    exactly_once(&items, &seen);
    let last_done = seen
        .iter()
        .filter(|s| s.event.kind == "completed")
        .map(|s| s.event.at_ms)
        .max()
        .unwrap_or(posted.started_ms);
    let span = last_done.saturating_sub(posted.started_ms) as f64 / 1000.0;

    // Every agent is still there, on its node, and answers.
    let status = c1.cluster_status().await.expect("cluster status");
    for n in 2..=HOSTS {
        let (agent, node) = (format!("a{n}"), format!("h{n}"));
        let holders: Vec<&str> = status
            .iter()
            .filter(|s| s.rows.iter().any(|r| r.name.as_str() == agent))
            .map(|s| s.node.as_str())
            .collect();
        assert_eq!(holders, vec![node.as_str()], "{agent}: {status:?}");
        let reply = c1
            .ask(&agent, "still there?")
            .await
            .unwrap_or_else(|e| panic!("ask {agent}: {e}"));
        assert_eq!(reply.text, format!("{agent} on {node}: still there?"));
    }

    figure("rolling.items", items.len() as f64, "items");
    figure("rolling.post_retries", posted.retries as f64, "posts");
    figure("rolling.throughput", items.len() as f64 / span, "items/s");
    figure("rolling.total", begun.elapsed().as_secs_f64(), "s");
    drop(net);
}
