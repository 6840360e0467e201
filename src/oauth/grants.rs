//! Grants: what a person approved for a client, and the token families
//! (one per completed authorization) that carry it. Revoking a family ends
//! its refresh tokens at once and its access tokens at their next use.
//!
//! Keys:
//! - `grant#<family>` / `grant`: the family, checked on every token use;
//! - `user#<user>` / `grant#<family>`: the same, listed on the account page;
//! - `consent#<user>` / `<client_id>`: the scopes the person approved.

use serde::{Deserialize, Serialize};

use crate::store::{NewItem, Store, StoreError, Write, now_unix};

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
    /// When the client last refreshed its tokens (kept on the account's
    /// listing copy only, which is what the account page reads).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_used_at: Option<i64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Consent {
    pub scope: String,
    pub approved_at: i64,
}

fn family_key(family: &str) -> String {
    format!("grant#{family}")
}

fn user_key(user_id: &str) -> String {
    format!("user#{user_id}")
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

/// The family if it is still live.
pub async fn get(store: &dyn Store, family: &str) -> Result<Option<Grant>, StoreError> {
    match store.get(&family_key(family), "grant").await? {
        Some(item) => item.json().map(Some),
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

/// Writes new groups into each of a person's live grants. Each rewrite is
/// conditional on the grant being unchanged since it was read, so a grant
/// revoked meanwhile is never brought back; one that changed is read again.
pub async fn set_groups_for_user(
    store: &dyn Store,
    user_id: &str,
    groups: &[String],
) -> Result<(), StoreError> {
    for listed in list_for_user(store, user_id).await? {
        for _ in 0..3 {
            let Some(item) = store.get(&family_key(&listed.family), "grant").await? else {
                break;
            };
            let mut grant: Grant = item.json()?;
            grant.groups = groups.to_vec();
            let mut listing = listed.clone();
            listing.groups = groups.to_vec();
            let writes = vec![
                Write::Replace {
                    item: NewItem::json(family_key(&grant.family), "grant", &grant)?,
                    expected_version: item.version,
                },
                Write::Put(NewItem::json(
                    user_key(&grant.user_id),
                    family_key(&grant.family),
                    &listing,
                )?),
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

/// Ends one family. Idempotent.
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
        ])
        .await
}

/// Ends every family of a person and forgets their consents (used when an
/// account is disabled or deleted, and by "revoke" on the account page).
pub async fn revoke_all_for_user(store: &dyn Store, user_id: &str) -> Result<usize, StoreError> {
    let grants = list_for_user(store, user_id).await?;
    for grant in &grants {
        revoke(store, user_id, &grant.family).await?;
    }
    for consent in store.list(&format!("consent#{user_id}")).await? {
        store.delete(&consent.pk, &consent.sk).await?;
    }
    Ok(grants.len())
}

/// Ends every family of one client for one person, and its consent.
pub async fn revoke_client_for_user(
    store: &dyn Store,
    user_id: &str,
    client_id: &str,
) -> Result<usize, StoreError> {
    let grants: Vec<Grant> = list_for_user(store, user_id)
        .await?
        .into_iter()
        .filter(|g| g.client_id == client_id)
        .collect();
    for grant in &grants {
        revoke(store, user_id, &grant.family).await?;
    }
    store
        .delete(&format!("consent#{user_id}"), client_id)
        .await?;
    Ok(grants.len())
}

pub async fn consent(
    store: &dyn Store,
    user_id: &str,
    client_id: &str,
) -> Result<Option<Consent>, StoreError> {
    match store.get(&format!("consent#{user_id}"), client_id).await? {
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
            format!("consent#{user_id}"),
            client_id,
            &Consent {
                scope: scope.to_owned(),
                approved_at: now_unix(),
            },
        )?)
        .await
}
