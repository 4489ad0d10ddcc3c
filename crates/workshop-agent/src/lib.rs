//! Agents: named actors that own one backend session each.
//!
//! - [`backend`]: the `Backend`/`Session` traits (one prompt in, one result out, events between)
//!   and the backends: `script` (deterministic, the embedded default) and `claude`.
//! - [`behaviour`]: gen_agent's callbacks as a trait; `SessionBehaviour` is the plain default.
//! - [`actor`]: the agent actor: idle/working/halted, one turn in flight, bounded FIFO mailbox,
//!   self-chain ahead of the mailbox, deferred notify, interrupt, watchdog, reset.
//! - [`hooks`]: how an agent reports to its node (events, the status row) without knowing it.
//! - [`spawner`]: the one thread that forks long-running children, so they die with the node.

pub mod actor;
pub mod backend;
pub mod behaviour;
pub mod hooks;
pub mod spawner;

pub use actor::{AgentActor, AgentArgs, Restored};
pub use backend::{Backend, BackendError, Backends, BoxFut, ProcessLedger, Session, TurnContext};
pub use behaviour::{Behaviour, Next, PreTurn, SessionBehaviour};
pub use hooks::{AgentHooks, NoHooks, TurnEvents};
