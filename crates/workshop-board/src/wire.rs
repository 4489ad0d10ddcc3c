//! Pure helpers of the board actor ([`crate::actor`]): board errors as typed [`ApiError`]s, the
//! filters of `list` and `wait_ready`, and what a `wait_ready` may return. No I/O, no clock.

use std::collections::BTreeMap;

use workshop_proto::api::Page;
use workshop_proto::node::MAX_FRAME_BYTES;
use workshop_proto::ApiError;

use crate::durable::DurableError;
use crate::item::{Status, WorkItem, WorkType};
use crate::state::{BoardError, ListFilter};

/// How many encoded bytes of items one reply may carry (the rest of a frame is headroom).
pub const REPLY_BUDGET: usize = MAX_FRAME_BYTES / 2;

/// A board error as the API's typed error: the refusals a worker acts on get their own variant
/// (a stale token means the lease is lost), the rest keep the board's message.
pub fn api_error(e: DurableError) -> ApiError {
    match e {
        DurableError::Board(e) => board_api_error(e),
        other => ApiError::Board(other.to_string()),
    }
}

/// A refusal of the board state machine as a typed [`ApiError`].
pub fn board_api_error(e: BoardError) -> ApiError {
    match e {
        BoardError::NotFound { id } => ApiError::NoSuchItem(id),
        BoardError::Held { id, status, holder } => ApiError::Held { id, status, holder },
        BoardError::StaleToken {
            id,
            presented,
            current,
            status,
        } => ApiError::StaleToken {
            id,
            presented,
            current,
            status,
        },
        BoardError::AlreadySettled {
            id,
            token,
            settled,
            attempted,
        } => ApiError::AlreadySettled {
            id,
            token,
            settled,
            attempted,
        },
        other => ApiError::Board(other.to_string()),
    }
}

impl From<BoardError> for ApiError {
    fn from(e: BoardError) -> Self {
        board_api_error(e)
    }
}

impl From<DurableError> for ApiError {
    fn from(e: DurableError) -> Self {
        api_error(e)
    }
}

/// The filter of a `list` request.
pub fn list_filter(
    status: Option<Status>,
    work_type: Option<WorkType>,
    claimed_by: Option<String>,
) -> ListFilter {
    ListFilter {
        status,
        work_type,
        claimed_by,
    }
}

/// The ready items of `work_type` (every type when None).
pub fn ready_filter(work_type: Option<&WorkType>) -> ListFilter {
    ListFilter {
        status: Some(Status::Ready),
        work_type: work_type.cloned(),
        claimed_by: None,
    }
}

/// Whether `claim_next(work_type)` could take `item` at `now_ms`: ready, of the type, and past
/// any retry backoff. `wait_ready` answers with such items only, so a worker that wakes up
/// finds something to claim instead of spinning through a backoff.
pub fn claimable(item: &WorkItem, work_type: Option<&WorkType>, now_ms: u64) -> bool {
    item.status == Status::Ready
        && work_type.is_none_or(|t| &item.work_type == t)
        && item.not_before_ms <= now_ms
}

/// The claimable items among `ready`, cut to fit one reply.
pub fn claimable_page(
    ready: Vec<WorkItem>,
    work_type: Option<&WorkType>,
    now_ms: u64,
) -> Vec<WorkItem> {
    let items: Vec<WorkItem> = ready
        .into_iter()
        .filter(|i| claimable(i, work_type, now_ms))
        .collect();
    Page::fit(items, false, REPLY_BUDGET).items
}

/// Counts as they go on the wire.
pub fn counts_u64(counts: BTreeMap<Status, usize>) -> BTreeMap<Status, u64> {
    counts.into_iter().map(|(s, n)| (s, n as u64)).collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::item::{NewItem, SettleKind};
    use crate::state::Board;

    #[test]
    fn board_errors_are_typed() {
        let e = api_error(DurableError::Board(BoardError::StaleToken {
            id: "a".into(),
            presented: 3,
            current: Some(4),
            status: Status::Claimed,
        }));
        assert_eq!(e.code(), "stale_token");
        assert!(e.to_string().contains("stale fencing token 3"), "{e}");
        let e = api_error(DurableError::Board(BoardError::NotFound { id: "x".into() }));
        assert_eq!(e, ApiError::NoSuchItem("x".into()));
        let e = api_error(DurableError::Board(BoardError::AlreadySettled {
            id: "a".into(),
            token: 2,
            settled: SettleKind::Completed,
            attempted: SettleKind::Failed,
        }));
        assert_eq!(e.code(), "already_settled");
        let e = api_error(DurableError::Board(BoardError::DuplicateId {
            id: "a".into(),
        }));
        assert_eq!(e.code(), "board");
        assert!(e.to_string().contains("already exists"), "{e}");
        assert_eq!(api_error(DurableError::Closed).code(), "board");
    }

    #[test]
    fn only_claimable_items_wake_a_waiter() {
        let mut b = Board::new();
        let code = b
            .add(NewItem::new("c", "C").work_type(WorkType::Code), 10)
            .unwrap()
            .value;
        let docs = b
            .add(NewItem::new("d", "D").work_type(WorkType::Docs), 10)
            .unwrap()
            .value;
        assert!(claimable(&code, Some(&WorkType::Code), 10));
        assert!(claimable(&code, None, 10));
        assert!(!claimable(&docs, Some(&WorkType::Code), 10));
        let mut backing_off = code.clone();
        backing_off.not_before_ms = 50;
        assert!(!claimable(&backing_off, None, 49));
        assert!(claimable(&backing_off, None, 50));
        let mut claimed = code.clone();
        claimed.status = Status::Claimed;
        assert!(!claimable(&claimed, None, 10));
        let page = claimable_page(vec![code, docs, backing_off], Some(&WorkType::Code), 10);
        assert_eq!(page.len(), 1);
        assert_eq!(page[0].id.as_str(), "c");
    }
}
