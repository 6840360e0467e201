//! The authorization server and the resource server, in-process: discovery,
//! registration, `/authorize` validation, the token endpoint's refusals, and
//! bearer-token checks on `/mcp`. Full browser-less sign-in flows are in
//! `oauth_flows.rs`.

mod support;

use axum::body::Body;
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use http::{Request, StatusCode, header};
use serde_json::json;
use support::{
    ORIGIN as PUBLIC_URL, TestApp, TestResponse,
    oauth::{authorize_url, mcp_request, pkce},
};

#[tokio::test]
async fn metadata_documents_describe_this_server() {
    let app = TestApp::new().await;
    let as_meta = app
        .get("/.well-known/oauth-authorization-server")
        .await
        .json();
    assert_eq!(as_meta["issuer"], PUBLIC_URL);
    assert_eq!(
        as_meta["authorization_endpoint"],
        format!("{PUBLIC_URL}/authorize")
    );
    assert_eq!(as_meta["token_endpoint"], format!("{PUBLIC_URL}/token"));
    assert_eq!(
        as_meta["registration_endpoint"],
        format!("{PUBLIC_URL}/register")
    );
    assert_eq!(
        as_meta["revocation_endpoint"],
        format!("{PUBLIC_URL}/revoke")
    );
    assert_eq!(as_meta["response_types_supported"], json!(["code"]));
    assert_eq!(as_meta["code_challenge_methods_supported"], json!(["S256"]));
    assert_eq!(
        as_meta["authorization_response_iss_parameter_supported"],
        true
    );
    assert_eq!(as_meta["client_id_metadata_document_supported"], true);
    assert_eq!(
        as_meta["grant_types_supported"],
        json!(["authorization_code", "refresh_token"])
    );
    let oidc = app.get("/.well-known/openid-configuration").await.json();
    assert_eq!(oidc, as_meta);

    for path in [
        "/.well-known/oauth-protected-resource",
        "/.well-known/oauth-protected-resource/mcp",
    ] {
        let prm = app.get(path).await.json();
        assert_eq!(prm["resource"], format!("{PUBLIC_URL}/mcp"));
        assert_eq!(prm["authorization_servers"], json!([PUBLIC_URL]));
        assert_eq!(prm["scopes_supported"], json!(["mcp"]));
    }
    let jwks = app.get("/.well-known/jwks.json").await.json();
    let key = &jwks["keys"][0];
    assert_eq!(key["kty"], "EC");
    assert_eq!(key["alg"], "ES256");
    assert!(
        key.get("d").is_none(),
        "private key material must never be published"
    );
}

#[tokio::test]
async fn mcp_without_a_token_gets_a_challenge_pointing_at_metadata() {
    let app = TestApp::new().await;
    let response = app
        .send(mcp_request(
            json!({"jsonrpc":"2.0","id":1,"method":"tools/list"}),
            None,
        ))
        .await;
    assert_eq!(response.status, StatusCode::UNAUTHORIZED);
    let challenge = response.headers[header::WWW_AUTHENTICATE].to_str().unwrap();
    assert_eq!(
        challenge,
        format!(
            r#"Bearer resource_metadata="{PUBLIC_URL}/.well-known/oauth-protected-resource/mcp", scope="mcp""#
        )
    );
}

/// An `/mcp` POST with a raw body.
fn mcp_raw(body: &str, token: Option<&str>, origin: Option<&str>) -> Request<Body> {
    let mut builder = Request::post("/mcp")
        .header(header::HOST, "localhost")
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::ACCEPT, "application/json, text/event-stream");
    if let Some(t) = token {
        builder = builder.header(header::AUTHORIZATION, format!("Bearer {t}"));
    }
    if let Some(o) = origin {
        builder = builder.header(header::ORIGIN, o);
    }
    builder.body(Body::from(body.to_owned())).unwrap()
}

#[tokio::test]
async fn unreadable_mcp_bodies_get_json_rpc_errors() {
    let app = TestApp::new().await;
    let (_, token) = app.grant_and_token("u1", "c1", "mcp").await;
    for (body, code) in [
        (r#"{"jsonrpc":"2.0","id":1,"method":"tools/li"#, -32700),
        ("not json at all", -32700),
        (r#"{"hello":"world"}"#, -32600),
        ("[1,2,3]", -32600),
    ] {
        let response = app.send(mcp_raw(body, Some(&token), None)).await;
        assert_eq!(
            response.status,
            StatusCode::BAD_REQUEST,
            "{body}: {}",
            response.body
        );
        let answer = response.json();
        assert_eq!(answer["jsonrpc"], "2.0", "{body}");
        assert_eq!(answer["error"]["code"], code, "{body}");
        assert!(answer["id"].is_null());
    }
    // A body over the limit, of unknown length (so only reading it finds
    // out): 413, not a failed read.
    let big = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{{"pad":"{}"}}}}"#,
        "x".repeat(300 * 1024)
    );
    let mut request = mcp_raw("", Some(&token), None);
    *request.body_mut() = Body::from_stream(futures_util::stream::iter([Ok::<_, std::io::Error>(
        big.into_bytes(),
    )]));
    let response = app.send(request).await;
    assert_eq!(
        response.status,
        StatusCode::PAYLOAD_TOO_LARGE,
        "{}",
        response.body
    );
    assert_eq!(response.json()["error"]["code"], -32600);
    // A good request still goes through.
    let ok = app
        .send(mcp_raw(
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#,
            Some(&token),
            None,
        ))
        .await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.body);
}

#[tokio::test]
async fn a_foreign_origin_gets_403_before_any_token_is_looked_at() {
    let app = TestApp::new().await;
    let (_, token) = app.grant_and_token("u1", "c1", "mcp").await;
    let list = r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#;
    for (token, origin) in [
        (None, "https://evil.example"),
        (Some(token.as_str()), "https://evil.example"),
        (None, "http://localhost:4319"),
        (None, "null"),
    ] {
        let response = app.send(mcp_raw(list, token, Some(origin))).await;
        assert_eq!(response.status, StatusCode::FORBIDDEN, "{origin} {token:?}");
        assert!(response.headers.get(header::WWW_AUTHENTICATE).is_none());
    }
    // Every method, not only POST.
    let get = app
        .send(
            Request::get("/mcp")
                .header(header::HOST, "localhost")
                .header(header::ORIGIN, "https://evil.example")
                .header(header::ACCEPT, "text/event-stream")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(get.status, StatusCode::FORBIDDEN);
    // Our own origin without a token is asked to sign in; with one, served.
    let own = app.send(mcp_raw(list, None, Some(PUBLIC_URL))).await;
    assert_eq!(own.status, StatusCode::UNAUTHORIZED);
    let own = app
        .send(mcp_raw(list, Some(&token), Some(PUBLIC_URL)))
        .await;
    assert_eq!(own.status, StatusCode::OK, "{}", own.body);
}

#[tokio::test]
async fn a_token_in_the_query_string_is_not_accepted() {
    let app = TestApp::new().await;
    let (_, token) = app.grant_and_token("u1", "c1", "mcp").await;
    let request = Request::post(format!("/mcp?access_token={token}"))
        .header(header::HOST, "localhost:8080")
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::ACCEPT, "application/json, text/event-stream")
        .body(Body::from(
            json!({"jsonrpc":"2.0","id":1,"method":"tools/list"}).to_string(),
        ))
        .unwrap();
    assert_eq!(app.send(request).await.status, StatusCode::UNAUTHORIZED);
}

async fn call_add(app: &TestApp, token: &str) -> TestResponse {
    app.send(mcp_request(
        json!({"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"add","arguments":{"a":2,"b":40}}}),
        Some(token),
    ))
    .await
}

#[tokio::test]
async fn a_valid_token_reaches_the_tools_and_identity_reaches_the_handler() {
    let app = TestApp::new().await;
    let (_, token) = app.grant_and_token("user-42", "client-7", "mcp").await;
    let response = call_add(&app, &token).await;
    assert_eq!(response.status, StatusCode::OK);
    let body = response.json();
    assert_eq!(body["result"]["structuredContent"]["result"], 42);

    let whoami = app
        .send(mcp_request(
            json!({"jsonrpc":"2.0","id":8,"method":"tools/call","params":{"name":"whoami","arguments":{}}}),
            Some(&token),
        ))
        .await;
    let body = whoami.json();
    assert_eq!(body["result"]["structuredContent"]["user_id"], "user-42");
    assert_eq!(body["result"]["structuredContent"]["client_id"], "client-7");
    assert_eq!(
        body["result"]["structuredContent"]["scopes"],
        json!(["mcp"])
    );
}

fn invalid_token_reason(response: &TestResponse) -> String {
    assert_eq!(response.status, StatusCode::UNAUTHORIZED);
    let challenge = response.headers[header::WWW_AUTHENTICATE].to_str().unwrap();
    assert!(
        challenge.contains(r#"error="invalid_token""#),
        "{challenge}"
    );
    assert!(challenge.contains("resource_metadata="), "{challenge}");
    challenge.to_owned()
}

#[tokio::test]
async fn tokens_for_another_audience_expired_forged_or_unsigned_are_refused() {
    let app = TestApp::new().await;
    let (grant, _) = app.grant_and_token("u1", "c1", "mcp").await;

    let mut claims = app.claims(&grant);
    claims.aud = "https://other.example/mcp".into();
    let c = invalid_token_reason(&call_add(&app, &app.sign(&claims)).await);
    assert!(c.contains("another audience"), "{c}");

    let mut claims = app.claims(&grant);
    claims.exp = passgate::store::now_unix() - 3600;
    let c = invalid_token_reason(&call_add(&app, &app.sign(&claims)).await);
    assert!(c.contains("expired"), "{c}");

    let mut claims = app.claims(&grant);
    claims.iss = "https://evil.example".into();
    invalid_token_reason(&call_add(&app, &app.sign(&claims)).await);

    // Signed by a different instance's key (same key id shape, other key).
    let other = TestApp::new().await;
    let forged = other.sign(&app.claims(&grant));
    invalid_token_reason(&call_add(&app, &forged).await);

    // Tampered payload keeps the original signature.
    let good = app.sign(&app.claims(&grant));
    let parts: Vec<&str> = good.split('.').collect();
    let mut payload: serde_json::Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
    payload["sub"] = "someone-else".into();
    let tampered = format!(
        "{}.{}.{}",
        parts[0],
        URL_SAFE_NO_PAD.encode(payload.to_string()),
        parts[2]
    );
    invalid_token_reason(&call_add(&app, &tampered).await);

    // alg: none
    let header = URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"at+jwt"}"#);
    let unsigned = format!("{header}.{}.", parts[1]);
    invalid_token_reason(&call_add(&app, &unsigned).await);

    invalid_token_reason(&call_add(&app, "not-a-jwt").await);
}

#[tokio::test]
async fn a_token_without_the_scope_gets_403_insufficient_scope() {
    let app = TestApp::new().await;
    let (_, token) = app.grant_and_token("u1", "c1", "profile").await;
    let response = call_add(&app, &token).await;
    assert_eq!(response.status, StatusCode::FORBIDDEN);
    let challenge = response.headers[header::WWW_AUTHENTICATE].to_str().unwrap();
    assert!(challenge.contains(r#"error="insufficient_scope""#));
    assert!(challenge.contains(r#"scope="mcp""#));
}

#[tokio::test]
async fn a_revoked_grant_stops_its_access_tokens() {
    let app = TestApp::new().await;
    let (grant, token) = app.grant_and_token("u1", "c1", "mcp").await;
    assert_eq!(call_add(&app, &token).await.status, StatusCode::OK);
    passgate::oauth::grants::revoke_all_for_user(app.state.store.as_ref(), &grant.user_id)
        .await
        .unwrap();
    let c = invalid_token_reason(&call_add(&app, &token).await);
    assert!(c.contains("revoked"), "{c}");
}

#[tokio::test]
async fn dynamic_registration_accepts_real_client_shapes() {
    let app = TestApp::new().await;
    // Claude registers with its own scope; VS Code uses a loopback redirect.
    let response = app
        .post_json(
            "/register",
            &json!({
                "client_name": "Claude",
                "redirect_uris": ["https://claude.ai/api/mcp/auth_callback"],
                "grant_types": ["authorization_code", "refresh_token"],
                "response_types": ["code"],
                "token_endpoint_auth_method": "none",
                "scope": "claudeai",
                "application_type": "web"
            }),
        )
        .await;
    assert_eq!(response.status, StatusCode::CREATED);
    assert_eq!(response.headers[header::CACHE_CONTROL], "no-store");
    let body = response.json();
    assert!(body["client_id"].as_str().unwrap().len() >= 16);
    assert!(body.get("client_secret").is_none());
    assert_eq!(body["token_endpoint_auth_method"], "none");

    let response = app
        .post_json(
            "/register",
            &json!({"client_name": "Visual Studio Code", "redirect_uris": ["http://127.0.0.1:33418/"], "application_type": "native", "token_endpoint_auth_method": "client_secret_post"}),
        )
        .await;
    assert_eq!(response.status, StatusCode::CREATED);
    let body = response.json();
    assert!(body["client_secret"].as_str().unwrap().len() >= 32);
}

#[tokio::test]
async fn bad_registrations_get_clear_errors() {
    let app = TestApp::new().await;
    let cases = [
        (json!({"redirect_uris": []}), "invalid_redirect_uri"),
        (json!({"client_name": "x"}), "invalid_redirect_uri"),
        (
            json!({"redirect_uris": ["http://evil.example/cb"]}),
            "invalid_redirect_uri",
        ),
        (
            json!({"redirect_uris": ["https://a.example/cb#frag"]}),
            "invalid_redirect_uri",
        ),
        (
            json!({"redirect_uris": ["https://user:pw@a.example/cb"]}),
            "invalid_redirect_uri",
        ),
        (
            json!({"redirect_uris": ["javascript:alert(1)"]}),
            "invalid_redirect_uri",
        ),
        (
            json!({"redirect_uris": ["https://a.example/cb"], "grant_types": ["client_credentials"]}),
            "invalid_client_metadata",
        ),
        (
            json!({"redirect_uris": ["https://a.example/cb"], "token_endpoint_auth_method": "private_key_jwt"}),
            "invalid_client_metadata",
        ),
        (
            json!({"redirect_uris": ["https://a.example/cb"], "application_type": "desktop"}),
            "invalid_client_metadata",
        ),
        (
            json!({"redirect_uris": "https://a.example/cb"}),
            "invalid_client_metadata",
        ),
        (json!([1, 2, 3]), "invalid_client_metadata"),
    ];
    for (body, code) in cases {
        let response = app.post_json("/register", &body).await;
        assert_eq!(response.status, StatusCode::BAD_REQUEST);
        assert_eq!(response.json()["error"], code, "for {body}");
    }
    let malformed = app
        .send(
            Request::post("/register")
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from("{not json"))
                .unwrap(),
        )
        .await;
    assert_eq!(malformed.status, StatusCode::BAD_REQUEST);
    assert_eq!(malformed.json()["error"], "invalid_client_metadata");

    let huge = format!(
        r#"{{"redirect_uris":["https://a.example/cb"],"client_name":"{}"}}"#,
        "x".repeat(400 * 1024)
    );
    let response = app
        .send(
            Request::post("/register")
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(huge))
                .unwrap(),
        )
        .await;
    assert_eq!(response.status, StatusCode::PAYLOAD_TOO_LARGE);
}

/// An app behind a trusted proxy, and a request from `forwarded_for`.
async fn behind_proxy() -> TestApp {
    let mut config = passgate::config::Config::for_public_url(PUBLIC_URL).unwrap();
    config.trust_forwarded_for = true;
    TestApp::with_config(config).await
}

fn from(request: http::request::Builder, forwarded_for: &str) -> http::request::Builder {
    request.header("x-forwarded-for", forwarded_for)
}

#[tokio::test]
async fn registration_is_rate_limited_per_forwarded_address() {
    let app = behind_proxy().await;
    let register = |forwarded_for: String| {
        let request = from(Request::post("/register"), &forwarded_for)
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(
                json!({"redirect_uris": ["https://a.example/cb"]}).to_string(),
            ))
            .unwrap();
        app.send(request)
    };
    // What the client itself writes in front of the proxy's entry does not
    // buy it a new bucket.
    for i in 0..30 {
        let r = register(format!("10.9.8.{i}, 203.0.113.66")).await;
        assert_eq!(r.status, StatusCode::CREATED, "{i}: {}", r.body);
    }
    let refused = register("203.0.113.66".into()).await;
    assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(refused.json()["error"], "invalid_client_metadata");
    // Another caller has its own bucket.
    let other = register("198.51.100.7".into()).await;
    assert_eq!(other.status, StatusCode::CREATED, "{}", other.body);
}

#[tokio::test]
async fn pending_authorizations_are_limited_per_address() {
    let app = behind_proxy().await;
    let client = app.register("https://app.example/cb").await;
    let (_, challenge) = pkce();
    let url = authorize_url(&client, "https://app.example/cb", &challenge, "");
    let authorize = |forwarded_for: &'static str| {
        app.send(
            from(Request::get(url.as_str()), forwarded_for)
                .body(Body::empty())
                .unwrap(),
        )
    };
    let limit = passgate::ratelimit::LimitedAction::Authorize.max();
    for _ in 0..limit {
        assert_eq!(
            authorize("203.0.113.66").await.status,
            StatusCode::SEE_OTHER
        );
    }
    let refused = authorize("203.0.113.66").await;
    assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(refused.location().is_none(), "a page, not a redirect");
    assert_eq!(
        authorize("198.51.100.7").await.status,
        StatusCode::SEE_OTHER
    );
    // Nothing more was stored for the refused request.
    let pending = passgate::oauth::authorize::pending_per_client(app.store())
        .await
        .unwrap();
    assert_eq!(pending[&client] as u64, limit + 1);
}

#[tokio::test]
async fn registration_is_rate_limited_per_address() {
    let app = TestApp::new().await;
    let body = json!({"redirect_uris": ["https://a.example/cb"]});
    let mut responses = Vec::new();
    for _ in 0..32 {
        responses.push(app.post_json("/register", &body).await);
    }
    assert!(
        responses[..30]
            .iter()
            .all(|r| r.status == StatusCode::CREATED)
    );
    let refused = &responses[31];
    assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS);
    // An error code RFC 7591 §3.2.2 defines, and when to come back.
    assert_eq!(refused.json()["error"], "invalid_client_metadata");
    let retry: i64 = refused.headers[header::RETRY_AFTER]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=3600).contains(&retry), "{retry}");
}

#[tokio::test]
async fn registration_answers_the_scope_it_can_grant_not_the_one_asked_for() {
    let app = TestApp::new().await;
    let response = app
        .post_json(
            "/register",
            &json!({"redirect_uris": ["https://a.example/cb"], "scope": "admin root"}),
        )
        .await;
    assert_eq!(response.status, StatusCode::CREATED, "{}", response.body);
    assert_eq!(response.json()["scope"], "mcp");
}

#[tokio::test]
async fn repeated_authorize_parameters_get_passgates_page_or_an_oauth_error() {
    let app = TestApp::new().await;
    let redirect = "https://app.example/cb";
    let client = app.register(redirect).await;
    let (_, challenge) = pkce();
    let ours = "&resource=http%3A%2F%2Flocalhost%3A4318%2Fmcp";
    let other = "&resource=https%3A%2F%2Fother.example%2Fmcp";
    // Before the client and redirect URI are known: a page, no redirect.
    for extra in [
        format!("&client_id={client}"),
        "&redirect_uri=https%3A%2F%2Fapp.example%2Fcb".to_owned(),
    ] {
        let response = app
            .get(&authorize_url(&client, redirect, &challenge, &extra))
            .await;
        assert_eq!(response.status, StatusCode::BAD_REQUEST, "{extra}");
        assert!(response.location().is_none());
        assert!(
            response.body.contains("<h1>") && response.body.contains("more than once"),
            "passgate's page: {}",
            response.body
        );
    }
    // After: back to the client with an OAuth error.
    for (extra, code) in [
        (format!("{ours}{other}"), "invalid_target"),
        (format!("{other}{ours}"), "invalid_target"),
        ("&scope=mcp&scope=mcp".to_owned(), "invalid_request"),
        (format!("&code_challenge={challenge}"), "invalid_request"),
    ] {
        let response = app
            .get(&authorize_url(&client, redirect, &challenge, &extra))
            .await;
        assert_eq!(
            response.status,
            StatusCode::SEE_OTHER,
            "{extra}: {}",
            response.body
        );
        let location = url::Url::parse(response.location().unwrap()).unwrap();
        assert!(location.as_str().starts_with(redirect));
        let q: std::collections::HashMap<_, _> = location.query_pairs().into_owned().collect();
        assert_eq!(q["error"], code, "{extra}");
        assert_eq!(q["state"], "xyz");
    }
    // A repeated state cannot be echoed; the error comes back without one.
    let response = app
        .get(&authorize_url(&client, redirect, &challenge, "&state=abc"))
        .await;
    let location = url::Url::parse(response.location().unwrap()).unwrap();
    let q: std::collections::HashMap<_, _> = location.query_pairs().into_owned().collect();
    assert_eq!(q["error"], "invalid_request");
    assert!(!q.contains_key("state"));
    // Our own resource twice is still one resource (RFC 8707 §2).
    let response = app
        .get(&authorize_url(
            &client,
            redirect,
            &challenge,
            &format!("{ours}{ours}"),
        ))
        .await;
    assert_eq!(response.status, StatusCode::SEE_OTHER);
    assert!(
        response
            .location()
            .unwrap()
            .starts_with("/consent?request=")
    );
}

#[tokio::test]
async fn repeated_token_parameters_get_oauth_errors_that_name_them() {
    let app = TestApp::new().await;
    let client = app.register("https://app.example/cb").await;
    let resource_twice = app
        .post_form(
            "/token",
            &[
                ("grant_type", "refresh_token"),
                ("client_id", &client),
                ("refresh_token", "x"),
                ("resource", "http://localhost:4318/mcp"),
                ("resource", "https://other.example/mcp"),
            ],
        )
        .await;
    assert_eq!(resource_twice.status, StatusCode::BAD_REQUEST);
    assert_eq!(resource_twice.json()["error"], "invalid_target");
    let code_twice = app
        .post_form(
            "/token",
            &[
                ("grant_type", "authorization_code"),
                ("client_id", &client),
                ("code", "a"),
                ("code", "b"),
            ],
        )
        .await;
    assert_eq!(code_twice.status, StatusCode::BAD_REQUEST);
    let body = code_twice.json();
    assert_eq!(body["error"], "invalid_request");
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("code appears more than once"),
        "{body}"
    );
}

#[tokio::test]
async fn authorize_shows_a_page_never_a_redirect_for_bad_client_or_redirect() {
    let app = TestApp::new().await;
    let redirect = "https://app.example/cb";
    let client = app.register(redirect).await;
    let (_, challenge) = pkce();
    for url in [
        authorize_url("unknown-client", redirect, &challenge, ""),
        authorize_url(&client, "https://evil.example/cb", &challenge, ""),
        authorize_url(&client, "https://app.example/cb#frag", &challenge, ""),
        authorize_url(&client, "https://user@app.example/cb", &challenge, ""),
        "/authorize?response_type=code".to_owned(),
    ] {
        let response = app.get(&url).await;
        assert_eq!(response.status, StatusCode::BAD_REQUEST);
        assert!(response.headers.get(header::LOCATION).is_none());
        let html = response.body;
        assert!(html.contains("<h1>"), "an error page: {html}");
    }
}

#[tokio::test]
async fn authorize_errors_after_validation_go_back_with_state_and_iss() {
    let app = TestApp::new().await;
    let redirect = "https://app.example/cb";
    let client = app.register(redirect).await;
    let (_, challenge) = pkce();
    let cases = [
        (authorize_url(&client, redirect, "", ""), "invalid_request"),
        (
            authorize_url(&client, redirect, &challenge, "").replace("S256", "plain"),
            "invalid_request",
        ),
        (
            authorize_url(
                &client,
                redirect,
                &challenge,
                "&resource=https%3A%2F%2Fother.example%2Fmcp",
            ),
            "invalid_target",
        ),
        (
            authorize_url(&client, redirect, &challenge, "")
                .replace("response_type=code", "response_type=token"),
            "unsupported_response_type",
        ),
    ];
    for (url, code) in cases {
        let response = app.get(&url).await;
        assert!(response.status.is_redirection(), "{url}");
        let location = url::Url::parse(response.location().unwrap()).unwrap();
        assert!(location.as_str().starts_with(redirect));
        let q: std::collections::HashMap<_, _> = location.query_pairs().into_owned().collect();
        assert_eq!(q["error"], code, "{url}");
        assert_eq!(q["state"], "xyz");
        assert_eq!(q["iss"], PUBLIC_URL);
    }
}

#[tokio::test]
async fn a_valid_authorize_request_is_stored_and_leads_to_sign_in() {
    let app = TestApp::new().await;
    let redirect = "http://127.0.0.1:33418/callback";
    let client = app.register(redirect).await;
    let (_, challenge) = pkce();
    // A loopback redirect may come back on another port (RFC 8252).
    let url = authorize_url(
        &client,
        "http://127.0.0.1:51000/callback",
        &challenge,
        "&scope=claudeai",
    );
    let response = app.get(&url).await;
    assert_eq!(response.status, StatusCode::SEE_OTHER);
    let consent = response.location().unwrap().to_owned();
    assert!(consent.starts_with("/consent?request="), "{consent}");
    // Not signed in: the consent page sends the browser to sign in first.
    let response = app.get(&consent).await;
    assert!(response.status.is_redirection());
    assert!(
        response
            .location()
            .unwrap()
            .to_owned()
            .starts_with("/login?next=%2Fconsent")
    );
}

#[tokio::test]
async fn token_endpoint_refuses_bad_requests_with_rfc6749_errors() {
    let app = TestApp::new().await;
    let client = app.register("https://app.example/cb").await;
    let verifier = "v".repeat(43);
    type Case<'a> = (Vec<(&'a str, &'a str)>, StatusCode, &'a str);
    let cases: Vec<Case> = vec![
        (
            vec![
                ("grant_type", "authorization_code"),
                ("code", "nope"),
                ("code_verifier", "v"),
            ],
            StatusCode::UNAUTHORIZED,
            "invalid_client",
        ),
        (
            vec![
                ("grant_type", "authorization_code"),
                ("client_id", "unknown"),
                ("code", "x"),
                ("code_verifier", "v"),
            ],
            StatusCode::UNAUTHORIZED,
            "invalid_client",
        ),
        (
            vec![
                ("grant_type", "authorization_code"),
                ("client_id", &client),
                ("code", "made-up"),
                ("code_verifier", &verifier),
            ],
            StatusCode::BAD_REQUEST,
            "invalid_grant",
        ),
        (
            vec![
                ("grant_type", "authorization_code"),
                ("client_id", &client),
                ("code", "made-up"),
            ],
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            vec![
                ("grant_type", "refresh_token"),
                ("client_id", &client),
                ("refresh_token", "made-up"),
            ],
            StatusCode::BAD_REQUEST,
            "invalid_grant",
        ),
        (
            vec![("grant_type", "password"), ("client_id", &client)],
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
        ),
        (
            vec![("client_id", &client)],
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            vec![
                ("grant_type", "refresh_token"),
                ("client_id", &client),
                ("refresh_token", "x"),
                ("resource", "https://other.example/mcp"),
            ],
            StatusCode::BAD_REQUEST,
            "invalid_target",
        ),
    ];
    for (form, status, code) in cases {
        let response = app.post_form("/token", &form).await;
        assert_eq!(response.status, status, "{form:?}");
        assert_eq!(response.headers[header::CACHE_CONTROL], "no-store");
        assert_eq!(response.json()["error"], code, "{form:?}");
    }
    let json_body = app
        .post_json("/token", &json!({"grant_type": "refresh_token"}))
        .await;
    assert_eq!(json_body.status, StatusCode::BAD_REQUEST);
    assert_eq!(json_body.json()["error"], "invalid_request");
}

#[tokio::test]
async fn revocation_answers_200_even_for_unknown_tokens() {
    let app = TestApp::new().await;
    let client = app.register("https://app.example/cb").await;
    let response = app
        .post_form("/revoke", &[("client_id", &client), ("token", "unknown")])
        .await;
    assert_eq!(response.status, StatusCode::OK);
}

/// 500 unauthenticated `/authorize` requests from one address, in five
/// rounds: what the first round stored (up to the limit) is all the file
/// ever holds for them; later rounds are refused without a write.
#[tokio::test]
async fn unauthenticated_authorize_floods_leave_the_store_flat() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("passgate.sqlite3");
    let store = passgate::store::sqlite::SqliteStore::open(&db).unwrap();
    let mut config = passgate::config::Config::for_public_url(PUBLIC_URL).unwrap();
    config.trust_forwarded_for = true;
    let app = TestApp::with_store_and_config(std::sync::Arc::new(store), (), config).await;
    let client = app.register("https://app.example/cb").await;
    let size = || {
        ["passgate.sqlite3", "passgate.sqlite3-wal"]
            .iter()
            .map(|f| std::fs::metadata(dir.path().join(f)).map_or(0, |m| m.len()))
            .sum::<u64>()
    };
    let mut sizes = Vec::new();
    for _ in 0..5 {
        for _ in 0..100 {
            let (_, challenge) = pkce();
            let url = authorize_url(&client, "https://app.example/cb", &challenge, "");
            let request = from(Request::get(url), "203.0.113.66")
                .body(Body::empty())
                .unwrap();
            let status = app.send(request).await.status;
            assert!(
                status == StatusCode::SEE_OTHER || status == StatusCode::TOO_MANY_REQUESTS,
                "{status}"
            );
        }
        sizes.push(size());
    }
    eprintln!("store size after each round of 100: {sizes:?} bytes");
    assert!(
        sizes.iter().all(|s| *s == sizes[0]),
        "the store grew: {sizes:?} bytes after each round"
    );
}

/// `/mcp`, a discovery document or a page under `host` instead of the
/// public URL's host.
fn under_host(method: &str, path: &str, host: &str, accept: &str) -> Request<Body> {
    Request::builder()
        .method(method)
        .uri(path)
        .header(header::HOST, host)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::ACCEPT, accept)
        .body(Body::from(
            json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{}}).to_string(),
        ))
        .unwrap()
}

#[tokio::test]
async fn another_loopback_name_gets_told_the_mcp_url() {
    let app = TestApp::new().await;
    let port = PUBLIC_URL.rsplit(':').next().unwrap();
    let mcp_url = format!("{PUBLIC_URL}/mcp");
    let json_accept = "application/json, text/event-stream";
    for host in [format!("127.0.0.1:{port}"), format!("[::1]:{port}")] {
        // An MCP client: a JSON-RPC error (the SDKs show its message), not a
        // challenge that would lead it to metadata naming another resource.
        let mcp = app
            .send(under_host("POST", "/mcp", &host, json_accept))
            .await;
        assert_eq!(mcp.status, StatusCode::BAD_REQUEST, "{host}");
        assert!(mcp.headers.get(header::WWW_AUTHENTICATE).is_none());
        let error = &mcp.json()["error"];
        assert_eq!(error["code"], -32600);
        let message = error["message"].as_str().unwrap();
        assert!(
            message.contains(&format!("connect your client to {mcp_url}")),
            "{message}"
        );
        // A discovery document: an OAuth error naming the URL.
        let prm = app
            .send(under_host(
                "GET",
                "/.well-known/oauth-protected-resource/mcp",
                &host,
                "application/json",
            ))
            .await;
        assert_eq!(prm.status, StatusCode::BAD_REQUEST);
        assert_eq!(prm.json()["error"], "invalid_request");
        assert!(
            prm.json()["error_description"]
                .as_str()
                .unwrap()
                .contains(&mcp_url)
        );
        // A browser: the same page under the public URL.
        let page = app
            .send(under_host(
                "GET",
                "/account?notice=welcome",
                &host,
                "text/html,application/xhtml+xml",
            ))
            .await;
        assert_eq!(page.status, StatusCode::PERMANENT_REDIRECT);
        assert_eq!(
            page.location(),
            Some(format!("{PUBLIC_URL}/account?notice=welcome").as_str())
        );
    }
    // The public URL's own name gets the usual challenge, pointing at the
    // canonical metadata.
    let right = app
        .send(under_host(
            "POST",
            "/mcp",
            &format!("localhost:{port}"),
            json_accept,
        ))
        .await;
    assert_eq!(right.status, StatusCode::UNAUTHORIZED);
    assert!(
        right.headers[header::WWW_AUTHENTICATE]
            .to_str()
            .unwrap()
            .contains(&format!(
                "{PUBLIC_URL}/.well-known/oauth-protected-resource/mcp"
            ))
    );
    // Another port is another instance or a proxy: served as usual.
    let proxied = app
        .send(under_host("POST", "/mcp", "127.0.0.1:9", json_accept))
        .await;
    assert_eq!(proxied.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn whoami_carries_the_groups_administrators_set() {
    use passgate::accounts::users;
    let app = TestApp::new().await;
    let user = users::new_user(
        users::new_user_id(),
        "dana".into(),
        "Dana".into(),
        users::Role::Member,
    );
    app.store()
        .transact(users::new_user_writes(&user).unwrap())
        .await
        .unwrap();
    let (_, token) = app.grant_and_token(&user.id, "client-7", "mcp").await;
    let whoami = || async {
        let response = app
            .send(mcp_request(
                json!({"jsonrpc":"2.0","id":8,"method":"tools/call","params":{"name":"whoami","arguments":{}}}),
                Some(&token),
            ))
            .await;
        assert_eq!(response.status, StatusCode::OK, "{}", response.body);
        response.json()["result"]["structuredContent"]["groups"].clone()
    };
    assert_eq!(whoami().await, json!([]));
    let groups = users::parse_groups(" ops, eng,ops ").unwrap();
    users::set_groups(app.store(), &user.id, groups)
        .await
        .unwrap();
    // The same token, at the next call: no new sign-in needed.
    assert_eq!(whoami().await, json!(["eng", "ops"]));
    users::set_groups(app.store(), &user.id, Vec::new())
        .await
        .unwrap();
    assert_eq!(whoami().await, json!([]));
    assert!(users::parse_groups("a b").is_err());
    let too_many: Vec<String> = (0..=users::MAX_GROUPS).map(|i| format!("g{i}")).collect();
    assert!(users::parse_groups(&too_many.join(",")).is_err());
}
