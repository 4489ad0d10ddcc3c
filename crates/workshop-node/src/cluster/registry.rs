//! What the board node keeps for the whole cluster besides the board: the agent-name registry
//! (which node holds each name, so two nodes cannot both create `x`) and the budget ledger
//! (each node's spend, so the global budget is one figure for the cluster). Both are written
//! to the board node's database and synced before the answer; an ephemeral board node keeps
//! them in memory.

use std::collections::BTreeMap;
use std::sync::Arc;

use workshop_proto::ApiError;

use crate::persist::NodeDb;

pub struct Registry {
    db: Option<Arc<NodeDb>>,
    inner: tokio::sync::Mutex<Tables>,
}

#[derive(Default)]
struct Tables {
    names: BTreeMap<String, String>,
    ledger: BTreeMap<String, f64>,
}

impl Registry {
    pub fn open(db: Option<Arc<NodeDb>>) -> Result<Self, ApiError> {
        let mut t = Tables::default();
        if let Some(db) = &db {
            t.names = db.names()?.into_iter().collect();
            t.ledger = db.ledger()?;
        }
        Ok(Self {
            db,
            inner: tokio::sync::Mutex::new(t),
        })
    }

    async fn sync(&self) -> Result<(), ApiError> {
        match &self.db {
            Some(db) => db.sync().await,
            None => Ok(()),
        }
    }

    /// Reserve `name` for `node`; answers the node that held it before (if another did).
    pub async fn claim(&self, name: &str, node: &str) -> Result<Option<String>, ApiError> {
        let mut t = self.inner.lock().await;
        let before = t.names.get(name).cloned();
        if before.as_deref() == Some(node) {
            return Ok(None);
        }
        if let Some(db) = &self.db {
            db.put_name(name, node)?;
        }
        self.sync().await?;
        t.names.insert(name.to_string(), node.to_string());
        Ok(before)
    }

    /// Give up `node`'s reservation of `name` (another node's stays).
    pub async fn release(&self, name: &str, node: &str) -> Result<(), ApiError> {
        let mut t = self.inner.lock().await;
        if t.names.get(name).map(String::as_str) != Some(node) {
            return Ok(());
        }
        if let Some(db) = &self.db {
            db.delete_name(name)?;
        }
        self.sync().await?;
        t.names.remove(name);
        Ok(())
    }

    pub async fn owner(&self, name: &str) -> Option<String> {
        self.inner.lock().await.names.get(name).cloned()
    }

    pub async fn table(&self) -> Vec<(String, String)> {
        let t = self.inner.lock().await;
        t.names
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// Record `node`'s total spend (its own figure, so a repeated report changes nothing);
    /// answers the cluster's total.
    pub async fn spend(&self, node: &str, usd: f64) -> Result<f64, ApiError> {
        if !usd.is_finite() || usd < 0.0 {
            return Err(ApiError::BadRequest(format!(
                "a node's spend must be a non-negative number, not {usd}"
            )));
        }
        let mut t = self.inner.lock().await;
        if t.ledger.get(node) != Some(&usd) {
            let mut next = t.ledger.clone();
            next.insert(node.to_string(), usd);
            if let Some(db) = &self.db {
                db.put_ledger(&next)?;
            }
            self.sync().await?;
            t.ledger = next;
        }
        Ok(t.ledger.values().sum())
    }

    /// The cluster's total spend.
    pub async fn total(&self) -> f64 {
        self.inner.lock().await.ledger.values().sum()
    }
}
