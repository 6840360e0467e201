//! The resource server: every request to a protected resource must carry
//! one of our access tokens, unexpired, for that resource's audience, with
//! the `mcp` scope, from a grant that has not been revoked. The verified
//! [`Identity`] is put in the request's extensions, where tool handlers
//! find it.

use axum::{
    extract::{Request, State},
    middleware::Next,
    response::{IntoResponse, Response},
};
use http::header;
use jsonwebtoken::{Algorithm, Validation};

pub use super::access_token::AccessClaims;
use super::{
    SCOPE_MCP, grants,
    resource::Resource,
    verified::{self, Verified},
};
pub use crate::error::BearerError;
use crate::{app::AppState, error::BearerChallenge};

/// Who is calling, verified: the person, the OAuth client they connected,
/// the token's scopes, and what the person's profile holds. The bearer
/// check puts it in every request's extensions; a tool reads it from
/// rmcp's request `Parts` with [`Identity::from_parts`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Identity {
    /// passgate's stable user id (32 hex digits).
    pub user_id: String,
    /// The unique, lowercase user name (empty for grants made before it
    /// was kept).
    pub user_name: String,
    /// The person's display name, as at approval.
    pub display_name: String,
    /// The OAuth client the call came through.
    pub client_id: String,
    /// The access token's scopes.
    pub scopes: Vec<String>,
    /// The account's groups, as administrators (or the identity provider)
    /// set them, current at every call.
    pub groups: Vec<String>,
    /// The account's role and email, current like the groups (`None` for
    /// grants made before grants carried them).
    pub(crate) account: Option<grants::AccountProfile>,
}

impl Identity {
    /// The caller of the request these are the parts of.
    ///
    /// ```
    /// use passgate::{Identity, rmcp::{handler::server::common::Extension, model::CallToolResult}};
    ///
    /// async fn whoami(Extension(parts): Extension<http::request::Parts>) -> CallToolResult {
    ///     let who = Identity::from_parts(&parts).map_or("nobody", |i| i.user_name.as_str());
    ///     CallToolResult::success(vec![passgate::rmcp::model::ContentBlock::text(who)])
    /// }
    /// ```
    ///
    /// `None` only for a request that did not pass the bearer check, which
    /// a mounted service never sees.
    pub fn from_parts(parts: &http::request::Parts) -> Option<&Identity> {
        parts.extensions.get::<Identity>()
    }

    /// Does the token carry `scope`?
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes.iter().any(|s| s == scope)
    }
}

impl Verified {
    fn into_claims(v: Verified) -> AccessClaims {
        AccessClaims {
            iss: String::new(),
            sub: v.sub,
            aud: v.aud,
            exp: v.exp,
            iat: 0,
            jti: String::new(),
            client_id: v.client_id,
            scope: v.scope,
            fam: v.fam,
        }
    }
}

/// Verifies a token's signature, issuer, expiry and type, and that it is
/// for one of this server's resources (revocation accepts any of them).
pub async fn verify(state: &AppState, token: &str) -> Result<AccessClaims, BearerError> {
    let audiences = state.resources.urls();
    verify_signed_by(state, token, &audiences)
        .await
        .map(|(_, claims)| claims)
}

/// [`verify`], also returning the id of the key that signed the token.
async fn verify_signed_by(
    state: &AppState,
    token: &str,
    audiences: &[&str],
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
    validation.set_audience(audiences);
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

/// Verifies the token for `resource` (its audience) and checks that its
/// grant still stands.
pub async fn authenticate(
    state: &AppState,
    token: &str,
    resource: &Resource,
) -> Result<Identity, BearerError> {
    let memo_key = verified::key(token);
    let claims = match state
        .verified
        .get(&memo_key)
        .filter(|v| state.keys.decoding_key(&v.kid).is_some())
    {
        // The memo remembers the audience too: a token verified for one
        // resource is not thereby good for another.
        Some(v) if v.aud == resource.url() => Verified::into_claims(v),
        Some(_) => return Err(BearerError::Invalid("token is for another audience")),
        None => {
            let (kid, claims) = verify_signed_by(state, token, &[resource.url()]).await?;
            state.verified.insert(memo_key, &kid, &claims);
            claims
        }
    };
    let scopes: Vec<String> = claims.scope.split(' ').map(str::to_owned).collect();
    if !scopes.iter().any(|s| s == SCOPE_MCP) {
        return Err(BearerError::InsufficientScope);
    }
    let grant = match grants::get(state.store.as_ref(), &claims.fam).await {
        Ok(Some(grant)) if grant.user_id == claims.sub => grant,
        Ok(_) => return Err(BearerError::Invalid("access was revoked")),
        Err(e) => {
            tracing::warn!(error = %e, "could not check a grant");
            return Err(BearerError::Unavailable);
        }
    };
    Ok(Identity {
        user_id: claims.sub,
        user_name: grant.user_name,
        display_name: grant.display_name,
        client_id: claims.client_id,
        scopes,
        groups: grant.groups,
        account: grant.account,
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

/// What the bearer check of one protected resource needs: the app and
/// the resource whose audience tokens must name.
#[derive(Clone)]
pub struct Guard {
    pub state: AppState,
    pub resource: Resource,
}

/// The refusal of `resource`: its metadata, and the scopes needed (`mcp`
/// when `scopes` is empty).
pub fn challenge(resource: &Resource, error: BearerError, scopes: &[&str]) -> BearerChallenge {
    BearerChallenge {
        error,
        resource_metadata: resource.metadata_url().to_owned(),
        scope: if scopes.is_empty() {
            SCOPE_MCP.to_owned()
        } else {
            scopes.join(" ")
        },
    }
}

/// Middleware for a protected resource: no request reaches its service
/// without a token for it.
pub async fn require_token(
    State(guard): State<Guard>,
    mut request: Request,
    next: Next,
) -> Response {
    // Tokens in the query string are never accepted (RFC 9700 §2.5); such a
    // request is treated as carrying no token.
    let result = match bearer_token(&request) {
        None => Err(BearerError::Missing),
        Some(token) => authenticate(&guard.state, token, &guard.resource).await,
    };
    match result {
        Ok(identity) => {
            request.extensions_mut().insert(identity);
            next.run(request).await
        }
        Err(e) => challenge(&guard.resource, e, &[]).into_response(),
    }
}
