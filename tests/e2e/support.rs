//! Running the real binary: every child is waited for (reaped) before a test returns.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use workshop_node::Client;
use workshop_types::{AgentStatus, Event, ScriptStep};

pub fn workshop() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_workshop"));
    c.env_remove("WORKSHOP_LOG");
    // Tests run in parallel: every node listens on a free port (found via its endpoint file).
    c.env("WORKSHOP_LISTEN", "127.0.0.1:0");
    // ... and serves MCP on a free port (the URL is in the endpoint file).
    c.env("WORKSHOP_MCP_PORT", "0");
    c.env_remove("WORKSHOP_MCP_HOST");
    c.env_remove("WORKSHOP_MCP_TOKEN");
    c.env_remove("WORKSHOP_COOKIE");
    c.env_remove("WORKSHOP_NODE");
    c.env_remove("WORKSHOP_DATA_DIR");
    c
}

/// Run `workshop console` with `script` on standard input, in `dir`.
pub fn console_stdin(dir: &Path, script: &str) -> Output {
    let mut child = workshop()
        .arg("console")
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn workshop console");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(script.as_bytes())
        .expect("write script");
    child.wait_with_output().expect("wait for workshop console")
}

pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Upper bound for any single wait in a test: a hung test fails instead of hanging CI. Longer
/// than the node crate's own limit: here nodes are separate processes on a shared machine.
pub const LIMIT: Duration = Duration::from_secs(60);

/// Run `fut` but fail the test (with `what`) if it takes longer than [`LIMIT`].
pub async fn within<T>(what: &str, fut: impl std::future::Future<Output = T>) -> T {
    match tokio::time::timeout(LIMIT, fut).await {
        Ok(v) => v,
        Err(_) => panic!("timed out waiting for {what}"),
    }
}

/// The node's stderr as read so far, and whether it ended.
#[derive(Default)]
struct Log {
    lines: Vec<String>,
    closed: bool,
}

/// A `workshop node` child process on a data dir, listening on a free loopback port. Started
/// by [`NodeProcess::start`], which returns once the node said `workshop node listening`; on
/// drop it gets SIGTERM and is waited for (SIGKILL if it does not exit within [`LIMIT`]), so
/// it is reaped also when the test panics.
pub struct NodeProcess {
    child: Option<Child>,
    pub dir: PathBuf,
    pub addr: String,
    pub pid: u32,
    pub cookie: String,
    log: Arc<(Mutex<Log>, Condvar)>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl NodeProcess {
    /// `workshop node --no-setup --data-dir <dir> --listen 127.0.0.1:0`, run in `dir`.
    pub fn start(dir: &Path) -> Self {
        Self::start_with(dir, &["--no-setup"], &[])
    }

    /// `workshop node --data-dir <dir> --listen 127.0.0.1:0` plus `args`, with `env` set.
    pub fn start_with(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Self {
        let mut cmd = workshop();
        cmd.arg("node").arg("--data-dir").arg(dir);
        if !args.contains(&"--listen") {
            cmd.args(["--listen", "127.0.0.1:0"]);
        }
        cmd.args(args).current_dir(dir);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let cookie = env
            .iter()
            .find(|(k, _)| *k == "WORKSHOP_COOKIE")
            .map(|(_, v)| *v);
        Self::spawn(cmd, dir, cookie)
    }

    /// Run `cmd` (a `workshop node` command) whose data dir is `dir`; the cookie is `cookie`,
    /// else the one in `dir`.
    pub fn spawn(mut cmd: Command, dir: &Path, cookie: Option<&str>) -> Self {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn workshop node");
        let stderr = child.stderr.take().expect("stderr");
        let log: Arc<(Mutex<Log>, Condvar)> = Arc::default();
        let reader = {
            let log = log.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    let (m, cv) = &*log;
                    m.lock().expect("log").lines.push(line);
                    cv.notify_all();
                }
                let (m, cv) = &*log;
                m.lock().expect("log").closed = true;
                cv.notify_all();
            })
        };
        let mut node = NodeProcess {
            pid: child.id(),
            child: Some(child),
            dir: dir.to_path_buf(),
            addr: String::new(),
            cookie: String::new(),
            log,
            reader: Some(reader),
        };
        if !node.wait_for_line(|l| l.contains("workshop node listening")) {
            panic!(
                "the node never reported listening; its stderr:\n{}",
                node.stderr()
            );
        }
        let endpoint = std::fs::read_to_string(dir.join("node.endpoint")).expect("endpoint file");
        let field = |k: &str| {
            endpoint
                .lines()
                .find_map(|l| l.strip_prefix(k))
                .unwrap_or_else(|| panic!("no {k} in the endpoint file: {endpoint}"))
                .to_string()
        };
        node.addr = field("addr=");
        assert_eq!(field("pid="), node.pid.to_string(), "{endpoint}");
        // The cookie: the one given, else the data dir's file.
        node.cookie = match cookie {
            Some(c) => c.to_string(),
            None => std::fs::read_to_string(dir.join("cookie"))
                .expect("cookie file")
                .trim()
                .to_string(),
        };
        node
    }

    /// Connect a client (the node's address and cookie).
    pub async fn client(&self) -> Client {
        Client::connect(&self.addr, self.cookie.clone())
            .await
            .unwrap_or_else(|e| panic!("connect to the node at {}: {e}", self.addr))
    }

    /// The MCP URL the node wrote to its endpoint file (`mcp=`); panics when it serves none.
    pub fn mcp_url(&self) -> String {
        let endpoint =
            std::fs::read_to_string(self.dir.join("node.endpoint")).expect("endpoint file");
        endpoint
            .lines()
            .find_map(|l| l.strip_prefix("mcp="))
            .unwrap_or_else(|| panic!("no mcp= in the endpoint file: {endpoint}"))
            .to_string()
    }

    /// Wait (up to [`LIMIT`]) until the node wrote a stderr line matching `pred`; false when
    /// its stderr ended (it exited) or the time is up first.
    pub fn wait_for_line(&self, pred: impl Fn(&str) -> bool) -> bool {
        let deadline = Instant::now() + LIMIT;
        let (m, cv) = &*self.log;
        let mut log = m.lock().expect("log");
        loop {
            if log.lines.iter().any(|l| pred(l)) {
                return true;
            }
            let now = Instant::now();
            if log.closed || now >= deadline {
                return false;
            }
            log = cv.wait_timeout(log, deadline - now).expect("log").0;
        }
    }

    /// The node's stderr so far.
    pub fn stderr(&self) -> String {
        self.log.0.lock().expect("log").lines.join("\n")
    }

    /// SIGTERM, then wait for the exit; the whole stderr is read by then.
    pub fn terminate(&mut self) -> ExitStatus {
        let status = self.signal_and_wait("-TERM");
        self.join_reader();
        status
    }

    /// SIGKILL (`kill -9`), then reap.
    pub fn kill9(&mut self) -> ExitStatus {
        let status = self.signal_and_wait("-KILL");
        self.join_reader();
        status
    }

    /// Wait for a node that stops by itself (`workshop stop`).
    pub fn wait(&mut self) -> ExitStatus {
        let status = self
            .child
            .take()
            .expect("the node runs")
            .wait()
            .expect("wait for the node");
        self.join_reader();
        status
    }

    fn signal_and_wait(&mut self, signal: &str) -> ExitStatus {
        let mut child = self.child.take().expect("the node runs");
        let sent = Command::new("kill")
            .arg(signal)
            .arg(child.id().to_string())
            .status()
            .expect("run kill");
        assert!(sent.success(), "kill {signal} {}", child.id());
        wait_bounded(&mut child)
    }

    fn join_reader(&mut self) {
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
    }
}

/// Wait for `child` up to [`LIMIT`] (short polls: std has no wait with a timeout), then
/// SIGKILL it and reap it; panics in that case (unless already panicking).
fn wait_bounded(child: &mut Child) -> ExitStatus {
    let deadline = Instant::now() + LIMIT;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return status,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
            _ => {
                let _ = child.kill();
                let status = child.wait().expect("reap the node");
                if !std::thread::panicking() {
                    panic!(
                        "pid {} did not exit within {LIMIT:?}; killed it",
                        child.id()
                    );
                }
                return status;
            }
        }
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            if matches!(child.try_wait(), Ok(None)) {
                let _ = Command::new("kill")
                    .arg("-TERM")
                    .arg(child.id().to_string())
                    .status();
            }
            let _ = wait_bounded(&mut child);
        }
        self.join_reader();
    }
}

/// Holding a scripted turn while the test looks at the node. In process, a real gate of the
/// script backend (released by the test). A node process cannot be reached into, so there a
/// held turn is a step that takes [`HOLD`] (`release` does nothing; the turn ends by itself),
/// or `hang` for a turn the test cancels; arrival is seen as the agent's status `working`.
#[derive(Clone, Copy, Debug)]
pub enum Gates {
    InProcess,
    Remote,
}

/// How long a "gated" turn is held on a node process.
pub const HOLD: Duration = Duration::from_secs(3);

impl Gates {
    /// A step held until [`Gates::release`].
    pub fn step(self, gate: &str) -> ScriptStep {
        match self {
            Gates::InProcess => ScriptStep {
                gate: Some(gate.to_string()),
                ..Default::default()
            },
            Gates::Remote => ScriptStep {
                delay_ms: HOLD.as_millis() as u64,
                ..Default::default()
            },
        }
    }

    /// A step held until the test cancels it (never released).
    pub fn held(self, gate: &str) -> ScriptStep {
        match self {
            Gates::InProcess => self.step(gate),
            Gates::Remote => ScriptStep {
                hang: true,
                ..Default::default()
            },
        }
    }

    /// Wait until `agent`'s turn has reached `gate`.
    pub async fn arrived(self, c: &Client, agent: &str, gate: &str) {
        match self {
            Gates::InProcess => {
                within(
                    "the turn at the gate",
                    workshop_agent::backend::script::gates::arrived(gate),
                )
                .await
            }
            Gates::Remote => {
                until_working(c, agent).await;
            }
        }
    }

    pub fn release(self, gate: &str) {
        if let Gates::InProcess = self {
            workshop_agent::backend::script::gates::release(gate);
        }
    }
}

/// Poll the agent (each answer comes from its own mailbox) until it works on a turn: there is
/// no event for a turn's start. Short polls, bounded by [`LIMIT`].
pub async fn until_working(c: &Client, agent: &str) {
    within("the turn to start", async {
        loop {
            if c.info(agent).await.expect("info").status == AgentStatus::Working {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
}

/// Wait for the next event matching `pred` on a `Client::watch` stream opened before the cause.
pub async fn next_event(
    rx: &mut tokio::sync::mpsc::Receiver<Event>,
    what: &str,
    mut pred: impl FnMut(&Event) -> bool,
) -> Event {
    within(what, async {
        loop {
            match rx.recv().await {
                Some(ev) if pred(&ev) => return ev,
                Some(_) => {}
                None => panic!("the event stream ended while waiting for {what}"),
            }
        }
    })
    .await
}

pub fn approx(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

pub fn script(steps: Vec<ScriptStep>) -> workshop_types::AgentOptions {
    workshop_types::AgentOptions {
        script: Some(steps),
        ..Default::default()
    }
}

pub fn say(t: &str) -> ScriptStep {
    ScriptStep {
        text: Some(t.to_string()),
        ..Default::default()
    }
}

pub fn error(msg: &str) -> ScriptStep {
    ScriptStep {
        error: Some(msg.to_string()),
        ..Default::default()
    }
}

pub fn cost(usd: f64) -> ScriptStep {
    ScriptStep {
        cost_usd: Some(usd),
        ..Default::default()
    }
}

pub fn name(s: &str) -> workshop_types::AgentName {
    workshop_types::AgentName::new(s).expect("valid name")
}

/// Run a scenario against an in-process node on a temp data dir.
pub async fn on_local_node<F, Fut>(scenario: F)
where
    F: FnOnce(Client) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let dir = tempfile::tempdir().expect("tempdir");
    let node = workshop_node::Node::open(dir.path())
        .await
        .expect("the node starts");
    scenario(node.client()).await;
    node.shutdown().await;
}

/// Run a scenario against a `workshop node` process on a temp data dir; it must exit 0 on
/// SIGTERM afterwards, and never have panicked.
pub async fn on_node_process<F, Fut>(scenario: F)
where
    F: FnOnce(Client) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let dir = tempfile::tempdir().expect("tempdir");
    let mut node = NodeProcess::start(dir.path());
    scenario(node.client().await).await;
    let status = node.terminate();
    let log = node.stderr();
    assert!(status.success(), "the node exited with {status}: {log}");
    assert!(!log.contains("panicked"), "the node panicked: {log}");
}

/// Two `#[tokio::test]`s per scenario: `in_process::x` (a node in the test process) and
/// `node_process::x` (a `workshop node` child process, reached over ractor_cluster). Plain
/// scenarios are `async fn x(c: &Client)`; those after `gated:` also take a [`Gates`].
macro_rules! both {
    ($($name:ident),* $(,)? ; gated: $($gated:ident),* $(,)?) => {
        mod in_process {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    $crate::support::on_local_node(|c| async move { super::$name(&c).await })
                        .await;
                }
            )*
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $gated() {
                    $crate::support::on_local_node(|c| async move {
                        super::$gated(&c, $crate::support::Gates::InProcess).await
                    })
                    .await;
                }
            )*
        }
        mod node_process {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    $crate::support::on_node_process(|c| async move { super::$name(&c).await })
                        .await;
                }
            )*
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $gated() {
                    $crate::support::on_node_process(|c| async move {
                        super::$gated(&c, $crate::support::Gates::Remote).await
                    })
                    .await;
                }
            )*
        }
    };
}
pub(crate) use both;
