//! The one codec: bincode 2 over serde with a leading format-version byte.
//! Persisted values and wire payloads both go through here.

use serde::{de::DeserializeOwned, Serialize};

/// Bumped when a persisted or wire type changes incompatibly.
pub const FORMAT_VERSION: u8 = 1;
/// Decoding refuses to allocate more than this (a hostile length prefix cannot exhaust memory).
pub const MAX_DECODE_BYTES: usize = 16 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("cannot encode value: {0}")]
    Encode(String),
    #[error("cannot decode value: {0}")]
    Decode(String),
    #[error("empty value: expected a version byte")]
    Empty,
    #[error("value has format version {found}, this build reads version {FORMAT_VERSION}; upgrade the older node")]
    Version { found: u8 },
    #[error("{extra} trailing bytes after the value")]
    Trailing { extra: usize },
}

fn config() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<MAX_DECODE_BYTES>()
}

pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, CodecError> {
    let mut out = vec![FORMAT_VERSION];
    let body = bincode::serde::encode_to_vec(value, config())
        .map_err(|e| CodecError::Encode(e.to_string()))?;
    out.extend_from_slice(&body);
    Ok(out)
}

pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    let (&version, body) = bytes.split_first().ok_or(CodecError::Empty)?;
    if version != FORMAT_VERSION {
        return Err(CodecError::Version { found: version });
    }
    let (value, read): (T, usize) = bincode::serde::decode_from_slice(body, config())
        .map_err(|e| CodecError::Decode(e.to_string()))?;
    if read != body.len() {
        return Err(CodecError::Trailing {
            extra: body.len() - read,
        });
    }
    Ok(value)
}

/// Implements `ractor::BytesConvertable` for our own types through [`encode`]/[`decode`].
///
/// The trait is infallible by design ("panics are acceptable"): ractor_cluster's derive wraps
/// decoding in `catch_unwind`, so a malformed frame from a peer is dropped with a logged error
/// and never kills the receiving actor.
#[macro_export]
macro_rules! bytes_convertable {
    ($($t:ty),* $(,)?) => {$(
        impl ractor::BytesConvertable for $t {
            fn into_bytes(self) -> Vec<u8> {
                match $crate::codec::encode(&self) {
                    Ok(b) => b,
                    Err(e) => panic!("workshop codec: cannot encode {}: {e}", stringify!($t)),
                }
            }
            fn from_bytes(bytes: Vec<u8>) -> Self {
                match $crate::codec::decode(&bytes) {
                    Ok(v) => v,
                    Err(e) => panic!("workshop codec: cannot decode {}: {e}", stringify!($t)),
                }
            }
        }
    )*};
}

#[cfg(test)]
mod tests {
    use super::*;
    use workshop_types::{AgentOptions, PermissionMode, TurnResult};

    #[test]
    fn round_trip_and_version_check() {
        let opts = AgentOptions {
            model: Some("opus".into()),
            permission_mode: Some(PermissionMode::DontAsk),
            allowed_tools: Some(vec!["Read".into()]),
            ..Default::default()
        };
        let bytes = encode(&opts).expect("encode");
        assert_eq!(bytes[0], FORMAT_VERSION);
        let back: AgentOptions = decode(&bytes).expect("decode");
        assert_eq!(back, opts);

        let mut wrong = bytes.clone();
        wrong[0] = 99;
        assert!(matches!(
            decode::<AgentOptions>(&wrong),
            Err(CodecError::Version { found: 99 })
        ));
        assert!(matches!(
            decode::<AgentOptions>(&[]),
            Err(CodecError::Empty)
        ));
        assert!(decode::<TurnResult>(&[FORMAT_VERSION, 0xff, 0xff]).is_err());
    }

    proptest::proptest! {
        #[test]
        fn turn_results_round_trip(text in ".*", cost in 0.0f64..100.0, turns in 0u32..1000) {
            let r = TurnResult { text, cost_usd: cost, num_turns: turns, ..Default::default() };
            let back: TurnResult = decode(&encode(&r).expect("encode")).expect("decode");
            proptest::prop_assert_eq!(back, r);
        }
    }
}
