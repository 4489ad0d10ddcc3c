//! Who may call this node's MCP server and where it is served. Shared by the MCP server
//! (`workshop-mcp`, which asks who a bearer token belongs to) and the node (which mints a token
//! for each agent with `workshop_tools` when its backend session starts, so the agent's calls act
//! with its own identity). Nothing here is persisted: tokens live as long as the process.

use std::collections::HashMap;

use parking_lot::RwLock;
use workshop_proto::ApiError;

/// Who is calling through MCP.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Caller {
    /// The operator: a loopback client without a token, the node's MCP token, or stdio.
    Operator,
    /// An agent with `workshop_tools`, by the token the node minted for it.
    Agent(String),
}

impl Caller {
    /// The name events and `origin` carry: `mcp` or `mcp:<agent>`.
    pub fn origin(&self) -> String {
        match self {
            Caller::Operator => "mcp".to_string(),
            Caller::Agent(a) => format!("mcp:{a}"),
        }
    }
    pub fn agent(&self) -> Option<&str> {
        match self {
            Caller::Operator => None,
            Caller::Agent(a) => Some(a),
        }
    }
}

#[derive(Default)]
struct Inner {
    /// `http://HOST:PORT/mcp` once the server is bound.
    url: Option<String>,
    /// The operator's token (required off loopback; accepted everywhere).
    operator: Option<String>,
    /// token → agent.
    agents: HashMap<String, String>,
}

/// The node's MCP access table (one per node, behind an `Arc`).
#[derive(Default)]
pub struct McpAccess {
    inner: RwLock<Inner>,
}

impl McpAccess {
    pub fn new() -> Self {
        Self::default()
    }

    /// The server is bound at `url`; `operator` is the token it requires (None: loopback only,
    /// no token needed).
    pub fn served(&self, url: String, operator: Option<String>) {
        let mut i = self.inner.write();
        i.url = Some(url);
        i.operator = operator;
    }

    /// Where agents reach the server (None: this node serves no MCP).
    pub fn url(&self) -> Option<String> {
        self.inner.read().url.clone()
    }

    pub fn operator_token(&self) -> Option<String> {
        self.inner.read().operator.clone()
    }

    /// A new token for `agent`; its previous one stops working.
    pub fn mint(&self, agent: &str) -> Result<String, ApiError> {
        let token = random_token()?;
        let mut i = self.inner.write();
        i.agents.retain(|_, a| a != agent);
        i.agents.insert(token.clone(), agent.to_string());
        Ok(token)
    }

    /// `agent`'s token stops working.
    pub fn revoke(&self, agent: &str) {
        self.inner.write().agents.retain(|_, a| a != agent);
    }

    /// `token` stops working (whoever holds it; a newer token of the same agent stays valid).
    pub fn revoke_token(&self, token: &str) {
        self.inner
            .write()
            .agents
            .retain(|t, _| !constant_eq(t, token));
    }

    /// Who `token` belongs to (None: nobody; refuse the request).
    pub fn caller(&self, token: &str) -> Option<Caller> {
        let i = self.inner.read();
        if i.operator.as_deref().is_some_and(|t| constant_eq(t, token)) {
            return Some(Caller::Operator);
        }
        i.agents
            .iter()
            .find(|(t, _)| constant_eq(t, token))
            .map(|(_, a)| Caller::Agent(a.clone()))
    }
}

/// Compare without stopping at the first difference (tokens are secrets).
fn constant_eq(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// 32 random bytes, hex.
pub fn random_token() -> Result<String, ApiError> {
    crate::secrets::random_hex(32)
        .map_err(|e| ApiError::Node(format!("cannot read /dev/urandom for a token: {e}")))
}

/// The variable that holds the operator's MCP token.
pub const TOKEN_ENV: &str = "WORKSHOP_MCP_TOKEN";
/// The operator's MCP token in a data dir (0600, made at the first start).
pub const TOKEN_FILE: &str = "mcp.token";

/// The operator's token: `$WORKSHOP_MCP_TOKEN`, else `<data dir>/mcp.token` (made if missing),
/// else (an ephemeral node) None.
pub fn operator_token(data_dir: Option<&std::path::Path>) -> Result<Option<String>, ApiError> {
    if let Ok(t) = std::env::var(TOKEN_ENV) {
        if t.trim().is_empty() {
            return Err(ApiError::Node(format!(
                "{TOKEN_ENV} is set but empty; unset it or give it a token"
            )));
        }
        return Ok(Some(t.trim().to_string()));
    }
    let Some(dir) = data_dir else {
        return Ok(None);
    };
    let path = dir.join(TOKEN_FILE);
    match crate::secrets::read_secret(&path, "MCP token file", TOKEN_ENV)? {
        Some(t) => Ok(Some(t)),
        None => crate::secrets::make_secret(&path, 32).map(Some),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_name_their_caller_and_a_new_one_replaces_the_old() {
        let access = McpAccess::new();
        access.served("http://127.0.0.1:1/mcp".into(), Some("op".into()));
        assert_eq!(access.caller("op"), Some(Caller::Operator));
        let t1 = access.mint("boss").expect("token");
        assert_eq!(access.caller(&t1), Some(Caller::Agent("boss".into())));
        let t2 = access.mint("boss").expect("token");
        assert_ne!(t1, t2);
        assert_eq!(access.caller(&t1), None);
        assert_eq!(access.caller(&t2), Some(Caller::Agent("boss".into())));
        access.revoke_token(&t1);
        assert_eq!(
            access.caller(&t2),
            Some(Caller::Agent("boss".into())),
            "revoking a replaced token leaves the current one"
        );
        access.revoke("boss");
        assert_eq!(access.caller(&t2), None);
        let t3 = access.mint("boss").expect("token");
        access.revoke_token(&t3);
        assert_eq!(access.caller(&t3), None);
        assert_eq!(access.caller(""), None);
        assert_eq!(access.caller("o"), None);
    }
}
