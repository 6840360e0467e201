//! Discovery documents: authorization server metadata (RFC 8414, also
//! served at the OpenID discovery path because some clients only try that),
//! protected resource metadata (RFC 9728), and the JWKS.

use axum::{Json, extract::State, response::IntoResponse};
use http::header;
use serde_json::{Value, json};

use super::SCOPE_MCP;
use crate::{app::AppState, config::Config};

pub fn authorization_server(config: &Config) -> Value {
    json!({
        "issuer": config.issuer(),
        "authorization_endpoint": config.url("/authorize"),
        "token_endpoint": config.url("/token"),
        "registration_endpoint": config.url("/register"),
        "revocation_endpoint": config.url("/revoke"),
        "jwks_uri": config.url("/.well-known/jwks.json"),
        "scopes_supported": [SCOPE_MCP],
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

pub fn protected_resource(config: &Config) -> Value {
    json!({
        "resource": config.mcp_url(),
        "authorization_servers": [config.issuer()],
        "scopes_supported": [SCOPE_MCP],
        "bearer_methods_supported": ["header"],
        "resource_name": "passgate MCP server",
    })
}

/// The absolute URL clients are pointed at in `WWW-Authenticate`.
pub fn protected_resource_url(config: &Config) -> String {
    config.url("/.well-known/oauth-protected-resource/mcp")
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
    cacheable(authorization_server(&state.config))
}

pub async fn protected_resource_handler(State(state): State<AppState>) -> impl IntoResponse {
    cacheable(protected_resource(&state.config))
}

pub async fn jwks_handler(State(state): State<AppState>) -> impl IntoResponse {
    cacheable(state.keys.jwks())
}
