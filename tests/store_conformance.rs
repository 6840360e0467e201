//! The store conformance suite: every property the rest of passgate relies
//! on, written once as an `async fn` over `Arc<dyn Store>`, and run against
//! every backend by `conformance_suite!`:
//! - `sqlite::*` on a real database file in a temporary directory;
//! - `dynamodb::*` (feature `dynamodb`) on a real DynamoDB-compatible server,
//!   moto, which each test starts on a free loopback port;
//! - `postgres::*` (feature `postgres`) on a real PostgreSQL server: one
//!   throw-away cluster for this test binary, a fresh database per test.
//!
//! Expiry is tested with `expires_at` in the past, so nothing sleeps.

use std::{any::Any, collections::HashSet, sync::Arc};

use passgate::store::{NewItem, Store, StoreError, Write, now_unix, sqlite::SqliteStore};
use tokio::sync::Barrier;

#[cfg(feature = "dynamodb")]
#[path = "support/moto.rs"]
mod moto;

#[cfg(feature = "postgres")]
#[path = "support/postgres.rs"]
mod pg;

/// A store and whatever must live as long as it (temp dir, server).
struct Fixture {
    store: Arc<dyn Store>,
    _guard: Box<dyn Any + Send>,
}

async fn sqlite_fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = SqliteStore::open(&dir.path().join("passgate.db")).expect("open sqlite");
    Fixture {
        store: Arc::new(store),
        _guard: Box::new(dir),
    }
}

#[cfg(feature = "dynamodb")]
async fn dynamodb_fixture() -> Fixture {
    let moto = moto::Moto::start();
    let store = moto.dynamo_store("passgate-conformance").await;
    // Idempotent.
    store
        .create_table_if_missing()
        .await
        .expect("second create");
    Fixture {
        store: Arc::new(store),
        _guard: Box::new(moto),
    }
}

#[cfg(feature = "postgres")]
fn pg_options(url: String) -> passgate::store::postgres::PgOptions {
    passgate::store::postgres::PgOptions {
        url,
        ca_file: None,
        max_connections: 16,
        // Generous: the machine may be loaded.
        timeout: std::time::Duration::from_secs(30),
    }
}

#[cfg(feature = "postgres")]
async fn postgres_fixture() -> Fixture {
    let cluster = pg::shared();
    let url = cluster.url(&cluster.new_database());
    let store = passgate::store::postgres::PgStore::connect(&pg_options(url))
        .await
        .unwrap_or_else(|e| panic!("connecting to PostgreSQL: {e}\n{}", cluster.log()));
    // Idempotent.
    store.migrate().await.expect("second migration run");
    Fixture {
        store: Arc::new(store),
        _guard: Box::new(()),
    }
}

/// One `#[tokio::test]` per property, for the backend `$fixture` makes.
macro_rules! conformance_suite {
    ($fixture:path) => {
        conformance_suite!(@tests $fixture;
            get_put_list_and_partitions,
            insert_conflicts_only_on_live_items,
            replace_checks_the_version,
            delete_version_checks_the_version,
            transact_is_all_or_nothing,
            expiry_is_checked_on_read,
            take_returns_the_item_once,
            concurrent_take_is_exactly_once,
            concurrent_insert_is_exactly_once,
            concurrent_replace_is_exactly_once,
            concurrent_increment_counts_every_call,
            increment_restarts_after_expiry,
            binary_values_round_trip,
            large_values_round_trip,
        );
    };
    (@tests $fixture:path; $($prop:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $prop() {
                let fixture = $fixture().await;
                super::$prop(fixture.store.clone()).await;
            }
        )*
    };
}

mod sqlite {
    conformance_suite!(super::sqlite_fixture);

    use std::{path::Path, sync::Arc, time::Duration};

    use passgate::store::{NewItem, Store, now_unix, spawn_purge, sqlite::SqliteStore};

    /// Every row in the file, expired or not (reads hide expired ones).
    fn rows(path: &Path) -> i64 {
        rusqlite::Connection::open(path)
            .unwrap()
            .query_row("SELECT count(*) FROM items", [], |r| r.get(0))
            .unwrap()
    }

    /// 1,200 expired rows (more than one purge batch) and live ones.
    async fn expired_and_live(store: &dyn Store) {
        let past = now_unix() - 10;
        for i in 0..1200 {
            let item = NewItem::new(format!("old#{i}"), "x", vec![0; 100]).expires_at(past);
            store.put(item).await.unwrap();
        }
        store
            .put(NewItem::new("live", "forever", b"1".to_vec()))
            .await
            .unwrap();
        store
            .put(NewItem::new("live", "later", b"2".to_vec()).expires_in(3600))
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn purge_deletes_expired_rows_and_only_those() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("passgate.sqlite3");
        let store = SqliteStore::open(&path).unwrap();
        expired_and_live(&store).await;
        assert_eq!(rows(&path), 1202);
        assert_eq!(store.purge_expired().await.unwrap(), 1200);
        assert_eq!(rows(&path), 2);
        assert_eq!(store.list("live").await.unwrap().len(), 2);
        assert_eq!(store.purge_expired().await.unwrap(), 0);
    }

    /// Bytes of the file per item, for `n` items of `size` bytes each.
    async fn file_bytes_per_item(path: &Path, n: usize, size: usize) -> u64 {
        let store = SqliteStore::open(path).unwrap();
        for i in 0..n {
            let key = format!("rt#{:064x}", i * 7919);
            let item = NewItem::new(key, "rt", vec![b'x'; size]).expires_in(3600);
            store.put(item).await.unwrap();
        }
        let conn = rusqlite::Connection::open(path).unwrap();
        let pages: u64 = conn
            .query_row("PRAGMA page_count", [], |r| r.get(0))
            .unwrap();
        let page: u64 = conn
            .query_row("PRAGMA page_size", [], |r| r.get(0))
            .unwrap();
        pages * page / n as u64
    }

    /// A used refresh token or code is about 1.1-1.4 KB; the file must not
    /// spend a 4 KB page on each (the soak run's store did: schema 1 kept
    /// every row over about 1 KB in an overflow page of its own).
    #[tokio::test]
    async fn items_of_a_kilobyte_and_more_are_stored_compactly() {
        let dir = tempfile::tempdir().unwrap();
        for size in [1100, 1400] {
            let path = dir.path().join(format!("size-{size}.sqlite3"));
            let per_item = file_bytes_per_item(&path, 2000, size).await;
            assert!(
                per_item < size as u64 * 3 / 2 + 200,
                "{per_item} bytes of file per item of {size} bytes"
            );
        }
    }

    /// A file made by schema 1 (WITHOUT ROWID) is brought up to date with
    /// every item, version and expiry kept.
    #[tokio::test]
    async fn a_schema_1_file_is_migrated_with_its_items() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("passgate.sqlite3");
        {
            let conn = rusqlite::Connection::open(&path).unwrap();
            conn.execute_batch(
                "CREATE TABLE items (
                    pk TEXT NOT NULL, sk TEXT NOT NULL, value BLOB NOT NULL,
                    version INTEGER NOT NULL, expires_at INTEGER,
                    PRIMARY KEY (pk, sk)
                ) WITHOUT ROWID;
                CREATE INDEX items_expiry ON items (expires_at) WHERE expires_at IS NOT NULL;
                INSERT INTO items VALUES ('a', '1', x'01', 3, NULL), ('a', '2', x'02', 1, 4000000000),
                    ('b', '-', x'03', 7, 1);
                PRAGMA user_version = 1;",
            )
            .unwrap();
        }
        let store = SqliteStore::open(&path).unwrap();
        let listed = store.list("a").await.unwrap();
        assert_eq!(
            listed
                .iter()
                .map(|i| (i.sk.as_str(), i.value.clone(), i.version, i.expires_at))
                .collect::<Vec<_>>(),
            vec![
                ("1", vec![1], 3, None),
                ("2", vec![2], 1, Some(4_000_000_000))
            ]
        );
        assert!(
            store.get("b", "-").await.unwrap().is_none(),
            "still expired"
        );
        assert_eq!(store.purge_expired().await.unwrap(), 1);
        let conn = rusqlite::Connection::open(&path).unwrap();
        let sql: String = conn
            .query_row(
                "SELECT sql FROM sqlite_master WHERE name = 'items'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert!(!sql.contains("WITHOUT ROWID"), "{sql}");
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(version, 2);
    }

    /// What `passgate serve` starts: purges on a schedule, on its own.
    #[tokio::test]
    async fn scheduled_purge_runs_by_itself() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("passgate.sqlite3");
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&path).unwrap());
        expired_and_live(store.as_ref()).await;
        let shutdown = tokio_util::sync::CancellationToken::new();
        spawn_purge(store.clone(), Duration::from_millis(50), shutdown.clone());
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while rows(&path) > 2 {
            assert!(std::time::Instant::now() < deadline, "never purged");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        shutdown.cancel();
        assert_eq!(store.list("live").await.unwrap().len(), 2);
    }
}

#[cfg(feature = "dynamodb")]
mod dynamodb {
    conformance_suite!(super::dynamodb_fixture);

    use passgate::store::{NewItem, Store, now_unix};

    /// A write that timed out may land after all; the next attempt of the
    /// same write (same id) must see it as its own, not as a conflict, and
    /// another write must still conflict.
    #[tokio::test]
    async fn dynamodb_transact_survives_a_replayed_attempt() {
        use passgate::store::Write;
        let moto = super::moto::Moto::start();
        let store = moto.dynamo_store("passgate-transact-replay").await;
        let writes = || {
            vec![
                Write::Insert(NewItem::new("replay", "code", b"c".to_vec()).expires_in(120)),
                Write::Put(NewItem::new("replay", "listing", b"l".to_vec())),
            ]
        };
        store.transact_as(writes(), "write-1").await.unwrap();
        store
            .transact_as(writes(), "write-1")
            .await
            .expect("the same write again: already landed");
        assert!(matches!(
            store.transact_as(writes(), "write-2").await,
            Err(passgate::store::StoreError::Conflict)
        ));
        assert_eq!(store.list("replay").await.unwrap().len(), 2);
    }

    /// The SDK resends an attempt whose answer was lost; when the first try
    /// had landed, the resent one must still get the item, and nobody else.
    #[tokio::test]
    async fn dynamodb_take_survives_a_replayed_attempt() {
        let moto = super::moto::Moto::start();
        let store = moto.dynamo_store("passgate-take-replay").await;
        let exp = now_unix() + 300;
        for (sk, expires_at) in [("ceremony", Some(exp)), ("forever", None)] {
            let mut new = NewItem::new("replay", sk, b"challenge".to_vec());
            new.expires_at = expires_at;
            store.put(new).await.unwrap();
            let first = store.take_as("replay", sk, "attempt-1").await.unwrap();
            let resent = store.take_as("replay", sk, "attempt-1").await.unwrap();
            let other = store.take_as("replay", sk, "attempt-2").await.unwrap();
            let first = first.expect("the first try takes it");
            let resent = resent.expect("the resent attempt gets it too");
            assert_eq!(
                (resent.value.as_slice(), resent.version, resent.expires_at),
                (&b"challenge"[..], first.version, expires_at),
                "{sk}"
            );
            assert_eq!(first.expires_at, expires_at, "{sk}");
            assert!(other.is_none(), "{sk}: another attempt gets nothing");
            assert!(store.get("replay", sk).await.unwrap().is_none(), "{sk}");
            assert!(store.take("replay", sk).await.unwrap().is_none(), "{sk}");
        }
        assert!(store.list("replay").await.unwrap().is_empty());
        // A taken key is free for a new item.
        store
            .insert(NewItem::new("replay", "ceremony", b"next".to_vec()))
            .await
            .unwrap();
        let again = store.get("replay", "ceremony").await.unwrap().unwrap();
        assert_eq!(again.value, b"next");
    }
}

#[cfg(feature = "postgres")]
mod postgres {
    conformance_suite!(super::postgres_fixture);

    use std::{sync::Arc, time::Duration};

    use passgate::store::{
        NewItem, Store, StoreError, now_unix,
        postgres::{PgOptions, PgStore},
    };

    use super::{pg, pg_options};

    async fn fresh() -> (PgStore, String) {
        let cluster = pg::shared();
        let db = cluster.new_database();
        let store = PgStore::connect(&pg_options(cluster.url(&db)))
            .await
            .expect("connect");
        (store, db)
    }

    /// An attempt whose answer was lost is sent again with the same id;
    /// when the first try had landed, the resent one must still get the
    /// item, and nobody else.
    #[tokio::test]
    async fn postgres_take_survives_a_replayed_attempt() {
        let (store, _) = fresh().await;
        let exp = now_unix() + 300;
        for (sk, expires_at) in [("ceremony", Some(exp)), ("forever", None)] {
            let mut new = NewItem::new("replay", sk, b"challenge".to_vec());
            new.expires_at = expires_at;
            store.put(new).await.unwrap();
            let first = store.take_as("replay", sk, "attempt-1").await.unwrap();
            let resent = store.take_as("replay", sk, "attempt-1").await.unwrap();
            let other = store.take_as("replay", sk, "attempt-2").await.unwrap();
            let first = first.expect("the first try takes it");
            let resent = resent.expect("the resent attempt gets it too");
            assert_eq!(
                (resent.value.as_slice(), resent.version, resent.expires_at),
                (&b"challenge"[..], first.version, expires_at),
                "{sk}"
            );
            assert_eq!(first.expires_at, expires_at, "{sk}");
            assert!(other.is_none(), "{sk}: another attempt gets nothing");
            assert!(store.get("replay", sk).await.unwrap().is_none(), "{sk}");
            assert!(store.take("replay", sk).await.unwrap().is_none(), "{sk}");
        }
        assert!(store.list("replay").await.unwrap().is_empty());
        // The purge keeps a fresh mark for retries, so a late resend still
        // finds it.
        store.purge_expired().await.unwrap();
        assert!(
            store
                .take_as("replay", "ceremony", "attempt-1")
                .await
                .unwrap()
                .is_some()
        );
        // A taken key is free for a new item.
        store
            .insert(NewItem::new("replay", "ceremony", b"next".to_vec()))
            .await
            .unwrap();
        let again = store.get("replay", "ceremony").await.unwrap().unwrap();
        assert_eq!((again.value.as_slice(), again.version), (&b"next"[..], 1));
    }

    /// Several instances starting at once on an empty database: every one
    /// succeeds and the schema is made once.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn postgres_concurrent_migrations_apply_once() {
        let cluster = pg::shared();
        let db = cluster.new_database();
        let url = cluster.url(&db);
        let results = super::race(8, |_| {
            let url = url.clone();
            async move { PgStore::connect(&pg_options(url)).await.map(|_| ()) }
        })
        .await;
        for r in results {
            r.expect("every instance starts");
        }
        assert_eq!(
            cluster.psql(
                &db,
                "SELECT string_agg(version::text, ',') FROM passgate_migrations"
            ),
            "1"
        );
        // A database from a newer passgate is refused, not written to.
        cluster.psql(&db, "INSERT INTO passgate_migrations (version) VALUES (99)");
        let err = PgStore::connect(&pg_options(url))
            .await
            .err()
            .expect("refused");
        assert!(err.to_string().contains("upgrade passgate"), "{err}");
    }

    /// Expired rows go in batches; live rows and fresh take marks stay.
    #[tokio::test]
    async fn postgres_purge_removes_only_expired_rows() {
        let (store, db) = fresh().await;
        let cluster = pg::shared();
        // 1 200 expired rows, more than two batches, written directly.
        cluster.psql(
            &db,
            &format!(
                "INSERT INTO passgate_items (pk, sk, value, version, expires_at)
                 SELECT 'old', lpad(g::text, 5, '0'), '\\x00', 1, {}
                 FROM generate_series(1, 1200) g",
                now_unix() - 10
            ),
        );
        store
            .put(NewItem::new("live", "a", b"x".to_vec()))
            .await
            .unwrap();
        store
            .put(NewItem::new("live", "b", b"y".to_vec()).expires_in(3600))
            .await
            .unwrap();
        store
            .put(NewItem::new("taken", "t", b"z".to_vec()))
            .await
            .unwrap();
        store.take("taken", "t").await.unwrap().expect("taken");

        assert_eq!(store.purge_expired().await.unwrap(), 1200);
        assert_eq!(store.purge_expired().await.unwrap(), 0);
        assert_eq!(store.list("live").await.unwrap().len(), 2);
        assert_eq!(
            cluster.psql(&db, "SELECT count(*) FROM passgate_items"),
            "3",
            "two live rows and the take mark"
        );
    }

    /// Nothing listens: every operation is `Unavailable` (503), never
    /// another error that would become `invalid_grant` or a 500.
    #[tokio::test]
    async fn postgres_unreachable_is_unavailable() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let options = PgOptions {
            url: format!("postgres://passgate:hunter2-secret@127.0.0.1:{port}/passgate"),
            ca_file: None,
            max_connections: 2,
            timeout: Duration::from_secs(2),
        };
        let err = PgStore::connect(&options).await.err().expect("no server");
        assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
        assert!(!err.to_string().contains("hunter2"), "{err}");
        let store: Arc<dyn Store> = Arc::new(PgStore::new(&options).unwrap());
        let results = [
            store.get("p", "s").await.err(),
            store.list("p").await.err(),
            store.take("p", "s").await.err(),
            store.put(NewItem::new("p", "s", vec![])).await.err(),
            store.increment("p", "s", now_unix() + 60).await.err(),
        ];
        for err in results {
            assert!(matches!(err, Some(StoreError::Unavailable(_))), "{err:?}");
        }
    }

    /// A row locked for long (another session) and a pool with no free
    /// connection: the statement timeout and the pool's wait timeout both
    /// end in `Unavailable`, in about the configured time, not a hang.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres_statement_and_pool_timeouts_are_unavailable() {
        let cluster = pg::shared();
        let db = cluster.new_database();
        let mut options = pg_options(cluster.url(&db));
        options.max_connections = 1;
        options.timeout = Duration::from_secs(2);
        let store = Arc::new(PgStore::connect(&options).await.expect("connect"));
        store
            .put(NewItem::new("locked", "k", b"v1".to_vec()))
            .await
            .unwrap();

        // Another session holds the row for 10 s.
        let holder = std::process::Command::new("sh")
            .args([
                "-c",
                &cluster.psql_command(
                    &db,
                    "BEGIN; SELECT 1 FROM passgate_items WHERE pk = 'locked' FOR UPDATE; \
                 SELECT pg_sleep(10); COMMIT;",
                ),
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let _holder = KillOnDrop(holder);
        assert!(
            pg::wait_until(Duration::from_secs(30), || cluster.psql(
                &db,
                "SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%pg_sleep(10)%' \
                 AND state = 'active' AND pid <> pg_backend_pid()"
            ) == "1"),
            "the other session did not lock the row"
        );

        // Two replaces wait for the lock in turn on the only connection,
        // each until the statement timeout (2 s): the first from 0 to 2 s,
        // the second (queued at 0.6 s) from 2 to 4 s...
        let replace = || {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .replace(NewItem::new("locked", "k", b"v2".to_vec()), 1)
                    .await
            })
        };
        let first = replace();
        tokio::time::sleep(Duration::from_millis(600)).await;
        let second = replace();
        tokio::time::sleep(Duration::from_millis(300)).await;
        // ... so a read queued at 0.9 s finds no free connection by 2.9 s.
        let read = store.get("locked", "k").await;
        assert!(matches!(read, Err(StoreError::Unavailable(_))), "{read:?}");
        for writer in [first, second] {
            let write = writer.await.unwrap();
            assert!(
                matches!(write, Err(StoreError::Unavailable(_))),
                "{write:?}"
            );
        }
    }

    struct KillOnDrop(std::process::Child);
    impl Drop for KillOnDrop {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    /// The server goes away and comes back: operations are `Unavailable`
    /// meanwhile, and the same store works again without a restart.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres_store_recovers_after_a_server_restart() {
        let cluster = pg::Cluster::start(None);
        let mut options = pg_options(cluster.url("postgres"));
        options.timeout = Duration::from_secs(3);
        let store = PgStore::connect(&options).await.expect("connect");
        store
            .put(NewItem::new("p", "s", b"kept".to_vec()))
            .await
            .unwrap();

        cluster.stop_server();
        for _ in 0..3 {
            let err = store.get("p", "s").await.err();
            assert!(matches!(err, Some(StoreError::Unavailable(_))), "{err:?}");
        }
        let err = store.put(NewItem::new("p", "t", vec![])).await.err();
        assert!(matches!(err, Some(StoreError::Unavailable(_))), "{err:?}");

        cluster.start_server();
        let mut got = None;
        for _ in 0..50 {
            match store.get("p", "s").await {
                Ok(item) => {
                    got = item;
                    break;
                }
                Err(StoreError::Unavailable(_)) => {
                    tokio::time::sleep(Duration::from_millis(200)).await
                }
                Err(e) => panic!("after the restart: {e}"),
            }
        }
        assert_eq!(got.expect("the item survived").value, b"kept");
        store
            .put(NewItem::new("p", "t", b"new".to_vec()))
            .await
            .unwrap();
    }

    /// TLS with the server's certificate verified against `ca_file`; a
    /// server whose certificate another CA signed is refused, and so is
    /// one that only the system's roots would have to vouch for.
    #[tokio::test]
    async fn postgres_tls_verifies_the_server_certificate() {
        let (ca_pem, server_tls) = pg::test_ca_and_server_cert();
        let cluster = pg::Cluster::start(Some(&server_tls));
        let dir = tempfile::tempdir().unwrap();
        let ca_file = dir.path().join("ca.pem");
        std::fs::write(&ca_file, &ca_pem).unwrap();
        let (other_ca, _) = pg::test_ca_and_server_cert();
        let other_ca_file = dir.path().join("other-ca.pem");
        std::fs::write(&other_ca_file, &other_ca).unwrap();

        // The server accepts only TLS (pg_hba: hostssl).
        let mut options = pg_options(cluster.url("postgres"));
        options.ca_file = Some(ca_file);
        let store = PgStore::connect(&options)
            .await
            .unwrap_or_else(|e| panic!("TLS connection: {e}\n{}", cluster.log()));
        store
            .put(NewItem::new("tls", "k", b"v".to_vec()))
            .await
            .unwrap();
        assert_eq!(store.get("tls", "k").await.unwrap().unwrap().value, b"v");

        let mut wrong = options.clone();
        wrong.ca_file = Some(other_ca_file);
        let err = PgStore::connect(&wrong)
            .await
            .err()
            .expect("a wrong CA is refused");
        assert!(format!("{err}").contains("certificate"), "{err}");

        let mut system_roots = options.clone();
        system_roots.ca_file = None;
        system_roots.url = format!("{}?sslmode=require", cluster.url("postgres"));
        let err = PgStore::connect(&system_roots)
            .await
            .err()
            .expect("unknown CA");
        assert!(format!("{err}").contains("certificate"), "{err}");

        let mut plain = options.clone();
        plain.ca_file = None;
        plain.url = format!("{}?sslmode=disable", cluster.url("postgres"));
        assert!(
            PgStore::connect(&plain).await.is_err(),
            "no plain connections"
        );

        // A missing CA file is a clear error at start-up.
        let mut missing = options;
        missing.ca_file = Some(dir.path().join("nope.pem"));
        let err = PgStore::new(&missing).err().expect("missing CA file");
        assert!(err.to_string().contains("nope.pem"), "{err}");
    }
}

// ---------------------------------------------------------------------------
// Helpers

const PAST: i64 = -10;
const FUTURE: i64 = 3600;

fn item(pk: &str, sk: &str, value: &[u8]) -> NewItem {
    NewItem::new(pk, sk, value.to_vec())
}

fn expired(pk: &str, sk: &str, value: &[u8]) -> NewItem {
    item(pk, sk, value).expires_at(now_unix() + PAST)
}

async fn value_of(store: &Arc<dyn Store>, pk: &str, sk: &str) -> Option<Vec<u8>> {
    store.get(pk, sk).await.expect("get").map(|i| i.value)
}

fn assert_conflict(result: Result<(), StoreError>, what: &str) {
    match result {
        Err(StoreError::Conflict) => {}
        other => panic!("{what}: expected Conflict, got {other:?}"),
    }
}

/// Runs `n` copies of `f` at once (released together by a barrier) and
/// returns their results.
async fn race<T, F, Fut>(n: usize, f: F) -> Vec<T>
where
    T: Send + 'static,
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = T> + Send + 'static,
{
    let barrier = Arc::new(Barrier::new(n));
    let mut tasks = Vec::with_capacity(n);
    for i in 0..n {
        let barrier = barrier.clone();
        let fut = f(i);
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            fut.await
        }));
    }
    let mut out = Vec::with_capacity(n);
    for t in tasks {
        out.push(t.await.expect("task panicked"));
    }
    out
}

/// Deterministic pseudo-random bytes (xorshift), so that large values are
/// not trivially compressible.
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

// ---------------------------------------------------------------------------
// Properties

async fn get_put_list_and_partitions(store: Arc<dyn Store>) {
    assert!(store.get("p1", "missing").await.unwrap().is_none());
    assert!(store.list("p1").await.unwrap().is_empty());

    // Written out of order; listed in ascending byte order of the sort key.
    for sk in ["b", "a#2", "B", "a", "a#10", "é", "z"] {
        store.put(item("p1", sk, sk.as_bytes())).await.unwrap();
    }
    store
        .put(item("p2", "a", b"other partition"))
        .await
        .unwrap();
    store
        .put(item("p10", "a", b"prefix partition"))
        .await
        .unwrap();

    let listed: Vec<String> = store
        .list("p1")
        .await
        .unwrap()
        .into_iter()
        .map(|i| {
            assert_eq!(i.pk, "p1");
            assert_eq!(i.value, i.sk.as_bytes());
            assert_eq!(i.version, 1);
            i.sk
        })
        .collect();
    assert_eq!(listed, ["B", "a", "a#10", "a#2", "b", "z", "é"]);

    // Partitions are isolated.
    let p2 = store.list("p2").await.unwrap();
    assert_eq!(p2.len(), 1);
    assert_eq!(p2[0].value, b"other partition");
    assert_eq!(store.list("p10").await.unwrap().len(), 1);
    assert!(store.get("p2", "b").await.unwrap().is_none());
    assert!(store.list("p").await.unwrap().is_empty());

    // get returns the whole item; put overwrites and bumps the version.
    let got = store.get("p1", "a").await.unwrap().unwrap();
    assert_eq!(
        (
            got.pk.as_str(),
            got.sk.as_str(),
            got.version,
            got.expires_at
        ),
        ("p1", "a", 1, None)
    );
    let exp = now_unix() + FUTURE;
    store
        .put(item("p1", "a", b"second").expires_at(exp))
        .await
        .unwrap();
    let got = store.get("p1", "a").await.unwrap().unwrap();
    assert_eq!(got.value, b"second");
    assert_eq!(got.version, 2);
    assert_eq!(got.expires_at, Some(exp));
    // ... and a put without expiry removes it.
    store.put(item("p1", "a", b"third")).await.unwrap();
    let got = store.get("p1", "a").await.unwrap().unwrap();
    assert_eq!((got.version, got.expires_at), (3, None));

    // delete removes one item; deleting a missing one is fine.
    store.delete("p1", "a").await.unwrap();
    store.delete("p1", "a").await.unwrap();
    assert!(store.get("p1", "a").await.unwrap().is_none());
    assert_eq!(store.list("p1").await.unwrap().len(), 6);
    assert_eq!(
        value_of(&store, "p2", "a").await.unwrap(),
        b"other partition"
    );
}

async fn insert_conflicts_only_on_live_items(store: Arc<dyn Store>) {
    store.insert(item("ins", "k", b"first")).await.unwrap();
    assert_conflict(
        store.insert(item("ins", "k", b"second")).await,
        "insert over a live item",
    );
    let got = store.get("ins", "k").await.unwrap().unwrap();
    assert_eq!((got.value.as_slice(), got.version), (&b"first"[..], 1));

    // A live item that expires later still blocks.
    store
        .insert(item("ins", "later", b"1").expires_at(now_unix() + FUTURE))
        .await
        .unwrap();
    assert_conflict(
        store.insert(item("ins", "later", b"2")).await,
        "insert over an item that expires later",
    );

    // An expired leftover counts as absent: insert succeeds, version restarts.
    store.put(expired("ins", "old", b"stale")).await.unwrap();
    store
        .put(expired("ins", "old", b"stale again"))
        .await
        .unwrap();
    store.insert(item("ins", "old", b"fresh")).await.unwrap();
    let got = store.get("ins", "old").await.unwrap().unwrap();
    assert_eq!(got.value, b"fresh");
    assert_eq!(got.version, 1);
    assert_eq!(got.expires_at, None);
}

async fn replace_checks_the_version(store: Arc<dyn Store>) {
    assert_conflict(
        store.replace(item("rep", "k", b"x"), 1).await,
        "replace of a missing item",
    );
    assert!(store.get("rep", "k").await.unwrap().is_none());

    store.insert(item("rep", "k", b"v1")).await.unwrap();
    store.replace(item("rep", "k", b"v2"), 1).await.unwrap();
    let got = store.get("rep", "k").await.unwrap().unwrap();
    assert_eq!((got.value.as_slice(), got.version), (&b"v2"[..], 2));

    assert_conflict(
        store.replace(item("rep", "k", b"stale"), 1).await,
        "replace with an old version",
    );
    assert_conflict(
        store.replace(item("rep", "k", b"future"), 3).await,
        "replace with a future version",
    );
    assert_eq!(value_of(&store, "rep", "k").await.unwrap(), b"v2");

    let exp = now_unix() + FUTURE;
    store
        .replace(item("rep", "k", b"v3").expires_at(exp), 2)
        .await
        .unwrap();
    let got = store.get("rep", "k").await.unwrap().unwrap();
    assert_eq!(
        (got.value.as_slice(), got.version, got.expires_at),
        (&b"v3"[..], 3, Some(exp))
    );
}

async fn delete_version_checks_the_version(store: Arc<dyn Store>) {
    let del = |version| {
        vec![Write::DeleteVersion {
            pk: "dv".into(),
            sk: "k".into(),
            expected_version: version,
        }]
    };
    assert_conflict(
        store.transact(del(1)).await,
        "DeleteVersion of a missing item",
    );

    store.put(item("dv", "k", b"a")).await.unwrap();
    store.put(item("dv", "k", b"b")).await.unwrap();
    assert_conflict(store.transact(del(1)).await, "DeleteVersion, old version");
    assert_conflict(
        store.transact(del(3)).await,
        "DeleteVersion, future version",
    );
    assert_eq!(value_of(&store, "dv", "k").await.unwrap(), b"b");

    store.transact(del(2)).await.unwrap();
    assert!(store.get("dv", "k").await.unwrap().is_none());
    assert_conflict(store.transact(del(2)).await, "DeleteVersion twice");
}

async fn transact_is_all_or_nothing(store: Arc<dyn Store>) {
    store.put(item("tx", "existing", b"keep")).await.unwrap();
    store.put(item("tx", "versioned", b"v1")).await.unwrap();
    store
        .put(item("tx", "doomed", b"still here"))
        .await
        .unwrap();

    // A failing condition in the middle: nothing before or after it applies.
    let failing_middles = [
        Write::Insert(item("tx", "existing", b"clobbered")),
        Write::Replace {
            item: item("tx", "versioned", b"clobbered"),
            expected_version: 7,
        },
        Write::DeleteVersion {
            pk: "tx".into(),
            sk: "versioned".into(),
            expected_version: 2,
        },
        Write::Replace {
            item: item("tx", "missing", b"x"),
            expected_version: 1,
        },
    ];
    for middle in failing_middles {
        let writes = vec![
            Write::Put(item("tx", "new-before", b"x")),
            Write::Delete {
                pk: "tx".into(),
                sk: "doomed".into(),
            },
            middle.clone(),
            Write::Insert(item("tx", "new-after", b"x")),
        ];
        assert_conflict(store.transact(writes).await, &format!("{middle:?}"));
        assert!(store.get("tx", "new-before").await.unwrap().is_none());
        assert!(store.get("tx", "new-after").await.unwrap().is_none());
        assert!(store.get("tx", "missing").await.unwrap().is_none());
        assert_eq!(
            value_of(&store, "tx", "doomed").await.unwrap(),
            b"still here"
        );
        assert_eq!(value_of(&store, "tx", "existing").await.unwrap(), b"keep");
        let versioned = store.get("tx", "versioned").await.unwrap().unwrap();
        assert_eq!(
            (versioned.value.as_slice(), versioned.version),
            (&b"v1"[..], 1)
        );
    }

    // All conditions hold: everything applies.
    store
        .transact(vec![
            Write::Put(item("tx", "existing", b"overwritten")),
            Write::Insert(item("tx", "inserted", b"new")),
            Write::Replace {
                item: item("tx", "versioned", b"v2"),
                expected_version: 1,
            },
            Write::Delete {
                pk: "tx".into(),
                sk: "doomed".into(),
            },
            Write::Delete {
                pk: "tx".into(),
                sk: "never-existed".into(),
            },
        ])
        .await
        .unwrap();
    let existing = store.get("tx", "existing").await.unwrap().unwrap();
    assert_eq!(
        (existing.value.as_slice(), existing.version),
        (&b"overwritten"[..], 2)
    );
    assert_eq!(value_of(&store, "tx", "inserted").await.unwrap(), b"new");
    let versioned = store.get("tx", "versioned").await.unwrap().unwrap();
    assert_eq!(
        (versioned.value.as_slice(), versioned.version),
        (&b"v2"[..], 2)
    );
    assert!(store.get("tx", "doomed").await.unwrap().is_none());

    store
        .transact(vec![
            Write::DeleteVersion {
                pk: "tx".into(),
                sk: "versioned".into(),
                expected_version: 2,
            },
            Write::Put(item("tx", "after-delete", b"y")),
        ])
        .await
        .unwrap();
    assert!(store.get("tx", "versioned").await.unwrap().is_none());
    let sks: Vec<String> = store
        .list("tx")
        .await
        .unwrap()
        .into_iter()
        .map(|i| i.sk)
        .collect();
    assert_eq!(sks, ["after-delete", "existing", "inserted"]);

    // The documented limits: empty is a no-op, more than 25 is refused.
    store.transact(vec![]).await.unwrap();
    let too_many = (0..26)
        .map(|i| Write::Put(item("tx-many", &format!("{i:02}"), b"x")))
        .collect();
    assert!(store.transact(too_many).await.is_err());
    assert!(store.list("tx-many").await.unwrap().is_empty());
    let max = (0..25)
        .map(|i| Write::Insert(item("tx-many", &format!("{i:02}"), b"x")))
        .collect();
    store.transact(max).await.unwrap();
    assert_eq!(store.list("tx-many").await.unwrap().len(), 25);
}

async fn expiry_is_checked_on_read(store: Arc<dyn Store>) {
    store.put(expired("exp", "gone", b"old")).await.unwrap();
    store.put(item("exp", "live", b"here")).await.unwrap();
    let later = now_unix() + FUTURE;
    store
        .put(item("exp", "later", b"soon gone").expires_at(later))
        .await
        .unwrap();

    // get / list
    assert!(store.get("exp", "gone").await.unwrap().is_none());
    let listed: Vec<(String, Option<i64>)> = store
        .list("exp")
        .await
        .unwrap()
        .into_iter()
        .map(|i| (i.sk, i.expires_at))
        .collect();
    assert_eq!(
        listed,
        [("later".to_owned(), Some(later)), ("live".to_owned(), None)]
    );
    store.put(expired("exp-only", "a", b"x")).await.unwrap();
    assert!(store.list("exp-only").await.unwrap().is_empty());

    // take
    assert!(store.take("exp", "gone").await.unwrap().is_none());

    // replace / DeleteVersion: an expired item has no version to match.
    store.put(expired("exp", "gone", b"old")).await.unwrap();
    assert_conflict(
        store.replace(item("exp", "gone", b"revived"), 1).await,
        "replace of an expired item",
    );
    assert_conflict(
        store
            .transact(vec![Write::DeleteVersion {
                pk: "exp".into(),
                sk: "gone".into(),
                expected_version: 1,
            }])
            .await,
        "DeleteVersion of an expired item",
    );
    assert!(store.get("exp", "gone").await.unwrap().is_none());

    // A put over an expired leftover starts a new item at version 1.
    store.put(item("exp", "gone", b"new life")).await.unwrap();
    let got = store.get("exp", "gone").await.unwrap().unwrap();
    assert_eq!(
        (got.value.as_slice(), got.version, got.expires_at),
        (&b"new life"[..], 1, None)
    );

    // The same inside a multi-write transaction.
    store.put(expired("exp", "tx", b"old")).await.unwrap();
    store
        .transact(vec![
            Write::Put(item("exp", "tx", b"tx life")),
            Write::Insert(item("exp", "tx-other", b"x")),
        ])
        .await
        .unwrap();
    let got = store.get("exp", "tx").await.unwrap().unwrap();
    assert_eq!((got.value.as_slice(), got.version), (&b"tx life"[..], 1));
}

async fn take_returns_the_item_once(store: Arc<dyn Store>) {
    assert!(store.take("take", "missing").await.unwrap().is_none());

    let exp = now_unix() + FUTURE;
    store
        .put(item("take", "code", b"secret").expires_at(exp))
        .await
        .unwrap();
    store
        .put(item("take", "code", b"secret2").expires_at(exp))
        .await
        .unwrap();
    store.put(item("take", "sibling", b"stays")).await.unwrap();

    let taken = store.take("take", "code").await.unwrap().unwrap();
    assert_eq!(
        (
            taken.pk.as_str(),
            taken.sk.as_str(),
            taken.value.as_slice(),
            taken.version,
            taken.expires_at
        ),
        ("take", "code", &b"secret2"[..], 2, Some(exp))
    );
    assert!(store.take("take", "code").await.unwrap().is_none());
    assert!(store.get("take", "code").await.unwrap().is_none());
    assert_eq!(value_of(&store, "take", "sibling").await.unwrap(), b"stays");
    let listed: Vec<String> = store
        .list("take")
        .await
        .unwrap()
        .into_iter()
        .map(|i| i.sk)
        .collect();
    assert_eq!(listed, ["sibling"]);
    // A taken key is free again.
    store.insert(item("take", "code", b"next")).await.unwrap();
    assert_eq!(value_of(&store, "take", "code").await.unwrap(), b"next");

    // The JSON helpers go through the same path.
    store
        .put(NewItem::json("take", "json", &serde_json::json!({"n": 1})).unwrap())
        .await
        .unwrap();
    let v: Option<serde_json::Value> = store.take_json("take", "json").await.unwrap();
    assert_eq!(v, Some(serde_json::json!({"n": 1})));
    let v: Option<serde_json::Value> = store.take_json("take", "json").await.unwrap();
    assert_eq!(v, None);
}

const RACERS: usize = 50;

async fn concurrent_take_is_exactly_once(store: Arc<dyn Store>) {
    for round in 0..3 {
        let sk = format!("code-{round}");
        store
            .put(item("race-take", &sk, b"single use").expires_at(now_unix() + FUTURE))
            .await
            .unwrap();
        let results = race(RACERS, |_| {
            let (store, sk) = (store.clone(), sk.clone());
            async move { store.take("race-take", &sk).await }
        })
        .await;
        let winners: Vec<_> = results
            .into_iter()
            .filter_map(|r| r.expect("take failed"))
            .collect();
        assert_eq!(winners.len(), 1, "round {round}: {winners:?}");
        assert_eq!(winners[0].value, b"single use");
        assert!(store.get("race-take", &sk).await.unwrap().is_none());
    }
}

async fn concurrent_insert_is_exactly_once(store: Arc<dyn Store>) {
    let results = race(RACERS, |i| {
        let store = store.clone();
        async move {
            store
                .insert(item("race-insert", "k", format!("{i}").as_bytes()))
                .await
                .map(|()| i)
        }
    })
    .await;
    let mut winners = Vec::new();
    for r in results {
        match r {
            Ok(i) => winners.push(i),
            Err(StoreError::Conflict) => {}
            Err(e) => panic!("insert failed with {e}"),
        }
    }
    assert_eq!(winners.len(), 1, "winners: {winners:?}");
    let got = store.get("race-insert", "k").await.unwrap().unwrap();
    assert_eq!(got.value, format!("{}", winners[0]).as_bytes());
    assert_eq!(got.version, 1);
}

async fn concurrent_replace_is_exactly_once(store: Arc<dyn Store>) {
    store.put(item("race-replace", "k", b"v1")).await.unwrap();
    store.put(item("race-replace", "k", b"v2")).await.unwrap();
    let results = race(RACERS, |i| {
        let store = store.clone();
        async move {
            store
                .replace(item("race-replace", "k", format!("{i}").as_bytes()), 2)
                .await
                .map(|()| i)
        }
    })
    .await;
    let mut winners = Vec::new();
    for r in results {
        match r {
            Ok(i) => winners.push(i),
            Err(StoreError::Conflict) => {}
            Err(e) => panic!("replace failed with {e}"),
        }
    }
    assert_eq!(winners.len(), 1, "winners: {winners:?}");
    let got = store.get("race-replace", "k").await.unwrap().unwrap();
    assert_eq!(got.value, format!("{}", winners[0]).as_bytes());
    assert_eq!(got.version, 3);
}

async fn concurrent_increment_counts_every_call(store: Arc<dyn Store>) {
    let window = now_unix() + FUTURE;
    let results = race(RACERS, |_| {
        let store = store.clone();
        async move { store.increment("race-count", "ip", window).await }
    })
    .await;
    let mut counts: Vec<u64> = results
        .into_iter()
        .map(|r| r.expect("increment failed"))
        .collect();
    counts.sort_unstable();
    assert_eq!(counts, (1..=RACERS as u64).collect::<Vec<_>>());

    let got = store.get("race-count", "ip").await.unwrap().unwrap();
    assert_eq!(got.value, RACERS.to_string().as_bytes());
    assert_eq!(got.expires_at, Some(window));
    assert_eq!(
        store.increment("race-count", "ip", window).await.unwrap(),
        51
    );
    // Other counters are separate.
    assert_eq!(
        store
            .increment("race-count", "other", window)
            .await
            .unwrap(),
        1
    );
}

async fn increment_restarts_after_expiry(store: Arc<dyn Store>) {
    // A window that is already over restarts on every call.
    let over = now_unix() + PAST;
    assert_eq!(store.increment("count", "a", over).await.unwrap(), 1);
    assert_eq!(store.increment("count", "a", over).await.unwrap(), 1);
    assert!(store.get("count", "a").await.unwrap().is_none());

    // A live window counts up and keeps its first expiry.
    let window = now_unix() + FUTURE;
    assert_eq!(store.increment("count", "a", window).await.unwrap(), 1);
    assert_eq!(
        store.increment("count", "a", window + 100).await.unwrap(),
        2
    );
    assert_eq!(
        store.increment("count", "a", window + 200).await.unwrap(),
        3
    );
    let got = store.get("count", "a").await.unwrap().unwrap();
    assert_eq!(got.value, b"3");
    assert_eq!(got.expires_at, Some(window));

    // An expired counter (here: written directly) starts over at 1.
    store.put(expired("count", "b", b"41")).await.unwrap();
    assert_eq!(store.increment("count", "b", window).await.unwrap(), 1);
    let got = store.get("count", "b").await.unwrap().unwrap();
    assert_eq!(
        (got.value.as_slice(), got.expires_at),
        (&b"1"[..], Some(window))
    );

    // A counter can be taken (reset) like any item.
    let taken = store.take("count", "a").await.unwrap().unwrap();
    assert_eq!(taken.value, b"3");
    assert_eq!(store.increment("count", "a", window).await.unwrap(), 1);
}

async fn binary_values_round_trip(store: Arc<dyn Store>) {
    let all_bytes: Vec<u8> = (0..=255u8).collect();
    let not_utf8 = vec![0xff, 0xfe, 0x00, 0xc3, 0x28, 0x00];
    let cases: [(&str, &[u8]); 4] = [
        ("all", &all_bytes),
        ("not-utf8", &not_utf8),
        ("empty", b""),
        ("nul", b"\0"),
    ];
    for (sk, value) in cases {
        store.put(item("bin", sk, value)).await.unwrap();
        assert_eq!(value_of(&store, "bin", sk).await.unwrap(), value, "{sk}");
    }
    let listed = store.list("bin").await.unwrap();
    assert_eq!(listed.len(), 4);
    for i in &listed {
        let expected = cases.iter().find(|(sk, _)| *sk == i.sk).unwrap().1;
        assert_eq!(i.value, expected, "list {}", i.sk);
    }
    store
        .transact(vec![
            Write::Insert(item("bin", "tx-a", &all_bytes)),
            Write::Insert(item("bin", "tx-b", &not_utf8)),
        ])
        .await
        .unwrap();
    assert_eq!(
        store.take("bin", "tx-a").await.unwrap().unwrap().value,
        all_bytes
    );
    assert_eq!(
        store.take("bin", "tx-b").await.unwrap().unwrap().value,
        not_utf8
    );
    assert_eq!(
        store.take("bin", "empty").await.unwrap().unwrap().value,
        b""
    );
}

async fn large_values_round_trip(store: Arc<dyn Store>) {
    let big = noise(100 * 1024, 7);
    store.put(item("big", "a", &big)).await.unwrap();
    assert_eq!(value_of(&store, "big", "a").await.unwrap(), big);

    let bigger = noise(200 * 1024, 11);
    store.replace(item("big", "a", &bigger), 1).await.unwrap();
    assert_eq!(value_of(&store, "big", "a").await.unwrap(), bigger);

    store
        .transact(vec![
            Write::Insert(item("big", "b", &big)),
            Write::Insert(item("big", "c", &noise(100 * 1024, 13))),
        ])
        .await
        .unwrap();
    let listed = store.list("big").await.unwrap();
    let lens: Vec<usize> = listed.iter().map(|i| i.value.len()).collect();
    assert_eq!(lens, [200 * 1024, 100 * 1024, 100 * 1024]);
    assert_eq!(listed[1].value, big);

    assert_eq!(store.take("big", "a").await.unwrap().unwrap().value, bigger);
}

// ---------------------------------------------------------------------------
// SQLite only: several processes share one database file.

/// Two `SqliteStore` handles on one file, as two processes would have.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_two_handles_share_one_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shared.db");
    let a: Arc<dyn Store> = Arc::new(SqliteStore::open(&path).unwrap());
    let b: Arc<dyn Store> = Arc::new(SqliteStore::open(&path).unwrap());

    // Each sees the other's writes.
    a.put(item("shared", "from-a", b"1")).await.unwrap();
    assert_eq!(value_of(&b, "shared", "from-a").await.unwrap(), b"1");
    b.replace(item("shared", "from-a", b"2"), 1).await.unwrap();
    assert_eq!(value_of(&a, "shared", "from-a").await.unwrap(), b"2");
    assert_conflict(
        a.insert(item("shared", "from-a", b"3")).await,
        "insert over the other handle's item",
    );
    assert_eq!(b.list("shared").await.unwrap().len(), 1);

    // take is exactly-once across handles.
    let stores = [a.clone(), b.clone()];
    for round in 0..3 {
        let sk = format!("code-{round}");
        a.put(item("shared", &sk, b"once")).await.unwrap();
        let results = race(RACERS, |i| {
            let (store, sk) = (stores[i % 2].clone(), sk.clone());
            async move { store.take("shared", &sk).await }
        })
        .await;
        let winners = results
            .into_iter()
            .filter_map(|r| r.expect("take failed"))
            .count();
        assert_eq!(winners, 1, "round {round}");
    }

    // So are inserts, and counters count across handles.
    let results = race(RACERS, |i| {
        let store = stores[i % 2].clone();
        async move { store.insert(item("shared", "ins", b"x")).await }
    })
    .await;
    assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 1);
    assert!(
        results
            .iter()
            .all(|r| matches!(r, Ok(()) | Err(StoreError::Conflict)))
    );
    let window = now_unix() + FUTURE;
    let results = race(RACERS, |i| {
        let store = stores[i % 2].clone();
        async move { store.increment("shared", "count", window).await.unwrap() }
    })
    .await;
    assert_eq!(
        results.into_iter().collect::<HashSet<_>>(),
        (1..=RACERS as u64).collect::<HashSet<_>>()
    );

    // A third handle opened later (a restart) sees everything.
    drop((a, b, stores));
    let c = SqliteStore::open(&path).unwrap();
    assert_eq!(c.list("shared").await.unwrap().len(), 3);
}
