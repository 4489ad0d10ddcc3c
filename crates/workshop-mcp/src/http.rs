//! Streamable HTTP at `/mcp`: rmcp's service behind an authentication layer. Loopback binds
//! accept requests without a token (as the operator); any other bind requires a bearer token.
//! A token names its caller: the node's operator token, or one the node minted for an agent
//! with `workshop_tools`. Host is checked against loopback names on a loopback bind, and
//! browser Origins other than loopback ones are refused everywhere (DNS rebinding, drive-by
//! pages).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::{StreamableHttpServerConfig, StreamableHttpService};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use workshop_node::mcp_access::{Caller, McpAccess};
use workshop_node::Client;

use crate::handler::WorkshopMcp;

/// How long an idle legacy session lives (AgentWorkshop's 30 minutes); after that its id gets
/// 404 and the client initialises again.
pub const SESSION_IDLE: Duration = Duration::from_secs(30 * 60);

/// How long `stop` waits for open streams to end.
pub const STOP_WAIT: Duration = Duration::from_secs(2);

/// The port `workshop node` serves MCP on unless told otherwise.
pub const DEFAULT_PORT: u16 = 4222;

/// A bound MCP listener, before the node starts (so the URL is known to restored agents).
pub struct Bound {
    listener: TcpListener,
    addr: SocketAddr,
}

impl Bound {
    /// Bind `addr` (port 0: any free port). The error names the address and what to do.
    pub async fn bind(addr: SocketAddr) -> Result<Self, String> {
        let listener = TcpListener::bind(addr).await.map_err(|e| {
            let hint = if e.kind() == std::io::ErrorKind::AddrInUse {
                " (another workshop node on this machine?): give this node another --mcp-port (0 picks a free one), or --no-mcp"
            } else {
                ""
            };
            format!("cannot serve MCP on {addr}: {e}{hint}")
        })?;
        let addr = listener
            .local_addr()
            .map_err(|e| format!("cannot serve MCP on {addr}: {e}"))?;
        Ok(Self { listener, addr })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The URL agents and clients use (a wildcard bind is reached on loopback locally).
    pub fn url(&self) -> String {
        let host = match self.addr.ip() {
            ip if ip.is_unspecified() && ip.is_ipv4() => "127.0.0.1".to_string(),
            ip if ip.is_unspecified() => "[::1]".to_string(),
            std::net::IpAddr::V6(ip) => format!("[{ip}]"),
            ip => ip.to_string(),
        };
        format!("http://{host}:{}/mcp", self.addr.port())
    }

    /// A token is required unless the bind is loopback.
    pub fn needs_token(&self) -> bool {
        !self.addr.ip().is_loopback()
    }
}

/// A running MCP server; dropping it does not stop it, `stop` does.
pub struct McpServer {
    pub addr: SocketAddr,
    pub url: String,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl McpServer {
    /// Stop accepting, end the sessions, and wait (at most `STOP_WAIT`) for open streams.
    pub async fn stop(self) {
        self.stop.cancel();
        let mut task = self.task;
        if tokio::time::timeout(STOP_WAIT, &mut task).await.is_err() {
            task.abort();
        }
    }
}

#[derive(Clone)]
struct Auth {
    access: Arc<McpAccess>,
    loopback: bool,
    addr: SocketAddr,
}

/// Serve `/mcp` on `bound` over `client`, authenticating with `access` (whose URL and
/// operator token the caller has set with `McpAccess::served`).
pub fn serve(bound: Bound, client: Client, access: Arc<McpAccess>) -> McpServer {
    let stop = CancellationToken::new();
    let addr = bound.addr;
    let url = bound.url();
    let app = router(client, access, addr, SESSION_IDLE, stop.child_token());
    let graceful = stop.clone();
    let task = tokio::spawn(async move {
        let served = axum::serve(bound.listener, app)
            .with_graceful_shutdown(async move { graceful.cancelled().await })
            .await;
        if let Err(e) = served {
            tracing::error!("the MCP server on {addr} stopped: {e}");
        }
    });
    McpServer {
        addr,
        url,
        stop,
        task,
    }
}

/// The `/mcp` routes of a server bound at `addr` (its IP decides whether a token is
/// required); sessions idle for `session_idle` are closed; `stop` ends them all.
pub fn router(
    client: Client,
    access: Arc<McpAccess>,
    addr: SocketAddr,
    session_idle: Duration,
    stop: CancellationToken,
) -> axum::Router {
    let loopback = addr.ip().is_loopback();
    let mut config = StreamableHttpServerConfig::default();
    config.cancellation_token = stop;
    config.sse_keep_alive = Some(Duration::from_secs(15));
    config.allowed_origins = vec![
        "http://localhost:*".into(),
        "http://127.0.0.1:*".into(),
        "http://[::1]:*".into(),
        "https://localhost:*".into(),
        "https://127.0.0.1:*".into(),
    ];
    if !loopback {
        // Off loopback every request needs the token, which a rebinding page cannot know.
        config = config.disable_allowed_hosts();
    }
    let mcp = WorkshopMcp::http(client);
    let mut sessions = LocalSessionManager::default();
    sessions.session_config.keep_alive = Some(session_idle);
    let service: StreamableHttpService<WorkshopMcp, LocalSessionManager> =
        StreamableHttpService::new(
            // One service (and one tool catalogue) for the server; each session (and, on
            // 2026-07-28, each request) gets a cheap clone.
            move || Ok(mcp.clone()),
            Arc::new(sessions),
            config,
        );
    let auth = Auth {
        access,
        loopback,
        addr,
    };
    axum::Router::new()
        .nest_service("/mcp", service)
        .layer(axum::middleware::from_fn_with_state(auth, authenticate))
}

async fn authenticate(State(auth): State<Auth>, mut req: Request, next: Next) -> Response {
    let header = req
        .headers()
        .get(header::AUTHORIZATION)
        .map(|v| v.to_str().unwrap_or("").to_string());
    let caller = match header {
        Some(h) => {
            let token = h
                .strip_prefix("Bearer ")
                .or_else(|| h.strip_prefix("bearer "))
                .unwrap_or("")
                .trim();
            match auth.access.caller(token) {
                Some(c) => c,
                None => {
                    return refuse(
                        "the bearer token is not valid for this node (the node's token is in <data dir>/mcp.token; an agent's token changes each time its session starts)",
                    )
                }
            }
        }
        None if auth.loopback => Caller::Operator,
        None => {
            return refuse(&format!(
                "this MCP server listens on {}, off loopback: send Authorization: Bearer <token> (the token is in the node's <data dir>/mcp.token, or WORKSHOP_MCP_TOKEN)",
                auth.addr
            ))
        }
    };
    req.extensions_mut().insert(caller);
    next.run(req).await
}

fn refuse(why: &str) -> Response {
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, "Bearer")],
        why.to_string(),
    )
        .into_response()
}
