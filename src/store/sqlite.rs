//! The embedded backend: one SQLite file in the data directory, shared safely
//! by several processes on one machine (WAL mode, `BEGIN IMMEDIATE` for every
//! write so that conditional writes are serialized by SQLite's own lock).

use std::{
    path::Path,
    sync::{Arc, Mutex},
    time::Duration,
};

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use super::{Item, NewItem, Store, StoreError, Write, now_unix};

/// Versioned migrations, applied in order at start-up. The index of the last
/// one applied is kept in `PRAGMA user_version`. Append only; never edit.
const MIGRATIONS: &[&str] = &[
    // 1: the item table and an expiry index for purging.
    "CREATE TABLE items (
        pk TEXT NOT NULL,
        sk TEXT NOT NULL,
        value BLOB NOT NULL,
        version INTEGER NOT NULL,
        expires_at INTEGER,
        PRIMARY KEY (pk, sk)
    ) WITHOUT ROWID;
    CREATE INDEX items_expiry ON items (expires_at) WHERE expires_at IS NOT NULL;",
    // 2: the same table with rowids. WITHOUT ROWID keeps rows in the key's
    // B-tree, where a row over about 1 KB (every code and refresh token
    // once used: they keep their sealed answer) spills into an overflow
    // page of its own; the file held about one item per 4 KB page. Rows of
    // a rowid table stay inline up to about 4 KB.
    "CREATE TABLE items_rowid (
        pk TEXT NOT NULL,
        sk TEXT NOT NULL,
        value BLOB NOT NULL,
        version INTEGER NOT NULL,
        expires_at INTEGER,
        PRIMARY KEY (pk, sk)
    );
    INSERT INTO items_rowid (pk, sk, value, version, expires_at)
        SELECT pk, sk, value, version, expires_at FROM items;
    DROP TABLE items;
    ALTER TABLE items_rowid RENAME TO items;
    CREATE INDEX items_expiry ON items (expires_at) WHERE expires_at IS NOT NULL;",
];

pub struct SqliteStore {
    // Separate connections so that reads (the per-request hot path) do not
    // queue behind writes; WAL lets them proceed concurrently.
    writer: Arc<Mutex<Connection>>,
    reader: Arc<Mutex<Connection>>,
    /// Point reads (`get`: the grant check on every MCP call) run on the
    /// calling thread, on the first of these that is free. A WAL read of one
    /// row by primary key takes a few µs, less than the hand-off to the
    /// blocking pool (≈ 40 µs, docs/benchmarks.md), and never waits for the
    /// writer; these connections do not wait at all (no busy timeout), and
    /// a read that would wait goes to `reader` in the blocking pool.
    point_readers: Arc<[Mutex<Connection>]>,
}

fn db_err(e: rusqlite::Error) -> StoreError {
    match e {
        rusqlite::Error::SqliteFailure(f, _)
            if matches!(
                f.code,
                rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked
            ) =>
        {
            StoreError::Unavailable(format!("sqlite busy: {e}"))
        }
        other => StoreError::Other(format!("sqlite: {other}")),
    }
}

fn open(path: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open(path).map_err(db_err)?;
    conn.busy_timeout(Duration::from_secs(10)).map_err(db_err)?;
    conn.execute_batch(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;",
    )
    .map_err(db_err)?;
    Ok(conn)
}

fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(db_err)?;
    let current: usize = tx
        .query_row("PRAGMA user_version", [], |r| r.get::<_, i64>(0))
        .map_err(db_err)? as usize;
    if current > MIGRATIONS.len() {
        return Err(StoreError::Other(format!(
            "the database has schema version {current}, newer than this passgate knows ({}); upgrade passgate",
            MIGRATIONS.len()
        )));
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(current) {
        tx.execute_batch(sql).map_err(db_err)?;
        tx.pragma_update(None, "user_version", (i + 1) as i64)
            .map_err(db_err)?;
    }
    tx.commit().map_err(db_err)
}

fn row_to_item(pk: &str, sk: &str, row: &rusqlite::Row<'_>) -> rusqlite::Result<Item> {
    Ok(Item {
        pk: pk.to_owned(),
        sk: sk.to_owned(),
        value: row.get(0)?,
        version: row.get::<_, i64>(1)? as u64,
        expires_at: row.get(2)?,
    })
}

fn live_version(
    tx: &rusqlite::Transaction<'_>,
    pk: &str,
    sk: &str,
    now: i64,
) -> Result<Option<u64>, StoreError> {
    tx.query_row(
        "SELECT version FROM items WHERE pk = ?1 AND sk = ?2 AND (expires_at IS NULL OR expires_at > ?3)",
        params![pk, sk, now],
        |r| r.get::<_, i64>(0),
    )
    .optional()
    .map(|v| v.map(|v| v as u64))
    .map_err(db_err)
}

fn upsert(tx: &rusqlite::Transaction<'_>, item: &NewItem, now: i64) -> Result<(), StoreError> {
    // An expired leftover counts as absent: its version restarts at 1.
    tx.execute(
        "INSERT INTO items (pk, sk, value, version, expires_at) VALUES (?1, ?2, ?3, 1, ?4)
         ON CONFLICT (pk, sk) DO UPDATE SET
           value = excluded.value,
           expires_at = excluded.expires_at,
           version = CASE WHEN items.expires_at IS NOT NULL AND items.expires_at <= ?5
                          THEN 1 ELSE items.version + 1 END",
        params![item.pk, item.sk, item.value, item.expires_at, now],
    )
    .map_err(db_err)?;
    Ok(())
}

fn get_item(conn: &mut Connection, pk: &str, sk: &str) -> rusqlite::Result<Option<Item>> {
    conn.prepare_cached(
        "SELECT value, version, expires_at FROM items
         WHERE pk = ?1 AND sk = ?2 AND (expires_at IS NULL OR expires_at > ?3)",
    )?
    .query_row(params![pk, sk, now_unix()], |r| row_to_item(pk, sk, r))
    .optional()
}

/// The database is locked in a way that a WAL reader would have to wait for
/// (recovery, a truncating checkpoint): rare, and left to the blocking pool.
fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
    )
}

impl SqliteStore {
    /// Opens (creating if needed) the database file and runs migrations.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let mut writer = open(path)?;
        migrate(&mut writer)?;
        let reader = open(path)?;
        let count = std::thread::available_parallelism().map_or(2, |n| n.get().clamp(2, 8));
        let point_readers = (0..count)
            .map(|_| {
                let conn = open(path)?;
                conn.busy_timeout(Duration::ZERO).map_err(db_err)?;
                Ok(Mutex::new(conn))
            })
            .collect::<Result<Arc<[_]>, StoreError>>()?;
        Ok(Self {
            writer: Arc::new(Mutex::new(writer)),
            reader: Arc::new(Mutex::new(reader)),
            point_readers,
        })
    }

    async fn with_conn<T: Send + 'static>(
        conn: &Arc<Mutex<Connection>>,
        f: impl FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let conn = conn.clone();
        tokio::task::spawn_blocking(move || {
            let mut guard = conn
                .lock()
                .map_err(|_| StoreError::Other("sqlite connection poisoned".into()))?;
            f(&mut guard)
        })
        .await
        .map_err(|e| StoreError::Other(format!("sqlite task failed: {e}")))?
    }

    async fn with_writer<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        Self::with_conn(&self.writer, f).await
    }

    async fn with_reader<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        Self::with_conn(&self.reader, f).await
    }
}

/// Expired rows deleted per write transaction by `purge_expired`: small
/// enough that requests waiting for the writer barely notice.
const PURGE_BATCH: usize = 500;

#[async_trait]
impl Store for SqliteStore {
    /// Deletes expired rows in short transactions, oldest first, through the
    /// expiry index. Reads already ignore them; this reclaims their pages
    /// for reuse, so the file stops growing.
    async fn purge_expired(&self) -> Result<usize, StoreError> {
        let mut total = 0;
        loop {
            let now = now_unix();
            let deleted = self
                .with_writer(move |conn| {
                    conn.execute(
                        "DELETE FROM items WHERE (pk, sk) IN (
                            SELECT pk, sk FROM items
                            WHERE expires_at IS NOT NULL AND expires_at <= ?1
                            ORDER BY expires_at LIMIT ?2)",
                        params![now, PURGE_BATCH as i64],
                    )
                    .map_err(db_err)
                })
                .await?;
            total += deleted;
            if deleted < PURGE_BATCH {
                return Ok(total);
            }
            // Let waiting writers in between batches.
            tokio::task::yield_now().await;
        }
    }

    async fn get(&self, pk: &str, sk: &str) -> Result<Option<Item>, StoreError> {
        for reader in self.point_readers.iter() {
            // Busy (another thread reads) or poisoned: try the next one.
            let Ok(mut conn) = reader.try_lock() else {
                continue;
            };
            match get_item(&mut conn, pk, sk) {
                Err(e) if is_busy(&e) => break,
                result => return result.map_err(db_err),
            }
        }
        let (pk, sk) = (pk.to_owned(), sk.to_owned());
        self.with_reader(move |conn| get_item(conn, &pk, &sk).map_err(db_err))
            .await
    }

    async fn list(&self, pk: &str) -> Result<Vec<Item>, StoreError> {
        let pk = pk.to_owned();
        self.with_reader(move |conn| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT value, version, expires_at, sk FROM items
                     WHERE pk = ?1 AND (expires_at IS NULL OR expires_at > ?2) ORDER BY sk",
                )
                .map_err(db_err)?;
            let rows = stmt
                .query_map(params![pk, now_unix()], |r| {
                    let sk: String = r.get(3)?;
                    row_to_item(&pk, &sk, r)
                })
                .map_err(db_err)?;
            rows.collect::<Result<Vec<_>, _>>().map_err(db_err)
        })
        .await
    }

    async fn take(&self, pk: &str, sk: &str) -> Result<Option<Item>, StoreError> {
        let (pk, sk) = (pk.to_owned(), sk.to_owned());
        self.with_writer(move |conn| {
            // A single DELETE ... RETURNING is atomic across processes.
            let item = conn
                .prepare_cached(
                    "DELETE FROM items WHERE pk = ?1 AND sk = ?2 RETURNING value, version, expires_at",
                )
                .and_then(|mut s| {
                    s.query_row(params![pk, sk], |r| row_to_item(&pk, &sk, r))
                        .optional()
                })
                .map_err(db_err)?;
            Ok(item.filter(|i| i.is_live(now_unix())))
        })
        .await
    }

    async fn transact(&self, writes: Vec<Write>) -> Result<(), StoreError> {
        if writes.len() > 25 {
            return Err(StoreError::Other(
                "a transaction takes at most 25 writes".into(),
            ));
        }
        self.with_writer(move |conn| {
            let now = now_unix();
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(db_err)?;
            for write in &writes {
                match write {
                    Write::Put(item) => upsert(&tx, item, now)?,
                    Write::Insert(item) => {
                        if live_version(&tx, &item.pk, &item.sk, now)?.is_some() {
                            return Err(StoreError::Conflict);
                        }
                        upsert(&tx, item, now)?;
                    }
                    Write::Replace {
                        item,
                        expected_version,
                    } => {
                        if live_version(&tx, &item.pk, &item.sk, now)? != Some(*expected_version) {
                            return Err(StoreError::Conflict);
                        }
                        upsert(&tx, item, now)?;
                    }
                    Write::Delete { pk, sk } => {
                        tx.execute(
                            "DELETE FROM items WHERE pk = ?1 AND sk = ?2",
                            params![pk, sk],
                        )
                        .map_err(db_err)?;
                    }
                    Write::DeleteVersion {
                        pk,
                        sk,
                        expected_version,
                    } => {
                        if live_version(&tx, pk, sk, now)? != Some(*expected_version) {
                            return Err(StoreError::Conflict);
                        }
                        tx.execute(
                            "DELETE FROM items WHERE pk = ?1 AND sk = ?2",
                            params![pk, sk],
                        )
                        .map_err(db_err)?;
                    }
                }
            }
            // Dropping `tx` on an early return rolls everything back.
            tx.commit().map_err(db_err)
        })
        .await
    }

    async fn increment(&self, pk: &str, sk: &str, expires_at: i64) -> Result<u64, StoreError> {
        let (pk, sk) = (pk.to_owned(), sk.to_owned());
        self.with_writer(move |conn| {
            let now = now_unix();
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(db_err)?;
            let current: Option<Vec<u8>> = tx
                .query_row(
                    "SELECT value FROM items WHERE pk = ?1 AND sk = ?2 AND (expires_at IS NULL OR expires_at > ?3)",
                    params![pk, sk, now],
                    |r| r.get(0),
                )
                .optional()
                .map_err(db_err)?;
            let (count, expiry) = match current {
                Some(bytes) => (
                    std::str::from_utf8(&bytes)
                        .ok()
                        .and_then(|s| s.parse::<u64>().ok())
                        .unwrap_or(0)
                        + 1,
                    // Keep the window's original expiry.
                    tx.query_row(
                        "SELECT expires_at FROM items WHERE pk = ?1 AND sk = ?2",
                        params![pk, sk],
                        |r| r.get::<_, Option<i64>>(0),
                    )
                    .map_err(db_err)?,
                ),
                None => (1, Some(expires_at)),
            };
            let item = NewItem {
                pk,
                sk,
                value: count.to_string().into_bytes(),
                expires_at: expiry,
            };
            upsert(&tx, &item, now)?;
            tx.commit().map_err(db_err)?;
            Ok(count)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::NewItem;

    // Holding every point reader across the awaits is the point of the test.
    #[allow(clippy::await_holding_lock)]
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn point_reads_fall_back_to_the_blocking_pool_when_every_reader_is_busy() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("db.sqlite3")).unwrap();
        store
            .put(NewItem::new("p", "s", b"v".to_vec()))
            .await
            .unwrap();
        let on_thread = store.get("p", "s").await.unwrap().expect("the item");
        assert_eq!(on_thread.value, b"v");

        let held: Vec<_> = store
            .point_readers
            .iter()
            .map(|r| r.lock().unwrap())
            .collect();
        let fallback = store.get("p", "s").await.unwrap().expect("the item");
        assert_eq!(fallback.value, b"v");
        assert_eq!(store.get("p", "absent").await.unwrap(), None);
        drop(held);
    }
}
