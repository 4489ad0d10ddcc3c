//! The MCP control plane: the node's whole API as MCP tools, one more way in over
//! [`workshop_node::Client`] with no logic of its own.
//!
//! - [`tools`]: the catalogue and `tools::call` (no transport; unit-tested directly);
//! - [`handler`]: the rmcp `ServerHandler` over it;
//! - [`http`]: Streamable HTTP at `/mcp` with bearer-token authentication (`workshop node`);
//! - [`stdio`]: the same over stdin/stdout (`workshop mcp --stdio`).

pub mod handler;
pub mod http;
pub mod stdio;
pub mod tools;

pub use handler::WorkshopMcp;
pub use http::{serve, Bound, McpServer, DEFAULT_PORT};
pub use stdio::serve_stdio;
