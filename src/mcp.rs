//! The MCP server: [`ProtectedMcp`], the seam every protected MCP endpoint
//! is mounted through (a path, its resource and any service), the demo
//! tools passgate serves by default, and the Streamable HTTP service that
//! carries them. Protocol handling (both eras, headers, JSON-RPC errors)
//! is rmcp's; this module chooses its settings, defines the tools, and adds
//! checks in front: the `Origin` check on every request before the
//! bearer check (the transport requires 403 for a foreign origin whether or
//! not a token came with it), and JSON-RPC's own answers for a body that is
//! not JSON (-32700) or not a JSON-RPC message (-32600), where rmcp answers
//! 415 in plain text.

use std::{collections::BTreeMap, convert::Infallible, sync::Arc};

use axum::{
    body::Body,
    extract::{Request, State},
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::{MethodRouter, any_service},
};
use http::{Method, StatusCode, header};

use rmcp::{
    ErrorData, ServerHandler,
    handler::server::{
        common::Extension, router::tool::ToolRouter, tool::schema_for_output, wrapper::Parameters,
    },
    model::{
        CallToolResult, ClientJsonRpcMessage, ClientRequest, ContentBlock, Implementation,
        ServerCapabilities, ServerConfig,
    },
    tool, tool_handler, tool_router,
    transport::streamable_http_server::{
        StreamableHttpServerConfig, StreamableHttpService, session::never::NeverSessionManager,
    },
};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::{
    app::AppState,
    config::Config,
    error::{BearerError, JsonRpcRefusal},
    oauth::{
        SCOPE_MCP,
        bearer::{self, Identity},
        resource::Resource,
    },
};

/// One protected MCP endpoint: a [`Resource`] (its path under the public
/// URL, its URL, which is its tokens' audience, and its metadata) and the
/// service that answers there. The route table mounts it behind the
/// `Origin` check and the bearer check for that resource's audience, and
/// serves its metadata document; there is no way to mount a service
/// without them.
pub struct ProtectedMcp {
    resource: Resource,
    service: MethodRouter<AppState>,
    tool_scopes: ToolScopes,
}

impl ProtectedMcp {
    /// Any tower service (a reverse proxy, say) as the resource's endpoint.
    /// It sees only requests whose token is for `resource`, with the
    /// caller's [`Identity`] in the request's extensions.
    pub fn new<S>(resource: Resource, service: S) -> Self
    where
        S: tower::Service<Request, Error = Infallible> + Clone + Send + Sync + 'static,
        S::Response: IntoResponse + 'static,
        S::Future: Send + 'static,
    {
        Self {
            resource,
            service: any_service(service),
            tool_scopes: ToolScopes::default(),
        }
    }

    /// An rmcp server, on passgate's transport settings ([`service`]), with
    /// JSON-RPC's own answers for bodies rmcp cannot read
    /// ([`json_rpc_errors`]).
    pub fn rmcp<H>(
        resource: Resource,
        handler: H,
        config: &Config,
        shutdown: CancellationToken,
    ) -> Self
    where
        H: ServerHandler + Clone + Send + Sync + 'static,
    {
        Self::rmcp_from(resource, move || handler.clone(), config, shutdown)
    }

    /// [`ProtectedMcp::rmcp`] with a handler made by `factory` per request.
    pub fn rmcp_from<H, F>(
        resource: Resource,
        factory: F,
        config: &Config,
        shutdown: CancellationToken,
    ) -> Self
    where
        H: ServerHandler + Send + 'static,
        F: Fn() -> H + Send + Sync + 'static,
    {
        Self {
            resource,
            service: any_service(service_from(factory, config, shutdown))
                .layer(middleware::from_fn(json_rpc_errors)),
            tool_scopes: ToolScopes::default(),
        }
    }

    /// The tool `tool` needs every one of `scopes` (besides `mcp`): a
    /// `tools/call` of it with a token that lacks one gets 403 with the
    /// `insufficient_scope` challenge naming them all, before the service
    /// sees it. The resource advertises them, so clients can ask for them.
    pub fn require_scopes<I, S>(mut self, tool: &str, scopes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let scopes: Vec<String> = scopes.into_iter().map(Into::into).collect();
        self.resource = self.resource.with_scopes(scopes.iter().cloned());
        let mut table = Arc::unwrap_or_clone(self.tool_scopes.0);
        let needed = table.entry(tool.to_owned()).or_default();
        for scope in scopes {
            if !needed.contains(&scope) {
                needed.push(scope);
            }
        }
        self.tool_scopes = ToolScopes(Arc::new(table));
        self
    }

    /// passgate's own demo, [`Tools`], at `/mcp`.
    pub fn demo(config: &Config, shutdown: CancellationToken) -> Self {
        Self::rmcp(Resource::mcp(config), Tools::new(), config, shutdown)
    }

    pub fn resource(&self) -> &Resource {
        &self.resource
    }

    /// The name its metadata gives (`resource_name`).
    pub fn named(mut self, name: impl Into<String>) -> Self {
        self.resource = self.resource.named(name);
        self
    }

    /// The resource and its service (with its tools' scope check), for
    /// the route table, which puts the bearer check in front.
    pub fn into_parts(self) -> (Resource, MethodRouter<AppState>) {
        let service = if self.tool_scopes.0.is_empty() {
            self.service
        } else {
            self.service.layer(middleware::from_fn_with_state(
                (self.resource.clone(), self.tool_scopes),
                require_tool_scopes,
            ))
        };
        (self.resource, service)
    }
}

/// The scopes particular tools need, by tool name.
#[derive(Debug, Clone, Default)]
struct ToolScopes(Arc<BTreeMap<String, Vec<String>>>);

impl ToolScopes {
    /// What a message needs beyond what `identity` has: the tool's scopes
    /// when it is a `tools/call` of a listed tool and one is missing.
    fn missing(&self, message: &ClientJsonRpcMessage, identity: &Identity) -> Option<&[String]> {
        let ClientJsonRpcMessage::Request(request) = message else {
            return None;
        };
        let ClientRequest::CallToolRequest(call) = &request.request else {
            return None;
        };
        let needed = self.0.get(call.params.name.as_ref())?;
        (!needed.iter().all(|s| identity.has_scope(s))).then_some(needed.as_slice())
    }
}

/// Middleware inside the bearer check: a `tools/call` of a tool whose
/// scopes the token lacks gets 403 `insufficient_scope` (MCP authorization,
/// "Scope Challenge Handling"). Decided on the body as rmcp reads it, never
/// on the `Mcp-Name` header, which rmcp checks against the body.
async fn require_tool_scopes(
    State((resource, scopes)): State<(Resource, ToolScopes)>,
    request: Request,
    next: Next,
) -> Response {
    if request.method() != Method::POST {
        return next.run(request).await;
    }
    let (parts, body) = request.into_parts();
    let bytes = match read_body(body).await {
        Ok(bytes) => bytes,
        Err(refusal) => return refusal.into_response(),
    };
    // A body rmcp cannot read either is answered by rmcp (or
    // `json_rpc_errors`), so it never reaches a tool.
    if let (Some(identity), Ok(message)) = (
        parts.extensions.get::<Identity>(),
        serde_json::from_slice::<ClientJsonRpcMessage>(&bytes),
    ) && let Some(needed) = scopes.missing(&message, identity)
    {
        let mut all: Vec<&str> = vec![SCOPE_MCP];
        all.extend(
            needed
                .iter()
                .map(String::as_str)
                .filter(|s| *s != SCOPE_MCP),
        );
        return bearer::challenge(&resource, BearerError::InsufficientScope, &all).into_response();
    }
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}

/// Reads a whole request body. The body limit layer outside caps the size:
/// over it, reading fails.
async fn read_body(body: Body) -> Result<axum::body::Bytes, JsonRpcRefusal> {
    axum::body::to_bytes(body, usize::MAX).await.map_err(|e| {
        let too_large =
            std::iter::successors(Some(&e as &(dyn std::error::Error + 'static)), |e| {
                e.source()
            })
            .any(|e| e.is::<http_body_util::LengthLimitError>());
        if too_large {
            JsonRpcRefusal::BodyTooLarge
        } else {
            JsonRpcRefusal::BodyUnreadable
        }
    })
}

/// Arguments of `add`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct AddArgs {
    /// First addend (64-bit signed integer).
    pub a: i64,
    /// Second addend (64-bit signed integer).
    pub b: i64,
}

/// Structured result of `add`. The `result` wrapper matches what FastMCP
/// produces for a scalar return, so clients of the original see the same shape.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct AddOutput {
    /// The exact sum.
    pub result: i64,
}

/// Structured result of `whoami`.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct WhoamiOutput {
    /// The signed-in person's passgate user id.
    pub user_id: String,
    /// Their user name.
    pub user_name: String,
    /// Their display name.
    pub display_name: String,
    /// The OAuth client the call came through.
    pub client_id: String,
    /// The scopes of the access token.
    pub scopes: Vec<String>,
    /// The groups administrators put the person in.
    pub groups: Vec<String>,
}

/// The tools passgate serves. Built once; each request gets a cheap clone
/// (the router is shared), because the stateless transport asks for a fresh
/// handler per request.
#[derive(Clone)]
pub struct Tools {
    tool_router: Arc<ToolRouter<Self>>,
}

impl Default for Tools {
    fn default() -> Self {
        Self::new()
    }
}

#[tool_router(router = tool_router)]
impl Tools {
    pub fn new() -> Self {
        Self {
            tool_router: Arc::new(Self::tool_router()),
        }
    }

    /// Adds two integers. Overflow is reported as a tool error rather than
    /// wrapping, so a caller never receives a wrong sum.
    #[tool(
        description = "Add two 64-bit signed integers and return their exact sum.",
        output_schema = schema_for_output::<AddOutput>(),
        annotations(read_only_hint = true, idempotent_hint = true, open_world_hint = false)
    )]
    pub async fn add(
        &self,
        Parameters(AddArgs { a, b }): Parameters<AddArgs>,
    ) -> Result<CallToolResult, ErrorData> {
        Ok(match a.checked_add(b) {
            Some(sum) => {
                let mut result = CallToolResult::structured(serde_json::json!({ "result": sum }));
                result.content = vec![ContentBlock::text(sum.to_string())];
                result
            }
            None => CallToolResult::error(vec![ContentBlock::text(format!(
                "{a} + {b} does not fit in a 64-bit signed integer \
                 (range {} to {}); use smaller numbers",
                i64::MIN,
                i64::MAX
            ))]),
        })
    }

    /// Reports who is calling, from the verified access token: useful to
    /// check a client's connection, and the pattern for tools that act on
    /// behalf of the person.
    #[tool(
        description = "Tell which passgate user (with their groups) and OAuth client this connection is signed in as.",
        output_schema = schema_for_output::<WhoamiOutput>(),
        annotations(read_only_hint = true, idempotent_hint = true, open_world_hint = false)
    )]
    pub async fn whoami(
        &self,
        Extension(parts): Extension<http::request::Parts>,
    ) -> CallToolResult {
        match Identity::from_parts(&parts) {
            Some(identity) => {
                let out = WhoamiOutput {
                    user_id: identity.user_id.clone(),
                    user_name: identity.user_name.clone(),
                    display_name: identity.display_name.clone(),
                    client_id: identity.client_id.clone(),
                    scopes: identity.scopes.clone(),
                    groups: identity.groups.clone(),
                };
                CallToolResult::structured(serde_json::to_value(out).unwrap_or_default())
            }
            None => {
                CallToolResult::error(vec![ContentBlock::text("this connection is not signed in")])
            }
        }
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for Tools {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("passgate", env!("CARGO_PKG_VERSION")))
            .with_instructions("passgate: tools behind passkey sign-in. `add` sums two integers.")
    }
}

/// rmcp settings shared by the product and the conformance fixtures:
/// stateless (any instance answers any request), JSON responses when the
/// client accepts them, Origin and Host checks derived from the public URL.
pub fn transport_config(
    config: &Config,
    shutdown: CancellationToken,
) -> StreamableHttpServerConfig {
    StreamableHttpServerConfig::default()
        .with_legacy_session_mode(false)
        .with_json_response(true)
        .with_sse_keep_alive(None)
        .with_allowed_hosts(config.allowed_hosts())
        .with_allowed_origins(config.allowed_origins())
        .enforce_origin_validation()
        .with_max_request_body_bytes(config.max_body_bytes)
        .with_cancellation_token(shutdown)
}

/// The tower service that answers `/mcp` for a given handler.
pub fn service<H>(handler: H, config: &Config, shutdown: CancellationToken) -> SharedService<H>
where
    H: ServerHandler + Clone + Send + Sync + 'static,
{
    service_from(move || handler.clone(), config, shutdown)
}

/// The tower service that answers `/mcp` with a handler from `factory`
/// for each request (the transport is stateless).
pub fn service_from<H, F>(
    factory: F,
    config: &Config,
    shutdown: CancellationToken,
) -> SharedService<H>
where
    H: ServerHandler + Send + 'static,
    F: Fn() -> H + Send + Sync + 'static,
{
    SharedService(Arc::new(StreamableHttpService::new(
        move || Ok(factory()),
        Arc::new(NeverSessionManager::default()),
        transport_config(config, shutdown),
    )))
}

/// rmcp's Streamable HTTP service behind one `Arc`, answering through its
/// public `handle`. axum and tower clone a service for every request, and
/// rmcp's clone copies its whole configuration (allowed hosts, a
/// cancellation token, which takes a lock): several times per request,
/// about a tenth of a demo `tools/call` (docs/benchmarks.md). The protocol
/// stays entirely rmcp's.
pub struct SharedService<H>(Arc<StreamableHttpService<H, NeverSessionManager>>);

impl<H> Clone for SharedService<H> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

impl<H, B> tower::Service<http::Request<B>> for SharedService<H>
where
    H: ServerHandler + Send + 'static,
    B: axum::body::HttpBody + Send + 'static,
    B::Error: std::fmt::Display,
    B::Data: Send + 'static,
{
    type Response =
        http::Response<http_body_util::combinators::BoxBody<axum::body::Bytes, Infallible>>;
    type Error = Infallible;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<Self::Response, Infallible>> + Send>,
    >;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Infallible>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let service = self.0.clone();
        Box::pin(async move { Ok(service.handle(request).await) })
    }
}

/// One entry of the `Origin` allow-list.
#[derive(Debug, Clone, PartialEq, Eq)]
enum OriginRule {
    Null,
    Tuple {
        scheme: String,
        host: String,
        /// `None`: any port (`:*`, or an entry written without one).
        port: Option<u16>,
    },
}

/// A serialized origin (`scheme://host[:port]`) as scheme, lowercase host
/// and port (the scheme's default when omitted), or `None` for `null`.
fn parse_origin(value: &str) -> Option<Option<(String, String, Option<u16>)>> {
    let value = value.trim();
    if value.eq_ignore_ascii_case("null") {
        return Some(None);
    }
    let uri = http::Uri::try_from(value).ok()?;
    let authority = uri.authority()?;
    if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
        return None;
    }
    let host = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_ascii_lowercase();
    Some(Some((
        uri.scheme_str()?.to_ascii_lowercase(),
        host,
        authority.port_u16(),
    )))
}

fn default_port(scheme: &str) -> Option<u16> {
    match scheme {
        "http" => Some(80),
        "https" => Some(443),
        _ => None,
    }
}

/// The browser origins allowed to call `/mcp` (the same list rmcp checks,
/// with the same port rules), parsed once.
#[derive(Debug, Clone)]
pub struct AllowedOrigins(Arc<Vec<OriginRule>>);

impl AllowedOrigins {
    pub fn new(config: &Config) -> Self {
        Self::from_entries(&config.allowed_origins())
    }

    pub fn from_entries(entries: &[String]) -> Self {
        let rules = entries
            .iter()
            .filter_map(|entry| {
                let (entry, any_port) = match entry.trim().strip_suffix(":*") {
                    Some(base) => (base, true),
                    None => (entry.trim(), false),
                };
                Some(match parse_origin(entry)? {
                    None => OriginRule::Null,
                    Some((scheme, host, port)) => OriginRule::Tuple {
                        port: if any_port { None } else { port },
                        scheme,
                        host,
                    },
                })
            })
            .collect();
        Self(Arc::new(rules))
    }

    /// Is a request with this `Origin` header value allowed?
    pub fn allows(&self, origin: &str) -> bool {
        let Some(origin) = parse_origin(origin) else {
            return false;
        };
        self.0.iter().any(|rule| match (rule, &origin) {
            (OriginRule::Null, None) => true,
            (OriginRule::Tuple { scheme, host, port }, Some((o_scheme, o_host, o_port))) => {
                scheme == o_scheme
                    && host == o_host
                    && port.is_none_or(|p| o_port.or_else(|| default_port(o_scheme)) == Some(p))
            }
            _ => false,
        })
    }
}

/// Middleware for `/mcp`, outside the bearer check: a request whose
/// `Origin` is present and not allowed gets 403 at once (DNS rebinding and
/// cross-site pages), token or not.
pub async fn check_origin(
    State(allowed): State<AllowedOrigins>,
    request: Request,
    next: Next,
) -> Response {
    if let Some(origin) = request.headers().get(header::ORIGIN) {
        let ok = origin.to_str().is_ok_and(|o| allowed.allows(o));
        if !ok {
            tracing::info!("refused an /mcp request from a foreign Origin");
            return JsonRpcRefusal::ForeignOrigin.into_response();
        }
    }
    next.run(request).await
}

fn is_json(request: &Request) -> bool {
    request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"))
}

/// Middleware for `/mcp`, just outside rmcp: a JSON POST whose body is not
/// JSON gets JSON-RPC's parse error, and one rmcp cannot read as a JSON-RPC
/// message its invalid-request error, both 400 (rmcp says 415 in plain
/// text, which tells a client its content type was wrong). The body is
/// looked at only when rmcp refused it, so good requests are not parsed
/// twice.
pub async fn json_rpc_errors(request: Request, next: Next) -> Response {
    if request.method() != Method::POST || !is_json(&request) {
        return next.run(request).await;
    }
    let (parts, body) = request.into_parts();
    let bytes = match read_body(body).await {
        Ok(bytes) => bytes,
        Err(refusal) => return refusal.into_response(),
    };
    let response = next
        .run(Request::from_parts(parts, Body::from(bytes.clone())))
        .await;
    // With a JSON content type, rmcp's only 415 is for a body it could not
    // deserialize as a message.
    if response.status() != StatusCode::UNSUPPORTED_MEDIA_TYPE {
        return response;
    }
    if serde_json::from_slice::<serde::de::IgnoredAny>(&bytes).is_err() {
        JsonRpcRefusal::ParseError.into_response()
    } else {
        JsonRpcRefusal::InvalidRequest.into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origin_rules_follow_scheme_host_and_port() {
        let allowed = AllowedOrigins::from_entries(&[
            "http://localhost:4318".into(),
            "https://app.example".into(),
            "http://127.0.0.1:*".into(),
            "https://mcp.example.com:443".into(),
            "null".into(),
        ]);
        for ok in [
            "http://localhost:4318",
            "HTTP://LOCALHOST:4318",
            "https://app.example",
            "https://app.example:8443",
            "http://127.0.0.1:9",
            "https://mcp.example.com",
            "null",
        ] {
            assert!(allowed.allows(ok), "{ok}");
        }
        for refused in [
            "http://localhost:4319",
            "http://localhost",
            "https://localhost:4318",
            "https://evil.example",
            "https://mcp.example.com:444",
            "http://mcp.example.com",
            "https://app.example.evil",
            "not an origin",
            "",
        ] {
            assert!(!allowed.allows(refused), "{refused}");
        }
    }
}
