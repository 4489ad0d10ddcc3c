//! [`BoardLink`]: where this node reaches the cluster's board. Every board operation of the
//! node (`work.rs`, `worker.rs`, `workflows.rs`) goes through the [`BoardClient`] it holds: the
//! board actor of this process on the board node, the stand-in of the board node's board actor
//! on any other. Whoever knows where the board is sets or clears it; while it is unset, board
//! operations fail with [`ApiError::NoNode`] naming the board node, and board workers wait for
//! it to be set again ([`BoardLink::changed`]).

use std::sync::Arc;

use tokio::sync::watch;
use workshop_board::BoardClient;

use crate::ApiError;

/// A cheap-clone handle on the node's current board client (see the module docs).
#[derive(Clone)]
pub struct BoardLink {
    tx: Arc<watch::Sender<Option<BoardClient>>>,
    /// The board node's name, for errors.
    board_node: Arc<str>,
}

impl std::fmt::Debug for BoardLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BoardLink")
            .field("board_node", &self.board_node)
            .field("client", &*self.tx.borrow())
            .finish()
    }
}

impl BoardLink {
    /// An unset link to the board held by the node named `board_node`.
    pub fn new(board_node: impl Into<String>) -> Self {
        Self {
            tx: Arc::new(watch::channel(None).0),
            board_node: Arc::from(board_node.into()),
        }
    }

    /// Set (Some) or clear (None) the board client; waiters on [`Self::changed`] wake.
    pub fn set(&self, client: Option<BoardClient>) {
        self.tx.send_replace(client);
    }

    /// The current board client, if the board is reachable.
    pub fn get(&self) -> Option<BoardClient> {
        self.tx.borrow().clone()
    }

    /// The current board client, or the error a caller shows while the board is out of reach.
    pub fn client(&self) -> Result<BoardClient, ApiError> {
        self.get().ok_or_else(|| self.unreachable())
    }

    /// The name of the node that holds the board.
    pub fn board_node(&self) -> &str {
        &self.board_node
    }

    /// Resolves at the next [`Self::set`] after this call.
    pub async fn changed(&self) {
        let mut rx = self.tx.subscribe();
        // The sender lives as long as `self`, so this only returns on a change.
        let _ = rx.changed().await;
    }

    /// A receiver of the link's changes: unlike [`Self::changed`], it also sees a change made
    /// after its last `borrow_and_update` but before the caller starts waiting.
    pub fn subscribe(&self) -> watch::Receiver<Option<BoardClient>> {
        self.tx.subscribe()
    }

    /// The error board operations get while the link is unset.
    pub fn unreachable(&self) -> ApiError {
        ApiError::NoNode {
            addr: self.board_node.to_string(),
            hint: "the board node is not reachable; items wait there and workers resume when it \
                   is back"
                .into(),
        }
    }
}

/// Whether `e` means the board is out of reach (as opposed to a refusal by the board): the
/// caller may wait for the link to change and try again.
pub fn is_unreachable(e: &ApiError) -> bool {
    matches!(
        e,
        ApiError::Disconnected(_) | ApiError::NoNode { .. } | ApiError::Timeout { .. }
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[tokio::test]
    async fn an_unset_link_names_the_board_node() {
        let link = BoardLink::new("n1");
        assert!(link.get().is_none());
        let e = link.client().unwrap_err();
        assert_eq!(e.code(), "no_node");
        let text = e.to_string();
        assert!(text.contains("n1"), "{text}");
        assert!(text.contains("the board node is not reachable"), "{text}");
        assert!(is_unreachable(&e));
        assert!(!is_unreachable(&ApiError::NoSuchItem("x".into())));
    }

    #[tokio::test]
    async fn a_receiver_sees_a_change_made_before_it_waits() {
        let link = BoardLink::new("n1");
        let mut rx = link.subscribe();
        assert!(rx.borrow_and_update().is_none());
        link.set(None);
        // The change happened before this wait: the receiver still sees it.
        rx.changed().await.unwrap();
        // `changed` returns on the next set after it subscribed.
        let waiting = tokio::spawn({
            let link = link.clone();
            async move { link.changed().await }
        });
        while link.tx.receiver_count() < 2 {
            tokio::task::yield_now().await;
        }
        link.set(None);
        waiting.await.unwrap();
    }
}
