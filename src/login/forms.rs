//! Forms posted from passgate's own pages. [`PageForm`] answers a body it
//! cannot read with an error page rather than axum's plain-text rejection;
//! [`SignedInForm`] also requires a live session and that session's
//! anti-forgery token, so a handler that takes one only ever sees a
//! legitimate request from the signed-in person.

use axum::{
    Form,
    extract::{FromRequest, Request},
    response::{IntoResponse, Response},
};
use serde::de::DeserializeOwned;

use crate::{
    app::AppState,
    error::Error,
    login::{SignedIn, current, sign_in_redirect},
};

/// A URL-encoded form whose unreadable body is a 400 error page.
pub struct PageForm<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for PageForm<T> {
    type Rejection = Error;

    async fn from_request(req: Request, state: &S) -> Result<Self, Error> {
        match Form::<T>::from_request(req, state).await {
            Ok(Form(form)) => Ok(Self(form)),
            Err(rejection) => Err(Error::bad_request(format!(
                "passgate could not read this form: {}.",
                rejection.body_text()
            ))),
        }
    }
}

/// A form on one of the signed-in pages (account, admin).
pub trait SignedInPage: DeserializeOwned + Send {
    /// The page the form is on: where signing in again leads back to when
    /// the session ended before the form was sent.
    const PAGE: &'static str;
    /// The form's copy of the session's anti-forgery token.
    fn csrf(&self) -> &str;
}

/// The signed-in person and the form they sent, its CSRF token checked.
/// Without a session the browser is sent to sign in (then back to the
/// form's page); a wrong token is a 403 page.
pub struct SignedInForm<T> {
    pub me: SignedIn,
    pub form: T,
}

impl<T: SignedInPage> FromRequest<AppState> for SignedInForm<T> {
    type Rejection = Response;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Response> {
        let Some(me) = current(state, req.headers())
            .await
            .map_err(IntoResponse::into_response)?
        else {
            return Err(sign_in_redirect(T::PAGE));
        };
        let PageForm(form) = PageForm::<T>::from_request(req, state)
            .await
            .map_err(IntoResponse::into_response)?;
        me.check_csrf(form.csrf())
            .map_err(IntoResponse::into_response)?;
        Ok(Self { me, form })
    }
}
