//! Signing people in: passkeys (WebAuthn), sign-in and sign-out,
//! enrollment from invitations, and the account and admin pages.
//!
//! The OAuth flow depends only on [`current`], [`sign_in_redirect`],
//! [`SignedIn::check_csrf`] and [`forms::PageForm`].
//!
//! Layout: [`passkeys`] is the WebAuthn relying party and its stored
//! ceremonies; [`signin`],
//! [`enroll`], [`account`] and [`admin`] the pages and JSON endpoints;
//! [`api`], [`forms`], [`cookies`] and [`ui`] their shared plumbing;
//! [`cli`] the `passgate users` commands; [`recovery`] the links that let
//! an existing account add a passkey again. The records themselves
//! (accounts, sessions, invitations) live in `crate::accounts`; attempt
//! limits in `crate::ratelimit`.

pub mod account;
pub mod admin;
pub mod api;
pub mod cli;
pub mod cookies;
pub mod enroll;
pub mod forms;
pub mod passkeys;
pub mod recovery;
pub mod signin;
pub mod ui;

use axum::response::{IntoResponse, Redirect, Response};
use http::HeaderMap;

use crate::{
    accounts::{session, users},
    app::AppState,
    error::Error,
};

/// A person with a live browser session.
#[derive(Debug, Clone)]
pub struct SignedIn {
    pub user_id: String,
    pub name: String,
    pub display_name: String,
    pub is_admin: bool,
    pub groups: Vec<String>,
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

    pub fn require_admin(&self) -> Result<(), Error> {
        if self.is_admin {
            Ok(())
        } else {
            Err(Error::Forbidden(
                "Only administrators can manage users.".into(),
            ))
        }
    }
}

/// The signed-in person of this request, if any: a live session cookie
/// whose account still exists and is not disabled.
pub async fn current(state: &AppState, headers: &HeaderMap) -> Result<Option<SignedIn>, Error> {
    let name = cookies::name(&state.config, session::COOKIE);
    let Some(token) = cookies::get(headers, &name) else {
        return Ok(None);
    };
    if token.len() > 128 {
        return Ok(None);
    }
    let Some(session) = session::find(state.store.as_ref(), &token).await? else {
        return Ok(None);
    };
    let Some(user) = users::get(state.store.as_ref(), &session.user_id).await? else {
        return Ok(None);
    };
    if user.disabled {
        return Ok(None);
    }
    Ok(Some(SignedIn {
        is_admin: user.is_admin(),
        user_id: user.id,
        name: user.name,
        display_name: user.display_name,
        groups: user.groups,
        csrf: session.csrf,
    }))
}

/// Sends the browser to the sign-in page, to come back to `next` (a path on
/// this server) afterwards.
pub fn sign_in_redirect(next: &str) -> Response {
    let next = ui::local_next(Some(next));
    let encoded: String = url::form_urlencoded::byte_serialize(next.as_bytes()).collect();
    Redirect::to(&format!("/login?next={encoded}")).into_response()
}
