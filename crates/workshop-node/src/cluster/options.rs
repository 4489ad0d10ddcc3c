//! How a node takes part in a cluster: what `workshop node` resolves from `cluster.toml`, flags
//! and the environment (`crate::config`), and what [`crate::NodeOptions::cluster`] carries.

use std::net::SocketAddr;
use std::path::PathBuf;

/// A node's place in a cluster. A node started without one is a cluster of one: its own board
/// node, no peers.
#[derive(Clone, Debug, PartialEq)]
pub struct ClusterOptions {
    /// The node's name, unique in the cluster (`n1`); it is also the ractor_cluster node name.
    pub name: String,
    /// Where the cluster port listens (port 0: a free one).
    pub listen: SocketAddr,
    /// The address other nodes reach this one at (`host:port`), when it differs from `listen`
    /// (listening on 0.0.0.0, NAT, containers). None: `listen` as bound.
    pub advertise: Option<String>,
    /// The name of the node that holds the cluster's board (and its name registry and budget
    /// ledger). None, or this node's own name: this node is the board node.
    pub board: Option<String>,
    /// Addresses (`host:port`) of nodes to join; the reconnect actor keeps retrying them.
    pub peers: Vec<String>,
    /// The shared secret every node and client of the cluster authenticates with.
    pub cookie: String,
    /// Encrypt node-to-node traffic (and clients' connections) with TLS.
    pub tls: Option<TlsOptions>,
    /// Ports of the node's other servers (MCP, dashboard) once they exist; kept here so one
    /// file configures a node.
    pub mcp_port: Option<u16>,
    /// The address the MCP server binds (default 127.0.0.1; elsewhere a token is required).
    pub mcp_host: Option<std::net::IpAddr>,
    pub web_port: Option<u16>,
}

/// TLS for the cluster port: the node's certificate and key, and the CA that signed every
/// node's certificate (each side verifies the other).
#[derive(Clone, Debug, PartialEq)]
pub struct TlsOptions {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca: PathBuf,
}

impl ClusterOptions {
    /// A node of its own on `listen` (the board node of a cluster of one).
    pub fn single(name: impl Into<String>, listen: SocketAddr, cookie: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            listen,
            advertise: None,
            board: None,
            peers: Vec::new(),
            cookie: cookie.into(),
            tls: None,
            mcp_port: None,
            mcp_host: None,
            web_port: None,
        }
    }

    /// Whether this node holds the cluster's board.
    pub fn is_board_node(&self) -> bool {
        self.board.as_deref().is_none_or(|b| b == self.name)
    }
}
