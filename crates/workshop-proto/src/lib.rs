//! Every message that may cross a node, and the one codec.
//!
//! - [`codec`]: bincode 2 (`=2.0.1`, serde mode) behind `encode`/`decode`, with a version byte
//!   and an allocation limit. Swapping the codec later touches this one module.
//! - [`agent`]: the agent actor's messages and replies. They derive `RactorClusterMessage`, so
//!   an agent on another node is called exactly like a local one once the cluster is up.

//! - [`api`]: every operation as a request struct naming its reply type, and the reply data.
//! - [`node`]: the node actor's mailbox and the frames that carry requests and replies.
//! - [`board`]: the board actor's operations (claim, heartbeat, settle with fencing tokens...)
//!   and its mailbox, for board workers on any node.
//! - [`error`]: [`ApiError`], the typed error every operation returns, on the wire too.

pub mod agent;
pub mod api;
pub mod board;
pub mod codec;
pub mod error;
pub mod node;

pub use codec::{decode, encode, CodecError};
pub use error::ApiError;
