//! The `workshop` binary.

mod commands;
mod console;
mod daemon;
mod demo;
mod remote;

use std::io::{IsTerminal, Read};
use std::path::{Path, PathBuf};

use clap::{Parser, Subcommand};
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
    Node {
        /// Do not load .workshop.rhai from the working directory.
        #[arg(long)]
        no_setup: bool,
        /// Where the cluster port listens (port 0: any free port). Clients find the node through
        /// <data dir>/node.endpoint.
        #[arg(
            long,
            value_name = "ADDR",
            env = "WORKSHOP_LISTEN",
            default_value = "127.0.0.1:4221"
        )]
        listen: std::net::SocketAddr,
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
    /// Show the work board (of the running node; of the data dir when no node holds it).
    Board {
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
    /// The nodes this node knows (itself, until clustering lands).
    Nodes {
        #[command(flatten)]
        target: remote::Target,
    },
    /// Print shell completions (bash, zsh, fish, elvish, powershell).
    Completions { shell: clap_complete::Shell },
}

#[derive(clap::Args)]
pub struct DataArgs {
    /// Where the node keeps its durable state (agents, store, events).
    #[arg(
        long,
        value_name = "DIR",
        default_value = ".workshop",
        env = "WORKSHOP_DATA_DIR"
    )]
    data_dir: PathBuf,
    /// Keep nothing: no data directory is read or written.
    #[arg(long, conflicts_with = "data_dir")]
    ephemeral: bool,
}

impl DataArgs {
    fn dir(&self) -> Option<&Path> {
        (!self.ephemeral).then_some(self.data_dir.as_path())
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
        detach: true, data, ..
    } = &cli.command
    {
        // Before any runtime or thread exists: the child is a fresh process.
        return daemon::detach(data.dir());
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
            let target = remote::Target::attach(addr, data.data_dir.clone());
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
            let node = open_node(&rt, data.dir())?;
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
            listen,
            grace_ms,
            data,
            ..
        } => run_node(&rt, data.dir(), listen, no_setup, grace_ms),
        Command::Completions { shell } => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(shell, &mut cmd, "workshop", &mut std::io::stdout());
            Ok(())
        }
        Command::Board {
            status,
            work_type,
            target,
        } => rt.block_on(remote::board(&target, status, work_type)),
        Command::Work { command, target } => rt.block_on(remote::work(&target, command)),
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
            .map_err(|e| anyhow::anyhow!("{}: {e}", console::SETUP_FILE))?;
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

/// `workshop node`: open the node, listen, load the setup file, then run until Ctrl-C, SIGTERM
/// or a `stop` request; stop gracefully and exit 0.
fn run_node(
    rt: &tokio::runtime::Runtime,
    dir: Option<&Path>,
    listen: std::net::SocketAddr,
    no_setup: bool,
    grace_ms: u64,
) -> anyhow::Result<()> {
    // Catch SIGTERM from the very start: one that arrives while the node opens or loads its
    // setup file is delivered once it runs, and stops it gracefully like any other.
    let term = {
        let _guard = rt.enter();
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?
    };
    let mut node = open_node(rt, dir)?;
    node.set_stop_grace(std::time::Duration::from_millis(grace_ms));
    let served = (|| -> anyhow::Result<Option<std::net::SocketAddr>> {
        let cookie = match workshop_node::cluster::cookie(dir, true) {
            Ok(c) => c,
            Err(e) if dir.is_none() => {
                eprintln!("workshop node: not listening: {e}");
                return Ok(None);
            }
            Err(e) => return Err(e.into()),
        };
        Ok(Some(rt.block_on(node.listen(listen, cookie))?))
    })();
    let result = served.and_then(|addr| {
        let ctx = console::Ctx::new(node.client(), rt.handle().clone(), false);
        if !no_setup {
            load_setup(&ctx)?;
        }
        let agents = rt.block_on(node.client().agents())?.len();
        match (addr, dir) {
            (Some(a), Some(d)) => eprintln!(
                "workshop node listening on {a} ({agents} agents, data dir {}); Ctrl-C or `workshop stop` stops it.",
                d.display()
            ),
            (Some(a), None) => eprintln!(
                "workshop node listening on {a} ({agents} agents, ephemeral); Ctrl-C stops it."
            ),
            (None, _) => eprintln!("workshop node running ({agents} agents); Ctrl-C stops it."),
        }
        rt.block_on(wait_for_stop(&node, term))
    });
    eprintln!("workshop node stopping...");
    rt.block_on(node.shutdown());
    if let Some(d) = dir {
        daemon::remove_own_pid_file(d);
    }
    eprintln!("workshop node stopped.");
    result
}

async fn wait_for_stop(node: &Node, mut term: tokio::signal::unix::Signal) -> anyhow::Result<()> {
    tokio::select! {
        r = tokio::signal::ctrl_c() => r?,
        _ = term.recv() => {},
        _ = node.stop_requested() => {},
    }
    Ok(())
}
