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
    try_init(format);
}

/// [`init`], unless the program set a `tracing` subscriber already (a
/// library user may have their own).
pub fn try_init(format: LogFormat) {
    let filter = EnvFilter::try_from_env("PASSGATE_LOG")
        .unwrap_or_else(|_| EnvFilter::new("info,rmcp=warn"));
    // Colours only for a person at a terminal: log files, journald and
    // CloudWatch would show the escape codes.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    // An error only says a subscriber is set already: keep that one.
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
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

/// Our own fault behind an error answer. Conversions into responses only
/// attach it (as a response extension); `routes` logs it once, so no
/// failure is logged twice or from inside a conversion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    /// Trouble that passes (the store is busy) is a warning; a bug or a
    /// broken store is an error.
    pub transient: bool,
    /// What failed, in words fixed at the call site.
    pub what: &'static str,
    /// The underlying error: for the operator, never for the client.
    pub detail: String,
}

impl Fault {
    pub fn warn(what: &'static str, detail: impl Into<String>) -> Self {
        Self {
            transient: true,
            what,
            detail: detail.into(),
        }
    }
    pub fn error(what: &'static str, detail: impl Into<String>) -> Self {
        Self {
            transient: false,
            what,
            detail: detail.into(),
        }
    }
    pub fn log(&self) {
        if self.transient {
            tracing::warn!(error = %self.detail, "{}", self.what);
        } else {
            tracing::error!(error = %self.detail, "{}", self.what);
        }
    }
}

/// Test-side capture of what would be logged, to check who logs what.
#[cfg(test)]
pub(crate) mod capture {
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    pub(crate) struct Logs(Arc<Mutex<Vec<u8>>>);

    impl Logs {
        pub(crate) fn text(&self) -> String {
            String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
        }
    }

    impl std::io::Write for Logs {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// A subscriber that records every event at any level into `Logs`.
    pub(crate) fn subscriber() -> (impl tracing::Subscriber + Send + Sync, Logs) {
        let logs = Logs::default();
        let writer = logs.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        (subscriber, logs)
    }
}
