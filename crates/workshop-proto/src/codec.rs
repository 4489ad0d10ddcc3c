//! The one codec: bincode 2 over serde with a leading format-version byte.
//! Persisted values and wire payloads both go through here.

use serde::{de::DeserializeOwned, Serialize};

/// The format version written: bumped when a persisted or wire type changes. Values of older
/// versions (down to [`OLDEST_FORMAT_VERSION`]) are still read: the types that changed decode
/// them through their older layouts (see `workshop_types::compat`).
pub const FORMAT_VERSION: u8 = workshop_types::compat::CURRENT_FORMAT;
/// The oldest format version read.
pub const OLDEST_FORMAT_VERSION: u8 = workshop_types::compat::OLDEST_FORMAT;
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
    #[error("value has format version {found}, this build reads versions {OLDEST_FORMAT_VERSION} to {FORMAT_VERSION}; run a newer workshop")]
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
    if !(OLDEST_FORMAT_VERSION..=FORMAT_VERSION).contains(&version) {
        return Err(CodecError::Version { found: version });
    }
    let (value, read): (T, usize) = workshop_types::compat::reading_format(version, || {
        bincode::serde::decode_from_slice(body, config())
    })
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

    /// A record as format 1 wrote it: the version byte 1, then the fields in order.
    fn format_1<T: Serialize>(value: &T) -> Vec<u8> {
        let mut out = vec![1u8];
        out.extend(bincode::serde::encode_to_vec(value, config()).expect("encode"));
        out
    }

    #[test]
    fn records_of_format_1_decode_with_the_options_they_had() {
        use workshop_types::{AgentName, AgentOptionsV1, AgentSpec};
        // An AgentSpec as a format-1 node stored it: AgentOptions without workshop_tools, in
        // the middle of the record (what follows it must not be read as the new field).
        #[derive(Serialize)]
        struct SpecV1 {
            name: AgentName,
            role: Option<String>,
            system_prompt: Option<String>,
            options: AgentOptionsV1,
            resume_session: Option<String>,
        }
        let options = AgentOptions {
            backend: Some("claude".into()),
            model: Some("opus".into()),
            claude_bin: Some("/usr/bin/claude".into()),
            ..Default::default()
        };
        let old = SpecV1 {
            name: AgentName::new("impl").expect("name"),
            role: Some("You write code.".into()),
            system_prompt: None,
            options: AgentOptionsV1::from(&options),
            resume_session: Some("session-1".into()),
        };
        let spec: AgentSpec = decode(&format_1(&old)).expect("a format-1 spec decodes");
        assert_eq!(spec.options, options);
        assert_eq!(spec.options.workshop_tools, None);
        assert_eq!(spec.resume_session.as_deref(), Some("session-1"));
        assert_eq!(spec.role.as_deref(), Some("You write code."));
        // Written again, it is format 2 and keeps the new field.
        let mut now = spec.clone();
        now.options.workshop_tools = Some(true);
        let bytes = encode(&now).expect("encode");
        assert_eq!(bytes[0], 2);
        assert_eq!(decode::<AgentSpec>(&bytes).expect("decode"), now);
        // The thread's format is restored after a decode (a later JSON or format-2 read is
        // not affected).
        assert_eq!(workshop_types::compat::reading(), FORMAT_VERSION);
        let json: AgentOptions = serde_json::from_str(r#"{"workshop_tools": true}"#).expect("json");
        assert_eq!(json.workshop_tools, Some(true));
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
