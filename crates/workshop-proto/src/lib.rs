//! Every message that may cross a node, and the one codec.
//!
//! - [`codec`]: bincode 2 (`=2.0.1`, serde mode) behind `encode`/`decode`, with a version byte
//!   and an allocation limit. Swapping the codec later touches this one module.
//! - [`agent`]: the agent actor's messages and replies. They derive `RactorClusterMessage`, so
//!   an agent on another node is called exactly like a local one once the cluster is up.

pub mod agent;
pub mod codec;

pub use codec::{decode, encode, CodecError};
