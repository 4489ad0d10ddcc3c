//! The one place that knows the on-disk encoding: a version byte, then bincode 2 (serde mode,
//! `config::standard()` with an allocation limit). Swapping bincode out touches only this file.

use serde::de::DeserializeOwned;
use serde::Serialize;

/// Version byte written in front of every stored value.
pub const FORMAT_VERSION: u8 = 1;
/// Largest value we will decode (caps allocations on corrupt input).
pub const MAX_VALUE_BYTES: usize = 16 * 1024 * 1024;

fn config() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<MAX_VALUE_BYTES>()
}

/// Why a value could not be encoded or decoded.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("cannot encode value: {0}")]
    Encode(#[from] bincode::error::EncodeError),
    #[error("cannot decode value: {0}")]
    Decode(#[from] bincode::error::DecodeError),
    #[error("empty value (expected a version byte)")]
    Empty,
    #[error("unsupported format version {found} (this build reads version {FORMAT_VERSION})")]
    Version { found: u8 },
    #[error("{extra} trailing bytes after the value")]
    Trailing { extra: usize },
}

/// Encodes `value` as `[FORMAT_VERSION, bincode...]`.
pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, CodecError> {
    let mut out = vec![FORMAT_VERSION];
    let body = bincode::serde::encode_to_vec(value, config())?;
    out.extend_from_slice(&body);
    Ok(out)
}

/// Decodes what [`encode`] wrote; never panics on bad input.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    let (&version, body) = bytes.split_first().ok_or(CodecError::Empty)?;
    if version != FORMAT_VERSION {
        return Err(CodecError::Version { found: version });
    }
    let (value, read): (T, usize) = bincode::serde::decode_from_slice(body, config())?;
    if read != body.len() {
        return Err(CodecError::Trailing {
            extra: body.len() - read,
        });
    }
    Ok(value)
}

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
