//! Serving under the AWS Lambda runtime (feature `lambda`): the same router
//! as over TCP, fed Function URL events (API Gateway HTTP API v2 payloads)
//! by `lambda_http`.
//!
//! Everything is built once per execution environment, in Lambda's init
//! phase: the settings secret and the command line are read by `main`, then
//! [`serve`] opens the store, fetches the master key, loads the signing keys
//! and builds the router. A request only clones the router (reference
//! counts) and runs it.
//!
//! Responses are streamed (`lambda_http::run_with_streaming_response`), and
//! the Function URL that `deploy/aws` creates is in `RESPONSE_STREAM` invoke
//! mode: a server-sent event stream (a gateway route's backend answering
//! with SSE) reaches the client event by event, as over TCP, instead of
//! when the invocation ends. A JSON answer is one chunk either way. A
//! function in this mode behind a `BUFFERED` URL would fail every request,
//! so the two go together.

use std::{
    ffi::OsString,
    net::{IpAddr, SocketAddr},
    time::{Duration, Instant},
};

use axum::{Router, extract::ConnectInfo};
use lambda_http::{Request, RequestExt, request::RequestContext};

use crate::{
    app::AppState,
    bootstrap,
    config::{Config, ServeArgs},
    login, routes,
    server::Endpoints,
};

/// True when this process was started by the Lambda runtime (or an
/// emulation of it, such as `cargo lambda watch`).
pub fn is_lambda_runtime() -> bool {
    std::env::var_os("AWS_LAMBDA_RUNTIME_API").is_some()
}

/// Lambda starts the binary (named `bootstrap`) with no arguments; under
/// the runtime, that means `serve`, configured from the environment.
pub fn serve_by_default(mut argv: Vec<OsString>) -> Vec<OsString> {
    if argv.len() <= 1 && is_lambda_runtime() {
        if argv.is_empty() {
            argv.push("passgate".into());
        }
        argv.push("serve".into());
    }
    argv
}

/// Builds the application with `endpoints` (the library's, or the demo
/// tools) once and answers invocations until the runtime stops the
/// execution environment. Any error before the loop starts fails
/// Lambda's init phase, which Lambda retries.
pub async fn serve(args: &ServeArgs, endpoints: &Endpoints) -> anyhow::Result<()> {
    let config = Config::from_args(args)?;
    // Before the store: a configuration Lambda cannot serve fails at once.
    let gateway = crate::gateway::Gateway::load(&config)?;
    if let Some(route) = gateway.as_ref().and_then(|g| g.stdio_routes().next()) {
        anyhow::bail!(
            "gateway route {route:?} runs a command (stdio), which needs a long-running \
             server (`passgate serve`): a Lambda execution environment is frozen between \
             invocations and its children would not survive. Serve that route from a server, \
             or give it a url"
        );
    }
    let (store, master_key) = bootstrap::open_store(&args.common).await?;
    // As `passgate serve` over TCP: the first administrator's link goes to
    // standard output (the function's log), once for the whole table.
    if config.passkeys
        && let Some(banner) = login::cli::first_admin_banner(store.as_ref(), &config).await?
    {
        println!("{banner}");
    }
    if let Some(banner) = login::cli::no_admin_banner(store.as_ref(), &config).await? {
        println!("{banner}");
    }
    let state = AppState::build(config, store, master_key).await?;
    // Runs while the execution environment is thawed; a tick missed while
    // frozen fires on the next invocation.
    state.keys.spawn_periodic_reload(
        state.store.clone(),
        state.master_key.clone(),
        state.shutdown.clone(),
    );
    tracing::info!(
        mcp_url = %state.config.mcp_url(),
        "passgate is serving Lambda invocations"
    );
    let endpoints = endpoints(&state);
    run(routes::router_with_gateway(state, endpoints, gateway)?).await
}

/// Runs `app` under the Lambda runtime, each response streamed to the
/// runtime API as its body produces it.
///
/// The runtime client ends its loop on the first failed call to the runtime
/// API (seen under `cargo lambda watch`: a connection closed after a
/// streamed response). Exiting would make Lambda replace the whole execution
/// environment, a cold start, while asking for the next event again costs
/// nothing; so a few failures in a row are retried before giving up.
pub async fn run(app: Router) -> anyhow::Result<()> {
    const ATTEMPTS: u32 = 5;
    let mut failures = 0;
    loop {
        let started = Instant::now();
        let Err(e) = lambda_http::run_with_streaming_response(service(app.clone())).await else {
            return Ok(());
        };
        // A loop that ran for a while before failing starts the count again.
        failures = if started.elapsed() > Duration::from_secs(60) {
            1
        } else {
            failures + 1
        };
        if failures >= ATTEMPTS {
            anyhow::bail!("the Lambda runtime loop failed {failures} times in a row: {e}");
        }
        tracing::warn!(error = %e, failures, "the Lambda runtime loop failed; asking for the next event again");
        tokio::time::sleep(Duration::from_millis(100 * u64::from(failures))).await;
    }
}

/// `app` as the Lambda runtime calls it: each request carries its caller's
/// address.
fn service(app: Router) -> tower::util::MapRequest<Router, fn(Request) -> Request> {
    tower::ServiceBuilder::new()
        .map_request(with_client_addr as fn(Request) -> Request)
        .service(app)
}

/// Gives the request the caller's address the way the TCP server does
/// (`ConnectInfo`), so `net::ClientAddr` and the rate limits see it.
fn with_client_addr(mut request: Request) -> Request {
    if let Some(addr) = source_addr(&request) {
        request.extensions_mut().insert(ConnectInfo(addr));
    }
    request
}

/// The source IP that the Function URL saw (`requestContext.http.sourceIp`),
/// with port 0: Lambda does not tell the port.
fn source_addr(request: &Request) -> Option<SocketAddr> {
    match request.request_context_ref()? {
        RequestContext::ApiGatewayV2(context) => context
            .http
            .source_ip
            .as_deref()?
            .parse::<IpAddr>()
            .ok()
            .map(|ip| SocketAddr::new(ip, 0)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A Function URL event (API Gateway HTTP API v2 payload).
    fn event(method: &str, path: &str, source_ip: &str, body: Option<&str>) -> Request {
        let mut event = serde_json::json!({
            "version": "2.0",
            "routeKey": "$default",
            "rawPath": path,
            "rawQueryString": "",
            "headers": {
                "host": "abc.lambda-url.eu-west-1.on.aws",
                "content-type": "application/json"
            },
            "requestContext": {
                "accountId": "anonymous",
                "apiId": "abc",
                "domainName": "abc.lambda-url.eu-west-1.on.aws",
                "domainPrefix": "abc",
                "http": {
                    "method": method,
                    "path": path,
                    "protocol": "HTTP/1.1",
                    "sourceIp": source_ip,
                    "userAgent": "test"
                },
                "requestId": "id",
                "routeKey": "$default",
                "stage": "$default",
                "time": "01/Jan/2026:00:00:00 +0000",
                "timeEpoch": 0
            },
            "isBase64Encoded": false
        });
        if let Some(body) = body {
            event["body"] = body.into();
        }
        lambda_http::request::from_str(&event.to_string()).expect("a Function URL event")
    }

    #[tokio::test]
    async fn each_function_url_caller_has_its_own_rate_limit_bucket() {
        use tower::{Service, ServiceExt};

        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::sqlite::SqliteStore::open(&dir.path().join("p.sqlite3")).unwrap();
        let key =
            crate::crypto::MasterKey::from_secret(&crate::crypto::MasterKey::generate_secret())
                .unwrap();
        let config = Config::for_public_url("https://abc.lambda-url.eu-west-1.on.aws").unwrap();
        let state = AppState::build(config, std::sync::Arc::new(store), key)
            .await
            .unwrap();
        let mut lambda = service(routes::router(state));
        let body = r#"{"redirect_uris": ["https://a.example/cb"]}"#;
        let mut register = async |source_ip: &str| {
            let request = event("POST", "/register", source_ip, Some(body));
            let service = lambda.ready().await.unwrap();
            service.call(request).await.unwrap().status()
        };
        let max = crate::ratelimit::LimitedAction::Register.max();
        for _ in 0..max {
            assert_eq!(register("203.0.113.66").await, http::StatusCode::CREATED);
        }
        assert_eq!(
            register("203.0.113.66").await,
            http::StatusCode::TOO_MANY_REQUESTS
        );
        assert_eq!(register("198.51.100.7").await, http::StatusCode::CREATED);
    }

    #[test]
    fn function_url_source_ip_becomes_connect_info() {
        let event = serde_json::json!({
            "version": "2.0",
            "routeKey": "$default",
            "rawPath": "/healthz",
            "rawQueryString": "",
            "headers": {"host": "abc.lambda-url.eu-west-1.on.aws"},
            "requestContext": {
                "accountId": "anonymous",
                "apiId": "abc",
                "domainName": "abc.lambda-url.eu-west-1.on.aws",
                "domainPrefix": "abc",
                "http": {
                    "method": "GET",
                    "path": "/healthz",
                    "protocol": "HTTP/1.1",
                    "sourceIp": "203.0.113.7",
                    "userAgent": "test"
                },
                "requestId": "id",
                "routeKey": "$default",
                "stage": "$default",
                "time": "01/Jan/2026:00:00:00 +0000",
                "timeEpoch": 0
            },
            "isBase64Encoded": false
        });
        let request =
            lambda_http::request::from_str(&event.to_string()).expect("a Function URL event");
        let request = with_client_addr(request);
        let ConnectInfo(addr) = request
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .expect("ConnectInfo");
        assert_eq!(addr.ip().to_string(), "203.0.113.7");
        assert_eq!(request.uri().path(), "/healthz");
    }

    #[test]
    fn no_source_ip_no_connect_info() {
        let request = with_client_addr(Request::default());
        assert!(
            request
                .extensions()
                .get::<ConnectInfo<SocketAddr>>()
                .is_none()
        );
    }
}
