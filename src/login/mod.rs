//! Signing people in: passkeys (WebAuthn), browser sessions, invitations,
//! and the account and admin pages.
//!
//! The OAuth flow depends only on [`current`], [`sign_in_redirect`] and
//! [`SignedIn::check_csrf`].

use axum::response::{IntoResponse, Redirect, Response};
use http::HeaderMap;

use crate::{app::AppState, error::Error};

/// A person with a live browser session.
#[derive(Debug, Clone)]
pub struct SignedIn {
    pub user_id: String,
    pub name: String,
    pub display_name: String,
    pub is_admin: bool,
    /// Per-session token that every state-changing form must echo.
    pub csrf: String,
}

impl SignedIn {
    pub fn check_csrf(&self, submitted: &str) -> Result<(), Error> {
        if crate::crypto::constant_time_eq(&self.csrf, submitted) {
            Ok(())
        } else {
            Err(Error::Csrf)
        }
    }
}

/// The signed-in person of this request, if any.
pub async fn current(_state: &AppState, _headers: &HeaderMap) -> Result<Option<SignedIn>, Error> {
    Ok(None)
}

/// Sends the browser to the sign-in page, to come back to `next` (a path on
/// this server) afterwards.
pub fn sign_in_redirect(next: &str) -> Response {
    let next = if next.starts_with('/') && !next.starts_with("//") {
        next
    } else {
        "/account"
    };
    let encoded: String = url::form_urlencoded::byte_serialize(next.as_bytes()).collect();
    Redirect::to(&format!("/login?next={encoded}")).into_response()
}
