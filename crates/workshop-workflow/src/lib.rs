//! Declarative workflows, AgentWorkshop style: a named list of stages, each run by an agent
//! (routed to board workers by work type), fed by a file, an earlier stage, or several stages
//! (fan-in). This crate is pure: it validates the stage graph and expands a run into planned
//! board items; reading files and talking to the board is the caller's job.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::{Deserialize, Serialize};

/// Where a stage's input comes from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Source {
    None,
    /// A file read when the workflow runs; its content becomes the item's spec.
    File(String),
    /// The results of these stages (one stage, or fan-in).
    Stages(Vec<String>),
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stage {
    pub name: String,
    /// The agent (or profile) meant to run it; kept in the item's metadata.
    pub agent: String,
    pub title: String,
    pub from: Source,
    /// Board work type; workers of that type pick the stage up. Default `custom`.
    pub work_type: String,
    /// 1 (highest) to 5, default 3.
    pub priority: u8,
}

impl Stage {
    pub fn new(name: &str, agent: &str, title: &str) -> Self {
        Self {
            name: name.trim_start_matches(':').to_string(),
            agent: agent.trim_start_matches(':').to_string(),
            title: title.to_string(),
            from: Source::None,
            work_type: "custom".into(),
            priority: 3,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Workflow {
    pub name: String,
    pub stages: Vec<Stage>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WorkflowError {
    #[error("workflow name {0:?} is invalid: use letters, digits, '_' or '-'")]
    BadName(String),
    #[error("workflow {0} has no stages")]
    Empty(String),
    #[error(
        "workflow {workflow}: stage name {stage:?} is invalid: use letters, digits, '_' or '-'"
    )]
    BadStageName { workflow: String, stage: String },
    #[error("workflow {workflow}: stage {stage} is defined twice")]
    DuplicateStage { workflow: String, stage: String },
    #[error("workflow {workflow}: stage {stage} takes input from {missing}, which is not a stage of this workflow")]
    UnknownSource {
        workflow: String,
        stage: String,
        missing: String,
    },
    #[error("workflow {workflow}: stages form a cycle: {}", cycle.join(" -> "))]
    Cycle {
        workflow: String,
        cycle: Vec<String>,
    },
    #[error(
        "workflow {workflow}: stage {stage} takes input from {path:?}, which is neither a stage \
         of this workflow ({}) nor a readable file ({error})",
        stages.join(", ")
    )]
    Unreadable {
        workflow: String,
        stage: String,
        path: String,
        error: String,
        /// The workflow's stage names, for the message (a misspelt stage reads as a file).
        stages: Vec<String>,
    },
    #[error("workflow {workflow}: stage {stage} has priority {priority}; use 1 (highest) to 5")]
    Priority {
        workflow: String,
        stage: String,
        priority: u8,
    },
}

fn valid_ident(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

impl Workflow {
    /// Validate a stage list: names, duplicates, sources, priorities and cycles.
    pub fn new(name: &str, stages: Vec<Stage>) -> Result<Self, WorkflowError> {
        let name = name.trim_start_matches(':').to_string();
        if !valid_ident(&name) {
            return Err(WorkflowError::BadName(name));
        }
        if stages.is_empty() {
            return Err(WorkflowError::Empty(name));
        }
        let mut seen = BTreeSet::new();
        for s in &stages {
            if !valid_ident(&s.name) {
                return Err(WorkflowError::BadStageName {
                    workflow: name.clone(),
                    stage: s.name.clone(),
                });
            }
            if !seen.insert(s.name.clone()) {
                return Err(WorkflowError::DuplicateStage {
                    workflow: name.clone(),
                    stage: s.name.clone(),
                });
            }
            if !(1..=5).contains(&s.priority) {
                return Err(WorkflowError::Priority {
                    workflow: name.clone(),
                    stage: s.name.clone(),
                    priority: s.priority,
                });
            }
        }
        for s in &stages {
            if let Source::Stages(deps) = &s.from {
                if let Some(missing) = deps.iter().find(|d| !seen.contains(*d)) {
                    return Err(WorkflowError::UnknownSource {
                        workflow: name.clone(),
                        stage: s.name.clone(),
                        missing: missing.clone(),
                    });
                }
            }
        }
        let wf = Workflow { name, stages };
        if let Some(cycle) = wf.find_cycle() {
            return Err(WorkflowError::Cycle {
                workflow: wf.name,
                cycle,
            });
        }
        Ok(wf)
    }

    fn deps(&self, stage: &Stage) -> Vec<String> {
        match &stage.from {
            Source::Stages(d) => d.clone(),
            _ => Vec::new(),
        }
    }

    /// A cycle through the `from` edges, as a path that starts and ends at the same stage.
    fn find_cycle(&self) -> Option<Vec<String>> {
        let by_name: HashMap<&str, &Stage> =
            self.stages.iter().map(|s| (s.name.as_str(), s)).collect();
        // 0 = unvisited, 1 = on the stack, 2 = done
        let mut mark: HashMap<&str, u8> = HashMap::new();
        fn visit<'a>(
            n: &'a str,
            by_name: &HashMap<&'a str, &'a Stage>,
            mark: &mut HashMap<&'a str, u8>,
            stack: &mut Vec<&'a str>,
        ) -> Option<Vec<String>> {
            match mark.get(n) {
                Some(2) => return None,
                Some(1) => {
                    let start = stack.iter().position(|s| *s == n).unwrap_or(0);
                    let mut cycle: Vec<String> =
                        stack[start..].iter().map(|s| s.to_string()).collect();
                    cycle.push(n.to_string());
                    return Some(cycle);
                }
                _ => {}
            }
            mark.insert(n, 1);
            stack.push(n);
            if let Some(stage) = by_name.get(n) {
                if let Source::Stages(deps) = &stage.from {
                    for d in deps {
                        if let Some((k, _)) = by_name.get_key_value(d.as_str()) {
                            if let Some(c) = visit(k, by_name, mark, stack) {
                                return Some(c);
                            }
                        }
                    }
                }
            }
            stack.pop();
            mark.insert(n, 2);
            None
        }
        for s in &self.stages {
            let mut stack = Vec::new();
            if let Some(c) = visit(s.name.as_str(), &by_name, &mut mark, &mut stack) {
                return Some(c);
            }
        }
        None
    }

    /// The board item id of a stage: `<workflow>_<stage>`.
    pub fn item_id(&self, stage: &str) -> String {
        format!("{}_{}", self.name, stage)
    }

    /// The error for a stage whose input file cannot be read.
    pub fn unreadable(&self, stage: &Stage, path: &str, error: String) -> WorkflowError {
        WorkflowError::Unreadable {
            workflow: self.name.clone(),
            stage: stage.name.clone(),
            path: path.to_string(),
            error,
            stages: self.stages.iter().map(|s| s.name.clone()).collect(),
        }
    }

    /// Every stage fed by a file, with its path.
    pub fn files(&self) -> impl Iterator<Item = (&Stage, &str)> {
        self.stages.iter().filter_map(|s| match &s.from {
            Source::File(path) => Some((s, path.as_str())),
            _ => None,
        })
    }

    /// Expand a run into planned board items, in stage order. `read` reads `from: "path"`
    /// inputs; a file that cannot be read refuses the run, naming the stage (its agent would
    /// otherwise work from an error message instead of its input).
    pub fn expand(
        &self,
        read: impl Fn(&str) -> Result<String, String>,
    ) -> Result<Vec<PlannedItem>, WorkflowError> {
        self.stages
            .iter()
            .map(|s| {
                let deps = self.deps(s);
                let spec = match &s.from {
                    Source::File(path) => read(path).map_err(|e| self.unreadable(s, path, e))?,
                    _ => String::new(),
                };
                let mut metadata = BTreeMap::new();
                metadata.insert("workflow".to_string(), self.name.clone());
                metadata.insert("stage".to_string(), s.name.clone());
                metadata.insert("agent".to_string(), s.agent.clone());
                metadata.insert("from_stages".to_string(), deps.join(","));
                Ok(PlannedItem {
                    id: self.item_id(&s.name),
                    title: s.title.clone(),
                    spec,
                    work_type: s.work_type.clone(),
                    priority: s.priority,
                    depends_on: deps.iter().map(|d| self.item_id(d)).collect(),
                    metadata,
                })
            })
            .collect()
    }
}

/// A board item to create for one stage of a run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlannedItem {
    pub id: String,
    pub title: String,
    pub spec: String,
    pub work_type: String,
    pub priority: u8,
    pub depends_on: Vec<String>,
    pub metadata: BTreeMap<String, String>,
}

/// Where a workflow run stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RunStatus {
    Defined,
    Running,
    Completed,
    Failed,
}

/// The state of one stage's item, as far as the run's status is concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StageState {
    Missing,
    Open,
    Done,
    /// failed, blocked or cancelled
    Broken,
}

/// completed when every stage is done; failed as soon as any is broken; else running.
pub fn run_status(stages: &[StageState]) -> RunStatus {
    if stages.is_empty() || stages.iter().all(|s| *s == StageState::Missing) {
        RunStatus::Defined
    } else if stages.contains(&StageState::Broken) {
        RunStatus::Failed
    } else if stages.iter().all(|s| *s == StageState::Done) {
        RunStatus::Completed
    } else {
        RunStatus::Running
    }
}

/// The prompt a board worker sends for a stage: title, spec, then the results of the stages it
/// takes input from.
pub fn stage_prompt(title: &str, spec: &str, previous: &[(String, String)]) -> String {
    let mut p = title.to_string();
    if !spec.trim().is_empty() {
        p.push_str("\n\nSpec:\n");
        p.push_str(spec);
    }
    if !previous.is_empty() {
        p.push_str("\n\nPrevious stage results:");
        for (stage, result) in previous {
            p.push_str(&format!("\n\n## {stage}\n{result}"));
        }
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feature() -> Vec<Stage> {
        let mut plan = Stage::new("plan", "planner", "Break this into tasks");
        plan.from = Source::File("specs/feature.md".into());
        let mut implement = Stage::new("implement", "coder", "Implement the plan");
        implement.from = Source::Stages(vec!["plan".into()]);
        implement.work_type = "code".into();
        let mut test = Stage::new("test", "tester", "Write tests");
        test.from = Source::Stages(vec!["implement".into()]);
        let mut review = Stage::new("review", "reviewer", "Review everything");
        review.from = Source::Stages(vec!["implement".into(), "test".into()]);
        review.priority = 1;
        vec![plan, implement, test, review]
    }

    #[test]
    fn expands_into_items_with_dependencies_and_fan_in() {
        let wf = Workflow::new(":feature", feature()).expect("valid");
        let items = wf
            .expand(|p| Ok(format!("content of {p}")))
            .expect("readable");
        assert_eq!(items.len(), 4);
        assert_eq!(items[0].id, "feature_plan");
        assert_eq!(items[0].spec, "content of specs/feature.md");
        assert!(items[0].depends_on.is_empty());
        assert_eq!(items[1].depends_on, vec!["feature_plan"]);
        assert_eq!(items[1].work_type, "code");
        assert_eq!(
            items[3].depends_on,
            vec!["feature_implement", "feature_test"]
        );
        assert_eq!(items[3].priority, 1);
        assert_eq!(items[3].metadata["from_stages"], "implement,test");
        assert_eq!(items[3].metadata["agent"], "reviewer");
    }

    #[test]
    fn a_file_read_error_refuses_the_run_naming_the_stage() {
        let wf = Workflow::new("f", feature()).expect("valid");
        let e = wf
            .expand(|_| Err("No such file".into()))
            .expect_err("unreadable input");
        assert!(matches!(e, WorkflowError::Unreadable { .. }), "{e:?}");
        assert_eq!(
            e.to_string(),
            "workflow f: stage plan takes input from \"specs/feature.md\", which is neither a \
             stage of this workflow (plan, implement, test, review) nor a readable file (No such file)"
        );
    }

    #[test]
    fn rejects_bad_definitions() {
        assert!(matches!(
            Workflow::new("f", vec![]),
            Err(WorkflowError::Empty(_))
        ));
        let mut dup = feature();
        dup.push(Stage::new("plan", "x", "again"));
        assert!(matches!(
            Workflow::new("f", dup),
            Err(WorkflowError::DuplicateStage { .. })
        ));
        let mut missing = feature();
        missing[1].from = Source::Stages(vec!["nope".into()]);
        let e = Workflow::new("f", missing).expect_err("unknown source");
        assert_eq!(
            e.to_string(),
            "workflow f: stage implement takes input from nope, which is not a stage of this workflow"
        );
        let mut cyc = feature();
        cyc[0].from = Source::Stages(vec!["review".into()]);
        let e = Workflow::new("f", cyc).expect_err("cycle");
        assert!(matches!(e, WorkflowError::Cycle { .. }), "{e}");
        assert!(e.to_string().contains("plan"), "{e}");
        let mut pri = feature();
        pri[0].priority = 9;
        assert!(matches!(
            Workflow::new("f", pri),
            Err(WorkflowError::Priority { .. })
        ));
        assert!(matches!(
            Workflow::new("bad name", feature()),
            Err(WorkflowError::BadName(_))
        ));
    }

    #[test]
    fn run_status_rules() {
        use StageState::*;
        assert_eq!(run_status(&[Missing, Missing]), RunStatus::Defined);
        assert_eq!(run_status(&[Done, Open]), RunStatus::Running);
        assert_eq!(run_status(&[Done, Done]), RunStatus::Completed);
        assert_eq!(run_status(&[Done, Broken, Open]), RunStatus::Failed);
    }

    #[test]
    fn stage_prompt_includes_previous_results() {
        let p = stage_prompt(
            "Review",
            "",
            &[
                ("implement".into(), "code".into()),
                ("test".into(), "tests".into()),
            ],
        );
        assert_eq!(
            p,
            "Review\n\nPrevious stage results:\n\n## implement\ncode\n\n## test\ntests"
        );
        assert_eq!(stage_prompt("T", "S", &[]), "T\n\nSpec:\nS");
    }

    proptest::proptest! {
        /// Any graph whose edges only point to earlier stages is accepted; adding one edge from
        /// the first stage to the last always closes a cycle when the last depends on the first
        /// transitively.
        #[test]
        fn forward_graphs_are_acyclic(n in 2usize..12, edges in proptest::collection::vec((0usize..12, 0usize..12), 0..30)) {
            let mut stages: Vec<Stage> = (0..n).map(|i| Stage::new(&format!("s{i}"), "a", "t")).collect();
            for (a, b) in edges {
                let (a, b) = (a % n, b % n);
                if b < a {
                    let from = match &mut stages[a].from {
                        Source::Stages(v) => v,
                        f => { *f = Source::Stages(vec![]); match f { Source::Stages(v) => v, _ => unreachable!() } }
                    };
                    let dep = format!("s{b}");
                    if !from.contains(&dep) { from.push(dep); }
                }
            }
            proptest::prop_assert!(Workflow::new("w", stages.clone()).is_ok());
            // Make s0 depend on s{n-1}, and s{n-1} on s0: always a cycle.
            stages[n - 1].from = Source::Stages(vec!["s0".into()]);
            stages[0].from = Source::Stages(vec![format!("s{}", n - 1)]);
            let is_cycle = matches!(Workflow::new("w", stages), Err(WorkflowError::Cycle { .. }));
            proptest::prop_assert!(is_cycle);
        }
    }
}
