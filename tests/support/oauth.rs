//! OAuth helpers over the in-process [`TestApp`]: plain requests as an MCP
//! client sends them, PKCE, and grants with access tokens minted through the
//! library (for resource-server tests that need no sign-in).

#![allow(dead_code)]

use axum::body::Body;
use http::{Request, header};
use passgate::{
    crypto,
    oauth::{
        bearer::AccessClaims,
        grants::{self, Grant},
    },
    store::now_unix,
};
use serde_json::Value;

use super::app::{TestApp, TestResponse};

impl TestApp {
    pub async fn get(&self, uri: &str) -> TestResponse {
        self.send(Request::get(uri).body(Body::empty()).unwrap())
            .await
    }

    pub async fn post_form(&self, uri: &str, form: &[(&str, &str)]) -> TestResponse {
        self.send(
            Request::post(uri)
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(Body::from(serde_urlencoded::to_string(form).unwrap()))
                .unwrap(),
        )
        .await
    }

    pub async fn post_json(&self, uri: &str, json: &Value) -> TestResponse {
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
            family: crypto::random_id(),
            user_id: user_id.into(),
            client_id: client_id.into(),
            client_name: "Test client".into(),
            scope: scope.into(),
            resource: self.state.config.mcp_url(),
            created_at: now_unix(),
            redirect_uri: "http://127.0.0.1:33418/callback".into(),
            groups: Vec::new(),
            user_name: String::new(),
            display_name: String::new(),
            account: None,
            last_used_at: None,
        };
        self.store()
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
            jti: crypto::random_id(),
            client_id: grant.client_id.clone(),
            scope: grant.scope.clone(),
            fam: grant.family.clone(),
        }
    }

    pub fn sign(&self, claims: &AccessClaims) -> String {
        self.state.keys.sign(claims)
    }

    /// Registers a public client with one redirect URI; returns its id.
    pub async fn register(&self, redirect: &str) -> String {
        let body = self
            .post_json(
                "/register",
                &serde_json::json!({"client_name": "Test <App>", "redirect_uris": [redirect]}),
            )
            .await;
        assert!(body.status.is_success(), "{}", body.body);
        body.json()["client_id"].as_str().unwrap().to_owned()
    }
}

/// An MCP JSON-RPC POST with the headers a 2025-11-25 client sends.
pub fn mcp_request(body: Value, token: Option<&str>) -> Request<Body> {
    let mut builder = Request::post("/mcp")
        .header(header::HOST, "localhost")
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::ACCEPT, "application/json, text/event-stream");
    if let Some(t) = token {
        builder = builder.header(header::AUTHORIZATION, format!("Bearer {t}"));
    }
    builder.body(Body::from(body.to_string())).unwrap()
}

/// PKCE verifier and S256 challenge.
pub fn pkce() -> (String, String) {
    let verifier = crypto::random_token(32);
    let challenge = crypto::pkce_s256(&verifier);
    (verifier, challenge)
}

/// An `/authorize` URL for a client, with state `xyz` and `extra` appended.
pub fn authorize_url(client_id: &str, redirect: &str, challenge: &str, extra: &str) -> String {
    let q = serde_urlencoded::to_string([
        ("response_type", "code"),
        ("client_id", client_id),
        ("redirect_uri", redirect),
        ("code_challenge", challenge),
        ("code_challenge_method", "S256"),
        ("state", "xyz"),
    ])
    .unwrap();
    format!("/authorize?{q}{extra}")
}
