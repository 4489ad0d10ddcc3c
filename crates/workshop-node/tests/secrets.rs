//! Secrets stay secret and the data dir is private (issue 8, item 3): the `env` values of
//! agents, profiles, the configuration and board workers are kept in owner-only files under
//! `<data>/secrets`, never in the node database and never shown; the data dir is 0700 and the
//! files the node leaves in it 0600; a missing secrets file is a clear error naming it.

mod common;

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use common::*;
use parking_lot::Mutex;
use workshop_agent::backend::script::ScriptBackend;
use workshop_agent::backend::{Backend, BackendError, Backends, Session};
use workshop_node::Node;
use workshop_types::{AgentOptions, AgentSpec};

const SECRET: &str = "sk-secret-xyz";

// ------------------------------------------------------------------ captured logs

/// Everything every test of this file logs (at debug level and above), from every thread.
fn logs() -> &'static Mutex<Vec<u8>> {
    static LOGS: OnceLock<Mutex<Vec<u8>>> = OnceLock::new();
    static INSTALLED: OnceLock<()> = OnceLock::new();
    let logs = LOGS.get_or_init(|| Mutex::new(Vec::new()));
    INSTALLED.get_or_init(|| {
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::DEBUG)
            .with_ansi(false)
            .with_writer(|| LogWriter)
            .finish();
        tracing::subscriber::set_global_default(subscriber).expect("one global subscriber");
    });
    logs
}

struct LogWriter;

impl std::io::Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        logs().lock().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn logged() -> String {
    String::from_utf8_lossy(&logs().lock()).into_owned()
}

// ------------------------------------------------------------------ a recording backend

/// The `script` backend, recording the spec of every session it starts.
#[derive(Default)]
struct Recording {
    seen: Mutex<Vec<AgentSpec>>,
}

impl Recording {
    fn env_of(&self, agent: &str) -> BTreeMap<String, String> {
        self.seen
            .lock()
            .iter()
            .rev()
            .find(|s| s.name.as_str() == agent)
            .map(|s| s.options.env.clone().unwrap_or_default())
            .expect("a session of the agent was started")
    }
}

impl Backend for Recording {
    fn name(&self) -> &'static str {
        "script"
    }
    fn start_session(&self, spec: &AgentSpec) -> Result<Box<dyn Session>, BackendError> {
        self.seen.lock().push(spec.clone());
        ScriptBackend.start_session(spec)
    }
}

async fn open(data: &Path, backend: &Arc<Recording>) -> Node {
    Node::builder()
        .backends(Backends::default().with(backend.clone()))
        .data_dir(data)
        .start()
        .await
        .expect("node")
}

fn with_env(mut o: AgentOptions, key: &str, value: &str) -> AgentOptions {
    o.env = Some(BTreeMap::from([(key.to_string(), value.to_string())]));
    o
}

fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Every file under `dir`, recursively (links not followed).
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).expect("list") {
            let entry = entry.expect("entry");
            let t = entry.file_type().expect("type");
            if t.is_dir() {
                stack.push(entry.path());
            } else if t.is_file() {
                out.push(entry.path());
            }
        }
    }
    out
}

fn dirs_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = vec![dir.to_path_buf()];
    let mut i = 0;
    while i < out.len() {
        for entry in std::fs::read_dir(&out[i]).expect("list") {
            let entry = entry.expect("entry");
            if entry.file_type().expect("type").is_dir() {
                out.push(entry.path());
            }
        }
        i += 1;
    }
    out
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).expect("meta").permissions().mode() & 0o777
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

#[tokio::test]
async fn env_values_stay_out_of_the_data_dir_and_out_of_every_view() {
    logs();
    let data = tempfile::tempdir().expect("data dir");
    let backend = Arc::new(Recording::default());
    {
        let node = open(data.path(), &backend).await;
        let w = &node.workshop;
        let c = node.client();
        w.configure(
            None,
            with_env(Default::default(), "CONFIG_KEY", SECRET),
            None,
        )
        .await
        .expect("configure");
        w.profile(
            "p",
            None,
            with_env(script(vec![text("ok")]), "PROFILE_KEY", SECRET),
        )
        .await
        .expect("profile");
        w.agent(
            "a",
            None,
            with_env(
                script(vec![text("one"), text("two")]),
                "ANTHROPIC_API_KEY",
                SECRET,
            ),
        )
        .await
        .expect("agent");
        w.from_profile("p", "b", Default::default())
            .await
            .expect("agent from the profile");
        w.board_worker(
            "wk",
            "code",
            worker_opts(with_env(script(vec![text("ok")]), "WORKER_KEY", SECRET)),
        )
        .await
        .expect("board worker");
        // Status rows go through the background writer.
        w.ask("a", "hi").await.expect("ask");
        w.ask("b", "hi").await.expect("ask");
        assert_eq!(
            backend.env_of("a"),
            env(&[("ANTHROPIC_API_KEY", SECRET)]),
            "the backend gets the real value"
        );

        // Nothing shows the values: the node's API, and the client (the CLI's --json, MCP).
        let mut shown = vec![
            format!("{:?}", w.info("a").await.expect("info")),
            format!("{:?}", w.status()),
            format!("{:?}", w.agents()),
            format!("{:?}", w.profiles()),
            format!("{:?}", w.config()),
            format!("{:?}", w.events(500, None).await.expect("events")),
            format!("{:?}", w.workers().await.expect("workers")),
            format!("{:?}", backend.seen.lock()),
        ];
        shown.push(serde_json::to_string(&c.info("a").await.expect("info")).expect("json"));
        shown.push(serde_json::to_string(&c.status().await.expect("status")).expect("json"));
        shown.push(serde_json::to_string(&c.agents().await.expect("agents")).expect("json"));
        let profiles = serde_json::to_string(&c.profiles().await.expect("profiles")).expect("json");
        let config = serde_json::to_string(&c.config().await.expect("config")).expect("json");
        assert!(
            profiles.contains(r#""PROFILE_KEY":"<hidden>""#),
            "{profiles}"
        );
        assert!(config.contains(r#""CONFIG_KEY":"<hidden>""#), "{config}");
        shown.push(profiles);
        shown.push(config);
        for s in &shown {
            assert!(!s.contains(SECRET), "shown: {s}");
        }
        node.shutdown().await;
    }

    // On disk: the values only in the secrets files; the data dir 0700, its files 0600.
    let secrets_dir = data.path().join("secrets");
    let files = files_under(data.path());
    let mut holders = Vec::new();
    for f in &files {
        let bytes = std::fs::read(f).expect("read");
        if contains(&bytes, SECRET) {
            assert!(
                f.parent() == Some(&secrets_dir),
                "{} holds the secret",
                f.display()
            );
            holders.push(f.file_name().expect("name").to_string_lossy().into_owned());
        }
        assert_eq!(mode(f), 0o600, "{}", f.display());
    }
    holders.sort();
    assert_eq!(
        holders,
        [
            "agent-a.json",
            "agent-b.json",
            "agent-wk.json",
            "config.json",
            "profile-p.json",
            "worker-wk.json"
        ]
    );
    for d in dirs_under(data.path()) {
        assert_eq!(mode(&d), 0o700, "{}", d.display());
    }

    // After a restart every environment comes back whole.
    let backend = Arc::new(Recording::default());
    let node = open(data.path(), &backend).await;
    let w = &node.workshop;
    w.ask("a", "again").await.expect("restored agent");
    assert_eq!(backend.env_of("a"), env(&[("ANTHROPIC_API_KEY", SECRET)]));
    w.ask("b", "again").await.expect("restored agent");
    assert_eq!(backend.env_of("b"), env(&[("PROFILE_KEY", SECRET)]));
    assert_eq!(backend.env_of("wk"), env(&[("WORKER_KEY", SECRET)]));
    // The profile and the configuration kept theirs.
    w.from_profile("p", "c", Default::default())
        .await
        .expect("from the restored profile");
    assert_eq!(backend.env_of("c"), env(&[("PROFILE_KEY", SECRET)]));
    w.agent("d", None, script(vec![text("ok")]))
        .await
        .expect("an agent under the restored configuration");
    assert_eq!(backend.env_of("d"), env(&[("CONFIG_KEY", SECRET)]));
    let restore_problems: Vec<_> = w
        .events(500, None)
        .await
        .expect("events")
        .into_iter()
        .filter(|e| e.kind == "restore_failed")
        .collect();
    assert!(restore_problems.is_empty(), "{restore_problems:?}");
    node.shutdown().await;

    // Dismissed or replaced without env: the values go with them.
    let node = open(data.path(), &backend).await;
    node.workshop.dismiss("a").await.expect("dismiss");
    node.workshop
        .agent("b", None, script(vec![text("ok")]))
        .await
        .expect("replace b without env");
    node.shutdown().await;
    assert!(!secrets_dir.join("agent-a.json").exists());

    let logged = logged();
    assert!(!logged.contains(SECRET), "the logs show the secret");
}

#[tokio::test]
async fn an_existing_loose_data_dir_is_tightened_at_open() {
    logs();
    let data = tempfile::tempdir().expect("data dir");
    let backend = Arc::new(Recording::default());
    let node = open(data.path(), &backend).await;
    node.workshop
        .agent("a", None, script(vec![text("ok")]))
        .await
        .expect("agent");
    node.shutdown().await;

    // Loosen everything, as an older build (or a careless copy) left it; add a directory the
    // node does not own (a repository's worktrees live in `.workshop/worktrees`).
    let theirs = data.path().join("worktrees").join("item-1");
    std::fs::create_dir_all(&theirs).expect("worktree");
    std::fs::write(theirs.join("run.sh"), "#!/bin/sh\n").expect("file");
    std::fs::set_permissions(
        theirs.join("run.sh"),
        std::fs::Permissions::from_mode(0o755),
    )
    .expect("chmod");
    std::fs::set_permissions(&theirs, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    std::fs::write(data.path().join("node.log"), "log").expect("file");
    let notes = data.path().join("notes.txt");
    std::fs::write(&notes, "a user's file").expect("file");
    std::fs::set_permissions(&notes, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    for d in dirs_under(&data.path().join("node"))
        .into_iter()
        .chain(dirs_under(&data.path().join("board")))
        .chain([data.path().to_path_buf()])
    {
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    let ours: Vec<PathBuf> = files_under(data.path())
        .into_iter()
        .filter(|f| !f.starts_with(data.path().join("worktrees")) && f != &notes)
        .collect();
    for f in &ours {
        std::fs::set_permissions(f, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    }

    let before = logged().len();
    let node = open(data.path(), &backend).await;
    assert_eq!(mode(data.path()), 0o700);
    for d in dirs_under(&data.path().join("node"))
        .into_iter()
        .chain(dirs_under(&data.path().join("board")))
    {
        assert_eq!(mode(&d), 0o700, "{}", d.display());
    }
    for f in &ours {
        assert_eq!(mode(f), 0o600, "{}", f.display());
    }
    // Not the node's: left as it was (the 0700 data dir covers it).
    assert_eq!(mode(&theirs), 0o755);
    assert_eq!(mode(&theirs.join("run.sh")), 0o755);
    assert_eq!(mode(&notes), 0o644);
    let logged = logged().split_off(before);
    let line = logged
        .lines()
        .find(|l| l.contains(&data.path().display().to_string()) && l.contains("tightened"))
        .unwrap_or_else(|| panic!("no line says what was tightened: {logged}"));
    assert!(line.contains("WARN") && line.contains("node.log"), "{line}");
    node.shutdown().await;
}

#[tokio::test]
async fn a_missing_secrets_file_is_a_clear_error_naming_it_and_the_agent() {
    logs();
    let data = tempfile::tempdir().expect("data dir");
    let backend = Arc::new(Recording::default());
    let node = open(data.path(), &backend).await;
    let w = &node.workshop;
    w.agent(
        "a",
        None,
        with_env(script(vec![text("ok")]), "ANTHROPIC_API_KEY", SECRET),
    )
    .await
    .expect("agent");
    w.profile(
        "p",
        None,
        with_env(script(vec![text("ok")]), "PROFILE_KEY", SECRET),
    )
    .await
    .expect("profile");
    w.agent("plain", None, script(vec![text("ok")]))
        .await
        .expect("agent without env");
    node.shutdown().await;

    let agent_file = data.path().join("secrets").join("agent-a.json");
    let profile_file = data.path().join("secrets").join("profile-p.json");
    std::fs::remove_file(&agent_file).expect("remove the agent's secrets file");
    std::fs::remove_file(&profile_file).expect("remove the profile's secrets file");

    let backend = Arc::new(Recording::default());
    let node = open(data.path(), &backend).await;
    let w = &node.workshop;
    // Not started with half an environment; the rest of the node is fine.
    assert_eq!(
        w.agents().iter().map(|a| a.to_string()).collect::<Vec<_>>(),
        ["plain"]
    );
    assert!(w.profiles().is_empty(), "{:?}", w.profiles());
    assert!(backend.seen.lock().iter().all(|s| s.name.as_str() != "a"));
    let events = w.events(500, None).await.expect("events");
    let failed: Vec<&str> = events
        .iter()
        .filter(|e| e.kind == "restore_failed")
        .map(|e| e.line.as_str())
        .collect();
    let about = |file: &Path, who: &str| {
        failed.iter().any(|l| {
            l.contains(&file.display().to_string()) && l.contains(who) && l.contains("missing")
        })
    };
    assert!(about(&agent_file, "agent a"), "{failed:?}");
    assert!(about(&profile_file, "profile p"), "{failed:?}");
    // Giving the agent its env again brings it back.
    w.agent(
        "a",
        None,
        with_env(script(vec![text("ok")]), "ANTHROPIC_API_KEY", SECRET),
    )
    .await
    .expect("agent again");
    w.ask("a", "hi").await.expect("ask");
    assert_eq!(backend.env_of("a"), env(&[("ANTHROPIC_API_KEY", SECRET)]));
    node.shutdown().await;
}
