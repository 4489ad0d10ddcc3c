//! The on-disk encoding of board values is the project's one codec, `workshop_proto::codec`
//! (a version byte, then bincode 2 in serde mode with an allocation limit, no trailing bytes);
//! this module re-exports it under the board's names.

pub use workshop_proto::codec::{decode, encode, CodecError, FORMAT_VERSION};

/// Largest value we will decode (caps allocations on corrupt input).
pub const MAX_VALUE_BYTES: usize = workshop_proto::codec::MAX_DECODE_BYTES;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::item::{ItemId, Lease, NewItem, Status, WorkItem, WorkType};
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
}
