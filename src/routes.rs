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
    login::{account, admin, enroll, recovery, signin},
    mcp,
    oauth::{OAuthError, authorize, bearer, clients, metadata, revoke, token},
    pages,
    store::StoreError,
    telemetry, upstream,
};

/// Builds the whole application. Tests call this and drive it with `oneshot`.
pub fn router(state: AppState) -> Router {
    let mcp_service = mcp::service(mcp::Tools::new(), &state.config, state.shutdown.clone());
    // Outermost first: Origin, then the bearer check, then JSON-RPC's own
    // answers for bodies rmcp cannot read.
    let mcp = Router::new()
        .route_service("/mcp", mcp_service)
        .route_layer(middleware::from_fn(mcp::json_rpc_errors))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            bearer::require_token,
        ))
        .route_layer(middleware::from_fn_with_state(
            mcp::AllowedOrigins::new(&state.config),
            mcp::check_origin,
        ));
    let app = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
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
            get(metadata::protected_resource_handler),
        )
        .route(
            "/.well-known/oauth-protected-resource/mcp",
            get(metadata::protected_resource_handler),
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
        .route("/login/upstream", post(upstream::start))
        .route(upstream::CALLBACK_PATH, get(upstream::callback))
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
        // Administration.
        .route("/admin", get(admin::page))
        .route("/admin/invite", post(admin::invite))
        .route("/admin/users/disable", post(admin::disable))
        .route("/admin/users/enable", post(admin::enable))
        .route("/admin/users/delete", post(admin::delete))
        .route("/admin/users/recover", post(admin::recover))
        .route("/admin/users/groups", post(admin::set_groups))
        .merge(mcp)
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(
            state.clone(),
            canonical::redirect_or_explain,
        ));
    with_common_layers(app, &state.config).with_state(state)
}

/// Layers every passgate router gets, including the conformance fixtures':
/// body limit, request logging without secrets, and safe response headers.
pub fn with_common_layers<S: Clone + Send + Sync + 'static>(
    router: Router<S>,
    config: &Config,
) -> Router<S> {
    router
        .layer(RequestBodyLimitLayer::new(config.max_body_bytes))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .layer(telemetry::http_trace_layer())
}

/// Liveness: the process answers. Says nothing about the store.
async fn healthz() -> &'static str {
    "ok"
}

/// Readiness: this instance can serve requests now, which needs the store
/// (one point read). 503 while the store is unreachable, so a load balancer
/// sends people to an instance that can serve them.
async fn readyz(State(state): State<AppState>) -> Result<&'static str, Error> {
    state.store.get("readyz", "-").await?;
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
