//! Discovery documents: authorization server metadata (RFC 8414, also
//! served at the OpenID discovery path because some clients only try that),
//! protected resource metadata (RFC 9728), and the JWKS.

use axum::{Json, extract::State, response::IntoResponse};
use http::header;
use serde_json::{Value, json};

use super::resource::{Resource, Resources};
use crate::{app::AppState, config::Config};

pub fn authorization_server(config: &Config, resources: &Resources) -> Value {
    json!({
        "issuer": config.issuer(),
        "authorization_endpoint": config.url("/authorize"),
        "token_endpoint": config.url("/token"),
        "registration_endpoint": config.url("/register"),
        "revocation_endpoint": config.url("/revoke"),
        "jwks_uri": config.url("/.well-known/jwks.json"),
        "scopes_supported": resources.scopes_supported(),
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": ["authorization_code", "refresh_token"],
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": ["none", "client_secret_basic", "client_secret_post"],
        "revocation_endpoint_auth_methods_supported": ["none", "client_secret_basic", "client_secret_post"],
        "authorization_response_iss_parameter_supported": true,
        "client_id_metadata_document_supported": true,
        "service_documentation": config.url("/"),
    })
}

/// One resource's metadata (RFC 9728 §2): its `resource` is exactly the
/// audience its bearer check accepts.
pub fn protected_resource(config: &Config, resource: &Resource) -> Value {
    json!({
        "resource": resource.url(),
        "authorization_servers": [config.issuer()],
        "scopes_supported": resource.scopes(),
        "bearer_methods_supported": ["header"],
        "resource_name": resource.name(),
    })
}

fn cacheable(body: Value) -> impl IntoResponse {
    (
        [
            (header::CACHE_CONTROL, "public, max-age=300"),
            (header::ACCESS_CONTROL_ALLOW_ORIGIN, "*"),
        ],
        Json(body),
    )
}

pub async fn authorization_server_handler(State(state): State<AppState>) -> impl IntoResponse {
    cacheable(authorization_server(&state.config, &state.resources))
}

/// The metadata of the primary resource, also served at the bare
/// `/.well-known/oauth-protected-resource` for clients that try only that.
pub async fn primary_protected_resource_handler(
    State(state): State<AppState>,
) -> impl IntoResponse {
    cacheable(protected_resource(&state.config, state.resources.primary()))
}

/// The handler for one resource's metadata document.
pub fn protected_resource_handler(
    config: &Config,
    resource: &Resource,
) -> axum::routing::MethodRouter<AppState> {
    let body = protected_resource(config, resource);
    axum::routing::get(move || {
        let body = body.clone();
        async move { cacheable(body) }
    })
}

pub async fn jwks_handler(State(state): State<AppState>) -> impl IntoResponse {
    cacheable(state.keys.jwks())
}
