//! Browser sessions after sign-in.
//!
//! The cookie carries a random token; the store keeps only its hash, so a
//! copy of the database cannot be turned into cookies. A session ends
//! [`IDLE_SECS`] after its last use or [`ABSOLUTE_SECS`] after sign-in,
//! whichever comes first, and at sign-out. Each session has its own CSRF
//! token that state-changing forms must echo.
//!
//! Keys:
//! - `session#<token hash>` / `session`: the [`Session`], expiring at the
//!   idle or absolute limit;
//! - `user#<id>` / `session#<token hash>`: lists a person's sessions (with
//!   the passkey each was signed in with), so disabling the account can end
//!   them all, and deleting a passkey can end the sessions it started.

use serde::{Deserialize, Serialize};

use crate::{
    crypto::{random_token, token_hash},
    store::{NewItem, Store, StoreError, Write, now_unix},
};

/// Cookie name (before the `__Host-` prefix added over https).
pub const COOKIE: &str = "passgate_session";
/// A session ends after this long without use.
pub const IDLE_SECS: i64 = 12 * 3600;
/// A session ends this long after sign-in, however active.
pub const ABSOLUTE_SECS: i64 = 7 * 24 * 3600;
/// The idle deadline is pushed back at most this often, so that every page
/// view does not cost a write.
const TOUCH_AFTER_SECS: i64 = 5 * 60;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Session {
    pub user_id: String,
    pub csrf: String,
    pub created_at: i64,
    pub last_seen: i64,
    /// The passkey the person signed in with; `None` for sign-ins through
    /// the upstream provider (and sessions from before this was recorded).
    #[serde(default)]
    pub credential: Option<String>,
}

/// The listing entry under `user#<id>`.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Listed {
    #[serde(default)]
    credential: Option<String>,
}

impl Session {
    fn absolute_expiry(&self) -> i64 {
        self.created_at + ABSOLUTE_SECS
    }

    fn expiry(&self) -> i64 {
        (self.last_seen + IDLE_SECS).min(self.absolute_expiry())
    }
}

fn session_pk(hash: &str) -> String {
    crate::store::keys::Partition::Session(hash).key()
}

/// Starts a session, signed in with passkey `credential` (if any), and
/// returns its cookie token.
pub async fn create(
    store: &dyn Store,
    user_id: &str,
    credential: Option<&str>,
) -> Result<String, StoreError> {
    let token = random_token(32);
    let hash = token_hash(&token);
    let now = now_unix();
    let session = Session {
        user_id: user_id.to_owned(),
        csrf: random_token(32),
        created_at: now,
        last_seen: now,
        credential: credential.map(str::to_owned),
    };
    store
        .transact(vec![
            Write::Insert(
                NewItem::json(session_pk(&hash), "session", &session)?.expires_at(session.expiry()),
            ),
            Write::Put(
                NewItem::json(
                    crate::store::keys::Partition::User(user_id).key(),
                    session_pk(&hash),
                    &Listed {
                        credential: session.credential.clone(),
                    },
                )?
                .expires_at(session.absolute_expiry()),
            ),
        ])
        .await?;
    Ok(token)
}

/// The live session for a cookie token, pushing its idle deadline back.
pub async fn find(store: &dyn Store, token: &str) -> Result<Option<Session>, StoreError> {
    let pk = session_pk(&token_hash(token));
    let Some(item) = store.get(&pk, "session").await? else {
        return Ok(None);
    };
    let mut session: Session = item.json()?;
    let now = now_unix();
    if now - session.last_seen >= TOUCH_AFTER_SECS {
        session.last_seen = now;
        let touched = NewItem::json(&pk, "session", &session)?.expires_at(session.expiry());
        // Losing this race to a concurrent request is harmless: that
        // request pushed the deadline back too.
        match store.replace(touched, item.version).await {
            Ok(()) | Err(StoreError::Conflict) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(Some(session))
}

/// Ends one session (sign-out). Idempotent.
pub async fn end(store: &dyn Store, token: &str) -> Result<(), StoreError> {
    let hash = token_hash(token);
    if let Some(item) = store.take(&session_pk(&hash), "session").await? {
        let session: Session = item.json()?;
        store
            .delete(
                &crate::store::keys::Partition::User(&session.user_id).key(),
                &session_pk(&hash),
            )
            .await?;
    }
    Ok(())
}

/// Ends every session of a person (account disabled or deleted).
pub async fn end_all_for_user(store: &dyn Store, user_id: &str) -> Result<usize, StoreError> {
    end_where(store, user_id, |_| true).await
}

/// Ends every session a person signed in to with passkey `credential`
/// (the passkey was deleted).
pub async fn end_all_for_credential(
    store: &dyn Store,
    user_id: &str,
    credential: &str,
) -> Result<usize, StoreError> {
    end_where(store, user_id, |listed| {
        listed.credential.as_deref() == Some(credential)
    })
    .await
}

async fn end_where(
    store: &dyn Store,
    user_id: &str,
    select: impl Fn(&Listed) -> bool,
) -> Result<usize, StoreError> {
    let user_pk = crate::store::keys::Partition::User(user_id).key();
    let mut ended = 0;
    for item in store.list(&user_pk).await? {
        // Entries from before the passkey was recorded are `{}`.
        if item.sk.starts_with("session#") && select(&item.json().unwrap_or_default()) {
            store
                .transact(vec![
                    Write::Delete {
                        pk: item.sk.clone(),
                        sk: "session".into(),
                    },
                    Write::Delete {
                        pk: user_pk.clone(),
                        sk: item.sk.clone(),
                    },
                ])
                .await?;
            ended += 1;
        }
    }
    Ok(ended)
}
