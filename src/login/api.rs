//! Plumbing for the JSON endpoints that the passkey script calls
//! (`/login/passkey/...`, `/enroll/passkey/...`, `/account/passkeys/...`):
//! they accept only JSON posted from our own origin and bind pre-sign-in
//! ceremonies to the browser with a cookie. Their errors are
//! [`crate::error::ScriptError`]s, which the script shows to the person.

use axum::{
    Json,
    response::{IntoResponse, Response},
};
use http::{HeaderMap, HeaderValue, header};

use crate::{config::Config, crypto::random_token, error::Error, login::cookies};

/// Cookie that binds a ceremony to the browser that started it.
pub const BINDING_COOKIE: &str = "passgate_ceremony";
const BINDING_MAX_AGE: i64 = 15 * 60;

/// Refuses requests that are not JSON posted by a page of our own origin.
/// Browsers always send `Origin` on a `fetch` POST; a cross-site page cannot
/// forge it, and cannot send JSON cross-site without our consent (CORS).
pub fn check_request(config: &Config, headers: &HeaderMap) -> Result<(), Error> {
    let origin = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok());
    if origin != Some(config.origin().as_str()) {
        return Err(Error::Forbidden(
            "This request did not come from a passgate page.".into(),
        ));
    }
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(';')
                .next()
                .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"))
        });
    if !is_json {
        return Err(Error::bad_request("Expected a JSON request."));
    }
    Ok(())
}

/// The browser-binding value: the existing cookie, or a new one together
/// with the `Set-Cookie` header that stores it.
pub fn binding(config: &Config, headers: &HeaderMap) -> (String, Option<HeaderValue>) {
    match cookies::get(headers, &cookies::name(config, BINDING_COOKIE)) {
        Some(value) if value.len() >= 32 => (value, None),
        _ => {
            let value = random_token(32);
            let cookie = cookies::set(config, BINDING_COOKIE, &value, BINDING_MAX_AGE, "Strict");
            (value, Some(cookie))
        }
    }
}

/// The binding cookie at the end of a ceremony; without it the ceremony
/// cannot be tied to this browser.
pub fn require_binding(config: &Config, headers: &HeaderMap) -> Result<String, Error> {
    cookies::get(headers, &cookies::name(config, BINDING_COOKIE)).ok_or_else(|| {
        Error::Forbidden(
            "Your browser did not send passgate's sign-in cookie. Allow cookies for this site and try again."
                .into(),
        )
    })
}

/// A JSON answer, with an optional `Set-Cookie`.
pub fn json_with_cookies(value: serde_json::Value, set_cookies: Vec<HeaderValue>) -> Response {
    let mut response = Json(value).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    for cookie in set_cookies {
        headers.append(header::SET_COOKIE, cookie);
    }
    response
}
