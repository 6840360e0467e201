//! The real router in-process, on a real SQLite store in a temporary
//! directory, at the public URL [`ORIGIN`]; and a tiny cookie-keeping
//! browser to drive it with `oneshot`.

use std::{any::Any, collections::BTreeMap, sync::Arc};

use axum::{Router, body::Body};
use http::{HeaderMap, Method, Request, StatusCode, header};
use http_body_util::BodyExt;
use passgate::{
    accounts::invitations,
    accounts::users::Role,
    app::AppState,
    config::Config,
    crypto::MasterKey,
    login::{self, SignedIn},
    mcp::ProtectedMcp,
    oauth::resource::Resources,
    routes,
    store::{Store, sqlite::SqliteStore},
};
use serde_json::Value;
use tower::ServiceExt;

/// The public URL of test apps. WebAuthn refuses IP origins, so it is
/// `localhost`; nothing listens on the port.
pub const ORIGIN: &str = "http://localhost:4318";

pub struct TestApp {
    pub state: AppState,
    router: Router,
    /// What the store needs alive: its temporary directory or its server.
    _guard: Box<dyn Any + Send + Sync>,
}

impl TestApp {
    pub async fn new() -> Self {
        Self::with_config(Config::for_public_url(ORIGIN).expect("valid public URL")).await
    }

    pub async fn with_config(config: Config) -> Self {
        Self::customized(config, |_| {}).await
    }

    /// An app whose state is adjusted before the router is built.
    pub async fn customized(config: Config, customize: impl FnOnce(&mut AppState)) -> Self {
        let dir = tempfile::tempdir().expect("temporary directory");
        let store = SqliteStore::open(&dir.path().join("passgate.sqlite3")).expect("store");
        Self::build(config, Arc::new(store), Box::new(dir), customize).await
    }

    /// The app on another store (DynamoDB on moto, say); `guard` is kept
    /// alive as long as the app.
    pub async fn with_store(store: Arc<dyn Store>, guard: impl Any + Send + Sync) -> Self {
        let config = Config::for_public_url(ORIGIN).expect("valid public URL");
        Self::with_store_and_config(store, guard, config).await
    }

    pub async fn with_store_and_config(
        store: Arc<dyn Store>,
        guard: impl Any + Send + Sync,
        config: Config,
    ) -> Self {
        Self::build(config, store, Box::new(guard), |_| {}).await
    }

    /// A second instance of the same deployment: same store, master key and
    /// settings, its own memory (signing-key cache, verified-token memo).
    /// Drop it before `self`, which keeps the store alive.
    pub async fn another_instance(&self) -> Self {
        let state = AppState::build(
            (*self.state.config).clone(),
            self.state.store.clone(),
            self.state.master_key.clone(),
        )
        .await
        .expect("app state");
        Self {
            router: routes::router(state.clone()),
            state,
            _guard: Box::new(()),
        }
    }

    async fn build(
        config: Config,
        store: Arc<dyn Store>,
        guard: Box<dyn Any + Send + Sync>,
        customize: impl FnOnce(&mut AppState),
    ) -> Self {
        let key = MasterKey::from_secret(&MasterKey::generate_secret()).expect("master key");
        let mut state = AppState::build(config, store, key)
            .await
            .expect("app state");
        customize(&mut state);
        Self {
            router: routes::router(state.clone()),
            state,
            _guard: guard,
        }
    }

    /// An app whose protected MCP endpoints are `endpoints(state)` instead
    /// of the demo alone; `state` is the router's, with their resources.
    pub async fn with_endpoints(endpoints: impl FnOnce(&AppState) -> Vec<ProtectedMcp>) -> Self {
        let dir = tempfile::tempdir().expect("temporary directory");
        let store = SqliteStore::open(&dir.path().join("passgate.sqlite3")).expect("store");
        let config = Config::for_public_url(ORIGIN).expect("valid public URL");
        let key = MasterKey::from_secret(&MasterKey::generate_secret()).expect("master key");
        let mut state = AppState::build(config, Arc::new(store), key)
            .await
            .expect("app state");
        let endpoints = endpoints(&state);
        state.resources = Resources::new(endpoints.iter().map(|e| e.resource().clone()).collect())
            .expect("valid resources");
        Self {
            router: routes::router_with(state.clone(), endpoints).expect("valid endpoints"),
            state,
            _guard: Box::new(dir),
        }
    }

    pub fn store(&self) -> &dyn passgate::store::Store {
        self.state.store.as_ref()
    }

    pub async fn send(&self, request: Request<Body>) -> TestResponse {
        let response = self
            .router
            .clone()
            .oneshot(request)
            .await
            .expect("router is infallible");
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        TestResponse {
            status,
            headers,
            body: String::from_utf8_lossy(&bytes).into_owned(),
        }
    }

    /// Creates an invitation and returns its token.
    pub async fn invite(&self, name: &str, role: Role) -> String {
        self.invite_for(name, role, 3600).await
    }

    pub async fn invite_for(&self, name: &str, role: Role, ttl_secs: i64) -> String {
        let created = invitations::create(
            self.store(),
            &self.state.config.issuer(),
            name,
            role,
            ttl_secs,
            None,
        )
        .await
        .expect("invitation");
        token_of(&created.link)
    }

    /// The signed-in person for a session cookie (`name=value`), if any.
    pub async fn signed_in(&self, cookie: &str) -> Option<SignedIn> {
        let mut headers = HeaderMap::new();
        headers.insert(header::COOKIE, cookie.parse().expect("cookie header"));
        login::current(&self.state, &headers)
            .await
            .expect("current")
    }
}

/// The token in an invitation link.
pub fn token_of(link: &str) -> String {
    link.split("token=")
        .nth(1)
        .expect("token in link")
        .to_owned()
}

#[derive(Debug)]
pub struct TestResponse {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl TestResponse {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {} {}", self.status, self.body))
    }

    pub fn location(&self) -> Option<&str> {
        self.headers
            .get(header::LOCATION)
            .and_then(|v| v.to_str().ok())
    }
}

/// Keeps cookies like a browser and sends `Origin` like `fetch` does.
#[derive(Debug, Clone)]
pub struct Browser {
    pub origin: String,
    cookies: BTreeMap<String, String>,
}

impl Default for Browser {
    fn default() -> Self {
        Self::new()
    }
}

impl Browser {
    pub fn new() -> Self {
        Self {
            origin: ORIGIN.to_owned(),
            cookies: BTreeMap::new(),
        }
    }

    /// A browser already holding `cookie` (`name=value`).
    pub fn with_cookie(cookie: &str) -> Self {
        let mut b = Self::new();
        if let Some((k, v)) = cookie.split_once('=') {
            b.cookies.insert(k.to_owned(), v.to_owned());
        }
        b
    }

    pub fn cookie_header(&self) -> Option<String> {
        if self.cookies.is_empty() {
            return None;
        }
        Some(
            self.cookies
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join("; "),
        )
    }

    /// The session cookie as `name=value`.
    pub fn session_cookie(&self) -> Option<String> {
        self.cookies
            .iter()
            .find(|(k, _)| k.ends_with("passgate_session"))
            .map(|(k, v)| format!("{k}={v}"))
    }

    pub fn forget(&mut self, name: &str) {
        self.cookies.remove(name);
    }

    fn absorb(&mut self, response: &TestResponse) {
        for value in response.headers.get_all(header::SET_COOKIE) {
            let Ok(value) = value.to_str() else { continue };
            let mut parts = value.split(';');
            let Some((name, val)) = parts.next().and_then(|p| p.trim().split_once('=')) else {
                continue;
            };
            let expired = parts.any(|a| a.trim().eq_ignore_ascii_case("max-age=0"));
            if expired || val.is_empty() {
                self.cookies.remove(name);
            } else {
                self.cookies.insert(name.to_owned(), val.to_owned());
            }
        }
    }

    pub async fn send(&mut self, app: &TestApp, mut request: Request<Body>) -> TestResponse {
        if let Some(cookie) = self.cookie_header() {
            request
                .headers_mut()
                .insert(header::COOKIE, cookie.parse().expect("cookie"));
        }
        let response = app.send(request).await;
        self.absorb(&response);
        response
    }

    pub async fn get(&mut self, app: &TestApp, path: &str) -> TestResponse {
        let request = Request::builder()
            .uri(path)
            .body(Body::empty())
            .expect("request");
        self.send(app, request).await
    }

    pub async fn post_json(&mut self, app: &TestApp, path: &str, body: &Value) -> TestResponse {
        self.post_json_with(app, path, body, &[]).await
    }

    pub async fn post_json_with(
        &mut self,
        app: &TestApp,
        path: &str,
        body: &Value,
        extra: &[(&str, &str)],
    ) -> TestResponse {
        let mut builder = Request::builder()
            .method(Method::POST)
            .uri(path)
            .header(header::ORIGIN, self.origin.clone())
            .header(header::CONTENT_TYPE, "application/json");
        for (k, v) in extra {
            builder = builder.header(*k, *v);
        }
        let request = builder.body(Body::from(body.to_string())).expect("request");
        self.send(app, request).await
    }

    pub async fn post_form(
        &mut self,
        app: &TestApp,
        path: &str,
        fields: &[(&str, &str)],
    ) -> TestResponse {
        let body: String = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(fields)
            .finish();
        let request = Request::builder()
            .method(Method::POST)
            .uri(path)
            .header(header::ORIGIN, self.origin.clone())
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from(body))
            .expect("request");
        self.send(app, request).await
    }
}
