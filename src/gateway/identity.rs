//! What the backend learns about the caller: a short-lived JWT signed with
//! passgate's keys (verifiable with its JWKS, audience the backend's URL),
//! and optionally the plain `X-Forwarded-*` headers many servers read.
//!
//! An assertion is reused for the same person, client and claims until half
//! its lifetime is gone: an ES256 signature costs far more CPU than the
//! whole rest of a forwarded call (docs/benchmarks.md), and a backend gets
//! the same token a session-style assertion (Cloudflare Access, Pomerium)
//! would give it. `jti` therefore names the assertion, not the request.

use std::{collections::HashMap, sync::Mutex};

use http::{HeaderMap, HeaderName, HeaderValue};
use serde::Serialize;

use crate::{app::AppState, crypto, oauth::bearer::Identity, store::now_unix};

pub const IDENTITY_HEADER: HeaderName = HeaderName::from_static("x-passgate-identity");
const FORWARDED_USER: HeaderName = HeaderName::from_static("x-forwarded-user");
const FORWARDED_EMAIL: HeaderName = HeaderName::from_static("x-forwarded-email");
const FORWARDED_GROUPS: HeaderName = HeaderName::from_static("x-forwarded-groups");
/// Seconds an identity assertion is valid.
const IDENTITY_TTL_SECS: i64 = 60;
/// A cached assertion is reissued once fewer seconds than this are left, so
/// a backend always receives one with at least this long to run.
const REISSUE_BELOW_SECS: i64 = 30;
/// Assertions kept per route; beyond it the cache starts again empty
/// (one signature per person), so memory stays bounded under any load.
const MAX_CACHED: usize = 10_000;
/// The JWT `typ`, so an assertion is never mistaken for an access token.
pub const IDENTITY_TYP: &str = "passgate-identity+jwt";

#[derive(Serialize)]
struct IdentityClaims<'a> {
    iss: String,
    aud: &'a str,
    sub: &'a str,
    name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    email: Option<&'a str>,
    groups: &'a [String],
    client_id: &'a str,
    iat: i64,
    exp: i64,
    jti: String,
}

/// What of the caller's account a forwarded call needs.
pub struct Account {
    pub id: String,
    /// The unique user name.
    pub name: String,
    /// Its name, as route policies list it.
    pub role: String,
    /// A verified email, when it has one (upstream accounts).
    pub email: Option<String>,
}

/// Everything an assertion says apart from its times and id: two calls
/// with equal subjects may share one assertion.
#[derive(PartialEq, Eq, Hash)]
struct Subject {
    kid: String,
    sub: String,
    name: String,
    email: Option<String>,
    groups: Vec<String>,
    client_id: String,
}

/// One route's assertions still worth sending, by subject.
#[derive(Default)]
pub struct Assertions {
    issued: Mutex<HashMap<Subject, (HeaderValue, i64)>>,
}

impl Assertions {
    /// The `X-Passgate-Identity` value for this caller: a cached assertion
    /// with at least [`REISSUE_BELOW_SECS`] to run, else a new one.
    fn value(
        &self,
        state: &AppState,
        audience: &str,
        identity: &Identity,
        user: &Account,
    ) -> Option<HeaderValue> {
        let now = now_unix();
        let subject = Subject {
            kid: state.keys.active_kid(),
            sub: identity.user_id.clone(),
            name: user.name.clone(),
            email: user.email.clone(),
            groups: identity.groups.clone(),
            client_id: identity.client_id.clone(),
        };
        {
            let issued = self.issued.lock().unwrap_or_else(|e| e.into_inner());
            if let Some((value, exp)) = issued.get(&subject)
                && exp - now >= REISSUE_BELOW_SECS
            {
                return Some(value.clone());
            }
        }
        let claims = IdentityClaims {
            iss: state.config.issuer(),
            aud: audience,
            sub: &subject.sub,
            name: &subject.name,
            email: subject.email.as_deref(),
            groups: &subject.groups,
            client_id: &subject.client_id,
            iat: now,
            exp: now + IDENTITY_TTL_SECS,
            jti: crypto::random_id(),
        };
        let mut value =
            HeaderValue::from_str(&state.keys.sign_typed(IDENTITY_TYP, &claims)).ok()?;
        value.set_sensitive(true);
        let mut issued = self.issued.lock().unwrap_or_else(|e| e.into_inner());
        if issued.len() >= MAX_CACHED {
            issued.retain(|_, (_, exp)| *exp - now >= REISSUE_BELOW_SECS);
            if issued.len() >= MAX_CACHED {
                issued.clear();
            }
        }
        issued.insert(subject, (value.clone(), now + IDENTITY_TTL_SECS));
        Some(value)
    }
}

/// Adds the identity headers for `audience` (the backend URL).
pub fn add_headers(
    state: &AppState,
    assertions: &Assertions,
    headers: &mut HeaderMap,
    audience: &str,
    identity: &Identity,
    user: &Account,
    forward_user_headers: bool,
) {
    if let Some(value) = assertions.value(state, audience, identity, user) {
        headers.insert(IDENTITY_HEADER, value);
    }
    if forward_user_headers {
        let values = [
            (FORWARDED_USER, Some(user.name.clone())),
            (FORWARDED_EMAIL, user.email.clone()),
            (FORWARDED_GROUPS, Some(identity.groups.join(","))),
        ];
        for (name, value) in values {
            if let Some(value) = value.and_then(|v| HeaderValue::from_str(&v).ok()) {
                headers.insert(name, value);
            }
        }
    }
}
