//! Error policy. Domain code returns [`Error`], which knows nothing of HTTP;
//! the `IntoResponse` impls in this file are the one place where failures
//! become responses. Client mistakes are 4xx with a message that says what
//! to fix; only our own faults are 5xx, and their details go to the log,
//! never to the client. Browser-facing routes answer with an error page.

use axum::response::{IntoResponse, Response};
use http::StatusCode;

use axum::Json;
use http::{HeaderValue, header};

use crate::{oauth::OAuthError, pages, store::StoreError};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request is malformed or refers to something invalid; the message
    /// is shown to the person.
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    NotFound(String),
    /// Not allowed for this person.
    #[error("{0}")]
    Forbidden(String),
    /// A form without the right anti-forgery token.
    #[error("the form expired or was not sent from passgate")]
    Csrf,
    /// Too many attempts; try again later.
    #[error("too many attempts")]
    RateLimited,
    /// Something single-use was used already, or expired.
    #[error("{0}")]
    Gone(String),
    /// An upstream identity provider is unreachable or too slow (503);
    /// `retry`, a local path, is where signing in again should lead.
    #[error("{message}")]
    UpstreamUnavailable {
        message: String,
        retry: Option<String>,
    },
    /// An upstream identity provider gave an answer we cannot accept (502).
    #[error("{0}")]
    BadGateway(String),
    /// The person cancelled sign-in at the upstream provider; `retry` is a
    /// local path that starts again.
    #[error("you cancelled sign-in at {provider}")]
    SignInCancelled { provider: String, retry: String },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("internal error: {0}")]
    Internal(#[from] anyhow::Error),
}

impl Error {
    pub fn bad_request(msg: impl Into<String>) -> Self {
        Self::BadRequest(msg.into())
    }
}

/// Who reads an error: a person on a full error page, or passgate's
/// passkey script, which shows the message beside the button it came from
/// (so "what to do next" differs, the status and message do not).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Reader {
    Page,
    Script,
}

impl Error {
    /// The one table from failures to status, message and next step. Our own
    /// faults are logged here and described to the client only generically.
    fn describe(&self, reader: Reader) -> (StatusCode, String, &'static str) {
        let pick = |page, script| if reader == Reader::Page { page } else { script };
        match self {
            Error::BadRequest(m) => (
                StatusCode::BAD_REQUEST,
                m.clone(),
                pick(
                    "Go back to the application you came from and start again.",
                    "Reload the page and try again.",
                ),
            ),
            Error::NotFound(m) => (
                StatusCode::NOT_FOUND,
                m.clone(),
                pick("Check the address.", "Reload the page."),
            ),
            Error::Forbidden(m) => (
                StatusCode::FORBIDDEN,
                m.clone(),
                pick(
                    "Ask an administrator of this passgate if you need access.",
                    "",
                ),
            ),
            Error::Csrf => (
                StatusCode::FORBIDDEN,
                self.to_string(),
                pick(
                    "Reload the page and submit the form again.",
                    "Reload the page and try again.",
                ),
            ),
            Error::RateLimited => (
                StatusCode::TOO_MANY_REQUESTS,
                "There were too many attempts in a short time.".to_owned(),
                "Wait a few minutes, then try again.",
            ),
            Error::Gone(m) => (
                StatusCode::GONE,
                m.clone(),
                pick("Start again from the application you came from.", ""),
            ),
            Error::UpstreamUnavailable { message, .. } => (
                StatusCode::SERVICE_UNAVAILABLE,
                message.clone(),
                "Try again in a moment.",
            ),
            Error::BadGateway(m) => (
                StatusCode::BAD_GATEWAY,
                m.clone(),
                pick("Try again; if it keeps happening, tell the operator.", ""),
            ),
            Error::SignInCancelled { .. } => (StatusCode::FORBIDDEN, self.to_string(), ""),
            Error::Store(StoreError::Unavailable(e)) => {
                tracing::warn!(error = %e, "store unavailable");
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "passgate's storage is busy or unreachable right now.".to_owned(),
                    "Try again in a moment.",
                )
            }
            Error::Store(e) => {
                tracing::error!(error = %e, "store error");
                internal()
            }
            Error::Internal(e) => {
                tracing::error!(error = %format!("{e:#}"), "internal error");
                internal()
            }
        }
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        match &self {
            Error::SignInCancelled { provider, retry } => {
                return retry_page(
                    StatusCode::FORBIDDEN,
                    "Sign-in cancelled",
                    &format!(
                        "You cancelled sign-in at {provider}, so passgate did not sign you in."
                    ),
                    retry,
                )
                .into_response();
            }
            Error::UpstreamUnavailable {
                message,
                retry: Some(retry),
            } => {
                return retry_page(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "Sign-in is unavailable for a moment",
                    message,
                    retry,
                )
                .into_response();
            }
            _ => {}
        }
        let (status, what, next) = self.describe(Reader::Page);
        pages::error_page(status, &what, next).into_response()
    }
}

/// An [`Error`] for the passkey script: answered as
/// `{"error": what went wrong, "next": what to do}`.
#[derive(Debug)]
pub struct ScriptError(pub Error);

impl<E: Into<Error>> From<E> for ScriptError {
    fn from(e: E) -> Self {
        Self(e.into())
    }
}

impl IntoResponse for ScriptError {
    fn into_response(self) -> Response {
        let (status, message, next) = self.0.describe(Reader::Script);
        let mut response = (
            status,
            Json(serde_json::json!({ "error": message, "next": next })),
        )
            .into_response();
        response
            .headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        response
    }
}

/// A sign-in that did not finish, with a button that starts it again and
/// then leads to `retry` (a local path).
fn retry_page(status: StatusCode, title: &str, lead: &str, retry: &str) -> pages::Page {
    let retry = crate::login::ui::local_next(Some(retry));
    let encoded: String = url::form_urlencoded::byte_serialize(retry.as_bytes()).collect();
    pages::Page::new(
        title,
        format!(
            r#"<section class="card">
<h1>{title}</h1>
<p class="lead">{lead}</p>
<div class="actions"><a class="button" href="/login?next={encoded}">Try again</a></div>
</section>"#,
            title = pages::escape(title),
            lead = pages::escape(lead),
            encoded = pages::escape(&encoded),
        ),
    )
    .status(status)
}

fn internal() -> (StatusCode, String, &'static str) {
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        "passgate hit an internal error.".to_owned(),
        "Try again; if it keeps happening, tell the operator (details are in the server log).",
    )
}

/// OAuth errors are JSON (RFC 6749 §5.2). `invalid_client` is 401 with a
/// challenge when the client tried HTTP authentication (§5.2); transient
/// trouble is 503, so that clients retry instead of dropping credentials;
/// a caller over a rate limit gets 429 with `Retry-After`.
impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        let status = match self.code {
            _ if self.retry_after_secs.is_some() => StatusCode::TOO_MANY_REQUESTS,
            "invalid_client" => StatusCode::UNAUTHORIZED,
            "server_error" => StatusCode::INTERNAL_SERVER_ERROR,
            "temporarily_unavailable" => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::BAD_REQUEST,
        };
        let body = serde_json::json!({
            "error": self.code,
            "error_description": self.description,
        });
        let mut response = (status, Json(body)).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if let Some(secs) = self.retry_after_secs {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if status == StatusCode::UNAUTHORIZED {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(r#"Basic realm="passgate""#),
            );
        }
        response
    }
}

/// Why `/mcp` refused a request before the MCP handler saw it, answered as a
/// JSON-RPC error (the id is unknown, so it is null).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JsonRpcRefusal {
    /// The body is not JSON.
    ParseError,
    /// The body is JSON but not a JSON-RPC message.
    InvalidRequest,
    /// The `Origin` header names a site not allowed to call the server.
    ForeignOrigin,
    /// The body is larger than `--max-body-bytes`.
    BodyTooLarge,
    /// The body could not be read (the connection broke off).
    BodyUnreadable,
}

impl IntoResponse for JsonRpcRefusal {
    fn into_response(self) -> Response {
        let (status, code, message) = match self {
            JsonRpcRefusal::ParseError => (
                StatusCode::BAD_REQUEST,
                -32700,
                "Parse error: the request body is not valid JSON",
            ),
            JsonRpcRefusal::InvalidRequest => (
                StatusCode::BAD_REQUEST,
                -32600,
                "Invalid Request: the body is not a JSON-RPC message this server understands",
            ),
            JsonRpcRefusal::ForeignOrigin => (
                StatusCode::FORBIDDEN,
                -32600,
                "Forbidden: the Origin header is not allowed",
            ),
            JsonRpcRefusal::BodyTooLarge => (
                StatusCode::PAYLOAD_TOO_LARGE,
                -32600,
                "Payload Too Large: the request body is larger than this server accepts",
            ),
            JsonRpcRefusal::BodyUnreadable => (
                StatusCode::BAD_REQUEST,
                -32600,
                "Invalid Request: the request body could not be read",
            ),
        };
        let body = serde_json::json!({
            "jsonrpc": "2.0",
            "id": null,
            "error": { "code": code, "message": message },
        });
        (status, Json(body)).into_response()
    }
}

/// A request to a local passgate under another loopback name than its
/// public URL's (see `crate::canonical`): the answer names the URL to use.
#[derive(Debug)]
pub struct WrongHost {
    /// The origin the request was sent to.
    pub requested: String,
    pub public_url: String,
    pub mcp_url: String,
    pub reader: WrongHostReader,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WrongHostReader {
    /// `/mcp`: a JSON-RPC error, which the SDKs show as the failure.
    McpClient,
    /// A discovery document: an OAuth error.
    Discovery,
}

impl WrongHost {
    pub fn message(&self) -> String {
        format!(
            "This MCP server's URL is {mcp}, not under {requested}: connect your client to {mcp} (passgate's public URL is {public}).",
            mcp = self.mcp_url,
            requested = self.requested,
            public = self.public_url,
        )
    }
}

impl IntoResponse for WrongHost {
    fn into_response(self) -> Response {
        let body = match self.reader {
            WrongHostReader::McpClient => serde_json::json!({
                "jsonrpc": "2.0",
                "id": null,
                "error": { "code": -32600, "message": self.message() },
            }),
            WrongHostReader::Discovery => serde_json::json!({
                "error": "invalid_request",
                "error_description": self.message(),
            }),
        };
        let mut response = (StatusCode::BAD_REQUEST, Json(body)).into_response();
        response
            .headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        response
    }
}
