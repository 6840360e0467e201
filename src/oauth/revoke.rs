//! Token revocation (RFC 7009). Revoking either kind of token ends its whole
//! family: access tokens are self-contained JWTs, so the family is what
//! every use checks. Unknown tokens get 200, as the RFC requires.

use axum::{
    Form,
    extract::State,
    response::{IntoResponse, Response},
};
use http::{HeaderMap, StatusCode};
use serde::Deserialize;

use super::{
    OAuthError, bearer, grants,
    token::{self, RefreshChain, RefreshToken, client_of_request},
};
use crate::{app::AppState, net::ClientAddr};

#[derive(Debug, Deserialize)]
pub struct RevokeForm {
    token: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
}

/// `POST /revoke`
pub async fn revoke(
    State(state): State<AppState>,
    headers: HeaderMap,
    addr: ClientAddr,
    form: Result<Form<RevokeForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let Ok(Form(form)) = form else {
        return OAuthError::invalid_request(
            "send the request as application/x-www-form-urlencoded",
        )
        .into_response();
    };
    match handle(&state, &headers, &addr.subject(), form).await {
        Ok(()) => StatusCode::OK.into_response(),
        Err(e) => e.into_response(),
    }
}

async fn handle(
    state: &AppState,
    headers: &HeaderMap,
    caller: &str,
    form: RevokeForm,
) -> Result<(), OAuthError> {
    let client = client_of_request(
        state,
        headers,
        caller,
        form.client_id.as_deref(),
        form.client_secret.as_deref(),
    )
    .await?;
    let token = form
        .token
        .filter(|t| !t.is_empty())
        .ok_or_else(|| OAuthError::invalid_request("token is required"))?;
    let store = state.store.as_ref();
    if let Some((family, _)) = token::chained(state, &token) {
        // Any generation names the family; a client may only revoke its
        // own tokens (RFC 7009 §2.1). Ending the family forgets the chain.
        if let Some(chain) = store
            .get_json::<RefreshChain>(&token::chain_key(&family), "rt")
            .await?
            && chain.client_id == client.client_id
        {
            grants::revoke(store, &chain.user_id, &family).await?;
        }
        return Ok(());
    }
    let rt_key = crate::store::keys::Partition::RefreshToken(&token).key();
    if let Some(record) = store.get_json::<RefreshToken>(&rt_key, "rt").await? {
        // A client may only revoke its own tokens (RFC 7009 §2.1).
        if record.client_id == client.client_id {
            grants::revoke(store, &record.user_id, &record.family).await?;
            // Dead now, but stored for up to 30 days: a client that revokes
            // each token it replaces would otherwise leave one per sign-in.
            store.delete(&rt_key, "rt").await?;
        }
        return Ok(());
    }
    if let Ok(claims) = bearer::verify(state, &token).await
        && claims.client_id == client.client_id
    {
        grants::revoke(store, &claims.sub, &claims.fam).await?;
    }
    Ok(())
}
