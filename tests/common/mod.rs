//! In-process test harness: the real router over a real SQLite file,
//! driven with tower's `oneshot`.
#![allow(dead_code)]

use std::sync::Arc;

use axum::{Router, body::Body};
use http::{Request, Response, StatusCode, header};
use http_body_util::BodyExt;
use passgate::{
    app::AppState,
    config::Config,
    crypto::MasterKey,
    oauth::{
        bearer::AccessClaims,
        grants::{self, Grant},
    },
    routes,
    store::{Store, now_unix, sqlite::SqliteStore},
};
use tower::ServiceExt;

pub const PUBLIC_URL: &str = "http://localhost:8080";

pub struct TestApp {
    pub state: AppState,
    pub router: Router,
    _dir: tempfile::TempDir,
}

impl TestApp {
    pub async fn new() -> Self {
        Self::with_config(Config::for_public_url(PUBLIC_URL).unwrap()).await
    }

    pub async fn with_config(config: Config) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> =
            Arc::new(SqliteStore::open(&dir.path().join("test.sqlite3")).unwrap());
        let master = MasterKey::from_secret(&MasterKey::generate_secret()).unwrap();
        let state = AppState::build(config, store, master).await.unwrap();
        let router = routes::router(state.clone());
        Self {
            state,
            router,
            _dir: dir,
        }
    }

    pub async fn send(&self, request: Request<Body>) -> Response<Body> {
        self.router.clone().oneshot(request).await.unwrap()
    }

    pub async fn get(&self, uri: &str) -> Response<Body> {
        self.send(Request::get(uri).body(Body::empty()).unwrap())
            .await
    }

    pub async fn post_form(&self, uri: &str, form: &[(&str, &str)]) -> Response<Body> {
        let body = serde_urlencoded::to_string(form).unwrap();
        self.send(
            Request::post(uri)
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(Body::from(body))
                .unwrap(),
        )
        .await
    }

    pub async fn post_json(&self, uri: &str, json: &serde_json::Value) -> Response<Body> {
        self.send(
            Request::post(uri)
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(json.to_string()))
                .unwrap(),
        )
        .await
    }

    /// A grant and an access token for it, as the token endpoint would issue.
    pub async fn grant_and_token(
        &self,
        user_id: &str,
        client_id: &str,
        scope: &str,
    ) -> (Grant, String) {
        let grant = Grant {
            family: passgate::crypto::random_id(),
            user_id: user_id.into(),
            client_id: client_id.into(),
            client_name: "Test client".into(),
            scope: scope.into(),
            resource: self.state.config.mcp_url(),
            created_at: now_unix(),
        };
        self.state
            .store
            .transact(grants::create_writes(&grant).unwrap())
            .await
            .unwrap();
        let token = self.sign(&self.claims(&grant));
        (grant, token)
    }

    pub fn claims(&self, grant: &Grant) -> AccessClaims {
        let now = now_unix();
        AccessClaims {
            iss: self.state.config.issuer(),
            sub: grant.user_id.clone(),
            aud: self.state.config.mcp_url(),
            exp: now + 600,
            iat: now,
            jti: passgate::crypto::random_id(),
            client_id: grant.client_id.clone(),
            scope: grant.scope.clone(),
            fam: grant.family.clone(),
        }
    }

    pub fn sign(&self, claims: &AccessClaims) -> String {
        self.state.keys.sign(claims)
    }
}

pub async fn body_bytes(response: Response<Body>) -> Vec<u8> {
    response
        .into_body()
        .collect()
        .await
        .unwrap()
        .to_bytes()
        .to_vec()
}

pub async fn body_json(response: Response<Body>) -> serde_json::Value {
    let bytes = body_bytes(response).await;
    serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| panic!("not JSON: {}", String::from_utf8_lossy(&bytes)))
}

pub async fn body_text(response: Response<Body>) -> String {
    String::from_utf8(body_bytes(response).await).unwrap()
}

pub fn location(response: &Response<Body>) -> String {
    response
        .headers()
        .get(header::LOCATION)
        .expect("a Location header")
        .to_str()
        .unwrap()
        .to_owned()
}

pub fn assert_status(response: &Response<Body>, status: StatusCode) {
    assert_eq!(response.status(), status, "unexpected status");
}

/// An MCP JSON-RPC POST with the headers a 2025-11-25 client sends.
pub fn mcp_request(body: serde_json::Value, token: Option<&str>) -> Request<Body> {
    let mut builder = Request::post("/mcp")
        .header(header::HOST, "localhost:8080")
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::ACCEPT, "application/json, text/event-stream");
    if let Some(t) = token {
        builder = builder.header(header::AUTHORIZATION, format!("Bearer {t}"));
    }
    builder.body(Body::from(body.to_string())).unwrap()
}

/// PKCE verifier and S256 challenge.
pub fn pkce() -> (String, String) {
    let verifier = passgate::crypto::random_token(32);
    let challenge = passgate::crypto::pkce_s256(&verifier);
    (verifier, challenge)
}
