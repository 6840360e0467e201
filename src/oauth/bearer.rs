//! The resource server: every `/mcp` request must carry one of our access
//! tokens, unexpired, for our audience, with the `mcp` scope, from a grant
//! that has not been revoked. The verified [`Identity`] is put in the
//! request's extensions, where tool handlers find it.

use axum::{
    extract::{Request, State},
    middleware::Next,
    response::{IntoResponse, Response},
};
use http::{HeaderValue, StatusCode, header};
use jsonwebtoken::{Algorithm, Validation};
use serde::{Deserialize, Serialize};

use super::{
    SCOPE_MCP, grants,
    metadata::protected_resource_url,
    verified::{self, Verified},
};
use crate::app::AppState;

/// Who is calling: available to tools through the request's extensions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub user_id: String,
    pub client_id: String,
    pub scopes: Vec<String>,
    /// The account's groups, as administrators set them.
    pub groups: Vec<String>,
}

/// Access-token claims (RFC 9068 plus `fam`, the grant the token belongs to).
#[derive(Debug, Serialize, Deserialize)]
pub struct AccessClaims {
    pub iss: String,
    pub sub: String,
    pub aud: String,
    pub exp: i64,
    pub iat: i64,
    pub jti: String,
    pub client_id: String,
    pub scope: String,
    pub fam: String,
}

impl Verified {
    fn into_claims(v: Verified) -> AccessClaims {
        AccessClaims {
            iss: String::new(),
            sub: v.sub,
            aud: String::new(),
            exp: v.exp,
            iat: 0,
            jti: String::new(),
            client_id: v.client_id,
            scope: v.scope,
            fam: v.fam,
        }
    }
}

/// Why a token was refused. Becomes a `WWW-Authenticate` challenge.
#[derive(Debug, PartialEq, Eq)]
pub enum BearerError {
    Missing,
    Invalid(&'static str),
    InsufficientScope,
    Unavailable,
}

/// Verifies a token's signature, issuer, audience, expiry and type.
pub async fn verify(state: &AppState, token: &str) -> Result<AccessClaims, BearerError> {
    verify_signed_by(state, token)
        .await
        .map(|(_, claims)| claims)
}

/// [`verify`], also returning the id of the key that signed the token.
async fn verify_signed_by(
    state: &AppState,
    token: &str,
) -> Result<(String, AccessClaims), BearerError> {
    let header =
        jsonwebtoken::decode_header(token).map_err(|_| BearerError::Invalid("malformed token"))?;
    if header.alg != Algorithm::ES256 {
        return Err(BearerError::Invalid("unsupported token algorithm"));
    }
    if header.typ.as_deref().map(|t| t.to_ascii_lowercase()) != Some("at+jwt".into()) {
        return Err(BearerError::Invalid("not an access token"));
    }
    let kid = header
        .kid
        .ok_or(BearerError::Invalid("token has no key id"))?;
    let key = match state.keys.decoding_key(&kid) {
        Some(key) => key,
        None => {
            // Maybe another instance rotated keys since we loaded them.
            state
                .keys
                .reload_if_due(state.store.as_ref(), &state.master_key)
                .await;
            state
                .keys
                .decoding_key(&kid)
                .ok_or(BearerError::Invalid("token signed by an unknown key"))?
        }
    };
    let mut validation = Validation::new(Algorithm::ES256);
    validation.set_issuer(&[state.config.issuer()]);
    validation.set_audience(&[state.config.mcp_url()]);
    validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
    validation.leeway = 30;
    jsonwebtoken::decode::<AccessClaims>(token, &key, &validation)
        .map(|data| (kid, data.claims))
        .map_err(|e| match e.kind() {
            jsonwebtoken::errors::ErrorKind::ExpiredSignature => {
                BearerError::Invalid("token expired")
            }
            jsonwebtoken::errors::ErrorKind::InvalidAudience => {
                BearerError::Invalid("token is for another audience")
            }
            jsonwebtoken::errors::ErrorKind::InvalidIssuer => {
                BearerError::Invalid("token is from another issuer")
            }
            _ => BearerError::Invalid("invalid token"),
        })
}

/// Verifies the token and checks that its grant still stands.
pub async fn authenticate(state: &AppState, token: &str) -> Result<Identity, BearerError> {
    let memo_key = verified::key(token);
    let claims = match state
        .verified
        .get(&memo_key)
        .filter(|v| state.keys.decoding_key(&v.kid).is_some())
    {
        Some(v) => Verified::into_claims(v),
        None => {
            let (kid, claims) = verify_signed_by(state, token).await?;
            state.verified.insert(memo_key, &kid, &claims);
            claims
        }
    };
    let scopes: Vec<String> = claims.scope.split(' ').map(str::to_owned).collect();
    if !scopes.iter().any(|s| s == SCOPE_MCP) {
        return Err(BearerError::InsufficientScope);
    }
    let groups = match grants::get(state.store.as_ref(), &claims.fam).await {
        Ok(Some(grant)) if grant.user_id == claims.sub => grant.groups,
        Ok(_) => return Err(BearerError::Invalid("access was revoked")),
        Err(e) => {
            tracing::warn!(error = %e, "could not check a grant");
            return Err(BearerError::Unavailable);
        }
    };
    Ok(Identity {
        user_id: claims.sub,
        client_id: claims.client_id,
        scopes,
        groups,
    })
}

fn bearer_token(request: &Request) -> Option<&str> {
    let value = request
        .headers()
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// Middleware for `/mcp`.
pub async fn require_token(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    // Tokens in the query string are never accepted (RFC 9700 §2.5); such a
    // request is treated as carrying no token.
    let result = match bearer_token(&request) {
        None => Err(BearerError::Missing),
        Some(token) => authenticate(&state, token).await,
    };
    match result {
        Ok(identity) => {
            request.extensions_mut().insert(identity);
            next.run(request).await
        }
        Err(e) => challenge(&state, e),
    }
}

/// The 401/403 answer with its `WWW-Authenticate` challenge (RFC 6750 §3,
/// RFC 9728 §5.1).
pub fn challenge(state: &AppState, error: BearerError) -> Response {
    let metadata = protected_resource_url(&state.config);
    let (status, value, body) = match error {
        BearerError::Missing => (
            StatusCode::UNAUTHORIZED,
            format!(r#"Bearer resource_metadata="{metadata}", scope="{SCOPE_MCP}""#),
            "authorization required: sign in through this server's OAuth flow",
        ),
        BearerError::Invalid(why) => (
            StatusCode::UNAUTHORIZED,
            format!(
                r#"Bearer error="invalid_token", error_description="{why}", resource_metadata="{metadata}", scope="{SCOPE_MCP}""#
            ),
            why,
        ),
        BearerError::InsufficientScope => (
            StatusCode::FORBIDDEN,
            format!(
                r#"Bearer error="insufficient_scope", scope="{SCOPE_MCP}", resource_metadata="{metadata}", error_description="the token lacks a required scope""#
            ),
            "the token lacks a required scope",
        ),
        BearerError::Unavailable => {
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                [(header::RETRY_AFTER, "2")],
                "storage is busy; retry shortly",
            )
                .into_response();
        }
    };
    let mut response = (status, body).into_response();
    if let Ok(v) = HeaderValue::from_str(&value) {
        response.headers_mut().insert(header::WWW_AUTHENTICATE, v);
    }
    response
}
