//! The node actor's mailbox: one remotable RPC carrying an encoded [`crate::api::Request`] and
//! answering an encoded `Result<Reply, ApiError>`.
//!
//! Frames are raw bytes on purpose: ractor_cluster decodes message fields with a function that
//! may only panic on bad input, while a frame is decoded by the node actor itself, so a
//! malformed or foreign request gets an error reply and the session lives on.

use ractor::RpcReplyPort;
use ractor_cluster_derive::RactorClusterMessage;
use serde::{de::DeserializeOwned, Deserialize, Serialize};

use crate::api::{Call, Request, RequestSet, PROTOCOL_VERSION};
use crate::{codec, ApiError};

/// The largest frame the API sends either way. ractor_cluster closes the whole node session on
/// an inbound frame over 16 MiB, so ours stay well below it (lists are cut to fit: `Page`).
pub const MAX_FRAME_BYTES: usize = 8 * 1024 * 1024;

/// The pg group every node actor joins (within the cluster's scope).
pub const NODE_GROUP: &str = "workshop.node";

/// A request on the wire: who sends it (versions) and what it asks. `R` is the set of
/// operations of the actor it goes to (the node's [`Request`], or the board's
/// [`crate::board::BoardRequest`]).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CallEnvelope<R = Request> {
    pub protocol: u32,
    pub client_version: String,
    pub request: R,
}

/// An encoded [`CallEnvelope`].
#[derive(Clone, Debug, PartialEq)]
pub struct RequestFrame(pub Vec<u8>);

/// An encoded `Result<C::Reply, ApiError>`.
#[derive(Clone, Debug, PartialEq)]
pub struct ReplyFrame(pub Vec<u8>);

impl ractor::BytesConvertable for RequestFrame {
    fn into_bytes(self) -> Vec<u8> {
        self.0
    }
    fn from_bytes(bytes: Vec<u8>) -> Self {
        Self(bytes)
    }
}

impl ractor::BytesConvertable for ReplyFrame {
    fn into_bytes(self) -> Vec<u8> {
        self.0
    }
    fn from_bytes(bytes: Vec<u8>) -> Self {
        Self(bytes)
    }
}

/// The node actor's mailbox.
#[derive(RactorClusterMessage)]
pub enum NodeMsg {
    #[rpc]
    Call(RequestFrame, RpcReplyPort<ReplyFrame>),
}

/// Encode a node request for the wire; refuses one over [`MAX_FRAME_BYTES`].
pub fn encode_request(request: Request, client_version: &str) -> Result<RequestFrame, ApiError> {
    encode_frame(request, client_version)
}

/// Decode a node request frame on the node. Errors are replies, never panics.
pub fn decode_request(frame: &RequestFrame) -> Result<CallEnvelope, ApiError> {
    decode_frame(frame)
}

/// Encode a request of any operation set for the wire; refuses one over [`MAX_FRAME_BYTES`].
pub fn encode_frame<R: RequestSet>(
    request: R,
    client_version: &str,
) -> Result<RequestFrame, ApiError> {
    let name = request.name();
    let bytes = codec::encode(&CallEnvelope {
        protocol: PROTOCOL_VERSION,
        client_version: client_version.to_string(),
        request,
    })
    .map_err(|e| ApiError::BadRequest(format!("{name}: {e}")))?;
    if bytes.len() > MAX_FRAME_BYTES {
        return Err(ApiError::TooLarge {
            what: format!("the {name} request"),
            bytes: bytes.len(),
            limit: MAX_FRAME_BYTES,
            hint: "send less at once (write large inputs to a file and refer to it)".into(),
        });
    }
    Ok(RequestFrame(bytes))
}

/// Decode a request frame of any operation set (on the node actor, the board actor). Errors
/// are replies, never panics.
pub fn decode_frame<R: RequestSet>(frame: &RequestFrame) -> Result<CallEnvelope<R>, ApiError> {
    match codec::decode::<CallEnvelope<R>>(&frame.0) {
        Ok(env) => Ok(env),
        Err(codec::CodecError::Version { found }) => Err(ApiError::BadRequest(format!(
            "the request uses encoding version {found}, this node reads versions {} to {}; run the same workshop version on client and node",
            codec::OLDEST_FORMAT_VERSION,
            codec::FORMAT_VERSION
        ))),
        Err(e) => Err(ApiError::BadRequest(format!(
            "cannot decode the request ({e}); is the client the same workshop version as the node?"
        ))),
    }
}

/// Encode a reply on the node. A reply over [`MAX_FRAME_BYTES`] becomes a `TooLarge` error.
pub fn encode_reply<T: Serialize>(what: &str, reply: &Result<T, ApiError>) -> ReplyFrame {
    let encoded = codec::encode(reply).map_err(|e| ApiError::Node(format!("{what}: {e}")));
    let err = match encoded {
        Ok(bytes) if bytes.len() <= MAX_FRAME_BYTES => return ReplyFrame(bytes),
        Ok(bytes) => ApiError::TooLarge {
            what: format!("the reply to {what}"),
            bytes: bytes.len(),
            limit: MAX_FRAME_BYTES,
            hint: "ask for less (a shorter history, a filtered board)".into(),
        },
        Err(e) => e,
    };
    let fallback: Result<(), ApiError> = Err(err);
    // An error value is small; if even that cannot be encoded the client reports a bad frame.
    ReplyFrame(codec::encode(&fallback).unwrap_or_default())
}

/// Refuse a request of another protocol version, naming both versions (`version`: this
/// build's crate version).
pub fn check_protocol<R>(env: &CallEnvelope<R>, version: &str) -> Result<(), ApiError> {
    if env.protocol == PROTOCOL_VERSION {
        return Ok(());
    }
    Err(ApiError::Version {
        client: env.client_version.clone(),
        client_protocol: env.protocol,
        node: version.to_string(),
        node_protocol: PROTOCOL_VERSION,
    })
}

/// Decode a reply on the client.
pub fn decode_reply<C: Call>(frame: &ReplyFrame) -> Result<C::Reply, ApiError> {
    decode_reply_as::<C::Reply>(frame)
}

fn decode_reply_as<T: DeserializeOwned>(frame: &ReplyFrame) -> Result<T, ApiError> {
    match codec::decode::<Result<T, ApiError>>(&frame.0) {
        Ok(r) => r,
        Err(e) => Err(ApiError::BadRequest(format!(
            "cannot decode the node's reply ({e}); is the node the same workshop version as this client?"
        ))),
    }
}
