//! The rate limiter: one table of limits ([`LimitedAction`]) for every
//! endpoint that anyone can call and that costs a store write or an
//! attacker's try. Counters live in the store, so every instance of a
//! serverless deployment sees the same counts. A refused request only reads
//! its counter, so a flood past the limit writes nothing more.
//!
//! Limits are per client address ([`ClientAddr`], which honours
//! `--trust-forwarded-for`), except the one per invitation or recovery link. Failed passkey
//! sign-ins count per address, never per account: an attacker who names
//! someone's passkey slows themselves down, not its owner elsewhere.
//!
//! Keys: `ratelimit#<action>#<sha256(subject)>` / `<window number>`: a
//! counter of attempts (or failures) in a fixed window, expiring with it.

use crate::{
    error::Error,
    net::ClientAddr,
    store::{Store, now_unix},
};

/// Everything passgate limits, with its limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitedAction {
    /// `POST /register`: dynamic client registrations.
    Register,
    /// `GET /authorize`: pending authorizations stored.
    Authorize,
    /// Passkey sign-in ceremonies started.
    SignIn,
    /// Passkey sign-ins that failed verification.
    SignInFailure,
    /// Enrollment ceremonies started (from invitations and recovery links).
    Enroll,
    /// Enrollment attempts with one invitation or recovery link (subject:
    /// the link).
    EnrollInvitation,
    /// Sign-ins started at the upstream identity provider.
    OidcSignIn,
    /// Client metadata documents actually fetched (not answered from the
    /// cache) for one address: each is an outbound request anyone can
    /// trigger.
    CimdFetch,
}

impl LimitedAction {
    /// Every action, for documentation and tests.
    pub const ALL: [LimitedAction; 8] = [
        Self::Register,
        Self::Authorize,
        Self::SignIn,
        Self::SignInFailure,
        Self::Enroll,
        Self::EnrollInvitation,
        Self::OidcSignIn,
        Self::CimdFetch,
    ];

    /// The name in store keys and logs.
    pub fn name(self) -> &'static str {
        match self {
            Self::Register => "register",
            Self::Authorize => "authorize",
            Self::SignIn => "signin-addr",
            Self::SignInFailure => "signin-failure-addr",
            Self::Enroll => "enroll-addr",
            Self::EnrollInvitation => "enroll-invite",
            Self::OidcSignIn => "upstream-addr",
            Self::CimdFetch => "cimd-addr",
        }
    }

    /// At most this many in one window...
    pub fn max(self) -> u64 {
        match self {
            Self::Register => 30,
            Self::Authorize => 60,
            Self::SignIn => 30,
            Self::SignInFailure => 10,
            Self::Enroll => 10,
            Self::EnrollInvitation => 10,
            Self::OidcSignIn => 30,
            Self::CimdFetch => 30,
        }
    }

    /// ...of this many seconds.
    pub fn window_secs(self) -> i64 {
        match self {
            Self::Register => 3600,
            Self::Authorize => 600,
            Self::SignIn
            | Self::SignInFailure
            | Self::Enroll
            | Self::EnrollInvitation
            | Self::OidcSignIn
            | Self::CimdFetch => 300,
        }
    }
}

/// Seconds until the current window of `action` ends, for `Retry-After`.
pub fn retry_after(action: LimitedAction) -> i64 {
    action.window_secs() - now_unix().rem_euclid(action.window_secs())
}

/// The counter's key and the current window's end.
fn counter(action: LimitedAction, subject: &str) -> (String, String, i64) {
    let window = now_unix().div_euclid(action.window_secs());
    // Subjects can be long or carry secrets (invitation hashes); hashing
    // keeps keys short and uniform.
    let pk = crate::store::keys::Partition::RateLimit {
        action: action.name(),
        subject,
    }
    .key();
    (pk, window.to_string(), (window + 1) * action.window_secs())
}

async fn current(store: &dyn Store, pk: &str, sk: &str) -> Result<u64, Error> {
    Ok(store
        .get(pk, sk)
        .await?
        .and_then(|item| std::str::from_utf8(&item.value).ok()?.parse().ok())
        .unwrap_or(0))
}

fn refuse(action: LimitedAction) -> Error {
    tracing::info!(limit = action.name(), "rate limit reached");
    Error::RateLimited
}

/// Counts one attempt from `addr` and refuses it once over the limit.
pub async fn check(
    store: &dyn Store,
    action: LimitedAction,
    addr: &ClientAddr,
) -> Result<(), Error> {
    check_subject(store, action, &addr.subject()).await
}

/// [`check`] for a subject that is not an address (an invitation).
pub async fn check_subject(
    store: &dyn Store,
    action: LimitedAction,
    subject: &str,
) -> Result<(), Error> {
    let (pk, sk, expires_at) = counter(action, subject);
    if current(store, &pk, &sk).await? >= action.max() {
        return Err(refuse(action));
    }
    if store.increment(&pk, &sk, expires_at).await? > action.max() {
        return Err(refuse(action));
    }
    Ok(())
}

/// Refuses `addr` while it has failed [`LimitedAction::max`] times in the
/// current window (see [`record_failure`]).
pub async fn check_failures(
    store: &dyn Store,
    action: LimitedAction,
    addr: &ClientAddr,
) -> Result<(), Error> {
    let (pk, sk, _) = counter(action, &addr.subject());
    if current(store, &pk, &sk).await? >= action.max() {
        Err(refuse(action))
    } else {
        Ok(())
    }
}

/// Counts a failure by `addr`.
pub async fn record_failure(
    store: &dyn Store,
    action: LimitedAction,
    addr: &ClientAddr,
) -> Result<(), Error> {
    let (pk, sk, expires_at) = counter(action, &addr.subject());
    store.increment(&pk, &sk, expires_at).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_action_has_its_own_counter_and_a_real_limit() {
        let mut names: Vec<_> = LimitedAction::ALL.iter().map(|a| a.name()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), LimitedAction::ALL.len());
        for action in LimitedAction::ALL {
            assert!(action.max() > 0 && action.window_secs() > 0, "{action:?}");
        }
    }

    #[tokio::test]
    async fn a_refused_attempt_writes_nothing_and_others_keep_their_bucket() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::sqlite::SqliteStore::open(&dir.path().join("p.sqlite3")).unwrap();
        let a = ClientAddr(Some("203.0.113.66".parse().unwrap()));
        let b = ClientAddr(Some("198.51.100.7".parse().unwrap()));
        let action = LimitedAction::Enroll;
        for _ in 0..action.max() {
            check(&store, action, &a).await.unwrap();
        }
        for _ in 0..3 {
            assert!(matches!(
                check(&store, action, &a).await,
                Err(Error::RateLimited)
            ));
        }
        let (pk, sk, _) = counter(action, &a.subject());
        assert_eq!(current(&store, &pk, &sk).await.unwrap(), action.max());
        check(&store, action, &b).await.unwrap();
    }
}
