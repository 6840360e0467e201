//! Each person's own key for a gateway route whose backend wants one (an API
//! token for their account at that service), set on their account page.
//!
//! A key is sealed under the master key, bound to the person and the route,
//! so a copy of the database reveals none and a sealed key moved to another
//! person's item does not open. It is only ever opened to be injected into
//! that route's requests for that person: never shown again, never logged.
//! Disabling or deleting the person deletes their keys with the rest of
//! their access.
//!
//! Keys: `user#<id>` / `personal-key#<route path>`, a `StoredKey`, in the
//! person's partition, so listing it finds every key they have.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use serde::{Deserialize, Serialize};

use crate::{
    crypto::MasterKey,
    error::Error,
    store::{NewItem, Store, StoreError, now_unix},
};

/// Longest key accepted: tokens of real services are far shorter.
pub const MAX_KEY_CHARS: usize = 4096;
const SEAL_PURPOSE: &str = "personal-key";
const SK_PREFIX: &str = "personal-key#";

#[derive(Serialize, Deserialize)]
struct StoredKey {
    /// The key, sealed (nonce and ciphertext, base64url).
    sealed: String,
    set_at: i64,
}

/// That a person has set a key for a route, and when; never the key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeySet {
    pub route_path: String,
    pub set_at: i64,
}

fn user_pk(user_id: &str) -> String {
    crate::store::keys::Partition::User(user_id).key()
}

fn key_sk(route_path: &str) -> String {
    format!("{SK_PREFIX}{route_path}")
}

/// What the seal authenticates: whose key, for which route.
fn context(user_id: &str, route_path: &str) -> Vec<u8> {
    format!("{user_id}\n{route_path}").into_bytes()
}

/// Where on the account page a person sets their key for the route at
/// `route_path`: what a call without one points them to.
pub fn account_anchor(route_path: &str) -> String {
    format!("/account#key{}", route_path.replace('/', "-"))
}

/// Checks a key as pasted: surrounding white space is dropped; what remains
/// must be a header value (visible ASCII and inner spaces).
pub fn normalize(raw: &str) -> Result<String, Error> {
    let key = raw.trim();
    if key.is_empty() {
        return Err(Error::bad_request("Paste the key: the field was empty."));
    }
    if key.chars().count() > MAX_KEY_CHARS {
        return Err(Error::bad_request(format!(
            "That key is longer than {MAX_KEY_CHARS} characters; check what was pasted."
        )));
    }
    if !key.bytes().all(|b| b == b' ' || b.is_ascii_graphic()) {
        return Err(Error::bad_request(
            "That key has characters no service puts in a key (line breaks, tabs or non-ASCII); check what was pasted.",
        ));
    }
    Ok(key.to_owned())
}

/// Sets (or replaces) `user_id`'s key for the route at `route_path`.
pub async fn set(
    store: &dyn Store,
    master: &MasterKey,
    user_id: &str,
    route_path: &str,
    raw_key: &str,
) -> Result<(), Error> {
    let key = normalize(raw_key)?;
    let sealed = master.seal(SEAL_PURPOSE, &context(user_id, route_path), key.as_bytes());
    let stored = StoredKey {
        sealed: URL_SAFE_NO_PAD.encode(sealed),
        set_at: now_unix(),
    };
    store
        .put(NewItem::json(
            user_pk(user_id),
            key_sk(route_path),
            &stored,
        )?)
        .await?;
    Ok(())
}

/// `user_id`'s key for the route, opened for one request to its backend.
/// A key that does not open (another master key, a moved item) counts as
/// none: the person is asked to set it again.
pub async fn get(
    store: &dyn Store,
    master: &MasterKey,
    user_id: &str,
    route_path: &str,
) -> Result<Option<String>, StoreError> {
    let Some(item) = store.get(&user_pk(user_id), &key_sk(route_path)).await? else {
        return Ok(None);
    };
    let stored: StoredKey = item.json()?;
    let opened = URL_SAFE_NO_PAD
        .decode(&stored.sealed)
        .ok()
        .and_then(|sealed| {
            master
                .open(SEAL_PURPOSE, &context(user_id, route_path), &sealed)
                .ok()
        })
        .and_then(|plain| String::from_utf8(plain).ok());
    if opened.is_none() {
        tracing::warn!(
            route = route_path,
            "a personal key could not be opened; it must be set again"
        );
    }
    Ok(opened)
}

/// Which routes `user_id` has set keys for.
pub async fn list(store: &dyn Store, user_id: &str) -> Result<Vec<KeySet>, StoreError> {
    let mut keys = Vec::new();
    for item in store.list(&user_pk(user_id)).await? {
        if let Some(route_path) = item.sk.strip_prefix(SK_PREFIX) {
            let stored: StoredKey = item.json()?;
            keys.push(KeySet {
                route_path: route_path.to_owned(),
                set_at: stored.set_at,
            });
        }
    }
    Ok(keys)
}

/// Removes `user_id`'s key for one route (nothing happens if there is none).
pub async fn remove(store: &dyn Store, user_id: &str, route_path: &str) -> Result<(), StoreError> {
    store.delete(&user_pk(user_id), &key_sk(route_path)).await
}

/// Removes every key of `user_id`, returning how many there were.
pub async fn remove_all_for_user(store: &dyn Store, user_id: &str) -> Result<usize, StoreError> {
    let keys = list(store, user_id).await?;
    for key in &keys {
        remove(store, user_id, &key.route_path).await?;
    }
    Ok(keys.len())
}
