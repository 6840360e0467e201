//! Access-token signing keys (ES256). Private keys are stored encrypted
//! under the master key, so every instance signs with the same keys and a
//! restart signs nobody out. Rotation adds a newer key; older keys stay
//! published (and accepted) until `passgate keys prune` removes them.
//!
//! Keys: `signing-keys` / `<created_at, zero-padded>#<kid>`.

use std::{
    collections::HashMap,
    sync::{Arc, RwLock},
    time::{Duration, Instant},
};

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header};
use p256::{
    ecdsa::SigningKey,
    pkcs8::{DecodePrivateKey, EncodePrivateKey},
};
use rand::rngs::OsRng;
use serde::{Deserialize, Serialize};

use crate::{
    crypto::{self, MasterKey},
    store::{NewItem, Store, StoreError, now_unix},
};

const PARTITION: &str = crate::store::keys::SIGNING_KEYS;
const PURPOSE: &str = "access-token-signing-key";
/// Forged tokens with made-up key ids must not turn into store reads.
const MIN_RELOAD_INTERVAL: Duration = Duration::from_secs(10);
const PERIODIC_RELOAD: Duration = Duration::from_secs(300);

#[derive(Serialize, Deserialize)]
struct StoredKey {
    kid: String,
    created_at: i64,
    /// PKCS#8 DER, sealed under the master key with the kid as context.
    sealed_private_key: String,
    x: String,
    y: String,
}

struct LoadedKey {
    kid: String,
    encoding: EncodingKey,
}

struct KeySet {
    active: LoadedKey,
    verifying: HashMap<String, DecodingKey>,
    jwks: serde_json::Value,
}

/// The signing keys, loaded once and shared by every request.
#[derive(Clone)]
pub struct SigningKeys {
    inner: Arc<RwLock<KeySet>>,
    last_reload: Arc<RwLock<Instant>>,
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("signing key {0} cannot be decrypted: is the master key the one it was created with?")]
    Decrypt(String),
    #[error("signing key {0} is malformed")]
    Malformed(String),
}

fn new_stored_key(master: &MasterKey) -> StoredKey {
    let signing = SigningKey::random(&mut OsRng);
    let der = signing
        .to_pkcs8_der()
        .expect("PKCS#8 encoding of a fresh P-256 key succeeds");
    let point = signing.verifying_key().to_encoded_point(false);
    let kid = crypto::random_token(12);
    StoredKey {
        sealed_private_key: URL_SAFE_NO_PAD.encode(master.seal(
            PURPOSE,
            kid.as_bytes(),
            der.as_bytes(),
        )),
        kid,
        created_at: now_unix(),
        x: URL_SAFE_NO_PAD.encode(point.x().expect("uncompressed point has x")),
        y: URL_SAFE_NO_PAD.encode(point.y().expect("uncompressed point has y")),
    }
}

async fn insert_key(store: &dyn Store, key: &StoredKey) -> Result<(), StoreError> {
    store
        .insert(NewItem::json(
            PARTITION,
            format!("{:020}#{}", key.created_at, key.kid),
            key,
        )?)
        .await
}

async fn load(store: &dyn Store, master: &MasterKey) -> Result<Option<KeySet>, KeyError> {
    let stored: Vec<StoredKey> = store
        .list(PARTITION)
        .await?
        .iter()
        .map(|i| i.json())
        .collect::<Result<_, _>>()?;
    // Sort keys ascend by creation time: the last is the active one.
    let Some(newest) = stored.last() else {
        return Ok(None);
    };
    let sealed = URL_SAFE_NO_PAD
        .decode(&newest.sealed_private_key)
        .map_err(|_| KeyError::Malformed(newest.kid.clone()))?;
    let der = master
        .open(PURPOSE, newest.kid.as_bytes(), &sealed)
        .map_err(|_| KeyError::Decrypt(newest.kid.clone()))?;
    // Round-trip through p256 to validate before handing it to the JWT crate.
    SigningKey::from_pkcs8_der(&der).map_err(|_| KeyError::Malformed(newest.kid.clone()))?;
    let active = LoadedKey {
        kid: newest.kid.clone(),
        encoding: EncodingKey::from_ec_der(&der),
    };
    let mut verifying = HashMap::new();
    let mut jwks = Vec::new();
    for key in &stored {
        let decoding = DecodingKey::from_ec_components(&key.x, &key.y)
            .map_err(|_| KeyError::Malformed(key.kid.clone()))?;
        verifying.insert(key.kid.clone(), decoding);
        jwks.push(serde_json::json!({
            "kty": "EC", "crv": "P-256", "x": key.x, "y": key.y,
            "kid": key.kid, "use": "sig", "alg": "ES256",
        }));
    }
    jwks.reverse(); // newest first
    Ok(Some(KeySet {
        active,
        verifying,
        jwks: serde_json::json!({ "keys": jwks }),
    }))
}

impl SigningKeys {
    /// Loads the keys, creating the first one if the store has none. Two
    /// instances starting together may both create one; both are then valid.
    pub async fn load_or_create(store: &dyn Store, master: &MasterKey) -> Result<Self, KeyError> {
        let set = match load(store, master).await? {
            Some(set) => set,
            None => {
                insert_key(store, &new_stored_key(master)).await?;
                load(store, master).await?.expect("a key was just inserted")
            }
        };
        Ok(Self {
            inner: Arc::new(RwLock::new(set)),
            last_reload: Arc::new(RwLock::new(Instant::now())),
        })
    }

    /// Adds a newer key, which becomes the active one for every instance as
    /// it next reloads. Returns the new key id.
    pub async fn rotate(store: &dyn Store, master: &MasterKey) -> Result<String, KeyError> {
        let key = new_stored_key(master);
        insert_key(store, &key).await?;
        Ok(key.kid)
    }

    /// Removes all but the newest `keep` keys. Tokens signed by a removed
    /// key stop working, so wait an access-token lifetime after rotating.
    pub async fn prune(store: &dyn Store, keep: usize) -> Result<usize, KeyError> {
        let items = store.list(PARTITION).await?;
        let remove = items.len().saturating_sub(keep.max(1));
        for item in &items[..remove] {
            store.delete(&item.pk, &item.sk).await?;
        }
        Ok(remove)
    }

    /// Signs an access token (`typ` `at+jwt`, RFC 9068).
    pub fn sign<T: Serialize>(&self, claims: &T) -> String {
        self.sign_typed("at+jwt", claims)
    }

    /// Signs a JWT of another type with the active key, so anything that
    /// verifies against the JWKS can check it, and the type tells it apart
    /// from an access token.
    pub fn sign_typed<T: Serialize>(&self, typ: &str, claims: &T) -> String {
        let set = self.inner.read().expect("key set lock");
        let mut header = Header::new(Algorithm::ES256);
        header.typ = Some(typ.into());
        header.kid = Some(set.active.kid.clone());
        jsonwebtoken::encode(&header, claims, &set.active.encoding)
            .expect("signing with a validated P-256 key succeeds")
    }

    pub fn active_kid(&self) -> String {
        self.inner.read().expect("key set lock").active.kid.clone()
    }

    pub fn decoding_key(&self, kid: &str) -> Option<DecodingKey> {
        self.inner
            .read()
            .expect("key set lock")
            .verifying
            .get(kid)
            .cloned()
    }

    /// Re-reads the keys after another instance rotated them. Rate-limited
    /// so that tokens with invented key ids cannot hammer the store.
    pub async fn reload_if_due(&self, store: &dyn Store, master: &MasterKey) -> bool {
        {
            let mut last = self.last_reload.write().expect("reload lock");
            if last.elapsed() < MIN_RELOAD_INTERVAL {
                return false;
            }
            *last = Instant::now();
        }
        self.reload(store, master).await
    }

    async fn reload(&self, store: &dyn Store, master: &MasterKey) -> bool {
        match load(store, master).await {
            Ok(Some(set)) => {
                *self.inner.write().expect("key set lock") = set;
                true
            }
            Ok(None) => false,
            Err(e) => {
                tracing::warn!(error = %e, "could not reload signing keys");
                false
            }
        }
    }

    /// Re-reads the keys every few minutes, so that a rotation done with
    /// `passgate keys rotate` reaches every running instance without a
    /// restart (verification also reloads at once on an unknown key id).
    pub fn spawn_periodic_reload(
        &self,
        store: std::sync::Arc<dyn Store>,
        master: MasterKey,
        shutdown: tokio_util::sync::CancellationToken,
    ) {
        let keys = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(PERIODIC_RELOAD);
            tick.tick().await; // the first tick is immediate
            loop {
                tokio::select! {
                    _ = tick.tick() => {
                        keys.reload(store.as_ref(), &master).await;
                    }
                    _ = shutdown.cancelled() => return,
                }
            }
        });
    }

    pub fn jwks(&self) -> serde_json::Value {
        self.inner.read().expect("key set lock").jwks.clone()
    }
}
