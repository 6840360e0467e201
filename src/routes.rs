//! The route table: every URL passgate answers, in one place.
//!
//! OAuth endpoints sit at the origin root because Claude appends
//! `/authorize`, `/token` and `/register` to the base URL instead of reading
//! the metadata.

use std::sync::{Arc, OnceLock};

use axum::{
    Router,
    extract::{Request, State},
    middleware,
    response::Response,
    routing::{get, post},
};
use http::{HeaderValue, header};
use tower::ServiceExt;
use tower_http::{limit::RequestBodyLimitLayer, set_header::SetResponseHeaderLayer};

use crate::{
    app::AppState,
    canonical,
    config::Config,
    error::Error,
    gateway::Gateway,
    login::{account, admin, enroll, recovery, signin},
    mcp,
    oauth::{
        OAuthError, authorize, bearer, clients, metadata,
        resource::{InvalidResourcePath, Resources},
        revoke, token,
    },
    oidc, pages,
    store::StoreError,
    telemetry::{self, Fault},
};

/// Builds the whole application with passgate's demo tools at `/mcp`.
/// Tests call this and drive it with `oneshot`.
pub fn router(state: AppState) -> Router {
    let demo = mcp::ProtectedMcp::demo(&state.config, state.shutdown.clone());
    router_with(state, vec![demo]).expect("the demo alone is a valid set of resources")
}

/// Builds the whole application around `endpoints`, the protected MCP
/// endpoints; the first is the resource tokens are for when a client names
/// none. Fails when two share a path.
pub fn router_with(
    state: AppState,
    endpoints: Vec<mcp::ProtectedMcp>,
) -> Result<Router, InvalidResourcePath> {
    build(state, endpoints, None)
}

/// Builds the whole application around `endpoints` and `gateway`'s routes
/// (docs/gateway.md); a backend served at `/mcp` (`--backend`) takes the
/// place of the endpoint there. `/readyz` then covers the backends too.
pub fn router_with_gateway(
    state: AppState,
    mut endpoints: Vec<mcp::ProtectedMcp>,
    gateway: Option<Gateway>,
) -> Result<Router, InvalidResourcePath> {
    if let Some(gateway) = &gateway {
        if gateway.serves_mcp() {
            endpoints.retain(|e| e.resource().path() != "/mcp");
        }
        endpoints.extend(gateway.endpoints(&state)?);
    }
    build(state, endpoints, gateway)
}

fn build(
    mut state: AppState,
    endpoints: Vec<mcp::ProtectedMcp>,
    gateway: Option<Gateway>,
) -> Result<Router, InvalidResourcePath> {
    let (resources, services): (Vec<_>, Vec<_>) = endpoints
        .into_iter()
        .map(mcp::ProtectedMcp::into_parts)
        .unzip();
    state.resources = Resources::new(resources)?;
    let origins = mcp::AllowedOrigins::new(&state.config);
    let mut mcp = Router::new();
    for (resource, service) in state.resources.clone().iter().zip(services) {
        // Outermost first: Origin, then the bearer check for this
        // resource's audience, then the service.
        let guard = bearer::Guard {
            state: state.clone(),
            resource: resource.clone(),
        };
        let endpoint = Router::new()
            .route(resource.path(), service)
            .route_layer(middleware::from_fn_with_state(guard, bearer::require_token))
            .route_layer(middleware::from_fn_with_state(
                origins.clone(),
                mcp::check_origin,
            ))
            .route(
                &resource.metadata_path(),
                metadata::protected_resource_handler(&state.config, resource),
            );
        mcp = mcp.merge(endpoint);
    }
    let backend_sign_ins = gateway
        .as_ref()
        .map(Gateway::account_routes)
        .unwrap_or_default();
    let app = Router::new()
        .route("/healthz", get(healthz))
        .route(
            "/readyz",
            get(move |state: State<AppState>| readyz(state, gateway.clone())),
        )
        // People who open the bare URL (or come back from an identity
        // provider's sign-out, with whatever parameters) land on their account.
        .route(
            "/",
            get(|| async { axum::response::Redirect::to("/account") }),
        )
        // Discovery.
        .route(
            "/.well-known/oauth-authorization-server",
            get(metadata::authorization_server_handler),
        )
        .route(
            "/.well-known/openid-configuration",
            get(metadata::authorization_server_handler),
        )
        .route(
            "/.well-known/oauth-protected-resource",
            get(metadata::primary_protected_resource_handler),
        )
        .route("/.well-known/jwks.json", get(metadata::jwks_handler))
        // Authorization server.
        .route("/register", post(clients::register_handler))
        .route("/authorize", get(authorize::authorize))
        .route(
            "/consent",
            get(authorize::consent_page).post(authorize::consent_decision),
        )
        .route("/token", post(token::token))
        .route("/revoke", post(revoke::revoke))
        // Static assets.
        .route("/assets/style.css", get(pages::stylesheet))
        .route("/assets/passkeys.js", get(pages::passkeys_js))
        // Sign-in (pages and the passkey script's JSON endpoints).
        .route("/login", get(signin::page))
        .route("/login/passkey/options", post(signin::options))
        .route("/login/passkey/finish", post(signin::finish))
        .route("/logout", post(signin::logout))
        // Sign-in through an upstream OpenID provider.
        .route("/login/upstream", post(oidc::start))
        .route(oidc::CALLBACK_PATH, get(oidc::callback))
        // Enrollment from an invitation.
        .route("/enroll", get(enroll::page))
        .route("/enroll/passkey/options", post(enroll::options))
        .route("/enroll/passkey/finish", post(enroll::finish))
        // Adding a passkey again from a recovery link.
        .route("/recover", get(recovery::page))
        .route("/recover/passkey/options", post(recovery::options))
        .route("/recover/passkey/finish", post(recovery::finish))
        // The account page.
        .route("/account", get(account::page))
        .route("/account/passkeys/options", post(account::add_options))
        .route("/account/passkeys/finish", post(account::add_finish))
        .route("/account/passkeys/rename", post(account::rename))
        .route("/account/passkeys/delete", post(account::delete))
        .route("/account/clients/revoke", post(account::revoke_client))
        .route("/account/keys", post(account::set_key))
        .route("/account/keys/remove", post(account::remove_key))
        // Administration.
        .route("/admin", get(admin::page))
        .route("/admin/invite", post(admin::invite))
        .route("/admin/users/disable", post(admin::disable))
        .route("/admin/users/enable", post(admin::enable))
        .route("/admin/users/delete", post(admin::delete))
        .route("/admin/users/recover", post(admin::recover))
        .route("/admin/users/groups", post(admin::set_groups))
        .merge(backend_sign_ins)
        .merge(mcp)
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(
            state.clone(),
            canonical::redirect_or_explain,
        ));
    Ok(with_common_layers(app, &state.config).with_state(state))
}

/// Layers every passgate router gets, including the conformance fixtures':
/// body limit, request logging without secrets, the one log line for each
/// fault of our own, and safe response headers.
pub fn with_common_layers<S: Clone + Send + Sync + 'static>(
    router: Router<S>,
    config: &Config,
) -> Router<S> {
    router
        .layer(RequestBodyLimitLayer::new(config.max_body_bytes))
        .layer(middleware::map_response(log_fault))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .layer(telemetry::http_trace_layer())
}

/// Error conversions only attach their fault to the response (see
/// `error.rs`); this is where it is logged, once, inside the request's span.
async fn log_fault(response: Response) -> Response {
    if let Some(fault) = response.extensions().get::<Fault>() {
        fault.log();
    }
    response
}

/// Liveness: the process answers. Says nothing about the store.
async fn healthz() -> &'static str {
    "ok"
}

/// Readiness: this instance can serve requests now, which needs the store
/// (one point read) and every gateway backend. 503 while either is
/// unreachable, so a load balancer sends people to an instance that can
/// serve them.
async fn readyz(
    State(state): State<AppState>,
    gateway: Option<Gateway>,
) -> Result<&'static str, Error> {
    state.store.get("readyz", "-").await?;
    if let Some(gateway) = gateway {
        gateway
            .check_backends()
            .await
            .map_err(|e| Error::Store(StoreError::Unavailable(e)))?;
    }
    Ok("ready")
}

/// The app while start-up waits for the store: `ready` is empty until
/// start-up succeeds, and every request is answered by what it then holds.
/// Until then, `/healthz` answers and everything else is 503:
/// `temporarily_unavailable` on the OAuth endpoints that clients call, an
/// error page elsewhere.
pub fn while_starting(ready: Arc<OnceLock<Router>>, config: &Config) -> Router {
    async fn oauth_not_ready() -> OAuthError {
        OAuthError::temporarily_unavailable("passgate is starting; retry shortly")
    }
    async fn not_ready() -> Error {
        Error::Store(StoreError::Unavailable(
            "start-up is waiting for the store".into(),
        ))
    }
    let starting = Router::new()
        .route("/healthz", get(healthz))
        .route("/token", post(oauth_not_ready))
        .route("/register", post(oauth_not_ready))
        .route("/revoke", post(oauth_not_ready))
        .fallback(not_ready);
    let starting = with_common_layers(starting, config);
    Router::new().fallback_service(tower::service_fn(move |request: Request| {
        let app = ready.get().unwrap_or(&starting).clone();
        app.oneshot(request)
    }))
}

/// Unknown addresses get passgate's own error page.
async fn not_found() -> Error {
    Error::NotFound("There is no page at this address.".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::capture;

    #[tokio::test]
    async fn the_common_layers_log_each_fault_once() {
        let config = Config::for_public_url("http://127.0.0.1:8080/").expect("valid URL");
        let boom = Router::new().route(
            "/boom",
            get(|| async { Error::Internal(anyhow::anyhow!("the disk is on fire")) }),
        );
        let app = with_common_layers(boom, &config);
        let (subscriber, logs) = capture::subscriber();
        let _guard = tracing::subscriber::set_default(subscriber);
        let response = app
            .oneshot(
                Request::get("/boom")
                    .body(axum::body::Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(response.status(), http::StatusCode::INTERNAL_SERVER_ERROR);
        let logs = logs.text();
        assert_eq!(logs.matches("the disk is on fire").count(), 1, "{logs}");
        assert!(
            logs.contains("ERROR") && logs.contains("internal error"),
            "{logs}"
        );
    }
}
