//! Crash-test child: opens a DurableBoard in a directory and runs add -> claim -> complete
//! from several tasks, printing one line per ACKNOWLEDGED operation (stdout flushed each time):
//!
//! ```text
//! added <id>
//! claimed <id> <token>
//! completed <id> <token>
//! ```
//!
//! Usage: `board-crash-child <dir> <id-prefix> <tasks> <items-per-task>`. The crash test kills
//! it with SIGKILL part-way and checks that every printed operation survived.

use std::io::Write;
use std::process::ExitCode;

use workshop_board::{DurableBoard, DurableOptions, NewItem};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// One whole line per acknowledgement, flushed before the next operation starts.
fn say(line: String) -> Result<(), BoxError> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}")?;
    out.flush()?;
    Ok(())
}

async fn run(dir: String, prefix: String, tasks: usize, per_task: usize) -> Result<(), BoxError> {
    let board = DurableBoard::open(&dir, DurableOptions::default())?;
    say("open".into())?;
    let mut handles = Vec::new();
    for t in 0..tasks {
        let board = board.clone();
        let prefix = prefix.clone();
        handles.push(tokio::spawn(async move {
            for i in 0..per_task {
                let id = format!("{prefix}-t{t}-{i}");
                board.add(NewItem::new(id.clone(), "crash item")).await?;
                say(format!("added {id}"))?;
                let item = board.claim(&id, &format!("worker-{t}"), 600_000).await?;
                let token = item.token().ok_or("claimed item without a token")?;
                say(format!("claimed {id} {token}"))?;
                board
                    .complete(&id, token, format!("result of {id}"))
                    .await?;
                say(format!("completed {id} {token}"))?;
            }
            Ok::<(), BoxError>(())
        }));
    }
    for h in handles {
        h.await??;
    }
    board.shutdown().await?;
    say("finished".into())?;
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [dir, prefix, tasks, per_task] = args.as_slice() else {
        eprintln!("usage: board-crash-child <dir> <id-prefix> <tasks> <items-per-task>");
        return ExitCode::from(2);
    };
    let (Ok(tasks), Ok(per_task)) = (tasks.parse::<usize>(), per_task.parse::<usize>()) else {
        eprintln!("board-crash-child: tasks and items-per-task must be numbers");
        return ExitCode::from(2);
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("board-crash-child: cannot start tokio: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(dir.clone(), prefix.clone(), tasks, per_task)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("board-crash-child: {e}");
            ExitCode::FAILURE
        }
    }
}
