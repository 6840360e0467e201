//! Start-up wiring shared by the binary's subcommands: opening the configured
//! store and obtaining the master key. Runs once per process (or Lambda
//! execution environment), never per request.

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
            let master_key = match &args.master_key {
                Some(secret) => MasterKey::from_secret(secret).map_err(anyhow::Error::msg)?,
                None => local_master_key(&args.data_dir)?,
            };
            let path = args.data_dir.join("passgate.sqlite3");
            let store = SqliteStore::open(&path)
                .with_context(|| format!("cannot open the store at {}", path.display()))?;
            Ok((Arc::new(store), master_key))
        }
        StoreKind::Dynamodb => {
            bail!(
                "this passgate was built without DynamoDB support; rebuild with `--features dynamodb`"
            )
        }
    }
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
