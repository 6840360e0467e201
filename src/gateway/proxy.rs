//! The forwarding handler: one short path from the client's request to the
//! backend and back. The body is read (policy is decided on it), responses
//! are streamed: SSE event by event, never buffered, except that a
//! `tools/list` answer on a route with a tool policy is rewritten without
//! the denied tools.

use std::{sync::Arc, time::Instant};

use axum::{
    body::{Body, Bytes},
    extract::{Request, State},
    response::{IntoResponse, Response},
};
use futures_util::{Stream, StreamExt, stream};
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use serde_json::Value;

use super::{
    Route,
    backend::BackendError,
    backend_auth::BackendAuthError,
    config::{Caller, PersonalKeyRoute},
    headers::{HOP_BY_HOP, is_client_only},
    identity,
    inspect::{self, Message, Refused},
    session,
};
use crate::{
    accounts::{backend_tokens, personal_keys, users},
    app::AppState,
    error::{GatewayRefusal, JsonRpcRefusal},
    oauth::bearer::Identity,
};

const SESSION_HEADER: HeaderName = HeaderName::from_static("mcp-session-id");
/// Largest `tools/list` JSON answer passgate reads to filter it.
const MAX_FILTERED_BODY: usize = 16 * 1024 * 1024;

/// What a route's handler needs.
#[derive(Clone)]
pub struct RouteState {
    pub app: AppState,
    pub route: Arc<Route>,
    /// The identity assertions this route's backend was sent.
    pub assertions: Arc<identity::Assertions>,
}

/// The headers of one connection only: the hop-by-hop ones, plus those its
/// `Connection` header names (read once per message; usually none, so
/// nothing is allocated).
struct ConnectionScoped(Vec<String>);

impl ConnectionScoped {
    fn of(headers: &HeaderMap) -> Self {
        let mut named = Vec::new();
        for value in headers.get_all(header::CONNECTION) {
            if let Ok(v) = value.to_str() {
                named.extend(v.split(',').map(|n| n.trim().to_ascii_lowercase()));
            }
        }
        ConnectionScoped(named)
    }

    fn contains(&self, name: &str) -> bool {
        HOP_BY_HOP.contains(&name) || self.0.iter().any(|s| s == name)
    }
}

/// `POST`, `GET` and `DELETE` on a route. The bearer check in front (the
/// route's own audience) put the caller's identity in the extensions.
pub async fn forward(State(rs): State<RouteState>, mut request: Request) -> Response {
    let started = Instant::now();
    // Taken, not cloned: nothing after this reads the request's extensions.
    let Some(identity) = request.extensions_mut().remove::<Identity>() else {
        // Unreachable through the route table, which always checks first.
        return GatewayRefusal::NotAdmitted.into_response();
    };
    let mut call = Message::default();
    let response = match proceed(&rs, &identity, request, &mut call).await {
        Ok(response) => response,
        Err(refusal) => refusal.answering(call.id.clone()),
    };
    // What happened, never what was said: no arguments, results or headers.
    tracing::info!(
        route = rs.route.label(),
        user = %identity.user_id,
        client = %identity.client_id,
        method = call.method.as_deref().unwrap_or("-"),
        tool = call.tool.as_deref().unwrap_or("-"),
        era = if call.per_request_era { "2026-07-28" } else { "2025-11-25" },
        status = response.status().as_u16(),
        duration_ms = started.elapsed().as_millis() as u64,
        "gateway call"
    );
    response
}

/// Who the caller is, as route policies and identity headers need it. The
/// grant the bearer check read carries it (kept current with the account,
/// and live only while the account is: see `oauth::access`); a grant made
/// before grants carried the role and email costs one account read.
async fn account(
    rs: &RouteState,
    identity: &Identity,
) -> Result<identity::Account, GatewayRefusal> {
    if let Some(profile) = &identity.account
        && !identity.user_name.is_empty()
    {
        return Ok(identity::Account {
            id: identity.user_id.clone(),
            name: identity.user_name.clone(),
            role: profile.role.clone(),
            email: profile.email.clone(),
        });
    }
    match users::get(rs.app.store.as_ref(), &identity.user_id).await {
        Ok(Some(user)) if !user.disabled => Ok(identity::Account {
            id: user.id,
            name: user.name,
            role: user.role.as_str().to_owned(),
            email: user.email,
        }),
        Ok(_) => Err(GatewayRefusal::NotAdmitted),
        Err(e) => {
            tracing::warn!(error = %e, "could not read an account");
            Err(GatewayRefusal::Unavailable)
        }
    }
}

async fn proceed(
    rs: &RouteState,
    identity: &Identity,
    request: Request,
    call: &mut Message,
) -> Result<Response, GatewayRefusal> {
    let route = &rs.route;
    let config = &route.config;
    let user = account(rs, identity).await?;
    let caller = Caller {
        name: &user.name,
        role: &user.role,
        email: user.email.as_deref(),
        groups: &identity.groups,
    };
    if !config.access.admits(&caller) {
        // Their access to this route ended: so does the key they gave it.
        if config.personal_key.is_some() {
            let _ = personal_keys::remove(rs.app.store.as_ref(), &user.id, &config.path()).await;
        }
        return Err(GatewayRefusal::NotAdmitted);
    }
    let (parts, body) = request.into_parts();
    let method = parts.method.clone();
    let body = match method {
        Method::POST => {
            let bytes = read_body(body).await?;
            *call = inspect::inspect(&parts.headers, &bytes).map_err(|r| match r {
                Refused::NotJson => GatewayRefusal::Rpc(JsonRpcRefusal::ParseError),
                Refused::NotJsonRpc => GatewayRefusal::Rpc(JsonRpcRefusal::InvalidRequest),
                Refused::HeaderMismatch(why) => {
                    // The refusal still answers the request it refuses.
                    call.id = inspect::request_id(&bytes);
                    GatewayRefusal::HeaderMismatch(why)
                }
            })?;
            if let Some(tool) = &call.tool
                && !config.tools.allows(tool)
            {
                return Err(GatewayRefusal::ToolDenied {
                    id: call.id.clone(),
                });
            }
            bytes
        }
        Method::GET | Method::DELETE => Bytes::new(),
        _ => return Err(GatewayRefusal::MethodNotAllowed),
    };
    // A command's children speak to the person directly: no identity JWT,
    // no sealed backend session (their own ids are bound to the person).
    if let Some(stdio) = route.backend.stdio() {
        let served = super::stdio::serve(stdio, &user.id, &method, &parts.headers, &body).await;
        return Ok(served.unwrap_or_else(IntoResponse::into_response));
    }
    let route_key = config.path();
    let backend_session = match parts.headers.get(SESSION_HEADER) {
        None => None,
        Some(value) => Some(
            value
                .to_str()
                .ok()
                .and_then(|v| session::open(&rs.app.master_key, &route_key, &user.id, v))
                .ok_or(GatewayRefusal::UnknownSession)?,
        ),
    };

    let mut headers = HeaderMap::new();
    let scoped = ConnectionScoped::of(&parts.headers);
    for (name, value) in &parts.headers {
        let n = name.as_str();
        if !is_client_only(n) && !scoped.contains(n) {
            headers.append(name.clone(), value.clone());
        }
    }
    for (name, _) in &config.headers {
        headers.remove(name);
    }
    if let Some(id) = backend_session {
        let value = HeaderValue::from_str(&id).map_err(|_| GatewayRefusal::UnknownSession)?;
        headers.insert(SESSION_HEADER, value);
    }
    identity::add_headers(
        &rs.app,
        &rs.assertions,
        &mut headers,
        route.backend.audience(),
        identity,
        &user,
        config.forward_user_headers,
    );
    for (name, value) in &config.headers {
        headers.insert(name.clone(), value.clone());
    }
    if let Some(wanted) = &config.personal_key {
        let (name, value) = personal_key(rs, &user.id, &route_key, wanted, &method).await?;
        headers.insert(name, value);
    }
    let sign_in = route.sign_in.as_deref();
    let mut seen_version = None;
    if let Some(sign_in) = sign_in {
        let (token, version) = sign_in
            .access_token(&rs.app, &user.id)
            .await
            .map_err(|e| backend_auth_refusal(rs, e, &method))?;
        headers.insert(header::AUTHORIZATION, bearer(&token)?);
        seen_version = Some(version);
    }

    let send = |headers: HeaderMap| {
        let mut outgoing = http::Request::new(body.clone());
        *outgoing.method_mut() = method.clone();
        *outgoing.headers_mut() = headers;
        async {
            route.backend.send(outgoing).await.map_err(|e| match e {
                BackendError::Timeout => GatewayRefusal::BackendTimeout,
                BackendError::Unreachable => GatewayRefusal::BackendUnreachable,
            })
        }
    };
    // Kept for a second try only where there can be one.
    let retry_headers = sign_in.is_some().then(|| headers.clone());
    let mut response = send(headers).await?;
    // The backend refused the person's token (expired early, or revoked):
    // refreshed once, then sent once more. A refused refresh asks the
    // person to connect again; nothing loops.
    if let (Some(sign_in), Some(version), Some(mut headers)) =
        (sign_in, seen_version, retry_headers)
        && response.status() == StatusCode::UNAUTHORIZED
    {
        let (token, _) = sign_in
            .refresh(&rs.app, &user.id, version)
            .await
            .map_err(|e| backend_auth_refusal(rs, e, &method))?;
        headers.insert(header::AUTHORIZATION, bearer(&token)?);
        response = send(headers).await?;
    }
    // The person's own key was refused: theirs to replace, so they are told
    // so, instead of a 502 that names no cause.
    if let Some(wanted) = &config.personal_key
        && matches!(
            response.status(),
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN
        )
    {
        tracing::info!(route = route.label(), user = %user.id, status = response.status().as_u16(), "the backend refused a person's own key");
        return Err(GatewayRefusal::SetupNeeded {
            action: format!(
                "replace your {} (the server refused the one you gave)",
                wanted.label
            ),
            url: rs
                .app
                .config
                .url(&personal_keys::account_anchor(&route_key)),
            in_band: method == Method::POST,
        });
    }
    relay(rs, &user.id, call, &method, response).await
}

fn bearer(token: &str) -> Result<HeaderValue, GatewayRefusal> {
    let mut value = HeaderValue::from_str(&format!("Bearer {token}"))
        .map_err(|_| GatewayRefusal::BackendInvalid)?;
    value.set_sensitive(true);
    Ok(value)
}

/// A backend sign-in that gave no token: connect (again), or 502/503.
fn backend_auth_refusal(rs: &RouteState, e: BackendAuthError, method: &Method) -> GatewayRefusal {
    match e {
        BackendAuthError::NotConnected => GatewayRefusal::SetupNeeded {
            action: format!("connect your account at {}", rs.route.label()),
            url: rs
                .app
                .config
                .url(&backend_tokens::account_anchor(&rs.route.config.path())),
            in_band: *method == Method::POST,
        },
        BackendAuthError::Unavailable(why) => {
            tracing::warn!(route = rs.route.label(), error = %why, "a backend's authorization server is unavailable");
            GatewayRefusal::BackendUnreachable
        }
        BackendAuthError::Misconfigured(why) => {
            tracing::warn!(route = rs.route.label(), error = %why, "a backend's sign-in cannot be used");
            GatewayRefusal::BackendInvalid
        }
        BackendAuthError::Store(e) => {
            tracing::warn!(error = %e, "could not read backend tokens");
            GatewayRefusal::Unavailable
        }
    }
}

/// The person's own key for this route's backend, as the header to send,
/// or the answer that sends them to their account page to set it.
async fn personal_key(
    rs: &RouteState,
    user_id: &str,
    route_path: &str,
    wanted: &PersonalKeyRoute,
    method: &Method,
) -> Result<(HeaderName, HeaderValue), GatewayRefusal> {
    let app = &rs.app;
    let key = personal_keys::get(app.store.as_ref(), &app.master_key, user_id, route_path)
        .await
        .map_err(|e| {
            tracing::warn!(error = %e, "could not read a personal key");
            GatewayRefusal::Unavailable
        })?;
    let needed = || GatewayRefusal::SetupNeeded {
        action: format!("add your {}", wanted.label),
        url: app.config.url(&personal_keys::account_anchor(route_path)),
        in_band: *method == Method::POST,
    };
    let key = key.ok_or_else(needed)?;
    let mut value =
        HeaderValue::from_str(&format!("{}{key}", wanted.prefix)).map_err(|_| needed())?;
    value.set_sensitive(true);
    Ok((wanted.header.clone(), value))
}

async fn read_body(body: Body) -> Result<Bytes, GatewayRefusal> {
    // The body limit layer outside caps the size: over it, reading fails.
    axum::body::to_bytes(body, usize::MAX).await.map_err(|e| {
        let too_large =
            std::iter::successors(Some(&e as &(dyn std::error::Error + 'static)), |e| {
                e.source()
            })
            .any(|e| e.is::<http_body_util::LengthLimitError>());
        GatewayRefusal::Rpc(if too_large {
            JsonRpcRefusal::BodyTooLarge
        } else {
            JsonRpcRefusal::BodyUnreadable
        })
    })
}

fn media_type(headers: &HeaderMap) -> String {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase())
        .unwrap_or_default()
}

async fn relay(
    rs: &RouteState,
    user_id: &str,
    call: &Message,
    method: &Method,
    response: Response,
) -> Result<Response, GatewayRefusal> {
    let route = &rs.route;
    let status = response.status();
    if status.is_redirection() {
        tracing::warn!(
            route = route.label(),
            status = status.as_u16(),
            "the backend answered with a redirect (not followed)"
        );
        return Err(GatewayRefusal::BackendInvalid);
    }
    if matches!(status.as_u16(), 401 | 403 | 407) {
        // The client's token was not sent: this is about passgate's own
        // credentials, and relaying the challenge would send the client
        // to the backend's authorization server.
        // A backend that is an OAuth protected resource says so (RFC 9728
        // §5.1): the operator's fix is `[route.oauth]`, not a 502 forever.
        let own_sign_in = route.sign_in.is_none()
            && response
                .headers()
                .get(header::WWW_AUTHENTICATE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.contains("resource_metadata"));
        if own_sign_in {
            tracing::warn!(
                route = route.label(),
                status = status.as_u16(),
                "the backend has an OAuth sign-in of its own: add [route.oauth] to this route in the gateway file, so that each person connects their account there"
            );
        } else {
            tracing::warn!(
                route = route.label(),
                status = status.as_u16(),
                "the backend refused passgate's credentials"
            );
        }
        return Err(GatewayRefusal::BackendInvalid);
    }
    let media = media_type(response.headers());
    let sse = media == "text/event-stream";
    let json = media == "application/json" || media.ends_with("+json");
    if status.is_success()
        && *method != Method::DELETE
        && status != StatusCode::ACCEPTED
        && !sse
        && !json
    {
        tracing::warn!(
            route = route.label(),
            "the backend's answer is neither JSON nor an event stream"
        );
        return Err(GatewayRefusal::BackendInvalid);
    }

    let mut headers = HeaderMap::new();
    let scoped = ConnectionScoped::of(response.headers());
    for (name, value) in response.headers() {
        let n = name.as_str();
        let dropped = scoped.contains(n)
            || matches!(
                n,
                "content-length" | "set-cookie" | "www-authenticate" | "mcp-session-id"
            );
        if !dropped {
            headers.append(name.clone(), value.clone());
        }
    }
    if let Some(backend_id) = response.headers().get(SESSION_HEADER) {
        let sealed = backend_id
            .to_str()
            .ok()
            .and_then(|id| session::seal(&rs.app.master_key, &route.config.path(), user_id, id))
            .and_then(|id| HeaderValue::from_str(&id).ok())
            .ok_or(GatewayRefusal::BackendInvalid)?;
        headers.insert(SESSION_HEADER, sealed);
    }

    let filter = call.method.as_deref() == Some("tools/list") && !route.config.tools.is_open();
    let response = response.into_body();
    let body = if sse {
        headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
        let events = response.into_data_stream();
        if filter {
            Body::from_stream(filtered_events(events, rs.route.clone(), call.id.clone()))
        } else {
            Body::from_stream(until_error(events, rs.route.clone()))
        }
    } else if filter && json && status.is_success() {
        let bytes = read_limited(response).await?;
        let mut message: Value =
            serde_json::from_slice(&bytes).map_err(|_| GatewayRefusal::BackendInvalid)?;
        inspect::filter_tools_list(&mut message, |t| route.config.tools.allows(t));
        Body::from(serde_json::to_vec(&message).map_err(|_| GatewayRefusal::BackendInvalid)?)
    } else {
        response
    };
    let mut out = Response::new(body);
    *out.status_mut() = status;
    *out.headers_mut() = headers;
    Ok(out)
}

async fn read_limited(body: Body) -> Result<Bytes, GatewayRefusal> {
    let mut stream = body.into_data_stream();
    let mut buf = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|_| GatewayRefusal::BackendInvalid)?;
        if buf.len() + chunk.len() > MAX_FILTERED_BODY {
            return Err(GatewayRefusal::BackendInvalid);
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf.into())
}

/// An event stream that ends where the backend's connection broke: the
/// client sees the events that arrived whole, then the end of the stream
/// (and may resume), not a broken response.
fn until_error(
    events: impl Stream<Item = Result<Bytes, axum::Error>> + Send + 'static,
    route: Arc<Route>,
) -> impl Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static {
    events
        .take_while(move |chunk| {
            if let Err(e) = chunk {
                tracing::warn!(route = route.label(), error = %e, "the backend's event stream broke off");
            }
            std::future::ready(chunk.is_ok())
        })
        .map(|chunk| Ok(chunk.unwrap_or_default()))
}

/// The event stream with denied tools removed from the answer to `id`,
/// passed on event by event as each one completes.
fn filtered_events(
    events: impl Stream<Item = Result<Bytes, axum::Error>> + Send + 'static,
    route: Arc<Route>,
    id: Option<Value>,
) -> impl Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static {
    let events = Box::pin(until_error(events, route.clone()));
    stream::unfold(
        (events, Vec::<u8>::new(), false),
        move |(mut events, mut buf, mut ended)| {
            let route = route.clone();
            let id = id.clone();
            async move {
                loop {
                    if let Some(end) = event_end(&buf) {
                        let rest = buf.split_off(end);
                        let event = std::mem::replace(&mut buf, rest);
                        let event = filter_event(&event, &route, id.as_ref());
                        return Some((Ok(event), (events, buf, ended)));
                    }
                    if ended {
                        if buf.is_empty() {
                            return None;
                        }
                        let tail = std::mem::take(&mut buf);
                        return Some((Ok(Bytes::from(tail)), (events, buf, ended)));
                    }
                    match events.next().await {
                        Some(Ok(chunk)) => buf.extend_from_slice(&chunk),
                        _ => ended = true,
                    }
                }
            }
        },
    )
}

/// Where the first complete event (ending in a blank line) ends.
fn event_end(buf: &[u8]) -> Option<usize> {
    let lf = buf.windows(2).position(|w| w == b"\n\n").map(|p| p + 2);
    let crlf = buf.windows(4).position(|w| w == b"\r\n\r\n").map(|p| p + 4);
    match (lf, crlf) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

fn filter_event(event: &[u8], route: &Route, id: Option<&Value>) -> Bytes {
    let original = || Bytes::copy_from_slice(event);
    let Ok(text) = std::str::from_utf8(event) else {
        return original();
    };
    let mut data = String::new();
    let mut other = Vec::new();
    for line in text.lines() {
        match line.strip_prefix("data:") {
            Some(d) => {
                if !data.is_empty() {
                    data.push('\n');
                }
                data.push_str(d.strip_prefix(' ').unwrap_or(d));
            }
            None if !line.is_empty() => other.push(line),
            None => {}
        }
    }
    let Ok(mut message) = serde_json::from_str::<Value>(&data) else {
        return original();
    };
    if message.get("id") != id
        || !inspect::filter_tools_list(&mut message, |t| route.config.tools.allows(t))
    {
        return original();
    }
    let mut out = String::new();
    for line in other {
        out.push_str(line);
        out.push('\n');
    }
    out.push_str("data: ");
    out.push_str(&message.to_string());
    out.push_str("\n\n");
    Bytes::from(out)
}
