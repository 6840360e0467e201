//! People and their passkeys: the accounts that sign in to passgate.
//!
//! A person is a [`User`]. Their id is 16 random bytes (hex); it is also the
//! WebAuthn user handle stored inside each of their passkeys, so a
//! usernameless sign-in leads from the passkey straight to the account.
//! Names are short handles without spaces (WebAuthn usernames); human names
//! go in the display name. Nobody becomes a user except by enrolling from an
//! invitation (`accounts::invitations`).
//!
//! Keys:
//! - `user#<id>` / `profile`: the [`User`];
//! - `users` / `<id>`: the same [`User`], so the admin page and the CLI list
//!   everyone with one query (both copies are always written together);
//! - `username#<name>` / `-`: reserves a name; inserted in the same
//!   transaction as the user, so two enrollments can never share a name;
//! - `cred#<credential id>` / `cred`: a [`Credential`], found by the id the
//!   authenticator returns at sign-in;
//! - `user#<id>` / `cred#<credential id>`: the same [`Credential`], listed on
//!   the account page.
//!
//! The `user#<id>` partition also holds the person's sessions
//! (`accounts::session`) and grants (`oauth::grants`), so disabling or deleting
//! an account can find and end all of them.

use serde::{Deserialize, Serialize};

use crate::{
    error::Error,
    oauth::grants,
    store::{NewItem, Store, StoreError, Write, now_unix},
};

/// Longest accepted name or display name, in characters.
pub const MAX_NAME_CHARS: usize = 64;
/// Longest accepted passkey label, in characters.
pub const MAX_LABEL_CHARS: usize = 64;
/// Most groups an account can be in, and the longest group name.
pub const MAX_GROUPS: usize = 32;
pub const MAX_GROUP_CHARS: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Can invite people and disable or delete accounts.
    Admin,
    Member,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Member => "member",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    /// 32 hex digits: the WebAuthn user handle.
    pub id: String,
    /// Unique, lowercase, no spaces.
    pub name: String,
    pub display_name: String,
    pub role: Role,
    pub disabled: bool,
    pub created_at: i64,
    /// Set by administrators; tools see them in the caller's identity.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    /// A verified email from the upstream provider, copied at each sign-in
    /// (passkey accounts have none). Gateway backends receive it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
}

impl User {
    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }

    /// What the person's grants carry of the account beside the groups.
    pub fn grant_profile(&self) -> grants::AccountProfile {
        grants::AccountProfile {
            role: self.role.as_str().to_owned(),
            email: self.email.clone(),
        }
    }

    /// Writes the groups, role and email into the person's live grants.
    async fn sync_grants(&self, store: &dyn Store) -> Result<(), StoreError> {
        grants::sync_profile_for_user(store, &self.id, &self.groups, &self.grant_profile()).await
    }
}

/// A registered passkey. The WebAuthn state is kept in `webauthn_rp`'s own
/// compact encoding (opaque here, see `login::passkeys`); the other fields
/// are what the account page shows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Credential {
    /// The credential id, base64url.
    pub id: String,
    pub user_id: String,
    /// A label the person can change.
    pub name: String,
    /// Public key and extension results, base64url.
    pub static_state: String,
    /// Sign counter, flags and attachment, base64url; updated on every use.
    pub dynamic_state: String,
    /// Authenticator transports, as a bit set.
    pub transports: u8,
    /// The passkey can be synced between devices.
    pub backup_eligible: bool,
    /// The passkey is currently synced.
    pub backed_up: bool,
    pub sign_count: u32,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
}

/// A fresh user id: 16 random bytes, hex.
pub fn new_user_id() -> String {
    use rand::RngCore;
    let mut bytes = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    hex(&bytes)
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Parses a user id back into the 16-byte user handle.
pub fn user_handle(id: &str) -> Option<[u8; 16]> {
    if id.len() != 32 {
        return None;
    }
    let mut out = [0u8; 16];
    for (i, chunk) in id.as_bytes().chunks(2).enumerate() {
        let s = std::str::from_utf8(chunk).ok()?;
        out[i] = u8::from_str_radix(s, 16).ok()?;
    }
    Some(out)
}

/// Checks and normalizes a name: lowercase letters, digits, `.`, `_` and
/// `-`, starting with a letter or digit, at most [`MAX_NAME_CHARS`].
pub fn normalize_name(raw: &str) -> Result<String, Error> {
    let name = raw.trim().to_ascii_lowercase();
    let valid = !name.is_empty()
        && name.len() <= MAX_NAME_CHARS
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-'));
    if valid {
        Ok(name)
    } else {
        Err(Error::bad_request(format!(
            "\"{}\" cannot be a user name: use 1 to {MAX_NAME_CHARS} lowercase letters, digits, dots, dashes or underscores, starting with a letter or digit (no spaces; the full name goes in the display name).",
            raw.trim()
        )))
    }
}

/// Checks a free-text label (display name, passkey name): trimmed, not
/// empty, no control characters, at most `max` characters.
pub fn normalize_label(raw: &str, what: &str, max: usize) -> Result<String, Error> {
    let label = raw.trim();
    if label.is_empty() || label.chars().count() > max || label.chars().any(char::is_control) {
        return Err(Error::bad_request(format!(
            "The {what} must be 1 to {max} characters, without line breaks."
        )));
    }
    Ok(label.to_owned())
}

fn user_pk(id: &str) -> String {
    crate::store::keys::Partition::User(id).key()
}

fn username_pk(name: &str) -> String {
    crate::store::keys::Partition::Username(name).key()
}

fn cred_pk(cred_id: &str) -> String {
    crate::store::keys::Partition::Credential(cred_id).key()
}

const USERS_PK: &str = crate::store::keys::USERS;

pub async fn get(store: &dyn Store, id: &str) -> Result<Option<User>, StoreError> {
    store.get_json(&user_pk(id), "profile").await
}

pub async fn find_by_name(store: &dyn Store, name: &str) -> Result<Option<User>, Error> {
    let name = normalize_name(name)?;
    #[derive(Deserialize)]
    struct Reservation {
        user_id: String,
    }
    match store
        .get_json::<Reservation>(&username_pk(&name), "-")
        .await?
    {
        Some(r) => Ok(get(store, &r.user_id).await?),
        None => Ok(None),
    }
}

/// Every user, sorted by name.
pub async fn list(store: &dyn Store) -> Result<Vec<User>, StoreError> {
    let mut users: Vec<User> = store
        .list(USERS_PK)
        .await?
        .iter()
        .map(|i| i.json())
        .collect::<Result<_, _>>()?;
    users.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(users)
}

pub async fn any_exist(store: &dyn Store) -> Result<bool, StoreError> {
    Ok(!store.list(USERS_PK).await?.is_empty())
}

/// The writes that create a user with their first passkey: all or nothing,
/// and a conflict if the name or the credential id is already taken.
pub fn create_writes(user: &User, first: &Credential) -> Result<Vec<Write>, StoreError> {
    let mut writes = new_user_writes(user)?;
    writes.extend(add_credential_writes(first)?);
    Ok(writes)
}

/// The writes that create a user without a passkey (people who sign in
/// through an upstream provider): a conflict if the name is taken.
pub fn new_user_writes(user: &User) -> Result<Vec<Write>, StoreError> {
    Ok(vec![
        Write::Insert(NewItem::json(user_pk(&user.id), "profile", user)?),
        Write::Insert(NewItem::json(USERS_PK, user.id.clone(), user)?),
        Write::Insert(NewItem::json(
            username_pk(&user.name),
            "-",
            &serde_json::json!({ "user_id": user.id }),
        )?),
    ])
}

/// The writes that register a passkey; a conflict if its id exists.
pub fn add_credential_writes(cred: &Credential) -> Result<Vec<Write>, StoreError> {
    Ok(vec![
        Write::Insert(NewItem::json(cred_pk(&cred.id), "cred", cred)?),
        Write::Put(NewItem::json(
            user_pk(&cred.user_id),
            cred_pk(&cred.id),
            cred,
        )?),
    ])
}

/// A passkey by credential id, with its version for [`update_credential`].
pub async fn credential(
    store: &dyn Store,
    cred_id: &str,
) -> Result<Option<(Credential, u64)>, StoreError> {
    match store.get(&cred_pk(cred_id), "cred").await? {
        Some(item) => Ok(Some((item.json()?, item.version))),
        None => Ok(None),
    }
}

pub async fn credential_exists(store: &dyn Store, cred_id: &str) -> Result<bool, StoreError> {
    Ok(store.get(&cred_pk(cred_id), "cred").await?.is_some())
}

/// A person's passkeys, oldest first.
pub async fn credentials(store: &dyn Store, user_id: &str) -> Result<Vec<Credential>, StoreError> {
    let mut creds: Vec<Credential> = store
        .list(&user_pk(user_id))
        .await?
        .iter()
        .filter(|i| i.sk.starts_with("cred#"))
        .map(|i| i.json())
        .collect::<Result<_, _>>()?;
    creds.sort_by_key(|c| c.created_at);
    Ok(creds)
}

/// Saves a passkey's new state after a sign-in. Conflicts if it changed
/// since it was read (a concurrent sign-in with the same passkey), so a
/// sign counter can never be moved back by a race.
pub async fn update_credential(
    store: &dyn Store,
    cred: &Credential,
    expected_version: u64,
) -> Result<(), StoreError> {
    store
        .transact(vec![
            Write::Replace {
                item: NewItem::json(cred_pk(&cred.id), "cred", cred)?,
                expected_version,
            },
            Write::Put(NewItem::json(
                user_pk(&cred.user_id),
                cred_pk(&cred.id),
                cred,
            )?),
        ])
        .await
}

async fn owned_credential(
    store: &dyn Store,
    user_id: &str,
    cred_id: &str,
) -> Result<(Credential, u64), Error> {
    match credential(store, cred_id).await? {
        Some((cred, version)) if cred.user_id == user_id => Ok((cred, version)),
        _ => Err(Error::NotFound(
            "That passkey does not exist (it may have been deleted already).".into(),
        )),
    }
}

pub async fn rename_credential(
    store: &dyn Store,
    user_id: &str,
    cred_id: &str,
    name: &str,
) -> Result<(), Error> {
    let name = normalize_label(name, "passkey name", MAX_LABEL_CHARS)?;
    let (mut cred, version) = owned_credential(store, user_id, cred_id).await?;
    cred.name = name;
    update_credential(store, &cred, version)
        .await
        .map_err(conflict_as_retry)
}

/// Deletes one of a person's passkeys, refusing to delete the last one, and
/// ends the browser sessions signed in with it (returns how many). The
/// transaction re-checks that another passkey still exists, so two
/// concurrent deletions cannot leave the account without any.
pub async fn delete_credential(
    store: &dyn Store,
    user_id: &str,
    cred_id: &str,
) -> Result<usize, Error> {
    let (_, version) = owned_credential(store, user_id, cred_id).await?;
    let items = store.list(&user_pk(user_id)).await?;
    let Some(other) = items
        .iter()
        .find(|i| i.sk.starts_with("cred#") && i.sk != cred_pk(cred_id))
    else {
        return Err(Error::bad_request(
            "This is your only passkey, so it cannot be deleted: you would not be able to sign in again. Add another passkey first.",
        ));
    };
    store
        .transact(vec![
            Write::DeleteVersion {
                pk: cred_pk(cred_id),
                sk: "cred".into(),
                expected_version: version,
            },
            Write::Delete {
                pk: user_pk(user_id),
                sk: cred_pk(cred_id),
            },
            // Guard: rewriting another passkey's listing at its version
            // fails if that passkey was deleted meanwhile.
            Write::Replace {
                item: NewItem {
                    pk: other.pk.clone(),
                    sk: other.sk.clone(),
                    value: other.value.clone(),
                    expires_at: other.expires_at,
                },
                expected_version: other.version,
            },
        ])
        .await
        .map_err(conflict_as_retry)?;
    // After the deletion, so that a sign-in with it racing this one cannot
    // start a session that survives (it fails to update the passkey).
    Ok(crate::accounts::session::end_all_for_credential(store, user_id, cred_id).await?)
}

fn conflict_as_retry(e: StoreError) -> Error {
    match e {
        StoreError::Conflict => Error::Gone(
            "Your passkeys changed while this was being saved. Reload the page and try again."
                .into(),
        ),
        other => other.into(),
    }
}

fn profile_writes(user: &User, expected_version: u64) -> Result<Vec<Write>, StoreError> {
    Ok(vec![
        Write::Replace {
            item: NewItem::json(user_pk(&user.id), "profile", user)?,
            expected_version,
        },
        Write::Put(NewItem::json(USERS_PK, user.id.clone(), user)?),
    ])
}

/// Disables or re-enables an account. Disabling ends the person's browser
/// sessions and revokes every grant, so their MCP clients lose access at
/// the next token use.
pub async fn set_disabled(store: &dyn Store, user_id: &str, disabled: bool) -> Result<User, Error> {
    let item = store
        .get(&user_pk(user_id), "profile")
        .await?
        .ok_or_else(|| Error::NotFound("There is no such user.".into()))?;
    let mut user: User = item.json()?;
    if user.disabled != disabled {
        user.disabled = disabled;
        store
            .transact(profile_writes(&user, item.version)?)
            .await
            .map_err(conflict_as_retry)?;
    }
    if disabled {
        end_access(store, user_id).await?;
    }
    Ok(user)
}

/// Ends everything that lets a person in: sessions and grants, and the
/// keys and backend tokens they gave passgate for backends (enabling the
/// account again does not bring those back: the person sets them again).
async fn end_access(store: &dyn Store, user_id: &str) -> Result<(), Error> {
    crate::accounts::session::end_all_for_user(store, user_id).await?;
    grants::revoke_all_for_user(store, user_id).await?;
    crate::accounts::personal_keys::remove_all_for_user(store, user_id).await?;
    crate::accounts::backend_tokens::remove_all_for_user(store, user_id).await?;
    Ok(())
}

/// Deletes an account with its passkeys, sessions and grants. The account
/// is disabled first, so if deletion stops halfway the person stays locked
/// out rather than half-deleted but able to sign in.
pub async fn delete(store: &dyn Store, user_id: &str) -> Result<User, Error> {
    let user = set_disabled(store, user_id, true).await?;
    for cred in credentials(store, user_id).await? {
        store
            .transact(vec![
                Write::Delete {
                    pk: cred_pk(&cred.id),
                    sk: "cred".into(),
                },
                Write::Delete {
                    pk: user_pk(user_id),
                    sk: cred_pk(&cred.id),
                },
            ])
            .await?;
    }
    end_access(store, user_id).await?;
    store
        .transact(vec![
            Write::Delete {
                pk: user_pk(user_id),
                sk: "profile".into(),
            },
            Write::Delete {
                pk: USERS_PK.into(),
                sk: user_id.into(),
            },
            Write::Delete {
                pk: username_pk(&user.name),
                sk: "-".into(),
            },
        ])
        .await?;
    Ok(user)
}

/// A new user record (not yet stored).
pub fn new_user(id: String, name: String, display_name: String, role: Role) -> User {
    User {
        id,
        name,
        display_name,
        role,
        disabled: false,
        created_at: now_unix(),
        groups: Vec::new(),
        email: None,
    }
}

/// Parses a comma-separated list of groups: trimmed, without duplicates,
/// sorted; each 1 to [`MAX_GROUP_CHARS`] characters of letters, digits,
/// `.`, `_`, `-`, `:` or `/` (so a list can always be written back with
/// commas), at most [`MAX_GROUPS`].
pub fn parse_groups(raw: &str) -> Result<Vec<String>, Error> {
    let mut groups: Vec<String> = raw
        .split(',')
        .map(str::trim)
        .filter(|g| !g.is_empty())
        .map(str::to_owned)
        .collect();
    groups.sort();
    groups.dedup();
    if let Some(bad) = groups.iter().find(|g| {
        g.chars().count() > MAX_GROUP_CHARS
            || !g
                .chars()
                .all(|c| c.is_alphanumeric() || matches!(c, '.' | '_' | '-' | ':' | '/'))
    }) {
        return Err(Error::bad_request(format!(
            "\"{bad}\" cannot be a group: use 1 to {MAX_GROUP_CHARS} letters, digits, dots, dashes, underscores, colons or slashes, and separate groups with commas."
        )));
    }
    if groups.len() > MAX_GROUPS {
        return Err(Error::bad_request(format!(
            "An account can be in at most {MAX_GROUPS} groups."
        )));
    }
    Ok(groups)
}

/// Sets an account's groups. Its live grants carry them too (the `/mcp`
/// check reads the grant on every call anyway), so tools see the change at
/// the next call, without a new sign-in.
pub async fn set_groups(
    store: &dyn Store,
    user_id: &str,
    groups: Vec<String>,
) -> Result<User, Error> {
    let (user, changed) = update_profile(store, user_id, |user| user.groups = groups).await?;
    if changed {
        user.sync_grants(store).await?;
    }
    Ok(user)
}

/// Records the account's verified email (from the upstream provider).
pub async fn set_email(
    store: &dyn Store,
    user_id: &str,
    email: Option<String>,
) -> Result<User, Error> {
    let (user, changed) = update_profile(store, user_id, |user| user.email = email).await?;
    if changed {
        user.sync_grants(store).await?;
    }
    Ok(user)
}

/// Reads the profile, applies `change`, and writes it back if that changed
/// it and nobody wrote it in between (a concurrent write is a retryable
/// conflict). Says whether it changed: every upstream sign-in sets the
/// email and groups, and an unchanged one writes nothing, here or in the
/// person's grants.
async fn update_profile(
    store: &dyn Store,
    user_id: &str,
    change: impl FnOnce(&mut User),
) -> Result<(User, bool), Error> {
    let item = store
        .get(&user_pk(user_id), "profile")
        .await?
        .ok_or_else(|| Error::NotFound("There is no such user.".into()))?;
    let read: User = item.json()?;
    let mut user = read.clone();
    change(&mut user);
    if user == read {
        return Ok((user, false));
    }
    store
        .transact(profile_writes(&user, item.version)?)
        .await
        .map_err(conflict_as_retry)?;
    Ok((user, true))
}

/// Makes an account an administrator or a member. Pages read the role at
/// every request, and the person's grants carry it for the gateway's route
/// policies, so the change applies at once to live sessions and clients.
pub async fn set_role(store: &dyn Store, user_id: &str, role: Role) -> Result<User, Error> {
    let item = store
        .get(&user_pk(user_id), "profile")
        .await?
        .ok_or_else(|| Error::NotFound("There is no such user.".into()))?;
    let mut user: User = item.json()?;
    if user.role != role {
        user.role = role;
        store
            .transact(profile_writes(&user, item.version)?)
            .await
            .map_err(|e| match e {
                StoreError::Conflict => {
                    Error::Gone("The account changed while this was being saved. Try again.".into())
                }
                other => other.into(),
            })?;
    }
    user.sync_grants(store).await?;
    Ok(user)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_handles_without_spaces() {
        assert_eq!(normalize_name(" Alice ").unwrap(), "alice");
        assert_eq!(normalize_name("a.b-c_d9").unwrap(), "a.b-c_d9");
        assert!(normalize_name("alice smith").is_err());
        assert!(normalize_name("").is_err());
        assert!(normalize_name("-alice").is_err());
        assert!(normalize_name("ålice").is_err());
        assert!(normalize_name(&"a".repeat(65)).is_err());
    }

    #[test]
    fn user_ids_are_16_byte_handles() {
        let id = new_user_id();
        assert_eq!(id.len(), 32);
        let handle = user_handle(&id).unwrap();
        assert_eq!(hex(&handle), id);
        assert!(user_handle("zz").is_none());
        assert!(user_handle(&"g".repeat(32)).is_none());
    }

    #[test]
    fn labels_refuse_control_characters() {
        assert_eq!(
            normalize_label(" Ada Lovelace ", "display name", 64).unwrap(),
            "Ada Lovelace"
        );
        assert!(normalize_label("a\nb", "display name", 64).is_err());
        assert!(normalize_label("  ", "display name", 64).is_err());
    }
}
