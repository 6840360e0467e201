//! Durable storage for every piece of state a later request needs.
//!
//! The model is deliberately small so that each backend maps onto it
//! directly: items under a partition key and a sort key (DynamoDB's shape),
//! each with an opaque value, a version for optimistic concurrency and an
//! optional expiry. Domain modules keep their own key conventions (listed in
//! `docs/storage.md`) and serialize their own values.
//!
//! Invariants every backend upholds (checked by `tests/store_conformance.rs`):
//! - an expired item is absent for every operation, even before it is purged;
//! - `take` is atomic: of many concurrent takers of one item, exactly one
//!   gets it;
//! - conditional writes (`insert`, `replace`, `transact`) either apply fully
//!   or fail with [`StoreError::Conflict`] and change nothing.

use std::time::{SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use serde::{Serialize, de::DeserializeOwned};

#[cfg(feature = "dynamodb")]
pub mod dynamodb;
pub mod keys;
#[cfg(feature = "postgres")]
pub mod postgres;
pub mod sqlite;

/// Seconds since the Unix epoch.
pub fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// One stored item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    pub pk: String,
    pub sk: String,
    pub value: Vec<u8>,
    /// Starts at 1 and grows by one on every write; used by `replace`.
    pub version: u64,
    /// Unix seconds after which the item no longer exists.
    pub expires_at: Option<i64>,
}

/// What to write: an item without its version (the store assigns it).
#[derive(Debug, Clone)]
pub struct NewItem {
    pub pk: String,
    pub sk: String,
    pub value: Vec<u8>,
    pub expires_at: Option<i64>,
}

impl NewItem {
    pub fn new(pk: impl Into<String>, sk: impl Into<String>, value: Vec<u8>) -> Self {
        Self {
            pk: pk.into(),
            sk: sk.into(),
            value,
            expires_at: None,
        }
    }

    /// Serializes `value` as JSON.
    pub fn json<T: Serialize>(
        pk: impl Into<String>,
        sk: impl Into<String>,
        value: &T,
    ) -> Result<Self, StoreError> {
        let bytes = serde_json::to_vec(value).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        Ok(Self::new(pk, sk, bytes))
    }

    pub fn expires_at(mut self, unix_secs: i64) -> Self {
        self.expires_at = Some(unix_secs);
        self
    }

    pub fn expires_in(self, secs: i64) -> Self {
        self.expires_at(now_unix() + secs)
    }
}

impl Item {
    pub fn is_live(&self, now: i64) -> bool {
        self.expires_at.is_none_or(|t| t > now)
    }

    pub fn json<T: DeserializeOwned>(&self) -> Result<T, StoreError> {
        serde_json::from_slice(&self.value)
            .map_err(|e| StoreError::Corrupt(format!("item {}/{}: {e}", self.pk, self.sk)))
    }
}

/// One write of a transaction.
#[derive(Debug, Clone)]
pub enum Write {
    /// Create or overwrite.
    Put(NewItem),
    /// Create; conflict if a live item exists.
    Insert(NewItem),
    /// Overwrite; conflict unless a live item with this version exists.
    Replace {
        item: NewItem,
        expected_version: u64,
    },
    /// Delete if present.
    Delete { pk: String, sk: String },
    /// Delete; conflict unless a live item with this version exists.
    DeleteVersion {
        pk: String,
        sk: String,
        expected_version: u64,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A condition did not hold (item exists, version moved on, ...).
    #[error("conflicting write")]
    Conflict,
    /// The backend could not be reached or refused for now; retrying may work.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// Stored data could not be read back.
    #[error("corrupt stored data: {0}")]
    Corrupt(String),
    #[error("store error: {0}")]
    Other(String),
}

/// The storage interface, held as `Arc<dyn Store>`.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// The live item, if any.
    async fn get(&self, pk: &str, sk: &str) -> Result<Option<Item>, StoreError>;
    /// All live items of a partition, in ascending sort-key order.
    async fn list(&self, pk: &str) -> Result<Vec<Item>, StoreError>;
    /// Atomically removes and returns the live item: of concurrent callers,
    /// exactly one receives it. This is how single-use things are consumed.
    async fn take(&self, pk: &str, sk: &str) -> Result<Option<Item>, StoreError>;
    /// Applies all writes or none. At most 25 writes, on distinct keys.
    async fn transact(&self, writes: Vec<Write>) -> Result<(), StoreError>;
    /// Adds one to a counter item, creating it (with `expires_at`) if absent
    /// or expired, and returns the new count. Used for rate limits.
    async fn increment(&self, pk: &str, sk: &str, expires_at: i64) -> Result<u64, StoreError>;
    /// Deletes expired items, returning how many; `serve` calls it on a
    /// schedule (`--purge-interval-secs`). Backends whose database deletes
    /// expired items itself (DynamoDB's TTL) keep this default.
    async fn purge_expired(&self) -> Result<usize, StoreError> {
        Ok(0)
    }

    async fn put(&self, item: NewItem) -> Result<(), StoreError> {
        self.transact(vec![Write::Put(item)]).await
    }
    async fn insert(&self, item: NewItem) -> Result<(), StoreError> {
        self.transact(vec![Write::Insert(item)]).await
    }
    async fn replace(&self, item: NewItem, expected_version: u64) -> Result<(), StoreError> {
        self.transact(vec![Write::Replace {
            item,
            expected_version,
        }])
        .await
    }
    async fn delete(&self, pk: &str, sk: &str) -> Result<(), StoreError> {
        self.transact(vec![Write::Delete {
            pk: pk.to_owned(),
            sk: sk.to_owned(),
        }])
        .await
    }
}

/// Calls [`Store::purge_expired`] every `interval` until `shutdown`.
/// Failures are logged and retried at the next tick: purging only reclaims
/// space, reads already ignore expired items.
pub fn spawn_purge(
    store: std::sync::Arc<dyn Store>,
    interval: std::time::Duration,
    shutdown: tokio_util::sync::CancellationToken,
) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => match store.purge_expired().await {
                    Ok(0) => {}
                    Ok(n) => tracing::debug!(items = n, "purged expired items"),
                    Err(e) => tracing::warn!(error = %e, "purging expired items failed"),
                },
                _ = shutdown.cancelled() => return,
            }
        }
    });
}

/// Typed convenience over any store.
impl dyn Store {
    pub async fn get_json<T: DeserializeOwned>(
        &self,
        pk: &str,
        sk: &str,
    ) -> Result<Option<T>, StoreError> {
        self.get(pk, sk).await?.map(|i| i.json()).transpose()
    }

    pub async fn take_json<T: DeserializeOwned>(
        &self,
        pk: &str,
        sk: &str,
    ) -> Result<Option<T>, StoreError> {
        self.take(pk, sk).await?.map(|i| i.json()).transpose()
    }
}
