//! The on-disk encoding of board values is the project's one codec, `workshop_proto::codec`
//! (a version byte, then bincode 2 in serde mode with an allocation limit, no trailing bytes);
//! this module re-exports it under the board's names.

pub use workshop_proto::codec::{decode, encode, CodecError, FORMAT_VERSION};

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::item::{ItemId, Lease, Status, WorkItem, WorkType};

/// Largest value we will decode (caps allocations on corrupt input).
pub const MAX_VALUE_BYTES: usize = workshop_proto::codec::MAX_DECODE_BYTES;

/// Decodes a stored work item, in its current layout or in the layout written before
/// `WorkItem::last_settle` existed (format version 1 as well: bincode is not self-describing, so
/// the older, shorter record is recognised by failing the current layout and decoding exactly,
/// with no trailing bytes, as the old one). An old record comes back with `last_settle: None`.
pub fn decode_item(bytes: &[u8]) -> Result<WorkItem, CodecError> {
    match decode::<WorkItem>(bytes) {
        Ok(item) => Ok(item),
        Err(current) => match decode::<WorkItemV1>(bytes) {
            Ok(old) => Ok(old.into()),
            Err(_) => Err(current),
        },
    }
}

/// `WorkItem` as stored before `last_settle` was added: same fields, same order.
#[derive(Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
struct WorkItemV1 {
    id: ItemId,
    title: String,
    spec: String,
    work_type: WorkType,
    priority: u8,
    depends_on: Vec<ItemId>,
    status: Status,
    claimed_by: Option<String>,
    lease: Option<Lease>,
    result: Option<String>,
    error: Option<String>,
    attempts: u32,
    max_attempts: u32,
    lease_expiries: u32,
    not_before_ms: u64,
    created_at_ms: u64,
    claimed_at_ms: Option<u64>,
    started_at_ms: Option<u64>,
    completed_at_ms: Option<u64>,
    seq: u64,
    metadata: BTreeMap<String, String>,
}

impl From<WorkItemV1> for WorkItem {
    fn from(o: WorkItemV1) -> Self {
        WorkItem {
            id: o.id,
            title: o.title,
            spec: o.spec,
            work_type: o.work_type,
            priority: o.priority,
            depends_on: o.depends_on,
            status: o.status,
            claimed_by: o.claimed_by,
            lease: o.lease,
            result: o.result,
            error: o.error,
            attempts: o.attempts,
            max_attempts: o.max_attempts,
            lease_expiries: o.lease_expiries,
            not_before_ms: o.not_before_ms,
            created_at_ms: o.created_at_ms,
            claimed_at_ms: o.claimed_at_ms,
            started_at_ms: o.started_at_ms,
            completed_at_ms: o.completed_at_ms,
            seq: o.seq,
            metadata: o.metadata,
            last_settle: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::item::{NewItem, Settle, SettleKind};
    use crate::state::Board;

    fn sample() -> WorkItem {
        let mut b = Board::new();
        b.add(
            NewItem::work(
                "a",
                "A",
                WorkType::Custom("x".into()),
                "s",
                2,
                Vec::<String>::new(),
            )
            .meta("k", "v"),
            5,
        )
        .map(|o| o.value)
        .unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn round_trip() {
        let mut item = sample();
        item.lease = Some(Lease {
            holder: "w".into(),
            expires_at_ms: 9,
            token: 7,
        });
        item.status = Status::Claimed;
        let bytes = encode(&item).expect("encode");
        assert_eq!(bytes[0], FORMAT_VERSION);
        let back: WorkItem = decode(&bytes).expect("decode");
        assert_eq!(back, item);
    }

    #[test]
    fn bad_input_is_an_error() {
        let bytes = encode(&sample()).expect("encode");
        assert!(matches!(decode::<WorkItem>(&[]), Err(CodecError::Empty)));
        let mut v = bytes.clone();
        v[0] = 9;
        assert!(matches!(
            decode::<WorkItem>(&v),
            Err(CodecError::Version { found: 9 })
        ));
        for cut in 1..bytes.len() {
            assert!(decode::<WorkItem>(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut v = bytes.clone();
        v.push(0);
        assert!(matches!(
            decode::<WorkItem>(&v),
            Err(CodecError::Trailing { extra: 1 })
        ));
        // an invalid id inside the value is refused by ItemId's validation
        let id: ItemId = decode(&encode(&"ok".to_string()).expect("e")).expect("d");
        assert_eq!(id.as_str(), "ok");
        assert!(decode::<ItemId>(&encode(&"not ok".to_string()).expect("e")).is_err());
        // huge length prefixes hit the limit instead of allocating
        let mut huge = vec![FORMAT_VERSION, 0xfd];
        huge.extend_from_slice(&u64::MAX.to_le_bytes());
        assert!(decode::<String>(&huge).is_err());
    }

    /// A record written before `last_settle` existed (the v1 layout, byte for byte what the
    /// old `WorkItem` serialized to) still loads, with no settle recorded; a current record
    /// with a settle round-trips and is not mistaken for an old one.
    #[test]
    fn records_without_last_settle_still_decode() {
        let item = sample();
        let old = WorkItemV1 {
            id: item.id.clone(),
            title: item.title.clone(),
            spec: item.spec.clone(),
            work_type: item.work_type.clone(),
            priority: item.priority,
            depends_on: item.depends_on.clone(),
            status: item.status,
            claimed_by: Some("w".into()),
            lease: None,
            result: Some("r".into()),
            error: None,
            attempts: 2,
            max_attempts: item.max_attempts,
            lease_expiries: 1,
            not_before_ms: 77,
            created_at_ms: item.created_at_ms,
            claimed_at_ms: Some(6),
            started_at_ms: None,
            completed_at_ms: Some(8),
            seq: item.seq,
            metadata: item.metadata.clone(),
        };
        let bytes = encode(&old).expect("encode v1");
        assert!(decode::<WorkItem>(&bytes).is_err(), "the layouts differ");
        let back = decode_item(&bytes).expect("old record decodes");
        assert_eq!(back.last_settle, None);
        assert_eq!(back.attempts, 2);
        assert_eq!(back.not_before_ms, 77);
        assert_eq!(back.metadata, item.metadata);
        assert_eq!(back.result.as_deref(), Some("r"));

        let mut new = item;
        new.last_settle = Some(Settle {
            token: 9,
            kind: SettleKind::Failed,
        });
        let bytes = encode(&new).expect("encode");
        assert_eq!(decode_item(&bytes).expect("decode"), new);
        // garbage is still an error naming the current layout's problem
        assert!(decode_item(&bytes[..bytes.len() - 1]).is_err());
    }
}
