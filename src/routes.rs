//! The route table: every URL passgate answers, in one place.

use axum::{
    Router,
    routing::{get, post},
};
use http::{HeaderValue, header};
use tower_http::{limit::RequestBodyLimitLayer, set_header::SetResponseHeaderLayer};

use crate::{
    app::AppState,
    login::{account, admin, enroll, signin},
    mcp, pages, telemetry,
};

/// Builds the whole application. Tests call this and drive it with `oneshot`.
pub fn router(state: AppState) -> Router {
    let mcp_service = mcp::service(mcp::Tools::new(), &state.config, state.shutdown.clone());
    with_common_layers(
        Router::new()
            .route("/healthz", get(healthz))
            .route_service("/mcp", mcp_service)
            // Static assets.
            .route("/assets/style.css", get(pages::stylesheet))
            .route("/assets/passkeys.js", get(pages::passkeys_js))
            // Sign-in (pages and the passkey script's JSON endpoints).
            .route("/login", get(signin::page))
            .route("/login/passkey/options", post(signin::options))
            .route("/login/passkey/finish", post(signin::finish))
            .route("/logout", post(signin::logout))
            // Enrollment from an invitation.
            .route("/enroll", get(enroll::page))
            .route("/enroll/passkey/options", post(enroll::options))
            .route("/enroll/passkey/finish", post(enroll::finish))
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
            .route("/admin/users/delete", post(admin::delete)),
        &state,
    )
    .with_state(state)
}

/// Layers every passgate router gets, including the conformance fixtures':
/// body limit, request logging without secrets, and safe response headers.
pub fn with_common_layers<S: Clone + Send + Sync + 'static>(
    router: Router<S>,
    state: &AppState,
) -> Router<S> {
    router
        .layer(RequestBodyLimitLayer::new(state.config.max_body_bytes))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .layer(telemetry::http_trace_layer())
}

async fn healthz() -> &'static str {
    "ok"
}
