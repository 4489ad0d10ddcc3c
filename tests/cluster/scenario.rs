//! What the scenarios share: a five-host cluster (h1 the board node, h2..h5 joined to it, a
//! board worker on every node), clients from the test process that reconnect, a poster that
//! keeps the workers busy, a collector of every node's `work` events, and the exactly-once
//! checks.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;
use workshop_node::{Client, WorkOptions, WorkerOptions};
use workshop_types::board::{Status, WorkItem};
use workshop_types::{AgentOptions, Event, ScriptStep, Topic};

use crate::net::{within, Net, COOKIE, LIMIT};

pub const HOSTS: usize = 5;
/// Every worker's lease: a cut longer than this loses the item.
pub const LEASE_MS: u64 = 1500;
/// The work type every worker takes.
pub const TYPE: &str = "code";
/// How many posted items may wait or run at once (a few more than there are workers, so no
/// worker waits for the poster).
const WINDOW: usize = 8;
/// Client calls give up after this (a cut or stopped node must not stall the poster long).
const CALL: Duration = Duration::from_secs(5);

/// Milliseconds since the epoch (the nodes' clock: they run on this machine).
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Print a figure in the suite's parseable form.
pub fn figure(name: &str, value: f64, unit: &str) {
    println!("netns: {name} = {value:.3} {unit}");
}

/// The command line of host `n`'s node (the listen address and data dir come from the host).
pub fn node_args(net: &Net, n: usize) -> Vec<String> {
    let mut args = vec!["--name".to_string(), format!("h{n}")];
    if n != 1 {
        args.extend([
            "--board".into(),
            "h1".into(),
            "--peer".into(),
            net.hosts[0].addr(),
        ]);
    }
    args
}

pub fn start_node(net: &mut Net, n: usize) {
    let args = node_args(net, n);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    net.host(n).spawn_node(&args);
}

/// Host `n`'s board worker: `w<n>`, a 200 ms scripted turn that says which host ran it. The
/// script backend takes one step per turn and goes on across the worker's resets between
/// items, so the step is repeated for more items than a scenario gives one worker.
pub fn worker(n: usize) -> WorkerOptions {
    let step = ScriptStep {
        delay_ms: 200,
        text: Some(format!("{{prompt}} by h{n}")),
        ..Default::default()
    };
    WorkerOptions {
        profile: None,
        options: AgentOptions {
            script: Some(vec![step; 2000]),
            ..Default::default()
        },
        interval_ms: None,
        worktree: false,
        lease_ms: Some(LEASE_MS),
    }
}

pub fn typed() -> WorkOptions {
    WorkOptions {
        work_type: Some(TYPE.into()),
        ..Default::default()
    }
}

/// Wait until host `n`'s node sees every node in `names` up, following its `node` events (a
/// second at most between looks); connects again if its client fails. On a timeout the panic
/// shows what every node sees.
pub async fn until_up(clients: &Clients, n: usize, names: &[String]) {
    if tokio::time::timeout(LIMIT, wait_up(clients, n, names))
        .await
        .is_err()
    {
        panic!(
            "timed out after {LIMIT:?} waiting for h{n} to see {names:?} up; the nodes see:\n{}",
            views(clients).await
        );
    }
}

async fn wait_up(clients: &Clients, n: usize, names: &[String]) {
    loop {
        let Some((g, client)) = clients.current(n).await else {
            // Not reachable now (no event to wait for): look again shortly.
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        let after = match client.events(1, None).await {
            Ok(e) => e.last().map(|e| e.seq).unwrap_or(0),
            Err(_) => {
                clients.drop_client(n, g);
                continue;
            }
        };
        if let Ok(nodes) = client.nodes().await {
            let up = |name: &String| nodes.iter().any(|s| &s.name == name && s.up);
            if names.iter().all(up) {
                return;
            }
        }
        let _ = client
            .events_after(after, Some(Topic::Node), Duration::from_secs(1))
            .await;
    }
}

/// What every node's `nodes()` says (for failure messages).
pub async fn views(clients: &Clients) -> String {
    let mut out = String::new();
    for n in 1..=HOSTS {
        let view = match clients.current(n).await {
            None => "not reachable".to_string(),
            Some((_, c)) => match c.nodes().await {
                Ok(nodes) => nodes
                    .iter()
                    .map(|s| format!("{} {}", s.name, if s.up { "up" } else { "down" }))
                    .collect::<Vec<_>>()
                    .join(", "),
                Err(e) => format!("nodes() failed: {e}"),
            },
        };
        out.push_str(&format!("  h{n}: {view}\n"));
    }
    out
}

pub fn all_hosts() -> Vec<String> {
    (1..=HOSTS).map(|n| format!("h{n}")).collect()
}

/// A client per host, replaced when its node restarts; `None` while it is down.
pub struct Clients {
    addrs: Vec<String>,
    /// Each client with a number telling it from the one before.
    slots: Vec<Mutex<Option<(u64, Client)>>>,
    next: std::sync::atomic::AtomicU64,
}

impl Clients {
    pub fn new(net: &Net) -> Arc<Clients> {
        Arc::new(Clients {
            addrs: net.hosts.iter().map(|h| h.addr()).collect(),
            slots: net.hosts.iter().map(|_| Mutex::new(None)).collect(),
            next: Default::default(),
        })
    }

    /// Connect to host `n` (1-based), within [`LIMIT`], and keep the client.
    pub async fn connect(&self, n: usize) -> Client {
        let c = within(
            &format!("a connection to h{n}"),
            Client::connect(&self.addrs[n - 1], COOKIE.to_string()),
        )
        .await
        .unwrap_or_else(|e| panic!("connect to h{n}: {e}"))
        .with_timeouts(CALL, LIMIT);
        self.keep(n, c.clone());
        c
    }

    fn keep(&self, n: usize, c: Client) -> u64 {
        let g = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        *self.slots[n - 1].lock().expect("slot") = Some((g, c));
        g
    }

    /// Host `n`'s client, if its node is up.
    pub fn get(&self, n: usize) -> Option<Client> {
        self.tagged(n).map(|(_, c)| c)
    }

    fn tagged(&self, n: usize) -> Option<(u64, Client)> {
        self.slots[n - 1].lock().expect("slot").clone()
    }

    /// Host `n`'s client, connecting again if there is none (None: not reachable now).
    async fn current(&self, n: usize) -> Option<(u64, Client)> {
        match self.tagged(n) {
            Some(c) => Some(c),
            None => self.reconnect(n).await,
        }
    }

    /// Host `n`'s node is about to go away.
    pub fn forget(&self, n: usize) {
        self.slots[n - 1].lock().expect("slot").take();
    }

    /// Try once to connect to host `n` again (after a cut, or a restart the test did not
    /// announce), bounded by a few seconds.
    async fn reconnect(&self, n: usize) -> Option<(u64, Client)> {
        let c = tokio::time::timeout(
            CALL,
            Client::connect(&self.addrs[n - 1], COOKIE.to_string()),
        )
        .await
        .ok()?
        .ok()?
        .with_timeouts(CALL, LIMIT);
        Some((self.keep(n, c.clone()), c))
    }

    /// After a failed call: drop client `g` of host `n` (unless the test put a new one there
    /// already), so the next look connects again.
    fn drop_client(&self, n: usize, g: u64) {
        let mut slot = self.slots[n - 1].lock().expect("slot");
        if slot.as_ref().is_some_and(|(s, _)| *s == g) {
            slot.take();
        }
    }
}

/// An event and the node it happened on.
#[derive(Clone, Debug)]
pub struct Seen {
    pub node: String,
    pub event: Event,
}

/// Follows every node's events (a long poll per node from a cursor; across a restart
/// the node's sequence continues from its persisted tail, so nothing between two polls is
/// missed). Also tells the poster which items are done.
pub struct Collector {
    pub seen: Arc<Mutex<Vec<Seen>>>,
    done: Arc<Mutex<HashSet<String>>>,
    news: Arc<Notify>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Collector {
    pub fn start(clients: &Arc<Clients>) -> Collector {
        let (stop, stopped) = watch::channel(false);
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let done: Arc<Mutex<HashSet<String>>> = Arc::default();
        let news = Arc::new(Notify::new());
        let tasks = (1..=HOSTS)
            .map(|n| {
                let (clients, seen, done, news) =
                    (clients.clone(), seen.clone(), done.clone(), news.clone());
                let mut stopped = stopped.clone();
                tokio::spawn(async move {
                    let node = format!("h{n}");
                    let mut cursor = 0u64;
                    loop {
                        let stopping = *stopped.borrow();
                        let client = match stopping {
                            true => clients.tagged(n),
                            false => clients.current(n).await,
                        };
                        let batch = match &client {
                            Some((_, c)) => c
                                .events_after(cursor, None, Duration::from_millis(500))
                                .await
                                .ok(),
                            None => None,
                        };
                        match batch {
                            Some(batch) if batch.is_empty() && stopping => return,
                            Some(batch) => {
                                let mut seen = seen.lock().expect("seen");
                                for e in batch {
                                    if e.seq <= cursor {
                                        continue;
                                    }
                                    cursor = e.seq;
                                    if e.kind == "completed" {
                                        if let Some(id) = &e.subject {
                                            done.lock().expect("done").insert(id.clone());
                                        }
                                    }
                                    seen.push(Seen {
                                        node: node.clone(),
                                        event: e,
                                    });
                                }
                                news.notify_waiters();
                            }
                            // Down, cut off or restarting: look again shortly (no event to
                            // wait for), unless the collection is over.
                            None if stopping => return,
                            None => {
                                if let Some((g, _)) = client {
                                    clients.drop_client(n, g);
                                }
                                tokio::select! {
                                    _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                                    _ = stopped.changed() => {}
                                }
                            }
                        }
                    }
                })
            })
            .collect();
        Collector {
            seen,
            done,
            news,
            stop,
            tasks,
        }
    }

    /// Wait until `count` items have a `completed` event.
    pub async fn until_done(&self, count: usize) {
        within(&format!("{count} items done"), async {
            loop {
                let notified = self.news.notified();
                if self.done.lock().expect("done").len() >= count {
                    return;
                }
                notified.await;
            }
        })
        .await
    }

    /// The first event matching `pred` (waits for it up to [`LIMIT`], woken by the poster's
    /// settles or every 100 ms).
    pub async fn first(&self, what: &str, pred: impl Fn(&Seen) -> bool) -> Seen {
        within(what, async {
            loop {
                let notified = self.news.notified();
                if let Some(s) = self.seen.lock().expect("seen").iter().find(|s| pred(s)) {
                    return s.clone();
                }
                notified.await;
            }
        })
        .await
    }

    /// Collect what every node published up to now, then stop. Nodes down at this point
    /// are not waited for.
    pub async fn finish(mut self) -> Vec<Seen> {
        let _ = self.stop.send(true);
        for t in self.tasks.drain(..) {
            within("the event collector to finish", t)
                .await
                .expect("collector task");
        }
        std::mem::take(&mut *self.seen.lock().expect("seen"))
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Posts items `p0000`, `p0001`, ... of [`TYPE`] while fewer than [`WINDOW`] are not done yet,
/// through the given hosts' clients in turn (skipping hosts that are down; a post that failed
/// is sent again with the same id, and "already exists" then means the first one was taken).
pub struct Poster {
    stop: watch::Sender<bool>,
    task: JoinHandle<Posted>,
}

pub struct Posted {
    pub ids: Vec<String>,
    /// Posts that failed and were sent again.
    pub retries: u64,
    pub started: Instant,
    pub started_ms: u64,
}

impl Poster {
    pub fn start(clients: &Arc<Clients>, through: Vec<usize>, collector: &Collector) -> Poster {
        let (stop, mut stopped) = watch::channel(false);
        let clients = clients.clone();
        let done = collector.done.clone();
        let news = collector.news.clone();
        let task = tokio::spawn(async move {
            let mut posted = Posted {
                ids: Vec::new(),
                retries: 0,
                started: Instant::now(),
                started_ms: now_ms(),
            };
            let mut turn = 0usize;
            loop {
                // Wait for room (woken by every batch of events; a look every 200 ms at most).
                loop {
                    if *stopped.borrow() {
                        return posted;
                    }
                    let notified = news.notified();
                    let open = {
                        let done = done.lock().expect("done");
                        posted.ids.iter().filter(|i| !done.contains(*i)).count()
                    };
                    if open < WINDOW {
                        break;
                    }
                    tokio::select! {
                        _ = notified => {}
                        _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                        _ = stopped.changed() => {}
                    }
                }
                let id = format!("p{:04}", posted.ids.len());
                let deadline = Instant::now() + LIMIT;
                loop {
                    let n = through[turn % through.len()];
                    turn += 1;
                    let Some(c) = clients.get(n) else {
                        continue_after_pause(deadline, &id).await;
                        continue;
                    };
                    match c.work(&id, &format!("task {id}"), typed()).await {
                        Ok(_) => break,
                        Err(e) if e.to_string().contains("already exists") => break,
                        Err(_) => {
                            posted.retries += 1;
                            continue_after_pause(deadline, &id).await;
                        }
                    }
                }
                posted.ids.push(id);
            }
        });
        Poster { stop, task }
    }

    /// Stop posting (the item being posted is finished first); what was posted.
    pub async fn stop(self) -> Posted {
        let _ = self.stop.send(true);
        within("the poster to stop", self.task)
            .await
            .expect("poster task")
    }
}

/// No host could take the post: wait a moment (nodes are restarting, or the board node is)
/// and try again, unless the item has been tried for [`LIMIT`] already.
async fn continue_after_pause(deadline: Instant, id: &str) {
    assert!(
        Instant::now() < deadline,
        "no node took {id} within {LIMIT:?}"
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
}

/// Wait until every posted item is settled; each must be done. Returns the items.
pub async fn all_done(c: &Client, ids: &[String]) -> BTreeMap<String, WorkItem> {
    let mut items = BTreeMap::new();
    for id in ids {
        let item = within(&format!("{id} to settle"), c.await_work(id, Some(LIMIT)))
            .await
            .unwrap_or_else(|e| panic!("await {id}: {e}"));
        assert_eq!(item.status, Status::Done, "{item:?}");
        items.insert(id.clone(), item);
    }
    items
}

/// Exactly once: every item was completed by one worker, once. For each id, exactly one
/// `completed` event was published across all nodes, by the node whose worker's result the
/// board recorded (`... by hN`), and that result is the item's own prompt. Returns, per id,
/// the node whose completion the board accepted.
pub fn exactly_once(items: &BTreeMap<String, WorkItem>, seen: &[Seen]) -> BTreeMap<String, String> {
    let mut completions: BTreeMap<&str, Vec<&Seen>> = BTreeMap::new();
    for s in seen.iter().filter(|s| s.event.kind == "completed") {
        if let Some(id) = s.event.subject.as_deref() {
            completions.entry(id).or_default().push(s);
        }
    }
    let mut by = BTreeMap::new();
    for (id, item) in items {
        let result = item.result.clone().unwrap_or_default();
        let node = result
            .rsplit_once(" by ")
            .map(|(_, n)| n.to_string())
            .unwrap_or_default();
        assert!(
            result.starts_with(&format!("task {id}")) && node.starts_with('h'),
            "{id}: unexpected result {result:?}: {item:?}"
        );
        assert_eq!(
            item.last_settle.map(|s| s.kind.as_str()),
            Some("completed"),
            "{id}: {item:?}"
        );
        let events = completions.remove(id.as_str()).unwrap_or_default();
        let lines: Vec<String> = events
            .iter()
            .map(|s| format!("{}: {}", s.node, s.event.line))
            .collect();
        assert_eq!(
            events.len(),
            1,
            "{id} has {} completed events: {lines:?}; item {item:?}",
            events.len()
        );
        assert_eq!(
            events[0].node, node,
            "{id}: the completion event came from {} but the board recorded {result:?}",
            events[0].node
        );
        by.insert(id.clone(), node);
    }
    assert!(
        completions.is_empty(),
        "completed events for items never posted: {:?}",
        completions.keys().collect::<Vec<_>>()
    );
    by
}
