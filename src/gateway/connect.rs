//! The account page's side of backends with their own sign-in: connecting
//! (off to the backend's authorization server), coming back, disconnecting,
//! and the client metadata document those servers may fetch.

use axum::{
    Extension, Json, Router,
    extract::{Query, State},
    response::{IntoResponse, Redirect, Response},
    routing::{get, post},
};
use http::{HeaderMap, HeaderValue, header};
use serde::Deserialize;

use super::{
    Gateway,
    backend_auth::{
        self, BackendAuthError, BackendSignIn, CALLBACK_PATH, CLIENT_DOCUMENT_PATH, CallbackError,
    },
};
use crate::{
    accounts::backend_tokens,
    app::AppState,
    error::Error,
    login::{
        current,
        forms::{SignedInForm, SignedInPage},
        sign_in_redirect,
    },
};

pub fn routes(gateway: Gateway) -> Router<AppState> {
    Router::new()
        .route("/account/backends/connect", post(connect))
        .route("/account/backends/disconnect", post(disconnect))
        .route(CALLBACK_PATH, get(callback))
        .route(CLIENT_DOCUMENT_PATH, get(client_document))
        .layer(Extension(gateway))
}

#[derive(Deserialize)]
pub struct RouteForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    resource: String,
}

impl SignedInPage for RouteForm {
    const PAGE: &'static str = "/account";
    fn csrf(&self) -> &str {
        &self.csrf
    }
}

fn sign_in_of<'a>(gateway: &'a Gateway, path: &str) -> Result<&'a BackendSignIn, Error> {
    gateway
        .sign_in(path)
        .map(AsRef::as_ref)
        .ok_or_else(|| Error::bad_request("That MCP server has no sign-in of its own (any more)."))
}

fn page_error(e: BackendAuthError) -> Error {
    match e {
        BackendAuthError::NotConnected => {
            Error::bad_request("Connect this MCP server again from your account page.")
        }
        BackendAuthError::Unavailable(why) => {
            tracing::warn!(error = %why, "a backend's authorization server is unavailable");
            Error::ProviderUnavailable {
                message:
                    "The MCP server's sign-in is unreachable right now. Try again in a minute."
                        .into(),
                retry: Some("/account".into()),
            }
        }
        BackendAuthError::Misconfigured(why) => {
            tracing::warn!(error = %why, "a backend's sign-in cannot be used");
            Error::BadGateway(format!(
                "This MCP server's own sign-in cannot be used: {why}. Tell passgate's administrator."
            ))
        }
        BackendAuthError::Store(e) => Error::Store(e),
    }
}

/// `POST /account/backends/connect`: off to the backend's sign-in.
async fn connect(
    State(state): State<AppState>,
    Extension(gateway): Extension<Gateway>,
    SignedInForm { me, form }: SignedInForm<RouteForm>,
) -> Result<Response, Error> {
    let sign_in = sign_in_of(&gateway, &form.resource)?;
    let url = sign_in
        .start(&state, &me.user_id)
        .await
        .map_err(page_error)?;
    Ok(Redirect::to(&url).into_response())
}

#[derive(Deserialize)]
pub struct CallbackQuery {
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    state: Option<String>,
    #[serde(default)]
    iss: Option<String>,
    #[serde(default)]
    error: Option<String>,
}

/// `GET /account/backends/callback`: back from the backend's sign-in.
async fn callback(
    State(state): State<AppState>,
    Extension(gateway): Extension<Gateway>,
    headers: HeaderMap,
    Query(query): Query<CallbackQuery>,
) -> Result<Response, Error> {
    let Some(me) = current(&state, &headers).await? else {
        return Ok(sign_in_redirect("/account"));
    };
    let expired = || {
        Error::Gone(
            "This sign-in at the MCP server expired or was used already. Connect again from your account page."
                .into(),
        )
    };
    let Some(raw_state) = query.state.as_deref().filter(|s| !s.is_empty()) else {
        return Err(expired());
    };
    let Some((user_id, route_path, attempt)) =
        backend_auth::take_attempt(&state, raw_state).await?
    else {
        return Err(expired());
    };
    if user_id != me.user_id {
        return Err(Error::Forbidden(
            "This sign-in was started from another passgate account. Connect again from your own account page.".into(),
        ));
    }
    if query.error.is_some() {
        return Ok(Redirect::to("/account?notice=backend-cancelled").into_response());
    }
    let code = query
        .code
        .as_deref()
        .filter(|c| !c.is_empty())
        .ok_or_else(|| Error::bad_request("The MCP server's sign-in sent no code back."))?;
    let sign_in = sign_in_of(&gateway, &route_path)?;
    match backend_auth::finish_attempt(sign_in, &state, attempt, code, query.iss.as_deref()).await {
        Ok(()) => {
            tracing::info!(user = %me.name, route = %route_path, "connected a backend account");
            Ok(Redirect::to("/account?notice=backend-connected").into_response())
        }
        Err(CallbackError::Refused(why)) => Err(Error::bad_request(format!(
            "Connecting failed: {why}. Connect again from your account page."
        ))),
        Err(CallbackError::Auth(e)) => Err(page_error(e)),
    }
}

/// `POST /account/backends/disconnect`
async fn disconnect(
    State(state): State<AppState>,
    Extension(gateway): Extension<Gateway>,
    SignedInForm { me, form }: SignedInForm<RouteForm>,
) -> Result<Response, Error> {
    match gateway.sign_in(&form.resource) {
        Some(sign_in) => sign_in
            .disconnect(&state, &me.user_id)
            .await
            .map_err(page_error)?,
        // A route that is gone: its tokens go too.
        None => backend_tokens::remove(state.store.as_ref(), &me.user_id, &form.resource).await?,
    }
    tracing::info!(user = %me.name, route = %form.resource, "disconnected a backend account");
    Ok(Redirect::to("/account?notice=backend-disconnected").into_response())
}

/// `GET /oauth/backend-client.json`: passgate as a client, for the
/// authorization servers of backends that fetch client metadata documents.
async fn client_document(State(state): State<AppState>) -> Response {
    let mut response = Json(backend_auth::client_metadata(&state)).into_response();
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=3600"),
    );
    response
}
