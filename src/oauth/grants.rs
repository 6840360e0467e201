//! Grants: what a person approved for a client, and the token families
//! (one per approved authorization) that carry it. A family is created with
//! its authorization code, expiring with it, and made permanent when the
//! code is redeemed; so ending a family ends its code, its refresh tokens
//! and its access tokens alike, and listing a person's families finds an
//! unredeemed code too. See [`super::access`] for when families end.
//!
//! Keys:
//! - `grant#<family>` / `grant`: the family, checked on every token use;
//! - `user#<user>` / `grant#<family>`: the same, listed on the account page;
//! - `consent#<user>` / `<client_id>`: the scopes the person approved.

use serde::{Deserialize, Serialize};

use crate::store::{Item, NewItem, Store, StoreError, Write, now_unix};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Grant {
    pub family: String,
    pub user_id: String,
    pub client_id: String,
    pub client_name: String,
    pub scope: String,
    pub resource: String,
    pub created_at: i64,
    /// The redirect URI of the authorization: its host and port tell apart
    /// installations of one client (they share the name).
    #[serde(default)]
    pub redirect_uri: String,
    /// The account's groups, kept current by `users::set_groups`, so the
    /// per-call grant read gives tools the groups at no extra cost.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    /// The person's user name and display name at approval, so the
    /// per-call grant read gives tools their name too (empty for grants
    /// made before these were kept).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub user_name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub display_name: String,
    /// The account's role and email, kept current with the groups, so the
    /// gateway decides a route's policy and fills its identity headers from
    /// the grant it reads anyway (`None` for grants made before they were
    /// kept: those read the account).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<AccountProfile>,
    /// When the client last refreshed its tokens (kept on the account's
    /// listing copy only, which is what the account page reads).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_used_at: Option<i64>,
}

/// What of the account a grant carries beside its groups and names
/// (`users::User::grant_profile` makes it).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct AccountProfile {
    /// The role's name, as route policies list it.
    pub role: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Consent {
    pub scope: String,
    pub approved_at: i64,
}

fn consents_key(user_id: &str) -> String {
    crate::store::keys::Partition::Consents(user_id).key()
}

fn family_key(family: &str) -> String {
    crate::store::keys::Partition::Grant(family).key()
}

fn user_key(user_id: &str) -> String {
    crate::store::keys::Partition::User(user_id).key()
}

/// The writes that create a family; callers add them to the transaction
/// that issues its first tokens, so a family never exists without them.
pub fn create_writes(grant: &Grant) -> Result<Vec<Write>, StoreError> {
    Ok(vec![
        Write::Insert(NewItem::json(family_key(&grant.family), "grant", grant)?),
        Write::Put(NewItem::json(
            user_key(&grant.user_id),
            family_key(&grant.family),
            grant,
        )?),
    ])
}

/// The writes that create a family for an authorization code, expiring
/// at `expires_at` unless [`activate_writes`] makes it permanent.
pub fn pending_writes(grant: &Grant, expires_at: i64) -> Result<Vec<Write>, StoreError> {
    Ok(create_writes(grant)?
        .into_iter()
        .map(|w| match w {
            Write::Insert(item) => Write::Insert(item.expires_at(expires_at)),
            Write::Put(item) => Write::Put(item.expires_at(expires_at)),
            other => other,
        })
        .collect())
}

/// The writes that make a code's family permanent when the code is
/// redeemed; they conflict if the family was ended meanwhile.
pub fn activate_writes(grant: &Grant, item: &Item) -> Result<Vec<Write>, StoreError> {
    Ok(vec![
        Write::Replace {
            item: NewItem::json(family_key(&grant.family), "grant", grant)?,
            expected_version: item.version,
        },
        Write::Put(NewItem::json(
            user_key(&grant.user_id),
            family_key(&grant.family),
            grant,
        )?),
    ])
}

/// The family if it is still live.
pub async fn get(store: &dyn Store, family: &str) -> Result<Option<Grant>, StoreError> {
    Ok(get_item(store, family).await?.map(|(grant, _)| grant))
}

/// The family and its stored item (for [`activate_writes`]).
pub async fn get_item(
    store: &dyn Store,
    family: &str,
) -> Result<Option<(Grant, Item)>, StoreError> {
    match store.get(&family_key(family), "grant").await? {
        Some(item) => Ok(Some((item.json()?, item))),
        None => Ok(None),
    }
}

pub async fn list_for_user(store: &dyn Store, user_id: &str) -> Result<Vec<Grant>, StoreError> {
    store
        .list(&user_key(user_id))
        .await?
        .into_iter()
        .filter(|i| i.sk.starts_with("grant#"))
        .map(|i| i.json())
        .collect()
}

/// Writes the account's groups, role and email into each of a person's live
/// grants that says otherwise. Each rewrite is conditional on the grant
/// being unchanged since it was read, so a grant revoked meanwhile is never
/// brought back; one that changed is read again.
pub async fn sync_profile_for_user(
    store: &dyn Store,
    user_id: &str,
    groups: &[String],
    account: &AccountProfile,
) -> Result<(), StoreError> {
    for listed in list_for_user(store, user_id).await? {
        for _ in 0..3 {
            let Some(item) = store.get(&family_key(&listed.family), "grant").await? else {
                break;
            };
            let mut grant: Grant = item.json()?;
            if grant.groups == groups && grant.account.as_ref() == Some(account) {
                break;
            }
            grant.groups = groups.to_vec();
            grant.account = Some(account.clone());
            let mut listing = listed.clone();
            listing.groups = groups.to_vec();
            listing.account = Some(account.clone());
            // A family whose code is not redeemed yet keeps its expiry.
            let with_expiry = |mut new: NewItem| {
                new.expires_at = item.expires_at;
                new
            };
            let writes = vec![
                Write::Replace {
                    item: with_expiry(NewItem::json(family_key(&grant.family), "grant", &grant)?),
                    expected_version: item.version,
                },
                Write::Put(with_expiry(NewItem::json(
                    user_key(&grant.user_id),
                    family_key(&grant.family),
                    &listing,
                )?)),
            ];
            match store.transact(writes).await {
                Ok(()) => break,
                Err(StoreError::Conflict) => continue,
                Err(e) => return Err(e),
            }
        }
    }
    Ok(())
}

/// The write that records a refresh on the listing copy of a family, for
/// the refresh's own transaction. It is conditional on that copy being
/// unchanged, so a family revoked meanwhile is not listed again (the
/// refresh then fails and finds the family gone).
pub async fn touch_write(
    store: &dyn Store,
    user_id: &str,
    family: &str,
) -> Result<Option<Write>, StoreError> {
    let Some(item) = store.get(&user_key(user_id), &family_key(family)).await? else {
        return Ok(None);
    };
    let mut grant: Grant = item.json()?;
    grant.last_used_at = Some(now_unix());
    Ok(Some(Write::Replace {
        item: NewItem::json(item.pk.clone(), item.sk.clone(), &grant)?,
        expected_version: item.version,
    }))
}

/// Ends one family, and forgets its refresh chain (dead with it, and
/// otherwise kept its 30 days). Idempotent.
pub async fn revoke(store: &dyn Store, user_id: &str, family: &str) -> Result<(), StoreError> {
    store
        .transact(vec![
            Write::Delete {
                pk: family_key(family),
                sk: "grant".into(),
            },
            Write::Delete {
                pk: user_key(user_id),
                sk: family_key(family),
            },
            Write::Delete {
                pk: crate::store::keys::Partition::RefreshChain(family).key(),
                sk: "rt".into(),
            },
        ])
        .await
}

/// Forgets a person's consents, then ends every family they hold (used when
/// an account is disabled or deleted). Returns how many families ended.
pub async fn revoke_all_for_user(store: &dyn Store, user_id: &str) -> Result<usize, StoreError> {
    for consent in store.list(&consents_key(user_id)).await? {
        store.delete(&consent.pk, &consent.sk).await?;
    }
    let grants = list_for_user(store, user_id).await?;
    for grant in &grants {
        revoke(store, user_id, &grant.family).await?;
    }
    Ok(grants.len())
}

/// Forgets a person's consent for one client, then ends every family of
/// that client they hold, codes not yet redeemed included (the consent
/// goes first: see `access`). Returns how many families ended.
pub async fn revoke_client_for_user(
    store: &dyn Store,
    user_id: &str,
    client_id: &str,
) -> Result<usize, StoreError> {
    store.delete(&consents_key(user_id), client_id).await?;
    let grants: Vec<Grant> = list_for_user(store, user_id)
        .await?
        .into_iter()
        .filter(|g| g.client_id == client_id)
        .collect();
    for grant in &grants {
        revoke(store, user_id, &grant.family).await?;
    }
    Ok(grants.len())
}

pub async fn consent(
    store: &dyn Store,
    user_id: &str,
    client_id: &str,
) -> Result<Option<Consent>, StoreError> {
    match store.get(&consents_key(user_id), client_id).await? {
        Some(item) => item.json().map(Some),
        None => Ok(None),
    }
}

pub async fn record_consent(
    store: &dyn Store,
    user_id: &str,
    client_id: &str,
    scope: &str,
) -> Result<(), StoreError> {
    store
        .put(NewItem::json(
            consents_key(user_id),
            client_id,
            &Consent {
                scope: scope.to_owned(),
                approved_at: now_unix(),
            },
        )?)
        .await
}
