//! The shared-database backend: one PostgreSQL table that any number of
//! passgate instances on any number of machines use at once (built with the
//! `postgres` feature).
//!
//! One row per item in `passgate_items`; every conditional write is a single
//! statement whose `WHERE` holds the condition, so PostgreSQL's row locks
//! make it atomic (a concurrent writer re-checks the condition on the row
//! as committed). Multi-write transactions run in one database transaction
//! and lock their rows in key order, so two of them never deadlock.
//! `docs/storage.md` lists the statements.
//!
//! Connection trouble of any kind (server down, restarting, failing over,
//! the pool exhausted, a statement timeout) is [`StoreError::Unavailable`];
//! the pool replaces broken connections by itself, so the store recovers
//! when the server is back without anyone restarting passgate.

use std::{path::Path, str::FromStr, sync::Arc, time::Duration};

use async_trait::async_trait;
use deadpool_postgres::{
    GenericClient, Manager, ManagerConfig, Pool, PoolError, RecyclingMethod, Runtime,
};
use tokio_postgres::{Row, error::SqlState, types::ToSql};

use super::{Item, Store, StoreError, Write, now_unix};

/// Versioned migrations, applied in order at start-up; the versions applied
/// are rows of `passgate_migrations`. Append only; never edit.
const MIGRATIONS: &[&str] = &[
    // 1: the item table and an expiry index for purging. `COLLATE "C"`
    // orders keys by their UTF-8 bytes, as the other backends do. A taken
    // item stays as a mark (see `take_as`) until the purge removes it.
    r#"CREATE TABLE passgate_items (
        pk TEXT COLLATE "C" NOT NULL,
        sk TEXT COLLATE "C" NOT NULL,
        value BYTEA NOT NULL,
        version BIGINT NOT NULL,
        expires_at BIGINT,
        taken_by TEXT,
        taken_at BIGINT,
        expires_before_take BIGINT,
        PRIMARY KEY (pk, sk)
    );
    CREATE INDEX passgate_items_expiry ON passgate_items (expires_at)
        WHERE expires_at IS NOT NULL;"#,
];

/// Any constant works; it only has to be the same for every passgate.
const MIGRATION_LOCK: i64 = 0x7061_7373_6761_7465; // "passgate"

/// The trait's limit on the writes of one transaction.
const MAX_TRANSACTION_WRITES: usize = 25;

/// How far in the past a taken item's expiry is set: far enough that no
/// instance with a skewed clock sees it live.
const TAKEN_EXPIRED_AGO_SECS: i64 = 24 * 3600;
/// How long a taken item's mark is kept for a retried `take` to find.
const TAKEN_MARK_KEPT_SECS: i64 = 3600;
/// Attempts of one `take` whose connection failed (same attempt id).
const TAKE_ATTEMPTS: u32 = 3;
/// Attempts of a transaction that the server aborted to break a deadlock or
/// a serialization conflict (nothing of it was applied).
const TRANSACTION_ATTEMPTS: u32 = 5;

/// Expired rows are deleted this many at a time, each batch its own short
/// statement that skips rows someone else holds, so purging never blocks a
/// request for long.
const PURGE_BATCH: i64 = 500;
pub const PURGE_INTERVAL: Duration = Duration::from_secs(60);

/// How to reach the database; the URL is never logged (it may hold the
/// password).
#[derive(Clone)]
pub struct PgOptions {
    /// A libpq-style URL or key=value string: `postgres://user:pass@host/db?sslmode=require`.
    pub url: String,
    /// PEM file with the CA certificate(s) that sign the server's
    /// certificate. Setting it requires TLS. Without it, TLS (with
    /// `sslmode=require`, or `prefer` when the server offers it) is
    /// verified against the system's roots.
    pub ca_file: Option<std::path::PathBuf>,
    /// Connections per instance.
    pub max_connections: usize,
    /// How long a request waits for a free connection, to connect, and for
    /// one statement, before it is answered "unavailable".
    pub timeout: Duration,
}

impl std::fmt::Debug for PgOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgOptions")
            .field("url", &"<redacted>")
            .field("ca_file", &self.ca_file)
            .field("max_connections", &self.max_connections)
            .field("timeout", &self.timeout)
            .finish()
    }
}

pub struct PgStore {
    pool: Pool,
}

impl PgStore {
    /// Builds the pool; connects lazily, so this succeeds while the server
    /// is away. Fails only on a malformed URL or CA file.
    pub fn new(options: &PgOptions) -> Result<Self, StoreError> {
        // The URL holds the password: of the parser's message only the part
        // before any `=`, `:` or `@` is kept, so no piece of it is echoed.
        let mut config = tokio_postgres::Config::from_str(&options.url).map_err(|e| {
            StoreError::Other(format!(
                "the database URL is not a valid PostgreSQL connection string ({})",
                redact_parse_error(&e.to_string())
            ))
        })?;
        let timeout = options.timeout;
        // A statement that runs longer than this is cancelled by the
        // server: a stuck lock becomes a 503, not a hung request. Options
        // from the URL are kept.
        let statement_timeout = format!("-c statement_timeout={}", timeout.as_millis());
        let server_options = match config.get_options() {
            Some(from_url) => format!("{from_url} {statement_timeout}"),
            None => statement_timeout,
        };
        config
            .connect_timeout(timeout)
            .keepalives(true)
            .keepalives_idle(Duration::from_secs(30))
            .tcp_user_timeout(timeout * 2)
            .options(server_options);
        if config.get_application_name().is_none() {
            config.application_name("passgate");
        }
        if options.ca_file.is_some() {
            config.ssl_mode(tokio_postgres::config::SslMode::Require);
        }
        let tls = tls_connector(options.ca_file.as_deref())?;
        let manager = Manager::from_config(
            config,
            tls,
            ManagerConfig {
                // Fast: a closed connection is noticed without a round trip
                // (its task ended); a broken one fails its next statement,
                // is answered "unavailable" and is dropped by the pool.
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(options.max_connections.max(1))
            .wait_timeout(Some(timeout))
            .create_timeout(Some(timeout))
            .recycle_timeout(Some(timeout))
            .runtime(Runtime::Tokio1)
            .build()
            .map_err(|e| StoreError::Other(format!("postgres pool: {e}")))?;
        Ok(Self { pool })
    }

    /// Builds the store and brings the schema up to date.
    pub async fn connect(options: &PgOptions) -> Result<Self, StoreError> {
        let store = Self::new(options)?;
        store.migrate().await?;
        Ok(store)
    }

    /// Applies the missing migrations. Safe when several instances start at
    /// once: the transaction holds an advisory lock, so they take turns, and
    /// the later ones find nothing left to do.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        let mut client = self.pool.get().await.map_err(pool_err)?;
        let tx = client.transaction().await.map_err(pg_err)?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
            .await
            .map_err(pg_err)?;
        tx.batch_execute(
            "CREATE TABLE IF NOT EXISTS passgate_migrations (
                version INTEGER PRIMARY KEY,
                applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
            )",
        )
        .await
        .map_err(pg_err)?;
        let current: i32 = tx
            .query_one(
                "SELECT coalesce(max(version), 0) FROM passgate_migrations",
                &[],
            )
            .await
            .map_err(pg_err)?
            .try_get(0)
            .map_err(corrupt)?;
        let current = current as usize;
        if current > MIGRATIONS.len() {
            return Err(StoreError::Other(format!(
                "the database has schema version {current}, newer than this passgate knows ({}); upgrade passgate",
                MIGRATIONS.len()
            )));
        }
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(current) {
            tx.batch_execute(sql).await.map_err(pg_err)?;
            tx.execute(
                "INSERT INTO passgate_migrations (version) VALUES ($1)",
                &[&((i + 1) as i32)],
            )
            .await
            .map_err(pg_err)?;
        }
        tx.commit().await.map_err(pg_err)
    }

    /// Deletes expired rows, in batches, and returns how many. Reads already
    /// ignore them; this only reclaims space.
    pub async fn purge_expired(&self) -> Result<u64, StoreError> {
        let mut total = 0;
        loop {
            let now = now_unix();
            let client = self.pool.get().await.map_err(pool_err)?;
            let stmt = client
                .prepare_cached(
                    "DELETE FROM passgate_items i USING (
                        SELECT pk, sk FROM passgate_items
                        WHERE expires_at IS NOT NULL AND expires_at <= $1
                          AND (taken_at IS NULL OR taken_at <= $2)
                        LIMIT $3 FOR UPDATE SKIP LOCKED
                     ) d WHERE i.pk = d.pk AND i.sk = d.sk",
                )
                .await
                .map_err(pg_err)?;
            let deleted = client
                .execute(&stmt, &[&now, &(now - TAKEN_MARK_KEPT_SECS), &PURGE_BATCH])
                .await
                .map_err(pg_err)?;
            total += deleted;
            if deleted < PURGE_BATCH as u64 {
                return Ok(total);
            }
        }
    }

    /// Purges every [`PURGE_INTERVAL`], the first time one interval from
    /// now (so short-lived commands never purge), for as long as the process
    /// runs. A failed run (the database away) is logged and tried again at
    /// the next tick. Several instances purging at once skip each other's
    /// rows.
    pub fn spawn_purge(self: &Arc<Self>) {
        let store = Arc::downgrade(self);
        tokio::spawn(async move {
            let start = tokio::time::Instant::now() + PURGE_INTERVAL;
            let mut tick = tokio::time::interval_at(start, PURGE_INTERVAL);
            loop {
                tick.tick().await;
                let Some(store) = store.upgrade() else { return };
                match store.purge_expired().await {
                    Ok(0) => {}
                    Ok(n) => tracing::debug!(deleted = n, "purged expired items"),
                    Err(e) => {
                        tracing::warn!(error = %e, "purging expired items failed; trying again later")
                    }
                }
            }
        });
    }

    /// Whether the database answers now (for readiness checks).
    pub async fn ping(&self) -> Result<(), StoreError> {
        let client = self.pool.get().await.map_err(pool_err)?;
        client.simple_query("").await.map_err(pg_err)?;
        Ok(())
    }

    /// `take`, as the attempt `write_id`. The row is not deleted but marked
    /// taken (expired a day ago, with the attempt's id, its own expiry kept
    /// aside), in one statement. If the answer to that statement is lost
    /// (the connection broke after the server committed), the attempt is
    /// sent again with the same id; the retry finds its own mark and still
    /// returns the item, so no sign-in is lost to a broken connection. The
    /// purge removes marks after an hour. Public only so that tests can
    /// replay an attempt.
    #[doc(hidden)]
    pub async fn take_as(
        &self,
        pk: &str,
        sk: &str,
        write_id: &str,
    ) -> Result<Option<Item>, StoreError> {
        let now = now_unix();
        let client = self.pool.get().await.map_err(pool_err)?;
        let stmt = client
            .prepare_cached(
                "UPDATE passgate_items SET
                    expires_before_take = expires_at,
                    expires_at = $4, taken_by = $5, taken_at = $3
                 WHERE pk = $1 AND sk = $2 AND (expires_at IS NULL OR expires_at > $3)
                 RETURNING value, version, expires_before_take",
            )
            .await
            .map_err(pg_err)?;
        let taken = client
            .query_opt(
                &stmt,
                &[&pk, &sk, &now, &(now - TAKEN_EXPIRED_AGO_SECS), &write_id],
            )
            .await
            .map_err(pg_err)?;
        if let Some(row) = taken {
            return row_to_item(pk, sk, &row).map(Some);
        }
        // Nothing live: maybe this very attempt took it already.
        let stmt = client
            .prepare_cached(
                "SELECT value, version, expires_before_take FROM passgate_items
                 WHERE pk = $1 AND sk = $2 AND taken_by = $3",
            )
            .await
            .map_err(pg_err)?;
        client
            .query_opt(&stmt, &[&pk, &sk, &write_id])
            .await
            .map_err(pg_err)?
            .map(|row| row_to_item(pk, sk, &row))
            .transpose()
    }

    async fn try_transact(&self, writes: &[&Write]) -> Result<(), StoreError> {
        let now = now_unix();
        let mut client = self.pool.get().await.map_err(pool_err)?;
        if let [write] = writes {
            // One statement commits on its own: one round trip.
            return apply(&client, write, now).await;
        }
        let tx = client.transaction().await.map_err(pg_err)?;
        for write in writes {
            // An early return drops `tx`, which rolls everything back.
            apply(&tx, write, now).await?;
        }
        tx.commit().await.map_err(pg_err)
    }
}

/// One write as one statement; `Conflict` if its condition did not hold.
async fn apply<C: GenericClient + Sync>(
    client: &C,
    write: &Write,
    now: i64,
) -> Result<(), StoreError> {
    // Versions start at 1 and grow by one, so they never leave `BIGINT`;
    // one that cannot be stored matches nothing.
    let expected: i64 = match write {
        Write::Replace {
            expected_version, ..
        }
        | Write::DeleteVersion {
            expected_version, ..
        } => i64::try_from(*expected_version).unwrap_or(-1),
        _ => 0,
    };
    let (sql, params): (&str, Vec<&(dyn ToSql + Sync)>) = match write {
        Write::Put(item) => (
            // An expired leftover (or a taken mark) counts as absent: its
            // version restarts at 1.
            "INSERT INTO passgate_items (pk, sk, value, version, expires_at) VALUES ($1, $2, $4, 1, $5)
             ON CONFLICT (pk, sk) DO UPDATE SET
               value = excluded.value, expires_at = excluded.expires_at,
               taken_by = NULL, taken_at = NULL, expires_before_take = NULL,
               version = CASE WHEN passgate_items.expires_at IS NOT NULL AND passgate_items.expires_at <= $3
                              THEN 1 ELSE passgate_items.version + 1 END",
            vec![&item.pk, &item.sk, &now, &item.value, &item.expires_at],
        ),
        Write::Insert(item) => (
            "INSERT INTO passgate_items (pk, sk, value, version, expires_at) VALUES ($1, $2, $4, 1, $5)
             ON CONFLICT (pk, sk) DO UPDATE SET
               value = excluded.value, expires_at = excluded.expires_at, version = 1,
               taken_by = NULL, taken_at = NULL, expires_before_take = NULL
             WHERE passgate_items.expires_at IS NOT NULL AND passgate_items.expires_at <= $3",
            vec![&item.pk, &item.sk, &now, &item.value, &item.expires_at],
        ),
        Write::Replace { item, .. } => (
            "UPDATE passgate_items SET value = $4, expires_at = $5, version = version + 1
             WHERE pk = $1 AND sk = $2 AND (expires_at IS NULL OR expires_at > $3) AND version = $6",
            vec![
                &item.pk,
                &item.sk,
                &now,
                &item.value,
                &item.expires_at,
                &expected,
            ],
        ),
        Write::Delete { pk, sk } => (
            "DELETE FROM passgate_items WHERE pk = $1 AND sk = $2",
            vec![pk, sk],
        ),
        Write::DeleteVersion { pk, sk, .. } => (
            "DELETE FROM passgate_items
             WHERE pk = $1 AND sk = $2 AND (expires_at IS NULL OR expires_at > $3) AND version = $4",
            vec![pk, sk, &now, &expected],
        ),
    };
    let stmt = client.prepare_cached(sql).await.map_err(pg_err)?;
    let rows = client.execute(&stmt, &params).await.map_err(pg_err)?;
    let conditional = !matches!(write, Write::Put(_) | Write::Delete { .. });
    if conditional && rows == 0 {
        return Err(StoreError::Conflict);
    }
    Ok(())
}

fn row_to_item(pk: &str, sk: &str, row: &Row) -> Result<Item, StoreError> {
    let version: i64 = row.try_get(1).map_err(corrupt)?;
    Ok(Item {
        pk: pk.to_owned(),
        sk: sk.to_owned(),
        value: row.try_get(0).map_err(corrupt)?,
        version: version as u64,
        expires_at: row.try_get(2).map_err(corrupt)?,
    })
}

fn write_key(write: &Write) -> (&str, &str) {
    match write {
        Write::Put(i) | Write::Insert(i) | Write::Replace { item: i, .. } => (&i.pk, &i.sk),
        Write::Delete { pk, sk } | Write::DeleteVersion { pk, sk, .. } => (pk, sk),
    }
}

#[async_trait]
impl Store for PgStore {
    async fn get(&self, pk: &str, sk: &str) -> Result<Option<Item>, StoreError> {
        let client = self.pool.get().await.map_err(pool_err)?;
        // Prepared once per connection; after that a point read is one
        // round trip.
        let stmt = client
            .prepare_cached(
                "SELECT value, version, expires_at FROM passgate_items
                 WHERE pk = $1 AND sk = $2 AND (expires_at IS NULL OR expires_at > $3)",
            )
            .await
            .map_err(pg_err)?;
        client
            .query_opt(&stmt, &[&pk, &sk, &now_unix()])
            .await
            .map_err(pg_err)?
            .map(|row| row_to_item(pk, sk, &row))
            .transpose()
    }

    async fn list(&self, pk: &str) -> Result<Vec<Item>, StoreError> {
        let client = self.pool.get().await.map_err(pool_err)?;
        let stmt = client
            .prepare_cached(
                "SELECT value, version, expires_at, sk FROM passgate_items
                 WHERE pk = $1 AND (expires_at IS NULL OR expires_at > $2) ORDER BY sk",
            )
            .await
            .map_err(pg_err)?;
        let rows = client
            .query(&stmt, &[&pk, &now_unix()])
            .await
            .map_err(pg_err)?;
        rows.iter()
            .map(|row| {
                let sk: String = row.try_get(3).map_err(corrupt)?;
                row_to_item(pk, &sk, row)
            })
            .collect()
    }

    async fn take(&self, pk: &str, sk: &str) -> Result<Option<Item>, StoreError> {
        let write_id = crate::crypto::random_id();
        let mut attempt = 1;
        loop {
            match self.take_as(pk, sk, &write_id).await {
                Err(StoreError::Unavailable(why)) if attempt < TAKE_ATTEMPTS => {
                    tracing::debug!(error = %why, "take failed; sending the attempt again");
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis(50 * u64::from(attempt))).await;
                }
                other => return other,
            }
        }
    }

    async fn transact(&self, writes: Vec<Write>) -> Result<(), StoreError> {
        if writes.len() > MAX_TRANSACTION_WRITES {
            return Err(StoreError::Other(format!(
                "a transaction takes at most {MAX_TRANSACTION_WRITES} writes"
            )));
        }
        if writes.is_empty() {
            return Ok(());
        }
        // Rows are locked in key order, so concurrent transactions over
        // overlapping keys wait for each other instead of deadlocking.
        let mut ordered: Vec<&Write> = writes.iter().collect();
        ordered.sort_by(|a, b| write_key(a).cmp(&write_key(b)));
        if ordered
            .windows(2)
            .any(|w| write_key(w[0]) == write_key(w[1]))
        {
            return Err(StoreError::Other(
                "a transaction writes one key twice; keys must be distinct".into(),
            ));
        }
        let mut attempt = 1;
        loop {
            match self.try_transact(&ordered).await {
                Err(StoreError::Unavailable(why))
                    if attempt < TRANSACTION_ATTEMPTS && why.starts_with(RETRYABLE) =>
                {
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis(10 * u64::from(attempt))).await;
                }
                other => return other,
            }
        }
    }

    async fn increment(&self, pk: &str, sk: &str, expires_at: i64) -> Result<u64, StoreError> {
        let client = self.pool.get().await.map_err(pool_err)?;
        // One statement: a live counter counts up and keeps its window; an
        // absent or expired one starts again at 1 with this window.
        let stmt = client
            .prepare_cached(
                "INSERT INTO passgate_items (pk, sk, value, version, expires_at)
                 VALUES ($1, $2, '\\x31', 1, $4)
                 ON CONFLICT (pk, sk) DO UPDATE SET
                   value = CASE WHEN passgate_items.expires_at IS NULL OR passgate_items.expires_at > $3
                                THEN convert_to((convert_from(passgate_items.value, 'UTF8')::bigint + 1)::text, 'UTF8')
                                ELSE '\\x31' END,
                   version = CASE WHEN passgate_items.expires_at IS NULL OR passgate_items.expires_at > $3
                                  THEN passgate_items.version + 1 ELSE 1 END,
                   expires_at = CASE WHEN passgate_items.expires_at IS NULL OR passgate_items.expires_at > $3
                                     THEN passgate_items.expires_at ELSE excluded.expires_at END,
                   taken_by = NULL, taken_at = NULL, expires_before_take = NULL
                 RETURNING convert_from(value, 'UTF8')::bigint",
            )
            .await
            .map_err(pg_err)?;
        let row = client
            .query_one(&stmt, &[&pk, &sk, &now_unix(), &expires_at])
            .await
            .map_err(pg_err)?;
        let count: i64 = row.try_get(0).map_err(corrupt)?;
        Ok(count as u64)
    }
}

/// The prefix of the `Unavailable` message of an aborted transaction that
/// may simply be run again.
const RETRYABLE: &str = "postgres transaction aborted";

fn pool_err(e: PoolError) -> StoreError {
    match e {
        PoolError::Backend(e) => pg_err(e),
        PoolError::NoRuntimeSpecified | PoolError::PostCreateHook(_) => {
            StoreError::Other(format!("postgres pool: {e}"))
        }
        // Waiting for, creating or recycling a connection timed out, or
        // the pool is closed: the database is away or overloaded.
        other => StoreError::Unavailable(format!("postgres pool: {other}")),
    }
}

/// Maps a driver error: connection trouble and the server's "not now"
/// answers are `Unavailable`; mistakes in our SQL or data are `Other`.
fn pg_err(e: tokio_postgres::Error) -> StoreError {
    let Some(db) = e.as_db_error() else {
        // No answer from the server: I/O, a closed connection, a timeout,
        // a TLS or authentication handshake that failed.
        return StoreError::Unavailable(format!("postgres: {}", with_causes(&e)));
    };
    let code = db.code();
    let message = format!("postgres: {} ({})", db.message(), code.code());
    if *code == SqlState::T_R_SERIALIZATION_FAILURE || *code == SqlState::T_R_DEADLOCK_DETECTED {
        return StoreError::Unavailable(format!("{RETRYABLE}: {message}"));
    }
    let class = &code.code()[..2];
    let transient = matches!(
        class,
        // connection exception, insufficient resources, operator
        // intervention (shutdown, statement timeout), system error
        "08" | "53" | "57" | "58"
    ) || *code == SqlState::READ_ONLY_SQL_TRANSACTION // a standby after failover
        || *code == SqlState::LOCK_NOT_AVAILABLE;
    if transient {
        StoreError::Unavailable(message)
    } else {
        StoreError::Other(message)
    }
}

/// The error and its causes (the driver's own message often only says
/// which step failed, e.g. "error performing TLS handshake").
fn with_causes(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

fn corrupt(e: tokio_postgres::Error) -> StoreError {
    StoreError::Corrupt(format!("postgres row: {e}"))
}

/// The parser's message without anything after a `=` or `:` (defensive: it
/// must never echo a password).
fn redact_parse_error(message: &str) -> String {
    message
        .split(['=', ':', '@'])
        .next()
        .unwrap_or_default()
        .trim()
        .to_owned()
}

/// rustls with `ring`; the server's certificate is always verified (name
/// and chain), against `ca_file` if given, else the system's roots.
fn tls_connector(
    ca_file: Option<&Path>,
) -> Result<tokio_postgres_rustls::MakeRustlsConnect, StoreError> {
    use rustls::pki_types::{CertificateDer, pem::PemObject};
    let mut roots = rustls::RootCertStore::empty();
    match ca_file {
        Some(path) => {
            let certs = CertificateDer::pem_file_iter(path)
                .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
                .map_err(|e| {
                    StoreError::Other(format!(
                        "cannot read the database CA file {}: {e}",
                        path.display()
                    ))
                })?;
            if certs.is_empty() {
                return Err(StoreError::Other(format!(
                    "the database CA file {} holds no certificate",
                    path.display()
                )));
            }
            for cert in certs {
                roots.add(cert).map_err(|e| {
                    StoreError::Other(format!("the database CA file {}: {e}", path.display()))
                })?;
            }
        }
        None => {
            // Unreadable system certificates only matter if TLS is used.
            let native = rustls_native_certs::load_native_certs();
            roots.add_parsable_certificates(native.certs);
        }
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| StoreError::Other(format!("tls: {e}")))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(tokio_postgres_rustls::MakeRustlsConnect::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_malformed_url_is_refused_without_echoing_it() {
        let options = PgOptions {
            url: "postgres://alice:hunter2-secret@db:notaport/passgate".into(),
            ca_file: None,
            max_connections: 4,
            timeout: Duration::from_secs(1),
        };
        let err = PgStore::new(&options).err().expect("refused").to_string();
        assert!(err.contains("not a valid PostgreSQL"), "{err}");
        assert!(!err.contains("hunter2"), "{err}");
        assert!(!format!("{options:?}").contains("hunter2"));
    }
}
