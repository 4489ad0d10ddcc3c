//! The `workshop` binary.

mod commands;
mod console;
mod daemon;
mod demo;
mod remote;

use std::io::{IsTerminal, Read};
use std::path::{Path, PathBuf};

use clap::{Parser, Subcommand};
use std::sync::Arc;

use workshop_node::mcp_access::{self, McpAccess};
use workshop_node::Node;

#[derive(Parser)]
#[command(
    name = "workshop",
    version,
    about = "Run fleets of LLM coding agents as named, supervised actors.",
    long_about = "Run fleets of LLM coding agents (Claude Code and others) as named, supervised, \
long-lived actors: ask, cast, pipe and fan between them from a console or a script.\n\n\
Start with `workshop demo`, then `workshop console`. `workshop node` runs a node that \
`workshop console --attach` and the commands below (status, ask, board, ...) act on."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a planner -> coder -> reviewer exchange on the script backend and print the status
    /// table and costs (no model, no network).
    Demo,
    /// Open the console (AgentWorkshop's functions in rhai) on a node of its own, or with
    /// --attach on a running node.
    Console {
        /// Act on a running node instead of starting one: its address, or (no value) the node
        /// that holds --data-dir.
        #[arg(long, value_name = "ADDR", num_args = 0..=1, default_missing_value = "")]
        attach: Option<String>,
        /// Run this script non-interactively and exit (non-zero on the first error).
        #[arg(long, value_name = "FILE")]
        script: Option<PathBuf>,
        /// Do not load .workshop.rhai from the working directory (never loaded with --attach).
        #[arg(long)]
        no_setup: bool,
        #[command(flatten)]
        data: DataArgs,
    },
    /// Run a node until Ctrl-C, SIGTERM or `workshop stop` (loads .workshop.rhai if present).
    #[command(
        long_about = "Run a node until Ctrl-C, SIGTERM or `workshop stop` (loads .workshop.rhai \
if present).\n\n\
Alone (no --config) it is the board node of a cluster of one, named by --name, \
WORKSHOP_NODE_NAME or the host name. With --config FILE it is the node --name of that cluster \
file (see cluster.toml): its listen address, data dir, ports, the board node, the peers, the \
cookie and TLS come from the file. Every setting below overrides the file; the order is \
flag > environment variable > file > default. A bad file is refused (file, line and key named) \
before anything starts.",
        after_help = "Examples:\n  workshop node\n  workshop node --config cluster.toml --name n2\n  \
WORKSHOP_COOKIE=... workshop node --ephemeral --listen 127.0.0.1:0"
    )]
    Node {
        /// Do not load .workshop.rhai from the working directory.
        #[arg(long)]
        no_setup: bool,
        /// Run in the background: log to <data dir>/node.log, pid in <data dir>/node.pid.
        #[arg(long)]
        detach: bool,
        /// On stop (Ctrl-C, SIGTERM, `workshop stop`): how long board workers may finish their
        /// items before the turns are interrupted and the items handed back to the board.
        #[arg(
            long,
            value_name = "MS",
            env = "WORKSHOP_STOP_GRACE_MS",
            default_value_t = 5000
        )]
        grace_ms: u64,
        #[command(flatten)]
        data: DataArgs,
        // Last: its help heading applies to the arguments after it.
        #[command(flatten)]
        cluster: ClusterArgs,
    },
    /// Serve the MCP tools over stdin/stdout for a host that launches a process (Claude Code,
    /// editors): on the running node of --data-dir (or --node), else on a node of its own.
    /// `workshop node` serves the same tools over HTTP at /mcp (port 4222).
    Mcp {
        /// Speak MCP on stdin/stdout (the only mode of this command).
        #[arg(long)]
        stdio: bool,
        #[command(flatten)]
        target: remote::Target,
    },
    /// Stop a running node gracefully (as SIGTERM does) and wait for it to exit.
    Stop {
        #[command(flatten)]
        target: remote::Target,
    },
    /// The agents table of a running node.
    Status {
        #[command(flatten)]
        target: remote::Target,
    },
    /// Agent names of a running node.
    Agents {
        #[command(flatten)]
        target: remote::Target,
    },
    /// Send a prompt to an agent of a running node and wait for its result.
    Ask {
        name: String,
        prompt: String,
        #[command(flatten)]
        target: remote::Target,
    },
    /// Queue a prompt for an agent of a running node; prints the request ref.
    Cast {
        name: String,
        prompt: String,
        #[command(flatten)]
        target: remote::Target,
    },
    /// Wait until an agent of a running node has nothing in flight or queued.
    Await {
        name: String,
        /// Give up after this many milliseconds.
        #[arg(long, value_name = "MS")]
        timeout_ms: Option<u64>,
        #[command(flatten)]
        target: remote::Target,
    },
    /// Show the work board (of the running node; of the data dir when no node holds it), or
    /// back it up (`workshop board backup DIR`).
    #[command(args_conflicts_with_subcommands = true)]
    Board {
        #[command(subcommand)]
        action: Option<BoardCommand>,
        /// new, ready, claimed, in_progress, done, failed, blocked or cancelled
        #[arg(long)]
        status: Option<String>,
        #[arg(long = "type")]
        work_type: Option<String>,
        #[command(flatten)]
        target: remote::Target,
    },
    /// Add, show, complete, fail or cancel work items (on the running node; on the data dir
    /// when no node holds it).
    Work {
        #[command(subcommand)]
        command: commands::WorkCommand,
        #[command(flatten)]
        target: remote::Target,
    },
    /// Board workers of a running node.
    Workers {
        #[command(flatten)]
        target: remote::Target,
    },
    /// Recent events of a running node.
    Events {
        /// How many.
        #[arg(long, default_value_t = 20)]
        last: u64,
        /// agent, turn, work, workflow, schedule, store, budget, node or custom
        #[arg(long)]
        topic: Option<String>,
        /// Keep printing new events until interrupted.
        #[arg(long)]
        follow: bool,
        #[command(flatten)]
        target: remote::Target,
    },
    /// Costs per agent and the total, of a running node.
    Cost {
        #[command(flatten)]
        target: remote::Target,
    },
    /// The nodes of the running node's cluster: itself and the peers it knows, with their state.
    Nodes {
        #[command(flatten)]
        target: remote::Target,
    },
    /// Print shell completions (bash, zsh, fish, elvish, powershell).
    Completions { shell: clap_complete::Shell },
}

/// `workshop board ...`.
#[derive(clap::Subcommand)]
pub enum BoardCommand {
    /// Back up the cluster's board while it runs, into DIR ON THE BOARD NODE's filesystem
    /// (which may not be the node you ask): an absolute path that does not exist yet or is an
    /// empty directory. To restore: stop the board node, move its <data>/board aside, move the
    /// backup in its place, start the node.
    Backup {
        /// The new backup directory: an absolute path on the board node.
        dir: String,
        #[command(flatten)]
        target: remote::Target,
    },
}

#[derive(clap::Args)]
pub struct DataArgs {
    /// Where the node keeps its durable state (agents, store, events) [default: the node's
    /// data_dir in --config, else .workshop]
    #[arg(long, value_name = "DIR", env = "WORKSHOP_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Keep nothing: no data directory is read or written.
    #[arg(long, conflicts_with = "data_dir")]
    ephemeral: bool,
}

impl DataArgs {
    /// The data dir given, else the default.
    fn path(&self) -> PathBuf {
        self.data_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from(workshop_node::config::DEFAULT_DATA_DIR))
    }

    fn dir(&self) -> Option<PathBuf> {
        (!self.ephemeral).then(|| self.path())
    }
}

/// `workshop node`'s place in a cluster: a cluster file and the settings that override it.
#[derive(clap::Args)]
#[command(next_help_heading = "Cluster")]
pub struct ClusterArgs {
    /// The cluster file (cluster.toml) shared by every node; --name picks this node's section.
    #[arg(long, value_name = "FILE", env = "WORKSHOP_CONFIG")]
    config: Option<PathBuf>,
    /// This node's name: a [nodes.NAME] section of --config (may be left out when the file has
    /// one node). Without --config: WORKSHOP_NODE_NAME, else the host name.
    #[arg(long, value_name = "NAME", env = "WORKSHOP_NAME")]
    name: Option<String>,
    /// Where the cluster port listens (port 0: any free port). Clients find the node through
    /// <data dir>/node.endpoint. [default: the node's listen in --config, else 127.0.0.1:4221]
    #[arg(long, value_name = "ADDR", env = "WORKSHOP_LISTEN")]
    listen: Option<std::net::SocketAddr>,
    /// The address (HOST:PORT) other nodes reach this one at, when it differs from --listen
    /// (listening on 0.0.0.0, NAT, containers).
    #[arg(long, value_name = "HOST:PORT", env = "WORKSHOP_ADVERTISE")]
    advertise: Option<String>,
    /// The node that holds the cluster's board [default: the file's board; alone: this node]
    #[arg(long, value_name = "NAME", env = "WORKSHOP_BOARD")]
    board: Option<String>,
    /// An address (HOST:PORT) to join, besides the nodes of --config; repeat it for several
    /// (WORKSHOP_PEERS: comma-separated). Replaces the file's `peers`.
    #[arg(
        long = "peer",
        value_name = "HOST:PORT",
        env = "WORKSHOP_PEERS",
        value_delimiter = ','
    )]
    peers: Vec<String>,
    /// A file that holds the cluster's cookie (mode 0600) [default: the file's cookie_file or
    /// cookie_env, else WORKSHOP_COOKIE, else <data dir>/cookie (made if missing)]
    #[arg(long, value_name = "FILE", env = "WORKSHOP_COOKIE_FILE")]
    cookie_file: Option<PathBuf>,
    /// TLS between nodes: this node's certificate (PEM), signed by --tls-ca.
    #[arg(long, value_name = "FILE", env = "WORKSHOP_TLS_CERT")]
    tls_cert: Option<PathBuf>,
    /// TLS between nodes: this node's private key (PEM).
    #[arg(long, value_name = "FILE", env = "WORKSHOP_TLS_KEY")]
    tls_key: Option<PathBuf>,
    /// TLS between nodes: the CA certificate (PEM) that signed every node's certificate.
    #[arg(long, value_name = "FILE", env = "WORKSHOP_TLS_CA")]
    tls_ca: Option<PathBuf>,
    /// The MCP server's port (Streamable HTTP at /mcp; 0 picks a free port; the URL is written
    /// to <data dir>/node.endpoint) [default: the file's mcp_port, else 4222]
    #[arg(long, value_name = "PORT", env = "WORKSHOP_MCP_PORT")]
    mcp_port: Option<u16>,
    /// The address the MCP server binds; anything but loopback requires a bearer token
    /// (WORKSHOP_MCP_TOKEN, else <data dir>/mcp.token) [default: the file's mcp_host, else
    /// 127.0.0.1]
    #[arg(long, value_name = "IP", env = "WORKSHOP_MCP_HOST")]
    mcp_host: Option<std::net::IpAddr>,
    /// Serve no MCP (agents with workshop_tools then cannot start); wins over --mcp-port.
    #[arg(long)]
    no_mcp: bool,
    /// The dashboard's port (planned; not served yet).
    #[arg(long, value_name = "PORT", env = "WORKSHOP_WEB_PORT")]
    web_port: Option<u16>,
}

impl ClusterArgs {
    fn settings(&self, data: &DataArgs) -> workshop_node::config::NodeSettings {
        workshop_node::config::NodeSettings {
            config: self.config.clone(),
            name: self.name.clone(),
            listen: self.listen,
            advertise: self.advertise.clone(),
            board: self.board.clone(),
            peers: self.peers.clone(),
            cookie_file: self.cookie_file.clone(),
            tls_cert: self.tls_cert.clone(),
            tls_key: self.tls_key.clone(),
            tls_ca: self.tls_ca.clone(),
            mcp_port: self.mcp_port,
            web_port: self.web_port,
            mcp_host: self.mcp_host,
            data_dir: data.data_dir.clone(),
            ephemeral: data.ephemeral,
        }
    }
}

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("WORKSHOP_LOG").unwrap_or_else(|_| {
                tracing_subscriber::EnvFilter::new("warn,ractor_cluster=error")
            }),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let cli = Cli::parse();
    let json = cli.command.json();
    match run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            remote::print_error(&e, json);
            std::process::ExitCode::FAILURE
        }
    }
}

impl Command {
    fn json(&self) -> bool {
        match self {
            Command::Stop { target }
            | Command::Status { target }
            | Command::Agents { target }
            | Command::Ask { target, .. }
            | Command::Cast { target, .. }
            | Command::Await { target, .. }
            | Command::Board {
                action: Some(BoardCommand::Backup { target, .. }),
                ..
            }
            | Command::Board { target, .. }
            | Command::Work { target, .. }
            | Command::Workers { target }
            | Command::Events { target, .. }
            | Command::Cost { target }
            | Command::Nodes { target } => target.json,
            _ => false,
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    if let Command::Node {
        detach: true,
        cluster,
        data,
        ..
    } = &cli.command
    {
        // Before any runtime or thread exists: the child is a fresh process. A bad cluster
        // file is refused here already (the child resolves it again).
        let plan = NodePlan::resolve(&cluster.settings(data))?;
        return daemon::detach(plan.data_dir());
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match cli.command {
        Command::Demo => {
            let node = rt.block_on(Node::start())?;
            let ctx = console::Ctx::new(node.client(), rt.handle().clone(), false);
            let result = demo::run(&ctx);
            rt.block_on(node.shutdown());
            result
        }
        Command::Console {
            attach: Some(addr),
            script,
            data,
            ..
        } => {
            let target = remote::Target::attach(addr, data.path());
            let client = rt.block_on(target.client())?;
            let stdin_script = script.is_none() && !std::io::stdin().is_terminal();
            let ctx = console::Ctx::new(
                client,
                rt.handle().clone(),
                script.is_none() && !stdin_script,
            );
            run_console(&ctx, script, stdin_script, true)
        }
        Command::Console {
            attach: None,
            script,
            no_setup,
            data,
        } => {
            let node = open_node(&rt, data.dir().as_deref())?;
            let stdin_script = script.is_none() && !std::io::stdin().is_terminal();
            let ctx = console::Ctx::new(
                node.client(),
                rt.handle().clone(),
                script.is_none() && !stdin_script,
            );
            let result = run_console(&ctx, script, stdin_script, no_setup);
            rt.block_on(node.shutdown());
            result
        }
        Command::Node {
            no_setup,
            grace_ms,
            cluster,
            data,
            ..
        } => {
            // A node's settings are resolved (a bad cluster file refused) before it starts.
            let plan = NodePlan::resolve(&cluster.settings(&data))?;
            let mcp = (!cluster.no_mcp).then(|| plan.mcp_addr(&cluster));
            run_node(&rt, plan, mcp, no_setup, grace_ms)
        }
        Command::Completions { shell } => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(shell, &mut cmd, "workshop", &mut std::io::stdout());
            Ok(())
        }
        Command::Board {
            action: Some(BoardCommand::Backup { dir, target }),
            ..
        } => rt.block_on(remote::board_backup(&target, &dir)),
        Command::Board {
            action: None,
            status,
            work_type,
            target,
        } => rt.block_on(remote::board(&target, status, work_type)),
        Command::Work { command, target } => rt.block_on(remote::work(&target, command)),
        Command::Mcp { stdio, target } => {
            let r = run_mcp(&rt, stdio, &target);
            // Stopped by a signal, the stdio reader still waits on an open stdin: do not wait
            // for it (the node has stopped by now).
            rt.shutdown_background();
            r
        }
        Command::Stop { target } => rt.block_on(remote::stop(&target)),
        Command::Status { target } => rt.block_on(remote::status(&target)),
        Command::Agents { target } => rt.block_on(remote::agents(&target)),
        Command::Ask {
            name,
            prompt,
            target,
        } => rt.block_on(remote::ask(&target, &name, &prompt)),
        Command::Cast {
            name,
            prompt,
            target,
        } => rt.block_on(remote::cast(&target, &name, &prompt)),
        Command::Await {
            name,
            timeout_ms,
            target,
        } => rt.block_on(remote::await_agent(&target, &name, timeout_ms)),
        Command::Workers { target } => rt.block_on(remote::workers(&target)),
        Command::Events {
            last,
            topic,
            follow,
            target,
        } => rt.block_on(remote::events(&target, last, topic, follow)),
        Command::Cost { target } => rt.block_on(remote::cost(&target)),
        Command::Nodes { target } => rt.block_on(remote::nodes(&target)),
    }
}

fn open_node(rt: &tokio::runtime::Runtime, dir: Option<&Path>) -> anyhow::Result<Node> {
    Ok(match dir {
        None => rt.block_on(Node::start())?,
        Some(dir) => rt.block_on(Node::open(dir))?,
    })
}

fn load_setup(ctx: &console::Ctx) -> anyhow::Result<()> {
    if Path::new(console::SETUP_FILE).exists() {
        console::load(ctx, Path::new(console::SETUP_FILE))
            .map_err(|e| anyhow::anyhow!("{}: {}", console::SETUP_FILE, console::explain(&e)))?;
    }
    Ok(())
}

fn run_console(
    ctx: &console::Ctx,
    script: Option<PathBuf>,
    stdin_script: bool,
    no_setup: bool,
) -> anyhow::Result<()> {
    if !no_setup {
        load_setup(ctx)?;
    }
    if let Some(path) = script {
        let text = std::fs::read_to_string(&path)
            .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
        console::run_script(ctx, &text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
    } else if stdin_script {
        let mut text = String::new();
        std::io::stdin().read_to_string(&mut text)?;
        console::run_script(ctx, &text).map_err(|e| anyhow::anyhow!("<stdin>: {e}"))
    } else {
        console::repl(ctx)
    }
}

/// What `workshop node` starts: a node in its cluster, or (ephemeral, no cookie anywhere) a
/// node nobody can reach.
enum NodePlan {
    Cluster(Box<workshop_node::config::ResolvedNode>),
    Unreachable { why: String },
}

impl NodePlan {
    fn resolve(settings: &workshop_node::config::NodeSettings) -> anyhow::Result<Self> {
        use workshop_node::config::{self, ConfigError};
        let resolved = match config::resolve(settings) {
            Ok(r) => r,
            Err(ConfigError::NoCookie(why)) if settings.ephemeral && settings.config.is_none() => {
                return Ok(NodePlan::Unreachable { why })
            }
            Err(e) => return Err(e.into()),
        };
        Ok(NodePlan::Cluster(Box::new(resolved)))
    }

    fn data_dir(&self) -> Option<&Path> {
        match self {
            NodePlan::Cluster(r) => r.data_dir.as_deref(),
            NodePlan::Unreachable { .. } => None,
        }
    }

    /// Where the node serves MCP: the flags, else the cluster file, else 127.0.0.1:4222.
    fn mcp_addr(&self, args: &ClusterArgs) -> std::net::SocketAddr {
        let (host, port) = match self {
            NodePlan::Cluster(r) => (r.cluster.mcp_host, r.cluster.mcp_port),
            NodePlan::Unreachable { .. } => (args.mcp_host, args.mcp_port),
        };
        std::net::SocketAddr::new(
            host.unwrap_or(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST)),
            port.unwrap_or(workshop_mcp::DEFAULT_PORT),
        )
    }
}

/// `workshop node`: open the node, listen, load the setup file, then run until Ctrl-C, SIGTERM
/// or a `stop` request; stop gracefully and exit 0.
fn run_node(
    rt: &tokio::runtime::Runtime,
    plan: NodePlan,
    mcp: Option<std::net::SocketAddr>,
    no_setup: bool,
    grace_ms: u64,
) -> anyhow::Result<()> {
    // Catch SIGTERM from the very start: one that arrives while the node opens or loads its
    // setup file is delivered once it runs, and stops it gracefully like any other.
    let term = {
        let _guard = rt.enter();
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?
    };
    let dir = plan.data_dir().map(Path::to_path_buf);
    let mut options = Node::builder();
    if let Some(d) = &dir {
        options = options.data_dir(d);
    }
    let cluster = match plan {
        NodePlan::Cluster(r) => {
            options = options.cluster(r.cluster.clone());
            Some(r.cluster)
        }
        NodePlan::Unreachable { why } => {
            eprintln!("workshop node: not listening: {why}");
            None
        }
    };
    // MCP is bound before the node starts, so agents it restores with `workshop_tools` find
    // the URL; it is served once the node (its `Client`) exists.
    let access = Arc::new(McpAccess::new());
    let mcp_bound = match mcp {
        None => None,
        Some(addr) => {
            let bound = rt
                .block_on(workshop_mcp::Bound::bind(addr))
                .map_err(|e| anyhow::anyhow!(e))?;
            let token = mcp_access::operator_token(dir.as_deref())?;
            if bound.needs_token() && token.is_none() {
                anyhow::bail!(
                    "MCP on {} (off loopback) needs a token, and an ephemeral node keeps none: set {}",
                    bound.addr(),
                    mcp_access::TOKEN_ENV
                );
            }
            access.served(bound.url(), token);
            Some(bound)
        }
    };
    options = options.mcp(access.clone());
    // With ClusterOptions the node opens its cluster port and joins its peers as it starts.
    let mut node = rt.block_on(options.start())?;
    let mcp_server = mcp_bound.map(|b| {
        let _guard = rt.enter();
        workshop_mcp::serve(b, node.client(), access.clone())
    });
    let mcp_line = mcp_server
        .as_ref()
        .map(|s| format!("; MCP at {}", s.url))
        .unwrap_or_default();
    node.set_stop_grace(std::time::Duration::from_millis(grace_ms));
    let served: anyhow::Result<Option<String>> = Ok(cluster.as_ref().map(|c| {
        let reached = node.identity().addr.read().clone();
        match (&c.advertise, reached) {
            (Some(adv), _) => format!("{}, advertised as {adv}", c.listen),
            (None, Some(bound)) => bound,
            (None, None) => c.listen.to_string(),
        }
    }));
    let result = served.and_then(|addr| {
        let ctx = console::Ctx::new(node.client(), rt.handle().clone(), false);
        if !no_setup {
            load_setup(&ctx)?;
        }
        let agents = rt.block_on(node.client().agents())?.len();
        let role = cluster.as_ref().map(describe).unwrap_or_default();
        match (addr, &dir) {
            (Some(a), Some(d)) => eprintln!(
                "workshop node listening on {a} ({role}{agents} agents, data dir {}{mcp_line}); Ctrl-C or `workshop stop` stops it.",
                d.display()
            ),
            (Some(a), None) => eprintln!(
                "workshop node listening on {a} ({role}{agents} agents, ephemeral{mcp_line}); Ctrl-C stops it."
            ),
            (None, _) => eprintln!(
                "workshop node running ({agents} agents{mcp_line}); Ctrl-C stops it."
            ),
        }
        rt.block_on(wait_for_stop(&node, term))
    });
    eprintln!("workshop node stopping...");
    // The node first: its agents' last MCP calls still get answers while they stop.
    rt.block_on(node.shutdown());
    if let Some(s) = mcp_server {
        rt.block_on(s.stop());
    }
    if let Some(d) = &dir {
        daemon::remove_own_pid_file(d);
    }
    eprintln!("workshop node stopped.");
    result
}

/// `workshop mcp --stdio`: attach to the node of the target (its endpoint file, or --node),
/// else open a node of its own on the data dir, and serve MCP on stdin/stdout as the operator.
fn run_mcp(
    rt: &tokio::runtime::Runtime,
    stdio: bool,
    target: &remote::Target,
) -> anyhow::Result<()> {
    if !stdio {
        let served = workshop_node::cluster::read_endpoint(&target.data_dir)
            .and_then(|e| e.mcp)
            .map(|u| format!(" (the node of {} serves {u})", target.data_dir.display()))
            .unwrap_or_default();
        anyhow::bail!(
            "workshop mcp speaks MCP on stdin/stdout: add --stdio. Over HTTP, `workshop node` serves the tools at http://127.0.0.1:4222/mcp{served}"
        );
    }
    let running =
        target.node.is_some() || workshop_node::cluster::read_endpoint(&target.data_dir).is_some();
    if running {
        let client = rt.block_on(target.client())?;
        return rt
            .block_on(workshop_mcp::serve_stdio(client))
            .map_err(|e| anyhow::anyhow!(e));
    }
    // A node of its own: a host that stops this process with SIGTERM or Ctrl-C stops the node
    // gracefully (its agents' processes with it), as when it closes stdin.
    let term = {
        let _guard = rt.enter();
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?
    };
    let node = rt.block_on(Node::open(&target.data_dir))?;
    let served = rt.block_on(async {
        tokio::select! {
            r = workshop_mcp::serve_stdio(node.client()) => r,
            r = wait_for_stop(&node, term) => r.map_err(|e| e.to_string()),
        }
    });
    rt.block_on(node.shutdown());
    served.map_err(|e| anyhow::anyhow!(e))
}

/// `node n2, board n1, 2 peers; ` for the start line.
fn describe(c: &workshop_node::cluster::ClusterOptions) -> String {
    let board = match c.board.as_deref() {
        Some(b) if !c.is_board_node() => format!("board {b}"),
        _ => "the board node".to_string(),
    };
    let peers = match c.peers.len() {
        0 => String::new(),
        1 => ", 1 peer".to_string(),
        n => format!(", {n} peers"),
    };
    format!("node {}, {board}{peers}; ", c.name)
}

async fn wait_for_stop(node: &Node, mut term: tokio::signal::unix::Signal) -> anyhow::Result<()> {
    tokio::select! {
        r = tokio::signal::ctrl_c() => r?,
        _ = term.recv() => {},
        _ = node.stop_requested() => {},
    }
    Ok(())
}
