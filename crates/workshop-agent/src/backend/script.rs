//! The `script` backend: deterministic scripted turns, so the whole system runs and is tested
//! with no model at all. Steps come from `options.script` (inline) or `options.script_file`
//! (TOML, `[[turn]]` tables) and run one per turn (a `reset` starts a fresh conversation but
//! does not rewind the script); when they run out, every turn answers
//! `Mock response to: <prompt>` at a cost of $0.01, as AgentWorkshop's mock backend does.
//!
//! Gates make tests deterministic without sleeps: a step with `gate = "g"` announces that it
//! reached the gate ([`gates::arrived`]) and waits until the test calls [`gates::release`].

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use workshop_types::{AgentSpec, ScriptStep, TurnError, TurnResult, Usage};

use super::{Backend, BackendError, BoxFut, Session, TurnContext};

pub const DEFAULT_COST_USD: f64 = 0.01;

pub struct ScriptBackend;

#[derive(serde::Deserialize)]
struct ScriptFile {
    #[serde(default)]
    turn: Vec<ScriptStep>,
}

/// Read a script file (`[[turn]]` tables of script steps).
pub fn load_script_file(path: &str) -> Result<Vec<ScriptStep>, BackendError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| BackendError(format!("cannot read script file {path}: {e}")))?;
    let file: ScriptFile = toml::from_str(&text)
        .map_err(|e| BackendError(format!("script file {path} is not valid: {e}")))?;
    Ok(file.turn)
}

impl Backend for ScriptBackend {
    fn name(&self) -> &'static str {
        "script"
    }

    fn start_session(&self, spec: &AgentSpec) -> Result<Box<dyn Session>, BackendError> {
        let mut steps: Vec<ScriptStep> = match &spec.options.script_file {
            Some(path) => load_script_file(path)?,
            None => Vec::new(),
        };
        steps.extend(spec.options.script.iter().flatten().cloned());
        Ok(Box::new(ScriptSession {
            agent: spec.name.to_string(),
            steps: steps.into(),
            generation: 0,
            turns: 0,
            resumed: spec.resume_session.clone(),
        }))
    }
}

struct ScriptSession {
    agent: String,
    steps: VecDeque<ScriptStep>,
    generation: u32,
    turns: u32,
    resumed: Option<String>,
}

impl ScriptSession {
    fn id(&self) -> String {
        match &self.resumed {
            Some(id) => id.clone(),
            None => format!("script-{}-{}", self.agent, self.generation),
        }
    }
}

impl Session for ScriptSession {
    fn turn<'a>(
        &'a mut self,
        prompt: &'a str,
        ctx: TurnContext,
    ) -> BoxFut<'a, Result<TurnResult, TurnError>> {
        Box::pin(async move {
            let started = Instant::now();
            let step = self.steps.pop_front().unwrap_or_default();
            self.turns += 1;
            let cancel = ctx.cancel.clone();
            let work = async {
                if let Some(gate) = &step.gate {
                    gates::wait(gate).await;
                }
                if step.hang {
                    std::future::pending::<()>().await;
                }
                if step.crash {
                    panic!("script step asked to crash the turn");
                }
                let delay = Duration::from_millis(step.delay_ms);
                if !step.chunks.is_empty() {
                    for chunk in &step.chunks {
                        if !delay.is_zero() {
                            tokio::time::sleep(delay).await;
                        }
                        ctx.events.text_delta(chunk);
                    }
                } else if !delay.is_zero() {
                    tokio::time::sleep(delay).await;
                }
                if let Some(err) = &step.error {
                    return Err(TurnError::Backend(err.clone()));
                }
                let text = match &step.text {
                    Some(t) => t.replace("{prompt}", prompt),
                    None if !step.chunks.is_empty() => step.chunks.concat(),
                    None => format!("Mock response to: {prompt}"),
                };
                Ok(TurnResult {
                    text,
                    session_id: Some(self.id()),
                    cost_usd: step.cost_usd.unwrap_or(DEFAULT_COST_USD),
                    duration_ms: started.elapsed().as_millis() as u64,
                    num_turns: 1,
                    usage: Usage {
                        input_tokens: step.input_tokens,
                        output_tokens: step.output_tokens,
                        ..Default::default()
                    },
                    subtype: Some("success".into()),
                    terminal_reason: Some("completed".into()),
                    prompt: prompt.to_string(),
                    ..Default::default()
                })
            };
            tokio::select! {
                r = work => r,
                _ = cancel.cancelled() => Err(TurnError::Interrupted),
            }
        })
    }

    fn reset(&mut self) -> BoxFut<'_, Result<(), BackendError>> {
        Box::pin(async move {
            // A fresh conversation, but the script goes on: a board worker's agent is reset
            // between items, and its script lists the answers for those items in order.
            self.generation += 1;
            self.resumed = None;
            Ok(())
        })
    }

    fn shutdown(&mut self) -> BoxFut<'_, ()> {
        Box::pin(async {})
    }

    fn session_id(&self) -> Option<String> {
        (self.turns > 0 || self.resumed.is_some()).then(|| self.id())
    }

    /// A `crash` step panics before touching any state: the script goes on where it was.
    fn survives_panic(&self) -> bool {
        true
    }
}

/// Named gates for deterministic tests: a scripted turn waits at a gate until released.
pub mod gates {
    use parking_lot::Mutex;
    use std::collections::HashMap;
    use std::sync::{Arc, OnceLock};
    use tokio::sync::Semaphore;

    struct Gate {
        arrived: Semaphore,
        open: Semaphore,
    }

    fn gate(name: &str) -> Arc<Gate> {
        static GATES: OnceLock<Mutex<HashMap<String, Arc<Gate>>>> = OnceLock::new();
        GATES
            .get_or_init(Default::default)
            .lock()
            .entry(name.to_string())
            .or_insert_with(|| {
                Arc::new(Gate {
                    arrived: Semaphore::new(0),
                    open: Semaphore::new(0),
                })
            })
            .clone()
    }

    /// Called by a scripted turn: announce arrival, then wait for one release.
    pub(crate) async fn wait(name: &str) {
        let g = gate(name);
        g.arrived.add_permits(1);
        let acquired = g.open.acquire().await;
        if let Ok(p) = acquired {
            p.forget();
        }
    }

    /// Wait until a turn has reached the gate (one arrival is consumed per call).
    pub async fn arrived(name: &str) {
        let g = gate(name);
        let acquired = g.arrived.acquire().await;
        if let Ok(p) = acquired {
            p.forget();
        }
    }

    /// Let one waiting (or future) turn through the gate.
    pub fn release(name: &str) {
        gate(name).open.add_permits(1);
    }
}
