//! Per-name serialization: creating, replacing, resetting-after-crash and dismissing an agent
//! take its name's lock, so two of them for the same name never interleave (two concurrent
//! `agent("x")` used to both spawn and leave one actor outside the directory). Different names
//! never wait for each other. An entry lives only while someone holds or waits for the lock.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::{Mutex, OwnedMutexGuard};
use workshop_types::AgentName;

#[derive(Default)]
pub(crate) struct NameLocks {
    map: parking_lot::Mutex<HashMap<AgentName, Arc<Mutex<()>>>>,
}

/// Proof that the caller holds `name`'s lock (released on drop).
pub(crate) struct NameGuard<'a> {
    locks: &'a NameLocks,
    name: AgentName,
    guard: Option<OwnedMutexGuard<()>>,
}

impl NameGuard<'_> {
    pub(crate) fn name(&self) -> &AgentName {
        &self.name
    }
}

impl NameLocks {
    /// Wait for `name`'s lock (FIFO among waiters, as tokio's mutex is fair).
    pub(crate) async fn lock(&self, name: &AgentName) -> NameGuard<'_> {
        let m = self.map.lock().entry(name.clone()).or_default().clone();
        let guard = m.lock_owned().await;
        NameGuard {
            locks: self,
            name: name.clone(),
            guard: Some(guard),
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.map.lock().len()
    }
}

impl Drop for NameGuard<'_> {
    fn drop(&mut self) {
        // Under the map's lock nobody can take a new handle, so a count of one (the map's)
        // after releasing ours means nobody holds or waits for this name.
        let mut map = self.locks.map.lock();
        drop(self.guard.take());
        if map
            .get(&self.name)
            .is_some_and(|m| Arc::strong_count(m) == 1)
        {
            map.remove(&self.name);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(s: &str) -> AgentName {
        AgentName::new(s).expect("name")
    }

    #[tokio::test]
    async fn one_holder_per_name_and_entries_are_dropped_when_free() {
        let locks = Arc::new(NameLocks::default());
        let g = locks.lock(&n("x")).await;
        // Another name does not wait.
        let other = locks.lock(&n("y")).await;
        drop(other);
        let l2 = locks.clone();
        let waiter = tokio::spawn(async move {
            let _g = l2.lock(&n("x")).await;
        });
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished(), "x is held");
        assert_eq!(locks.len(), 1, "y's entry went with its guard");
        drop(g);
        waiter.await.expect("waiter");
        assert_eq!(locks.len(), 0);
    }
}
