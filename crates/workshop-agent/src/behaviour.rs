//! gen_agent's callbacks as a Rust trait. The agent actor calls these; they run inside the
//! actor, so they must not block. A panic here crashes the agent (it is then marked `crashed`).

use workshop_types::{AgentSpec, TurnError, TurnResult};

/// What to do after a response, an error or an event.
#[derive(Clone, Debug, PartialEq)]
pub enum Next {
    /// Nothing more: go idle (or take the next queued request).
    NoReply,
    /// Run this prompt next, ahead of the mailbox (self-chain).
    Prompt(String),
    /// Freeze the queue until `resume`.
    Halt,
}

/// The verdict of `pre_turn`.
#[derive(Clone, Debug, PartialEq)]
pub enum PreTurn {
    /// Run this (possibly rewritten) prompt.
    Run(String),
    /// Do not run it: the caller gets `skipped`.
    Skip,
    /// Do not run it and halt the agent.
    Halt,
}

pub trait Behaviour: Send + 'static {
    /// Called once when the agent starts.
    fn init(&mut self, _spec: &AgentSpec) {}
    /// Called before every turn; may rewrite, skip or halt.
    fn pre_turn(&mut self, prompt: String) -> PreTurn {
        PreTurn::Run(prompt)
    }
    /// A turn produced a result.
    fn handle_response(&mut self, _result: &TurnResult) -> Next {
        Next::NoReply
    }
    /// A turn failed (backend error, interrupted, timeout, crash).
    fn handle_error(&mut self, _error: &TurnError) -> Next {
        Next::NoReply
    }
    /// A `notify` event; while a turn runs it is deferred to the turn's end.
    fn handle_event(&mut self, _event: &str) -> Next {
        Next::NoReply
    }
    /// Called after the decision callback of every turn.
    fn post_turn(&mut self, _outcome: &Result<TurnResult, TurnError>) {}
}

/// The plain session agent: every prompt is answered, nothing chains.
#[derive(Default)]
pub struct SessionBehaviour;

impl Behaviour for SessionBehaviour {}
