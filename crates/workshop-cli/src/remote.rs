//! Commands that act on a running node through a `Client`: `workshop status`, `ask`, `board`...
//! The node is the one at `--node ADDR`, else the one that holds `--data-dir` (found from the
//! endpoint file it writes there). `board` and `work` open the data dir directly when no node
//! holds it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use workshop_node::cluster;
use workshop_node::{ApiError, Client};
use workshop_types::Topic;

use crate::commands::{self, WorkCommand};
use crate::console::print;

#[derive(clap::Args, Clone, Debug)]
pub struct Target {
    /// The node to act on (host:port); default: the node that holds --data-dir.
    #[arg(long, value_name = "ADDR", env = "WORKSHOP_NODE")]
    pub node: Option<String>,
    /// The node's data directory (its endpoint and cookie files are read from there).
    #[arg(
        long,
        value_name = "DIR",
        default_value = ".workshop",
        env = "WORKSHOP_DATA_DIR"
    )]
    pub data_dir: PathBuf,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

impl Target {
    /// `console --attach [ADDR]`: an empty ADDR means the node of the data dir.
    pub fn attach(addr: String, data_dir: PathBuf) -> Self {
        Self {
            node: (!addr.is_empty()).then_some(addr),
            data_dir,
            json: false,
        }
    }

    fn dir_hint(&self) -> String {
        let abs = std::path::absolute(&self.data_dir).unwrap_or_else(|_| self.data_dir.clone());
        format!(
            "is `workshop node` running? its data dir is {}",
            abs.display()
        )
    }

    /// Connect to the target node.
    pub async fn client(&self) -> Result<Client, ApiError> {
        // TLS: WORKSHOP_TLS_CERT/KEY/CA (as for `workshop node`), else what the node of the
        // data dir wrote in its endpoint file.
        let mut tls = tls_from_env();
        let addr = match &self.node {
            Some(a) => a.clone(),
            None => match cluster::read_endpoint(&self.data_dir) {
                Some(e) => {
                    tls = tls.or(e.tls);
                    e.addr
                }
                None => {
                    let path = cluster::endpoint_path(&self.data_dir);
                    let what = if path.exists() {
                        format!(
                            "{} (its {} is damaged: expected addr= and pid= lines; restart the node or pass --node)",
                            self.data_dir.display(),
                            cluster::ENDPOINT_FILE
                        )
                    } else {
                        format!(
                            "{} (no {} there)",
                            self.data_dir.display(),
                            cluster::ENDPOINT_FILE
                        )
                    };
                    return Err(ApiError::NoNode {
                        addr: what,
                        hint: self.dir_hint(),
                    });
                }
            },
        };
        let cookie = match cluster::cookie(Some(&self.data_dir), false) {
            Ok(c) => c,
            Err(e) => {
                // Say "no node" rather than "no cookie" when nothing listens there anyway.
                if let Err(why) = tokio::net::TcpStream::connect(&addr).await {
                    return Err(ApiError::NoNode {
                        addr,
                        hint: self.hint(&why.to_string()),
                    });
                }
                return Err(e);
            }
        };
        let connected = match &tls {
            Some(t) => Client::connect_tls(&addr, cookie, t).await,
            None => Client::connect(&addr, cookie).await,
        };
        match connected {
            // The node's address came from the data dir: say which one.
            Err(ApiError::NoNode { addr, hint }) if self.node.is_none() => Err(ApiError::NoNode {
                addr,
                hint: format!("{hint}; {}", self.dir_hint()),
            }),
            other => other,
        }
    }

    /// What to say after an error reaching the node: with --node, the error itself.
    fn hint(&self, why: &str) -> String {
        match &self.node {
            Some(_) => format!("{why}; is `workshop node` running there?"),
            None => format!("{why}; {}", self.dir_hint()),
        }
    }
}

/// The TLS files from WORKSHOP_TLS_CERT, WORKSHOP_TLS_KEY and WORKSHOP_TLS_CA, when all three
/// are set.
fn tls_from_env() -> Option<cluster::TlsOptions> {
    let var = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    Some(cluster::TlsOptions {
        cert: var("WORKSHOP_TLS_CERT")?,
        key: var("WORKSHOP_TLS_KEY")?,
        ca: var("WORKSHOP_TLS_CA")?,
    })
}

/// Print an error as text (stderr) or JSON (stdout: `{"error": {"code", "message"}}`).
pub fn print_error(e: &anyhow::Error, json: bool) {
    let (code, message) = match e.downcast_ref::<ApiError>() {
        Some(api) => (api.code(), commands::cli_message(api)),
        None => ("error", format!("{e:#}")),
    };
    if json {
        let v = serde_json::json!({ "error": { "code": code, "message": message } });
        println!("{v}");
    } else {
        eprintln!("workshop: {message}");
    }
}

fn out<T: serde::Serialize>(
    t: &Target,
    value: &T,
    text: impl FnOnce(&T) -> String,
) -> anyhow::Result<()> {
    if t.json {
        println!("{}", serde_json::to_string_pretty(value)?);
    } else {
        print!("{}", text(value));
    }
    Ok(())
}

/// The agents of the node, or of every node of its cluster (one table per node).
pub async fn status(t: &Target) -> anyhow::Result<()> {
    let client = t.client().await?;
    let nodes = client.cluster_status().await?;
    if nodes.len() <= 1 {
        let rows = nodes.into_iter().next().map(|n| n.rows).unwrap_or_default();
        return out(t, &rows, |r| print::status_table(r));
    }
    out(t, &nodes, |nodes| {
        nodes
            .iter()
            .map(|n| match &n.error {
                Some(e) => format!("node {}: {e}\n\n", n.node),
                None => format!("node {}:\n{}\n", n.node, print::status_table(&n.rows)),
            })
            .collect()
    })
}

pub async fn agents(t: &Target) -> anyhow::Result<()> {
    let names = t.client().await?.agents().await?;
    out(t, &names, |n| {
        n.iter().map(|n| format!("{n}\n")).collect::<String>()
    })
}

pub async fn ask(t: &Target, name: &str, prompt: &str) -> anyhow::Result<()> {
    let r = t.client().await?.ask(name, prompt).await?;
    out(t, &r, |r| format!("{}\n", r.text))
}

pub async fn cast(t: &Target, name: &str, prompt: &str) -> anyhow::Result<()> {
    let r = t.client().await?.cast(name, prompt).await?;
    out(t, &r.to_string(), |r| format!("{r}\n"))
}

pub async fn await_agent(t: &Target, name: &str, timeout_ms: Option<u64>) -> anyhow::Result<()> {
    let o = t
        .client()
        .await?
        .await_agent(name, timeout_ms.map(Duration::from_millis))
        .await?;
    out(t, &o, |o| match &o.last {
        Some(Ok(r)) if !o.was_idle => print::turn(&o.agent, r),
        Some(Err(e)) if !o.was_idle => format!("{}: {e}\n", o.agent),
        _ => format!("{} is {}.\n", o.agent, o.status),
    })
}

pub async fn workers(t: &Target) -> anyhow::Result<()> {
    let ws = t.client().await?.workers().await?;
    out(t, &ws, |ws| {
        if ws.is_empty() {
            return "No board workers.\n".into();
        }
        ws.iter()
            .map(|w| {
                format!(
                    "{} ({}): {} done, {} failed{}\n",
                    w.name,
                    w.work_type,
                    w.completed,
                    w.failed,
                    w.current_item
                        .as_ref()
                        .map(|i| format!(", working on {i}"))
                        .unwrap_or_default()
                )
            })
            .collect()
    })
}

pub async fn events(
    t: &Target,
    last: u64,
    topic: Option<String>,
    follow: bool,
) -> anyhow::Result<()> {
    let topic = match topic {
        None => None,
        Some(s) => Some(Topic::parse(&s).ok_or_else(|| {
            anyhow::anyhow!("unknown topic {s:?}: use agent, turn, work, workflow, schedule, store, budget, node or custom")
        })?),
    };
    let client = t.client().await?;
    let evs = client.cluster_events(last as usize, topic).await?;
    let mut after: std::collections::BTreeMap<String, u64> = std::collections::BTreeMap::new();
    let tagged = client.nodes().await.map(|n| n.len() > 1).unwrap_or(false);
    let mut note = |e: &workshop_proto::api::NodeEvent| {
        let c = after.entry(e.node.clone()).or_insert(0);
        *c = (*c).max(e.event.seq);
    };
    let show = |e: &workshop_proto::api::NodeEvent| -> anyhow::Result<()> {
        if t.json {
            // The event's own fields, and the node it happened on.
            let mut v = serde_json::to_value(&e.event)?;
            if let Some(o) = v.as_object_mut() {
                o.insert("node".into(), serde_json::Value::String(e.node.clone()));
            }
            println!("{v}");
        } else if tagged {
            println!("{} {}", e.node, e.event.line);
        } else {
            println!("{}", e.event.line);
        }
        Ok(())
    };
    if evs.is_empty() && !t.json && !follow {
        println!("No events.");
    }
    for e in &evs {
        note(e);
        show(e)?;
    }
    if !follow {
        return Ok(());
    }
    // A node with no event shown yet is followed from its latest event (the node decides).
    loop {
        let batch = tokio::select! {
            b = client.cluster_events_after(after.clone(), topic, Duration::from_secs(30)) => b?,
            _ = tokio::signal::ctrl_c() => return Ok(()),
        };
        for e in &batch {
            let c = after.entry(e.node.clone()).or_insert(0);
            *c = (*c).max(e.event.seq);
            show(e)?;
        }
    }
}

pub async fn cost(t: &Target) -> anyhow::Result<()> {
    let client = t.client().await?;
    let costs = client.costs().await?;
    let total = client.total_cost().await?;
    if t.json {
        let per: serde_json::Map<String, serde_json::Value> = costs
            .iter()
            .map(|(n, c)| (n.to_string(), serde_json::json!(c)))
            .collect();
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({ "agents": per, "total": total }))?
        );
    } else {
        print!("{}", print::costs(&costs, total));
    }
    Ok(())
}

/// Every node of the cluster: address, up or down, uptime, agents, workers, last seen.
pub async fn nodes(t: &Target) -> anyhow::Result<()> {
    let nodes = t.client().await?.nodes().await?;
    let now = workshop_types::now_ms();
    out(t, &nodes, |ns| {
        ns.iter()
            .map(|n| {
                let state = if n.up {
                    format!(
                        "up {}",
                        n.started_at_ms
                            .map(|s| uptime(now.saturating_sub(s)))
                            .unwrap_or_else(|| "?".into())
                    )
                } else {
                    "DOWN".to_string()
                };
                let seen = n
                    .last_seen_ms
                    .map(|s| format!("seen {} ago", uptime(now.saturating_sub(s))))
                    .unwrap_or_else(|| "never seen".into());
                format!(
                    "{}{}{}  {}  {state}  {} agents  {} workers  {seen}\n",
                    n.name,
                    if n.this { " (this node)" } else { "" },
                    if n.board { " [board]" } else { "" },
                    n.addr.as_deref().unwrap_or("-"),
                    n.agents,
                    n.workers,
                )
            })
            .collect()
    })
}

fn uptime(ms: u64) -> String {
    let s = ms / 1000;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{}s", s / 60, s % 60),
        _ => format!("{}h{}m", s / 3600, (s % 3600) / 60),
    }
}

pub async fn stop(t: &Target) -> anyhow::Result<()> {
    let client = t.client().await?;
    let info = client.node_info().await?;
    match client.stop_node().await {
        Ok(()) => {}
        // The node may stop before its reply gets out: what counts is that it goes away.
        Err(ApiError::Disconnected(why)) => tracing::debug!(%why, "stop: connection closed"),
        Err(e) => return Err(e.into()),
    }
    drop(client);
    // Wait for the node to be gone: a node on this machine (its data dir here names its pid)
    // by its process; one elsewhere by its cluster port closing (it closes last).
    let here = info
        .data_dir
        .as_deref()
        .and_then(|d| cluster::read_endpoint(Path::new(d)))
        .is_some_and(|e| e.pid == info.pid);
    let port = t.node.clone().or_else(|| info.addr.clone());
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let gone = if here || port.is_none() {
            !cluster::pid_alive(info.pid) || info.pid == std::process::id()
        } else {
            let addr = port.as_deref().unwrap_or_default();
            tokio::net::TcpStream::connect(addr).await.is_err()
        };
        if gone {
            break;
        }
        if std::time::Instant::now() > deadline {
            anyhow::bail!(
                "the node {} (pid {}) is still stopping after 60 s; it finishes in-flight work first",
                info.name,
                info.pid
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    if t.json {
        println!(
            "{}",
            serde_json::json!({ "stopped": info.name, "pid": info.pid })
        );
    } else {
        println!("stopped {} (pid {})", info.name, info.pid);
    }
    Ok(())
}

/// Whether to fall back to opening the data dir: only when no node answers for it.
async fn node_or_dir(t: &Target) -> anyhow::Result<Option<Client>> {
    match t.client().await {
        Ok(c) => Ok(Some(c)),
        Err(ApiError::NoNode { .. }) if t.node.is_none() => Ok(None),
        Err(e) => Err(e.into()),
    }
}

pub async fn board(
    t: &Target,
    status: Option<String>,
    work_type: Option<String>,
) -> anyhow::Result<()> {
    let Some(client) = node_or_dir(t).await? else {
        return commands::board(&t.data_dir, status, work_type, t.json).await;
    };
    let items = client
        .board(status.as_deref(), work_type.as_deref())
        .await?;
    if items.is_empty() && !t.json {
        println!("Board is empty.");
    }
    for i in &items {
        if t.json {
            println!("{}", serde_json::to_string(i)?);
        } else {
            println!("{}", i.line());
        }
    }
    Ok(())
}

/// `workshop board backup DIR`: the board is copied by the board node, into DIR on ITS
/// filesystem.
pub async fn board_backup(t: &Target, dir: &str) -> anyhow::Result<()> {
    if !Path::new(dir).is_absolute() {
        anyhow::bail!(
            "the backup directory `{dir}` is not an absolute path; name it absolutely (it is a \
             path on the board node's filesystem, which may not be this machine)"
        );
    }
    let client = t.client().await?;
    let info = client.board_backup(dir).await?;
    // Name the node that wrote it: the board node, which may not be the node asked.
    let nodes = client.nodes().await.unwrap_or_default();
    let board_node = match nodes.iter().find(|n| n.board) {
        Some(n) => n.name.clone(),
        None => client.node_info().await?.name,
    };
    if t.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "node": board_node,
                "dir": dir,
                "items": info.items,
                "parts": info.parts,
            }))?
        );
    } else {
        println!(
            "board backed up on node {board_node}: {} items, {} result parts, at {dir}",
            info.items, info.parts
        );
    }
    Ok(())
}

pub async fn work(t: &Target, cmd: WorkCommand) -> anyhow::Result<()> {
    let Some(client) = node_or_dir(t).await? else {
        return commands::work(&t.data_dir, cmd, t.json).await;
    };
    let item = match cmd {
        WorkCommand::Add {
            id,
            title,
            work_type,
            spec,
            priority,
            depends_on,
        } => {
            client
                .work(
                    &id,
                    &title,
                    workshop_node::WorkOptions {
                        work_type: Some(work_type),
                        spec: Some(spec),
                        priority: Some(priority),
                        depends_on,
                        ..Default::default()
                    },
                )
                .await?
        }
        WorkCommand::Show { id } => match client.work_item(&id).await? {
            Some(i) => i,
            None => anyhow::bail!("no work item {id}; `workshop board` lists them"),
        },
        WorkCommand::Claim {
            id,
            agent,
            lease_ms,
        } => client.claim_work_for(&id, &agent, lease_ms).await?,
        WorkCommand::Complete { id, result, by } => {
            client.complete_work(&id, Some(result), by.by()).await?
        }
        WorkCommand::Fail { id, error, by } => client.fail_work(&id, Some(error), by.by()).await?,
        WorkCommand::Cancel { id } => client.cancel_work(&id).await?,
        WorkCommand::Result { id } => {
            return commands::print_result(&id, client.work_result(&id).await?, t.json)
        }
    };
    commands::print_full(&item, t.json)
}
