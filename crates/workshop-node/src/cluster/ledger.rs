//! Keeping the cluster's budget ledger current: each node reports its own spend to the board
//! node whenever a turn of it ends (and whenever the board node comes back), and the board node
//! pushes the cluster's total to every node (`LedgerTotal`), which its agents' admission adds
//! to their own node's spend. Each time the board node comes up, the agents' names are checked
//! with its registry (`Ctx::reconcile_names`). A node that leaves says so to its peers.

use std::sync::Arc;
use std::time::Duration;

use workshop_proto::api::{req, Request};
use workshop_proto::node::decode_reply;
use workshop_types::Topic;

use super::peers::ClusterHandle;
use super::route::{call_local, Ctx};

/// Report this node's spend after every turn, and again each time the board node comes up.
pub async fn sync(router: Arc<Ctx>, cluster: ClusterHandle) {
    let mut turns = router.ws.event_log().subscribe();
    let mut view = cluster.view.clone();
    let mut board_up = false;
    loop {
        // The ledger only matters with other nodes: a node of its own (every `workshop node`
        // listens) writes nothing per turn. Its first peer makes it report, as a board node
        // coming back does.
        let now_up = {
            let v = view.borrow_and_update();
            !v.peers.is_empty() && (v.is_board_node() || v.board_peer().is_some())
        };
        let resync = now_up && !board_up;
        board_up = now_up;
        if resync {
            if let Err(e) = router.reconcile_names().await {
                tracing::warn!(error = %e, "the agents' names were not checked with the board node");
            }
        }
        let own = router.ws.total_cost();
        let spend = router.ws.cluster_spend().clone();
        if board_up && (resync || own != spend.own_reported()) {
            let frame = router
                .clone()
                .route(Request::Spend(req::Spend {
                    node: router.id.name.clone(),
                    usd: own,
                }))
                .await;
            match decode_reply::<req::Spend>(&frame) {
                Ok(total) => spend.reported(own, total),
                Err(e) => tracing::debug!(error = %e, "the spend was not recorded in the ledger"),
            }
        }
        tokio::select! {
            ev = turns.recv() => match ev {
                Ok(e) if e.topic != Topic::Turn => continue,
                Ok(_) => {}
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(_) => return,
            },
            changed = view.changed() => if changed.is_err() { return },
        }
    }
}

/// Tell every up peer this node is leaving (bounded: a peer that does not answer at once
/// notices the closed session instead).
pub async fn say_leaving(router: &Ctx, cluster: &ClusterHandle) {
    let view = cluster.view();
    let me = router.id.name.clone();
    let mut calls = tokio::task::JoinSet::new();
    for (_, peer) in view.up() {
        let peer = peer.clone();
        let me = me.clone();
        calls.spawn(async move {
            let _ = call_local(&peer, req::Leaving { node: me }, Duration::from_secs(1)).await;
        });
    }
    while calls.join_next().await.is_some() {}
}
