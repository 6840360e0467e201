//! Error policy. Domain code returns [`Error`], which knows nothing of HTTP;
//! the `IntoResponse` impls in this file are the one place where failures
//! become responses. Client mistakes are 4xx with a message that says what
//! to fix; only our own faults are 5xx, and their details go to the log,
//! never to the client. Browser-facing routes answer with an error page.
//!
//! Nothing here logs: a response for our own fault carries a
//! [`Fault`](crate::telemetry::Fault) in its extensions, which the one
//! layer in `routes` logs.

use axum::response::{IntoResponse, Response};
use http::StatusCode;

use axum::Json;
use http::{HeaderValue, header};

use crate::{
    oauth::{OAuthError, OAuthErrorCode},
    pages,
    store::StoreError,
    telemetry::Fault,
};

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
    ProviderUnavailable {
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
    /// faults are described to the client only generically.
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
            Error::ProviderUnavailable { message, .. } => (
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
            Error::Store(StoreError::Unavailable(_)) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "passgate's storage is busy or unreachable right now.".to_owned(),
                "Try again in a moment.",
            ),
            Error::Store(_) | Error::Internal(_) => internal(),
        }
    }

    /// What the operator's log gets: our own faults, in full.
    pub fn fault(&self) -> Option<Fault> {
        match self {
            Error::Store(StoreError::Unavailable(e)) => Some(Fault::warn("store unavailable", e)),
            Error::Store(e) => Some(Fault::error("store error", e.to_string())),
            Error::Internal(e) => Some(Fault::error("internal error", format!("{e:#}"))),
            Error::BadRequest(_)
            | Error::NotFound(_)
            | Error::Forbidden(_)
            | Error::Csrf
            | Error::RateLimited
            | Error::Gone(_)
            | Error::ProviderUnavailable { .. }
            | Error::BadGateway(_)
            | Error::SignInCancelled { .. } => None,
        }
    }
}

/// Attaches `fault` to `response` for the logging layer in `routes`.
pub fn with_fault(mut response: Response, fault: Option<Fault>) -> Response {
    if let Some(fault) = fault {
        response.extensions_mut().insert(fault);
    }
    response
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
            Error::ProviderUnavailable {
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
        with_fault(
            pages::error_page(status, &what, next).into_response(),
            self.fault(),
        )
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
        with_fault(response, self.0.fault())
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
        let status = if self.retry_after_secs.is_some() {
            StatusCode::TOO_MANY_REQUESTS
        } else {
            oauth_status(self.code)
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
        with_fault(response, self.fault)
    }
}

/// The status of each OAuth error code: exhaustive, so a new code is a
/// compile error until its status is chosen here.
pub fn oauth_status(code: OAuthErrorCode) -> StatusCode {
    match code {
        OAuthErrorCode::InvalidClient => StatusCode::UNAUTHORIZED,
        OAuthErrorCode::ServerError => StatusCode::INTERNAL_SERVER_ERROR,
        OAuthErrorCode::TemporarilyUnavailable => StatusCode::SERVICE_UNAVAILABLE,
        OAuthErrorCode::InvalidRequest
        | OAuthErrorCode::InvalidGrant
        | OAuthErrorCode::InvalidScope
        | OAuthErrorCode::InvalidTarget
        | OAuthErrorCode::UnsupportedGrantType
        | OAuthErrorCode::UnsupportedResponseType
        | OAuthErrorCode::AccessDenied
        | OAuthErrorCode::InvalidClientMetadata
        | OAuthErrorCode::InvalidRedirectUri => StatusCode::BAD_REQUEST,
    }
}

/// Why a protected resource refused a request's access token (RFC 6750 §3.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BearerError {
    Missing,
    Invalid(&'static str),
    /// The token is good but lacks scopes this request needs.
    InsufficientScope,
    /// The grant could not be read: a retry will do.
    Unavailable,
}

/// A protected resource's refusal: 401 or 403 with a `WWW-Authenticate`
/// challenge naming the resource's metadata and the scopes the request
/// needs, every one of them (RFC 6750 §3, RFC 9728 §5.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BearerChallenge {
    pub error: BearerError,
    /// The absolute URL of the resource's metadata document.
    pub resource_metadata: String,
    /// Space-separated scopes the request needs.
    pub scope: String,
}

impl IntoResponse for BearerChallenge {
    fn into_response(self) -> Response {
        let Self {
            error,
            resource_metadata: metadata,
            scope,
        } = self;
        let (status, value, body) = match error {
            BearerError::Missing => (
                StatusCode::UNAUTHORIZED,
                format!(r#"Bearer resource_metadata="{metadata}", scope="{scope}""#),
                "authorization required: sign in through this server's OAuth flow",
            ),
            BearerError::Invalid(why) => (
                StatusCode::UNAUTHORIZED,
                format!(
                    r#"Bearer error="invalid_token", error_description="{why}", resource_metadata="{metadata}", scope="{scope}""#
                ),
                why,
            ),
            BearerError::InsufficientScope => (
                StatusCode::FORBIDDEN,
                format!(
                    r#"Bearer error="insufficient_scope", scope="{scope}", resource_metadata="{metadata}", error_description="the token lacks a required scope""#
                ),
                "the token lacks a required scope",
            ),
            BearerError::Unavailable => {
                return (
                    StatusCode::SERVICE_UNAVAILABLE,
                    [(header::RETRY_AFTER, "2")],
                    "storage is busy; retry shortly",
                )
                    .into_response();
            }
        };
        let mut response = (status, body).into_response();
        if let Ok(v) = HeaderValue::from_str(&value) {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, v);
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

/// MCP 2025-11-25's `URLElicitationRequiredError`: the request needs the
/// person to visit a URL first (rmcp names no constant for it).
const URL_ELICITATION_REQUIRED: i32 = -32042;

/// Why a gateway route did not forward a call, or what went wrong with the
/// backend, answered as a JSON-RPC error (with the request's id when known).
#[derive(Debug, Clone, PartialEq)]
pub enum GatewayRefusal {
    /// The body could not be read, is not JSON, or is not one JSON-RPC message.
    Rpc(JsonRpcRefusal),
    /// 2026-07-28: a header disagrees with the body (-32020).
    HeaderMismatch(&'static str),
    /// The route's access policy does not admit this account.
    NotAdmitted,
    /// The tool is denied on this route; the name is not echoed back.
    ToolDenied { id: Option<serde_json::Value> },
    /// The `Mcp-Session-Id` is not one of ours for this route and account,
    /// or has expired (the spec's answer for an unknown session: 404).
    UnknownSession,
    /// Not a Streamable HTTP method (POST, GET, DELETE).
    MethodNotAllowed,
    /// The store could not be read to check the account.
    Unavailable,
    /// The backend could not be reached.
    BackendUnreachable,
    /// The backend did not start answering within the route's timeout.
    BackendTimeout,
    /// The backend answered something passgate cannot relay (a redirect, a
    /// refusal of passgate's credentials, not MCP at all).
    BackendInvalid,
    /// The route needs something of the person first (their own key, or
    /// their account at the backend connected): a URL elicitation (-32042)
    /// pointing at their account page, whose message names the page too,
    /// for clients without URL elicitation. `action` says what to do there,
    /// such as "add your GitHub token". `in_band`: a JSON-RPC request
    /// (answered 200, as any JSON-RPC error), else a GET or DELETE (403).
    SetupNeeded {
        action: String,
        url: String,
        in_band: bool,
    },
}

impl IntoResponse for GatewayRefusal {
    fn into_response(self) -> Response {
        self.answering(None)
    }
}

impl GatewayRefusal {
    /// The response, answering the request whose `id` was read (JSON-RPC:
    /// `null` only when it could not be): clients match answers by id.
    pub fn answering(self, request_id: Option<serde_json::Value>) -> Response {
        let (status, code, message, id, data) = match self {
            GatewayRefusal::Rpc(refusal) => return refusal.into_response(),
            GatewayRefusal::HeaderMismatch(why) => (
                StatusCode::BAD_REQUEST,
                -32020,
                format!("Header mismatch: {why}"),
                None,
                None,
            ),
            GatewayRefusal::NotAdmitted => (
                StatusCode::FORBIDDEN,
                -32600,
                "Forbidden: your account may not use this MCP server; ask its administrator".into(),
                None,
                None,
            ),
            GatewayRefusal::ToolDenied { id } => (
                StatusCode::OK,
                -32602,
                "Invalid params: this tool is not available to you on this server".into(),
                id,
                None,
            ),
            GatewayRefusal::UnknownSession => (
                StatusCode::NOT_FOUND,
                -32600,
                "Session not found: start a new session (initialize again)".into(),
                None,
                None,
            ),
            GatewayRefusal::MethodNotAllowed => (
                StatusCode::METHOD_NOT_ALLOWED,
                -32600,
                "Method not allowed: use POST, GET or DELETE".into(),
                None,
                None,
            ),
            GatewayRefusal::Unavailable => (
                StatusCode::SERVICE_UNAVAILABLE,
                -32603,
                "storage is busy; retry shortly".into(),
                None,
                None,
            ),
            GatewayRefusal::BackendUnreachable => (
                StatusCode::BAD_GATEWAY,
                -32603,
                "Bad gateway: the MCP server behind passgate is unreachable".into(),
                None,
                None,
            ),
            GatewayRefusal::BackendTimeout => (
                StatusCode::GATEWAY_TIMEOUT,
                -32603,
                "Gateway timeout: the MCP server behind passgate did not answer in time".into(),
                None,
                None,
            ),
            GatewayRefusal::SetupNeeded {
                action,
                url,
                in_band,
            } => {
                let message = format!(
                    "This MCP server needs you to {action} first, on your passgate account page: {url}. Then try again."
                );
                let data = serde_json::json!({"elicitations": [{
                    "mode": "url",
                    "elicitationId": crate::crypto::random_id(),
                    "url": url,
                    "message": message,
                }]});
                let status = if in_band {
                    StatusCode::OK
                } else {
                    StatusCode::FORBIDDEN
                };
                (status, URL_ELICITATION_REQUIRED, message, None, Some(data))
            }
            GatewayRefusal::BackendInvalid => (
                StatusCode::BAD_GATEWAY,
                -32603,
                "Bad gateway: the MCP server behind passgate gave an answer passgate cannot relay"
                    .into(),
                None,
                None,
            ),
        };
        let mut error = serde_json::json!({ "code": code, "message": message });
        if let Some(data) = data {
            error["data"] = data;
        }
        let body = serde_json::json!({
            "jsonrpc": "2.0",
            "id": id.or(request_id),
            "error": error,
        });
        let mut response = (status, Json(body)).into_response();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("2"));
        }
        if status == StatusCode::METHOD_NOT_ALLOWED {
            response
                .headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("GET, POST, DELETE"));
        }
        response
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
                "error": OAuthErrorCode::InvalidRequest,
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

/// Why a message could not reach a stdio route's server
/// (`gateway::stdio`).
#[derive(Debug, thiserror::Error)]
pub enum StdioError {
    #[error("the MCP session is not known here; start a new one (initialize)")]
    UnknownSession,
    #[error("too many stdio servers are running; try again later")]
    AtCapacity,
    #[error("the stdio server is restarting after a crash; try again in {0} s")]
    Restarting(u64),
    #[error("the stdio server could not be started")]
    Spawn,
    #[error("the stdio server exited")]
    Exited,
    #[error("the message is not a JSON-RPC request, notification or response")]
    NotJsonRpc,
    #[error("the body is not JSON")]
    NotJson,
    #[error("use POST or DELETE")]
    MethodNotAllowed,
}

/// A stdio route's failures, as JSON-RPC errors: an
/// unknown session is the spec's 404, so the client starts a new one; a
/// full or restarting route is 503 with when to retry.
impl IntoResponse for StdioError {
    fn into_response(self) -> Response {
        use StdioError as E;
        let (status, code) = match &self {
            E::UnknownSession => (StatusCode::NOT_FOUND, -32001),
            E::AtCapacity | E::Restarting(_) => (StatusCode::SERVICE_UNAVAILABLE, -32000),
            E::Spawn | E::Exited => (StatusCode::BAD_GATEWAY, -32603),
            E::NotJsonRpc => (StatusCode::BAD_REQUEST, -32600),
            E::NotJson => (StatusCode::BAD_REQUEST, -32700),
            E::MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, -32600),
        };
        let body = serde_json::json!({
            "jsonrpc": "2.0",
            "id": null,
            "error": { "code": code, "message": self.to_string() },
        });
        let mut response = (status, Json(body)).into_response();
        if let E::Restarting(secs) = self
            && let Ok(value) = http::HeaderValue::from_str(&secs.to_string())
        {
            response
                .headers_mut()
                .insert(http::header::RETRY_AFTER, value);
        }
        if status == StatusCode::METHOD_NOT_ALLOWED {
            response.headers_mut().insert(
                http::header::ALLOW,
                http::HeaderValue::from_static("POST, DELETE"),
            );
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::capture;

    #[test]
    fn each_oauth_code_has_its_status() {
        use OAuthErrorCode::*;
        let expected = [
            (InvalidRequest, StatusCode::BAD_REQUEST),
            (InvalidClient, StatusCode::UNAUTHORIZED),
            (InvalidGrant, StatusCode::BAD_REQUEST),
            (InvalidScope, StatusCode::BAD_REQUEST),
            (InvalidTarget, StatusCode::BAD_REQUEST),
            (UnsupportedGrantType, StatusCode::BAD_REQUEST),
            (UnsupportedResponseType, StatusCode::BAD_REQUEST),
            (AccessDenied, StatusCode::BAD_REQUEST),
            (InvalidClientMetadata, StatusCode::BAD_REQUEST),
            (InvalidRedirectUri, StatusCode::BAD_REQUEST),
            (ServerError, StatusCode::INTERNAL_SERVER_ERROR),
            (TemporarilyUnavailable, StatusCode::SERVICE_UNAVAILABLE),
        ];
        for (code, status) in expected {
            let response = OAuthError::new(code, "why").into_response();
            assert_eq!(response.status(), status, "{code}");
        }
        // A rate limit is 429 whatever the code.
        let limited = OAuthError::rate_limited("slow down", 7).into_response();
        assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(limited.headers()[header::RETRY_AFTER], "7");
    }

    #[test]
    fn conversions_attach_the_fault_and_log_nothing() {
        let (subscriber, logs) = capture::subscriber();
        let responses = tracing::subscriber::with_default(subscriber, || {
            [
                Error::Internal(anyhow::anyhow!("the disk is on fire")).into_response(),
                ScriptError(Error::Store(StoreError::Unavailable("store busy".into())))
                    .into_response(),
                OAuthError::from(StoreError::Unavailable("store busy".into())).into_response(),
                Error::bad_request("a client mistake").into_response(),
            ]
        });
        assert_eq!(logs.text(), "", "a conversion logged");
        let faults: Vec<Option<&Fault>> = responses
            .iter()
            .map(|r| r.extensions().get::<Fault>())
            .collect();
        assert_eq!(
            faults,
            [
                Some(&Fault::error("internal error", "the disk is on fire")),
                Some(&Fault::warn("store unavailable", "store busy")),
                Some(&Fault::warn(
                    "store unavailable during an OAuth request",
                    StoreError::Unavailable("store busy".into()).to_string()
                )),
                None,
            ]
        );
    }
}
