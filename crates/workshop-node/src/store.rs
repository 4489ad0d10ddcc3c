//! The shared key-value store (`put/get/store/store_keys/store_delete`): JSON values, in
//! memory on an ephemeral node, in the node database (flushed and synced before `put` returns)
//! on a durable one.

use std::collections::BTreeMap;
use std::sync::Arc;

use parking_lot::RwLock;
use serde_json::Value;

use crate::persist::NodeDb;
use crate::ApiError;

pub struct Store {
    db: Option<Arc<NodeDb>>,
    memory: RwLock<BTreeMap<String, Value>>,
}

/// Values larger than this are refused: the store is for notes and small artefacts.
pub const MAX_VALUE_BYTES: usize = 1024 * 1024;

impl Store {
    pub fn new(db: Option<Arc<NodeDb>>) -> Self {
        Self {
            db,
            memory: RwLock::new(BTreeMap::new()),
        }
    }

    pub async fn put(&self, key: &str, value: &Value) -> Result<(), ApiError> {
        if key.is_empty() {
            return Err(ApiError::Node("store keys cannot be empty".into()));
        }
        let text = value.to_string();
        if text.len() > MAX_VALUE_BYTES {
            return Err(ApiError::Node(format!(
                "value for {key} is {} bytes; the store takes at most {MAX_VALUE_BYTES} (write large artefacts to files)",
                text.len()
            )));
        }
        match &self.db {
            Some(db) => {
                db.store_put(key, &text)?;
                db.sync().await
            }
            None => {
                self.memory.write().insert(key.to_string(), value.clone());
                Ok(())
            }
        }
    }

    pub fn get(&self, key: &str) -> Result<Option<Value>, ApiError> {
        match &self.db {
            Some(db) => Ok(db
                .store_get(key)?
                .and_then(|t| serde_json::from_str(&t).ok())),
            None => Ok(self.memory.read().get(key).cloned()),
        }
    }

    pub fn all(&self) -> Result<Vec<(String, Value)>, ApiError> {
        match &self.db {
            Some(db) => Ok(db
                .store_all()?
                .into_iter()
                .map(|(k, t)| {
                    let v = serde_json::from_str(&t).unwrap_or(Value::String(t));
                    (k, v)
                })
                .collect()),
            None => Ok(self
                .memory
                .read()
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()),
        }
    }

    pub async fn delete(&self, key: &str) -> Result<(), ApiError> {
        match &self.db {
            Some(db) => {
                db.store_delete(key)?;
                db.sync().await
            }
            None => {
                self.memory.write().remove(key);
                Ok(())
            }
        }
    }
}
