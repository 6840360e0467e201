//! Each person's tokens from a gateway route's backend authorization
//! server, after they connected their account there (the backend runs its
//! own OAuth sign-in). Sealed under the master key, bound to the person and
//! the route, as [`personal_keys`](super::personal_keys) are; only ever
//! opened to call that route's backend, or to refresh or revoke them there.
//! Ending the person's access deletes them.
//!
//! Keys: `user#<id>` / `backend-tokens#<route path>`, versioned, so that of
//! two instances refreshing at once one write wins and the other reads it.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use serde::{Deserialize, Serialize};

use crate::{
    crypto::MasterKey,
    store::{NewItem, Store, StoreError, Write, now_unix},
};

const SEAL_PURPOSE: &str = "backend-tokens";
const SK_PREFIX: &str = "backend-tokens#";

/// What the backend's authorization server issued, and to which client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackendTokens {
    pub access_token: String,
    pub refresh_token: Option<String>,
    /// Unix seconds; `None` when the server did not say.
    pub expires_at: Option<i64>,
    /// The authorization server and passgate's client id there: tokens of
    /// another registration are not refreshed with this one.
    pub issuer: String,
    pub client_id: String,
}

/// Tokens as stored, with the version a replacement must name.
#[derive(Debug, Clone)]
pub struct Stored {
    pub tokens: BackendTokens,
    pub connected_at: i64,
    pub version: u64,
}

#[derive(Serialize, Deserialize)]
struct Sealed {
    sealed: String,
    connected_at: i64,
}

/// Where on the account page a person connects the route at `route_path`:
/// what a call before that points them to.
pub fn account_anchor(route_path: &str) -> String {
    format!("/account#connect{}", route_path.replace('/', "-"))
}

fn user_pk(user_id: &str) -> String {
    crate::store::keys::Partition::User(user_id).key()
}

fn tokens_sk(route_path: &str) -> String {
    format!("{SK_PREFIX}{route_path}")
}

fn context(user_id: &str, route_path: &str) -> Vec<u8> {
    format!("{user_id}\n{route_path}").into_bytes()
}

fn item(
    master: &MasterKey,
    user_id: &str,
    route_path: &str,
    tokens: &BackendTokens,
    connected_at: i64,
) -> Result<NewItem, StoreError> {
    let plain = serde_json::to_vec(tokens).expect("tokens serialize");
    let sealed = master.seal(SEAL_PURPOSE, &context(user_id, route_path), &plain);
    NewItem::json(
        user_pk(user_id),
        tokens_sk(route_path),
        &Sealed {
            sealed: URL_SAFE_NO_PAD.encode(sealed),
            connected_at,
        },
    )
}

/// Stores the tokens of a new connection, replacing any earlier one.
pub async fn connect(
    store: &dyn Store,
    master: &MasterKey,
    user_id: &str,
    route_path: &str,
    tokens: &BackendTokens,
) -> Result<(), StoreError> {
    store
        .put(item(master, user_id, route_path, tokens, now_unix())?)
        .await
}

/// Replaces refreshed tokens if nobody replaced them since `stored` was
/// read; [`StoreError::Conflict`] otherwise.
pub async fn replace(
    store: &dyn Store,
    master: &MasterKey,
    user_id: &str,
    route_path: &str,
    stored: &Stored,
    tokens: &BackendTokens,
) -> Result<(), StoreError> {
    store
        .transact(vec![Write::Replace {
            item: item(master, user_id, route_path, tokens, stored.connected_at)?,
            expected_version: stored.version,
        }])
        .await
}

/// The person's tokens for the route. Tokens that do not open count as
/// none: the person connects again.
pub async fn get(
    store: &dyn Store,
    master: &MasterKey,
    user_id: &str,
    route_path: &str,
) -> Result<Option<Stored>, StoreError> {
    let Some(found) = store.get(&user_pk(user_id), &tokens_sk(route_path)).await? else {
        return Ok(None);
    };
    let sealed: Sealed = found.json()?;
    let tokens = URL_SAFE_NO_PAD
        .decode(&sealed.sealed)
        .ok()
        .and_then(|bytes| {
            master
                .open(SEAL_PURPOSE, &context(user_id, route_path), &bytes)
                .ok()
        })
        .and_then(|plain| serde_json::from_slice(&plain).ok());
    Ok(tokens.map(|tokens| Stored {
        tokens,
        connected_at: sealed.connected_at,
        version: found.version,
    }))
}

/// The routes the person is connected to, with when they connected.
pub async fn list(store: &dyn Store, user_id: &str) -> Result<Vec<(String, i64)>, StoreError> {
    let mut connected = Vec::new();
    for found in store.list(&user_pk(user_id)).await? {
        if let Some(route_path) = found.sk.strip_prefix(SK_PREFIX) {
            let sealed: Sealed = found.json()?;
            connected.push((route_path.to_owned(), sealed.connected_at));
        }
    }
    Ok(connected)
}

pub async fn remove(store: &dyn Store, user_id: &str, route_path: &str) -> Result<(), StoreError> {
    store
        .delete(&user_pk(user_id), &tokens_sk(route_path))
        .await
}

/// Removes every connection of `user_id`, returning how many there were.
pub async fn remove_all_for_user(store: &dyn Store, user_id: &str) -> Result<usize, StoreError> {
    let connected = list(store, user_id).await?;
    for (route_path, _) in &connected {
        remove(store, user_id, route_path).await?;
    }
    Ok(connected.len())
}
