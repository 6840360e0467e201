//! The access rule: a credential is minted or accepted only for a live
//! person (exists, not disabled), a live grant (the token family, see
//! [`super::grants`]) and a live client (its consent stands and the
//! operator has not revoked it since the grant began).
//!
//! Every ending action writes its own fact first (the profile's `disabled`
//! flag, the deleted consent, the client revocation mark below) and only
//! then deletes the grants it finds; every place that creates a grant
//! writes it first and only then checks [`ended`]. Whichever runs second
//! sees the other's write, so no grant can outlive an ending action that
//! raced with its creation, on any instance. `/mcp` then only needs the
//! grant: it exists only while this rule holds.
//!
//! Keys: `client-revoked#<client_id>` / `-`: when the operator last revoked
//! a client (`passgate clients revoke`), kept as long as a pending
//! authorization started before it could still be approved.

use serde::{Deserialize, Serialize};

use super::{CODE_TTL_SECS, PENDING_AUTHORIZATION_TTL_SECS, grants};
use crate::{
    accounts::users,
    store::{NewItem, Store, StoreError, now_unix},
};

/// Why access can no longer be granted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// The account is disabled or deleted.
    Person,
    /// The person disconnected the client (its consent is gone).
    Consent,
    /// The operator revoked the client after this grant began.
    Client,
}

impl Ended {
    /// For the token endpoint's `invalid_grant` and the consent page.
    pub fn describe(self) -> &'static str {
        match self {
            Ended::Person => "the account is disabled or deleted",
            Ended::Consent => "the person disconnected this application",
            Ended::Client => "the operator revoked this application's access",
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct ClientRevoked {
    at: i64,
}

fn revoked_key(client_id: &str) -> String {
    crate::store::keys::Partition::ClientRevoked(client_id).key()
}

/// Records that the operator revoked `client_id` now. Written before the
/// client's grants are deleted (see the module doc).
pub async fn mark_client_revoked(store: &dyn Store, client_id: &str) -> Result<(), StoreError> {
    // Anything begun before now ends; the mark must outlive the longest
    // such thing not already deleted: a pending authorization and its code.
    let keep = PENDING_AUTHORIZATION_TTL_SECS + CODE_TTL_SECS + 60;
    store
        .put(
            NewItem::json(
                revoked_key(client_id),
                "-",
                &ClientRevoked { at: now_unix() },
            )?
            .expires_in(keep),
        )
        .await
}

/// Whether access for `user_id` through `client_id`, begun at `began_at`
/// (Unix seconds), has ended. The three reads run concurrently.
pub async fn ended(
    store: &dyn Store,
    user_id: &str,
    client_id: &str,
    began_at: i64,
) -> Result<Option<Ended>, StoreError> {
    Ok(check(store, user_id, client_id, began_at).await?.err())
}

/// [`ended`], giving the live account when access stands.
pub async fn check(
    store: &dyn Store,
    user_id: &str,
    client_id: &str,
    began_at: i64,
) -> Result<Result<users::User, Ended>, StoreError> {
    let revoked_pk = revoked_key(client_id);
    let (user, consent, revoked) = tokio::join!(
        users::get(store, user_id),
        grants::consent(store, user_id, client_id),
        store.get_json::<ClientRevoked>(&revoked_pk, "-"),
    );
    let Some(user) = user?.filter(|u| !u.disabled) else {
        return Ok(Err(Ended::Person));
    };
    if consent?.is_none() {
        return Ok(Err(Ended::Consent));
    }
    // Same second counts as before: the safe side of a tie.
    if revoked?.is_some_and(|r| r.at >= began_at) {
        return Ok(Err(Ended::Client));
    }
    Ok(Ok(user))
}
