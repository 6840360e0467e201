//! Logging. Request spans carry the method and path only: query strings
//! hold authorization codes and state, and headers hold bearer tokens, so
//! neither is ever logged.

use std::io::IsTerminal;

use tower_http::{
    classify::{ServerErrorsAsFailures, SharedClassifier},
    trace::{DefaultOnResponse, MakeSpan, TraceLayer},
};
use tracing::Level;
use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// Installs the global subscriber. Filter from `PASSGATE_LOG` (same syntax as
/// `RUST_LOG`), default `info`.
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_env("PASSGATE_LOG")
        .unwrap_or_else(|_| EnvFilter::new("info,rmcp=warn"));
    // Colours only for a person at a terminal: log files, journald and
    // CloudWatch would show the escape codes.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}

#[derive(Clone, Copy)]
pub struct PathOnlySpan;

impl<B> MakeSpan<B> for PathOnlySpan {
    fn make_span(&mut self, request: &http::Request<B>) -> tracing::Span {
        tracing::info_span!("request", method = %request.method(), path = %request.uri().path())
    }
}

pub fn http_trace_layer()
-> TraceLayer<SharedClassifier<ServerErrorsAsFailures>, PathOnlySpan, (), DefaultOnResponse> {
    TraceLayer::new_for_http()
        .make_span_with(PathOnlySpan)
        .on_request(())
        .on_response(DefaultOnResponse::new().level(Level::DEBUG))
}
