//! `workshop board` and `workshop work ...` on a data directory that no node holds: they open
//! the board directly (no node is started). While a node runs, `remote` sends them to it.

use std::path::Path;

use clap::Subcommand;
use workshop_board::durable::{DurableBoard, DurableOptions};
use workshop_board::item::{NewItem, SettleBy, WorkItem};
use workshop_board::state::ListFilter;
use workshop_board::store::StoreError;

use workshop_node::ApiError;

#[derive(Subcommand)]
pub enum WorkCommand {
    /// Add a work item.
    Add {
        id: String,
        title: String,
        /// code, review, test, docs, deploy, triage, custom or custom:<name>
        #[arg(long = "type", default_value = "custom")]
        work_type: String,
        #[arg(long, default_value = "")]
        spec: String,
        /// 1 (highest) to 5.
        #[arg(long, default_value_t = 3)]
        priority: u8,
        /// Ids this item waits for (comma separated or repeated).
        #[arg(long, value_delimiter = ',')]
        depends_on: Vec<String>,
    },
    /// Show one item in full.
    Show { id: String },
    /// Claim a ready item by hand for an agent; prints the lease token that settles it.
    Claim {
        id: String,
        agent: String,
        /// The lease in milliseconds (1 s to 24 h; default 30 minutes).
        #[arg(long)]
        lease_ms: Option<u64>,
    },
    /// Mark a claimed or in-progress item done with a result.
    Complete {
        id: String,
        #[arg(default_value = "")]
        result: String,
        #[command(flatten)]
        by: SettleArgs,
    },
    /// Mark a claimed or in-progress item failed with an error (no retry).
    Fail {
        id: String,
        #[arg(default_value = "failed by hand")]
        error: String,
        #[command(flatten)]
        by: SettleArgs,
    },
    /// Cancel an item (its dependents are blocked).
    Cancel { id: String },
    /// Print an item's whole result (put together from its parts when it was too large for
    /// one message).
    Result { id: String },
}

/// How `work complete`/`work fail` settle an item someone holds.
#[derive(clap::Args, Clone, Copy, Debug, Default)]
pub struct SettleArgs {
    /// The lease token the claim printed (`workshop work claim`, or `lease.token` in
    /// `workshop work show ID --json`).
    #[arg(long)]
    token: Option<u64>,
    /// Take the item from whoever holds it (logged; a board worker holding it loses it and its
    /// turn is interrupted).
    #[arg(long, conflicts_with = "token")]
    force: bool,
}

impl SettleArgs {
    pub fn by(self) -> Option<SettleBy> {
        match (self.token, self.force) {
            (Some(t), _) => Some(SettleBy::Token(t)),
            (None, true) => Some(SettleBy::Force),
            (None, false) => None,
        }
    }
}

/// A refusal in the CLI's words: a held item names the flags that settle it.
pub fn cli_message(e: &ApiError) -> String {
    match e {
        ApiError::Held { id, status, holder } => format!(
            "work item `{id}` is {status}, held by {holder}: pass --token N (the lease token its \
             claim printed; `workshop work show {id} --json` has it as lease.token), or --force to \
             take it (logged; a board worker holding it loses it and its turn is interrupted)"
        ),
        e => e.to_string(),
    }
}

/// Board refusals carry the same codes as on a running node.
fn board_err(e: workshop_board::durable::DurableError) -> ApiError {
    workshop_board::wire::api_error(e)
}

fn open(data_dir: &Path) -> anyhow::Result<DurableBoard> {
    DurableBoard::open(data_dir.join("board"), DurableOptions::default()).map_err(|e| match e {
        // A node holds it but left no endpoint file (another machine's mount, a removed file):
        // it is reached by its address.
        StoreError::Locked { .. } => anyhow::anyhow!(
            "{e}; if a workshop node runs on it, reach that node with --node HOST:PORT"
        ),
        e => anyhow::anyhow!("{e}"),
    })
}

fn print_item(i: &WorkItem, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string(i)?);
    } else {
        println!("{}", i.line());
    }
    Ok(())
}

pub async fn board(
    data_dir: &Path,
    status: Option<String>,
    work_type: Option<String>,
    json: bool,
) -> anyhow::Result<()> {
    let board = open(data_dir)?;
    let filter = ListFilter {
        status: status
            .map(|s| s.parse())
            .transpose()
            .map_err(|e: String| anyhow::anyhow!(e))?,
        work_type: work_type
            .map(|t| t.parse())
            .transpose()
            .map_err(|e: String| anyhow::anyhow!(e))?,
        claimed_by: None,
    };
    let items = board.list(filter).await;
    if items.is_empty() && !json {
        println!("Board is empty.");
    }
    for i in &items {
        print_item(i, json)?;
    }
    board.shutdown().await?;
    Ok(())
}

pub async fn work(data_dir: &Path, cmd: WorkCommand, json: bool) -> anyhow::Result<()> {
    let board = open(data_dir)?;
    let item = match cmd {
        WorkCommand::Add {
            id,
            title,
            work_type,
            spec,
            priority,
            depends_on,
        } => {
            let t = work_type.parse().map_err(ApiError::Board)?;
            board
                .add(
                    NewItem::new(id, title)
                        .work_type(t)
                        .spec(spec)
                        .priority(priority)
                        .depends_on(depends_on),
                )
                .await
                .map_err(board_err)?
        }
        WorkCommand::Show { id } => match board.get(&id).await {
            Some(i) => i,
            None => anyhow::bail!("no work item {id}; `workshop board` lists them"),
        },
        WorkCommand::Claim {
            id,
            agent,
            lease_ms,
        } => {
            let lease = workshop_node::work::check_lease(
                "lease_ms",
                lease_ms.unwrap_or(workshop_node::work::MANUAL_LEASE_MS),
            )?;
            board.claim(&id, &agent, lease).await.map_err(board_err)?
        }
        WorkCommand::Complete { id, result, by } => board
            .complete_work(&id, result, by.by())
            .await
            .map_err(board_err)?,
        WorkCommand::Fail { id, error, by } => board
            .fail_work(&id, error, by.by())
            .await
            .map_err(board_err)?,
        WorkCommand::Cancel { id } => board.cancel(&id).await.map_err(board_err)?,
        WorkCommand::Result { id } => {
            let result = board.full_result(&id).await;
            board.shutdown().await?;
            // As on a node: an unknown id is `no_such_item`.
            return print_result(&id, result.map_err(workshop_board::wire::api_error)?, json);
        }
    };
    print_full(&item, json)?;
    board.shutdown().await?;
    Ok(())
}

/// `workshop work result ID`: the whole result as it is (JSON: a string, or null).
pub fn print_result(id: &str, result: Option<String>, json: bool) -> anyhow::Result<()> {
    use std::io::Write;
    if json {
        println!("{}", serde_json::to_string(&result)?);
        return Ok(());
    }
    match result {
        Some(text) => {
            let mut out = std::io::stdout().lock();
            out.write_all(text.as_bytes())?;
            if !text.ends_with('\n') {
                out.write_all(b"\n")?;
            }
            out.flush()?;
        }
        None => eprintln!("work item {id} has no result (yet)"),
    }
    Ok(())
}

/// One item in full (text or JSON).
pub fn print_full(item: &WorkItem, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(item)?);
    } else {
        print_item(item, false)?;
        if let Some(lease) = &item.lease {
            println!(
                "lease token: {} (held by {}; `workshop work complete {} RESULT --token {}` settles it)",
                lease.token, lease.holder, item.id, lease.token
            );
        }
        if !item.spec.is_empty() {
            println!("spec: {}", item.spec);
        }
        if let Some(r) = &item.result {
            println!("result: {r}");
        }
        if let Some(note) = crate::console::board::parts_note(item) {
            println!("{note}");
        }
    }
    Ok(())
}
