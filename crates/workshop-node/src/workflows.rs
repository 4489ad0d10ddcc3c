//! Workflows on the board, AgentWorkshop style: definitions are durable; `run_workflow` expands
//! the stages into board items with dependencies; workers of each stage's type run them; the
//! run's status is derived from its items (completed when all are done, failed as soon as one
//! fails or is blocked) and announced when it changes.

use std::time::Duration;

use tokio::time::Instant;
use workshop_board::item::{Status, WorkItem, WorkType};
use workshop_types::Topic;
use workshop_workflow::{run_status, stage_prompt, RunStatus, StageState, Workflow};

use crate::work::{WorkOptions, AWAIT_POLL};
use crate::{ApiError, Workshop};

/// How often `await_workflow` looks again at a running workflow with no open item to wait on.
const MISSING_STAGE_POLL: Duration = Duration::from_secs(1);

fn stage_state(item: Option<&WorkItem>) -> StageState {
    match item.map(|i| i.status) {
        None => StageState::Missing,
        Some(Status::Done) => StageState::Done,
        Some(Status::Failed | Status::Blocked | Status::Cancelled) => StageState::Broken,
        Some(_) => StageState::Open,
    }
}

pub fn status_name(s: RunStatus) -> &'static str {
    match s {
        RunStatus::Defined => "defined",
        RunStatus::Running => "running",
        RunStatus::Completed => "completed",
        RunStatus::Failed => "failed",
    }
}

/// Whether a stage's input file can be read: it exists, is a file and opens.
fn readable(path: &str) -> Result<(), String> {
    let meta = std::fs::metadata(path).map_err(|e| e.to_string())?;
    if meta.is_dir() {
        return Err("it is a directory".into());
    }
    std::fs::File::open(path)
        .map(drop)
        .map_err(|e| e.to_string())
}

impl Workshop {
    /// What a definition must satisfy where the node accepts it (so the console, the CLI, MCP
    /// and remote clients all get the same checks): a valid stage graph, work types the board
    /// knows, input files that can be read, and for every stage someone to run it: an agent, a
    /// profile or a board worker of the stage's agent name, or a board worker of its work type.
    /// Only this node's agents, profiles and workers count.
    fn check_workflow(&self, wf: Workflow) -> Result<Workflow, ApiError> {
        let wf = Workflow::new(&wf.name, wf.stages).map_err(|e| ApiError::Board(e.to_string()))?;
        let snap = self.snapshot();
        let agents = self.agents();
        for s in &wf.stages {
            let work_type: WorkType = s.work_type.parse().map_err(|e| {
                ApiError::Board(format!("workflow {}: stage {}: {e}", wf.name, s.name))
            })?;
            let named = agents.iter().any(|a| a.as_str() == s.agent)
                || snap.profiles.contains_key(&s.agent)
                || snap.workers.keys().any(|w| w.as_str() == s.agent);
            let typed = snap
                .workers
                .values()
                .any(|w| w.crashed.is_none() && w.spec.work_type == work_type);
            if !named && !typed {
                return Err(ApiError::Board(format!(
                    "workflow {wf}: stage {stage} is for {agent:?}, but no agent, profile or board \
                     worker is named {agent:?} and no board worker takes {work_type} items, so the \
                     stage would never run; create one first, e.g. board_worker(\"{agent}\", \
                     \"{work_type}\", #{{}}) or profile(\"{agent}\", ...)",
                    wf = wf.name,
                    stage = s.name,
                    agent = s.agent,
                )));
            }
        }
        for (stage, path) in wf.files() {
            readable(path)
                .map_err(|e| ApiError::Board(wf.unreadable(stage, path, e).to_string()))?;
        }
        Ok(wf)
    }

    /// Define (or redefine) a workflow, checked first (`check_workflow`). Definitions survive
    /// restarts on a durable node.
    pub async fn workflow(&self, wf: Workflow) -> Result<(), ApiError> {
        let wf = self.check_workflow(wf)?;
        let name = wf.name.clone();
        self.write_state(|reply| crate::state::StateMsg::Workflow {
            workflow: wf,
            reply,
        })
        .await??;
        self.emit_about(
            Topic::Workflow,
            "defined",
            &name,
            format!("[workflow] {name} defined"),
        );
        Ok(())
    }

    pub fn workflows(&self) -> Vec<Workflow> {
        self.snapshot().workflows.values().cloned().collect()
    }

    fn definition(&self, name: &str) -> Result<Workflow, ApiError> {
        let name = name.trim_start_matches(':');
        self.snapshot()
            .workflows
            .get(name)
            .cloned()
            .ok_or_else(|| {
                ApiError::Board(format!(
                    "no workflow named {name}; workflows() lists them, workflow(\"{name}\", [...]) defines one"
                ))
            })
    }

    /// Expand a workflow into board items. Refused while a run's items exist.
    pub async fn run_workflow(&self, name: &str) -> Result<Vec<WorkItem>, ApiError> {
        let wf = self.definition(name)?;
        let (status, _) = self.workflow_status(&wf.name).await?;
        if status != RunStatus::Defined {
            return Err(ApiError::Board(format!(
                "workflow {} is {}; reset_workflow(\"{}\") before running it again",
                wf.name,
                status_name(status),
                wf.name
            )));
        }
        // Checked again: an agent, worker or file may have gone since the definition.
        let wf = self.check_workflow(wf)?;
        let planned = wf
            .expand(|path| std::fs::read_to_string(path).map_err(|e| e.to_string()))
            .map_err(|e| ApiError::Board(e.to_string()))?;
        let mut items = Vec::new();
        for p in planned {
            let o = WorkOptions {
                work_type: Some(p.work_type.clone()),
                spec: Some(p.spec.clone()),
                priority: Some(p.priority),
                depends_on: p.depends_on.clone(),
                metadata: p.metadata.clone(),
                ..Default::default()
            };
            items.push(self.work(&p.id, &p.title, o).await?);
        }
        self.emit_about(
            Topic::Workflow,
            "started",
            &wf.name,
            format!("[workflow] {} started ({} stages)", wf.name, items.len()),
        );
        Ok(items)
    }

    /// The run's status and each stage's item (None before the first run).
    pub async fn workflow_status(
        &self,
        name: &str,
    ) -> Result<(RunStatus, Vec<(String, Option<WorkItem>)>), ApiError> {
        let wf = self.definition(name)?;
        let mut stages = Vec::new();
        for s in &wf.stages {
            stages.push((s.name.clone(), self.work_item(&wf.item_id(&s.name)).await?));
        }
        let states: Vec<StageState> = stages
            .iter()
            .map(|(_, i)| stage_state(i.as_ref()))
            .collect();
        Ok((run_status(&states), stages))
    }

    /// Wait until the workflow's run completes or fails, wherever its stages run: long polls
    /// of the board (`AwaitSettled`) on every open stage at once, status read again whenever
    /// one settles.
    pub async fn await_workflow(
        &self,
        name: &str,
        timeout: Option<Duration>,
    ) -> Result<RunStatus, ApiError> {
        let deadline = timeout.map(|t| Instant::now() + t);
        let still_running = || {
            ApiError::Board(format!(
                "workflow {name} still running after {} ms; await_workflow(\"{name}\") again to \
                 keep waiting",
                timeout.unwrap_or_default().as_millis()
            ))
        };
        loop {
            let (status, stages) = self.workflow_status(name).await?;
            match status {
                RunStatus::Completed | RunStatus::Failed => return Ok(status),
                RunStatus::Defined => {
                    return Err(ApiError::Board(format!(
                        "workflow {name} is not running; run_workflow(\"{name}\") first"
                    )))
                }
                RunStatus::Running => {}
            }
            let remaining = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            if remaining.is_some_and(|r| r.is_zero()) {
                return Err(still_running());
            }
            let wait = remaining.map_or(AWAIT_POLL, |r| r.min(AWAIT_POLL));
            let open: Vec<String> = stages
                .iter()
                .filter_map(|(_, item)| item.as_ref())
                .filter(|item| !item.status.is_settled())
                .map(|item| item.id.to_string())
                .collect();
            if open.is_empty() {
                // Running with no open item: a stage's item is missing (the run is being
                // started, or an item was removed by hand). Nothing to wait on; look again.
                tokio::time::sleep(wait.min(MISSING_STAGE_POLL)).await;
                continue;
            }
            let client = self.board_client()?;
            let mut polls = tokio::task::JoinSet::new();
            for id in open {
                let client = client.clone();
                polls.spawn(async move { client.await_settled(&id, wait).await });
            }
            // The first stage to settle (or the first poll to end) ends this round; the other
            // polls are dropped (the board ends them after `wait`).
            let first = match deadline {
                None => polls.join_next().await,
                Some(d) => tokio::time::timeout_at(d + Duration::from_secs(1), polls.join_next())
                    .await
                    .map_err(|_| still_running())?,
            };
            match first {
                Some(Ok(Err(e))) => return Err(e),
                Some(Err(e)) => {
                    return Err(ApiError::Node(format!(
                        "waiting for workflow {name} failed: {e}; await_workflow(\"{name}\") again"
                    )))
                }
                Some(Ok(Ok(_))) | None => {}
            }
        }
    }

    /// Remove the run's items (dependents first) and return the workflow to `defined`.
    pub async fn reset_workflow(&self, name: &str) -> Result<(), ApiError> {
        let wf = self.definition(name)?;
        for s in wf.stages.iter().rev() {
            let id = wf.item_id(&s.name);
            if self.work_item(&id).await?.is_some() {
                self.board_client()?.remove(&id).await?;
            }
        }
        self.emit_about(
            Topic::Workflow,
            "reset",
            &wf.name,
            format!("[workflow] {} reset", wf.name),
        );
        Ok(())
    }

    /// After an item settles: if it belongs to a workflow whose run just ended, say so.
    pub(crate) async fn after_item_settled(&self, item: &WorkItem) {
        let Some(wf) = item.metadata.get("workflow") else {
            return;
        };
        if let Ok((status, _)) = self.workflow_status(wf).await {
            if matches!(status, RunStatus::Completed | RunStatus::Failed) {
                self.emit_about(
                    Topic::Workflow,
                    status_name(status),
                    wf,
                    format!("[workflow] {wf} {}", status_name(status)),
                );
            }
        }
    }

    /// The prompt for an item: title, spec, and the whole results of the stages it depends on
    /// (put together from their parts when they were completed in parts; an error when the
    /// board cannot be read: the prompt would lack them).
    pub(crate) async fn stage_prompt_for(&self, item: &WorkItem) -> Result<String, ApiError> {
        let mut previous = Vec::new();
        for dep in &item.depends_on {
            if let Some(d) = self.work_item(dep.as_str()).await? {
                let board = self.board_client()?;
                let result = workshop_board::parts::assemble(d.clone(), |index| {
                    board.result_part(d.id.as_str(), index)
                })
                .await?;
                if let Some(r) = result {
                    let label = d
                        .metadata
                        .get("stage")
                        .cloned()
                        .unwrap_or_else(|| d.id.to_string());
                    previous.push((label, r));
                }
            }
        }
        Ok(stage_prompt(&item.title, &item.spec, &previous))
    }
}
