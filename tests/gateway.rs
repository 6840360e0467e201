//! The gateway's security properties, in-process (the real router on a real
//! SQLite file) in front of a small real MCP backend over loopback TCP: an
//! axum server started by the test that records every request it receives
//! and checks, on every one, that no client credential arrived and that
//! the identity JWT verifies against passgate's JWKS with its own URL as
//! audience. The SDK backends, conformance through the gateway and the
//! two-instance runs are in their own harnesses.

mod support;

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{
    Router,
    body::{Body, Bytes},
    extract::State,
    response::{IntoResponse, Response},
    routing::any,
};
use futures_util::stream;
use http::{HeaderMap, Method, Request, StatusCode, header};
use http_body_util::BodyExt;
use jsonwebtoken::{DecodingKey, Validation, jwk::JwkSet};
use passgate::{
    accounts::{
        personal_keys, session,
        users::{self, Role},
    },
    app::AppState,
    config::Config,
    crypto::{self, MasterKey},
    gateway::{Gateway, config as gateway_config},
    oauth::{bearer::AccessClaims, grants},
    routes,
    store::{Store, now_unix, sqlite::SqliteStore},
};
use serde_json::{Value, json};
use tokio::sync::Notify;
use tower::ServiceExt;

const ORIGIN: &str = support::ORIGIN;
const STATIC_KEY: &str = "operator-static-key-value";

/// What the backend saw of one request.
#[derive(Debug, Clone)]
struct Seen {
    path: String,
    headers: HeaderMap,
    body: Value,
}

#[derive(Clone)]
struct Backend {
    seen: Arc<Mutex<Vec<Seen>>>,
    /// Problems found in received requests (credentials, bad identity).
    problems: Arc<Mutex<Vec<String>>>,
    jwks: Arc<Mutex<Option<JwkSet>>>,
    base: String,
    release: Arc<Notify>,
    /// Notified when the backend's `/endless` stream is dropped (its
    /// connection closed).
    dropped: Arc<Notify>,
}

/// Notifies when dropped.
struct OnDrop(Arc<Notify>);

impl Drop for OnDrop {
    fn drop(&mut self) {
        self.0.notify_one();
    }
}

impl Backend {
    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    fn count(&self) -> usize {
        self.seen.lock().unwrap().len()
    }

    fn assert_clean(&self) {
        let problems = self.problems.lock().unwrap();
        assert!(problems.is_empty(), "{problems:?}");
    }
}

/// Every request: no client credential, and a valid identity JWT whose
/// audience is this backend route's URL.
fn check_request(backend: &Backend, path: &str, headers: &HeaderMap) -> Result<(), String> {
    for forbidden in ["authorization", "cookie", "origin"] {
        // The one route with personal keys gets each person's own key, and
        // nothing else, in `Authorization`.
        let personal = forbidden == "authorization"
            && path == "/keyed"
            && headers
                .get(forbidden)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.starts_with("Bearer key-of-"));
        if headers.contains_key(forbidden) && !personal {
            return Err(format!("{path}: {forbidden} reached the backend"));
        }
    }
    let jwt = headers
        .get("x-passgate-identity")
        .and_then(|v| v.to_str().ok())
        .ok_or(format!("{path}: no identity"))?;
    let header = jsonwebtoken::decode_header(jwt).map_err(|e| e.to_string())?;
    if header.typ.as_deref() != Some("passgate-identity+jwt") {
        return Err(format!("{path}: identity typ {:?}", header.typ));
    }
    let jwks = backend.jwks.lock().unwrap().clone().ok_or("no JWKS yet")?;
    let jwk = jwks
        .find(header.kid.as_deref().unwrap_or_default())
        .ok_or("unknown kid")?;
    let key = DecodingKey::from_jwk(jwk).map_err(|e| e.to_string())?;
    let mut validation = Validation::new(jsonwebtoken::Algorithm::ES256);
    validation.set_audience(&[format!("{}{path}", backend.base)]);
    validation.set_issuer(&[ORIGIN]);
    validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
    let claims = jsonwebtoken::decode::<Value>(jwt, &key, &validation)
        .map_err(|e| format!("{path}: identity does not verify: {e}"))?
        .claims;
    let lifetime = claims["exp"].as_i64().unwrap_or(0) - claims["iat"].as_i64().unwrap_or(0);
    if !(1..=120).contains(&lifetime) || claims["jti"].as_str().is_none() {
        return Err(format!("{path}: identity lifetime or jti wrong: {claims}"));
    }
    Ok(())
}

fn json_rpc(id: &Value, result: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "result": result})
}

async fn backend_handler(
    State(backend): State<Backend>,
    method: Method,
    uri: http::Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_owned();
    if method == Method::OPTIONS {
        return StatusCode::NO_CONTENT.into_response();
    }
    if let Err(problem) = check_request(&backend, &path, &headers) {
        backend.problems.lock().unwrap().push(problem);
    }
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    backend.seen.lock().unwrap().push(Seen {
        path: path.clone(),
        headers: headers.clone(),
        body: body.clone(),
    });
    let refused_key = headers
        .get("authorization")
        .is_some_and(|v| v == "Bearer key-of-ann-refused");
    match path.as_str() {
        "/keyed" if refused_key => return StatusCode::UNAUTHORIZED.into_response(),
        // A backend whose metadata sends passgate to an address inside the
        // cloud (the instance metadata service).
        "/.well-known/oauth-protected-resource/inward" => {
            return axum::Json(json!({
                "resource": format!("{}/inward", backend.base),
                "authorization_servers": ["http://169.254.169.254/"],
            }))
            .into_response();
        }
        "/garbage" => {
            return (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "text/html")],
                "<html>oops</html>",
            )
                .into_response();
        }
        "/redirect" => {
            return (
                StatusCode::TEMPORARY_REDIRECT,
                [(header::LOCATION, "http://127.0.0.1:9/elsewhere")],
            )
                .into_response();
        }
        "/refuses" => {
            return (
                StatusCode::UNAUTHORIZED,
                [(
                    header::WWW_AUTHENTICATE,
                    r#"Bearer resource_metadata="http://127.0.0.1:9/x""#,
                )],
            )
                .into_response();
        }
        "/endless" => {
            let guard = OnDrop(backend.dropped.clone());
            let event = Bytes::from(
                "event: message\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{\"progressToken\":1,\"progress\":1}}\n\n",
            );
            let events = stream::unfold((0, guard), move |(step, guard)| {
                let event = event.clone();
                async move {
                    if step == 0 {
                        Some((Ok::<_, std::io::Error>(event), (1, guard)))
                    } else {
                        std::future::pending::<()>().await;
                        None
                    }
                }
            });
            return (
                [(header::CONTENT_TYPE, "text/event-stream")],
                Body::from_stream(events),
            )
                .into_response();
        }
        "/hangs" => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
        }
        "/breaks" => {
            let event = Bytes::from(
                "event: message\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{\"progressToken\":1,\"progress\":1}}\n\n",
            );
            // One whole event, then (once the test has it) a broken connection.
            let release = backend.release.clone();
            let events = stream::unfold(0, move |step| {
                let (release, event) = (release.clone(), event.clone());
                async move {
                    match step {
                        0 => Some((Ok(event), 1)),
                        1 => {
                            release.notified().await;
                            Some((Err(std::io::Error::other("backend died")), 2))
                        }
                        _ => None,
                    }
                }
            });
            return (
                [(header::CONTENT_TYPE, "text/event-stream")],
                Body::from_stream(events),
            )
                .into_response();
        }
        _ => {}
    }
    let id = body["id"].clone();
    let method_name = body["method"].as_str().unwrap_or_default();
    let session = headers
        .get("mcp-session-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    match method_name {
        "initialize" => (
            [("mcp-session-id", "backend-session-1")],
            axum::Json(json_rpc(&id, json!({"protocolVersion": "2025-11-25", "capabilities": {}, "serverInfo": {"name": "t", "version": "1"}}))),
        )
            .into_response(),
        "tools/list" if body["params"]["cursor"].is_null() => {
            // Page one as an event stream: a progress notification, then the
            // answer; the second event waits for the test's go-ahead.
            let first = Bytes::from(
                "event: message\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{\"progressToken\":1,\"progress\":1}}\n\n",
            );
            let answer = json_rpc(&id, json!({"tools": [{"name": "add"}, {"name": "secret_delete"}], "nextCursor": "page2"}));
            let second = Bytes::from(format!("id: 7\nevent: message\ndata: {answer}\n\n"));
            let release = backend.release.clone();
            let events = stream::unfold(0, move |step| {
                let release = release.clone();
                let (first, second) = (first.clone(), second.clone());
                async move {
                    match step {
                        0 => Some((Ok::<_, std::io::Error>(first), 1)),
                        1 => {
                            release.notified().await;
                            Some((Ok(second), 2))
                        }
                        _ => None,
                    }
                }
            });
            ([(header::CONTENT_TYPE, "text/event-stream")], Body::from_stream(events)).into_response()
        }
        "tools/list" => axum::Json(json_rpc(&id, json!({"tools": [{"name": "secret_read"}, {"name": "multiply"}]}))).into_response(),
        // 2026-07-28's multi round-trip: the first call asks for input with
        // an opaque `requestState` bound to the caller; the retry must bring
        // it back unchanged, from the same caller.
        "tools/call" if body["params"]["name"] == "book" => {
            let sub = identity_sub(&headers);
            let state = format!("st\u{e9}+/= \"{sub}\"");
            match body["params"]["requestState"].as_str() {
                None => axum::Json(json_rpc(
                    &id,
                    json!({"inputRequests": {"confirm": {"method": "elicitation/create",
                        "params": {"message": "Book it?", "requestedSchema": {"type": "object"}}}},
                        "requestState": state}),
                ))
                .into_response(),
                Some(back) if back == state => axum::Json(json_rpc(
                    &id,
                    json!({"content": [{"type": "text", "text": format!("booked for {sub}")}]}),
                ))
                .into_response(),
                Some(_) => axum::Json(json!({"jsonrpc": "2.0", "id": id,
                    "error": {"code": -32602, "message": "requestState is not this caller's"}}))
                .into_response(),
            }
        }
        "tools/call" => axum::Json(json_rpc(
            &id,
            json!({"content": [{"type": "text", "text": format!("session={session}")}]}),
        ))
        .into_response(),
        _ => StatusCode::ACCEPTED.into_response(),
    }
}

/// The `sub` of the identity assertion (check_request verified it).
fn identity_sub(headers: &HeaderMap) -> String {
    let jwt = headers
        .get("x-passgate-identity")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    jwt.split('.')
        .nth(1)
        .and_then(|p| {
            base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, p).ok()
        })
        .and_then(|p| serde_json::from_slice::<Value>(&p).ok())
        .and_then(|c| c["sub"].as_str().map(str::to_owned))
        .unwrap_or_default()
}

async fn start_backend() -> Backend {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let backend = Backend {
        seen: Arc::default(),
        problems: Arc::default(),
        jwks: Arc::default(),
        base,
        release: Arc::new(Notify::new()),
        dropped: Arc::new(Notify::new()),
    };
    let app = Router::new()
        .fallback(any(backend_handler))
        .with_state(backend.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });
    backend
}

/// A loopback URL where nothing listens.
async fn closed_port_url() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/mcp", listener.local_addr().unwrap());
    drop(listener);
    url
}

struct Gw {
    state: AppState,
    router: Router,
    backend: Backend,
    _dir: tempfile::TempDir,
}

impl Gw {
    async fn start() -> Self {
        let backend = start_backend().await;
        let b = &backend.base;
        let down = closed_port_url().await;
        let file = format!(
            r#"
            [[route]]
            name = "a"
            url = "{b}/a"
            forward_user_headers = true
            headers = [{{ name = "X-Api-Key", from_env = "KEY" }}]
            [route.tools]
            deny = ["secret_*"]

            [[route]]
            name = "b"
            url = "{b}/b"

            [[route]]
            name = "eng"
            url = "{b}/eng"
            [route.access]
            allow_groups = ["engineering"]

            [[route]]
            name = "admins"
            url = "{b}/admins"
            [route.access]
            allow_roles = ["admin"]

            [[route]]
            name = "domain"
            url = "{b}/domain"
            forward_user_headers = true
            [route.access]
            allow_email_domains = ["example.com"]

            [[route]]
            name = "hangs"
            url = "{b}/hangs"
            timeout_secs = 1

            [[route]]
            name = "breaks"
            url = "{b}/breaks"

            [[route]]
            name = "endless"
            url = "{b}/endless"

            [[route]]
            name = "garbage"
            url = "{b}/garbage"

            [[route]]
            name = "redirect"
            url = "{b}/redirect"

            [[route]]
            name = "refuses"
            url = "{b}/refuses"

            [[route]]
            name = "down"
            url = "{down}"

            [[route]]
            name = "inward"
            url = "{b}/inward"
            [route.oauth]

            [[route]]
            name = "keyed"
            url = "{b}/keyed"
            [route.access]
            allow_groups = ["keyholders"]
            [route.personal_key]
            header = "Authorization"
            prefix = "Bearer "
            label = "Example API token"
            help_url = "https://tokens.example.com/new"
            "#
        );
        let routes = gateway_config::parse(&file, "test.toml", |name| {
            (name == "KEY").then(|| STATIC_KEY.to_owned())
        })
        .expect("valid gateway file");
        let config = Config::for_public_url(ORIGIN).unwrap();
        let gateway = Gateway::new(routes);
        Self::on(config, gateway, backend).await
    }

    async fn on(config: Config, gateway: Gateway, backend: Backend) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("p.sqlite3")).unwrap();
        let key = MasterKey::from_secret(&MasterKey::generate_secret()).unwrap();
        let state = AppState::build(config, Arc::new(store), key).await.unwrap();
        let demo = passgate::mcp::ProtectedMcp::demo(&state.config, state.shutdown.clone());
        let router = routes::router_with_gateway(state.clone(), vec![demo], Some(gateway))
            .expect("valid routes");
        let gw = Self {
            state,
            router,
            backend,
            _dir: dir,
        };
        let jwks: JwkSet = serde_json::from_str(&gw.get("/.well-known/jwks.json").await.1).unwrap();
        *gw.backend.jwks.lock().unwrap() = Some(jwks);
        gw
    }

    async fn get(&self, path: &str) -> (StatusCode, String) {
        let response = self
            .router
            .clone()
            .oneshot(
                Request::get(path)
                    .header(header::HOST, "localhost")
                    .body(Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        let status = response.status();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    /// A person (with `groups`) and an access token for `path`'s resource.
    async fn person(&self, name: &str, groups: &[&str], path: &str) -> (String, String) {
        self.person_with_email(name, groups, None, path).await
    }

    async fn person_with_email(
        &self,
        name: &str,
        groups: &[&str],
        email: Option<&str>,
        path: &str,
    ) -> (String, String) {
        let mut user =
            users::new_user(users::new_user_id(), name.into(), name.into(), Role::Member);
        user.groups = groups.iter().map(|g| (*g).to_owned()).collect();
        user.email = email.map(str::to_owned);
        let store = self.state.store.as_ref();
        store
            .transact(users::new_user_writes(&user).unwrap())
            .await
            .unwrap();
        let token = self.token(&user.id, &user.groups, path).await;
        (user.id, token)
    }

    /// A token as the token endpoint issues it: its grant carries the
    /// account's names, role and email (and `groups`, which callers vary).
    async fn token(&self, user_id: &str, groups: &[String], path: &str) -> String {
        let user = users::get(self.state.store.as_ref(), user_id)
            .await
            .unwrap()
            .unwrap();
        let mut grant = self.grant_made_before_profiles(user_id, groups, path);
        grant.user_name = user.name.clone();
        grant.display_name = user.display_name.clone();
        grant.account = Some(user.grant_profile());
        self.token_for(grant).await
    }

    /// A grant as passgate made them before grants carried the account's
    /// role and email.
    fn grant_made_before_profiles(
        &self,
        user_id: &str,
        groups: &[String],
        path: &str,
    ) -> grants::Grant {
        grants::Grant {
            family: crypto::random_id(),
            user_id: user_id.into(),
            client_id: "test-client".into(),
            client_name: "Test client".into(),
            scope: "mcp".into(),
            resource: self.state.config.url(path),
            created_at: now_unix(),
            redirect_uri: "http://127.0.0.1:33418/callback".into(),
            groups: groups.to_vec(),
            last_used_at: None,
            user_name: String::new(),
            display_name: String::new(),
            account: None,
        }
    }

    async fn token_for(&self, grant: grants::Grant) -> String {
        let (user_id, resource) = (grant.user_id.clone(), grant.resource.clone());
        let store: &dyn Store = self.state.store.as_ref();
        store
            .transact(grants::create_writes(&grant).unwrap())
            .await
            .unwrap();
        let now = now_unix();
        self.state.keys.sign(&AccessClaims {
            iss: self.state.config.issuer(),
            sub: user_id,
            aud: resource,
            exp: now + 600,
            iat: now,
            jti: crypto::random_id(),
            client_id: "test-client".into(),
            scope: "mcp".into(),
            fam: grant.family,
        })
    }

    /// A browser session for `user_id`: its cookie header and CSRF token.
    async fn session(&self, user_id: &str) -> (String, String) {
        let store = self.state.store.as_ref();
        let token = session::create(store, user_id, None).await.unwrap();
        let csrf = session::find(store, &token).await.unwrap().unwrap().csrf;
        (format!("{}={token}", session::COOKIE), csrf)
    }

    /// A page form posted with a session's cookie.
    async fn post_form(
        &self,
        path: &str,
        cookie: &str,
        fields: &[(&str, &str)],
    ) -> (StatusCode, String, String) {
        let body: String = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(fields)
            .finish();
        let response = self
            .send(
                Request::post(path)
                    .header(header::HOST, "localhost")
                    .header(header::ORIGIN, ORIGIN)
                    .header(header::COOKIE, cookie)
                    .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                    .body(Body::from(body))
                    .unwrap(),
            )
            .await;
        let status = response.status();
        let location = response
            .headers()
            .get(header::LOCATION)
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (
            status,
            location,
            String::from_utf8_lossy(&body).into_owned(),
        )
    }

    async fn page(&self, path: &str, cookie: &str) -> String {
        let response = self
            .send(
                Request::get(path)
                    .header(header::HOST, "localhost")
                    .header(header::COOKIE, cookie)
                    .body(Body::empty())
                    .unwrap(),
            )
            .await;
        assert_eq!(response.status(), StatusCode::OK);
        let body = response.into_body().collect().await.unwrap().to_bytes();
        String::from_utf8_lossy(&body).into_owned()
    }

    async fn send(&self, request: Request<Body>) -> Response {
        tokio::time::timeout(
            Duration::from_secs(60),
            self.router.clone().oneshot(request),
        )
        .await
        .expect("the gateway answers")
        .unwrap()
    }

    async fn call(
        &self,
        path: &str,
        token: &str,
        body: Value,
        extra: &[(&str, &str)],
    ) -> (StatusCode, HeaderMap, String) {
        let mut request = Request::post(path)
            .header(header::HOST, "localhost")
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::ACCEPT, "application/json, text/event-stream")
            .header(header::AUTHORIZATION, format!("Bearer {token}"));
        for (k, v) in extra {
            request = request.header(*k, *v);
        }
        let response = self
            .send(request.body(Body::from(body.to_string())).unwrap())
            .await;
        let status = response.status();
        let headers = response.headers().clone();
        let body = tokio::time::timeout(Duration::from_secs(60), response.into_body().collect())
            .await
            .expect("the body ends")
            .map(|b| String::from_utf8_lossy(&b.to_bytes()).into_owned())
            .unwrap_or_else(|e| format!("<body error: {e}>"));
        (status, headers, body)
    }
}

fn tools_call(name: &str) -> Value {
    json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {"name": name, "arguments": {}}})
}

fn initialize() -> Value {
    json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}})
}

#[tokio::test]
async fn client_credentials_and_spoofed_identity_never_reach_the_backend() {
    let gw = Gw::start().await;
    let (user_id, token) = gw.person("alice", &["staff"], "/mcp/a").await;
    let (status, _, body) = gw
        .call(
            "/mcp/a",
            &token,
            tools_call("add"),
            &[
                ("cookie", "__Host-passgate-session=stolen"),
                ("origin", ORIGIN),
                ("x-passgate-identity", "forged.jwt.value"),
                ("x-forwarded-user", "admin"),
                ("x-forwarded-email", "admin@example.com"),
                ("x-forwarded-groups", "admins"),
                ("x-api-key", "client-chosen"),
                ("connection", "x-secret-hop"),
                ("x-secret-hop", "1"),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    gw.backend.assert_clean();
    let seen = gw.backend.seen();
    assert_eq!(
        seen.last().unwrap().body,
        tools_call("add"),
        "the body is forwarded as sent"
    );
    let h = &seen.last().unwrap().headers;
    assert_eq!(h["x-forwarded-user"], "alice");
    assert_eq!(h["x-forwarded-groups"], "staff");
    assert!(!h.contains_key("x-forwarded-email"), "alice has no email");
    assert_eq!(h["x-api-key"], STATIC_KEY);
    assert!(!h.contains_key("x-secret-hop"));
    assert_eq!(h["host"], gw.backend.base.trim_start_matches("http://"));
    let jwt = h["x-passgate-identity"].to_str().unwrap();
    let claims: Value = serde_json::from_slice(
        &base64::Engine::decode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            jwt.split('.').nth(1).unwrap(),
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(claims["sub"], user_id.as_str());
    assert_eq!(claims["name"], "alice");
    assert_eq!(claims["groups"], json!(["staff"]));
    assert_eq!(claims["client_id"], "test-client");
    assert_eq!(claims["aud"], format!("{}/a", gw.backend.base));
    // A route without forward_user_headers sends none of them, even spoofed.
    let (_, token_b) = gw.person("bob", &[], "/mcp/b").await;
    let (status, _, _) = gw
        .call(
            "/mcp/b",
            &token_b,
            tools_call("add"),
            &[("x-forwarded-user", "admin")],
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        !gw.backend
            .seen()
            .last()
            .unwrap()
            .headers
            .contains_key("x-forwarded-user")
    );
    gw.backend.assert_clean();
}

/// 2026-07-28: an `InputRequiredResult` reaches the client as the backend
/// wrote it, and the retry's `requestState` reaches the backend unchanged,
/// with the same caller's identity (backends bind the state to it); another
/// person replaying that state is someone else to the backend.
#[tokio::test]
async fn input_required_results_and_their_request_state_pass_unchanged() {
    let gw = Gw::start().await;
    let (alice, token) = gw.person("alice", &[], "/mcp/b").await;
    let (_, bob) = gw.person("bob", &[], "/mcp/b").await;
    let era = [
        ("mcp-protocol-version", "2026-07-28"),
        ("mcp-method", "tools/call"),
        ("mcp-name", "book"),
    ];
    let call = |state: Option<&str>| {
        let mut params = json!({"name": "book", "arguments": {},
            "_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28"}});
        if let Some(state) = state {
            params["requestState"] = json!(state);
            params["inputResponses"] = json!({"confirm": {"action": "accept", "content": {}}});
        }
        json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": params})
    };
    let (status, _, body) = gw.call("/mcp/b", &token, call(None), &era).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let first: Value = serde_json::from_str(&body).unwrap();
    let state = first["result"]["requestState"].as_str().unwrap().to_owned();
    assert_eq!(
        state,
        format!("st\u{e9}+/= \"{alice}\""),
        "relayed byte for byte"
    );
    assert!(first["result"]["inputRequests"]["confirm"].is_object());

    let (status, _, body) = gw.call("/mcp/b", &token, call(Some(&state)), &era).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let sent = gw.backend.seen().last().unwrap().body.clone();
    assert_eq!(sent, call(Some(&state)), "the retry is forwarded as sent");
    let done: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        done["result"]["content"][0]["text"],
        format!("booked for {alice}")
    );

    let (_, _, body) = gw.call("/mcp/b", &bob, call(Some(&state)), &era).await;
    let stolen: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(stolen["error"]["code"], -32602, "{body}");
    gw.backend.assert_clean();
}

/// One signature serves a caller's calls while its assertion has time to
/// run; anything it states that differs (person, groups, route) gets its own.
#[tokio::test]
async fn an_identity_assertion_is_shared_only_by_calls_it_describes() {
    let gw = Gw::start().await;
    let (alice, token) = gw.person("alice", &["staff"], "/mcp/a").await;
    let identity = |gw: &Gw| {
        gw.backend.seen().last().unwrap().headers["x-passgate-identity"]
            .to_str()
            .unwrap()
            .to_owned()
    };
    let mut sent = Vec::new();
    for token in [&token, &token] {
        let (status, _, body) = gw.call("/mcp/a", token, tools_call("add"), &[]).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        sent.push(identity(&gw));
    }
    assert_eq!(sent[0], sent[1], "the same caller's second call reuses it");

    let other_groups = gw.token(&alice, &["admins".to_owned()], "/mcp/a").await;
    let (_, bob) = gw.person("bob", &["staff"], "/mcp/a").await;
    let alice_on_b = gw.token(&alice, &["staff".to_owned()], "/mcp/b").await;
    for (path, token) in [
        ("/mcp/a", &other_groups),
        ("/mcp/a", &bob),
        ("/mcp/b", &alice_on_b),
    ] {
        let (status, _, body) = gw.call(path, token, tools_call("add"), &[]).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let jwt = identity(&gw);
        assert!(!sent.contains(&jwt), "{path}: another caller's assertion");
        sent.push(jwt);
    }
    // check_request verified each one against the JWKS and its audience.
    gw.backend.assert_clean();
    assert_eq!(gw.backend.count(), 5);
}

#[tokio::test]
async fn each_route_is_its_own_protected_resource() {
    let gw = Gw::start().await;
    let (_, token_a) = gw.person("alice", &[], "/mcp/a").await;
    // Verified (and remembered) for route a first.
    assert_eq!(
        gw.call("/mcp/a", &token_a, tools_call("add"), &[]).await.0,
        StatusCode::OK
    );
    let before = gw.backend.count();
    for other in ["/mcp/b", "/mcp"] {
        let (status, headers, _) = gw.call(other, &token_a, tools_call("add"), &[]).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{other}");
        let challenge = headers[header::WWW_AUTHENTICATE].to_str().unwrap();
        assert!(
            challenge.contains(&format!(
                r#"resource_metadata="{ORIGIN}/.well-known/oauth-protected-resource{other}""#
            )),
            "{challenge}"
        );
    }
    assert_eq!(gw.backend.count(), before, "nothing was forwarded");
    let (status, metadata) = gw.get("/.well-known/oauth-protected-resource/mcp/b").await;
    assert_eq!(status, StatusCode::OK);
    let metadata: Value = serde_json::from_str(&metadata).unwrap();
    assert_eq!(metadata["resource"], format!("{ORIGIN}/mcp/b"));
    // No token at all: the route's own challenge.
    let response = gw
        .send(
            Request::post("/mcp/b")
                .header(header::HOST, "localhost")
                .body(Body::from("{}"))
                .unwrap(),
        )
        .await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn sessions_are_sealed_and_bound_to_their_route_and_account() {
    let gw = Gw::start().await;
    let (alice, token_a) = gw.person("alice", &[], "/mcp/a").await;
    let (status, headers, body) = gw.call("/mcp/a", &token_a, initialize(), &[]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let sealed = headers["mcp-session-id"].to_str().unwrap().to_owned();
    assert!(!sealed.contains("backend-session-1"));
    let (status, _, body) = gw
        .call(
            "/mcp/a",
            &token_a,
            tools_call("add"),
            &[("mcp-session-id", &sealed)],
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("session=backend-session-1"), "{body}");
    assert_eq!(
        gw.backend.seen().last().unwrap().headers["mcp-session-id"],
        "backend-session-1"
    );

    // The client's cancellation and its answer to a server request reach
    // the same backend session.
    let cancelled =
        json!({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 3}});
    let answer = json!({"jsonrpc": "2.0", "id": 0, "result": {"action": "accept", "content": {}}});
    for message in [cancelled, answer] {
        let (status, _, _) = gw
            .call(
                "/mcp/a",
                &token_a,
                message.clone(),
                &[("mcp-session-id", &sealed)],
            )
            .await;
        assert_eq!(status, StatusCode::ACCEPTED);
        let seen = gw.backend.seen();
        let last = seen.last().unwrap();
        assert_eq!(last.body, message);
        assert_eq!(last.headers["mcp-session-id"], "backend-session-1");
    }

    let before = gw.backend.count();
    let mut tampered = sealed.clone().into_bytes();
    let i = tampered.len() / 2;
    tampered[i] = if tampered[i] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();
    let (_, token_bob) = gw.person("bob", &[], "/mcp/a").await;
    let alice_on_b = gw.token(&alice, &[], "/mcp/b").await;
    for (path, token, id) in [
        ("/mcp/a", &token_a, tampered.as_str()),
        ("/mcp/a", &token_a, "backend-session-1"),
        ("/mcp/a", &token_bob, sealed.as_str()),
        ("/mcp/b", &alice_on_b, sealed.as_str()),
    ] {
        let (status, _, body) = gw
            .call(path, token, tools_call("add"), &[("mcp-session-id", id)])
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path} {id}: {body}");
        assert!(body.contains("Session not found"), "{body}");
    }
    assert_eq!(
        gw.backend.count(),
        before,
        "no refused session was forwarded"
    );
}

#[tokio::test]
async fn header_body_mismatches_are_refused_before_any_policy() {
    let gw = Gw::start().await;
    let (_, token) = gw.person("alice", &[], "/mcp/a").await;
    let call = |name: &str| {
        json!({"jsonrpc": "2.0", "id": 5, "method": "tools/call", "params": {
            "name": name, "arguments": {},
            "_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28"}}})
    };
    let era_call = |tool: &'static str, version: &'static str, name: &'static str| {
        let (gw, token) = (&gw, &token);
        async move {
            let headers = [
                ("mcp-protocol-version", version),
                ("mcp-method", "tools/call"),
                ("mcp-name", name),
            ];
            gw.call("/mcp/a", token, call(tool), &headers).await
        }
    };
    let before = gw.backend.count();
    // The headers name an allowed tool, the body a denied one; then the
    // version header disagrees with _meta.
    for (tool, version, name) in [
        ("secret_delete", "2026-07-28", "add"),
        ("add", "2025-11-25", "add"),
    ] {
        let (status, _, body) = era_call(tool, version, name).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        let body: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(body["error"]["code"], -32020, "{tool} {version} {name}");
    }
    // Consistent headers (one base64-encoded) for a denied tool: refused by
    // policy without the name, never forwarded.
    let (status, _, body) = era_call(
        "secret_delete",
        "2026-07-28",
        "=?base64?c2VjcmV0X2RlbGV0ZQ==?=",
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let parsed: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(parsed["id"], 5);
    assert_eq!(parsed["error"]["code"], -32602);
    assert!(!body.contains("secret"), "{body}");
    assert_eq!(gw.backend.count(), before, "nothing was forwarded");
    // And consistent headers for an allowed one pass.
    let (status, _, _) = gw
        .call(
            "/mcp/a",
            &token,
            call("add"),
            &[
                ("mcp-protocol-version", "2026-07-28"),
                ("mcp-method", "tools/call"),
                ("mcp-name", "add"),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(gw.backend.count(), before + 1);
}

#[tokio::test]
async fn denied_tools_are_absent_from_every_page_and_events_are_not_held_back() {
    let gw = Gw::start().await;
    let (_, token) = gw.person("alice", &[], "/mcp/a").await;
    let list = json!({"jsonrpc": "2.0", "id": 9, "method": "tools/list", "params": {}});
    let request = Request::post("/mcp/a")
        .header(header::HOST, "localhost")
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::ACCEPT, "application/json, text/event-stream")
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .body(Body::from(list.to_string()))
        .unwrap();
    let response = gw.send(request).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["x-accel-buffering"], "no");
    let mut body = response.into_body();
    // The first event arrives while the backend still holds the second.
    let first = tokio::time::timeout(Duration::from_secs(60), body.frame())
        .await
        .expect("the first event comes through before the stream ends")
        .unwrap()
        .unwrap()
        .into_data()
        .unwrap();
    assert!(String::from_utf8_lossy(&first).contains("notifications/progress"));
    gw.backend.release.notify_one();
    let rest = tokio::time::timeout(Duration::from_secs(60), body.collect())
        .await
        .unwrap()
        .unwrap()
        .to_bytes();
    let rest = String::from_utf8_lossy(&rest);
    assert!(rest.contains("\"add\"") && rest.contains("page2"), "{rest}");
    assert!(rest.contains("id: 7"), "event fields are kept: {rest}");
    assert!(!rest.contains("secret"), "{rest}");
    // Page two, a JSON answer.
    let page2 =
        json!({"jsonrpc": "2.0", "id": 10, "method": "tools/list", "params": {"cursor": "page2"}});
    let (status, _, body) = gw.call("/mcp/a", &token, page2, &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        body.contains("multiply") && !body.contains("secret"),
        "{body}"
    );
    // A route without a tool policy lists everything.
    let (_, token_b) = gw.person("bob", &[], "/mcp/b").await;
    let page2 =
        json!({"jsonrpc": "2.0", "id": 11, "method": "tools/list", "params": {"cursor": "page2"}});
    let (_, _, body) = gw.call("/mcp/b", &token_b, page2, &[]).await;
    assert!(body.contains("secret_read"), "{body}");
}

#[tokio::test]
async fn the_access_policy_is_checked_on_every_call() {
    let gw = Gw::start().await;
    let (_, outsider) = gw.person("mallory", &["sales"], "/mcp/eng").await;
    let before = gw.backend.count();
    let (status, _, body) = gw.call("/mcp/eng", &outsider, tools_call("add"), &[]).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(gw.backend.count(), before);
    let (user, insider) = gw.person("erin", &["engineering"], "/mcp/eng").await;
    assert_eq!(
        gw.call("/mcp/eng", &insider, tools_call("add"), &[])
            .await
            .0,
        StatusCode::OK
    );
    // By email domain: the verified email reaches the backend too.
    let (_, no_email) = gw.person("frank", &[], "/mcp/domain").await;
    assert_eq!(
        gw.call("/mcp/domain", &no_email, tools_call("add"), &[])
            .await
            .0,
        StatusCode::FORBIDDEN
    );
    let (_, other) = gw
        .person_with_email("gina", &[], Some("gina@example.org"), "/mcp/domain")
        .await;
    assert_eq!(
        gw.call("/mcp/domain", &other, tools_call("add"), &[])
            .await
            .0,
        StatusCode::FORBIDDEN
    );
    let (_, listed) = gw
        .person_with_email("hana", &[], Some("hana@example.com"), "/mcp/domain")
        .await;
    assert_eq!(
        gw.call("/mcp/domain", &listed, tools_call("add"), &[])
            .await
            .0,
        StatusCode::OK
    );
    assert_eq!(
        gw.backend.seen().last().unwrap().headers["x-forwarded-email"],
        "hana@example.com"
    );
    // The role and email come with the grant, kept current: a change
    // applies at the next call, with the same token.
    let store = gw.state.store.as_ref();
    let (ivan, ivan_token) = gw.person("ivan", &[], "/mcp/admins").await;
    let gw = &gw;
    let on_admins = |token: String| async move {
        let (status, _, body) = gw.call("/mcp/admins", &token, tools_call("add"), &[]).await;
        (status, body)
    };
    assert_eq!(on_admins(ivan_token.clone()).await.0, StatusCode::FORBIDDEN);
    users::set_role(store, &ivan, Role::Admin).await.unwrap();
    let (status, body) = on_admins(ivan_token.clone()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    users::set_role(store, &ivan, Role::Member).await.unwrap();
    assert_eq!(on_admins(ivan_token).await.0, StatusCode::FORBIDDEN);
    let hana = users::find_by_name(store, "hana")
        .await
        .unwrap()
        .unwrap()
        .id;
    users::set_email(store, &hana, Some("hana@example.org".into()))
        .await
        .unwrap();
    let (status, _, _) = gw
        .call("/mcp/domain", &listed, tools_call("add"), &[])
        .await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "the new email's domain is not listed"
    );
    // A grant made before grants carried the role and email: the account
    // is read instead, with the same outcome.
    users::set_role(store, &ivan, Role::Admin).await.unwrap();
    let old_grant = gw.grant_made_before_profiles(&ivan, &[], "/mcp/admins");
    let old_token = gw.token_for(old_grant).await;
    assert_eq!(on_admins(old_token.clone()).await.0, StatusCode::OK);
    users::set_role(store, &ivan, Role::Member).await.unwrap();
    assert_eq!(on_admins(old_token).await.0, StatusCode::FORBIDDEN);
    gw.backend.assert_clean();
    // Disabling the account ends its access through the gateway at once.
    users::set_disabled(gw.state.store.as_ref(), &user, true)
        .await
        .unwrap();
    let (status, _, _) = gw.call("/mcp/eng", &insider, tools_call("add"), &[]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn backend_failures_are_clean_json_rpc_errors() {
    let gw = Gw::start().await;
    for (route, expected) in [
        ("hangs", StatusCode::GATEWAY_TIMEOUT),
        ("down", StatusCode::BAD_GATEWAY),
        ("garbage", StatusCode::BAD_GATEWAY),
        ("redirect", StatusCode::BAD_GATEWAY),
        ("refuses", StatusCode::BAD_GATEWAY),
    ] {
        let path = format!("/mcp/{route}");
        let (_, token) = gw.person(&format!("user-{route}"), &[], &path).await;
        let (status, headers, body) = gw.call(&path, &token, tools_call("add"), &[]).await;
        assert_eq!(status, expected, "{route}: {body}");
        let parsed: Value =
            serde_json::from_str(&body).unwrap_or_else(|_| panic!("{route}: {body}"));
        assert_eq!(parsed["jsonrpc"], "2.0");
        assert!(parsed["error"]["code"].is_i64(), "{route}: {body}");
        assert!(
            !body.contains("oops") && !body.contains("127.0.0.1:9"),
            "{route} leaks: {body}"
        );
        assert!(!headers.contains_key(header::LOCATION), "{route}");
        assert!(!headers.contains_key(header::WWW_AUTHENTICATE), "{route}");
    }
    // A stream that breaks off: the whole events that arrived, then its end.
    let (_, token) = gw.person("user-breaks", &[], "/mcp/breaks").await;
    let request = Request::post("/mcp/breaks")
        .header(header::HOST, "localhost")
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::ACCEPT, "application/json, text/event-stream")
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .body(Body::from(tools_call("add").to_string()))
        .unwrap();
    let response = gw.send(request).await;
    assert_eq!(response.status(), StatusCode::OK);
    let mut body = response.into_body();
    let first = tokio::time::timeout(Duration::from_secs(60), body.frame())
        .await
        .unwrap()
        .unwrap()
        .unwrap()
        .into_data()
        .unwrap();
    assert!(String::from_utf8_lossy(&first).contains("notifications/progress"));
    gw.backend.release.notify_one();
    let rest = tokio::time::timeout(Duration::from_secs(60), body.collect())
        .await
        .expect("the stream ends")
        .expect("it ends cleanly, not as a broken response");
    assert!(rest.to_bytes().is_empty());
    gw.backend.assert_clean();
}

#[tokio::test]
async fn readiness_covers_the_backends() {
    let gw = Gw::start().await;
    let (status, _) = gw.get("/readyz").await;
    assert_eq!(
        status,
        StatusCode::SERVICE_UNAVAILABLE,
        "route `down` is down"
    );

    let backend = start_backend().await;
    let config = Config::for_public_url(ORIGIN).unwrap();
    let url = format!("{}/only", backend.base).parse().unwrap();
    let route = gateway_config::RouteConfig::single(&url).unwrap();
    let gw = Gw::on(config.clone(), Gateway::new(vec![route]), backend).await;
    let (status, body) = gw.get("/readyz").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // `--backend` is served at /mcp, instead of the demo tools.
    let (_, token) = gw.person("alice", &[], "/mcp").await;
    let (status, _, body) = gw.call("/mcp", &token, tools_call("whoami"), &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("session="), "answered by the backend: {body}");
    assert_eq!(gw.backend.seen().last().unwrap().path, "/only");
    gw.backend.assert_clean();
}

#[tokio::test]
async fn the_account_page_lists_every_route_with_its_snippets() {
    let routes = gateway_config::parse(
        "[[route]]\nname = \"notes\"\nurl = \"http://127.0.0.1:9/mcp\"",
        "test.toml",
        |_| None,
    )
    .unwrap();
    let gateway = Gateway::new(routes);
    let app = support::TestApp::with_endpoints(|state| {
        let mut endpoints = vec![passgate::mcp::ProtectedMcp::demo(
            &state.config,
            state.shutdown.clone(),
        )];
        endpoints.extend(gateway.endpoints(state).unwrap());
        endpoints
    })
    .await;
    let (_, cookie) = support::new_user(&app, "alice", Role::Member).await;
    let mut browser = support::Browser::with_cookie(&cookie);
    let page = browser.get(&app, "/account").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(
        page.body.contains(&format!(r#"value="{ORIGIN}/mcp""#)),
        "{}",
        page.body
    );
    assert!(
        page.body
            .contains(&format!(r#"value="{ORIGIN}/mcp/notes""#))
    );
    assert!(page.body.contains(&format!(
        "claude mcp add --transport http notes {ORIGIN}/mcp/notes"
    )));
    assert!(page.body.contains(r#"id="mcp-url-1""#));
}

#[tokio::test]
async fn a_client_that_goes_away_closes_the_backend_request() {
    let gw = Gw::start().await;
    let (_, token) = gw.person("alice", &[], "/mcp/endless").await;
    let request = Request::post("/mcp/endless")
        .header(header::HOST, "localhost")
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::ACCEPT, "application/json, text/event-stream")
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .body(Body::from(tools_call("add").to_string()))
        .unwrap();
    let response = gw.send(request).await;
    let mut body = response.into_body();
    tokio::time::timeout(Duration::from_secs(60), body.frame())
        .await
        .expect("the first event comes through")
        .unwrap()
        .unwrap();
    drop(body);
    tokio::time::timeout(Duration::from_secs(60), gw.backend.dropped.notified())
        .await
        .expect("the backend's stream ends when the client goes away");
}

#[test]
fn a_mistake_in_the_gateway_file_stops_start_up_naming_it_but_no_secret() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("gateway.toml");
    std::fs::write(
        &file,
        r#"
        [[route]]
        name = "notes"
        url = "http://127.0.0.1:9/mcp"
        headers = [
          { name = "X-Api-Key", from_env = "GATEWAY_TEST_PRESENT_KEY" },
          { name = "X-Other-Key", from_env = "GATEWAY_TEST_MISSING_KEY" },
        ]
        "#,
    )
    .unwrap();
    let secret = "present-secret-value-never-printed";
    let mut child = std::process::Command::new(support::process::BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--public-url", ORIGIN])
        .arg("--gateway-config")
        .arg(&file)
        .arg("--data-dir")
        .arg(dir.path())
        .env("GATEWAY_TEST_PRESENT_KEY", secret)
        .env_remove("GATEWAY_TEST_MISSING_KEY")
        .env("PASSGATE_LOG", "trace")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // A server that starts anyway would never exit: bound the wait.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let started_anyway = child.try_wait().unwrap().is_none();
    if started_anyway {
        let _ = child.kill();
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        !started_anyway,
        "passgate started with a broken gateway file"
    );
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stderr.contains("GATEWAY_TEST_MISSING_KEY") && stderr.contains("notes"),
        "{stderr}"
    );
    assert!(!stderr.contains(secret) && !stdout.contains(secret));
}

/// A route whose backend wants each person's own key: until the person
/// sets it on their account page, calls get a URL elicitation naming that
/// page; then each of their calls carries their key (never another
/// person's, never passgate's token), a replaced key takes effect at once,
/// a removed one is asked for again, and ending the person's access to the
/// route or their account deletes it.
#[tokio::test]
async fn each_person_reaches_a_keyed_backend_with_their_own_key() {
    let gw = Gw::start().await;
    let (ann, ann_token) = gw.person("ann", &["keyholders"], "/mcp/keyed").await;
    let (ben, ben_token) = gw.person("ben", &["keyholders"], "/mcp/keyed").await;
    let account = format!("{ORIGIN}/account#key-mcp-keyed");

    // No key yet: the call is answered in band, pointing at the page.
    let (status, _, body) = gw
        .call("/mcp/keyed", &ann_token, tools_call("add"), &[])
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let answer: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(answer["id"], 3, "{answer}");
    assert_eq!(answer["error"]["code"], -32042, "{answer}");
    let message = answer["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("Example API token") && message.contains(&account),
        "{message}"
    );
    let elicitation = &answer["error"]["data"]["elicitations"][0];
    assert_eq!(elicitation["mode"], "url");
    assert_eq!(elicitation["url"], account.as_str());
    assert!(
        elicitation["elicitationId"]
            .as_str()
            .is_some_and(|id| !id.is_empty())
    );
    // A stream (GET) without a key is refused outright.
    let response = gw
        .send(
            Request::get("/mcp/keyed")
                .header(header::HOST, "localhost")
                .header(header::ACCEPT, "text/event-stream")
                .header(header::AUTHORIZATION, format!("Bearer {ann_token}"))
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert!(
        gw.backend.seen().iter().all(|s| s.path != "/keyed"),
        "nothing reached the backend without a key"
    );

    // The account page asks for it; a key is set there.
    let (ann_cookie, ann_csrf) = gw.session(&ann).await;
    let page = gw.page("/account", &ann_cookie).await;
    assert!(page.contains(r#"id="key-mcp-keyed""#), "{page}");
    assert!(page.contains("Not set yet"), "{page}");
    assert!(
        page.contains(r#"href="https://tokens.example.com/new""#),
        "{page}"
    );
    let form = |key: &'static str, csrf: &str| {
        vec![
            ("csrf", csrf.to_owned()),
            ("resource", "/mcp/keyed".to_owned()),
            ("key", key.to_owned()),
        ]
    };
    let fields = form("  key-of-ann-1 \n", &ann_csrf);
    let fields: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (status, location, _) = gw.post_form("/account/keys", &ann_cookie, &fields).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(location, "/account?notice=key-saved");
    let page = gw.page("/account", &ann_cookie).await;
    assert!(!page.contains("key-of-ann"), "the key is never shown again");
    assert!(
        page.contains("Replace key") && !page.contains("Not set yet"),
        "{page}"
    );
    // Stored sealed: the store holds no copy of it.
    let stored = gw
        .state
        .store
        .list(&passgate::store::keys::Partition::User(&ann).key())
        .await
        .unwrap();
    assert!(stored.iter().any(|i| i.sk == "personal-key#/mcp/keyed"));
    assert!(
        stored
            .iter()
            .all(|i| !String::from_utf8_lossy(&i.value).contains("key-of-ann")),
        "the key is sealed in the store"
    );

    let (ben_cookie, ben_csrf) = gw.session(&ben).await;
    let fields = form("key-of-ben-1", &ben_csrf);
    let fields: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
    gw.post_form("/account/keys", &ben_cookie, &fields).await;

    // Many calls of both at once: each request carries its caller's key.
    let calls = (0..20).map(|i| {
        let token = if i % 2 == 0 { &ann_token } else { &ben_token };
        gw.call("/mcp/keyed", token, tools_call("add"), &[])
    });
    for (status, _, body) in futures_util::future::join_all(calls).await {
        assert_eq!(status, StatusCode::OK, "{body}");
        assert!(body.contains("\"result\""), "{body}");
    }
    let keyed: Vec<Seen> = gw
        .backend
        .seen()
        .into_iter()
        .filter(|s| s.path == "/keyed")
        .collect();
    assert_eq!(keyed.len(), 20);
    for seen in &keyed {
        let expected = if identity_sub(&seen.headers) == ann {
            "Bearer key-of-ann-1"
        } else {
            assert_eq!(identity_sub(&seen.headers), ben);
            "Bearer key-of-ben-1"
        };
        assert_eq!(seen.headers["authorization"], expected);
    }

    // Replaced: the next call carries the new key.
    let fields = form("key-of-ann-2", &ann_csrf);
    let fields: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
    gw.post_form("/account/keys", &ann_cookie, &fields).await;
    gw.call("/mcp/keyed", &ann_token, tools_call("add"), &[])
        .await;
    assert_eq!(
        gw.backend.seen().last().unwrap().headers["authorization"],
        "Bearer key-of-ann-2"
    );

    // Refused: an empty key, a route that takes none, a form without CSRF.
    let fields = form("   ", &ann_csrf);
    let fields: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (status, _, body) = gw.post_form("/account/keys", &ann_cookie, &fields).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body.contains("field was empty"), "{body}");
    let (status, _, _) = gw
        .post_form(
            "/account/keys",
            &ann_cookie,
            &[("csrf", &ann_csrf), ("resource", "/mcp/b"), ("key", "k")],
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _, _) = gw
        .post_form(
            "/account/keys",
            &ann_cookie,
            &[("resource", "/mcp/keyed"), ("key", "key-of-ann-3")],
        )
        .await;
    assert!(status.is_client_error(), "{status}");
    gw.call("/mcp/keyed", &ann_token, tools_call("add"), &[])
        .await;
    assert_eq!(
        gw.backend.seen().last().unwrap().headers["authorization"],
        "Bearer key-of-ann-2"
    );

    // A key the backend refuses: the person is told to replace it.
    let fields = form("key-of-ann-refused", &ann_csrf);
    let fields: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
    gw.post_form("/account/keys", &ann_cookie, &fields).await;
    let (status, _, body) = gw
        .call("/mcp/keyed", &ann_token, tools_call("add"), &[])
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let answer: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(answer["error"]["code"], -32042, "{answer}");
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("replace your Example API token"),
        "{answer}"
    );

    // Removed: asked for again.
    let (status, location, _) = gw
        .post_form(
            "/account/keys/remove",
            &ann_cookie,
            &[("csrf", &ann_csrf), ("resource", "/mcp/keyed")],
        )
        .await;
    assert_eq!(
        (status, location.as_str()),
        (StatusCode::SEE_OTHER, "/account?notice=key-removed")
    );
    let (_, _, body) = gw
        .call("/mcp/keyed", &ann_token, tools_call("add"), &[])
        .await;
    assert!(body.contains("-32042"), "{body}");

    // Ben leaves the group: his next call is refused and his key deleted.
    users::set_groups(gw.state.store.as_ref(), &ben, Vec::new())
        .await
        .unwrap();
    let (status, _, _) = gw
        .call("/mcp/keyed", &ben_token, tools_call("add"), &[])
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(
        personal_keys::list(gw.state.store.as_ref(), &ben)
            .await
            .unwrap()
            .is_empty()
    );

    // Disabling an account deletes its keys with the rest of its access.
    let fields = form("key-of-ann-4", &ann_csrf);
    let fields: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
    gw.post_form("/account/keys", &ann_cookie, &fields).await;
    assert_eq!(
        personal_keys::list(gw.state.store.as_ref(), &ann)
            .await
            .unwrap()
            .len(),
        1
    );
    users::set_disabled(gw.state.store.as_ref(), &ann, true)
        .await
        .unwrap();
    assert!(
        personal_keys::list(gw.state.store.as_ref(), &ann)
            .await
            .unwrap()
            .is_empty()
    );
    gw.backend.assert_clean();
}

/// A backend's metadata is someone else's word: an authorization server it
/// names on a non-public address is never fetched, and the person gets a
/// page that says the sign-in cannot be used.
#[tokio::test]
async fn a_backend_cannot_send_passgate_to_an_inward_address() {
    let gw = Gw::start().await;
    let (ann, _) = gw.person("ann", &[], "/mcp/inward").await;
    let (cookie, csrf) = gw.session(&ann).await;
    let page = gw.page("/account", &cookie).await;
    assert!(page.contains(r#"id="connect-mcp-inward""#), "{page}");
    let (status, _, body) = gw
        .post_form(
            "/account/backends/connect",
            &cookie,
            &[("csrf", &csrf), ("resource", "/mcp/inward")],
        )
        .await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    assert!(body.contains("not on a public address"), "{body}");
}
