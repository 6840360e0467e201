//! Plumbing for the JSON endpoints that the passkey script calls
//! (`/login/passkey/...`, `/enroll/passkey/...`, `/account/passkeys/...`):
//! they accept only JSON posted from our own origin, bind pre-sign-in
//! ceremonies to the browser with a cookie, and answer errors as JSON that
//! the script shows to the person.

use std::{convert::Infallible, net::IpAddr};

use axum::{
    Json,
    extract::{ConnectInfo, FromRequestParts},
    response::{IntoResponse, Response},
};
use http::{HeaderMap, HeaderValue, StatusCode, header, request::Parts};
use serde_json::json;

use crate::{
    app::AppState,
    config::Config,
    crypto::random_token,
    error::Error,
    login::{cookies, ratelimit},
    store::StoreError,
};

/// Cookie that binds a ceremony to the browser that started it.
pub const BINDING_COOKIE: &str = "passgate_ceremony";
const BINDING_MAX_AGE: i64 = 15 * 60;

/// An [`Error`] answered as `{"error": "...", "next": "..."}`.
#[derive(Debug)]
pub struct ApiError(pub Error);

impl<E: Into<Error>> From<E> for ApiError {
    fn from(e: E) -> Self {
        Self(e.into())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, message, next) = match &self.0 {
            Error::BadRequest(m) => (
                StatusCode::BAD_REQUEST,
                m.clone(),
                "Reload the page and try again.",
            ),
            Error::NotFound(m) => (StatusCode::NOT_FOUND, m.clone(), "Reload the page."),
            Error::Forbidden(m) => (StatusCode::FORBIDDEN, m.clone(), ""),
            Error::Csrf => (
                StatusCode::FORBIDDEN,
                self.0.to_string(),
                "Reload the page and try again.",
            ),
            Error::RateLimited => (
                StatusCode::TOO_MANY_REQUESTS,
                "There were too many attempts in a short time.".to_owned(),
                "Wait a few minutes, then try again.",
            ),
            Error::Gone(m) => (StatusCode::GONE, m.clone(), ""),
            Error::UpstreamUnavailable(m) => (
                StatusCode::SERVICE_UNAVAILABLE,
                m.clone(),
                "Try again in a moment.",
            ),
            Error::BadGateway(m) => (StatusCode::BAD_GATEWAY, m.clone(), ""),
            Error::SignInCancelled { .. } => (StatusCode::FORBIDDEN, self.0.to_string(), ""),
            Error::Store(StoreError::Unavailable(e)) => {
                tracing::warn!(error = %e, "store unavailable");
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "passgate's storage is busy or unreachable right now.".to_owned(),
                    "Try again in a moment.",
                )
            }
            Error::Store(e) => {
                tracing::error!(error = %e, "store error");
                internal()
            }
            Error::Internal(e) => {
                tracing::error!(error = %format!("{e:#}"), "internal error");
                internal()
            }
        };
        let mut response =
            (status, Json(json!({ "error": message, "next": next }))).into_response();
        response
            .headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        response
    }
}

fn internal() -> (StatusCode, String, &'static str) {
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        "passgate hit an internal error.".to_owned(),
        "Try again; if it keeps happening, tell the operator (details are in the server log).",
    )
}

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

/// The client's address (see [`ratelimit::client_addr`]), as an extractor.
/// The TCP peer is present when the server is run with connect info;
/// in-process tests have none.
pub struct ClientAddr(pub Option<IpAddr>);

impl FromRequestParts<AppState> for ClientAddr {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Infallible> {
        let peer = parts
            .extensions
            .get::<ConnectInfo<std::net::SocketAddr>>()
            .map(|c| c.0);
        Ok(Self(ratelimit::client_addr(
            &parts.headers,
            peer,
            &state.config,
        )))
    }
}

impl ClientAddr {
    pub fn subject(&self) -> String {
        ratelimit::addr_subject(self.0)
    }
}
