//! Children that die with the node: every long-running child the node starts (a backend's CLI
//! process, a board worker's `git`) is forked by one dedicated thread that lives as long as the
//! process, with `PR_SET_PDEATHSIG = SIGKILL`.
//!
//! Why a thread of its own: Linux sends the parent-death signal when the *thread* that forked
//! the child exits, not the process. A tokio worker or blocking-pool thread can exit while the
//! node runs (idle blocking threads are retired after 10 s, `block_in_place` hands a worker's
//! role to a new thread), which would kill a healthy child. The spawner thread never exits, so
//! the signal fires exactly when the process dies — including on SIGKILL, where no destructor
//! or shutdown path runs.
//!
//! The classic race is closed too: if the node died between `fork` and `prctl`, the child is
//! already orphaned and would never get the signal, so it checks `getppid()` against the pid
//! that forked it and exits at once if they differ.
//!
//! The signal reaches the forked process only (it is not inherited by its own children): the
//! node's process ledger (`workshop-node`'s `proc_ledger`) kills what is left of a recorded
//! process group when the node starts again.

use std::io;
use std::sync::mpsc;
use std::sync::OnceLock;

use tokio::process::{Child, Command};

type Job = Box<dyn FnOnce() + Send>;

/// The channel to the spawner thread, started on first use.
fn jobs() -> io::Result<&'static mpsc::Sender<Job>> {
    static JOBS: OnceLock<Result<mpsc::Sender<Job>, String>> = OnceLock::new();
    JOBS.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("workshop-spawner".into())
            .spawn(move || {
                // Lives as long as the process: the sender is in a static, never dropped.
                for job in rx {
                    job();
                }
            })
            .map(|_| tx)
            .map_err(|e| e.to_string())
    })
    .as_ref()
    .map_err(|e| io::Error::other(format!("the spawner thread did not start: {e}")))
}

/// Start `cmd` from the spawner thread, in the caller's tokio runtime (which reaps it and
/// drives its pipes), with `PR_SET_PDEATHSIG = SIGKILL`. Blocks the calling thread for the
/// fork and exec, as `Command::spawn` itself does. Must be called within a tokio runtime.
pub fn spawn(mut cmd: Command) -> io::Result<Child> {
    let handle = tokio::runtime::Handle::try_current()
        .map_err(|_| io::Error::other("a child process must be started within a tokio runtime"))?;
    die_with_parent(&mut cmd);
    let (tx, rx) = mpsc::sync_channel(1);
    let job: Job = Box::new(move || {
        let _rt = handle.enter();
        let spawned = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| cmd.spawn()))
            .unwrap_or_else(|_| Err(io::Error::other("starting the process panicked")));
        // The caller waits for this answer; if it is gone, dropping the child kills it only
        // when it was made with `kill_on_drop`, as with a direct spawn.
        let _ = tx.send(spawned);
    });
    jobs()?
        .send(job)
        .map_err(|_| io::Error::other("the spawner thread is gone"))?;
    rx.recv()
        .map_err(|_| io::Error::other("the spawner thread dropped the request"))?
}

/// In the child, before exec: ask for SIGKILL when the forking thread (the spawner) dies, and
/// exit at once if the parent already died.
#[allow(unsafe_code)]
fn die_with_parent(cmd: &mut Command) {
    let parent = std::process::id();
    // SAFETY: the closure runs in the forked child and calls only async-signal-safe functions
    // (prctl, getppid) and builds an error without allocating.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(
                libc::PR_SET_PDEATHSIG,
                libc::SIGKILL as libc::c_ulong,
                0,
                0,
                0,
            ) != 0
            {
                return Err(io::Error::last_os_error());
            }
            if u32::try_from(libc::getppid()).ok() != Some(parent) {
                // The node died before the signal was armed: nobody is left to stop us.
                return Err(io::Error::from_raw_os_error(libc::ESRCH));
            }
            Ok(())
        });
    }
}
