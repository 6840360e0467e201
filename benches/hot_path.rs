//! Criterion micro-benchmarks of the `/mcp` hot path, in process (no TCP):
//!
//! - `bearer/verify`: ES256 signature, issuer, audience, expiry and type of
//!   an access token (`bearer::verify`);
//! - `bearer/authenticate`: the above plus the grant-liveness read from a
//!   SQLite store in a tempdir (`bearer::authenticate`), as on every request;
//! - `store/grant_get`: that grant read alone (`grants::get`, through the
//!   store's `spawn_blocking`);
//! - `mcp/tools_call_add/<runtime>/rmcp_only`: `tools/call add` through
//!   rmcp's Streamable HTTP service alone, without the bearer middleware;
//! - `mcp/tools_call_add/<runtime>/router`: the same through the whole
//!   router (`routes::router(state)` with `oneshot`), with a valid token.
//!
//! The `bearer` and `store` groups run on tokio's multi-thread runtime, the
//! one passgate serves with by default. The `mcp` group runs on both
//! runtimes (`PASSGATE_RUNTIME`): rmcp serves each stateless request on a
//! task of its own, so on the multi-thread runtime much of a call's wall
//! time is one worker waking another, and the current-thread numbers are
//! the closer measure of the work itself.
//!
//! `cargo bench --bench hot_path`. Nothing here asserts a timing; each
//! benchmark checks its result once before it is timed.

use std::{hint::black_box, sync::Arc};

use axum::{
    Router,
    body::{Body, Bytes},
};
use criterion::{Criterion, criterion_group, criterion_main};
use http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use passgate::{
    app::AppState,
    config::Config,
    crypto::{self, MasterKey},
    mcp,
    oauth::{
        SCOPE_MCP,
        bearer::{self, AccessClaims},
        grants::{self, Grant},
    },
    routes,
    store::{Store, now_unix, sqlite::SqliteStore},
};
use tower::ServiceExt;

const PUBLIC_URL: &str = "http://localhost:8080";
const CALL: &str = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"add","arguments":{"a":20,"b":22}}}"#;

struct Fixture {
    state: AppState,
    token: String,
    family: String,
    _dir: tempfile::TempDir,
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let store: Arc<dyn Store> =
        Arc::new(SqliteStore::open(&dir.path().join("bench.sqlite3")).expect("sqlite store"));
    let master = MasterKey::from_secret(&MasterKey::generate_secret()).expect("master key");
    let config = Config::for_public_url(PUBLIC_URL).expect("config");
    let state = AppState::build(config, store, master)
        .await
        .expect("app state");
    let now = now_unix();
    let grant = Grant {
        family: crypto::random_id(),
        user_id: "bench-user".into(),
        client_id: "bench-client".into(),
        client_name: "bench".into(),
        scope: SCOPE_MCP.into(),
        resource: state.config.mcp_url(),
        created_at: now,
        redirect_uri: String::new(),
        groups: Vec::new(),
        user_name: String::new(),
        display_name: String::new(),
        account: None,
        last_used_at: None,
    };
    state
        .store
        .transact(grants::create_writes(&grant).expect("grant writes"))
        .await
        .expect("grant stored");
    let token = state.keys.sign(&AccessClaims {
        iss: state.config.issuer(),
        sub: grant.user_id.clone(),
        aud: state.config.mcp_url(),
        exp: now + 24 * 3600,
        iat: now,
        jti: crypto::random_id(),
        client_id: grant.client_id.clone(),
        scope: grant.scope.clone(),
        fam: grant.family.clone(),
    });
    Fixture {
        state,
        token,
        family: grant.family,
        _dir: dir,
    }
}

fn call_request(token: Option<&str>) -> Request<Body> {
    let mut builder = Request::post("/mcp")
        .header(header::HOST, "localhost:8080")
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::ACCEPT, "application/json, text/event-stream")
        .header("mcp-protocol-version", "2025-06-18");
    if let Some(token) = token {
        builder = builder.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    builder.body(Body::from(CALL)).expect("request")
}

/// Sends one call and returns the status and body.
async fn send(router: Router, request: Request<Body>) -> (StatusCode, Bytes) {
    let response = router.oneshot(request).await.expect("infallible router");
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    (status, body)
}

fn check_sum(status: StatusCode, body: &[u8]) {
    let text = String::from_utf8_lossy(body);
    assert_eq!(status, StatusCode::OK, "unexpected answer: {text}");
    assert!(
        text.contains(r#""structuredContent":{"result":42}"#),
        "wrong sum: {text}"
    );
}

fn hot_path(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().expect("tokio runtime");
    let fx = rt.block_on(fixture());
    let state = &fx.state;
    let token = fx.token.as_str();

    // Check every path once before timing it.
    rt.block_on(async {
        let claims = bearer::verify(state, token).await.expect("token verifies");
        assert_eq!(claims.fam, fx.family);
        let identity = bearer::authenticate(state, token, state.resources.primary())
            .await
            .expect("token authenticates");
        assert_eq!(identity.user_id, "bench-user");
        assert!(
            grants::get(state.store.as_ref(), &fx.family)
                .await
                .expect("store read")
                .is_some()
        );
    });

    let mut group = c.benchmark_group("bearer");
    group.bench_function("verify", |b| {
        b.to_async(&rt)
            .iter(|| async { black_box(bearer::verify(state, black_box(token)).await.is_ok()) })
    });
    group.bench_function("authenticate", |b| {
        b.to_async(&rt).iter(|| async {
            black_box(
                bearer::authenticate(state, black_box(token), state.resources.primary())
                    .await
                    .is_ok(),
            )
        })
    });
    group.finish();

    c.bench_function("store/grant_get", |b| {
        b.to_async(&rt).iter(|| async {
            black_box(
                grants::get(state.store.as_ref(), black_box(&fx.family))
                    .await
                    .is_ok(),
            )
        })
    });

    // rmcp's service alone, in a bare router (no bearer middleware, no
    // common layers): the MCP share of the cost.
    let rmcp_only = Router::new().route_service(
        "/mcp",
        mcp::service(mcp::Tools::new(), &state.config, state.shutdown.clone()),
    );
    let router = routes::router(state.clone());
    rt.block_on(async {
        let (status, body) = send(rmcp_only.clone(), call_request(None)).await;
        check_sum(status, &body);
        let (status, body) = send(router.clone(), call_request(Some(token))).await;
        check_sum(status, &body);
    });

    let current = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    for (label, runtime) in [("multi-thread", &rt), ("current-thread", &current)] {
        let mut group = c.benchmark_group(format!("mcp/tools_call_add/{label}"));
        group.bench_function("rmcp_only", |b| {
            b.to_async(runtime)
                .iter(|| async { black_box(send(rmcp_only.clone(), call_request(None)).await) })
        });
        group.bench_function("router", |b| {
            b.to_async(runtime)
                .iter(|| async { black_box(send(router.clone(), call_request(Some(token))).await) })
        });
        group.finish();
    }
}

criterion_group!(benches, hot_path);
criterion_main!(benches);
