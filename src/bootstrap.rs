//! Start-up wiring shared by the binary's subcommands: opening the configured
//! store and obtaining the master key. Runs once per process (or Lambda
//! execution environment), never per request.
//!
//! The master key comes from `PASSGATE_MASTER_KEY`, or from the Secrets
//! Manager secret named by `PASSGATE_MASTER_KEY_SECRET`; with SQLite and
//! neither, from `master.key` in the data directory (created on first start).

use std::{path::Path, sync::Arc};

use anyhow::{Context, bail};

use crate::{
    config::{CommonArgs, StoreKind},
    crypto::MasterKey,
    store::{Store, sqlite::SqliteStore},
};

pub async fn open_store(args: &CommonArgs) -> anyhow::Result<(Arc<dyn Store>, MasterKey)> {
    match args.store {
        StoreKind::Sqlite => {
            std::fs::create_dir_all(&args.data_dir).with_context(|| {
                format!(
                    "cannot create the data directory {}",
                    args.data_dir.display()
                )
            })?;
            let master_key = match configured_master_key(args).await? {
                Some(key) => key,
                None => local_master_key(&args.data_dir)?,
            };
            let path = args.data_dir.join("passgate.sqlite3");
            let store = SqliteStore::open(&path)
                .with_context(|| format!("cannot open the store at {}", path.display()))?;
            Ok((Arc::new(store), master_key))
        }
        StoreKind::Dynamodb => open_dynamodb(args).await,
        StoreKind::Postgres => open_postgres(args).await,
    }
}

/// Whether start-up failed only because the store cannot be reached now
/// (the database is away): `serve` keeps answering 503 and tries again.
pub fn is_unavailable(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        matches!(
            cause.downcast_ref::<crate::store::StoreError>(),
            Some(crate::store::StoreError::Unavailable(_))
        )
    })
}

#[cfg(feature = "postgres")]
async fn open_postgres(args: &CommonArgs) -> anyhow::Result<(Arc<dyn Store>, MasterKey)> {
    use crate::store::postgres::{PgOptions, PgStore};
    let url = args
        .database_url
        .as_ref()
        .filter(|url| !url.0.is_empty())
        .context(
            "`--store postgres` needs the database: set PASSGATE_DATABASE_URL (or --database-url)",
        )?;
    // No master.key fallback: every instance must use the same key.
    let master_key = configured_master_key(args).await?.context(
        "`--store postgres` needs the master key, the same on every instance: set \
         PASSGATE_MASTER_KEY (or PASSGATE_MASTER_KEY_SECRET)",
    )?;
    let options = PgOptions {
        url: url.0.clone(),
        ca_file: args.database_ca_file.clone(),
        max_connections: args.database_max_connections,
        timeout: std::time::Duration::from_secs(args.database_timeout_secs.max(1)),
    };
    // Never name the URL in errors: it may hold the password.
    let store = Arc::new(PgStore::new(&options)?);
    store
        .migrate()
        .await
        .context("cannot prepare the PostgreSQL database")?;
    store.spawn_purge();
    Ok((store, master_key))
}

#[cfg(not(feature = "postgres"))]
async fn open_postgres(_args: &CommonArgs) -> anyhow::Result<(Arc<dyn Store>, MasterKey)> {
    bail!("this passgate was built without PostgreSQL support; rebuild with `--features postgres`")
}

#[cfg(feature = "dynamodb")]
async fn open_dynamodb(args: &CommonArgs) -> anyhow::Result<(Arc<dyn Store>, MasterKey)> {
    use crate::store::dynamodb::DynamoStore;
    let table = args
        .dynamodb_table
        .as_deref()
        .filter(|table| !table.is_empty())
        .context(
            "`--store dynamodb` needs a table: set PASSGATE_DYNAMODB_TABLE (or --dynamodb-table)",
        )?;
    // No master.key fallback: every instance must use the same key, and
    // Lambda has no lasting disk.
    let master_key = configured_master_key(args).await?.context(
        "`--store dynamodb` needs the master key: set PASSGATE_MASTER_KEY_SECRET to the \
         Secrets Manager secret that holds it (or PASSGATE_MASTER_KEY to the key itself)",
    )?;
    let store = DynamoStore::connect(table)
        .await
        .with_context(|| format!("cannot use the DynamoDB table {table}"))?;
    Ok((Arc::new(store), master_key))
}

#[cfg(not(feature = "dynamodb"))]
async fn open_dynamodb(_args: &CommonArgs) -> anyhow::Result<(Arc<dyn Store>, MasterKey)> {
    bail!("this passgate was built without DynamoDB support; rebuild with `--features dynamodb`")
}

/// The master key from `--master-key` or `--master-key-secret`, if either is
/// set.
async fn configured_master_key(args: &CommonArgs) -> anyhow::Result<Option<MasterKey>> {
    match (&args.master_key, &args.master_key_secret) {
        (Some(_), Some(_)) => bail!(
            "set the master key (PASSGATE_MASTER_KEY) or the secret that holds it \
             (PASSGATE_MASTER_KEY_SECRET), not both"
        ),
        (Some(secret), None) => MasterKey::from_secret(secret)
            .map(Some)
            .map_err(anyhow::Error::msg),
        (None, Some(secret_id)) => master_key_from_secret(secret_id).await.map(Some),
        (None, None) => Ok(None),
    }
}

#[cfg(feature = "aws")]
async fn master_key_from_secret(secret_id: &str) -> anyhow::Result<MasterKey> {
    let secret = crate::aws::secret_string(secret_id).await?;
    MasterKey::from_secret(&secret)
        .map_err(|e| anyhow::anyhow!("the master key in the secret {secret_id}: {e}"))
}

#[cfg(not(feature = "aws"))]
async fn master_key_from_secret(_secret_id: &str) -> anyhow::Result<MasterKey> {
    bail!(
        "PASSGATE_MASTER_KEY_SECRET needs a passgate built with AWS support; \
         rebuild with `--features dynamodb`"
    )
}

/// Reads `master.key` from the data directory, creating it (readable by the
/// owner only) on first start.
fn local_master_key(data_dir: &Path) -> anyhow::Result<MasterKey> {
    let path = data_dir.join("master.key");
    match std::fs::read_to_string(&path) {
        Ok(secret) => {
            MasterKey::from_secret(&secret).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let secret = MasterKey::generate_secret();
            write_private(&path, &secret)
                .with_context(|| format!("cannot write {}", path.display()))?;
            tracing::info!(path = %path.display(), "created a new master key");
            MasterKey::from_secret(&secret).map_err(anyhow::Error::msg)
        }
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path)?.write_all(contents.as_bytes())
}
