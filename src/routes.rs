//! The route table: every URL passgate answers, in one place.

use axum::{Router, routing::get};
use http::{HeaderValue, header};
use tower_http::{limit::RequestBodyLimitLayer, set_header::SetResponseHeaderLayer};

use crate::{app::AppState, config::Config, mcp, telemetry};

/// Builds the whole application. Tests call this and drive it with `oneshot`.
pub fn router(state: AppState) -> Router {
    let mcp_service = mcp::service(mcp::Tools::new(), &state.config, state.shutdown.clone());
    with_common_layers(
        Router::new()
            .route("/healthz", get(healthz))
            .route_service("/mcp", mcp_service),
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
    with_common_layers_for(router, &state.config)
}

/// [`with_common_layers`] for routers built without an [`AppState`], such as
/// the conformance fixtures (`examples/conformance_server.rs`).
pub fn with_common_layers_for<S: Clone + Send + Sync + 'static>(
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

async fn healthz() -> &'static str {
    "ok"
}
