//! Hosts in network namespaces: each host `hN` is a namespace `<run>-hN` with a veth pair whose
//! root end is a port of a bridge in the root namespace. Hosts have 10.213.<y>.N/24, the bridge
//! .254, so the test process (root namespace) reaches every host and the hosts reach each other
//! through the bridge. A host is cut off by taking the root end of its veth down (both ends lose
//! the carrier: nothing passes either way, established TCP connections stall but are not reset)
//! and healed by taking it up again.
//!
//! Names carry the test process id and a counter (`wsn<pid:06x><n>`), so a leftover of a crashed
//! run never collides with a new run; [`Net::new`] also removes leftovers whose process is gone
//! and whose namespaces hold no process. The subnet's third octet is one no interface uses yet.
//! [`Net`]'s drop stops every node it started (SIGTERM, then SIGKILL) and deletes the
//! namespaces, the veths and the bridge, also when the test panics; a node gets SIGKILL when
//! the test's thread ends (`PR_SET_PDEATHSIG`), so a killed test process leaves no node.

use std::io::{BufRead, BufReader};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use workshop_node::Client;

/// Upper bound of any single wait: a hung test fails instead of hanging CI.
pub const LIMIT: Duration = Duration::from_secs(60);

/// The port every node listens on (each host has its own address).
pub const PORT: u16 = 4221;

/// The cluster's cookie (every node gets it in `WORKSHOP_COOKIE`).
pub const COOKIE: &str = "netns-suite-cookie-0123456789abcdef";

const PREFIX: &str = "wsn";
/// First two octets of every run's /24.
const NET: (u8, u8) = (10, 213);

/// Whether this test can run here; if not, says why (on stdout) and returns false.
pub fn enabled(test: &str) -> bool {
    let why = if std::env::var("WORKSHOP_NETNS").as_deref() != Ok("1") {
        Some("WORKSHOP_NETNS is not 1".to_string())
    } else if sys::euid() != 0 {
        Some("not running as root".to_string())
    } else {
        match Command::new("ip").arg("-V").output() {
            Ok(o) if o.status.success() => None,
            Ok(o) => Some(format!("`ip -V` failed: {}", text(&o.stderr))),
            Err(e) => Some(format!("no `ip` command: {e}")),
        }
    };
    match why {
        Some(why) => {
            println!("netns: {test} skipped: {why} (it needs root, `ip` and WORKSHOP_NETNS=1)");
            false
        }
        None => true,
    }
}

/// Run `fut`, failing the test (with `what`) if it takes longer than [`LIMIT`].
pub async fn within<T>(what: &str, fut: impl std::future::Future<Output = T>) -> T {
    match tokio::time::timeout(LIMIT, fut).await {
        Ok(v) => v,
        Err(_) => panic!("timed out after {LIMIT:?} waiting for {what}"),
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).trim().to_string()
}

/// Run `ip args...`; its stdout, or what it said on failure.
pub fn ip(args: &[&str]) -> Result<String, String> {
    let out = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("ip {}: {e}", args.join(" ")))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!("ip {}: {}", args.join(" "), text(&out.stderr)))
    }
}

fn must(args: &[&str]) -> String {
    ip(args).unwrap_or_else(|e| panic!("{e}"))
}

/// Namespace names (`ip netns list` gives `name (id: n)`).
pub fn namespaces() -> Vec<String> {
    ip(&["netns", "list"])
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect()
}

/// Link names of the root namespace (`veth@peer` loses its `@peer`).
pub fn links() -> Vec<String> {
    ip(&["-o", "link", "show"])
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|n| n.split('@').next().unwrap_or(n).to_string())
        .collect()
}

/// The namespaces and root links a run left (empty once its [`Net`] is dropped).
pub fn leftovers(run: &str) -> Vec<String> {
    namespaces()
        .into_iter()
        .chain(links())
        .filter(|n| n.starts_with(run))
        .collect()
}

/// The pid a name of ours carries, if it is one of ours.
fn owner(name: &str) -> Option<u32> {
    let hex = name.strip_prefix(PREFIX)?.get(..6)?;
    u32::from_str_radix(hex, 16).ok()
}

/// Remove what crashed runs left: namespaces, links and data dirs named by a process that is
/// gone (namespaces only when no process lives in them).
fn sweep() {
    let gone = |n: &str| owner(n).is_some_and(|pid| !Path::new(&format!("/proc/{pid}")).exists());
    for ns in namespaces().iter().filter(|n| gone(n)) {
        let idle = ip(&["netns", "pids", ns]).is_ok_and(|p| p.trim().is_empty());
        if idle {
            let _ = ip(&["netns", "del", ns]);
        }
    }
    for link in links().iter().filter(|n| gone(n)) {
        let _ = ip(&["link", "del", link]);
    }
    // The hosts' data dirs (`<tmp>/<run>-hN-XXXXXX`).
    if let Ok(dir) = std::fs::read_dir(std::env::temp_dir()) {
        for entry in dir.flatten() {
            if entry.file_name().to_str().is_some_and(gone) {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }
}

/// A third octet no address or route of the root namespace uses yet (starting from one the
/// run id picks, so concurrent runs start apart).
fn free_subnet(start: u32) -> u8 {
    let used = ip(&["-o", "-4", "addr", "show"]).unwrap_or_default()
        + &ip(&["-4", "route", "show"]).unwrap_or_default();
    (0..250)
        .map(|i| ((start + i) % 250 + 1) as u8)
        .find(|y| !used.contains(&format!("{}.{}.{y}.", NET.0, NET.1)))
        .expect("a free 10.213.y.0/24")
}

/// The namespaces, veths and bridge of one run, and the hosts' nodes.
pub struct Net {
    /// The run's name prefix (`wsn<pid><n>`).
    pub run: String,
    bridge: Option<String>,
    /// The subnet's third octet.
    pub y: u8,
    pub hosts: Vec<Host>,
}

impl Net {
    /// `count` hosts h1..h<count>, each reachable from this process and from each other.
    pub fn new(count: usize) -> Net {
        static RUNS: AtomicU32 = AtomicU32::new(0);
        sweep();
        let pid = std::process::id();
        let n = RUNS.fetch_add(1, Ordering::Relaxed);
        let run = format!(
            "{PREFIX}{:06x}{}",
            pid & 0xff_ffff,
            char::from_digit(n % 36, 36).expect("a digit")
        );
        let y = free_subnet(pid.wrapping_mul(7).wrapping_add(n * 13));
        let mut net = Net {
            run: run.clone(),
            bridge: None,
            y,
            hosts: Vec::new(),
        };
        // From here on, whatever exists is deleted on drop (also when a step below panics).
        let bridge = format!("{run}br");
        must(&[
            "link",
            "add",
            "name",
            &bridge,
            "type",
            "bridge",
            "stp_state",
            "0",
            "forward_delay",
            "0",
        ]);
        net.bridge = Some(bridge.clone());
        must(&[
            "addr",
            "add",
            &format!("{}/24", net.addr(254)),
            "dev",
            &bridge,
        ]);
        must(&["link", "set", &bridge, "up"]);
        for i in 1..=count {
            let host = Host::create(&run, &bridge, i, net.addr(i as u8));
            net.hosts.push(host);
        }
        net
    }

    /// 10.213.y.`last`
    pub fn addr(&self, last: u8) -> Ipv4Addr {
        Ipv4Addr::new(NET.0, NET.1, self.y, last)
    }

    /// Host `hN` (1-based, as named).
    pub fn host(&mut self, n: usize) -> &mut Host {
        &mut self.hosts[n - 1]
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        // Nodes first: a namespace with a process in it outlives `ip netns del`.
        for h in &mut self.hosts {
            if let Some(mut node) = h.node.take() {
                node.stop_quietly();
            }
        }
        for h in &self.hosts {
            let _ = ip(&["netns", "del", &h.ns]);
            let _ = ip(&["link", "del", &h.veth]);
        }
        if let Some(br) = &self.bridge {
            let _ = ip(&["link", "del", br]);
        }
        let left = leftovers(&self.run);
        if !left.is_empty() {
            eprintln!("netns: {} left behind: {left:?}", self.run);
        }
    }
}

/// One host: a namespace, its address, its data dir (kept across restarts), its node.
pub struct Host {
    /// `hN`: also the node's name.
    pub name: String,
    pub ns: String,
    pub ip: Ipv4Addr,
    /// The root end of the host's veth (a bridge port).
    veth: String,
    dir: tempfile::TempDir,
    /// The node running on this host, if any.
    pub node: Option<NodeProc>,
    /// Whether the host is cut off.
    pub cut: bool,
}

impl Host {
    fn create(run: &str, bridge: &str, n: usize, addr: Ipv4Addr) -> Host {
        let ns = format!("{run}-h{n}");
        let veth = format!("{run}h{n}");
        let inner = format!("{run}n{n}");
        must(&["netns", "add", &ns]);
        let host = Host {
            name: format!("h{n}"),
            ns: ns.clone(),
            ip: addr,
            veth: veth.clone(),
            dir: tempfile::Builder::new()
                .prefix(&format!("{ns}-"))
                .tempdir()
                .expect("data dir"),
            node: None,
            cut: false,
        };
        must(&[
            "link", "add", &veth, "type", "veth", "peer", "name", &inner, "netns", &ns,
        ]);
        must(&["link", "set", &veth, "master", bridge]);
        must(&["link", "set", &veth, "up"]);
        must(&["-n", &ns, "link", "set", "lo", "up"]);
        must(&[
            "-n",
            &ns,
            "addr",
            "add",
            &format!("{addr}/24"),
            "dev",
            &inner,
        ]);
        must(&["-n", &ns, "link", "set", &inner, "up"]);
        host
    }

    /// `ip:port` the node listens on.
    pub fn addr(&self) -> String {
        format!("{}:{PORT}", self.ip)
    }

    pub fn data_dir(&self) -> &Path {
        self.dir.path()
    }

    /// Start `workshop node` in this host's namespace on [`PORT`] and its data dir, with `args`
    /// (e.g. `--board h1 --peer ADDR`); returns once it listens. Panics if a node runs already.
    pub fn spawn_node(&mut self, args: &[&str]) -> &mut NodeProc {
        assert!(self.node.is_none(), "{} already runs a node", self.name);
        let node = NodeProc::start(&self.ns, &self.name, &self.addr(), self.dir.path(), args);
        self.node.insert(node)
    }

    /// The running node.
    pub fn node(&mut self) -> &mut NodeProc {
        self.node
            .as_mut()
            .unwrap_or_else(|| panic!("no node runs on {}", self.name))
    }

    /// The node's process ended (SIGTERM); its exit status and stderr.
    pub fn terminate(&mut self) -> (ExitStatus, String) {
        let mut node = self.node.take().expect("a node runs");
        let status = node.signal_and_wait(libc::SIGTERM);
        (status, node.stderr())
    }

    /// The node is killed outright (SIGKILL); its exit status and stderr.
    pub fn kill9(&mut self) -> (ExitStatus, String) {
        let mut node = self.node.take().expect("a node runs");
        let status = node.signal_and_wait(libc::SIGKILL);
        (status, node.stderr())
    }

    /// Take the link down: nothing reaches the host or leaves it.
    pub fn cut(&mut self) {
        must(&["link", "set", &self.veth, "down"]);
        self.cut = true;
    }

    /// Take the link up again.
    pub fn heal(&mut self) {
        must(&["link", "set", &self.veth, "up"]);
        self.cut = false;
    }
}

/// The node's stderr as read so far, and whether it ended.
#[derive(Default)]
struct Log {
    lines: Vec<String>,
    closed: bool,
}

/// A `workshop node` child process inside a namespace (`ip netns exec` execs the binary, so the
/// child's pid is the node's). Reaped on drop (SIGTERM, SIGKILL after 20 s).
pub struct NodeProc {
    child: Option<Child>,
    pub pid: u32,
    pub addr: String,
    pub name: String,
    /// When the process was spawned, and when it said it listens.
    pub spawned: Instant,
    pub listening: Instant,
    log: Arc<(Mutex<Log>, Condvar)>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl NodeProc {
    fn start(ns: &str, name: &str, addr: &str, dir: &Path, args: &[&str]) -> NodeProc {
        let _ = std::fs::remove_file(dir.join("node.endpoint"));
        let mut cmd = Command::new("ip");
        cmd.args([
            "netns",
            "exec",
            ns,
            env!("CARGO_BIN_EXE_workshop"),
            "node",
            "--no-setup",
        ])
        .arg("--data-dir")
        .arg(dir)
        .args(["--listen", addr])
        .args(args)
        .current_dir(dir)
        .env_remove("WORKSHOP_LOG")
        .env_remove("WORKSHOP_LISTEN")
        .env_remove("WORKSHOP_NODE")
        .env_remove("WORKSHOP_DATA_DIR")
        .env("WORKSHOP_MCP_PORT", "0")
        .env("WORKSHOP_COOKIE", COOKIE)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
        if let Ok(level) = std::env::var("WORKSHOP_NETNS_LOG") {
            cmd.env("WORKSHOP_LOG", level);
        }
        // Should the test process be killed outright, its nodes go with it (no orphan keeps
        // a namespace alive; the next run's sweep removes what is left).
        sys::die_with_parent(&mut cmd);
        let spawned = Instant::now();
        let mut child = cmd.spawn().expect("spawn ip netns exec workshop node");
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
        let mut node = NodeProc {
            pid: child.id(),
            child: Some(child),
            addr: addr.to_string(),
            name: name.to_string(),
            spawned,
            listening: spawned,
            log,
            reader: Some(reader),
        };
        if !node.wait_for_line(|l| l.contains("workshop node listening")) {
            panic!(
                "{name} never reported listening; its stderr:\n{}",
                node.stderr()
            );
        }
        node.listening = Instant::now();
        let endpoint = std::fs::read_to_string(dir.join("node.endpoint")).expect("endpoint file");
        let field = |k: &str| {
            endpoint
                .lines()
                .find_map(|l| l.strip_prefix(k))
                .unwrap_or_else(|| panic!("no {k} in the endpoint file: {endpoint}"))
                .to_string()
        };
        assert_eq!(field("addr="), addr, "{endpoint}");
        assert_eq!(field("pid="), node.pid.to_string(), "{endpoint}");
        node
    }

    /// A client of this node, from the root namespace (through the bridge).
    pub async fn client(&self) -> Client {
        within(
            &format!("a connection to {}", self.name),
            Client::connect(&self.addr, COOKIE.to_string()),
        )
        .await
        .unwrap_or_else(|e| panic!("connect to {} at {}: {e}", self.name, self.addr))
    }

    /// Wait (up to [`LIMIT`]) until the node wrote a stderr line matching `pred`; false when
    /// its stderr ended first or the time is up.
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

    /// Send `signal`, wait for the exit (up to [`LIMIT`], then SIGKILL and panic), read the
    /// rest of stderr.
    fn signal_and_wait(&mut self, signal: i32) -> ExitStatus {
        let mut child = self.child.take().expect("the node runs");
        sys::signal(child.id(), signal);
        let status = wait_bounded(&mut child, LIMIT);
        self.join_reader();
        match status {
            Ok(s) => s,
            Err(s) => panic!(
                "{} (pid {}) did not exit within {LIMIT:?} after signal {signal}; killed it ({s}); stderr:\n{}",
                self.name,
                self.pid,
                self.stderr()
            ),
        }
    }

    /// SIGTERM, SIGKILL if it is still there after 20 s; never panics (drop, cleanup).
    fn stop_quietly(&mut self) {
        if let Some(mut child) = self.child.take() {
            if matches!(child.try_wait(), Ok(None)) {
                sys::signal(child.id(), libc::SIGTERM);
            }
            let _ = wait_bounded(&mut child, Duration::from_secs(20));
        }
        self.join_reader();
    }

    fn join_reader(&mut self) {
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
    }
}

impl Drop for NodeProc {
    fn drop(&mut self) {
        self.stop_quietly();
    }
}

/// Wait for `child` up to `limit` (short polls: std has no wait with a timeout); past it,
/// SIGKILL and reap it, and say so with `Err`.
fn wait_bounded(child: &mut Child, limit: Duration) -> Result<ExitStatus, ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Ok(status),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
            _ => {
                let _ = child.kill();
                return Err(child.wait().expect("reap the node"));
            }
        }
    }
}

/// Run `f` on a thread that has entered namespace `ns` (only that thread: `setns` on a thread
/// of its own), e.g. to bind or connect a plain socket there.
pub fn in_ns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let path = PathBuf::from("/var/run/netns").join(ns);
    std::thread::spawn(move || {
        let file =
            std::fs::File::open(&path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
        sys::enter_netns(&file).unwrap_or_else(|e| panic!("setns {}: {e}", path.display()));
        f()
    })
    .join()
    .unwrap_or_else(|p| std::panic::resume_unwind(p))
}

/// The few system calls the harness makes itself.
#[allow(unsafe_code)]
mod sys {
    use std::os::fd::AsRawFd;

    pub fn euid() -> u32 {
        // SAFETY: geteuid has no preconditions and cannot fail.
        unsafe { libc::geteuid() }
    }

    /// Send `signal` to `pid` (a child not reaped yet, so the pid is still ours).
    pub fn signal(pid: u32, signal: i32) {
        // SAFETY: kill has no memory effects; a stale pid is only an error return.
        unsafe { libc::kill(pid as i32, signal) };
    }

    /// The child gets SIGKILL when the thread that spawned it ends (the test's own thread).
    pub fn die_with_parent(cmd: &mut std::process::Command) {
        use std::os::unix::process::CommandExt;
        // SAFETY: prctl is async-signal-safe and touches no memory of the parent; this runs
        // between fork and exec, as pre_exec requires.
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) == 0 {
                    Ok(())
                } else {
                    Err(std::io::Error::last_os_error())
                }
            });
        }
    }

    /// Move the calling thread into the network namespace `file` refers to.
    pub fn enter_netns(file: &std::fs::File) -> std::io::Result<()> {
        // SAFETY: the fd is open for the duration of the call; setns affects this thread only.
        let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
        if rc == 0 {
            Ok(())
        } else {
            Err(std::io::Error::last_os_error())
        }
    }
}
