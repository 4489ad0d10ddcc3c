//! The node's clock ([`Clock`], milliseconds since the Unix epoch), chosen once at node start
//! ([`crate::node::NodeOptions::clock`]) and handed to the board, schedules, workers, the event
//! log and the supervisors' restart budgets.

use std::sync::Arc;

pub use workshop_types::{system_clock, Clock};

/// A clock that follows tokio's time from `base_ms` on: under a paused test runtime
/// (`#[tokio::test(start_paused = true)]`) it moves only as tokio's virtual time does, together
/// with every timer of the node. Must be created inside the runtime; it may be read from any
/// thread (the board's committer reads it from its own).
pub fn tokio_clock(base_ms: u64) -> Clock {
    let rt = tokio::runtime::Handle::current();
    let start = tokio::time::Instant::now();
    Arc::new(move || {
        // tokio's clock is the runtime's (paused or not); enter it from foreign threads.
        let _in_runtime = rt.enter();
        let elapsed = tokio::time::Instant::now().saturating_duration_since(start);
        base_ms.saturating_add(u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX))
    })
}
