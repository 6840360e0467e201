//! Invitations: the only way to get an account. An invitation is a random
//! link token carrying the new account's name and role; it works once and
//! expires. The store keeps only the token's hash, so a copy of the
//! database cannot be used to enroll.
//!
//! The very first administrator is invited by `passgate serve` itself when
//! there are no users yet; the link is printed once to the terminal.
//!
//! Keys:
//! - `invite#<token hash>` / `invite`: the [`Invitation`], expiring with it;
//! - `invite-first` / `admin`: marks that the first administrator's
//!   invitation exists and is live (so restarts do not print new ones).

use serde::{Deserialize, Serialize};

use crate::{
    accounts::users::{self, Role},
    crypto::{random_token, token_hash},
    error::Error,
    store::{NewItem, Store, StoreError, Write, now_unix},
};

/// Name given to the first administrator's account.
pub const FIRST_ADMIN_NAME: &str = "admin";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Invitation {
    pub name: String,
    pub role: Role,
    /// Name of the admin who invited, or `None` from the command line.
    pub invited_by: Option<String>,
    pub created_at: i64,
    pub expires_at: i64,
}

/// A new invitation, with the secret link that is shown exactly once.
#[derive(Debug, Clone)]
pub struct Created {
    pub invitation: Invitation,
    pub link: String,
}

fn invite_pk(token: &str) -> String {
    crate::store::keys::Partition::Invitation(token).key()
}

/// The enrollment link for a token, under the public URL `base`.
pub fn link(base: &str, token: &str) -> String {
    format!("{}/enroll?token={token}", base.trim_end_matches('/'))
}

fn new_invitation(
    name: &str,
    role: Role,
    ttl_secs: i64,
    invited_by: Option<&str>,
) -> Result<Invitation, Error> {
    if ttl_secs <= 0 {
        return Err(Error::bad_request(
            "An invitation must be valid for at least an hour.",
        ));
    }
    let now = now_unix();
    Ok(Invitation {
        name: users::normalize_name(name)?,
        role,
        invited_by: invited_by.map(str::to_owned),
        created_at: now,
        expires_at: now + ttl_secs,
    })
}

/// Invites `name`. Fails if an account already has that name (a pending
/// invitation for the same name is allowed: whichever is used first wins).
pub async fn create(
    store: &dyn Store,
    base: &str,
    name: &str,
    role: Role,
    ttl_secs: i64,
    invited_by: Option<&str>,
) -> Result<Created, Error> {
    let invitation = new_invitation(name, role, ttl_secs, invited_by)?;
    if users::find_by_name(store, &invitation.name)
        .await?
        .is_some()
    {
        return Err(Error::bad_request(format!(
            "There is already an account named \"{}\". Choose another name.",
            invitation.name
        )));
    }
    let token = random_token(32);
    store.insert(invite_item(&token, &invitation)?).await?;
    Ok(Created {
        link: link(base, &token),
        invitation,
    })
}

fn invite_item(token: &str, invitation: &Invitation) -> Result<NewItem, StoreError> {
    Ok(NewItem::json(invite_pk(token), "invite", invitation)?.expires_at(invitation.expires_at))
}

/// A live invitation and its version, without using it up.
pub async fn peek(store: &dyn Store, token: &str) -> Result<(Invitation, u64), Error> {
    let gone = || {
        Error::Gone(
            "This invitation link is not valid: it was already used, it expired, or it was mistyped."
                .into(),
        )
    };
    if token.is_empty() || token.len() > 128 {
        return Err(gone());
    }
    match store.get(&invite_pk(token), "invite").await? {
        Some(item) => Ok((item.json()?, item.version)),
        None => Err(gone()),
    }
}

/// The write that uses up an invitation; it conflicts unless the
/// invitation is still live at `version`. Enrollment puts it in the same
/// transaction that creates the account, so an invitation yields exactly one
/// account even when two browsers race.
pub fn consume_write(invitation_id: &str, version: u64) -> Write {
    Write::DeleteVersion {
        pk: crate::store::keys::Partition::InvitationId(invitation_id).key(),
        sk: "invite".into(),
        expected_version: version,
    }
}

/// The invitation's id: the hash of its token, so that ceremonies and
/// rate limits can refer to it without holding the token.
pub fn invitation_id(token: &str) -> String {
    token_hash(token)
}

/// What start-up found about the first administrator's invitation.
#[derive(Debug)]
pub enum FirstAdmin {
    /// Accounts exist; nothing to do.
    NotNeeded,
    /// An invitation made earlier is still live (its link was printed then).
    Pending { expires_at: i64 },
    /// A new invitation was made; print its link.
    Created(Created),
}

/// Makes sure a fresh installation can be entered: when there are no users
/// and no live first-admin invitation, creates one.
pub async fn ensure_first_admin(
    store: &dyn Store,
    base: &str,
    ttl_secs: i64,
) -> Result<FirstAdmin, Error> {
    if users::any_exist(store).await? {
        return Ok(FirstAdmin::NotNeeded);
    }
    if let Some(item) = store.get("invite-first", "admin").await? {
        return Ok(FirstAdmin::Pending {
            expires_at: item.expires_at.unwrap_or_default(),
        });
    }
    let invitation = new_invitation(FIRST_ADMIN_NAME, Role::Admin, ttl_secs, None)?;
    let token = random_token(32);
    let marker =
        NewItem::new("invite-first", "admin", Vec::new()).expires_at(invitation.expires_at);
    match store
        .transact(vec![
            Write::Insert(marker),
            Write::Insert(invite_item(&token, &invitation)?),
        ])
        .await
    {
        Ok(()) => Ok(FirstAdmin::Created(Created {
            link: link(base, &token),
            invitation,
        })),
        // Another instance starting at the same moment made one.
        Err(StoreError::Conflict) => Ok(FirstAdmin::Pending {
            expires_at: invitation.expires_at,
        }),
        Err(e) => Err(e.into()),
    }
}

/// Forgets the first-admin marker once the first account exists.
pub fn first_admin_done_write() -> Write {
    Write::Delete {
        pk: "invite-first".into(),
        sk: "admin".into(),
    }
}
