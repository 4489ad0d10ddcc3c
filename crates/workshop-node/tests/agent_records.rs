//! What a durable node records of an agent: the absolute working directory it was created in,
//! so a restored agent runs there, whatever the restoring process's directory.

mod common;

use std::path::PathBuf;
use std::sync::Arc;

use common::*;
use parking_lot::Mutex;
use workshop_agent::backend::script::ScriptBackend;
use workshop_agent::backend::{Backend, BackendError, Backends, Session};
use workshop_node::persist::NodeDb;
use workshop_node::Node;
use workshop_types::{AgentName, AgentSpec};

/// The `script` backend, recording the spec of every session it starts.
#[derive(Default)]
struct Recording {
    seen: Mutex<Vec<AgentSpec>>,
}

impl Recording {
    fn working_dir_of(&self, agent: &str) -> Option<String> {
        self.seen
            .lock()
            .iter()
            .rev()
            .find(|s| s.name.as_str() == agent)
            .map(|s| s.options.working_dir.clone())
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

async fn open(data: &std::path::Path, backend: &Arc<Recording>) -> Node {
    Node::builder()
        .backends(Backends::default().with(backend.clone()))
        .data_dir(data)
        .start()
        .await
        .expect("node")
}

fn recorded_working_dir(data: &std::path::Path, agent: &str) -> Option<String> {
    let db = NodeDb::open(&data.join("node")).expect("node database");
    db.agent(&AgentName::new(agent).expect("name"))
        .expect("read")
        .expect("the agent's record")
        .spec
        .options
        .working_dir
}

#[tokio::test]
async fn an_agent_records_the_absolute_directory_it_was_created_in() {
    let data = tempfile::tempdir().expect("data dir");
    let cwd = std::env::current_dir().expect("cwd");
    let here = cwd.display().to_string();
    let sub = cwd.join("sub").display().to_string();
    let backend = Arc::new(Recording::default());
    {
        let node = open(data.path(), &backend).await;
        let w = &node.workshop;
        w.agent("plain", None, script(vec![text("ok")]))
            .await
            .expect("agent without working_dir");
        let mut relative = script(vec![text("ok")]);
        relative.working_dir = Some("sub".into());
        w.agent("relative", None, relative)
            .await
            .expect("agent with a relative working_dir");
        w.profile("p", Some("role".into()), script(vec![text("ok")]))
            .await
            .expect("profile");
        w.from_profile("p", "profiled", Default::default())
            .await
            .expect("agent from a profile");
        w.board_worker("builder", "code", worker_opts(script(vec![text("ok")])))
            .await
            .expect("board worker");
        // The sessions start in the recorded directory.
        assert_eq!(backend.working_dir_of("plain").as_deref(), Some(&*here));
        assert_eq!(backend.working_dir_of("relative").as_deref(), Some(&*sub));
        assert_eq!(backend.working_dir_of("profiled").as_deref(), Some(&*here));
        node.shutdown().await;
    }
    // The registry holds the absolute directories themselves, not "wherever the node runs".
    assert_eq!(
        recorded_working_dir(data.path(), "plain").as_deref(),
        Some(&*here)
    );
    assert_eq!(
        recorded_working_dir(data.path(), "relative").as_deref(),
        Some(&*sub)
    );
    assert_eq!(
        recorded_working_dir(data.path(), "profiled").as_deref(),
        Some(&*here)
    );

    // A board worker's repository (where item worktrees go) is recorded too.
    {
        let db = NodeDb::open(&data.path().join("node")).expect("node database");
        let (workers, _) = db.workers().expect("workers");
        let builder = workers
            .iter()
            .find(|s| s.name.as_str() == "builder")
            .expect("the worker's spec");
        assert_eq!(builder.options.working_dir.as_deref(), Some(&*here));
    }
    assert_eq!(
        recorded_working_dir(data.path(), "builder").as_deref(),
        Some(&*here)
    );

    // A restored agent runs in the directory recorded at its creation: move the record to
    // another directory (as if created elsewhere) and restore it from this process.
    let elsewhere = tempfile::tempdir().expect("another directory");
    let moved = PathBuf::from(elsewhere.path()).display().to_string();
    {
        let db = NodeDb::open(&data.path().join("node")).expect("node database");
        let name = AgentName::new("plain").expect("name");
        let mut rec = db.agent(&name).expect("read").expect("record");
        rec.spec.options.working_dir = Some(moved.clone());
        db.put_agent(&rec).expect("write");
        db.sync().await.expect("sync");
    }
    let node = open(data.path(), &backend).await;
    node.workshop.ask("plain", "hi").await.expect("ask");
    assert_eq!(backend.working_dir_of("plain").as_deref(), Some(&*moved));
    node.shutdown().await;
}
