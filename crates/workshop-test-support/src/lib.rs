//! Dev-only helpers for workshop's tests and benches:
//! - [`fake_anthropic`]: a fake Anthropic Messages API (loopback, SSE and JSON, scripted).
//! - [`claude`]: where the pinned real `claude` CLI is and the environment that points it at
//!   the fake.
//! - [`procs`]: `/proc` probes, to prove no process outlives its session.
//! - [`python_mcp`]: where the pinned Python MCP SDK's interpreter is.

pub mod claude;
pub mod fake_anthropic;
pub mod procs;
pub mod python_mcp;

pub use fake_anthropic::{FakeAnthropic, Recorded, Reply};
