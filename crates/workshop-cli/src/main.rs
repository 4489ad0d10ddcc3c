//! The `workshop` binary.

mod commands;
mod console;
mod demo;

use std::io::{IsTerminal, Read};
use std::path::PathBuf;

use clap::{Parser, Subcommand};
use workshop_node::Node;

#[derive(Parser)]
#[command(
    name = "workshop",
    version,
    about = "Run fleets of LLM coding agents as named, supervised actors.",
    long_about = "Run fleets of LLM coding agents (Claude Code and others) as named, supervised, \
long-lived actors: ask, cast, pipe and fan between them from a console or a script.\n\n\
Start with `workshop demo`, then `workshop console`."
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
    /// Start a local node and open the console (AgentWorkshop's functions in rhai).
    Console {
        /// Run this script non-interactively and exit (non-zero on the first error).
        #[arg(long, value_name = "FILE")]
        script: Option<PathBuf>,
        /// Do not load .workshop.rhai from the working directory.
        #[arg(long)]
        no_setup: bool,
        #[command(flatten)]
        data: DataArgs,
    },
    /// Show the work board of a data directory (while no node holds it).
    Board {
        /// new, ready, claimed, in_progress, done, failed, blocked or cancelled
        #[arg(long)]
        status: Option<String>,
        #[arg(long = "type")]
        work_type: Option<String>,
        #[command(flatten)]
        dir: DirArgs,
    },
    /// Add, show, complete, fail or cancel work items (while no node holds the data directory).
    Work {
        #[command(subcommand)]
        command: commands::WorkCommand,
        #[command(flatten)]
        dir: DirArgs,
    },
    /// Run a node in the foreground until Ctrl-C (loads .workshop.rhai if present).
    Node {
        /// Do not load .workshop.rhai from the working directory.
        #[arg(long)]
        no_setup: bool,
        #[command(flatten)]
        data: DataArgs,
    },
}

#[derive(clap::Args)]
struct DirArgs {
    /// The node's data directory.
    #[arg(
        long,
        value_name = "DIR",
        default_value = ".workshop",
        env = "WORKSHOP_DATA_DIR",
        global = true
    )]
    data_dir: PathBuf,
    /// Print JSON instead of text.
    #[arg(long, global = true)]
    json: bool,
}

#[derive(clap::Args)]
struct DataArgs {
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
    fn dir(&self) -> Option<&std::path::Path> {
        (!self.ephemeral).then_some(self.data_dir.as_path())
    }
}

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("WORKSHOP_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("workshop: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match cli.command {
        Command::Board {
            status,
            work_type,
            dir,
        } => return rt.block_on(commands::board(&dir.data_dir, status, work_type, dir.json)),
        Command::Work { command, dir } => {
            return rt.block_on(commands::work(&dir.data_dir, command, dir.json))
        }
        _ => {}
    }
    let data_dir = match &cli.command {
        Command::Board { .. } | Command::Work { .. } | Command::Demo => None,
        Command::Console { data, .. } | Command::Node { data, .. } => data.dir(),
    };
    let node = match data_dir {
        None => rt.block_on(Node::start())?,
        Some(dir) => rt.block_on(Node::open(dir))?,
    };
    let result = match cli.command {
        Command::Demo => {
            let ctx = console::Ctx::new(node.client(), rt.handle().clone(), false);
            demo::run(&ctx)
        }
        Command::Console {
            script, no_setup, ..
        } => {
            let stdin_script = script.is_none() && !std::io::stdin().is_terminal();
            let ctx = console::Ctx::new(
                node.client(),
                rt.handle().clone(),
                script.is_none() && !stdin_script,
            );
            (|| {
                if !no_setup && std::path::Path::new(console::SETUP_FILE).exists() {
                    console::load(&ctx, std::path::Path::new(console::SETUP_FILE))
                        .map_err(|e| anyhow::anyhow!("{}: {e}", console::SETUP_FILE))?;
                }
                if let Some(path) = script {
                    let text = std::fs::read_to_string(&path)
                        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
                    console::run_script(&ctx, &text)
                        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
                } else if stdin_script {
                    let mut text = String::new();
                    std::io::stdin().read_to_string(&mut text)?;
                    console::run_script(&ctx, &text).map_err(|e| anyhow::anyhow!("<stdin>: {e}"))
                } else {
                    console::repl(&ctx)
                }
            })()
        }
        Command::Board { .. } | Command::Work { .. } => Ok(()),
        Command::Node { no_setup, .. } => {
            let ctx = console::Ctx::new(node.client(), rt.handle().clone(), false);
            (|| {
                if !no_setup && std::path::Path::new(console::SETUP_FILE).exists() {
                    console::load(&ctx, std::path::Path::new(console::SETUP_FILE))
                        .map_err(|e| anyhow::anyhow!("{}: {e}", console::SETUP_FILE))?;
                }
                eprintln!(
                    "workshop node running ({} agents); Ctrl-C stops it.",
                    node.workshop.agents().len()
                );
                rt.block_on(tokio::signal::ctrl_c())?;
                Ok(())
            })()
        }
    };
    rt.block_on(node.shutdown());
    result
}
