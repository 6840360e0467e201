//! What the backend learns about the caller: a short-lived JWT signed with
//! passgate's keys (verifiable with its JWKS, audience the backend's URL),
//! and optionally the plain `X-Forwarded-*` headers many servers read.

use http::{HeaderMap, HeaderName, HeaderValue};
use serde::Serialize;

use crate::{app::AppState, crypto, oauth::bearer::Identity, store::now_unix, users::User};

pub const IDENTITY_HEADER: HeaderName = HeaderName::from_static("x-passgate-identity");
const FORWARDED_USER: HeaderName = HeaderName::from_static("x-forwarded-user");
const FORWARDED_EMAIL: HeaderName = HeaderName::from_static("x-forwarded-email");
const FORWARDED_GROUPS: HeaderName = HeaderName::from_static("x-forwarded-groups");
/// Seconds an identity assertion is valid: one forwarded request.
const IDENTITY_TTL_SECS: i64 = 60;
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

/// The account's verified email, when it has one (upstream accounts).
pub fn email(user: &User) -> Option<&str> {
    user.email.as_deref()
}

/// Adds the identity headers for `audience` (the backend URL).
pub fn add_headers(
    state: &AppState,
    headers: &mut HeaderMap,
    audience: &str,
    identity: &Identity,
    user: &User,
    forward_user_headers: bool,
) {
    let now = now_unix();
    let claims = IdentityClaims {
        iss: state.config.issuer(),
        aud: audience,
        sub: &identity.user_id,
        name: &user.name,
        email: email(user),
        groups: &identity.groups,
        client_id: &identity.client_id,
        iat: now,
        exp: now + IDENTITY_TTL_SECS,
        jti: crypto::random_id(),
    };
    let jwt = state.keys.sign_typed(IDENTITY_TYP, &claims);
    if let Ok(mut value) = HeaderValue::from_str(&jwt) {
        value.set_sensitive(true);
        headers.insert(IDENTITY_HEADER, value);
    }
    if forward_user_headers {
        let values = [
            (FORWARDED_USER, Some(user.name.clone())),
            (FORWARDED_EMAIL, email(user).map(str::to_owned)),
            (FORWARDED_GROUPS, Some(identity.groups.join(","))),
        ];
        for (name, value) in values {
            if let Some(value) = value.and_then(|v| HeaderValue::from_str(&v).ok()) {
                headers.insert(name, value);
            }
        }
    }
}
